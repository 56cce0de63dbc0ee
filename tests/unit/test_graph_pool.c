/* test_graph_pool.c - the graph coordinator's fixed thread pools
 * (services/graph/pool.c): admission up to threads + max_queue, items run on
 * the pool's threads, and a stop that leaves queued items unrun and waits a
 * bounded time for a running one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../services/graph/pool.c"

#include <stdatomic.h>

typedef struct item {
    gs_work work;
    atomic_int *ran;
    atomic_int *gate; /* NULL: return at once; else wait until it is 1 */
} item;

static void item_fn(gs_work *w)
{
    item *it = DBLD_FIFO_ENTRY(&w->link, item, work);
    while (it->gate && !atomic_load(it->gate))
        dbld_sleep_ms(5);
    atomic_fetch_add(it->ran, 1);
}

static void test_reserve_bounds(void **state)
{
    (void)state;
    gs_pool *p = NULL;
    dbld_status st;
    assert_int_equal(gs_pool_create("t", 1, 1, 0, &p, &st), 0);
    assert_int_equal(gs_pool_reserve(p, "builds", &st), 0);
    assert_int_equal(gs_pool_reserve(p, "builds", &st), 0);
    assert_int_equal(gs_pool_reserve(p, "builds", &st), DBLD_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(st.msg, "builds: busy: 0 running, 2 queued"));
    assert_non_null(strstr(st.msg, "at most 1 running and 1 queued"));
    gs_pool_unreserve(p);
    assert_int_equal(gs_pool_reserve(p, "builds", &st), 0); /* room again */
    gs_pool_unreserve(p);
    gs_pool_unreserve(p);
    assert_int_equal(gs_pool_stop(p, 1000), 0);
}

static void test_items_run_on_the_threads(void **state)
{
    (void)state;
    gs_pool *p = NULL;
    dbld_status st;
    assert_int_equal(gs_pool_create("t", 2, -1, 1 << 20, &p, &st), 0);
    atomic_int ran;
    atomic_init(&ran, 0);
    item items[50];
    for (int i = 0; i < 50; i++) {
        items[i] = (item){.work.fn = item_fn, .ran = &ran};
        gs_pool_push(p, &items[i].work, 0); /* no bound without max_queue */
    }
    for (int i = 0; i < 2000 && atomic_load(&ran) < 50; i++)
        dbld_sleep_ms(5);
    assert_int_equal(atomic_load(&ran), 50);
    assert_int_equal(gs_pool_reserve(p, "tasks", &st), 0); /* finished items gave their room back */
    gs_pool_unreserve(p);
    assert_int_equal(gs_pool_stop(p, 1000), 0);
}

static void test_stop_leaves_queued_and_bounds_the_wait(void **state)
{
    (void)state;
    gs_pool *p = NULL;
    dbld_status st;
    assert_int_equal(gs_pool_create("t", 1, 4, 0, &p, &st), 0);
    atomic_int ran, gate;
    atomic_init(&ran, 0);
    atomic_init(&gate, 0);
    item busy = {.work.fn = item_fn, .ran = &ran, .gate = &gate};
    item queued = {.work.fn = item_fn, .ran = &ran};
    assert_int_equal(gs_pool_reserve(p, "builds", &st), 0);
    gs_pool_push(p, &busy.work, 1);
    gs_pool_push(p, &queued.work, 0);
    int running = 0, waiting = 0;
    for (int i = 0; i < 2000 && running == 0; i++) {
        gs_pool_counts(p, &running, &waiting);
        if (!running) dbld_sleep_ms(5);
    }
    assert_int_equal(running, 1);
    assert_int_equal(waiting, 1);
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(gs_pool_stop(p, 100), 1); /* the busy item outlives the wait */
    assert_true(dbld_mono_ms() - t0 < 2000);
    assert_int_equal(gs_pool_reserve(p, "builds", &st), DBLD_UNAVAILABLE);
    atomic_store(&gate, 1);
    assert_int_equal(gs_pool_stop(p, 5000), 0); /* now it ends; the pool is freed */
    assert_int_equal(atomic_load(&ran), 1);     /* the queued item never ran */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_bounds),
        cmocka_unit_test(test_items_run_on_the_threads),
        cmocka_unit_test(test_stop_leaves_queued_and_bounds_the_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
