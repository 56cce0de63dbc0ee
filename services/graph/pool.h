/* pool.h - a fixed set of threads fed from one FIFO (pool.c).
 *
 * The graph coordinator runs its builds on one pool and their tasks on
 * another, so the number of threads is set by the configuration
 * (graph.build_threads, graph.task_threads), not by the load. Work is
 * admitted up to threads + max_queue items; beyond that gs_pool_reserve()
 * answers RESOURCE_EXHAUSTED, as nginx's thread pools do with max_queue.
 */
#ifndef GRAPH_POOL_H
#define GRAPH_POOL_H

#include "dbld/fifo.h"
#include "dbld/status.h"

#include <stdint.h>

typedef struct gs_pool gs_pool;

/* One item of work, embedded in its owner; fn runs once on a pool thread. */
typedef struct gs_work {
    dbld_fifo_link link;
    void (*fn)(struct gs_work *w);
} gs_work;

/* Start `threads` threads named "<name>" (each with a stack of stack_bytes;
 * 0: the default). max_queue < 0: no bound on queued items. 0 or the
 * pthread error as a status; the caller destroys with gs_pool_stop(). */
int gs_pool_create(const char *name, int threads, int max_queue, size_t stack_bytes, gs_pool **out,
                   dbld_status *st);

/* Hold room for one item (released when it has run, or by gs_pool_unreserve()):
 * 0, or RESOURCE_EXHAUSTED (with a message naming `what` and the sizes) when
 * threads + max_queue items are admitted already, or UNAVAILABLE once stopping. */
int gs_pool_reserve(gs_pool *p, const char *what, dbld_status *st);
void gs_pool_unreserve(gs_pool *p);

/* Queue w to run on a pool thread; reserved: its room was taken with
 * gs_pool_reserve() (otherwise it is taken now, whatever the bound). Never
 * fails; once the pool is stopping the item never runs. */
void gs_pool_push(gs_pool *p, gs_work *w, int reserved);

/* Items running, and items waiting in the queue. */
void gs_pool_counts(gs_pool *p, int *running, int *queued);

/* Stop taking items from the queue (the queued ones never run), wait up to
 * wait_ms for the running ones to end and join the threads. Returns the
 * number of items still running: when 0 the pool is freed, else it is left
 * alone (its threads are blocked in calls the caller could not end). */
int gs_pool_stop(gs_pool *p, int64_t wait_ms);

#endif
