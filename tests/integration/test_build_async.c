/* test_build_async.c - a blocking GraphBuilder/Build holds no RPC worker
 * (issue 15, defect 4): more concurrent Builds than the graph service has
 * workers all run, Lookup, Submit and Cancel answer while they do, each Build
 * is answered with its own result when its build ends, a Build whose client
 * gave up is let go while its build goes on, and a shutdown answers the
 * Builds still waiting.
 *
 * The jobs wait at a gate (a file the test creates), so "answered while the
 * builds run" is an ordering the test controls, not a race against a sleep.
 */
#include "test_build_fixture.h"

#include <pthread.h>
#include <stdatomic.h>

#define JOBS                                                                                       \
    "    - label: \"//a:gated\"\n      command: %CMD%\n      outputs: [\"gated/.*\"]\n"            \
    "    - label: \"//a:held\"\n      command: %CMD%\n      outputs: [\"held/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"gated/.*\", \"gate\": \"open\"},"                                              \
    " {\"match\": \"held/.*\", \"gate\": \"never\"}]"

#define WORKERS 2              /* graph.workers */
#define N_BUILDS (WORKERS + 3) /* blocking Builds at once: more than the workers */
#define HANG_GUARD_MS 90000    /* a call or a wait this long is stuck (a loaded 2-core machine) */

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x

static void setup(bf *f, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES, .graph_workers = WORKERS, .max_runs = 12};
    bf_setup(f, hint, &o);
}

/* One blocking Build on a thread of its own. */
typedef struct caller {
    h_service *g;
    char ref[64];
    int64_t timeout_ms;
    pthread_t th;
    atomic_int done;
    int rc;
    dbld_status st;
    char manifest_ref[64]; /* first output of the first manifest, when OK */
    size_t n_manifests;
} caller;

static void *build_thread(void *arg)
{
    caller *c = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__GraphBuildRequest req = DATABUILD__V1__GRAPH_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(a, (const char *const[]){c->ref, NULL}, &req.n_outputs);
    Databuild__V1__GraphBuildResponse *r = NULL;
    c->rc =
        dbld_client_unary(c->g->client, "/databuild.v1.GraphBuilder/Build", &req.base,
                          &databuild__v1__graph_build_response__descriptor, dbld_arena_allocator(a),
                          (ProtobufCMessage **)&r, c->timeout_ms, 0, &c->st);
    if (c->rc == 0) {
        c->n_manifests = r->n_manifests;
        if (r->n_manifests && r->manifests[0]->n_outputs)
            snprintf(c->manifest_ref, sizeof c->manifest_ref, "%s",
                     r->manifests[0]->outputs[0]->str);
    }
    dbld_arena_destroy(a);
    atomic_store(&c->done, 1);
    return NULL;
}

static void start_build(bf *f, caller *c, const char *ref, int64_t timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->g = f->graph;
    snprintf(c->ref, sizeof c->ref, "%s", ref);
    c->timeout_ms = timeout_ms;
    atomic_init(&c->done, 0);
    CHECK_EQ_INT(pthread_create(&c->th, NULL, build_thread, c), 0);
}

static int n_done(caller *c, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        k += atomic_load(&c[i].done);
    return k;
}

/* No Build of calls[from..n) has been answered and none of their builds has ended. */
static void check_still_running(bf *f, caller *calls, size_t from, size_t n, const char *after)
{
    for (size_t i = from; i < n; i++) {
        CHECK_MSG(!atomic_load(&calls[i].done), "Build %s answered (%s) before %s", calls[i].ref,
                  dbld_code_name(calls[i].rc), after);
        Databuild__V1__BuildRequestEvent *last = bf_build_last(f, bf_build_of(f, calls[i].ref));
        CHECK(last != NULL);
        CHECK_MSG(!bf_terminal(last->status->code), "build of %s ended before %s", calls[i].ref,
                  after);
    }
}

static int log_has(h_service *s, const char *text)
{
    char *log = h_read_file(s->log_path, NULL);
    int found = log && strstr(log, text);
    free(log);
    return found;
}

static int lookup_within(bf *f, const char *ref, dbld_status *st)
{
    Databuild__V1__GraphLookupRequest req = DATABUILD__V1__GRAPH_LOOKUP_REQUEST__INIT;
    req.outputs = bf_prefs(f->a, (const char *const[]){ref, NULL}, &req.n_outputs);
    Databuild__V1__GraphLookupResponse *r = NULL;
    int rc = dbld_client_unary(f->graph->client, "/databuild.v1.GraphLookup/Lookup", &req.base,
                               &databuild__v1__graph_lookup_response__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, HANG_GUARD_MS,
                               0, st);
    if (rc == 0) CHECK_EQ_INT(r->n_task_refs, 1);
    return rc;
}

DBLD_TEST(blocking_builds_hold_no_worker)
{
    bf f;
    setup(&f, "asyncbuild");
    caller calls[N_BUILDS];
    for (int i = 0; i < N_BUILDS; i++)
        start_build(&f, &calls[i], dbld_arena_printf(f.a, "gated/%d", i), 600000);
    /* every Build runs (with 2 workers held by 2 Builds, the others would
     * still sit in the worker queue, unsubmitted) */
    CHECK_MSG(H_POLL_UNTIL(HANG_GUARD_MS, bf_lines(&f, "exec.log") == N_BUILDS),
              "%d of %d builds run their job", bf_lines(&f, "exec.log"), N_BUILDS);
    /* a Build whose client gives up while its job waits */
    caller quitter;
    start_build(&f, &quitter, "gated/quitter", 10000);
    CHECK(H_POLL_UNTIL(HANG_GUARD_MS, bf_lines(&f, "exec.log") == N_BUILDS + 1));
    pthread_join(quitter.th, NULL);
    CHECK_CODE(quitter.rc, quitter.st, DBLD_DEADLINE_EXCEEDED);
    const char *quitter_id = bf_build_of(&f, "gated/quitter");
    CHECK(dbld_uuid_valid(quitter_id));

    /* Lookup, Submit and Cancel answer while every build still runs */
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    CHECK_OK(lookup_within(&f, "gated/77", &st), st);
    int64_t t1 = dbld_mono_ms();
    check_still_running(&f, calls, 0, N_BUILDS, "Lookup answered");
    char submitted[37];
    CHECK_OK(bf_submit_to(&f, f.graph, H_STRS("gated/submitted"), "async", submitted, &st), st);
    int64_t t2 = dbld_mono_ms();
    check_still_running(&f, calls, 0, N_BUILDS, "Submit answered");
    const char *victim = bf_build_of(&f, calls[0].ref);
    CHECK(dbld_uuid_valid(victim));
    int64_t t3 = dbld_mono_ms();
    CHECK_OK(bf_cancel(&f, victim, "async test", &st), st);
    /* figures for the record, not asserted (a shared machine's timing) */
    h_note("with %d Builds waiting on %d workers: Lookup %lld ms, Submit %lld ms, Cancel (until "
           "its build ended) %lld ms",
           N_BUILDS + 1, WORKERS, (long long)(t1 - t0), (long long)(t2 - t1),
           (long long)(dbld_mono_ms() - t3));
    CHECK_EQ_INT(bf_build_last(&f, victim)->status->code, BR(CANCELLED));
    check_still_running(&f, calls, 1, N_BUILDS, "Cancel answered");
    /* the cancelled Build is answered with its own outcome */
    pthread_join(calls[0].th, NULL);
    CHECK_CODE(calls[0].rc, calls[0].st, DBLD_CANCELLED);
    CHECK_CONTAINS(calls[0].st.msg, victim);
    check_still_running(&f, calls, 1, N_BUILDS, "the cancelled Build was answered");

    /* the quitter's call was let go; its build goes on */
    CHECK(H_POLL_UNTIL(HANG_GUARD_MS, log_has(f.graph, "build call ended before its build")));
    Databuild__V1__BuildRequestEvent *last = bf_build_last(&f, quitter_id);
    CHECK(last && !bf_terminal(last->status->code));

    /* open the gate: each Build gets its own result when its build ends */
    h_write_file(dbld_arena_printf(f.a, "%s/open", f.state), "");
    for (int i = 1; i < N_BUILDS; i++) {
        pthread_join(calls[i].th, NULL);
        CHECK_OK(calls[i].rc, calls[i].st);
        CHECK_EQ_INT(calls[i].n_manifests, 1);
        CHECK_EQ_STR(calls[i].manifest_ref, calls[i].ref);
        CHECK_EQ_INT(bf_build_last(&f, bf_build_of(&f, calls[i].ref))->status->code, BR(COMPLETED));
    }
    CHECK_EQ_INT(bf_wait(&f, quitter_id, 30000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_wait(&f, submitted, 30000)->status->code, BR(COMPLETED));
    /* a Build of what is already built is answered at once, still async */
    caller again;
    start_build(&f, &again, calls[1].ref, 60000);
    pthread_join(again.th, NULL);
    CHECK_OK(again.rc, again.st);
    CHECK_EQ_INT(again.n_manifests, 0);
    /* nothing is left waiting: the service stops at once and cleanly */
    h_service_stop(f.graph);
    CHECK_EQ_INT(n_done(calls, N_BUILDS), N_BUILDS);
}

/* SIGTERM while Builds wait: each is answered UNAVAILABLE (the build is
 * resumed from the event log by the next instance), and the service exits 0
 * within its grace period instead of waiting for the builds. */
DBLD_TEST(shutdown_answers_waiting_builds)
{
    bf f;
    setup(&f, "asyncstop");
    caller calls[3];
    for (int i = 0; i < 3; i++)
        start_build(&f, &calls[i], dbld_arena_printf(f.a, "held/%d", i), 600000);
    CHECK(H_POLL_UNTIL(HANG_GUARD_MS, bf_lines(&f, "exec.log") == 3));
    CHECK_EQ_INT(n_done(calls, 3), 0);
    CHECK_EQ_INT(h_service_signal_wait(f.graph, SIGTERM, HANG_GUARD_MS), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(calls[i].th, NULL);
        CHECK_CODE(calls[i].rc, calls[i].st, DBLD_UNAVAILABLE);
    }
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(blocking_builds_hold_no_worker, 400),
               DBLD_TEST_ENTRY_T(shutdown_answers_waiting_builds, 300))
