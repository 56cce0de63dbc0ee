/* test_core.c - the core runtime: status, arena (incl. protobuf-c unpacking into
 * it), UUIDs, log level parsing, clocks. Run under valgrind to check the arena
 * frees everything it hands out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "databuild.pb-c.h"
#include "dbld/arena.h"
#include "dbld/log.h"
#include "dbld/status.h"
#include "dbld/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- status ---- */

static void test_status_set_and_clear(void **state)
{
    (void)state;
    dbld_status st;
    assert_int_equal(dbld_status_set(&st, DBLD_NOT_FOUND, "no build %s (%d)", "b1", 7),
                     DBLD_NOT_FOUND);
    assert_int_equal(st.code, DBLD_NOT_FOUND);
    assert_string_equal(st.msg, "no build b1 (7)");
    dbld_status_clear(&st);
    assert_int_equal(st.code, DBLD_OK);
    assert_string_equal(st.msg, "");

    /* NULL status: still returns the code, and clear is a no-op. */
    assert_int_equal(dbld_status_set(NULL, DBLD_INTERNAL, "x"), DBLD_INTERNAL);
    dbld_status_clear(NULL);

    /* Over-long messages are truncated, never overflow. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    dbld_status_set(&st, DBLD_UNKNOWN, "%s", big);
    assert_int_equal(strlen(st.msg), DBLD_STATUS_MSG_MAX - 1);
}

static void test_status_prefix(void **state)
{
    (void)state;
    dbld_status st;
    dbld_status_set(&st, DBLD_UNAVAILABLE, "connection refused");
    assert_int_equal(dbld_status_prefix(&st, "could not connect to %s", "db"), DBLD_UNAVAILABLE);
    assert_string_equal(st.msg, "could not connect to db: connection refused");
    assert_int_equal(st.code, DBLD_UNAVAILABLE);
    dbld_status_prefix(&st, "start");
    assert_string_equal(st.msg, "start: could not connect to db: connection refused");

    assert_int_equal(dbld_status_prefix(NULL, "x"), DBLD_UNKNOWN);

    /* Long prefix and long message: truncated, terminated. */
    char big[2000];
    memset(big, 'p', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    dbld_status_set(&st, DBLD_ABORTED, "%s", big);
    dbld_status_prefix(&st, "ctx");
    assert_int_equal(strlen(st.msg), DBLD_STATUS_MSG_MAX - 1);
    assert_memory_equal(st.msg, "ctx: ppp", 8);
    dbld_status_set(&st, DBLD_ABORTED, "old");
    dbld_status_prefix(&st, "%s", big);
    assert_true(strlen(st.msg) < DBLD_STATUS_MSG_MAX);
    assert_int_equal(st.code, DBLD_ABORTED);
}

static void test_code_names(void **state)
{
    (void)state;
    static const char *const names[] = {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    for (int i = 0; i < 17; i++)
        assert_string_equal(dbld_code_name(i), names[i]);
    assert_int_equal(DBLD_UNAUTHENTICATED, 16); /* same numbers as gRPC */
    assert_string_equal(dbld_code_name(-1), "UNKNOWN_CODE");
    assert_string_equal(dbld_code_name(17), "UNKNOWN_CODE");
    assert_string_equal(dbld_code_name(1000), "UNKNOWN_CODE");
}

/* ---- arena ---- */

static void assert_aligned_zeroed(const void *p, size_t n)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(b[i], 0);
}

static void test_arena_alloc_alignment(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    unsigned char *ptrs[300];
    size_t sizes[300];
    for (size_t i = 0; i < 300; i++) {
        sizes[i] = i % 37; /* includes 0 */
        ptrs[i] = dbld_arena_alloc(a, sizes[i]);
        assert_aligned_zeroed(ptrs[i], sizes[i]);
        memset(ptrs[i], (int)(i & 0xff), sizes[i]);
    }
    /* No allocation overlapped another. */
    for (size_t i = 0; i < 300; i++) {
        for (size_t j = 0; j < sizes[i]; j++)
            assert_int_equal(ptrs[i][j], i & 0xff);
    }
    dbld_arena_destroy(a);
    dbld_arena_destroy(NULL);
}

static void test_arena_large(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    char *small1 = dbld_arena_strdup(a, "before");
    size_t sizes[] = {4097, 16 * 1024, 100 * 1024, 4 * 1024 * 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = dbld_arena_alloc(a, sizes[i]);
        assert_aligned_zeroed(p, sizes[i]);
        memset(p, 0x5a, sizes[i]);
        char *s = dbld_arena_strdup(a, "after"); /* small allocations keep working */
        assert_string_equal(s, "after");
        assert_int_equal(p[sizes[i] - 1], 0x5a);
    }
    assert_string_equal(small1, "before");
    dbld_arena_destroy(a);
}

static void test_arena_strings(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    assert_string_equal(dbld_arena_strdup(a, "hello"), "hello");
    assert_string_equal(dbld_arena_strdup(a, NULL), "");
    assert_string_equal(dbld_arena_strndup(a, "hello world", 5), "hello");
    assert_string_equal(dbld_arena_strndup(a, "abc", 0), "");
    assert_string_equal(dbld_arena_printf(a, "%s-%d-%05.1f", "x", 42, 3.14159), "x-42-003.1");
    assert_string_equal(dbld_arena_printf(a, "%s", ""), "");
    /* Longer than a block. */
    char *big = dbld_arena_printf(a, "%040000d", 7);
    assert_int_equal(strlen(big), 40000);
    assert_int_equal(big[39999], '7');
    assert_int_equal(big[0], '0');
    dbld_arena_destroy(a);
}

static void test_arena_reset(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 200; i++) {
            char *s = dbld_arena_printf(a, "round %d item %d", round, i);
            assert_non_null(s);
        }
        if (round % 3 == 0) { /* a large block in the chain, sometimes first */
            void *big = dbld_arena_alloc(a, 64 * 1024);
            assert_aligned_zeroed(big, 64 * 1024);
        }
        dbld_arena_reset(a);
        /* Memory handed out after a reset is zeroed again. */
        unsigned char *p = dbld_arena_alloc(a, 512);
        assert_aligned_zeroed(p, 512);
        memset(p, 0xff, 512);
        dbld_arena_reset(a);
    }
    /* Large allocation as the very first thing, then reset and reuse. */
    dbld_arena_alloc(a, 1 << 20);
    dbld_arena_reset(a);
    for (int i = 0; i < 2000; i++)
        assert_aligned_zeroed(dbld_arena_alloc(a, 48), 48);
    dbld_arena_destroy(a);
}

/* This process's resident memory (VmRSS), KiB. */
static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
    fclose(f);
    assert_true(kib > 0);
    return kib;
}

/* An arena holding megabytes keeps at most a few hundred KiB of them on
 * malloc's heap; the rest is mapped on its own and given back to the system
 * on reset and destroy, even when long-lived heap allocations were made in
 * between (as the event log writer's batches and its commit feed's events
 * do): before, such an arena left its blocks as free holes in the heap. */
static void test_arena_gives_back(void **state)
{
    (void)state;
    enum { TOTAL = 48 << 20, PIECE = 3000, KEEP = TOTAL / PIECE };
    void **kept = calloc(KEEP, sizeof *kept);
    assert_non_null(kept);
    long before = rss_kib();
    dbld_arena *a = dbld_arena_create();
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < KEEP; i++) {
            memset(dbld_arena_alloc(a, PIECE), 0x5a, PIECE);
            if (round == 0) { /* long-lived, interleaved with the arena's blocks */
                kept[i] = malloc(48);
                assert_non_null(kept[i]);
                memset(kept[i], 1, 48);
            }
        }
        size_t heap, mapped;
        dbld_arena_stats(a, &heap, &mapped);
        assert_true(heap <= 512 * 1024);
        assert_true(mapped >= (size_t)TOTAL - 512 * 1024);
        long held = rss_kib();
        assert_true(held - before >= TOTAL / 1024 * 9 / 10);
        if (round == 0)
            dbld_arena_reset(a);
        else
            dbld_arena_destroy(a);
        /* given back: what stays is the kept pieces, the arena's heap part
         * and malloc's slack, not the 48 MiB */
        long after = rss_kib();
        assert_true(after - before <= 8 * 1024);
        if (round == 0) {
            dbld_arena_stats(a, &heap, &mapped);
            assert_int_equal(heap, 0);
            assert_int_equal(mapped, 0);
        }
    }
    for (size_t i = 0; i < KEEP; i++)
        free(kept[i]);
    free(kept);
}

static void test_arena_push(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    int *arr = NULL;
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        int *slot = dbld_arena_push(a, &arr, &n, sizeof *arr);
        assert_int_equal(*slot, 0);
        *slot = i * i;
    }
    assert_int_equal(n, 100);
    for (int i = 0; i < 100; i++)
        assert_int_equal(arr[i], i * i);
    dbld_arena_destroy(a);
}

/* protobuf-c unpacks into the arena; nothing is freed individually. */
static void test_arena_protobuf(void **state)
{
    (void)state;
    Databuild__V1__PartitionRef out1 = DATABUILD__V1__PARTITION_REF__INIT,
                                out2 = DATABUILD__V1__PARTITION_REF__INIT;
    out1.str = "reviews/date=2025-01-01";
    out2.str = "reviews/date=2025-01-02";
    Databuild__V1__PartitionRef *outs[] = {&out1, &out2};
    Databuild__V1__JobConfig__EnvEntry env = DATABUILD__V1__JOB_CONFIG__ENV_ENTRY__INIT;
    env.key = "TZ";
    env.value = "UTC";
    Databuild__V1__JobConfig__EnvEntry *envs[] = {&env};
    char *args[] = {"--date", "2025-01-01"};
    Databuild__V1__JobConfig cfg = DATABUILD__V1__JOB_CONFIG__INIT;
    cfg.n_outputs = 2;
    cfg.outputs = outs;
    cfg.n_args = 2;
    cfg.args = args;
    cfg.n_env = 1;
    cfg.env = envs;

    size_t len = databuild__v1__job_config__get_packed_size(&cfg);
    uint8_t *buf = malloc(len);
    assert_int_equal(databuild__v1__job_config__pack(&cfg, buf), len);

    dbld_arena *a = dbld_arena_create();
    for (int i = 0; i < 100; i++) { /* several messages share the arena */
        Databuild__V1__JobConfig *got =
            databuild__v1__job_config__unpack(dbld_arena_allocator(a), len, buf);
        assert_non_null(got);
        assert_int_equal(got->n_outputs, 2);
        assert_string_equal(got->outputs[1]->str, "reviews/date=2025-01-02");
        assert_int_equal(got->n_args, 2);
        assert_string_equal(got->args[0], "--date");
        assert_int_equal(got->n_env, 1);
        assert_string_equal(got->env[0]->key, "TZ");
        assert_string_equal(got->env[0]->value, "UTC");
        /* Freeing through the arena allocator is a no-op, not a crash. */
        if (i == 0) databuild__v1__job_config__free_unpacked(got, dbld_arena_allocator(a));
    }
    /* Garbage fails cleanly. */
    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    assert_null(databuild__v1__job_config__unpack(dbld_arena_allocator(a), sizeof junk, junk));

    Databuild__V1__JobConfig *fresh = dbld_arena_msg(a, &databuild__v1__job_config__descriptor);
    assert_int_equal(fresh->n_outputs, 0);
    assert_ptr_equal(fresh->base.descriptor, &databuild__v1__job_config__descriptor);
    dbld_arena_destroy(a);
    free(buf);
}

/* ---- UUIDs ---- */

static int cmp_uuid(const void *x, const void *y)
{
    return strcmp((const char *)x, (const char *)y);
}

static void test_uuid_format(void **state)
{
    (void)state;
    char u[37];
    for (int i = 0; i < 1000; i++) {
        dbld_uuid_v4(u);
        assert_int_equal(strlen(u), 36);
        for (int j = 0; j < 36; j++) {
            if (j == 8 || j == 13 || j == 18 || j == 23)
                assert_int_equal(u[j], '-');
            else
                assert_non_null(strchr("0123456789abcdef", u[j]));
        }
        assert_int_equal(u[14], '4');           /* version */
        assert_non_null(strchr("89ab", u[19])); /* RFC 4122 variant */
        assert_true(dbld_uuid_valid(u));
    }
}

static void test_uuid_valid(void **state)
{
    (void)state;
    assert_true(dbld_uuid_valid("123e4567-e89b-42d3-a456-426614174000"));
    assert_true(dbld_uuid_valid("123E4567-E89B-42D3-A456-426614174000"));
    assert_false(dbld_uuid_valid(NULL));
    assert_false(dbld_uuid_valid(""));
    assert_false(dbld_uuid_valid("123e4567-e89b-42d3-a456-42661417400"));   /* short */
    assert_false(dbld_uuid_valid("123e4567-e89b-42d3-a456-4266141740000")); /* long */
    assert_false(dbld_uuid_valid("123e4567ae89b-42d3-a456-426614174000"));  /* hyphen */
    assert_false(dbld_uuid_valid("123e4567-e89b-42d3-a456_426614174000"));
    assert_false(dbld_uuid_valid("g23e4567-e89b-42d3-a456-426614174000")); /* not hex */
    assert_false(dbld_uuid_valid("123e4567-e89b-42d3-a456-42661417400 "));
    assert_false(dbld_uuid_valid("{23e4567-e89b-42d3-a456-42661417400}"));
}

static void test_uuid_unique(void **state)
{
    (void)state;
    enum { N = 10000 };
    char(*ids)[37] = calloc(N, sizeof *ids);
    for (int i = 0; i < N; i++)
        dbld_uuid_v4(ids[i]);
    qsort(ids, N, sizeof *ids, cmp_uuid);
    for (int i = 1; i < N; i++)
        assert_string_not_equal(ids[i - 1], ids[i]);
    free(ids);
}

/* ---- logging, clocks, helpers ---- */

static void test_log_level_parse(void **state)
{
    (void)state;
    dbld_log_level l = DBLD_LOG_ERROR;
    assert_int_equal(dbld_log_level_parse("debug", &l), 0);
    assert_int_equal(l, DBLD_LOG_DEBUG);
    assert_int_equal(dbld_log_level_parse("info", &l), 0);
    assert_int_equal(l, DBLD_LOG_INFO);
    assert_int_equal(dbld_log_level_parse("warn", &l), 0);
    assert_int_equal(l, DBLD_LOG_WARN);
    assert_int_equal(dbld_log_level_parse("warning", &l), 0);
    assert_int_equal(l, DBLD_LOG_WARN);
    assert_int_equal(dbld_log_level_parse("error", &l), 0);
    assert_int_equal(l, DBLD_LOG_ERROR);
    static const char *const bad[] = {"INFO", "", "verbose", "debug ", "err", "errors"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = DBLD_LOG_DEBUG;
        assert_int_equal(dbld_log_level_parse(bad[i], &l), -1);
        assert_int_equal(l, DBLD_LOG_DEBUG); /* untouched on failure */
    }
    assert_int_equal(dbld_log_level_parse(NULL, &l), -1);
}

/* Log one record with stderr redirected to a file; returns it parsed. */
static json_t *log_and_parse(const char *msg, const char *k1, const char *v1, const char *k2,
                             const char *v2, size_t *line_len)
{
    char path[] = "/tmp/dbld-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    dbld_log(DBLD_LOG_ERROR, msg, k1, v1, k2, v2, (char *)NULL);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[20000];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = 0;
    assert_int_equal(buf[n - 1], '\n');
    assert_null(memchr(buf, '\n', (size_t)n - 1)); /* one line */
    *line_len = (size_t)n;
    json_error_t err;
    json_t *j = json_loads(buf, 0, &err);
    if (!j) print_error("not JSON (%s): %.200s\n", err.text, buf);
    assert_non_null(j);
    return j;
}

/* Every record is one valid JSON object: escapes, and a value too long for a
 * record is cut at a character boundary (never inside an escape or a UTF-8
 * sequence), marked "...", with the record still closed. */
static void test_log_lines_are_json(void **state)
{
    (void)state;
    dbld_log_init("unit", DBLD_LOG_INFO);
    size_t len;
    json_t *j = log_and_parse("quote \" backslash \\ nl \n tab \t ctl \x01 é", "k", "v\"", NULL,
                              NULL, &len);
    assert_string_equal(json_string_value(json_object_get(j, "service")), "unit");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "quote \" backslash \\ nl \n tab \t ctl \x01 é");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "fields"), "k")),
                        "v\"");
    json_decref(j);
    /* long values: every alignment of 2-byte characters, quotes and control bytes */
    const char *units[] = {"é", "\"", "\x01", "€", "a"};
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++)
        for (size_t shift = 0; shift < 7; shift++) {
            char *big = malloc(12001);
            size_t n = 0;
            for (size_t i = 0; i < shift; i++)
                big[n++] = 'x';
            while (n + strlen(units[u]) < 12000) {
                memcpy(big + n, units[u], strlen(units[u]));
                n += strlen(units[u]);
            }
            big[n] = 0;
            j = log_and_parse("long", "big", big, "after", "dropped", &len);
            assert_true(len <= 8192);
            const char *got =
                json_string_value(json_object_get(json_object_get(j, "fields"), "big"));
            assert_non_null(got);
            size_t gl = strlen(got);
            assert_true(gl > 3 && strcmp(got + gl - 3, "...") == 0);
            assert_memory_equal(got, big, gl - 3); /* a prefix of the value */
            assert_null(json_object_get(json_object_get(j, "fields"), "after"));
            json_decref(j);
            free(big);
        }
    /* a long msg too */
    char *big = malloc(10001);
    memset(big, 'm', 10000);
    big[10000] = 0;
    j = log_and_parse(big, "k", "v", NULL, NULL, &len);
    assert_true(len <= 8192);
    assert_null(json_object_get(j, "fields"));
    json_decref(j);
    free(big);
}

static void test_clocks_and_helpers(void **state)
{
    (void)state;
    int64_t wall = dbld_now_ns();
    assert_true(wall > INT64_C(1600000000) * 1000000000); /* after 2020 */
    int64_t t0 = dbld_mono_ms();
    dbld_sleep_ms(20);
    dbld_sleep_ms(0);
    dbld_sleep_ms(-5);
    int64_t t1 = dbld_mono_ms();
    assert_true(t1 - t0 >= 20);
    char *s = dbld_xstrdup(NULL);
    assert_string_equal(s, "");
    free(s);
    int *z = dbld_xcalloc(4, sizeof *z);
    assert_int_equal(z[3], 0);
    z = dbld_xrealloc(z, 100 * sizeof *z);
    free(z);
    free(dbld_xmalloc(0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_set_and_clear), cmocka_unit_test(test_status_prefix),
        cmocka_unit_test(test_code_names),           cmocka_unit_test(test_arena_alloc_alignment),
        cmocka_unit_test(test_arena_large),          cmocka_unit_test(test_arena_strings),
        cmocka_unit_test(test_arena_reset),          cmocka_unit_test(test_arena_push),
        cmocka_unit_test(test_arena_gives_back),     cmocka_unit_test(test_arena_protobuf),
        cmocka_unit_test(test_uuid_format),          cmocka_unit_test(test_uuid_valid),
        cmocka_unit_test(test_uuid_unique),          cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_log_lines_are_json),   cmocka_unit_test(test_clocks_and_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
