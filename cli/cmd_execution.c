/* cmd_execution.c - `databuild builds execution ID` (QueryOps/GetBuildExecution:
 * a table of every task's attempts, the used quotas and failures, then the
 * execution log), `databuild runs cancel ID` (QueryOps/CancelJobRun) and the
 * attempt links `runs show` prints (GetJobRunSummary's field 1001, read by
 * parsing the response again as JobRunSummaryResponseExt).
 * Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild_ext.pb-c.h"
#include "dbld/util.h"

#include <stdio.h>
#include <string.h>

#define AST_ENUM (&databuild__v1__execution_attempt__status__descriptor)
#define ARES_ENUM (&databuild__v1__execution_attempt__result__descriptor)

/* The name of a log entry's kind ("retry_denied"). */
static const char *entry_name(const Databuild__V1__ExecutionLogEntry *e)
{
    const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
        &databuild__v1__execution_log_entry__descriptor, (unsigned)e->kind_case);
    return fd ? fd->name : "?";
}

/* The job run an entry is about and what it says beyond its kind. */
static void entry_detail(dbld_arena *a, const Databuild__V1__ExecutionLogEntry *e, const char **run,
                         const char **detail)
{
    const Databuild__V1__JobRunSnapshot *s = NULL;
    *detail = "";
    switch (e->kind_case) {
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_REQUIREMENT_CHANGED:
        *detail = dbld_arena_printf(a, "%zu tasks: %s", e->requirement_changed->n_tasks,
                                    e->requirement_changed->message);
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUNS_LAUNCHED:
        s = e->job_runs_launched->n_job_runs ? e->job_runs_launched->job_runs[0] : NULL;
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUNS_LAUNCH_FAILED:
        if (e->job_runs_launch_failed->n_job_runs) {
            s = e->job_runs_launch_failed->job_runs[0]->job_run;
            *detail = e->job_runs_launch_failed->job_runs[0]->reason;
        }
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUNS_REUSED:
        s = e->job_runs_reused->n_job_runs ? e->job_runs_reused->job_runs[0] : NULL;
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUNS_ENDED:
        s = e->job_runs_ended->n_job_runs ? e->job_runs_ended->job_runs[0] : NULL;
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUN_DISCARDED:
        s = e->job_run_discarded->snapshot;
        *detail = e->job_run_discarded->reason;
        break;
    case DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_RETRY_DENIED:
        s = e->retry_denied->n_job_runs ? e->retry_denied->job_runs[0] : NULL;
        *detail = e->retry_denied->reason;
        break;
    default:
        break;
    }
    *run = s ? s->job_run_id : "";
    if (s && !**detail &&
        e->kind_case != DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_JOB_RUNS_LAUNCHED) {
        char r[40];
        *detail = dbld_arena_strdup(a, cli_enum(ARES_ENUM, (int)s->result, "", r, sizeof r));
    }
    if (s && s->attempt > 0)
        *detail = dbld_arena_printf(a, "attempt %d%s%s", s->attempt, **detail ? ": " : "", *detail);
}

static void print_attempts(dbld_arena *a, const Databuild__V1__BuildExecutionState *x)
{
    static const char *const hdr[] = {"TASK",   "JOB",    ">ATTEMPT", "JOB_RUN_ID",
                                      "STATUS", "RESULT", "REUSED",   ">QUOTA"};
    cli_table *t = cli_table_new(8, hdr);
    for (size_t i = 0; i < x->n_executions; i++) {
        const Databuild__V1__TaskExecution *te = x->executions[i];
        char refs[512], quota[16];
        cli_strs(te->outputs, te->n_outputs, 3, refs, sizeof refs);
        snprintf(quota, sizeof quota, "%d", te->used_quota);
        if (te->n_attempts == 0) {
            const char *row[] = {refs, te->job_label, "-", "-", "-", "-", "-", quota};
            cli_table_add(t, row);
        }
        for (size_t k = 0; k < te->n_attempts; k++) {
            const Databuild__V1__ExecutionAttempt *at = te->attempts[k];
            char st[32], res[40], num[16];
            snprintf(num, sizeof num, "%d", at->attempt);
            const char *row[] = {
                k ? "" : refs,
                k ? "" : te->job_label,
                num,
                at->job_run_id,
                cli_enum(AST_ENUM, (int)at->status, "", st, sizeof st),
                at->result ? cli_enum(ARES_ENUM, (int)at->result, "", res, sizeof res) : "-",
                at->reused ? dbld_arena_printf(a, "yes (build %s)", at->build_request_id) : "no",
                k ? "" : quota};
            cli_table_add(t, row);
        }
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

static void print_log(dbld_arena *a, const Databuild__V1__BuildExecutionResponse *r)
{
    static const char *const hdr[] = {"TIME", "ENTRY", "JOB_RUN_ID", "DETAIL"};
    cli_table *t = cli_table_new(4, hdr);
    for (size_t i = 0; i < r->n_log; i++) {
        char when[40];
        const char *run, *detail;
        entry_detail(a, r->log[i], &run, &detail);
        const char *row[] = {cli_time(r->log[i]->time, 1, when, sizeof when), entry_name(r->log[i]),
                             *run ? run : "-", detail};
        cli_table_add(t, row);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

static const cli_show EXECUTION = {
    .cmd = "builds execution",
    .what = "build request id",
    .method = CLI_OPS "GetBuildExecution",
    .call_what = "build execution",
    .req = &databuild__v1__build_execution_request__descriptor,
    .resp = &databuild__v1__build_execution_response__descriptor,
    .id_field = "build_request_id",
};

int cmd_builds_execution(cli_ctx *ctx, int argc, char **argv)
{
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__BuildExecutionResponse *r;
    int rc = cli_show_call(ctx, argc, argv, &EXECUTION, ar, &r);
    if (rc == 0 && r && r->state) {
        const Databuild__V1__BuildExecutionState *x = r->state;
        char st[32], t[40];
        cli_kv(stdout, "build request", r->build_request_id);
        cli_kv(stdout, "status",
               cli_enum(&databuild__v1__build_execution_state__status__descriptor, (int)x->status,
                        "", st, sizeof st));
        if (x->end_time) cli_kv(stdout, "ended at", cli_time(x->end_time, 1, t, sizeof t));
        cli_kvf(stdout, "global quota used", "%d", x->used_global_quota);
        if (x->failures)
            cli_kvf(stdout, "failures", "%zu launch failure%s, %zu unsuccessful run%s",
                    x->failures->n_launch_failures, x->failures->n_launch_failures == 1 ? "" : "s",
                    x->failures->n_unsuccessful_job_run_ids,
                    x->failures->n_unsuccessful_job_run_ids == 1 ? "" : "s");
        printf("\n");
        print_attempts(ar, x);
        printf("\nexecution log:\n");
        print_log(ar, r);
    }
    dbld_arena_destroy(ar);
    return rc;
}

void cli_print_attempt_links(dbld_arena *a, const ProtobufCMessage *resp)
{
    size_t len = protobuf_c_message_get_packed_size(resp);
    uint8_t *buf = dbld_arena_alloc(a, len + 1);
    protobuf_c_message_pack(resp, buf);
    Databuild__V1__JobRunSummaryResponseExt *x =
        (Databuild__V1__JobRunSummaryResponseExt *)protobuf_c_message_unpack(
            &databuild__v1__job_run_summary_response_ext__descriptor, dbld_arena_allocator(a), len,
            buf);
    if (!x || !x->attempt_links) return;
    const Databuild__V1__JobRunAttemptLinks *l = x->attempt_links;
    cli_kvf(stdout, "attempt", "%d", l->attempt);
    cli_kv(stdout, "previous attempt", *l->previous_job_run_id ? l->previous_job_run_id : "-");
    cli_kv(stdout, "next attempt", *l->next_job_run_id ? l->next_job_run_id : "-");
}

int cmd_runs_cancel(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"reason", 1, CLI_OPT_REASON}};
    cli_one_id o = {.cmd = "runs cancel", .what = "job run id"};
    int rc = cli_parse_one_id(ctx, argc, argv, &o, opts, 1);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__JobRunCancelRequest req = DATABUILD__V1__JOB_RUN_CANCEL_REQUEST__INIT;
    req.job_run_id = (char *)o.id;
    req.reason = (char *)(o.reason ? o.reason : "cancelled from the CLI");
    Databuild__V1__JobRunCancelResponse *resp;
    rc = cli_query_call(ctx, CLI_OPS "CancelJobRun", &req.base,
                        &databuild__v1__job_run_cancel_response__descriptor, ar, &resp,
                        "cancel job run");
    if (rc == 0 && ctx->json)
        cli_json_line(&resp->base);
    else if (rc == 0)
        printf("cancel requested for job run %s (build %s)\n", o.id, resp->build_request_id);
    dbld_arena_destroy(ar);
    return rc;
}
