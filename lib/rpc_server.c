/* rpc_server.c - dbld_server: protobuf-c services on the gRPC C core server.
 *
 * Every method of the added services is registered with gRPC
 * (grpc_server_register_method, rmethod): its calls are requested per method
 * and arrive with their method known and, but for bidirectional streams,
 * with their first message read (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER),
 * which saves a batch and a completion per call. Other paths come through
 * grpc_server_request_call (generic) and are answered UNIMPLEMENTED.
 * Everything is asynchronous on ONE completion queue (NEXT) drained by
 * `pollers` threads; each completion's tag names the call and the step
 * (op_tag). A unary call costs two steps:
 *
 *   NEW     the call arrived with its request: post a replacement request,
 *           start the RECV_CLOSE_ON_SERVER op (how cancellation is learned)
 *           and go on as RECV (a bidirectional stream's first message, and
 *           a generic call's, is read by a RECV_MESSAGE op first);
 *   RECV    check the request's wire bytes (UTF-8, NUL, limits, enums:
 *           rpc_validate.c), decode it into the call's arena and run the handler:
 *           inline on the poller for DBLD_METHOD_NONBLOCKING methods, else on
 *           the worker pool (a mutex+condvar queue); a handler returning
 *           DBLD_ASYNC answers later through dbld_call_complete();
 *   FINISH  initial metadata + message (only on OK) + status went out in one
 *           batch; the call's last reference may go.
 *
 * A call is reference counted: one reference for its main flow (dropped when
 * FINISH completes), one while the close op is pending, one while a handler
 * runs (so a handler that hands the call to another thread cannot have it
 * freed under it). Streaming handlers run on a thread of their own (tracked,
 * joined lazily and at shutdown; at most max_streams at once: a stream over
 * the cap is answered RESOURCE_EXHAUSTED before any thread is made) and send (and, for
 * bidirectional methods, receive further requests) one blocking batch at a time: the poller signals
 * the call's condition variable when the batch completes (batch_wait). Handler output
 * is validated (status code range, response type, required fields) before it
 * reaches gRPC, so a buggy handler yields a status, not a crash.
 *
 * Memory: a server process serves bursts of calls whose buffers (libpq
 * results, responses) are large and short-lived. glibc's defaults answer
 * that with a heap trimmed on every large free and mmap/munmap per large
 * block: under 1,000 concurrent calls the query service spent most of its
 * CPU in page faults and TLB shootdowns (madvise/munmap), and kept the peak
 * afterwards. So dbld_server_create() fixes the thresholds (blocks up to
 * MMAP_THRESHOLD come from the heap, which is trimmed only above
 * TRIM_THRESHOLD) and caps the number of malloc arenas (malloc_arenas); and a
 * poller that has seen no completion for IDLE_TRIM_MS after calls ran (the
 * burst is over) gives the free memory back to the system with
 * malloc_trim(0). A call's arena goes as soon as it is answered and no
 * handler runs (arena_release), not when its status has gone out; an answer
 * known before the call may be answered waits packed
 * (dbld_call_hold_answer), and one page many calls ask for is packed once
 * and shared (dbld_packed).
 *
 * Shutdown: health goes NOT_SERVING and streams see themselves cancelled;
 * grpc_server_shutdown_and_notify stops new calls and its tag fires when
 * in-flight calls are done. After shutdown_grace_ms we cancel what is left,
 * wait for every call to end, stop the workers and stream threads, shut the
 * queue down (the pollers drain it and exit) and destroy the server.
 */
#include "rpc_internal.h"

#include "dbld/auth.h"
#include "dbld/fifo.h"
#include "dbld/log.h"
#include "dbld/metrics.h"
#include "dbld/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <grpc/grpc_security.h>
#include <malloc.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_WORKERS 4
#define MAX_WORKERS 256
#define DEFAULT_POLLERS 2
#define DEFAULT_MAX_QUEUE 1024 /* unary calls waiting for a worker */
#define MAX_POLLERS 16
#define REQUESTS_PER_POLLER 1   /* generic requests (unknown methods) posted ahead, per poller */
#define REGISTERED_PER_POLLER 4 /* requests posted ahead per registered method, per poller */
#define DEFAULT_MAX_MSG (16 * 1024 * 1024)
#define DEFAULT_GRACE_MS 5000
#define DEFAULT_MAX_STREAMS 256
#define CANCEL_POLL_MS 50
#define MMAP_THRESHOLD (4 << 20) /* allocator tuning: see the opening comment */
#define TRIM_THRESHOLD (8 << 20)
#define MALLOC_ARENAS 2 /* default of dbld_server_opts.malloc_arenas */
#define IDLE_TRIM_MS 1000

#define TAG_SHUTDOWN ((void *)3)

#define HEALTH_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define HEALTH_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

enum { SRV_NEW, SRV_RUNNING, SRV_STOPPED };
enum { OP_NEW, OP_RECV, OP_CLOSE, OP_FINISH, OP_WAIT };

typedef struct reg {
    const dbld_service *svc;
    void *user;
} reg;

/* A thread runs one streaming call after another: after a call it waits
 * STREAM_IDLE_MS (at most STREAM_IDLE_MAX of them) for the next before it
 * exits, so a burst of short streams (JobRunner/RunStreamed per task) does
 * not make and join a thread for each. */
#define STREAM_IDLE_MS 10000
#define STREAM_IDLE_MAX 64

typedef struct stream_thread {
    pthread_t tid;
    int done; /* set under srv->mu when the thread is about to exit */
    struct stream_thread *next;
    /* under srv->mu */
    struct dbld_server *srv;
    struct dbld_call *call;          /* to run next; NULL while idle */
    pthread_cond_t cv;               /* idle: a call was handed over, or stop */
    struct stream_thread *idle_next; /* in srv->idle_streams */
    int idle;
} stream_thread;

typedef struct op_tag {
    dbld_call *c;
    int kind; /* OP_* */
} op_tag;

/* A method registered with gRPC (grpc_server_register_method). */
typedef struct rmethod {
    void *handle;
    const dbld_method *m;
    void *user;
    int payload; /* its calls arrive with the first message read */
} rmethod;

struct dbld_server {
    char *name, *listen;
    int n_workers, n_pollers, max_msg, grace_ms, max_queue;
    int max_streams;       /* streaming calls (threads) at once */
    int max_conc;          /* calls per connection (0: no limit) */
    const dbld_auth *auth; /* borrowed; NULL: every method is open */
    int add_failed;        /* a dbld_server_add() was refused: start fails */
    char *metrics_listen;  /* NULL: no metrics endpoint */
    dbld_tls_opts tls;     /* strings owned; tls.cert_file NULL: plaintext */
    atomic_int tls_reload; /* dbld_server_reload_tls() asked for new files */
    atomic_int tls_loaded; /* the fetcher has handed gRPC a config once */
    reg *regs;
    size_t n_regs, cap_regs;
    rmethod *rms; /* registered in bind_server() */
    size_t n_rms;
    grpc_server *server;
    grpc_completion_queue *cq; /* NEXT; every call and request lives here */
    pthread_t *pollers, *workers;
    int pollers_started, workers_started;
    int port;
    int state;                   /* SRV_*, under shutdown_mu */
    atomic_int accepting;        /* post replacement requests for new calls */
    atomic_int draining;         /* shutdown began: streams count as cancelled */
    atomic_int hard_cancel;      /* grace expired: everything counts as cancelled */
    atomic_int inflight;         /* calls accepted and not yet finished */
    atomic_int trim_due;         /* calls ran since the last malloc_trim() */
    pthread_mutex_t shutdown_mu; /* serializes start/shutdown */
    pthread_mutex_t mu;          /* streams */
    stream_thread *streams;
    int n_streams;               /* streams whose handler has not returned yet, under mu */
    stream_thread *idle_streams; /* threads waiting for their next stream, under mu */
    int n_idle_streams;
    int streams_stop;    /* join_streams(): idle threads exit */
    pthread_mutex_t qmu; /* worker queue */
    pthread_cond_t qcv;
    dbld_fifo queue; /* calls waiting for a worker (dbld_call.qlink), at most max_queue */
    int qstop;
    dbld__health health;
};

struct dbld_call {
    dbld_server *srv;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    op_tag t_new, t_recv, t_close, t_finish, t_wait;
    int rm;                    /* index in srv->rms; -1: a generic call */
    gpr_timespec reg_deadline; /* a registered call's deadline, as gRPC gives it */
    atomic_int refs;
    atomic_int arena_holds; /* the arena goes when 0: unanswered (1) + handlers running */
    atomic_int completed;   /* the status was handed to gRPC */
    atomic_int closed;      /* the close op completed */
    int close_cancelled;    /* written by gRPC */
    dbld_arena *arena;
    const dbld_method *m;
    void *user;
    char *path;            /* malloc'd (the arena may go before the call) */
    gpr_timespec deadline; /* GPR_CLOCK_MONOTONIC */
    dbld__rpc_mx *mx;      /* the method's metrics (NULL for unknown methods) */
    int64_t start_ns;
    const ProtobufCMessage *req;
    grpc_byte_buffer *recv_bb;
    grpc_byte_buffer *send_bb;        /* the final message, alive until FINISH */
    grpc_byte_buffer *held_bb;        /* dbld_call_hold_answer()'s, until it is sent */
    const ProtobufCMessage *last_msg; /* dbld_call_send_last(): sent with the status */
    grpc_slice status_details;
    int has_details, sent_initial, cancelled;
    pthread_mutex_t mu; /* wait_done / closed wakeups for blocking waiters */
    pthread_cond_t cv;
    int wait_done, wait_ok; /* the batch a streaming handler waits for (batch_wait) */
    stream_thread *thread;
    dbld_fifo_link qlink;    /* in srv->queue */
    int64_t queued_ms;       /* mono ms when it entered the worker queue */
    dbld_unary_fn worker_fn; /* dbld_call_to_workers(): run instead of m->unary */
};

/* ---- calls ---- */

static dbld_call *call_new(dbld_server *srv)
{
    dbld_call *c = dbld_xcalloc(1, sizeof *c);
    c->srv = srv;
    c->t_new = (op_tag){c, OP_NEW};
    c->t_recv = (op_tag){c, OP_RECV};
    c->t_close = (op_tag){c, OP_CLOSE};
    c->t_finish = (op_tag){c, OP_FINISH};
    c->t_wait = (op_tag){c, OP_WAIT};
    atomic_init(&c->refs, 1);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    pthread_mutex_init(&c->mu, NULL);
    dbld_cond_init_mono(&c->cv);
    return c;
}

static void call_free(dbld_call *c)
{
    if (c->call) grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
    if (c->held_bb) grpc_byte_buffer_destroy(c->held_bb);
    if (c->has_details) grpc_slice_unref(c->status_details);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    dbld_arena_destroy(c->arena);
    free(c->path);
    free(c);
}

static void call_ref(dbld_call *c)
{
    atomic_fetch_add(&c->refs, 1);
}

static void call_unref(dbld_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1) call_free(c);
}

/* The arena (request, response, a handler's state) is needed while the call
 * is unanswered or a handler runs: once both are over it goes, not when
 * the status has gone out (FINISH). Under 1,000 clients most calls sit
 * answered, their packed response in gRPC's hands, waiting for the client
 * to read it and for FINISH: a ListBuildRequests page's arena is ~4x its
 * packed bytes, and holding it to FINISH made most of the query service's
 * RSS peak. */
static void arena_hold(dbld_call *c)
{
    atomic_fetch_add(&c->arena_holds, 1);
}

static void arena_release(dbld_call *c)
{
    if (atomic_fetch_sub(&c->arena_holds, 1) != 1) return;
    dbld_arena *a = c->arena;
    c->arena = NULL;
    c->req = NULL;
    dbld_arena_destroy(a);
}

static void log_result(dbld_call *c, int code, const char *msg)
{
    if (code == DBLD_OK) return;
    dbld_log(code == DBLD_INTERNAL ? DBLD_LOG_WARN : DBLD_LOG_DEBUG, "call failed", "method",
             c->path, "code", dbld_code_name(code), "error", msg, (const char *)NULL);
}

/* The main flow of the call is over. */
static void call_done(dbld_call *c)
{
    dbld_server *srv = c->srv;
    atomic_store(&srv->trim_due, 1);
    atomic_fetch_sub(&srv->inflight, 1);
    call_unref(c);
}

/* A poller waited IDLE_TRIM_MS for nothing: if calls ran since the last
 * trim and none runs now but open streams, return the burst's free memory to
 * the system. Streams (Subscribe, Watch) may stay open for the process's
 * life: counting them would keep a follower's heap untrimmed for ever (the
 * event log kept 113 MiB after a load while the query service's index
 * subscribed). */
static void idle_trim(dbld_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    int streams = srv->n_streams;
    pthread_mutex_unlock(&srv->mu);
    if (atomic_load(&srv->inflight) <= streams && atomic_exchange(&srv->trim_due, 0))
        malloc_trim(0);
}

/* Send initial metadata (once), an optional response and the status, all in
 * one batch that completes as OP_FINISH. At most once per call. The call may
 * be freed as soon as the batch is started: the caller must hold a reference
 * if it touches the call afterwards. */
static void finish(dbld_call *c, int code, const char *msg, const ProtobufCMessage *resp)
{
    if (atomic_exchange(&c->completed, 1)) {
        dbld_log(DBLD_LOG_WARN, "call answered twice; second answer dropped", "method", c->path,
                 (const char *)NULL);
        return;
    }
    log_result(c, code, msg);
    if (resp || (code == DBLD_OK && c->held_bb)) dbld__rpc_mx_msg(c->mx, 1);
    dbld__rpc_mx_handled(c->mx, code, c->start_ns);
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    c->sent_initial = 1;
    if (resp) {
        c->send_bb = dbld__pack(resp);
    } else if (code == DBLD_OK && c->held_bb) {
        c->send_bb = c->held_bb;
        c->held_bb = NULL;
    }
    if (c->send_bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
    }
    c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
    c->has_details = 1;
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &c->status_details;
    /* resp and msg are copied: the arena may go (the main flow's reference
     * keeps c until FINISH) */
    if (c->arena) arena_release(c);
    if (grpc_call_start_batch(c->call, ops, n, &c->t_finish, NULL) != GRPC_CALL_OK) call_done(c);
}

/* Validate a unary handler's result and send it. */
static void finish_unary(dbld_call *c, int code, const char *msg, ProtobufCMessage *resp)
{
    dbld_status st;
    dbld_status_clear(&st);
    code = dbld__code(code);
    if (atomic_load(&c->completed)) { /* answered twice: finish() logs it (the arena may be gone) */
        finish(c, code, msg, NULL);
        return;
    }
    if (code == DBLD_OK && !resp && !c->held_bb)
        resp = dbld_arena_msg(c->arena, c->m->response);
    else if (code == DBLD_OK && resp &&
             (resp->descriptor != c->m->response || !protobuf_c_message_check(resp))) {
        code = dbld_status_set(&st, DBLD_INTERNAL, "handler returned an invalid %s response",
                               c->m->response->name);
        msg = st.msg;
    }
    finish(c, code, code == DBLD_OK ? "" : msg, code == DBLD_OK ? resp : NULL);
}

static void enqueue(dbld_server *srv, dbld_call *c);

void dbld_call_to_workers(dbld_call *call, dbld_unary_fn fn)
{
    if (!call) return;
    if (!call->m || !call->m->unary || !fn) { /* a caller's bug: still answer the call */
        finish(call, DBLD_INTERNAL, "no handler to run on a worker", NULL);
        return;
    }
    call->worker_fn = fn;
    enqueue(call->srv, call);
}

void dbld_call_complete(dbld_call *call, int code, const char *msg, ProtobufCMessage *resp)
{
    if (!call || !call->m || !call->m->unary) return;
    if (resp && call->held_bb) { /* this answer instead of the held one */
        grpc_byte_buffer_destroy(call->held_bb);
        call->held_bb = NULL;
    }
    finish_unary(call, code, msg ? msg : "", resp);
}

int dbld_call_hold_answer(dbld_call *call, const ProtobufCMessage *resp, dbld_status *st)
{
    if (!call || !call->m || !call->m->unary)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "dbld_call_hold_answer outside a unary call");
    if (!resp || resp->descriptor != call->m->response || !protobuf_c_message_check(resp))
        return dbld_status_set(st, DBLD_INTERNAL, "invalid %s answer for %s",
                               call->m->response->name, call->path);
    if (call->held_bb) grpc_byte_buffer_destroy(call->held_bb);
    call->held_bb = dbld__pack(resp);
    return 0;
}

struct dbld_packed {
    const ProtobufCMessageDescriptor *type;
    grpc_byte_buffer *bb; /* its slice is shared by the calls that hold it */
};

dbld_packed *dbld_packed_new(const ProtobufCMessage *msg)
{
    if (!msg || !protobuf_c_message_check(msg)) return NULL;
    dbld_packed *p = dbld_xmalloc(sizeof *p);
    p->type = msg->descriptor;
    p->bb = dbld__pack(msg);
    return p;
}

void dbld_packed_free(dbld_packed *p)
{
    if (!p) return;
    grpc_byte_buffer_destroy(p->bb);
    free(p);
}

int dbld_call_hold_packed(dbld_call *call, const dbld_packed *p, dbld_status *st)
{
    if (!call || !call->m || !call->m->unary)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "dbld_call_hold_packed outside a unary call");
    if (!p || p->type != call->m->response)
        return dbld_status_set(st, DBLD_INTERNAL, "invalid %s answer for %s",
                               call->m->response->name, call->path);
    if (call->held_bb) grpc_byte_buffer_destroy(call->held_bb);
    call->held_bb = grpc_byte_buffer_copy(p->bb); /* a reference to the bytes, not a copy */
    return 0;
}

void dbld_call_complete_held(dbld_call *call)
{
    if (!call || !call->m || !call->m->unary) return;
    if (!call->held_bb) {
        finish_unary(call, DBLD_INTERNAL, "no answer held", NULL);
        return;
    }
    finish_unary(call, DBLD_OK, "", NULL);
}

/* ---- dispatch ---- */

static const dbld_method *find_in(const dbld_service *svc, const char *path)
{
    for (size_t i = 0; i < svc->n_methods; i++)
        if (strcmp(svc->methods[i].path, path) == 0) return &svc->methods[i];
    return NULL;
}

static void find_method(dbld_call *c)
{
    dbld_server *srv = c->srv;
    for (size_t i = 0; i < srv->n_regs && !c->m; i++) {
        c->m = find_in(srv->regs[i].svc, c->path);
        c->user = srv->regs[i].user;
    }
    if (!c->m) {
        c->m = find_in(&dbld__health_service, c->path);
        c->user = &srv->health;
    }
    if (!c->m) {
        c->m = find_in(&dbld__reflection_service, c->path);
        c->user = srv;
    }
}

size_t dbld__server_service_names(dbld_server *srv, const char **out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < srv->n_regs && n < cap; i++)
        out[n++] = srv->regs[i].svc->name;
    const char *builtin[] = {dbld__health_service.name, "grpc.reflection.v1.ServerReflection",
                             "grpc.reflection.v1alpha.ServerReflection"};
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0] && n < cap; i++)
        out[n++] = builtin[i];
    return n;
}

static void run_unary(dbld_call *c)
{
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    call_ref(c);   /* the handler may hand the call on; keep it alive until we are done */
    arena_hold(c); /* and its arena, even once another thread has answered it */
    dbld_unary_fn fn = c->worker_fn ? c->worker_fn : c->m->unary;
    c->worker_fn = NULL;
    int code = fn(c, c->req, &resp, &st);
    if (code != DBLD_ASYNC) {
        st.msg[sizeof st.msg - 1] = '\0';
        finish_unary(c, code, st.msg, resp);
    }
    arena_release(c);
    call_unref(c);
}

static void run_stream(dbld_call *c)
{
    dbld_status st;
    dbld_status_clear(&st);
    int code = dbld__code(c->m->stream(c, c->req, &st));
    st.msg[sizeof st.msg - 1] = '\0';
    finish(c, code, code == DBLD_OK ? "" : st.msg, code == DBLD_OK ? c->last_msg : NULL);
    call_unref(c); /* the stream thread's reference */
}

/* Wait (under srv->mu) for start_stream() to hand t another call: 1 when it
 * did, 0 when t should exit (idle too long, too many idle, stopping). */
static int stream_park(dbld_server *srv, stream_thread *t)
{
    if (srv->streams_stop || srv->n_idle_streams >= STREAM_IDLE_MAX) return 0;
    t->idle = 1;
    t->idle_next = srv->idle_streams;
    srv->idle_streams = t;
    srv->n_idle_streams++;
    struct timespec until = dbld_abs_time(CLOCK_MONOTONIC, STREAM_IDLE_MS);
    while (!t->call && !srv->streams_stop)
        if (pthread_cond_timedwait(&t->cv, &srv->mu, &until) != 0) break;
    if (t->idle) { /* not taken: leave the idle list */
        for (stream_thread **pp = &srv->idle_streams; *pp; pp = &(*pp)->idle_next)
            if (*pp == t) {
                *pp = t->idle_next;
                break;
            }
        srv->n_idle_streams--;
        t->idle = 0;
    }
    return t->call != NULL;
}

static void *stream_main(void *arg)
{
    stream_thread *t = arg;
    dbld_server *srv = t->srv;
    pthread_mutex_lock(&srv->mu);
    do {
        dbld_call *c = t->call;
        t->call = NULL;
        pthread_mutex_unlock(&srv->mu);
        run_stream(c);
        pthread_mutex_lock(&srv->mu);
        srv->n_streams--;
    } while (stream_park(srv, t));
    t->done = 1;
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* Join stream threads that have finished. Caller holds srv->mu. */
static void reap_streams(dbld_server *srv)
{
    for (stream_thread **p = &srv->streams; *p;) {
        stream_thread *t = *p;
        if (!t->done) {
            p = &t->next;
            continue;
        }
        pthread_join(t->tid, NULL);
        *p = t->next;
        pthread_cond_destroy(&t->cv);
        free(t);
    }
}

/* Refuse a stream: the cap is reached (RESOURCE_EXHAUSTED, naming the
 * config key) or no thread could be made (UNAVAILABLE). */
static void refuse_stream(dbld_call *c, int open, int no_thread)
{
    dbld_status st;
    if (no_thread)
        dbld_status_set(&st, DBLD_UNAVAILABLE,
                        "could not start a thread for %s (%d streams open); retry later", c->path,
                        open);
    else
        dbld_status_set(&st, DBLD_RESOURCE_EXHAUSTED,
                        "too many streams: %d are open, the cap (%s.max_streams) is %d; retry "
                        "later",
                        open, c->srv->name, c->srv->max_streams);
    finish(c, st.code, st.msg, NULL);
}

static void start_stream(dbld_call *c)
{
    dbld_server *srv = c->srv;
    pthread_mutex_lock(&srv->mu);
    reap_streams(srv);
    int open = srv->n_streams;
    if (open >= srv->max_streams) {
        pthread_mutex_unlock(&srv->mu);
        refuse_stream(c, open, 0);
        return;
    }
    call_ref(c);
    stream_thread *t = srv->idle_streams;
    if (t) { /* hand it to a thread waiting for its next stream */
        srv->idle_streams = t->idle_next;
        srv->n_idle_streams--;
        t->idle = 0;
        t->call = c;
        c->thread = t;
        srv->n_streams++;
        pthread_cond_signal(&t->cv);
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    t = dbld_xcalloc(1, sizeof *t);
    t->srv = srv;
    t->call = c;
    dbld_cond_init_mono(&t->cv);
    c->thread = t;
    if (pthread_create(&t->tid, NULL, stream_main, t) != 0) {
        pthread_mutex_unlock(&srv->mu);
        pthread_cond_destroy(&t->cv);
        free(t);
        c->thread = NULL;
        call_unref(c);
        refuse_stream(c, open, 1);
        return;
    }
    srv->n_streams++;
    t->next = srv->streams;
    srv->streams = t;
    pthread_mutex_unlock(&srv->mu);
}

/* Hand a unary call to the workers, or refuse it when max_queue calls are
 * already waiting (the caller learns at once instead of timing out). */
static void enqueue(dbld_server *srv, dbld_call *c)
{
    pthread_mutex_lock(&srv->qmu);
    if (srv->queue.n >= (size_t)srv->max_queue) {
        int qlen = (int)srv->queue.n;
        pthread_mutex_unlock(&srv->qmu);
        char msg[200];
        snprintf(msg, sizeof msg,
                 "server busy: %d calls are waiting for %d workers (max_queue %d); retry later",
                 qlen, srv->n_workers, srv->max_queue);
        finish(c, DBLD_RESOURCE_EXHAUSTED, msg, NULL);
        return;
    }
    c->queued_ms = dbld_mono_ms();
    dbld_fifo_push(&srv->queue, &c->qlink);
    pthread_cond_signal(&srv->qcv);
    pthread_mutex_unlock(&srv->qmu);
}

/* A call whose caller has given up while it waited for a worker is answered
 * without running its handler (nobody would read the answer, and under
 * overload running it would only make the queue longer). */
static void run_queued(dbld_call *c)
{
    char msg[160];
    if (dbld_call_remaining_ms(c) <= 0) {
        snprintf(msg, sizeof msg, "deadline passed after %lld ms waiting for a worker",
                 (long long)(dbld_mono_ms() - c->queued_ms));
        finish_unary(c, DBLD_DEADLINE_EXCEEDED, msg, NULL);
    } else if (atomic_load(&c->closed)) {
        finish_unary(c, DBLD_CANCELLED, "cancelled by the client while waiting for a worker", NULL);
    } else {
        run_unary(c);
    }
}

static void *worker_main(void *arg)
{
    dbld_server *srv = arg;
    pthread_mutex_lock(&srv->qmu);
    for (;;) {
        while (!srv->queue.n && !srv->qstop)
            pthread_cond_wait(&srv->qcv, &srv->qmu);
        dbld_call *c = DBLD_FIFO_ENTRY(dbld_fifo_pop(&srv->queue), dbld_call, qlink);
        if (!c) break;
        pthread_mutex_unlock(&srv->qmu);
        run_queued(c);
        pthread_mutex_lock(&srv->qmu);
    }
    pthread_mutex_unlock(&srv->qmu);
    return NULL;
}

/* Post one request for a new call. */
static void request_call(dbld_server *srv)
{
    dbld_call *c = call_new(srv);
    c->rm = -1;
    if (grpc_server_request_call(srv->server, &c->call, &c->details, &c->md, srv->cq, srv->cq,
                                 &c->t_new) != GRPC_CALL_OK)
        call_free(c);
}

/* Ask gRPC for the next call of registered method k. */
static void request_registered(dbld_server *srv, size_t k)
{
    dbld_call *c = call_new(srv);
    const rmethod *r = &srv->rms[k];
    c->rm = (int)k;
    if (grpc_server_request_registered_call(srv->server, r->handle, &c->call, &c->reg_deadline,
                                            &c->md, r->payload ? &c->recv_bb : NULL, srv->cq,
                                            srv->cq, &c->t_new) != GRPC_CALL_OK)
        call_free(c);
}

/* ---- authorization ---- */

/* The value of the first `key` metadata entry (not NUL-terminated), or NULL. */
static const char *md_value(const grpc_metadata_array *md, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        grpc_slice k = md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(k) == kl && memcmp(GRPC_SLICE_START_PTR(k), key, kl) == 0) {
            *len = GRPC_SLICE_LENGTH(md->metadata[i].value);
            return (const char *)GRPC_SLICE_START_PTR(md->metadata[i].value);
        }
    }
    *len = 0;
    return NULL;
}

/* The common name of the client's verified certificate (mTLS), in the arena. */
static const char *peer_common_name(dbld_call *c)
{
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    if (!ctx) return NULL;
    const char *cn = NULL;
    if (grpc_auth_context_peer_is_authenticated(ctx)) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        if (p) cn = dbld_arena_strndup(c->arena, p->value, p->value_length);
    }
    grpc_auth_context_release(ctx);
    return cn;
}

/* Check the caller's credentials for c->path; answers the call and returns
 * the code when they fall short. */
static int authorize(dbld_call *c)
{
    size_t len;
    const char *authz = md_value(&c->md, "authorization", &len);
    dbld_status st;
    dbld_status_clear(&st);
    int code = dbld_auth_check(c->srv->auth, c->path, authz, len,
                               c->srv->tls.cert_file ? peer_common_name(c) : NULL, &st);
    if (code) finish(c, code, st.msg, NULL);
    return code;
}

static void on_recv(dbld_call *c, int success);

static void on_new(dbld_call *c, int success)
{
    dbld_server *srv = c->srv;
    if (!success) { /* the server is shutting down */
        call_free(c);
        return;
    }
    const rmethod *r = c->rm >= 0 ? &srv->rms[c->rm] : NULL;
    if (atomic_load(&srv->accepting)) {
        if (r)
            request_registered(srv, (size_t)c->rm);
        else
            request_call(srv);
    }
    atomic_fetch_add(&srv->inflight, 1);
    c->arena = dbld_arena_create();
    atomic_store(&c->arena_holds, 1);
    if (r) {
        c->path = dbld_xstrdup(r->m->path);
        c->deadline = gpr_convert_clock_type(c->reg_deadline, GPR_CLOCK_MONOTONIC);
    } else {
        size_t plen = GRPC_SLICE_LENGTH(c->details.method);
        c->path = dbld_xmalloc(plen + 1);
        memcpy(c->path, GRPC_SLICE_START_PTR(c->details.method), plen);
        c->path[plen] = '\0';
        c->deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    }
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    call_ref(c);
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) {
        atomic_store(&c->closed, 1);
        call_unref(c);
    }
    if (r) {
        c->m = r->m;
        c->user = r->user;
    } else {
        find_method(c);
    }
    if (!c->m) {
        dbld_status st;
        dbld_status_set(&st, DBLD_UNIMPLEMENTED, "unknown method %s", c->path);
        finish(c, st.code, st.msg, NULL);
        return;
    }
    c->start_ns = dbld__now_ns();
    c->mx = dbld__rpc_mx_get(1, c->path,
                             c->m->unary                        ? "unary"
                             : (c->m->flags & DBLD_METHOD_BIDI) ? "bidi_stream"
                                                                : "server_stream");
    dbld__rpc_mx_started(c->mx);
    if (srv->auth && authorize(c) != 0) return;
    if (r && r->payload) { /* the request came with the call */
        on_recv(c, 1);
        return;
    }
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_bb;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_recv, NULL) != GRPC_CALL_OK)
        finish(c, DBLD_INTERNAL, "could not receive the request", NULL);
}

/* Validate (rpc_validate.c) and unpack a request into the call's arena;
 * consumes bb. NULL with st set (INVALID_ARGUMENT) when it is refused. */
static ProtobufCMessage *decode_request(dbld_call *c, grpc_byte_buffer *bb, dbld_status *st)
{
    grpc_slice s = dbld__flatten(bb);
    grpc_byte_buffer_destroy(bb);
    ProtobufCMessage *m = NULL;
    if (dbld_wire_validate(c->m->request, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), st) == 0)
        m = protobuf_c_message_unpack(c->m->request, dbld_arena_allocator(c->arena),
                                      GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    else
        dbld_status_prefix(st, "invalid %s", c->m->request->short_name);
    if (!m && st->code == 0)
        dbld_status_set(st, DBLD_INVALID_ARGUMENT, "could not decode %s request for %s",
                        c->m->request->name, c->path);
    grpc_slice_unref(s);
    return m;
}

static void on_recv(dbld_call *c, int success)
{
    dbld_status st;
    dbld_status_clear(&st);
    if (!success || !c->recv_bb) {
        dbld_status_set(&st, DBLD_INVALID_ARGUMENT, "no request message for %s", c->path);
        finish(c, st.code, st.msg, NULL);
        return;
    }
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    dbld__rpc_mx_msg(c->mx, 0);
    c->req = decode_request(c, bb, &st);
    if (!c->req) {
        finish(c, st.code, st.msg, NULL);
    } else if (c->m->stream) {
        start_stream(c);
    } else if (c->m->flags & DBLD_METHOD_NONBLOCKING) {
        run_unary(c);
    } else {
        enqueue(c->srv, c);
    }
}

static void on_close(dbld_call *c)
{
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->closed, 1);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    call_unref(c);
}

static void on_wait(dbld_call *c, int success)
{
    pthread_mutex_lock(&c->mu);
    c->wait_done = 1;
    c->wait_ok = success;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void *poller_main(void *arg)
{
    dbld_server *srv = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(srv->cq, dbld__deadline(IDLE_TRIM_MS), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type == GRPC_QUEUE_TIMEOUT) idle_trim(srv);
        if (ev.type != GRPC_OP_COMPLETE) continue;
        op_tag *t = ev.tag;
        switch (t->kind) {
        case OP_NEW:
            on_new(t->c, ev.success);
            break;
        case OP_RECV:
            on_recv(t->c, ev.success);
            break;
        case OP_CLOSE:
            on_close(t->c);
            break;
        case OP_FINISH:
            call_done(t->c);
            break;
        case OP_WAIT:
            on_wait(t->c, ev.success);
            break;
        }
    }
    return NULL;
}

/* ---- inside a handler ---- */

dbld_arena *dbld_call_arena(dbld_call *call)
{
    return call ? call->arena : NULL;
}

void *dbld_call_user(dbld_call *call)
{
    return call ? call->user : NULL;
}

const char *dbld_call_method(dbld_call *call)
{
    return call ? call->path : "";
}

int64_t dbld_call_remaining_ms(dbld_call *call)
{
    if (!call || call->deadline.tv_sec == INT64_MAX) return INT64_MAX;
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    return (call->deadline.tv_sec - now.tv_sec) * 1000 +
           (call->deadline.tv_nsec - now.tv_nsec) / 1000000;
}

int dbld_call_cancelled(dbld_call *call)
{
    if (!call) return 1;
    /* Streams end as soon as shutdown begins; unary calls get the grace period. */
    if (call->m->stream && atomic_load(&call->srv->draining)) return 1;
    /* The close op completing before our status went out means the client
     * went away; a passed deadline or the end of the grace period count too. */
    return call->cancelled || atomic_load(&call->closed) || atomic_load(&call->srv->hard_cancel) ||
           dbld_call_remaining_ms(call) <= 0;
}

int dbld_call_interrupt(void *arg)
{
    dbld_call *call = arg;
    if (!dbld_call_cancelled(call)) return 0;
    return call && dbld_call_remaining_ms(call) <= 0 ? DBLD_DEADLINE_EXCEEDED : DBLD_CANCELLED;
}

int dbld_call_wait_cancel(dbld_call *call, int64_t timeout_ms)
{
    int64_t start = dbld_mono_ms();
    for (;;) {
        if (dbld_call_cancelled(call)) return 1;
        int64_t left = timeout_ms - (dbld_mono_ms() - start); /* no overflow for INT64_MAX */
        if (left <= 0) return 0;
        struct timespec ts =
            dbld_abs_time(CLOCK_MONOTONIC, left < CANCEL_POLL_MS ? left : CANCEL_POLL_MS);
        pthread_mutex_lock(&call->mu);
        if (!atomic_load(&call->closed)) pthread_cond_timedwait(&call->cv, &call->mu, &ts);
        pthread_mutex_unlock(&call->mu);
    }
}

/* Start ops and block until the poller reports them done (streaming
 * handlers: one batch at a time per call, from the handler's thread).
 * Returns gRPC's success flag. */
static int batch_wait(dbld_call *call, const grpc_op *ops, size_t n)
{
    pthread_mutex_lock(&call->mu);
    call->wait_done = 0;
    pthread_mutex_unlock(&call->mu);
    if (grpc_call_start_batch(call->call, ops, n, &call->t_wait, NULL) != GRPC_CALL_OK) return 0;
    pthread_mutex_lock(&call->mu);
    while (!call->wait_done)
        pthread_cond_wait(&call->cv, &call->mu);
    int ok = call->wait_ok;
    pthread_mutex_unlock(&call->mu);
    return ok;
}

/* A message a streaming handler may send: 0, or the error naming `fn`. */
static int check_stream_msg(dbld_call *call, const ProtobufCMessage *msg, const char *fn,
                            dbld_status *st)
{
    if (!call || !call->m || !call->m->stream)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "%s outside a streaming call", fn);
    if (!msg || msg->descriptor != call->m->response || !protobuf_c_message_check(msg))
        return dbld_status_set(st, DBLD_INTERNAL, "invalid %s message for %s",
                               call->m->response->name, call->path);
    return 0;
}

static int send_bb(dbld_call *call, grpc_byte_buffer *bb, dbld_status *st);

int dbld_call_send(dbld_call *call, const ProtobufCMessage *msg, dbld_status *st)
{
    int rc = check_stream_msg(call, msg, "dbld_call_send", st);
    if (rc) return rc;
    if (call->cancelled || atomic_load(&call->closed) || atomic_load(&call->srv->hard_cancel))
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    return send_bb(call, dbld__pack(msg), st);
}

int dbld_call_send_encoded(dbld_call *call, const void *buf, size_t len, dbld_status *st)
{
    if (!call || !call->m || !call->m->stream)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "dbld_call_send_encoded outside a streaming call");
    if (call->cancelled || atomic_load(&call->closed) || atomic_load(&call->srv->hard_cancel))
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    grpc_slice s = grpc_slice_from_copied_buffer(buf, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return send_bb(call, bb, st);
}

/* Send bb (taken) as the next message. */
static int send_bb(dbld_call *call, grpc_byte_buffer *bb, dbld_status *st)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!call->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    int ok = batch_wait(call, ops, n);
    call->sent_initial = 1;
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        call->cancelled = 1;
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    }
    dbld__rpc_mx_msg(call->mx, 1);
    return 0;
}

int dbld_call_send_last(dbld_call *call, const ProtobufCMessage *msg, dbld_status *st)
{
    int rc = check_stream_msg(call, msg, "dbld_call_send_last", st);
    if (rc) return rc;
    if (call->last_msg)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "the last message was already given");
    call->last_msg = msg;
    return 0;
}

int dbld_call_recv(dbld_call *call, ProtobufCMessage **msg, dbld_status *st)
{
    *msg = NULL;
    if (!call || !call->m || !call->m->stream)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "dbld_call_recv outside a streaming call");
    if (call->cancelled || atomic_load(&call->srv->hard_cancel))
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!batch_wait(call, &op, 1)) {
        if (bb) grpc_byte_buffer_destroy(bb);
        call->cancelled = 1;
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    }
    if (!bb) return 0; /* the client half-closed: no more requests */
    dbld__rpc_mx_msg(call->mx, 0);
    *msg = decode_request(call, bb, st);
    return *msg ? 0 : st->code;
}

/* ---- server lifecycle ---- */

int dbld_server_create(const dbld_server_opts *opts, dbld_server **out, dbld_status *st)
{
    if (!opts || !out) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "server options missing");
    /* process-wide, before the server's threads allocate (see the opening comment) */
    mallopt(M_ARENA_MAX, opts->malloc_arenas > 0 ? opts->malloc_arenas : MALLOC_ARENAS);
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    dbld_server *srv = dbld_xcalloc(1, sizeof *srv);
    srv->name = dbld_xstrdup(opts->service_name ? opts->service_name : "databuild");
    srv->listen = dbld_xstrdup(opts->listen && *opts->listen ? opts->listen : "127.0.0.1:0");
    srv->n_workers = opts->workers > 0 ? opts->workers : DEFAULT_WORKERS;
    if (srv->n_workers > MAX_WORKERS) srv->n_workers = MAX_WORKERS;
    srv->n_pollers = opts->pollers > 0 ? opts->pollers : DEFAULT_POLLERS;
    srv->max_queue = opts->max_queue > 0 ? opts->max_queue : DEFAULT_MAX_QUEUE;
    if (srv->n_pollers > MAX_POLLERS) srv->n_pollers = MAX_POLLERS;
    srv->max_msg = opts->max_message_bytes > 0 ? opts->max_message_bytes : DEFAULT_MAX_MSG;
    srv->grace_ms = opts->shutdown_grace_ms > 0 ? opts->shutdown_grace_ms : DEFAULT_GRACE_MS;
    srv->max_streams = opts->max_streams > 0 ? opts->max_streams : DEFAULT_MAX_STREAMS;
    srv->max_conc = opts->max_concurrent_streams > 0 ? opts->max_concurrent_streams : 0;
    srv->auth = opts->auth;
    srv->metrics_listen = opts->metrics_listen ? dbld_xstrdup(opts->metrics_listen) : NULL;
    if (opts->tls && opts->tls->cert_file) {
        if (dbld_tls_check(opts->tls, 1, st)) {
            free(srv->name);
            free(srv->listen);
            free(srv);
            return st->code;
        }
        srv->tls.cert_file = dbld_xstrdup(opts->tls->cert_file);
        srv->tls.key_file = dbld_xstrdup(opts->tls->key_file);
        srv->tls.ca_file = opts->tls->ca_file ? dbld_xstrdup(opts->tls->ca_file) : NULL;
        srv->tls.client_auth = opts->tls->client_auth;
    }
    srv->state = SRV_NEW;
    pthread_mutex_init(&srv->shutdown_mu, NULL);
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->qmu, NULL);
    pthread_cond_init(&srv->qcv, NULL);
    dbld_fifo_init(&srv->queue);
    dbld__health_init(&srv->health);
    dbld__health_set(&srv->health, "", HEALTH_NOT_SERVING);
    dbld__grpc_init();
    *out = srv;
    dbld_status_clear(st);
    return 0;
}

/* ---- TLS ---- */

/* gRPC asks before each handshake: hand it the files on the first call and
 * after dbld_server_reload_tls(); a reload that fails keeps the old ones. */
static grpc_ssl_certificate_config_reload_status tls_fetch(void *user,
                                                           grpc_ssl_server_certificate_config **out)
{
    dbld_server *srv = user;
    if (atomic_load(&srv->tls_loaded) && !atomic_exchange(&srv->tls_reload, 0))
        return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
    char *cert = NULL, *key = NULL, *ca = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    if (dbld_tls_read_pem("tls.cert_file", srv->tls.cert_file, &cert, &st) == 0 &&
        dbld_tls_read_pem("tls.key_file", srv->tls.key_file, &key, &st) == 0 &&
        (!srv->tls.ca_file || dbld_tls_read_pem("tls.ca_file", srv->tls.ca_file, &ca, &st) == 0)) {
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        *out = grpc_ssl_server_certificate_config_create(ca, &pair, 1);
    }
    int ok = st.code == 0;
    if (ok)
        dbld_log(DBLD_LOG_INFO,
                 atomic_load(&srv->tls_loaded) ? "tls certificates reloaded" : "tls on", "server",
                 srv->name, "cert_file", srv->tls.cert_file, (const char *)NULL);
    else
        dbld_log(DBLD_LOG_ERROR, "tls certificates not loaded", "server", srv->name, "error",
                 st.msg, (const char *)NULL);
    free(cert);
    if (key) memset(key, 0, strlen(key));
    free(key);
    free(ca);
    if (!ok)
        return atomic_load(&srv->tls_loaded) ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                                             : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    atomic_store(&srv->tls_loaded, 1);
    return GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
}

static grpc_server_credentials *server_credentials(dbld_server *srv)
{
    if (!srv->tls.cert_file) return grpc_insecure_server_credentials_create();
    grpc_ssl_client_certificate_request_type req = GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    if (srv->tls.client_auth == DBLD_TLS_CLIENT_REQUEST)
        req = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    else if (srv->tls.client_auth == DBLD_TLS_CLIENT_REQUIRE)
        req = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    grpc_ssl_server_credentials_options *o =
        grpc_ssl_server_credentials_create_options_using_config_fetcher(req, tls_fetch, srv);
    return grpc_ssl_server_credentials_create_with_options(o);
}

void dbld_server_reload_tls(dbld_server *srv)
{
    if (srv && srv->tls.cert_file) atomic_store(&srv->tls_reload, 1);
}

static int method_valid(const dbld_method *m)
{
    return m->path && m->path[0] == '/' && m->request &&
           m->request->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC && m->response &&
           m->response->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC && (!m->unary != !m->stream);
}

static int service_valid(const dbld_service *svc)
{
    if (!svc || !svc->name || (svc->n_methods && !svc->methods)) return 0;
    for (size_t i = 0; i < svc->n_methods; i++)
        if (!method_valid(&svc->methods[i])) return 0;
    return 1;
}

int dbld_server_add(dbld_server *srv, const dbld_service *svc, void *user)
{
    if (!srv || !service_valid(svc)) {
        dbld_log(DBLD_LOG_ERROR, "invalid service table", "service",
                 svc && svc->name ? svc->name : NULL, (const char *)NULL);
        return DBLD_INVALID_ARGUMENT;
    }
    for (size_t i = 0; srv->auth && i < svc->n_methods; i++)
        if (dbld_method_role(svc->methods[i].path) < 0) {
            dbld_log(DBLD_LOG_ERROR, "method has no role in the auth table (lib/rpc_auth.c)",
                     "method", svc->methods[i].path, (const char *)NULL);
            srv->add_failed = 1;
            return DBLD_INVALID_ARGUMENT;
        }
    pthread_mutex_lock(&srv->shutdown_mu);
    int state = srv->state;
    if (state == SRV_NEW) {
        if (srv->n_regs == srv->cap_regs) {
            srv->cap_regs = srv->cap_regs ? srv->cap_regs * 2 : 4;
            srv->regs = dbld_xrealloc(srv->regs, srv->cap_regs * sizeof *srv->regs);
        }
        srv->regs[srv->n_regs++] = (reg){svc, user};
        dbld__health_set(&srv->health, svc->name, HEALTH_NOT_SERVING);
    }
    pthread_mutex_unlock(&srv->shutdown_mu);
    return state == SRV_NEW ? 0 : DBLD_FAILED_PRECONDITION;
}

static void destroy_next_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(cq);
}

static void register_service(dbld_server *srv, const dbld_service *svc, void *user)
{
    for (size_t i = 0; i < svc->n_methods; i++) {
        const dbld_method *m = &svc->methods[i];
        int payload = !(m->stream && (m->flags & DBLD_METHOD_BIDI));
        /* NULL for a path registered already: the first service has it, as
         * find_method() would choose */
        void *h = grpc_server_register_method(
            srv->server, m->path, NULL,
            payload ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
        if (!h) continue;
        srv->rms = dbld_xrealloc(srv->rms, (srv->n_rms + 1) * sizeof *srv->rms);
        srv->rms[srv->n_rms++] = (rmethod){h, m, user, payload};
    }
}

/* Create the grpc_server and its queue, register the methods and bind; 0
 * or a code. */
static int bind_server(dbld_server *srv, dbld_status *st)
{
    grpc_arg args[] = {
        dbld__int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, srv->max_msg),
        dbld__int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, srv->max_msg),
        dbld__int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0), /* a taken port must fail to bind */
        dbld__int_arg(GRPC_ARG_HTTP2_BDP_PROBE, 0), /* see channel_new() in rpc_client.c */
        /* a vanished client fails its open calls (a stream's handler sees the
         * cancel); clients ping as often, see rpc_internal.h */
        dbld__int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, DBLD_KEEPALIVE_TIME_MS),
        dbld__int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, DBLD_KEEPALIVE_TIMEOUT_MS),
        dbld__int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        dbld__int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                      DBLD_KEEPALIVE_TIME_MS / 2),
        dbld__int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0),
        dbld__int_arg(GRPC_ARG_MAX_CONCURRENT_STREAMS, srv->max_conc), /* last */
    };
    /* the last one only when set: 0 keeps gRPC's default (no limit) */
    grpc_channel_args ca = {sizeof args / sizeof args[0] - (srv->max_conc > 0 ? 0 : 1), args};
    srv->server = grpc_server_create(&ca, NULL);
    srv->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv->server, srv->cq, NULL);
    free(srv->rms);
    srv->rms = NULL;
    srv->n_rms = 0;
    for (size_t i = 0; i < srv->n_regs; i++)
        register_service(srv, srv->regs[i].svc, srv->regs[i].user);
    register_service(srv, &dbld__health_service, &srv->health);
    register_service(srv, &dbld__reflection_service, srv);
    grpc_server_credentials *creds = server_credentials(srv);
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    grpc_server_credentials_release(creds);
    if (srv->port > 0) return 0;
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    destroy_next_cq(srv->cq);
    srv->cq = NULL;
    return dbld_status_set(st, DBLD_UNAVAILABLE, "could not listen on %s", srv->listen);
}

static void log_listening(dbld_server *srv)
{
    char addr[300], port[16];
    const char *colon = strrchr(srv->listen, ':');
    int host_len = colon ? (int)(colon - srv->listen) : (int)strlen(srv->listen);
    snprintf(addr, sizeof addr, "%.*s:%d", host_len, srv->listen, srv->port);
    snprintf(port, sizeof port, "%d", srv->port);
    dbld_log(DBLD_LOG_INFO, "listening", "server", srv->name, "addr", addr, "port", port,
             (const char *)NULL);
}

static void do_shutdown(dbld_server *srv);

static int start_threads(dbld_server *srv)
{
    srv->pollers = dbld_xcalloc((size_t)srv->n_pollers, sizeof *srv->pollers);
    srv->workers = dbld_xcalloc((size_t)srv->n_workers, sizeof *srv->workers);
    for (; srv->pollers_started < srv->n_pollers; srv->pollers_started++)
        if (pthread_create(&srv->pollers[srv->pollers_started], NULL, poller_main, srv) != 0)
            return -1;
    for (; srv->workers_started < srv->n_workers; srv->workers_started++)
        if (pthread_create(&srv->workers[srv->workers_started], NULL, worker_main, srv) != 0)
            return -1;
    return 0;
}

int dbld_server_start(dbld_server *srv, dbld_status *st)
{
    if (!srv) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no server");
    if (srv->add_failed)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "a service was not added (a method without a role in the auth "
                               "table)");
    pthread_mutex_lock(&srv->shutdown_mu);
    int rc = srv->state == SRV_NEW ? bind_server(srv, st)
                                   : dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                                     "server %s already started", srv->name);
    if (rc) {
        pthread_mutex_unlock(&srv->shutdown_mu);
        return rc;
    }
    grpc_server_start(srv->server);
    srv->state = SRV_RUNNING;
    atomic_store(&srv->accepting, 1);
    for (int i = 0; i < srv->n_pollers * REQUESTS_PER_POLLER; i++)
        request_call(srv);
    for (size_t k = 0; k < srv->n_rms; k++)
        for (int i = 0; i < srv->n_pollers * REGISTERED_PER_POLLER; i++)
            request_registered(srv, k);
    if (start_threads(srv) != 0) {
        do_shutdown(srv);
        pthread_mutex_unlock(&srv->shutdown_mu);
        return dbld_status_set(st, DBLD_UNAVAILABLE, "could not start server threads");
    }
    pthread_mutex_unlock(&srv->shutdown_mu);
    log_listening(srv);
    dbld_status_clear(st);
    if (srv->metrics_listen) {
        if (dbld_metrics_serve(srv->metrics_listen, st) != 0) {
            dbld_server_shutdown(srv);
            return st->code;
        }
        char port[16];
        snprintf(port, sizeof port, "%d", dbld_metrics_port());
        dbld_log(DBLD_LOG_INFO, "metrics", "server", srv->name, "listen", srv->metrics_listen,
                 "port", port, (const char *)NULL);
    }
    return 0;
}

int dbld_server_queued(dbld_server *srv)
{
    pthread_mutex_lock(&srv->qmu);
    int n = (int)srv->queue.n;
    pthread_mutex_unlock(&srv->qmu);
    return n;
}

int dbld_server_port(const dbld_server *srv)
{
    return srv ? srv->port : 0;
}

void dbld_server_set_health(dbld_server *srv, const char *service, int serving)
{
    if (!srv || atomic_load(&srv->draining)) return;
    dbld__health_set(&srv->health, service ? service : "",
                     serving ? HEALTH_SERVING : HEALTH_NOT_SERVING);
}

void dbld_server_set_health_all(dbld_server *srv, int serving)
{
    if (!srv || atomic_load(&srv->draining)) return;
    dbld__health_set_all(&srv->health, serving ? HEALTH_SERVING : HEALTH_NOT_SERVING);
}

/* Wait for the shutdown tag for the grace period, then cancel the rest. */
static void drain_calls(dbld_server *srv)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_server_shutdown_and_notify(srv->server, cq, TAG_SHUTDOWN);
    /* gRPC core only reports shutdown once every client connection is gone,
     * so an idle client would hold us for the whole grace period. Once our
     * own calls are done, disconnect whoever is left. */
    int64_t end = dbld_mono_ms() + srv->grace_ms;
    grpc_event ev;
    for (;;) {
        /* Never below 0: dbld__deadline() of a negative time is no deadline,
         * and a thread that runs again only after the grace has passed (a
         * loaded machine) would then wait for the calls to end on their own. */
        int64_t left = end - dbld_mono_ms();
        if (left < 0) left = 0;
        ev = grpc_completion_queue_pluck(cq, TAG_SHUTDOWN, dbld__deadline(left < 20 ? left : 20),
                                         NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT || left <= 20) break;
        if (atomic_load(&srv->inflight) == 0) {
            grpc_server_cancel_all_calls(srv->server);
            ev = grpc_completion_queue_pluck(cq, TAG_SHUTDOWN, dbld__deadline(left), NULL);
            break;
        }
    }
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        dbld_log(DBLD_LOG_WARN, "grace period over, cancelling calls", "server", srv->name,
                 (const char *)NULL);
        atomic_store(&srv->hard_cancel, 1);
        grpc_server_cancel_all_calls(srv->server);
        grpc_completion_queue_pluck(cq, TAG_SHUTDOWN, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    }
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_completion_queue_destroy(cq);
}

static void join_streams(dbld_server *srv)
{
    pthread_mutex_lock(&srv->mu);
    srv->streams_stop = 1;
    for (stream_thread *t = srv->idle_streams; t; t = t->idle_next)
        pthread_cond_signal(&t->cv);
    stream_thread *list = srv->streams;
    srv->streams = NULL;
    pthread_mutex_unlock(&srv->mu);
    while (list) {
        stream_thread *next = list->next;
        pthread_join(list->tid, NULL);
        pthread_cond_destroy(&list->cv);
        free(list);
        list = next;
    }
}

/* Caller holds shutdown_mu and the server is running. */
static void do_shutdown(dbld_server *srv)
{
    dbld__health_set_all(&srv->health, HEALTH_NOT_SERVING);
    atomic_store(&srv->accepting, 0);
    atomic_store(&srv->draining, 1);
    dbld__health_close(&srv->health);
    drain_calls(srv);
    /* Calls still answering asynchronously (a handler that returned
     * DBLD_ASYNC) are cancelled by now; wait for their answers to go out. */
    for (int i = 0; atomic_load(&srv->inflight) > 0; i++) {
        if (i == 0) atomic_store(&srv->hard_cancel, 1);
        dbld_sleep_ms(5);
    }
    pthread_mutex_lock(&srv->qmu);
    srv->qstop = 1;
    pthread_cond_broadcast(&srv->qcv);
    pthread_mutex_unlock(&srv->qmu);
    for (int i = 0; i < srv->workers_started; i++)
        pthread_join(srv->workers[i], NULL);
    join_streams(srv);
    grpc_completion_queue_shutdown(srv->cq);
    for (int i = 0; i < srv->pollers_started; i++)
        pthread_join(srv->pollers[i], NULL);
    if (!srv->pollers_started) /* nobody drained it */
        while (
            grpc_completion_queue_next(srv->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
            GRPC_QUEUE_SHUTDOWN)
            ;
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    grpc_completion_queue_destroy(srv->cq);
    srv->cq = NULL;
    free(srv->pollers);
    free(srv->workers);
    srv->pollers = srv->workers = NULL;
    srv->state = SRV_STOPPED;
    dbld_log(DBLD_LOG_INFO, "server stopped", "server", srv->name, (const char *)NULL);
}

void dbld_server_shutdown(dbld_server *srv)
{
    if (!srv) return;
    pthread_mutex_lock(&srv->shutdown_mu);
    if (srv->state == SRV_RUNNING) do_shutdown(srv);
    srv->state = SRV_STOPPED;
    atomic_store(&srv->draining, 1);
    pthread_mutex_unlock(&srv->shutdown_mu);
}

void dbld_server_destroy(dbld_server *srv)
{
    if (!srv) return;
    dbld_server_shutdown(srv);
    if (srv->metrics_listen) dbld_metrics_stop();
    dbld__health_free(&srv->health);
    pthread_mutex_destroy(&srv->mu);
    pthread_mutex_destroy(&srv->shutdown_mu);
    pthread_mutex_destroy(&srv->qmu);
    pthread_cond_destroy(&srv->qcv);
    free(srv->regs);
    free(srv->rms);
    free(srv->name);
    free(srv->listen);
    free(srv->metrics_listen);
    free((char *)srv->tls.cert_file);
    free((char *)srv->tls.key_file);
    free((char *)srv->tls.ca_file);
    free(srv);
    grpc_shutdown();
}

/* ---- signals ---- */

void dbld_signals_block(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGPIPE);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int dbld_signals_wait(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}

int dbld_signals_wait_server(dbld_server *srv)
{
    int sig;
    while ((sig = dbld_signals_wait()) == SIGHUP) {
        dbld_log(DBLD_LOG_INFO, "SIGHUP: reloading TLS files", (const char *)NULL);
        dbld_server_reload_tls(srv);
    }
    return sig;
}
