/* test_week_control.c - the control plane over the example pipeline: the
 * graph of examples/databuild.yaml (its graph.jobs, read from the file) and
 * its real jobs (the scripts in examples/jobs, writing under the test's directory),
 * with real event log, job, graph and query services.
 *
 *  - A want put on report/week=W, and no build command, becomes AVAILABLE:
 *    the reconciler's one build ran exactly the week's 36 tasks (7 ingests,
 *    28 aggregates, 1 report) and records the want (BuildRequestEvent.want_id,
 *    the BuildRequestWants extension, ListBuildRequests' triggering_want_ids).
 *  - A taint of one day's raw partition of a built week, then a rebuild of
 *    the week: exactly that day's chain (1 ingest, 4 aggregates, 1 report)
 *    runs again and nothing else does - after a build command, and with a
 *    live want on the report and no build command.
 *
 * Job runs are read back with ListJobRuns (every page) and compared as
 * sorted "ref <- job label" lines, so a failure shows the whole difference.
 */
#include "test_processes_fixture.h"
#include "test_query_fixture.h"

#include <stdlib.h>
#include <sys/stat.h>

#define WEEK "2025-W03" /* Monday 2025-01-13 .. Sunday 2025-01-19 */
#define REPORT "report/week=" WEEK
#define DAY "2025-01-15" /* its Wednesday */
#define RAW_DAY "raw/reviews/date=" DAY
#define LABEL "//examples/reviews:"
#define RUN_MS 300000 /* a week's build, on a loaded 2-core machine under ASan */

static const char *const categories[] = {"books", "electronics", "garden", "toys"};

/* Replace every `from` in text by `to`; CHECKs that there were `times` of them. */
static char *replace(dbld_arena *a, const char *text, const char *from, const char *to, int times)
{
    char *out = "";
    int n = 0;
    const char *p = text, *q;
    for (; (q = strstr(p, from)) != NULL; p = q + strlen(from), n++)
        out = dbld_arena_printf(a, "%s%.*s%s", out, (int)(q - p), p, to);
    CHECK_MSG(n == times, "examples/databuild.yaml: %d of \"%s\" in graph.jobs, expected %d", n,
              from, times);
    return dbld_arena_printf(a, "%s%s", out, p);
}

/* graph.jobs of examples/databuild.yaml (its "    " lines after "  jobs:"
 * in the graph section, comments left out), the jobs' relative paths made
 * absolute and their DATA_DIR set to data_dir. */
static char *example_jobs(dbld_arena *a, const char *data_dir)
{
    char *text = h_read_file(DBLD_SOURCE_DIR "/examples/databuild.yaml", NULL);
    CHECK(text != NULL);
    char *graph = strstr(text, "\ngraph:\n");
    CHECK(graph != NULL);
    char *p = strstr(graph, "\n  jobs:\n");
    CHECK(p != NULL);
    p += strlen("\n  jobs:\n");
    char *jobs = "";
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        size_t ind = strspn(p, " ");
        if (ind < len && p[ind] == '#') {
            /* a comment line */
        } else if (ind >= 4) {
            jobs = dbld_arena_printf(a, "%s%.*s\n", jobs, (int)len, p);
        } else if (ind < len) {
            break; /* the next key of the graph section, or the next section */
        }
        p = nl ? nl + 1 : p + len;
    }
    free(text);
    jobs = replace(a, jobs, "examples/jobs/", DBLD_SOURCE_DIR "/examples/jobs/", 3);
    return replace(a, jobs, "DATA_DIR=var/data", dbld_arena_printf(a, "DATA_DIR=%s", data_dir), 3);
}

static void setup(pf *f, const char *hint)
{
    static dbld_arena *a; /* the jobs' YAML, read before pf_setup makes f's arena */
    if (!a) a = dbld_arena_create();
    char *data = dbld_arena_printf(a, "%s/data", h_test_dir());
    CHECK(mkdir(data, 0755) == 0);
    pf_setup(f, hint, example_jobs(a, data), NULL, NULL);
    CHECK_CONTAINS(f->b.graph_yaml, LABEL "weekly_report");
}

/* ---- expected runs: sorted "ref <- label" lines ---- */

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static char *sorted_lines(dbld_arena *a, char **lines, size_t n)
{
    qsort(lines, n, sizeof *lines, cmp_str);
    char *s = "";
    for (size_t i = 0; i < n; i++)
        s = dbld_arena_printf(a, "%s%s\n", s, lines[i]);
    return s;
}

/* The job of the example graph that builds ref. */
static const char *job_of(const char *ref)
{
    if (strncmp(ref, "raw/", 4) == 0) return LABEL "ingest";
    if (strncmp(ref, "agg/", 4) == 0) return LABEL "aggregate";
    return LABEL "weekly_report";
}

static char *line_for(dbld_arena *a, const char *ref)
{
    return dbld_arena_printf(a, "%s <- %s", ref, job_of(ref));
}

/* The runs of the days [first, first + days) of the week's dates plus the report. */
static size_t day_lines(dbld_arena *a, int first, int days, char **out)
{
    size_t n = 0;
    for (int d = first; d < first + days; d++) {
        const char *date = dbld_arena_printf(a, "2025-01-%02d", 13 + d);
        out[n++] = line_for(a, dbld_arena_printf(a, "raw/reviews/date=%s", date));
        for (size_t c = 0; c < 4; c++)
            out[n++] =
                line_for(a, dbld_arena_printf(a, "agg/category=%s/date=%s", categories[c], date));
    }
    out[n++] = line_for(a, REPORT);
    return n;
}

/* Sorted lines of the week's 36 runs (week) and of the tainted day's 6 (day). */
static char *expected(dbld_arena *a, int week, int day)
{
    char *lines[80];
    size_t n = week ? day_lines(a, 0, 7, lines) : 0;
    if (day) n += day_lines(a, 2, 1, lines + n);
    return sorted_lines(a, lines, n);
}

/* ---- what ran ---- */

/* Every job run (of build_id; NULL: of every build), every page of ListJobRuns. */
static Databuild__V1__JobRunSummary **job_runs(pf *f, const char *build_id, size_t *n)
{
    qf q = {.q = f->q, .a = f->b.a};
    Databuild__V1__JobRunSummary **all = NULL;
    *n = 0;
    uint64_t until = 0;
    for (int page = 0; page < 100; page++) {
        Databuild__V1__ListJobRunsRequest req = DATABUILD__V1__LIST_JOB_RUNS_REQUEST__INIT;
        char *ids[] = {(char *)build_id};
        req.build_reqeust_ids = ids;
        req.n_build_reqeust_ids = build_id ? 1 : 0;
        req.started_until = until;
        Databuild__V1__ListJobRunsResponse *r =
            QF_OK(&q, "ListJobRuns", &req, Databuild__V1__ListJobRunsResponse,
                  databuild__v1__list_job_runs_response__descriptor);
        if (r->n_job_runs == 0) return all;
        for (size_t i = 0; i < r->n_job_runs; i++)
            *(Databuild__V1__JobRunSummary **)dbld_arena_push(f->b.a, &all, n, sizeof *all) =
                r->job_runs[i];
        until = r->min_start_at;
    }
    H_FAIL("ListJobRuns: more than 100 pages");
}

/* The runs that did run (every one but SKIPPED) as sorted "ref <- label"
 * lines; CHECKs that each COMPLETED with one target. */
static char *ran(pf *f, const char *build_id)
{
    size_t n;
    Databuild__V1__JobRunSummary **runs = job_runs(f, build_id, &n);
    char **lines = dbld_arena_alloc(f->b.a, (n + 1) * sizeof *lines);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__JobRunSummary *r = runs[i];
        if (r->status_code == DATABUILD__V1__JOB_STATUS__JOB_SKIPPED) continue;
        CHECK_MSG(r->n_target_partitions == 1, "run %s of %s has %zu targets", r->job_run_id,
                  r->job_label, r->n_target_partitions);
        CHECK_MSG(r->status_code == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED,
                  "run %s of %s is %s: %s", r->target_partitions[0]->str, r->job_label,
                  r->status_name, r->message);
        lines[k++] =
            dbld_arena_printf(f->b.a, "%s <- %s", r->target_partitions[0]->str, r->job_label);
    }
    return sorted_lines(f->b.a, lines, k);
}

/* ListBuildRequests, newest first (one page: these tests make a few builds);
 * want_id: only the builds it triggered. */
static Databuild__V1__ListBuildsResponse *builds(pf *f, const char *want_id)
{
    qf q = {.q = f->q, .a = f->b.a};
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    char *ids[] = {(char *)want_id};
    req.triggering_want_ids = ids;
    req.n_triggering_want_ids = want_id ? 1 : 0;
    Databuild__V1__ListBuildsResponse *r =
        QF_OK(&q, "ListBuildRequests", &req, Databuild__V1__ListBuildsResponse,
              databuild__v1__list_builds_response__descriptor);
    CHECK(!r->has_more);
    return r;
}

static int build_status(const Databuild__V1__BuildSummary *b)
{
    return b->status ? (int)b->status->code : 0;
}

/* 1 once want_id triggered n builds and the newest ended. */
static int want_builds_ended(pf *f, const char *want_id, size_t n)
{
    Databuild__V1__ListBuildsResponse *r = builds(f, want_id);
    return r->n_builds == n && bf_terminal(build_status(r->builds[0]));
}

/* The build's RECEIVED event names want_id (BuildRequestEvent.want_id) and
 * no other want (its BuildRequestWants, which lists every want of a build
 * serving several). */
static void check_build_records_want(pf *f, const char *build_id, const char *want_id)
{
    h_event_list l = bf_events(&f->b, build_id);
    int received = 0;
    for (size_t i = 0; i < l.n; i++) {
        Databuild__V1__BuildRequestEvent *e = l.events[i]->build_request_event;
        if (l.events[i]->event_type_case !=
                DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT ||
            e->status->code != DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED)
            continue;
        received++;
        CHECK_EQ_STR(e->want_id, want_id);
        size_t len;
        uint8_t *b = dbld_msg_pack(f->b.a, &e->base, &len);
        Databuild__V1__BuildRequestWants *w =
            databuild__v1__build_request_wants__unpack(dbld_arena_allocator(f->b.a), len, b);
        CHECK(w != NULL);
        for (size_t k = 0; k < w->n_want_ids; k++) /* written only for a build of several */
            CHECK_EQ_STR(w->want_ids[k], want_id);
    }
    CHECK_EQ_INT(received, 1);
}

static void put_taint(pf *f, const char *ref)
{
    qf q = {.q = f->q, .a = f->b.a};
    Databuild__V1__PutTaintsRequest req = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    req.refs = bf_prefs(f->b.a, (const char *const[]){ref, NULL}, &req.n_refs);
    req.comment = "bad input";
    QF_OK(&q, "PutTaints", &req, Databuild__V1__PutTaintsResponse,
          databuild__v1__put_taints_response__descriptor);
}

/* The taint of RAW_DAY reached every partition built from it, and only those. */
static void check_stale_day(pf *f)
{
    CHECK_MSG(H_POLL_UNTIL(60000, bf_tainted(&f->b, REPORT)), "%s not made stale", REPORT);
    CHECK(bf_tainted(&f->b, RAW_DAY));
    for (size_t c = 0; c < 4; c++) {
        CHECK(bf_tainted(&f->b,
                         dbld_arena_printf(f->b.a, "agg/category=%s/date=" DAY, categories[c])));
        CHECK(!bf_tainted(
            &f->b, dbld_arena_printf(f->b.a, "agg/category=%s/date=2025-01-14", categories[c])));
    }
    CHECK(!bf_tainted(&f->b, "raw/reviews/date=2025-01-16"));
}

static int report_written(pf *f)
{
    char *path = dbld_arena_printf(f->b.a, "%s/data/" REPORT "/report.md", h_test_dir());
    char *text = h_read_file(path, NULL);
    int ok = text && strstr(text, WEEK) != NULL;
    free(text);
    return ok;
}

/* Submit a build of the report and wait for its end; returns its id. */
static char *build_week(pf *f)
{
    char *id = bf_submit(&f->b, H_STRS(REPORT));
    Databuild__V1__BuildRequestEvent *last = bf_wait(&f->b, id, RUN_MS);
    CHECK_MSG(last->status->code ==
                  DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED,
              "build %s: %s", id, bf_build_seq(&f->b, id));
    return id;
}

/* Let want_reconciler run three more times (each run recorded). */
static void reconciler_passes(pf *f)
{
    size_t before = bf_process_runs(&f->b, DBLD_PROC_WANT_RECONCILER, NULL);
    CHECK_MSG(
        H_POLL_UNTIL(60000, bf_process_runs(&f->b, DBLD_PROC_WANT_RECONCILER, NULL) >= before + 3),
        "want_reconciler did not run 3 more times");
}

DBLD_TEST(want_builds_week_then_rebuilds_tainted_day)
{
    pf f;
    setup(&f, "weekwant");
    /* a pass every 500 ms, each recorded: "nothing more" is then observable */
    cli_out o = cli_runv((const char *const[]){"--server", f.q->addr, "processes", "settings",
                                               DBLD_PROC_WANT_RECONCILER, "--every", "500", "--set",
                                               "record_idle_runs=1", NULL});
    CHECK_MSG(o.code == 0, "processes settings: %s", o.err);
    char *reason = "";
    char *want = pf_put_want(&f, REPORT, 0, 3600, 0);
    CHECK_MSG(H_POLL_UNTIL(RUN_MS, pf_want_state(&f, want, &reason) == WS(AVAILABLE)),
              "the want is not AVAILABLE: %s", reason);
    CHECK(report_written(&f));
    reconciler_passes(&f);
    /* one build, the reconciler's: it carries the want and ran the 36 tasks */
    Databuild__V1__ListBuildsResponse *all = builds(&f, NULL);
    CHECK_EQ_INT(all->n_builds, 1);
    Databuild__V1__ListBuildsResponse *mine = builds(&f, want);
    CHECK_EQ_INT(mine->n_builds, 1);
    const char *b1 = mine->builds[0]->build_request_id;
    CHECK_EQ_STR(b1, all->builds[0]->build_request_id);
    CHECK_EQ_INT(build_status(mine->builds[0]),
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED);
    check_build_records_want(&f, b1, want);
    size_t n;
    job_runs(&f, b1, &n);
    CHECK_EQ_INT(n, 36);
    CHECK_EQ_STR(ran(&f, b1), expected(f.b.a, 1, 0));
    CHECK_EQ_STR(ran(&f, NULL), expected(f.b.a, 1, 0));

    /* a taint of one day's input: the live want has the reconciler rebuild
     * exactly that day's chain, with no build command */
    put_taint(&f, RAW_DAY);
    CHECK_MSG(H_POLL_UNTIL(RUN_MS, want_builds_ended(&f, want, 2)),
              "no second build for the want after the taint (%zu builds)",
              builds(&f, want)->n_builds);
    mine = builds(&f, want);
    const char *b2 = mine->builds[0]->build_request_id;
    CHECK(strcmp(b2, b1) != 0);
    CHECK_EQ_INT(build_status(mine->builds[0]),
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED);
    check_build_records_want(&f, b2, want);
    CHECK_EQ_STR(ran(&f, b2), expected(f.b.a, 0, 1));
    CHECK_MSG(H_POLL_UNTIL(60000, pf_want_state(&f, want, &reason) == WS(AVAILABLE)),
              "the want is not AVAILABLE again: %s", reason);
    CHECK(!bf_tainted(&f.b, REPORT));
    CHECK(!bf_tainted(&f.b, RAW_DAY));
    /* nothing else ran, then or since: no other build, and over every build
     * the week once plus the day's chain once more */
    reconciler_passes(&f);
    CHECK_EQ_INT(builds(&f, NULL)->n_builds, 2);
    CHECK_EQ_STR(ran(&f, NULL), expected(f.b.a, 1, 1));
}

DBLD_TEST(taint_rebuilds_exactly_the_days_chain)
{
    pf f;
    setup(&f, "weektaint");
    const char *b1 = build_week(&f);
    CHECK(report_written(&f));
    CHECK_EQ_STR(ran(&f, b1), expected(f.b.a, 1, 0));
    put_taint(&f, RAW_DAY);
    check_stale_day(&f);
    /* rebuilding the week runs exactly that day's chain again */
    const char *b2 = build_week(&f);
    CHECK_EQ_STR(ran(&f, b2), expected(f.b.a, 0, 1));
    size_t n;
    job_runs(&f, b2, &n);
    CHECK_EQ_INT(n, 36); /* the other 30 tasks SKIPPED */
    CHECK(!bf_tainted(&f.b, REPORT));
    CHECK(!bf_tainted(&f.b, RAW_DAY));
    /* and once rebuilt, a third build runs nothing */
    const char *b3 = build_week(&f);
    CHECK_EQ_STR(ran(&f, b3), "");
    CHECK_EQ_INT(builds(&f, NULL)->n_builds, 3);
    CHECK_EQ_STR(ran(&f, NULL), expected(f.b.a, 1, 1));
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(want_builds_week_then_rebuilds_tainted_day, 560),
               DBLD_TEST_ENTRY_T(taint_rebuilds_exactly_the_days_chain, 560))
