/* cmd_health.c - `databuild health`: grpc.health.v1 Check against the
 * configured peers (or the --server addresses), printed as a table. */
#include "cli.h"

#include "dbld/rpc.h"
#include "dbld/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_SERVICE };

typedef struct health_row {
    const char *service; /* "eventlog", or "-" for a bare --server address */
    const char *addr;
    int code; /* RPC result */
    int serving;
    char detail[256];
} health_row;

static int on_opt(cli_ctx *ctx, int id, const char *value, void *user)
{
    if (id == OPT_SERVICE) {
        *(const char **)user = value;
        return 0;
    }
    return cli_fail(ctx, CLI_USAGE, "health: unexpected argument \"%s\"", value);
}

static const char *row_status(const health_row *r)
{
    if (r->code != 0) return dbld_code_name(r->code);
    return r->serving ? "SERVING" : "NOT_SERVING";
}

static void print_rows(const cli_ctx *ctx, const health_row *rows, size_t n)
{
    if (ctx->json) {
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_pack("{s:s,s:s,s:s}", "service", rows[i].service, "address",
                                  rows[i].addr, "status", row_status(&rows[i]));
            if (rows[i].detail[0]) json_object_set_new(o, "detail", json_string(rows[i].detail));
            char *text = json_dumps(o, JSON_COMPACT);
            printf("%s\n", text);
            free(text);
            json_decref(o);
        }
        return;
    }
    int wsvc = (int)strlen("SERVICE"), waddr = (int)strlen("ADDRESS");
    for (size_t i = 0; i < n; i++) {
        if ((int)strlen(rows[i].service) > wsvc) wsvc = (int)strlen(rows[i].service);
        if ((int)strlen(rows[i].addr) > waddr) waddr = (int)strlen(rows[i].addr);
    }
    printf("%-*s  %-*s  %s\n", wsvc, "SERVICE", waddr, "ADDRESS", "STATUS");
    for (size_t i = 0; i < n; i++) {
        printf("%-*s  %-*s  %s", wsvc, rows[i].service, waddr, rows[i].addr, row_status(&rows[i]));
        if (rows[i].detail[0]) printf("  (%s)", rows[i].detail);
        printf("\n");
    }
}

int cmd_health(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"service", 1, OPT_SERVICE}};
    const char *health_service = "";
    int rc = cli_parse(ctx, argc, argv, opts, 1, on_opt, &health_service);
    if (rc != 0) return rc;
    if ((rc = cli_config(ctx)) != 0) return rc;

    /* Targets: every --server, else the suite's peers (all job endpoints). */
    size_t cap = ctx->n_servers + 3 + ctx->cfg.shared.peers.n_job + 1;
    health_row *rows = dbld_xcalloc(cap, sizeof *rows);
    size_t n = 0;
    if (ctx->n_servers > 0) {
        for (size_t i = 0; i < ctx->n_servers; i++)
            rows[n++] = (health_row){.service = "-", .addr = ctx->servers[i]};
    } else {
        const dbld_config *c = &ctx->cfg;
        rows[n++] = (health_row){.service = "eventlog", .addr = cli_peer(ctx, "eventlog")};
        if (c->shared.peers.n_job == 0)
            rows[n++] = (health_row){.service = "job", .addr = cli_peer(ctx, "job")};
        for (size_t i = 0; i < c->shared.peers.n_job; i++)
            rows[n++] = (health_row){.service = "job", .addr = c->shared.peers.job[i]};
        rows[n++] = (health_row){.service = "graph", .addr = cli_peer(ctx, "graph")};
        rows[n++] = (health_row){.service = "query", .addr = cli_peer(ctx, "query")};
    }

    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        dbld_status st;
        dbld_status_clear(&st);
        health_row *r = &rows[i];
        r->code = dbld_health_check(dbld_client_get(r->addr), health_service, &r->serving,
                                    ctx->timeout_ms, &st);
        if (r->code != 0) snprintf(r->detail, sizeof r->detail, "%.200s", st.msg);
        if (r->code != 0 || !r->serving) bad++;
    }
    print_rows(ctx, rows, n);
    free(rows);
    if (bad > 0)
        return cli_fail(ctx, CLI_FAIL, "%zu of %zu service%s not serving", bad, n,
                        n == 1 ? "" : "s");
    return CLI_OK;
}
