/* pool.c - a fixed set of threads fed from one FIFO.
 *
 * The threads are started with the pool and live until gs_pool_stop(); an
 * item is any struct embedding a gs_work, queued with gs_pool_push() and run
 * once by the first free thread. `admitted` counts the items reserved,
 * queued or running; gs_pool_reserve() refuses once it reaches threads +
 * max_queue, so a caller can refuse work (RESOURCE_EXHAUSTED) before doing
 * anything for it, instead of finding out after a thread could not be made.
 *
 * Stopping does not cancel anything: queued items stay queued (their owners
 * know what to do with them, e.g. hand their leases over), running ones are
 * waited for up to a bound, and the threads are joined when all ended.
 */
#include "pool.h"

#include "dbld/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

struct gs_pool {
    char name[16];
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* an item was queued, or stopping */
    pthread_cond_t idle_cv; /* CLOCK_MONOTONIC: an item ended */
    dbld_fifo queue;
    int n_threads, started, max_queue;
    int admitted, running, stopping;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    gs_pool *p = arg;
    prctl(PR_SET_NAME, p->name, 0, 0, 0);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && p->queue.n == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stopping) break;
        gs_work *w = DBLD_FIFO_ENTRY(dbld_fifo_pop(&p->queue), gs_work, link);
        p->running++;
        pthread_mutex_unlock(&p->mu);
        w->fn(w); /* may free w */
        pthread_mutex_lock(&p->mu);
        p->running--;
        p->admitted--;
        pthread_cond_broadcast(&p->idle_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_free(gs_pool *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->idle_cv);
    free(p->threads);
    free(p);
}

/* Wake and join the threads started so far (the pool is stopping). */
static void join_all(gs_pool *p)
{
    for (int i = 0; i < p->started; i++)
        pthread_join(p->threads[i], NULL);
}

int gs_pool_create(const char *name, int threads, int max_queue, size_t stack_bytes, gs_pool **out,
                   dbld_status *st)
{
    *out = NULL;
    if (threads < 1) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: no threads", name);
    gs_pool *p = dbld_xcalloc(1, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->n_threads = threads;
    p->max_queue = max_queue;
    dbld_fifo_init(&p->queue);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->idle_cv, &ca);
    pthread_condattr_destroy(&ca);
    p->threads = dbld_xcalloc((size_t)threads, sizeof *p->threads);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (stack_bytes) pthread_attr_setstacksize(&attr, stack_bytes);
    int err = 0;
    for (; p->started < threads; p->started++)
        if ((err = pthread_create(&p->threads[p->started], &attr, pool_main, p)) != 0) break;
    pthread_attr_destroy(&attr);
    if (err) {
        int started = p->started;
        pthread_mutex_lock(&p->mu);
        p->stopping = 1;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        join_all(p);
        pool_free(p);
        return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                               "%s: could not start thread %d of %d: %s", name, started + 1,
                               threads, strerror(err));
    }
    *out = p;
    return 0;
}

int gs_pool_reserve(gs_pool *p, const char *what, dbld_status *st)
{
    pthread_mutex_lock(&p->mu);
    int stopping = p->stopping, admitted = p->admitted, running = p->running;
    int full = p->max_queue >= 0 && admitted >= p->n_threads + p->max_queue;
    if (!stopping && !full) p->admitted++;
    pthread_mutex_unlock(&p->mu);
    if (stopping) return dbld_status_set(st, DBLD_UNAVAILABLE, "%s: shutting down", what);
    if (full)
        return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                               "%s: busy: %d running, %d queued (at most %d running and %d "
                               "queued); retry later",
                               what, running, admitted - running, p->n_threads, p->max_queue);
    return 0;
}

void gs_pool_unreserve(gs_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->admitted--;
    pthread_mutex_unlock(&p->mu);
}

void gs_pool_push(gs_pool *p, gs_work *w, int reserved)
{
    pthread_mutex_lock(&p->mu);
    if (!reserved) p->admitted++;
    dbld_fifo_push(&p->queue, &w->link);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

void gs_pool_counts(gs_pool *p, int *running, int *queued)
{
    pthread_mutex_lock(&p->mu);
    *running = p->running;
    *queued = (int)p->queue.n;
    pthread_mutex_unlock(&p->mu);
}

int gs_pool_stop(gs_pool *p, int64_t wait_ms)
{
    if (!p) return 0;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cv);
    struct timespec until = dbld_abs_time(CLOCK_MONOTONIC, wait_ms);
    while (p->running > 0)
        if (pthread_cond_timedwait(&p->idle_cv, &p->mu, &until) != 0) break;
    int left = p->running;
    pthread_mutex_unlock(&p->mu);
    if (left) return left;
    join_all(p);
    pool_free(p);
    return 0;
}
