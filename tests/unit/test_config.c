/* test_config.c - the YAML config: example file, defaults, every error message
 * (exact file:line:column and key path), environment overrides, the main()
 * helper, and the schema engine's generic types (bool, lists of mappings). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>

#include "../../lib/config_schema.h"
#include "dbld/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXAMPLE DBLD_SOURCE_DIR "/examples/databuild.yaml"
#define DSN "host=127.0.0.1 port=5432 dbname=databuild user=databuild"

static const char *const env_vars[] = {
    "DATABUILD_POSTGRES_DSN",    "DATABUILD_QUERY_POSTGRES_DSN", "DATABUILD_LOG_LEVEL",
    "DATABUILD_EVENTLOG_LISTEN", "DATABUILD_JOB_LISTEN",         "DATABUILD_GRAPH_LISTEN",
    "DATABUILD_QUERY_LISTEN",    "DATABUILD_EVENTLOG_ADDR",      "DATABUILD_JOB_ADDR",
    "DATABUILD_GRAPH_ADDR",      "DATABUILD_QUERY_ADDR",
};

static int clear_env(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof env_vars / sizeof env_vars[0]; i++)
        unsetenv(env_vars[i]);
    return 0;
}

static int parse(const char *yaml, dbld_config *cfg, dbld_status *st)
{
    return dbld_config_parse(yaml, strlen(yaml), "databuild.yaml", cfg, st);
}

/* Parse must fail with exactly `want`, leaving cfg zeroed. */
static void expect_error(const char *yaml, const char *want)
{
    dbld_config cfg;
    dbld_status st;
    memset(&cfg, 0xaa, sizeof cfg);
    int rc = parse(yaml, &cfg, &st);
    if (rc != DBLD_INVALID_ARGUMENT || strcmp(st.msg, want) != 0)
        print_error("yaml:\n%s\nwant: %s\ngot:  %s (rc %d)\n", yaml, want, st.msg, rc);
    assert_int_equal(rc, DBLD_INVALID_ARGUMENT);
    assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, want);
    assert_null(cfg.source);
    assert_null(cfg.eventlog.server.listen);
    assert_null(cfg.shared.peers.job);
    dbld_config_free(&cfg); /* no-op on the zeroed struct */
}

static void assert_server(const dbld_server_config *s, const char *listen)
{
    assert_string_equal(s->listen, listen);
    /* the eventlog has 8 workers for its reads */
    assert_int_equal(s->workers, strcmp(listen, "127.0.0.1:7101") == 0 ? 8 : 4);
    assert_int_equal(s->pollers, 2);
    assert_int_equal(s->max_queue, 1024);
    assert_int_equal(s->max_message_bytes, 16 * 1024 * 1024);
    assert_int_equal(s->shutdown_grace_ms, 5000);
    /* a job service's runs are streams: it allows more */
    assert_int_equal(s->max_streams, strcmp(listen, "127.0.0.1:7102") == 0 ? 1024 : 256);
    /* the query service holds at most 10 calls per connection (services/query/README.md) */
    assert_int_equal(s->max_concurrent_streams, strcmp(listen, "127.0.0.1:7104") == 0 ? 10 : 0);
}

/* ---- success paths ---- */

static void test_example_file(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    int rc = dbld_config_load(EXAMPLE, &cfg, &st);
    if (rc) print_error("%s\n", st.msg);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.source, EXAMPLE);
    assert_string_equal(cfg.shared.postgres_dsn, DSN);
    assert_string_equal(cfg.shared.log_level, "info");
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:7101");
    assert_int_equal(cfg.shared.peers.n_job, 1);
    assert_string_equal(cfg.shared.peers.job[0], "127.0.0.1:7102");
    assert_string_equal(cfg.shared.peers.graph, "127.0.0.1:7103");
    assert_string_equal(cfg.shared.peers.query, "127.0.0.1:7104");
    assert_server(&cfg.eventlog.server, "127.0.0.1:7101");
    assert_int_equal(cfg.eventlog.group_commit_max_events, 5000);
    assert_int_equal(cfg.eventlog.group_commit_wait_us, 1000);
    assert_int_equal(cfg.eventlog.db_pool_size, 4);
    assert_int_equal(cfg.eventlog.statement_timeout_ms, 5000);
    assert_int_equal(cfg.query.statement_timeout_ms, 5000);
    assert_server(&cfg.job.server, "127.0.0.1:7102");
    assert_int_equal(cfg.job.max_concurrent_runs, 4);
    assert_server(&cfg.graph.server, "127.0.0.1:7103");
    assert_server(&cfg.query.server, "127.0.0.1:7104");
    assert_string_equal(cfg.query.postgres_dsn, DSN);
    /* auth is on in the example, with token files beside it */
    assert_int_equal(cfg.shared.auth.n_tokens, 2);
    assert_string_equal(cfg.shared.auth.tokens[0].name, "services");
    assert_string_equal(cfg.shared.auth.client_token_file,
                        DBLD_SOURCE_DIR "/examples/tokens/services.token");
    assert_string_equal(cfg.shared.auth.tokens[1].token_file,
                        DBLD_SOURCE_DIR "/examples/tokens/operators.token");
    dbld_config_free(&cfg);
    assert_null(cfg.source);
    dbld_config_free(&cfg); /* twice is fine */
}

/* The example file equals the defaults except the DSN: shipping it changes nothing. */
static void assert_defaults(const dbld_config *cfg, const char *dsn)
{
    assert_string_equal(cfg->shared.postgres_dsn, dsn);
    assert_string_equal(cfg->query.postgres_dsn, dsn);
    assert_string_equal(cfg->shared.log_level, "info");
    assert_string_equal(cfg->shared.peers.eventlog, "127.0.0.1:7101");
    assert_int_equal(cfg->shared.peers.n_job, 1);
    assert_string_equal(cfg->shared.peers.job[0], "127.0.0.1:7102");
    assert_string_equal(cfg->shared.peers.graph, "127.0.0.1:7103");
    assert_string_equal(cfg->shared.peers.query, "127.0.0.1:7104");
    assert_server(&cfg->eventlog.server, "127.0.0.1:7101");
    assert_server(&cfg->job.server, "127.0.0.1:7102");
    assert_server(&cfg->graph.server, "127.0.0.1:7103");
    assert_server(&cfg->query.server, "127.0.0.1:7104");
    assert_int_equal(cfg->eventlog.group_commit_max_events, 5000);
    assert_int_equal(cfg->eventlog.group_commit_wait_us, 1000);
    assert_int_equal(cfg->eventlog.db_pool_size, 4);
    assert_int_equal(cfg->eventlog.statement_timeout_ms, 5000);
    assert_int_equal(cfg->query.statement_timeout_ms, 5000);
    assert_int_equal(cfg->job.max_concurrent_runs, 4);
}

static void test_defaults(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_config_defaults(&cfg);
    assert_defaults(&cfg, "");
    assert_null(cfg.source);
    dbld_config_free(&cfg);

    static const char *const empties[] = {
        "",
        "\n\n",
        "# only a comment\n",
        "---\n",
        "---\n...\n",
        "~\n",
        "shared:\neventlog:\n",
        "shared: {}\neventlog: {}\njob: {}\ngraph: {}\nquery: {}\n",
        "shared:\n  peers:\n",
    };
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        dbld_status st;
        int rc = parse(empties[i], &cfg, &st);
        if (rc) print_error("%s\n", st.msg);
        assert_int_equal(rc, 0);
        assert_string_equal(cfg.source, "databuild.yaml");
        assert_defaults(&cfg, "");
        dbld_config_free(&cfg);
    }
}

/* Missing keys keep defaults; peers follow the listen addresses set in the file. */
static void test_partial_and_derived(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    const char *yaml = "shared:\n"
                       "  postgres_dsn: dbname=x\n"
                       "  log_level: debug\n"
                       "  peers:\n"
                       "    graph: graph.internal:80\n"
                       "eventlog:\n"
                       "  listen: 0.0.0.0:9101\n"
                       "  workers: \"8\"\n"
                       "job:\n"
                       "  listen: '[::1]:9102'\n"
                       "  max_concurrent_runs: 1024\n"
                       "graph: {listen: 127.0.0.1:0, shutdown_grace_ms: 0}\n"
                       "query:\n"
                       "  max_message_bytes: 1024\n"
                       "  max_streams: 7\n"
                       "  max_concurrent_streams: 0\n";
    assert_int_equal(parse(yaml, &cfg, &st), 0);
    assert_string_equal(cfg.shared.postgres_dsn, "dbname=x");
    assert_string_equal(cfg.query.postgres_dsn, "dbname=x");
    assert_string_equal(cfg.shared.log_level, "debug");
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:9101"); /* not 0.0.0.0 */
    assert_int_equal(cfg.shared.peers.n_job, 1);
    assert_string_equal(cfg.shared.peers.job[0], "[::1]:9102");
    assert_string_equal(cfg.shared.peers.graph, "graph.internal:80");
    assert_string_equal(cfg.shared.peers.query, "127.0.0.1:7104");
    assert_int_equal(cfg.eventlog.server.workers, 8); /* quoted integers are accepted */
    assert_int_equal(cfg.eventlog.server.max_message_bytes, 16 << 20);
    assert_int_equal(cfg.job.max_concurrent_runs, 1024);
    assert_string_equal(cfg.graph.server.listen, "127.0.0.1:0");
    assert_int_equal(cfg.graph.server.shutdown_grace_ms, 0);
    assert_int_equal(cfg.query.server.max_message_bytes, 1024);
    assert_int_equal(cfg.query.server.max_streams, 7);
    assert_int_equal(cfg.query.server.max_concurrent_streams, 0); /* 0: no limit */
    assert_int_equal(cfg.eventlog.server.max_streams, 256);
    dbld_config_free(&cfg);

    /* Lists of job peers: flow, block, single scalar; separate query DSN. */
    yaml = "shared:\n"
           "  peers:\n"
           "    job:\n"
           "      - a:1\n"
           "      - b:2\n"
           "query:\n"
           "  postgres_dsn: dbname=replica\n";
    assert_int_equal(parse(yaml, &cfg, &st), 0);
    assert_int_equal(cfg.shared.peers.n_job, 2);
    assert_string_equal(cfg.shared.peers.job[0], "a:1");
    assert_string_equal(cfg.shared.peers.job[1], "b:2");
    assert_string_equal(cfg.shared.postgres_dsn, "");
    assert_string_equal(cfg.query.postgres_dsn, "dbname=replica");
    dbld_config_free(&cfg);

    assert_int_equal(parse("shared: {peers: {job: c:3}}\n", &cfg, &st), 0);
    assert_int_equal(cfg.shared.peers.n_job, 1);
    assert_string_equal(cfg.shared.peers.job[0], "c:3");
    dbld_config_free(&cfg);

    /* Range edges and signs. */
    assert_int_equal(parse("eventlog: {group_commit_max_events: 100000, db_pool_size: 64, "
                           "workers: +256}\n",
                           &cfg, &st),
                     0);
    assert_int_equal(cfg.eventlog.group_commit_max_events, 100000);
    assert_int_equal(cfg.eventlog.db_pool_size, 64);
    assert_int_equal(cfg.eventlog.server.workers, 256);
    dbld_config_free(&cfg);

    /* Anchors alone are harmless; "warning" is accepted as a level. */
    assert_int_equal(parse("shared:\n  log_level: &lvl warning\n", &cfg, &st), 0);
    assert_string_equal(cfg.shared.log_level, "warning");
    dbld_config_free(&cfg);
}

/* ---- error paths: exact position and key ---- */

static void test_error_type_int(void **state)
{
    (void)state;
    expect_error("shared:\n"
                 "  log_level: info\n"
                 "  peers:\n"
                 "    graph: 127.0.0.1:7103\n"
                 "eventlog:\n"
                 "  listen: 127.0.0.1:7101\n"
                 "  workers: x\n",
                 "databuild.yaml:7:12: eventlog.workers: expected an integer, got \"x\"");
    expect_error("job:\n  workers: 4.5\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got \"4.5\"");
    expect_error("job:\n  workers: 0x10\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got \"0x10\"");
    expect_error("job:\n  workers: +\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got \"+\"");
    expect_error("job:\n  workers: [1]\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got a sequence");
    expect_error("job:\n  workers: {a: 1}\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got a mapping");
    expect_error("job:\n  workers: ~\n",
                 "databuild.yaml:2:12: job.workers: expected an integer, got null");
    expect_error("graph:\n  shutdown_grace_ms: \"a \\\"quoted\\\" value\"\n",
                 "databuild.yaml:2:22: graph.shutdown_grace_ms: expected an integer, "
                 "got \"a \\\"quoted\\\" value\"");
}

static void test_error_range(void **state)
{
    (void)state;
    expect_error("job:\n  max_concurrent_runs: 0\n",
                 "databuild.yaml:2:24: job.max_concurrent_runs: 0 is out of range "
                 "(expected 1..1024)");
    expect_error("job:\n  max_concurrent_runs: 1025\n",
                 "databuild.yaml:2:24: job.max_concurrent_runs: 1025 is out of range "
                 "(expected 1..1024)");
    expect_error("eventlog:\n  db_pool_size: 65\n",
                 "databuild.yaml:2:17: eventlog.db_pool_size: 65 is out of range (expected 1..64)");
    expect_error("eventlog:\n  group_commit_max_events: 100001\n",
                 "databuild.yaml:2:28: eventlog.group_commit_max_events: 100001 is out of range "
                 "(expected 1..100000)");
    expect_error("graph:\n  build_threads: 0\n",
                 "databuild.yaml:2:18: graph.build_threads: 0 is out of range (expected 1..1024)");
    expect_error(
        "graph:\n  task_threads: 4097\n",
        "databuild.yaml:2:17: graph.task_threads: 4097 is out of range (expected 1..4096)");
    expect_error("query:\n  workers: -1\n",
                 "databuild.yaml:2:12: query.workers: -1 is out of range (expected 1..256)");
    expect_error("query:\n  workers: 99999999999999999999999\n",
                 "databuild.yaml:2:12: query.workers: 99999999999999999999999 is out of range "
                 "(expected 1..256)");
    expect_error("graph:\n  max_message_bytes: 1023\n",
                 "databuild.yaml:2:22: graph.max_message_bytes: 1023 is out of range "
                 "(expected 1024..1073741824)");
    expect_error("graph:\n  shutdown_grace_ms: 600001\n",
                 "databuild.yaml:2:22: graph.shutdown_grace_ms: 600001 is out of range "
                 "(expected 0..600000)");
    expect_error("eventlog:\n  max_streams: 0\n",
                 "databuild.yaml:2:16: eventlog.max_streams: 0 is out of range "
                 "(expected 1..65536)");
    expect_error("query:\n  max_concurrent_streams: 65537\n",
                 "databuild.yaml:2:27: query.max_concurrent_streams: 65537 is out of range "
                 "(expected 0..65536)");
}

static void test_error_syntax(void **state)
{
    (void)state;
    expect_error("eventlog:\n  workers: 4\n  listen: a: b\n",
                 "databuild.yaml:3:12: invalid YAML: mapping values are not allowed in this "
                 "context");
    expect_error("eventlog: {workers: 4\n",
                 "databuild.yaml:2:1: invalid YAML: did not find expected ',' or '}' "
                 "(while parsing a flow mapping at line 1, column 11)");
    expect_error("eventlog:\n  workers: 4\n bad: 1\n",
                 "databuild.yaml:3:2: invalid YAML: did not find expected key "
                 "(while parsing a block mapping at line 1, column 1)");
    expect_error("shared:\n  postgres_dsn: \"unterminated\n",
                 "databuild.yaml:3:1: invalid YAML: found unexpected end of stream "
                 "(while scanning a quoted scalar at line 2, column 17)");
    expect_error("shared:\n  log_level: \xff\n",
                 "databuild.yaml:2:14: invalid YAML: invalid leading UTF-8 octet");
    expect_error("eventlog: {}\n---\njob: {}\n",
                 "databuild.yaml:2:1: only one YAML document is allowed in a config file");
    /* 100 nested sequences stop at the nesting limit instead of recursing on. */
    char deep[256] = "eventlog: ";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    expect_error(deep, "databuild.yaml:1:74: invalid YAML: nesting deeper than 64 levels");
}

static void test_error_top_level(void **state)
{
    (void)state;
    expect_error("- eventlog\n- job\n",
                 "databuild.yaml:1:1: expected a mapping at the top level, got a sequence");
    expect_error("hello\n",
                 "databuild.yaml:1:1: expected a mapping at the top level, got \"hello\"");
    expect_error("\n\n  [1, 2]\n",
                 "databuild.yaml:3:3: expected a mapping at the top level, got a sequence");
}

static void test_error_unknown_key(void **state)
{
    (void)state;
    expect_error(
        "eventlog:\n  listen: 127.0.0.1:7101\n  wrkers: 4\n",
        "databuild.yaml:3:3: eventlog: unknown key \"wrkers\" (did you mean \"workers\"? "
        "expected one of: listen, workers, pollers, max_queue, max_message_bytes, "
        "shutdown_grace_ms, max_streams, max_concurrent_streams, metrics_listen, tls, "
        "group_commit_max_events, group_commit_wait_us, db_pool_size, statement_timeout_ms)");
    expect_error("evntlog: {}\n",
                 "databuild.yaml:1:1: unknown key \"evntlog\" (did you mean \"eventlog\"? "
                 "expected one of: shared, eventlog, job, graph, query)");
    expect_error("shared:\n  peers:\n    jobs: [a:1]\n",
                 "databuild.yaml:3:5: shared.peers: unknown key \"jobs\" (did you mean \"job\"? "
                 "expected one of: eventlog, job, graph, query)");
    expect_error("graph: {listen: a:1, colour: blue}\n",
                 "databuild.yaml:1:22: graph: unknown key \"colour\" (expected one of: listen, "
                 "workers, pollers, max_queue, max_message_bytes, shutdown_grace_ms, max_streams, "
                 "max_concurrent_streams, metrics_listen, tls, label, "
                 "max_parallel, build_threads, build_queue, task_threads, max_age_ms, external, "
                 "jobs)");
    expect_error("job:\n  group_commit_max_events: 5\n",
                 "databuild.yaml:2:3: job: unknown key \"group_commit_max_events\" (expected one "
                 "of: listen, workers, pollers, max_queue, max_message_bytes, shutdown_grace_ms, "
                 "max_streams, max_concurrent_streams, metrics_listen, tls, "
                 "max_concurrent_runs, kill_grace_ms, heartbeat_ms, run_as)");
    expect_error("? [a]\n: b\n", "databuild.yaml:1:3: keys must be strings, got a sequence");
}

static void test_error_wrong_shape(void **state)
{
    (void)state;
    expect_error("eventlog: 5\n", "databuild.yaml:1:11: eventlog: expected a mapping, got \"5\"");
    expect_error("shared:\n  peers: [a:1]\n",
                 "databuild.yaml:2:10: shared.peers: expected a mapping, got a sequence");
    expect_error("shared:\n  log_level: {level: info}\n",
                 "databuild.yaml:2:14: shared.log_level: expected a string, got a mapping");
    expect_error("shared:\n  postgres_dsn: [a, b]\n",
                 "databuild.yaml:2:17: shared.postgres_dsn: expected a string, got a sequence");
    expect_error("shared:\n  postgres_dsn:\n",
                 "databuild.yaml:2:16: shared.postgres_dsn: expected a string, got null");
    expect_error("shared:\n  peers:\n    job: {a: b}\n",
                 "databuild.yaml:3:10: shared.peers.job: expected a list of strings, got a "
                 "mapping");
    expect_error("shared:\n  peers:\n    job: []\n",
                 "databuild.yaml:3:10: shared.peers.job: expected at least 1 item, got 0");
    expect_error("shared:\n  peers:\n    job: [a:1, [b:2]]\n",
                 "databuild.yaml:3:16: shared.peers.job[1]: expected a string, got a sequence");
    expect_error("query:\n  postgres_dsn: \"a\\0b\"\n",
                 "databuild.yaml:2:17: query.postgres_dsn: strings may not contain NUL "
                 "characters");
}

static void test_error_log_level(void **state)
{
    (void)state;
    expect_error("shared:\n  log_level: loud\n",
                 "databuild.yaml:2:14: shared.log_level: invalid log level \"loud\" (expected one "
                 "of: debug, info, warn, error)");
    expect_error("shared:\n  log_level: INFO\n",
                 "databuild.yaml:2:14: shared.log_level: invalid log level \"INFO\" (expected one "
                 "of: debug, info, warn, error)");
}

static void test_error_address(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "localhost", ":7101", "host:",       "host:65536", "host:12a",    "::1:7101", "[::1]7101",
        "[]:1",      "a b:1", "host:123456", "[::1:7101",  "http://x:80", "host:-1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[128], want[256];
        snprintf(yaml, sizeof yaml, "graph:\n  listen: \"%s\"\n", bad[i]);
        snprintf(want, sizeof want,
                 "databuild.yaml:2:11: graph.listen: invalid address \"%s\" (expected host:port "
                 "with port 0..65535)",
                 bad[i]);
        expect_error(yaml, want);
    }
    static const char *const good[] = {"h:0", "h:65535", "[::1]:7101", "0.0.0.0:1",
                                       "my-host.example.com:443"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char yaml[128];
        dbld_config cfg;
        dbld_status st;
        snprintf(yaml, sizeof yaml, "graph:\n  listen: \"%s\"\n", good[i]);
        assert_int_equal(parse(yaml, &cfg, &st), 0);
        assert_string_equal(cfg.graph.server.listen, good[i]);
        /* the peer is the listen address, a wildcard one as the loopback */
        assert_string_equal(cfg.shared.peers.graph,
                            strcmp(good[i], "0.0.0.0:1") ? good[i] : "127.0.0.1:1");
        dbld_config_free(&cfg);
    }
    expect_error("shared:\n  peers:\n    job: [127.0.0.1:7102, nope]\n",
                 "databuild.yaml:3:27: shared.peers.job[1]: invalid address \"nope\" (expected "
                 "host:port with port 0..65535)");
    expect_error("shared:\n  peers:\n    eventlog: nope\n",
                 "databuild.yaml:3:15: shared.peers.eventlog: invalid address \"nope\" (expected "
                 "host:port with port 0..65535)");
}

static void test_error_duplicate_and_alias(void **state)
{
    (void)state;
    expect_error("eventlog:\n  workers: 4\n  workers: 5\n",
                 "databuild.yaml:3:3: eventlog.workers: duplicate key (first set at line 2, "
                 "column 3)");
    expect_error("job: {}\ngraph: {}\njob: {}\n",
                 "databuild.yaml:3:1: job: duplicate key (first set at line 1, column 1)");
    expect_error("shared:\n  postgres_dsn: &dsn \"x\"\nquery:\n  postgres_dsn: *dsn\n",
                 "databuild.yaml:4:17: query.postgres_dsn: YAML aliases are not supported "
                 "(*dsn)");
    expect_error("base: &b {workers: 2}\n",
                 "databuild.yaml:1:1: unknown key \"base\" (expected one of: shared, eventlog, "
                 "job, graph, query)");
    expect_error("eventlog: &b {workers: 2}\njob: *b\n",
                 "databuild.yaml:2:6: job: YAML aliases are not supported (*b)");
    expect_error("eventlog: &b {workers: 2}\njob:\n  <<: *b\n",
                 "databuild.yaml:3:3: job: unknown key \"<<\" (expected one of: listen, workers, "
                 "pollers, max_queue, max_message_bytes, shutdown_grace_ms, max_streams, "
                 "max_concurrent_streams, metrics_listen, tls, "
                 "max_concurrent_runs, "
                 "kill_grace_ms, "
                 "heartbeat_ms, run_as)");
}

/* ---- graph.jobs ---- */

static void test_graph_jobs(void **state)
{
    (void)state;
    const char *yaml = "graph:\n"
                       "  max_parallel: 3\n"
                       "  build_threads: 2\n"
                       "  build_queue: 0\n"
                       "  external: ['raw/.*']\n"
                       "  jobs:\n"
                       "    - label: ingest\n"
                       "      command: [python3, jobs/ingest.py]\n"
                       "      outputs: ['reviews/date=[0-9-]+']\n"
                       "      env: [DATA_DIR=/data]\n"
                       "      transient_exit_codes: ['75']\n"
                       "      retry: {single_quota: 2, failure_weight: 2}\n"
                       "    - label: report\n"
                       "      command: jobs/report\n"
                       "      outputs: ['report/week=.*']\n"
                       "      timeout_ms: 1000\n";
    dbld_config cfg;
    dbld_status st;
    int rc = dbld_config_parse(yaml, strlen(yaml), "databuild.yaml", &cfg, &st);
    if (rc) print_error("%s\n", st.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.graph.max_parallel, 3);
    assert_int_equal(cfg.graph.build_threads, 2);
    assert_int_equal(cfg.graph.build_queue, 0);
    assert_int_equal(cfg.graph.task_threads, 32); /* the default */
    assert_int_equal(cfg.graph.n_external, 1);
    assert_int_equal(cfg.graph.n_jobs, 2);
    const dbld_job_def *j = &cfg.graph.jobs[0];
    assert_string_equal(j->label, "ingest");
    assert_int_equal(j->n_command, 2);
    assert_string_equal(j->command[1], "jobs/ingest.py");
    assert_string_equal(j->outputs[0], "reviews/date=[0-9-]+");
    assert_string_equal(j->env[0], "DATA_DIR=/data");
    assert_string_equal(j->transient_exit_codes[0], "75");
    assert_int_equal(j->timeout_ms, 3600000);
    assert_int_equal(j->retry.single_quota, 2);
    assert_int_equal(j->retry.failure_weight, 2);
    assert_int_equal(j->retry.timeout_weight, 1);
    /* no retry section: retries are not configured */
    assert_int_equal(cfg.graph.jobs[1].retry.single_quota, -1);
    assert_int_equal(cfg.graph.jobs[1].timeout_ms, 1000);
    assert_int_equal(cfg.graph.jobs[1].n_command, 1);
    dbld_config_free(&cfg);
}

static void test_graph_job_errors(void **state)
{
    (void)state;
    expect_error("graph:\n  jobs:\n    - label: a\n      command: [x]\n      outputs: ['a/(']\n",
                 "databuild.yaml:5:17: graph.jobs[0].outputs[0]: invalid regular expression "
                 "\"a/(\": Unmatched ( or \\(");
    expect_error("graph:\n  jobs:\n    - label: a\n      outputs: ['a/.*']\n",
                 "databuild.yaml:3:7: graph.jobs[0]: missing required key \"command\"");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/.*']}\n"
                 "    - {label: a, command: [y], outputs: ['b/.*']}\n",
                 "databuild.yaml:4:15: graph.jobs[1].label: duplicate job label \"a\" (also "
                 "graph.jobs[0])");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/.*']}\n"
                 "    - {label: b, command: [y], outputs: ['a/.*']}\n",
                 "databuild.yaml:4:42: graph.jobs[1].outputs[0]: pattern \"a/.*\" of job \"b\" "
                 "overlaps pattern \"a/.*\" of job \"a\" (both match \"a/\")");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a'], env: [NOEQ]}\n",
                 "databuild.yaml:3:54: graph.jobs[0].env[0]: invalid environment entry \"NOEQ\" "
                 "(expected KEY=VALUE)");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a'], "
                 "no_retry_exit_codes: ['0']}\n",
                 "databuild.yaml:3:70: graph.jobs[0].no_retry_exit_codes[0]: invalid exit code "
                 "\"0\" (expected 1..255)");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a'], retry: "
                 "{failure_weight: 2}}\n",
                 "databuild.yaml:3:55: graph.jobs[0].retry: missing required key \"single_quota\"");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a'], retry: "
                 "{single_quota: -2}}\n",
                 "databuild.yaml:3:70: graph.jobs[0].retry.single_quota: -2 is out of range "
                 "(expected 0..1000000)");
}

/* Output patterns of two jobs must not overlap (lib/rxoverlap.c decides). */
static void test_graph_overlaps(void **state)
{
    (void)state;
    expect_error("graph:\n"
                 "  jobs:\n"
                 "    - {label: \"//x:a\", command: [x], outputs: ['amb/[0-9]+']}\n"
                 "    - {label: \"//x:c\", command: [x], outputs: ['c/.*']}\n"
                 "    - {label: \"//x:d\", command: [x], outputs: ['d/.*', 'amb/x']}\n"
                 "    - label: \"//x:b\"\n"
                 "      command: [x]\n"
                 "      outputs:\n"
                 "        - 'amb/1.*'\n",
                 "databuild.yaml:9:11: graph.jobs[3].outputs[0]: pattern \"amb/1.*\" of job "
                 "\"//x:b\" overlaps pattern \"amb/[0-9]+\" of job \"//x:a\" (both match "
                 "\"amb/1\")");
    /* the second pattern of a job; a witness with a quote in it is escaped */
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/[0-9]']}\n"
                 "    - {label: b, command: [y], outputs: ['b/.*', 'a/[\"5-9]']}\n",
                 "databuild.yaml:4:50: graph.jobs[1].outputs[1]: pattern \"a/[\"5-9]\" of job "
                 "\"b\" overlaps pattern \"a/[0-9]\" of job \"a\" (both match \"a/5\")");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['q/\\\"']}\n"
                 "    - {label: b, command: [y], outputs: ['q/[^a]']}\n",
                 "databuild.yaml:4:42: graph.jobs[1].outputs[0]: pattern \"q/[^a]\" of job "
                 "\"b\" overlaps pattern \"q/\\\"\" of job \"a\" (both match \"q/\\\"\")");
    /* a pattern that cannot be modelled is an error, not a silent pass */
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/(x)\\2']}\n"
                 "    - {label: b, command: [y], outputs: ['b/.*']}\n",
                 "databuild.yaml:3:42: graph.jobs[0].outputs[0]: could not check pattern "
                 "\"a/(x)\\2\" of job \"a\" for overlaps with other jobs: the back-reference "
                 "\\2 is not supported");
    /* GNU word assertions are refused before regcomp (fuzz_rxoverlap: 6 GB) */
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/\\bx']}\n",
                 "databuild.yaml:3:42: graph.jobs[0].outputs[0]: invalid regular expression "
                 "\"a/\\bx\": the assertion \\b at offset 2 is not supported");
    /* patterns compile anchored, as the services compile them: \1 is the anchoring group */
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/(x)\\1']}\n",
                 "databuild.yaml:3:42: graph.jobs[0].outputs[0]: invalid regular expression "
                 "\"a/(x)\\1\": Invalid back reference");
    expect_error("graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['a/[0-9]{100}{100}']}\n"
                 "    - {label: b, command: [y], outputs: ['b/.*']}\n",
                 "databuild.yaml:3:42: graph.jobs[0].outputs[0]: could not check pattern "
                 "\"a/[0-9]{100}{100}\" of job \"a\" for overlaps with other jobs: the pattern "
                 "needs more than 10000 automaton states");

    /* disjoint patterns load; one job's own patterns may overlap; a single job is never checked */
    const char *ok[] = {
        "graph:\n  jobs:\n"
        "    - {label: a, command: [x], outputs: ['a/[0-9]+', 'a/1.*']}\n"
        "    - {label: b, command: [x], outputs: ['a/[a-z]+']}\n"
        "    - {label: c, command: [x], outputs: ['d/date=[0-9]{4}']}\n"
        "    - {label: d, command: [x], outputs: ['d/date=[0-9]{5}']}\n"
        "    - {label: e, command: [x], outputs: ['e/(foo|bar)', 'e/ba[^r]']}\n",
        "graph:\n  jobs:\n    - {label: a, command: [x], outputs: ['(x)\\2']}\n",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        dbld_config cfg;
        dbld_status st;
        int rc = parse(ok[i], &cfg, &st);
        if (rc) print_error("%s\n", st.msg);
        assert_int_equal(rc, 0);
        dbld_config_free(&cfg);
    }
}

/* ---- files ---- */

static char *write_temp(const char *text)
{
    char *path = strdup("/tmp/dbld_test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return path;
}

static void test_load_errors(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    assert_int_equal(dbld_config_load("/nonexistent/databuild.yaml", &cfg, &st), DBLD_NOT_FOUND);
    assert_string_equal(st.msg, "could not read config file \"/nonexistent/databuild.yaml\": No "
                                "such file or directory");
    assert_null(cfg.source);
    dbld_config_free(&cfg);

    assert_int_equal(dbld_config_load("/tmp", &cfg, &st), DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "could not read config file \"/tmp\": Is a directory");

    char *path = write_temp("job:\n  workers: many\n");
    char want[256];
    assert_int_equal(dbld_config_load(path, &cfg, &st), DBLD_INVALID_ARGUMENT);
    snprintf(want, sizeof want, "%s:2:12: job.workers: expected an integer, got \"many\"", path);
    assert_string_equal(st.msg, want);
    unlink(path);
    free(path);

    path = write_temp(""); /* empty file: defaults */
    assert_int_equal(dbld_config_load(path, &cfg, &st), 0);
    assert_string_equal(cfg.source, path);
    assert_defaults(&cfg, "");
    dbld_config_free(&cfg);
    unlink(path);
    free(path);
}

/* Relative certificate and token paths are taken from the config file's
 * directory, whatever the working directory; absolute ones stay as written. */
static void test_load_resolves_relative_files(void **state)
{
    (void)state;
    char *path = write_temp("shared:\n"
                            "  tls: {cert_file: tls/s.crt, key_file: /abs/s.key, ca_file: ca.crt}\n"
                            "  auth:\n"
                            "    client_token_file: tokens/services.token\n"
                            "    tokens:\n"
                            "      - {name: ops, token_file: tokens/ops.token, roles: [reader]}\n"
                            "      - {name: env, token_env: SOME_TOKEN, roles: [reader]}\n"
                            "query:\n"
                            "  tls: {cert_file: q.crt}\n");
    dbld_config cfg;
    dbld_status st;
    assert_int_equal(dbld_config_load(path, &cfg, &st), 0);
    assert_string_equal(cfg.shared.tls.files.cert_file, "/tmp/tls/s.crt");
    assert_string_equal(cfg.shared.tls.files.key_file, "/abs/s.key");
    assert_string_equal(cfg.shared.tls.files.ca_file, "/tmp/ca.crt");
    assert_string_equal(cfg.shared.auth.client_token_file, "/tmp/tokens/services.token");
    assert_int_equal(cfg.shared.auth.n_tokens, 2);
    assert_string_equal(cfg.shared.auth.tokens[0].token_file, "/tmp/tokens/ops.token");
    assert_null(cfg.shared.auth.tokens[1].token_file);
    assert_string_equal(cfg.query.server.tls.cert_file, "/tmp/q.crt");
    assert_null(cfg.eventlog.server.tls.cert_file);
    dbld_config_free(&cfg);
    unlink(path);
    free(path);
}

/* ---- environment ---- */

static void test_env_overrides(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    assert_int_equal(dbld_config_load(EXAMPLE, &cfg, &st), 0);
    setenv("DATABUILD_POSTGRES_DSN", "dbname=env", 1);
    setenv("DATABUILD_LOG_LEVEL", "debug", 1);
    setenv("DATABUILD_EVENTLOG_LISTEN", "0.0.0.0:8101", 1);
    setenv("DATABUILD_JOB_LISTEN", "0.0.0.0:8102", 1);
    setenv("DATABUILD_GRAPH_LISTEN", "0.0.0.0:8103", 1);
    setenv("DATABUILD_QUERY_LISTEN", "0.0.0.0:8104", 1);
    setenv("DATABUILD_EVENTLOG_ADDR", "eventlog:7101", 1);
    setenv("DATABUILD_JOB_ADDR", "job-0:7102, job-1:7102,job-2:7102", 1);
    setenv("DATABUILD_GRAPH_ADDR", "graph:7103", 1);
    setenv("DATABUILD_QUERY_ADDR", "query:7104", 1);
    assert_int_equal(dbld_config_apply_env_checked(&cfg, &st), 0);
    assert_string_equal(cfg.shared.postgres_dsn, "dbname=env");
    assert_string_equal(cfg.query.postgres_dsn, "dbname=env"); /* was equal: follows */
    assert_string_equal(cfg.shared.log_level, "debug");
    assert_string_equal(cfg.eventlog.server.listen, "0.0.0.0:8101");
    assert_string_equal(cfg.job.server.listen, "0.0.0.0:8102");
    assert_string_equal(cfg.graph.server.listen, "0.0.0.0:8103");
    assert_string_equal(cfg.query.server.listen, "0.0.0.0:8104");
    assert_string_equal(cfg.shared.peers.eventlog, "eventlog:7101");
    assert_int_equal(cfg.shared.peers.n_job, 3);
    assert_string_equal(cfg.shared.peers.job[0], "job-0:7102");
    assert_string_equal(cfg.shared.peers.job[1], "job-1:7102");
    assert_string_equal(cfg.shared.peers.job[2], "job-2:7102");
    assert_string_equal(cfg.shared.peers.graph, "graph:7103");
    assert_string_equal(cfg.shared.peers.query, "query:7104");

    setenv("DATABUILD_QUERY_POSTGRES_DSN", "dbname=replica", 1);
    dbld_config_apply_env(&cfg);
    assert_string_equal(cfg.query.postgres_dsn, "dbname=replica");
    assert_string_equal(cfg.shared.postgres_dsn, "dbname=env");
    dbld_config_free(&cfg);
    clear_env(NULL);
}

static void test_env_follow_rules(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    /* Peers left at their defaults follow _LISTEN; an explicit peer does not. */
    assert_int_equal(parse("shared:\n  postgres_dsn: a\n  peers: {graph: 'g:1'}\nquery:\n"
                           "  postgres_dsn: b\n",
                           &cfg, &st),
                     0);
    setenv("DATABUILD_JOB_LISTEN", "127.0.0.1:9102", 1);
    setenv("DATABUILD_GRAPH_LISTEN", "127.0.0.1:9103", 1);
    setenv("DATABUILD_POSTGRES_DSN", "c", 1);
    setenv("DATABUILD_LOG_LEVEL", "", 1); /* empty = unset */
    dbld_config_apply_env(&cfg);
    assert_int_equal(cfg.shared.peers.n_job, 1);
    assert_string_equal(cfg.shared.peers.job[0], "127.0.0.1:9102");
    assert_string_equal(cfg.job.server.listen, "127.0.0.1:9102");
    assert_string_equal(cfg.shared.peers.graph, "g:1");
    assert_string_equal(cfg.graph.server.listen, "127.0.0.1:9103");
    assert_string_equal(cfg.shared.postgres_dsn, "c");
    assert_string_equal(cfg.query.postgres_dsn, "b"); /* set in the file: kept */
    assert_string_equal(cfg.shared.log_level, "info");
    dbld_config_free(&cfg);
    clear_env(NULL);

    /* Works on a defaulted struct too. */
    dbld_config_defaults(&cfg);
    setenv("DATABUILD_EVENTLOG_LISTEN", "127.0.0.1:9101", 1);
    dbld_config_apply_env(&cfg);
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:9101");
    dbld_config_free(&cfg);
    clear_env(NULL);
}

/* A peer never defaults to a wildcard listen address (0.0.0.0, [::]): that is
 * no address to call, so it becomes the loopback with the same port - from
 * the file, from a _LISTEN variable, and on a defaulted struct. An explicit
 * peer (even a wildcard one) is kept as given. */
static void test_peer_never_wildcard(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    assert_int_equal(parse("eventlog: {listen: '0.0.0.0:9101'}\n"
                           "job: {listen: '[::]:9102'}\n"
                           "graph: {listen: '0.0.0.0:0'}\n"
                           "query: {listen: 'q.example:9104'}\n"
                           "shared: {peers: {graph: 'g.example:1'}}\n",
                           &cfg, &st),
                     0);
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:9101");
    assert_int_equal(cfg.shared.peers.n_job, 1);
    assert_string_equal(cfg.shared.peers.job[0], "[::1]:9102");
    assert_string_equal(cfg.shared.peers.graph, "g.example:1");
    assert_string_equal(cfg.shared.peers.query, "q.example:9104");   /* not a wildcard */
    assert_string_equal(cfg.eventlog.server.listen, "0.0.0.0:9101"); /* the bind is kept */

    /* _LISTEN overrides: defaulted peers follow to the loopback form. */
    setenv("DATABUILD_EVENTLOG_LISTEN", "0.0.0.0:8101", 1);
    setenv("DATABUILD_JOB_LISTEN", "0.0.0.0:8102", 1);
    setenv("DATABUILD_GRAPH_LISTEN", "[::]:8103", 1);
    setenv("DATABUILD_QUERY_LISTEN", "0.0.0.0:8104", 1);
    assert_int_equal(dbld_config_apply_env_checked(&cfg, &st), 0);
    assert_string_equal(cfg.eventlog.server.listen, "0.0.0.0:8101");
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:8101");
    assert_string_equal(cfg.shared.peers.job[0], "127.0.0.1:8102");
    assert_string_equal(cfg.shared.peers.graph, "g.example:1"); /* explicit: kept */
    assert_string_equal(cfg.shared.peers.query, "127.0.0.1:8104");
    dbld_config_free(&cfg);

    /* The image's situation: defaults, then wildcard _LISTEN variables. */
    dbld_config_defaults(&cfg);
    dbld_config_apply_env(&cfg);
    assert_string_equal(cfg.shared.peers.eventlog, "127.0.0.1:8101");
    assert_string_equal(cfg.shared.peers.job[0], "127.0.0.1:8102");
    assert_string_equal(cfg.shared.peers.query, "127.0.0.1:8104");
    dbld_config_free(&cfg);
    clear_env(NULL);

    /* An explicit peer is the operator's choice and is kept. */
    assert_int_equal(parse("shared: {peers: {eventlog: '0.0.0.0:1'}}\n", &cfg, &st), 0);
    assert_string_equal(cfg.shared.peers.eventlog, "0.0.0.0:1");
    dbld_config_free(&cfg);
}

static void test_env_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *var, *value, *msg;
    } cases[] = {
        {"DATABUILD_LOG_LEVEL", "chatty",
         "DATABUILD_LOG_LEVEL: invalid log level \"chatty\" (expected one of: debug, info, warn, "
         "error)"},
        {"DATABUILD_JOB_LISTEN", "nope",
         "DATABUILD_JOB_LISTEN: invalid address \"nope\" (expected host:port with port "
         "0..65535)"},
        {"DATABUILD_QUERY_ADDR", "q:99999",
         "DATABUILD_QUERY_ADDR: invalid address \"q:99999\" (expected host:port with port "
         "0..65535)"},
        {"DATABUILD_JOB_ADDR", "a:1,,b:2",
         "DATABUILD_JOB_ADDR: invalid address list \"a:1,,b:2\" (expected "
         "host:port[,host:port...])"},
        {"DATABUILD_JOB_ADDR", "a:1,",
         "DATABUILD_JOB_ADDR: invalid address list \"a:1,\" (expected host:port[,host:port...])"},
        {"DATABUILD_JOB_ADDR", "a:1, b",
         "DATABUILD_JOB_ADDR: invalid address \"b\" (expected host:port with port 0..65535)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dbld_config cfg;
        dbld_status st;
        dbld_config_defaults(&cfg);
        setenv("DATABUILD_POSTGRES_DSN", "dbname=ignored", 1);
        setenv(cases[i].var, cases[i].value, 1);
        assert_int_equal(dbld_config_apply_env_checked(&cfg, &st), DBLD_INVALID_ARGUMENT);
        assert_string_equal(st.msg, cases[i].msg);
        assert_string_equal(cfg.shared.postgres_dsn, ""); /* nothing applied */
        /* The unchecked variant skips only the bad variable. */
        dbld_config_apply_env(&cfg);
        assert_string_equal(cfg.shared.postgres_dsn, "dbname=ignored");
        assert_defaults(&cfg, "dbname=ignored");
        dbld_config_free(&cfg);
        clear_env(NULL);
    }
}

/* ---- dbld_config_from_args ---- */

typedef struct {
    int fd, saved;
    FILE *tmp;
} capture;

static void cap_start(capture *c, int fd)
{
    fflush(stdout);
    fflush(stderr);
    c->fd = fd;
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(fd);
    dup2(fileno(c->tmp), fd);
}

static char *cap_end(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    long n = ftell(c->tmp);
    if (n < 0) n = 0;
    char *buf = calloc(1, (size_t)n + 1);
    rewind(c->tmp);
    size_t got = fread(buf, 1, (size_t)n, c->tmp);
    buf[got] = '\0';
    fclose(c->tmp);
    return buf;
}

/* Run from_args capturing stdout/stderr; returns rc. */
static int run_args(int argc, char **argv, dbld_config *cfg, char **out, char **err)
{
    capture co, ce;
    cap_start(&co, STDOUT_FILENO);
    cap_start(&ce, STDERR_FILENO);
    int rc = dbld_config_from_args(argc, argv, "eventlog", cfg);
    *err = cap_end(&ce);
    *out = cap_end(&co);
    return rc;
}

/* The start-up error is one JSON log line: service, level, msg (command-line
 * or configuration error), fields.error = want_error, fields.config = the
 * file when one was loaded. */
static void expect_args_error(int argc, char **argv, const char *want_msg, const char *want_error,
                              const char *want_config)
{
    dbld_config cfg;
    char *out, *err;
    int rc = run_args(argc, argv, &cfg, &out, &err);
    assert_int_equal(rc, DBLD_CONFIG_ERROR);
    assert_int_equal(DBLD_CONFIG_EXIT_STATUS(rc), 2);
    size_t len = strlen(err);
    assert_true(len > 0 && err[len - 1] == '\n');
    assert_null(memchr(err, '\n', len - 1)); /* exactly one line */
    json_error_t jerr;
    json_t *j = json_loads(err, 0, &jerr);
    if (!j) print_error("stderr is not one JSON object (%s): %s\n", jerr.text, err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "eventlog");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), want_msg);
    json_t *fields = json_object_get(j, "fields");
    assert_string_equal(json_string_value(json_object_get(fields, "error")), want_error);
    if (want_config)
        assert_string_equal(json_string_value(json_object_get(fields, "config")), want_config);
    else
        assert_null(json_object_get(fields, "config"));
    json_decref(j);
    assert_string_equal(out, "");
    assert_null(cfg.source);
    free(out);
    free(err);
}

#define CLI_ERR "command-line error"
#define CFG_ERR "configuration error"

static void test_from_args(void **state)
{
    (void)state;
    char *missing_flag[] = {"databuild-eventlog", NULL};
    expect_args_error(1, missing_flag, CLI_ERR,
                      "missing --config FILE (try databuild-eventlog --help)", NULL);

    char *missing_file[] = {"databuild-eventlog", "--config", "/nonexistent/x.yaml", NULL};
    expect_args_error(3, missing_file, CFG_ERR,
                      "could not read config file \"/nonexistent/x.yaml\": "
                      "No such file or directory",
                      "/nonexistent/x.yaml");

    char *no_value[] = {"databuild-eventlog", "--config", NULL};
    expect_args_error(2, no_value, CLI_ERR, "option --config needs a FILE argument", NULL);

    char *unknown[] = {"databuild-eventlog", "--verbose", NULL};
    expect_args_error(2, unknown, CLI_ERR,
                      "unknown option \"--verbose\" (try databuild-eventlog --help)", NULL);

    char *stray[] = {"databuild-eventlog", "--config=" EXAMPLE, "extra", NULL};
    expect_args_error(3, stray, CLI_ERR,
                      "unexpected argument \"extra\" (try databuild-eventlog --help)", NULL);

    char *path = write_temp("eventlog:\n  workers: lots\n");
    char flag[128], want[256];
    snprintf(flag, sizeof flag, "--config=%s", path);
    char *bad_yaml[] = {"databuild-eventlog", flag, NULL};
    snprintf(want, sizeof want, "%s:2:12: eventlog.workers: expected an integer, got \"lots\"",
             path);
    expect_args_error(2, bad_yaml, CFG_ERR, want, path);
    unlink(path);
    free(path);

    setenv("DATABUILD_EVENTLOG_LISTEN", "bad", 1);
    char *env_bad[] = {"databuild-eventlog", "--config", EXAMPLE, NULL};
    expect_args_error(3, env_bad, CFG_ERR,
                      "DATABUILD_EVENTLOG_LISTEN: invalid address \"bad\" "
                      "(expected host:port with port 0..65535)",
                      EXAMPLE);
    clear_env(NULL);
}

static void test_from_args_help_and_ok(void **state)
{
    (void)state;
    dbld_config cfg;
    char *out, *err;
    char *help[] = {"databuild-eventlog", "--config", "/nonexistent", "--help", NULL};
    int rc = run_args(4, help, &cfg, &out, &err);
    assert_int_equal(rc, DBLD_CONFIG_HELP);
    assert_int_equal(DBLD_CONFIG_EXIT_STATUS(rc), 0);
    assert_non_null(strstr(out, "usage: databuild-eventlog --config FILE\n"));
    assert_non_null(strstr(out, "DATABUILD_<SVC>_ADDR"));
    assert_string_equal(err, "");
    free(out);
    free(err);

    char *h[] = {"databuild-eventlog", "-h", NULL};
    assert_int_equal(run_args(2, h, &cfg, &out, &err), DBLD_CONFIG_HELP);
    free(out);
    free(err);

    setenv("DATABUILD_GRAPH_ADDR", "graph:7103", 1);
    setenv("DATABUILD_LOG_LEVEL", "error", 1); /* keeps the test's stderr quiet */
    char *ok[] = {"databuild-eventlog", "--config", EXAMPLE, NULL};
    rc = run_args(3, ok, &cfg, &out, &err);
    assert_int_equal(rc, DBLD_CONFIG_RUN);
    assert_string_equal(out, "");
    assert_string_equal(err, "");
    assert_string_equal(cfg.source, EXAMPLE);
    assert_string_equal(cfg.shared.peers.graph, "graph:7103");
    assert_string_equal(cfg.shared.log_level, "error");
    dbld_config_free(&cfg);
    free(out);
    free(err);

    char *eq[] = {"databuild-eventlog", "--config=" EXAMPLE, NULL};
    assert_int_equal(run_args(2, eq, &cfg, &out, &err), DBLD_CONFIG_RUN);
    assert_string_equal(cfg.eventlog.server.listen, "127.0.0.1:7101");
    dbld_config_free(&cfg);
    free(out);
    free(err);
    clear_env(NULL);
}

/* ---- the schema engine's generic types (for sections like graph.jobs) ---- */

typedef struct {
    char *label;
    int timeout;
    int retry;
    char **argv;
    size_t n_argv;
} t_job;

typedef struct {
    int verbose;
    t_job *jobs;
    size_t n_jobs;
} t_root;

static const dbld__cfg_key t_job_keys[] = {
    {.name = "label",
     .type = DBLD__CFG_STRING,
     .offset = offsetof(t_job, label),
     .flags = DBLD__CFG_REQUIRED},
    {.name = "timeout",
     .type = DBLD__CFG_INT,
     .offset = offsetof(t_job, timeout),
     .min = 1,
     .max = 60,
     .def_int = 30},
    {.name = "retry", .type = DBLD__CFG_BOOL, .offset = offsetof(t_job, retry), .def_int = 1},
    {.name = "argv",
     .type = DBLD__CFG_STRLIST,
     .offset = offsetof(t_job, argv),
     .count_offset = offsetof(t_job, n_argv),
     .min = 1,
     .def_str = "/bin/true"},
    {0},
};

static const dbld__cfg_key t_root_keys[] = {
    {.name = "verbose", .type = DBLD__CFG_BOOL, .offset = offsetof(t_root, verbose)},
    {.name = "jobs",
     .type = DBLD__CFG_LIST,
     .offset = offsetof(t_root, jobs),
     .count_offset = offsetof(t_root, n_jobs),
     .sub = t_job_keys,
     .elem_size = sizeof(t_job)},
    {0},
};

static int t_parse(const char *yaml, t_root *r, dbld_status *st)
{
    memset(r, 0, sizeof *r);
    dbld__cfg_defaults(t_root_keys, r);
    int rc = dbld__cfg_parse(yaml, strlen(yaml), "t.yaml", t_root_keys, r, NULL, st);
    if (rc) dbld__cfg_free(t_root_keys, r); /* partly filled: must still free cleanly */
    return rc;
}

static void t_expect_error(const char *yaml, const char *want)
{
    t_root r;
    dbld_status st;
    assert_int_equal(t_parse(yaml, &r, &st), DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, want);
    assert_null(r.jobs);
}

static void test_schema_list_of_mappings(void **state)
{
    (void)state;
    t_root r;
    dbld_status st;
    assert_int_equal(t_parse("verbose: True\n"
                             "jobs:\n"
                             "  - label: a\n"
                             "    argv: [x, y]\n"
                             "    retry: false\n"
                             "  - {label: b, timeout: 7}\n",
                             &r, &st),
                     0);
    assert_int_equal(r.verbose, 1);
    assert_int_equal(r.n_jobs, 2);
    assert_string_equal(r.jobs[0].label, "a");
    assert_int_equal(r.jobs[0].timeout, 30);
    assert_int_equal(r.jobs[0].retry, 0);
    assert_int_equal(r.jobs[0].n_argv, 2);
    assert_string_equal(r.jobs[0].argv[1], "y");
    assert_string_equal(r.jobs[1].label, "b");
    assert_int_equal(r.jobs[1].timeout, 7);
    assert_int_equal(r.jobs[1].retry, 1);
    assert_int_equal(r.jobs[1].n_argv, 1);
    assert_string_equal(r.jobs[1].argv[0], "/bin/true");
    dbld__cfg_free(t_root_keys, &r);
    assert_null(r.jobs);
    assert_int_equal(r.n_jobs, 0);

    assert_int_equal(t_parse("jobs:\n", &r, &st), 0);
    assert_int_equal(r.n_jobs, 0);
    dbld__cfg_free(t_root_keys, &r);

    t_expect_error("verbose: maybe\n",
                   "t.yaml:1:10: verbose: expected a boolean (true or false), got \"maybe\"");
    t_expect_error("verbose: [true]\n", "t.yaml:1:10: verbose: expected a boolean, got a sequence");
    t_expect_error("jobs:\n  - label: a\n  - argv: [x]\n",
                   "t.yaml:3:5: jobs[1]: missing required key \"label\"");
    t_expect_error("jobs: [1]\n", "t.yaml:1:8: jobs[0]: expected a mapping, got \"1\"");
    t_expect_error("jobs: {label: a}\n",
                   "t.yaml:1:7: jobs: expected a list of mappings, got a mapping");
    t_expect_error("jobs:\n  - label: a\n    argv: [x, y]\n  - label: b\n    timeout: 61\n",
                   "t.yaml:5:14: jobs[1].timeout: 61 is out of range (expected 1..60)");
    t_expect_error("jobs:\n  - label: a\n    argv: [x, {y: z}]\n",
                   "t.yaml:3:15: jobs[0].argv[1]: expected a string, got a mapping");
    t_expect_error("jobs:\n  - label: a\n    lable: b\n",
                   "t.yaml:3:5: jobs[0]: unknown key \"lable\" (did you mean \"label\"? expected "
                   "one of: label, timeout, retry, argv)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_partial_and_derived),
        cmocka_unit_test(test_error_type_int),
        cmocka_unit_test(test_error_range),
        cmocka_unit_test(test_error_syntax),
        cmocka_unit_test(test_error_top_level),
        cmocka_unit_test(test_error_unknown_key),
        cmocka_unit_test(test_error_wrong_shape),
        cmocka_unit_test(test_error_log_level),
        cmocka_unit_test(test_error_address),
        cmocka_unit_test(test_error_duplicate_and_alias),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_load_resolves_relative_files),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_env_follow_rules),
        cmocka_unit_test(test_peer_never_wildcard),
        cmocka_unit_test(test_env_invalid),
        cmocka_unit_test(test_from_args),
        cmocka_unit_test(test_from_args_help_and_ok),
        cmocka_unit_test(test_schema_list_of_mappings),
        cmocka_unit_test(test_graph_jobs),
        cmocka_unit_test(test_graph_job_errors),
        cmocka_unit_test(test_graph_overlaps),
    };
    return cmocka_run_group_tests(tests, clear_env, NULL);
}
