/* leases_rpc.c - partition status lookups (PartitionClaims.Status: one row
 * per requested ref, in request order, so answering n refs is O(n)) and build
 * leases (BuildLeases: Renew, Orphans) that make graph-service crashes
 * recoverable. Plain reads/upserts on a pooled connection. */
#include "databuild_ext.pb-c.h"
#include "dbld/db_domain.h"
#include "dbld/util.h"
#include "eventlog_rpc.h"

#include <inttypes.h>
#include <string.h>

typedef struct q_args {
    dbld_arena *a;
    const char *p[4];
    dbld_res *res;
} q_args;

static int query_fn(dbld_db *db, void *arg, dbld_status *st, const char *sql, int n)
{
    q_args *q = arg;
    return dbld_db_exec(db, sql, n, q->p, &q->res, st);
}

static int status_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return query_fn(db, arg, st,
                    "SELECT u.ref, coalesce(p.status, 0), coalesce(p.tainted, false),"
                    " coalesce(p.build_request_id, ''), coalesce(p.job_run_id, ''),"
                    " coalesce(p.updated_ns, 0)"
                    " FROM unnest($1::text[]) WITH ORDINALITY AS u(ref, ord)"
                    " LEFT JOIN partitions p ON p.ref = u.ref ORDER BY u.ord",
                    1);
}

static int status(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    const Databuild__V1__PartitionStatusRequest *req =
        (const Databuild__V1__PartitionStatusRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    q_args q = {.a = a, .p = {dbld_pg_text_array(a, (const char *const *)req->refs, req->n_refs)}};
    int rc = el_store_with_db(dbld_call_user(call), status_fn, &q, st);
    if (rc) return rc;
    Databuild__V1__PartitionStatusResponse *resp =
        dbld_arena_msg(a, &databuild__v1__partition_status_response__descriptor);
    resp->n_partitions = req->n_refs;
    resp->partitions = dbld_arena_alloc(a, (req->n_refs + 1) * sizeof *resp->partitions);
    for (size_t i = 0; i < req->n_refs; i++) {
        Databuild__V1__PartitionState *ps =
            dbld_arena_msg(a, &databuild__v1__partition_state__descriptor);
        ps->ref = req->refs[i];
        int row = (int)i; /* one row per requested ref, in request order */
        if (row < dbld_res_rows(q.res)) {
            ps->status = (Databuild__V1__PartitionStatus)dbld_res_i64(q.res, row, 1);
            ps->tainted = dbld_res_get(q.res, row, 2)[0] == 't';
            ps->build_request_id = dbld_arena_strdup(a, dbld_res_get(q.res, row, 3));
            ps->job_run_id = dbld_arena_strdup(a, dbld_res_get(q.res, row, 4));
            ps->updated_ns = dbld_res_i64(q.res, row, 5);
        }
        resp->partitions[i] = ps;
    }
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

/* DISTINCT: an id given twice is renewed once (an upsert may not touch a
 * row twice); both copies are reported lost when the renewal is refused. */
static int renew_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return query_fn(db, arg, st,
                    "INSERT INTO build_leases AS l (build_request_id, owner, expires_ns)"
                    " SELECT DISTINCT u, $2::text, $3::bigint FROM unnest($1::text[]) u ORDER BY u"
                    " ON CONFLICT (build_request_id) DO UPDATE"
                    " SET owner = EXCLUDED.owner, expires_ns = EXCLUDED.expires_ns"
                    " WHERE l.owner = EXCLUDED.owner OR l.expires_ns < $4::bigint"
                    " RETURNING build_request_id",
                    4);
}

static int renew(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                 dbld_status *st)
{
    const Databuild__V1__RenewLeasesRequest *req =
        (const Databuild__V1__RenewLeasesRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    if (!*req->owner) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "renew: owner is required");
    int64_t now = dbld_now_ns();
    int64_t ttl = req->ttl_ms ? req->ttl_ms : 15000;
    q_args q = {.a = a,
                .p = {dbld_pg_text_array(a, (const char *const *)req->build_request_ids,
                                         req->n_build_request_ids),
                      req->owner, dbld_arena_printf(a, "%" PRId64, now + ttl * 1000000),
                      dbld_arena_printf(a, "%" PRId64, now)}};
    Databuild__V1__RenewLeasesResponse *resp =
        dbld_arena_msg(a, &databuild__v1__renew_leases_response__descriptor);
    if (req->n_build_request_ids) {
        int rc = el_store_with_db(dbld_call_user(call), renew_fn, &q, st);
        if (rc) return rc;
        resp->lost = dbld_arena_alloc(a, req->n_build_request_ids * sizeof *resp->lost);
        dbld_strmap renewed;
        dbld_res_index(q.res, 0, a, &renewed);
        for (size_t i = 0; i < req->n_build_request_ids; i++)
            if (!dbld_strmap_get(&renewed, req->build_request_ids[i], NULL))
                resp->lost[resp->n_lost++] = req->build_request_ids[i];
        dbld_res_free(q.res);
    }
    *resp_msg = &resp->base;
    return 0;
}

static int orphans_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return query_fn(db, arg, st,
                    "SELECT b.build_request_id, b.status, b.requested_partitions, b.comment,"
                    " b.want_id, coalesce(l.owner, '') FROM build_requests b"
                    " LEFT JOIN build_leases l ON l.build_request_id = b.build_request_id"
                    " WHERE b.status NOT IN (" DBLD_SQL_BUILD_TERMINAL ")"
                    " AND (l.owner IS NULL OR l.owner = $1 OR l.expires_ns < $2::bigint)"
                    " ORDER BY b.created_ns LIMIT 10000",
                    2);
}

static int orphans(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    const Databuild__V1__OrphansRequest *req = (const Databuild__V1__OrphansRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    if (!*req->owner)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "orphans: owner is required");
    q_args q = {.a = a, .p = {req->owner, dbld_arena_printf(a, "%" PRId64, dbld_now_ns())}};
    int rc = el_store_with_db(dbld_call_user(call), orphans_fn, &q, st);
    if (rc) return rc;
    Databuild__V1__OrphansResponse *resp =
        dbld_arena_msg(a, &databuild__v1__orphans_response__descriptor);
    int rows = dbld_res_rows(q.res);
    resp->builds = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->builds);
    for (int row = 0; row < rows; row++) {
        Databuild__V1__OrphanBuild *b = dbld_arena_msg(a, &databuild__v1__orphan_build__descriptor);
        b->build_request_id = dbld_arena_strdup(a, dbld_res_get(q.res, row, 0));
        b->status = (Databuild__V1__BuildRequestStatusCode)dbld_res_i64(q.res, row, 1);
        char **refs;
        size_t n;
        dbld_pg_parse_text_array(a, dbld_res_get(q.res, row, 2), &refs, &n);
        b->requested_partitions = dbld_arena_alloc(a, (n + 1) * sizeof *b->requested_partitions);
        for (size_t i = 0; i < n; i++) {
            Databuild__V1__PartitionRef *r =
                dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
            r->str = refs[i];
            b->requested_partitions[b->n_requested_partitions++] = r;
        }
        b->comment = dbld_arena_strdup(a, dbld_res_get(q.res, row, 3));
        b->want_id = dbld_arena_strdup(a, dbld_res_get(q.res, row, 4));
        b->previous_owner = dbld_arena_strdup(a, dbld_res_get(q.res, row, 5));
        resp->builds[resp->n_builds++] = b;
    }
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

static const dbld_method methods[] = {
    {"/databuild.v1.BuildLeases/Renew", &databuild__v1__renew_leases_request__descriptor,
     &databuild__v1__renew_leases_response__descriptor, renew, NULL},
    {"/databuild.v1.BuildLeases/Orphans", &databuild__v1__orphans_request__descriptor,
     &databuild__v1__orphans_response__descriptor, orphans, NULL},
};

const dbld_service el_leases_service = {
    .name = "databuild.v1.BuildLeases",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};

/* Status lives in PartitionClaims (see claims_rpc.c); exported for its table. */
int el_partition_status(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st)
{
    return status(call, req, resp, st);
}
