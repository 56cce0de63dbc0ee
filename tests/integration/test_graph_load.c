/* test_graph_load.c - the graph service under load keeps a bounded number of
 * threads and stays responsive (issue 17): builds run on a fixed pool
 * (graph.build_threads) and their tasks on another (graph.task_threads),
 * not on a thread each; work beyond the pools waits in a bounded queue
 * (graph.build_queue) and beyond that is refused RESOURCE_EXHAUSTED with a
 * message, never by aborting.
 *
 * - load: 200 builds submitted at once (one Submit per thread of this test,
 *   released together) of a no-op job (bench/noop_job.c, the cheapest
 *   process there is). While they run, the graph service's thread count
 *   (/proc/PID/status Threads:) is sampled every 20 ms and must stay within
 *   its idle count (which includes both pools, started with the service)
 *   plus a small slack for gRPC's own threads, and a Lookup is timed every
 *   50 ms: 95 % of them must answer within 100 ms and none take over 1 s
 *   (both x5 in a sanitizer build). Every build ends COMPLETED or
 *   was refused RESOURCE_EXHAUSTED with a message; none is lost or hangs.
 * - queue: with one build thread and a queue of one, a build that holds its
 *   thread (its job waits at a gate that never opens) and a queued one fill
 *   the pool; the next Submit is refused RESOURCE_EXHAUSTED naming the
 *   settings and records nothing; cancelling the running build lets the
 *   queued one run.
 */
#include "test_build_fixture.h"

#include <pthread.h>
#include <stdatomic.h>

#define N_BUILDS 200
#define BUILD_THREADS 8
#define TASK_THREADS 8
#define BUILD_QUEUE 250     /* threads + queue >= N_BUILDS: all 200 are admitted */
#define THREAD_SLACK 8      /* gRPC core may start a few threads of its own under load */
#define LOOKUP_BOUND_MS 100 /* the bound on Lookup while loaded (95th percentile) */
#define LOOKUP_MAX_MS 1000  /* and no Lookup waits longer than this */
#define LOAD_GUARD_MS 300000
#define MAX_LOOKUPS 20000

/* Sanitizers slow every process of the suite several times over. */
#if defined(__SANITIZE_ADDRESS__)
#define SLOW 5
#else
#define SLOW 1
#endif

#define JOBS                                                                                       \
    "    - label: \"//load:noop\"\n      command: [\"" DBLD_BIN_DIR "/noop_job\"]\n"               \
    "      outputs: [\"noop/.*\"]\n"                                                               \
    "    - label: \"//load:held\"\n      command: %CMD%\n      outputs: [\"held/.*\"]\n"

#define RULES "[{\"match\": \"held/.*\", \"gate\": \"never\"}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x

/* Threads: of /proc/PID/status, -1 when unreadable. */
static int threads_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = h_read_file(path, NULL);
    if (!text) return -1;
    const char *p = strstr(text, "\nThreads:");
    int n = p ? atoi(p + 9) : -1;
    free(text);
    return n;
}

/* One Submit, on a thread of its own, released with the others. */
typedef struct submitter {
    h_service *g;
    pthread_barrier_t *go;
    char ref[64];
    pthread_t th;
    int rc;
    dbld_status st;
    char id[37];
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__SubmitBuildRequest req = DATABUILD__V1__SUBMIT_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(a, (const char *const[]){s->ref, NULL}, &req.n_outputs);
    req.comment = "load";
    req.want_id = "";
    pthread_barrier_wait(s->go);
    Databuild__V1__SubmitBuildResponse *r = NULL;
    s->rc =
        dbld_client_unary(s->g->client, "/databuild.v1.GraphBuilder/Submit", &req.base,
                          &databuild__v1__submit_build_response__descriptor,
                          dbld_arena_allocator(a), (ProtobufCMessage **)&r, BF_CALL_MS, 0, &s->st);
    if (s->rc == 0) snprintf(s->id, sizeof s->id, "%s", r->build_request_id);
    dbld_arena_destroy(a);
    return NULL;
}

/* Samples the thread count and times Lookups until told to stop. */
typedef struct prober {
    h_service *g;
    atomic_int stop;
    pthread_t th;
    int max_threads, samples;
    int lookups, lookup_errors;
    int64_t lookup_ms[MAX_LOOKUPS];
    char first_error[256];
} prober;

static void *probe_thread(void *arg)
{
    prober *p = arg;
    dbld_arena *a = dbld_arena_create();
    int64_t next_lookup = 0;
    while (!atomic_load(&p->stop)) {
        int n = threads_of(p->g->pid);
        if (n > p->max_threads) p->max_threads = n;
        p->samples++;
        if (dbld_mono_ms() >= next_lookup) {
            dbld_arena_reset(a);
            Databuild__V1__GraphLookupRequest req = DATABUILD__V1__GRAPH_LOOKUP_REQUEST__INIT;
            req.outputs = bf_prefs(a, (const char *const[]){"noop/probe/x", NULL}, &req.n_outputs);
            Databuild__V1__GraphLookupResponse *r = NULL;
            dbld_status st;
            int64_t t0 = dbld_mono_ms();
            int rc =
                dbld_client_unary(p->g->client, "/databuild.v1.GraphLookup/Lookup", &req.base,
                                  &databuild__v1__graph_lookup_response__descriptor,
                                  dbld_arena_allocator(a), (ProtobufCMessage **)&r, 10000, 0, &st);
            int64_t ms = dbld_mono_ms() - t0;
            p->lookups++;
            if (rc != 0 || r->n_task_refs != 1) {
                if (!p->lookup_errors++)
                    snprintf(p->first_error, sizeof p->first_error, "%s: %s", dbld_code_name(rc),
                             rc ? st.msg : "wrong answer");
            }
            if (p->lookups <= MAX_LOOKUPS) p->lookup_ms[p->lookups - 1] = ms;
            next_lookup = dbld_mono_ms() + 50;
        }
        dbld_sleep_ms(20);
    }
    dbld_arena_destroy(a);
    return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* How many of the ids have a terminal BuildRequestEvent, and how many of
 * those COMPLETED (one listing of the whole event log). */
static void count_ended(bf *f, submitter *subs, size_t n, int *ended, int *completed,
                        const char **a_failure)
{
    h_event_list l = bf_all_events(f);
    *ended = *completed = 0;
    for (size_t i = 0; i < n; i++) {
        if (subs[i].rc) continue;
        int last = 0;
        for (size_t k = 0; k < l.n; k++) {
            const Databuild__V1__BuildEvent *e = l.events[k];
            if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT &&
                strcmp(e->build_request_id, subs[i].id) == 0)
                last = e->build_request_event->status->code;
        }
        if (bf_terminal(last)) {
            (*ended)++;
            if (last == BR(COMPLETED))
                (*completed)++;
            else if (a_failure)
                *a_failure = subs[i].ref;
        }
    }
}

DBLD_TEST(load_bounded_threads_responsive_lookup)
{
    bf f;
    char extra[256];
    snprintf(extra, sizeof extra, "  build_threads: %d\n  task_threads: %d\n  build_queue: %d\n",
             BUILD_THREADS, TASK_THREADS, BUILD_QUEUE);
    bf_opts o = {.jobs = JOBS, .rules = RULES, .graph_extra = extra, .max_runs = 8};
    bf_setup(&f, "graphload", &o);
    dbld_sleep_ms(500); /* let start-up settle */
    int idle = threads_of(f.graph->pid);
    h_note("graph service threads when idle: %d (build_threads %d, task_threads %d)", idle,
           BUILD_THREADS, TASK_THREADS);
    CHECK_CMP_INT(idle, >=, BUILD_THREADS + TASK_THREADS); /* the pools start with the service */
    int bound = idle + THREAD_SLACK;
    CHECK_CMP_INT(bound, <, N_BUILDS); /* a thread per build would cross it */

    static prober p;
    p.g = f.graph;
    atomic_init(&p.stop, 0);
    CHECK_EQ_INT(pthread_create(&p.th, NULL, probe_thread, &p), 0);
    static submitter subs[N_BUILDS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N_BUILDS);
    int64_t t0 = dbld_mono_ms();
    for (int i = 0; i < N_BUILDS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].g = f.graph;
        subs[i].go = &go;
        snprintf(subs[i].ref, sizeof subs[i].ref, "noop/load/p%d", i);
        CHECK_EQ_INT(pthread_create(&subs[i].th, NULL, submit_thread, &subs[i]), 0);
    }
    for (int i = 0; i < N_BUILDS; i++)
        pthread_join(subs[i].th, NULL);
    int64_t submitted_ms = dbld_mono_ms() - t0;
    pthread_barrier_destroy(&go);
    int accepted = 0, refused = 0;
    for (int i = 0; i < N_BUILDS; i++) {
        if (subs[i].rc == 0) {
            accepted++;
            continue;
        }
        CHECK_MSG(subs[i].rc == DBLD_RESOURCE_EXHAUSTED, "Submit of %s: %s: %s", subs[i].ref,
                  dbld_code_name(subs[i].rc), subs[i].st.msg);
        CHECK_MSG(*subs[i].st.msg, "Submit of %s refused without a message", subs[i].ref);
        refused++;
    }
    int ended = 0, completed = 0;
    const char *failed = NULL;
    for (;;) { /* each look lists the whole event log: not too often */
        count_ended(&f, subs, N_BUILDS, &ended, &completed, &failed);
        if (ended == accepted || dbld_mono_ms() - t0 > LOAD_GUARD_MS) break;
        dbld_sleep_ms(1000);
    }
    CHECK_MSG(ended == accepted, "%d of %d accepted builds ended", ended, accepted);
    int64_t all_ms = dbld_mono_ms() - t0;
    atomic_store(&p.stop, 1);
    pthread_join(p.th, NULL);
    int n_ms = p.lookups < MAX_LOOKUPS ? p.lookups : MAX_LOOKUPS;
    qsort(p.lookup_ms, (size_t)n_ms, sizeof p.lookup_ms[0], cmp_i64);
    int64_t p50 = n_ms ? p.lookup_ms[n_ms / 2] : 0, p95 = n_ms ? p.lookup_ms[n_ms * 95 / 100] : 0;
    int64_t max = n_ms ? p.lookup_ms[n_ms - 1] : 0;
    h_note("%d builds: %d accepted (%d COMPLETED), %d refused; submitted in %lld ms, all ended "
           "after %lld ms",
           N_BUILDS, accepted, completed, refused, (long long)submitted_ms, (long long)all_ms);
    h_note("threads: idle %d, max %d during the load (bound %d, %d samples); Lookup: %d calls, "
           "p50 %lld ms, p95 %lld ms, max %lld ms",
           idle, p.max_threads, bound, p.samples, p.lookups, (long long)p50, (long long)p95,
           (long long)max);
    CHECK_MSG(completed == accepted, "%d of %d accepted builds did not complete (e.g. %s)",
              accepted - completed, accepted, failed ? failed : "?");
    CHECK_EQ_INT(accepted + refused, N_BUILDS);
    CHECK_EQ_INT(refused, 0); /* threads + queue admit all 200 */
    CHECK_CMP_INT(p.samples, >, 10);
    CHECK_CMP_INT(p.max_threads, <=, bound);
    CHECK_MSG(p.lookup_errors == 0, "%d Lookups failed, first: %s", p.lookup_errors, p.first_error);
    CHECK_CMP_INT(p.lookups, >, 5);
    CHECK_MSG(p95 <= LOOKUP_BOUND_MS * SLOW, "Lookup p95 %lld ms over %d ms (max %lld ms)",
              (long long)p95, LOOKUP_BOUND_MS * SLOW, (long long)max);
    CHECK_MSG(max <= LOOKUP_MAX_MS * SLOW, "a Lookup took %lld ms (p95 %lld ms)", (long long)max,
              (long long)p95);
    /* the service is still whole: idle again, and the thread count is back */
    CHECK_CMP_INT(threads_of(f.graph->pid), <=, bound);
    h_service_stop(f.graph);
    CHECK_EQ_INT(f.graph->exit_status, 0);
}

DBLD_TEST(queue_full_refuses_and_queued_build_runs)
{
    bf f;
    bf_opts o = {.jobs = JOBS,
                 .rules = RULES,
                 .graph_extra = "  build_threads: 1\n  task_threads: 2\n  build_queue: 1\n"};
    bf_setup(&f, "graphqueue", &o);
    const char *running = bf_submit(&f, (const char *const[]){"held/1", NULL});
    CHECK(H_POLL_UNTIL(60000, bf_lines(&f, "exec.log") == 1)); /* holds the one build thread */
    const char *queued = bf_submit(&f, (const char *const[]){"held/2", NULL});
    char id[37];
    dbld_status st = {0};
    int rc = bf_submit_to(&f, f.graph, (const char *const[]){"held/3", NULL}, "over", id, &st);
    CHECK_CODE(rc, st, DBLD_RESOURCE_EXHAUSTED);
    CHECK_CONTAINS(st.msg, "graph.build_queue");
    CHECK_CONTAINS(st.msg, "1 running, 1 queued");
    CHECK_EQ_STR(bf_build_of(&f, "held/3"), ""); /* refused before anything was recorded */
    /* the queued build has not started: nothing past RECEIVED */
    dbld_sleep_ms(500);
    CHECK_EQ_STR(bf_build_seq(&f, queued), "RECEIVED");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 1);
    /* the running one ends: the queued one takes its thread */
    CHECK_OK(bf_cancel(&f, running, "make room", &st), st);
    CHECK_EQ_INT(bf_wait(&f, running, 60000)->status->code, BR(CANCELLED));
    CHECK(H_POLL_UNTIL(60000, bf_lines(&f, "exec.log") == 2));
    /* and there is room for one more again */
    const char *third = bf_submit(&f, (const char *const[]){"held/3", NULL});
    CHECK_OK(bf_cancel(&f, queued, "done", &st), st);
    CHECK_EQ_INT(bf_wait(&f, queued, 60000)->status->code, BR(CANCELLED));
    CHECK(H_POLL_UNTIL(60000, bf_lines(&f, "exec.log") == 3));
    CHECK_OK(bf_cancel(&f, third, "done", &st), st);
    CHECK_EQ_INT(bf_wait(&f, third, 60000)->status->code, BR(CANCELLED));
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(load_bounded_threads_responsive_lookup, 400),
               DBLD_TEST_ENTRY_T(queue_full_refuses_and_queued_build_runs, 200))
