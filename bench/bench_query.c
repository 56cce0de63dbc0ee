/* bench_query.c - load generator and closed-loop client for the query service.
 *
 *   bench_query load --target EVENTLOG --events N --partitions P [--threads T]
 *       Appends realistic builds through the event log's Append (so every
 *       projection is maintained exactly as in production): each build
 *       requests 50 partitions (bench/p=NNNNNN, consecutive, wrapping at P),
 *       runs 10 jobs of 5 partitions - RECEIVED, PLANNING, JobGraphEvent,
 *       EXECUTING, per run SCHEDULED/RUNNING/COMPLETED (every 20th run
 *       FAILED), per partition BUILDING then AVAILABLE/FAILED, COMPLETED or
 *       FAILED: 135 events per build, until N events are written.
 *
 *   bench_query run --target QUERY --rpc summary|list --partitions P
 *                   [--seconds S] [--clients 1,16,64] [--driver async|threads]
 *       C clients call the RPC in a closed loop (next call after the
 *       answer) with a random partition: GetPartitionsSummary(ref), or a
 *       ListPartitions page (ref_pattern "bench/p=[0-9]+", status AVAILABLE,
 *       last_partition = the random ref); --rpc health calls grpc.health.v1
 *       Check (no database: the RPC runtime's own floor). The clients are
 *       outstanding calls driven by two threads (--driver async, the
 *       default, like pgbench -c C -j 2) or one blocking thread each
 *       (--driver threads); see driver.h. One line per client count:
 *       query rpc=summary clients=16 driver=async calls=.. seconds=.. qps=..
 *             p50_ms=.. p99_ms=.. errors=..
 *       --rpc builds calls ListBuildRequests (the newest page: 100 builds).
 *
 *   bench_query mixed --target QUERY --partitions P [--seconds S]
 *                     [--channels 50] [--calls 20] [--rpcs summary,list,builds]
 *       The many-clients load: channels x calls outstanding calls (each
 *       channel its own HTTP/2 connection, calls per channel), caller i
 *       calling rpcs[i % n] in a closed loop, all at once, from the async
 *       driver's two threads. One line per RPC:
 *       mixed rpc=summary callers=334 channels=50 calls=.. seconds=.. qps=..
 *             p50_ms=.. p99_ms=.. errors=..
 */
#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/eventlog_client.h"
#include "dbld/rpc.h"
#include "dbld/util.h"
#include "driver.h"
#include "grpc/health/v1/health.pb-c.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1735689600000000000LL /* 2025-01-01 */
#define PARTS_PER_BUILD 50
#define PARTS_PER_RUN 5
#define EVENTS_PER_BUILD 135
#define LIST_PATTERN "bench/p=[0-9]+"

static const char *ref_name(dbld_arena *a, long p)
{
    return dbld_arena_printf(a, "bench/p=%06ld", p);
}

/* ------------------------------------------------------------------ load */

typedef struct loader {
    const char *target;
    long partitions;
    atomic_long *next_build;
    long builds;
    long written;
    char error[256];
} loader;

static Databuild__V1__PartitionRef *pref(dbld_arena *a, const char *s)
{
    Databuild__V1__PartitionRef *r = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    r->str = (char *)s;
    return r;
}

static Databuild__V1__BuildEvent *ev(dbld_arena *a, const char *br, int64_t ts)
{
    Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    e->build_request_id = (char *)br;
    e->timestamp = ts;
    return e;
}

static Databuild__V1__BuildEvent *br_event(dbld_arena *a, const char *br, int64_t ts, int code,
                                           Databuild__V1__PartitionRef **refs, size_t n)
{
    Databuild__V1__BuildEvent *e = ev(a, br, ts);
    Databuild__V1__BuildRequestEvent *b =
        dbld_arena_msg(a, &databuild__v1__build_request_event__descriptor);
    b->status = dbld_arena_msg(a, &databuild__v1__build_request_status__descriptor);
    b->status->code = code;
    b->requested_partitions = refs;
    b->n_requested_partitions = n;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT;
    e->build_request_event = b;
    return e;
}

static Databuild__V1__BuildEvent *job_event(dbld_arena *a, const char *br, int64_t ts,
                                            const char *run, const char *label, int code,
                                            Databuild__V1__PartitionRef **refs, size_t n)
{
    Databuild__V1__BuildEvent *e = ev(a, br, ts);
    Databuild__V1__JobEvent *j = dbld_arena_msg(a, &databuild__v1__job_event__descriptor);
    j->job_run_id = (char *)run;
    j->job_label = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
    j->job_label->label = (char *)label;
    j->status_code = code;
    j->target_partitions = refs;
    j->n_target_partitions = n;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    e->job_event = j;
    return e;
}

static Databuild__V1__BuildEvent *part_event(dbld_arena *a, const char *br, int64_t ts,
                                             Databuild__V1__PartitionRef *ref, int code,
                                             const char *run)
{
    Databuild__V1__BuildEvent *e = ev(a, br, ts);
    Databuild__V1__PartitionEvent *p =
        dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
    p->partition_ref = ref;
    p->status_code = code;
    p->job_run_id = (char *)run;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    e->partition_event = p;
    return e;
}

/* The 135 events of build number b into out; returns the count. */
static size_t build_events(dbld_arena *a, long b, long partitions, Databuild__V1__BuildEvent **out)
{
    size_t n = 0;
    char id[37];
    dbld_uuid_v4(id);
    const char *br = dbld_arena_strdup(a, id);
    int64_t ts = T0 + (int64_t)b * 1000000000LL; /* one build per second, events 1 ns apart */
    Databuild__V1__PartitionRef **refs = dbld_arena_alloc(a, PARTS_PER_BUILD * sizeof *refs);
    for (int i = 0; i < PARTS_PER_BUILD; i++)
        refs[i] = pref(a, ref_name(a, (b * PARTS_PER_BUILD + i) % partitions));
    int failed = 0;
    out[n++] =
        br_event(a, br, ts++, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                 refs, PARTS_PER_BUILD);
    out[n++] =
        br_event(a, br, ts++, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PLANNING,
                 refs, PARTS_PER_BUILD);
    Databuild__V1__BuildEvent *g = ev(a, br, ts++);
    Databuild__V1__JobGraphEvent *ge =
        dbld_arena_msg(a, &databuild__v1__job_graph_event__descriptor);
    ge->job_graph = dbld_arena_msg(a, &databuild__v1__job_graph__descriptor);
    ge->job_graph->outputs = refs;
    ge->job_graph->n_outputs = PARTS_PER_BUILD;
    int n_runs = PARTS_PER_BUILD / PARTS_PER_RUN;
    ge->job_graph->nodes = dbld_arena_alloc(a, (size_t)n_runs * sizeof *ge->job_graph->nodes);
    for (int r = 0; r < n_runs; r++) {
        Databuild__V1__Task *t = dbld_arena_msg(a, &databuild__v1__task__descriptor);
        t->job = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
        t->job->label = r % 2 ? "//bench:agg" : "//bench:ingest";
        t->config = dbld_arena_msg(a, &databuild__v1__job_config__descriptor);
        t->config->outputs = refs + r * PARTS_PER_RUN;
        t->config->n_outputs = PARTS_PER_RUN;
        ge->job_graph->nodes[ge->job_graph->n_nodes++] = t;
    }
    g->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT;
    g->job_graph_event = ge;
    out[n++] = g;
    out[n++] =
        br_event(a, br, ts++, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING,
                 refs, PARTS_PER_BUILD);
    for (int r = 0; r < n_runs; r++) {
        dbld_uuid_v4(id);
        const char *run = dbld_arena_strdup(a, id);
        const char *label = r % 2 ? "//bench:agg" : "//bench:ingest";
        Databuild__V1__PartitionRef **rr = refs + r * PARTS_PER_RUN;
        int fail = (b * n_runs + r) % 20 == 19;
        failed |= fail;
        out[n++] = job_event(a, br, ts++, run, label, DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED, rr,
                             PARTS_PER_RUN);
        for (int k = 0; k < PARTS_PER_RUN; k++)
            out[n++] = part_event(a, br, ts++, rr[k],
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, run);
        out[n++] = job_event(a, br, ts++, run, label, DATABUILD__V1__JOB_STATUS__JOB_RUNNING, rr,
                             PARTS_PER_RUN);
        out[n++] = job_event(a, br, ts++, run, label,
                             fail ? DATABUILD__V1__JOB_STATUS__JOB_FAILED
                                  : DATABUILD__V1__JOB_STATUS__JOB_COMPLETED,
                             rr, PARTS_PER_RUN);
        for (int k = 0; k < PARTS_PER_RUN; k++)
            out[n++] = part_event(a, br, ts++, rr[k],
                                  fail ? DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED
                                       : DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE,
                                  run);
    }
    out[n++] = br_event(a, br, ts++,
                        failed ? DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED
                               : DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED,
                        refs, PARTS_PER_BUILD);
    return n;
}

#define BUILDS_PER_APPEND 37 /* ~5000 events: one group commit */

static void *load_main(void *arg)
{
    loader *l = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent **evs =
        dbld_xcalloc(BUILDS_PER_APPEND * EVENTS_PER_BUILD, sizeof *evs);
    for (;;) {
        long first = atomic_fetch_add(l->next_build, BUILDS_PER_APPEND);
        if (first >= l->builds) break;
        long last = first + BUILDS_PER_APPEND < l->builds ? first + BUILDS_PER_APPEND : l->builds;
        dbld_arena_reset(a);
        size_t n = 0;
        for (long b = first; b < last; b++)
            n += build_events(a, b, l->partitions, evs + n);
        dbld_status st;
        if (dbld_eventlog_append(l->target, evs, n, a, NULL, 120000, &st) != 0) {
            snprintf(l->error, sizeof l->error, "%s: %s", dbld_code_name(st.code), st.msg);
            break;
        }
        l->written += (long)n;
    }
    free(evs);
    dbld_arena_destroy(a);
    return NULL;
}

static int load(const char *target, long events, long partitions, int threads)
{
    long builds = (events + EVENTS_PER_BUILD - 1) / EVENTS_PER_BUILD;
    if (builds * PARTS_PER_BUILD < partitions)
        builds = (partitions + PARTS_PER_BUILD - 1) / PARTS_PER_BUILD; /* touch every partition */
    atomic_long next = 0;
    loader *ls = dbld_xcalloc((size_t)threads, sizeof *ls);
    pthread_t *th = dbld_xcalloc((size_t)threads, sizeof *th);
    int64_t t0 = dbld_mono_ms();
    for (int i = 0; i < threads; i++) {
        ls[i] = (loader){
            .target = target, .partitions = partitions, .next_build = &next, .builds = builds};
        pthread_create(&th[i], NULL, load_main, &ls[i]);
    }
    long written = 0;
    int rc = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        written += ls[i].written;
        if (ls[i].error[0]) {
            fprintf(stderr, "bench_query: load failed: %s\n", ls[i].error);
            rc = 1;
        }
    }
    double secs = (double)(dbld_mono_ms() - t0) / 1000.0;
    printf("load builds=%ld events=%ld partitions=%ld seconds=%.1f events_per_s=%.0f\n", builds,
           written, partitions, secs, (double)written / secs);
    free(ls);
    free(th);
    return rc;
}

/* ------------------------------------------------------------------- run */

typedef struct run_cfg {
    int kind; /* a kind_names index; health: the RPC runtime's floor (no database) */
    long partitions;
} run_cfg;

enum { K_SUMMARY, K_LIST, K_HEALTH, K_BUILDS, N_KINDS };
static const char *const kind_names[N_KINDS] = {"summary", "list", "health", "builds"};
static const char *const kind_methods[N_KINDS] = {
    "/databuild.v1.DataBuildService/GetPartitionsSummary",
    "/databuild.v1.DataBuildService/ListPartitions", "/grpc.health.v1.Health/Check",
    "/databuild.v1.DataBuildService/ListBuildRequests"};
static const ProtobufCMessageDescriptor *const kind_answers[N_KINDS] = {
    &databuild__v1__partition_summary_response__descriptor,
    &databuild__v1__list_partitions_response__descriptor,
    &grpc__health__v1__health_check_response__descriptor,
    &databuild__v1__list_builds_response__descriptor};

static int kind_named(const char *name)
{
    for (int k = 0; k < N_KINDS; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

/* The next call's request of that kind, about a random partition. */
static ProtobufCMessage *kind_request(const run_cfg *cfg, int kind, dbld_arena *a, uint64_t *state)
{
    static Databuild__V1__PartitionStatus avail[] = {
        DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE};
    const char *ref = ref_name(a, (long)(bench_rand(state) % (uint64_t)cfg->partitions));
    if (kind == K_HEALTH)
        return dbld_arena_msg(a, &grpc__health__v1__health_check_request__descriptor);
    if (kind == K_BUILDS) return dbld_arena_msg(a, &databuild__v1__list_builds_request__descriptor);
    if (kind == K_LIST) {
        Databuild__V1__ListPartitionsRequest *req =
            dbld_arena_msg(a, &databuild__v1__list_partitions_request__descriptor);
        req->ref_pattern = LIST_PATTERN;
        req->partition_status = avail;
        req->n_partition_status = 1;
        req->last_partition = (char *)ref;
        return &req->base;
    }
    Databuild__V1__PartitionSummaryRequest *req =
        dbld_arena_msg(a, &databuild__v1__partition_summary_request__descriptor);
    req->ref = pref(a, ref);
    return &req->base;
}

/* bench_req_fn / bench_kind_req_fn over kind_request(). */
static ProtobufCMessage *next_request(void *user, dbld_arena *a, uint64_t *state)
{
    const run_cfg *cfg = user;
    return kind_request(cfg, cfg->kind, a, state);
}

/* A mixed run: the driver's kind i is kinds[i]. */
typedef struct mix_cfg {
    run_cfg base;
    int n, kinds[BENCH_MAX_KINDS];
    const char *methods[BENCH_MAX_KINDS];
    const ProtobufCMessageDescriptor *answers[BENCH_MAX_KINDS];
} mix_cfg;

static ProtobufCMessage *next_mixed(void *user, int i, dbld_arena *a, uint64_t *state)
{
    const mix_cfg *m = user;
    return kind_request(&m->base, m->kinds[i], a, state);
}

static void run_one(const char *target, int kind, long partitions, int clients, double seconds,
                    int async)
{
    run_cfg cfg = {.kind = kind, .partitions = partitions};
    bench_load l = {.target = target,
                    .method = kind_methods[kind],
                    .answer = kind_answers[kind],
                    .next = next_request,
                    .user = &cfg,
                    .callers = clients,
                    .seconds = seconds,
                    .timeout_ms = 10000,
                    .async = async};
    bench_result r;
    bench_run(&l, "bench_query", &r);
    printf("query rpc=%s clients=%d driver=%s calls=%lld seconds=%.2f qps=%.1f p50_ms=%.3f "
           "p99_ms=%.3f errors=%lld\n",
           kind_names[kind], clients, async ? "async" : "threads", (long long)r.calls, r.seconds,
           (double)r.calls / r.seconds, bench_quantile(&r, 0.5), bench_quantile(&r, 0.99),
           (long long)r.errors);
    fflush(stdout);
    bench_result_free(&r);
}

/* The many-clients load: channels x calls outstanding calls over the RPCs
 * of m (caller i calls m->kinds[i % m->n]). */
static void run_mixed(const char *target, mix_cfg *m, int channels, int calls, double seconds)
{
    for (int i = 0; i < m->n; i++) {
        m->methods[i] = kind_methods[m->kinds[i]];
        m->answers[i] = kind_answers[m->kinds[i]];
    }
    int callers = channels * calls;
    bench_load l = {.target = target,
                    .user = m,
                    .callers = callers,
                    .seconds = seconds,
                    .timeout_ms = 60000,
                    .async = 1,
                    .channels = channels,
                    .kinds = m->n,
                    .kind_methods = m->methods,
                    .kind_answers = m->answers,
                    .next_kind = next_mixed};
    bench_result r[BENCH_MAX_KINDS];
    bench_run(&l, "bench_query", r);
    for (int i = 0; i < m->n; i++) {
        printf("mixed rpc=%s callers=%d channels=%d calls=%lld seconds=%.2f qps=%.1f "
               "p50_ms=%.3f p99_ms=%.3f errors=%lld\n",
               kind_names[m->kinds[i]], callers / m->n + (i < callers % m->n), channels,
               (long long)r[i].calls, r[i].seconds, (double)r[i].calls / r[i].seconds,
               bench_quantile(&r[i], 0.5), bench_quantile(&r[i], 0.99), (long long)r[i].errors);
        bench_result_free(&r[i]);
    }
    fflush(stdout);
}

/* "summary,list,builds" -> m->kinds; -1 on an unknown name. */
static int parse_rpcs(const char *s, mix_cfg *m)
{
    char *copy = dbld_xstrdup(s), *save = NULL;
    int rc = 0;
    m->n = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = kind_named(t);
        if (k < 0 || m->n == BENCH_MAX_KINDS) rc = -1;
        if (k >= 0 && m->n < BENCH_MAX_KINDS) m->kinds[m->n++] = k;
    }
    free(copy);
    return rc || m->n == 0 ? -1 : 0;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: bench_query load --target EVENTLOG --events N --partitions P [--threads T]\n"
            "       bench_query run --target QUERY --rpc summary|list|health --partitions P"
            " [--seconds S] [--clients 1,16,64] [--driver async|threads]\n"
            "       bench_query run ... --rpc builds (ListBuildRequests)\n"
            "       bench_query mixed --target QUERY --partitions P [--seconds S]"
            " [--channels 50] [--calls 20] [--rpcs summary,list,builds]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage();
    const char *mode = argv[1], *target = NULL, *rpc = "summary";
    long events = 1000000, partitions = 100000;
    int threads = 4, clients[8] = {1, 16, 64}, n_clients = 3, async = 1;
    int channels = 50, calls = 20;
    double seconds = 10;
    mix_cfg mix = {.n = 3, .kinds = {K_SUMMARY, K_LIST, K_BUILDS}};
    for (int i = 2; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage();
        if (!strcmp(argv[i], "--target"))
            target = v;
        else if (!strcmp(argv[i], "--events"))
            events = atol(v);
        else if (!strcmp(argv[i], "--partitions"))
            partitions = atol(v);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(v);
        else if (!strcmp(argv[i], "--rpc"))
            rpc = v;
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(v);
        else if (!strcmp(argv[i], "--clients"))
            n_clients = bench_parse_list(v, clients, 8);
        else if (!strcmp(argv[i], "--driver") && bench_parse_driver(v) >= 0)
            async = bench_parse_driver(v);
        else if (!strcmp(argv[i], "--channels"))
            channels = atoi(v);
        else if (!strcmp(argv[i], "--calls"))
            calls = atoi(v);
        else if (!strcmp(argv[i], "--rpcs") && parse_rpcs(v, &mix) == 0)
            ;
        else
            return usage();
        i++;
    }
    if (!target || partitions < 1 || threads < 1 || channels < 1 || calls < 1 ||
        kind_named(rpc) < 0)
        return usage();
    int rc = 0;
    if (!strcmp(mode, "load"))
        rc = load(target, events, partitions, threads);
    else if (!strcmp(mode, "run"))
        for (int i = 0; i < n_clients; i++)
            run_one(target, kind_named(rpc), partitions, clients[i], seconds, async);
    else if (!strcmp(mode, "mixed")) {
        mix.base.partitions = partitions;
        run_mixed(target, &mix, channels, calls, seconds);
    } else
        rc = usage();
    dbld_client_shutdown_all();
    return rc;
}
