/* store_int.h - what the three files of the event log's store share (not a
 * public header: store.h is the store's API).
 *
 *   store.c        the store's life cycle, migrations and the database monitor
 *   store_write.c  the group-commit writer thread, claims, job logs, releases
 *   store_read.c   reads over the reader pool: with_db, List, pattern checks
 */
#ifndef EL_STORE_INT_H
#define EL_STORE_INT_H

#include "store.h"
#include "dbld/db_domain.h"
#include "dbld/metrics.h"
#include "dbld/db.h"
#include "hub.h"
#include "dbld/db_regex.h"
#include "dbld/dbmon.h"
#include "dbld/fifo.h"
#include "dbld/log.h"
#include "dbld/util.h"
#include "migrations.h"
#include "projections.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Advisory lock keys (arbitrary constants, 'DBLD' + purpose). */
#define LOCK_MIGRATE 0x44424c4400000001LL
#define LOCK_APPEND 0x44424c4400000002LL

/* The writer's queue holds at most QUEUE_BATCHES full batches of events (and
 * never fewer than QUEUE_MIN_EVENTS): when the database stalls, writes beyond
 * that are refused with UNAVAILABLE (retried with backoff by idempotent
 * clients) instead of growing memory. */
#define QUEUE_BATCHES 10
#define QUEUE_MIN_EVENTS 10000
/* ... and at most QUEUE_MAX_BYTES of the requests' memory (their RPC arenas:
 * the decoded request and its prepared rows), whatever the events' size: 50,000
 * events of a large build graph would otherwise hold hundreds of MiB. */
#define QUEUE_MAX_BYTES (64u << 20)

/* Reader connections kept from user reads (el_store_read_with_db()). */
#define READS_RESERVED 1
/* Longest wait for a reader connection: the service's own calls, and user
 * reads, which give up sooner: a waiting read holds an RPC worker, and the
 * workers (8 by default, db_pool_size 4) must stay free for leases too. */
#define ACQUIRE_MS 5000
#define READ_ACQUIRE_MS 1000
#define MONITOR_OK_MS 500 /* database ping period while it answers */

typedef struct pending {
    el_event *evs;
    size_t n;
    el_claim *claim;     /* set for a claim: decided in the batch's transaction */
    el_joblogs *logs;    /* set for job log entries */
    dbld_arena *arena;   /* the requester's arena (the RPC's): this struct, result strings */
    size_t bytes;        /* the arena's size when queued (counted in queued_bytes) */
    el_fence fence;      /* fence.build_request_id NULL: not fenced */
    const char *refused; /* set by fence_verdict(): why the fence refused it (in arena) */
    el_append_cb cb;     /* reports the outcome (answers the RPC) */
    void *cb_arg;
    struct pending *next; /* in the writer's current batch */
    dbld_fifo_link link;  /* in the queue */
} pending;

struct el_store {
    el_store_opts opts;
    char *dsn;
    dbld_pool *pool;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* writer: queue not empty / stop */
    dbld_fifo queue;        /* pending.link: waiting for the writer */
    size_t queued_events;   /* in the queue, not yet taken by the writer */
    size_t max_queued;      /* refuse a request that would queue more (one alone always fits) */
    size_t queued_bytes;    /* pending.bytes of the queue; refused past QUEUE_MAX_BYTES likewise */
    int stop;
    size_t last_batch; /* requests in the writer's previous batch */
    int migrated;      /* the monitor's probe only */
    dbld_dbmon *mon;
    el_hub *hub; /* the commit feed: the writer publishes, Subscribe reads */
    pthread_t writer;
    int started;
};

/* A statement found the database unavailable: health follows at once (store.c). */
void el__store_set_down(el_store *s, const char *err);
/* UNAVAILABLE (with the monitor's last error) while the database is down, else 0. */
int el__store_unavailable(el_store *s, dbld_status *st);
/* The writer thread's body and its metrics (store_write.c). */
void *el__store_writer_main(void *arg);
void el__store_metrics_init(el_store *s);

#endif
