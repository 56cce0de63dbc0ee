/* config.h - the suite's one YAML configuration file.
 *
 * The file has a `shared` section (PostgreSQL DSN, log level, peer addresses)
 * and one section per service. Parsing is driven by a schema table, so every
 * key is typed and checked: unknown keys, wrong types, out-of-range numbers and
 * broken YAML are errors naming `file:line:column` and the key path
 * (e.g. "databuild.yaml:7:12: eventlog.workers: expected an integer, got \"x\"").
 * The whole file is validated before any service starts. Environment variables
 * override the DSN and the addresses (see dbld_config_apply_env()).
 */
#ifndef DBLD_CONFIG_H
#define DBLD_CONFIG_H

#include "dbld/status.h"
#include <stddef.h>

typedef struct dbld_server_config {
    char *listen;          /* host:port to bind, e.g. "127.0.0.1:7101" */
    int workers;           /* RPC worker threads, 1..256 (default 4) */
    int max_message_bytes; /* max request/response size (default 16 MiB) */
    int shutdown_grace_ms; /* in-flight calls get this long on SIGTERM (default 5000) */
} dbld_server_config;

typedef struct dbld_config {
    char *source; /* file name the config came from (for messages) */
    struct {
        char *postgres_dsn; /* libpq connection string */
        char *log_level;    /* debug|info|warn|error (default info) */
        struct {
            char *eventlog; /* address of the eventlog service */
            char **job;     /* job service endpoints */
            size_t n_job;
            char *graph;
            char *query;
        } peers;
    } shared;
    struct {
        dbld_server_config server;
        int group_commit_max_events; /* events per commit batch (default 5000) */
        int db_pool_size;            /* reader connections for List/Subscribe (default 4) */
    } eventlog;
    struct {
        dbld_server_config server;
        int max_concurrent_runs; /* default 4 */
    } job;
    struct {
        dbld_server_config server;
    } graph;
    struct {
        dbld_server_config server;
        char *postgres_dsn; /* read-only DSN; defaults to shared.postgres_dsn */
    } query;
} dbld_config;

/* Fill *cfg with defaults (every pointer NULL-or-owned). */
void dbld_config_defaults(dbld_config *cfg);

/* Parse YAML text; `name` is used in error messages. On success *cfg owns its
 * strings (free with dbld_config_free()). On error *cfg is left freed/defaulted
 * and st holds "name:line:col: key.path: problem". */
int dbld_config_parse(const char *text, size_t len, const char *name, dbld_config *cfg,
                      dbld_status *st);
/* Read and parse a file. */
int dbld_config_load(const char *path, dbld_config *cfg, dbld_status *st);

/* Apply environment overrides: DATABUILD_POSTGRES_DSN, DATABUILD_QUERY_POSTGRES_DSN,
 * DATABUILD_<SVC>_LISTEN (SVC = EVENTLOG|JOB|GRAPH|QUERY) and
 * DATABUILD_<SVC>_ADDR (peer address; for JOB a comma-separated list). */
void dbld_config_apply_env(dbld_config *cfg);

void dbld_config_free(dbld_config *cfg);

/* Common start-up for a service main(): parses `--config FILE` (required) and
 * `--help` from argv, loads the file, applies env, and initialises logging for
 * `service`. Returns 0 on success; on error prints one line to stderr and
 * returns 2 (the process should exit with it). */
int dbld_config_from_args(int argc, char **argv, const char *service, dbld_config *cfg);

#endif
