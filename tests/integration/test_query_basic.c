/* test_query_basic.c - DataBuildService read RPCs against a realistic event
 * log: six build requests (completed, failed, running, cancelled, one that
 * skipped and delegated, one with hostile names), their job runs, partition
 * events, job graphs and a want, appended through the real event log.
 *
 * Covers GetBuildEvents (every filter field, anchoring, scroll directions,
 * window, errors), ListBuildRequests (every filter, ANDed, started_until),
 * GetBuildSummary, GetBuildMermaid (shape, edges, classes, escaping),
 * ListPartitions / GetPartitionsSummary, ListJobs / GetJobSummary and
 * ListJobRuns / GetJobRunSummary, with unknown-id and empty-request errors.
 */
#include "test_query_fixture.h"

#include <regex.h>

#define S_AVAILABLE DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE
#define S_BUILDING DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING
#define S_FAILED DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED
#define S_DELEGATED DATABUILD__V1__PARTITION_STATUS__PARTITION_DELEGATED
#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JOB(x) DATABUILD__V1__JOB_STATUS__JOB_##x

#define WEIRD_REF "weird/\"q\"<b>#1&`x`"

typedef struct scen {
    qf f;
    Databuild__V1__BuildEvent **all; /* every event appended, in order */
    size_t n_all;
    int64_t created[7], planning[7], done[7]; /* per build 1..6 */
    int64_t run_t[9][3];                      /* per run 1..8: scheduled, running, final */
    int64_t avail_0101;                       /* AVAILABLE event of reviews/date=2026-01-01 */
} scen;

static void keep(scen *s, qf_seq *q)
{
    Databuild__V1__BuildEvent **g = dbld_arena_alloc(s->f.a, (s->n_all + q->n + 1) * sizeof *g);
    if (s->n_all) memcpy(g, s->all, s->n_all * sizeof *g);
    memcpy(g + s->n_all, q->evs, q->n * sizeof *g);
    s->all = g;
    s->n_all += q->n;
}

/* The standard build steps up to EXECUTING. */
static void start_build(scen *s, qf_seq *q, int b, const char *const *refs, const char *comment,
                        const char *want, const char *const *labels, const char *const *outs,
                        const char *const *ins)
{
    char *id = dbld_arena_printf(q->a, "build-%d", b);
    s->created[b] = qf_br(q, id, BR(RECEIVED), refs, comment, want);
    s->planning[b] = qf_br(q, id, BR(PLANNING), refs, comment, want);
    qf_add(q, qf_graph_event(q->a, id, 0, labels, outs, ins, refs));
    qf_br(q, id, BR(ANALYSIS_COMPLETED), refs, comment, want);
    qf_br(q, id, BR(EXECUTING), refs, comment, want);
}

static scen setup(const char *hint)
{
    scen s;
    memset(&s, 0, sizeof s);
    s.f = qf_start(hint);
    dbld_arena *a = s.f.a;
    qf_seq q;
    qf_seq_init(&q, a, QF_T0);

    start_build(&s, &q, 1, H_STRS("agg/date=2026-01-01"), "nightly backfill", "want-1",
                H_STRS("//jobs:ingest", "//jobs:agg"),
                H_STRS("reviews/date=2026-01-01", "agg/date=2026-01-01"),
                H_STRS("raw/date=2026-01-01", "reviews/date=2026-01-01"));
    qf_run(&q, "build-1", "run-1", "//jobs:ingest", "reviews/date=2026-01-01", JOB(COMPLETED),
           s.run_t[1]);
    s.avail_0101 = q.ts;
    qf_run(&q, "build-1", "run-2", "//jobs:agg", "agg/date=2026-01-01", JOB(COMPLETED), s.run_t[2]);
    s.done[1] = qf_br(&q, "build-1", BR(COMPLETED), H_STRS("agg/date=2026-01-01"),
                      "nightly backfill", "want-1");

    start_build(&s, &q, 2, H_STRS("agg/date=2026-01-02"), "Retry after outage", NULL,
                H_STRS("//jobs:ingest", "//jobs:agg"),
                H_STRS("reviews/date=2026-01-02", "agg/date=2026-01-02"),
                H_STRS("raw/date=2026-01-02", "reviews/date=2026-01-02"));
    qf_run(&q, "build-2", "run-3", "//jobs:ingest", "reviews/date=2026-01-02", JOB(COMPLETED),
           s.run_t[3]);
    qf_run(&q, "build-2", "run-4", "//jobs:agg", "agg/date=2026-01-02", JOB(FAILED), s.run_t[4]);
    s.done[2] =
        qf_br(&q, "build-2", BR(FAILED), H_STRS("agg/date=2026-01-02"), "Retry after outage", NULL);

    start_build(&s, &q, 3, H_STRS("reviews/date=2026-01-03"), "", NULL, H_STRS("//jobs:ingest"),
                H_STRS("reviews/date=2026-01-03"), H_STRS("raw/date=2026-01-03"));
    qf_run(&q, "build-3", "run-5", "//jobs:ingest", "reviews/date=2026-01-03", JOB(RUNNING),
           s.run_t[5]);

    start_build(&s, &q, 4, H_STRS("reviews/date=2026-01-04"), "", NULL, H_STRS("//jobs:ingest"),
                H_STRS("reviews/date=2026-01-04"), H_STRS("raw/date=2026-01-04"));
    qf_run(&q, "build-4", "run-6", "//jobs:ingest", "reviews/date=2026-01-04", JOB(CANCELLED),
           s.run_t[6]);
    qf_add(&q, h_event_job_run_cancel(a, "build-4", "run-6", "user asked"));
    qf_add(&q, h_event_build_cancel(a, "build-4", "user asked"));
    s.done[4] = qf_br(&q, "build-4", BR(CANCELLED), H_STRS("reviews/date=2026-01-04"), "", NULL);

    start_build(&s, &q, 5, H_STRS("reviews/date=2026-01-01", "reviews/date=2026-01-03"), "", NULL,
                H_STRS("//jobs:ingest", "//jobs:ingest"),
                H_STRS("reviews/date=2026-01-01", "reviews/date=2026-01-03"), NULL);
    s.run_t[7][0] = qf_add(&q, h_event_job(a, "build-5", "run-7", "//jobs:ingest", JOB(SKIPPED),
                                           H_STRS("reviews/date=2026-01-01")));
    qf_add(&q, h_event_delegation(a, "build-5", "reviews/date=2026-01-03", "build-3"));
    s.done[5] = qf_br(&q, "build-5", BR(COMPLETED),
                      H_STRS("reviews/date=2026-01-01", "reviews/date=2026-01-03"), "", NULL);

    start_build(&s, &q, 6, H_STRS(WEIRD_REF), "hostile names", NULL, H_STRS("//jobs:legacy"),
                H_STRS(WEIRD_REF), NULL);
    qf_run(&q, "build-6", "run-8", "//jobs:legacy", WEIRD_REF, JOB(COMPLETED), s.run_t[8]);
    s.done[6] = qf_br(&q, "build-6", BR(COMPLETED), H_STRS(WEIRD_REF), "hostile names", NULL);

    qf_add(&q, h_event_want(a, "", "want-1", H_STRS("agg/date=2026-01-01"),
                            DATABUILD__V1__SOURCE_TYPE_CODE__SCHEDULED, "keep fresh"));
    keep(&s, &q);
    qf_flush(&s.f, &q);
    return s;
}

/* ---- helpers ---- */

static Databuild__V1__ListBuildsResponse *list_builds(scen *s,
                                                      Databuild__V1__ListBuildsRequest *req)
{
    return QF_OK(&s->f, "ListBuildRequests", req, Databuild__V1__ListBuildsResponse,
                 databuild__v1__list_builds_response__descriptor);
}

#define CHECK_BUILDS(resp, ...) check_builds(__FILE__, __LINE__, resp, QF_LIST(__VA_ARGS__))
static void check_builds(const char *file, int line, const Databuild__V1__ListBuildsResponse *r,
                         const char *const *want)
{
    char got[1024] = "";
    for (size_t i = 0; i < r->n_builds; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s ",
                 r->builds[i]->build_request_id);
    size_t k = 0;
    for (; want[k]; k++)
        if (k >= r->n_builds || strcmp(r->builds[k]->build_request_id, want[k]) != 0)
            h_fail(file, line, "builds: got [%s], want #%zu = %s", got, k, want[k]);
    if (k != r->n_builds) h_fail(file, line, "builds: got [%s], want %zu builds", got, k);
}

static Databuild__V1__BuildSummaryResponse *summary(scen *s, const char *id)
{
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = (char *)id;
    return QF_OK(&s->f, "GetBuildSummary", &req, Databuild__V1__BuildSummaryResponse,
                 databuild__v1__build_summary_response__descriptor);
}

static int part_status(const Databuild__V1__BuildSummaryResponse *r, const char *ref)
{
    for (size_t i = 0; i < r->n_partitions; i++)
        if (strcmp(r->partitions[i]->ref->str, ref) == 0) return r->partitions[i]->status;
    return -1;
}

static char *mermaid(scen *s, const char *id)
{
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = (char *)id;
    Databuild__V1__BuildMermaidResponse *r =
        QF_OK(&s->f, "GetBuildMermaid", &req, Databuild__V1__BuildMermaidResponse,
              databuild__v1__build_mermaid_response__descriptor);
    CHECK_EQ_STR(r->build_id, id);
    return r->mermaid;
}

/* ---- GetBuildEvents ---- */

static Databuild__V1__ListBuildEventsResponse *events(scen *s, Databuild__V1__EventFilter *f,
                                                      uint64_t min, uint64_t max)
{
    Databuild__V1__ListBuildEventsRequest req = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    req.filters = f;
    req.min_timestamp_ns = min;
    req.max_timestamp_ns = max;
    return QF_OK(&s->f, "GetBuildEvents", &req, Databuild__V1__ListBuildEventsResponse,
                 databuild__v1__list_build_events_response__descriptor);
}

static int any_in(const char **have, size_t n, const char *const *want)
{
    if (!want) return 1;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; want[k]; k++)
            if (strcmp(have[i], want[k]) == 0) return 1;
    return 0;
}

static int any_full_match(const char **refs, size_t n, const char *const *pats)
{
    if (!pats) return 1;
    for (size_t k = 0; pats[k]; k++) {
        regex_t re;
        char anch[512];
        snprintf(anch, sizeof anch, "^(%s)$", pats[k]);
        if (regcomp(&re, anch, REG_EXTENDED | REG_NOSUB) != 0) continue;
        for (size_t i = 0; i < n; i++)
            if (regexec(&re, refs[i], 0, NULL, 0) == 0) {
                regfree(&re);
                return 1;
            }
        regfree(&re);
    }
    return 0;
}

/* The events of the scenario matching a filter, computed on the client side
 * (harness spec helpers), compared with GetBuildEvents' answer. */
static void check_filter(scen *s, const char *const *refs, const char *const *pats,
                         const char *const *labels, const char *const *runs, const char *const *brs,
                         size_t want_at_least)
{
    dbld_arena *a = s->f.a;
    size_t want = 0;
    const char **ids = dbld_arena_alloc(a, (s->n_all + 1) * sizeof *ids);
    for (size_t i = 0; i < s->n_all; i++) {
        const Databuild__V1__BuildEvent *e = s->all[i];
        const char **r, **l, **j;
        size_t nr = h_event_refs(a, e, &r), nl = h_event_labels(a, e, &l),
               nj = h_event_run_ids(a, e, &j);
        const char *br = e->build_request_id;
        if (any_in(r, nr, refs) && any_full_match(r, nr, pats) && any_in(l, nl, labels) &&
            any_in(j, nj, runs) && any_in(&br, 1, brs))
            ids[want++] = e->event_id;
    }
    CHECK_CMP_INT(want, >=, want_at_least);
    Databuild__V1__EventFilter *f = h_filter(a, refs, pats, labels, runs, brs);
    Databuild__V1__ListBuildEventsResponse *fw = events(s, f, 1, 0);
    Databuild__V1__ListBuildEventsResponse *bw = events(s, f, 0, 0);
    CHECK_EQ_INT(fw->n_events, want);
    CHECK_EQ_INT(bw->n_events, want);
    CHECK(!fw->has_more && !bw->has_more);
    for (size_t i = 0; i < want; i++) {
        CHECK_EQ_STR(fw->events[i]->event_id, ids[i]);
        CHECK_EQ_STR(bw->events[i]->event_id, ids[i]);
    }
}

DBLD_TEST(build_events)
{
    scen s = setup("qevents");
    /* every event, both directions, ascending */
    check_filter(&s, NULL, NULL, NULL, NULL, NULL, 70);
    check_filter(&s, NULL, NULL, NULL, NULL, H_STRS("build-1"), 15);
    check_filter(&s, H_STRS("reviews/date=2026-01-02"), NULL, NULL, NULL, NULL, 6);
    check_filter(&s, NULL, H_STRS("agg/.*"), NULL, NULL, NULL, 10);
    check_filter(&s, NULL, H_STRS("agg"), NULL, NULL, NULL, 0); /* anchored: no partial match */
    check_filter(&s, NULL, H_STRS("reviews/date=2026-01-0[34]", "nothing"), NULL, NULL, NULL, 8);
    check_filter(&s, NULL, NULL, H_STRS("//jobs:agg"), NULL, NULL, 6);
    check_filter(&s, NULL, NULL, NULL, H_STRS("run-6"), NULL, 4);
    check_filter(&s, NULL, NULL, H_STRS("//jobs:ingest"), NULL, H_STRS("build-2", "build-4"), 5);
    check_filter(&s, H_STRS("agg/date=2026-01-01"), NULL, NULL, NULL, H_STRS("build-2"), 0);

    /* a window strictly between two timestamps, forward */
    Databuild__V1__ListBuildEventsResponse *w =
        events(&s, h_filter(s.f.a, NULL, NULL, NULL, NULL, H_STRS("build-1")),
               (uint64_t)s.created[1], (uint64_t)s.done[1]);
    CHECK_EQ_INT(w->n_events, (size_t)((s.done[1] - s.created[1]) / QF_SEC) - 1);
    for (size_t i = 0; i < w->n_events; i++) {
        CHECK_CMP_INT(w->events[i]->timestamp, >, s.created[1]);
        CHECK_CMP_INT(w->events[i]->timestamp, <, s.done[1]);
    }
    /* backward from a timestamp: strictly older events only */
    Databuild__V1__ListBuildEventsResponse *b = events(&s, NULL, 0, (uint64_t)s.created[2]);
    CHECK_EQ_INT(b->n_events, (size_t)((s.created[2] - QF_T0) / QF_SEC) - 1);
    CHECK_CMP_INT(b->events[b->n_events - 1]->timestamp, <, s.created[2]);
    for (size_t i = 1; i < b->n_events; i++)
        CHECK_CMP_INT(b->events[i]->timestamp, >, b->events[i - 1]->timestamp);

    /* a ref with a newline still matches a pattern whose `.` spans it (the
     * joined-refs prefilter must never reject a true match) */
    Databuild__V1__BuildEvent *nl[] = {
        h_event_partition(s.f.a, "build-nl", "multi\nline/x",
                          DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "")};
    h_append_ok(s.f.el, s.f.a, nl, 1);
    CHECK_EQ_INT(
        events(&s, h_filter(s.f.a, NULL, H_STRS("multi.line/x"), NULL, NULL, NULL), 0, 0)->n_events,
        1);
    CHECK_EQ_INT(
        events(&s, h_filter(s.f.a, NULL, H_STRS("line/x"), NULL, NULL, NULL), 0, 0)->n_events, 0);

    /* errors */
    Databuild__V1__ListBuildEventsRequest req = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    req.filters = h_filter(s.f.a, NULL, H_STRS("reviews/.*", "("), NULL, NULL, NULL);
    QF_ERR(&s.f, "GetBuildEvents", &req, databuild__v1__list_build_events_response__descriptor,
           DBLD_INVALID_ARGUMENT, "invalid partition pattern \"(\"");
    req.filters = h_filter(s.f.a, NULL, H_STRS("a)(b"), NULL, NULL, NULL);
    QF_ERR(&s.f, "GetBuildEvents", &req, databuild__v1__list_build_events_response__descriptor,
           DBLD_INVALID_ARGUMENT, "a)(b");
    req.filters = h_filter(s.f.a, NULL, H_STRS("(?i)agg/.*"), NULL, NULL, NULL);
    QF_ERR(&s.f, "GetBuildEvents", &req, databuild__v1__list_build_events_response__descriptor,
           DBLD_INVALID_ARGUMENT, "(?i)agg/.*"); /* valid alone, not once anchored */
    req.filters = NULL;
    req.min_timestamp_ns = 10;
    req.max_timestamp_ns = 10;
    QF_ERR(&s.f, "GetBuildEvents", &req, databuild__v1__list_build_events_response__descriptor,
           DBLD_INVALID_ARGUMENT, "min_timestamp_ns");
}

/* ---- builds ---- */

DBLD_TEST(list_build_requests)
{
    scen s = setup("qbuilds");
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    Databuild__V1__ListBuildsResponse *r = list_builds(&s, &req);
    CHECK_BUILDS(r, "build-6", "build-5", "build-4", "build-3", "build-2", "build-1");
    CHECK(!r->has_more);
    CHECK_EQ_INT(r->min_started, s.created[1]);
    CHECK_EQ_STR(r->builds[4]->comment, "Retry after outage");
    CHECK_EQ_INT(r->builds[4]->status->code, BR(FAILED));
    CHECK_EQ_STR(r->builds[4]->status->name, "BUILD_REQUEST_FAILED");

    char *st1[] = {"FAILED"};
    req.build_status = st1;
    req.n_build_status = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-2");
    char *st2[] = {"BUILD_REQUEST_COMPLETED", "cancelled"};
    req.build_status = st2;
    req.n_build_status = 2;
    CHECK_BUILDS(list_builds(&s, &req), "build-6", "build-5", "build-4", "build-1");
    char *st3[] = {"3"};
    req.build_status = st3;
    req.n_build_status = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-3");
    char *bad[] = {"DONE-ish"};
    req.build_status = bad;
    QF_ERR(&s.f, "ListBuildRequests", &req, databuild__v1__list_builds_response__descriptor,
           DBLD_INVALID_ARGUMENT, "DONE-ish");
    req.n_build_status = 0;

    char *built[] = {"reviews/date=2026-01-01"};
    req.built_partition = built; /* build-5 only skipped it: not built there */
    req.n_built_partition = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-1");
    req.n_built_partition = 0;
    req.output_partition = built; /* explicitly requested by build-5 only */
    req.n_output_partition = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-5");
    char *out2[] = {"agg/date=2026-01-01", "agg/date=2026-01-02"};
    req.output_partition = out2;
    req.n_output_partition = 2;
    CHECK_BUILDS(list_builds(&s, &req), "build-2", "build-1");
    req.n_output_partition = 0;

    char *agg[] = {"//jobs:agg"};
    req.run_jobs = agg;
    req.n_run_jobs = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-2", "build-1");
    char *ingest[] = {"//jobs:ingest"};
    req.run_jobs = ingest; /* build-5's ingest task was SKIPPED: not run */
    CHECK_BUILDS(list_builds(&s, &req), "build-4", "build-3", "build-2", "build-1");
    char *done[] = {"COMPLETED"};
    req.build_status = done; /* ANDed */
    req.n_build_status = 1;
    CHECK_BUILDS(list_builds(&s, &req), "build-1");
    req.n_build_status = 0;
    req.n_run_jobs = 0;

    char *want[] = {"want-1", "want-x"};
    req.triggering_want_ids = want;
    req.n_triggering_want_ids = 2;
    CHECK_BUILDS(list_builds(&s, &req), "build-1");
    req.n_triggering_want_ids = 0;
    req.comment_contains = "RETRY";
    CHECK_BUILDS(list_builds(&s, &req), "build-2");
    req.comment_contains = "no such comment";
    CHECK_BUILDS(list_builds(&s, &req));
    req.comment_contains = "";

    req.started_until = (uint64_t)s.created[4]; /* exclusive */
    r = list_builds(&s, &req);
    CHECK_BUILDS(r, "build-3", "build-2", "build-1");
    req.started_until = r->min_started;
    CHECK_BUILDS(list_builds(&s, &req));
}

/* The seed orders ListBuildRequests by "build start time", read as the
 * requested time (proto comment): a build requested earlier but planned
 * later still lists after (older than) one requested later, and a queued
 * build that never started lists by its request too. */
DBLD_TEST(list_build_requests_order)
{
    qf f = qf_start("qbuildorder");
    qf_seq q;
    qf_seq_init(&q, f.a, QF_T0);
    int64_t req_a = qf_br(&q, "build-a", BR(RECEIVED), H_STRS("agg/date=2026-01-01"), "", NULL);
    int64_t req_b = qf_br(&q, "build-b", BR(RECEIVED), H_STRS("agg/date=2026-01-02"), "", NULL);
    qf_br(&q, "build-b", BR(PLANNING), H_STRS("agg/date=2026-01-02"), "", NULL);
    int64_t plan_a = qf_br(&q, "build-a", BR(PLANNING), H_STRS("agg/date=2026-01-01"), "", NULL);
    int64_t req_c = qf_br(&q, "build-c", BR(RECEIVED), H_STRS("agg/date=2026-01-03"), "", NULL);
    qf_flush(&f, &q);
    scen s = {.f = f};
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    Databuild__V1__ListBuildsResponse *r = list_builds(&s, &req);
    CHECK_BUILDS(r, "build-c", "build-b", "build-a");
    CHECK_EQ_INT(r->builds[2]->requested_at, req_a);
    CHECK_EQ_INT(r->builds[2]->started_at, plan_a);
    CHECK_EQ_INT(r->builds[0]->started_at, 0); /* queued */
    CHECK_EQ_INT(r->min_started, req_a);
    req.started_until = (uint64_t)req_b;
    CHECK_BUILDS(list_builds(&s, &req), "build-a");
    req.started_until = (uint64_t)req_c;
    CHECK_BUILDS(list_builds(&s, &req), "build-b", "build-a");

    /* Lifecycle times are cached by (build, build_requests.last_idx): the
     * queued build's new events are seen on the next page, not the cached
     * times of its RECEIVED-only state. */
    int64_t plan_c = qf_br(&q, "build-c", BR(PLANNING), H_STRS("agg/date=2026-01-03"), "", NULL);
    int64_t done_c = qf_br(&q, "build-c", BR(COMPLETED), H_STRS("agg/date=2026-01-03"), "", NULL);
    qf_flush(&f, &q);
    req.started_until = 0;
    r = list_builds(&s, &req);
    CHECK_BUILDS(r, "build-c", "build-b", "build-a");
    CHECK_EQ_INT(r->builds[0]->started_at, plan_c);
    CHECK_EQ_INT(r->builds[0]->completed_at, done_c);
    CHECK_EQ_INT(r->builds[0]->duration_ms, (done_c - req_c) / 1000000);
    CHECK_EQ_INT(r->builds[2]->started_at, plan_a); /* unchanged, from the cache */
    CHECK_EQ_INT(r->builds[2]->completed_at, 0);
}

DBLD_TEST(build_summary)
{
    scen s = setup("qsummary");
    Databuild__V1__BuildSummaryResponse *r = summary(&s, "build-1");
    CHECK_EQ_STR(r->build_id, "build-1");
    CHECK_EQ_INT(r->status, BR(COMPLETED));
    Databuild__V1__BuildSummary *b = r->summary;
    CHECK_EQ_STR(b->build_request_id, "build-1");
    CHECK_EQ_INT(b->status->code, BR(COMPLETED));
    CHECK_EQ_INT(b->total_jobs, 2);
    CHECK_EQ_INT(b->completed_jobs, 2);
    CHECK_EQ_INT(b->failed_jobs, 0);
    CHECK_EQ_INT(b->cancelled_jobs, 0);
    CHECK_EQ_INT(b->requested_at, s.created[1]);
    CHECK_EQ_INT(b->started_at, s.planning[1]);
    CHECK_EQ_INT(b->completed_at, s.done[1]);
    CHECK_EQ_INT(b->duration_ms, (s.done[1] - s.created[1]) / 1000000);
    CHECK(!b->cancelled);
    CHECK_EQ_STR(b->comment, "nightly backfill");
    CHECK_EQ_INT(b->n_requested_partitions, 1);
    CHECK_EQ_STR(b->requested_partitions[0]->str, "agg/date=2026-01-01");
    CHECK_EQ_INT(r->n_partitions, 2); /* the requested one first, then the task outputs */
    CHECK_EQ_STR(r->partitions[0]->ref->str, "agg/date=2026-01-01");
    CHECK_EQ_INT(part_status(r, "agg/date=2026-01-01"), S_AVAILABLE);
    CHECK_EQ_INT(part_status(r, "reviews/date=2026-01-01"), S_AVAILABLE);

    r = summary(&s, "build-2");
    CHECK_EQ_INT(r->status, BR(FAILED));
    CHECK_EQ_INT(r->summary->failed_jobs, 1);
    CHECK_EQ_INT(r->summary->completed_jobs, 1);
    CHECK_EQ_INT(part_status(r, "agg/date=2026-01-02"), S_FAILED);
    CHECK_EQ_INT(part_status(r, "reviews/date=2026-01-02"), S_AVAILABLE);

    r = summary(&s, "build-3"); /* still running */
    CHECK_EQ_INT(r->status, BR(EXECUTING));
    CHECK_EQ_INT(r->summary->completed_at, 0);
    CHECK_EQ_INT(r->summary->duration_ms, 0);
    CHECK_EQ_INT(r->summary->total_jobs, 1);
    CHECK_EQ_INT(part_status(r, "reviews/date=2026-01-03"), S_BUILDING);

    r = summary(&s, "build-4");
    CHECK_EQ_INT(r->status, BR(CANCELLED));
    CHECK(r->summary->cancelled);
    CHECK_EQ_INT(r->summary->cancelled_jobs, 1);

    r = summary(&s, "build-5"); /* skipped one partition, delegated the other */
    CHECK_EQ_INT(r->summary->total_jobs, 1);
    CHECK_EQ_INT(r->summary->completed_jobs, 1);
    CHECK_EQ_INT(part_status(r, "reviews/date=2026-01-01"), S_AVAILABLE);
    CHECK_EQ_INT(part_status(r, "reviews/date=2026-01-03"), S_DELEGATED);

    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = "no-such-build";
    QF_ERR(&s.f, "GetBuildSummary", &req, databuild__v1__build_summary_response__descriptor,
           DBLD_NOT_FOUND, "no-such-build");
    QF_ERR(&s.f, "GetBuildMermaid", &req, databuild__v1__build_mermaid_response__descriptor,
           DBLD_NOT_FOUND, "no-such-build");
    req.build_id = "";
    QF_ERR(&s.f, "GetBuildSummary", &req, databuild__v1__build_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "build_id");
    QF_ERR(&s.f, "GetBuildMermaid", &req, databuild__v1__build_mermaid_response__descriptor,
           DBLD_INVALID_ARGUMENT, "build_id is required");
}

DBLD_TEST(build_mermaid)
{
    scen s = setup("qmermaid");
    char *m = mermaid(&s, "build-1");
    h_note("build-1:\n%s", m);
    CHECK(strncmp(m, "flowchart LR\n", 13) == 0);
    const char *classes[] = {"job_pending",         "job_scheduled",       "job_running",
                             "job_completed",       "job_failed",          "job_cancelled",
                             "partition_requested", "partition_building",  "partition_available",
                             "partition_failed",    "partition_delegated", NULL};
    for (size_t i = 0; classes[i]; i++)
        CHECK_EQ_INT(qf_count(m, dbld_arena_printf(s.f.a, "classDef %s ", classes[i])), 1);
    CHECK_CONTAINS(m, "  j0[[\"//jobs:ingest\"]]\n");
    CHECK_CONTAINS(m, "  j1[[\"//jobs:agg\"]]\n");
    CHECK_CONTAINS(m, "  p0[(\"agg/date=2026-01-01\")]\n");
    CHECK_CONTAINS(m, "  p1[(\"raw/date=2026-01-01\")]\n");
    CHECK_CONTAINS(m, "  p2[(\"reviews/date=2026-01-01\")]\n");
    CHECK_EQ_INT(qf_count(m, " --> "), 4); /* raw -> ingest -> reviews -> agg -> agg partition */
    CHECK_CONTAINS(m, "  p1 --> j0\n");
    CHECK_CONTAINS(m, "  j0 --> p2\n");
    CHECK_CONTAINS(m, "  p2 --> j1\n");
    CHECK_CONTAINS(m, "  j1 --> p0\n");
    CHECK_CONTAINS(m, "  class j0,j1 job_completed\n");
    CHECK_CONTAINS(m, "  class p0,p2 partition_available\n");
    CHECK_CONTAINS(m, "  class p1 partition_unknown\n"); /* external input, never seen */

    m = mermaid(&s, "build-2");
    CHECK_CONTAINS(m, "  class j0 job_completed\n");
    CHECK_CONTAINS(m, "  class j1 job_failed\n");
    CHECK_CONTAINS(m, "  class p0 partition_failed\n");

    m = mermaid(&s, "build-3");
    CHECK_CONTAINS(m, "  class j0 job_running\n");
    CHECK_CONTAINS(m, "partition_building\n");

    m = mermaid(&s, "build-4");
    CHECK_CONTAINS(m, "  class j0 job_cancelled\n");

    m = mermaid(&s, "build-6"); /* hostile label text is escaped, ids stay generated */
    h_note("build-6:\n%s", m);
    CHECK_CONTAINS(m, "  p0[(\"weird/#quot;q#quot;#lt;b#gt;#35;1#amp;#96;x#96;\")]\n");
    CHECK(!strstr(m, "\"q\""));
    CHECK(!strstr(m, "<b>"));
    CHECK_CONTAINS(m, "  j0 --> p0\n");
    CHECK_CONTAINS(m, "  class j0 job_completed\n");
}

/* ---- partitions ---- */

static Databuild__V1__ListPartitionsResponse *list_parts(scen *s, const char *pattern,
                                                         Databuild__V1__PartitionStatus *st,
                                                         size_t n_st, const char *last)
{
    Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    req.ref_pattern = (char *)(pattern ? pattern : "");
    req.partition_status = st;
    req.n_partition_status = n_st;
    req.last_partition = (char *)(last ? last : "");
    return QF_OK(&s->f, "ListPartitions", &req, Databuild__V1__ListPartitionsResponse,
                 databuild__v1__list_partitions_response__descriptor);
}

#define CHECK_REFS(resp, ...) check_refs(__FILE__, __LINE__, resp, QF_LIST(__VA_ARGS__))
static void check_refs(const char *file, int line, const Databuild__V1__ListPartitionsResponse *r,
                       const char *const *want)
{
    size_t k = 0;
    for (; want[k]; k++)
        if (k >= r->n_refs || strcmp(r->refs[k]->partition_ref->str, want[k]) != 0)
            h_fail(file, line, "partition #%zu: got %s, want %s", k,
                   k < r->n_refs ? r->refs[k]->partition_ref->str : "(end)", want[k]);
    if (k != r->n_refs) h_fail(file, line, "got %zu partitions, want %zu", r->n_refs, k);
}

DBLD_TEST(partitions)
{
    scen s = setup("qparts");
    Databuild__V1__ListPartitionsResponse *r = list_parts(&s, NULL, NULL, 0, NULL);
    CHECK_REFS(r, "agg/date=2026-01-01", "agg/date=2026-01-02", "reviews/date=2026-01-01",
               "reviews/date=2026-01-02", "reviews/date=2026-01-03", "reviews/date=2026-01-04",
               WEIRD_REF);
    CHECK_EQ_INT(r->refs[0]->status->code, S_AVAILABLE);
    CHECK_EQ_STR(r->refs[0]->status->name, "PARTITION_AVAILABLE");
    CHECK_EQ_INT(r->refs[2]->last_updated, s.avail_0101);
    CHECK_EQ_INT(r->refs[2]->n_past_build_request, 1);
    CHECK_EQ_STR(r->refs[2]->past_build_request[0], "build-1");
    CHECK_EQ_INT(r->refs[1]->status->code, S_FAILED);

    CHECK_REFS(list_parts(&s, "reviews/.*", NULL, 0, NULL), "reviews/date=2026-01-01",
               "reviews/date=2026-01-02", "reviews/date=2026-01-03", "reviews/date=2026-01-04");
    CHECK_REFS(list_parts(&s, "reviews", NULL, 0, NULL)); /* anchored */
    Databuild__V1__PartitionStatus bad[] = {S_FAILED, S_BUILDING};
    CHECK_REFS(list_parts(&s, NULL, bad, 2, NULL), "agg/date=2026-01-02", "reviews/date=2026-01-03",
               "reviews/date=2026-01-04");
    Databuild__V1__PartitionStatus ok[] = {S_AVAILABLE};
    CHECK_REFS(list_parts(&s, "agg/.*", ok, 1, NULL), "agg/date=2026-01-01");
    CHECK_REFS(list_parts(&s, NULL, NULL, 0, "reviews/date=2026-01-02"), "reviews/date=2026-01-03",
               "reviews/date=2026-01-04", WEIRD_REF);
    CHECK_REFS(list_parts(&s, NULL, NULL, 0, WEIRD_REF));

    Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    req.ref_pattern = "reviews/[0-9";
    QF_ERR(&s.f, "ListPartitions", &req, databuild__v1__list_partitions_response__descriptor,
           DBLD_INVALID_ARGUMENT, "invalid ref_pattern \"reviews/[0-9\"");
    req.ref_pattern = "a)(b"; /* valid only once wrapped: still refused */
    QF_ERR(&s.f, "ListPartitions", &req, databuild__v1__list_partitions_response__descriptor,
           DBLD_INVALID_ARGUMENT, "a)(b");

    Databuild__V1__PartitionSummaryRequest sr = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    sr.ref = dbld_arena_msg(s.f.a, &databuild__v1__partition_ref__descriptor);
    sr.ref->str = "reviews/date=2026-01-01";
    Databuild__V1__PartitionSummaryResponse *ps =
        QF_OK(&s.f, "GetPartitionsSummary", &sr, Databuild__V1__PartitionSummaryResponse,
              databuild__v1__partition_summary_response__descriptor);
    Databuild__V1__PartitionSummaryV2 *p = ps->partition;
    CHECK_EQ_STR(p->partition_ref->str, "reviews/date=2026-01-01");
    CHECK_EQ_INT(p->status->code, S_AVAILABLE);
    CHECK_EQ_INT(p->last_updated, s.avail_0101);
    CHECK_EQ_INT(p->last_invalidated_at, 0);
    CHECK_MSG(
        qf_same_strs(p->past_build_request, p->n_past_build_request, H_STRS("build-5", "build-1")),
        "past_build_request has %zu entries", p->n_past_build_request);

    sr.ref->str = "reviews/date=2099-01-01";
    QF_ERR(&s.f, "GetPartitionsSummary", &sr, databuild__v1__partition_summary_response__descriptor,
           DBLD_NOT_FOUND, "reviews/date=2099-01-01");
    sr.ref = NULL;
    QF_ERR(&s.f, "GetPartitionsSummary", &sr, databuild__v1__partition_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "ref is required");
}

/* ---- jobs and job runs ---- */

DBLD_TEST(jobs)
{
    scen s = setup("qjobs");
    Databuild__V1__ListJobsRequest req = DATABUILD__V1__LIST_JOBS_REQUEST__INIT;
    Databuild__V1__ListJobsResponse *r =
        QF_OK(&s.f, "ListJobs", &req, Databuild__V1__ListJobsResponse,
              databuild__v1__list_jobs_response__descriptor);
    CHECK_EQ_INT(r->n_jobs, 4); /* three configured (one never ran) + one seen only in runs */
    CHECK_EQ_STR(r->jobs[0]->job_label, "//jobs:ingest");
    CHECK_EQ_STR(r->jobs[1]->job_label, "//jobs:agg");
    CHECK_EQ_STR(r->jobs[2]->job_label, "//jobs:never");
    CHECK_EQ_STR(r->jobs[3]->job_label, "//jobs:legacy");
    Databuild__V1__JobSummary *j =
        r->jobs[0]; /* run-1, 3 done; 5 running; 6 cancelled; 7 skipped */
    CHECK_EQ_INT(j->total_runs, 4);
    CHECK_EQ_INT(j->successful_runs, 2);
    CHECK_EQ_INT(j->failed_runs, 0);
    CHECK_EQ_INT(j->cancelled_runs, 1);
    CHECK(j->average_partitions_per_run > 0.99 && j->average_partitions_per_run < 1.01);
    CHECK_EQ_INT(j->last_run_timestamp, s.run_t[6][0]);
    CHECK_EQ_INT(j->last_run_status_code, JOB(CANCELLED));
    CHECK_EQ_STR(j->last_run_status_name, "JOB_CANCELLED");
    CHECK(qf_same_strs(j->recent_builds, j->n_recent_builds,
                       H_STRS("build-4", "build-3", "build-2", "build-1")));
    j = r->jobs[1];
    CHECK_EQ_INT(j->total_runs, 2);
    CHECK_EQ_INT(j->successful_runs, 1);
    CHECK_EQ_INT(j->failed_runs, 1);
    CHECK_EQ_INT(j->last_run_status_code, JOB(FAILED));
    CHECK_EQ_INT(j->last_run_timestamp, s.run_t[4][0]);
    j = r->jobs[2];
    CHECK_EQ_INT(j->total_runs, 0);
    CHECK_EQ_INT(j->last_run_timestamp, 0);
    CHECK_EQ_STR(j->last_run_status_name, "JOB_UNKNOWN");
    CHECK_EQ_INT(j->n_recent_builds, 0);
    CHECK_EQ_INT(r->jobs[3]->successful_runs, 1);

    Databuild__V1__JobSummaryRequest jr = DATABUILD__V1__JOB_SUMMARY_REQUEST__INIT;
    jr.job_label = "//jobs:agg";
    Databuild__V1__JobSummaryResponse *one =
        QF_OK(&s.f, "GetJobSummary", &jr, Databuild__V1__JobSummaryResponse,
              databuild__v1__job_summary_response__descriptor);
    CHECK_EQ_STR(one->job->job_label, "//jobs:agg");
    CHECK_EQ_INT(one->job->failed_runs, 1);
    CHECK(qf_same_strs(one->job->recent_builds, one->job->n_recent_builds,
                       H_STRS("build-2", "build-1")));
    jr.job_label = "//jobs:never";
    one = QF_OK(&s.f, "GetJobSummary", &jr, Databuild__V1__JobSummaryResponse,
                databuild__v1__job_summary_response__descriptor);
    CHECK_EQ_INT(one->job->total_runs, 0);
    jr.job_label = "//jobs:nope";
    QF_ERR(&s.f, "GetJobSummary", &jr, databuild__v1__job_summary_response__descriptor,
           DBLD_NOT_FOUND, "//jobs:nope");
    jr.job_label = "";
    QF_ERR(&s.f, "GetJobSummary", &jr, databuild__v1__job_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "job_label");
}

static Databuild__V1__ListJobRunsResponse *list_runs(scen *s,
                                                     Databuild__V1__ListJobRunsRequest *req)
{
    return QF_OK(&s->f, "ListJobRuns", req, Databuild__V1__ListJobRunsResponse,
                 databuild__v1__list_job_runs_response__descriptor);
}

#define CHECK_RUNS(resp, ...) check_runs(__FILE__, __LINE__, resp, QF_LIST(__VA_ARGS__))
static void check_runs(const char *file, int line, const Databuild__V1__ListJobRunsResponse *r,
                       const char *const *want)
{
    size_t k = 0;
    for (; want[k]; k++)
        if (k >= r->n_job_runs || strcmp(r->job_runs[k]->job_run_id, want[k]) != 0)
            h_fail(file, line, "run #%zu: got %s, want %s", k,
                   k < r->n_job_runs ? r->job_runs[k]->job_run_id : "(end)", want[k]);
    if (k != r->n_job_runs) h_fail(file, line, "got %zu runs, want %zu", r->n_job_runs, k);
}

DBLD_TEST(job_runs)
{
    scen s = setup("qruns");
    Databuild__V1__ListJobRunsRequest req = DATABUILD__V1__LIST_JOB_RUNS_REQUEST__INIT;
    Databuild__V1__ListJobRunsResponse *r = list_runs(&s, &req);
    CHECK_RUNS(r, "run-8", "run-7", "run-6", "run-5", "run-4", "run-3", "run-2", "run-1");
    CHECK_EQ_INT(r->min_start_at, s.run_t[1][0]);

    char *agg[] = {"//jobs:agg"};
    req.job_labels = agg;
    req.n_job_labels = 1;
    CHECK_RUNS(list_runs(&s, &req), "run-4", "run-2");
    char *r1[] = {"run-1"};
    req.job_run_ids = r1; /* ORed with the label filter */
    req.n_job_run_ids = 1;
    CHECK_RUNS(list_runs(&s, &req), "run-4", "run-2", "run-1");
    req.n_job_labels = req.n_job_run_ids = 0;
    char *b2[] = {"build-2"};
    req.build_reqeust_ids = b2;
    req.n_build_reqeust_ids = 1;
    CHECK_RUNS(list_runs(&s, &req), "run-4", "run-3");
    req.n_build_reqeust_ids = 0;
    char *refs[] = {"reviews/date=2026-01-02"};
    req.built_partition_refs = refs;
    req.n_built_partition_refs = 1;
    CHECK_RUNS(list_runs(&s, &req), "run-3");
    /* "produced by": only COMPLETED runs. run-4 FAILED on agg/date=2026-01-02,
     * run-5 is still RUNNING, run-6 was CANCELLED, run-7 SKIPPED (run-1 built
     * reviews/date=2026-01-01) */
    char *failed[] = {"agg/date=2026-01-02"};
    req.built_partition_refs = failed;
    CHECK_RUNS(list_runs(&s, &req));
    char *unbuilt[] = {"reviews/date=2026-01-03", "reviews/date=2026-01-04"};
    req.built_partition_refs = unbuilt;
    req.n_built_partition_refs = 2;
    CHECK_RUNS(list_runs(&s, &req));
    char *skipped[] = {"reviews/date=2026-01-01", "agg/date=2026-01-02"};
    req.built_partition_refs = skipped;
    CHECK_RUNS(list_runs(&s, &req), "run-1");
    req.job_run_ids = (char *[]){"run-4"}; /* still ORed with the other filters */
    req.n_job_run_ids = 1;
    CHECK_RUNS(list_runs(&s, &req), "run-4", "run-1");
    req.n_job_run_ids = 0;
    req.n_built_partition_refs = 0;
    req.started_until = (uint64_t)s.run_t[4][0];
    r = list_runs(&s, &req);
    CHECK_RUNS(r, "run-3", "run-2", "run-1");
    req.started_until = r->min_start_at;
    CHECK_RUNS(list_runs(&s, &req));

    Databuild__V1__JobRunSummaryRequest one = DATABUILD__V1__JOB_RUN_SUMMARY_REQUEST__INIT;
    one.job_run_id = "run-1";
    Databuild__V1__JobRunSummaryResponse *jr =
        QF_OK(&s.f, "GetJobRunSummary", &one, Databuild__V1__JobRunSummaryResponse,
              databuild__v1__job_run_summary_response__descriptor);
    Databuild__V1__JobRunSummary *x = jr->job_run;
    CHECK_EQ_STR(x->job_run_id, "run-1");
    CHECK_EQ_STR(x->job_label, "//jobs:ingest");
    CHECK_EQ_STR(x->build_request_id, "build-1");
    CHECK_EQ_INT(x->status_code, JOB(COMPLETED));
    CHECK_EQ_STR(x->status_name, "JOB_COMPLETED");
    CHECK_EQ_INT(x->n_target_partitions, 1);
    CHECK_EQ_STR(x->target_partitions[0]->str, "reviews/date=2026-01-01");
    CHECK_EQ_INT(x->scheduled_at, s.run_t[1][0]);
    CHECK_EQ_INT(x->started_at, s.run_t[1][1]);
    CHECK_EQ_INT(x->completed_at, s.run_t[1][2]);
    CHECK_EQ_INT(x->duration_ms, (s.run_t[1][2] - s.run_t[1][1]) / 1000000);
    CHECK(!x->cancelled);

    one.job_run_id = "run-6";
    x = QF_OK(&s.f, "GetJobRunSummary", &one, Databuild__V1__JobRunSummaryResponse,
              databuild__v1__job_run_summary_response__descriptor)
            ->job_run;
    CHECK(x->cancelled);
    CHECK_EQ_INT(x->status_code, JOB(CANCELLED));
    CHECK_EQ_INT(x->started_at, 0);
    CHECK_EQ_INT(x->duration_ms, (s.run_t[6][2] - s.run_t[6][0]) / 1000000);
    one.job_run_id = "run-5";
    x = QF_OK(&s.f, "GetJobRunSummary", &one, Databuild__V1__JobRunSummaryResponse,
              databuild__v1__job_run_summary_response__descriptor)
            ->job_run;
    CHECK_EQ_INT(x->status_code, JOB(RUNNING));
    CHECK_EQ_INT(x->completed_at, 0);
    CHECK_EQ_INT(x->duration_ms, 0);

    one.job_run_id = "run-404";
    QF_ERR(&s.f, "GetJobRunSummary", &one, databuild__v1__job_run_summary_response__descriptor,
           DBLD_NOT_FOUND, "run-404");
    one.job_run_id = "";
    QF_ERR(&s.f, "GetJobRunSummary", &one, databuild__v1__job_run_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "job_run_id");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(build_events), DBLD_TEST_ENTRY(list_build_requests),
               DBLD_TEST_ENTRY(list_build_requests_order), DBLD_TEST_ENTRY(build_summary),
               DBLD_TEST_ENTRY(build_mermaid), DBLD_TEST_ENTRY(partitions), DBLD_TEST_ENTRY(jobs),
               DBLD_TEST_ENTRY(job_runs))
