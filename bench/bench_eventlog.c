/* bench_eventlog.c - durable Append throughput of the event log.
 *
 * N callers each append batches of B realistic PartitionEvents in a closed
 * loop (next call after the previous was acked, i.e. committed) for the
 * given duration. Prints one line per configuration:
 *   eventlog callers=64 batch=1 driver=async events=123456 seconds=10.00
 *            events_per_s=12345.6 p50_ms=.. p99_ms=.. errors=0
 * Usage: bench_eventlog --target HOST:PORT [--seconds S] [--callers N,N..] [--batch B,B..]
 *                       [--driver async|threads]
 * --batch 0 measures grpc.health.v1 Check calls instead: the unary RPC
 * ceiling of the machine, with no database work at all.
 *
 * --driver picks how the callers are made (driver.h): async (default), N
 * outstanding calls driven by two threads, as pgbench -c N -j 2; threads,
 * one blocking caller thread each.
 */
#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/rpc.h"
#include "driver.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill_event(dbld_arena *a, Databuild__V1__BuildEvent *ev, int64_t seq)
{
    Databuild__V1__PartitionEvent *pe =
        dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
    Databuild__V1__PartitionRef *ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    ref->str = dbld_arena_printf(a, "reviews/category=c%lld/date=2025-01-%02lld",
                                 (long long)(seq % 50), (long long)(seq % 28 + 1));
    pe->partition_ref = ref;
    pe->status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
    pe->status_name = "PARTITION_AVAILABLE";
    pe->job_run_id = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
    ev->build_request_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
    ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    ev->partition_event = pe;
}

/* bench_req_fn: an Append of *batch events (the caller's state is its
 * sequence number), or a health Check when the batch is 0. */
static ProtobufCMessage *next_request(void *user, dbld_arena *a, uint64_t *state)
{
    int batch = *(const int *)user;
    if (batch == 0) return dbld_arena_msg(a, &grpc__health__v1__health_check_request__descriptor);
    Databuild__V1__AppendRequest *req =
        dbld_arena_msg(a, &databuild__v1__append_request__descriptor);
    req->n_events = (size_t)batch;
    req->events = dbld_arena_alloc(a, req->n_events * sizeof *req->events);
    for (int i = 0; i < batch; i++) {
        req->events[i] = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        fill_event(a, req->events[i], (int64_t)(*state)++);
    }
    return &req->base;
}

static void one(const char *target, int callers, int batch, double seconds, int async)
{
    bench_load l = {
        .target = target,
        .method = batch ? "/databuild.v1.EventLog/Append" : "/grpc.health.v1.Health/Check",
        .answer = batch ? &databuild__v1__append_response__descriptor
                        : &grpc__health__v1__health_check_response__descriptor,
        .next = next_request,
        .user = &batch,
        .callers = callers,
        .seconds = seconds,
        .timeout_ms = 30000,
        .async = async,
    };
    bench_result r;
    bench_run(&l, "bench_eventlog", &r);
    int64_t events = r.calls * (batch ? batch : 1);
    printf("%s callers=%d batch=%d driver=%s events=%lld seconds=%.2f events_per_s=%.1f "
           "p50_ms=%.2f p99_ms=%.2f errors=%lld\n",
           batch ? "eventlog" : "health_check", callers, batch, async ? "async" : "threads",
           (long long)events, r.seconds, (double)events / r.seconds, bench_quantile(&r, 0.5),
           bench_quantile(&r, 0.99), (long long)r.errors);
    fflush(stdout);
    bench_result_free(&r);
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
            n_callers = bench_parse_list(argv[++i], callers, 8);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            n_batches = bench_parse_list(argv[++i], batches, 8);
        else if (!strcmp(argv[i], "--driver") && i + 1 < argc &&
                 bench_parse_driver(argv[i + 1]) >= 0)
            async = bench_parse_driver(argv[++i]);
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
    for (int b = 0; b < n_batches; b++)
        for (int c = 0; c < n_callers; c++)
            one(target, callers[c], batches[b], seconds, async);
    dbld_client_shutdown_all();
    return 0;
}
