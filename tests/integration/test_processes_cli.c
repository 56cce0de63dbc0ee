/* test_processes_cli.c - databuild.v1.Processes on the query service and the
 * `databuild processes list|show|run|settings` / `databuild operations show`
 * commands, against real event log, job, graph and query services: a want
 * put with the CLI is built by want_reconciler and shows as a COMPLETED work
 * item; settings are merged and validated; RunProcessNow answers an
 * operation that ends completed; unknown names and ids answer as documented.
 */
#include "test_processes_fixture.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"c/bad.*\", \"exit\": 1}]"

static void setup(pf *f, const char *hint)
{
    pf_setup(f, hint, JOBS, RULES, NULL);
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

DBLD_TEST(want_states)
{
    pf f;
    setup(&f, "wstate");
    cli_out r = DB(&f, "processes", "settings", "want_reconciler", "--every", "300", "--set",
                   "max_item_errors=2", "--set", "retry_backoff_ms=100");
    CHECK_EQ_INT(r.code, 0);
    char *reason = NULL;
    /* AVAILABLE once built (WANTED or BUILDING before) */
    char *ok = pf_put_want(&f, "a/s1", 0, 3600, 0);
    int s0 = pf_want_state(&f, ok, &reason);
    CHECK_MSG(s0 == WS(WANTED) || s0 == WS(BUILDING) || s0 == WS(AVAILABLE), "state %d: %s", s0,
              reason);
    CHECK_MSG(H_POLL_UNTIL(60000, pf_want_state(&f, ok, &reason) == WS(AVAILABLE)),
              "not AVAILABLE: %s", reason);
    /* the wanted partition is listed before it is built (REQUESTED), then AVAILABLE */
    r = DB(&f, "partitions", "list", "--pattern", "a/s1");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "AVAILABLE");
    /* a failing partition: retried, then given up -> FAILED with the reason */
    char *bad = pf_put_want(&f, "c/bad1", 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(60000, pf_want_state(&f, bad, &reason) == WS(FAILED) &&
                                      strstr(reason, "given up")),
              "not FAILED: %s", reason);
    CHECK_CONTAINS(reason, "c/bad1");
    /* SLA: data time an hour ago, SLA 60 s, not buildable -> SLA_BREACHED */
    uint64_t hour_ago = (uint64_t)dbld_now_ns() - 3600ULL * 1000000000ULL;
    char *late = pf_put_want(&f, "c/bad2", hour_ago, 0, 60);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, late, &reason) == WS(SLA_BREACHED)),
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
    CHECK_EQ_INT(pf_want_state(&f, id, &reason), WS(EXPIRED));
    CHECK_CONTAINS(reason, "TTL");
    /* the CLI shows state and reason */
    r = DB(&f, "wants", "show", ok);
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "AVAILABLE");
    CHECK_CONTAINS(r.out, "every partition is AVAILABLE");
}

static long long count(pf *f, const char *sql, const char *arg)
{
    h_rows *r = h_sql(f->b.dsn, sql, arg);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

DBLD_TEST(retention_trims_and_summaries_answer)
{
    pf f;
    setup(&f, "retention");
    dbld_status st = {0};
    CHECK_OK(bf_build(&f.b, H_STRS("a/r1"), NULL, &st), st);
    const char *id = bf_build_of(&f.b, "a/r1");
    CHECK(id != NULL);
    const char *logs = "SELECT count(*) FROM job_logs WHERE $1::text <> ''";
    const char *fine =
        "SELECT count(*) FROM events WHERE build_request_id = $1 AND kind IN (11, 12)";
    const char *life = "SELECT count(*) FROM events WHERE build_request_id = $1 AND kind = 10";
    CHECK(H_POLL_UNTIL(10000, count(&f, logs, "x") > 0));
    CHECK_CMP_INT(count(&f, fine, id), >, 0);
    long long lifecycle = count(&f, life, id);
    CHECK_CMP_INT(lifecycle, >, 0);
    cli_out r = DB(&f, "processes", "settings", "retention", "--set", "job_log_max_age_ms=1",
                   "--set", "event_max_age_ms=1", "--set", "batch=2");
    CHECK_EQ_INT(r.code, 0);
    r = DB(&f, "processes", "run", "retention");
    CHECK_EQ_INT(r.code, 0);
    char op[64] = "";
    sscanf(r.out, "%63s", op);
    CHECK_MSG(H_POLL_UNTIL(30000, (r = DB(&f, "operations", "show", op)).code == 0 &&
                                      strstr(r.out, "completed")),
              "retention operation not completed: %s", r.out ? r.out : "");
    CHECK_MSG(H_POLL_UNTIL(30000, count(&f, logs, "x") == 0 && count(&f, fine, id) == 0),
              "not trimmed: %lld log entries, %lld events", count(&f, logs, "x"),
              count(&f, fine, id));
    CHECK_EQ_INT(count(&f, life, id), lifecycle);
    /* the summaries still answer from the projections */
    r = DB(&f, "builds", "show", id);
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "COMPLETED");
    r = DB(&f, "partitions", "show", "a/r1");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "AVAILABLE");
    r = DB(&f, "runs", "list", "--build", id);
    CHECK_EQ_INT(r.code, 0);
    CHECK_EQ_INT(count_lines(r.out), 4); /* header + 3 runs */
    r = DB(&f, "processes", "show", "retention");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "events_deleted");
    /* and nothing is rebuilt */
    CHECK_OK(bf_build(&f.b, H_STRS("a/r1"), NULL, &st), st);
    CHECK_EQ_INT(bf_lines(&f.b, "exec.log"), 3);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(cli_processes_want_settings_run, 240),
               DBLD_TEST_ENTRY_T(retention_trims_and_summaries_answer, 240),
               DBLD_TEST_ENTRY_T(want_states, 240))
