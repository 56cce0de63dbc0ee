/* processes_rpc.c - databuild.v1.ProcessStore: the state of the background
 * processes (proto/databuild_process.proto, schema in
 * migrations/0005_processes.sql) for the graph-service replicas that run
 * them, and the writes the query service forwards (settings, run now).
 *
 * Leases: Acquire takes a process whose lease has expired (or was never
 * held) with a new fencing token (lease_token + 1) and renews the caller's
 * own leases once a third of the TTL has passed; a renewal keeps the token.
 * Fencing: Update locks the process row (SELECT ... FOR UPDATE) and checks
 * (instance, lease_token) inside its transaction before writing anything; a
 * takeover is an UPDATE of that row, so it waits for a fenced write in
 * flight and every write after it sees the new token and is refused. A
 * holder frozen past its lease that wakes up therefore writes nothing. The
 * run's ProcessRunEvent is appended to the event log after the fenced commit
 * (the same group-commit writer as every event).
 */
#include "databuild_process.pb-c.h"
#include "dbld/db_domain.h"
#include "dbld/log.h"
#include "dbld/process.h"
#include "dbld/util.h"
#include "eventlog_rpc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define WORK_PAGE_DEFAULT 1000
#define WORK_PAGE_MAX 5000
#define FREQ_MIN_MS 100
#define FREQ_MAX_MS 86400000

static const char *i64s(dbld_arena *a, int64_t v)
{
    return dbld_arena_printf(a, "%" PRId64, v);
}

static const char *msg_hex(dbld_arena *a, const ProtobufCMessage *m)
{
    return dbld_msg_hex(a, m);
}

/* A bytea column as a message (empty when NULL or empty). */
static void *col_msg(dbld_arena *a, const dbld_res *r, int row, int col, int params)
{
    uint8_t *b = NULL;
    size_t n = 0;
    if (!dbld_res_null(r, row, col)) dbld_bytea_decode(a, dbld_res_get(r, row, col), &b, &n);
    return params ? (void *)dbld_params_unpack(a, b, n) : (void *)dbld_pstatus_unpack(a, b, n);
}

static int exec(dbld_db *db, const char *sql, int n, const char *const *p, dbld_res **out,
                dbld_status *st)
{
    return dbld_db_exec(db, sql, n, p, out, st);
}

/* Run body inside BEGIN ... COMMIT (ROLLBACK on any failure). */
static int in_tx(dbld_db *db, int (*body)(dbld_db *, void *, dbld_status *), void *arg,
                 dbld_status *st)
{
    int rc = exec(db, "BEGIN", 0, NULL, NULL, st);
    if (rc) return rc;
    rc = body(db, arg, st);
    if (rc) {
        dbld_status ignore;
        exec(db, "ROLLBACK", 0, NULL, NULL, &ignore);
        return rc;
    }
    return exec(db, "COMMIT", 0, NULL, NULL, st);
}

/* ---- Acquire ---- */

typedef struct acquire_args {
    dbld_arena *a;
    const Databuild__V1__AcquireProcessesRequest *req;
    int64_t now, ttl_ns;
    dbld_res *res;
} acquire_args;

static int acquire_fn(dbld_db *db, void *arg, dbld_status *st)
{
    acquire_args *q = arg;
    dbld_arena *a = q->a;
    const char *names = dbld_pg_text_array(a, (const char *const *)q->req->names, q->req->n_names);
    const char *take[] = {q->req->instance, i64s(a, q->now + q->ttl_ns), names,
                          i64s(a, q->now + q->ttl_ns * 2 / 3), i64s(a, q->now)};
    int rc =
        exec(db,
             "UPDATE processes SET"
             " lease_token = CASE WHEN instance = $1 THEN lease_token ELSE lease_token + 1 END,"
             " instance = $1, lease_expires_ns = $2::bigint"
             " WHERE name = ANY($3::text[]) AND ((instance = $1 AND lease_expires_ns < $4::bigint)"
             " OR lease_expires_ns < $5::bigint)",
             5, take, NULL, st);
    if (rc) return rc;
    const char *sel[] = {names};
    return exec(db,
                "SELECT p.name, p.instance, p.lease_token, p.lease_expires_ns, p.frequency_ms,"
                " p.settings, p.wake_seq, p.last_start_ns,"
                " coalesce((SELECT array_agg(o.op_id ORDER BY o.created_ns)"
                "   FROM process_operations o WHERE o.process = p.name AND o.state = 1), '{}')"
                " FROM processes p WHERE p.name = ANY($1::text[]) ORDER BY p.name",
                1, sel, &q->res, st);
}

static int acquire(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    const Databuild__V1__AcquireProcessesRequest *req =
        (const Databuild__V1__AcquireProcessesRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    if (!*req->instance)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "acquire: instance is required");
    int64_t ttl_ms = req->ttl_ms ? req->ttl_ms : 15000;
    acquire_args q = {.a = a, .req = req, .now = dbld_now_ns(), .ttl_ns = ttl_ms * 1000000};
    int rc = el_store_with_db(dbld_call_user(call), acquire_fn, &q, st);
    if (rc) return dbld_status_prefix(st, "could not acquire processes");
    Databuild__V1__AcquireProcessesResponse *resp =
        dbld_arena_msg(a, &databuild__v1__acquire_processes_response__descriptor);
    int rows = dbld_res_rows(q.res);
    resp->leases = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->leases);
    for (int i = 0; i < rows; i++) {
        Databuild__V1__ProcessLease *l =
            dbld_arena_msg(a, &databuild__v1__process_lease__descriptor);
        l->name = dbld_arena_strdup(a, dbld_res_get(q.res, i, 0));
        l->holder = dbld_arena_strdup(a, dbld_res_get(q.res, i, 1));
        l->lease_token = dbld_res_i64(q.res, i, 2);
        l->expires_ns = dbld_res_i64(q.res, i, 3);
        l->held = strcmp(l->holder, req->instance) == 0 && l->expires_ns > q.now;
        l->frequency_ms = dbld_res_i64(q.res, i, 4);
        l->settings = col_msg(a, q.res, i, 5, 1);
        l->wake_seq = dbld_res_i64(q.res, i, 6);
        l->last_start_ns = dbld_res_i64(q.res, i, 7);
        dbld_pg_parse_text_array(a, dbld_res_get(q.res, i, 8), &l->pending_operations,
                                 &l->n_pending_operations);
        resp->leases[resp->n_leases++] = l;
    }
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

/* ---- ListWork ---- */

#define WORK_COLS                                                                                  \
    "name, list, state, modified_ns, params, status, attempts, next_attempt_ns, build_request_id"

/* One ProcessWork from a row of "SELECT " WORK_COLS. */
static Databuild__V1__ProcessWork *el_work_from_row(dbld_arena *a, const dbld_res *r, int i)
{
    Databuild__V1__ProcessWork *w = dbld_arena_msg(a, &databuild__v1__process_work__descriptor);
    w->name = dbld_arena_strdup(a, dbld_res_get(r, i, 0));
    w->list = (Databuild__V1__WorkList)dbld_res_i64(r, i, 1);
    w->modified_ns = dbld_res_i64(r, i, 3);
    w->params = col_msg(a, r, i, 4, 1);
    w->status = col_msg(a, r, i, 5, 0);
    w->status->state = (Databuild__V1__ProcessState)dbld_res_i64(r, i, 2);
    w->attempts = dbld_res_i64(r, i, 6);
    w->next_attempt_ns = dbld_res_i64(r, i, 7);
    w->build_request_id = dbld_arena_strdup(a, dbld_res_get(r, i, 8));
    return w;
}

typedef struct list_args {
    const char *p[4];
    dbld_res *res;
} list_args;

static int list_fn(dbld_db *db, void *arg, dbld_status *st)
{
    list_args *q = arg;
    return exec(db,
                "SELECT " WORK_COLS " FROM process_work WHERE process = $1 AND list = $2::smallint"
                " AND name > $3 ORDER BY name LIMIT $4::int",
                4, q->p, &q->res, st);
}

static int list_work(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                     dbld_status *st)
{
    const Databuild__V1__ListWorkRequest *req = (const Databuild__V1__ListWorkRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    uint32_t limit = req->limit ? req->limit : WORK_PAGE_DEFAULT;
    if (limit > WORK_PAGE_MAX) limit = WORK_PAGE_MAX;
    int list = req->list ? (int)req->list : 1;
    list_args q = {.p = {req->name, i64s(a, list), req->after, i64s(a, (int64_t)limit + 1)}};
    int rc = el_store_with_db(dbld_call_user(call), list_fn, &q, st);
    if (rc) return dbld_status_prefix(st, "could not list work items");
    Databuild__V1__ListWorkResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_work_response__descriptor);
    int rows = dbld_res_rows(q.res);
    resp->has_more = rows > (int)limit;
    if (resp->has_more) rows = (int)limit;
    resp->items = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->items);
    for (int i = 0; i < rows; i++)
        resp->items[resp->n_items++] = el_work_from_row(a, q.res, i);
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

/* ---- Update (fenced) ---- */

typedef struct update_ctx {
    el_async as; /* first */
    dbld_arena *a;
    const Databuild__V1__UpdateProcessRequest *req;
    el_event ev;
    int64_t now;
} update_ctx;

static ProtobufCMessage *update_respond(el_async *as, dbld_arena *a)
{
    update_ctx *u = (update_ctx *)as;
    Databuild__V1__UpdateProcessResponse *resp =
        dbld_arena_msg(a, &databuild__v1__update_process_response__descriptor);
    resp->event_idx = u->req->event ? u->ev.idx : 0;
    return &resp->base;
}

/* The running sums of a finished run's stats, merged into the stored ones. */
static const char *aggregate_hex(update_ctx *u, const dbld_res *fence)
{
    Databuild__V1__ProcessStatus *agg = col_msg(u->a, fence, 0, 0, 0);
    const Databuild__V1__ProcessStatus *s = u->req->status;
    for (size_t i = 0; i < s->n_stats; i++)
        dbld_pstatus_add_stat(u->a, agg, s->stats[i]->key, s->stats[i]->value);
    dbld_pstatus_add_stat(u->a, agg, "runs", 1);
    dbld_pstatus_add_stat(u->a, agg, "errors", (double)s->total_errors);
    return msg_hex(u->a, &agg->base);
}

static int write_status(dbld_db *db, update_ctx *u, const dbld_res *fence, dbld_status *st)
{
    const Databuild__V1__ProcessStatus *s = u->req->status;
    dbld_arena *a = u->a;
    const char *p[] = {u->req->fence->name,
                       msg_hex(a, &s->base),
                       i64s(a, s->state),
                       i64s(a, s->start_ns),
                       u->req->finished ? "1" : "0",
                       i64s(a, u->req->finished ? s->total_errors : 0),
                       i64s(a, s->last_error_ns),
                       u->req->finished ? aggregate_hex(u, fence) : NULL};
    return exec(db,
                "UPDATE processes SET status = decode($2, 'hex'), state = $3::int,"
                " last_start_ns = greatest(last_start_ns, $4::bigint), runs = runs + $5::bigint,"
                " total_errors = total_errors + $6::bigint,"
                " last_error_ns = greatest(last_error_ns, $7::bigint),"
                " aggregate = coalesce(decode($8, 'hex'), aggregate) WHERE name = $1",
                8, p, NULL, st);
}

static const char *nullable_hex(dbld_arena *a, const ProtobufCMessage *m)
{
    return m ? msg_hex(a, m) : NULL;
}

static int write_items(dbld_db *db, update_ctx *u, dbld_status *st)
{
    const Databuild__V1__UpdateProcessRequest *req = u->req;
    size_t n = req->n_items;
    dbld_arena *a = u->a;
    const char **cols[9];
    for (int c = 0; c < 9; c++)
        cols[c] = dbld_arena_alloc(a, (n + 1) * sizeof *cols[c]);
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__ProcessWork *w = req->items[i];
        cols[0][i] = w->name;
        cols[1][i] = i64s(a, w->list ? w->list : 1);
        cols[2][i] = i64s(a, w->status ? w->status->state : 1);
        cols[3][i] = i64s(a, w->modified_ns ? w->modified_ns : u->now);
        cols[4][i] = nullable_hex(a, w->params ? &w->params->base : NULL);
        cols[5][i] = nullable_hex(a, w->status ? &w->status->base : NULL);
        cols[6][i] = i64s(a, w->attempts);
        cols[7][i] = i64s(a, w->next_attempt_ns);
        cols[8][i] = w->build_request_id;
    }
    const char *p[10] = {req->fence->name};
    for (int c = 0; c < 9; c++)
        p[c + 1] = dbld_pg_text_array(a, cols[c], n);
    return exec(db,
                "INSERT INTO process_work AS w (process, name, list, state, modified_ns, params,"
                " status, attempts, next_attempt_ns, build_request_id)"
                " SELECT $1, u.name, u.list, u.state, u.modified, coalesce(decode(u.params, 'hex'),"
                " ''), coalesce(decode(u.status, 'hex'), ''), u.attempts, u.next, u.brid"
                " FROM unnest($2::text[], $3::smallint[], $4::int[], $5::bigint[], $6::text[],"
                " $7::text[], $8::bigint[], $9::bigint[], $10::text[])"
                " AS u(name, list, state, modified, params, status, attempts, next, brid)"
                " ON CONFLICT (process, name) DO UPDATE SET list = EXCLUDED.list,"
                " state = EXCLUDED.state,"
                " modified_ns = CASE WHEN EXCLUDED.list <> w.list THEN EXCLUDED.modified_ns"
                "   ELSE w.modified_ns END,"
                " params = CASE WHEN EXCLUDED.params = '' THEN w.params ELSE EXCLUDED.params END,"
                " status = EXCLUDED.status, attempts = EXCLUDED.attempts,"
                " next_attempt_ns = EXCLUDED.next_attempt_ns,"
                " build_request_id = EXCLUDED.build_request_id",
                10, p, NULL, st);
}

static int write_ops(dbld_db *db, update_ctx *u, dbld_status *st)
{
    const Databuild__V1__UpdateProcessRequest *req = u->req;
    const char *p[] = {
        dbld_pg_text_array(u->a, (const char *const *)req->operations, req->n_operations),
        i64s(u->a, req->op_state), i64s(u->a, u->now), req->fence->name};
    return exec(db,
                "UPDATE process_operations SET state = $2::int, updated_ns = $3::bigint"
                " WHERE op_id = ANY($1::text[]) AND process = $4",
                4, p, NULL, st);
}

/* The fence, inside the caller's transaction: lock the process row if
 * (name, instance, lease_token) is current, else FAILED_PRECONDITION. *out
 * (caller frees) holds the row's aggregate column. */
static int lock_fence(dbld_db *db, dbld_arena *a, const Databuild__V1__ProcessFence *f,
                      dbld_res **out, dbld_status *st)
{
    const char *p[] = {f->name, f->instance, i64s(a, f->lease_token)};
    int rc = exec(db,
                  "SELECT aggregate FROM processes WHERE name = $1 AND instance = $2"
                  " AND lease_token = $3::bigint FOR UPDATE",
                  3, p, out, st);
    if (rc) return rc;
    if (dbld_res_rows(*out) == 1) return 0;
    dbld_res_free(*out);
    *out = NULL;
    return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                           "process fence: %s is not held by %s with lease token %" PRId64
                           " (another instance took it over)",
                           f->name, f->instance, f->lease_token);
}

static int update_body(dbld_db *db, void *arg, dbld_status *st)
{
    update_ctx *u = arg;
    dbld_res *fence = NULL;
    int rc = lock_fence(db, u->a, u->req->fence, &fence, st);
    if (rc) return rc;
    if (u->req->status) rc = write_status(db, u, fence, st);
    dbld_res_free(fence);
    if (!rc && u->req->n_items) rc = write_items(db, u, st);
    if (!rc && u->req->n_operations) rc = write_ops(db, u, st);
    return rc;
}

static int update_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return in_tx(db, update_body, arg, st);
}

static int update(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    const Databuild__V1__UpdateProcessRequest *req =
        (const Databuild__V1__UpdateProcessRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__ProcessFence *f = req->fence;
    if (!f || !*f->name || !*f->instance || f->lease_token <= 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "update: fence needs name, instance and lease_token");
    update_ctx *u = dbld_arena_alloc(a, sizeof *u);
    *u = (update_ctx){.as = {call, update_respond}, .a = a, .req = req, .now = dbld_now_ns()};
    Databuild__V1__BuildEvent *ev = NULL;
    if (req->event) { /* checked before anything is written */
        ev = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT;
        ev->process_run_event = req->event;
        int rc = el_event_prepare(a, ev, 0, &u->ev, st);
        if (rc) return rc;
    }
    el_store *store = dbld_call_user(call);
    int rc = el_store_with_db(store, update_fn, u, st);
    if (rc)
        return rc == DBLD_FAILED_PRECONDITION ? rc
                                              : dbld_status_prefix(st, "could not update process");
    if (!ev) {
        *resp_msg = update_respond(&u->as, a);
        return 0;
    }
    /* After a successful queueing the call belongs to the writer. */
    rc = el_store_append_async(store, &u->ev, 1, NULL, NULL, a, el_async_done, u, st);
    return rc ? rc : DBLD_ASYNC;
}

/* ---- UpdateSettings, RunNow ---- */

typedef struct settings_args {
    dbld_arena *a;
    const Databuild__V1__UpdateProcessSettingsRequest *req;
    Databuild__V1__Process *out;
} settings_args;

static int settings_body(dbld_db *db, void *arg, dbld_status *st)
{
    settings_args *q = arg;
    dbld_arena *a = q->a;
    const char *p[] = {q->req->name};
    dbld_res *r = NULL;
    int rc = exec(db, "SELECT settings, frequency_ms FROM processes WHERE name = $1 FOR UPDATE", 1,
                  p, &r, st);
    if (rc) return rc;
    if (dbld_res_rows(r) != 1) {
        dbld_res_free(r);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no process named \"%s\"", q->req->name);
    }
    Databuild__V1__ProcessParams *s = col_msg(a, r, 0, 0, 1);
    int64_t freq =
        q->req->schedule_frequency_ms ? q->req->schedule_frequency_ms : dbld_res_i64(r, 0, 1);
    dbld_res_free(r);
    dbld_params_merge(a, s, q->req->settings);
    int64_t now = dbld_now_ns();
    const char *u[] = {q->req->name, msg_hex(a, &s->base), i64s(a, freq), i64s(a, now)};
    rc = exec(db,
              "UPDATE processes SET settings = decode($2, 'hex'), frequency_ms = $3::bigint,"
              " settings_ns = $4::bigint, wake_seq = wake_seq + 1 WHERE name = $1",
              4, u, NULL, st);
    q->out = dbld_arena_msg(a, &databuild__v1__process__descriptor);
    q->out->process_name = q->req->name;
    q->out->schedule_frequency_ms = freq;
    q->out->settings = s;
    q->out->settings_ns = now;
    return rc;
}

static int settings_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return in_tx(db, settings_body, arg, st);
}

static int update_settings(dbld_call *call, const ProtobufCMessage *req_msg,
                           ProtobufCMessage **resp_msg, dbld_status *st)
{
    const Databuild__V1__UpdateProcessSettingsRequest *req =
        (const Databuild__V1__UpdateProcessSettingsRequest *)req_msg;
    if (!*req->name)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "update settings: name is required");
    if (req->schedule_frequency_ms &&
        (req->schedule_frequency_ms < FREQ_MIN_MS || req->schedule_frequency_ms > FREQ_MAX_MS))
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "schedule_frequency_ms %" PRId64 " is outside %d..%d",
                               req->schedule_frequency_ms, FREQ_MIN_MS, FREQ_MAX_MS);
    settings_args q = {.a = dbld_call_arena(call), .req = req};
    int rc = el_store_with_db(dbld_call_user(call), settings_fn, &q, st);
    if (rc) return rc == DBLD_NOT_FOUND ? rc : dbld_status_prefix(st, "could not update settings");
    *resp_msg = &q.out->base;
    return 0;
}

typedef struct run_now_args {
    const char *p[3];
    dbld_res *res;
} run_now_args;

static int run_now_body(dbld_db *db, void *arg, dbld_status *st)
{
    run_now_args *q = arg;
    int rc = exec(db,
                  "INSERT INTO process_operations (op_id, process, state, created_ns, updated_ns)"
                  " SELECT $1, name, 1, $3::bigint, $3::bigint FROM processes WHERE name = $2"
                  " RETURNING op_id",
                  3, q->p, &q->res, st);
    if (rc) return rc;
    if (dbld_res_rows(q->res) != 1)
        return dbld_status_set(st, DBLD_NOT_FOUND, "no process named \"%s\"", q->p[1]);
    return exec(db, "UPDATE processes SET wake_seq = wake_seq + 1 WHERE name = $1", 1, q->p + 1,
                NULL, st);
}

static int run_now_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return in_tx(db, run_now_body, arg, st);
}

static int run_now(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    const Databuild__V1__RunProcessNowRequest *req =
        (const Databuild__V1__RunProcessNowRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    if (!*req->name) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "run now: name is required");
    char id[37];
    dbld_uuid_v4(id);
    run_now_args q = {.p = {dbld_arena_strdup(a, id), req->name, i64s(a, dbld_now_ns())}};
    int rc = el_store_with_db(dbld_call_user(call), run_now_fn, &q, st);
    dbld_res_free(q.res);
    if (rc) return rc == DBLD_NOT_FOUND ? rc : dbld_status_prefix(st, "could not queue the run");
    Databuild__V1__WorkResponse *resp =
        dbld_arena_msg(a, &databuild__v1__work_response__descriptor);
    resp->id = (char *)q.p[0];
    resp->state = "queued";
    resp->uri = dbld_arena_printf(a, "/databuild.v1.Processes/GetOperation?id=%s", id);
    *resp_msg = &resp->base;
    return 0;
}

/* ---- Downstream ---- */

#define DOWNSTREAM_MAX 100000

typedef struct down_args {
    const char *p[3];
    dbld_res *res;
} down_args;

/* One statement: the lineage below $1 is walked once (a recursive CTE, each
 * level one set-based join on partition_inputs_input), then read twice:
 * 'p' rows are the AVAILABLE untainted partitions to mark stale (ref, the
 * input it came through), 'r' rows the in-flight runs that read a tainted
 * or stale input (run id, that input, its build request), only when
 * $3 (runs_before_ns) > 0. An in-flight run's outputs are in the lineage
 * (their rows are written when it is SCHEDULED), so a run reads a stale
 * input exactly when one of its output rows (ref, via) is in the walk. */
static int down_fn(dbld_db *db, void *arg, dbld_status *st)
{
    down_args *q = arg;
    return exec(
        db,
        "WITH RECURSIVE down(ref, via, run) AS ("
        "  SELECT pi.ref, pi.input, pi.job_run_id FROM partition_inputs pi"
        "   WHERE pi.input = ANY($1::text[])"
        "  UNION"
        "  SELECT pi.ref, pi.input, pi.job_run_id FROM partition_inputs pi"
        "   JOIN down d ON pi.input = d.ref),"
        " parts AS (SELECT DISTINCT ON (d.ref) 'p'::text AS k, d.ref, d.via, ''::text AS brid"
        "  FROM down d JOIN partitions p ON p.ref = d.ref"
        "  WHERE p.status = " DBLD_SQL_PART_AVAILABLE
        " AND NOT p.tainted ORDER BY d.ref LIMIT $2::int),"
        " runs AS (SELECT DISTINCT ON (j.job_run_id) 'r'::text AS k, j.job_run_id, d.via,"
        "  j.build_request_id FROM job_runs j"
        "  JOIN down d ON d.run = j.job_run_id"
        "  AND j.status IN (" DBLD_SQL_JOB_ACTIVE ") AND j.created_ns < $3::bigint"
        "  JOIN build_requests b ON b.build_request_id = j.build_request_id"
        "   AND b.created_ns < $3::bigint"
        "  WHERE $3::bigint > 0 ORDER BY j.job_run_id LIMIT 1000)"
        " SELECT * FROM parts UNION ALL SELECT * FROM runs",
        3, q->p, &q->res, st);
}

static int downstream(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                      dbld_status *st)
{
    const Databuild__V1__DownstreamRequest *req = (const Databuild__V1__DownstreamRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    uint32_t limit = req->limit && req->limit < DOWNSTREAM_MAX ? req->limit : DOWNSTREAM_MAX;
    down_args q = {.p = {dbld_pg_text_array(a, (const char *const *)req->refs, req->n_refs),
                         i64s(a, (int64_t)limit + 1), i64s(a, req->runs_before_ns)}};
    int rc = el_store_with_db(dbld_call_user(call), down_fn, &q, st);
    if (rc) return dbld_status_prefix(st, "could not follow the lineage");
    Databuild__V1__DownstreamResponse *resp =
        dbld_arena_msg(a, &databuild__v1__downstream_response__descriptor);
    int rows = dbld_res_rows(q.res);
    resp->partitions = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->partitions);
    resp->runs = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->runs);
    for (int i = 0; i < rows; i++) {
        const char *k = dbld_res_get(q.res, i, 0);
        if (*k == 'r') {
            Databuild__V1__StaleRun *r = dbld_arena_msg(a, &databuild__v1__stale_run__descriptor);
            r->job_run_id = dbld_arena_strdup(a, dbld_res_get(q.res, i, 1));
            r->via = dbld_arena_strdup(a, dbld_res_get(q.res, i, 2));
            r->build_request_id = dbld_arena_strdup(a, dbld_res_get(q.res, i, 3));
            resp->runs[resp->n_runs++] = r;
        } else if (resp->n_partitions < limit) {
            Databuild__V1__StaleEdge *e = dbld_arena_msg(a, &databuild__v1__stale_edge__descriptor);
            e->ref = dbld_arena_strdup(a, dbld_res_get(q.res, i, 1));
            e->via = dbld_arena_strdup(a, dbld_res_get(q.res, i, 2));
            resp->partitions[resp->n_partitions++] = e;
        } else {
            resp->truncated = 1;
        }
    }
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

/* ---- LostRuns ---- */

#define LOST_MAX 1000

static int lost_fn(dbld_db *db, void *arg, dbld_status *st)
{
    down_args *q = arg;
    return exec(db,
                "SELECT j.job_run_id, j.build_request_id, j.job_label, j.target_partitions,"
                " coalesce((SELECT array_agg(p.ref ORDER BY p.ref) FROM partitions p"
                "   WHERE p.job_run_id = j.job_run_id AND p.status = " DBLD_SQL_PART_BUILDING
                "), '{}'),"
                " CASE WHEN b.build_request_id IS NULL THEN 'its build request was never recorded'"
                "  WHEN b.status IN (" DBLD_SQL_BUILD_TERMINAL ") THEN 'its build request ended'"
                "  ELSE 'the lease of its build request''s coordinator expired' END"
                " FROM job_runs j"
                " LEFT JOIN build_requests b ON b.build_request_id = j.build_request_id"
                " LEFT JOIN build_leases l ON l.build_request_id = j.build_request_id"
                " WHERE j.status IN (" DBLD_SQL_JOB_ACTIVE ") AND j.updated_ns < $1::bigint"
                " AND (b.build_request_id IS NULL OR b.status IN (" DBLD_SQL_BUILD_TERMINAL ")"
                "  OR coalesce(l.expires_ns, 0) < $1::bigint)"
                " ORDER BY j.updated_ns LIMIT $2::int",
                2, q->p, &q->res, st);
}

static int lost_runs(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                     dbld_status *st)
{
    const Databuild__V1__LostRunsRequest *req = (const Databuild__V1__LostRunsRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    if (req->grace_ms < 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "grace_ms must be >= 0");
    uint32_t limit = req->limit && req->limit < LOST_MAX ? req->limit : LOST_MAX;
    down_args q = {.p = {i64s(a, dbld_now_ns() - req->grace_ms * 1000000), i64s(a, limit)}};
    int rc = el_store_with_db(dbld_call_user(call), lost_fn, &q, st);
    if (rc) return dbld_status_prefix(st, "could not look for lost runs");
    Databuild__V1__LostRunsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__lost_runs_response__descriptor);
    int rows = dbld_res_rows(q.res);
    resp->runs = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->runs);
    for (int i = 0; i < rows; i++) {
        Databuild__V1__LostRun *l = dbld_arena_msg(a, &databuild__v1__lost_run__descriptor);
        l->job_run_id = dbld_arena_strdup(a, dbld_res_get(q.res, i, 0));
        l->build_request_id = dbld_arena_strdup(a, dbld_res_get(q.res, i, 1));
        l->job_label = dbld_arena_strdup(a, dbld_res_get(q.res, i, 2));
        dbld_pg_parse_text_array(a, dbld_res_get(q.res, i, 3), &l->targets, &l->n_targets);
        dbld_pg_parse_text_array(a, dbld_res_get(q.res, i, 4), &l->building, &l->n_building);
        l->why = dbld_arena_strdup(a, dbld_res_get(q.res, i, 5));
        resp->runs[resp->n_runs++] = l;
    }
    dbld_res_free(q.res);
    *resp_msg = &resp->base;
    return 0;
}

/* ---- Trim (retention) ---- */

#define TRIM_DEFAULT 1000
#define TRIM_MAX 10000

typedef struct trim_args {
    dbld_arena *a;
    const Databuild__V1__TrimRequest *req;
    int64_t deleted;
} trim_args;

static int trim_body(dbld_db *db, void *arg, dbld_status *st)
{
    trim_args *q = arg;
    dbld_res *r = NULL;
    int rc = lock_fence(db, q->a, q->req->fence, &r, st);
    dbld_res_free(r);
    if (rc) return rc;
    uint32_t batch = q->req->batch ? q->req->batch : TRIM_DEFAULT;
    if (batch > TRIM_MAX) batch = TRIM_MAX;
    const char *p[] = {i64s(q->a, q->req->older_than_ns), i64s(q->a, batch)};
    const char *sql = q->req->kind == DATABUILD__V1__TRIM_KIND__TRIM_JOB_LOGS
                          ? "DELETE FROM job_logs WHERE ctid = ANY(ARRAY(SELECT ctid FROM job_logs"
                            " WHERE ts_ns < $1::bigint LIMIT $2::int))"
                          : "DELETE FROM events WHERE idx = ANY(ARRAY(SELECT e.idx FROM events e"
                            " JOIN build_requests b ON b.build_request_id = e.build_request_id"
                            " WHERE e.ts_ns < $1::bigint AND e.kind IN (" DBLD_SQL_KIND_PARTITION
                            ", " DBLD_SQL_KIND_JOB ", " DBLD_SQL_KIND_DELEGATION
                            ", " DBLD_SQL_KIND_JOB_RUN_CANCEL ")"
                            " AND b.status IN (" DBLD_SQL_BUILD_TERMINAL ") LIMIT $2::int))";
    rc = exec(db, sql, 2, p, &r, st);
    if (rc) return rc;
    q->deleted = dbld_res_affected(r);
    dbld_res_free(r);
    return 0;
}

static int trim_fn(dbld_db *db, void *arg, dbld_status *st)
{
    return in_tx(db, trim_body, arg, st);
}

static int trim(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                dbld_status *st)
{
    const Databuild__V1__TrimRequest *req = (const Databuild__V1__TrimRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__ProcessFence *f = req->fence;
    if (!f || !*f->name || !*f->instance || f->lease_token <= 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "trim: fence needs name, instance and lease_token");
    if (req->kind != DATABUILD__V1__TRIM_KIND__TRIM_JOB_LOGS &&
        req->kind != DATABUILD__V1__TRIM_KIND__TRIM_EVENTS)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "trim: kind must be 1 or 2, got %d",
                               req->kind);
    trim_args q = {.a = a, .req = req};
    int rc = el_store_with_db(dbld_call_user(call), trim_fn, &q, st);
    if (rc) return rc == DBLD_FAILED_PRECONDITION ? rc : dbld_status_prefix(st, "could not trim");
    Databuild__V1__TrimResponse *resp =
        dbld_arena_msg(a, &databuild__v1__trim_response__descriptor);
    resp->deleted = q.deleted;
    *resp_msg = &resp->base;
    return 0;
}

#define M(name, req, resp, fn)                                                                     \
    {                                                                                              \
        "/databuild.v1.ProcessStore/" name, &databuild__v1__##req##__descriptor,                   \
            &databuild__v1__##resp##__descriptor, fn, NULL, 0                                      \
    }

static const dbld_method methods[] = {
    M("Acquire", acquire_processes_request, acquire_processes_response, acquire),
    M("ListWork", list_work_request, list_work_response, list_work),
    M("Update", update_process_request, update_process_response, update),
    M("UpdateSettings", update_process_settings_request, process, update_settings),
    M("RunNow", run_process_now_request, work_response, run_now),
    M("Downstream", downstream_request, downstream_response, downstream),
    M("LostRuns", lost_runs_request, lost_runs_response, lost_runs),
    M("Trim", trim_request, trim_response, trim),
};

const dbld_service el_processes_service = {
    .name = "databuild.v1.ProcessStore",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
