/* cmd_partitions.c - `databuild partitions list|show`: ListPartitions (sorted
 * by ref, paged by the exclusive last_partition cursor, an empty page ends
 * the listing) and GetPartitionsSummary. Conventions: cmd_query.h. */
#include "cmd_query.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "databuild_process.pb-c.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_PREFIX "PARTITION_"
#define PS_ENUM (&databuild__v1__partition_status__descriptor)
#define SERVER_PAGE 100 /* the query service's page (Q_PAGE) */

int cmd_partitions(cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "partitions: unknown subcommand \"%s\" (expected list or show; see "
                        "databuild partitions --help)",
                        argv[0]);
    return cli_fail(ctx, CLI_USAGE, "partitions: expected a subcommand: list or show (see --help)");
}

static int summary_status(const Databuild__V1__PartitionSummaryV2 *p)
{
    return p->status ? (int)p->status->code : 0;
}

/* ---- list ---- */

enum { L_PATTERN, L_STATUS, L_LIMIT, L_ALL, L_AFTER };

typedef struct list_args {
    const char *pattern;
    Databuild__V1__PartitionStatus *status;
    size_t n_status;
    int64_t limit;
    int all;
    const char *after;
} list_args;

static int on_list(cli_ctx *ctx, int id, const char *v, void *user)
{
    list_args *a = user;
    switch (id) {
    case L_PATTERN:
        a->pattern = v;
        return 0;
    case L_STATUS: {
        int code;
        char names[256];
        if (cli_enum_parse(PS_ENUM, PS_PREFIX, v, &code) != 0)
            return cli_fail(ctx, CLI_USAGE,
                            "--status: unknown partition status \"%s\" (one of %s, a "
                            "PARTITION_* name or a number)",
                            v, cli_enum_names(PS_ENUM, PS_PREFIX, names, sizeof names));
        a->status = dbld_xrealloc(a->status, (a->n_status + 1) * sizeof *a->status);
        a->status[a->n_status++] = (Databuild__V1__PartitionStatus)code;
        return 0;
    }
    case L_LIMIT:
        return cli_parse_i64(ctx, "limit", v, &a->limit);
    case L_ALL:
        a->all = 1;
        return 0;
    case L_AFTER:
        a->after = v;
        return 0;
    default:
        return cli_fail(ctx, CLI_USAGE, "partitions list: unexpected argument \"%s\" (see --help)",
                        v);
    }
}

static void add_row(cli_table *t, const Databuild__V1__PartitionSummaryV2 *p)
{
    char st[16], upd[40], inv[40];
    const char *row[] = {
        p->partition_ref ? p->partition_ref->str : NULL,
        cli_enum(PS_ENUM, summary_status(p), PS_PREFIX, st, sizeof st),
        cli_time((int64_t)p->last_updated, 0, upd, sizeof upd),
        cli_time((int64_t)p->last_invalidated_at, 0, inv, sizeof inv),
        p->n_past_build_request ? p->past_build_request[0] : NULL,
    };
    cli_table_add(t, row);
}

int cmd_partitions_list(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"pattern", 1, L_PATTERN}, {"status", 1, L_STATUS}, {"limit", 1, L_LIMIT},
        {"all", 0, L_ALL},         {"after", 1, L_AFTER},
    };
    list_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_list, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc) {
        free(a.status);
        return rc;
    }
    static const char *const hdr[] = {"REF", "STATUS", "UPDATED", "INVALIDATED", "LAST_BUILD"};
    cli_table *t = cli_table_new(5, hdr);
    dbld_arena *ar = dbld_arena_create();
    char *cursor = dbld_xstrdup(a.after ? a.after : "");
    for (;;) {
        dbld_arena_reset(ar);
        Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
        req.ref_pattern = (char *)(a.pattern ? a.pattern : "");
        req.partition_status = a.status;
        req.n_partition_status = a.n_status;
        req.last_partition = cursor;
        Databuild__V1__ListPartitionsResponse *resp;
        rc = cli_query_call(ctx, CLI_SVC "ListPartitions", &req.base,
                            &databuild__v1__list_partitions_response__descriptor, ar, &resp,
                            "list partitions");
        if (rc) break;
        size_t n = resp->n_refs;
        size_t k = a.limit > 0 && (uint64_t)a.limit < n ? (size_t)a.limit : n; /* refs are unique */
        for (size_t i = 0; i < k; i++) {
            if (ctx->json)
                cli_json_line(&resp->refs[i]->base);
            else
                add_row(t, resp->refs[i]);
        }
        if (k == 0) break; /* an empty page ends the listing */
        const Databuild__V1__PartitionRef *last = resp->refs[k - 1]->partition_ref;
        const char *next = last ? last->str : "";
        if (!a.all) {
            if (k < n || n >= SERVER_PAGE) cli_more_hint("partitions", "--after", next);
            break;
        }
        if (!*next || strcmp(next, cursor) <= 0) {
            rc = cli_fail(ctx, CLI_FAIL,
                          "list partitions (%s): the page's last ref \"%s\" does not advance past "
                          "\"%s\"",
                          cli_peer(ctx, "query"), next, cursor);
            break;
        }
        free(cursor);
        cursor = dbld_xstrdup(next);
    }
    if (rc == 0 && !ctx->json) cli_table_print(t, stdout);
    free(cursor);
    cli_table_free(t);
    dbld_arena_destroy(ar);
    free(a.status);
    return rc;
}

/* ---- show ---- */

static int on_ref(cli_ctx *ctx, int id, const char *v, void *user)
{
    (void)ctx;
    (void)id;
    cli_strv_add(user, v);
    return 0;
}

/* "taint T of R via input X" from the summary's field 1001
 * (PartitionSummaryV2Ext, services/query/stale.c), or NULL. */
static const char *stale_line(dbld_arena *a, const Databuild__V1__PartitionSummaryV2 *p)
{
    size_t n;
    uint8_t *b = dbld_msg_pack(a, &p->base, &n);
    Databuild__V1__PartitionSummaryV2Ext *x =
        (Databuild__V1__PartitionSummaryV2Ext *)protobuf_c_message_unpack(
            &databuild__v1__partition_summary_v2_ext__descriptor, dbld_arena_allocator(a), n, b);
    if (!x || !x->stale) return NULL;
    const Databuild__V1__PartitionStaleInfo *s = x->stale;
    char refs[2048];
    const char *what = s->n_tainted_refs
                           ? cli_strs(s->tainted_refs, s->n_tainted_refs, 5, refs, sizeof refs)
                           : "?";
    if (!*s->via_input)
        return dbld_arena_printf(a, "tainted by taint %s of %s: %s",
                                 *s->taint_id ? s->taint_id : "?", what, s->reason);
    return dbld_arena_printf(a, "taint %s of %s via input %s", *s->taint_id ? s->taint_id : "?",
                             what, s->via_input);
}

static void print_summary(const Databuild__V1__PartitionSummaryV2 *p)
{
    char st[16], t[40], builds[4096];
    cli_kv(stdout, "partition", p->partition_ref ? p->partition_ref->str : NULL);
    cli_kv(stdout, "status", cli_enum(PS_ENUM, summary_status(p), PS_PREFIX, st, sizeof st));
    cli_kv(stdout, "last updated", cli_time((int64_t)p->last_updated, 1, t, sizeof t));
    cli_kv(stdout, "last invalidated", cli_time((int64_t)p->last_invalidated_at, 1, t, sizeof t));
    cli_kvf(stdout, "build requests", "%zu%s%s", p->n_past_build_request,
            p->n_past_build_request ? ": " : "",
            p->n_past_build_request ? cli_strs(p->past_build_request, p->n_past_build_request, 10,
                                               builds, sizeof builds)
                                    : "");
}

int cmd_partitions_show(cli_ctx *ctx, int argc, char **argv)
{
    cli_strv refs = {0};
    int rc = cli_parse(ctx, argc, argv, NULL, 0, on_ref, &refs);
    if (rc == 0 && refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE, "partitions show: missing partition ref (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) {
        cli_strv_free(&refs);
        return rc;
    }
    dbld_arena *ar = dbld_arena_create();
    size_t failed = 0, shown = 0;
    dbld_status first;
    dbld_status_clear(&first);
    for (size_t i = 0; i < refs.n; i++) {
        dbld_arena_reset(ar);
        Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
        ref.str = refs.v[i];
        Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
        req.ref = &ref;
        Databuild__V1__PartitionSummaryResponse *resp;
        if (cli_query_call(ctx, CLI_SVC "GetPartitionsSummary", &req.base,
                           &databuild__v1__partition_summary_response__descriptor, ar, &resp,
                           "partition summary") != 0) {
            if (failed++ == 0) first = ctx->st;
            continue;
        }
        if (ctx->json) {
            cli_json_line(&resp->base);
        } else if (resp->partition) {
            if (shown++) printf("\n");
            print_summary(resp->partition);
            const char *stale = stale_line(ar, resp->partition);
            if (stale) cli_kv(stdout, "stale", stale);
        }
    }
    dbld_arena_destroy(ar);
    cli_strv_free(&refs);
    if (failed == 0) return CLI_OK;
    if (failed == 1) {
        ctx->st = first;
        return CLI_FAIL;
    }
    return cli_fail(ctx, CLI_FAIL, "%s (and %zu more refs failed)", first.msg, failed - 1);
}
