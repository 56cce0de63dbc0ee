/* test_processes_cli.c - databuild.v1.Processes on the query service and the
 * `databuild processes list|show|run|settings` / `databuild operations show`
 * commands, against real event log, job, graph and query services: a want
 * put with the CLI is built by want_reconciler and shows as a COMPLETED work
 * item; settings are merged and validated; RunProcessNow answers an
 * operation that ends completed; unknown names and ids answer as documented.
 * Over gRPC: GetProcess pages of work items followed through next_after give
 * every item exactly once; GetOperation answers aborted, incomplete and
 * purged.
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

/* ---- databuild.v1.Processes over gRPC ---- */

static void *call_processes(pf *f, const char *method, const ProtobufCMessage *req,
                            const ProtobufCMessageDescriptor *resp_desc)
{
    char path[96];
    snprintf(path, sizeof path, "/databuild.v1.Processes/%s", method);
    ProtobufCMessage *out = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, path, req, resp_desc, dbld_arena_allocator(f->b.a),
                               &out, BF_CALL_MS, 0, &st),
             st);
    return out;
}

static Databuild__V1__GetProcessResponse *get_process(pf *f, const char *name, const char *after,
                                                      uint32_t limit)
{
    Databuild__V1__GetProcessRequest req = DATABUILD__V1__GET_PROCESS_REQUEST__INIT;
    req.name = (char *)name;
    req.after = (char *)after;
    req.limit = limit;
    return call_processes(f, "GetProcess", &req.base,
                          &databuild__v1__get_process_response__descriptor);
}

static void set_int(pf *f, const char *name, int64_t freq_ms, const char *key, int64_t v)
{
    Databuild__V1__UpdateProcessSettingsRequest req =
        DATABUILD__V1__UPDATE_PROCESS_SETTINGS_REQUEST__INIT;
    req.name = (char *)name;
    req.schedule_frequency_ms = freq_ms;
    req.settings = dbld_arena_msg(f->b.a, &databuild__v1__process_params__descriptor);
    dbld_params_set_int(f->b.a, req.settings, key, v);
    call_processes(f, "UpdateProcessSettings", &req.base, &databuild__v1__process__descriptor);
}

static char *run_now(pf *f, const char *name)
{
    Databuild__V1__RunProcessNowRequest req = DATABUILD__V1__RUN_PROCESS_NOW_REQUEST__INIT;
    req.name = (char *)name;
    Databuild__V1__WorkResponse *w =
        call_processes(f, "RunProcessNow", &req.base, &databuild__v1__work_response__descriptor);
    CHECK_EQ_STR(w->state, "queued");
    return w->id;
}

static const char *op_state(pf *f, const char *id)
{
    Databuild__V1__GetOperationRequest req = DATABUILD__V1__GET_OPERATION_REQUEST__INIT;
    req.id = (char *)id;
    Databuild__V1__WorkResponse *w =
        call_processes(f, "GetOperation", &req.base, &databuild__v1__work_response__descriptor);
    CHECK_EQ_STR(w->id, id);
    return w->state;
}

/* Wait until name is not running and has run more than runs0 times. */
static void wait_run_done(pf *f, const char *name, int64_t runs0)
{
    CHECK_MSG(H_POLL_UNTIL(30000, ({
                               Databuild__V1__Process *p = get_process(f, name, "", 1)->process;
                               p->runs > runs0 && p->process_status->state !=
                                                      DATABUILD__V1__PROCESS_STATE__PROCESS_ACTIVE;
                           })),
              "%s did not finish a run", name);
}

DBLD_TEST(processes_api_paging_and_operation_states)
{
    pf f;
    setup(&f, "papi");
    /* 23 wants on refs no job produces: 23 work items (each ABORTED after
     * its first attempt, so nothing is built or retried) */
    set_int(&f, "want_reconciler", 0, "max_item_errors", 1);
    enum { N = 23, LIMIT = 5 };
    char *ids[N];
    Databuild__V1__BuildEvent *wants[N];
    for (int i = 0; i < N; i++) { /* appended: PutWants refuses refs no job produces */
        ids[i] = dbld_arena_alloc(f.b.a, 37);
        dbld_uuid_v4(ids[i]);
        const char *ref = dbld_arena_printf(f.b.a, "nobody/p%02d", i);
        wants[i] = h_event_want(f.b.a, "", ids[i], (const char *const[]){ref, NULL},
                                DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "");
    }
    h_append_ok(f.b.el, f.b.a, wants, N);
    /* GetProcess pages of 5 through next_after: every item exactly once */
    const char *after = "";
    int seen[N] = {0}, total = 0, pages = 0;
    for (;;) {
        Databuild__V1__GetProcessResponse *resp = get_process(&f, "want_reconciler", after, LIMIT);
        CHECK_EQ_INT(resp->process->active_items, N);
        CHECK_CMP_INT(resp->n_items, <=, LIMIT);
        pages++;
        for (size_t i = 0; i < resp->n_items; i++) {
            const char *name = resp->items[i]->name;
            CHECK_MSG(strcmp(name, after) > 0, "item %s not after the cursor %s", name, after);
            int k = 0;
            while (k < N && strcmp(ids[k], name) != 0)
                k++;
            CHECK_MSG(k < N, "unknown item %s", name);
            seen[k]++;
            total++;
            after = name;
        }
        if (!*resp->next_after) break;
        CHECK_EQ_STR(resp->next_after, after);
        CHECK_CMP_INT(pages, <, N);
    }
    CHECK_EQ_INT(total, N);
    CHECK_EQ_INT(pages, (N + LIMIT - 1) / LIMIT);
    for (int k = 0; k < N; k++)
        CHECK_MSG(seen[k] == 1, "want %s listed %d times", ids[k], seen[k]);
    /* one page larger than all: no cursor */
    CHECK_EQ_STR(get_process(&f, "want_reconciler", "", 100)->next_after, "");

    /* aborted: run_reaper with a grace the store refuses fails as a whole */
    int64_t runs0 = get_process(&f, "run_reaper", "", 1)->process->runs;
    set_int(&f, "run_reaper", 86400000, "lost_after_ms", -1);
    wait_run_done(&f, "run_reaper", runs0);
    char *op = run_now(&f, "run_reaper");
    CHECK_MSG(H_POLL_UNTIL(20000, strcmp(op_state(&f, op), "aborted") == 0),
              "operation %s is %s, want aborted", op, op_state(&f, op));
    Databuild__V1__Process *p = get_process(&f, "run_reaper", "", 1)->process;
    CHECK_EQ_INT(p->process_status->state, DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED);
    CHECK_CONTAINS(p->process_status->errors[p->process_status->n_errors - 1]->text, "grace_ms");

    /* incomplete: a pass that ends a lost run but could not ask the job
     * service (gone) whether it still runs it */
    runs0 = p->runs;
    set_int(&f, "run_reaper", 0, "lost_after_ms", 0);
    wait_run_done(&f, "run_reaper", runs0);
    const char *br = "bbbbbbbb-0000-4000-8000-00000000000a";
    const char *jr = "11111111-0000-4000-8000-00000000000a";
    Databuild__V1__BuildEvent *evs[] = {
        h_event_build_request(f.b.a, br,
                              DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                              H_STRS("c/lost"), "", ""),
        h_event_job(f.b.a, br, jr, "//t:c", DATABUILD__V1__JOB_STATUS__JOB_RUNNING,
                    H_STRS("c/lost")),
        h_event_build_request(f.b.a, br,
                              DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED,
                              H_NOSTRS, "", ""),
    };
    h_append_ok(f.b.el, f.b.a, evs, 3);
    for (int i = 0; i < f.b.n_job; i++)
        h_service_kill(f.b.job[i]);
    op = run_now(&f, "run_reaper");
    CHECK_MSG(H_POLL_UNTIL(30000, strcmp(op_state(&f, op), "incomplete") == 0),
              "operation %s is %s, want incomplete", op, op_state(&f, op));
    p = get_process(&f, "run_reaper", "", 1)->process;
    CHECK_EQ_INT(p->process_status->state, DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE);
    CHECK_CONTAINS(p->process_status->errors[0]->text, "did not say which runs it knows");
    CHECK_EQ_INT(count(&f, "SELECT status FROM job_runs WHERE job_run_id = $1", jr),
                 DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    /* purged: an id the store never had */
    CHECK_EQ_STR(op_state(&f, "00000000-0000-4000-8000-00000000000b"), "purged");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(cli_processes_want_settings_run, 240),
               DBLD_TEST_ENTRY_T(processes_api_paging_and_operation_states, 240),
               DBLD_TEST_ENTRY_T(retention_trims_and_summaries_answer, 240),
               DBLD_TEST_ENTRY_T(want_states, 240))
