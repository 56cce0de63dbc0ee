/* test_eventlog_filter.c - the event log's in-memory EventFilter (Subscribe):
 * fields ANDed, values ORed, patterns matched against whole refs, and the
 * patterns it refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "../../services/eventlog/event_meta.c"
#include "../../services/eventlog/filter.c"

#define N(arr) (sizeof(arr) / sizeof((arr)[0]))

static el_filter *compile_ok(const Databuild__V1__EventFilter *f)
{
    el_filter *ef = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = el_filter_compile(f, NULL, 0, &ef, &st);
    if (rc) fail_msg("compile: %s", st.msg);
    return ef;
}

static void test_fields_and_values(void **state)
{
    (void)state;
    char *refs[] = {"b/2", "a/1"}, *labels[] = {"//j:x"}, *builds[] = {"br1", "br2"};
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.partition_refs = refs;
    f.n_partition_refs = N(refs);
    f.job_labels = labels;
    f.n_job_labels = N(labels);
    f.build_request_ids = builds;
    f.n_build_request_ids = N(builds);
    el_filter *ef = compile_ok(&f);
    const char *e_refs[] = {"c/3", "a/1"}, *e_labels[] = {"//j:y", "//j:x"};
    el_fields e = {
        .build_request_id = "br2", .refs = e_refs, .n_refs = 2, .labels = e_labels, .n_labels = 2};
    assert_true(el_filter_match(ef, &e));
    e.build_request_id = "br3"; /* fields are ANDed */
    assert_false(el_filter_match(ef, &e));
    e.build_request_id = "br1";
    e.n_labels = 1; /* only //j:y */
    assert_false(el_filter_match(ef, &e));
    e.n_labels = 2;
    e.n_refs = 1; /* only c/3 */
    assert_false(el_filter_match(ef, &e));
    el_filter_free(ef);

    ef = compile_ok(NULL); /* no filter: everything */
    assert_true(el_filter_match(ef, &e));
    el_filter_free(ef);
}

static void test_patterns_match_whole_refs(void **state)
{
    (void)state;
    char *pats[] = {"s/[a-z]+/p=1[0-9]", "x|y"};
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.partition_patterns = pats;
    f.n_partition_patterns = N(pats);
    el_filter *ef = compile_ok(&f);
    const char *hit[] = {"nope", "s/abc/p=17"}, *prefix[] = {"s/abc/p=170"}, *alt[] = {"y"},
               *alt_part[] = {"xy"};
    el_fields e = {.refs = hit, .n_refs = 2};
    assert_true(el_filter_match(ef, &e));
    e = (el_fields){.refs = prefix, .n_refs = 1};
    assert_false(el_filter_match(ef, &e));
    e = (el_fields){.refs = alt, .n_refs = 1};
    assert_true(el_filter_match(ef, &e)); /* "x|y" is anchored as a whole */
    e = (el_fields){.refs = alt_part, .n_refs = 1};
    assert_false(el_filter_match(ef, &e));
    e = (el_fields){.n_refs = 0}; /* an event without refs fails a pattern filter */
    assert_false(el_filter_match(ef, &e));
    el_filter_free(ef);
}

static void expect_refused(const char *pattern, const char *want)
{
    char *pats[] = {"ok/.*", (char *)pattern};
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.partition_patterns = pats;
    f.n_partition_patterns = 2;
    el_filter *ef = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    assert_int_equal(el_filter_compile(&f, NULL, 0, &ef, &st), DBLD_INVALID_ARGUMENT);
    assert_null(ef);
    if (!strstr(st.msg, want))
        fail_msg("\"%s\": message \"%s\" lacks \"%s\"", pattern, st.msg, want);
}

static void test_refused_patterns(void **state)
{
    (void)state;
    expect_refused("p=\\d+", "backslash before a letter");
    expect_refused("p=[\\d]", "inside []");
    expect_refused("a)|(b", "')' without its '('");
    expect_refused("a[bc", "bracket expression is not closed");
    expect_refused("a[[:alpha]", "bracket expression is not closed");
    expect_refused("a\\", "ends in a backslash");
    expect_refused("a{1,2", "partition_patterns[1]");
    char longpat[EL_PATTERN_MAX + 2];
    memset(longpat, 'a', sizeof longpat - 1);
    longpat[sizeof longpat - 1] = '\0';
    expect_refused(longpat, "the limit is 1024");
    /* what both engines read alike is accepted */
    char *fine[] = {"a\\.b", "[)(]x", "[]a]+", "[[:digit:]]{4}-\\w+\\s?", "(a|b)*c"};
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.partition_patterns = fine;
    f.n_partition_patterns = N(fine);
    el_filter_free(compile_ok(&f));
}

static void test_kinds(void **state)
{
    (void)state;
    char *builds[] = {"br1"};
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.build_request_ids = builds;
    f.n_build_request_ids = 1;
    int32_t kinds[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT,
                       DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT};
    el_filter *ef = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    assert_int_equal(el_filter_compile(&f, kinds, N(kinds), &ef, &st), 0);
    el_fields e = {.build_request_id = "br1",
                   .kind = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT};
    assert_true(el_filter_match(ef, &e));
    e.kind = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT;
    assert_true(el_filter_match(ef, &e));
    e.kind = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT; /* not asked for */
    assert_false(el_filter_match(ef, &e));
    e.kind = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT;
    e.build_request_id = "br2"; /* ANDed with the other fields */
    assert_false(el_filter_match(ef, &e));
    el_filter_free(ef);

    int32_t bad[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT, 20};
    assert_int_equal(el_filter_compile(&f, bad, N(bad), &ef, &st), DBLD_INVALID_ARGUMENT);
    assert_null(ef);
    assert_non_null(strstr(st.msg, "kinds[1] is 20, which is no BuildEvent kind"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_and_values),
        cmocka_unit_test(test_patterns_match_whole_refs),
        cmocka_unit_test(test_refused_patterns),
        cmocka_unit_test(test_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
