/* test_query_paging.c - paging across page boundaries for every paged RPC:
 * GetBuildEvents (forward and backward), ListBuildRequests, ListPartitions,
 * ListJobRuns, ListWants and ListTaints. Items are created in runs of three
 * equal timestamps so that page boundaries (Q_PAGE = 100) fall inside such
 * runs; walking every page must return every item exactly once, in order.
 */
#include "test_query_fixture.h"

#define N_ITEMS 251 /* boundaries fall inside runs both ways */
#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JOB(x) DATABUILD__V1__JOB_STATUS__JOB_##x

/* Item i's timestamp: runs of three equal ones. */
static int64_t ts_of(int i)
{
    return QF_T0 + (int64_t)(i / 3) * QF_SEC;
}

/* Track that ids are seen once each; ids are "<prefix>-<i>". */
typedef struct seen {
    unsigned char hit[N_ITEMS];
    int n, pages, biggest;
    int64_t last_ts;
} seen;

static void see(seen *s, const char *id, int64_t ts, int desc)
{
    const char *dash = strrchr(id, '-');
    CHECK_MSG(dash != NULL, "unexpected id %s", id);
    int i = atoi(dash + 1);
    CHECK_MSG(i >= 0 && i < N_ITEMS, "unexpected id %s", id);
    CHECK_MSG(!s->hit[i], "item %s returned twice (page %d)", id, s->pages);
    s->hit[i] = 1;
    s->n++;
    if (s->n > 1) CHECK_MSG(desc ? ts <= s->last_ts : ts >= s->last_ts, "item %s out of order", id);
    s->last_ts = ts;
}

static void page_size(seen *s, size_t n)
{
    if ((int)n > s->biggest) s->biggest = (int)n;
}

/* Every item once; and some page was extended past 100 to finish a run. */
static void seen_all(seen *s, int pages_at_least)
{
    CHECK_EQ_INT(s->n, N_ITEMS);
    CHECK_CMP_INT(s->pages, >=, pages_at_least);
    CHECK_CMP_INT(s->biggest, >, 100);
}

static void append_chunked(qf *f, Databuild__V1__BuildEvent **evs, size_t n)
{
    for (size_t i = 0; i < n; i += 500)
        h_append_ok(f->el, f->a, evs + i, n - i < 500 ? n - i : 500);
}

DBLD_TEST(events_and_builds)
{
    qf f = qf_start("qpgbuilds");
    /* build i: one RECEIVED event at ts_of(i) and a COMPLETED one later */
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(f.a, 2 * N_ITEMS * sizeof *evs);
    for (int i = 0; i < N_ITEMS; i++) {
        char *id = dbld_arena_printf(f.a, "build-%d", i);
        char *ref = dbld_arena_printf(f.a, "agg/date=2026-%02d-%02d", 1 + i / 28, 1 + i % 28);
        evs[2 * i] =
            qf_at(h_event_build_request(f.a, id, BR(RECEIVED), H_STRS(ref), "", NULL), ts_of(i));
        evs[2 * i + 1] = qf_at(h_event_build_request(f.a, id, BR(COMPLETED), H_STRS(ref), "", NULL),
                               ts_of(i) + QF_SEC / 2);
    }
    append_chunked(&f, evs, 2 * N_ITEMS);

    /* ListBuildRequests: newest first, min_started as the next started_until */
    seen s = {0};
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    for (;;) {
        Databuild__V1__ListBuildsResponse *r =
            QF_OK(&f, "ListBuildRequests", &req, Databuild__V1__ListBuildsResponse,
                  databuild__v1__list_builds_response__descriptor);
        s.pages++;
        page_size(&s, r->n_builds);
        for (size_t i = 0; i < r->n_builds; i++)
            see(&s, r->builds[i]->build_request_id, r->builds[i]->requested_at, 1);
        if (!r->has_more) break;
        CHECK_CMP_INT(r->n_builds, >=, 100);
        CHECK_EQ_INT(r->min_started, r->builds[r->n_builds - 1]->requested_at);
        req.started_until = r->min_started;
        CHECK(s.pages < 20);
    }
    seen_all(&s, 3);

    /* GetBuildEvents: RECEIVED events only (pattern on the first months), both ways */
    for (int desc = 0; desc <= 1; desc++) {
        seen e = {0};
        Databuild__V1__ListBuildEventsRequest er = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
        er.filters = h_filter(f.a, NULL, H_STRS("agg/date=2026-.*"), NULL, NULL, NULL);
        if (!desc) er.min_timestamp_ns = 1;
        for (;;) {
            Databuild__V1__ListBuildEventsResponse *r =
                QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
                      databuild__v1__list_build_events_response__descriptor);
            e.pages++;
            page_size(&e, r->n_events);
            /* within a page: ascending; across pages: the scroll direction */
            for (size_t k = 1; k < r->n_events; k++)
                CHECK_CMP_INT(r->events[k]->timestamp, >=, r->events[k - 1]->timestamp);
            for (size_t k = 0; k < r->n_events; k++) {
                size_t i = desc ? r->n_events - 1 - k : k;
                Databuild__V1__BuildEvent *ev = r->events[i];
                if (ev->build_request_event->status->code == BR(RECEIVED))
                    see(&e, ev->build_request_id, ev->timestamp, desc);
            }
            if (!r->has_more) break;
            CHECK_CMP_INT(r->n_events, >=, 100);
            if (desc)
                er.max_timestamp_ns = (uint64_t)r->events[0]->timestamp;
            else
                er.min_timestamp_ns = (uint64_t)r->events[r->n_events - 1]->timestamp;
            CHECK(e.pages < 20);
        }
        seen_all(&e, 5);
    }

    /* Neither min_timestamp_ns nor max_timestamp_ns (the seed says one must be
     * given): read as max_timestamp_ns = now, i.e. the newest page, scrolling
     * backward - what Batched's list_build_events template and a first
     * backward page rely on. */
    Databuild__V1__ListBuildEventsRequest er = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    Databuild__V1__ListBuildEventsResponse *none =
        QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
              databuild__v1__list_build_events_response__descriptor);
    er.max_timestamp_ns = (uint64_t)(dbld_now_ns() + 3600 * QF_SEC);
    Databuild__V1__ListBuildEventsResponse *now =
        QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
              databuild__v1__list_build_events_response__descriptor);
    CHECK(none->has_more && now->has_more);
    CHECK_EQ_INT(none->n_events, now->n_events);
    CHECK_CMP_INT(none->n_events, >=, 100);
    for (size_t k = 0; k < none->n_events; k++)
        CHECK_EQ_STR(none->events[k]->event_id, now->events[k]->event_id);
    CHECK_EQ_INT(none->events[none->n_events - 1]->timestamp,
                 ts_of(N_ITEMS - 1) + QF_SEC / 2); /* the newest event */
}

DBLD_TEST(partitions_and_runs)
{
    qf f = qf_start("qpgparts");
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(f.a, 2 * N_ITEMS * sizeof *evs);
    for (int i = 0; i < N_ITEMS; i++) {
        char *ref = dbld_arena_printf(f.a, "reviews/date=2026-%02d-%02d/part-%d", 1 + i / 28,
                                      1 + i % 28, i);
        char *run = dbld_arena_printf(f.a, "run-%d", i);
        evs[2 * i] = qf_at(h_event_job(f.a, "build-x", run, i % 2 ? "//jobs:ingest" : "//jobs:agg",
                                       JOB(SCHEDULED), H_STRS(ref)),
                           ts_of(i));
        evs[2 * i + 1] =
            qf_at(h_event_partition(f.a, "build-x", ref,
                                    i % 5 ? DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE
                                          : DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED,
                                    run),
                  ts_of(i) + 1);
    }
    append_chunked(&f, evs, 2 * N_ITEMS);

    /* ListPartitions: sorted by ref, last_partition cursor, status filter kept across pages */
    for (int filtered = 0; filtered <= 1; filtered++) {
        Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
        Databuild__V1__PartitionStatus avail[] = {
            DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE};
        if (filtered) {
            req.partition_status = avail;
            req.n_partition_status = 1;
            req.ref_pattern = "reviews/.*";
        }
        int n = 0, pages = 0;
        char last[256] = "";
        for (;;) {
            Databuild__V1__ListPartitionsResponse *r =
                QF_OK(&f, "ListPartitions", &req, Databuild__V1__ListPartitionsResponse,
                      databuild__v1__list_partitions_response__descriptor);
            pages++;
            if (r->n_refs == 0) break;
            CHECK_CMP_INT(r->n_refs, <=, 100);
            for (size_t i = 0; i < r->n_refs; i++) {
                CHECK_MSG(strcmp(r->refs[i]->partition_ref->str, last) > 0, "%s after %s",
                          r->refs[i]->partition_ref->str, last);
                snprintf(last, sizeof last, "%s", r->refs[i]->partition_ref->str);
                if (filtered) CHECK_EQ_INT(r->refs[i]->status->code, avail[0]);
                n++;
            }
            req.last_partition = dbld_arena_strdup(f.a, last);
            CHECK(pages < 20);
        }
        CHECK_EQ_INT(n, filtered ? N_ITEMS - (N_ITEMS + 4) / 5 : N_ITEMS);
        CHECK_EQ_INT(pages, filtered ? 3 : 4); /* 100, 100, (51,) then the empty page */
    }

    /* ListJobRuns: newest first, min_start_at as the next started_until; filters kept */
    for (int filtered = 0; filtered <= 1; filtered++) {
        seen s = {0};
        Databuild__V1__ListJobRunsRequest req = DATABUILD__V1__LIST_JOB_RUNS_REQUEST__INIT;
        char *labels[] = {"//jobs:ingest", "//jobs:agg"};
        if (filtered) {
            req.job_labels = labels;
            req.n_job_labels = 2;
        }
        for (;;) {
            Databuild__V1__ListJobRunsResponse *r =
                QF_OK(&f, "ListJobRuns", &req, Databuild__V1__ListJobRunsResponse,
                      databuild__v1__list_job_runs_response__descriptor);
            s.pages++;
            page_size(&s, r->n_job_runs);
            if (r->n_job_runs == 0) break;
            for (size_t i = 0; i < r->n_job_runs; i++)
                see(&s, r->job_runs[i]->job_run_id, r->job_runs[i]->scheduled_at, 1);
            CHECK_EQ_INT(r->min_start_at, r->job_runs[r->n_job_runs - 1]->scheduled_at);
            req.started_until = r->min_start_at;
            CHECK(s.pages < 20);
        }
        seen_all(&s, 3);
    }
}

DBLD_TEST(wants_and_taints)
{
    qf f = qf_start("qpgwants");
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(f.a, 2 * N_ITEMS * sizeof *evs);
    for (int i = 0; i < N_ITEMS; i++) {
        char *ref = dbld_arena_printf(f.a, "agg/date=2026-%02d-%02d", 1 + i / 28, 1 + i % 28);
        evs[2 * i] = qf_at(h_event_want(f.a, "", dbld_arena_printf(f.a, "want-%d", i), H_STRS(ref),
                                        DATABUILD__V1__SOURCE_TYPE_CODE__SCHEDULED, "w"),
                           ts_of(i));
        evs[2 * i + 1] =
            qf_at(h_event_taint(f.a, "", H_STRS(ref), DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL,
                                dbld_arena_printf(f.a, "taint-%d", i)),
                  ts_of(i));
        evs[2 * i + 1]->taint_event->created_at = (uint64_t)ts_of(i); /* runs of equal times */
    }
    append_chunked(&f, evs, 2 * N_ITEMS);

    seen w = {0};
    Databuild__V1__ListWantsRequest wr = DATABUILD__V1__LIST_WANTS_REQUEST__INIT;
    for (;;) {
        Databuild__V1__ListWantsResponse *r =
            QF_OK(&f, "ListWants", &wr, Databuild__V1__ListWantsResponse,
                  databuild__v1__list_wants_response__descriptor);
        w.pages++;
        page_size(&w, r->n_wants);
        if (r->n_wants == 0) break;
        for (size_t i = 0; i < r->n_wants; i++) {
            see(&w, r->wants[i]->want->want_id, (int64_t)r->wants[i]->want->created_at, 1);
            CHECK_EQ_INT(r->wants[i]->n_partitions, 1);
        }
        wr.requested_until = r->min_requested_at;
        CHECK(w.pages < 20);
    }
    seen_all(&w, 3);

    /* taint ids are event ids: map them back to items through their comments */
    seen t = {0};
    Databuild__V1__ListTaintsRequest tr = DATABUILD__V1__LIST_TAINTS_REQUEST__INIT;
    for (;;) {
        Databuild__V1__ListTaintsResponse *r =
            QF_OK(&f, "ListTaints", &tr, Databuild__V1__ListTaintsResponse,
                  databuild__v1__list_taints_response__descriptor);
        t.pages++;
        page_size(&t, r->n_taints);
        if (r->n_taints == 0) break;
        for (size_t i = 0; i < r->n_taints; i++)
            see(&t, r->taints[i]->comment, (int64_t)r->taints[i]->tainted_at, 1);
        tr.tainted_at_until = r->min_tainted_at;
        CHECK(t.pages < 20);
    }
    seen_all(&t, 3);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(events_and_builds), DBLD_TEST_ENTRY(partitions_and_runs),
               DBLD_TEST_ENTRY(wants_and_taints))
