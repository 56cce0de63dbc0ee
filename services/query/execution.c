/* execution.c - a build's execution state and log (QueryOps.GetBuildExecution),
 * a job run's attempt links (GetJobRunSummary's field 1001) and the cancel of
 * one job run (QueryOps.CancelJobRun).
 *
 * The graph service appends a BuildEvent.execution_event (kind 110) for every
 * change of a task's execution, each with the task's whole execution after
 * the change (services/graph/execution.h). So the state is the last snapshot
 * of each task, in the order the build's RequirementChanged listed its tasks
 * (tasks that never changed keep that entry, without attempts), and the log
 * is the entries of those events in idx order. The events are read straight
 * from the events table (build_request_id, idx index): the state is a fold
 * over one build's events, which no projection needs to hold.
 *
 * CancelJobRun writes, as every query-service write does, through the event
 * log: the seed's JobRunCancelEvent, stamped with the run's build so that
 * the graph service coordinating the build (which follows its build's
 * events) sees it and stops the run.
 */
#include "query.h"

#include "dbld/db_domain.h"

#include "dbld/eventlog_client.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>

#define EXECUTION_KIND DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT
#define BRS(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define XST(x) DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__##x
#define AST(x) DATABUILD__V1__EXECUTION_ATTEMPT__STATUS__##x
#define ARES(x) DATABUILD__V1__EXECUTION_ATTEMPT__RESULT__##x

/* Decode row i's payload (column col) as a BuildEvent: DATA_LOSS if it does not. */
static int decode_event(q_req *r, dbld_res *res, int i, int col, Databuild__V1__BuildEvent **out,
                        dbld_status *st)
{
    uint8_t *buf;
    size_t len;
    *out = NULL;
    if (dbld_bytea_decode(r->a, dbld_res_get(res, i, col), &buf, &len) == 0)
        *out = (Databuild__V1__BuildEvent *)protobuf_c_message_unpack(
            &databuild__v1__build_event__descriptor, dbld_arena_allocator(r->a), len, buf);
    if (!*out) return dbld_status_set(st, DBLD_DATA_LOSS, "stored event does not decode");
    return 0;
}

/* ---- the state: the last snapshot per task ---- */

typedef struct slot {
    const char *key; /* the task's first output */
    size_t seq;      /* order of the change */
    Databuild__V1__TaskExecution *te;
} slot;

static int by_key_seq(const void *x, const void *y)
{
    const slot *a = x, *b = y;
    int c = strcmp(a->key, b->key);
    if (c) return c;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int by_seq(const void *x, const void *y)
{
    const slot *a = x, *b = y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Keep, per key, the last TaskExecution, placed where the key first showed. */
static size_t last_per_task(slot *s, size_t n)
{
    if (n > 1) qsort(s, n, sizeof *s, by_key_seq);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && strcmp(s[m - 1].key, s[i].key) == 0) {
            s[m - 1].te = s[i].te; /* a later change; keep the first seq */
            continue;
        }
        s[m++] = s[i];
    }
    if (m > 1) qsort(s, m, sizeof *s, by_seq);
    return m;
}

/* Room for one more item in an arena array of n items (capacity: the next
 * power of two, so pushes cost O(1) amortized). */
static void *push(dbld_arena *a, void *arr, size_t n, size_t sz)
{
    if (n && (n & (n - 1))) return arr;
    void *g = dbld_arena_alloc(a, (n ? 2 * n : 1) * sz);
    if (n) memcpy(g, arr, n * sz);
    return g;
}

static void add_failures(dbld_arena *a, Databuild__V1__BuildExecutionState *x,
                         const Databuild__V1__TaskExecution *te)
{
    Databuild__V1__BuildExecutionState__Failures *f = x->failures;
    for (size_t k = 0; k < te->n_attempts; k++) {
        const Databuild__V1__ExecutionAttempt *at = te->attempts[k];
        if (at->status == AST(UNTRIGGERED)) {
            Databuild__V1__BuildExecutionState__Failures__LaunchFailure *lf = dbld_arena_msg(
                a, &databuild__v1__build_execution_state__failures__launch_failure__descriptor);
            lf->job_label = te->job_label;
            lf->n_outputs = te->n_outputs;
            lf->outputs = te->outputs;
            lf->job_run_id = at->job_run_id;
            lf->reason = at->untriggered_reason;
            f->launch_failures =
                push(a, f->launch_failures, f->n_launch_failures, sizeof *f->launch_failures);
            f->launch_failures[f->n_launch_failures++] = lf;
        } else if (at->status == AST(ENDED) && at->result != ARES(SUCCEEDED)) {
            f->unsuccessful_job_run_ids =
                push(a, f->unsuccessful_job_run_ids, f->n_unsuccessful_job_run_ids,
                     sizeof *f->unsuccessful_job_run_ids);
            f->unsuccessful_job_run_ids[f->n_unsuccessful_job_run_ids++] = at->job_run_id;
        }
    }
}

static int state_status(int build_status)
{
    switch (build_status) {
    case BRS(COMPLETED):
        return XST(SUCCEEDED);
    case BRS(FAILED):
    case BRS(CANCELLED):
    case BRS(PRECONDITION_FAILED):
        return XST(FAILED);
    default:
        return XST(RUNNING);
    }
}

/* Fold the build's execution events (res rows: payload) into resp. */
static int fold(q_req *r, dbld_res *res, Databuild__V1__BuildExecutionResponse *resp,
                dbld_status *st)
{
    dbld_arena *a = r->a;
    Databuild__V1__BuildExecutionState *x = resp->state;
    int rows = dbld_res_rows(res);
    size_t n = 0, cap = 16;
    slot *s = dbld_xmalloc(cap * sizeof *s);
    resp->log = dbld_arena_alloc(a, ((size_t)rows + 1) * sizeof *resp->log);
    int rc = 0;
    for (int i = 0; i < rows && !rc; i++) {
        Databuild__V1__BuildEvent *ev;
        rc = decode_event(r, res, i, 0, &ev, st);
        if (rc || ev->event_type_case != EXECUTION_KIND) continue;
        Databuild__V1__ExecutionEvent *e = ev->execution_event;
        x->used_global_quota = e->used_global_quota;
        if (e->entry) resp->log[resp->n_log++] = e->entry;
        Databuild__V1__TaskExecution **tes = &e->execution;
        size_t n_tes = e->execution ? 1 : 0;
        if (e->entry &&
            e->entry->kind_case == DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_REQUIREMENT_CHANGED) {
            tes = e->entry->requirement_changed->tasks;
            n_tes = e->entry->requirement_changed->n_tasks;
        }
        for (size_t k = 0; k < n_tes; k++) {
            if (!tes[k]->n_outputs) continue;
            if (n == cap) s = dbld_xrealloc(s, (cap *= 2) * sizeof *s);
            s[n] = (slot){.key = tes[k]->outputs[0], .seq = n, .te = tes[k]};
            n++;
        }
    }
    if (!rc) {
        n = last_per_task(s, n);
        x->executions = dbld_arena_alloc(a, (n + 1) * sizeof *x->executions);
        for (size_t i = 0; i < n; i++) {
            x->executions[x->n_executions++] = s[i].te;
            add_failures(a, x, s[i].te);
        }
    }
    free(s);
    return rc;
}

int q_get_build_execution(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                          dbld_status *st)
{
    const Databuild__V1__BuildExecutionRequest *req =
        (const Databuild__V1__BuildExecutionRequest *)req_msg;
    dbld_arena *a = r->a;
    if (!*req->build_request_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "build_request_id is required");
    const char *p[] = {req->build_request_id};
    dbld_res *br = NULL;
    int rc = q_exec(r, "SELECT status, updated_ns FROM build_requests WHERE build_request_id = $1",
                    1, p, &br, st);
    if (rc) return rc;
    if (dbld_res_rows(br) == 0) {
        dbld_res_free(br);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no build request \"%.200s\"",
                               req->build_request_id);
    }
    int status = atoi(dbld_res_get(br, 0, 0));
    int64_t updated = strtoll(dbld_res_get(br, 0, 1), NULL, 10);
    dbld_res_free(br);
    Databuild__V1__BuildExecutionResponse *resp =
        dbld_arena_msg(a, &databuild__v1__build_execution_response__descriptor);
    resp->build_request_id = (char *)req->build_request_id;
    resp->state = dbld_arena_msg(a, &databuild__v1__build_execution_state__descriptor);
    resp->state->failures =
        dbld_arena_msg(a, &databuild__v1__build_execution_state__failures__descriptor);
    resp->state->status = state_status(status);
    if (resp->state->status != XST(RUNNING)) resp->state->end_time = updated;
    dbld_res *res = NULL;
    rc = q_exec(r,
                "SELECT payload FROM events WHERE build_request_id = $1"
                " AND kind = " DBLD_SQL_KIND_EXECUTION " ORDER BY idx",
                1, p, &res, st);
    if (rc) return rc;
    rc = fold(r, res, resp, st);
    dbld_res_free(res);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

/* ---- attempt links of one job run ---- */

int q_job_run_links(q_req *r, const char *run, Databuild__V1__JobRunAttemptLinks **out,
                    dbld_status *st)
{
    *out = NULL;
    const char *p[] = {q_text_array(r->a, (char *const *)&run, 1)};
    dbld_res *res = NULL;
    int rc = q_exec(r,
                    "SELECT payload FROM events WHERE job_run_ids && $1::text[]"
                    " AND kind = " DBLD_SQL_KIND_EXECUTION " ORDER BY idx DESC LIMIT 1",
                    1, p, &res, st);
    if (rc) return rc;
    Databuild__V1__BuildEvent *ev = NULL;
    if (dbld_res_rows(res) > 0) rc = decode_event(r, res, 0, 0, &ev, st);
    dbld_res_free(res);
    if (rc || !ev || ev->event_type_case != EXECUTION_KIND || !ev->execution_event->execution)
        return rc;
    const Databuild__V1__TaskExecution *te = ev->execution_event->execution;
    for (size_t i = 0; i < te->n_attempts; i++) {
        if (strcmp(te->attempts[i]->job_run_id, run) != 0) continue;
        Databuild__V1__JobRunAttemptLinks *l =
            dbld_arena_msg(r->a, &databuild__v1__job_run_attempt_links__descriptor);
        l->attempt = te->attempts[i]->attempt;
        l->previous_job_run_id = i > 0 ? te->attempts[i - 1]->job_run_id : "";
        l->next_job_run_id = i + 1 < te->n_attempts ? te->attempts[i + 1]->job_run_id : "";
        *out = l;
        break;
    }
    return 0;
}

void q_attach_links(dbld_arena *a, ProtobufCMessage *msg,
                    const Databuild__V1__JobRunAttemptLinks *l)
{
    /* protobuf-c packs an unknown field as its tag and then data as is, so
     * data holds the length prefix (a varint) and the message */
    size_t len = protobuf_c_message_get_packed_size(&l->base), h = 0;
    ProtobufCMessageUnknownField *u = dbld_arena_alloc(a, sizeof *u);
    u->tag = 1001; /* JobRunSummaryResponseExt.attempt_links */
    u->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    u->data = dbld_arena_alloc(a, len + 10);
    for (size_t v = len; h == 0 || v; v >>= 7)
        u->data[h++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    protobuf_c_message_pack(&l->base, u->data + h);
    u->len = h + len;
    msg->n_unknown_fields = 1;
    msg->unknown_fields = u;
}

/* ---- cancel one job run ---- */

int q_cancel_job_run(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                     dbld_status *st)
{
    const Databuild__V1__JobRunCancelRequest *req =
        (const Databuild__V1__JobRunCancelRequest *)req_msg;
    dbld_arena *a = r->a;
    if (!*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    const char *p[] = {req->job_run_id};
    dbld_res *res = NULL;
    int rc = q_exec(r, "SELECT build_request_id, status FROM job_runs WHERE job_run_id = $1", 1, p,
                    &res, st);
    if (rc) return rc;
    if (dbld_res_rows(res) == 0) {
        dbld_res_free(res);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no job run \"%.200s\"", req->job_run_id);
    }
    char *build = dbld_arena_strdup(a, dbld_res_get(res, 0, 0));
    int status = atoi(dbld_res_get(res, 0, 1));
    dbld_res_free(res);
    if (status != DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED &&
        status != DATABUILD__V1__JOB_STATUS__JOB_RUNNING)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "job run \"%.200s\" has already ended (%s)", req->job_run_id,
                               q_enum_name(&databuild__v1__job_status__descriptor, status));
    q_req_done(r); /* no connection held while the event log writes */
    Databuild__V1__JobRunCancelEvent *ce =
        dbld_arena_msg(a, &databuild__v1__job_run_cancel_event__descriptor);
    ce->job_run_id = req->job_run_id;
    ce->reason = *req->reason ? req->reason : "cancelled by request";
    Databuild__V1__BuildEvent *ev = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    char id[37];
    dbld_uuid_v4(id);
    ev->event_id = dbld_arena_strdup(a, id);
    ev->timestamp = dbld_now_ns();
    ev->build_request_id = build;
    ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT;
    ev->job_run_cancel_event = ce;
    rc = dbld_eventlog_append(r->q->cfg->shared.peers.eventlog, &ev, 1, a, NULL, r->timeout_ms, st);
    if (rc)
        return dbld_status_prefix(st, "could not record the cancel in the event log at %s",
                                  r->q->cfg->shared.peers.eventlog);
    Databuild__V1__JobRunCancelResponse *resp =
        dbld_arena_msg(a, &databuild__v1__job_run_cancel_response__descriptor);
    resp->build_request_id = build;
    *resp_msg = &resp->base;
    return 0;
}
