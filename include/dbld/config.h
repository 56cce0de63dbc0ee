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

/* TLS files (PEM); in a service section each unset key takes shared.tls's. */
typedef struct dbld_tls_config {
    char *cert_file;   /* the service's certificate chain (also its client certificate) */
    char *key_file;    /* its private key */
    char *ca_file;     /* CA bundle: verifies clients (mTLS) and, as a client, servers */
    char *client_auth; /* none | request | require (mTLS); default none */
} dbld_tls_config;

/* One credential of shared.auth.tokens: a bearer token from a file or an
 * environment variable (never inline), or an mTLS client's common name. */
typedef struct dbld_auth_token_config {
    char *name;
    char *token_file;
    char *token_env;
    char *common_name;
    char **roles; /* reader | writer | internal */
    size_t n_roles;
} dbld_auth_token_config;

typedef struct dbld_server_config {
    char *listen;               /* host:port to bind, e.g. "127.0.0.1:7101" */
    int workers;                /* RPC worker threads, 1..256 (default 4) */
    int pollers;                /* completion-queue threads, 1..16 (default 2) */
    int max_queue;              /* unary calls waiting for a worker, 1..1000000 (default 1024) */
    int max_message_bytes;      /* max request/response size (default 16 MiB) */
    int shutdown_grace_ms;      /* in-flight calls get this long on SIGTERM (default 5000) */
    int max_streams;            /* streaming calls open at once, 1..65536 (default 256; job 1024) */
    int max_concurrent_streams; /* HTTP/2 streams (calls) per connection, 0..65536; 0: no limit
                                   (default 0; query 10) */
    dbld_tls_config tls;        /* overrides shared.tls key by key */
    char *metrics_listen;       /* host:port of the Prometheus endpoint; NULL: off */
} dbld_server_config;

/* LUCI-style retry quota of one job (see luci_cv_tryjob_storage.proto's
 * RetryConfig). single_quota < 0 means retries are not configured. */
typedef struct dbld_retry_config {
    int single_quota;             /* max quota one task may use (-1: no retry config) */
    int global_quota;             /* max quota all tasks of one build may use */
    int failure_weight;           /* quota used by a permanent failure */
    int transient_failure_weight; /* ... by a transient failure (spawn, lost job service) */
    int timeout_weight;           /* ... by a timeout */
} dbld_retry_config;

/* One job of the graph (graph.jobs[] in the YAML file). */
typedef struct dbld_job_def {
    char *label;    /* unique job label, e.g. "//reviews:ingest" */
    char **command; /* argv: run as `command... config REF...` / `command... exec ARGS...` */
    size_t n_command;
    char **outputs; /* POSIX extended regexes, matched in full; no ref matches two jobs' */
    size_t n_outputs;
    int timeout_ms; /* per exec; 0 = none (default 3600000) */
    char **env;     /* extra environment, "KEY=VALUE" */
    size_t n_env;
    /* Names ("NAME", "PREFIX*", "*") the job's config step may set in its
     * env, on top of the denylist (dbld/jobenv.h); default ["*"], [] = none. */
    char **env_allow;
    size_t n_env_allow;
    char *working_dir;           /* NULL: the job service's working directory */
    char **transient_exit_codes; /* exit codes that count as transient failures ("75") */
    size_t n_transient_exit_codes;
    char **no_retry_exit_codes; /* exit codes by which the job denies a retry ("65") */
    size_t n_no_retry_exit_codes;
    dbld_retry_config retry;
    int max_age_ms; /* reuse window of its outputs (0: graph.max_age_ms) */
    /* POSIX EREs matched in full: inputs the job runs without when their
     * producer fails (their absence is recorded on the run) */
    char **optional_inputs;
    size_t n_optional_inputs;
} dbld_job_def;

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
        struct {
            dbld_tls_config files; /* defaults of every service's tls section */
            char *server_name;     /* name peers' certificates are checked against */
        } tls;
        struct {
            dbld_auth_token_config *tokens; /* none: auth is off */
            size_t n_tokens;
            char *client_token_file; /* the token this process sends to its peers */
            char *client_token_env;
            int health_open;     /* 1 (default): health needs no credential */
            int reflection_open; /* 1 (default): reflection needs no credential */
        } auth;
    } shared;
    struct {
        dbld_server_config server;
        int group_commit_max_events; /* events per commit batch (default 5000) */
        int group_commit_wait_us;    /* a batch waits this long for company (default 1000) */
        int db_pool_size;            /* reader connections for List/Subscribe (default 4) */
        int statement_timeout_ms;    /* longest statement on a reader connection (default 5000) */
    } eventlog;
    struct {
        dbld_server_config server;
        int max_concurrent_runs; /* default 4 */
        int kill_grace_ms;       /* SIGTERM -> SIGKILL delay on timeout/cancel (default 5000) */
        int heartbeat_ms;        /* wrapper heartbeat period while a job runs (default 10000) */
        char *run_as; /* unix user jobs run as when the job service is root; NULL: unset */
    } job;
    struct {
        dbld_server_config server;
        char *label;       /* graph label (default "//databuild:graph") */
        int max_parallel;  /* tasks running at once per build (default 8) */
        int build_threads; /* builds coordinated at once: the build pool (default 16) */
        int build_queue;   /* builds admitted beyond those, waiting (default 1000) */
        int task_threads;  /* tasks running at once over all builds: the task pool (default 32) */
        int max_age_ms;    /* reuse window: AVAILABLE partitions older are rebuilt (0: none) */
        char **external;   /* regexes of refs produced outside this graph */
        size_t n_external;
        dbld_job_def *jobs;
        size_t n_jobs;
    } graph;
    struct {
        dbld_server_config server;
        char *postgres_dsn;       /* read-only DSN; defaults to shared.postgres_dsn */
        int statement_timeout_ms; /* longest statement of a read (default 5000) */
        int index;                /* partition lookups from memory (default 1; 0: SQL only) */
        int index_max_partitions; /* refs the index holds at most (default 1000000) */
        int index_max_builds;     /* build requests it holds at most (default 1000000) */
    } query;
} dbld_config;

/* Fill *cfg with defaults (every pointer NULL-or-owned; free with dbld_config_free()):
 * listen 127.0.0.1:7101 (eventlog), :7102 (job), :7103 (graph), :7104 (query);
 * peers = those listen addresses; postgres_dsn "" (libpq defaults: PGHOST, ...);
 * query.postgres_dsn = shared.postgres_dsn; log_level "info"; source NULL. */
void dbld_config_defaults(dbld_config *cfg);

/* Parse YAML text; `name` is used in error messages and copied to cfg->source.
 * Every section and key is optional; empty text gives the defaults. A peer left
 * unset defaults to that service's listen address *as set in the file* (a
 * wildcard host, 0.0.0.0 or [::], becomes the loopback 127.0.0.1 or [::1] with
 * that port: a peer is an address to call, never a bind-all one), and
 * query.postgres_dsn to shared.postgres_dsn. shared.peers.job takes a list or a
 * single address. YAML aliases (*x) are rejected; one document only.
 * On success *cfg owns its strings (free with dbld_config_free()). On error
 * returns DBLD_INVALID_ARGUMENT, *cfg is zeroed (nothing to free; freeing it is
 * a harmless no-op) and st holds "name:line:col: key.path: problem", 1-based,
 * pointing at the offending value (or key, for unknown/duplicate keys). */
int dbld_config_parse(const char *text, size_t len, const char *name, dbld_config *cfg,
                      dbld_status *st);
/* Read and parse a file (path is the `name` in messages). If it can't be read:
 * "could not read config file \"path\": <strerror>" with DBLD_NOT_FOUND when it
 * does not exist, DBLD_INVALID_ARGUMENT otherwise (permissions, a directory,
 * larger than 16 MiB); *cfg is zeroed then. Relative paths of the TLS files
 * (cert_file, key_file, ca_file) and token files (token_file,
 * client_token_file) are made relative to the config file's directory. */
int dbld_config_load(const char *path, dbld_config *cfg, dbld_status *st);

/* Apply environment overrides: DATABUILD_POSTGRES_DSN, DATABUILD_QUERY_POSTGRES_DSN,
 * DATABUILD_<SVC>_LISTEN (SVC = EVENTLOG|JOB|GRAPH|QUERY),
 * DATABUILD_<SVC>_ADDR (peer address; for JOB a comma-separated list) and
 * DATABUILD_LOG_LEVEL. Empty variables count as unset. A peer address (or the
 * query DSN) still equal to the value it defaults from follows a _LISTEN (or
 * DATABUILD_POSTGRES_DSN) override (with the same wildcard-to-loopback rule);
 * an explicit _ADDR / _QUERY_POSTGRES_DSN wins.
 * Invalid values (bad address or log level) are skipped here; use
 * dbld_config_apply_env_checked() to get an error instead. */
void dbld_config_apply_env(dbld_config *cfg);
/* Like dbld_config_apply_env() but first validates every variable; on a bad one
 * returns DBLD_INVALID_ARGUMENT ("DATABUILD_JOB_LISTEN: invalid address ...")
 * and changes nothing. */
int dbld_config_apply_env_checked(dbld_config *cfg, dbld_status *st);

/* Free everything and zero *cfg. Safe on a defaulted, zeroed or already freed struct. */
void dbld_config_free(dbld_config *cfg);

/* Return values of dbld_config_from_args(). */
#define DBLD_CONFIG_RUN 0   /* config loaded: carry on */
#define DBLD_CONFIG_HELP 1  /* --help printed to stdout: exit with status 0 */
#define DBLD_CONFIG_ERROR 2 /* one JSON line logged to stderr: exit with status 2 */
/* The process exit status for a non-RUN result. */
#define DBLD_CONFIG_EXIT_STATUS(rc) ((rc) == DBLD_CONFIG_HELP ? 0 : (rc))

/* Common start-up for a service main(): parses `--config FILE` / `--config=FILE`
 * (required) and `-h`/`--help` from argv, loads the file, applies the environment
 * (checked), and initialises logging for `service` ("eventlog", ...) at
 * shared.log_level. Any result but DBLD_CONFIG_RUN means "stop now":
 *
 *     int rc = dbld_config_from_args(argc, argv, "eventlog", &cfg);
 *     if (rc != DBLD_CONFIG_RUN)
 *         return DBLD_CONFIG_EXIT_STATUS(rc);
 *
 * Errors write exactly one JSON log line to stderr, like every other record
 * of the service: msg "command-line error" or "configuration error", fields
 * "error" (e.g. "missing --config FILE", "databuild.yaml:2:12:
 * eventlog.workers: expected an integer, got \"lots\"") and "config" (the
 * file, when known); *cfg is then zeroed. On RUN the caller owns *cfg
 * (dbld_config_free()). */
int dbld_config_from_args(int argc, char **argv, const char *service, dbld_config *cfg);

/* A start-up error that a service finds in its configuration after
 * dbld_config_from_args() (e.g. a required key for this service, a graph
 * that does not compile): the same JSON line, msg "configuration error". */
void dbld_config_log_error(const dbld_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
