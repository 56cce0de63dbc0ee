/* test_db_layer.c - lib/db.c against a real PostgreSQL: prepared statement
 * names (any number of them on one connection, one PREPARE per name in a
 * pipeline that uses it twice, none remembered across a reconnect),
 * interrupting a running statement (PQcancel: the backend stops), the
 * session's statement timeout, the reserved connection of a pool, and error
 * messages that carry no PostgreSQL text, binary array parameters. */
#include "dbld/db.h"
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

/* Backends of dsn's database (seen from another session) running sql_like. */
static long long running(const char *dsn, const char *sql_like)
{
    h_rows *r = h_sql(dsn,
                      "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE $1",
                      sql_like);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* A fresh database (its conninfo in dsn) and a connection to it. */
static dbld_db *connect_new(const char *hint, char *dsn, size_t cap)
{
    h_db_create(hint, dsn, cap);
    dbld_db *db = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_db_connect(dsn, &db, &st), st);
    return db;
}

/* More names than the old fixed table held (32), each used twice in one
 * pipeline on a fresh connection, then again alone: every statement runs,
 * none is prepared twice. */
DBLD_TEST(many_prepared_names_one_connection)
{
    enum { NAMES = 80 };
    char dsn[1024];
    dbld_db *db = connect_new("prepnames", dsn, sizeof dsn);
    dbld_status st = {0};
    static char names[NAMES][32], sqls[NAMES][64];
    dbld_stmt stmts[2 * NAMES];
    dbld_res *res[2 * NAMES];
    const char *params[NAMES][1];
    dbld_arena *a = dbld_arena_create();
    for (int i = 0; i < NAMES; i++) {
        snprintf(names[i], sizeof names[i], "t_stmt_%d", i);
        snprintf(sqls[i], sizeof sqls[i], "SELECT $1::int + %d", i);
        params[i][0] = dbld_arena_printf(a, "%d", 1000 * i);
    }
    for (int round = 0; round < 3; round++) {
        /* round 0: the first use of every name, twice in the same pipeline */
        for (int i = 0; i < 2 * NAMES; i++)
            stmts[i] = (dbld_stmt){.name = names[i % NAMES],
                                   .sql = sqls[i % NAMES],
                                   .n = 1,
                                   .params = params[i % NAMES],
                                   .out = &res[i]};
        CHECK_OK(dbld_db_pipeline(db, stmts, 2 * NAMES, &st), st);
        for (int i = 0; i < 2 * NAMES; i++) {
            CHECK_EQ_INT(dbld_res_i64(res[i], 0, 0), 1001 * (i % NAMES));
            dbld_res_free(res[i]);
        }
    }
    /* one at a time, out of order */
    for (int i = NAMES - 1; i >= 0; i -= 7) {
        dbld_stmt one = {
            .name = names[i], .sql = sqls[i], .n = 1, .params = params[i], .out = &res[0]};
        CHECK_OK(dbld_db_pipeline(db, &one, 1, &st), st);
        CHECK_EQ_INT(dbld_res_i64(res[0], 0, 0), 1001 * i);
        dbld_res_free(res[0]);
    }
    /* a failed PREPARE is forgotten: the name works once its SQL does */
    dbld_stmt bad = {.name = "t_bad", .sql = "SELECT nope", .n = 0, .out = &res[0]};
    CHECK_CODE(dbld_db_pipeline(db, &bad, 1, &st), st, DBLD_INTERNAL);
    bad.sql = "SELECT 7";
    CHECK_OK(dbld_db_pipeline(db, &bad, 1, &st), st);
    CHECK_EQ_INT(dbld_res_i64(res[0], 0, 0), 7);
    dbld_res_free(res[0]);
    dbld_db_close(db);

    /* a new connection (a reconnect) prepares again, once */
    CHECK_OK(dbld_db_connect(dsn, &db, &st), st);
    for (int i = 0; i < 2 * NAMES; i++)
        stmts[i].out = &res[i];
    CHECK_OK(dbld_db_pipeline(db, stmts, 2 * NAMES, &st), st);
    for (int i = 0; i < 2 * NAMES; i++)
        dbld_res_free(res[i]);
    dbld_db_close(db);
    dbld_arena_destroy(a);
}

typedef struct stopper {
    atomic_int code; /* what the interrupt returns once armed */
} stopper;

static int stopper_fn(void *arg)
{
    return atomic_load(&((stopper *)arg)->code);
}

typedef struct sleeper {
    dbld_db *db;
    int rc;
    dbld_status st;
    int64_t ms;
    atomic_int done;
} sleeper;

static void *sleeper_main(void *arg)
{
    sleeper *s = arg;
    int64_t t0 = dbld_mono_ms();
    s->rc = dbld_db_exec(s->db, "SELECT pg_sleep(60)", 0, NULL, NULL, &s->st);
    s->ms = dbld_mono_ms() - t0;
    atomic_store(&s->done, 1);
    return NULL;
}

/* A statement whose caller gave up is cancelled on the server: the call
 * returns the interrupt's code, the backend stops running it, and the
 * connection is not reused (a late cancel could hit its next statement). */
DBLD_TEST(interrupt_cancels_the_backend)
{
    char dsn[1024];
    h_db_create("interrupt", dsn, sizeof dsn);
    int codes[] = {DBLD_CANCELLED, DBLD_DEADLINE_EXCEEDED};
    for (int i = 0; i < 2; i++) {
        dbld_db *db = NULL;
        dbld_status st = {0};
        CHECK_OK(dbld_db_connect(dsn, &db, &st), st);
        stopper stop = {0};
        dbld_db_set_interrupt(db, stopper_fn, &stop);
        sleeper s = {.db = db};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, sleeper_main, &s) == 0);
        CHECK_MSG(H_POLL_UNTIL(10000, running(dsn, "SELECT pg_sleep(60)") == 1),
                  "the statement never ran");
        atomic_store(&stop.code, codes[i]);
        CHECK_MSG(H_POLL_UNTIL(10000, atomic_load(&s.done)),
                  "the statement was not interrupted within 10 s");
        pthread_join(th, NULL);
        CHECK_CODE(s.rc, s.st, codes[i]);
        CHECK_CONTAINS(s.st.msg, codes[i] == DBLD_CANCELLED ? "the call was cancelled"
                                                            : "the call's deadline passed");
        h_note("interrupted after %lld ms: %s", (long long)s.ms, s.st.msg);
        CHECK_EQ_INT(running(dsn, "SELECT pg_sleep(60)"), 0);
        CHECK(!dbld_db_alive(db));
        dbld_db_close(db);
    }
}

/* The session's statement timeout ends a statement with DEADLINE_EXCEEDED
 * saying so; a pool's connections all get it. */
DBLD_TEST(statement_timeout_session)
{
    char dsn[1024];
    h_db_create("stmttimeout", dsn, sizeof dsn);
    dbld_pool_opts po = {.size = 2, .db = {.statement_timeout_ms = 300, .read_only = 1}};
    dbld_pool *p = dbld_pool_create_opts(dsn, &po);
    dbld_db *db = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_pool_acquire(p, 1000, &db, &st), st);
    int rc = dbld_db_exec(db, "SELECT pg_sleep(30)", 0, NULL, NULL, &st);
    CHECK_CODE(rc, st, DBLD_DEADLINE_EXCEEDED);
    CHECK_CONTAINS(st.msg, "statement timeout (300 ms)");
    CHECK(dbld_db_alive(db)); /* the server cancelled it: the connection is fine */
    /* read-only session */
    rc = dbld_db_exec(db, "CREATE TABLE t (a int)", 0, NULL, NULL, &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    dbld_pool_release(p, db);
    dbld_pool_destroy(p);
}

/* dbld_pool_acquire_user() leaves `reserved` connections to
 * dbld_pool_acquire(): users that hold the others wait (then
 * RESOURCE_EXHAUSTED), internal work still gets one. */
DBLD_TEST(pool_keeps_reserved_connection)
{
    char dsn[1024];
    h_db_create("poolreserve", dsn, sizeof dsn);
    dbld_pool_opts po = {.size = 3, .reserved = 1};
    dbld_pool *p = dbld_pool_create_opts(dsn, &po);
    dbld_db *u1, *u2, *u3, *internal;
    dbld_status st = {0};
    CHECK_OK(dbld_pool_acquire_user(p, 1000, &u1, &st), st);
    CHECK_OK(dbld_pool_acquire_user(p, 1000, &u2, &st), st);
    CHECK_CODE(dbld_pool_acquire_user(p, 200, &u3, &st), st, DBLD_RESOURCE_EXHAUSTED);
    CHECK_CONTAINS(st.msg, "all 2 database connections for reads are busy (and 1 kept");
    CHECK_OK(dbld_pool_acquire(p, 1000, &internal, &st), st);
    CHECK_OK(dbld_db_exec(internal, "SELECT 1", 0, NULL, NULL, &st), st);
    dbld_pool_release(p, internal);
    dbld_pool_release(p, u1);
    CHECK_OK(dbld_pool_acquire_user(p, 1000, &u3, &st), st);
    dbld_pool_release(p, u2);
    dbld_pool_release(p, u3);
    dbld_pool_destroy(p);
}

/* Errors name the SQLSTATE and a code, never PostgreSQL's text (which
 * quotes SQL, identifiers and values); a bad regular expression keeps its
 * reason, which is about the caller's pattern. */
DBLD_TEST(error_messages_without_server_text)
{
    char dsn[1024];
    dbld_db *db = connect_new("errtext", dsn, sizeof dsn);
    dbld_status st = {0};
    CHECK_CODE(dbld_db_exec(db, "SELECT * FROM secret_table_name", 0, NULL, NULL, &st), st,
               DBLD_INTERNAL);
    CHECK_EQ_STR(st.msg, "database error (SQLSTATE 42P01)");
    const char *big[] = {"9223372036854775808"};
    dbld_res *r = NULL;
    CHECK_CODE(dbld_db_exec(db, "SELECT $1::bigint", 1, big, &r, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK_EQ_STR(st.msg, "a value was rejected by the database (SQLSTATE 22003)");
    CHECK(r == NULL);
    const char *rx[] = {"a{2,1}"};
    CHECK_CODE(dbld_db_exec(db, "SELECT '' ~ $1", 1, rx, NULL, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "invalid regular expression");
    /* in a pipeline: the failing statement and its SQLSTATE are marked */
    dbld_stmt two[] = {{.sql = "SELECT 1"}, {.sql = "SELECT '' ~ $1", .n = 1, .params = rx}};
    CHECK_CODE(dbld_db_pipeline(db, two, 2, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK(!two[0].failed);
    CHECK(two[1].failed);
    CHECK_EQ_STR(two[1].sqlstate, "2201B");
    dbld_db_close(db);
}

/* Binary array parameters (dbld_pg_bin_*) next to a text one, prepared and
 * not: PostgreSQL reads them as the same values their text forms give -
 * quotes, backslashes, braces, commas, UTF-8, NULLs, empty strings, any
 * byte (NUL and 0xff included), extreme bigints - and an empty array. */
DBLD_TEST(binary_array_params)
{
    char dsn[1024];
    dbld_db *db = connect_new("binarr", dsn, sizeof dsn);
    dbld_status st = {0};
    dbld_arena *a = dbld_arena_create();
    const char *texts[] = {"a\"b\\c", NULL, "", "{x,y}", "NULL", "\xc3\xa9t\xc3\xa9"};
    const uint8_t b0[] = {0, 1, 0xff, '\\', 'x'}, b1[] = {0x7f};
    const uint8_t *bytes[] = {b0, NULL, b1, (const uint8_t *)""};
    const size_t blens[] = {sizeof b0, 0, sizeof b1, 0};
    const int64_t ints[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    int lens[4];
    const char *p[4];
    p[0] = dbld_pg_bin_text_array(a, texts, 6, &lens[0]);
    p[1] = dbld_pg_bin_bytea_array(a, bytes, blens, 4, &lens[1]);
    p[2] = dbld_pg_bin_int8_array(a, ints, 5, &lens[2]);
    p[3] = dbld_pg_bin_text_array(a, texts, 0, &lens[3]);
    const char *sql = "SELECT $1::text[] IS NOT DISTINCT FROM $5::text[],"
                      " $2::bytea[] IS NOT DISTINCT FROM ARRAY['\\x0001ff5c78', NULL, '\\x7f', '']"
                      "::bytea[],"
                      " $3::bigint[] = ARRAY[-9223372036854775808, -1, 0, 1, 9223372036854775807],"
                      " cardinality($4::text[]), array_length($1::text[], 1)";
    const char *text_lit = dbld_pg_text_array(a, texts, 6);
    const char *params[] = {p[0], p[1], p[2], p[3], text_lit};
    const int fmts[] = {1, 1, 1, 1, 0};
    const int lengths[] = {lens[0], lens[1], lens[2], lens[3], 0};
    for (int prepared = 0; prepared < 2; prepared++) {
        dbld_res *r = NULL;
        dbld_stmt s = {.name = prepared ? "t_binarr" : NULL,
                       .sql = sql,
                       .n = 5,
                       .params = params,
                       .formats = fmts,
                       .lengths = lengths,
                       .out = &r};
        CHECK_OK(dbld_db_pipeline(db, &s, 1, &st), st);
        CHECK_EQ_STR(dbld_res_get(r, 0, 0), "t");
        CHECK_EQ_STR(dbld_res_get(r, 0, 1), "t");
        CHECK_EQ_STR(dbld_res_get(r, 0, 2), "t");
        CHECK_EQ_INT(dbld_res_i64(r, 0, 3), 0);
        CHECK_EQ_INT(dbld_res_i64(r, 0, 4), 6);
        dbld_res_free(r);
    }
    /* an array of another element type is refused */
    dbld_stmt bad = {.sql = "SELECT $1::bigint[]",
                     .n = 1,
                     .params = params,
                     .formats = fmts,
                     .lengths = lengths};
    CHECK(dbld_db_pipeline(db, &bad, 1, &st) != 0);
    dbld_db_close(db);
    dbld_arena_destroy(a);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(many_prepared_names_one_connection),
               DBLD_TEST_ENTRY(interrupt_cancels_the_backend),
               DBLD_TEST_ENTRY(statement_timeout_session),
               DBLD_TEST_ENTRY(pool_keeps_reserved_connection),
               DBLD_TEST_ENTRY(error_messages_without_server_text),
               DBLD_TEST_ENTRY(binary_array_params))
