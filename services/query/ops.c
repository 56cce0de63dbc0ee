/* ops.c - the QueryOps extension service (databuild_ext.proto):
 *
 * GetJobLogs reads the job_logs table (written by the event log's JobLogs
 * service from the job wrapper's JobLogEntry stream). Entries come oldest
 * first by (timestamp, sequence number); since_timestamp is an exclusive
 * lower bound in Unix nanoseconds (a value below 1e11 is taken as seconds,
 * like the wrapper's timestamps), so the next page is asked for with the
 * last entry's timestamp. min_level filters log lines (LogMessage.level >=
 * min_level); metrics, wrapper events and manifests always pass. An unknown
 * job_run_id is NOT_FOUND.
 *
 * limit (default Q_LOGS_DEFAULT, capped at Q_LOGS_MAX) is the seed's
 * "maximum number of entries to return", and paging must still lose and
 * repeat nothing with a timestamp as the only cursor. So a page never
 * splits a run of equal timestamps: when the entry after the limit shares
 * the timestamp of the page's last entries, the page ends before that run
 * (the next page starts with it) - fewer than limit entries, has_more set.
 * The one exception: a run of equal timestamps longer than limit on its own
 * (limit 1 and two entries of one nanosecond, or a job stamping whole
 * seconds) cannot be paged through with since_timestamp, so that run is
 * returned whole as one page.
 *
 * CancelBuild checks that the build request exists, then forwards to the
 * graph service's GraphBuilder.Cancel (shared.peers.graph), which owns
 * running builds; its status comes back unchanged.
 */
#include "query.h"

#include <inttypes.h>

#define LOGS_SQL                                                                                   \
    "SELECT seq, ts_ns, entry FROM job_logs WHERE job_run_id = $1"                                 \
    " AND (level < 0 OR level >= $2::int) AND %s"

int q_get_job_logs(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    const Databuild__V1__JobLogsRequest *req = (const Databuild__V1__JobLogsRequest *)req_msg;
    dbld_arena *a = r->a;
    if (!*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    if (req->min_level < 0 || req->min_level > 3)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "min_level must be 0..3 (DEBUG..ERROR), got %d", req->min_level);
    if (req->since_timestamp < 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "since_timestamp must be >= 0");
    int64_t since = req->since_timestamp;
    if (since > 0 && since < 100000000000LL) since *= 1000000000LL;
    int limit = req->limit == 0           ? Q_LOGS_DEFAULT
                : req->limit > Q_LOGS_MAX ? Q_LOGS_MAX
                                          : (int)req->limit;
    const char *p[] = {req->job_run_id, q_i64(a, req->min_level)};
    q_pager pg = {.sql = LOGS_SQL,
                  .n = 2,
                  .params = p,
                  .ts_col = "ts_ns",
                  .key_col = "seq",
                  .ts_field = 1,
                  .desc = 0,
                  .cursor = since,
                  .limit = limit,
                  .hard_limit = 1};
    dbld_res *res;
    int n, more;
    int rc = q_page(r, &pg, &res, &n, &more, st);
    if (rc) return rc;
    if (n == 0) {
        dbld_res *k = NULL;
        rc = q_exec(r,
                    "SELECT 1 FROM job_runs WHERE job_run_id = $1 UNION ALL"
                    " SELECT 1 FROM job_logs WHERE job_run_id = $1 LIMIT 1",
                    1, p, &k, st);
        int known = !rc && dbld_res_rows(k) > 0;
        dbld_res_free(k);
        if (!rc && !known)
            rc = dbld_status_set(st, DBLD_NOT_FOUND, "no job run \"%.200s\"", req->job_run_id);
        if (rc) {
            dbld_res_free(res);
            return rc;
        }
    }
    Databuild__V1__JobLogsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__job_logs_response__descriptor);
    resp->entries = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *resp->entries);
    for (int i = 0; i < n && !rc; i++) {
        uint8_t *buf;
        size_t len;
        Databuild__V1__JobLogEntry *e = NULL;
        if (dbld_bytea_decode(a, dbld_res_get(res, i, 2), &buf, &len) == 0)
            e = (Databuild__V1__JobLogEntry *)protobuf_c_message_unpack(
                &databuild__v1__job_log_entry__descriptor, dbld_arena_allocator(a), len, buf);
        if (!e)
            rc = dbld_status_set(st, DBLD_DATA_LOSS,
                                 "stored log entry %s of job run \"%.200s\" does not decode",
                                 dbld_res_get(res, i, 0), req->job_run_id);
        resp->entries[resp->n_entries++] = e;
    }
    dbld_res_free(res);
    if (rc) return rc;
    resp->has_more = more;
    *resp_msg = &resp->base;
    return 0;
}

int q_cancel_build(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    const Databuild__V1__CancelBuildRequest *req =
        (const Databuild__V1__CancelBuildRequest *)req_msg;
    if (!*req->build_request_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "build_request_id is required");
    const char *p[] = {req->build_request_id};
    dbld_res *res = NULL;
    int rc =
        q_exec(r, "SELECT status FROM build_requests WHERE build_request_id = $1", 1, p, &res, st);
    if (rc) return rc;
    int found = dbld_res_rows(res) > 0;
    dbld_res_free(res);
    if (!found)
        return dbld_status_set(st, DBLD_NOT_FOUND, "no build request \"%.200s\"",
                               req->build_request_id);
    q_req_done(r); /* do not hold a connection while the graph service works */
    const char *graph = r->q->cfg->shared.peers.graph;
    if (!graph || !*graph)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "no graph service configured (shared.peers.graph)");
    ProtobufCMessage *out = NULL;
    rc = dbld_client_unary(dbld_client_get(graph), "/databuild.v1.GraphBuilder/Cancel", req_msg,
                           &databuild__v1__cancel_build_response__descriptor,
                           dbld_arena_allocator(r->a), &out, r->timeout_ms, 0, st);
    if (rc) return dbld_status_prefix(st, "graph service at %s", graph);
    *resp_msg = out;
    return 0;
}
