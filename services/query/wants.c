/* wants.c - ListWants, GetWantSummary, PutWants.
 *
 * PutWants checks every ref against the graph config (it must be produced by
 * a job - graph.jobs[].outputs, matched in full - or match graph.external),
 * then appends one WantEvent per IndividualWantRequest, all in one Append to
 * the event log (so they are recorded together or not at all): a new UUID as
 * want_id, requested_partitions = [ref], the request's source (API_REQUEST
 * when absent) and comment. It answers one CreatedWant per ref, in order.
 *
 * The seed's WantEvent has no fields for data_timestamp, ttl_seconds and
 * sla_seconds, yet PartitionWant and ListWantsRequest.ttl_until use them. We
 * carry them inside the WantEvent as the fields of
 * databuild.v1.WantEventTerms (databuild_ext.proto, field numbers 1001..1003):
 * protobuf readers built from the seed skip them as unknown fields, and the
 * event log stores the event bytes as they are.
 *
 * ListWants: newest first by created time; requested_until is an exclusive
 * upper bound and min_requested_at the oldest created time of the page (pass
 * it as the next requested_until; an empty page ends the listing).
 * ttl_until keeps wants that are still wanted at that time: no TTL, or
 * created_at + ttl_seconds after ttl_until. All times are Unix nanoseconds
 * except the *_seconds durations. A want's `partitions` shows the current
 * status of each of its refs that the graph produces; refs matching
 * graph.external are reported in external_partitions instead.
 */
#include "query.h"

#include "dbld/db_domain.h"

#include "dbld/eventlog_client.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <string.h>

#define TERM_DATA_TS DBLD_WANT_TERM_DATA_TS
#define TERM_TTL DBLD_WANT_TERM_TTL
#define TERM_SLA DBLD_WANT_TERM_SLA

#define WANT_COLS "w.want_id, w.refs, w.source_code, w.comment, w.created_ns, e.payload"
#define WANT_FROM " FROM wants w LEFT JOIN events e ON e.idx = w.last_idx"

#define BATCH_SQL                                                                                  \
    "SELECT " WANT_COLS WANT_FROM " WHERE ($1::bigint = 0 OR w.created_ns < $1::bigint)"           \
    " AND ($2::bigint = 0 OR (w.created_ns, w.want_id) < ($2::bigint, $3::text))"                  \
    " ORDER BY w.created_ns DESC, w.want_id DESC LIMIT $4::int"
#define BATCH 256

#define PARTS_SQL                                                                                  \
    "SELECT p.ref, p.status, p.updated_ns, coalesce(h.builds, 0), coalesce(h.invalidations, 0),"   \
    " coalesce((SELECT j.build_request_id FROM job_runs j WHERE j.target_partitions @> "           \
    "ARRAY[p.ref]"                                                                                 \
    "           AND j.status = " DBLD_SQL_JOB_COMPLETED                                            \
    " ORDER BY j.updated_ns DESC LIMIT 1), '')"                                                    \
    " FROM partitions p LEFT JOIN LATERAL (SELECT"                                                 \
    "   count(DISTINCT e.build_request_id) FILTER (WHERE e.kind = " DBLD_SQL_KIND_PARTITION        \
    " AND e.build_request_id <> "                                                                  \
    "'') AS builds,"                                                                               \
    "   count(*) FILTER (WHERE e.kind = " DBLD_SQL_KIND_INVALIDATION ") AS invalidations"          \
    "   FROM events e WHERE e.partition_refs @> ARRAY[p.ref]) h ON true"                           \
    " WHERE p.ref = ANY($1::text[])"

/* ---- reading ---- */

typedef struct want_row {
    Databuild__V1__PartitionWantSummary *sum;
    char **refs;
    size_t n_refs;
    int64_t created;
} want_row;

/* A want from one row of "SELECT WANT_COLS ...". */
static want_row want_from_row(dbld_arena *a, const dbld_res *res, int i)
{
    want_row w = {0};
    Databuild__V1__PartitionWantSummary *s =
        dbld_arena_msg(a, &databuild__v1__partition_want_summary__descriptor);
    Databuild__V1__PartitionWant *pw =
        dbld_arena_msg(a, &databuild__v1__partition_want__descriptor);
    pw->want_id = dbld_arena_strdup(a, dbld_res_get(res, i, 0));
    w.refs = q_parse_array(a, dbld_res_get(res, i, 1), &w.n_refs);
    pw->ref = q_ref(a, w.n_refs ? w.refs[0] : "");
    w.created = dbld_res_i64(res, i, 4);
    pw->created_at = w.created > 0 ? (uint64_t)w.created : 0;
    Databuild__V1__BuildEvent *ev =
        dbld_res_null(res, i, 5) ? NULL : q_decode_event(a, dbld_res_get(res, i, 5));
    if (ev && ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT) {
        const ProtobufCMessage *m = &ev->want_event->base;
        pw->data_timestamp = dbld_pb_unknown_varint(m, TERM_DATA_TS);
        pw->ttl_seconds = dbld_pb_unknown_varint(m, TERM_TTL);
        pw->sla_seconds = dbld_pb_unknown_varint(m, TERM_SLA);
    }
    s->want = pw;
    s->comment = dbld_arena_strdup(a, dbld_res_get(res, i, 3));
    w.sum = s;
    return w;
}

static int wanted_at(const want_row *w, uint64_t t)
{
    uint64_t ttl = w->sum->want->ttl_seconds;
    if (!t || !ttl) return 1;
    return w->sum->want->created_at + ttl * 1000000000ULL > t;
}

/* Fill partitions / external_partitions of every want with current statuses. */
static int fill_partitions(q_req *r, want_row *ws, size_t n, dbld_status *st)
{
    dbld_arena *a = r->a;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += ws[i].n_refs;
    if (!total) return 0;
    char **all = dbld_arena_alloc(a, total * sizeof *all);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < ws[i].n_refs; j++)
            all[k++] = ws[i].refs[j];
    const char *p[] = {q_text_array(a, all, total)};
    dbld_res *res = NULL;
    int rc = q_exec(r, PARTS_SQL, 1, p, &res, st);
    if (rc) return rc;
    dbld_strmap rows;
    dbld_strmap_init(&rows, a);
    size_t n_rows = 0;
    int added;
    for (int i = 0; i < dbld_res_rows(res); i++)
        dbld_strmap_index(&rows, dbld_arena_strdup(a, dbld_res_get(res, i, 0)), &n_rows, &added);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__PartitionWantSummary *s = ws[i].sum;
        s->partitions = dbld_arena_alloc(a, (ws[i].n_refs + 1) * sizeof *s->partitions);
        s->external_partitions =
            dbld_arena_alloc(a, (ws[i].n_refs + 1) * sizeof *s->external_partitions);
        for (size_t j = 0; j < ws[i].n_refs; j++) {
            const char *ref = ws[i].refs[j];
            size_t row = dbld_strmap_find(&rows, ref);
            int status = row == DBLD_STRMAP_NONE ? 0 : (int)dbld_res_i64(res, (int)row, 1);
            if (q_ref_kind(r->q, ref, NULL) == 2) {
                Databuild__V1__LabeledPartitionBuildStatus *l =
                    dbld_arena_msg(a, &databuild__v1__labeled_partition_build_status__descriptor);
                l->ref = q_ref(a, ref);
                l->status = dbld_arena_msg(a, &databuild__v1__partition_build_status__descriptor);
                l->status->ref = l->ref;
                l->status->status = status;
                s->external_partitions[s->n_external_partitions++] = l;
                continue;
            }
            Databuild__V1__PartitionSummary *ps =
                dbld_arena_msg(a, &databuild__v1__partition_summary__descriptor);
            ps->partition_ref = q_ref(a, ref);
            ps->status_code = status;
            ps->status_name =
                (char *)q_enum_name(&databuild__v1__partition_status__descriptor, status);
            if (row != DBLD_STRMAP_NONE) {
                ps->last_updated = dbld_res_i64(res, (int)row, 2);
                ps->builds_count = (uint32_t)dbld_res_i64(res, (int)row, 3);
                ps->invalidation_count = (uint32_t)dbld_res_i64(res, (int)row, 4);
                ps->last_successful_build = dbld_arena_strdup(a, dbld_res_get(res, (int)row, 5));
            }
            s->partitions[s->n_partitions++] = ps;
        }
    }
    dbld_res_free(res);
    return 0;
}

int q_list_wants(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                 dbld_status *st)
{
    const Databuild__V1__ListWantsRequest *req = (const Databuild__V1__ListWantsRequest *)req_msg;
    dbld_arena *a = r->a;
    int64_t until =
        req->requested_until > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)req->requested_until;
    size_t cap = Q_PAGE + 1, n = 0;
    want_row *page = dbld_arena_alloc(a, cap * sizeof *page);
    const char *key_ts = "0", *key_id = "";
    int done = 0, rc = 0;
    while (!done && !rc) {
        const char *p[] = {q_i64(a, until), key_ts, key_id, q_i64(a, BATCH)};
        dbld_res *res = NULL;
        rc = q_exec(r, BATCH_SQL, 4, p, &res, st);
        if (rc) break;
        int rows = dbld_res_rows(res);
        for (int i = 0; i < rows && !done; i++) {
            want_row w = want_from_row(a, res, i);
            key_ts = q_i64(a, w.created);
            key_id = w.sum->want->want_id;
            if (!wanted_at(&w, req->ttl_until)) continue;
            if (n >= Q_PAGE && w.created != page[n - 1].created) {
                done = 1; /* more exist; the page ends at a timestamp change */
                break;
            }
            if (n == cap) {
                want_row *grown = dbld_arena_alloc(a, 2 * cap * sizeof *grown);
                memcpy(grown, page, n * sizeof *page);
                page = grown;
                cap *= 2;
            }
            page[n++] = w;
        }
        if (rows < BATCH) done = 1;
        dbld_res_free(res);
    }
    if (!rc) rc = fill_partitions(r, page, n, st);
    if (rc) return rc;
    Databuild__V1__ListWantsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_wants_response__descriptor);
    resp->wants = dbld_arena_alloc(a, (n + 1) * sizeof *resp->wants);
    for (size_t i = 0; i < n; i++)
        resp->wants[resp->n_wants++] = page[i].sum;
    rc = q_want_states(r, resp->wants, resp->n_wants, st);
    if (rc) return rc;
    resp->min_requested_at = n ? (uint64_t)page[n - 1].created : 0;
    *resp_msg = &resp->base;
    return 0;
}

int q_get_want_summary(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                       dbld_status *st)
{
    const Databuild__V1__WantSummaryRequest *req =
        (const Databuild__V1__WantSummaryRequest *)req_msg;
    if (!*req->want_id) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "want_id is required");
    const char *p[] = {req->want_id};
    dbld_res *res = NULL;
    int rc = q_exec_prepared(r, "q_want_row", "SELECT " WANT_COLS WANT_FROM " WHERE w.want_id = $1",
                             1, p, &res, st);
    if (rc) return rc;
    if (dbld_res_rows(res) == 0) {
        dbld_res_free(res);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no want \"%.200s\"", req->want_id);
    }
    want_row w = want_from_row(r->a, res, 0);
    dbld_res_free(res);
    rc = fill_partitions(r, &w, 1, st);
    if (!rc) rc = q_want_states(r, &w.sum, 1, st);
    if (rc) return rc;
    Databuild__V1__WantSummaryResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__want_summary_response__descriptor);
    resp->want = w.sum;
    *resp_msg = &resp->base;
    return 0;
}

/* ---- PutWants ---- */

static Databuild__V1__WantSource *want_source(dbld_arena *a, const Databuild__V1__WantSource *in)
{
    Databuild__V1__WantSource *s = dbld_arena_msg(a, &databuild__v1__want_source__descriptor);
    int code = in && in->source_type ? in->source_type->code
                                     : DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST;
    s->source_type = q_source_type(a, code);
    if (in && in->source_type && *in->source_type->name)
        s->source_type->name = in->source_type->name;
    return s;
}

int q_put_wants(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                dbld_status *st)
{
    const Databuild__V1__PutWantsRequest *req = (const Databuild__V1__PutWantsRequest *)req_msg;
    dbld_arena *a = r->a;
    size_t n = req->n_wants;
    if (n == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "wants is required (at least one want)");
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__IndividualWantRequest *w = req->wants[i];
        if (!w->ref || !*w->ref->str)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "wants[%zu].ref is required", i);
        if (q_ref_kind(r->q, w->ref->str, NULL) == 0)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "wants[%zu].ref \"%.200s\" is produced by no job of the graph"
                                   " and is not an external dependency",
                                   i, w->ref->str);
    }
    Databuild__V1__WantSource *source = want_source(a, req->source);
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, n * sizeof *evs);
    Databuild__V1__PutWantsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__put_wants_response__descriptor);
    resp->wants = dbld_arena_alloc(a, n * sizeof *resp->wants);
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__IndividualWantRequest *w = req->wants[i];
        char id[37];
        dbld_uuid_v4(id);
        Databuild__V1__WantEvent *we = dbld_arena_msg(a, &databuild__v1__want_event__descriptor);
        we->want_id = dbld_arena_strdup(a, id);
        we->n_requested_partitions = 1;
        we->requested_partitions = dbld_arena_alloc(a, sizeof *we->requested_partitions);
        we->requested_partitions[0] = q_ref(a, w->ref->str);
        we->source = source;
        we->comment = req->comment;
        dbld_pb_add_unknown_varint(a, &we->base, TERM_DATA_TS, w->date_timestamp);
        dbld_pb_add_unknown_varint(a, &we->base, TERM_TTL, w->ttl_seconds);
        dbld_pb_add_unknown_varint(a, &we->base, TERM_SLA, w->sla_seconds);
        Databuild__V1__BuildEvent *ev = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT;
        ev->want_event = we;
        evs[i] = ev;
        Databuild__V1__CreatedWant *cw =
            dbld_arena_msg(a, &databuild__v1__created_want__descriptor);
        cw->ref = we->requested_partitions[0];
        cw->want_id = we->want_id;
        resp->wants[resp->n_wants++] = cw;
    }
    int rc =
        dbld_eventlog_append(r->q->cfg->shared.peers.eventlog, evs, n, a, NULL, r->timeout_ms, st);
    if (rc)
        return dbld_status_prefix(st, "could not record wants in the event log at %s",
                                  r->q->cfg->shared.peers.eventlog);
    *resp_msg = &resp->base;
    return 0;
}
