/* bench_eventlog.c - durable Append throughput of the event log.
 *
 * N caller threads each append batches of B realistic PartitionEvents in a
 * closed loop (next call after the previous was acked, i.e. committed) for
 * the given duration. Prints one line per configuration:
 *   eventlog callers=64 batch=1 events=123456 seconds=10.00 events_per_s=12345.6 p50_ms=.. p99_ms=..
 * Usage: bench_eventlog --target HOST:PORT [--seconds S] [--callers N,N..] [--batch B,B..]
 * --batch 0 measures grpc.health.v1 Check calls instead: the unary RPC
 * ceiling of the machine, with no database work at all.
 */
#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

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

static void one(const char *target, int callers, int batch, double seconds)
{
    worker *w = dbld_xcalloc((size_t)callers, sizeof *w);
    pthread_t *th = dbld_xcalloc((size_t)callers, sizeof *th);
    int64_t start = dbld_mono_ms();
    for (int i = 0; i < callers; i++) {
        w[i].target = target;
        w[i].batch = batch;
        w[i].end_ms = start + (int64_t)(seconds * 1000);
        pthread_create(&th[i], NULL, run, &w[i]);
    }
    int64_t events = 0, errors = 0;
    size_t n_lat = 0;
    for (int i = 0; i < callers; i++) {
        pthread_join(th[i], NULL);
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
    printf("%s callers=%d batch=%d events=%lld seconds=%.2f events_per_s=%.1f p50_ms=%.2f "
           "p99_ms=%.2f errors=%lld\n",
           batch ? "eventlog" : "health_check", callers, batch, (long long)events, elapsed, (double)events / elapsed,
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
    int callers[8] = {1, 8, 64}, n_callers = 3, batches[8] = {1, 100}, n_batches = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--callers") && i + 1 < argc)
            n_callers = parse_list(argv[++i], callers, 8);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            n_batches = parse_list(argv[++i], batches, 8);
        else {
            fprintf(stderr, "usage: bench_eventlog --target HOST:PORT [--seconds S] "
                            "[--callers 1,8,64] [--batch 1,100]\n");
            return 2;
        }
    }
    if (!target) {
        fprintf(stderr, "bench_eventlog: --target is required\n");
        return 2;
    }
    for (int b = 0; b < n_batches; b++)
        for (int c = 0; c < n_callers; c++)
            one(target, callers[c], batches[b], seconds);
    dbld_client_shutdown_all();
    return 0;
}
