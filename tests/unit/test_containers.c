/* test_containers.c - the one string map (dbld_strmap) and the one intrusive
 * FIFO (dbld_fifo) of lib/: malloc- and arena-backed maps through growth,
 * overwrite and first-seen numbering; queue order with pushes at both ends,
 * pops to empty and take. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/arena.h"
#include "dbld/fifo.h"
#include "dbld/strmap.h"

#include <stdio.h>
#include <string.h>

#define N_KEYS 5000

static char keys[N_KEYS][16];

static void make_keys(void)
{
    for (int i = 0; i < N_KEYS; i++)
        snprintf(keys[i], sizeof keys[i], "k/%d", i);
}

/* Insert N_KEYS (through many growths), find every one, miss others. */
static void exercise_map(dbld_strmap *m)
{
    make_keys();
    for (size_t i = 0; i < N_KEYS; i++)
        dbld_strmap_put(m, keys[i], i * 3);
    assert_int_equal(m->n, N_KEYS);
    assert_true(m->cap >= 2 * m->n);
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t v = 0;
        assert_int_equal(dbld_strmap_get(m, keys[i], &v), 1);
        assert_int_equal(v, i * 3);
    }
    assert_int_equal(dbld_strmap_get(m, "k/-1", NULL), 0);
    assert_true(dbld_strmap_find(m, "k/-1") == DBLD_STRMAP_NONE);
    assert_int_equal(dbld_strmap_find(m, keys[42]), 42 * 3);
    assert_int_equal(dbld_strmap_get(m, "", NULL), 0);
    /* overwrite keeps one entry */
    dbld_strmap_put(m, keys[7], 99);
    size_t v = 0;
    assert_int_equal(dbld_strmap_get(m, keys[7], &v), 1);
    assert_int_equal(v, 99);
    assert_int_equal(m->n, N_KEYS);
}

static void test_strmap_malloc(void **state)
{
    (void)state;
    dbld_strmap m;
    dbld_strmap_init(&m, NULL);
    assert_int_equal(dbld_strmap_get(&m, "x", NULL), 0); /* empty, no arrays yet */
    exercise_map(&m);
    dbld_strmap_free(&m);
    assert_int_equal(m.n, 0);
    assert_int_equal(dbld_strmap_get(&m, keys[0], NULL), 0);
    dbld_strmap_free(&m); /* twice is harmless */
}

static void test_strmap_arena(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    dbld_strmap m;
    dbld_strmap_init(&m, a);
    exercise_map(&m);
    dbld_strmap_free(&m); /* nothing to free: the arena owns the arrays */
    dbld_arena_destroy(a);
}

static void test_strmap_index(void **state)
{
    (void)state;
    dbld_strmap m;
    dbld_strmap_init(&m, NULL);
    size_t next = 0;
    int added = -1;
    assert_int_equal(dbld_strmap_index(&m, "b", &next, &added), 0);
    assert_int_equal(added, 1);
    assert_int_equal(dbld_strmap_index(&m, "a", &next, &added), 1);
    assert_int_equal(added, 1);
    assert_int_equal(dbld_strmap_index(&m, "b", &next, &added), 0);
    assert_int_equal(added, 0);
    assert_int_equal(dbld_strmap_index(&m, "a", &next, NULL), 1);
    assert_int_equal(next, 2);
    /* equal strings at different addresses are one key */
    char copy[] = "b";
    assert_int_equal(dbld_strmap_index(&m, copy, &next, &added), 0);
    assert_int_equal(added, 0);
    assert_true(dbld_hash_str("a") != dbld_hash_str("b"));
    assert_int_equal(dbld_hash_str(""), 1469598103934665603ULL); /* FNV-1a offset basis */
    dbld_strmap_free(&m);
}

typedef struct item {
    int v;
    dbld_fifo_link link;
} item;

static int pop_v(dbld_fifo *q)
{
    item *it = DBLD_FIFO_ENTRY(dbld_fifo_pop(q), item, link);
    return it ? it->v : -1;
}

static void test_fifo_order(void **state)
{
    (void)state;
    item it[6];
    for (int i = 0; i < 6; i++)
        it[i].v = i;
    dbld_fifo q;
    dbld_fifo_init(&q);
    assert_int_equal(pop_v(&q), -1);
    dbld_fifo_push(&q, &it[1].link);
    dbld_fifo_push(&q, &it[2].link);
    dbld_fifo_push_front(&q, &it[0].link);
    assert_int_equal(q.n, 3);
    assert_int_equal(DBLD_FIFO_ENTRY(dbld_fifo_first(&q), item, link)->v, 0);
    assert_int_equal(DBLD_FIFO_ENTRY(dbld_fifo_last(&q), item, link)->v, 2);
    assert_int_equal(pop_v(&q), 0);
    assert_int_equal(pop_v(&q), 1);
    dbld_fifo_push(&q, &it[3].link); /* after a pop the tail is still right */
    assert_int_equal(pop_v(&q), 2);
    assert_int_equal(pop_v(&q), 3);
    assert_int_equal(pop_v(&q), -1);
    assert_int_equal(q.n, 0);
    assert_null(dbld_fifo_first(&q));
    assert_null(dbld_fifo_last(&q));
    /* empty again: both ends work */
    dbld_fifo_push_front(&q, &it[4].link);
    dbld_fifo_push(&q, &it[5].link);
    assert_int_equal(pop_v(&q), 4);
    assert_int_equal(pop_v(&q), 5);
    assert_int_equal(pop_v(&q), -1);
}

static void test_fifo_take(void **state)
{
    (void)state;
    item it[4] = {{.v = 0}, {.v = 1}, {.v = 2}, {.v = 3}};
    dbld_fifo q, all;
    dbld_fifo_init(&q);
    dbld_fifo_take(&q, &all); /* from empty */
    assert_int_equal(all.n, 0);
    assert_int_equal(pop_v(&all), -1);
    for (int i = 0; i < 3; i++)
        dbld_fifo_push(&q, &it[i].link);
    dbld_fifo_take(&q, &all);
    assert_int_equal(q.n, 0);
    assert_int_equal(pop_v(&q), -1);
    dbld_fifo_push(&q, &it[3].link); /* q is usable after take */
    assert_int_equal(all.n, 3);
    assert_int_equal(pop_v(&all), 0);
    assert_int_equal(pop_v(&all), 1);
    assert_int_equal(pop_v(&all), 2);
    assert_int_equal(pop_v(&all), -1);
    assert_int_equal(pop_v(&q), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strmap_malloc), cmocka_unit_test(test_strmap_arena),
        cmocka_unit_test(test_strmap_index),  cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_fifo_take),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
