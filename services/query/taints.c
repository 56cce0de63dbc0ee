/* taints.c - ListTaints, GetTaintSummary, PutTaints.
 *
 * A taint is one TaintEvent; its taint_id is the event's event_id (the
 * taints projection's key). PutTaints appends, in one Append (all or
 * nothing), a TaintEvent (refs, created_at = now, source - API_REQUEST when
 * absent - and comment) and one PartitionInvalidationEvent per ref (reason:
 * the comment, or "tainted"). The event log then marks those partitions
 * tainted and sets last_invalidated_at, so builds stop skipping them.
 *
 * ListTaints: newest first; tainted_at_until is an exclusive upper bound and
 * min_tainted_at the oldest tainted_at of the page (pass it as the next
 * tainted_at_until; an empty page ends the listing).
 */
#include "query.h"

#include "dbld/eventlog_client.h"
#include "dbld/util.h"

#include <inttypes.h>

#define TAINT_COLS "t.event_id, t.refs, t.source_code, t.comment, t.created_ns"
#define LIST_SQL "SELECT " TAINT_COLS " FROM taints t WHERE %s"

static Databuild__V1__PartitionTaintSummary *taint_from_row(dbld_arena *a, const dbld_res *res,
                                                            int i)
{
    Databuild__V1__PartitionTaintSummary *t =
        dbld_arena_msg(a, &databuild__v1__partition_taint_summary__descriptor);
    t->taint_id = dbld_arena_strdup(a, dbld_res_get(res, i, 0));
    char **refs = q_parse_array(a, dbld_res_get(res, i, 1), &t->n_refs);
    t->refs = q_refs(a, refs, t->n_refs);
    t->source = q_source_type(a, (int)dbld_res_i64(res, i, 2));
    t->comment = dbld_arena_strdup(a, dbld_res_get(res, i, 3));
    int64_t ts = dbld_res_i64(res, i, 4);
    t->tainted_at = ts > 0 ? (uint64_t)ts : 0;
    return t;
}

int q_list_taints(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    const Databuild__V1__ListTaintsRequest *req = (const Databuild__V1__ListTaintsRequest *)req_msg;
    dbld_arena *a = r->a;
    q_pager pg = {.sql = LIST_SQL,
                  .n = 0,
                  .params = NULL,
                  .ts_col = "t.created_ns",
                  .key_col = "t.event_id",
                  .ts_field = 4,
                  .desc = 1,
                  .cursor = req->tainted_at_until > (uint64_t)INT64_MAX
                                ? INT64_MAX
                                : (int64_t)req->tainted_at_until,
                  .limit = Q_PAGE};
    dbld_res *res;
    int n, more;
    int rc = q_page(r, &pg, &res, &n, &more, st);
    if (rc) return rc;
    Databuild__V1__ListTaintsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_taints_response__descriptor);
    resp->taints = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *resp->taints);
    for (int i = 0; i < n; i++)
        resp->taints[resp->n_taints++] = taint_from_row(a, res, i);
    resp->min_tainted_at = n ? resp->taints[n - 1]->tainted_at : 0;
    dbld_res_free(res);
    *resp_msg = &resp->base;
    return 0;
}

int q_get_taint_summary(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                        dbld_status *st)
{
    const Databuild__V1__TaintSummaryRequest *req =
        (const Databuild__V1__TaintSummaryRequest *)req_msg;
    if (!*req->taint_id) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "taint_id is required");
    const char *p[] = {req->taint_id};
    dbld_res *res = NULL;
    int rc = q_exec_prepared(r, "q_taint_row",
                             "SELECT " TAINT_COLS " FROM taints t WHERE t.event_id = $1", 1, p,
                             &res, st);
    if (rc) return rc;
    if (dbld_res_rows(res) == 0) {
        dbld_res_free(res);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no taint \"%.200s\"", req->taint_id);
    }
    Databuild__V1__TaintSummaryResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__taint_summary_response__descriptor);
    resp->taint = taint_from_row(r->a, res, 0);
    dbld_res_free(res);
    *resp_msg = &resp->base;
    return 0;
}

int q_put_taints(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                 dbld_status *st)
{
    const Databuild__V1__PutTaintsRequest *req = (const Databuild__V1__PutTaintsRequest *)req_msg;
    dbld_arena *a = r->a;
    size_t n = req->n_refs;
    if (n == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "refs is required (at least one ref)");
    for (size_t i = 0; i < n; i++)
        if (!req->refs[i] || !*req->refs[i]->str)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "refs[%zu] is empty", i);
    int64_t now = dbld_now_ns();
    char id[37];
    dbld_uuid_v4(id);
    Databuild__V1__TaintEvent *te = dbld_arena_msg(a, &databuild__v1__taint_event__descriptor);
    te->n_refs = n;
    te->refs = req->refs;
    te->created_at = (uint64_t)now;
    te->source_type = q_source_type(a, req->source ? req->source->code
                                                   : DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST);
    if (req->source && *req->source->name) te->source_type->name = req->source->name;
    te->comment = req->comment;
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, (n + 1) * sizeof *evs);
    evs[0] = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    evs[0]->event_id = dbld_arena_strdup(a, id);
    evs[0]->timestamp = now;
    evs[0]->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT;
    evs[0]->taint_event = te;
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__PartitionInvalidationEvent *pi =
            dbld_arena_msg(a, &databuild__v1__partition_invalidation_event__descriptor);
        pi->partition_ref = req->refs[i];
        pi->reason = *req->comment ? req->comment : "tainted";
        Databuild__V1__BuildEvent *ev = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        ev->timestamp = now;
        ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT;
        ev->partition_invalidation_event = pi;
        evs[i + 1] = ev;
    }
    int rc = dbld_eventlog_append(r->q->cfg->shared.peers.eventlog, evs, n + 1, a, NULL,
                                  r->timeout_ms, st);
    if (rc)
        return dbld_status_prefix(st, "could not record the taint in the event log at %s",
                                  r->q->cfg->shared.peers.eventlog);
    Databuild__V1__PutTaintsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__put_taints_response__descriptor);
    resp->taint_id = evs[0]->event_id;
    *resp_msg = &resp->base;
    return 0;
}
