/* lookup.h - which job produces a partition ref, for the graph service.
 *
 * A thin layer over dbld_outputs (include/dbld/outputs.h), which the job and
 * query services use too: every graph.jobs[].outputs and graph.external
 * pattern compiled once as `^(pat)$`, so a pattern must match the whole ref.
 * A ref belongs to the job one of whose patterns matches it; config loading
 * refuses overlapping patterns of two jobs, and a ref two jobs match anyway
 * is an error naming both; a ref matched by none is not produced by the
 * graph. Lookups only read compiled regexes, so one gs_lookup serves every
 * thread.
 */
#ifndef GRAPH_LOOKUP_H
#define GRAPH_LOOKUP_H

#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/outputs.h"
#include "dbld/status.h"
#include "databuild.pb-c.h"

#include <stddef.h>

typedef struct gs_lookup gs_lookup;

/* Compile the patterns of cfg->graph (borrowed: cfg must outlive the lookup).
 * Returns 0, or INVALID_ARGUMENT naming the job and pattern. */
int gs_lookup_create(const dbld_config *cfg, gs_lookup **out, dbld_status *st);
void gs_lookup_destroy(gs_lookup *l);

size_t gs_lookup_n_jobs(const gs_lookup *l);
const dbld_job_def *gs_lookup_job(const gs_lookup *l, size_t job);

#define GS_LOOKUP_NONE DBLD_OUTPUTS_NONE
/* The job index producing ref: 0 with *job set (GS_LOOKUP_NONE when no job
 * matches), or FAILED_PRECONDITION when two jobs match (message names both). */
int gs_lookup_ref(const gs_lookup *l, const char *ref, size_t *job, dbld_status *st);
/* 1 if ref matches a graph.external pattern. */
int gs_lookup_external(const gs_lookup *l, const char *ref);

/* GraphLookup semantics: group refs by job (one TaskRef per label, in order of
 * first appearance, each with all its refs). NOT_FOUND naming the first ref no
 * job produces; FAILED_PRECONDITION for an ambiguous ref. Result in arena a. */
int gs_lookup_group(const gs_lookup *l, const char *const *refs, size_t n, dbld_arena *a,
                    Databuild__V1__GraphLookupResponse **out, dbld_status *st);

#endif
