/* cli.h - shared pieces of the `databuild` command: the command table, the
 * option parser and the per-invocation context.
 *
 * A command is one row of a const table (name, one-line summary, usage text,
 * handler); names may have several words ("events append"), and the longest
 * match wins, so later issues add a command by adding a row and a file.
 * Global options (--config, --server, --json, --timeout, --help) are accepted
 * anywhere on the command line and land in the context; each command parses
 * its own options with cli_parse(). Errors are printed once, by main(), as
 * `databuild: <message>`.
 */
#ifndef DBLD_CLI_H
#define DBLD_CLI_H

#include "dbld/config.h"
#include "dbld/status.h"

#include <stddef.h>
#include <stdint.h>

/* Exit codes. */
#define CLI_OK 0
#define CLI_FAIL 1  /* the operation failed (RPC error, unhealthy service) */
#define CLI_USAGE 2 /* bad command line */

typedef struct cli_ctx {
    const char *config_path; /* --config FILE, or NULL for defaults + env */
    const char **servers;    /* --server ADDR, repeatable */
    size_t n_servers;
    int json;                                /* --json: machine-readable output */
    int help;                                /* --help / -h seen */
    int64_t timeout_ms;                      /* --timeout MS for unary calls (default 10000) */
    const char *tls_ca, *tls_cert, *tls_key; /* --tls-ca/--tls-cert/--tls-key PEM files */
    const char *tls_server_name;             /* --tls-server-name */
    const char *token_file;                  /* --token-file (else env DATABUILD_TOKEN) */
    dbld_config cfg;                         /* loaded on first use by cli_config() */
    int cfg_loaded;
    dbld_status st; /* the error reported by main() when a command fails */
} cli_ctx;

typedef struct cli_command {
    const char *name;    /* "events append" */
    const char *summary; /* one line for `databuild --help` */
    const char *usage;   /* options part of the usage text (after the name) */
    int (*run)(cli_ctx *ctx, int argc, char **argv); /* returns an exit code */
} cli_command;

/* One command-specific option. */
typedef struct cli_opt {
    const char *name; /* long name without dashes: "limit" */
    int has_arg;      /* 1 if it takes a value (--limit N or --limit=N) */
    int id;           /* returned to the callback */
} cli_opt;

/* Called for each command option (id >= 0, value or NULL) and each positional
 * argument (id == -1, value = the argument). Return 0, or CLI_USAGE with
 * ctx->st set. */
typedef int (*cli_opt_fn)(cli_ctx *ctx, int id, const char *value, void *user);

/* Parse argv (the arguments after the command name). Global options are
 * handled here; everything else goes to fn. Returns 0 or CLI_USAGE. */
int cli_parse(cli_ctx *ctx, int argc, char **argv, const cli_opt *opts, size_t n_opts,
              cli_opt_fn fn, void *user);

/* Set ctx->st and return code (for `return cli_fail(ctx, CLI_USAGE, ...)`). */
int cli_fail(cli_ctx *ctx, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Report an RPC failure: "<what> (<addr>): <CODE>: <message>"; returns CLI_FAIL. */
int cli_rpc_fail(cli_ctx *ctx, const char *what, const char *addr, const dbld_status *st);

/* Load the configuration (once): --config FILE, or built-in defaults; then
 * environment overrides. Returns 0 or CLI_FAIL with ctx->st set. */
int cli_config(cli_ctx *ctx);

/* Address of a peer ("eventlog", "job", "graph", "query"): the first --server
 * if given, else the configured peer, else the default 127.0.0.1:710x.
 * Requires cli_config() to have succeeded. Borrowed. */
const char *cli_peer(cli_ctx *ctx, const char *service);

/* Parse a non-negative integer option value. Returns 0 or CLI_USAGE. */
int cli_parse_i64(cli_ctx *ctx, const char *opt, const char *value, int64_t *out);

/* Commands (one file each). */
int cmd_health(cli_ctx *ctx, int argc, char **argv);
int cmd_events(cli_ctx *ctx, int argc, char **argv);
int cmd_events_append(cli_ctx *ctx, int argc, char **argv);

#endif
