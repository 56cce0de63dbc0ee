/* test_external.c - external inputs (graph.external: never built here) with
 * real event log, job, graph and query services: a want whose partition
 * needs a missing external input waits (UPSTREAM_WAITING, naming it, no
 * attempt charged), then is built within seconds of `databuild partitions
 * mark-available`; a want on an external partition itself waits the same
 * way and becomes AVAILABLE once marked.
 *
 * The graph: p/X needs ext/X; ext/.* is external.
 */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#define JOBS "    - label: \"//t:p\"\n      command: %CMD%\n      outputs: [\"p/.*\"]\n"
#define RULES "[{\"match\": \"p/(.*)\", \"inputs\": [\"ext/\\\\1\"]}]"
#define WS(x) DATABUILD__V1__WANT_STATE__WANT_##x

typedef struct xf {
    bf b;
    h_service *q;
} xf;

static void setup(xf *f, const char *hint)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES, .external = "[\"ext/.*\"]"};
    bf_setup(&f->b, hint, &o);
    const char *jobs = strstr(f->b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts qo = {
        .eventlog_addr = f->b.el->addr,
        .extra_section =
            dbld_arena_printf(f->b.a, "graph:\n  listen: \"%s\"\n  external: [\"ext/.*\"]\n%s",
                              f->b.graph->addr, jobs),
    };
    f->q = h_service_start("query", f->b.dsn, &qo);
}

static char *put_want(xf *f, const char *ref)
{
    Databuild__V1__PutWantsRequest req = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    Databuild__V1__IndividualWantRequest w = DATABUILD__V1__INDIVIDUAL_WANT_REQUEST__INIT;
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    w.ref = &pr;
    Databuild__V1__IndividualWantRequest *ws[] = {&w};
    req.wants = ws;
    req.n_wants = 1;
    Databuild__V1__PutWantsResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/PutWants", &req.base,
                               &databuild__v1__put_wants_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    return resp->wants[0]->want_id;
}

static int want_state(xf *f, const char *id, char **reason)
{
    Databuild__V1__WantSummaryRequest req = DATABUILD__V1__WANT_SUMMARY_REQUEST__INIT;
    req.want_id = (char *)id;
    Databuild__V1__WantSummaryResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/GetWantSummary",
                               &req.base, &databuild__v1__want_summary_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    *reason = dbld_pb_unknown_string(f->b.a, &resp->want->base, DBLD_WANT_STATE_REASON);
    if (!*reason) *reason = "";
    return (int)dbld_pb_unknown_varint(&resp->want->base, DBLD_WANT_STATE);
}

static long long attempts(xf *f, const char *want)
{
    h_rows *r = h_sql(f->b.dsn, "SELECT attempts FROM process_work WHERE name = $1", want);
    long long n = h_rows_n(r) ? h_rows_i64(r, 0, 0) : -1;
    h_rows_free(r);
    return n;
}

DBLD_TEST(want_waits_for_external_input_then_builds)
{
    xf f;
    setup(&f, "extwant");
    char *reason = "";
    char *want = put_want(&f, "p/1");
    CHECK_MSG(H_POLL_UNTIL(30000, want_state(&f, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    CHECK_CONTAINS(reason, "ext/1");
    CHECK_EQ_INT(bf_execs(&f.b, "p/1"), 0);
    CHECK_EQ_INT(bf_execs(&f.b, "ext/1"), 0);
    /* waiting is not failing: no attempt charged, however long it waits */
    dbld_sleep_ms(2500);
    CHECK_EQ_INT(attempts(&f, want), 0);
    CHECK_EQ_INT(want_state(&f, want, &reason), WS(UPSTREAM_WAITING));
    /* an outside system marks the input AVAILABLE: built within seconds */
    cli_out r = cli_runv((const char *const[]){"--server", f.b.el->addr, "partitions",
                                               "mark-available", "ext/1", NULL});
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "ext/1");
    int64_t t0 = dbld_mono_ms();
    CHECK_MSG(H_POLL_UNTIL(15000, bf_part_status(&f.b, "p/1") ==
                                      DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "p/1 not built after its input was marked available");
    h_note("built %lld ms after mark-available", (long long)(dbld_mono_ms() - t0));
    CHECK_EQ_INT(bf_execs(&f.b, "p/1"), 1);
    CHECK_EQ_INT(bf_execs(&f.b, "ext/1"), 0);
    CHECK(H_POLL_UNTIL(10000, want_state(&f, want, &reason) == WS(AVAILABLE)));
}

DBLD_TEST(want_on_external_partition_waits)
{
    xf f;
    setup(&f, "extself");
    char *reason = "";
    char *want = put_want(&f, "ext/9");
    CHECK_MSG(H_POLL_UNTIL(30000, want_state(&f, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    CHECK_CONTAINS(reason, "ext/9");
    dbld_sleep_ms(1500);
    CHECK_EQ_INT(attempts(&f, want), 0);
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(
        f.b.a, "", "ext/9", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.b.el, f.b.a, ev, 1);
    CHECK(H_POLL_UNTIL(10000, want_state(&f, want, &reason) == WS(AVAILABLE)));
    CHECK_EQ_INT(bf_lines(&f.b, "exec.log"), 0);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(want_waits_for_external_input_then_builds, 180),
               DBLD_TEST_ENTRY_T(want_on_external_partition_waits, 180))
