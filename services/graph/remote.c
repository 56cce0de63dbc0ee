/* remote.c - the graph service's calls to the event log and the job services.
 *
 * Event log calls are all idempotent (appends carry fixed event ids, a
 * repeated claim by the same job run is granted again with the same events),
 * so they are retried on UNAVAILABLE for up to el_timeout_ms (the lease TTL,
 * at least 10 s): a restarting event log or PostgreSQL pauses a build instead
 * of failing it, and an outage longer than the lease abandons the build (it is
 * resumed once the event log is back). Renew and Orphans use a third of the
 * TTL, so the lease thread keeps its rhythm. Job service
 * Configure is idempotent too and moves to the next endpoint when one is
 * unavailable; a run (JobRunner/RunStreamed) is not retried here (a lost run is
 * a failed attempt that the coordinator's retry quota decides about).
 *
 * Appends and claims for a build are fenced on its lease (owner s->owner): a
 * FAILED_PRECONDITION answer means another instance took the build over.
 */
#include "graph.h"

#include "dbld/eventlog_client.h"
#include "dbld/util.h"

#include <string.h>

#define APPEND_CHUNK 1000
#define STATUS_CHUNK 5000
#define CONFIGURE_TIMEOUT_MS 600000
#define RUN_STOP_POLL_MS 250 /* a Run stream looks at s->stopping this often */

static int el_call(gs_service *s, const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, dbld_arena *a, void *out,
                   dbld_status *st)
{
    int rc =
        dbld_client_unary(dbld_client_get(s->eventlog), path, req, desc, dbld_arena_allocator(a),
                          (ProtobufCMessage **)out, s->el_timeout_ms, DBLD_CALL_IDEMPOTENT, st);
    if (rc) dbld_status_prefix(st, "event log %s", strrchr(path, '/') + 1);
    return rc;
}

int gs_el_append_logs(gs_service *s, const char *build_request_id, gs_event *const *evs, size_t n,
                      Databuild__V1__JobLogEntry *const *logs, size_t n_logs, dbld_arena *a,
                      dbld_status *st)
{
    for (size_t off = 0; off < n; off += APPEND_CHUNK) {
        size_t k = n - off < APPEND_CHUNK ? n - off : APPEND_CHUNK;
        int last = off + k == n;
        int rc = dbld_eventlog_append_fenced(s->eventlog, build_request_id, s->owner, evs + off, k,
                                             last ? logs : NULL, last ? n_logs : 0, a, NULL,
                                             s->el_timeout_ms, st);
        if (rc) return rc;
    }
    return 0;
}

int gs_el_append(gs_service *s, const char *build_request_id, gs_event *const *evs, size_t n,
                 dbld_arena *a, dbld_status *st)
{
    return gs_el_append_logs(s, build_request_id, evs, n, NULL, 0, a, st);
}

int gs_el_joblogs(gs_service *s, Databuild__V1__JobLogEntry *const *logs, size_t n, dbld_arena *a,
                  dbld_status *st)
{
    Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    req.entries = (Databuild__V1__JobLogEntry **)logs;
    req.n_entries = n;
    Databuild__V1__AppendJobLogsResponse *resp = NULL;
    return el_call(s, "/databuild.v1.JobLogs/Append", &req.base,
                   &databuild__v1__append_job_logs_response__descriptor, a, &resp, st);
}

int gs_el_status(gs_service *s, const char *const *refs, size_t n, dbld_arena *a,
                 Databuild__V1__PartitionState ***out, dbld_status *st)
{
    Databuild__V1__PartitionState **all = dbld_arena_alloc(a, (n + 1) * sizeof *all);
    for (size_t off = 0; off < n; off += STATUS_CHUNK) {
        size_t k = n - off < STATUS_CHUNK ? n - off : STATUS_CHUNK;
        Databuild__V1__PartitionStatusRequest req = DATABUILD__V1__PARTITION_STATUS_REQUEST__INIT;
        req.refs = (char **)(refs + off);
        req.n_refs = k;
        Databuild__V1__PartitionStatusResponse *resp = NULL;
        int rc = el_call(s, "/databuild.v1.PartitionClaims/Status", &req.base,
                         &databuild__v1__partition_status_response__descriptor, a, &resp, st);
        if (rc) return rc;
        if (resp->n_partitions != k)
            return dbld_status_set(st, DBLD_INTERNAL, "event log Status answered %zu of %zu refs",
                                   resp->n_partitions, k);
        memcpy(all + off, resp->partitions, k * sizeof *all);
    }
    *out = all;
    return 0;
}

int gs_el_claim(gs_service *s, const char *br, const char *run, Databuild__V1__PartitionRef **refs,
                size_t n, gs_event **evs, size_t n_evs, int64_t min_available_ns, dbld_arena *a,
                Databuild__V1__ClaimResponse **out, dbld_status *st)
{
    Databuild__V1__ClaimRequest req = DATABUILD__V1__CLAIM_REQUEST__INIT;
    req.build_request_id = (char *)br;
    req.job_run_id = (char *)run;
    req.refs = dbld_arena_alloc(a, (n + 1) * sizeof *req.refs);
    for (size_t i = 0; i < n; i++)
        req.refs[i] = refs[i]->str;
    req.n_refs = n;
    req.events_if_granted = evs;
    req.n_events_if_granted = n_evs;
    req.lease_owner = s->owner;
    req.min_available_ns = min_available_ns;
    return el_call(s, "/databuild.v1.PartitionClaims/Claim", &req.base,
                   &databuild__v1__claim_response__descriptor, a, out, st);
}

int gs_el_release(gs_service *s, const char *br, dbld_status *st)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__ReleaseRequest req = DATABUILD__V1__RELEASE_REQUEST__INIT;
    req.build_request_id = (char *)br;
    Databuild__V1__ReleaseResponse *resp = NULL;
    int rc = el_call(s, "/databuild.v1.PartitionClaims/Release", &req.base,
                     &databuild__v1__release_response__descriptor, a, &resp, st);
    dbld_arena_destroy(a);
    return rc;
}

int gs_el_renew(gs_service *s, char **ids, size_t n, int64_t ttl_ms, dbld_arena *a,
                Databuild__V1__RenewLeasesResponse **out, dbld_status *st)
{
    Databuild__V1__RenewLeasesRequest req = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    req.owner = s->owner;
    req.build_request_ids = ids;
    req.n_build_request_ids = n;
    req.ttl_ms = (uint32_t)(ttl_ms > 0 ? ttl_ms : s->lease_ttl_ms);
    /* Short timeout: a renewal that cannot get through in a fraction of the
     * TTL is better retried on the next tick. */
    int rc = dbld_client_unary(dbld_client_get(s->eventlog), "/databuild.v1.BuildLeases/Renew",
                               &req.base, &databuild__v1__renew_leases_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)out,
                               s->lease_ttl_ms / 3, DBLD_CALL_IDEMPOTENT, st);
    if (rc) dbld_status_prefix(st, "event log Renew");
    return rc;
}

int gs_el_orphans(gs_service *s, dbld_arena *a, Databuild__V1__OrphansResponse **out,
                  dbld_status *st)
{
    Databuild__V1__OrphansRequest req = DATABUILD__V1__ORPHANS_REQUEST__INIT;
    req.owner = s->owner;
    /* Short, like Renew: the same thread renews the leases. */
    int rc = dbld_client_unary(dbld_client_get(s->eventlog), "/databuild.v1.BuildLeases/Orphans",
                               &req.base, &databuild__v1__orphans_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)out,
                               s->lease_ttl_ms / 3, DBLD_CALL_IDEMPOTENT, st);
    if (rc) dbld_status_prefix(st, "event log Orphans");
    return rc;
}

int gs_el_list(gs_service *s, const Databuild__V1__EventFilter *f, const int32_t *kinds,
               size_t n_kinds, int64_t start_idx, dbld_arena *a, Databuild__V1__EventPage **page,
               dbld_status *st)
{
    Databuild__V1__ListEventsRequest req = DATABUILD__V1__LIST_EVENTS_REQUEST__INIT;
    req.filter = (Databuild__V1__EventFilter *)f;
    req.kinds = (int32_t *)kinds;
    req.n_kinds = n_kinds;
    req.start_idx = start_idx;
    req.limit = 5000;
    return el_call(s, "/databuild.v1.EventLog/List", &req.base,
                   &databuild__v1__event_page__descriptor, a, page, st);
}

/* ---- job services ---- */

const char *gs_ep_addr(gs_service *s, int ep)
{
    return s->cfg->shared.peers.job[ep];
}

int gs_ep_acquire(gs_service *s, int avoid)
{
    size_t n = s->cfg->shared.peers.n_job;
    pthread_mutex_lock(&s->ep_mu);
    unsigned start = s->ep_rr++;
    int best = -1;
    for (size_t k = 0; k < n; k++) {
        int ep = (int)((start + k) % n);
        if (ep == avoid && n > 1) continue;
        if (best < 0 || s->ep_inflight[ep] < s->ep_inflight[best]) best = ep;
    }
    s->ep_inflight[best]++;
    pthread_mutex_unlock(&s->ep_mu);
    return best;
}

void gs_ep_release(gs_service *s, int ep)
{
    pthread_mutex_lock(&s->ep_mu);
    s->ep_inflight[ep]--;
    pthread_mutex_unlock(&s->ep_mu);
}

int gs_job_configure(gs_service *s, size_t job, const char *const *refs, size_t n, dbld_arena *a,
                     Databuild__V1__JobConfigureResponse **out, dbld_status *st)
{
    Databuild__V1__JobConfigureRequest req = DATABUILD__V1__JOB_CONFIGURE_REQUEST__INIT;
    req.outputs = gs_refs(a, refs, n);
    req.n_outputs = n;
    size_t n_ep = s->cfg->shared.peers.n_job;
    int ep = gs_ep_acquire(s, -1);
    gs_ep_release(s, ep);
    int rc = DBLD_UNAVAILABLE;
    atomic_fetch_add(&s->configure_calls, 1);
    /* Every endpoint once, then (if all were unavailable) keep trying for a while. */
    int64_t deadline = dbld_mono_ms() + 60000;
    for (size_t k = 0;; k++) {
        const char *addr = gs_ep_addr(s, (int)((size_t)ep + k) % (int)n_ep);
        rc = dbld_client_unary(dbld_client_get(addr), "/databuild.v1.JobConfigure/Configure",
                               &req.base, &databuild__v1__job_configure_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)out,
                               CONFIGURE_TIMEOUT_MS, 0, st);
        if (rc != DBLD_UNAVAILABLE || dbld_mono_ms() >= deadline) break;
        if (k + 1 >= n_ep) dbld_sleep_ms(200);
    }
    (void)job;
    return rc;
}

int gs_job_run(gs_service *s, int ep, const char *run, const char *br, Databuild__V1__Task *task,
               int64_t timeout_ms, int64_t defer_ms, gs_started_fn started, void *arg,
               dbld_arena *a, Databuild__V1__RunJobStarted **started_out,
               Databuild__V1__RunJobResponse **out, dbld_status *st)
{
    *started_out = NULL;
    Databuild__V1__RunJobRequest req = DATABUILD__V1__RUN_JOB_REQUEST__INIT;
    req.job_run_id = (char *)run;
    req.build_request_id = (char *)br;
    req.task = task;
    req.return_logs = 1; /* a short run's log comes with its result (task.c stores it) */
    /* The job service reports the spawn at once (were it to hold `started`
     * back, a job service lost in that window would leave no trace that the
     * process ran, and the run would be relaunched under the same id as if it
     * never started). The saving is made here: a run whose result comes
     * within defer_ms has its RUNNING written with the result (pending). */
    dbld_stream *strm = NULL;
    int rc = dbld_client_stream_open(dbld_client_get(gs_ep_addr(s, ep)),
                                     "/databuild.v1.JobRunner/RunStreamed", &req.base, timeout_ms,
                                     &strm, st);
    if (rc) return rc;
    int pending = 0;        /* started, not yet handed to started() */
    int64_t defer_left = 0; /* of defer_ms since the spawn, when pending */
    for (;;) {
        Databuild__V1__RunJobUpdate *u = NULL;
        rc = dbld_stream_next(strm, &databuild__v1__run_job_update__descriptor,
                              dbld_arena_allocator(a), (ProtobufCMessage **)&u,
                              pending ? defer_left : RUN_STOP_POLL_MS, st);
        int expired = !u && rc == DBLD_DEADLINE_EXCEEDED && !dbld_stream_done(strm);
        if (expired && pending) { /* a longer run: say so now */
            pending = 0;
            if (started) started(arg, *started_out);
            continue;
        }
        if (expired && !atomic_load(&s->stopping)) continue;
        if (expired) { /* shutdown: closing the stream makes the job service stop the run */
            rc = dbld_status_set(st, DBLD_UNAVAILABLE, "the graph service is shutting down");
            break;
        }
        if (!u) {
            if (rc == 0)
                rc = dbld_status_set(st, DBLD_UNAVAILABLE,
                                     "the job service ended the run without a result");
            break;
        }
        if (u->update_case == DATABUILD__V1__RUN_JOB_UPDATE__UPDATE_STARTED && u->started) {
            *started_out = u->started;
            int64_t age_ms = (dbld_now_ns() - u->started->start_time_ns) / 1000000;
            defer_left = defer_ms - (age_ms > 0 ? age_ms : 0);
            pending = defer_left > 0;
            if (!pending && started) started(arg, u->started);
        } else if (u->update_case == DATABUILD__V1__RUN_JOB_UPDATE__UPDATE_RESULT && u->result) {
            *out = u->result;
            break;
        }
    }
    if (pending && rc != 0 && started) started(arg, *started_out); /* no result: say it ran */
    dbld_stream_close(strm);
    return rc;
}

int gs_job_cancel(gs_service *s, int ep, const char *run, const char *reason, int *found,
                  dbld_status *st)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__CancelJobRunRequest req = DATABUILD__V1__CANCEL_JOB_RUN_REQUEST__INIT;
    req.job_run_id = (char *)run;
    req.reason = (char *)reason;
    Databuild__V1__CancelJobRunResponse *resp = NULL;
    int rc = dbld_client_unary(dbld_client_get(gs_ep_addr(s, ep)), "/databuild.v1.JobRunner/Cancel",
                               &req.base, &databuild__v1__cancel_job_run_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 5000, 0, st);
    *found = rc == 0 && resp && resp->found;
    dbld_arena_destroy(a);
    return rc;
}
