/* eventlog_client.c - thin, retry-safe wrappers over the EventLog RPCs. */
#include "dbld/eventlog_client.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

int dbld_eventlog_append(const char *target, Databuild__V1__BuildEvent *const *events, size_t n,
                         dbld_arena *a, int64_t *idx_out, int64_t timeout_ms, dbld_status *st)
{
    return dbld_eventlog_append_fenced(target, NULL, NULL, events, n, NULL, 0, a, idx_out,
                                       timeout_ms, st);
}

int dbld_eventlog_append_fenced(const char *target, const char *build_request_id, const char *owner,
                                Databuild__V1__BuildEvent *const *events, size_t n,
                                Databuild__V1__JobLogEntry *const *logs, size_t n_logs,
                                dbld_arena *a, int64_t *idx_out, int64_t timeout_ms,
                                dbld_status *st)
{
    for (size_t i = 0; i < n; i++) {
        if (!events[i]->event_id || !*events[i]->event_id) {
            char id[37];
            dbld_uuid_v4(id);
            events[i]->event_id = dbld_arena_strdup(a, id);
        }
    }
    Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
    req.n_events = n;
    req.events = (Databuild__V1__BuildEvent **)events;
    req.job_logs = (Databuild__V1__JobLogEntry **)logs;
    req.n_job_logs = n_logs;
    Databuild__V1__LeaseFence fence = DATABUILD__V1__LEASE_FENCE__INIT;
    if (build_request_id) {
        fence.build_request_id = (char *)build_request_id;
        fence.owner = (char *)owner;
        req.fence = &fence;
    }
    ProtobufCMessage *resp = NULL;
    int rc = dbld_client_unary(dbld_client_get(target), "/databuild.v1.EventLog/Append", &req.base,
                               &databuild__v1__append_response__descriptor, dbld_arena_allocator(a),
                               &resp, timeout_ms, DBLD_CALL_IDEMPOTENT, st);
    if (rc) return rc;
    const Databuild__V1__AppendResponse *r = (const Databuild__V1__AppendResponse *)resp;
    if (r->n_events != n)
        return dbld_status_set(st, DBLD_INTERNAL,
                               "event log acknowledged %zu events, %zu were sent", r->n_events, n);
    for (size_t i = 0; idx_out && i < n; i++)
        idx_out[i] = r->events[i]->idx;
    return 0;
}

int dbld_eventlog_list(const char *target, const Databuild__V1__EventFilter *filter,
                       int64_t start_idx, uint32_t limit, dbld_arena *a,
                       Databuild__V1__EventPage **page, int64_t timeout_ms, dbld_status *st)
{
    Databuild__V1__ListEventsRequest req = DATABUILD__V1__LIST_EVENTS_REQUEST__INIT;
    req.filter = (Databuild__V1__EventFilter *)filter;
    req.start_idx = start_idx;
    req.limit = limit;
    return dbld_client_unary(dbld_client_get(target), "/databuild.v1.EventLog/List", &req.base,
                             &databuild__v1__event_page__descriptor, dbld_arena_allocator(a),
                             (ProtobufCMessage **)page, timeout_ms, DBLD_CALL_IDEMPOTENT, st);
}
