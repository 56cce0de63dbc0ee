/* test_taints.c - taint_propagator (services/graph/propagator.c) with real
 * event log, job and graph services: a taint makes every partition built,
 * transitively, from the tainted one stale (PartitionInvalidationEvents
 * naming the taint and the input), the next build rebuilds exactly those
 * and nothing else, and a live want on a downstream partition has the
 * reconciler rebuild them with no build command.
 *
 * The graph: a/X needs b/X and c/X, b/X needs c/X; r/W (a weekly report)
 * needs a/W-1 .. a/W-3 (tests/jobs/graph_job.py).
 */
#include "test_processes_fixture.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//t:r\"\n      command: %CMD%\n      outputs: [\"r/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"r/(.*)\", \"inputs\": [\"a/\\\\1-1\", \"a/\\\\1-2\", \"a/\\\\1-3\"]}]"

static void setup(bf *f, const char *hint)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(f, hint, &o);
}

/* Taint ref through the event log; the taint's event id. */
static const char *taint(bf *f, const char *ref)
{
    Databuild__V1__BuildEvent *e =
        h_event_taint(f->a, "", (const char *const[]){ref, NULL},
                      DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "bad input");
    h_append_ok(f->el, f->a, &e, 1);
    return e->event_id;
}

/* The reason of the latest invalidation of ref ("" when none). */
static const char *stale_reason(bf *f, const char *ref)
{
    h_event_list all = bf_all_events(f);
    const char *reason = "";
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        if (e->event_type_case ==
                DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT &&
            strcmp(e->partition_invalidation_event->partition_ref->str, ref) == 0)
            reason = e->partition_invalidation_event->reason;
    }
    return reason;
}

static void build_ok(bf *f, const char *ref)
{
    dbld_status st = {0};
    CHECK_OK(bf_build(f, (const char *const[]){ref, NULL}, NULL, &st), st);
}

DBLD_TEST(taint_rebuilds_exactly_the_downstream)
{
    bf f;
    setup(&f, "taintdown");
    build_ok(&f, "r/w");
    /* r/w, a/w-1..3, b/w-1..3, c/w-1..3: 10 runs */
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 10);
    taint(&f, "c/w-2");
    CHECK_MSG(H_POLL_UNTIL(20000, bf_tainted(&f, "r/w")), "r/w not made stale");
    CHECK(bf_tainted(&f, "b/w-2"));
    CHECK(bf_tainted(&f, "a/w-2"));
    CHECK(!bf_tainted(&f, "a/w-1"));
    CHECK(!bf_tainted(&f, "c/w-3"));
    CHECK_CONTAINS(stale_reason(&f, "b/w-2"), "via input c/w-2");
    CHECK_CONTAINS(stale_reason(&f, "r/w"), "via input a/w-2");
    CHECK_CONTAINS(stale_reason(&f, "r/w"), "of c/w-2");
    /* rebuilding the week reruns exactly the tainted day's chain and the report */
    build_ok(&f, "r/w");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
    CHECK_EQ_INT(bf_execs(&f, "c/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "b/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "r/w"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/w-1"), 1);
    CHECK_EQ_INT(bf_execs(&f, "c/w-3"), 1);
    /* the rebuild cleared the staleness: building again runs nothing */
    CHECK(!bf_tainted(&f, "r/w"));
    CHECK(!bf_tainted(&f, "a/w-2"));
    build_ok(&f, "r/w");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
    /* the propagation item is COMPLETED, with its count */
    h_rows *r = h_sql(f.dsn, "SELECT state FROM process_work WHERE process = 'taint_propagator'");
    CHECK_EQ_INT(h_rows_n(r), 1);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED);
    h_rows_free(r);
}

DBLD_TEST(live_want_rebuilds_stale_without_a_command)
{
    bf f;
    setup(&f, "taintwant");
    char id[37];
    dbld_uuid_v4(id);
    Databuild__V1__BuildEvent *e =
        h_event_want(f.a, "", id, H_STRS("r/v"), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "");
    h_append_ok(f.el, f.a, &e, 1);
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "r/v") ==
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE));
    CHECK(H_POLL_UNTIL(20000, bf_lines(&f, "exec.log") == 10));
    taint(&f, "c/v-1");
    CHECK_MSG(H_POLL_UNTIL(60000, bf_execs(&f, "r/v") == 2 && !bf_tainted(&f, "r/v") &&
                                      bf_part_status(&f, "r/v") ==
                                          DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "r/v not rebuilt for its live want");
    CHECK_EQ_INT(bf_execs(&f, "c/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "b/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/v-2"), 1);
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
}

/* GetPartitionsSummary's PartitionStaleInfo (field 1001 of its partition), read as a client
 * of databuild_process.proto would; NULL when absent. */
static Databuild__V1__PartitionStaleInfo *stale_info(pf *f, const char *ref)
{
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    req.ref = &pr;
    Databuild__V1__PartitionSummaryResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/GetPartitionsSummary",
                               &req.base, &databuild__v1__partition_summary_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    size_t n;
    uint8_t *b = dbld_msg_pack(f->b.a, &resp->partition->base, &n);
    Databuild__V1__PartitionSummaryV2Ext *x =
        databuild__v1__partition_summary_v2_ext__unpack(dbld_arena_allocator(f->b.a), n, b);
    CHECK(x != NULL);
    return x->stale;
}

DBLD_TEST(summary_says_why_a_partition_is_stale)
{
    pf f;
    pf_setup(&f, "taintwhy", JOBS, RULES, NULL);
    build_ok(&f.b, "r/w");
    CHECK(stale_info(&f, "r/w") == NULL);
    const char *tid = taint(&f.b, "c/w-2");
    CHECK_MSG(H_POLL_UNTIL(20000, bf_tainted(&f.b, "r/w")), "r/w not made stale");
    /* tainted itself */
    Databuild__V1__PartitionStaleInfo *s = stale_info(&f, "c/w-2");
    CHECK(s != NULL);
    CHECK_EQ_STR(s->taint_id, tid);
    CHECK_EQ_STR(s->via_input, "");
    CHECK_EQ_STR(s->reason, "bad input");
    /* stale through an input, one and two levels down */
    s = stale_info(&f, "b/w-2");
    CHECK(s != NULL);
    CHECK_EQ_STR(s->taint_id, tid);
    CHECK_EQ_INT(s->n_tainted_refs, 1);
    CHECK_EQ_STR(s->tainted_refs[0], "c/w-2");
    CHECK_EQ_STR(s->via_input, "c/w-2");
    CHECK(s->since_ns > 0);
    s = stale_info(&f, "r/w");
    CHECK(s != NULL);
    CHECK_EQ_STR(s->taint_id, tid);
    CHECK_EQ_STR(s->via_input, "a/w-2");
    CHECK(stale_info(&f, "a/w-1") == NULL);
    /* the CLI shows it */
    cli_out o =
        cli_runv((const char *const[]){"--server", f.q->addr, "partitions", "show", "r/w", NULL});
    CHECK_EQ_INT(o.code, 0);
    CHECK_CONTAINS(o.out, "stale");
    CHECK_CONTAINS(o.out, tid);
    CHECK_CONTAINS(o.out, "of c/w-2 via input a/w-2");
    /* a rebuild clears it */
    build_ok(&f.b, "r/w");
    CHECK(stale_info(&f, "r/w") == NULL);
    CHECK(stale_info(&f, "c/w-2") == NULL);
    o = cli_runv((const char *const[]){"--server", f.q->addr, "partitions", "show", "r/w", NULL});
    CHECK_EQ_INT(o.code, 0);
    CHECK(strstr(o.out, "stale") == NULL);
}

/* ---- stale cancellation: s/X reads x/X, u/X reads z/X; both gated ---- */

#define CANCEL_JOBS                                                                                \
    "    - label: \"//t:x\"\n      command: %CMD%\n      outputs: [\"x/.*\"]\n"                    \
    "    - label: \"//t:z\"\n      command: %CMD%\n      outputs: [\"z/.*\"]\n"                    \
    "    - label: \"//t:s\"\n      command: %CMD%\n      outputs: [\"s/.*\"]\n"                    \
    "    - label: \"//t:u\"\n      command: %CMD%\n      outputs: [\"u/.*\"]\n"

#define CANCEL_RULES                                                                               \
    "[{\"match\": \"s/(.*)\", \"inputs\": [\"x/\\\\1\"], \"gate\": \"open-s\", \"tag\": \"s\"},"   \
    " {\"match\": \"u/(.*)\", \"inputs\": [\"z/\\\\1\"], \"gate\": \"open-u\", \"tag\": \"u\"}]"

static int file_exists(bf *f, const char *name)
{
    return access(dbld_arena_printf(f->a, "%s/%s", f->state, name), F_OK) == 0;
}

/* status and message of the latest job run of label ("" / -1 when none) */
static int run_status(bf *f, const char *label, const char **msg)
{
    h_rows *r = h_sql(
        f->dsn, dbld_arena_printf(f->a,
                                  "SELECT status, message FROM job_runs WHERE job_label = '%s'"
                                  " ORDER BY created_ns DESC LIMIT 1",
                                  label));
    int st = h_rows_n(r) ? (int)h_rows_i64(r, 0, 0) : -1;
    if (msg) *msg = h_rows_n(r) ? dbld_arena_strdup(f->a, h_rows_get(r, 0, 1)) : "";
    h_rows_free(r);
    return st;
}

/* 1 when build id ended (COMPLETED, FAILED, CANCELLED, PRECONDITION_FAILED) */
static int build_ended(bf *f, const char *id)
{
    h_rows *r =
        h_sql(f->dsn, dbld_arena_printf(f->a,
                                        "SELECT count(*) FROM build_requests WHERE"
                                        " build_request_id = '%s' AND status IN (4, 5, 6, 8)",
                                        id));
    int n = (int)h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n == 1;
}

DBLD_TEST(taint_cancels_in_flight_runs_reading_it)
{
    bf f;
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = CANCEL_JOBS, .rules = CANCEL_RULES};
    bf_setup(&f, "taintcancel", &o);
    build_ok(&f, "x/1");
    build_ok(&f, "z/1");
    char *bs = bf_submit(&f, H_STRS("s/1"));
    char *bu = bf_submit(&f, H_STRS("u/1"));
    CHECK_MSG(H_POLL_UNTIL(30000, file_exists(&f, "waiting-s") && file_exists(&f, "waiting-u")),
              "the gated runs did not start");
    /* the job's marker file can appear before its JobRunStart event is stored */
    CHECK_MSG(
        H_POLL_UNTIL(30000,
                     run_status(&f, "//t:s", NULL) == DATABUILD__V1__JOB_STATUS__JOB_RUNNING &&
                         run_status(&f, "//t:u", NULL) == DATABUILD__V1__JOB_STATUS__JOB_RUNNING),
        "the gated runs were not recorded RUNNING");
    taint(&f, "x/1");
    const char *msg = "";
    CHECK_MSG(H_POLL_UNTIL(30000, run_status(&f, "//t:s", &msg) ==
                                      DATABUILD__V1__JOB_STATUS__JOB_CANCELLED),
              "the run reading the tainted input was not cancelled");
    CHECK_CONTAINS(msg, "stale: taint ");
    CHECK_CONTAINS(msg, "of x/1 via input x/1");
    CHECK_MSG(H_POLL_UNTIL(30000, build_ended(&f, bs)), "the cancelled run's build did not end");
    /* the independent run goes on and completes once let through */
    CHECK_EQ_INT(run_status(&f, "//t:u", NULL), DATABUILD__V1__JOB_STATUS__JOB_RUNNING);
    h_write_file(dbld_arena_printf(f.a, "%s/open-u", f.state), "");
    CHECK(H_POLL_UNTIL(30000,
                       run_status(&f, "//t:u", NULL) == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED));
    CHECK(H_POLL_UNTIL(30000, bf_part_status(&f, "u/1") ==
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE));
    (void)bu;
    /* a build requested after the taint rebuilds x/1 first and is not cancelled */
    h_write_file(dbld_arena_printf(f.a, "%s/open-s", f.state), "");
    build_ok(&f, "s/1");
    CHECK_EQ_INT(bf_execs(&f, "x/1"), 2);
    CHECK_EQ_INT(run_status(&f, "//t:s", NULL), DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_EQ_INT(bf_part_status(&f, "s/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    h_rows *r = h_sql(f.dsn, "SELECT count(*) FROM events WHERE kind = 16");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), 1);
    h_rows_free(r);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(taint_rebuilds_exactly_the_downstream, 240),
               DBLD_TEST_ENTRY_T(live_want_rebuilds_stale_without_a_command, 240),
               DBLD_TEST_ENTRY_T(taint_cancels_in_flight_runs_reading_it, 240),
               DBLD_TEST_ENTRY_T(summary_says_why_a_partition_is_stale, 240))
