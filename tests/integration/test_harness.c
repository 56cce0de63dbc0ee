/* test_harness.c - the harness itself: private PostgreSQL clusters (stop and
 * restart on the same port), database creation and SQL, conninfo rewriting,
 * free ports. Needs no service binary, so it runs on any tree. */
#include "harness.h"

#include <stdlib.h>

DBLD_TEST(db_create_and_sql)
{
    char dsn[1024];
    h_db_create("selftest", dsn, sizeof dsn);
    h_rows *r = h_sql(dsn, "SELECT current_database(), $1::int + 1", "41");
    CHECK_EQ_INT(h_rows_n(r), 1);
    CHECK_CONTAINS(h_rows_get(r, 0, 0), "_selftest");
    CHECK_EQ_INT(h_rows_i64(r, 0, 1), 42);
    h_rows_free(r);
    h_sql(dsn, "CREATE TABLE t (a text, b int)");
    h_sql(dsn, "INSERT INTO t VALUES ($1, NULL)", "it's \"quoted\"");
    r = h_sql(dsn, "SELECT a, b FROM t");
    CHECK_EQ_STR(h_rows_get(r, 0, 0), "it's \"quoted\"");
    CHECK(h_rows_get(r, 0, 1) == NULL);
    h_rows_free(r);
    /* two databases get different names */
    char dsn2[1024];
    h_db_create(NULL, dsn2, sizeof dsn2);
    CHECK(strcmp(dsn, dsn2) != 0);
}

DBLD_TEST(dsn_rewrite)
{
    char *d = h_dsn_with_db("host=127.0.0.1 port=5 user=u dbname=postgres", "x_1");
    CHECK_CONTAINS(d, "dbname='x_1'");
    CHECK_CONTAINS(d, "port='5'");
    CHECK(!strstr(d, "postgres"));
    free(d);
    d = h_dsn_with_db("postgresql://u@127.0.0.1:6/postgres", "y");
    CHECK_CONTAINS(d, "dbname='y'");
    CHECK_CONTAINS(d, "port='6'");
    CHECK_CONTAINS(d, "user='u'");
    free(d);
}

DBLD_TEST(free_port)
{
    int p = h_free_port();
    CHECK_CMP_INT(p, >, 0);
    CHECK_CMP_INT(p, <, 65536);
}

DBLD_TEST(private_cluster_restart)
{
    h_pg *c = h_pg_cluster_start();
    char dsn[1024];
    h_db_create_at(c->dsn, "restart", dsn, sizeof dsn);
    h_sql(dsn, "CREATE TABLE kept (v int)");
    h_sql(dsn, "INSERT INTO kept VALUES (7)");
    int port = c->port;
    h_pg_stop(c);
    CHECK(!c->running);
    h_pg_start(c);
    CHECK_EQ_INT(c->port, port);
    h_rows *r = h_sql(dsn, "SELECT v FROM kept");
    CHECK_EQ_INT(h_rows_n(r), 1);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), 7);
    h_rows_free(r);
    h_pg_destroy(c);
}

DBLD_TEST(cluster_left_running_is_swept)
{
    /* the runner must stop this cluster after the test */
    h_pg *c = h_pg_cluster_start();
    CHECK(c->running);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(db_create_and_sql), DBLD_TEST_ENTRY(dsn_rewrite),
               DBLD_TEST_ENTRY(free_port), DBLD_TEST_ENTRY(private_cluster_restart),
               DBLD_TEST_ENTRY(cluster_left_running_is_swept))
