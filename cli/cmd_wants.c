/* cmd_wants.c - `databuild wants list|show|put`: ListWants (newest first,
 * requested_until / min_requested_at cursor, an empty page ends the listing),
 * GetWantSummary and PutWants (source CLI_MANUAL). Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#include "databuild.pb-c.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_PREFIX "PARTITION_"
#define PS_ENUM (&databuild__v1__partition_status__descriptor)

int cmd_wants(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "wants: unknown subcommand \"%s\" (expected list, show or put; see "
                        "databuild wants --help)",
                        argv[0]);
    return cli_fail(ctx, CLI_USAGE, "wants: expected a subcommand: list, show or put (see --help)");
}

static const char *want_ref(const Databuild__V1__PartitionWantSummary *w)
{
    return w->want && w->want->ref ? w->want->ref->str : "";
}

/* Current status of the want's partition: from partitions (graph-produced)
 * or external_partitions; NULL when neither lists it. */
static const char *want_status(const Databuild__V1__PartitionWantSummary *w, char *tmp, size_t len)
{
    const char *ref = want_ref(w);
    for (size_t i = 0; i < w->n_partitions; i++) {
        const Databuild__V1__PartitionSummary *p = w->partitions[i];
        if (p->partition_ref && strcmp(p->partition_ref->str, ref) == 0)
            return cli_enum(PS_ENUM, (int)p->status_code, PS_PREFIX, tmp, len);
    }
    for (size_t i = 0; i < w->n_external_partitions; i++) {
        const Databuild__V1__LabeledPartitionBuildStatus *p = w->external_partitions[i];
        if (p->ref && strcmp(p->ref->str, ref) == 0 && p->status)
            return cli_enum(PS_ENUM, (int)p->status->status, PS_PREFIX, tmp, len);
    }
    return NULL;
}

/* ---- list ---- */

enum { L_LIVE, L_LIMIT, L_ALL, L_UNTIL };

typedef struct list_args {
    int live;
    cli_paging pg;
    uint64_t now;
    cli_table *t;
} list_args;

static int on_list(cli_ctx *ctx, int id, const char *v, void *user)
{
    list_args *a = user;
    int64_t n;
    switch (id) {
    case L_LIVE:
        a->live = 1;
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
        return cli_fail(ctx, CLI_USAGE, "wants list: unexpected argument \"%s\" (see --help)", v);
    }
}

static int fetch_wants(cli_ctx *ctx, dbld_arena *ar, uint64_t cursor, void *user, cli_page *page)
{
    list_args *a = user;
    Databuild__V1__ListWantsRequest req = DATABUILD__V1__LIST_WANTS_REQUEST__INIT;
    req.requested_until = cursor;
    req.ttl_until = a->live ? a->now : 0;
    Databuild__V1__ListWantsResponse *resp;
    int rc =
        cli_query_call(ctx, CLI_SVC "ListWants", &req.base,
                       &databuild__v1__list_wants_response__descriptor, ar, &resp, "list wants");
    if (rc) return rc;
    page->items = (void **)resp->wants;
    page->n = resp->n_wants;
    page->has_more = -1;
    page->next = resp->min_requested_at;
    return 0;
}

static uint64_t want_key(const void *item)
{
    const Databuild__V1__PartitionWantSummary *w = item;
    return w->want ? w->want->created_at : 0;
}

static void emit_want(cli_ctx *ctx, const void *item, void *user)
{
    const Databuild__V1__PartitionWantSummary *w = item;
    list_args *a = user;
    if (ctx->json) {
        cli_json_line(&w->base);
        return;
    }
    char when[40], st[16], ttl[32], sla[32];
    const Databuild__V1__PartitionWant *pw = w->want;
    const char *row[] = {
        pw ? pw->want_id : NULL,
        cli_time(pw ? (int64_t)pw->created_at : 0, 0, when, sizeof when),
        want_ref(w),
        want_status(w, st, sizeof st),
        cli_seconds(pw ? pw->ttl_seconds : 0, ttl, sizeof ttl),
        cli_seconds(pw ? pw->sla_seconds : 0, sla, sizeof sla),
        w->comment,
    };
    cli_table_add(a->t, row);
}

int cmd_wants_list(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"live", 0, L_LIVE},
        {"limit", 1, L_LIMIT},
        {"all", 0, L_ALL},
        {"until", 1, L_UNTIL},
    };
    list_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_list, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;
    a.now = (uint64_t)dbld_now_ns();
    static const char *const hdr[] = {"WANT_ID", "CREATED", "REF",    "STATUS",
                                      ">TTL",    ">SLA",    "COMMENT"};
    cli_lister l = {.what = "wants",
                    .cursor_opt = "--until",
                    .fetch = fetch_wants,
                    .key = want_key,
                    .emit = emit_want,
                    .user = &a};
    rc = cli_list_table(ctx, &a.pg, &l, &a.t, 7, hdr);
    return rc;
}

/* ---- show ---- */

static const cli_show SHOW = {
    .cmd = "wants show",
    .what = "want id",
    .method = CLI_SVC "GetWantSummary",
    .call_what = "want summary",
    .req = &databuild__v1__want_summary_request__descriptor,
    .resp = &databuild__v1__want_summary_response__descriptor,
    .id_field = "want_id",
};

int cmd_wants_show(cli_ctx *ctx, int argc, char **argv)
{
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__WantSummaryResponse *resp;
    int rc = cli_show_call(ctx, argc, argv, &SHOW, ar, &resp);
    if (rc == 0 && resp && resp->want) {
        const Databuild__V1__PartitionWantSummary *w = resp->want;
        const Databuild__V1__PartitionWant *pw = w->want;
        char t[40], st[16], deps[2048];
        cli_kv(stdout, "want", pw ? pw->want_id : NULL);
        cli_kv(stdout, "partition", want_ref(w));
        cli_kv(stdout, "status", want_status(w, st, sizeof st));
        char wst[32];
        cli_kv(stdout, "state",
               cli_enum(&databuild__v1__want_state__descriptor,
                        (int)dbld_pb_unknown_varint(&w->base, DBLD_WANT_STATE), "WANT_", wst,
                        sizeof wst));
        cli_kv(stdout, "reason", dbld_pb_unknown_string(ar, &w->base, DBLD_WANT_STATE_REASON));
        cli_kv(stdout, "comment", w->comment);
        cli_kv(stdout, "created at", cli_time(pw ? (int64_t)pw->created_at : 0, 1, t, sizeof t));
        cli_kv(stdout, "data time", cli_time(pw ? (int64_t)pw->data_timestamp : 0, 1, t, sizeof t));
        cli_kv(stdout, "ttl", cli_seconds(pw ? pw->ttl_seconds : 0, t, sizeof t));
        cli_kv(stdout, "sla", cli_seconds(pw ? pw->sla_seconds : 0, t, sizeof t));
        if (pw && pw->n_external_dependencies)
            cli_kv(stdout, "external deps",
                   cli_strs(pw->external_dependencies, pw->n_external_dependencies, 20, deps,
                            sizeof deps));
        printf("\n");
        static const char *const hdr[] = {"PARTITION", "STATUS", "UPDATED", ">BUILDS",
                                          "LAST_SUCCESSFUL_BUILD"};
        cli_table *tb = cli_table_new(5, hdr);
        for (size_t i = 0; i < w->n_partitions; i++) {
            const Databuild__V1__PartitionSummary *p = w->partitions[i];
            char upd[40], builds[16];
            snprintf(builds, sizeof builds, "%u", p->builds_count);
            const char *row[] = {p->partition_ref ? p->partition_ref->str : NULL,
                                 cli_enum(PS_ENUM, (int)p->status_code, PS_PREFIX, st, sizeof st),
                                 cli_time(p->last_updated, 0, upd, sizeof upd), builds,
                                 p->last_successful_build};
            cli_table_add(tb, row);
        }
        for (size_t i = 0; i < w->n_external_partitions; i++) {
            const Databuild__V1__LabeledPartitionBuildStatus *p = w->external_partitions[i];
            const char *row[] = {
                p->ref ? p->ref->str : NULL,
                p->status ? cli_enum(PS_ENUM, (int)p->status->status, PS_PREFIX, st, sizeof st)
                          : NULL,
                NULL, NULL, "(external)"};
            cli_table_add(tb, row);
        }
        cli_table_print(tb, stdout);
        cli_table_free(tb);
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- put ---- */

enum { P_COMMENT, P_TTL, P_SLA, P_DATA_TIME };

typedef struct put_args {
    cli_strv refs;
    const char *comment;
    int64_t ttl, sla, data_time;
} put_args;

static int on_put(cli_ctx *ctx, int id, const char *v, void *user)
{
    put_args *a = user;
    switch (id) {
    case P_COMMENT:
        a->comment = v;
        return 0;
    case P_TTL:
        return cli_parse_i64(ctx, "ttl", v, &a->ttl);
    case P_SLA:
        return cli_parse_i64(ctx, "sla", v, &a->sla);
    case P_DATA_TIME:
        return cli_parse_i64(ctx, "data-time", v, &a->data_time);
    default:
        if (!*v) return cli_fail(ctx, CLI_USAGE, "wants put: empty partition ref");
        cli_strv_add(&a->refs, v);
        return 0;
    }
}

int cmd_wants_put(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"comment", 1, P_COMMENT},
        {"ttl", 1, P_TTL},
        {"sla", 1, P_SLA},
        {"data-time", 1, P_DATA_TIME},
    };
    put_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_put, &a);
    if (rc == 0 && a.refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE, "wants put: missing partition ref (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) {
        cli_strv_free(&a.refs);
        return rc;
    }
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__PutWantsRequest req = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    req.wants = dbld_arena_alloc(ar, a.refs.n * sizeof *req.wants);
    for (size_t i = 0; i < a.refs.n; i++) {
        Databuild__V1__IndividualWantRequest *w =
            dbld_arena_msg(ar, &databuild__v1__individual_want_request__descriptor);
        w->ref = dbld_arena_msg(ar, &databuild__v1__partition_ref__descriptor);
        w->ref->str = a.refs.v[i];
        w->date_timestamp = (uint64_t)a.data_time;
        w->ttl_seconds = (uint64_t)a.ttl;
        w->sla_seconds = (uint64_t)a.sla;
        req.wants[req.n_wants++] = w;
    }
    Databuild__V1__SourceType type = DATABUILD__V1__SOURCE_TYPE__INIT;
    type.code = DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL;
    Databuild__V1__WantSource source = DATABUILD__V1__WANT_SOURCE__INIT;
    source.source_type = &type;
    req.source = &source;
    req.comment = (char *)(a.comment ? a.comment : "");
    Databuild__V1__PutWantsResponse *resp;
    rc = cli_query_call(ctx, CLI_SVC "PutWants", &req.base,
                        &databuild__v1__put_wants_response__descriptor, ar, &resp, "put wants");
    if (rc == 0 && ctx->json) {
        cli_json_line(&resp->base);
    } else if (rc == 0) {
        static const char *const hdr[] = {"REF", "WANT_ID"};
        cli_table *t = cli_table_new(2, hdr);
        for (size_t i = 0; i < resp->n_wants; i++) {
            const char *row[] = {resp->wants[i]->ref ? resp->wants[i]->ref->str : NULL,
                                 resp->wants[i]->want_id};
            cli_table_add(t, row);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
    }
    dbld_arena_destroy(ar);
    cli_strv_free(&a.refs);
    return rc;
}
