/* graph.h - the graph service's shared state and its calls to other services.
 *
 * One gs_service per process: the configuration, the compiled lookup, this
 * instance's lease owner id, the job service endpoints (with in-flight run
 * counts for spreading work), the registry of builds this instance
 * coordinates and the calls waiting for them to end (waiters.h). Calls to the event log (append,
 * claims, status, leases, list) and to the job services (configure, run, cancel) live in remote.c;
 * every event log call is idempotent and retried on UNAVAILABLE.
 */
#ifndef GRAPH_GRAPH_H
#define GRAPH_GRAPH_H

#include "events.h"
#include "lookup.h"
#include "pool.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/rpc.h"
#include "dbld/status.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct gs_build gs_build;
typedef struct gs_waiters gs_waiters; /* waiters.c: calls answered when a build ends */

#define GS_RECENT_MAX 256

typedef struct gs_recent {
    char id[37];
    int status; /* terminal BuildRequestStatusCode */
} gs_recent;

typedef struct gs_service {
    dbld_config *cfg;
    gs_lookup *lookup;
    dbld_server *srv;
    const char *eventlog; /* address */
    char owner[256];      /* lease owner: listen address, pid, random suffix */
    int64_t lease_ttl_ms;
    int64_t renew_every_ms;
    int64_t orphan_poll_ms;
    int64_t el_timeout_ms; /* event log calls retry UNAVAILABLE this long */
    int64_t relaunch_ms;   /* relaunches after losing a job service, at most this long */
    int64_t query_wait_ms; /* a task waits this long for a QUERY input being built elsewhere */
    atomic_int ready;      /* the event log answered and startup adoption ran */
    atomic_int stopping;
    atomic_long configure_calls; /* every Configure call this process made */

    pthread_mutex_t ep_mu;
    int *ep_inflight; /* runs in flight per job endpoint */
    unsigned ep_rr;

    pthread_mutex_t mu; /* builds, recent */
    pthread_cond_t cv;
    gs_build *builds; /* active builds (registry list) */
    gs_recent recent[GS_RECENT_MAX];
    size_t n_recent;

    gs_waiters *waiters; /* Build and Cancel calls waiting for a build's end */

    gs_pool *build_pool; /* graph.build_threads: one build each (coordinator.c) */
    gs_pool *task_pool;  /* graph.task_threads: one task each (task.c) */

    pthread_t bg;
    int bg_started;
} gs_service;

/* ---- event log (remote.c) ---- */

/* Append events in order (chunks of 1000), retrying UNAVAILABLE for el_timeout_ms. */
/* Append a build's events, fenced on its lease being held by s->owner
 * (FAILED_PRECONDITION when another instance took the build over). */
int gs_el_append(gs_service *s, const char *build_request_id, gs_event *const *evs, size_t n,
                 dbld_arena *a, dbld_status *st);
/* The same with job log entries (a short run's, handed back with its result)
 * written in the transaction of the last chunk of events. */
int gs_el_append_logs(gs_service *s, const char *build_request_id, gs_event *const *evs, size_t n,
                      Databuild__V1__JobLogEntry *const *logs, size_t n_logs, dbld_arena *a,
                      dbld_status *st);
/* Job log entries alone (JobLogs/Append), when no append carried them. */
int gs_el_joblogs(gs_service *s, Databuild__V1__JobLogEntry *const *logs, size_t n, dbld_arena *a,
                  dbld_status *st);
int gs_el_status(gs_service *s, const char *const *refs, size_t n, dbld_arena *a,
                 Databuild__V1__PartitionState ***out, dbld_status *st);
/* min_available_ns: the reuse window (ClaimRequest.min_available_ns; 0: none). */
int gs_el_claim(gs_service *s, const char *br, const char *run, Databuild__V1__PartitionRef **refs,
                size_t n, gs_event **evs, size_t n_evs, int64_t min_available_ns, dbld_arena *a,
                Databuild__V1__ClaimResponse **out, dbld_status *st);
int gs_el_release(gs_service *s, const char *br, dbld_status *st);
/* Take or renew leases for ttl_ms (<= 0: the configured TTL). */
int gs_el_renew(gs_service *s, char **ids, size_t n, int64_t ttl_ms, dbld_arena *a,
                Databuild__V1__RenewLeasesResponse **out, dbld_status *st);
int gs_el_orphans(gs_service *s, dbld_arena *a, Databuild__V1__OrphansResponse **out,
                  dbld_status *st);
/* One page of events matching filter (and of one of kinds, unless none)
 * from start_idx. */
int gs_el_list(gs_service *s, const Databuild__V1__EventFilter *f, const int32_t *kinds,
               size_t n_kinds, int64_t start_idx, dbld_arena *a, Databuild__V1__EventPage **page,
               dbld_status *st);

/* ---- job services (remote.c) ---- */

/* Configure `job` for refs on some job endpoint (another one on UNAVAILABLE). */
int gs_job_configure(gs_service *s, size_t job, const char *const *refs, size_t n, dbld_arena *a,
                     Databuild__V1__JobConfigureResponse **out, dbld_status *st);
/* Pick the endpoint with the fewest runs in flight (round-robin among equals),
 * avoiding `avoid` (-1: none) when another exists; counts the run in flight. */
int gs_ep_acquire(gs_service *s, int avoid);
void gs_ep_release(gs_service *s, int ep);
const char *gs_ep_addr(gs_service *s, int ep);
/* JobRunner/RunStreamed on endpoint ep; *out is the result. When the job
 * service reports the process spawned, *started_out is set, and
 * started(arg, start) is called unless the result follows within defer_ms
 * of the spawn (a short run's caller then records the start together with
 * the result: one event log write instead of two). The run's job log comes
 * back with a short run's result (return_logs, RunJobResponse.log_entries:
 * the caller stores it). Not called when the spawn failed. */
typedef void (*gs_started_fn)(void *arg, const Databuild__V1__RunJobStarted *started);
int gs_job_run(gs_service *s, int ep, const char *run, const char *br, Databuild__V1__Task *task,
               int64_t timeout_ms, int64_t defer_ms, gs_started_fn started, void *arg,
               dbld_arena *a, Databuild__V1__RunJobStarted **started_out,
               Databuild__V1__RunJobResponse **out, dbld_status *st);
int gs_job_cancel(gs_service *s, int ep, const char *run, const char *reason, int *found,
                  dbld_status *st);

#endif
