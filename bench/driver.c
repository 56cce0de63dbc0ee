/* driver.c - the closed-loop load drivers the benchmarks share (driver.h). */
#include "driver.h"

#include "dbld/rpc.h"
#include "dbld/util.h"
#include "rpc_internal.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASYNC_THREADS 2 /* like pgbench -j 2 */

/* One driving thread: a caller (threads driver) or a share of the
 * outstanding calls (async driver). */
typedef struct runner {
    const bench_load *l;
    int64_t end_ms;
    uint64_t state;
    dbld_arena *a;
    bench_result r[BENCH_MAX_KINDS]; /* one per kind (r[0] when the run is not mixed) */
    /* async driver */
    grpc_channel **ch; /* the run's channels */
    int first, slots;  /* callers first .. first + slots - 1 */
} runner;

/* Caller i's kind, its method and its next request. */
static int kind_of(const bench_load *l, int caller)
{
    return l->kinds > 0 ? caller % l->kinds : 0;
}

static const char *method_of(const bench_load *l, int kind)
{
    return l->kinds > 0 ? l->kind_methods[kind] : l->method;
}

static ProtobufCMessage *next_of(const bench_load *l, int kind, dbld_arena *a, uint64_t *state)
{
    return l->kinds > 0 ? l->next_kind(l->user, kind, a, state) : l->next(l->user, a, state);
}

static void ok(bench_result *r, double ms)
{
    r->calls++;
    if (r->n_lat == r->cap_lat) {
        r->cap_lat = r->cap_lat ? 2 * r->cap_lat : 4096;
        r->lat = dbld_xrealloc(r->lat, r->cap_lat * sizeof *r->lat);
    }
    r->lat[r->n_lat++] = ms;
}

static void failed(bench_result *r, int code, const char *msg)
{
    if (!r->errors++)
        snprintf(r->first_error, sizeof r->first_error, "%s: %s", dbld_code_name(code), msg);
}

/* ---- threads driver ---- */

static void *caller_main(void *arg)
{
    runner *t = arg;
    const bench_load *l = t->l;
    dbld_client *c = dbld_client_get(l->target);
    int kind = kind_of(l, t->first);
    const ProtobufCMessageDescriptor *answer = l->kinds > 0 ? l->kind_answers[kind] : l->answer;
    while (dbld_mono_ms() < t->end_ms) {
        dbld_arena_reset(t->a);
        ProtobufCMessage *req = next_of(l, kind, t->a, &t->state);
        ProtobufCMessage *resp = NULL;
        dbld_status st;
        int64_t t0 = dbld_now_ns();
        int rc = dbld_client_unary(c, method_of(l, kind), req, answer, dbld_arena_allocator(t->a),
                                   &resp, l->timeout_ms, 0, &st);
        if (rc)
            failed(&t->r[kind], rc, st.msg);
        else
            ok(&t->r[kind], (double)(dbld_now_ns() - t0) / 1e6);
    }
    return NULL;
}

/* ---- async driver ---- */

typedef struct slot {
    grpc_call *call;
    dbld__unary u;
    int64_t t0;
    int kind;
    grpc_channel *ch;
} slot;

static void start_call(runner *t, grpc_completion_queue *cq, slot *s)
{
    const bench_load *l = t->l;
    dbld_arena_reset(t->a);
    memset(&s->u, 0, sizeof s->u);
    grpc_metadata_array_init(&s->u.init_md);
    grpc_metadata_array_init(&s->u.trail_md);
    s->u.send = dbld__pack(next_of(l, s->kind, t->a, &t->state));
    s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                       grpc_slice_from_static_string(method_of(l, s->kind)), NULL,
                                       dbld__deadline(l->timeout_ms), NULL);
    grpc_op ops[6];
    dbld__unary_ops(&s->u, ops);
    s->t0 = dbld_now_ns();
    grpc_call_start_batch(s->call, ops, 6, s, NULL);
}

static void end_call(runner *t, slot *s)
{
    double ms = (double)(dbld_now_ns() - s->t0) / 1e6;
    if (s->u.status != GRPC_STATUS_OK) {
        char *d = grpc_slice_to_c_string(s->u.details);
        failed(&t->r[s->kind], (int)s->u.status, d);
        gpr_free(d);
    } else {
        ok(&t->r[s->kind], ms);
    }
    grpc_byte_buffer_destroy(s->u.send);
    if (s->u.recv) grpc_byte_buffer_destroy(s->u.recv);
    grpc_slice_unref(s->u.details);
    if (s->u.error) gpr_free((void *)s->u.error);
    grpc_metadata_array_destroy(&s->u.init_md);
    grpc_metadata_array_destroy(&s->u.trail_md);
    grpc_call_unref(s->call);
}

static void *async_main(void *arg)
{
    runner *t = arg;
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    slot *slots = dbld_xcalloc((size_t)t->slots, sizeof *slots);
    int channels = t->l->channels > 1 ? t->l->channels : 1;
    for (int i = 0; i < t->slots; i++) {
        slots[i].kind = kind_of(t->l, t->first + i);
        slots[i].ch = t->ch[(t->first + i) % channels];
        start_call(t, cq, &slots[i]);
    }
    int live = t->slots;
    while (live > 0) {
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type != GRPC_OP_COMPLETE) continue;
        slot *s = ev.tag;
        end_call(t, s);
        if (dbld_mono_ms() < t->end_ms)
            start_call(t, cq, s);
        else
            live--;
    }
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
    free(slots);
    return NULL;
}

/* A channel with a connection of its own (not shared with the run's other
 * channels through gRPC's global subchannel pool). */
static grpc_channel *async_channel(const char *target)
{
    grpc_arg args[] = {dbld__int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 << 20),
                       dbld__int_arg(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1)};
    grpc_channel_args ca = {2, args};
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    grpc_channel *ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

/* ---- runs ---- */

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* Add r to out and free r's latencies. */
static void merge(bench_result *out, bench_result *r)
{
    if (r->errors && !out->errors)
        memcpy(out->first_error, r->first_error, sizeof out->first_error);
    out->calls += r->calls;
    out->errors += r->errors;
    out->lat = dbld_xrealloc(out->lat, (out->n_lat + r->n_lat + 1) * sizeof *out->lat);
    memcpy(out->lat + out->n_lat, r->lat, r->n_lat * sizeof *out->lat);
    out->n_lat += r->n_lat;
    free(r->lat);
}

void bench_run(const bench_load *l, const char *who, bench_result *out)
{
    int kinds = l->kinds > 0 ? l->kinds : 1;
    memset(out, 0, (size_t)kinds * sizeof *out);
    int n = l->async ? (l->callers < ASYNC_THREADS ? l->callers : ASYNC_THREADS) : l->callers;
    runner *t = dbld_xcalloc((size_t)n, sizeof *t);
    pthread_t *th = dbld_xcalloc((size_t)n, sizeof *th);
    grpc_init();
    int channels = l->async ? (l->channels > 1 ? l->channels : 1) : 0;
    grpc_channel **ch = dbld_xcalloc((size_t)channels + 1, sizeof *ch);
    for (int i = 0; i < channels; i++)
        ch[i] = async_channel(l->target);
    int64_t start = dbld_mono_ms();
    for (int i = 0, first = 0; i < n; i++) {
        t[i].l = l;
        t[i].end_ms = start + (int64_t)(l->seconds * 1000);
        t[i].state = (uint64_t)i << 40;
        t[i].a = dbld_arena_create();
        t[i].ch = ch;
        t[i].first = first;
        t[i].slots = l->async ? l->callers / n + (i < l->callers % n) : 1;
        first += t[i].slots;
        pthread_create(&th[i], NULL, l->async ? async_main : caller_main, &t[i]);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < kinds; k++)
            merge(&out[k], &t[i].r[k]);
        dbld_arena_destroy(t[i].a);
    }
    double secs = (double)(dbld_mono_ms() - start) / 1000.0;
    for (int i = 0; i < channels; i++)
        grpc_channel_destroy(ch[i]);
    free(ch);
    grpc_shutdown();
    for (int k = 0; k < kinds; k++) {
        out[k].seconds = secs;
        qsort(out[k].lat, out[k].n_lat, sizeof *out[k].lat, cmp_double);
        if (out[k].errors) fprintf(stderr, "%s: first error: %s\n", who, out[k].first_error);
    }
    free(t);
    free(th);
}

void bench_result_free(bench_result *r)
{
    free(r->lat);
    memset(r, 0, sizeof *r);
}

double bench_quantile(const bench_result *r, double q)
{
    if (!r->n_lat) return 0.0;
    size_t i = (size_t)((double)r->n_lat * q);
    return r->lat[i < r->n_lat ? i : r->n_lat - 1];
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int bench_parse_list(const char *s, int *out, int max)
{
    int n = 0;
    char *copy = dbld_xstrdup(s), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
        out[n++] = atoi(t);
    free(copy);
    return n;
}

int bench_parse_driver(const char *s)
{
    return !strcmp(s, "async") ? 1 : !strcmp(s, "threads") ? 0 : -1;
}
