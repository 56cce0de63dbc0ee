/* cmd_builds.c - `databuild builds list|show|mermaid|cancel`: build requests
 * through the query service (ListBuildRequests, GetBuildSummary,
 * GetBuildMermaid, QueryOps/CancelBuild). Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BR_PREFIX "BUILD_REQUEST_"
#define BR_ENUM (&databuild__v1__build_request_status_code__descriptor)

static int on_id(cli_ctx *ctx, int id, const char *v, void *user)
{
    cli_one_id *o = user;
    if (id == CLI_OPT_REASON) {
        o->reason = v;
        return 0;
    }
    if (o->id)
        return cli_fail(ctx, CLI_USAGE, "%s: unexpected argument \"%s\" (one %s; see --help)",
                        o->cmd, v, o->what);
    o->id = v;
    return 0;
}

int cmd_builds(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "builds: unknown subcommand \"%s\" (expected list, show, mermaid, "
                        "cancel or execution; see databuild builds --help)",
                        argv[0]);
    return cli_fail(ctx, CLI_USAGE,
                    "builds: expected a subcommand: list, show, mermaid, cancel or execution "
                    "(see --help)");
}

int cli_parse_one_id(cli_ctx *ctx, int argc, char **argv, cli_one_id *o, const cli_opt *opts,
                     size_t n_opts)
{
    int rc = cli_parse(ctx, argc, argv, opts, n_opts, on_id, o);
    if (rc) return rc;
    if (!o->id || !*o->id)
        return cli_fail(ctx, CLI_USAGE, "%s: missing %s (see --help)", o->cmd, o->what);
    return cli_config(ctx);
}

/* ---- list ---- */

enum { L_STATUS, L_PARTITION, L_BUILT, L_JOB, L_WANT, L_COMMENT, L_LIMIT, L_ALL, L_UNTIL };

typedef struct list_args {
    cli_strv status, partition, built, job, want;
    const char *comment;
    cli_paging pg;
    cli_table *t;
} list_args;

static int on_list(cli_ctx *ctx, int id, const char *v, void *user)
{
    list_args *a = user;
    int64_t n;
    switch (id) {
    case L_STATUS: {
        int code;
        char names[256];
        if (cli_enum_parse(BR_ENUM, BR_PREFIX, v, &code) != 0)
            return cli_fail(ctx, CLI_USAGE, "--status: unknown build status \"%s\" (one of %s)", v,
                            cli_enum_names(BR_ENUM, BR_PREFIX, names, sizeof names));
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(BR_ENUM, code);
        cli_strv_add(&a->status, ev->name);
        return 0;
    }
    case L_PARTITION:
        cli_strv_add(&a->partition, v);
        return 0;
    case L_BUILT:
        cli_strv_add(&a->built, v);
        return 0;
    case L_JOB:
        cli_strv_add(&a->job, v);
        return 0;
    case L_WANT:
        cli_strv_add(&a->want, v);
        return 0;
    case L_COMMENT:
        a->comment = v;
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
        return cli_fail(ctx, CLI_USAGE, "builds list: unexpected argument \"%s\" (see --help)", v);
    }
}

static int fetch_builds(cli_ctx *ctx, dbld_arena *ar, uint64_t cursor, void *user, cli_page *page)
{
    list_args *a = user;
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    req.started_until = cursor;
    req.build_status = a->status.v, req.n_build_status = a->status.n;
    req.output_partition = a->partition.v, req.n_output_partition = a->partition.n;
    req.built_partition = a->built.v, req.n_built_partition = a->built.n;
    req.run_jobs = a->job.v, req.n_run_jobs = a->job.n;
    req.triggering_want_ids = a->want.v, req.n_triggering_want_ids = a->want.n;
    req.comment_contains = (char *)(a->comment ? a->comment : "");
    Databuild__V1__ListBuildsResponse *resp;
    int rc = cli_query_call(ctx, CLI_SVC "ListBuildRequests", &req.base,
                            &databuild__v1__list_builds_response__descriptor, ar, &resp,
                            "list build requests");
    if (rc) return rc;
    page->items = (void **)resp->builds;
    page->n = resp->n_builds;
    page->has_more = resp->has_more;
    page->next = resp->min_started;
    return 0;
}

static uint64_t build_key(const void *item)
{
    const Databuild__V1__BuildSummary *b = item;
    return b->requested_at > 0 ? (uint64_t)b->requested_at : 0;
}

static int build_status_code(const Databuild__V1__BuildSummary *b)
{
    return b->status ? (int)b->status->code : 0;
}

static void emit_build(cli_ctx *ctx, const void *item, void *user)
{
    const Databuild__V1__BuildSummary *b = item;
    list_args *a = user;
    if (ctx->json) {
        cli_json_line(&b->base);
        return;
    }
    char st[16], when[40], dur[32], jobs[64], parts[512];
    snprintf(jobs, sizeof jobs, "%u/%u/%u", b->completed_jobs, b->failed_jobs, b->total_jobs);
    const char *row[] = {
        b->build_request_id,
        cli_enum(BR_ENUM, build_status_code(b), BR_PREFIX, st, sizeof st),
        cli_time(b->requested_at, 0, when, sizeof when),
        b->completed_at > 0 ? cli_duration(b->duration_ms, dur, sizeof dur) : "-",
        jobs,
        cli_refs(b->requested_partitions, b->n_requested_partitions, 3, parts, sizeof parts),
        b->comment,
    };
    cli_table_add(a->t, row);
}

int cmd_builds_list(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"status", 1, L_STATUS}, {"partition", 1, L_PARTITION},
        {"built", 1, L_BUILT},   {"job", 1, L_JOB},
        {"want", 1, L_WANT},     {"comment", 1, L_COMMENT},
        {"limit", 1, L_LIMIT},   {"all", 0, L_ALL},
        {"until", 1, L_UNTIL},
    };
    list_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_list, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc == 0) {
        static const char *const hdr[] = {"BUILD_REQUEST_ID", "STATUS", "REQUESTED",
                                          ">DURATION",        ">JOBS",  "PARTITIONS",
                                          "COMMENT"};
        cli_lister l = {.what = "build requests",
                        .cursor_opt = "--until",
                        .fetch = fetch_builds,
                        .key = build_key,
                        .emit = emit_build,
                        .user = &a};
        rc = cli_list_table(ctx, &a.pg, &l, &a.t, 7, hdr);
    }
    cli_strv_free(&a.status);
    cli_strv_free(&a.partition);
    cli_strv_free(&a.built);
    cli_strv_free(&a.job);
    cli_strv_free(&a.want);
    return rc;
}

/* ---- show ---- */

int cmd_builds_show(cli_ctx *ctx, int argc, char **argv)
{
    cli_one_id o = {.cmd = "builds show", .what = "build request id"};
    int rc = cli_parse_one_id(ctx, argc, argv, &o, NULL, 0);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = (char *)o.id;
    Databuild__V1__BuildSummaryResponse *resp;
    rc = cli_query_call(ctx, CLI_SVC "GetBuildSummary", &req.base,
                        &databuild__v1__build_summary_response__descriptor, ar, &resp,
                        "build summary");
    if (rc == 0 && ctx->json) {
        cli_json_line(&resp->base);
    } else if (rc == 0) {
        const Databuild__V1__BuildSummary *b = resp->summary;
        char st[16], t[40], parts[2048];
        cli_kv(stdout, "build request", resp->build_id);
        cli_kv(stdout, "status", cli_enum(BR_ENUM, (int)resp->status, BR_PREFIX, st, sizeof st));
        if (b) {
            cli_kv(stdout, "requested",
                   cli_refs(b->requested_partitions, b->n_requested_partitions, 20, parts,
                            sizeof parts));
            cli_kv(stdout, "comment", b->comment);
            cli_kv(stdout, "requested at", cli_time(b->requested_at, 1, t, sizeof t));
            cli_kv(stdout, "started at", cli_time(b->started_at, 1, t, sizeof t));
            cli_kv(stdout, "completed at", cli_time(b->completed_at, 1, t, sizeof t));
            cli_kv(stdout, "duration",
                   b->completed_at > 0 ? cli_duration(b->duration_ms, t, sizeof t) : "-");
            cli_kvf(stdout, "jobs", "%u total, %u completed, %u failed, %u cancelled",
                    b->total_jobs, b->completed_jobs, b->failed_jobs, b->cancelled_jobs);
            cli_kv(stdout, "cancelled", b->cancelled ? "yes" : "no");
        }
        printf("\n");
        static const char *const hdr[] = {"PARTITION", "STATUS"};
        cli_table *tb = cli_table_new(2, hdr);
        for (size_t i = 0; i < resp->n_partitions; i++) {
            const Databuild__V1__PartitionBuildStatus *p = resp->partitions[i];
            const char *row[] = {p->ref ? p->ref->str : NULL,
                                 cli_enum(&databuild__v1__partition_status__descriptor,
                                          (int)p->status, "PARTITION_", st, sizeof st)};
            cli_table_add(tb, row);
        }
        cli_table_print(tb, stdout);
        cli_table_free(tb);
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- mermaid ---- */

int cmd_builds_mermaid(cli_ctx *ctx, int argc, char **argv)
{
    cli_one_id o = {.cmd = "builds mermaid", .what = "build request id"};
    int rc = cli_parse_one_id(ctx, argc, argv, &o, NULL, 0);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = (char *)o.id;
    Databuild__V1__BuildMermaidResponse *resp;
    rc = cli_query_call(ctx, CLI_SVC "GetBuildMermaid", &req.base,
                        &databuild__v1__build_mermaid_response__descriptor, ar, &resp,
                        "build mermaid");
    if (rc == 0 && ctx->json) {
        cli_json_line(&resp->base);
    } else if (rc == 0) {
        size_t n = strlen(resp->mermaid);
        fputs(resp->mermaid, stdout);
        if (n == 0 || resp->mermaid[n - 1] != '\n') putchar('\n');
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- cancel ---- */

int cmd_builds_cancel(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"reason", 1, CLI_OPT_REASON}};
    cli_one_id o = {.cmd = "builds cancel", .what = "build request id"};
    int rc = cli_parse_one_id(ctx, argc, argv, &o, opts, 1);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__CancelBuildRequest req = DATABUILD__V1__CANCEL_BUILD_REQUEST__INIT;
    req.build_request_id = (char *)o.id;
    req.reason = (char *)(o.reason ? o.reason : "cancelled from the CLI");
    Databuild__V1__CancelBuildResponse *resp;
    rc = cli_query_call(ctx, CLI_OPS "CancelBuild", &req.base,
                        &databuild__v1__cancel_build_response__descriptor, ar, &resp,
                        "cancel build");
    if (rc == 0 && ctx->json)
        cli_json_line(&resp->base);
    else if (rc == 0)
        printf("cancel requested for build %s\n", o.id);
    dbld_arena_destroy(ar);
    return rc;
}
