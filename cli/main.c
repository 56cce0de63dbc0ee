/* main.c - the `databuild` command: command table, global options, dispatch.
 *
 * `databuild [global options] <command> [options]`. The command is found by
 * the longest match of its words in the table below; the rest of the command
 * line goes to its handler. --help anywhere prints that command's usage.
 * Every failure ends as one line on stderr, `databuild: <message>`.
 */
#include "cli.h"
#include "cmd_build.h"
#include "cmd_processes.h"
#include "cmd_query.h"

#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <errno.h>
#include <stdarg.h>
#include "dbld/security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GLOBAL_USAGE                                                                               \
    "global options (accepted anywhere):\n"                                                        \
    "  --config FILE   suite config; the CLI uses its shared.peers addresses\n"                    \
    "                  (default: built-in defaults 127.0.0.1:7101..7104, then env overrides)\n"    \
    "  --server ADDR   call this host:port instead of the configured peer\n"                       \
    "  --json          machine-readable output (one JSON object per line)\n"                       \
    "  --timeout MS    deadline of each unary call (default 10000)\n"                              \
    "  --tls-ca FILE   use TLS; verify the services' certificates with this CA (PEM)\n"            \
    "  --tls-cert FILE, --tls-key FILE\n"                                                          \
    "                  client certificate and key for mTLS (PEM)\n"                                \
    "  --tls-server-name NAME\n"                                                                   \
    "                  check the services' certificates against NAME, not the host\n"              \
    "  --token-file FILE\n"                                                                        \
    "                  send the bearer token in FILE (default: env DATABUILD_TOKEN;\n"             \
    "                  with --config and none of these, shared.tls and shared.auth)\n"             \
    "  --help, -h      show help\n"

static const cli_command commands[] = {
    {"health", "check grpc.health.v1 of the services",
     "[--server ADDR]... [--service NAME]\n"
     "\n"
     "Without --server, checks the four peers of the config (eventlog, job, graph,\n"
     "query) and prints SERVICE ADDRESS STATUS. Exits 1 unless every one is SERVING.\n"
     "\n"
     "options:\n"
     "  --server ADDR   check this address instead (repeatable)\n"
     "  --service NAME  health service name to check (default \"\": the whole server)\n",
     cmd_health},
    {"events", "list or follow build events from the event log",
     "[--follow] [--ref R]... [--pattern P]... [--job-label L]...\n"
     "                       [--job-run-id ID]... [--build-request-id ID]... [--from IDX] [--limit "
     "N]\n"
     "\n"
     "Prints one line per event: idx, time (UTC), build request id, kind, summary.\n"
     "Filters of different kinds are ANDed, repeated values of one kind ORed.\n"
     "With --json each line is {\"idx\":N,\"event\":{...BuildEvent in proto3 JSON...}}.\n"
     "\n"
     "Talks to the EVENT LOG service (databuild.v1.EventLog List / Subscribe at\n"
     "shared.peers.eventlog, default 127.0.0.1:7101), not to the query service:\n"
     "--server ADDR must be the event log's address.\n"
     "\n"
     "options:\n"
     "  --follow                 keep streaming new events as they commit (Ctrl-C stops)\n"
     "  --ref R                  events touching partition ref R\n"
     "  --pattern P              events whose refs match PostgreSQL regex P\n"
     "  --job-label L            events of job label L\n"
     "  --job-run-id ID          events of job run ID\n"
     "  --build-request-id ID    events of build request ID\n"
     "  --from IDX               start at event index IDX (default 0: the beginning)\n"
     "  --limit N                stop after N events (default: all)\n",
     cmd_events},
    {"events append", "append build events given as proto3 JSON",
     "[--json-file F | JSON | -]\n"
     "\n"
     "Appends BuildEvents (proto3 JSON: one object, an array, or one object per\n"
     "line; \"-\" or --json-file - reads stdin). Lines printed by `databuild events\n"
     "--json` are accepted too. Missing event ids are generated here, so the call\n"
     "is retried safely on UNAVAILABLE. Prints `idx event_id [duplicate]` per event.\n"
     "Talks to the event log service (EventLog.Append at shared.peers.eventlog);\n"
     "--server ADDR must be the event log's address.\n"
     "\n"
     "options:\n"
     "  --json-file F   read the events from file F (\"-\" = stdin)\n",
     cmd_events_append},
    {"build", "build partitions and follow the build live", CMD_BUILD_USAGE, cmd_build},
    {"analyze", "print the job graph that would build partitions", CMD_ANALYZE_USAGE, cmd_analyze},
    {"builds", "build requests: list, show, mermaid, cancel, execution", CMD_BUILDS_USAGE,
     cmd_builds},
    {"builds list", "list build requests, newest first", CMD_BUILDS_LIST_USAGE, cmd_builds_list},
    {"builds show", "a build's summary and partitions", CMD_BUILDS_SHOW_USAGE, cmd_builds_show},
    {"builds mermaid", "a build's job graph as mermaid", CMD_BUILDS_MERMAID_USAGE,
     cmd_builds_mermaid},
    {"builds cancel", "cancel a running build", CMD_BUILDS_CANCEL_USAGE, cmd_builds_cancel},
    {"builds execution", "a build's attempts, quotas and execution log", CMD_BUILDS_EXECUTION_USAGE,
     cmd_builds_execution},
    {"partitions", "partitions: list, show", CMD_PARTITIONS_USAGE, cmd_partitions},
    {"partitions list", "list partitions by ref", CMD_PARTITIONS_LIST_USAGE, cmd_partitions_list},
    {"partitions show", "status and history of partitions", CMD_PARTITIONS_SHOW_USAGE,
     cmd_partitions_show},
    {"jobs", "jobs of the graph: list, show", CMD_JOBS_USAGE, cmd_jobs},
    {"jobs list", "every job with its run counts", CMD_JOBS_LIST_USAGE, cmd_jobs_list},
    {"jobs show", "one job's summary", CMD_JOBS_SHOW_USAGE, cmd_jobs_show},
    {"runs", "job runs: list, show, cancel", CMD_RUNS_USAGE, cmd_runs},
    {"runs list", "list job runs, newest first", CMD_RUNS_LIST_USAGE, cmd_runs_list},
    {"runs show", "one job run", CMD_RUNS_SHOW_USAGE, cmd_runs_show},
    {"runs cancel", "cancel one job run", CMD_RUNS_CANCEL_USAGE, cmd_runs_cancel},
    {"logs", "a job run's log (or --follow it)", CMD_LOGS_USAGE, cmd_logs},
    {"wants", "wants: list, show, put", CMD_WANTS_USAGE, cmd_wants},
    {"wants list", "list wants, newest first", CMD_WANTS_LIST_USAGE, cmd_wants_list},
    {"wants show", "one want and its partitions", CMD_WANTS_SHOW_USAGE, cmd_wants_show},
    {"wants put", "register wants for partitions", CMD_WANTS_PUT_USAGE, cmd_wants_put},
    {"taints", "taints: list, show, put", CMD_TAINTS_USAGE, cmd_taints},
    {"taints list", "list taints, newest first", CMD_TAINTS_LIST_USAGE, cmd_taints_list},
    {"taints show", "one taint", CMD_TAINTS_SHOW_USAGE, cmd_taints_show},
    {"taints put", "taint partitions (rebuilt when next needed)", CMD_TAINTS_PUT_USAGE,
     cmd_taints_put},
    {"partitions mark-available", "record partitions made elsewhere as AVAILABLE",
     CMD_PARTITIONS_MARK_AVAILABLE_USAGE, cmd_partitions_mark_available},
    {"processes", "background processes: list, show, run, settings", CMD_PROCESSES_USAGE,
     cmd_processes},
    {"processes list", "every background process", CMD_PROCESSES_LIST_USAGE, cmd_processes_list},
    {"processes show", "one process and its work items", CMD_PROCESSES_SHOW_USAGE,
     cmd_processes_show},
    {"processes run", "run a process now", CMD_PROCESSES_RUN_USAGE, cmd_processes_run},
    {"processes settings", "change a process's schedule and settings", CMD_PROCESSES_SETTINGS_USAGE,
     cmd_processes_settings},
    {"operations", "long-running operations: show", CMD_OPERATIONS_USAGE, cmd_operations},
    {"operations show", "an operation's state", CMD_OPERATIONS_SHOW_USAGE, cmd_operations_show},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* ---- messages ---- */

int cli_fail(cli_ctx *ctx, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dbld_status_vset(&ctx->st, DBLD_UNKNOWN, fmt, ap);
    va_end(ap);
    return code;
}

int cli_rpc_fail(cli_ctx *ctx, const char *what, const char *addr, const dbld_status *st)
{
    return cli_fail(ctx, CLI_FAIL, "%s (%s): %s: %s", what, addr, dbld_code_name(st->code),
                    st->msg[0] ? st->msg : "no message");
}

static void print_top_usage(FILE *f)
{
    fprintf(f, "usage: databuild [global options] <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-16s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n" GLOBAL_USAGE "\nRun `databuild <command> --help` for a command's options.\n");
}

static void print_cmd_usage(const cli_command *cmd)
{
    printf("usage: databuild %s %s\n%s", cmd->name, cmd->usage, GLOBAL_USAGE);
}

/* ---- options ---- */

int cli_parse_i64(cli_ctx *ctx, const char *opt, const char *value, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end || v < 0)
        return cli_fail(ctx, CLI_USAGE, "--%s: expected a non-negative integer, got \"%s\"", opt,
                        value);
    *out = v;
    return 0;
}

/* Global options: which take a value, which exist, and applying one. */
static int global_takes_arg(const char *name)
{
    static const char *const with_value[] = {"config",          "server",    "timeout",
                                             "tls-ca",          "tls-cert",  "tls-key",
                                             "tls-server-name", "token-file"};
    for (size_t i = 0; i < sizeof with_value / sizeof with_value[0]; i++)
        if (!strcmp(name, with_value[i])) return 1;
    return 0;
}

static int is_global(const char *name)
{
    return global_takes_arg(name) || !strcmp(name, "json") || !strcmp(name, "help");
}

static int apply_global(cli_ctx *ctx, const char *name, const char *value)
{
    if (!strcmp(name, "config")) {
        ctx->config_path = value;
    } else if (!strcmp(name, "server")) {
        ctx->servers = dbld_xrealloc(ctx->servers, (ctx->n_servers + 1) * sizeof *ctx->servers);
        ctx->servers[ctx->n_servers++] = value;
    } else if (!strcmp(name, "timeout")) {
        if (cli_parse_i64(ctx, name, value, &ctx->timeout_ms) != 0) return CLI_USAGE;
        if (ctx->timeout_ms == 0) return cli_fail(ctx, CLI_USAGE, "--timeout: must be positive");
    } else if (!strcmp(name, "tls-ca")) {
        ctx->tls_ca = value;
    } else if (!strcmp(name, "tls-cert")) {
        ctx->tls_cert = value;
    } else if (!strcmp(name, "tls-key")) {
        ctx->tls_key = value;
    } else if (!strcmp(name, "tls-server-name")) {
        ctx->tls_server_name = value;
    } else if (!strcmp(name, "token-file")) {
        ctx->token_file = value;
    } else if (!strcmp(name, "json")) {
        ctx->json = 1;
    } else if (!strcmp(name, "help")) {
        ctx->help = 1;
    }
    return 0;
}

int cli_parse(cli_ctx *ctx, int argc, char **argv, const cli_opt *opts, size_t n_opts,
              cli_opt_fn fn, void *user)
{
    int only_positional = 0;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int rc;
        if (only_positional || arg[0] != '-' || !strcmp(arg, "-")) {
            if ((rc = fn(ctx, -1, arg, user)) != 0) return rc;
            continue;
        }
        if (!strcmp(arg, "--")) {
            only_positional = 1;
            continue;
        }
        if (!strcmp(arg, "-h")) {
            ctx->help = 1;
            continue;
        }
        if (arg[1] != '-') return cli_fail(ctx, CLI_USAGE, "unknown option %s (see --help)", arg);

        /* --name or --name=value */
        char name[64];
        const char *eq = strchr(arg + 2, '=');
        size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (len == 0 || len >= sizeof name)
            return cli_fail(ctx, CLI_USAGE, "unknown option %s (see --help)", arg);
        memcpy(name, arg + 2, len);
        name[len] = '\0';

        const cli_opt *o = NULL;
        for (size_t k = 0; k < n_opts && !o; k++)
            if (!strcmp(opts[k].name, name)) o = &opts[k];
        int global = !o && is_global(name);
        if (!o && !global)
            return cli_fail(ctx, CLI_USAGE, "unknown option --%s (see --help)", name);

        int takes_arg = o ? o->has_arg : global_takes_arg(name);
        const char *value = NULL;
        if (takes_arg) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return cli_fail(ctx, CLI_USAGE, "option --%s needs a value", name);
        } else if (eq) {
            return cli_fail(ctx, CLI_USAGE, "option --%s takes no value", name);
        }
        rc = o ? fn(ctx, o->id, value, user) : apply_global(ctx, name, value);
        if (rc != 0) return rc;
    }
    return 0;
}

/* ---- config ---- */

static int cli_security(cli_ctx *ctx);

int cli_config(cli_ctx *ctx)
{
    if (ctx->cfg_loaded) return 0;
    if (ctx->config_path) {
        if (dbld_config_load(ctx->config_path, &ctx->cfg, &ctx->st) != 0) return CLI_FAIL;
    } else {
        dbld_config_defaults(&ctx->cfg);
    }
    ctx->cfg_loaded = 1;
    if (dbld_config_apply_env_checked(&ctx->cfg, &ctx->st) != 0) return CLI_FAIL;
    return cli_security(ctx);
}

/* TLS and the token: the flags (and DATABUILD_TOKEN), else, with --config,
 * the suite's shared.tls and shared.auth client settings. */
static int cli_security(cli_ctx *ctx)
{
    int flags = ctx->tls_ca || ctx->tls_cert || ctx->tls_key || ctx->token_file ||
                getenv("DATABUILD_TOKEN");
    const dbld_config *c = &ctx->cfg;
    dbld_tls_opts tls = {
        .ca_file = ctx->tls_ca, .cert_file = ctx->tls_cert, .key_file = ctx->tls_key};
    const char *token_file = ctx->token_file, *token_env = "DATABUILD_TOKEN";
    const char *server_name = ctx->tls_server_name;
    if (!flags && ctx->config_path) {
        tls.ca_file = c->shared.tls.files.ca_file;
        if (tls.ca_file) {
            tls.cert_file = c->shared.tls.files.cert_file;
            tls.key_file = c->shared.tls.files.key_file;
        }
        token_file = c->shared.auth.client_token_file;
        token_env = c->shared.auth.client_token_env;
        if (!server_name) server_name = c->shared.tls.server_name;
    }
    if ((tls.cert_file || tls.key_file) && !tls.ca_file)
        return cli_fail(ctx, CLI_USAGE, "--tls-cert/--tls-key need --tls-ca");
    if (token_env && !token_file && !getenv(token_env)) token_env = NULL;
    if (dbld_security_client(tls.ca_file ? &tls : NULL, server_name, token_file, token_env,
                             &ctx->st) != 0)
        return CLI_FAIL;
    return 0;
}

const char *cli_peer(cli_ctx *ctx, const char *service)
{
    static const struct {
        const char *name;
        const char *fallback;
    } defaults[] = {{"eventlog", "127.0.0.1:7101"},
                    {"job", "127.0.0.1:7102"},
                    {"graph", "127.0.0.1:7103"},
                    {"query", "127.0.0.1:7104"}};
    if (ctx->n_servers > 0) return ctx->servers[0];
    const char *addr = NULL;
    const dbld_config *c = &ctx->cfg;
    if (!strcmp(service, "eventlog"))
        addr = c->shared.peers.eventlog;
    else if (!strcmp(service, "job"))
        addr = c->shared.peers.n_job > 0 ? c->shared.peers.job[0] : NULL;
    else if (!strcmp(service, "graph"))
        addr = c->shared.peers.graph;
    else if (!strcmp(service, "query"))
        addr = c->shared.peers.query;
    for (size_t i = 0; !addr && i < sizeof defaults / sizeof defaults[0]; i++)
        if (!strcmp(service, defaults[i].name)) addr = defaults[i].fallback;
    return addr;
}

/* ---- dispatch ---- */

/* The command whose words match the start of argv best; *used = words consumed. */
static const cli_command *find_command(int argc, char **argv, int *used)
{
    const cli_command *best = NULL;
    int best_words = 0;
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const char *p = commands[i].name;
        int words = 0;
        while (*p && words < argc) {
            size_t len = strcspn(p, " ");
            if (strlen(argv[words]) != len || strncmp(argv[words], p, len) != 0) break;
            words++;
            p += len;
            p += (*p == ' ');
        }
        if (*p == '\0' && words > best_words) {
            best = &commands[i];
            best_words = words;
        }
    }
    *used = best_words;
    return best;
}

static int help_requested(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {.timeout_ms = 10000};
    dbld_log_init("databuild", DBLD_LOG_WARN); /* the runtime's own logs, if any */

    /* Global options before the command. */
    int i = 1;
    while (i < argc && argv[i][0] == '-' && strcmp(argv[i], "-") != 0) {
        const char *arg = argv[i];
        const char *name = arg[1] == '-' ? arg + 2 : (!strcmp(arg, "-h") ? "help" : "");
        char buf[64];
        const char *eq = strchr(name, '=');
        if (eq) {
            snprintf(buf, sizeof buf, "%.*s", (int)(eq - name), name);
            name = buf;
        }
        if (!is_global(name)) {
            fprintf(stderr, "databuild: unknown option %s (see databuild --help)\n", arg);
            return CLI_USAGE;
        }
        const char *value = NULL;
        if (global_takes_arg(name)) {
            if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "databuild: option --%s needs a value\n", name);
                return CLI_USAGE;
            }
        }
        if (apply_global(&ctx, name, value) != 0) {
            fprintf(stderr, "databuild: %s\n", ctx.st.msg);
            return CLI_USAGE;
        }
        i++;
    }

    if (i >= argc) {
        print_top_usage(ctx.help ? stdout : stderr);
        return ctx.help ? CLI_OK : CLI_USAGE;
    }
    int used = 0;
    const cli_command *cmd = find_command(argc - i, argv + i, &used);
    if (!cmd) {
        fprintf(stderr, "databuild: unknown command \"%s\" (see databuild --help)\n", argv[i]);
        return CLI_USAGE;
    }
    i += used;
    if (ctx.help || help_requested(argc - i, argv + i)) {
        print_cmd_usage(cmd);
        return CLI_OK;
    }

    int rc = cmd->run(&ctx, argc - i, argv + i);
    if (rc != CLI_OK && ctx.st.msg[0]) fprintf(stderr, "databuild: %s\n", ctx.st.msg);
    fflush(stdout);
    dbld_client_shutdown_all();
    if (ctx.cfg_loaded) dbld_config_free(&ctx.cfg);
    free(ctx.servers);
    return rc;
}
