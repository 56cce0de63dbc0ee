/* test_processes_cli.c - databuild.v1.Processes on the query service and the
 * `databuild processes list|show|run|settings` / `databuild operations show`
 * commands, against real event log, job, graph and query services: a want
 * put with the CLI is built by want_reconciler and shows as a COMPLETED work
 * item; settings are merged and validated; RunProcessNow answers an
 * operation that ends completed; unknown names and ids answer as documented.
 */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"c/bad.*\", \"exit\": 1}]"

typedef struct pf {
    bf b;
    h_service *q;
} pf;

static void setup(pf *f, const char *hint)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(&f->b, hint, &o);
    const char *jobs = strstr(f->b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts qo = {
        .eventlog_addr = f->b.el->addr,
        .extra_section =
            dbld_arena_printf(f->b.a, "graph:\n  listen: \"%s\"\n%s", f->b.graph->addr, jobs),
    };
    f->q = h_service_start("query", f->b.dsn, &qo);
}

/* Run the CLI against the query service: databuild --server Q args... */
#define DB(f, ...) cli_runv((const char *const[]){"--server", (f)->q->addr, __VA_ARGS__, NULL})

DBLD_TEST(cli_processes_want_settings_run)
{
    pf f;
    setup(&f, "pcli");
    /* list: the four processes, want_reconciler held by the graph service */
    char tag[80];
    snprintf(tag, sizeof tag, "graph@%s/", f.b.graph->addr);
    cli_out r = {0};
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "processes", "list")).code == 0 && r.out &&
                                      strstr(r.out, tag) != NULL),
              "no holder in `processes list`: %s %s", r.out ? r.out : "", r.err ? r.err : "");
    CHECK_CONTAINS(r.out, "want_reconciler");
    CHECK_CONTAINS(r.out, "taint_propagator");
    CHECK_CONTAINS(r.out, "retention");
    CHECK_CONTAINS(r.out, "run_reaper");
    CHECK_CONTAINS(r.out, "HOLDER");

    /* settings: merged, validated, unknown process */
    r = DB(&f, "processes", "settings", "want_reconciler", "--every", "300", "--set",
           "max_item_errors=4");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "max_item_errors = 4");
    r = DB(&f, "processes", "settings", "want_reconciler", "--set", "retry_backoff_ms=200");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "max_item_errors = 4");
    CHECK_CONTAINS(r.out, "retry_backoff_ms = 200");
    r = DB(&f, "processes", "settings", "want_reconciler", "--every", "5");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "INVALID_ARGUMENT");
    CHECK_CONTAINS(r.err, "schedule_frequency_ms 5");
    r = DB(&f, "processes", "settings", "nope", "--every", "1000");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    r = DB(&f, "processes", "settings", "want_reconciler", "--set", "novalue");
    CHECK_EQ_INT(r.code, 2);

    /* a want put with the CLI is built by the reconciler */
    r = DB(&f, "wants", "put", "a/7");
    CHECK_EQ_INT(r.code, 0);
    char *line = line_with(r.out, "a/7");
    CHECK(line != NULL);
    char want[64] = "";
    sscanf(line, "%*s %63s", want);
    CHECK_EQ_INT(strlen(want), 36);
    CHECK_MSG(H_POLL_UNTIL(60000, bf_part_status(&f.b, "a/7") ==
                                      DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "a/7 not built for its want");
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "processes", "show", "want_reconciler")).code == 0 &&
                                      (line = line_with(r.out, want)) != NULL &&
                                      strstr(line, "COMPLETED") != NULL),
              "want item not shown COMPLETED: %s", r.out ? r.out : "");
    CHECK_CONTAINS(r.out, "process");
    CHECK_CONTAINS(r.out, "holder");
    r = DB(&f, "--json", "processes", "show", "want_reconciler", "--limit", "1");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "\"items\"");
    r = DB(&f, "processes", "show", "nope");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    r = DB(&f, "processes", "show", "want_reconciler", "--list", "sideways");
    CHECK_EQ_INT(r.code, 2);

    /* run now: an operation that ends completed */
    r = DB(&f, "processes", "run", "want_reconciler");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "queued");
    char op[64] = "";
    sscanf(r.out, "%63s", op);
    CHECK_EQ_INT(strlen(op), 36);
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "operations", "show", op)).code == 0 &&
                                      strstr(r.out, "completed")),
              "operation %s not completed: %s", op, r.out ? r.out : "");
    r = DB(&f, "operations", "show", "00000000-0000-4000-8000-000000000000");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "purged");
    r = DB(&f, "processes", "run", "nope");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    /* the operation's run is in the event log */
    h_event_list all = bf_all_events(&f.b);
    int found = 0;
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT)
            continue;
        for (size_t k = 0; k < e->process_run_event->n_operation_ids; k++)
            found += strcmp(e->process_run_event->operation_ids[k], op) == 0;
    }
    CHECK_EQ_INT(found, 1);
}

/* PutWants through the query service (one want). */
static char *put_want(pf *f, const char *ref, uint64_t data_ts, uint64_t ttl, uint64_t sla)
{
    Databuild__V1__PutWantsRequest req = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    Databuild__V1__IndividualWantRequest w = DATABUILD__V1__INDIVIDUAL_WANT_REQUEST__INIT;
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    w.ref = &pr;
    w.date_timestamp = data_ts;
    w.ttl_seconds = ttl;
    w.sla_seconds = sla;
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
    CHECK_EQ_INT(resp->n_wants, 1);
    return resp->wants[0]->want_id;
}

/* The want's WantStateInfo from GetWantSummary; *reason set. */
static int want_state(pf *f, const char *id, char **reason)
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
    /* read them as a WantStateInfo would: re-parse the summary's bytes */
    size_t n;
    uint8_t *b = dbld_msg_pack(f->b.a, &resp->want->base, &n);
    Databuild__V1__WantStateInfo *info =
        databuild__v1__want_state_info__unpack(dbld_arena_allocator(f->b.a), n, b);
    CHECK(info != NULL);
    if (reason) *reason = info->state_reason;
    return info->state;
}

#define WS(x) DATABUILD__V1__WANT_STATE__WANT_##x

DBLD_TEST(want_states)
{
    pf f;
    setup(&f, "wstate");
    cli_out r = DB(&f, "processes", "settings", "want_reconciler", "--every", "300", "--set",
                   "max_item_errors=2", "--set", "retry_backoff_ms=100");
    CHECK_EQ_INT(r.code, 0);
    char *reason = NULL;
    /* AVAILABLE once built (WANTED or BUILDING before) */
    char *ok = put_want(&f, "a/s1", 0, 3600, 0);
    int s0 = want_state(&f, ok, &reason);
    CHECK_MSG(s0 == WS(WANTED) || s0 == WS(BUILDING) || s0 == WS(AVAILABLE), "state %d: %s", s0,
              reason);
    CHECK_MSG(H_POLL_UNTIL(60000, want_state(&f, ok, &reason) == WS(AVAILABLE)),
              "not AVAILABLE: %s", reason);
    /* the wanted partition is listed before it is built (REQUESTED), then AVAILABLE */
    r = DB(&f, "partitions", "list", "--pattern", "a/s1");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "AVAILABLE");
    /* a failing partition: retried, then given up -> FAILED with the reason */
    char *bad = put_want(&f, "c/bad1", 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(60000, want_state(&f, bad, &reason) == WS(FAILED) &&
                                      strstr(reason, "given up")),
              "not FAILED: %s", reason);
    CHECK_CONTAINS(reason, "c/bad1");
    /* SLA: data time an hour ago, SLA 60 s, not buildable -> SLA_BREACHED */
    uint64_t hour_ago = (uint64_t)dbld_now_ns() - 3600ULL * 1000000000ULL;
    char *late = put_want(&f, "c/bad2", hour_ago, 0, 60);
    CHECK_MSG(H_POLL_UNTIL(30000, want_state(&f, late, &reason) == WS(SLA_BREACHED)),
              "not SLA_BREACHED: %s", reason);
    CHECK_CONTAINS(reason, "c/bad2");
    /* EXPIRED: a want created 10 s ago with a 1 s TTL (appended as an event) */
    char id[37];
    dbld_uuid_v4(id);
    Databuild__V1__BuildEvent *e = h_event_want(f.b.a, "", id, H_STRS("c/late"),
                                                DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "");
    e->timestamp = dbld_now_ns() - 10000000000LL;
    dbld_pb_add_unknown_varint(f.b.a, &e->want_event->base, DBLD_WANT_TERM_TTL, 1);
    h_append_ok(f.b.el, f.b.a, &e, 1);
    CHECK_EQ_INT(want_state(&f, id, &reason), WS(EXPIRED));
    CHECK_CONTAINS(reason, "TTL");
    /* the CLI shows state and reason */
    r = DB(&f, "wants", "show", ok);
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "AVAILABLE");
    CHECK_CONTAINS(r.out, "every partition is AVAILABLE");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(cli_processes_want_settings_run, 240),
               DBLD_TEST_ENTRY_T(want_states, 240))
