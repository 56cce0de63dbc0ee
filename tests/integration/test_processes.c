/* test_processes.c - the background processes (services/graph/processes.c,
 * services/eventlog/processes_rpc.c) with real event log, job and graph
 * services: want_reconciler builds wants on its own (woken by the WantEvent,
 * no build command), tags the build with the want id, leaves expired wants
 * alone, records failing items as INCOMPLETE then ABORTED with bounded errors
 * while other items complete, keeping 10 errors per item and 25 per run
 * with every error counted; takes up a want and a settings change made
 * during a run in that run; with two graph replicas each of the four
 * processes runs on exactly one (every run recorded), kill -9 of the holder
 * hands them over within two lease periods, a holder frozen past its lease
 * (SIGSTOP) writes nothing once continued, and the store refuses a write
 * with a stale fencing token. run_reaper ends runs whose build ended or
 * whose coordinator's lease expired, and leaves runs a job service knows.
 *
 * The graph: a/X needs b/X and c/X, b/X needs c/X (tests/jobs/graph_job.py).
 */
#include "test_build_fixture.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#include <pthread.h>

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]}]"

#define LEASE_MS 1500
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define PROC_STATE(x) DATABUILD__V1__PROCESS_STATE__PROCESS_##x

static void settings(bf *f, const char *name, int64_t freq_ms, const char *key, int64_t v);

/* The graph's process leases last lease_ms. */
static void setup_lease(bf *f, const char *hint, int lease_ms)
{
    char lease[16];
    snprintf(lease, sizeof lease, "%d", lease_ms);
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", lease, 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(f, hint, &o);
    settings(f, DBLD_PROC_WANT_RECONCILER, 0, "record_idle_runs", 1); /* count every run */
}

static void setup(bf *f, const char *hint)
{
    setup_lease(f, hint, LEASE_MS);
}

/* Append a WantEvent for ref; ttl_s 0 = none; ts_ns 0 = now. Returns the want id. */
static char *put_want(bf *f, const char *ref, uint64_t ttl_s, int64_t ts_ns)
{
    char *id = dbld_arena_alloc(f->a, 37);
    dbld_uuid_v4(id);
    Databuild__V1__BuildEvent *e =
        h_event_want(f->a, "", id, (const char *const[]){ref, NULL},
                     DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "test want");
    e->timestamp = ts_ns;
    dbld_pb_add_unknown_varint(f->a, &e->want_event->base, DBLD_WANT_TERM_TTL, ttl_s);
    h_append_ok(f->el, f->a, &e, 1);
    return id;
}

static void settings(bf *f, const char *name, int64_t freq_ms, const char *key, int64_t v)
{
    Databuild__V1__UpdateProcessSettingsRequest req =
        DATABUILD__V1__UPDATE_PROCESS_SETTINGS_REQUEST__INIT;
    req.name = (char *)name;
    req.schedule_frequency_ms = freq_ms;
    Databuild__V1__ProcessParams *pp =
        dbld_arena_msg(f->a, &databuild__v1__process_params__descriptor);
    if (key) dbld_params_set_int(f->a, pp, key, v);
    req.settings = pp;
    Databuild__V1__Process *out = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->el->client, "/databuild.v1.ProcessStore/UpdateSettings",
                               &req.base, &databuild__v1__process__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&out, BF_CALL_MS, 0,
                               &st),
             st);
}

/* The build requests that carry want_id (RECEIVED events). */
static size_t builds_for_want(bf *f, const char *want_id)
{
    h_event_list all = bf_all_events(f);
    size_t n = 0;
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        n += e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT &&
             e->build_request_event->status &&
             e->build_request_event->status->code ==
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED &&
             strcmp(e->build_request_event->want_id, want_id) == 0;
    }
    return n;
}

/* (list, state, attempts) of a work item, from the database. */
static int item(bf *f, const char *process, const char *name, int *list, int *state,
                long long *attempts)
{
    h_rows *r = h_sql(f->dsn,
                      "SELECT list, state, attempts FROM process_work WHERE process = $1 AND"
                      " name = $2",
                      process, name);
    int found = h_rows_n(r) == 1;
    if (found) {
        *list = (int)h_rows_i64(r, 0, 0);
        *state = (int)h_rows_i64(r, 0, 1);
        *attempts = h_rows_i64(r, 0, 2);
    }
    h_rows_free(r);
    return found;
}

static long long item_attempts(bf *f, const char *name)
{
    int list = 0, state = 0;
    long long att = 0;
    CHECK_MSG(item(f, DBLD_PROC_WANT_RECONCILER, name, &list, &state, &att), "no item %s", name);
    return att;
}

static int item_state(bf *f, const char *name)
{
    int list = 0, state = 0;
    long long att = 0;
    return item(f, DBLD_PROC_WANT_RECONCILER, name, &list, &state, &att) ? state : -1;
}

/* The ProcessStatus in column status of the one row sql (one param) selects. */
static Databuild__V1__ProcessStatus *status_of(bf *f, const char *sql, const char *param)
{
    h_rows *r = h_sql(f->dsn, sql, param);
    CHECK_EQ_INT(h_rows_n(r), 1);
    const char *hex = h_rows_get(r, 0, 0);
    size_t len = strlen(hex) / 2;
    uint8_t *buf = dbld_arena_alloc(f->a, len + 1);
    for (size_t i = 0; i < len; i++)
        sscanf(hex + 2 * i, "%2hhx", &buf[i]);
    h_rows_free(r);
    return dbld_pstatus_unpack(f->a, buf, len);
}

#define ITEM_STATUS_SQL "SELECT encode(status, 'hex') FROM process_work WHERE name = $1"

/* The id of the build request that carries want_id, or NULL. */
static const char *build_of_want(bf *f, const char *want_id)
{
    h_event_list all = bf_all_events(f);
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT &&
            strcmp(e->build_request_event->want_id, want_id) == 0)
            return e->build_request_id;
    }
    return NULL;
}

DBLD_TEST(want_builds_without_a_build_command)
{
    bf f;
    setup(&f, "want");
    char *want = put_want(&f, "a/1", 0, 0);
    /* registered in the same transaction as the WantEvent: the item is
     * there once PutWants has answered (NEW, or already taken up: the
     * reconciler is woken by the write) */
    int st0 = item_state(&f, want);
    CHECK_MSG(st0 != -1, "no want_reconciler work item for want %s after PutWants", want);
    CHECK_MSG(H_POLL_UNTIL(60000, bf_part_status(&f, "a/1") == PS(AVAILABLE)),
              "a/1 not built for its want");
    CHECK_EQ_INT(bf_part_status(&f, "b/1"), PS(AVAILABLE));
    CHECK_EQ_INT(builds_for_want(&f, want), 1);
    CHECK_EQ_INT(bf_execs(&f, "a/1"), 1);
    CHECK_MSG(H_POLL_UNTIL(30000, item_state(&f, want) == PROC_STATE(COMPLETED)),
              "the want's item is not COMPLETED: %d", item_state(&f, want));
    Databuild__V1__ProcessRunEvent **runs;
    size_t n = bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, &runs);
    CHECK_CMP_INT(n, >=, 1);
    int submitted = 0;
    for (size_t i = 0; i < n; i++)
        submitted += runs[i]->n_build_request_ids;
    CHECK_EQ_INT(submitted, 1);
    /* nothing more is built while the want stays satisfied */
    settings(&f, DBLD_PROC_WANT_RECONCILER, 200, NULL, 0);
    size_t before = bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, NULL);
    CHECK(H_POLL_UNTIL(10000, bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, NULL) >= before + 3));
    CHECK_EQ_INT(builds_for_want(&f, want), 1);
    CHECK_EQ_INT(bf_execs(&f, "a/1"), 1);
}

DBLD_TEST(want_wakes_the_reconciler_at_once)
{
    bf f;
    setup(&f, "wake");
    /* a schedule that never comes: only the wake-up can start the build */
    settings(&f, DBLD_PROC_WANT_RECONCILER, 86400000, NULL, 0);
    CHECK(H_POLL_UNTIL(20000, bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, NULL) >= 1));
    int64_t t0 = dbld_mono_ms();
    char *want = put_want(&f, "c/9", 0, 0);
    CHECK_MSG(H_POLL_UNTIL(10000, builds_for_want(&f, want) == 1), "no build for the want");
    int64_t ms = dbld_mono_ms() - t0;
    h_note("want -> build request: %lld ms", (long long)ms);
    CHECK_CMP_INT(ms, <, 3000); /* target 1 s (bench/run_wants.sh measures it) */
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "c/9") == PS(AVAILABLE)));
}

DBLD_TEST(expired_want_is_not_built)
{
    bf f;
    setup(&f, "expired");
    settings(&f, DBLD_PROC_WANT_RECONCILER, 200, NULL, 0);
    /* created 10 s ago with a TTL of 2 s */
    char *old = put_want(&f, "c/old", 2, dbld_now_ns() - 10 * 1000000000LL);
    char *live = put_want(&f, "c/live", 3600, 0);
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "c/live") == PS(AVAILABLE)));
    int list = 0, state = 0;
    long long att = 0;
    CHECK(H_POLL_UNTIL(10000, item(&f, DBLD_PROC_WANT_RECONCILER, old, &list, &state, &att) &&
                                  list == DATABUILD__V1__WORK_LIST__WORK_CLEANUP));
    CHECK_EQ_INT(builds_for_want(&f, old), 0);
    CHECK_EQ_INT(bf_part_status(&f, "c/old"), PS(REQUESTED)); /* wanted, never built */
    CHECK_EQ_INT(bf_execs(&f, "c/old"), 0);
    CHECK(item(&f, DBLD_PROC_WANT_RECONCILER, live, &list, &state, &att));
    CHECK_EQ_INT(list, DATABUILD__V1__WORK_LIST__WORK_ACTIVE);
}

/* A want on ref, which no job produces: every submission for it is refused.
 * The reconciler runs every 200 ms with max_item_errors and retry_backoff_ms. */
static char *failing_want(bf *f, const char *ref, int64_t max_errors, int64_t backoff_ms)
{
    settings(f, DBLD_PROC_WANT_RECONCILER, 200, "max_item_errors", max_errors);
    settings(f, DBLD_PROC_WANT_RECONCILER, 0, "retry_backoff_ms", backoff_ms);
    return put_want(f, ref, 0, 0);
}

DBLD_TEST(failing_item_incomplete_then_aborted_others_complete)
{
    bf f;
    setup(&f, "abort");
    char *bad = failing_want(&f, "nobody/1", 3, 100);
    char *good = put_want(&f, "c/good", 0, 0);
    CHECK(H_POLL_UNTIL(30000, item_state(&f, bad) == PROC_STATE(INCOMPLETE) ||
                                  item_state(&f, bad) == PROC_STATE(ABORTED)));
    CHECK_MSG(H_POLL_UNTIL(30000, item_state(&f, bad) == PROC_STATE(ABORTED)),
              "bad want not ABORTED: %d", item_state(&f, bad));
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "c/good") == PS(AVAILABLE)));
    CHECK(H_POLL_UNTIL(30000, item_state(&f, good) == PROC_STATE(COMPLETED)));
    CHECK_EQ_INT(item_attempts(&f, bad), 3);
    /* its errors: one per attempt, naming the cause, at most 10 kept */
    Databuild__V1__ProcessStatus *s = status_of(&f, ITEM_STATUS_SQL, bad);
    CHECK_EQ_INT(s->total_errors, 3);
    CHECK_EQ_INT(s->n_errors, 3);
    CHECK_CONTAINS(s->errors[0]->text, "nobody/1");
    /* the runs were INCOMPLETE and their errors bounded */
    Databuild__V1__ProcessRunEvent **runs;
    size_t n = bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, &runs);
    int incomplete = 0;
    for (size_t i = 0; i < n; i++)
        incomplete += runs[i]->state == PROC_STATE(INCOMPLETE);
    CHECK_CMP_INT(incomplete, >=, 3);
    /* once ABORTED it is not tried again */
    size_t before = n;
    CHECK(H_POLL_UNTIL(10000, bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, NULL) >= before + 3));
    CHECK_EQ_INT(item_attempts(&f, bad), 3);
}

static long long proc_runs(bf *f, const char *name)
{
    h_rows *r = h_sql(f->dsn, "SELECT runs FROM processes WHERE name = $1", name);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* Wait until name has run more than runs0 times and no run is in progress
 * (also 600 ms later: a wake-up seen late starts one more). */
static void wait_idle(bf *f, const char *name, long long runs0)
{
    for (int round = 0; round < 2; round++) {
        CHECK_MSG(H_POLL_UNTIL(30000, ({
                                   h_rows *q = h_sql(f->dsn,
                                                     "SELECT runs, state FROM processes WHERE"
                                                     " name = $1",
                                                     name);
                                   int done = h_rows_i64(q, 0, 0) > runs0 &&
                                              h_rows_i64(q, 0, 1) != PROC_STATE(ACTIVE);
                                   h_rows_free(q);
                                   done;
                               })),
                  "%s did not go idle", name);
        if (!round) dbld_sleep_ms(600);
    }
}

DBLD_TEST(errors_bounded_per_item_and_per_run)
{
    bf f;
    setup(&f, "errcap");
    /* one want that fails 12 times: its newest 10 errors are kept */
    char *bad = failing_want(&f, "nobody/12", 12, 1);
    CHECK_MSG(H_POLL_UNTIL(60000, item_state(&f, bad) == PROC_STATE(ABORTED)),
              "the want was not ABORTED after 12 attempts: %d", item_state(&f, bad));
    CHECK_EQ_INT(item_attempts(&f, bad), 12);
    Databuild__V1__ProcessStatus *s = status_of(&f, ITEM_STATUS_SQL, bad);
    CHECK_EQ_INT(s->total_errors, 12);
    CHECK_EQ_INT(s->n_errors, DBLD_PROC_ITEM_ERRORS);
    for (size_t i = 0; i < s->n_errors; i++) { /* attempts 3..12, oldest first */
        char want[32];
        snprintf(want, sizeof want, "attempt %zu: ", i + 3);
        CHECK_MSG(strncmp(s->errors[i]->text, want, strlen(want)) == 0,
                  "error %zu is \"%s\", want it to start with \"%s\"", i, s->errors[i]->text, want);
        CHECK_CONTAINS(s->errors[i]->text, "nobody/12");
        if (i) CHECK_CMP_INT(s->errors[i]->time_ns, >=, s->errors[i - 1]->time_ns);
    }
    CHECK_EQ_INT(s->last_error_ns, s->errors[s->n_errors - 1]->time_ns);
    /* 30 wants that fail in one run: the run keeps its newest 25 errors and
     * counts all 30. No schedule, so that run stays the process's last. */
    long long runs0 = proc_runs(&f, DBLD_PROC_WANT_RECONCILER);
    settings(&f, DBLD_PROC_WANT_RECONCILER, 86400000, "max_item_errors", 1);
    wait_idle(&f, DBLD_PROC_WANT_RECONCILER, runs0);
    Databuild__V1__BuildEvent *evs[30];
    for (int i = 0; i < 30; i++) {
        char *id = dbld_arena_printf(f.a, "a0000000-0000-4000-8000-0000000000%02d", i), ref[32];
        snprintf(ref, sizeof ref, "nobody/r%02d", i); /* items are taken in name order */
        evs[i] = h_event_want(f.a, "", id, (const char *const[]){dbld_arena_strdup(f.a, ref), NULL},
                              DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "test want");
    }
    h_append_ok(f.el, f.a, evs, 30); /* one transaction: one wake-up */
    char aborted[8];
    snprintf(aborted, sizeof aborted, "%d", PROC_STATE(ABORTED));
    CHECK_MSG(H_POLL_UNTIL(30000, ({
                               h_rows *q = h_sql(f.dsn,
                                                 "SELECT count(*) FROM process_work WHERE"
                                                 " process = $1 AND state = $2::int",
                                                 DBLD_PROC_WANT_RECONCILER, aborted);
                               int done = h_rows_i64(q, 0, 0) == 31;
                               h_rows_free(q);
                               done;
                           })),
              "the 30 wants were not all ABORTED");
    /* the run's ProcessRunEvent (appended after the items' commit) */
    CHECK_MSG(H_POLL_UNTIL(10000, ({
                               Databuild__V1__ProcessRunEvent **runs;
                               size_t n = bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, &runs);
                               n &&runs[n - 1]->errors == 30 && runs[n - 1]->items_aborted == 30;
                           })),
              "no run with the 30 errors recorded");
    CHECK(H_POLL_UNTIL(10000, status_of(&f,
                                        "SELECT encode(status, 'hex') FROM processes"
                                        " WHERE name = $1",
                                        DBLD_PROC_WANT_RECONCILER)
                                      ->total_errors == 30));
    s = status_of(&f, "SELECT encode(status, 'hex') FROM processes WHERE name = $1",
                  DBLD_PROC_WANT_RECONCILER);
    CHECK_EQ_INT(s->n_errors, DBLD_PROC_RUN_ERRORS);
    CHECK_CONTAINS(s->errors[0]->text, "nobody/r05"); /* the first five dropped */
    CHECK_CONTAINS(s->errors[DBLD_PROC_RUN_ERRORS - 1]->text, "nobody/r29");
}

/* The reconciler's ProcessRunEvent that lists build, or NULL. */
static const Databuild__V1__ProcessRunEvent *run_of_build(bf *f, const char *build)
{
    Databuild__V1__ProcessRunEvent **runs;
    size_t n = bf_process_runs(f, DBLD_PROC_WANT_RECONCILER, &runs);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < runs[i]->n_build_request_ids; k++)
            if (strcmp(runs[i]->build_request_ids[k], build) == 0) return runs[i];
    return NULL;
}

DBLD_TEST(changes_during_a_run_are_merged)
{
    bf f;
    /* every run pauses after its first pass: the window for the changes */
    setenv("DBLD_GRAPH_PROCESS_MERGE_PAUSE_MS", "2500", 1);
    setup(&f, "merge");
    unsetenv("DBLD_GRAPH_PROCESS_MERGE_PAUSE_MS");
    settings(&f, DBLD_PROC_WANT_RECONCILER, 86400000, "max_item_errors", 5);
    wait_idle(&f, DBLD_PROC_WANT_RECONCILER, 0);
    char *first = put_want(&f, "c/m1", 0, 0);
    const char *build = NULL;
    CHECK_MSG(H_POLL_UNTIL(20000, (build = build_of_want(&f, first)) != NULL),
              "no build for the first want");
    /* the run that submitted it is pausing now: a new want and a settings
     * change arrive during it */
    char *second = put_want(&f, "nobody/m2", 0, 0);
    settings(&f, DBLD_PROC_WANT_RECONCILER, 0, "max_item_errors", 1);
    CHECK_MSG(H_POLL_UNTIL(30000, item_state(&f, second) == PROC_STATE(ABORTED)),
              "the second want was not ABORTED: %d", item_state(&f, second));
    CHECK_EQ_INT(item_attempts(&f, second), 1); /* max_item_errors 1, read during the run */
    /* ... by the very run that submitted the first want's build (its
     * ProcessRunEvent is appended after the items' commit) */
    const Databuild__V1__ProcessRunEvent *run = NULL;
    CHECK_MSG(H_POLL_UNTIL(10000, (run = run_of_build(&f, build)) != NULL), "no run lists build %s",
              build);
    CHECK_EQ_INT(run->items_aborted, 1);
    CHECK_EQ_INT(run->errors, 1);
    CHECK_CONTAINS(run->message, "nobody/m2");
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "c/m1") == PS(AVAILABLE)));
}

/* ---- two replicas ---- */

static const char *const PROCS[] = {DBLD_PROC_WANT_RECONCILER, DBLD_PROC_TAINT_PROPAGATOR,
                                    DBLD_PROC_RETENTION, DBLD_PROC_RUN_REAPER};
#define N_PROCS (sizeof PROCS / sizeof PROCS[0])

static h_service *second_graph(bf *f)
{
    h_service *g2 = bf_graph_new(f, 2);
    h_service_restart(g2);
    return g2;
}

/* Every process runs every 200 ms and records each run, idle or not. */
static void every_process_counted(bf *f)
{
    for (size_t i = 0; i < N_PROCS; i++)
        settings(f, PROCS[i], 200, "record_idle_runs", 1);
}

/* Runs of each process by g (n[i] for PROCS[i]), from one read of the log. */
static void runs_by_each(bf *f, h_service *g, size_t n[N_PROCS])
{
    h_event_list all = bf_all_events(f);
    char tag[80];
    snprintf(tag, sizeof tag, "graph@%s/", g->addr);
    for (size_t k = 0; k < N_PROCS; k++)
        n[k] = 0;
    for (size_t i = 0; i < all.n; i++) {
        if (all.events[i]->event_type_case !=
            DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT)
            continue;
        const Databuild__V1__ProcessRunEvent *e = all.events[i]->process_run_event;
        for (size_t k = 0; k < N_PROCS; k++)
            n[k] += strcmp(e->process_name, PROCS[k]) == 0 && strstr(e->instance, tag) != NULL;
    }
}

/* 1 when g ran every process marked in which[] at least min times. */
static int ran_all(bf *f, h_service *g, const int which[N_PROCS], size_t min)
{
    size_t n[N_PROCS];
    runs_by_each(f, g, n);
    for (size_t k = 0; k < N_PROCS; k++)
        if (which[k] && n[k] < min) return 0;
    return 1;
}

/* Each process ran at least min times, every run on one replica: holder[k]
 * is the one that ran PROCS[k]. */
static void sole_runners(bf *f, h_service *g1, h_service *g2, size_t min,
                         h_service *holder[N_PROCS])
{
    size_t n1[N_PROCS], n2[N_PROCS];
    CHECK_MSG(H_POLL_UNTIL(30000, ({
                               runs_by_each(f, g1, n1);
                               runs_by_each(f, g2, n2);
                               int ok = 1;
                               for (size_t k = 0; k < N_PROCS; k++)
                                   ok &= n1[k] + n2[k] >= min;
                               ok;
                           })),
              "not every process ran %zu times", min);
    runs_by_each(f, g1, n1);
    runs_by_each(f, g2, n2);
    for (size_t k = 0; k < N_PROCS; k++) {
        h_note("%s runs: graph-1 %zu, graph-2 %zu", PROCS[k], n1[k], n2[k]);
        CHECK_MSG((n1[k] == 0) != (n2[k] == 0), "%s ran on both replicas (or none): %zu and %zu",
                  PROCS[k], n1[k], n2[k]);
        holder[k] = n1[k] ? g1 : g2;
    }
}

/* Two graph replicas, every process counted; min runs of each seen, each on
 * one replica. first: the replica that runs want_reconciler; moved[k]: 1 for
 * the processes first runs too. */
typedef struct replicas {
    h_service *g2, *first, *other;
    int moved[N_PROCS];
} replicas;

static void two_replicas(bf *f, const char *hint, size_t min, replicas *rp)
{
    setup(f, hint);
    rp->g2 = second_graph(f);
    every_process_counted(f);
    h_service *holder[N_PROCS];
    sole_runners(f, f->graph, rp->g2, min, holder);
    rp->first = holder[0];
    rp->other = rp->first == f->graph ? rp->g2 : f->graph;
    for (size_t k = 0; k < N_PROCS; k++)
        rp->moved[k] = holder[k] == rp->first;
}

/* Wait until g has run every process more times than now. */
static void wait_more_runs(bf *f, h_service *g, size_t more, int64_t timeout_ms)
{
    size_t before[N_PROCS], after[N_PROCS];
    runs_by_each(f, g, before);
    CHECK_MSG(H_POLL_UNTIL(timeout_ms, ({
                               runs_by_each(f, g, after);
                               int ok = 1;
                               for (size_t k = 0; k < N_PROCS; k++)
                                   ok &= after[k] >= before[k] + more;
                               ok;
                           })),
              "not every process ran %zu more times on %s", more, g->addr);
}

DBLD_TEST(two_replicas_one_runner_and_kill_hands_over)
{
    bf f;
    replicas rp;
    two_replicas(&f, "replicas", 10, &rp);
    h_service_kill(rp.first);
    int64_t t0 = dbld_mono_ms();
    CHECK_MSG(H_POLL_UNTIL(4 * LEASE_MS, ran_all(&f, rp.other, rp.moved, 1)),
              "the other replica did not take every process over");
    int64_t ms = dbld_mono_ms() - t0;
    h_note("takeover of every process after %lld ms (lease %d ms)", (long long)ms, LEASE_MS);
    CHECK_CMP_INT(ms, <=, 2 * LEASE_MS + 500);
    /* from then on every process runs on the survivor */
    wait_more_runs(&f, rp.other, 3, 20000);
    /* and it works: a want is built by the survivor */
    char *want = put_want(&f, "c/after", 0, 0);
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "c/after") == PS(AVAILABLE)));
    CHECK_EQ_INT(builds_for_want(&f, want), 1);
}

DBLD_TEST(frozen_holder_writes_nothing)
{
    bf f;
    replicas rp;
    two_replicas(&f, "frozen", 5, &rp);
    h_service *frozen = rp.first;
    CHECK_EQ_INT(kill(frozen->pid, SIGSTOP), 0);
    CHECK_MSG(H_POLL_UNTIL(4 * LEASE_MS, ran_all(&f, rp.other, rp.moved, 1)),
              "no takeover of every process while the holder is frozen");
    size_t frozen_runs[N_PROCS], now[N_PROCS];
    runs_by_each(&f, frozen, frozen_runs);
    CHECK_EQ_INT(kill(frozen->pid, SIGCONT), 0);
    /* give the continued replica every chance to write */
    wait_more_runs(&f, rp.other, 5, 10000);
    runs_by_each(&f, frozen, now);
    for (size_t k = 0; k < N_PROCS; k++)
        CHECK_MSG(now[k] == frozen_runs[k], "%s: the continued replica wrote %zu more runs",
                  PROCS[k], now[k] - frozen_runs[k]);
    CHECK(h_service_alive(frozen));
    char tag[80];
    snprintf(tag, sizeof tag, "graph@%s/", rp.other->addr);
    for (size_t k = 0; k < N_PROCS; k++) {
        h_rows *r = h_sql(f.dsn, "SELECT instance FROM processes WHERE name = $1", PROCS[k]);
        CHECK_CONTAINS(h_rows_get(r, 0, 0), tag);
        h_rows_free(r);
    }
}

DBLD_TEST(stale_fencing_token_is_refused)
{
    bf f;
    setup(&f, "fence");
    CHECK(H_POLL_UNTIL(20000, bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, NULL) >= 1));
    h_rows *r = h_sql(f.dsn, "SELECT instance, lease_token, runs FROM processes WHERE name = $1",
                      DBLD_PROC_WANT_RECONCILER);
    char *instance = dbld_arena_strdup(f.a, h_rows_get(r, 0, 0));
    long long token = h_rows_i64(r, 0, 1);
    h_rows_free(r);
    Databuild__V1__UpdateProcessRequest req = DATABUILD__V1__UPDATE_PROCESS_REQUEST__INIT;
    Databuild__V1__ProcessFence fence = DATABUILD__V1__PROCESS_FENCE__INIT;
    fence.name = DBLD_PROC_WANT_RECONCILER;
    fence.instance = instance;
    fence.lease_token = token - 1 > 0 ? token - 1 : token + 1; /* not the current token */
    req.fence = &fence;
    Databuild__V1__ProcessWork w = DATABUILD__V1__PROCESS_WORK__INIT;
    w.name = "forged";
    w.build_request_id = "";
    Databuild__V1__ProcessWork *items[] = {&w};
    req.items = items;
    req.n_items = 1;
    Databuild__V1__ProcessRunEvent ev = DATABUILD__V1__PROCESS_RUN_EVENT__INIT;
    ev.process_name = DBLD_PROC_WANT_RECONCILER;
    ev.instance = "forged";
    req.event = &ev;
    Databuild__V1__UpdateProcessResponse *out = NULL;
    dbld_status st = {0};
    int rc =
        dbld_client_unary(f.el->client, "/databuild.v1.ProcessStore/Update", &req.base,
                          &databuild__v1__update_process_response__descriptor,
                          dbld_arena_allocator(f.a), (ProtobufCMessage **)&out, BF_CALL_MS, 0, &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "process fence");
    r = h_sql(f.dsn, "SELECT count(*) FROM process_work WHERE name = 'forged'");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), 0);
    h_rows_free(r);
    Databuild__V1__ProcessRunEvent **runs;
    size_t n = bf_process_runs(&f, DBLD_PROC_WANT_RECONCILER, &runs);
    for (size_t i = 0; i < n; i++)
        CHECK(strcmp(runs[i]->instance, "forged") != 0);
}

/* ---- run_reaper ---- */

static void append(bf *f, Databuild__V1__BuildEvent *e)
{
    h_append_ok(f->el, f->a, &e, 1);
}

/* BuildLeases.Renew of build br for owner, as its coordinator would. */
static void renew_build_lease(bf *f, const char *br, const char *owner, uint32_t ttl_ms)
{
    Databuild__V1__RenewLeasesRequest lr = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    char *ids[] = {(char *)br};
    lr.owner = (char *)owner;
    lr.build_request_ids = ids;
    lr.n_build_request_ids = 1;
    lr.ttl_ms = ttl_ms;
    Databuild__V1__RenewLeasesResponse *lresp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->el->client, "/databuild.v1.BuildLeases/Renew", &lr.base,
                               &databuild__v1__renew_leases_response__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&lresp, BF_CALL_MS,
                               0, &st),
             st);
}

/* The passes run_reaper has made (the runs column of its process row). */
static long long reaper_passes(bf *f)
{
    h_rows *r = h_sql(f->dsn, "SELECT runs FROM processes WHERE name = $1", DBLD_PROC_RUN_REAPER);
    long long n = h_rows_n(r) == 1 ? h_rows_i64(r, 0, 0) : 0;
    h_rows_free(r);
    return n;
}

/* The reaper's lease is the product default (15 s), not the 1.5 s of the
 * handover tests: a graph stalled for a second on a loaded machine would
 * lose a short lease mid-pass and, correctly, record nothing of that pass. */
DBLD_TEST(run_reaper_ends_orphaned_runs)
{
    bf f;
    setup_lease(&f, "reaper", 15000);
    settings(&f, DBLD_PROC_RUN_REAPER, 300, "lost_after_ms", 1000);
    /* build B ended FAILED while its run R still shows RUNNING (its
     * coordinator died between the two) */
    append(&f,
           h_event_build_request(f.a, "bbbbbbbb-0000-4000-8000-000000000001",
                                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                                 H_STRS("x/1"), "", ""));
    append(&f, h_event_job(f.a, "bbbbbbbb-0000-4000-8000-000000000001",
                           "11111111-0000-4000-8000-000000000001", "//t:c",
                           DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_STRS("x/1")));
    append(&f, h_event_partition(f.a, "bbbbbbbb-0000-4000-8000-000000000001", "x/1",
                                 DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                                 "11111111-0000-4000-8000-000000000001"));
    append(&f, h_event_build_request(f.a, "bbbbbbbb-0000-4000-8000-000000000001",
                                     DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED,
                                     H_NOSTRS, "", ""));
    /* a run of a live build whose coordinator renews its lease: left alone */
    char *ids[] = {"cccccccc-0000-4000-8000-000000000002"};
    renew_build_lease(&f, ids[0], "someone-alive", 600000);
    append(&f, h_event_build_request(
                   f.a, ids[0], DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING,
                   H_STRS("x/2"), "", ""));
    append(&f, h_event_job(f.a, ids[0], "22222222-0000-4000-8000-000000000002", "//t:c",
                           DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_STRS("x/2")));
    CHECK_MSG(
        H_POLL_UNTIL(60000, ({
                         h_rows *r =
                             h_sql(f.dsn, "SELECT status, message FROM job_runs WHERE"
                                          " job_run_id = '11111111-0000-4000-8000-000000000001'");
                         int done = h_rows_n(r) == 1 && h_rows_i64(r, 0, 0) == 4;
                         if (done)
                             CHECK_CONTAINS(h_rows_get(r, 0, 1), "lost: its build request ended");
                         h_rows_free(r);
                         done;
                     })),
        "the orphaned run was not ended");
    CHECK_EQ_INT(bf_part_status(&f, "x/1"), PS(FAILED));
    /* the pass that ended it is recorded once it is over (after its events) */
    CHECK_MSG(H_POLL_UNTIL(30000, bf_process_runs(&f, DBLD_PROC_RUN_REAPER, NULL) >= 1),
              "the run_reaper pass that ended a run was not recorded");
    /* three more passes (counted on the process row), not a guess at their
     * time: the live build's run is left alone by each */
    long long passes = reaper_passes(&f);
    CHECK_MSG(H_POLL_UNTIL(60000, reaper_passes(&f) >= passes + 3),
              "run_reaper made %lld passes in 60 s after %lld (every 300 ms)",
              reaper_passes(&f) - passes, passes);
    h_rows *r = h_sql(f.dsn, "SELECT status FROM job_runs WHERE"
                             " job_run_id = '22222222-0000-4000-8000-000000000002'");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__JOB_STATUS__JOB_RUNNING);
    h_rows_free(r);
    CHECK_CMP_INT(bf_process_runs(&f, DBLD_PROC_RUN_REAPER, NULL), >=, 1);
}

DBLD_TEST(run_reaper_ends_runs_of_an_expired_coordinator)
{
    bf f;
    setup(&f, "reaperlease");
    /* no replica adopts the orphaned build (that would end or re-run it):
     * the graph service restarted with orphan polling off */
    h_service_stop(f.graph);
    setenv("DBLD_GRAPH_ORPHAN_POLL_MS", "3600000", 1);
    h_service_restart(f.graph);
    setenv("DBLD_GRAPH_ORPHAN_POLL_MS", "500", 1);
    settings(&f, DBLD_PROC_RUN_REAPER, 300, "lost_after_ms", 300);
    /* build E is still EXECUTING and its run RUNNING, but its coordinator
     * renewed its lease for the last time: it expires in 4 s */
    const char *br = "eeeeeeee-0000-4000-8000-000000000006";
    const char *run = "66666666-0000-4000-8000-000000000006";
    int64_t t0 = dbld_mono_ms(); /* the lease expires 4 s after the call, so after t0 + 4 s */
    renew_build_lease(&f, br, "coordinator-gone", 4000);
    append(&f, h_event_build_request(
                   f.a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                   H_STRS("x/6"), "", ""));
    append(&f, h_event_build_request(
                   f.a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING,
                   H_STRS("x/6"), "", ""));
    append(&f, h_event_job(f.a, br, run, "//t:c", DATABUILD__V1__JOB_STATUS__JOB_RUNNING,
                           H_STRS("x/6")));
    append(&f, h_event_partition(f.a, br, "x/6",
                                 DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, run));
    /* while the lease is live the run is left alone, though not updated for
     * longer than lost_after_ms */
    int64_t left = 2500 - (dbld_mono_ms() - t0);
    if (left > 0) dbld_sleep_ms(left);
    h_rows *r = h_sql(f.dsn, "SELECT status FROM job_runs WHERE job_run_id = $1", run);
    int64_t waited = dbld_mono_ms() - t0;
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__JOB_STATUS__JOB_RUNNING);
    h_rows_free(r);
    CHECK_CMP_INT(waited, <, 4000); /* the check above ran before the lease expired */
    CHECK_MSG(H_POLL_UNTIL(20000, ({
                               h_rows *q = h_sql(f.dsn,
                                                 "SELECT status, message FROM job_runs WHERE"
                                                 " job_run_id = $1",
                                                 run);
                               int done = h_rows_n(q) == 1 && h_rows_i64(q, 0, 0) == 4;
                               if (done)
                                   CHECK_CONTAINS(h_rows_get(q, 0, 1),
                                                  "lost: the lease of its build request's"
                                                  " coordinator expired; ended by run_reaper");
                               h_rows_free(q);
                               done;
                           })),
              "the run of the expired coordinator was not ended");
    CHECK_CMP_INT(dbld_mono_ms() - t0, >=, 4000); /* not before the lease expired */
    CHECK_EQ_INT(bf_part_status(&f, "x/6"), PS(FAILED));
    /* the reaper ends runs, not builds: the build request is left as it was */
    r = h_sql(f.dsn, "SELECT status FROM build_requests WHERE build_request_id = $1", br);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0),
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING);
    h_rows_free(r);
}

/* JobRunner.Run of a gated g/1 on the job service, as a coordinator would. */
typedef struct direct_run {
    bf *f;
    const char *id;
    int rc;
} direct_run;

static void *run_direct(void *arg)
{
    direct_run *d = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__RunJobRequest req = DATABUILD__V1__RUN_JOB_REQUEST__INIT;
    req.job_run_id = (char *)d->id;
    req.build_request_id = "dddddddd-0000-4000-8000-000000000004";
    Databuild__V1__Task t = DATABUILD__V1__TASK__INIT;
    Databuild__V1__JobLabel l = DATABUILD__V1__JOB_LABEL__INIT;
    l.label = "//t:c";
    Databuild__V1__JobConfig c = DATABUILD__V1__JOB_CONFIG__INIT;
    Databuild__V1__PartitionRef out = DATABUILD__V1__PARTITION_REF__INIT;
    out.str = "c/g";
    Databuild__V1__PartitionRef *outs[] = {&out};
    c.outputs = outs;
    c.n_outputs = 1;
    char *args[] = {"build", "c/g"};
    c.args = args;
    c.n_args = 2;
    t.job = &l;
    t.config = &c;
    req.task = &t;
    Databuild__V1__RunJobResponse *resp = NULL;
    dbld_status st = {0};
    d->rc = dbld_client_unary(d->f->job[0]->client, "/databuild.v1.JobRunner/Run", &req.base,
                              &databuild__v1__run_job_response__descriptor, dbld_arena_allocator(a),
                              (ProtobufCMessage **)&resp, 60000, 0, &st);
    dbld_arena_destroy(a);
    return NULL;
}

DBLD_TEST(run_reaper_leaves_runs_a_job_service_still_runs)
{
    bf f;
    /* the product's 15 s process lease, as in run_reaper_ends_orphaned_runs:
     * a graph stalled on a loaded machine keeps it through a pass */
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "15000", 1);
    bf_opts o = {.jobs = JOBS,
                 .rules = "[{\"match\": \"c/g\", \"gate\": \"open\", \"tag\": \"g\"}]"};
    bf_setup(&f, "reaperknown", &o);
    /* run K is alive in the job service (its coordinator is gone: the build
     * ended); run L is known to no job service */
    direct_run d = {.f = &f, .id = "44444444-0000-4000-8000-000000000004"};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, run_direct, &d) == 0);
    char waiting[700];
    snprintf(waiting, sizeof waiting, "%s/waiting-g", f.state);
    CHECK_MSG(H_POLL_UNTIL(60000, access(waiting, F_OK) == 0), "the direct run did not start");
    const char *br = "dddddddd-0000-4000-8000-000000000004";
    append(&f, h_event_build_request(
                   f.a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                   H_STRS("c/g"), "", ""));
    append(&f, h_event_job(f.a, br, d.id, "//t:c", DATABUILD__V1__JOB_STATUS__JOB_RUNNING,
                           H_STRS("c/g")));
    append(&f, h_event_job(f.a, br, "55555555-0000-4000-8000-000000000005", "//t:c",
                           DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_STRS("c/h")));
    append(&f, h_event_build_request(f.a, br,
                                     DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED,
                                     H_NOSTRS, "", ""));
    settings(&f, DBLD_PROC_RUN_REAPER, 300, "lost_after_ms", 500);
    CHECK_MSG(H_POLL_UNTIL(60000, ({
                               h_rows *r = h_sql(f.dsn, "SELECT status FROM job_runs WHERE"
                                                        " job_run_id = '55555555-0000-4000-8000-"
                                                        "000000000005'");
                               int done = h_rows_n(r) == 1 && h_rows_i64(r, 0, 0) == 4;
                               h_rows_free(r);
                               done;
                           })),
              "the run no job service knows was not ended");
    /* three more passes (counted on the process row), each leaving it alone */
    long long passes = reaper_passes(&f);
    CHECK_MSG(H_POLL_UNTIL(60000, reaper_passes(&f) >= passes + 3),
              "run_reaper made %lld passes in 60 s after %lld (every 300 ms)",
              reaper_passes(&f) - passes, passes);
    h_rows *r = h_sql(f.dsn, "SELECT status FROM job_runs WHERE job_run_id = $1", d.id);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__JOB_STATUS__JOB_RUNNING);
    h_rows_free(r);
    /* the reaper said why it left it alone */
    r = h_sql(f.dsn, "SELECT count(*) FROM job_runs WHERE message LIKE 'lost:%'");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), 1);
    h_rows_free(r);
    /* once the job service no longer knows it, it is ended too */
    char open_path[700];
    snprintf(open_path, sizeof open_path, "%s/open", f.state);
    h_write_file(open_path, "");
    pthread_join(th, NULL);
    CHECK_EQ_INT(d.rc, 0);
    CHECK_MSG(H_POLL_UNTIL(60000, ({
                               h_rows *q = h_sql(f.dsn,
                                                 "SELECT status FROM job_runs WHERE"
                                                 " job_run_id = $1",
                                                 d.id);
                               int done = h_rows_n(q) == 1 && h_rows_i64(q, 0, 0) == 4;
                               h_rows_free(q);
                               done;
                           })),
              "the run was not ended once its job service forgot it");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(run_reaper_ends_orphaned_runs, 120),
               DBLD_TEST_ENTRY_T(run_reaper_ends_runs_of_an_expired_coordinator, 120),
               DBLD_TEST_ENTRY_T(errors_bounded_per_item_and_per_run, 180),
               DBLD_TEST_ENTRY_T(changes_during_a_run_are_merged, 180),
               DBLD_TEST_ENTRY_T(run_reaper_leaves_runs_a_job_service_still_runs, 240),
               DBLD_TEST_ENTRY_T(want_builds_without_a_build_command, 180),
               DBLD_TEST_ENTRY_T(want_wakes_the_reconciler_at_once, 120),
               DBLD_TEST_ENTRY_T(expired_want_is_not_built, 120),
               DBLD_TEST_ENTRY_T(failing_item_incomplete_then_aborted_others_complete, 180),
               DBLD_TEST_ENTRY_T(two_replicas_one_runner_and_kill_hands_over, 180),
               DBLD_TEST_ENTRY_T(frozen_holder_writes_nothing, 180),
               DBLD_TEST_ENTRY_T(stale_fencing_token_is_refused, 120))
