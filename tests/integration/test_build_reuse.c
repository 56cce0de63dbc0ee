/* test_build_reuse.c - the reuse window (issue 12: "a graph or job can set a
 * reuse window (max_age)") at the graph level, and its precedence rule
 * (services/graph/README.md, *Reuse rules*): a job's own max_age_ms replaces
 * graph.max_age_ms, shorter or longer. Real event log, job, graph and query
 * processes and the test job tests/jobs/graph_job.py.
 *
 * Every expectation has seconds of room on a loaded machine: ages are taken
 * from the partitions' updated_ns, reuse is asked for at least 7 s inside a
 * window and rebuilds only after sleeping past one (an age only grows).
 */
#include "test_build_fixture.h"
#include "test_query_fixture.h"

#define GRAPH_WINDOW_MS 12000

/* //w:gw has no window of its own (the graph's 12 s applies); //w:long's
 * 600 s and //w:short's 2 s replace it. */
#define JOBS                                                                                       \
    "    - label: \"//w:gw\"\n      command: %CMD%\n      outputs: [\"gw/.*\"]\n"                  \
    "    - label: \"//w:long\"\n      command: %CMD%\n      outputs: [\"long/.*\"]\n"              \
    "      max_age_ms: 600000\n"                                                                   \
    "    - label: \"//w:short\"\n      command: %CMD%\n      outputs: [\"short/.*\"]\n"            \
    "      max_age_ms: 2000\n"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x

#define BUILT "1:ENDED/SUCCEEDED"
#define REUSED "1:ENDED/SUCCEEDED/reused"

/* Build refs to COMPLETED; its execution state. */
static Databuild__V1__BuildExecutionResponse *build(bf *b, qf *f, const char *const *refs)
{
    char *id = bf_submit(b, refs);
    Databuild__V1__BuildRequestEvent *end = bf_wait(b, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    return qf_execution_ok(f, id);
}

/* Expect ref's task in r to be `want` ("1:ENDED/SUCCEEDED[/reused]"); why
 * names the window and the age bound for a failure's message. */
static void expect(bf *b, const Databuild__V1__BuildExecutionResponse *r, const char *ref,
                   const char *want, const char *why)
{
    const char *got = qf_attempts_str(b, qf_task_of(r, ref));
    CHECK_MSG(strcmp(got, want) == 0, "%s: %s, want %s (%s)", ref, got, want, why);
}

/* graph.max_age_ms 12 s. At 5 s old: gw/1 is reused (inside the graph's
 * window) while short/1 is rebuilt (its job's 2 s window replaces the
 * graph's longer one). At 14 s old: gw/1 is rebuilt (past the graph's
 * window) while long/1 is reused (its job's 600 s window replaces the
 * graph's shorter one). */
DBLD_TEST(graph_reuse_window_and_job_precedence)
{
    bf b;
    char window[64];
    snprintf(window, sizeof window, "  max_age_ms: %d\n", GRAPH_WINDOW_MS);
    bf_opts o = {.jobs = JOBS, .rules = "[]", .graph_extra = window};
    bf_setup(&b, "graphage", &o);
    qf f = qf_over_build(&b, "");
    Databuild__V1__BuildExecutionResponse *r = build(&b, &f, H_STRS("gw/1", "long/1", "short/1"));
    expect(&b, r, "gw/1", BUILT, "first build");
    expect(&b, r, "long/1", BUILT, "first build");
    expect(&b, r, "short/1", BUILT, "first build");
    int64_t gw_built = bf_part_state(&b, "gw/1")->updated_ns;

    /* 5 s old: 3 s past short's window, 7 s inside the graph's */
    bf_age_at_least(&b, "short/1", 5000);
    bf_age_at_least(&b, "gw/1", 5000);
    r = build(&b, &f, H_STRS("gw/1", "long/1", "short/1"));
    int64_t gw_age = bf_age_ms(&b, "gw/1"); /* after the build: at least its age at the claim */
    h_note("second build done, gw/1 %lld ms old", (long long)gw_age);
    expect(&b, r, "gw/1", REUSED,
           dbld_arena_printf(b.a, "graph window %d ms, at most %lld ms old at the claim",
                             GRAPH_WINDOW_MS, (long long)gw_age));
    expect(&b, r, "long/1", REUSED, "job window 600 s");
    expect(&b, r, "short/1", BUILT, "job window 2 s replaces the graph's 12 s");
    CHECK_EQ_INT(bf_execs(&b, "gw/1"), 1);
    CHECK_EQ_INT(bf_execs(&b, "long/1"), 1);
    CHECK_EQ_INT(bf_execs(&b, "short/1"), 2);
    /* a reuse leaves the partition as it was: it still ages from its build */
    CHECK_EQ_INT(bf_part_state(&b, "gw/1")->updated_ns, gw_built);

    /* 14 s old: 2 s past the graph's window, far inside long's */
    bf_age_at_least(&b, "gw/1", GRAPH_WINDOW_MS + 2000);
    bf_age_at_least(&b, "long/1", GRAPH_WINDOW_MS + 2000);
    char *id = bf_submit(&b, H_STRS("gw/1", "long/1"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(COMPLETED));
    r = qf_execution_ok(&f, id);
    expect(&b, r, "gw/1", BUILT, "older than the graph's 12 s window");
    expect(&b, r, "long/1", REUSED, "job window 600 s replaces the graph's 12 s");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "gw/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "long/1"), "SKIPPED");
    CHECK_EQ_INT(bf_execs(&b, "gw/1"), 2);
    CHECK_EQ_INT(bf_execs(&b, "long/1"), 1);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(graph_reuse_window_and_job_precedence, 240))
