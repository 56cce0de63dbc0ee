/* rpc_server.c - dbld_server: protobuf-c services on the gRPC C core server.
 *
 * Calls are taken with grpc_server_request_call (generic, by path), so the
 * runtime needs no registration with gRPC: `workers` threads each own a NEXT
 * completion queue registered with the server and keep at most one request
 * outstanding on it, issued only while the worker is idle, so gRPC hands each
 * new call to an idle worker. Every requested call is bound to a PLUCK
 * completion queue of its own, which makes a call a self-contained object
 * that any thread can drive with blocking batches (start + pluck): unary
 * handlers run on the worker, streaming handlers on a thread of their own
 * (tracked, joined lazily and at shutdown).
 *
 * Each call starts a RECV_CLOSE_ON_SERVER op first; polling that tag is how
 * dbld_call_cancelled() learns that the client went away. The request is
 * decoded into the call's arena and the handler's result goes back as
 * initial metadata + message (only on OK) + status in one batch. Handler
 * output is validated (status code range, response type, required fields)
 * before it reaches gRPC, so a buggy handler yields a status, not a crash.
 *
 * Shutdown: health goes NOT_SERVING and streams see themselves cancelled;
 * grpc_server_shutdown_and_notify stops new calls and its tag fires when
 * in-flight calls are done. After shutdown_grace_ms we cancel what is left,
 * then join stream threads and workers, destroy the server and drain and
 * destroy the completion queues.
 */
#include "rpc_internal.h"

#include "dbld/log.h"
#include "dbld/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <grpc/grpc_security.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_WORKERS 4
#define MAX_WORKERS 256
#define DEFAULT_MAX_MSG (16 * 1024 * 1024)
#define DEFAULT_GRACE_MS 5000
#define CANCEL_POLL_MS 50

#define TAG_BATCH ((void *)1)
#define TAG_CLOSE ((void *)2)
#define TAG_SHUTDOWN ((void *)3)

#define HEALTH_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define HEALTH_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

enum { SRV_NEW, SRV_RUNNING, SRV_STOPPED };

typedef struct reg {
    const dbld_service *svc;
    void *user;
} reg;

typedef struct worker {
    dbld_server *srv;
    grpc_completion_queue *cq; /* NEXT, registered with the server */
    pthread_t tid;
    int started;
} worker;

typedef struct stream_thread {
    pthread_t tid;
    int done; /* set under srv->mu when the thread is about to exit */
    struct stream_thread *next;
} stream_thread;

struct dbld_server {
    char *name, *listen;
    int n_workers, max_msg, grace_ms;
    reg *regs;
    size_t n_regs, cap_regs;
    grpc_server *server;
    worker *workers;
    int port;
    int state;                   /* SRV_*, under shutdown_mu */
    atomic_int draining;         /* shutdown began: streams count as cancelled */
    atomic_int hard_cancel;      /* grace expired: everything counts as cancelled */
    atomic_int inflight;         /* calls dispatched and not yet ended */
    pthread_mutex_t shutdown_mu; /* serializes start/shutdown */
    pthread_mutex_t mu;          /* streams */
    stream_thread *streams;
    dbld__health health;
};

struct dbld_call {
    dbld_server *srv;
    grpc_call *call;
    grpc_completion_queue *cq; /* PLUCK, bound to the call */
    grpc_call_details details;
    grpc_metadata_array md;
    dbld_arena *arena;
    const dbld_method *m;
    void *user;
    const char *path;      /* in the arena */
    gpr_timespec deadline; /* GPR_CLOCK_MONOTONIC */
    const ProtobufCMessage *req;
    int close_pending, close_cancelled, cancelled, sent_initial;
    stream_thread *thread;
};

/* ---- calls ---- */

static dbld_call *call_new(dbld_server *srv)
{
    dbld_call *c = dbld_xcalloc(1, sizeof *c);
    c->srv = srv;
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    return c;
}

static void call_free(dbld_call *c)
{
    if (c->call) grpc_call_unref(c->call);
    grpc_completion_queue_shutdown(c->cq);
    grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_completion_queue_destroy(c->cq);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    dbld_arena_destroy(c->arena);
    free(c);
}

/* Start ops and wait for them; returns the batch's success flag. */
static int run_batch(dbld_call *c, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(c->call, ops, n, TAG_BATCH, NULL) != GRPC_CALL_OK) return 0;
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, TAG_BATCH, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static void start_close_op(dbld_call *c)
{
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    c->close_pending = grpc_call_start_batch(c->call, &op, 1, TAG_CLOSE, NULL) == GRPC_CALL_OK;
}

/* Wait up to ms (0: just look) for the close op; it completing before our
 * status went out means the call is over for us. */
static void poll_close(dbld_call *c, int64_t ms)
{
    if (!c->close_pending) {
        dbld_sleep_ms(ms);
        return;
    }
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, TAG_CLOSE, dbld__deadline(ms > 0 ? ms : 0), NULL);
    if (ev.type == GRPC_OP_COMPLETE) {
        c->close_pending = 0;
        c->cancelled = 1;
    }
}

/* Send initial metadata (once), an optional response and the status. */
static void finish(dbld_call *c, int code, const char *msg, const ProtobufCMessage *resp)
{
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *bb = resp ? dbld__pack(resp) : NULL;
    if (bb) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = &details;
    run_batch(c, ops, n);
    c->sent_initial = 1;
    grpc_slice_unref(details);
    if (bb) grpc_byte_buffer_destroy(bb);
}

/* Wait for the call to be fully closed, then free it. */
static void call_end(dbld_call *c)
{
    atomic_fetch_sub(&c->srv->inflight, 1);
    if (c->close_pending)
        grpc_completion_queue_pluck(c->cq, TAG_CLOSE, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    c->close_pending = 0;
    call_free(c);
}

static void log_result(dbld_call *c, int code, const char *msg)
{
    if (code == DBLD_OK) return;
    dbld_log(code == DBLD_INTERNAL ? DBLD_LOG_WARN : DBLD_LOG_DEBUG, "call failed", "method",
             c->path, "code", dbld_code_name(code), "error", msg, (const char *)NULL);
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
}

/* Receive and decode the request into the arena; returns 0 or a code. */
static int recv_request(dbld_call *c, dbld_status *st)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op op = {0};
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!run_batch(c, &op, 1) || !bb) {
        if (bb) grpc_byte_buffer_destroy(bb);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no request message for %s", c->path);
    }
    grpc_slice s = dbld__flatten(bb);
    grpc_byte_buffer_destroy(bb);
    c->req = protobuf_c_message_unpack(c->m->request, dbld_arena_allocator(c->arena),
                                       GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    if (!c->req)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "could not decode %s request for %s",
                               c->m->request->name, c->path);
    return 0;
}

static void run_unary(dbld_call *c)
{
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int code = dbld__code(c->m->unary(c, c->req, &resp, &st));
    st.msg[sizeof st.msg - 1] = '\0';
    if (code == DBLD_OK && !resp)
        resp = dbld_arena_msg(c->arena, c->m->response);
    else if (code == DBLD_OK &&
             (resp->descriptor != c->m->response || !protobuf_c_message_check(resp)))
        code = dbld_status_set(&st, DBLD_INTERNAL, "handler returned an invalid %s response",
                               c->m->response->name);
    log_result(c, code, st.msg);
    finish(c, code, code == DBLD_OK ? "" : st.msg, code == DBLD_OK ? resp : NULL);
}

static void *stream_main(void *arg)
{
    dbld_call *c = arg;
    dbld_server *srv = c->srv;
    stream_thread *t = c->thread;
    dbld_status st;
    dbld_status_clear(&st);
    int code = dbld__code(c->m->stream(c, c->req, &st));
    st.msg[sizeof st.msg - 1] = '\0';
    log_result(c, code, st.msg);
    finish(c, code, code == DBLD_OK ? "" : st.msg, NULL);
    call_end(c);
    pthread_mutex_lock(&srv->mu);
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
        free(t);
    }
}

static void start_stream(dbld_call *c)
{
    dbld_server *srv = c->srv;
    stream_thread *t = dbld_xcalloc(1, sizeof *t);
    c->thread = t;
    pthread_mutex_lock(&srv->mu);
    reap_streams(srv);
    if (pthread_create(&t->tid, NULL, stream_main, c) != 0) {
        pthread_mutex_unlock(&srv->mu);
        free(t);
        dbld_log(DBLD_LOG_WARN, "could not start stream thread", "method", c->path,
                 (const char *)NULL);
        finish(c, DBLD_UNAVAILABLE, "could not start stream thread", NULL);
        call_end(c);
        return;
    }
    t->next = srv->streams;
    srv->streams = t;
    pthread_mutex_unlock(&srv->mu);
}

static void dispatch(dbld_call *c)
{
    atomic_fetch_add(&c->srv->inflight, 1);
    c->arena = dbld_arena_create();
    c->path = dbld_arena_strndup(c->arena, (const char *)GRPC_SLICE_START_PTR(c->details.method),
                                 GRPC_SLICE_LENGTH(c->details.method));
    c->deadline = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    start_close_op(c);
    find_method(c);
    dbld_status st;
    dbld_status_clear(&st);
    if (!c->m)
        dbld_status_set(&st, DBLD_UNIMPLEMENTED, "unknown method %s", c->path);
    else
        recv_request(c, &st);
    if (st.code != DBLD_OK) {
        log_result(c, st.code, st.msg);
        finish(c, st.code, st.msg, NULL);
        call_end(c);
    } else if (c->m->unary) {
        run_unary(c);
        call_end(c);
    } else {
        start_stream(c);
    }
}

/* ---- workers ---- */

/* Ask gRPC for the next call on this worker's queue; 0 or -1. */
static int request_call(worker *w)
{
    dbld_call *c = call_new(w->srv);
    if (grpc_server_request_call(w->srv->server, &c->call, &c->details, &c->md, c->cq, w->cq, c) !=
        GRPC_CALL_OK) {
        call_free(c);
        return -1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int requesting = request_call(w) == 0;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
        if (ev.type != GRPC_OP_COMPLETE) continue;
        dbld_call *c = ev.tag;
        if (!ev.success) { /* the server is shutting down: stop asking */
            call_free(c);
            requesting = 0;
            continue;
        }
        dispatch(c);
        if (requesting) requesting = request_call(w) == 0;
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

/* The client went away, the deadline passed or the grace period is over. */
static int call_gone(dbld_call *call)
{
    if (call->cancelled) return 1;
    if (atomic_load(&call->srv->hard_cancel) || dbld_call_remaining_ms(call) <= 0) {
        call->cancelled = 1;
        return 1;
    }
    poll_close(call, 0);
    return call->cancelled;
}

int dbld_call_cancelled(dbld_call *call)
{
    if (!call) return 1;
    /* Streams end as soon as shutdown begins; unary calls get the grace period. */
    if (call->m->stream && atomic_load(&call->srv->draining)) return 1;
    return call_gone(call);
}

int dbld_call_wait_cancel(dbld_call *call, int64_t timeout_ms)
{
    int64_t start = dbld_mono_ms();
    for (;;) {
        if (dbld_call_cancelled(call)) return 1;
        int64_t left = timeout_ms - (dbld_mono_ms() - start); /* no overflow for INT64_MAX */
        if (left <= 0) return 0;
        poll_close(call, left < CANCEL_POLL_MS ? left : CANCEL_POLL_MS);
    }
}

int dbld_call_send(dbld_call *call, const ProtobufCMessage *msg, dbld_status *st)
{
    if (!call || !call->m || !call->m->stream)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "dbld_call_send outside a streaming call");
    if (!msg || msg->descriptor != call->m->response || !protobuf_c_message_check(msg))
        return dbld_status_set(st, DBLD_INTERNAL, "invalid %s message for %s",
                               call->m->response->name, call->path);
    if (call->cancelled || atomic_load(&call->srv->hard_cancel))
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!call->sent_initial) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    grpc_byte_buffer *bb = dbld__pack(msg);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
    int ok = run_batch(call, ops, n);
    call->sent_initial = 1;
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        call->cancelled = 1;
        return dbld_status_set(st, DBLD_CANCELLED, "call cancelled");
    }
    return 0;
}

/* ---- server lifecycle ---- */

int dbld_server_create(const dbld_server_opts *opts, dbld_server **out, dbld_status *st)
{
    if (!opts || !out) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "server options missing");
    dbld_server *srv = dbld_xcalloc(1, sizeof *srv);
    srv->name = dbld_xstrdup(opts->service_name ? opts->service_name : "databuild");
    srv->listen = dbld_xstrdup(opts->listen && *opts->listen ? opts->listen : "127.0.0.1:0");
    srv->n_workers = opts->workers > 0 ? opts->workers : DEFAULT_WORKERS;
    if (srv->n_workers > MAX_WORKERS) srv->n_workers = MAX_WORKERS;
    srv->max_msg = opts->max_message_bytes > 0 ? opts->max_message_bytes : DEFAULT_MAX_MSG;
    srv->grace_ms = opts->shutdown_grace_ms > 0 ? opts->shutdown_grace_ms : DEFAULT_GRACE_MS;
    srv->state = SRV_NEW;
    pthread_mutex_init(&srv->shutdown_mu, NULL);
    pthread_mutex_init(&srv->mu, NULL);
    dbld__health_init(&srv->health);
    dbld__health_set(&srv->health, "", HEALTH_NOT_SERVING);
    grpc_init();
    *out = srv;
    dbld_status_clear(st);
    return 0;
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

/* Create the grpc_server and its queues and bind; 0 or a code. */
static int bind_server(dbld_server *srv, dbld_status *st)
{
    grpc_arg args[] = {
        dbld__int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, srv->max_msg),
        dbld__int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, srv->max_msg),
        dbld__int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0), /* a taken port must fail to bind */
    };
    grpc_channel_args ca = {sizeof args / sizeof args[0], args};
    srv->server = grpc_server_create(&ca, NULL);
    srv->workers = dbld_xcalloc((size_t)srv->n_workers, sizeof *srv->workers);
    for (int i = 0; i < srv->n_workers; i++) {
        srv->workers[i].srv = srv;
        srv->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, srv->workers[i].cq, NULL);
    }
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    srv->port = grpc_server_add_http2_port(srv->server, srv->listen, creds);
    grpc_server_credentials_release(creds);
    if (srv->port > 0) return 0;
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    for (int i = 0; i < srv->n_workers; i++)
        destroy_next_cq(srv->workers[i].cq);
    free(srv->workers);
    srv->workers = NULL;
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

int dbld_server_start(dbld_server *srv, dbld_status *st)
{
    if (!srv) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no server");
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
    for (int i = 0; i < srv->n_workers && !rc; i++) {
        rc = pthread_create(&srv->workers[i].tid, NULL, worker_main, &srv->workers[i]);
        srv->workers[i].started = rc == 0;
    }
    if (rc) {
        do_shutdown(srv);
        pthread_mutex_unlock(&srv->shutdown_mu);
        return dbld_status_set(st, DBLD_UNAVAILABLE, "could not start worker threads");
    }
    pthread_mutex_unlock(&srv->shutdown_mu);
    log_listening(srv);
    dbld_status_clear(st);
    return 0;
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
        int64_t left = end - dbld_mono_ms();
        ev = grpc_completion_queue_pluck(cq, TAG_SHUTDOWN, dbld__deadline(left < 20 ? left : 20),
                                         NULL);
        if (ev.type != GRPC_QUEUE_TIMEOUT || left <= 20)
            break;
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
    stream_thread *list = srv->streams;
    srv->streams = NULL;
    pthread_mutex_unlock(&srv->mu);
    while (list) {
        stream_thread *next = list->next;
        pthread_join(list->tid, NULL);
        free(list);
        list = next;
    }
}

/* Caller holds shutdown_mu and the server is running. */
static void do_shutdown(dbld_server *srv)
{
    dbld__health_set_all(&srv->health, HEALTH_NOT_SERVING);
    atomic_store(&srv->draining, 1);
    dbld__health_close(&srv->health);
    drain_calls(srv);
    for (int i = 0; i < srv->n_workers; i++)
        grpc_completion_queue_shutdown(srv->workers[i].cq);
    for (int i = 0; i < srv->n_workers; i++)
        if (srv->workers[i].started) pthread_join(srv->workers[i].tid, NULL);
    join_streams(srv);
    grpc_server_destroy(srv->server);
    srv->server = NULL;
    for (int i = 0; i < srv->n_workers; i++)
        destroy_next_cq(srv->workers[i].cq);
    free(srv->workers);
    srv->workers = NULL;
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
    dbld__health_free(&srv->health);
    pthread_mutex_destroy(&srv->mu);
    pthread_mutex_destroy(&srv->shutdown_mu);
    free(srv->regs);
    free(srv->name);
    free(srv->listen);
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
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int dbld_signals_wait(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    int sig = 0;
    while (sigwait(&set, &sig) != 0)
        ;
    return sig;
}
