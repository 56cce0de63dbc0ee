/* analyze.h - recursive graph analysis: requested refs -> JobGraph.
 *
 * Round by round: the frontier refs are grouped by job and each job is
 * configured ONCE per round with all of its refs (groups of one round are
 * configured in parallel; a job with more than 1 MiB of refs, which its
 * config process could not take as arguments, gets one call per MiB). Tasks are deduplicated by
 * their outputs; the MATERIALIZE inputs of the new tasks that some job produces form the next
 * frontier (a QUERY input - the seed's DepType - is read, not built: it only
 * becomes an edge when a task of the plan produces it anyway); an
 * input that no job produces is external: accepted when it matches
 * graph.external or is AVAILABLE (asked once per round, batched), otherwise
 * the analysis fails with a precondition error naming it. After the last
 * round the task graph is checked for cycles (an error naming the cycle:
 * "dependency cycle: a/1 -> b/1 -> a/1", each ref depending on the next).
 *
 * The design decision: all I/O goes through two callbacks (configure and
 * availability), so the algorithm is pure and unit-tested without processes.
 */
#ifndef GRAPH_ANALYZE_H
#define GRAPH_ANALYZE_H

#include "lookup.h"

#include "databuild.pb-c.h"
#include "dbld/arena.h"
#include "dbld/status.h"

#include <stddef.h>

/* Configure `job` for refs. Called from several threads at once (one per
 * job of a round); *resp and everything in it must come from arena a (owned
 * by the caller of the callback, one per call). */
typedef int (*gs_configure_fn)(void *user, size_t job, const char *const *refs, size_t n,
                               dbld_arena *a, Databuild__V1__JobConfigureResponse **resp,
                               dbld_status *st);
/* avail[i] = 1 when refs[i] is AVAILABLE (and not tainted). */
typedef int (*gs_available_fn)(void *user, const char *const *refs, size_t n, int *avail,
                               dbld_status *st);

typedef struct gs_analyze_env {
    const gs_lookup *lookup;
    const char *graph_label;
    gs_configure_fn configure;
    gs_available_fn available;
    void *user;
    int parallel; /* configure calls at once within a round (<= 0: 8) */
} gs_analyze_env;

/* Why an analysis failed (the status code alone does not tell). */
typedef enum {
    GS_AERR_NONE = 0,
    GS_AERR_LOOKUP,       /* a requested ref no job produces (NOT_FOUND) or an ambiguous ref */
    GS_AERR_CONFIGURE,    /* a configure call failed or returned something inconsistent */
    GS_AERR_PRECONDITION, /* an input nobody produces that is not available */
    GS_AERR_CYCLE,        /* a dependency cycle */
    GS_AERR_AVAILABILITY, /* the availability check itself failed (event log) */
} gs_analyze_error;

/* The external inputs (graph.external: never built here) an analysis found
 * missing, as data: set when gs_analyze() fails with GS_AERR_PRECONDITION
 * because some are not AVAILABLE, every one of them (the message names the
 * first 20, for people). Callers read this, never the message. */
typedef struct gs_missing {
    char **refs; /* malloc'd, each malloc'd; in the order the analysis met them */
    size_t n;
} gs_missing;

void gs_missing_free(gs_missing *m);

typedef struct gs_plan_arena gs_plan_arena;

typedef struct gs_plan {
    dbld_arena *a;                  /* owns graph and the arrays below */
    Databuild__V1__JobGraph *graph; /* outputs = requested refs; nodes in discovery order */
    size_t n_tasks;                 /* == graph->n_nodes */
    size_t *job;                    /* job index of each task */
    size_t **deps;                  /* producer tasks of each task (deduplicated) */
    size_t *n_deps;
    int configure_calls;
    int rounds;
    size_t n_external;    /* distinct external inputs */
    gs_plan_arena *extra; /* arenas of configure results */
} gs_plan;

/* Analyze refs. On success *out is the plan (free with gs_plan_free()). On
 * failure returns the code (NOT_FOUND, FAILED_PRECONDITION, the configure
 * call's code, ...) with st naming the cause; *err (may be NULL) tells the
 * kind; *calls_out (may be NULL) the configure calls made; *missing (may be
 * NULL; empty unless the analysis failed on missing external inputs, the
 * caller frees it with gs_missing_free()) lists those inputs. */
int gs_analyze(const gs_analyze_env *env, const char *const *refs, size_t n, gs_plan **out,
               gs_analyze_error *err, int *calls_out, gs_missing *missing, dbld_status *st);
void gs_plan_free(gs_plan *p);

#endif
