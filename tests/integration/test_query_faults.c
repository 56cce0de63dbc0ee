/* test_query_faults.c - the query service when PostgreSQL goes away: calls
 * fail with UNAVAILABLE and health goes NOT_SERVING while it is down; once it
 * is back, health returns to SERVING and every call succeeds again without a
 * restart of the query service (pooled connections lost in the restart are
 * replaced, the failed read retried on a fresh one). Also: the service
 * refuses a bad graph regex in its config, and exits 0 on SIGTERM.
 */
#include "test_query_fixture.h"

#include <pthread.h>

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x

static int summary_rc(qf *f, dbld_status *st)
{
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = "build-f";
    void *resp;
    return qf_call(f, "GetBuildSummary", &req, &databuild__v1__build_summary_response__descriptor,
                   &resp, st);
}

/* Concurrent callers, so the pool holds several connections. */
static void *hammer(void *arg)
{
    qf f = *(qf *)arg;
    f.a = dbld_arena_create();
    long failures = 0;
    for (int i = 0; i < 25; i++) {
        dbld_status st;
        if (summary_rc(&f, &st) != 0 && !failures++)
            h_note("call failed: %s: %s", dbld_code_name(st.code), st.msg);
        dbld_arena_reset(f.a);
    }
    dbld_arena_destroy(f.a);
    return (void *)failures;
}

static void concurrently(qf *f)
{
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&th[i], NULL, hammer, f);
    for (int i = 0; i < 8; i++) {
        void *failures;
        pthread_join(th[i], &failures);
        CHECK_EQ_INT((long)failures, 0);
    }
}

DBLD_TEST(postgres_restart)
{
    h_pg *pg = h_pg_cluster_start();
    qf f;
    memset(&f, 0, sizeof f);
    h_db_create_at(pg->dsn, "qfault", f.dsn, sizeof f.dsn);
    f.el = h_service_start("eventlog", f.dsn, NULL);
    h_service_opts o = {.eventlog_addr = f.el->addr, .extra_section = QF_GRAPH_YAML, .workers = 4};
    f.q = h_service_start("query", f.dsn, &o);
    f.a = dbld_arena_create();
    qf_seq q;
    qf_seq_init(&q, f.a, QF_T0);
    qf_br(&q, "build-f", BR(RECEIVED), H_STRS("agg/date=2026-01-01"), "", NULL);
    qf_flush(&f, &q);
    dbld_status st;
    concurrently(&f); /* several pooled connections, all lost below */
    CHECK_OK(summary_rc(&f, &st), st);

    h_pg_stop(pg);
    CHECK_CODE(summary_rc(&f, &st), st, DBLD_UNAVAILABLE);
    CHECK(h_service_wait_health(f.q, "", 0, 10000));
    CHECK(h_service_wait_health(f.q, "databuild.v1.DataBuildService", 0, 1000));
    CHECK_CODE(summary_rc(&f, &st), st, DBLD_UNAVAILABLE);

    h_pg_start(pg);
    CHECK(h_service_wait_health(f.q, "", 1, 20000));
    for (int i = 0; i < 20; i++) /* every call succeeds: no stale connection is handed out */
        CHECK_OK(summary_rc(&f, &st), st);
    concurrently(&f);
    h_service_stop(f.q);
    h_service_stop(f.el);
}

DBLD_TEST(bad_graph_regex_is_a_config_error)
{
    char dsn[1024];
    h_db_create("qbadcfg", dsn, sizeof dsn);
    h_service_opts o = {.eventlog_addr = "127.0.0.1:1",
                        .extra_section = "graph:\n  external: [\"ok/.*\"]\n  jobs:\n"
                                         "    - label: \"//x\"\n      command: [\"/bin/true\"]\n"
                                         "      outputs: [\"a/[0-9\"]\n"};
    char *log = h_service_refused("query", dsn, &o);
    CHECK_CONTAINS(log, "a/[0-9");
    free(log);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(postgres_restart, 180),
               DBLD_TEST_ENTRY(bad_graph_regex_is_a_config_error))
