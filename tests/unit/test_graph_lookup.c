/* test_graph_lookup.c - ref -> job lookup (services/graph/lookup.c):
 * patterns match whole refs only, external patterns,
 * GraphLookup grouping (one TaskRef per label, refs in order), and the
 * defensive check that names both jobs when a config that skipped
 * dbld_config_parse()'s overlap check lets two jobs match a ref. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../services/graph/lookup.c"

#include <string.h>

static const char *yaml =
    "graph:\n"
    "  external: [\"raw/.*\", \"s3://[a-z]+/x\"]\n"
    "  jobs:\n"
    "    - {label: \"//a\", command: [x], outputs: [\"a/[0-9]\", \"aa/.*\"]}\n"
    "    - {label: \"//b\", command: [x], outputs: [\"b/.*|bb/[0-9]+\"]}\n"
    "    - {label: \"//c\", command: [x], outputs: [\"c/(x|y)\"]}\n"
    "    - {label: \"//d\", command: [x], outputs: [\"c/z.*\"]}\n";

typedef struct fx {
    dbld_config cfg;
    gs_lookup *l;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    dbld_status st;
    assert_int_equal(dbld_config_parse(yaml, strlen(yaml), "t.yaml", &f->cfg, &st), 0);
    assert_int_equal(gs_lookup_create(&f->cfg, &f->l, &st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    gs_lookup_destroy(f->l);
    dbld_config_free(&f->cfg);
    free(f);
    return 0;
}

static size_t job_of(fx *f, const char *ref, int *rc, dbld_status *st)
{
    size_t job;
    *rc = gs_lookup_ref(f->l, ref, &job, st);
    return job;
}

static void test_full_match(void **state)
{
    fx *f = *state;
    dbld_status st;
    int rc;
    assert_int_equal(job_of(f, "a/1", &rc, &st), 0);
    assert_int_equal(job_of(f, "a/12", &rc, &st), GS_LOOKUP_NONE); /* a/[0-9] is anchored */
    assert_int_equal(job_of(f, "xa/1", &rc, &st), GS_LOOKUP_NONE);
    assert_int_equal(job_of(f, "aa/anything", &rc, &st), 0); /* second pattern */
    /* alternation is grouped: "b/.*|bb/[0-9]+" must match in full either way */
    assert_int_equal(job_of(f, "b/x", &rc, &st), 1);
    assert_int_equal(job_of(f, "bb/12", &rc, &st), 1);
    assert_int_equal(job_of(f, "bb/12x", &rc, &st), GS_LOOKUP_NONE);
    assert_int_equal(job_of(f, "", &rc, &st), GS_LOOKUP_NONE);
    assert_int_equal(rc, 0);
}

static void test_ambiguous(void **state)
{
    fx *f = *state;
    dbld_status st;
    int rc;
    /* dbld_config_parse() refuses "c/.*" for //d next to //c's "c/(x|y)"; a
     * config built around it still gets both jobs named at lookup */
    gs_lookup_destroy(f->l);
    free(f->cfg.graph.jobs[3].outputs[0]);
    f->cfg.graph.jobs[3].outputs[0] = strdup("c/.*");
    assert_int_equal(gs_lookup_create(&f->cfg, &f->l, &st), 0);
    assert_int_equal(job_of(f, "c/x", &rc, &st), GS_LOOKUP_NONE);
    assert_int_equal(rc, DBLD_FAILED_PRECONDITION);
    assert_non_null(strstr(st.msg, "c/x"));
    assert_non_null(strstr(st.msg, "//c"));
    assert_non_null(strstr(st.msg, "//d"));
    assert_int_equal(job_of(f, "c/z", &rc, &st), 3);
    assert_int_equal(rc, 0);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__GraphLookupResponse *r = NULL;
    const char *amb[] = {"c/y"};
    assert_int_equal(gs_lookup_group(f->l, amb, 1, a, &r, &st), DBLD_FAILED_PRECONDITION);
    dbld_arena_destroy(a);
}

static void test_external(void **state)
{
    fx *f = *state;
    assert_true(gs_lookup_external(f->l, "raw/2024"));
    assert_true(gs_lookup_external(f->l, "s3://bucket/x"));
    assert_false(gs_lookup_external(f->l, "s3://bucket/xy"));
    assert_false(gs_lookup_external(f->l, "xraw/1"));
}

static void test_group(void **state)
{
    fx *f = *state;
    dbld_arena *a = dbld_arena_create();
    dbld_status st;
    Databuild__V1__GraphLookupResponse *r = NULL;
    const char *refs[] = {"b/1", "a/1", "b/2", "aa/q", "c/z"};
    assert_int_equal(gs_lookup_group(f->l, refs, 5, a, &r, &st), 0);
    assert_int_equal(r->n_task_refs, 3);
    assert_string_equal(r->task_refs[0]->job->label, "//b");
    assert_int_equal(r->task_refs[0]->n_outputs, 2);
    assert_string_equal(r->task_refs[0]->outputs[1]->str, "b/2");
    assert_string_equal(r->task_refs[1]->job->label, "//a");
    assert_string_equal(r->task_refs[1]->outputs[1]->str, "aa/q");
    assert_string_equal(r->task_refs[2]->job->label, "//d");
    const char *bad[] = {"a/1", "nope/1"};
    assert_int_equal(gs_lookup_group(f->l, bad, 2, a, &r, &st), DBLD_NOT_FOUND);
    assert_non_null(strstr(st.msg, "nope/1"));
    dbld_arena_destroy(a);
}

static void test_shell_characters(void **state)
{
    fx *f = *state;
    dbld_status st;
    int rc;
    /* '.' matches any character, a newline included: refs are opaque strings */
    assert_int_equal(job_of(f, "aa/it's \"x\" $(rm -rf /) ; | & \\ \n", &rc, &st), 0);
    assert_int_equal(job_of(f, "aa/it's \"x\" $(rm -rf /) ; | & \\", &rc, &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ambiguous, setup, teardown),
        cmocka_unit_test_setup_teardown(test_external, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shell_characters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
