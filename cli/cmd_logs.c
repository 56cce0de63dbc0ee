/* cmd_logs.c - `databuild logs RUN_ID [--follow]`: a job run's wrapper log
 * through QueryOps/GetJobLogs.
 *
 * Pages oldest first: since_timestamp is an exclusive lower bound and a
 * server page never ends inside a run of equal timestamps, so the next page
 * is asked for with the last entry's timestamp (parsed as the event log
 * stores it: Unix ns, values below 1e11 as seconds). --follow keeps polling
 * while the run is not finished (GetJobRunSummary), then drains what is left
 * and exits. Conventions: cmd_query.h.
 */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 1000 /* entries per GetJobLogs call (the server's default) */
#define FOLLOW_POLL_MS 500

enum { O_FOLLOW, O_LEVEL, O_LIMIT, O_SINCE };

typedef struct logs_args {
    const char *run;
    int follow;
    int level; /* min_level: 0 DEBUG .. 3 ERROR */
    int64_t limit;
    int64_t since;
} logs_args;

static int on_opt(cli_ctx *ctx, int id, const char *v, void *user)
{
    logs_args *a = user;
    switch (id) {
    case O_FOLLOW:
        a->follow = 1;
        return 0;
    case O_LEVEL:
        if (cli_enum_parse(&databuild__v1__log_message__log_level__descriptor, "", v, &a->level) !=
            0)
            return cli_fail(ctx, CLI_USAGE,
                            "--level: expected debug, info, warn or error (or 0..3), got \"%s\"",
                            v);
        return 0;
    case O_LIMIT:
        return cli_parse_i64(ctx, "limit", v, &a->limit);
    case O_SINCE:
        return cli_parse_i64(ctx, "since", v, &a->since);
    default:
        if (a->run)
            return cli_fail(ctx, CLI_USAGE,
                            "logs: unexpected argument \"%s\" (one job run id; see --help)", v);
        a->run = v;
        return 0;
    }
}

/* JobLogEntry.timestamp as the event log stores it; 0 when it does not parse. */
static int64_t entry_ns(const char *s)
{
    char *end = NULL;
    long long v = s && *s ? strtoll(s, &end, 10) : 0;
    if (!end || *end || v <= 0) return 0;
    return v < 100000000000LL ? v * 1000000000LL : v;
}

static void put_map(const char *key, const char *value)
{
    printf(" %s=%s", key, value);
}

static void print_entry(const cli_ctx *ctx, const Databuild__V1__JobLogEntry *e)
{
    if (ctx->json) {
        cli_json_line(&e->base);
        return;
    }
    char when[40], tmp[16], buf[1024];
    int64_t ns = entry_ns(e->timestamp);
    if (ns)
        cli_time(ns, 1, when, sizeof when);
    else
        snprintf(when, sizeof when, "%s", e->timestamp[0] ? e->timestamp : "-");
    switch (e->content_case) {
    case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG: {
        const Databuild__V1__LogMessage *m = e->log;
        size_t n = strlen(m->message);
        while (n > 0 && (m->message[n - 1] == '\n' || m->message[n - 1] == '\r'))
            n--;
        printf("%-24s  %-8s  %.*s", when,
               cli_enum(&databuild__v1__log_message__log_level__descriptor, (int)m->level, "", tmp,
                        sizeof tmp),
               (int)n, m->message);
        for (size_t i = 0; i < m->n_fields; i++)
            put_map(m->fields[i]->key, m->fields[i]->value);
        break;
    }
    case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC: {
        const Databuild__V1__MetricPoint *m = e->metric;
        printf("%-24s  %-8s  %s=%g%s%s", when, "METRIC", m->name, m->value, m->unit[0] ? " " : "",
               m->unit);
        for (size_t i = 0; i < m->n_labels; i++)
            put_map(m->labels[i]->key, m->labels[i]->value);
        break;
    }
    case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_JOB_EVENT: {
        const Databuild__V1__WrapperJobEvent *j = e->job_event;
        printf("%-24s  %-8s  %s", when, "EVENT", j->event_type[0] ? j->event_type : "-");
        if (j->job_status[0]) printf(" status=%s", j->job_status);
        if (j->exit_code) printf(" exit_code=%d", j->exit_code);
        for (size_t i = 0; i < j->n_metadata; i++)
            put_map(j->metadata[i]->key, j->metadata[i]->value);
        break;
    }
    case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_MANIFEST: {
        const Databuild__V1__PartitionManifest *m = e->manifest;
        printf("%-24s  %-8s  %s", when, "MANIFEST",
               cli_refs(m->outputs, m->n_outputs, 10, buf, sizeof buf));
        break;
    }
    default:
        printf("%-24s  %-8s  (no content)", when, "-");
    }
    printf("\n");
}

static int terminal(int status)
{
    return status == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED ||
           status == DATABUILD__V1__JOB_STATUS__JOB_FAILED ||
           status == DATABUILD__V1__JOB_STATUS__JOB_CANCELLED ||
           status == DATABUILD__V1__JOB_STATUS__JOB_SKIPPED;
}

/* *finished = whether the run has finished; returns 0 or CLI_FAIL. */
static int run_finished(cli_ctx *ctx, dbld_arena *ar, const char *run, int *finished)
{
    Databuild__V1__JobRunSummaryRequest req = DATABUILD__V1__JOB_RUN_SUMMARY_REQUEST__INIT;
    req.job_run_id = (char *)run;
    Databuild__V1__JobRunSummaryResponse *resp;
    int rc = cli_query_call(ctx, CLI_SVC "GetJobRunSummary", &req.base,
                            &databuild__v1__job_run_summary_response__descriptor, ar, &resp,
                            "job run summary");
    if (rc) return rc;
    *finished = resp->job_run && terminal((int)resp->job_run->status_code);
    return 0;
}

int cmd_logs(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"follow", 0, O_FOLLOW},
        {"level", 1, O_LEVEL},
        {"limit", 1, O_LIMIT},
        {"since", 1, O_SINCE},
    };
    logs_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_opt, &a);
    if (rc == 0 && (!a.run || !*a.run))
        rc = cli_fail(ctx, CLI_USAGE, "logs: missing job run id (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;

    dbld_arena *ar = dbld_arena_create();
    int64_t since = a.since, printed = 0;
    int finished = 0; /* the run was seen finished: one more drain, then stop */
    for (;;) {
        dbld_arena_reset(ar);
        Databuild__V1__JobLogsRequest req = DATABUILD__V1__JOB_LOGS_REQUEST__INIT;
        req.job_run_id = (char *)a.run;
        req.since_timestamp = since;
        req.min_level = a.level;
        int64_t want = a.limit ? a.limit - printed : PAGE;
        req.limit = (uint32_t)(want < PAGE ? want : PAGE);
        Databuild__V1__JobLogsResponse *resp;
        rc = cli_query_call(ctx, CLI_OPS "GetJobLogs", &req.base,
                            &databuild__v1__job_logs_response__descriptor, ar, &resp, "job logs");
        if (rc) break;
        int64_t before = since;
        for (size_t i = 0; i < resp->n_entries && (!a.limit || printed < a.limit); i++) {
            print_entry(ctx, resp->entries[i]);
            printed++;
            int64_t ns = entry_ns(resp->entries[i]->timestamp);
            if (ns > since) since = ns;
        }
        if (a.limit && printed >= a.limit) break;
        if (resp->has_more) {
            if (since <= before) {
                rc = cli_fail(ctx, CLI_FAIL,
                              "job logs (%s): cannot page on: the entries carry no usable "
                              "timestamp",
                              cli_peer(ctx, "query"));
                break;
            }
            continue;
        }
        if (!a.follow || finished) break;
        fflush(stdout);
        if ((rc = run_finished(ctx, ar, a.run, &finished)) != 0) break;
        if (!finished) dbld_sleep_ms(FOLLOW_POLL_MS);
    }
    dbld_arena_destroy(ar);
    return rc;
}
