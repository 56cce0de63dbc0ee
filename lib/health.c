/* health.c - grpc.health.v1.Health, served by every dbld_server.
 *
 * The state is a small table of (service name, ServingStatus) behind one mutex;
 * "" stands for the whole server. Every change bumps a generation counter and
 * broadcasts a condition variable, so Watch streams sleep on the condvar and
 * wake for changes. They also wake every WATCH_POLL_MS to notice a client that
 * went away, and end once the server closes the table at shutdown (after the
 * final NOT_SERVING update has been sent). Check on an unknown name answers
 * NOT_FOUND; Watch on an unknown name streams SERVICE_UNKNOWN and keeps
 * watching, as the health protocol asks.
 */
#include "rpc_internal.h"

#include "dbld/util.h"
#include "grpc/health/v1/health.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_POLL_MS 100
#define SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

void dbld__health_init(dbld__health *h)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    dbld_cond_init_mono(&h->cv);
}

void dbld__health_free(dbld__health *h)
{
    for (size_t i = 0; i < h->n; i++)
        free(h->v[i].name);
    free(h->v);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

/* Caller holds h->mu. */
static dbld__health_entry *find(dbld__health *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].name, name) == 0) return &h->v[i];
    return NULL;
}

/* Caller holds h->mu. */
static dbld__health_entry *add(dbld__health *h, const char *name)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->v = dbld_xrealloc(h->v, h->cap * sizeof *h->v);
    }
    dbld__health_entry *e = &h->v[h->n++];
    e->name = dbld_xstrdup(name);
    e->status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    return e;
}

void dbld__health_set(dbld__health *h, const char *name, int status)
{
    pthread_mutex_lock(&h->mu);
    dbld__health_entry *e = find(h, name ? name : "");
    if (!e) e = add(h, name ? name : "");
    e->status = status;
    h->gen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

void dbld__health_set_all(dbld__health *h, int status)
{
    pthread_mutex_lock(&h->mu);
    for (size_t i = 0; i < h->n; i++)
        h->v[i].status = status;
    h->gen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

int dbld__health_get(dbld__health *h, const char *name)
{
    pthread_mutex_lock(&h->mu);
    dbld__health_entry *e = find(h, name ? name : "");
    int status = e ? e->status : -1;
    pthread_mutex_unlock(&h->mu);
    return status;
}

void dbld__health_close(dbld__health *h)
{
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    h->gen++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* ---- the service ---- */

static int check(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 dbld_status *st)
{
    const Grpc__Health__V1__HealthCheckRequest *in = (const void *)req;
    int status = dbld__health_get(dbld_call_user(call), in->service);
    if (status < 0) return dbld_status_set(st, DBLD_NOT_FOUND, "unknown service %s", in->service);
    Grpc__Health__V1__HealthCheckResponse *out =
        dbld_arena_msg(dbld_call_arena(call), &grpc__health__v1__health_check_response__descriptor);
    out->status = status;
    *resp = &out->base;
    return 0;
}

static int send_status(dbld_call *call, int status, dbld_status *st)
{
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = status;
    return dbld_call_send(call, &out.base, st);
}

/* Sleep until the generation moves past gen, the table closes or a poll tick. */
static void wait_change(dbld__health *h, uint64_t gen)
{
    pthread_mutex_lock(&h->mu);
    if (h->gen == gen && !h->closed) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += WATCH_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
}

/* Status of name (SERVICE_UNKNOWN when unknown) with the generation and closed flag it was read at.
 */
static int read_status(dbld__health *h, const char *name, uint64_t *gen, int *closed)
{
    pthread_mutex_lock(&h->mu);
    dbld__health_entry *e = find(h, name);
    int status = e ? e->status : SERVICE_UNKNOWN;
    *gen = h->gen;
    *closed = h->closed;
    pthread_mutex_unlock(&h->mu);
    return status;
}

/* Each round decides whether to stop before reading the table, so the
 * NOT_SERVING that shutdown sets before it cancels streams is always sent. */
static int watch(dbld_call *call, const ProtobufCMessage *req, dbld_status *st)
{
    const Grpc__Health__V1__HealthCheckRequest *in = (const void *)req;
    const char *name = in->service ? in->service : "";
    dbld__health *h = dbld_call_user(call);
    uint64_t gen = 0;
    int closed = 0, last = -1, first = 1;
    for (;;) {
        if (!first) wait_change(h, gen);
        first = 0;
        int stop = dbld_call_cancelled(call);
        int status = read_status(h, name, &gen, &closed);
        if (status != last) {
            int rc = send_status(call, status, st);
            if (rc) return rc;
            last = status;
        }
        if (stop || closed) return dbld_status_set(st, DBLD_UNAVAILABLE, "watch ended");
    }
}

static const dbld_method health_methods[] = {
    {"/grpc.health.v1.Health/Check", &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, check, NULL, DBLD_METHOD_NONBLOCKING},
    {"/grpc.health.v1.Health/Watch", &grpc__health__v1__health_check_request__descriptor,
     &grpc__health__v1__health_check_response__descriptor, NULL, watch},
};

const dbld_service dbld__health_service = {"grpc.health.v1.Health", health_methods,
                                           sizeof health_methods / sizeof health_methods[0]};
