/* rpc.h - the RPC runtime: gRPC C core servers and clients for protobuf-c.
 *
 * A service is a `const` table of methods (full gRPC path, request/response
 * descriptors, handler). The runtime owns everything gRPC: completion queues,
 * byte buffers, metadata, status. Handlers see decoded protobuf-c messages,
 * allocate from the call's arena and return 0 or a dbld status code; the code
 * and message go back to the client as the gRPC status. Unknown methods get
 * UNIMPLEMENTED; request bytes that do not decode get INVALID_ARGUMENT.
 *
 * Threading: a few poller threads drive every call asynchronously on one
 * completion queue (accept, receive, send status); they never block. Unary
 * handlers run on a pool of `workers` threads, except methods flagged
 * DBLD_METHOD_NONBLOCKING, which run inline on the poller (no hand-off). A
 * handler may also answer later: it returns DBLD_ASYNC and some other thread
 * calls dbld_call_complete() exactly once, so a call that waits (for a group
 * commit, say) holds no thread. A server-streaming call is handed to a thread
 * of its own, so long-lived streams (Subscribe, Watch) never starve unary
 * calls; at most max_streams of them run at once (more are refused with
 * RESOURCE_EXHAUSTED), so they cannot take unbounded threads either; a streaming handler whose
 * clients stream too (bidirectional) reads their further messages with dbld_call_recv(). Every
 * server also serves grpc.health.v1.Health and gRPC server reflection (v1 and v1alpha, from the
 * descriptor set of proto/ embedded at build time: reflection.c).
 */
#ifndef DBLD_RPC_H
#define DBLD_RPC_H

#include "dbld/arena.h"
#include "dbld/status.h"
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

typedef struct dbld_call dbld_call;
typedef struct dbld_server dbld_server;

/* Unary handler: fill *resp (allocate it from dbld_call_arena(); leaving it
 * NULL sends an empty response message). Return 0 or a code with st set. */
typedef int (*dbld_unary_fn)(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                             dbld_status *st);
/* Server-streaming handler: send with dbld_call_send() until done; the return
 * value is the final status. */
typedef int (*dbld_stream_fn)(dbld_call *call, const ProtobufCMessage *req, dbld_status *st);

/* A unary handler returns this after arranging for dbld_call_complete() to be
 * called exactly once (from any thread). Until then the call stays open and
 * its arena stays valid; the handler must not touch the call after handing
 * it off. */
#define DBLD_ASYNC 1000

/* dbld_method.flags */
#define DBLD_METHOD_NONBLOCKING 0x1 /* handler never blocks: run it on the poller thread */
#define DBLD_METHOD_BIDI 0x2        /* streaming handler whose client streams too (metrics type) */

typedef struct dbld_method {
    const char *path; /* "/databuild.v1.EventLog/Append" */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    dbld_unary_fn unary; /* exactly one of unary/stream is set */
    dbld_stream_fn stream;
    int flags; /* DBLD_METHOD_* */
} dbld_method;

typedef struct dbld_service {
    const char *name; /* full service name, "databuild.v1.EventLog" (used for health) */
    const dbld_method *methods;
    size_t n_methods;
} dbld_service;

/* ---- inside a handler ----
 * These take the handler's own call and are meant for the thread running
 * the handler (a call is not shared between threads). */

/* Borrowed; freed when the call ends. */
dbld_arena *dbld_call_arena(dbld_call *call);
/* The user pointer given to dbld_server_add() for this call's service. */
void *dbld_call_user(dbld_call *call);
const char *dbld_call_method(dbld_call *call);
/* Milliseconds until the client's deadline (INT64_MAX when none; <= 0 when passed). */
int64_t dbld_call_remaining_ms(dbld_call *call);
/* 1 once the client cancelled, the deadline passed or the server is shutting
 * down. Shutdown counts for streaming calls as soon as it begins; unary calls
 * are given the grace period and only count as cancelled once it is over. */
int dbld_call_cancelled(dbld_call *call);
/* Why the call should stop, as a code: DEADLINE_EXCEEDED once its deadline
 * passed, CANCELLED once it was cancelled otherwise (dbld_call_cancelled()),
 * else 0. Takes a void * so it can be a dbld_db_interrupt_fn (db.h) with the
 * call as its argument: a database wait then ends when the call does. */
int dbld_call_interrupt(void *call);
/* Stream one response message (streaming handlers only). Blocks until the
 * message is handed to the transport. Returns 0, or CANCELLED when the client
 * has gone away (the handler should then return). */
int dbld_call_send(dbld_call *call, const ProtobufCMessage *msg, dbld_status *st);
/* dbld_call_send() of a message already encoded (len bytes of the method's
 * response type, e.g. spliced from stored encodings: the caller vouches for
 * them; nothing is decoded). */
int dbld_call_send_encoded(dbld_call *call, const void *buf, size_t len, dbld_status *st);
/* The stream's last message, sent in one batch with the OK status once the
 * handler returns 0 (not sent if it returns an error): saves a round trip
 * through the transport per call. msg must live until the call ends
 * (allocate it in the call's arena). Returns 0, or INTERNAL for a message of
 * the wrong type. */
int dbld_call_send_last(dbld_call *call, const ProtobufCMessage *msg, dbld_status *st);
/* Streaming handlers of a bidirectional method (the client streams too; the
 * handler was given the first request): wait for the next request message,
 * unpacked into the call's arena. Returns 0 with *msg set, 0 with *msg NULL
 * once the client has closed its side, INVALID_ARGUMENT for undecodable
 * bytes, CANCELLED when the call is gone. */
int dbld_call_recv(dbld_call *call, ProtobufCMessage **msg, dbld_status *st);
/* Block up to timeout_ms or until the call is cancelled; returns 1 if cancelled.
 * Useful for streaming handlers that poll. */
int dbld_call_wait_cancel(dbld_call *call, int64_t timeout_ms);
/* Answer a call whose handler returned DBLD_ASYNC: code 0 sends resp (from
 * the call's arena; NULL sends an empty message), any other code sends the
 * status with msg. Callable from any thread, exactly once per call. */
void dbld_call_complete(dbld_call *call, int code, const char *msg, ProtobufCMessage *resp);
/* An answer known before the call may be answered (it waits for something
 * else first): pack resp now (checked as a handler's response is) and keep
 * only its bytes in the call, so that the message's memory (e.g. a scratch
 * arena) can go at once - under many waiting calls the bytes are a third of
 * the message. Returns 0, or INTERNAL for a message of the wrong type.
 * dbld_call_complete_held() sends them (code 0); dbld_call_complete() with
 * another response or an error drops them, and so does the end of the call. */
int dbld_call_hold_answer(dbld_call *call, const ProtobufCMessage *resp, dbld_status *st);
void dbld_call_complete_held(dbld_call *call);
/* A response packed once for many calls (e.g. a page every client asks for):
 * calls holding it share its bytes (dbld_call_hold_packed(), then answered
 * with dbld_call_complete_held(), or by a handler returning 0 with no
 * response), which stay until the last of them is sent, whenever the packed
 * response itself is freed. dbld_packed_new() returns NULL for a message
 * that fails protobuf_c_message_check(). */
typedef struct dbld_packed dbld_packed;
dbld_packed *dbld_packed_new(const ProtobufCMessage *msg);
void dbld_packed_free(dbld_packed *p);
int dbld_call_hold_packed(dbld_call *call, const dbld_packed *p, dbld_status *st);
/* For a call whose DBLD_METHOD_NONBLOCKING handler returned DBLD_ASYNC and
 * found it cannot answer without blocking: run fn on a worker as the call's
 * handler (queued like a blocking method's call: over max_queue the call is
 * answered RESOURCE_EXHAUSTED, one whose deadline passed in the queue
 * DEADLINE_EXCEEDED). Callable from any thread, once, instead of
 * dbld_call_complete(). */
void dbld_call_to_workers(dbld_call *call, dbld_unary_fn fn);

/* ---- server ---- */

/* ---- TLS (rpc_tls.c) ---- */

#define DBLD_TLS_CLIENT_NONE 0    /* servers: do not ask for a client certificate */
#define DBLD_TLS_CLIENT_REQUEST 1 /* ask, verify against ca_file when one is sent */
#define DBLD_TLS_CLIENT_REQUIRE 2 /* mTLS: refuse a client without a certificate from ca_file */

typedef struct dbld_tls_opts {
    const char *cert_file; /* PEM certificate chain: a server's, or a client's for mTLS */
    const char *key_file;  /* PEM private key of cert_file */
    const char *ca_file;   /* PEM CA bundle: servers verify clients with it, clients servers */
    int client_auth;       /* servers: DBLD_TLS_CLIENT_* */
} dbld_tls_opts;

/* Read a PEM file whole into *out (malloc'd, NUL-terminated); an error names
 * what (e.g. "tls.cert_file") and the file. */
int dbld_tls_read_pem(const char *what, const char *path, char **out, dbld_status *st);
/* Check that every file t names can be read and holds PEM; server: a
 * certificate and key are required, and a CA for client_auth. */
int dbld_tls_check(const dbld_tls_opts *t, int server, dbld_status *st);

typedef struct dbld_server_opts {
    const char *service_name;     /* for logs, e.g. "eventlog" */
    const char *listen;           /* "127.0.0.1:0" picks a free port */
    int workers;                  /* threads running blocking unary handlers; default 4 */
    int pollers;                  /* threads driving the completion queue; default 2 */
    int max_queue;                /* unary calls waiting for a worker; default 1024. Over it a call
                                   * gets RESOURCE_EXHAUSTED; a call whose deadline passed or whose
                                   * client went away while it waited is answered without running */
    int max_message_bytes;        /* default 16 MiB */
    int shutdown_grace_ms;        /* default 5000 */
    int max_streams;              /* streaming calls open at once (each holds a thread); default
                                   256; a call over it gets RESOURCE_EXHAUSTED naming
                                   <service_name>.max_streams */
    const dbld_tls_opts *tls;     /* NULL or no cert_file: plaintext; copied */
    const struct dbld_auth *auth; /* NULL: no credentials needed; borrowed (outlives the server) */
    const char *metrics_listen;   /* serve GET /metrics here (dbld_metrics_serve); NULL: off */
    int max_concurrent_streams;   /* calls per connection (HTTP/2 MAX_CONCURRENT_STREAMS); more
                                   * wait in their client. 0: gRPC's default (no limit) */
    int malloc_arenas;            /* glibc malloc arenas of the process (M_ARENA_MAX); default 2.
                                   * 1: every thread reuses the memory any other freed (lower
                                   * RSS under bursts of calls, see rpc_server.c) */
} dbld_server_opts;

/* Caller frees with dbld_server_destroy(). */
int dbld_server_create(const dbld_server_opts *opts, dbld_server **out, dbld_status *st);
/* Register a service table before start. The table must outlive the server. */
int dbld_server_add(dbld_server *srv, const dbld_service *svc, void *user);
/* Bind and start the worker threads. Health starts NOT_SERVING for "" and
 * every registered service. */
int dbld_server_start(dbld_server *srv, dbld_status *st);
/* The bound TCP port (after start). */
int dbld_server_port(const dbld_server *srv);
/* Unary calls waiting for a worker now (at most max_queue). */
int dbld_server_queued(dbld_server *srv);
/* Set health for a service name ("" = the whole server). Wakes Watch streams. */
void dbld_server_set_health(dbld_server *srv, const char *service, int serving);
/* Set "" and every registered service at once. */
void dbld_server_set_health_all(dbld_server *srv, int serving);
/* Stop accepting, let in-flight calls finish for the grace period, then cancel
 * what is left and join all threads. Idempotent; blocks until done, so it must
 * not be called from a handler. Health goes NOT_SERVING first and Watch
 * streams get that update before they end (with UNAVAILABLE). */
void dbld_server_shutdown(dbld_server *srv);
void dbld_server_destroy(dbld_server *srv);
/* Read the TLS files again before the next handshake (SIGHUP): established
 * connections and calls keep their session; a file that fails to load is
 * logged and the old certificate stays. */
void dbld_server_reload_tls(dbld_server *srv);

/* Block SIGTERM/SIGINT/SIGPIPE in the calling thread; call first thing in
 * main(), before any thread starts, so every thread inherits the mask. */
void dbld_signals_block(void);
/* Wait for SIGTERM, SIGINT or SIGHUP (blocked by dbld_signals_block()); returns the signal. */
int dbld_signals_wait(void);
/* The same for a service's main(): a SIGHUP reloads srv's TLS files
 * (dbld_server_reload_tls) and waits on; returns SIGTERM or SIGINT. */
int dbld_signals_wait_server(dbld_server *srv);

/* ---- client ---- */

typedef struct dbld_client dbld_client;

#define DBLD_CALL_IDEMPOTENT 0x1 /* retry with backoff on UNAVAILABLE until the deadline */

/* How this process calls its peers: TLS (ca_file set: verify servers with it;
 * cert_file/key_file: present a client certificate for mTLS), the name the
 * servers' certificates are checked against (server_name; NULL: the target's
 * host) and a bearer token sent as "authorization: Bearer <token>" on every
 * call (NULL: none). Call before the first dbld_client_get(); copied. */
typedef struct dbld_client_security {
    dbld_tls_opts tls;
    const char *server_name;
    const char *token;
} dbld_client_security;
int dbld_client_set_security(const dbld_client_security *cs, dbld_status *st);

/* One shared channel per target ("host:port"); borrowed, lives until
 * dbld_client_shutdown_all(). Thread-safe. Never NULL. */
dbld_client *dbld_client_get(const char *target);
void dbld_client_shutdown_all(void);

/* Unary call. *resp is unpacked with alloc (NULL = default allocator: free
 * with protobuf_c_message_free_unpacked). timeout_ms <= 0 means 30 s.
 * The server's status code and message come back in st. */
int dbld_client_unary(dbld_client *c, const char *path, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, ProtobufCAllocator *alloc,
                      ProtobufCMessage **resp, int64_t timeout_ms, int flags, dbld_status *st);

/* Unary call with raw request bytes (tests: garbage input). *out is malloc'd. */
int dbld_client_unary_raw(dbld_client *c, const char *path, const void *req, size_t req_len,
                          void **out, size_t *out_len, int64_t timeout_ms, dbld_status *st);

typedef struct dbld_stream dbld_stream;
/* Start a server-streaming call; timeout_ms <= 0 means no deadline. */
int dbld_client_stream_open(dbld_client *c, const char *path, const ProtobufCMessage *req,
                            int64_t timeout_ms, dbld_stream **out, dbld_status *st);
/* Next message. Returns 0 with *msg set (unpacked with alloc, as for
 * dbld_client_unary). At the end of the stream *msg is NULL and the return
 * value is the final status code with st holding it: a clean end returns 0
 * with *msg NULL, so test *msg, not the return value, to tell a message from
 * the end; every later call returns the same final status. wait_ms bounds the
 * wait for this message (<= 0: no bound); on expiry returns DEADLINE_EXCEEDED
 * with *msg NULL and the stream stays usable (the receive stays pending). A
 * message that does not decode with desc returns INTERNAL with *msg NULL and
 * the stream stays usable. A stream is used by one thread at a time. */
int dbld_stream_next(dbld_stream *s, const ProtobufCMessageDescriptor *desc,
                     ProtobufCAllocator *alloc, ProtobufCMessage **msg, int64_t wait_ms,
                     dbld_status *st);
/* 1 once the stream ended (its final status is known): a DEADLINE_EXCEEDED
 * from dbld_stream_next() is then the call's, not a wait_ms expiry. */
int dbld_stream_done(const dbld_stream *s);
/* Cancel (if still open) and free. */
void dbld_stream_close(dbld_stream *s);

/* grpc.health.v1 Check: returns 0 and *serving (1 SERVING, 0 otherwise). */
int dbld_health_check(dbld_client *c, const char *service, int *serving, int64_t timeout_ms,
                      dbld_status *st);

/* ---- request validation (rpc_validate.c) ----
 * Every request is checked on the wire before it is unpacked (the runtime
 * does it; handlers see only requests that passed): string fields must be
 * valid UTF-8 without NUL bytes and within the limit of their kind, repeated
 * fields within DBLD_LIMIT_LIST_ITEMS, enum values known, uint64 values at
 * most INT64_MAX, nesting within DBLD_LIMIT_DEPTH. The limits are the
 * README's "Limits". */
#define DBLD_LIMIT_REF_BYTES 1024
#define DBLD_LIMIT_PATTERN_BYTES 256
#define DBLD_LIMIT_ID_BYTES 128
#define DBLD_LIMIT_LABEL_BYTES 256
#define DBLD_LIMIT_COMMENT_BYTES 4096
#define DBLD_LIMIT_MESSAGE_BYTES (256 * 1024)
#define DBLD_LIMIT_STRING_BYTES (16 * 1024)
#define DBLD_LIMIT_LIST_ITEMS 100000
#define DBLD_LIMIT_DEPTH 32

/* 0, or INVALID_ARGUMENT with st naming the field path, the value and the
 * limit. Malformed wire data passes (protobuf-c's unpack refuses it). */
int dbld_wire_validate(const ProtobufCMessageDescriptor *d, const void *buf, size_t len,
                       dbld_status *st);
/* The byte limit of a string field by its name (and its message's short
 * name, may be NULL); *kind (may be NULL) names the kind ("a partition ref"). */
size_t dbld_string_limit(const char *msg_name, const char *field, const char **kind);

#endif
