/* cmd_mark_available.c - `databuild partitions mark-available REF...`: an
 * outside system says partitions are AVAILABLE (typically inputs matching
 * graph.external, which DataBuild never builds). Appends one PartitionEvent
 * AVAILABLE per ref to the event log (shared.peers.eventlog, or --server),
 * with event ids chosen here so a retried call writes nothing twice. Builds
 * and wants waiting for those inputs go ahead (want_reconciler looks every
 * upstream_poll_ms). Prints "REF IDX" per partition. */
#include "cmd_processes.h"
#include "table.h"

#include "databuild.pb-c.h"
#include "dbld/eventlog_client.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>

enum { M_MESSAGE };

typedef struct mark_args {
    cli_strv refs;
    const char *message;
} mark_args;

static int on_mark(cli_ctx *ctx, int id, const char *v, void *user)
{
    mark_args *a = user;
    if (id == M_MESSAGE) {
        a->message = v;
        return 0;
    }
    if (!*v) return cli_fail(ctx, CLI_USAGE, "partitions mark-available: empty partition ref");
    cli_strv_add(&a->refs, v);
    return 0;
}

int cmd_partitions_mark_available(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"message", 1, M_MESSAGE}};
    mark_args m = {0};
    int rc = cli_parse(ctx, argc, argv, opts, 1, on_mark, &m);
    if (rc == 0 && m.refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE,
                      "partitions mark-available: missing partition ref (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) {
        cli_strv_free(&m.refs);
        return rc;
    }
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, m.refs.n * sizeof *evs);
    for (size_t i = 0; i < m.refs.n; i++) {
        Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        e->build_request_id = "";
        e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
        Databuild__V1__PartitionEvent *pe =
            dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
        pe->partition_ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        pe->partition_ref->str = m.refs.v[i];
        pe->status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
        pe->status_name = "PARTITION_AVAILABLE";
        pe->message = (char *)(m.message ? m.message : "marked available by databuild CLI");
        pe->job_run_id = "";
        e->partition_event = pe;
        evs[i] = e;
    }
    int64_t *idx = dbld_arena_alloc(a, m.refs.n * sizeof *idx);
    const char *addr = cli_peer(ctx, "eventlog");
    dbld_status st;
    if (dbld_eventlog_append(addr, evs, m.refs.n, a, idx, ctx->timeout_ms, &st) != 0) {
        rc = cli_rpc_fail(ctx, "mark partitions available", addr, &st);
    } else {
        for (size_t i = 0; i < m.refs.n; i++)
            printf("%s\t%" PRId64 "\n", m.refs.v[i], idx[i]);
    }
    dbld_arena_destroy(a);
    cli_strv_free(&m.refs);
    return rc;
}
