/* cmd_taints.c - `databuild taints list|show|put`: ListTaints (newest first,
 * tainted_at_until / min_tainted_at cursor, an empty page ends the listing),
 * GetTaintSummary and PutTaints (source CLI_MANUAL). Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>

#define SRC_ENUM (&databuild__v1__source_type_code__descriptor)

int cmd_taints(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "taints: unknown subcommand \"%s\" (expected list, show or put; see "
                        "databuild taints --help)",
                        argv[0]);
    return cli_fail(ctx, CLI_USAGE,
                    "taints: expected a subcommand: list, show or put (see --help)");
}

static const char *source_name(const Databuild__V1__SourceType *s, char *tmp, size_t len)
{
    if (!s) return NULL;
    return cli_enum(SRC_ENUM, (int)s->code, "", tmp, len);
}

/* ---- list ---- */

enum { L_LIMIT, L_ALL, L_UNTIL };

typedef struct list_args {
    cli_paging pg;
    cli_table *t;
} list_args;

static int on_list(cli_ctx *ctx, int id, const char *v, void *user)
{
    list_args *a = user;
    int64_t n;
    switch (id) {
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
        return cli_fail(ctx, CLI_USAGE, "taints list: unexpected argument \"%s\" (see --help)", v);
    }
}

static int fetch_taints(cli_ctx *ctx, dbld_arena *ar, uint64_t cursor, void *user, cli_page *page)
{
    (void)user;
    Databuild__V1__ListTaintsRequest req = DATABUILD__V1__LIST_TAINTS_REQUEST__INIT;
    req.tainted_at_until = cursor;
    Databuild__V1__ListTaintsResponse *resp;
    int rc =
        cli_query_call(ctx, CLI_SVC "ListTaints", &req.base,
                       &databuild__v1__list_taints_response__descriptor, ar, &resp, "list taints");
    if (rc) return rc;
    page->items = (void **)resp->taints;
    page->n = resp->n_taints;
    page->has_more = -1;
    page->next = resp->min_tainted_at;
    return 0;
}

static uint64_t taint_key(const void *item)
{
    return ((const Databuild__V1__PartitionTaintSummary *)item)->tainted_at;
}

static void emit_taint(cli_ctx *ctx, const void *item, void *user)
{
    const Databuild__V1__PartitionTaintSummary *t = item;
    list_args *a = user;
    if (ctx->json) {
        cli_json_line(&t->base);
        return;
    }
    char when[40], src[24], refs[512];
    const char *row[] = {
        t->taint_id,
        cli_time((int64_t)t->tainted_at, 0, when, sizeof when),
        source_name(t->source, src, sizeof src),
        cli_refs(t->refs, t->n_refs, 3, refs, sizeof refs),
        t->comment,
    };
    cli_table_add(a->t, row);
}

int cmd_taints_list(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"limit", 1, L_LIMIT},
        {"all", 0, L_ALL},
        {"until", 1, L_UNTIL},
    };
    list_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_list, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;
    static const char *const hdr[] = {"TAINT_ID", "TAINTED_AT", "SOURCE", "REFS", "COMMENT"};
    cli_lister l = {.what = "taints",
                    .cursor_opt = "--until",
                    .fetch = fetch_taints,
                    .key = taint_key,
                    .emit = emit_taint,
                    .user = &a};
    rc = cli_list_table(ctx, &a.pg, &l, &a.t, 5, hdr);
    return rc;
}

/* ---- show ---- */

static const cli_show SHOW = {
    .cmd = "taints show",
    .what = "taint id",
    .method = CLI_SVC "GetTaintSummary",
    .call_what = "taint summary",
    .req = &databuild__v1__taint_summary_request__descriptor,
    .resp = &databuild__v1__taint_summary_response__descriptor,
    .id_field = "taint_id",
};

int cmd_taints_show(cli_ctx *ctx, int argc, char **argv)
{
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__TaintSummaryResponse *resp;
    int rc = cli_show_call(ctx, argc, argv, &SHOW, ar, &resp);
    if (rc == 0 && resp && resp->taint) {
        const Databuild__V1__PartitionTaintSummary *t = resp->taint;
        char when[40], src[24], refs[8192];
        cli_kv(stdout, "taint", t->taint_id);
        cli_kv(stdout, "tainted at", cli_time((int64_t)t->tainted_at, 1, when, sizeof when));
        cli_kv(stdout, "source", source_name(t->source, src, sizeof src));
        cli_kv(stdout, "comment", t->comment);
        cli_kvf(stdout, "refs", "%zu: %s", t->n_refs,
                cli_refs(t->refs, t->n_refs, 100, refs, sizeof refs));
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- put ---- */

enum { P_COMMENT };

typedef struct put_args {
    cli_strv refs;
    const char *comment;
} put_args;

static int on_put(cli_ctx *ctx, int id, const char *v, void *user)
{
    put_args *a = user;
    if (id == P_COMMENT) {
        a->comment = v;
        return 0;
    }
    if (!*v) return cli_fail(ctx, CLI_USAGE, "taints put: empty partition ref");
    cli_strv_add(&a->refs, v);
    return 0;
}

int cmd_taints_put(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"comment", 1, P_COMMENT}};
    put_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, 1, on_put, &a);
    if (rc == 0 && a.refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE, "taints put: missing partition ref (see --help)");
    if (rc == 0 && (!a.comment || !*a.comment))
        rc = cli_fail(ctx, CLI_USAGE, "taints put: --comment TEXT is required (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) {
        cli_strv_free(&a.refs);
        return rc;
    }
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__PutTaintsRequest req = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    req.refs = dbld_arena_alloc(ar, a.refs.n * sizeof *req.refs);
    for (size_t i = 0; i < a.refs.n; i++) {
        req.refs[i] = dbld_arena_msg(ar, &databuild__v1__partition_ref__descriptor);
        req.refs[i]->str = a.refs.v[i];
    }
    req.n_refs = a.refs.n;
    Databuild__V1__SourceType source = DATABUILD__V1__SOURCE_TYPE__INIT;
    source.code = DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL;
    req.source = &source;
    req.comment = (char *)a.comment;
    Databuild__V1__PutTaintsResponse *resp;
    rc = cli_query_call(ctx, CLI_SVC "PutTaints", &req.base,
                        &databuild__v1__put_taints_response__descriptor, ar, &resp, "put taints");
    if (rc == 0 && ctx->json)
        cli_json_line(&resp->base);
    else if (rc == 0)
        printf("%s\n", resp->taint_id);
    dbld_arena_destroy(ar);
    cli_strv_free(&a.refs);
    return rc;
}
