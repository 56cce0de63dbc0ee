/* waiters.c - calls answered when a build ends (see waiters.h).
 *
 * A waiter sits on the registry's list from gs_waiter_arm() until someone
 * takes it off (under ws->mu) - the build's end callback, the sweeper, or
 * gs_waiters_close() - and whoever takes it answers the call. The sweeper is
 * one thread that looks every SWEEP_MS for waiting calls that were cancelled
 * (the RPC runtime has no callback for that) and for Cancel waits that are
 * over; it sleeps while no call waits. A waiter is freed once both the list's reference and the
 * build's end callback's reference are gone, so a build that ends while its call is being answered
 * elsewhere (or after shutdown) finds a live waiter.
 */
#include "waiters.h"

#include "coordinator.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <time.h>

#define SWEEP_MS 100

typedef enum { ANSWER_END, ANSWER_GONE, ANSWER_WAITED, ANSWER_CLOSED } answer_why;

struct gs_waiter {
    gs_waiters *ws;
    dbld_call *call; /* answered exactly once, by whoever takes the waiter */
    gs_wait_kind kind;
    gs_build *b;            /* a reference, dropped when the waiter is freed */
    int64_t deadline;       /* monotonic ms: the end of Cancel's wait; INT64_MAX: none */
    int listed;             /* under ws->mu: on the list, not yet taken */
    int refs;               /* under ws->mu: the list's (until taken) + the end callback's */
    answer_why why;         /* why the sweeper or close took it */
    gs_waiter *prev, *next; /* the list; once taken, next chains what a sweep took */
};

struct gs_waiters {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: wakes the sweeper (first waiter, close) */
    gs_waiter *head;   /* armed, not yet taken */
    size_t n;          /* reserved and not yet taken or dropped (<= GS_WAITERS_MAX) */
    int closed;
    pthread_t sweeper;
};

/* ------------------------------------------------------------ list */

/* Take w off the list (ws->mu held): 1 if the caller now answers it. */
static int take(gs_waiter *w)
{
    gs_waiters *ws = w->ws;
    if (!w->listed) return 0;
    w->listed = 0;
    if (w->prev)
        w->prev->next = w->next;
    else
        ws->head = w->next;
    if (w->next) w->next->prev = w->prev;
    w->prev = w->next = NULL;
    ws->n--;
    return 1;
}

static void release(gs_waiter *w)
{
    gs_waiters *ws = w->ws;
    pthread_mutex_lock(&ws->mu);
    int last = --w->refs == 0;
    pthread_mutex_unlock(&ws->mu);
    if (!last) return;
    gs_build_unref(w->b);
    free(w);
}

/* ------------------------------------------------------------ answers */

static void answer(gs_waiter *w, answer_why why)
{
    const char *id = gs_build_id(w->b);
    if (why == ANSWER_CLOSED) {
        dbld_status st;
        dbld_status_set(&st, DBLD_UNAVAILABLE,
                        "build %s: the graph service is shutting down; the build goes on (the next "
                        "instance resumes it from the event log)",
                        id);
        dbld_call_complete(w->call, st.code, st.msg, NULL);
        return;
    }
    if (why == ANSWER_GONE) {
        dbld_log(DBLD_LOG_INFO,
                 w->kind == GS_WAIT_BUILD ? "build call ended before its build; the build goes on"
                                          : "cancel call ended before its build",
                 "build_request_id", id, (char *)NULL);
        dbld_status st;
        dbld_status_set(&st, DBLD_CANCELLED, "build %s: the call ended before the build", id);
        dbld_call_complete(w->call, st.code, st.msg, NULL);
        return;
    }
    if (w->kind == GS_WAIT_CANCEL) { /* ended, or waited long enough: cancelled either way */
        dbld_call_complete(w->call, 0, NULL, NULL);
        return;
    }
    Databuild__V1__GraphBuildResponse *r = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = gs_build_result(w->b, dbld_call_arena(w->call), &r, &st);
    dbld_call_complete(w->call, rc, rc ? st.msg : NULL, rc ? NULL : &r->base);
}

/* The build's end (on the thread that ended it). */
static void on_build_end(void *arg)
{
    gs_waiter *w = arg;
    pthread_mutex_lock(&w->ws->mu);
    int mine = take(w);
    pthread_mutex_unlock(&w->ws->mu);
    if (mine) {
        answer(w, ANSWER_END);
        release(w); /* the list's reference */
    }
    release(w); /* the callback's */
}

/* ------------------------------------------------------------ sweeper */

/* Answer and release what a sweep (or close) took, chained by next. */
static void answer_taken(gs_waiter *taken)
{
    while (taken) {
        gs_waiter *w = taken;
        taken = w->next;
        w->next = NULL;
        answer(w, w->why);
        release(w); /* the list's reference */
    }
}

static void *sweeper_main(void *arg)
{
    gs_waiters *ws = arg;
    pthread_mutex_lock(&ws->mu);
    while (!ws->closed) {
        if (!ws->head) { /* idle: sleep until a waiter is armed (or close) */
            pthread_cond_wait(&ws->cv, &ws->mu);
            continue;
        }
        struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, SWEEP_MS);
        pthread_cond_timedwait(&ws->cv, &ws->mu, &ts);
        if (ws->closed) break;
        int64_t now = dbld_mono_ms();
        gs_waiter *taken = NULL;
        for (gs_waiter *w = ws->head, *next; w; w = next) {
            next = w->next;
            if (dbld_call_cancelled(w->call))
                w->why = ANSWER_GONE;
            else if (now >= w->deadline)
                w->why = ANSWER_WAITED;
            else
                continue;
            take(w);
            w->next = taken;
            taken = w;
        }
        pthread_mutex_unlock(&ws->mu);
        answer_taken(taken);
        pthread_mutex_lock(&ws->mu);
    }
    pthread_mutex_unlock(&ws->mu);
    return NULL;
}

/* ------------------------------------------------------------ API */

int gs_waiters_create(gs_waiters **out, dbld_status *st)
{
    gs_waiters *ws = dbld_xcalloc(1, sizeof *ws);
    pthread_mutex_init(&ws->mu, NULL);
    dbld_cond_init_mono(&ws->cv);
    if (pthread_create(&ws->sweeper, NULL, sweeper_main, ws) != 0) {
        pthread_cond_destroy(&ws->cv);
        pthread_mutex_destroy(&ws->mu);
        free(ws);
        return dbld_status_set(st, DBLD_INTERNAL, "could not start the build waiters' thread");
    }
    *out = ws;
    return 0;
}

void gs_waiters_close(gs_waiters *ws)
{
    if (!ws) return;
    pthread_mutex_lock(&ws->mu);
    int was_closed = ws->closed;
    ws->closed = 1;
    gs_waiter *taken = NULL;
    while (ws->head) {
        gs_waiter *w = ws->head;
        take(w);
        w->why = ANSWER_CLOSED;
        w->next = taken;
        taken = w;
    }
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    if (!was_closed) pthread_join(ws->sweeper, NULL);
    answer_taken(taken);
}

gs_waiter *gs_waiter_new(gs_waiters *ws, dbld_call *call, gs_wait_kind kind, dbld_status *st)
{
    pthread_mutex_lock(&ws->mu);
    int closed = ws->closed, full = ws->n >= GS_WAITERS_MAX;
    if (!closed && !full) ws->n++;
    pthread_mutex_unlock(&ws->mu);
    if (closed) {
        dbld_status_set(st, DBLD_UNAVAILABLE, "the graph service is shutting down");
        return NULL;
    }
    if (full) {
        dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                        "%d calls already wait for their builds (the limit); use Submit and follow "
                        "the build in the event log",
                        GS_WAITERS_MAX);
        return NULL;
    }
    gs_waiter *w = dbld_xcalloc(1, sizeof *w);
    w->ws = ws;
    w->call = call;
    w->kind = kind;
    w->deadline = INT64_MAX;
    return w;
}

void gs_waiter_drop(gs_waiter *w)
{
    pthread_mutex_lock(&w->ws->mu);
    w->ws->n--;
    pthread_mutex_unlock(&w->ws->mu);
    free(w);
}

int gs_waiter_arm(gs_waiter *w, gs_build *b, int64_t wait_ms)
{
    gs_waiters *ws = w->ws;
    w->b = b;
    if (wait_ms >= 0) w->deadline = dbld_mono_ms() + wait_ms;
    pthread_mutex_lock(&ws->mu);
    int closed = ws->closed;
    w->refs = 1; /* the list's, or (closed) ours */
    if (closed) {
        ws->n--;
    } else {
        w->listed = 1;
        w->next = ws->head;
        if (ws->head)
            ws->head->prev = w;
        else
            pthread_cond_signal(&ws->cv); /* wake the idle sweeper */
        ws->head = w;
        w->refs++; /* the end callback's */
    }
    pthread_mutex_unlock(&ws->mu);
    if (closed) {
        answer(w, ANSWER_CLOSED);
        release(w);
        return DBLD_ASYNC;
    }
    if (gs_build_on_end(b, on_build_end, w) != 0) /* already ended: answer now */
        on_build_end(w);
    return DBLD_ASYNC;
}
