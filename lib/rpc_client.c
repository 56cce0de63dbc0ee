/* rpc_client.c - dbld_client: unary and server-streaming calls on gRPC C core.
 *
 * One grpc_channel per target string, created on first use and cached in a
 * global list under a mutex until dbld_client_shutdown_all(); the first
 * channel takes a grpc_init() reference and shutdown_all gives it back.
 * Channels reconnect fast (100 ms initial backoff, 2 s max) because peers are
 * cluster services that restart.
 *
 * A unary call is one batch on a completion queue of its own (PLUCK), so any
 * number of threads can call concurrently without sharing queue state.
 * Idempotent calls retry UNAVAILABLE with jittered exponential backoff until
 * the overall deadline. A stream is a call plus its queue: the send half goes
 * out in the first batch, then each dbld_stream_next() issues one RECV_MESSAGE
 * which stays pending across a wait_ms expiry, and the end of the stream is
 * collected with RECV_STATUS_ON_CLIENT.
 *
 * Also home of the small byte-buffer/status helpers shared with the server.
 */
#include "rpc_internal.h"

#include "dbld/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <dlfcn.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TIMEOUT_MS 30000
#define MAX_MSG (64 * 1024 * 1024)
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 2000

#define TAG_CALL ((void *)1)
#define TAG_OPEN ((void *)2)
#define TAG_RECV ((void *)3)
#define TAG_STATUS ((void *)4)

/* ---- shared helpers ---- */

grpc_byte_buffer *dbld__pack(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

/* Debian's abseil (20220623, which gRPC's mutexes use) is built with its
 * mutex deadlock detection on: every lock of a gRPC mutex updates a global
 * lock-order graph (absl GraphCycles), 2-4 % of a service's CPU under load
 * in perf. Switch it to kIgnore (0) before gRPC starts, as a release build
 * of abseil has it, through the C++ symbol when it is there (looked up, so
 * an abseil without it changes nothing). */
#define ABSL_SET_DEADLOCK_MODE                                                                     \
    "_ZN4absl7debian329SetMutexDeadlockDetectionModeENS0_15OnDeadlockCycleE"
static void absl_deadlock_detection_off(void)
{
    void *sym = dlsym(RTLD_DEFAULT, ABSL_SET_DEADLOCK_MODE);
    if (!sym) return;
    void (*set_mode)(int);
    memcpy(&set_mode, &sym, sizeof set_mode);
    set_mode(0); /* absl::OnDeadlockCycle::kIgnore */
}

void dbld__grpc_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, absl_deadlock_detection_off);
    grpc_init();
}

grpc_slice dbld__flatten(grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb)) return grpc_empty_slice();
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    return s;
}

int dbld__code(int code)
{
    return code >= DBLD_OK && code <= DBLD_UNAUTHENTICATED ? code : DBLD_UNKNOWN;
}

gpr_timespec dbld__deadline(int64_t ms)
{
    if (ms < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

grpc_arg dbld__int_arg(const char *key, int value)
{
    grpc_arg a;
    memset(&a, 0, sizeof a);
    a.type = GRPC_ARG_INTEGER;
    a.key = (char *)key;
    a.value.integer = value;
    return a;
}

static int64_t ms_until(gpr_timespec deadline)
{
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    return (deadline.tv_sec - now.tv_sec) * 1000 + (deadline.tv_nsec - now.tv_nsec) / 1000000;
}

static void destroy_pluck_cq(grpc_completion_queue *cq)
{
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    grpc_completion_queue_destroy(cq);
}

static grpc_event pluck(grpc_completion_queue *cq, void *tag, gpr_timespec deadline)
{
    return grpc_completion_queue_pluck(cq, tag, deadline, NULL);
}

/* ---- channels ---- */

struct dbld_client {
    char *target;
    grpc_channel *ch;
    struct dbld_client *next;
};

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static dbld_client *g_clients;

/* The process's client security (dbld_client_set_security); read-only once
 * the first channel exists. */
static struct {
    char *ca, *cert, *key; /* PEM text; ca NULL: plaintext */
    char *server_name;
    grpc_slice authz; /* "Bearer <token>"; empty: none */
    int has_token;
    grpc_metadata md; /* authorization: authz */
} g_sec;

int dbld_client_set_security(const dbld_client_security *cs, dbld_status *st)
{
    char *ca = NULL, *cert = NULL, *key = NULL;
    if (cs->tls.ca_file && dbld_tls_read_pem("tls.ca_file", cs->tls.ca_file, &ca, st))
        return st->code;
    if (cs->tls.cert_file && (dbld_tls_read_pem("tls.cert_file", cs->tls.cert_file, &cert, st) ||
                              dbld_tls_read_pem("tls.key_file", cs->tls.key_file, &key, st))) {
        free(ca);
        free(cert);
        return st->code;
    }
    pthread_mutex_lock(&g_mu);
    free(g_sec.ca);
    free(g_sec.cert);
    free(g_sec.key);
    free(g_sec.server_name);
    if (g_sec.has_token) grpc_slice_unref(g_sec.authz);
    g_sec.ca = ca;
    g_sec.cert = cert;
    g_sec.key = key;
    g_sec.server_name = cs->server_name ? dbld_xstrdup(cs->server_name) : NULL;
    g_sec.has_token = cs->token && *cs->token;
    if (g_sec.has_token) {
        char *v = dbld_xcalloc(1, strlen(cs->token) + 8);
        sprintf(v, "Bearer %s", cs->token);
        g_sec.authz = grpc_slice_from_copied_string(v);
        g_sec.md.key = grpc_slice_from_static_string("authorization");
        g_sec.md.value = g_sec.authz;
        memset(v, 0, strlen(v));
        free(v);
    }
    pthread_mutex_unlock(&g_mu);
    return 0;
}

/* SEND_INITIAL_METADATA with the token, if there is one. */
void dbld__client_md(grpc_op *op)
{
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    if (!g_sec.has_token) return;
    op->data.send_initial_metadata.count = 1;
    op->data.send_initial_metadata.metadata = &g_sec.md;
}

static grpc_channel_credentials *channel_credentials(void)
{
    if (!g_sec.ca) return grpc_insecure_credentials_create();
    grpc_ssl_pem_key_cert_pair pair = {g_sec.key, g_sec.cert};
    return grpc_ssl_credentials_create(g_sec.ca, g_sec.cert ? &pair : NULL, NULL, NULL);
}

static grpc_channel *channel_new(const char *target)
{
    grpc_arg args[] = {
        dbld__int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, MAX_MSG),
        dbld__int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, MAX_MSG),
        dbld__int_arg(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100),
        dbld__int_arg(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000), /* the connect timeout floor */
        dbld__int_arg(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, BACKOFF_MAX_MS),
        /* no bandwidth-delay probing: small messages on a LAN; every probe is
         * a PING each way (a write and a wake-up on both ends) */
        dbld__int_arg(GRPC_ARG_HTTP2_BDP_PROBE, 0),
        /* a vanished server fails the open calls (rpc_internal.h) */
        dbld__int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, DBLD_KEEPALIVE_TIME_MS),
        dbld__int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, DBLD_KEEPALIVE_TIMEOUT_MS),
        dbld__int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0),
        dbld__int_arg(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0),
        {.type = GRPC_ARG_STRING,
         .key = GRPC_SSL_TARGET_NAME_OVERRIDE_ARG,
         .value.string = g_sec.server_name},
    };
    grpc_channel_args ca = {sizeof args / sizeof args[0] - (g_sec.server_name ? 0 : 1), args};
    grpc_channel_credentials *creds = channel_credentials();
    grpc_channel *ch = grpc_channel_create(target, creds, &ca);
    grpc_channel_credentials_release(creds);
    return ch;
}

dbld_client *dbld_client_get(const char *target)
{
    target = target ? target : "";
    pthread_mutex_lock(&g_mu);
    dbld_client *c = g_clients;
    while (c && strcmp(c->target, target) != 0)
        c = c->next;
    if (!c) {
        if (!g_clients) dbld__grpc_init();
        c = dbld_xcalloc(1, sizeof *c);
        c->target = dbld_xstrdup(target);
        c->ch = channel_new(target);
        c->next = g_clients;
        g_clients = c;
    }
    pthread_mutex_unlock(&g_mu);
    return c;
}

void dbld_client_shutdown_all(void)
{
    pthread_mutex_lock(&g_mu);
    dbld_client *list = g_clients;
    g_clients = NULL;
    pthread_mutex_unlock(&g_mu);
    if (!list) return;
    while (list) {
        dbld_client *next = list->next;
        grpc_channel_destroy(list->ch);
        free(list->target);
        free(list);
        list = next;
    }
    grpc_shutdown();
}

/* ---- status ---- */

/* Fill st from a received status; returns the (validated) code. */
static int set_status(dbld_status *st, grpc_status_code status, grpc_slice details,
                      const dbld_client *c, const char *path)
{
    int code = dbld__code((int)status);
    if (code == DBLD_OK) {
        dbld_status_clear(st);
    } else if (GRPC_SLICE_LENGTH(details) > 0) {
        dbld_status_set(st, code, "%.*s", (int)GRPC_SLICE_LENGTH(details),
                        (const char *)GRPC_SLICE_START_PTR(details));
    } else {
        dbld_status_set(st, code, "%s from %s%s", dbld_code_name(code), c->target, path);
    }
    return code;
}

/* ---- unary ---- */

void dbld__unary_ops(dbld__unary *u, grpc_op ops[6])
{
    memset(ops, 0, 6 * sizeof *ops);
    dbld__client_md(&ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = u->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &u->init_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &u->recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &u->trail_md;
    ops[5].data.recv_status_on_client.status = &u->status;
    ops[5].data.recv_status_on_client.status_details = &u->details;
    ops[5].data.recv_status_on_client.error_string = &u->error;
}

static grpc_call *call_create(dbld_client *c, const char *path, grpc_completion_queue *cq,
                              gpr_timespec deadline)
{
    grpc_slice method = grpc_slice_from_copied_string(path);
    grpc_call *call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method,
                                               NULL, deadline, NULL);
    grpc_slice_unref(method);
    return call;
}

/* One attempt. On OK *reply holds the response bytes (caller unrefs). */
static int unary_once(dbld_client *c, const char *path, grpc_slice payload, gpr_timespec deadline,
                      grpc_slice *reply, dbld_status *st)
{
    dbld__unary u;
    memset(&u, 0, sizeof u);
    grpc_metadata_array_init(&u.init_md);
    grpc_metadata_array_init(&u.trail_md);
    u.details = grpc_empty_slice();
    u.send = grpc_raw_byte_buffer_create(&payload, 1);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call *call = call_create(c, path, cq, deadline);
    grpc_op ops[6];
    dbld__unary_ops(&u, ops);
    dbld__rpc_mx *mx = dbld__rpc_mx_get(0, path, "unary");
    int64_t t0 = dbld__now_ns();
    dbld__rpc_mx_started(mx);
    dbld__rpc_mx_msg(mx, 1);
    int code;
    if (grpc_call_start_batch(call, ops, 6, TAG_CALL, NULL) == GRPC_CALL_OK) {
        pluck(cq, TAG_CALL, gpr_inf_future(GPR_CLOCK_MONOTONIC));
        code = set_status(st, u.status, u.details, c, path);
    } else {
        code = dbld_status_set(st, DBLD_INTERNAL, "could not start call %s", path);
    }
    if (u.recv) dbld__rpc_mx_msg(mx, 0);
    dbld__rpc_mx_handled(mx, code, t0);
    if (code == DBLD_OK) *reply = u.recv ? dbld__flatten(u.recv) : grpc_empty_slice();
    if (u.recv) grpc_byte_buffer_destroy(u.recv);
    grpc_byte_buffer_destroy(u.send);
    grpc_metadata_array_destroy(&u.init_md);
    grpc_metadata_array_destroy(&u.trail_md);
    grpc_slice_unref(u.details);
    gpr_free((void *)u.error);
    grpc_call_unref(call);
    destroy_pluck_cq(cq);
    return code;
}

static int64_t jitter(int64_t ms)
{
    return ms * 4 / 5 + (int64_t)(random() % (ms * 2 / 5 + 1)); /* +-20% */
}

/* Attempts until success, a non-retryable error or the deadline. */
static int unary_bytes(dbld_client *c, const char *path, grpc_slice payload, int64_t timeout_ms,
                       int flags, grpc_slice *reply, dbld_status *st)
{
    gpr_timespec deadline = dbld__deadline(timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS);
    int64_t backoff = BACKOFF_FIRST_MS;
    for (;;) {
        int code = unary_once(c, path, payload, deadline, reply, st);
        if (code != DBLD_UNAVAILABLE || !(flags & DBLD_CALL_IDEMPOTENT)) return code;
        int64_t left = ms_until(deadline);
        int64_t wait = jitter(backoff);
        if (left <= wait) return code;
        dbld_sleep_ms(wait);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

static int bad_args(dbld_status *st)
{
    return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "invalid call arguments");
}

int dbld_client_unary(dbld_client *c, const char *path, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCAllocator *alloc,
                      ProtobufCMessage **resp, int64_t timeout_ms, int flags, dbld_status *st)
{
    if (resp) *resp = NULL;
    if (!c || !path || !req || !resp_desc || !protobuf_c_message_check(req)) return bad_args(st);
    size_t n = protobuf_c_message_get_packed_size(req);
    grpc_slice payload = grpc_slice_malloc(n);
    protobuf_c_message_pack(req, GRPC_SLICE_START_PTR(payload));
    grpc_slice reply;
    int code = unary_bytes(c, path, payload, timeout_ms, flags, &reply, st);
    grpc_slice_unref(payload);
    if (code) return code;
    ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc, alloc, GRPC_SLICE_LENGTH(reply),
                                                    GRPC_SLICE_START_PTR(reply));
    grpc_slice_unref(reply);
    if (!m) return dbld_status_set(st, DBLD_INTERNAL, "could not decode response of %s", path);
    if (resp)
        *resp = m;
    else
        protobuf_c_message_free_unpacked(m, alloc);
    return 0;
}

int dbld_client_unary_raw(dbld_client *c, const char *path, const void *req, size_t req_len,
                          void **out, size_t *out_len, int64_t timeout_ms, dbld_status *st)
{
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!c || !path || (!req && req_len) || !out || !out_len) return bad_args(st);
    grpc_slice payload = grpc_slice_from_copied_buffer(req, req_len);
    grpc_slice reply;
    int code = unary_bytes(c, path, payload, timeout_ms, 0, &reply, st);
    grpc_slice_unref(payload);
    if (code) return code;
    *out_len = GRPC_SLICE_LENGTH(reply);
    *out = dbld_xmalloc(*out_len);
    memcpy(*out, GRPC_SLICE_START_PTR(reply), *out_len);
    grpc_slice_unref(reply);
    return 0;
}

/* ---- streams ---- */

struct dbld_stream {
    dbld_client *c;
    char *path;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error;
    int open_pending, recv_pending, done;
    dbld_status final; /* valid once done */
    dbld__rpc_mx *mx;
    int64_t start_ns;
};

static int stream_start(dbld_stream *s)
{
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    dbld__client_md(&ops[0]);
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = s->send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
    s->open_pending = grpc_call_start_batch(s->call, ops, 4, TAG_OPEN, NULL) == GRPC_CALL_OK;
    return s->open_pending ? 0 : -1;
}

int dbld_client_stream_open(dbld_client *c, const char *path, const ProtobufCMessage *req,
                            int64_t timeout_ms, dbld_stream **out, dbld_status *st)
{
    if (out) *out = NULL;
    if (!c || !path || !req || !out || !protobuf_c_message_check(req)) return bad_args(st);
    dbld_stream *s = dbld_xcalloc(1, sizeof *s);
    s->c = c;
    s->path = dbld_xstrdup(path);
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trail_md);
    s->details = grpc_empty_slice();
    s->send = dbld__pack(req);
    s->cq = grpc_completion_queue_create_for_pluck(NULL);
    s->call = call_create(c, path, s->cq, dbld__deadline(timeout_ms > 0 ? timeout_ms : -1));
    s->mx = dbld__rpc_mx_get(0, path, "server_stream");
    s->start_ns = dbld__now_ns();
    dbld__rpc_mx_started(s->mx);
    dbld__rpc_mx_msg(s->mx, 1);
    if (stream_start(s) != 0) {
        dbld_stream_close(s);
        return dbld_status_set(st, DBLD_INTERNAL, "could not start call %s", path);
    }
    *out = s;
    dbld_status_clear(st);
    return 0;
}

static int report_final(dbld_stream *s, dbld_status *st)
{
    if (st) *st = s->final;
    return s->final.code;
}

/* The message stream ended: collect the status. */
static int stream_finish(dbld_stream *s, dbld_status *st)
{
    if (s->open_pending) pluck(s->cq, TAG_OPEN, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    s->open_pending = 0;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    op.data.recv_status_on_client.trailing_metadata = &s->trail_md;
    op.data.recv_status_on_client.status = &s->status;
    op.data.recv_status_on_client.status_details = &s->details;
    op.data.recv_status_on_client.error_string = &s->error;
    if (grpc_call_start_batch(s->call, &op, 1, TAG_STATUS, NULL) == GRPC_CALL_OK) {
        pluck(s->cq, TAG_STATUS, gpr_inf_future(GPR_CLOCK_MONOTONIC));
        set_status(&s->final, s->status, s->details, s->c, s->path);
    } else {
        dbld_status_set(&s->final, DBLD_INTERNAL, "could not receive status of %s", s->path);
    }
    s->done = 1;
    dbld__rpc_mx_handled(s->mx, s->final.code, s->start_ns);
    return report_final(s, st);
}

int dbld_stream_next(dbld_stream *s, const ProtobufCMessageDescriptor *desc,
                     ProtobufCAllocator *alloc, ProtobufCMessage **msg, int64_t wait_ms,
                     dbld_status *st)
{
    if (msg) *msg = NULL;
    if (!s || !desc || !msg) return bad_args(st);
    if (s->done) return report_final(s, st);
    if (!s->recv_pending) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_MESSAGE;
        op.data.recv_message.recv_message = &s->recv;
        if (grpc_call_start_batch(s->call, &op, 1, TAG_RECV, NULL) != GRPC_CALL_OK)
            return stream_finish(s, st);
        s->recv_pending = 1;
    }
    grpc_event ev = pluck(s->cq, TAG_RECV, dbld__deadline(wait_ms > 0 ? wait_ms : -1));
    if (ev.type == GRPC_QUEUE_TIMEOUT)
        return dbld_status_set(st, DBLD_DEADLINE_EXCEEDED, "no message within %lld ms",
                               (long long)wait_ms);
    s->recv_pending = 0;
    if (!s->recv) return stream_finish(s, st);
    dbld__rpc_mx_msg(s->mx, 0);
    grpc_slice bytes = dbld__flatten(s->recv);
    grpc_byte_buffer_destroy(s->recv);
    s->recv = NULL;
    *msg = protobuf_c_message_unpack(desc, alloc, GRPC_SLICE_LENGTH(bytes),
                                     GRPC_SLICE_START_PTR(bytes));
    grpc_slice_unref(bytes);
    if (!*msg) return dbld_status_set(st, DBLD_INTERNAL, "could not decode message of %s", s->path);
    dbld_status_clear(st);
    return 0;
}

int dbld_stream_done(const dbld_stream *s)
{
    return s && s->done;
}

void dbld_stream_close(dbld_stream *s)
{
    if (!s) return;
    if (!s->done) grpc_call_cancel(s->call, NULL);
    if (s->open_pending) pluck(s->cq, TAG_OPEN, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    if (s->recv_pending) pluck(s->cq, TAG_RECV, gpr_inf_future(GPR_CLOCK_MONOTONIC));
    if (s->recv) grpc_byte_buffer_destroy(s->recv);
    grpc_call_unref(s->call);
    destroy_pluck_cq(s->cq);
    grpc_byte_buffer_destroy(s->send);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trail_md);
    grpc_slice_unref(s->details);
    gpr_free((void *)s->error);
    free(s->path);
    free(s);
}

/* ---- health ---- */

int dbld_health_check(dbld_client *c, const char *service, int *serving, int64_t timeout_ms,
                      dbld_status *st)
{
    if (serving) *serving = 0;
    if (!c || !serving) return bad_args(st);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)(service ? service : "");
    ProtobufCMessage *resp = NULL;
    int rc = dbld_client_unary(c, "/grpc.health.v1.Health/Check", &req.base,
                               &grpc__health__v1__health_check_response__descriptor, NULL, &resp,
                               timeout_ms, 0, st);
    if (rc) return rc;
    const Grpc__Health__V1__HealthCheckResponse *r = (const void *)resp;
    *serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    protobuf_c_message_free_unpacked(resp, NULL);
    return 0;
}
