/* cmd_runs.c - `databuild runs list|show`: ListJobRuns (newest first by
 * scheduled time, started_until / min_start_at cursor, an empty page ends the
 * listing; filters ORed as in the API) and GetJobRunSummary.
 * Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>

#define JS_PREFIX "JOB_"
#define JS_ENUM (&databuild__v1__job_status__descriptor)

int cmd_runs(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(
            ctx, CLI_USAGE,
            "runs: unknown subcommand \"%s\" (expected list, show or cancel; see databuild "
            "runs --help)",
            argv[0]);
    return cli_fail(ctx, CLI_USAGE,
                    "runs: expected a subcommand: list, show or cancel (see --help)");
}

/* Duration of a run: completed - started (0 while it runs: "-"). */
static const char *run_duration(const Databuild__V1__JobRunSummary *r, char *buf, size_t len)
{
    return r->completed_at > 0 ? cli_duration(r->duration_ms, buf, len) : "-";
}

/* ---- list ---- */

enum { L_JOB, L_BUILD, L_PARTITION, L_RUN, L_LIMIT, L_ALL, L_UNTIL };

typedef struct list_args {
    cli_strv job, build, partition, run;
    cli_paging pg;
    cli_table *t;
} list_args;

static int on_list(cli_ctx *ctx, int id, const char *v, void *user)
{
    list_args *a = user;
    int64_t n;
    switch (id) {
    case L_JOB:
        cli_strv_add(&a->job, v);
        return 0;
    case L_BUILD:
        cli_strv_add(&a->build, v);
        return 0;
    case L_PARTITION:
        cli_strv_add(&a->partition, v);
        return 0;
    case L_RUN:
        cli_strv_add(&a->run, v);
        return 0;
    case L_LIMIT:
        return cli_parse_i64(ctx, "limit", v, &a->pg.limit);
    case L_ALL:
        a->pg.all = 1;
        return 0;
    case L_UNTIL:
        if (cli_parse_i64(ctx, "until", v, &n) != 0) return CLI_USAGE;
        a->pg.cursor = (uint64_t)n;
        return 0;
    default:
        return cli_fail(ctx, CLI_USAGE, "runs list: unexpected argument \"%s\" (see --help)", v);
    }
}

static int fetch_runs(cli_ctx *ctx, dbld_arena *ar, uint64_t cursor, void *user, cli_page *page)
{
    list_args *a = user;
    Databuild__V1__ListJobRunsRequest req = DATABUILD__V1__LIST_JOB_RUNS_REQUEST__INIT;
    req.started_until = cursor;
    req.job_labels = a->job.v, req.n_job_labels = a->job.n;
    req.build_reqeust_ids = a->build.v, req.n_build_reqeust_ids = a->build.n;
    req.built_partition_refs = a->partition.v, req.n_built_partition_refs = a->partition.n;
    req.job_run_ids = a->run.v, req.n_job_run_ids = a->run.n;
    Databuild__V1__ListJobRunsResponse *resp;
    int rc = cli_query_call(ctx, CLI_SVC "ListJobRuns", &req.base,
                            &databuild__v1__list_job_runs_response__descriptor, ar, &resp,
                            "list job runs");
    if (rc) return rc;
    page->items = (void **)resp->job_runs;
    page->n = resp->n_job_runs;
    page->has_more = -1;
    page->next = resp->min_start_at;
    return 0;
}

static uint64_t run_key(const void *item)
{
    const Databuild__V1__JobRunSummary *r = item;
    return r->scheduled_at > 0 ? (uint64_t)r->scheduled_at : 0;
}

static void emit_run(cli_ctx *ctx, const void *item, void *user)
{
    const Databuild__V1__JobRunSummary *r = item;
    list_args *a = user;
    if (ctx->json) {
        cli_json_line(&r->base);
        return;
    }
    char st[16], when[40], dur[32], targets[512];
    const char *row[] = {
        r->job_run_id,
        r->job_label,
        cli_enum(JS_ENUM, (int)r->status_code, JS_PREFIX, st, sizeof st),
        r->build_request_id,
        cli_time(r->scheduled_at, 0, when, sizeof when),
        run_duration(r, dur, sizeof dur),
        cli_refs(r->target_partitions, r->n_target_partitions, 3, targets, sizeof targets),
    };
    cli_table_add(a->t, row);
}

int cmd_runs_list(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"job", 1, L_JOB},     {"build", 1, L_BUILD}, {"partition", 1, L_PARTITION},
        {"run", 1, L_RUN},     {"limit", 1, L_LIMIT}, {"all", 0, L_ALL},
        {"until", 1, L_UNTIL},
    };
    list_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_list, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc == 0) {
        static const char *const hdr[] = {"JOB_RUN_ID", "JOB",       "STATUS", "BUILD_REQUEST_ID",
                                          "SCHEDULED",  ">DURATION", "TARGETS"};
        cli_lister l = {.what = "job runs",
                        .cursor_opt = "--until",
                        .fetch = fetch_runs,
                        .key = run_key,
                        .emit = emit_run,
                        .user = &a};
        rc = cli_list_table(ctx, &a.pg, &l, &a.t, 7, hdr);
    }
    cli_strv_free(&a.job);
    cli_strv_free(&a.build);
    cli_strv_free(&a.partition);
    cli_strv_free(&a.run);
    return rc;
}

/* ---- show ---- */

static const cli_show SHOW = {
    .cmd = "runs show",
    .what = "job run id",
    .method = CLI_SVC "GetJobRunSummary",
    .call_what = "job run summary",
    .req = &databuild__v1__job_run_summary_request__descriptor,
    .resp = &databuild__v1__job_run_summary_response__descriptor,
    .id_field = "job_run_id",
};

int cmd_runs_show(cli_ctx *ctx, int argc, char **argv)
{
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__JobRunSummaryResponse *resp;
    int rc = cli_show_call(ctx, argc, argv, &SHOW, ar, &resp);
    if (rc == 0 && resp && resp->job_run) {
        const Databuild__V1__JobRunSummary *r = resp->job_run;
        char st[16], t[40], targets[4096];
        cli_kv(stdout, "job run", r->job_run_id);
        cli_kv(stdout, "job", r->job_label);
        cli_kv(stdout, "build request", r->build_request_id);
        cli_kv(stdout, "status", cli_enum(JS_ENUM, (int)r->status_code, JS_PREFIX, st, sizeof st));
        cli_kv(stdout, "targets",
               cli_refs(r->target_partitions, r->n_target_partitions, 50, targets, sizeof targets));
        cli_kv(stdout, "scheduled at", cli_time(r->scheduled_at, 1, t, sizeof t));
        cli_kv(stdout, "started at", cli_time(r->started_at, 1, t, sizeof t));
        cli_kv(stdout, "completed at", cli_time(r->completed_at, 1, t, sizeof t));
        cli_kv(stdout, "duration", run_duration(r, t, sizeof t));
        cli_kv(stdout, "cancelled", r->cancelled ? "yes" : "no");
        cli_kv(stdout, "message", r->message);
        cli_print_attempt_links(ar, &resp->base);
    }
    dbld_arena_destroy(ar);
    return rc;
}
