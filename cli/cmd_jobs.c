/* cmd_jobs.c - `databuild jobs list|show`: ListJobs (every job of the graph,
 * no paging) and GetJobSummary. Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>

#define JS_PREFIX "JOB_"
#define JS_ENUM (&databuild__v1__job_status__descriptor)

int cmd_jobs(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "jobs: unknown subcommand \"%s\" (expected list or show; see databuild "
                        "jobs --help)",
                        argv[0]);
    return cli_fail(ctx, CLI_USAGE, "jobs: expected a subcommand: list or show (see --help)");
}

static int no_args(cli_ctx *ctx, int id, const char *v, void *user)
{
    (void)id;
    return cli_fail(ctx, CLI_USAGE, "%s: unexpected argument \"%s\" (see --help)",
                    (const char *)user, v);
}

int cmd_jobs_list(cli_ctx *ctx, int argc, char **argv)
{
    int rc = cli_parse(ctx, argc, argv, NULL, 0, no_args, "jobs list");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__ListJobsRequest req = DATABUILD__V1__LIST_JOBS_REQUEST__INIT;
    Databuild__V1__ListJobsResponse *resp;
    rc = cli_query_call(ctx, CLI_SVC "ListJobs", &req.base,
                        &databuild__v1__list_jobs_response__descriptor, ar, &resp, "list jobs");
    if (rc == 0 && ctx->json) {
        for (size_t i = 0; i < resp->n_jobs; i++)
            cli_json_line(&resp->jobs[i]->base);
    } else if (rc == 0) {
        static const char *const hdr[] = {"JOB",        ">RUNS",      ">OK",      ">FAILED",
                                          ">CANCELLED", ">PARTS/RUN", "LAST_RUN", "LAST_STATUS"};
        cli_table *t = cli_table_new(8, hdr);
        for (size_t i = 0; i < resp->n_jobs; i++) {
            const Databuild__V1__JobSummary *j = resp->jobs[i];
            char runs[16], ok[16], failed[16], cancelled[16], avg[32], last[40], st[16];
            snprintf(runs, sizeof runs, "%u", j->total_runs);
            snprintf(ok, sizeof ok, "%u", j->successful_runs);
            snprintf(failed, sizeof failed, "%u", j->failed_runs);
            snprintf(cancelled, sizeof cancelled, "%u", j->cancelled_runs);
            snprintf(avg, sizeof avg, "%.1f", j->average_partitions_per_run);
            const char *row[] = {
                j->job_label,
                runs,
                ok,
                failed,
                cancelled,
                avg,
                cli_time(j->last_run_timestamp, 0, last, sizeof last),
                j->total_runs
                    ? cli_enum(JS_ENUM, (int)j->last_run_status_code, JS_PREFIX, st, sizeof st)
                    : "-",
            };
            cli_table_add(t, row);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    dbld_arena_destroy(ar);
    return rc;
}

static const cli_show SHOW = {
    .cmd = "jobs show",
    .what = "job label",
    .method = CLI_SVC "GetJobSummary",
    .call_what = "job summary",
    .req = &databuild__v1__job_summary_request__descriptor,
    .resp = &databuild__v1__job_summary_response__descriptor,
    .id_field = "job_label",
};

int cmd_jobs_show(cli_ctx *ctx, int argc, char **argv)
{
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__JobSummaryResponse *resp;
    int rc = cli_show_call(ctx, argc, argv, &SHOW, ar, &resp);
    if (rc == 0 && resp && resp->job) {
        const Databuild__V1__JobSummary *j = resp->job;
        char t[40], st[16], builds[4096];
        cli_kv(stdout, "job", j->job_label);
        cli_kvf(stdout, "runs", "%u (%u completed, %u failed, %u cancelled)", j->total_runs,
                j->successful_runs, j->failed_runs, j->cancelled_runs);
        cli_kvf(stdout, "partitions/run", "%.2f", j->average_partitions_per_run);
        cli_kv(stdout, "last run", cli_time(j->last_run_timestamp, 1, t, sizeof t));
        cli_kv(stdout, "last status",
               j->total_runs
                   ? cli_enum(JS_ENUM, (int)j->last_run_status_code, JS_PREFIX, st, sizeof st)
                   : "-");
        cli_kv(stdout, "recent builds",
               cli_strs(j->recent_builds, j->n_recent_builds, 10, builds, sizeof builds));
    }
    dbld_arena_destroy(ar);
    return rc;
}
