/* processes.c - databuild.v1.Processes (proto/databuild_process.proto): the
 * background processes' state, read from the event log's tables
 * (processes, process_work, process_operations; migrations/0005), and the
 * two writes, which go through the event log's ProcessStore like every
 * write of this service.
 *
 * ListProcesses: every process with its lease holder, schedule, settings,
 * last run's status, aggregate stats and item counts per list.
 * GetProcess: one process and a page of its work items of one list (default
 * active), by name after the exclusive cursor `after` (next_after: the last
 * name of a full page). UpdateProcessSettings / RunProcessNow: forwarded to
 * ProcessStore.UpdateSettings / RunNow. GetOperation: the seed's
 * WorkResponse for a RunProcessNow operation: queued, active, completed,
 * incomplete, aborted; "purged" when the id is unknown (the seed's word for
 * "removed from the system, or never existed").
 */
#include "query.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ITEMS_DEFAULT 100
#define ITEMS_MAX 1000

#define PROC_COLS                                                                                  \
    "p.name, p.instance, p.lease_token, p.lease_expires_ns, p.frequency_ms, p.settings,"           \
    " p.settings_ns, p.state, p.status, p.aggregate, p.runs, p.total_errors, p.last_error_ns,"     \
    " (SELECT count(*) FROM process_work w WHERE w.process = p.name AND w.list = 1),"              \
    " (SELECT count(*) FROM process_work w WHERE w.process = p.name AND w.list = 2),"              \
    " (SELECT count(*) FROM process_work w WHERE w.process = p.name AND w.list = 3)"

#define WORK_COLS                                                                                  \
    "name, list, state, modified_ns, params, status, attempts, next_attempt_ns, build_request_id"

static const uint8_t *col_bytes(dbld_arena *a, const dbld_res *r, int row, int col, size_t *n)
{
    uint8_t *b = NULL;
    *n = 0;
    if (!dbld_res_null(r, row, col)) dbld_bytea_decode(a, dbld_res_get(r, row, col), &b, n);
    return b;
}

static Databuild__V1__Process *process_from_row(dbld_arena *a, const dbld_res *r, int i)
{
    Databuild__V1__Process *p = dbld_arena_msg(a, &databuild__v1__process__descriptor);
    size_t n;
    const uint8_t *b;
    p->process_name = dbld_arena_strdup(a, dbld_res_get(r, i, 0));
    int64_t expires = dbld_res_i64(r, i, 3);
    p->instance = expires > dbld_now_ns() ? dbld_arena_strdup(a, dbld_res_get(r, i, 1)) : "";
    p->lease_token = dbld_res_i64(r, i, 2);
    p->lease_expires_ns = expires;
    p->schedule_frequency_ms = dbld_res_i64(r, i, 4);
    b = col_bytes(a, r, i, 5, &n);
    p->settings = dbld_params_unpack(a, b, n);
    p->settings_ns = dbld_res_i64(r, i, 6);
    b = col_bytes(a, r, i, 8, &n);
    p->process_status = dbld_pstatus_unpack(a, b, n);
    p->process_status->state = (Databuild__V1__ProcessState)dbld_res_i64(r, i, 7);
    b = col_bytes(a, r, i, 9, &n);
    Databuild__V1__ProcessStatus *agg = dbld_pstatus_unpack(a, b, n);
    p->n_aggregate_stats = agg->n_stats;
    p->aggregate_stats = (Databuild__V1__Process__AggregateStatsEntry **)dbld_arena_alloc(
        a, (agg->n_stats + 1) * sizeof *p->aggregate_stats);
    for (size_t k = 0; k < agg->n_stats; k++) {
        Databuild__V1__Process__AggregateStatsEntry *e =
            dbld_arena_msg(a, &databuild__v1__process__aggregate_stats_entry__descriptor);
        e->key = agg->stats[k]->key;
        e->value = agg->stats[k]->value;
        p->aggregate_stats[k] = e;
    }
    p->runs = dbld_res_i64(r, i, 10);
    p->total_errors = dbld_res_i64(r, i, 11);
    p->last_error_ns = dbld_res_i64(r, i, 12);
    p->active_items = dbld_res_i64(r, i, 13);
    p->cleanup_items = dbld_res_i64(r, i, 14);
    p->dropped_items = dbld_res_i64(r, i, 15);
    return p;
}

static Databuild__V1__ProcessWork *work_from_row(dbld_arena *a, const dbld_res *r, int i)
{
    Databuild__V1__ProcessWork *w = dbld_arena_msg(a, &databuild__v1__process_work__descriptor);
    size_t n;
    const uint8_t *b;
    w->name = dbld_arena_strdup(a, dbld_res_get(r, i, 0));
    w->list = (Databuild__V1__WorkList)dbld_res_i64(r, i, 1);
    w->modified_ns = dbld_res_i64(r, i, 3);
    b = col_bytes(a, r, i, 4, &n);
    w->params = dbld_params_unpack(a, b, n);
    b = col_bytes(a, r, i, 5, &n);
    w->status = dbld_pstatus_unpack(a, b, n);
    w->status->state = (Databuild__V1__ProcessState)dbld_res_i64(r, i, 2);
    w->attempts = dbld_res_i64(r, i, 6);
    w->next_attempt_ns = dbld_res_i64(r, i, 7);
    w->build_request_id = dbld_arena_strdup(a, dbld_res_get(r, i, 8));
    return w;
}

int q_list_processes(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                     dbld_status *st)
{
    (void)req_msg;
    dbld_res *res = NULL;
    int rc = q_exec(r, "SELECT " PROC_COLS " FROM processes p ORDER BY p.name", 0, NULL, &res, st);
    if (rc) return rc;
    Databuild__V1__ListProcessesResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__list_processes_response__descriptor);
    int rows = dbld_res_rows(res);
    resp->processes = dbld_arena_alloc(r->a, ((size_t)rows + 1) * sizeof *resp->processes);
    for (int i = 0; i < rows; i++)
        resp->processes[resp->n_processes++] = process_from_row(r->a, res, i);
    dbld_res_free(res);
    *resp_msg = &resp->base;
    return 0;
}

int q_get_process(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    const Databuild__V1__GetProcessRequest *req = (const Databuild__V1__GetProcessRequest *)req_msg;
    dbld_arena *a = r->a;
    if (!*req->name) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "name is required");
    if ((int)req->list < 0 || req->list > DATABUILD__V1__WORK_LIST__WORK_DROPPED)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "list must be 1..3, got %d", req->list);
    uint32_t limit = req->limit ? req->limit : ITEMS_DEFAULT;
    if (limit > ITEMS_MAX) limit = ITEMS_MAX;
    int list = req->list ? (int)req->list : 1;
    const char *p[] = {req->name, q_i64(a, list), req->after, q_i64(a, (int64_t)limit)};
    dbld_res *proc = NULL, *items = NULL;
    dbld_stmt stmts[] = {
        {.sql = "SELECT " PROC_COLS " FROM processes p WHERE p.name = $1",
         .n = 1,
         .params = p,
         .out = &proc},
        {.sql = "SELECT " WORK_COLS " FROM process_work WHERE process = $1 AND list = $2::smallint"
                " AND name > $3 ORDER BY name LIMIT $4::int",
         .n = 4,
         .params = p,
         .out = &items},
    };
    int rc = q_pipeline(r, stmts, 2, st);
    if (!rc && dbld_res_rows(proc) != 1)
        rc = dbld_status_set(st, DBLD_NOT_FOUND, "no process named \"%.200s\"", req->name);
    if (rc) {
        dbld_res_free(proc);
        dbld_res_free(items);
        return rc;
    }
    Databuild__V1__GetProcessResponse *resp =
        dbld_arena_msg(a, &databuild__v1__get_process_response__descriptor);
    resp->process = process_from_row(a, proc, 0);
    int rows = dbld_res_rows(items);
    resp->items = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->items);
    for (int i = 0; i < rows; i++)
        resp->items[resp->n_items++] = work_from_row(a, items, i);
    resp->next_after = rows == (int)limit ? resp->items[rows - 1]->name : "";
    dbld_res_free(proc);
    dbld_res_free(items);
    *resp_msg = &resp->base;
    return 0;
}

/* Forward a write to the event log's ProcessStore. */
static int forward(q_req *r, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    q_req_done(r);
    const char *el = r->q->cfg->shared.peers.eventlog;
    char path[96];
    snprintf(path, sizeof path, "/databuild.v1.ProcessStore/%s", method);
    int rc = dbld_client_unary(dbld_client_get(el), path, req, resp_desc,
                               dbld_arena_allocator(r->a), resp_msg, r->timeout_ms, 0, st);
    if (rc && rc != DBLD_NOT_FOUND && rc != DBLD_INVALID_ARGUMENT)
        return dbld_status_prefix(st, "event log at %s", el);
    return rc;
}

int q_update_process_settings(q_req *r, const ProtobufCMessage *req_msg,
                              ProtobufCMessage **resp_msg, dbld_status *st)
{
    const Databuild__V1__UpdateProcessSettingsRequest *req =
        (const Databuild__V1__UpdateProcessSettingsRequest *)req_msg;
    if (!*req->name) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "name is required");
    return forward(r, "UpdateSettings", req_msg, &databuild__v1__process__descriptor, resp_msg, st);
}

int q_run_process_now(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                      dbld_status *st)
{
    const Databuild__V1__RunProcessNowRequest *req =
        (const Databuild__V1__RunProcessNowRequest *)req_msg;
    if (!*req->name) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "name is required");
    return forward(r, "RunNow", req_msg, &databuild__v1__work_response__descriptor, resp_msg, st);
}

int q_get_operation(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                    dbld_status *st)
{
    const Databuild__V1__GetOperationRequest *req =
        (const Databuild__V1__GetOperationRequest *)req_msg;
    if (!*req->id) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "id is required");
    const char *p[] = {req->id};
    dbld_res *res = NULL;
    int rc =
        q_exec(r, "SELECT process, state FROM process_operations WHERE op_id = $1", 1, p, &res, st);
    if (rc) return rc;
    Databuild__V1__WorkResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__work_response__descriptor);
    resp->id = req->id;
    if (dbld_res_rows(res) == 1) {
        resp->state = (char *)dbld_process_state_word((int)dbld_res_i64(res, 0, 1));
        resp->uri = dbld_arena_printf(r->a, "/databuild.v1.Processes/GetProcess?name=%s",
                                      dbld_res_get(res, 0, 0));
    } else {
        resp->state = "purged";
    }
    dbld_res_free(res);
    *resp_msg = &resp->base;
    return 0;
}
