/* test_want_links.c - what a want is linked to, with real event log, job,
 * graph and query services:
 *   - a build request that want_reconciler submits for several wants
 *     records every want's id, so ListBuildRequests' triggering_want_ids
 *     finds that build for each of them (not only the first);
 *   - a want's external_dependencies lists the graph.external refs it
 *     depends on: before its first build (the inputs the build waited for),
 *     after it (from the recorded lineage), and its own external ref.
 *
 * The graph: n/X has no inputs; q/X needs p/X, p/X needs ext/X; ext/.* is
 * external.
 */
#include "test_processes_fixture.h"

#define JOBS                                                                                       \
    "    - label: \"//t:n\"\n      command: %CMD%\n      outputs: [\"n/.*\"]\n"                    \
    "    - label: \"//t:p\"\n      command: %CMD%\n      outputs: [\"p/.*\"]\n"                    \
    "    - label: \"//t:q\"\n      command: %CMD%\n      outputs: [\"q/.*\"]\n"
#define RULES                                                                                      \
    "[{\"match\": \"p/(.*)\", \"inputs\": [\"ext/\\\\1\"]},"                                       \
    " {\"match\": \"q/(.*)\", \"inputs\": [\"p/\\\\1\"]}]"

static void setup(pf *f, const char *hint)
{
    pf_setup(f, hint, JOBS, RULES, "[\"ext/.*\"]");
}

/* The build requests ListBuildRequests finds for triggering_want_ids = [want]. */
static Databuild__V1__ListBuildsResponse *builds_of(pf *f, const char *want)
{
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    char *ids[] = {(char *)want};
    req.triggering_want_ids = ids;
    req.n_triggering_want_ids = 1;
    Databuild__V1__ListBuildsResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/ListBuildRequests",
                               &req.base, &databuild__v1__list_builds_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    return resp;
}

/* The want's PartitionWant from GetWantSummary. */
static Databuild__V1__PartitionWant *want_of(pf *f, const char *id)
{
    Databuild__V1__WantSummaryResponse *resp = pf_want_summary(f, id);
    CHECK(resp->want->want);
    return resp->want->want;
}

static int all_available(pf *f, const char *const *refs)
{
    for (size_t i = 0; refs[i]; i++)
        if (bf_part_status(&f->b, refs[i]) != DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE)
            return 0;
    return 1;
}

DBLD_TEST(build_request_records_every_want)
{
    pf f;
    setup(&f, "wantids");
    const char *refs[] = {"n/1", "n/2", "n/3", NULL};
    char ids[3][37];
    Databuild__V1__BuildEvent *evs[3];
    for (int i = 0; i < 3; i++) {
        dbld_uuid_v4(ids[i]);
        evs[i] = h_event_want(f.b.a, "", ids[i], (const char *const[]){refs[i], NULL},
                              DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "");
    }
    h_append_ok(f.b.el, f.b.a, evs, 3); /* one transaction: one reconciler pass */
    CHECK_MSG(H_POLL_UNTIL(30000, all_available(&f, refs)), "the wants were not built");
    CHECK_EQ_INT(bf_lines(&f.b, "exec.log"), 3);
    const char *build = NULL;
    for (int i = 0; i < 3; i++) {
        Databuild__V1__ListBuildsResponse *r = builds_of(&f, ids[i]);
        CHECK_MSG(r->n_builds == 1, "want %d: %zu builds found", i, r->n_builds);
        if (!build) build = r->builds[0]->build_request_id;
        CHECK_EQ_STR(r->builds[0]->build_request_id, build);
        CHECK_CONTAINS(r->builds[0]->comment, "3 wants");
    }
    /* the seed's want_id keeps one of them, unchanged for seed readers */
    h_rows *row = h_sql(f.b.dsn,
                        "SELECT want_id, cardinality(want_ids) FROM build_requests"
                        " WHERE build_request_id = $1",
                        build);
    CHECK_EQ_INT(h_rows_n(row), 1);
    const char *first = h_rows_get(row, 0, 0);
    CHECK(strcmp(first, ids[0]) == 0 || strcmp(first, ids[1]) == 0 || strcmp(first, ids[2]) == 0);
    CHECK_EQ_INT(h_rows_i64(row, 0, 1), 3);
    h_rows_free(row);
    /* an unknown want finds nothing */
    CHECK_EQ_INT(builds_of(&f, "no-such-want")->n_builds, 0);
}

DBLD_TEST(want_lists_its_external_dependencies)
{
    pf f;
    setup(&f, "wantext");
    char *reason = "";
    char *wq = pf_put_want(&f, "q/1", 0, 0, 0);
    char *we = pf_put_want(&f, "ext/2", 0, 0, 0);
    char *wn = pf_put_want(&f, "n/5", 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, wq, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    /* before any run: the external input its build waited for */
    Databuild__V1__PartitionWant *w = want_of(&f, wq);
    CHECK_EQ_INT(w->n_external_dependencies, 1);
    CHECK_EQ_STR(w->external_dependencies[0], "ext/1");
    w = want_of(&f, we);
    CHECK_EQ_INT(w->n_external_dependencies, 1);
    CHECK_EQ_STR(w->external_dependencies[0], "ext/2");
    CHECK(H_POLL_UNTIL(30000, pf_want_state(&f, wn, &reason) == WS(AVAILABLE)));
    CHECK_EQ_INT(want_of(&f, wn)->n_external_dependencies, 0);
    /* once built, from the recorded lineage two levels up (q/1 <- p/1 <- ext/1) */
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(
        f.b.a, "", "ext/1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.b.el, f.b.a, ev, 1);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, wq, &reason) == WS(AVAILABLE)),
              "want not AVAILABLE: %s", reason);
    w = want_of(&f, wq);
    CHECK_EQ_INT(w->n_external_dependencies, 1);
    CHECK_EQ_STR(w->external_dependencies[0], "ext/1");
    /* ListWants fills it too */
    Databuild__V1__ListWantsRequest lreq = DATABUILD__V1__LIST_WANTS_REQUEST__INIT;
    Databuild__V1__ListWantsResponse *lresp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f.q->client, "/databuild.v1.DataBuildService/ListWants", &lreq.base,
                               &databuild__v1__list_wants_response__descriptor,
                               dbld_arena_allocator(f.b.a), (ProtobufCMessage **)&lresp, BF_CALL_MS,
                               0, &st),
             st);
    int seen = 0;
    for (size_t i = 0; i < lresp->n_wants; i++) {
        const Databuild__V1__PartitionWant *pw = lresp->wants[i]->want;
        if (strcmp(pw->want_id, wq) != 0) continue;
        seen = 1;
        CHECK_EQ_INT(pw->n_external_dependencies, 1);
        CHECK_EQ_STR(pw->external_dependencies[0], "ext/1");
    }
    CHECK(seen);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(build_request_records_every_want, 180),
               DBLD_TEST_ENTRY_T(want_lists_its_external_dependencies, 180))
