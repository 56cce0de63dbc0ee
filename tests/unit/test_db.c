/* test_db.c - the PostgreSQL layer without a server: text[] literals (what
 * every array parameter goes through) and their parsing back, hex / bytea,
 * SQLSTATE -> dbld code mapping, and connection failures. The round trip
 * through a real PostgreSQL is in tests/integration/test_eventlog_basic.c
 * (list_refs_with_special_characters). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/arena.h"
#include "databuild.pb-c.h"
#include "dbld/db.h"
#include "dbld/status.h"

#include <string.h>

/* Refs that need quoting or escaping in an array literal. */
static const char *const nasty[] = {
    "plain/ref=1",
    "with space",
    "comma,inside",
    "{braces}",
    "quote\"inside",
    "back\\slash",
    "\\\"both\\\"",
    "NULL",
    "null",
    "",
    " ",
    "trailing\\",
    "héllo/日付=2025-01-01 ✓",
    "} , {",
};
#define N_NASTY (sizeof nasty / sizeof nasty[0])

/* ---- dbld_pg_text_array ---- */

static void test_text_array_literals(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    assert_string_equal(dbld_pg_text_array(a, NULL, 0), "{}");
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){"a", "b"}, 2), "{\"a\",\"b\"}");
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){""}, 1), "{\"\"}");
    /* a NULL item is SQL NULL; the string "NULL" stays a string */
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){NULL, "NULL"}, 2),
                        "{NULL,\"NULL\"}");
    /* only '"' and '\' are escaped; everything else is safe inside quotes */
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){"a\"b\\c"}, 1), "{\"a\\\"b\\\\c\"}");
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){"x,y", "{z}", " s "}, 3),
                        "{\"x,y\",\"{z}\",\" s \"}");
    /* UTF-8 passes through byte for byte */
    assert_string_equal(dbld_pg_text_array(a, (const char *[]){"日付=✓"}, 1), "{\"日付=✓\"}");
    /* worst case for the size estimate: every byte escaped */
    char big[4097];
    memset(big, '"', 4096);
    big[4096] = '\0';
    const char *lit = dbld_pg_text_array(a, (const char *[]){big, big}, 2);
    assert_int_equal(strlen(lit), 2 + 2 * (2 + 2 * 4096) + 1);
    dbld_arena_destroy(a);
}

/* ---- dbld_pg_parse_text_array ---- */

static void test_text_array_round_trip(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    const char *lit = dbld_pg_text_array(a, nasty, N_NASTY);
    char **items;
    size_t n;
    assert_int_equal(dbld_pg_parse_text_array(a, lit, &items, &n), 0);
    assert_int_equal(n, N_NASTY);
    for (size_t i = 0; i < N_NASTY; i++)
        assert_string_equal(items[i], nasty[i]);
    /* one item at a time too (no separator to lean on) */
    for (size_t i = 0; i < N_NASTY; i++) {
        lit = dbld_pg_text_array(a, &nasty[i], 1);
        assert_int_equal(dbld_pg_parse_text_array(a, lit, &items, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(items[0], nasty[i]);
    }
    dbld_arena_destroy(a);
}

/* Literals as PostgreSQL prints them: bare elements unless quoting is needed. */
static void test_text_array_parse_postgres_output(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    char **items;
    size_t n;
    assert_int_equal(dbld_pg_parse_text_array(a, "{}", &items, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(dbld_pg_parse_text_array(a, "{a,b=1,c/d}", &items, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(items[0], "a");
    assert_string_equal(items[1], "b=1");
    assert_string_equal(items[2], "c/d");
    assert_int_equal(dbld_pg_parse_text_array(
                         a, "{\"a b\",\"c,d\",\"{e}\",\"f\\\"g\",\"h\\\\i\",\"\",x}", &items, &n),
                     0);
    assert_int_equal(n, 7);
    assert_string_equal(items[0], "a b");
    assert_string_equal(items[1], "c,d");
    assert_string_equal(items[2], "{e}");
    assert_string_equal(items[3], "f\"g");
    assert_string_equal(items[4], "h\\i");
    assert_string_equal(items[5], "");
    assert_string_equal(items[6], "x");
    /* SQL NULL (bare) and the string "NULL" (quoted) both read as "NULL" */
    assert_int_equal(dbld_pg_parse_text_array(a, "{NULL,\"NULL\"}", &items, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0], "NULL");
    assert_string_equal(items[1], "NULL");
    assert_int_equal(dbld_pg_parse_text_array(a, "{日付=✓,é}", &items, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(items[0], "日付=✓");
    assert_string_equal(items[1], "é");
    dbld_arena_destroy(a);
}

static void test_text_array_parse_malformed(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    const char *bad[] = {
        "",
        "abc",
        "a,b}",
        "{",
        "{a",
        "{\"a}",
        "{a,}",
        "{,a}",
        "{a,,b}",
        "{\"a\"x,y}",
        "{\"a\"\"b\"}",
        "{{a,b},{c,d}}",
        "[0:1]={a,b}",
        "{a}x",
        "{a\\,b}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char **items = (char **)1;
        size_t n = 99;
        if (dbld_pg_parse_text_array(a, bad[i], &items, &n) != -1)
            fail_msg("\"%s\" parsed as %zu items", bad[i], n);
        assert_null(items);
        assert_int_equal(n, 0);
    }
    char **items = (char **)1;
    size_t n = 99;
    assert_int_equal(dbld_pg_parse_text_array(a, NULL, &items, &n), -1);
    assert_null(items);
    assert_int_equal(n, 0);
    dbld_arena_destroy(a);
}

/* ---- hex / bytea ---- */

static void test_hex_and_bytea(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    uint8_t bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (uint8_t)i;
    char *hex = dbld_hex_encode(a, bytes, sizeof bytes);
    assert_int_equal(strlen(hex), 512);
    assert_memory_equal(hex, "000102", 6);
    assert_string_equal(hex + 506, "fdfeff");
    char *text = dbld_arena_printf(a, "\\x%s", hex);
    uint8_t *out;
    size_t len;
    assert_int_equal(dbld_bytea_decode(a, text, &out, &len), 0);
    assert_int_equal(len, sizeof bytes);
    assert_memory_equal(out, bytes, sizeof bytes);
    assert_string_equal(dbld_hex_encode(a, NULL, 0), "");
    /* a message's hex, packed and encoded in one allocation, equals pack + encode */
    for (size_t n = 0; n < 3000; n += 997) {
        Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
        char *s = dbld_arena_alloc(a, n + 1);
        for (size_t i = 0; i < n; i++)
            s[i] = (char)('a' + i % 26);
        ref.str = s;
        size_t plen = protobuf_c_message_get_packed_size(&ref.base);
        uint8_t *packed = dbld_arena_alloc(a, plen + 1);
        protobuf_c_message_pack(&ref.base, packed);
        assert_string_equal(dbld_msg_hex(a, &ref.base), dbld_hex_encode(a, packed, plen));
    }
    assert_int_equal(dbld_bytea_decode(a, "\\x", &out, &len), 0);
    assert_int_equal(len, 0);
    assert_int_equal(dbld_bytea_decode(a, "\\x0A0b", &out, &len), 0); /* either case */
    assert_int_equal(len, 2);
    assert_int_equal(out[0], 10);
    assert_int_equal(out[1], 11);
    assert_int_equal(dbld_bytea_decode(a, "0a0b", &out, &len), -1); /* no \x */
    assert_int_equal(dbld_bytea_decode(a, "\\x0g", &out, &len), -1);
    assert_int_equal(dbld_bytea_decode(a, "\\012", &out, &len), -1); /* escape format */
    dbld_arena_destroy(a);
}

/* ---- errors ---- */

static void test_sqlstate_codes(void **state)
{
    (void)state;
    static const struct {
        const char *state;
        int code;
    } cases[] = {
        {NULL, DBLD_UNAVAILABLE},
        {"08000", DBLD_UNAVAILABLE},
        {"08006", DBLD_UNAVAILABLE},
        {"08P01", DBLD_UNAVAILABLE},
        {"57P01", DBLD_UNAVAILABLE},
        {"57P02", DBLD_UNAVAILABLE},
        {"57P03", DBLD_UNAVAILABLE},
        {"53300", DBLD_UNAVAILABLE},
        {"2201B", DBLD_INVALID_ARGUMENT},
        {"22P02", DBLD_INVALID_ARGUMENT},
        {"22001", DBLD_INVALID_ARGUMENT},
        {"23505", DBLD_ALREADY_EXISTS},
        {"23503", DBLD_INTERNAL},
        {"23502", DBLD_INTERNAL},
        {"40001", DBLD_ABORTED},
        {"40P01", DBLD_ABORTED},
        {"57014", DBLD_DEADLINE_EXCEEDED},
        {"25006", DBLD_FAILED_PRECONDITION},
        {"25P02", DBLD_INTERNAL},
        {"42P01", DBLD_INTERNAL},
        {"42601", DBLD_INTERNAL},
        {"53100", DBLD_RESOURCE_EXHAUSTED}, /* disk full */
        {"53200", DBLD_RESOURCE_EXHAUSTED}, /* out of memory */
        {"54000", DBLD_INVALID_ARGUMENT},   /* e.g. an index row too large for a value */
        {"22003", DBLD_INVALID_ARGUMENT},   /* a number out of range */
        {"42P05", DBLD_INTERNAL},           /* duplicate prepared statement: a bug */
        {"57P04", DBLD_INTERNAL},
        {"XX000", DBLD_INTERNAL},
        {"", DBLD_INTERNAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = dbld_db_code_for_sqlstate(cases[i].state);
        if (got != cases[i].code)
            fail_msg("SQLSTATE %s: %s, want %s", cases[i].state ? cases[i].state : "(none)",
                     dbld_code_name(got), dbld_code_name(cases[i].code));
    }
}

/* Nothing listens on port 1: refused at once. */
#define NO_SERVER "host=127.0.0.1 port=1 dbname=x connect_timeout=2"

static void test_connect_refused(void **state)
{
    (void)state;
    dbld_db *db = (dbld_db *)1;
    dbld_status st;
    assert_int_equal(dbld_db_connect(NO_SERVER, &db, &st), DBLD_UNAVAILABLE);
    assert_null(db);
    assert_int_equal(st.code, DBLD_UNAVAILABLE);
    assert_non_null(strstr(st.msg, "could not connect to database: "));
    assert_non_null(strstr(st.msg, "Connection refused"));
    assert_int_not_equal(st.msg[strlen(st.msg) - 1], '\n');
    assert_int_equal(dbld_db_alive(NULL), 0);
    dbld_db_close(NULL);
}

/* A failed connect gives its pool slot back: the next acquire tries again
 * (UNAVAILABLE again) instead of waiting for a slot (RESOURCE_EXHAUSTED). */
static void test_pool_connect_failure(void **state)
{
    (void)state;
    dbld_pool *p = dbld_pool_create(NO_SERVER, 1);
    for (int i = 0; i < 2; i++) {
        dbld_db *db = (dbld_db *)1;
        dbld_status st;
        assert_int_equal(dbld_pool_acquire(p, 100, &db, &st), DBLD_UNAVAILABLE);
        assert_null(db);
    }
    dbld_pool_destroy(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_array_literals),
        cmocka_unit_test(test_text_array_round_trip),
        cmocka_unit_test(test_text_array_parse_postgres_output),
        cmocka_unit_test(test_text_array_parse_malformed),
        cmocka_unit_test(test_hex_and_bytea),
        cmocka_unit_test(test_sqlstate_codes),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_pool_connect_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
