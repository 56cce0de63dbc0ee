/* outputs.h - which job produces a ref: the graph's output patterns, compiled once.
 *
 * Every graph.jobs[].outputs pattern and every graph.external pattern is
 * compiled with dbld_rx_regcomp(), so a pattern matches a whole ref. The graph
 * service's lookup, the job service and the query service all resolve refs
 * through this table, so they agree on which job produces a ref. Loading the
 * config refuses graphs in which patterns of two jobs overlap, so at most one
 * job matches any ref; dbld_outputs_job() still tries every pattern and
 * reports a second job as FAILED_PRECONDITION naming both (a defensive check
 * for a config that did not come through dbld_config_parse()). The table is
 * read-only once created: one serves every thread.
 */
#ifndef DBLD_OUTPUTS_H
#define DBLD_OUTPUTS_H

#include "dbld/config.h"
#include "dbld/status.h"

#include <stddef.h>

typedef struct dbld_outputs dbld_outputs;

#define DBLD_OUTPUTS_NONE ((size_t)-1)

/* Compile the patterns of cfg->graph (borrowed: cfg must outlive the table).
 * Returns 0 (free with dbld_outputs_destroy()), or INVALID_ARGUMENT naming the
 * pattern: "graph.jobs[1] (//x:a): invalid regular expression \"a/(\": ...". */
int dbld_outputs_create(const dbld_config *cfg, dbld_outputs **out, dbld_status *st);
void dbld_outputs_destroy(dbld_outputs *o);

/* The index in cfg->graph.jobs of the job producing ref: 0 with *job set
 * (DBLD_OUTPUTS_NONE when no job matches), or FAILED_PRECONDITION when two
 * jobs match ("partition \"x\" is produced by two jobs: //a and //b"). */
int dbld_outputs_job(const dbld_outputs *o, const char *ref, size_t *job, dbld_status *st);

/* 1 if ref matches a graph.external pattern, else 0. */
int dbld_outputs_external(const dbld_outputs *o, const char *ref);

#endif
