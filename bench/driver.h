/* driver.h - the closed-loop load drivers the benchmarks share.
 *
 * A run keeps `callers` unary calls of one method going for `seconds` (the
 * next call of a caller starts when its previous one has been answered) and
 * collects every successful call's latency. Two ways of making the callers:
 *
 *   async   the callers are N outstanding calls driven by (at most) two
 *           threads on gRPC completion queues, as pgbench -c N -j 2 drives N
 *           connections from two threads: the client costs little CPU, so
 *           the figure is the server's;
 *   threads one blocking dbld_client_unary() caller thread each, as a
 *           service's own threads would call.
 *
 * By default every call goes on one channel (one HTTP/2 connection); the
 * async driver can spread the callers over `channels` channels, each its own
 * connection (caller i on channel i % channels), as an outside load client
 * with many connections would. A run can also mix methods (`kinds` > 0):
 * caller i calls kind i % kinds for the whole run, and the latencies are
 * collected per kind.
 */
#ifndef BENCH_DRIVER_H
#define BENCH_DRIVER_H

#include "dbld/arena.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* The next request of a caller, built in a (reset before every call).
 * *state is the caller's own: it starts as the caller's index << 40 and is
 * left to the function (a sequence number, or bench_rand()'s state). */
typedef ProtobufCMessage *(*bench_req_fn)(void *user, dbld_arena *a, uint64_t *state);
/* The same for a mixed run: the next request of a caller of that kind. */
typedef ProtobufCMessage *(*bench_kind_req_fn)(void *user, int kind, dbld_arena *a,
                                               uint64_t *state);

#define BENCH_MAX_KINDS 8

typedef struct bench_load {
    const char *target;                       /* "host:port" */
    const char *method;                       /* "/databuild.v1.EventLog/Append" */
    const ProtobufCMessageDescriptor *answer; /* the response (threads driver) */
    bench_req_fn next;
    void *user;
    int callers;
    double seconds;
    int64_t timeout_ms; /* per call */
    int async;          /* 1: async driver, 0: threads driver */
    int channels;       /* async driver: channels (connections) the callers share; 0 = 1 */
    /* a mixed run (kinds 1..BENCH_MAX_KINDS; 0: method/answer/next above) */
    int kinds;
    const char *const *kind_methods;
    const ProtobufCMessageDescriptor *const *kind_answers;
    bench_kind_req_fn next_kind;
} bench_load;

typedef struct bench_result {
    int64_t calls, errors; /* answered OK / not */
    double seconds;        /* how long the run took */
    double *lat;           /* ms, one per OK call; sorted when bench_run() returns */
    size_t n_lat, cap_lat;
    char first_error[256];
} bench_result;

/* Run the load; *out is the merged result (free with bench_result_free()),
 * or for a mixed run out[0..kinds-1], one per kind. The first error, if
 * any, is also printed on stderr, prefixed with who. */
void bench_run(const bench_load *l, const char *who, bench_result *out);
void bench_result_free(bench_result *r);
/* The q-quantile (0..1) of the latencies; 0 when there are none. */
double bench_quantile(const bench_result *r, double q);

/* A pseudo-random number from a caller's state (splitmix64). */
uint64_t bench_rand(uint64_t *state);
/* "1,16,64" -> out[]; returns how many (at most max). */
int bench_parse_list(const char *s, int *out, int max);
/* --driver's value: 1 async, 0 threads, -1 neither. */
int bench_parse_driver(const char *s);

#endif
