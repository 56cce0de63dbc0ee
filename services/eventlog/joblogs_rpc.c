/* joblogs_rpc.c - databuild.v1.JobLogs: the job wrapper's log entries, stored
 * per job run (idempotent on (job_run_id, sequence_number)) and paged back in
 * sequence order with the seed's JobLogsRequest/JobLogsResponse. */
#include "eventlog_rpc.h"
#include "databuild_ext.pb-c.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LOGS_DEFAULT 1000
#define LOGS_MAX 10000

/* JobLogEntry.timestamp is a string: unix nanoseconds (seconds accepted). */
static int64_t entry_ts(const char *s)
{
    char *end = NULL;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!end || *end || v <= 0) return dbld_now_ns();
    return v < 100000000000LL ? v * 1000000000LL : v;
}

typedef struct append_ctx {
    el_async as; /* first */
    el_joblogs logs;
} append_ctx;

static ProtobufCMessage *append_respond(el_async *as, dbld_arena *a)
{
    Databuild__V1__AppendJobLogsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__append_job_logs_response__descriptor);
    resp->stored = ((append_ctx *)as)->logs.stored;
    return &resp->base;
}

int el_joblogs_prepare(dbld_arena *a, Databuild__V1__JobLogEntry *const *entries, size_t n,
                       el_joblogs *logs, dbld_status *st)
{
    *logs = (el_joblogs){.n = n};
    const char **col[6];
    for (int c = 0; c < 6; c++)
        col[c] = logs->cols[c] = dbld_arena_alloc(a, (n + 1) * sizeof *col[c]);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__JobLogEntry *e = entries[i];
        if (!*e->job_id)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "entry %zu: job_id is required", i);
        if (e->sequence_number == 0)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "entry %zu: sequence_number must start at 1", i);
        if (e->sequence_number > (uint64_t)INT64_MAX) /* stored as a bigint */
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "entry %zu: sequence_number %" PRIu64 " is above %" PRId64, i,
                                   e->sequence_number, INT64_MAX);
        if (e->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT__NOT_SET)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "entry %zu: content is not set", i);
        size_t len = protobuf_c_message_get_packed_size(&e->base);
        uint8_t *buf = dbld_arena_alloc(a, len + 1);
        protobuf_c_message_pack(&e->base, buf);
        col[0][i] = e->job_id;
        col[1][i] = dbld_arena_printf(a, "%" PRIu64, e->sequence_number);
        col[2][i] = dbld_arena_printf(a, "%" PRId64, entry_ts(e->timestamp));
        col[3][i] = dbld_arena_printf(a, "%d", (int)e->content_case);
        col[4][i] =
            dbld_arena_printf(a, "%d",
                              e->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG && e->log
                                  ? (int)e->log->level
                                  : -1);
        col[5][i] = dbld_hex_encode(a, buf, len);
    }
    return 0;
}

/* Nonblocking: validate, queue for the writer's group commit, answer from
 * append_respond. */
static int append(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    el_store *store = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__AppendJobLogsRequest *req =
        (const Databuild__V1__AppendJobLogsRequest *)req_msg;
    append_ctx *ctx = dbld_arena_alloc(a, sizeof *ctx);
    ctx->as = (el_async){call, append_respond};
    int rc = el_joblogs_prepare(a, req->entries, req->n_entries, &ctx->logs, st);
    if (rc) return rc;
    if (req->n_entries == 0) {
        *resp_msg = dbld_arena_msg(a, &databuild__v1__append_job_logs_response__descriptor);
        return 0;
    }
    /* Once queued the call belongs to the writer: touch nothing after. */
    rc = el_store_joblogs_async(store, &ctx->logs, a, el_async_done, ctx, st);
    return rc ? rc : DBLD_ASYNC;
}

typedef struct list_args {
    const Databuild__V1__JobLogsRequest *req;
    int limit;
    dbld_arena *a;
    Databuild__V1__JobLogsResponse *resp;
} list_args;

/* A page in timestamp order; since_timestamp is the cursor, so a page may
 * not end inside a run of equal timestamps (the next page, ts > since, would
 * skip the rest of it): it ends before such a run, and only a run longer
 * than the limit on its own comes whole (the query service's GetJobLogs
 * pages the same way). */
static int list_fn(dbld_db *db, void *arg, dbld_status *st)
{
    list_args *la = arg;
    const Databuild__V1__JobLogsRequest *req = la->req;
    const char *p[] = {req->job_run_id, dbld_arena_printf(la->a, "%" PRId64, req->since_timestamp),
                       dbld_arena_printf(la->a, "%d", req->min_level),
                       dbld_arena_printf(la->a, "%d", la->limit + 1)};
    dbld_res *r = NULL;
    int rc = dbld_db_exec(db,
                          "SELECT entry, ts_ns FROM job_logs WHERE job_run_id = $1"
                          " AND ts_ns > $2::bigint AND (level < 0 OR level >= $3::int)"
                          " ORDER BY ts_ns, seq LIMIT $4::int",
                          4, p, &r, st);
    if (rc) return rc;
    int rows = dbld_res_rows(r);
    if (rows == 0 && req->since_timestamp == 0) {
        /* Nothing at all: tell an unknown run from a run without logs yet. */
        dbld_res *k = NULL;
        rc = dbld_db_exec(db,
                          "SELECT 1 FROM job_runs WHERE job_run_id = $1 UNION ALL"
                          " SELECT 1 FROM job_logs WHERE job_run_id = $1 LIMIT 1",
                          1, p, &k, st);
        int known = !rc && dbld_res_rows(k) > 0;
        dbld_res_free(k);
        if (!rc && !known) {
            dbld_res_free(r);
            return dbld_status_set(st, DBLD_NOT_FOUND, "no job run \"%.200s\"", req->job_run_id);
        }
    }
    int take = rows > la->limit ? la->limit : rows;
    if (rows > la->limit) {
        while (take > 0 && strcmp(dbld_res_get(r, take - 1, 1), dbld_res_get(r, take, 1)) == 0)
            take--;
        if (take == 0) { /* one run of equal timestamps fills the page: all of it */
            const char *q[] = {req->job_run_id, dbld_res_get(r, 0, 1),
                               dbld_arena_printf(la->a, "%d", req->min_level)};
            dbld_res *all = NULL;
            rc = dbld_db_exec(db,
                              "SELECT entry, ts_ns FROM job_logs WHERE job_run_id = $1"
                              " AND ts_ns = $2::bigint AND (level < 0 OR level >= $3::int)"
                              " ORDER BY seq",
                              3, q, &all, st);
            dbld_res_free(r);
            if (rc) return rc;
            r = all;
            take = dbld_res_rows(r);
        }
    }
    Databuild__V1__JobLogsResponse *resp = la->resp;
    resp->has_more = rows > la->limit;
    resp->entries = dbld_arena_alloc(la->a, ((size_t)take + 1) * sizeof *resp->entries);
    for (int i = 0; i < take && !rc; i++) {
        uint8_t *buf;
        size_t len;
        if (dbld_bytea_decode(la->a, dbld_res_get(r, i, 0), &buf, &len) != 0 ||
            !(resp->entries[i] = (Databuild__V1__JobLogEntry *)protobuf_c_message_unpack(
                  &databuild__v1__job_log_entry__descriptor, dbld_arena_allocator(la->a), len,
                  buf)))
            rc = dbld_status_set(st, DBLD_DATA_LOSS, "stored log entry does not decode");
        else
            resp->n_entries++;
    }
    dbld_res_free(r);
    return rc;
}

static int list(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                dbld_status *st)
{
    const Databuild__V1__JobLogsRequest *req = (const Databuild__V1__JobLogsRequest *)req_msg;
    if (!*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    if (req->min_level < 0 || req->min_level > 3)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "min_level must be 0..3 (DEBUG..ERROR), got %d", req->min_level);
    list_args la = {.req = req,
                    .limit = req->limit == 0         ? LOGS_DEFAULT
                             : req->limit > LOGS_MAX ? LOGS_MAX
                                                     : (int)req->limit,
                    .a = dbld_call_arena(call)};
    la.resp = dbld_arena_msg(la.a, &databuild__v1__job_logs_response__descriptor);
    int rc = el_store_read_with_db(dbld_call_user(call), call, list_fn, &la, st);
    if (rc && rc != DBLD_NOT_FOUND) dbld_status_prefix(st, "could not list job logs");
    if (rc) return rc;
    *resp_msg = &la.resp->base;
    return 0;
}

static const dbld_method methods[] = {
    {"/databuild.v1.JobLogs/Append", &databuild__v1__append_job_logs_request__descriptor,
     &databuild__v1__append_job_logs_response__descriptor, append, NULL, DBLD_METHOD_NONBLOCKING},
    {"/databuild.v1.JobLogs/List", &databuild__v1__job_logs_request__descriptor,
     &databuild__v1__job_logs_response__descriptor, list, NULL},
};

const dbld_service el_joblogs_service = {
    .name = "databuild.v1.JobLogs",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
