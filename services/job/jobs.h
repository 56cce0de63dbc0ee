/* jobs.h - the graph's jobs as the job service sees them: graph.jobs from the
 * YAML file, label lookup and ref -> job resolution.
 *
 * Refs are resolved through dbld_outputs (include/dbld/outputs.h), as in the
 * graph and query services: a ref belongs to the job one of whose patterns
 * (POSIX extended regexes, anchored as ^(pattern)$) matches it in full. Config
 * loading refuses overlapping patterns of two jobs; a ref two jobs match
 * anyway is FAILED_PRECONDITION naming both.
 */
#ifndef JOB_JOBS_H
#define JOB_JOBS_H

#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/status.h"

#include "dbld/outputs.h"

typedef struct job_entry {
    const dbld_job_def *def; /* borrowed from the config */
} job_entry;

typedef struct job_table {
    job_entry *jobs; /* in file order: jobs[i].def is cfg->graph.jobs[i] */
    size_t n;
    dbld_outputs *outs;
} job_table;

/* Compile every job's patterns. The config must outlive the table. Returns 0,
 * or INVALID_ARGUMENT naming the job and pattern. Free with job_table_free(). */
int job_table_init(job_table *t, const dbld_config *cfg, dbld_status *st);
void job_table_free(job_table *t);

/* The job with this label, or NULL. */
const job_entry *job_find(const job_table *t, const char *label);
/* The one job producing every ref. NOT_FOUND names a ref no job produces;
 * FAILED_PRECONDITION a ref two jobs produce; INVALID_ARGUMENT names the refs
 * and jobs when they belong to several. */
int job_resolve(const job_table *t, const char *const *refs, size_t n, const job_entry **out,
                dbld_status *st);

/* 1 if exit code `code` is one of the job's transient_exit_codes. */
int job_exit_is_transient(const job_entry *j, int code);
/* 1 if exit code `code` is one of the job's no_retry_exit_codes (checked
 * first: such a failure is permanent and the coordinator does not retry it). */
int job_exit_denies_retry(const job_entry *j, int code);

/* "a/x, b/x" (at most `max` refs, then "and N more") in the arena. */
char *job_refs_str(dbld_arena *a, const char *const *refs, size_t n, size_t max);

#endif
