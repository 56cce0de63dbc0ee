/* bench_eventlog.c - durable Append throughput of the event log.
 *
 * N caller threads each append batches of B realistic PartitionEvents in a
 * closed loop (next call after the previous was acked, i.e. committed) for
 * the given duration. Prints one line per configuration:
 *   eventlog callers=64 batch=1 events=123456 seconds=10.00 events_per_s=12345.6 p50_ms=.. p99_ms=..
 * Usage: bench_eventlog --target HOST:PORT [--seconds S] [--callers N,N..] [--batch B,B..]
 * --batch 0 measures grpc.health.v1 Check calls instead: the unary RPC
 * ceiling of the machine, with no database work at all.
 *
 * --driver picks how the callers are made:
 *   async   (default) the callers are N outstanding calls driven by two
 *           threads on gRPC completion queues, as pgbench -c N -j 2 drives N
 *           connections from two threads: the client costs little CPU, so
 *           the figure is the server's;
 *   threads one blocking dbld_client_unary() caller thread each, as a
 *           service's own threads would call.
 */
#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/rpc.h"
#include "dbld/util.h"
#include "rpc_internal.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct worker {
    const char *target;
    int batch; /* 0: health checks only (the RPC ceiling of this machine) */
    int64_t end_ms;
    int64_t events;
    int64_t errors;
    double *lat; /* per call, ms */
    size_t n_lat, cap_lat;
    char first_error[256];
} worker;

static void fill_event(dbld_arena *a, Databuild__V1__BuildEvent *ev, int64_t seq)
{
    Databuild__V1__PartitionEvent *pe = dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
    Databuild__V1__PartitionRef *ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    ref->str = dbld_arena_printf(a, "reviews/category=c%lld/date=2025-01-%02lld", (long long)(seq % 50),
                                 (long long)(seq % 28 + 1));
    pe->partition_ref = ref;
    pe->status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
    pe->status_name = "PARTITION_AVAILABLE";
    pe->job_run_id = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    ev->build_request_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    ev->partition_event = pe;
}

static void *run(void *arg)
{
    worker *w = arg;
    dbld_client *c = dbld_client_get(w->target);
    dbld_arena *a = dbld_arena_create();
    int64_t seq = 0;
    while (dbld_mono_ms() < w->end_ms) {
        dbld_arena_reset(a);
        Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
        req.n_events = (size_t)w->batch;
        req.events = dbld_arena_alloc(a, req.n_events * sizeof *req.events);
        for (int i = 0; i < w->batch; i++) {
            req.events[i] = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
            fill_event(a, req.events[i], seq++);
        }
        ProtobufCMessage *resp = NULL;
        dbld_status st;
        int64_t t0 = dbld_now_ns();
        int serving = 0;
        int rc = w->batch == 0
                     ? dbld_health_check(c, "", &serving, 30000, &st)
                     : dbld_client_unary(c, "/databuild.v1.EventLog/Append", &req.base,
                                         &databuild__v1__append_response__descriptor,
                                         dbld_arena_allocator(a), &resp, 30000, 0, &st);
        double ms = (double)(dbld_now_ns() - t0) / 1e6;
        if (rc) {
            if (!w->errors++)
                snprintf(w->first_error, sizeof w->first_error, "%s: %s", dbld_code_name(rc), st.msg);
            continue;
        }
        w->events += w->batch ? w->batch : 1;
        if (w->n_lat == w->cap_lat) {
            w->cap_lat = w->cap_lat ? 2 * w->cap_lat : 1024;
            w->lat = dbld_xrealloc(w->lat, w->cap_lat * sizeof *w->lat);
        }
        w->lat[w->n_lat++] = ms;
    }
    dbld_arena_destroy(a);
    return NULL;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* ---- async driver ---- */

typedef struct aslot {
    grpc_call *call;
    dbld__unary u;
    int64_t t0;
} aslot;

typedef struct athread {
    worker w; /* results, as for the threads driver */
    grpc_channel *ch;
    int slots, batch;
    grpc_completion_queue *cq;
    int64_t seq;
    dbld_arena *a;
} athread;

static grpc_byte_buffer *pack_request(athread *t)
{
    dbld_arena_reset(t->a);
    size_t len;
    uint8_t *buf;
    if (t->batch == 0) {
        len = 0;
        buf = NULL; /* HealthCheckRequest{service: ""} is the empty message */
    } else {
        Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
        req.n_events = (size_t)t->batch;
        req.events = dbld_arena_alloc(t->a, req.n_events * sizeof *req.events);
        for (int i = 0; i < t->batch; i++) {
            req.events[i] = dbld_arena_msg(t->a, &databuild__v1__build_event__descriptor);
            fill_event(t->a, req.events[i], t->seq++);
        }
        len = protobuf_c_message_get_packed_size(&req.base);
        buf = dbld_arena_alloc(t->a, len + 1);
        protobuf_c_message_pack(&req.base, buf);
    }
    grpc_slice sl = grpc_slice_from_copied_buffer((const char *)buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
    grpc_slice_unref(sl);
    return bb;
}

static void astart(athread *t, aslot *s)
{
    grpc_slice method = grpc_slice_from_static_string(
        t->batch ? "/databuild.v1.EventLog/Append" : "/grpc.health.v1.Health/Check");
    gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                         gpr_time_from_seconds(30, GPR_TIMESPAN));
    s->call = grpc_channel_create_call(t->ch, NULL, GRPC_PROPAGATE_DEFAULTS, t->cq, method, NULL,
                                       deadline, NULL);
    memset(&s->u, 0, sizeof s->u);
    grpc_metadata_array_init(&s->u.init_md);
    grpc_metadata_array_init(&s->u.trail_md);
    s->u.send = pack_request(t);
    grpc_op ops[6];
    dbld__unary_ops(&s->u, ops);
    s->t0 = dbld_now_ns();
    grpc_call_start_batch(s->call, ops, 6, s, NULL);
}

static void aend(athread *t, aslot *s)
{
    worker *w = &t->w;
    double ms = (double)(dbld_now_ns() - s->t0) / 1e6;
    if (s->u.status != GRPC_STATUS_OK) {
        if (!w->errors++) {
            char *d = grpc_slice_to_c_string(s->u.details);
            snprintf(w->first_error, sizeof w->first_error, "%s: %s",
                     dbld_code_name((int)s->u.status), d);
            gpr_free(d);
        }
    } else {
        w->events += t->batch ? t->batch : 1;
        if (w->n_lat == w->cap_lat) {
            w->cap_lat = w->cap_lat ? 2 * w->cap_lat : 1024;
            w->lat = dbld_xrealloc(w->lat, w->cap_lat * sizeof *w->lat);
        }
        w->lat[w->n_lat++] = ms;
    }
    grpc_byte_buffer_destroy(s->u.send);
    if (s->u.recv) grpc_byte_buffer_destroy(s->u.recv);
    grpc_slice_unref(s->u.details);
    if (s->u.error) gpr_free((void *)s->u.error);
    grpc_metadata_array_destroy(&s->u.init_md);
    grpc_metadata_array_destroy(&s->u.trail_md);
    grpc_call_unref(s->call);
}

static void *arun(void *arg)
{
    athread *t = arg;
    t->cq = grpc_completion_queue_create_for_next(NULL);
    t->a = dbld_arena_create();
    aslot *slots = dbld_xcalloc((size_t)t->slots, sizeof *slots);
    for (int i = 0; i < t->slots; i++)
        astart(t, &slots[i]);
    int live = t->slots;
    while (live > 0) {
        grpc_event ev =
            grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE) continue;
        aslot *s = ev.tag;
        aend(t, s);
        if (dbld_mono_ms() < t->w.end_ms)
            astart(t, s);
        else
            live--;
    }
    grpc_completion_queue_shutdown(t->cq);
    while (grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(t->cq);
    dbld_arena_destroy(t->a);
    free(slots);
    return NULL;
}

static grpc_channel *g_channel; /* async driver */

/* Run the async driver: the workers' results land in w[0..n_threads). */
static int run_async(worker *w, int callers, int batch, int64_t end_ms)
{
    int n_threads = callers < 2 ? callers : 2;
    athread *t = dbld_xcalloc((size_t)n_threads, sizeof *t);
    pthread_t *th = dbld_xcalloc((size_t)n_threads, sizeof *th);
    for (int i = 0; i < n_threads; i++) {
        t[i].ch = g_channel;
        t[i].batch = batch;
        t[i].slots = callers / n_threads + (i < callers % n_threads);
        t[i].w.end_ms = end_ms;
        t[i].seq = (int64_t)i << 40;
        pthread_create(&th[i], NULL, arun, &t[i]);
    }
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        w[i] = t[i].w;
    }
    free(t);
    free(th);
    return n_threads;
}

static void one(const char *target, int callers, int batch, double seconds, int async)
{
    worker *w = dbld_xcalloc((size_t)callers, sizeof *w);
    pthread_t *th = dbld_xcalloc((size_t)callers, sizeof *th);
    int64_t start = dbld_mono_ms();
    int n_w = callers;
    if (async) {
        n_w = run_async(w, callers, batch, start + (int64_t)(seconds * 1000));
    } else {
        for (int i = 0; i < callers; i++) {
            w[i].target = target;
            w[i].batch = batch;
            w[i].end_ms = start + (int64_t)(seconds * 1000);
            pthread_create(&th[i], NULL, run, &w[i]);
        }
        for (int i = 0; i < callers; i++)
            pthread_join(th[i], NULL);
    }
    int n_callers_reported = callers;
    callers = n_w;
    int64_t events = 0, errors = 0;
    size_t n_lat = 0;
    for (int i = 0; i < callers; i++) {
        events += w[i].events;
        errors += w[i].errors;
        n_lat += w[i].n_lat;
    }
    double elapsed = (double)(dbld_mono_ms() - start) / 1000.0;
    double *all = dbld_xcalloc(n_lat + 1, sizeof *all);
    size_t k = 0;
    for (int i = 0; i < callers; i++) {
        memcpy(all + k, w[i].lat, w[i].n_lat * sizeof *all);
        k += w[i].n_lat;
    }
    qsort(all, n_lat, sizeof *all, cmp_double);
    printf("%s callers=%d batch=%d driver=%s events=%lld seconds=%.2f events_per_s=%.1f "
           "p50_ms=%.2f p99_ms=%.2f errors=%lld\n",
           batch ? "eventlog" : "health_check", n_callers_reported, batch,
           async ? "async" : "threads", (long long)events, elapsed, (double)events / elapsed,
           n_lat ? all[n_lat / 2] : 0.0, n_lat ? all[(size_t)((double)n_lat * 0.99)] : 0.0,
           (long long)errors);
    for (int i = 0; i < callers; i++) {
        if (w[i].errors) {
            fprintf(stderr, "bench_eventlog: first error: %s\n", w[i].first_error);
            break;
        }
    }
    fflush(stdout);
    for (int i = 0; i < callers; i++)
        free(w[i].lat);
    free(all);
    free(w);
    free(th);
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *copy = dbld_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = atoi(t);
    free(copy);
    return n;
}

int main(int argc, char **argv)
{
    const char *target = NULL;
    double seconds = 10;
    int callers[8] = {1, 8, 64}, n_callers = 3, batches[8] = {1, 100}, n_batches = 2, async = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--callers") && i + 1 < argc)
            n_callers = parse_list(argv[++i], callers, 8);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            n_batches = parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--driver") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "async") || !strcmp(argv[i + 1], "threads")))
            async = !strcmp(argv[++i], "async");
        else {
            fprintf(stderr, "usage: bench_eventlog --target HOST:PORT [--seconds S] "
                            "[--callers 1,8,64] [--batch 1,100] [--driver async|threads]\n");
            return 2;
        }
    }
    if (!target) {
        fprintf(stderr, "bench_eventlog: --target is required\n");
        return 2;
    }
    grpc_init();
    grpc_arg args[] = {{.type = GRPC_ARG_INTEGER,
                        .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                        .value.integer = 64 << 20}};
    grpc_channel_args ca = {1, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    g_channel = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    for (int b = 0; b < n_batches; b++)
        for (int c = 0; c < n_callers; c++)
            one(target, callers[c], batches[b], seconds, async);
    grpc_channel_destroy(g_channel);
    dbld_client_shutdown_all();
    grpc_shutdown();
    return 0;
}
