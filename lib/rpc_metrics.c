/* rpc_metrics.c - the grpc-ecosystem metrics of every call, server and
 * client side (grpc_server_started_total, grpc_server_handled_total,
 * grpc_server_handling_seconds, grpc_server_msg_received_total,
 * grpc_server_msg_sent_total and their grpc_client_* twins), with the labels
 * grpc_service, grpc_method, grpc_type and, for handled, grpc_code.
 *
 * A call finds its method's series through a fixed open-addressing table of
 * atomic pointers keyed by (side, path): a hash and a string compare, no
 * lock. The first call of a method (and the first of each status code)
 * registers its series, which takes the registry's mutex once.
 */
#include "rpc_internal.h"

#include "dbld/strmap.h"
#include "dbld/metrics.h"
#include "dbld/status.h"
#include "dbld/util.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 1024 /* distinct methods per side; far more than the suite has */
#define N_CODES 17

struct dbld__rpc_mx {
    char *path;
    char labels[256];   /* grpc_service="..",grpc_method="..",grpc_type=".." */
    const char *prefix; /* "grpc_server" or "grpc_client" */
    dbld_counter *started, *received, *sent;
    dbld_histogram *seconds;
    _Atomic(dbld_counter *) handled[N_CODES];
};

static _Atomic(dbld__rpc_mx *) g_slots[2][SLOTS];

/* grpc_code values as go-grpc-prometheus writes them (Go's codes.Code names),
 * so that existing dashboards match. */
static const char *const code_names[N_CODES] = {
    "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
    "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
    "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
    "DataLoss", "Unauthenticated"};

static dbld__rpc_mx *mx_new(int server, const char *path, const char *type)
{
    dbld__rpc_mx *m = dbld_xcalloc(1, sizeof *m);
    m->path = dbld_xstrdup(path);
    const char *slash = strrchr(path, '/');
    int svc_len = slash && slash > path ? (int)(slash - path - 1) : 0;
    snprintf(m->labels, sizeof m->labels,
             "grpc_service=\"%.*s\",grpc_method=\"%s\",grpc_type=\"%s\"", svc_len, path + 1,
             slash ? slash + 1 : path, type);
    m->prefix = server ? "grpc_server" : "grpc_client";
    char name[96];
    snprintf(name, sizeof name, "%s_started_total", m->prefix);
    m->started = dbld_counter_get(name,
                                  server ? "Total number of RPCs started on the server."
                                         : "Total number of RPCs started on the client.",
                                  m->labels);
    snprintf(name, sizeof name, "%s_msg_received_total", m->prefix);
    m->received =
        dbld_counter_get(name, "Total number of RPC stream messages received.", m->labels);
    snprintf(name, sizeof name, "%s_msg_sent_total", m->prefix);
    m->sent = dbld_counter_get(name, "Total number of gRPC stream messages sent.", m->labels);
    snprintf(name, sizeof name, "%s_handling_seconds", m->prefix);
    m->seconds = dbld_histogram_get(
        name,
        server ? "Histogram of response latency (seconds) of gRPC that had been application-level "
                 "handled by the server."
               : "Histogram of response latency (seconds) of the gRPC until it is finished by the "
                 "application.",
        m->labels, dbld_latency_buckets, dbld_n_latency_buckets);
    return m;
}

dbld__rpc_mx *dbld__rpc_mx_get(int server, const char *path, const char *type)
{
    if (!path || !dbld_metrics_enabled()) return NULL;
    _Atomic(dbld__rpc_mx *) *t = g_slots[server ? 1 : 0];
    uint32_t h = (uint32_t)dbld_hash_str(path);
    dbld__rpc_mx *fresh = NULL;
    for (uint32_t i = 0; i < SLOTS; i++) {
        _Atomic(dbld__rpc_mx *) *slot = &t[(h + i) & (SLOTS - 1)];
        dbld__rpc_mx *e = atomic_load_explicit(slot, memory_order_acquire);
        if (!e) {
            if (!fresh) fresh = mx_new(server, path, type);
            if (atomic_compare_exchange_strong(slot, &e, fresh)) return fresh;
        }
        if (strcmp(e->path, path) == 0) {
            if (fresh) { /* another thread won: its series are the same ones */
                free(fresh->path);
                free(fresh);
            }
            return e;
        }
    }
    if (fresh) { /* table full: no metrics for this method */
        free(fresh->path);
        free(fresh);
    }
    return NULL;
}

void dbld__rpc_mx_started(dbld__rpc_mx *m)
{
    if (m) dbld_counter_add(m->started, 1);
}

void dbld__rpc_mx_msg(dbld__rpc_mx *m, int sent)
{
    if (m) dbld_counter_add(sent ? m->sent : m->received, 1);
}

void dbld__rpc_mx_handled(dbld__rpc_mx *m, int code, int64_t start_ns)
{
    if (!m) return;
    if (code < 0 || code >= N_CODES) code = DBLD_UNKNOWN;
    dbld_counter *c = atomic_load_explicit(&m->handled[code], memory_order_acquire);
    if (!c) {
        char name[96], labels[320];
        snprintf(name, sizeof name, "%s_handled_total", m->prefix);
        snprintf(labels, sizeof labels, "%s,grpc_code=\"%s\"", m->labels, code_names[code]);
        c = dbld_counter_get(
            name, "Total number of RPCs completed, regardless of success or failure.", labels);
        atomic_store_explicit(&m->handled[code], c, memory_order_release);
    }
    dbld_counter_add(c, 1);
    dbld_histogram_observe(m->seconds, (double)(dbld__now_ns() - start_ns) / 1e9);
}

int64_t dbld__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
