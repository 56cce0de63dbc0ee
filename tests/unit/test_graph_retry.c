/* test_graph_retry.c - LUCI-style retry quota decisions, how a lost job
 * service is told from a failed attempt and relaunched with backoff, and the
 * other pure decisions of a task's attempts: failure kinds, launch failures,
 * claim outcomes (services/graph/retry.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../services/graph/retry.c"

#include <string.h>

static dbld_retry_config cfg(int single, int global, int fw, int tw, int tow)
{
    return (dbld_retry_config){single, global, fw, tw, tow};
}

static void test_not_enabled(void **state)
{
    (void)state;
    dbld_retry_config c = cfg(-1, 1000, 1, 1, 1);
    int used = 0, total = 0;
    const char *why;
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_TRANSIENT, 0, 1, &used, &total, &why), 0);
    assert_string_equal(why, "retry is not enabled in the config");
    assert_int_equal(used, 0);
}

static void test_single_quota_boundary(void **state)
{
    (void)state;
    dbld_retry_config c = cfg(2, 1000, 1, 1, 1);
    int used = 0, total = 0;
    const char *why;
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 1, &used, &total, &why),
                     1); /* 1 <= 2 */
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 2, &used, &total, &why),
                     1); /* 2 <= 2 */
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 3, &used, &total, &why),
                     0); /* 3 > 2 */
    assert_string_equal(why, "insufficient quota");
    assert_int_equal(used, 3);
    assert_int_equal(total, 3);
}

static void test_weights_by_kind(void **state)
{
    (void)state;
    dbld_retry_config c = cfg(10, 1000, 5, 1, 3);
    int used = 0, total = 0;
    const char *why;
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_TRANSIENT, 0, 1, &used, &total, &why), 1);
    assert_int_equal(used, 1);
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_TIMEOUT, 0, 2, &used, &total, &why), 1);
    assert_int_equal(used, 4);
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 3, &used, &total, &why), 1);
    assert_int_equal(used, 9);
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_TRANSIENT, 0, 4, &used, &total, &why), 1); /* 10 */
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_TRANSIENT, 0, 5, &used, &total, &why), 0); /* 11 */
    assert_string_equal(why, "insufficient quota");
    /* single_quota 0: the first failure with a non-zero weight is denied */
    dbld_retry_config z = cfg(0, 1000, 1, 1, 1);
    used = total = 0;
    assert_int_equal(gs_retry_decide(&z, GS_FAIL_TIMEOUT, 0, 1, &used, &total, &why), 0);
    assert_string_equal(why, "insufficient quota");
}

static void test_global_quota_shared(void **state)
{
    (void)state;
    dbld_retry_config c = cfg(5, 3, 1, 1, 1);
    int a = 0, b = 0, total = 0;
    const char *why;
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 1, &a, &total, &why), 1);
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 1, &b, &total, &why), 1);
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 2, &a, &total, &why),
                     1); /* total 3 */
    assert_int_equal(gs_retry_decide(&c, GS_FAIL_PERMANENT, 0, 2, &b, &total, &why),
                     0); /* total 4 */
    assert_string_equal(why, "insufficient global quota");
}

static void test_zero_weight_is_bounded(void **state)
{
    (void)state;
    dbld_retry_config c = cfg(1, 1, 0, 0, 0);
    int used = 0, total = 0, attempts = 0;
    const char *why;
    while (gs_retry_decide(&c, GS_FAIL_TRANSIENT, 0, ++attempts, &used, &total, &why))
        ;
    assert_int_equal(attempts, GS_RETRY_MAX_ATTEMPTS);
    assert_string_equal(why, "too many attempts");
    assert_string_equal(gs_fail_kind_name(GS_FAIL_TIMEOUT), "FAILURE_TIMEOUT");
}

/* LUCI: an all-zero retry config is no retry config; weights by kind. */
static void test_all_zero_disables(void **state)
{
    (void)state;
    dbld_retry_config z = cfg(0, 0, 0, 0, 0);
    int used = 0, total = 0;
    const char *why;
    assert_int_equal(gs_retry_enabled(&z), 0);
    assert_int_equal(gs_retry_decide(&z, GS_FAIL_TRANSIENT, 0, 1, &used, &total, &why), 0);
    assert_string_equal(why, "retry is not enabled in the config");
    dbld_retry_config on = cfg(0, 1000, 1, 1, 1);
    assert_int_equal(gs_retry_enabled(&on), 1);
    dbld_retry_config d = cfg(5, 1000, 1, 1, 1);
    assert_int_equal(gs_retry_decide(&d, GS_FAIL_PERMANENT, 1, 1, &used, &total, &why), 0);
    assert_string_equal(why, "job explicitly denies retry in its output");
    dbld_retry_config c = cfg(10, 100, 5, 1, 3);
    assert_int_equal(gs_retry_weight(&c, GS_FAIL_PERMANENT), 5);
    assert_int_equal(gs_retry_weight(&c, GS_FAIL_TRANSIENT), 1);
    assert_int_equal(gs_retry_weight(&c, GS_FAIL_TIMEOUT), 3);
}

/* Losing the executor is not an attempt; a result, a timeout or a bad
 * request is. */
static void test_classify_loss(void **state)
{
    (void)state;
    /* a result is the attempt's outcome, whatever the call's code */
    assert_int_equal(gs_run_classify_loss(0, 1, 1), GS_RUN_OUTCOME);
    assert_int_equal(gs_run_classify_loss(0, 1, 0), GS_RUN_OUTCOME);
    assert_int_equal(gs_run_classify_loss(DBLD_UNAVAILABLE, 1, 1), GS_RUN_OUTCOME);
    /* connection refused / socket closed / the stream broken before a result */
    assert_int_equal(gs_run_classify_loss(DBLD_UNAVAILABLE, 0, 0), GS_RUN_LOST_SAME_ID);
    assert_int_equal(gs_run_classify_loss(DBLD_UNAVAILABLE, 0, 1), GS_RUN_LOST_NEW_ID);
    assert_int_equal(gs_run_classify_loss(DBLD_CANCELLED, 0, 0), GS_RUN_LOST_SAME_ID);
    assert_int_equal(gs_run_classify_loss(DBLD_CANCELLED, 0, 1), GS_RUN_LOST_NEW_ID);
    assert_int_equal(gs_run_classify_loss(DBLD_RESOURCE_EXHAUSTED, 0, 0), GS_RUN_LOST_SAME_ID);
    /* the job service still holds an earlier launch of this job run */
    assert_int_equal(gs_run_classify_loss(DBLD_ALREADY_EXISTS, 0, 0), GS_RUN_LOST_NEW_ID);
    /* the job's timeout, and errors about the request, are the attempt's */
    assert_int_equal(gs_run_classify_loss(DBLD_DEADLINE_EXCEEDED, 0, 1), GS_RUN_OUTCOME);
    assert_int_equal(gs_run_classify_loss(DBLD_INVALID_ARGUMENT, 0, 0), GS_RUN_OUTCOME);
    assert_int_equal(gs_run_classify_loss(DBLD_NOT_FOUND, 0, 0), GS_RUN_OUTCOME);
    assert_int_equal(gs_run_classify_loss(DBLD_INTERNAL, 0, 0), GS_RUN_OUTCOME);
    /* a clean end without a result is turned into UNAVAILABLE by remote.c;
     * 0 without a result on its own is no loss */
    assert_int_equal(gs_run_classify_loss(0, 0, 0), GS_RUN_OUTCOME);
}

/* 100 ms, doubling, at most 10 s apart, for about 2 min from the first loss. */
static void test_backoff_schedule(void **state)
{
    (void)state;
    gs_backoff bo = {0};
    int64_t now = 5000, d = 0;
    const int64_t want[] = {100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000, 10000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        assert_int_equal(gs_backoff_next(&bo, now, GS_RELAUNCH_TOTAL_MS, &d), 1);
        assert_int_equal(d, want[i]);
        now += d;
    }
    assert_int_equal(bo.tries, 10);
    /* the last wait is cut to the budget, then it gives up */
    int64_t end = 5000 + GS_RELAUNCH_TOTAL_MS;
    now = end - 30;
    assert_int_equal(gs_backoff_next(&bo, now, GS_RELAUNCH_TOTAL_MS, &d), 1);
    assert_int_equal(d, 30);
    assert_int_equal(gs_backoff_next(&bo, end, GS_RELAUNCH_TOTAL_MS, &d), 0);
    assert_int_equal(gs_backoff_next(&bo, end + 1, GS_RELAUNCH_TOTAL_MS, &d), 0);
    /* a new attempt starts over */
    bo = (gs_backoff){0};
    assert_int_equal(gs_backoff_next(&bo, end + 2, GS_RELAUNCH_TOTAL_MS, &d), 1);
    assert_int_equal(d, GS_RELAUNCH_FIRST_MS);
    /* a small budget (tests) and a clock starting at 0 */
    bo = (gs_backoff){0};
    assert_int_equal(gs_backoff_next(&bo, 0, 250, &d), 1);
    assert_int_equal(d, 100);
    assert_int_equal(gs_backoff_next(&bo, 100, 250, &d), 1);
    assert_int_equal(d, 150);
    assert_int_equal(gs_backoff_next(&bo, 251, 250, &d), 0);
}

static void test_fail_kind_of(void **state)
{
    (void)state;
    enum { COMPLETED = DATABUILD__V1__JOB_STATUS__JOB_COMPLETED };
    enum { FAILED = DATABUILD__V1__JOB_STATUS__JOB_FAILED };
    enum { CANCELLED = DATABUILD__V1__JOB_STATUS__JOB_CANCELLED };
    /* a result: the job service's classification wins */
    assert_int_equal(gs_fail_kind_of(0, FAILED, 1), GS_FAIL_PERMANENT);
    assert_int_equal(gs_fail_kind_of(0, FAILED, 2), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(0, FAILED, 3), GS_FAIL_TIMEOUT);
    assert_int_equal(gs_fail_kind_of(0, CANCELLED, 2), GS_FAIL_TRANSIENT);
    /* unclassified: stopped by the job service is transient, else permanent */
    assert_int_equal(gs_fail_kind_of(0, CANCELLED, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(0, FAILED, 0), GS_FAIL_PERMANENT);
    assert_int_equal(gs_fail_kind_of(0, FAILED, 4), GS_FAIL_PERMANENT);
    assert_int_equal(gs_fail_kind_of(0, COMPLETED, 0), GS_FAIL_PERMANENT);
    /* no result: the call's error code */
    assert_int_equal(gs_fail_kind_of(DBLD_UNAVAILABLE, 0, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(DBLD_CANCELLED, 0, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(DBLD_RESOURCE_EXHAUSTED, 0, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(DBLD_ABORTED, 0, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(DBLD_ALREADY_EXISTS, 0, 0), GS_FAIL_TRANSIENT);
    assert_int_equal(gs_fail_kind_of(DBLD_DEADLINE_EXCEEDED, 0, 0), GS_FAIL_TIMEOUT);
    assert_int_equal(gs_fail_kind_of(DBLD_INVALID_ARGUMENT, 0, 0), GS_FAIL_PERMANENT);
    assert_int_equal(gs_fail_kind_of(DBLD_NOT_FOUND, 0, 0), GS_FAIL_PERMANENT);
    assert_int_equal(gs_fail_kind_of(DBLD_INTERNAL, 0, 0), GS_FAIL_PERMANENT);
}

static void test_launch_decide(void **state)
{
    (void)state;
    assert_int_equal(gs_launch_decide(1, 1), GS_LAUNCHED);
    assert_int_equal(gs_launch_decide(1, 0), GS_LAUNCHED);
    assert_int_equal(gs_launch_decide(0, 1), GS_LAUNCH_FAILS_BUILD);
    assert_int_equal(gs_launch_decide(0, 0), GS_LAUNCH_FAILED_LOGGED);
}

static void test_claim_decide(void **state)
{
    (void)state;
    enum { GRANTED = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED };
    enum { AVAILABLE = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE };
    enum { HELD = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD };
    assert_int_equal(gs_claim_decide(GRANTED, 0), GS_CLAIM_RUN);
    assert_int_equal(gs_claim_decide(GRANTED, 1), GS_CLAIM_RUN); /* holder_built() checks after */
    assert_int_equal(gs_claim_decide(AVAILABLE, 0), GS_CLAIM_REUSE);
    assert_int_equal(gs_claim_decide(AVAILABLE, 1), GS_CLAIM_HOLDER_BUILT);
    assert_int_equal(gs_claim_decide(HELD, 0), GS_CLAIM_DELEGATE);
    assert_int_equal(gs_claim_decide(HELD, 1), GS_CLAIM_DELEGATE);
    assert_int_equal(gs_claim_decide(0, 0), GS_CLAIM_UNEXPECTED);
    assert_int_equal(gs_claim_decide(99, 1), GS_CLAIM_UNEXPECTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_enabled),
        cmocka_unit_test(test_single_quota_boundary),
        cmocka_unit_test(test_weights_by_kind),
        cmocka_unit_test(test_global_quota_shared),
        cmocka_unit_test(test_zero_weight_is_bounded),
        cmocka_unit_test(test_all_zero_disables),
        cmocka_unit_test(test_classify_loss),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_fail_kind_of),
        cmocka_unit_test(test_launch_decide),
        cmocka_unit_test(test_claim_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
