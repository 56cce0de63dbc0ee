/* test_db_domain.c - the domain predicates of lib/db_domain.c agree with
 * their SQL spellings in dbld/db_domain.h, value by value over each enum:
 * a status the C code calls terminal is in the SQL list, and nothing else
 * is (the header's _Static_asserts tie the lists to the proto enums). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/db_domain.h"

#include <stdlib.h>
#include <string.h>

/* 1 when v is one of the comma-separated integers of list. */
static int in_list(const char *list, int v)
{
    const char *s = list;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        assert_true(end != s); /* a list of integers */
        if (x == v) return 1;
        s = end;
        while (*s == ',' || *s == ' ')
            s++;
    }
    return 0;
}

static void each_value(const ProtobufCEnumDescriptor *d, int (*pred)(int), const char *list)
{
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        if (pred(v) != in_list(list, v))
            fail_msg("%s %s: predicate %d, SQL list \"%s\"", d->name, d->values[i].name, pred(v),
                     list);
    }
    assert_false(pred(-1));
    assert_false(in_list(list, -1));
}

static void build_terminal(void **state)
{
    (void)state;
    each_value(&databuild__v1__build_request_status_code__descriptor, dbld_build_terminal,
               DBLD_SQL_BUILD_TERMINAL);
    /* started and terminal never overlap */
    const ProtobufCEnumDescriptor *d = &databuild__v1__build_request_status_code__descriptor;
    for (unsigned i = 0; i < d->n_values; i++)
        assert_false(dbld_build_started(d->values[i].value) &&
                     dbld_build_terminal(d->values[i].value));
    assert_true(
        dbld_build_started(DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PLANNING));
}

static int job_terminal_sql(int v)
{
    return in_list(DBLD_SQL_JOB_DONE, v) || in_list(DBLD_SQL_JOB_FAILED, v) ||
           in_list(DBLD_SQL_JOB_CANCELLED, v);
}

static void job_terminal(void **state)
{
    (void)state;
    const ProtobufCEnumDescriptor *d = &databuild__v1__job_status__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        int v = d->values[i].value;
        assert_int_equal(dbld_job_terminal(v), job_terminal_sql(v));
        /* active (SCHEDULED, RUNNING) is neither terminal nor unknown */
        if (in_list(DBLD_SQL_JOB_ACTIVE, v)) assert_false(dbld_job_terminal(v));
    }
    assert_true(in_list(DBLD_SQL_JOB_DONE, DATABUILD__V1__JOB_STATUS__JOB_SKIPPED));
    assert_true(in_list(DBLD_SQL_JOB_COMPLETED, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED));
}

static void partition_intent(void **state)
{
    (void)state;
    each_value(&databuild__v1__partition_status__descriptor, dbld_partition_intent,
               DBLD_SQL_PART_INTENT);
    /* what an intent keeps is never an intent */
    assert_false(dbld_partition_intent(DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING));
    assert_false(dbld_partition_intent(DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE));
    assert_true(
        in_list(DBLD_SQL_PART_PROGRESS, DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE));
}

static void kinds(void **state)
{
    (void)state;
    /* each kind constant is the field number of its BuildEvent oneof member */
    const ProtobufCMessageDescriptor *d = &databuild__v1__build_event__descriptor;
    struct {
        const char *sql, *field;
    } k[] = {{DBLD_SQL_KIND_BUILD_REQUEST, "build_request_event"},
             {DBLD_SQL_KIND_PARTITION, "partition_event"},
             {DBLD_SQL_KIND_JOB, "job_event"},
             {DBLD_SQL_KIND_DELEGATION, "delegation_event"},
             {DBLD_SQL_KIND_JOB_GRAPH, "job_graph_event"},
             {DBLD_SQL_KIND_INVALIDATION, "partition_invalidation_event"},
             {DBLD_SQL_KIND_JOB_RUN_CANCEL, "job_run_cancel_event"},
             {DBLD_SQL_KIND_BUILD_CANCEL, "build_cancel_event"},
             {DBLD_SQL_KIND_EXECUTION, "execution_event"}};
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(d, k[i].field);
        assert_non_null(f);
        assert_int_equal((int)f->id, atoi(k[i].sql));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_terminal),
        cmocka_unit_test(job_terminal),
        cmocka_unit_test(partition_intent),
        cmocka_unit_test(kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
