/* config.c - the suite's YAML file: schema tables, derived defaults, env overrides, main() helper.
 *
 * The layout of databuild.yaml is the set of static tables below, one per
 * section; config_schema.c turns them into parsing, validation, defaults and
 * freeing. A few defaults depend on other values (a peer address defaults to
 * that service's listen address, query.postgres_dsn to shared.postgres_dsn);
 * those fields default to NULL in the tables and are filled in by
 * resolve_derived() once the file has been read. To add a section or key: add a
 * field to dbld_config, a line to a table, and the key to examples/databuild.yaml.
 */
#include "dbld/config.h"

#include "config_schema.h"
#include "dbld/jobenv.h"
#include "dbld/log.h"
#include "dbld/rxoverlap.h"
#include "dbld/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <regex.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILE_BYTES (16 * 1024 * 1024)

/* ---- value checks ---- */

static int check_addr(const char *s, char *why, size_t n)
{
    const char *colon = strrchr(s, ':');
    int ok = colon && colon > s;
    if (ok && s[0] == '[') /* [v6]:port */
        ok = colon - s > 2 && colon[-1] == ']' &&
             memchr(s + 1, ']', (size_t)(colon - s - 2)) == NULL;
    else if (ok)
        ok = memchr(s, ':', (size_t)(colon - s)) == NULL;
    for (const char *p = s; ok && p < colon; p++)
        ok = (unsigned char)*p > ' ' && *p != '/';
    if (ok) {
        const char *port = colon + 1;
        size_t digits = strspn(port, "0123456789");
        ok = digits >= 1 && digits <= 5 && port[digits] == '\0' && atol(port) <= 65535;
    }
    if (!ok) snprintf(why, n, "invalid address \"%s\" (expected host:port with port 0..65535)", s);
    return !ok;
}

static int check_log_level(const char *s, char *why, size_t n)
{
    dbld_log_level lvl;
    if (dbld_log_level_parse(s, &lvl) == 0) return 0;
    snprintf(why, n, "invalid log level \"%s\" (expected one of: debug, info, warn, error)", s);
    return 1;
}

/* Compiled as the services compile it (anchored: "^(s)$", where `\1` would
 * name the anchoring group), so what loads here also compiles there. */
static int check_regex(const char *s, char *why, size_t n)
{
    regex_t re;
    dbld_status st;
    if (dbld_rx_regcomp(&re, s, &st) == 0) {
        regfree(&re);
        return 0;
    }
    snprintf(why, n, "%s", st.msg);
    return 1;
}

static int check_env(const char *s, char *why, size_t n)
{
    const char *eq = strchr(s, '=');
    if (eq && eq > s) return 0;
    snprintf(why, n, "invalid environment entry \"%s\" (expected KEY=VALUE)", s);
    return 1;
}

static int check_env_allow(const char *s, char *why, size_t n)
{
    return dbld_jobenv_check_allow_entry(s, why, n);
}

/* A unix user name as useradd takes it; whether it exists is the job
 * service's business (the graph service reads the same file elsewhere). */
static int check_user(const char *s, char *why, size_t n)
{
    int ok = s[0] && s[0] != '-' && strlen(s) <= 32;
    for (const char *p = s; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.' ||
             (*p == '$' && !p[1]);
    if (!ok) snprintf(why, n, "invalid user name \"%s\"", s);
    return !ok;
}

static int check_exit_code(const char *s, char *why, size_t n)
{
    size_t d = strspn(s, "0123456789");
    if (d >= 1 && d <= 3 && s[d] == '\0' && atoi(s) >= 1 && atoi(s) <= 255) return 0;
    snprintf(why, n, "invalid exit code \"%s\" (expected 1..255)", s);
    return 1;
}

static int check_client_auth(const char *s, char *why, size_t n)
{
    if (strcmp(s, "none") == 0 || strcmp(s, "request") == 0 || strcmp(s, "require") == 0) return 0;
    snprintf(why, n, "invalid client_auth \"%s\" (expected one of: none, request, require)", s);
    return 1;
}

static int check_role(const char *s, char *why, size_t n)
{
    if (strcmp(s, "reader") == 0 || strcmp(s, "writer") == 0 || strcmp(s, "internal") == 0)
        return 0;
    snprintf(why, n, "invalid role \"%s\" (expected one of: reader, writer, internal)", s);
    return 1;
}

/* ---- the schema ---- */

#define OFF(sec, m) (offsetof(dbld_config, sec.m) - offsetof(dbld_config, sec))

#define STRING_KEY(sec, key, field, def, chk)                                                      \
    {                                                                                              \
        .name = key, .type = DBLD__CFG_STRING, .offset = OFF(sec, field), .def_str = def,          \
        .check = chk                                                                               \
    }
#define INT_KEY(sec, key, field, lo, hi, def)                                                      \
    {                                                                                              \
        .name = key, .type = DBLD__CFG_INT, .offset = OFF(sec, field), .min = lo, .max = hi,       \
        .def_int = def                                                                             \
    }

#define TOFF(field) offsetof(dbld_tls_config, field)
static const dbld__cfg_key tls_keys[] = {
    {.name = "cert_file", .type = DBLD__CFG_STRING, .offset = TOFF(cert_file)},
    {.name = "key_file", .type = DBLD__CFG_STRING, .offset = TOFF(key_file)},
    {.name = "ca_file", .type = DBLD__CFG_STRING, .offset = TOFF(ca_file)},
    {.name = "client_auth",
     .type = DBLD__CFG_STRING,
     .offset = TOFF(client_auth),
     .check = check_client_auth},
    {0},
};

/* Keys every service section has (dbld_server_config). max_streams caps the
 * streaming calls open at once: each holds a thread (see rpc.h).
 * max_concurrent_streams caps the calls per connection (HTTP/2's
 * SETTINGS_MAX_CONCURRENT_STREAMS): gRPC holds ~12-14 KiB per call in the
 * server, and the calls over it wait in their client. */
#define SERVER_KEYS(sec, listen_default, workers_default, streams_default, conc_default)           \
    STRING_KEY(sec, "listen", server.listen, listen_default, check_addr),                          \
        INT_KEY(sec, "workers", server.workers, 1, 256, workers_default),                          \
        INT_KEY(sec, "pollers", server.pollers, 1, 16, 2),                                         \
        INT_KEY(sec, "max_queue", server.max_queue, 1, 1000000, 1024),                             \
        INT_KEY(sec, "max_message_bytes", server.max_message_bytes, 1024, 1 << 30, 16 << 20),      \
        INT_KEY(sec, "shutdown_grace_ms", server.shutdown_grace_ms, 0, 600000, 5000),              \
        INT_KEY(sec, "max_streams", server.max_streams, 1, 65536, streams_default),                \
        INT_KEY(sec, "max_concurrent_streams", server.max_concurrent_streams, 0, 65536,            \
                conc_default),                                                                     \
        STRING_KEY(sec, "metrics_listen", server.metrics_listen, NULL, check_addr),                \
    {                                                                                              \
        .name = "tls", .type = DBLD__CFG_SECTION, .offset = OFF(sec, server.tls), .sub = tls_keys  \
    }

static const dbld__cfg_key peers_keys[] = {
    STRING_KEY(shared.peers, "eventlog", eventlog, NULL, check_addr),
    {.name = "job",
     .type = DBLD__CFG_STRLIST,
     .offset = OFF(shared.peers, job),
     .count_offset = OFF(shared.peers, n_job),
     .min = 1,
     .check = check_addr},
    STRING_KEY(shared.peers, "graph", graph, NULL, check_addr),
    STRING_KEY(shared.peers, "query", query, NULL, check_addr),
    {0},
};

static const dbld__cfg_key shared_tls_keys[] = {
    {.name = "cert_file", .type = DBLD__CFG_STRING, .offset = OFF(shared.tls, files.cert_file)},
    {.name = "key_file", .type = DBLD__CFG_STRING, .offset = OFF(shared.tls, files.key_file)},
    {.name = "ca_file", .type = DBLD__CFG_STRING, .offset = OFF(shared.tls, files.ca_file)},
    {.name = "client_auth",
     .type = DBLD__CFG_STRING,
     .offset = OFF(shared.tls, files.client_auth),
     .check = check_client_auth},
    {.name = "server_name", .type = DBLD__CFG_STRING, .offset = OFF(shared.tls, server_name)},
    {0},
};

#define AOFF(field) offsetof(dbld_auth_token_config, field)
static const dbld__cfg_key auth_token_keys[] = {
    {.name = "name", .type = DBLD__CFG_STRING, .offset = AOFF(name), .flags = DBLD__CFG_REQUIRED},
    {.name = "token_file", .type = DBLD__CFG_STRING, .offset = AOFF(token_file)},
    {.name = "token_env", .type = DBLD__CFG_STRING, .offset = AOFF(token_env)},
    {.name = "common_name", .type = DBLD__CFG_STRING, .offset = AOFF(common_name)},
    {.name = "roles",
     .type = DBLD__CFG_STRLIST,
     .offset = AOFF(roles),
     .count_offset = AOFF(n_roles),
     .min = 1,
     .check = check_role,
     .flags = DBLD__CFG_REQUIRED},
    {0},
};

static const dbld__cfg_key auth_keys[] = {
    {.name = "tokens",
     .type = DBLD__CFG_LIST,
     .offset = OFF(shared.auth, tokens),
     .count_offset = OFF(shared.auth, n_tokens),
     .sub = auth_token_keys,
     .elem_size = sizeof(dbld_auth_token_config)},
    STRING_KEY(shared.auth, "client_token_file", client_token_file, NULL, NULL),
    STRING_KEY(shared.auth, "client_token_env", client_token_env, NULL, NULL),
    {.name = "health_open",
     .type = DBLD__CFG_BOOL,
     .offset = OFF(shared.auth, health_open),
     .def_int = 1},
    {.name = "reflection_open",
     .type = DBLD__CFG_BOOL,
     .offset = OFF(shared.auth, reflection_open),
     .def_int = 1},
    {0},
};

static const dbld__cfg_key shared_keys[] = {
    STRING_KEY(shared, "postgres_dsn", postgres_dsn, "", NULL),
    STRING_KEY(shared, "log_level", log_level, "info", check_log_level),
    {.name = "peers", .type = DBLD__CFG_SECTION, .offset = OFF(shared, peers), .sub = peers_keys},
    {.name = "tls", .type = DBLD__CFG_SECTION, .offset = OFF(shared, tls), .sub = shared_tls_keys},
    {.name = "auth", .type = DBLD__CFG_SECTION, .offset = OFF(shared, auth), .sub = auth_keys},
    {0},
};

static const dbld__cfg_key eventlog_keys[] = {
    /* Appends, claims and job logs hold no worker while they wait for their
     * group commit; workers serve the reads (List, Status, leases). */
    SERVER_KEYS(eventlog, "127.0.0.1:7101", 8, 256, 0),
    INT_KEY(eventlog, "group_commit_max_events", group_commit_max_events, 1, 100000, 5000),
    INT_KEY(eventlog, "group_commit_wait_us", group_commit_wait_us, 0, 100000, 1000),
    INT_KEY(eventlog, "db_pool_size", db_pool_size, 1, 64, 4),
    INT_KEY(eventlog, "statement_timeout_ms", statement_timeout_ms, 10, 3600000, 5000),
    {0},
};

static const dbld__cfg_key job_keys[] = {
    /* every run (running or waiting for a slot) is a RunStreamed stream */
    SERVER_KEYS(job, "127.0.0.1:7102", 4, 1024, 0),
    INT_KEY(job, "max_concurrent_runs", max_concurrent_runs, 1, 1024, 4),
    INT_KEY(job, "kill_grace_ms", kill_grace_ms, 0, 600000, 5000),
    INT_KEY(job, "heartbeat_ms", heartbeat_ms, 10, 3600000, 10000),
    STRING_KEY(job, "run_as", run_as, NULL, check_user),
    {0},
};

#define RKEY(key, field, lo, hi, def)                                                              \
    {                                                                                              \
        .name = key, .type = DBLD__CFG_INT, .offset = offsetof(dbld_retry_config, field),          \
        .min = lo, .max = hi, .def_int = def                                                       \
    }
static const dbld__cfg_key retry_keys[] = {
    /* a retry section says how much: single_quota is required there (0 is
     * allowed: every failure then ends in "insufficient quota", as in LUCI) */
    {.name = "single_quota",
     .type = DBLD__CFG_INT,
     .offset = offsetof(dbld_retry_config, single_quota),
     .min = 0,
     .max = 1000000,
     .def_int = -1,
     .flags = DBLD__CFG_REQUIRED},
    RKEY("global_quota", global_quota, 0, 1000000, 1000),
    RKEY("failure_weight", failure_weight, 0, 1000000, 1),
    RKEY("transient_failure_weight", transient_failure_weight, 0, 1000000, 1),
    RKEY("timeout_weight", timeout_weight, 0, 1000000, 1),
    {0},
};

#define JOFF(field) offsetof(dbld_job_def, field)
static const dbld__cfg_key graph_job_keys[] = {
    {.name = "label", .type = DBLD__CFG_STRING, .offset = JOFF(label), .flags = DBLD__CFG_REQUIRED},
    {.name = "command",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(command),
     .count_offset = JOFF(n_command),
     .min = 1,
     .flags = DBLD__CFG_REQUIRED},
    {.name = "outputs",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(outputs),
     .count_offset = JOFF(n_outputs),
     .min = 1,
     .check = check_regex,
     .flags = DBLD__CFG_REQUIRED},
    {.name = "timeout_ms",
     .type = DBLD__CFG_INT,
     .offset = JOFF(timeout_ms),
     .min = 0,
     .max = 7 * 24 * 3600 * 1000,
     .def_int = 3600000},
    {.name = "env",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(env),
     .count_offset = JOFF(n_env),
     .check = check_env},
    {.name = "env_allow",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(env_allow),
     .count_offset = JOFF(n_env_allow),
     .def_str = "*",
     .check = check_env_allow},
    {.name = "working_dir", .type = DBLD__CFG_STRING, .offset = JOFF(working_dir)},
    {.name = "transient_exit_codes",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(transient_exit_codes),
     .count_offset = JOFF(n_transient_exit_codes),
     .check = check_exit_code},
    {.name = "no_retry_exit_codes",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(no_retry_exit_codes),
     .count_offset = JOFF(n_no_retry_exit_codes),
     .check = check_exit_code},
    {.name = "retry", .type = DBLD__CFG_SECTION, .offset = JOFF(retry), .sub = retry_keys},
    /* inputs this job can run without (regexes matched in full) */
    {.name = "optional_inputs",
     .type = DBLD__CFG_STRLIST,
     .offset = JOFF(optional_inputs),
     .count_offset = JOFF(n_optional_inputs),
     .check = check_regex},
    /* this job's reuse window (overrides graph.max_age_ms; 0: the graph's) */
    {.name = "max_age_ms",
     .type = DBLD__CFG_INT,
     .offset = JOFF(max_age_ms),
     .min = 0,
     .max = INT_MAX, /* about 24.8 days */
     .def_int = 0},
    {0},
};

static const dbld__cfg_key graph_keys[] = {
    SERVER_KEYS(graph, "127.0.0.1:7103", 4, 256, 0),
    STRING_KEY(graph, "label", label, "//databuild:graph", NULL),
    INT_KEY(graph, "max_parallel", max_parallel, 1, 4096, 8),
    /* fixed pools: builds coordinated at once, builds waiting for one of
     * those threads (beyond: RESOURCE_EXHAUSTED), tasks running at once */
    INT_KEY(graph, "build_threads", build_threads, 1, 1024, 16),
    INT_KEY(graph, "build_queue", build_queue, 0, 1000000, 1000),
    INT_KEY(graph, "task_threads", task_threads, 1, 4096, 32),
    /* reuse window: an AVAILABLE partition older than this is rebuilt (0: no window) */
    {.name = "max_age_ms",
     .type = DBLD__CFG_INT,
     .offset = OFF(graph, max_age_ms),
     .min = 0,
     .max = INT_MAX, /* about 24.8 days */
     .def_int = 0},
    {.name = "external",
     .type = DBLD__CFG_STRLIST,
     .offset = OFF(graph, external),
     .count_offset = OFF(graph, n_external),
     .check = check_regex},
    {.name = "jobs",
     .type = DBLD__CFG_LIST,
     .offset = OFF(graph, jobs),
     .count_offset = OFF(graph, n_jobs),
     .sub = graph_job_keys,
     .elem_size = sizeof(dbld_job_def)},
    {0},
};

static const dbld__cfg_key query_keys[] = {
    SERVER_KEYS(query, "127.0.0.1:7104", 4, 256, 10),
    STRING_KEY(query, "postgres_dsn", postgres_dsn, NULL, NULL),
    INT_KEY(query, "statement_timeout_ms", statement_timeout_ms, 10, 3600000, 5000),
    {.name = "index", .type = DBLD__CFG_BOOL, .offset = OFF(query, index), .def_int = 1},
    INT_KEY(query, "index_max_partitions", index_max_partitions, 0, 100000000, 1000000),
    INT_KEY(query, "index_max_builds", index_max_builds, 0, 100000000, 1000000),
    {0},
};

#define SECTION(key, sec, keys)                                                                    \
    {                                                                                              \
        .name = key, .type = DBLD__CFG_SECTION, .offset = offsetof(dbld_config, sec), .sub = keys  \
    }

static const dbld__cfg_key root_keys[] = {
    SECTION("shared", shared, shared_keys), SECTION("eventlog", eventlog, eventlog_keys),
    SECTION("job", job, job_keys),          SECTION("graph", graph, graph_keys),
    SECTION("query", query, query_keys),    {0},
};

/* ---- defaults, parse, free ---- */

static void set_str(char **field, const char *value)
{
    char *copy = dbld_xstrdup(value);
    free(*field);
    *field = copy;
}

static void set_job_peers(dbld_config *cfg, char **list, size_t n)
{
    for (size_t i = 0; i < cfg->shared.peers.n_job; i++)
        free(cfg->shared.peers.job[i]);
    free(cfg->shared.peers.job);
    cfg->shared.peers.job = list;
    cfg->shared.peers.n_job = n;
}

static void set_job_peer(dbld_config *cfg, const char *addr)
{
    char **list = dbld_xcalloc(1, sizeof *list);
    list[0] = dbld_xstrdup(addr);
    set_job_peers(cfg, list, 1);
}

/* The peer address a listen address stands for: itself, except that a
 * wildcard host (0.0.0.0, [::]), which is no address to call, becomes the
 * loopback of its family with the same port (127.0.0.1:P, [::1]:P). Writes
 * into buf (n bytes) and returns it. */
static const char *peer_of_listen(const char *listen, char *buf, size_t n)
{
    const char *colon = listen ? strrchr(listen, ':') : NULL;
    if (!colon) return listen;
    size_t host = (size_t)(colon - listen);
    if (host == 7 && strncmp(listen, "0.0.0.0", 7) == 0)
        snprintf(buf, n, "127.0.0.1%s", colon);
    else if (host == 4 && strncmp(listen, "[::]", 4) == 0)
        snprintf(buf, n, "[::1]%s", colon);
    else
        snprintf(buf, n, "%s", listen);
    return buf;
}

static void set_peer_from_listen(char **peer, const char *listen)
{
    char buf[512];
    set_str(peer, peer_of_listen(listen, buf, sizeof buf));
}

/* Defaults that depend on other values; fields the file left NULL/empty.
 * A peer defaults to its service's listen address, never to a wildcard one
 * (peer_of_listen()). */
static void resolve_derived(dbld_config *cfg)
{
    char buf[512];
    if (!cfg->shared.peers.eventlog)
        set_peer_from_listen(&cfg->shared.peers.eventlog, cfg->eventlog.server.listen);
    if (cfg->shared.peers.n_job == 0)
        set_job_peer(cfg, peer_of_listen(cfg->job.server.listen, buf, sizeof buf));
    if (!cfg->shared.peers.graph)
        set_peer_from_listen(&cfg->shared.peers.graph, cfg->graph.server.listen);
    if (!cfg->shared.peers.query)
        set_peer_from_listen(&cfg->shared.peers.query, cfg->query.server.listen);
    if (!cfg->query.postgres_dsn) set_str(&cfg->query.postgres_dsn, cfg->shared.postgres_dsn);
}

void dbld_config_defaults(dbld_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    dbld__cfg_defaults(root_keys, cfg);
    resolve_derived(cfg);
}

void dbld_config_free(dbld_config *cfg)
{
    if (!cfg) return;
    dbld__cfg_free(root_keys, cfg);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- cross-job rules ---- */

/* One output pattern of the graph, for the overlap check. */
typedef struct out_pat {
    size_t job, idx; /* graph.jobs[job].outputs[idx] */
    dbld_rx *rx;
} out_pat;

static const char *out_path(const out_pat *p, char *buf, size_t n)
{
    snprintf(buf, n, "graph.jobs[%zu].outputs[%zu]", p->job, p->idx);
    return buf;
}

/* Every output pattern as an automaton, in file order; *n_out of them on error. */
static int compile_outputs(const dbld_config *cfg, const dbld__cfg_doc *doc, out_pat *pats,
                           size_t *n_out, dbld_status *st)
{
    const dbld_job_def *jobs = cfg->graph.jobs;
    *n_out = 0;
    for (size_t j = 0; j < cfg->graph.n_jobs; j++) {
        for (size_t k = 0; k < jobs[j].n_outputs; k++) {
            out_pat *p = &pats[*n_out];
            dbld_status why;
            *p = (out_pat){.job = j, .idx = k};
            if (dbld_rx_compile(jobs[j].outputs[k], 0, &p->rx, &why) != 0) {
                char path[96];
                return dbld__cfg_error_at(doc, st, out_path(p, path, sizeof path),
                                          "could not check pattern \"%s\" of job \"%s\" for "
                                          "overlaps with other jobs: %s",
                                          jobs[j].outputs[k], jobs[j].label, why.msg);
            }
            (*n_out)++;
        }
    }
    return 0;
}

/* p (the later pattern) against q: the error names both and a ref both match. */
static int check_pair(const dbld_config *cfg, const dbld__cfg_doc *doc, const out_pat *p,
                      const out_pat *q, dbld_status *st)
{
    const dbld_job_def *jp = &cfg->graph.jobs[p->job], *jq = &cfg->graph.jobs[q->job];
    char path[96], *witness = NULL;
    dbld_status why;
    int rc = 0;
    if (dbld_rx_overlap(p->rx, q->rx, 0, &witness, &why) != 0) {
        rc = dbld__cfg_error_at(doc, st, out_path(p, path, sizeof path),
                                "could not check whether pattern \"%s\" of job \"%s\" overlaps "
                                "pattern \"%s\" of job \"%s\": %s",
                                jp->outputs[p->idx], jp->label, jq->outputs[q->idx], jq->label,
                                why.msg);
    } else if (witness) {
        char *w = dbld_rx_quote(witness, 64);
        rc = dbld__cfg_error_at(doc, st, out_path(p, path, sizeof path),
                                "pattern \"%s\" of job \"%s\" overlaps pattern \"%s\" of job "
                                "\"%s\" (both match %s)",
                                jp->outputs[p->idx], jp->label, jq->outputs[q->idx], jq->label, w);
        free(w);
    }
    free(witness);
    return rc;
}

/* No ref may match the output patterns of two jobs: every pair of patterns of
 * different jobs is intersected as automata (rxoverlap.h). A pattern or pair
 * that cannot be checked is an error too, saying why. One job: nothing to do. */
static int check_overlaps(const dbld_config *cfg, const dbld__cfg_doc *doc, dbld_status *st)
{
    if (cfg->graph.n_jobs < 2) return 0;
    size_t n = 0;
    for (size_t j = 0; j < cfg->graph.n_jobs; j++)
        n += cfg->graph.jobs[j].n_outputs;
    out_pat *pats = dbld_xcalloc(n, sizeof *pats);
    int rc = compile_outputs(cfg, doc, pats, &n, st);
    for (size_t a = 0; a < n && !rc; a++)
        for (size_t b = 0; b < a && !rc; b++)
            if (pats[a].job != pats[b].job) rc = check_pair(cfg, doc, &pats[a], &pats[b], st);
    for (size_t i = 0; i < n; i++)
        dbld_rx_free(pats[i].rx);
    free(pats);
    return rc;
}

/* Rules the per-key schema cannot express: job labels are unique, and no ref
 * matches the output patterns of two jobs. */
static int check_graph(const void *base, const dbld__cfg_doc *doc, dbld_status *st)
{
    const dbld_config *cfg = base;
    const dbld_job_def *jobs = cfg->graph.jobs;
    for (size_t i = 0; i < cfg->graph.n_jobs; i++) {
        for (size_t j = 0; j < i; j++) {
            if (strcmp(jobs[i].label, jobs[j].label) != 0) continue;
            char path[64];
            snprintf(path, sizeof path, "graph.jobs[%zu].label", i);
            return dbld__cfg_error_at(doc, st, path,
                                      "duplicate job label \"%s\" (also graph.jobs[%zu])",
                                      jobs[i].label, j);
        }
    }
    return check_overlaps(cfg, doc, st);
}

int dbld_config_parse(const char *text, size_t len, const char *name, dbld_config *cfg,
                      dbld_status *st)
{
    memset(cfg, 0, sizeof *cfg);
    dbld__cfg_defaults(root_keys, cfg);
    cfg->source = dbld_xstrdup(name ? name : "<config>");
    int rc = dbld__cfg_parse(text, len, cfg->source, root_keys, cfg, check_graph, st);
    if (rc) {
        dbld_config_free(cfg);
        return rc;
    }
    resolve_derived(cfg);
    return 0;
}

/* Read the whole file into a NUL-terminated heap buffer. */
static int read_file(const char *path, char **out, size_t *len, dbld_status *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    int err = 0;
    if (fd < 0)
        err = errno;
    else if (fstat(fd, &sb) != 0)
        err = errno;
    else if (S_ISDIR(sb.st_mode))
        err = EISDIR;
    else if (sb.st_size > MAX_FILE_BYTES)
        err = EFBIG;
    if (err) {
        if (fd >= 0) close(fd);
        return dbld_status_set(st, err == ENOENT ? DBLD_NOT_FOUND : DBLD_INVALID_ARGUMENT,
                               "could not read config file \"%s\": %s", path, strerror(err));
    }
    size_t cap = (size_t)sb.st_size + 1, n = 0;
    char *buf = dbld_xmalloc(cap + 1);
    for (;;) {
        if (n == cap) { /* the file grew (or st_size was 0 for a pipe) */
            if (cap > MAX_FILE_BYTES) {
                err = EFBIG;
                break;
            }
            cap *= 2;
            buf = dbld_xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) err = errno;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (err) {
        free(buf);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "could not read config file \"%s\": %s",
                               path, strerror(err));
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* A relative *file is made relative to dir (the config file's directory),
 * so that a config names its certificates and tokens beside itself whatever
 * the working directory of the process that reads it. */
static void resolve_file(char **file, const char *dir, size_t dir_len)
{
    if (!*file || !**file || (*file)[0] == '/' || dir_len == 0) return;
    size_t n = strlen(*file);
    char *abs = dbld_xmalloc(dir_len + 1 + n + 1);
    memcpy(abs, dir, dir_len);
    abs[dir_len] = '/';
    memcpy(abs + dir_len + 1, *file, n + 1);
    free(*file);
    *file = abs;
}

static void resolve_tls(dbld_tls_config *t, const char *dir, size_t dir_len)
{
    resolve_file(&t->cert_file, dir, dir_len);
    resolve_file(&t->key_file, dir, dir_len);
    resolve_file(&t->ca_file, dir, dir_len);
}

static void resolve_files(dbld_config *cfg, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return; /* the config is in the working directory: nothing to do */
    size_t dir_len = slash == path ? 1 : (size_t)(slash - path);
    resolve_tls(&cfg->shared.tls.files, path, dir_len);
    dbld_server_config *servers[] = {&cfg->eventlog.server, &cfg->job.server, &cfg->graph.server,
                                     &cfg->query.server};
    for (size_t i = 0; i < sizeof servers / sizeof servers[0]; i++)
        resolve_tls(&servers[i]->tls, path, dir_len);
    resolve_file(&cfg->shared.auth.client_token_file, path, dir_len);
    for (size_t i = 0; i < cfg->shared.auth.n_tokens; i++)
        resolve_file(&cfg->shared.auth.tokens[i].token_file, path, dir_len);
}

int dbld_config_load(const char *path, dbld_config *cfg, dbld_status *st)
{
    char *text = NULL;
    size_t len = 0;
    memset(cfg, 0, sizeof *cfg);
    int rc = read_file(path, &text, &len, st);
    if (rc) return rc;
    rc = dbld_config_parse(text, len, path, cfg, st);
    free(text);
    if (rc == 0) resolve_files(cfg, path);
    return rc;
}

/* ---- environment ---- */

/* Parse a comma-separated address list ("a:1, b:2"). Returns the count, or 0 with a problem
 * in why if an item is empty or invalid. The caller frees *out and its items. */
static size_t split_addrs(const char *value, char ***out, char *why, size_t why_len)
{
    char **list = dbld_xcalloc(strlen(value) / 2 + 2, sizeof *list);
    size_t n = 0;
    for (const char *p = value;; p++) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ' || *p == '\t'))
            p++, len--;
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        char *item = dbld_xmalloc(len + 1);
        memcpy(item, p, len);
        item[len] = '\0';
        list[n++] = item;
        if (!len) {
            snprintf(why, why_len,
                     "invalid address list \"%s\" (expected host:port[,host:port...])", value);
            break;
        }
        if (check_addr(item, why, why_len)) break;
        p += strcspn(p, ",");
        if (!*p) {
            *out = list;
            return n;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return 0;
}

static int check_addr_list(const char *value, char *why, size_t n)
{
    char **list;
    size_t count = split_addrs(value, &list, why, n);
    for (size_t i = 0; i < count; i++)
        free(list[i]);
    if (count) free(list);
    return count == 0;
}

/* Every variable with a check; the DSNs are free-form. */
static const struct {
    const char *var;
    dbld__cfg_check_fn check;
} env_checks[] = {
    {"DATABUILD_LOG_LEVEL", check_log_level}, {"DATABUILD_EVENTLOG_LISTEN", check_addr},
    {"DATABUILD_JOB_LISTEN", check_addr},     {"DATABUILD_GRAPH_LISTEN", check_addr},
    {"DATABUILD_QUERY_LISTEN", check_addr},   {"DATABUILD_EVENTLOG_ADDR", check_addr},
    {"DATABUILD_JOB_ADDR", check_addr_list},  {"DATABUILD_GRAPH_ADDR", check_addr},
    {"DATABUILD_QUERY_ADDR", check_addr},
};

/* The variable's value if set, non-empty and valid, else NULL. */
static const char *env_ok(const char *var)
{
    char why[512];
    const char *v = getenv(var);
    if (!v || !v[0]) return NULL;
    for (size_t i = 0; i < sizeof env_checks / sizeof env_checks[0]; i++) {
        if (strcmp(env_checks[i].var, var) == 0 && env_checks[i].check(v, why, sizeof why))
            return NULL;
    }
    return v;
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Override a listen address; a peer still equal to what the old one stands
 * for (its default, peer_of_listen()) follows the new one. */
static void env_listen(const char *var, char **listen, char **peer)
{
    char buf[512];
    const char *v = env_ok(var);
    if (!v) return;
    if (peer && same(*peer, peer_of_listen(*listen, buf, sizeof buf)))
        set_peer_from_listen(peer, v);
    set_str(listen, v);
}

int dbld_config_apply_env_checked(dbld_config *cfg, dbld_status *st)
{
    char why[512];
    for (size_t i = 0; i < sizeof env_checks / sizeof env_checks[0]; i++) {
        const char *v = getenv(env_checks[i].var);
        if (v && v[0] && env_checks[i].check(v, why, sizeof why))
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: %s", env_checks[i].var, why);
    }
    dbld_config_apply_env(cfg);
    return 0;
}

void dbld_config_apply_env(dbld_config *c)
{
    const char *v;
    if ((v = env_ok("DATABUILD_POSTGRES_DSN"))) {
        if (!c->query.postgres_dsn || same(c->query.postgres_dsn, c->shared.postgres_dsn))
            set_str(&c->query.postgres_dsn, v);
        set_str(&c->shared.postgres_dsn, v);
    }
    if ((v = env_ok("DATABUILD_QUERY_POSTGRES_DSN"))) set_str(&c->query.postgres_dsn, v);
    if ((v = env_ok("DATABUILD_LOG_LEVEL"))) set_str(&c->shared.log_level, v);

    env_listen("DATABUILD_EVENTLOG_LISTEN", &c->eventlog.server.listen, &c->shared.peers.eventlog);
    char old_job[512], new_job[512];
    if ((v = env_ok("DATABUILD_JOB_LISTEN")) && c->shared.peers.n_job == 1 &&
        same(c->shared.peers.job[0], peer_of_listen(c->job.server.listen, old_job, sizeof old_job)))
        set_job_peer(c, peer_of_listen(v, new_job, sizeof new_job));
    env_listen("DATABUILD_JOB_LISTEN", &c->job.server.listen, NULL);
    env_listen("DATABUILD_GRAPH_LISTEN", &c->graph.server.listen, &c->shared.peers.graph);
    env_listen("DATABUILD_QUERY_LISTEN", &c->query.server.listen, &c->shared.peers.query);

    if ((v = env_ok("DATABUILD_EVENTLOG_ADDR"))) set_str(&c->shared.peers.eventlog, v);
    if ((v = env_ok("DATABUILD_JOB_ADDR"))) {
        char **list, why[512];
        size_t n = split_addrs(v, &list, why, sizeof why);
        if (n) set_job_peers(c, list, n);
    }
    if ((v = env_ok("DATABUILD_GRAPH_ADDR"))) set_str(&c->shared.peers.graph, v);
    if ((v = env_ok("DATABUILD_QUERY_ADDR"))) set_str(&c->shared.peers.query, v);
}

/* ---- main() helper ---- */

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s --config FILE\n"
            "\n"
            "options:\n"
            "  --config FILE, --config=FILE  the suite's YAML config file (required)\n"
            "  -h, --help                    print this help and exit\n"
            "\n"
            "environment (overrides the file):\n"
            "  DATABUILD_POSTGRES_DSN        shared.postgres_dsn\n"
            "  DATABUILD_QUERY_POSTGRES_DSN  query.postgres_dsn\n"
            "  DATABUILD_<SVC>_LISTEN        <svc>.listen (SVC: EVENTLOG, JOB, GRAPH, QUERY)\n"
            "  DATABUILD_<SVC>_ADDR          shared.peers.<svc> (JOB: comma-separated list)\n"
            "  DATABUILD_LOG_LEVEL           shared.log_level (debug, info, warn, error)\n"
            "  DATABUILD_JOB_STATE_DIR       job service only: where it records its jobs'\n"
            "                                process groups, to kill what a crashed\n"
            "                                predecessor left (default\n"
            "                                $TMPDIR/databuild-job-<uid>)\n",
            prog);
}

static void start_error(const char *msg, const char *path, const char *fmt, va_list ap)
{
    char text[DBLD_STATUS_MSG_MAX + 256];
    vsnprintf(text, sizeof text, fmt, ap);
    dbld_log(DBLD_LOG_ERROR, msg, "error", text, path ? "config" : NULL, path, (char *)NULL);
}

static void args_error(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void args_error(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    start_error(path ? "configuration error" : "command-line error", path, fmt, ap);
    va_end(ap);
}

void dbld_config_log_error(const dbld_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    start_error("configuration error", cfg ? cfg->source : NULL, fmt, ap);
    va_end(ap);
}

int dbld_config_from_args(int argc, char **argv, const char *service, dbld_config *cfg)
{
    char prog[96];
    const char *svc = service ? service : "databuild";
    snprintf(prog, sizeof prog, "%s%s", strncmp(svc, "databuild", 9) == 0 ? "" : "databuild-", svc);
    memset(cfg, 0, sizeof *cfg);
    dbld_log_init(svc, DBLD_LOG_INFO); /* errors below are JSON lines like the rest */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, prog);
            fflush(stdout);
            return DBLD_CONFIG_HELP;
        }
    }
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--config") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(arg, "--config") == 0) {
            args_error(NULL, "option --config needs a FILE argument");
            return DBLD_CONFIG_ERROR;
        } else if (strncmp(arg, "--config=", 9) == 0) {
            path = arg + 9;
        } else {
            args_error(NULL, "%s \"%s\" (try %s --help)",
                       arg[0] == '-' ? "unknown option" : "unexpected argument", arg, prog);
            return DBLD_CONFIG_ERROR;
        }
    }
    if (!path || !path[0]) {
        args_error(NULL, "missing --config FILE (try %s --help)", prog);
        return DBLD_CONFIG_ERROR;
    }
    dbld_status st;
    if (dbld_config_load(path, cfg, &st) || dbld_config_apply_env_checked(cfg, &st)) {
        dbld_config_free(cfg);
        args_error(path, "%s", st.msg);
        return DBLD_CONFIG_ERROR;
    }
    dbld_log_level lvl = DBLD_LOG_INFO;
    dbld_log_level_parse(cfg->shared.log_level, &lvl);
    dbld_log_init(svc, lvl);
    return DBLD_CONFIG_RUN;
}
