/* test_process.c - lib/process.c: bounded error lists (newest kept, totals
 * counted: 25 per run, 10 per work item), stats, params merge, state words, and unknown fields that
 * survive a pack/unpack round trip and read back as the declared message
 * (WantStateInfo inside a PartitionWantSummary). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/process.h"

#include <stdio.h>
#include <string.h>

static void test_errors_bounded(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__ProcessStatus *s = dbld_arena_msg(a, &databuild__v1__process_status__descriptor);
    for (int i = 0; i < 30; i++) {
        char text[16];
        snprintf(text, sizeof text, "e%d", i);
        dbld_pstatus_add_error(a, s, 1000 + i, text, DBLD_PROC_RUN_ERRORS);
    }
    assert_int_equal(s->total_errors, 30);
    assert_int_equal(s->n_errors, DBLD_PROC_RUN_ERRORS);
    assert_string_equal(s->errors[0]->text, "e5"); /* the oldest five dropped */
    assert_string_equal(s->errors[24]->text, "e29");
    assert_int_equal(s->last_error_ns, 1029);
    dbld_pstatus_add_stat(a, s, "x", 2);
    dbld_pstatus_add_stat(a, s, "x", 3);
    assert_true(dbld_pstatus_stat(s, "x") == 5);
    assert_true(dbld_pstatus_stat(s, "missing") == 0);
    dbld_arena_destroy(a);
}

static void test_item_errors_bounded(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__ProcessStatus *s = dbld_arena_msg(a, &databuild__v1__process_status__descriptor);
    for (int i = 1; i <= 13; i++) { /* one item failing 13 times */
        char text[32];
        snprintf(text, sizeof text, "attempt %d", i);
        dbld_pstatus_add_error(a, s, 2000 + i, text, DBLD_PROC_ITEM_ERRORS);
        assert_int_equal(s->total_errors, i);
        assert_int_equal(s->n_errors, i < DBLD_PROC_ITEM_ERRORS ? i : DBLD_PROC_ITEM_ERRORS);
    }
    assert_int_equal(DBLD_PROC_ITEM_ERRORS, 10);
    for (int k = 0; k < 10; k++) { /* the newest 10, oldest first */
        char want[32];
        snprintf(want, sizeof want, "attempt %d", k + 4);
        assert_string_equal(s->errors[k]->text, want);
        assert_int_equal(s->errors[k]->time_ns, 2004 + k);
    }
    assert_int_equal(s->last_error_ns, 2013);
    /* a round trip keeps the list and the total */
    size_t n;
    uint8_t *b = dbld_msg_pack(a, &s->base, &n);
    Databuild__V1__ProcessStatus *back = dbld_pstatus_unpack(a, b, n);
    assert_int_equal(back->total_errors, 13);
    assert_int_equal(back->n_errors, 10);
    assert_string_equal(back->errors[9]->text, "attempt 13");
    /* cap 0 counts without keeping */
    dbld_pstatus_add_error(a, back, 3000, "x", 0);
    assert_int_equal(back->total_errors, 14);
    assert_int_equal(back->n_errors, 10);
    assert_int_equal(back->last_error_ns, 3000);
    dbld_arena_destroy(a);
}

static void test_params(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__ProcessParams *p = dbld_arena_msg(a, &databuild__v1__process_params__descriptor);
    Databuild__V1__ProcessParams *q = dbld_arena_msg(a, &databuild__v1__process_params__descriptor);
    dbld_params_set_int(a, p, "max_item_errors", 5);
    dbld_params_set_str(a, p, "refs", "a/1");
    dbld_params_set_int(a, q, "max_item_errors", 3);
    dbld_params_set_int(a, q, "retry_backoff_ms", 100);
    dbld_params_merge(a, p, q);
    assert_int_equal(dbld_params_int(p, "max_item_errors", 0), 3);
    assert_int_equal(dbld_params_int(p, "retry_backoff_ms", 0), 100);
    assert_string_equal(dbld_params_str(p, "refs", ""), "a/1");
    assert_int_equal(dbld_params_int(p, "nope", 7), 7);
    size_t n;
    uint8_t *b = dbld_msg_pack(a, &p->base, &n);
    Databuild__V1__ProcessParams *back = dbld_params_unpack(a, b, n);
    assert_int_equal(dbld_params_int(back, "max_item_errors", 0), 3);
    assert_non_null(dbld_params_unpack(a, NULL, 0)); /* empty: an empty message */
    assert_string_equal(dbld_process_state_word(DATABUILD__V1__PROCESS_STATE__PROCESS_NEW),
                        "queued");
    assert_string_equal(dbld_process_state_name(DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED),
                        "ABORTED");
    assert_string_equal(dbld_process_state_word(99), "unspecified");
    dbld_arena_destroy(a);
}

static void test_unknown_fields_round_trip(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionWantSummary *s =
        dbld_arena_msg(a, &databuild__v1__partition_want_summary__descriptor);
    s->comment = "c";
    dbld_pb_add_unknown_varint(a, &s->base, DBLD_WANT_STATE,
                               DATABUILD__V1__WANT_STATE__WANT_FAILED);
    char reason[300];
    memset(reason, 'r', sizeof reason - 1); /* a length prefix of two bytes */
    reason[sizeof reason - 1] = 0;
    dbld_pb_add_unknown_string(a, &s->base, DBLD_WANT_STATE_REASON, reason);
    size_t n;
    uint8_t *b = dbld_msg_pack(a, &s->base, &n);
    /* a seed reader keeps them as unknown fields */
    Databuild__V1__PartitionWantSummary *back =
        databuild__v1__partition_want_summary__unpack(dbld_arena_allocator(a), n, b);
    assert_non_null(back);
    assert_string_equal(back->comment, "c");
    assert_int_equal(dbld_pb_unknown_varint(&back->base, DBLD_WANT_STATE),
                     DATABUILD__V1__WANT_STATE__WANT_FAILED);
    assert_string_equal(dbld_pb_unknown_string(a, &back->base, DBLD_WANT_STATE_REASON), reason);
    assert_null(dbld_pb_unknown_string(a, &back->base, 1999));
    /* a reader of WantStateInfo sees them as its fields */
    Databuild__V1__WantStateInfo *info =
        databuild__v1__want_state_info__unpack(dbld_arena_allocator(a), n, b);
    assert_non_null(info);
    assert_int_equal(info->state, DATABUILD__V1__WANT_STATE__WANT_FAILED);
    assert_string_equal(info->state_reason, reason);
    /* and a re-pack of the seed reader's copy keeps them */
    uint8_t *b2 = dbld_msg_pack(a, &back->base, &n);
    info = databuild__v1__want_state_info__unpack(dbld_arena_allocator(a), n, b2);
    assert_non_null(info);
    assert_string_equal(info->state_reason, reason);
    dbld_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_bounded),
        cmocka_unit_test(test_item_errors_bounded),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_unknown_fields_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
