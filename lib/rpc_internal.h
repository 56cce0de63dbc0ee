/* rpc_internal.h - private glue shared by rpc_server.c, rpc_client.c and health.c.
 *
 * Nothing here is public API: gRPC core types never leave the RPC runtime. The
 * health state lives in its own small struct so health.c can implement
 * grpc.health.v1.Health as an ordinary dbld_service table (the server
 * registers it with the health state as the service's user pointer).
 */
#ifndef DBLD_RPC_INTERNAL_H
#define DBLD_RPC_INTERNAL_H

#include "dbld/rpc.h"

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdint.h>

/* ---- health state (health.c) ---- */

typedef struct dbld__health_entry {
    char *name; /* malloc'd; "" = the whole server */
    int status; /* a grpc.health.v1 ServingStatus value */
} dbld__health_entry;

typedef struct dbld__health {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every change and on close */
    dbld__health_entry *v;
    size_t n, cap;
    uint64_t gen; /* bumped on every change */
    int closed;   /* server shutting down: Watch streams end */
} dbld__health;

/* A client call's SEND_INITIAL_METADATA op, with the process's bearer token
 * (dbld_client_set_security) when there is one. */
void dbld__client_md(grpc_op *op);

/* ---- per-method metrics (rpc_metrics.c) ---- */
typedef struct dbld__rpc_mx dbld__rpc_mx;
/* The series of path on the server (server 1) or client side; type is
 * "unary", "server_stream" or "bidi_stream". NULL only when the table of
 * methods is full. Lock-free after a method's first call. */
dbld__rpc_mx *dbld__rpc_mx_get(int server, const char *path, const char *type);
void dbld__rpc_mx_started(dbld__rpc_mx *m);
void dbld__rpc_mx_msg(dbld__rpc_mx *m, int sent);
void dbld__rpc_mx_handled(dbld__rpc_mx *m, int code, int64_t start_ns);
int64_t dbld__now_ns(void);

void dbld__health_init(dbld__health *h);
void dbld__health_free(dbld__health *h);
/* Set (adding the name when new) and wake watchers. */
void dbld__health_set(dbld__health *h, const char *name, int status);
/* Set every known name. */
void dbld__health_set_all(dbld__health *h, int status);
/* Current status of name, or -1 when the name is unknown. */
int dbld__health_get(dbld__health *h, const char *name);
/* Make Watch streams end after sending their last update. */
void dbld__health_close(dbld__health *h);

/* grpc.health.v1.Health (Check, Watch); user pointer = dbld__health. */
extern const dbld_service dbld__health_service;

/* grpc.reflection.v1 and v1alpha ServerReflection (reflection.c); user
 * pointer = the dbld_server. */
extern const dbld_service dbld__reflection_service;
/* The names of the services srv serves (registered ones, then health and
 * both reflection versions), at most cap; returns how many. */
size_t dbld__server_service_names(dbld_server *srv, const char **out, size_t cap);

/* ---- shared helpers (rpc_client.c) ---- */

/* The buffers of one unary client call: send is the request, the rest are
 * filled when the batch completes. */
typedef struct dbld__unary {
    grpc_metadata_array init_md, trail_md;
    grpc_byte_buffer *send, *recv;
    grpc_status_code status;
    grpc_slice details;
    const char *error;
} dbld__unary;

/* The six ops of a unary call (send all, receive all) in one batch. */
void dbld__unary_ops(dbld__unary *u, grpc_op ops[6]);

/* Serialize a message into a new byte buffer; caller destroys it. */
grpc_byte_buffer *dbld__pack(const ProtobufCMessage *msg);
/* grpc_init(), with abseil's mutex deadlock detection off first (see
 * rpc_client.c). */
void dbld__grpc_init(void);
/* Copy a byte buffer into one contiguous slice; caller unrefs it. */
grpc_slice dbld__flatten(grpc_byte_buffer *bb);
/* Map any integer to a valid status code (outside 0..16 -> UNKNOWN). */
int dbld__code(int code);
/* Monotonic deadline ms from now; ms < 0 -> infinite. */
gpr_timespec dbld__deadline(int64_t ms);
/* An integer channel argument (key is a static string). */
grpc_arg dbld__int_arg(const char *key, int value);

/* HTTP/2 keepalive on both ends: a peer that silently vanished (a network
 * partition, a VM gone: no RST ever arrives) fails the calls in flight with
 * UNAVAILABLE within KEEPALIVE_TIME + KEEPALIVE_TIMEOUT (15 s) instead of
 * leaving them to their deadlines. Pings go out only while calls are open,
 * also on streams that carry no data for long (a job that prints nothing),
 * and the server accepts them that often (a stricter server would answer
 * GOAWAY "too_many_pings"). */
#define DBLD_KEEPALIVE_TIME_MS 10000
#define DBLD_KEEPALIVE_TIMEOUT_MS 5000

#endif
