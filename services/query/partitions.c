/* partitions.c - ListPartitions and GetPartitionsSummary, from the
 * partitions projection (+ the events' GIN-indexed ref column for history).
 *
 * ListPartitions: sorted by ref; last_partition is an exclusive cursor (pass
 * the last ref of the previous page); pages of Q_PAGE; ref_pattern is a
 * PostgreSQL regular expression matched against the whole ref (anchored at
 * both ends, like EventFilter.partition_patterns), validated first so that
 * an invalid one is INVALID_ARGUMENT naming it; partition_status values are
 * ORed. To keep a page one cheap index range scan, a list entry's
 * past_build_request holds only the build request that last touched the
 * partition; GetPartitionsSummary gives the history: the build requests of
 * every event mentioning the ref, most recent first, at most Q_PAST_BUILDS.
 *
 * Both statements here are what bench/run_query.sh gives pgbench as "the
 * equivalent SQL"; keep them in step.
 *
 * The partition index (index.c) answers both from memory when it can (same
 * answers: it holds exactly what these statements read); otherwise, and
 * with query.index false, they run. GetPartitionsSummary of a stale
 * partition also says why (stale.c, read in the same pipeline); the index
 * leaves those to SQL. List entries carry the seed's fields only.
 */
#include "query.h"

#include "dbld/db_regex.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#define SUMMARY_SQL                                                                                \
    "SELECT p.status, p.updated_ns, p.last_invalidated_ns,"                                        \
    " ARRAY(SELECT e.build_request_id FROM events e WHERE e.partition_refs @> ARRAY[p.ref]"        \
    "       AND e.build_request_id <> '' GROUP BY e.build_request_id"                              \
    "       ORDER BY max(e.idx) DESC LIMIT 100)"                                                   \
    " FROM partitions p WHERE p.ref = $1"
_Static_assert(Q_PAST_BUILDS == 100, "SUMMARY_SQL's LIMIT is Q_PAST_BUILDS");

#define LIST_SQL                                                                                   \
    "SELECT p.ref, p.status, p.updated_ns, p.last_invalidated_ns, p.build_request_id"              \
    " FROM partitions p WHERE p.ref > $1"                                                          \
    " AND ($2::text IS NULL OR p.ref ~ ('^(?:' || $2::text || ')$'))"                              \
    " AND ($3::int[] IS NULL OR p.status = ANY($3::int[]))"                                        \
    " ORDER BY p.ref LIMIT 100"
_Static_assert(Q_PAGE == 100, "LIST_SQL's LIMIT is the page size");

static Databuild__V1__PartitionSummaryV2 *summary(dbld_arena *a, const char *ref, int status,
                                                  int64_t updated, int64_t invalidated)
{
    Databuild__V1__PartitionSummaryV2 *s =
        dbld_arena_msg(a, &databuild__v1__partition_summary_v2__descriptor);
    s->partition_ref = q_ref(a, ref);
    s->status = dbld_arena_msg(a, &databuild__v1__partition_status_v2__descriptor);
    s->status->code = status;
    s->status->name = (char *)q_enum_name(&databuild__v1__partition_status__descriptor, status);
    s->last_updated = updated > 0 ? (uint64_t)updated : 0;
    s->last_invalidated_at = invalidated > 0 ? (uint64_t)invalidated : 0;
    return s;
}

static ProtobufCMessage *summary_response(dbld_arena *a, Databuild__V1__PartitionSummaryV2 *s)
{
    Databuild__V1__PartitionSummaryResponse *resp =
        dbld_arena_msg(a, &databuild__v1__partition_summary_response__descriptor);
    resp->partition = s;
    return &resp->base;
}

static int summary_finish(q_req *r, q_job *j, int rc, ProtobufCMessage **resp_msg, dbld_status *st)
{
    const Databuild__V1__PartitionSummaryRequest *req = j->req;
    dbld_res *res = j->res[0];
    dbld_res *stale = j->res[1]; /* stale.c's statement */
    if (rc) {
        dbld_res_free(res);
        dbld_res_free(stale);
        return rc;
    }
    if (dbld_res_rows(res) == 0) {
        dbld_res_free(res);
        dbld_res_free(stale);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no partition \"%.200s\"", req->ref->str);
    }
    dbld_arena *a = r->a;
    Databuild__V1__PartitionSummaryV2 *s =
        summary(a, req->ref->str, (int)dbld_res_i64(res, 0, 0), dbld_res_i64(res, 0, 1),
                dbld_res_i64(res, 0, 2));
    s->past_build_request = q_parse_array(a, dbld_res_get(res, 0, 3), &s->n_past_build_request);
    dbld_res_free(res);
    q_stale_attach(a, s, q_stale_decode(a, stale));
    dbld_res_free(stale);
    *resp_msg = summary_response(a, s);
    return 0;
}

/* q_index_fn: the summary from the partition index. A stale partition's
 * summary carries the stale reason (stale.c), which the index does not
 * hold: the SQL path, which reads it in the same pipeline, answers it. */
static int summary_from_index(q_req *r, q_job *j, ProtobufCMessage **resp, dbld_status *st)
{
    (void)st;
    const Databuild__V1__PartitionSummaryRequest *req = j->req;
    q_index_part ip;
    if (!q_index_summary(r->q->index, r->a, req->ref->str, &ip)) return Q_INDEX_MISS;
    if (ip.tainted) return Q_INDEX_MISS;
    Databuild__V1__PartitionSummaryV2 *s =
        summary(r->a, ip.ref, ip.status, ip.updated, ip.invalidated);
    s->past_build_request = ip.past;
    s->n_past_build_request = ip.n_past;
    *resp = summary_response(r->a, s);
    return 0;
}

int q_get_partitions_summary(q_req *r, const ProtobufCMessage *req_msg, q_job *j, dbld_status *st)
{
    const Databuild__V1__PartitionSummaryRequest *req =
        (const Databuild__V1__PartitionSummaryRequest *)req_msg;
    if (!req->ref || !*req->ref->str)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "ref is required");
    j->index_fn = summary_from_index;
    const char **p = dbld_arena_alloc(r->a, sizeof *p);
    p[0] = req->ref->str;
    j->stmts[0] = (dbld_stmt){
        .name = "q_part_summary", .sql = SUMMARY_SQL, .n = 1, .params = p, .out = &j->res[0]};
    q_stale_stmt(r->a, req->ref->str, &j->stmts[1], &j->res[1]);
    j->n = 2;
    j->req = req;
    j->finish = summary_finish;
    return 0;
}

static int list_finish(q_req *r, q_job *j, int rc, ProtobufCMessage **resp_msg, dbld_status *st)
{
    const Databuild__V1__ListPartitionsRequest *req = j->req;
    dbld_res *res = j->res[1];
    dbld_res_free(j->res[0]);
    if (rc) {
        dbld_res_free(res);
        /* only a regex error is the pattern's (a bad status value is not) */
        if (strcmp(j->stmts[0].sqlstate, "2201B") == 0 ||
            strcmp(j->stmts[j->n - 1].sqlstate, "2201B") == 0) {
            dbld_status_prefix(st, "invalid ref_pattern \"%.200s\"", req->ref_pattern);
            r->db_failed = 0;
        }
        return rc;
    }
    dbld_arena *a = r->a;
    int n = dbld_res_rows(res);
    Databuild__V1__ListPartitionsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_partitions_response__descriptor);
    resp->refs = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *resp->refs);
    for (int i = 0; i < n; i++) {
        Databuild__V1__PartitionSummaryV2 *s =
            summary(a, dbld_arena_strdup(a, dbld_res_get(res, i, 0)), (int)dbld_res_i64(res, i, 1),
                    dbld_res_i64(res, i, 2), dbld_res_i64(res, i, 3));
        const char *last = dbld_res_get(res, i, 4);
        if (*last) {
            s->past_build_request = dbld_arena_alloc(a, sizeof *s->past_build_request);
            s->past_build_request[0] = dbld_arena_strdup(a, last);
            s->n_past_build_request = 1;
        }
        resp->refs[resp->n_refs++] = s;
    }
    dbld_res_free(res);
    if (req->ref_pattern && *req->ref_pattern) /* PostgreSQL accepted it */
        q_index_pattern_accepted(r->q->index, req->ref_pattern);
    *resp_msg = &resp->base;
    return 0;
}

/* q_index_fn: a page from the partition index. */
static int list_from_index(q_req *r, q_job *j, ProtobufCMessage **resp_msg, dbld_status *st)
{
    (void)st;
    const Databuild__V1__ListPartitionsRequest *req = j->req;
    const char *pattern = *req->ref_pattern ? req->ref_pattern : NULL;
    dbld_arena *a = r->a;
    int *codes = dbld_arena_alloc(a, (req->n_partition_status + 1) * sizeof *codes);
    for (size_t i = 0; i < req->n_partition_status; i++)
        codes[i] = (int)req->partition_status[i];
    q_index_part *parts;
    size_t n;
    if (!q_index_list(r->q->index, a, req->last_partition, pattern, codes, req->n_partition_status,
                      Q_PAGE, &parts, &n))
        return Q_INDEX_MISS;
    Databuild__V1__ListPartitionsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_partitions_response__descriptor);
    resp->refs = dbld_arena_alloc(a, (n + 1) * sizeof *resp->refs);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__PartitionSummaryV2 *s =
            summary(a, parts[i].ref, parts[i].status, parts[i].updated, parts[i].invalidated);
        if (*parts[i].last_build) {
            s->past_build_request = dbld_arena_alloc(a, sizeof *s->past_build_request);
            s->past_build_request[0] = (char *)parts[i].last_build;
            s->n_past_build_request = 1;
        }
        resp->refs[resp->n_refs++] = s;
    }
    *resp_msg = &resp->base;
    return 0;
}

int q_list_partitions(q_req *r, const ProtobufCMessage *req_msg, q_job *j, dbld_status *st)
{
    const Databuild__V1__ListPartitionsRequest *req =
        (const Databuild__V1__ListPartitionsRequest *)req_msg;
    dbld_arena *a = r->a;
    const char *pattern = *req->ref_pattern ? req->ref_pattern : NULL;
    if (pattern && dbld_regex_check(pattern, "ref_pattern", st)) return st->code;
    char **codes = dbld_arena_alloc(a, (req->n_partition_status + 1) * sizeof *codes);
    for (size_t i = 0; i < req->n_partition_status; i++) {
        /* bound as int[]: a value outside the enum is the caller's, not a database error */
        int64_t code = (int64_t)req->partition_status[i];
        if (code > INT32_MAX || code < INT32_MIN ||
            !protobuf_c_enum_descriptor_get_value(&databuild__v1__partition_status__descriptor,
                                                  (int)code))
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "partition_status[%zu]: %" PRId64 " is not a PartitionStatus", i,
                                   code);
        codes[i] = (char *)q_i64(a, code);
    }
    j->index_fn = list_from_index;
    const char **p = dbld_arena_alloc(a, 4 * sizeof *p);
    p[0] = req->last_partition;
    p[1] = pattern;
    p[2] = q_text_array(a, codes, req->n_partition_status);
    p[3] = pattern;
    /* validation and the page in one round trip; a bad pattern fails the first */
    size_t k = 0;
    if (pattern) j->stmts[k++] = (dbld_stmt){.sql = "SELECT '' ~ $1", .n = 1, .params = p + 3};
    j->stmts[k++] = (dbld_stmt){.sql = LIST_SQL, .n = 3, .params = p, .out = &j->res[1]};
    j->n = k;
    j->req = req;
    j->finish = list_finish;
    return 0;
}
