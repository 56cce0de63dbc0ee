/* hub.c - the commit feed (see hub.h for the design).
 *
 * Who owns what:
 *   - the writer thread allocates a `pub` per committed batch (and, while
 *     streams are open, a copy of each new event) and hands it to the
 *     feeder's queue; from then on the feeder owns it;
 *   - the feeder thread alone changes the ring (under the write lock), and
 *     alone uses its database connection; it frees events it drops;
 *   - stream threads read the ring under the read lock and copy what they
 *     send into their own arena before letting go of it.
 *
 * The invariant: every committed event with lo < idx <= high is in the
 * ring. Idx order is commit order (every writer of every replica inserts
 * under one advisory lock), so a batch whose "highest idx before" equals
 * high extends the ring without a gap; one above high means another replica
 * committed in between, and (high, prev_max] is read from PostgreSQL first.
 * Whenever the feeder cannot keep the invariant by adding (a batch it did
 * not copy, a failed read), it empties the ring and starts again at the new
 * high: streams below it then read PostgreSQL, which loses nothing.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include "hub.h"
#include "dbld/metrics.h"
#include "dbld/db.h"
#include "dbld/log.h"
#include "dbld/fifo.h"
#include "dbld/util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_PAGE 1000    /* rows per read of other replicas' events */
#define QUEUE_MAX_PUBS 256 /* published batches waiting for the feeder; more are merged */
#define SCAN_MAX 4096      /* ring entries one el_hub_read() looks at (bounds lock time) */

/* One event in the ring: one allocation holding the fields and payload. */
typedef struct hub_ev {
    int64_t idx;
    el_fields f; /* pointers into this allocation */
    uint8_t *payload;
    size_t len;
    size_t bytes; /* size of the allocation */
} hub_ev;

/* One committed batch on its way from the writer to the feeder. */
typedef struct pub {
    int64_t prev_max, max_idx;
    int complete; /* evs are all of the batch's new events */
    hub_ev **evs;
    size_t n;
    dbld_fifo_link link; /* in the hub's queue */
} pub;

struct el_hub {
    char *dsn;
    /* the ring, circular, in idx order: changed by the feeder only */
    pthread_rwlock_t rw;
    hub_ev **ring;
    size_t head, count, bytes;
    int64_t lo, high;
    int ready; /* lo/high are known */
    /* the feeder's queue and the streams' wake-up */
    pthread_mutex_t mu;
    pthread_cond_t feed_cv; /* feeder: a batch was published / stop */
    pthread_cond_t high_cv; /* streams: high grew */
    dbld_fifo queue;        /* pub.link: batches the feeder has not applied yet */
    int64_t seen_high;      /* high as of the last broadcast (under mu) */
    int stop;
    atomic_int streams;
    pthread_t feeder;
    int started;
    dbld_db *db; /* the feeder's connection */
};

/* ---- events ---- */

static size_t list_bytes(const char *const *v, size_t n)
{
    size_t b = n * sizeof(char *);
    for (size_t i = 0; i < n; i++)
        b += strlen(v[i]) + 1;
    return b;
}

static const char **copy_list(char **ptrs, char **text, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(v[i]) + 1;
        memcpy(*text, v[i], len);
        ptrs[i] = *text;
        *text += len;
    }
    return (const char **)ptrs;
}

/* A ring event with copies of f's values and room for len payload bytes
 * (filled by the caller). Freed with free(). */
static hub_ev *ev_alloc(int64_t idx, const el_fields *f, size_t len)
{
    const char *br = f->build_request_id ? f->build_request_id : "";
    size_t n_ptrs = f->n_refs + f->n_labels + f->n_runs;
    size_t bytes = sizeof(hub_ev) + list_bytes(f->refs, f->n_refs) +
                   list_bytes(f->labels, f->n_labels) + list_bytes(f->runs, f->n_runs) +
                   strlen(br) + 1 + len;
    hub_ev *e = dbld_xmalloc(bytes);
    char **ptrs = (char **)(e + 1);
    char *text = (char *)(ptrs + n_ptrs);
    e->idx = idx;
    e->bytes = bytes;
    e->len = len;
    e->f = (el_fields){
        .kind = f->kind, .n_refs = f->n_refs, .n_labels = f->n_labels, .n_runs = f->n_runs};
    e->f.refs = copy_list(ptrs, &text, f->refs, f->n_refs);
    e->f.labels = copy_list(ptrs + f->n_refs, &text, f->labels, f->n_labels);
    e->f.runs = copy_list(ptrs + f->n_refs + f->n_labels, &text, f->runs, f->n_runs);
    memcpy(text, br, strlen(br) + 1);
    e->f.build_request_id = text;
    e->payload = (uint8_t *)text + strlen(br) + 1;
    return e;
}

/* A copy of one event the writer just committed. */
static hub_ev *ev_from_event(const el_event *in)
{
    el_fields f = el_event_fields_of(in);
    size_t len = protobuf_c_message_get_packed_size(&in->ev->base);
    hub_ev *e = ev_alloc(in->idx, &f, len);
    protobuf_c_message_pack(&in->ev->base, e->payload); /* the bytes stored as payload */
    return e;
}

/* One row of FETCH_SQL; NULL when it does not parse (its payload too: the
 * ring's bytes are streamed as they are, eventlog_rpc.c). */
static hub_ev *ev_from_row(dbld_arena *a, const dbld_res *r, int row)
{
    char **refs, **labels, **runs;
    el_fields f = {.build_request_id = dbld_res_get(r, row, 1),
                   .kind = (int)dbld_res_i64(r, row, 6)};
    uint8_t *payload;
    size_t len;
    if (dbld_pg_parse_text_array(a, dbld_res_get(r, row, 2), &refs, &f.n_refs) != 0 ||
        dbld_pg_parse_text_array(a, dbld_res_get(r, row, 3), &labels, &f.n_labels) != 0 ||
        dbld_pg_parse_text_array(a, dbld_res_get(r, row, 4), &runs, &f.n_runs) != 0 ||
        dbld_bytea_decode(a, dbld_res_get(r, row, 5), &payload, &len) != 0 ||
        !protobuf_c_message_unpack(&databuild__v1__build_event__descriptor, dbld_arena_allocator(a),
                                   len, payload))
        return NULL;
    f.refs = (const char *const *)refs;
    f.labels = (const char *const *)labels;
    f.runs = (const char *const *)runs;
    hub_ev *e = ev_alloc(dbld_res_i64(r, row, 0), &f, len);
    memcpy(e->payload, payload, len);
    return e;
}

static void pub_free(pub *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->evs[i]);
    free(p->evs);
    free(p);
}

/* ---- the ring (feeder only, under the write lock) ---- */

static hub_ev *ring_at(const el_hub *h, size_t i)
{
    return h->ring[(h->head + i) % EL_HUB_MAX_EVENTS];
}

static void ring_drop_oldest(el_hub *h)
{
    hub_ev *e = h->ring[h->head];
    h->lo = e->idx;
    h->head = (h->head + 1) % EL_HUB_MAX_EVENTS;
    h->count--;
    h->bytes -= e->bytes;
    free(e);
}

/* Append e (idx above high; taken over). */
static void ring_push(el_hub *h, hub_ev *e)
{
    if (h->count == EL_HUB_MAX_EVENTS) ring_drop_oldest(h);
    h->ring[(h->head + h->count) % EL_HUB_MAX_EVENTS] = e;
    h->count++;
    h->bytes += e->bytes;
    h->high = e->idx;
    while (h->bytes > EL_HUB_MAX_BYTES && h->count > 1)
        ring_drop_oldest(h);
}

/* Forget everything: the ring covers nothing below `at` any more. */
static void ring_reset(el_hub *h, int64_t at)
{
    while (h->count)
        ring_drop_oldest(h);
    if (at < h->high) at = h->high;
    h->lo = h->high = at;
    h->ready = 1;
}

/* Tell waiting streams about the new high. */
static void announce(el_hub *h)
{
    pthread_rwlock_rdlock(&h->rw);
    int64_t high = h->ready ? h->high : -1;
    pthread_rwlock_unlock(&h->rw);
    pthread_mutex_lock(&h->mu);
    if (high > h->seen_high) {
        h->seen_high = high;
        pthread_cond_broadcast(&h->high_cv);
    }
    pthread_mutex_unlock(&h->mu);
}

/* ---- the feeder ---- */

#define FETCH_SQL                                                                                  \
    "SELECT idx, build_request_id, partition_refs, job_labels, job_run_ids, payload, kind"         \
    " FROM events"                                                                                 \
    " WHERE idx > $1::bigint AND idx <= $2::bigint ORDER BY idx LIMIT $3::int"

static int feeder_db(el_hub *h, dbld_status *st)
{
    if (h->db && dbld_db_alive(h->db)) return 0;
    dbld_db_close(h->db);
    h->db = NULL;
    return dbld_db_connect(h->dsn, &h->db, st);
}

/* Add the committed events with high < idx <= to from PostgreSQL (to =
 * INT64_MAX: all there are), at most EL_HUB_MAX_EVENTS of them. 0 when the
 * ring reached `to` (or, for INT64_MAX, holds all there were), else not 0
 * (what was read stays in the ring). */
static int fetch(el_hub *h, int64_t to)
{
    dbld_status st;
    dbld_status_clear(&st);
    if (feeder_db(h, &st) != 0) return -1;
    dbld_arena *a = dbld_arena_create();
    int rc = 0;
    for (size_t got = 0; !rc;) {
        dbld_arena_reset(a);
        const char *p[] = {dbld_arena_printf(a, "%" PRId64, h->high),
                           dbld_arena_printf(a, "%" PRId64, to),
                           dbld_arena_printf(a, "%d", FETCH_PAGE)};
        dbld_res *r = NULL;
        rc = dbld_db_exec(h->db, FETCH_SQL, 3, p, &r, &st) ? -1 : 0;
        int rows = dbld_res_rows(r);
        pthread_rwlock_wrlock(&h->rw);
        for (int i = 0; !rc && i < rows; i++) {
            hub_ev *e = ev_from_row(a, r, i);
            if (e)
                ring_push(h, e);
            else
                rc = dbld_status_set(&st, DBLD_DATA_LOSS, "event %s does not parse",
                                     dbld_res_get(r, i, 0));
        }
        if (!rc && rows < FETCH_PAGE && to != INT64_MAX && to > h->high) h->high = to;
        pthread_rwlock_unlock(&h->rw);
        dbld_res_free(r);
        got += (size_t)rows;
        if (rows < FETCH_PAGE) break;
        if (got >= EL_HUB_MAX_EVENTS) /* streams that far behind read PostgreSQL themselves */
            rc = dbld_status_set(&st, DBLD_RESOURCE_EXHAUSTED, "more than %d new events",
                                 EL_HUB_MAX_EVENTS);
    }
    dbld_arena_destroy(a);
    if (rc)
        dbld_log(DBLD_LOG_DEBUG, "commit feed: reading new events failed", "error", st.msg,
                 (char *)NULL);
    return rc;
}

/* The first thing known: the ring starts empty at the log's end. */
static int start_at_end(el_hub *h)
{
    dbld_status st;
    dbld_res *r = NULL;
    if (feeder_db(h, &st) != 0 ||
        dbld_db_exec(h->db, "SELECT coalesce(max(idx), 0) FROM events", 0, NULL, &r, &st) != 0)
        return -1;
    pthread_rwlock_wrlock(&h->rw);
    ring_reset(h, dbld_res_i64(r, 0, 0));
    pthread_rwlock_unlock(&h->rw);
    dbld_res_free(r);
    return 0;
}

/* One published batch into the ring: first what other replicas committed
 * before it, then its own events. */
static void apply(el_hub *h, pub *p)
{
    pthread_rwlock_wrlock(&h->rw);
    if (!h->ready) ring_reset(h, p->prev_max);
    int64_t high = h->high;
    pthread_rwlock_unlock(&h->rw);
    int gap_read = !p->complete || p->prev_max <= high || fetch(h, p->prev_max) == 0;
    pthread_rwlock_wrlock(&h->rw);
    if (!p->complete) { /* its events were not copied */
        ring_reset(h, p->prev_max > p->max_idx ? p->prev_max : p->max_idx);
    } else {
        if (!gap_read) ring_reset(h, p->prev_max);
        for (size_t i = 0; i < p->n; i++)
            if (p->evs[i]->idx > h->high) {
                ring_push(h, p->evs[i]);
                p->evs[i] = NULL;
            }
    }
    pthread_rwlock_unlock(&h->rw);
    pub_free(p);
}

/* Nothing published for a while and streams are open: other replicas'
 * commits (or the log's end, the first time). */
static void poll_db(el_hub *h)
{
    if (!h->ready)
        start_at_end(h);
    else
        fetch(h, INT64_MAX);
}

static void *feeder_main(void *arg)
{
    el_hub *h = arg;
    int64_t last = dbld_mono_ms(); /* last time the ring learned something */
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        if (!h->queue.n) {
            struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, EL_HUB_POLL_MS);
            pthread_cond_timedwait(&h->feed_cv, &h->mu, &ts);
        }
        dbld_fifo list;
        dbld_fifo_take(&h->queue, &list);
        int streams = atomic_load(&h->streams);
        pthread_mutex_unlock(&h->mu);
        if (list.n) {
            pub *p;
            while ((p = DBLD_FIFO_ENTRY(dbld_fifo_pop(&list), pub, link)))
                apply(h, p);
            last = dbld_mono_ms();
        } else if (streams > 0 && (!h->ready || dbld_mono_ms() - last >= EL_HUB_POLL_MS)) {
            poll_db(h);
            last = dbld_mono_ms();
        }
        announce(h);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- public ---- */

el_hub *el_hub_create(const char *dsn)
{
    el_hub *h = dbld_xcalloc(1, sizeof *h);
    h->dsn = dbld_xstrdup(dsn ? dsn : "");
    h->ring = dbld_xcalloc(EL_HUB_MAX_EVENTS, sizeof *h->ring);
    h->seen_high = -1;
    /* the feeder must not wait behind a steady stream of readers */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&h->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&h->mu, NULL);
    dbld_fifo_init(&h->queue);
    dbld_cond_init_mono(&h->feed_cv);
    dbld_cond_init_mono(&h->high_cv);
    atomic_init(&h->streams, 0);
    return h;
}

void el_hub_start(el_hub *h)
{
    if (pthread_create(&h->feeder, NULL, feeder_main, h) == 0)
        h->started = 1;
    else /* streams still work: every one reads PostgreSQL (el_hub_read says BEHIND) */
        dbld_log(DBLD_LOG_ERROR, "could not start the commit feed thread", (char *)NULL);
}

void el_hub_destroy(el_hub *h)
{
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_cond_broadcast(&h->feed_cv);
    pthread_cond_broadcast(&h->high_cv);
    pthread_mutex_unlock(&h->mu);
    if (h->started) pthread_join(h->feeder, NULL);
    pub *p;
    while ((p = DBLD_FIFO_ENTRY(dbld_fifo_pop(&h->queue), pub, link)))
        pub_free(p);
    while (h->count)
        ring_drop_oldest(h);
    free(h->ring);
    dbld_db_close(h->db);
    pthread_rwlock_destroy(&h->rw);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->feed_cv);
    pthread_cond_destroy(&h->high_cv);
    free(h->dsn);
    free(h);
}

void el_hub_publish(el_hub *h, int64_t prev_max, el_event *const *evs, size_t n, int64_t max_idx)
{
    pub *p = dbld_xcalloc(1, sizeof *p);
    p->prev_max = prev_max;
    p->max_idx = max_idx;
    /* copies cost the writer time: only while someone could read them */
    p->complete = n == 0 || atomic_load(&h->streams) > 0;
    if (p->complete && n) {
        p->evs = dbld_xmalloc(n * sizeof *p->evs);
        for (; p->n < n; p->n++)
            p->evs[p->n] = ev_from_event(evs[p->n]);
    }
    int streams = atomic_load(&h->streams) > 0;
    pthread_mutex_lock(&h->mu);
    if (h->queue.n >= QUEUE_MAX_PUBS) { /* the feeder is stuck: keep the marks, drop the copies */
        pub *t = DBLD_FIFO_ENTRY(dbld_fifo_last(&h->queue), pub, link);
        if (p->max_idx > t->max_idx) t->max_idx = p->max_idx;
        if (p->prev_max > t->max_idx) t->max_idx = p->prev_max;
        t->complete = 0;
        pub_free(p);
    } else {
        dbld_fifo_push(&h->queue, &p->link);
    }
    /* without streams the feeder need not wake for every batch: it takes
     * the queue at its next poll or when a stream joins */
    if (streams) pthread_cond_signal(&h->feed_cv);
    pthread_mutex_unlock(&h->mu);
}

static dbld_gauge *streams_gauge(void)
{
    static _Atomic(dbld_gauge *) g;
    dbld_gauge *v = atomic_load(&g);
    if (!v) { /* the same handle whoever registers first */
        v = dbld_gauge_get("databuild_eventlog_subscribe_streams", "Subscribe streams open.", NULL);
        atomic_store(&g, v);
    }
    return v;
}

void el_hub_join(el_hub *h)
{
    atomic_fetch_add(&h->streams, 1);
    dbld_gauge_add(streams_gauge(), 1);
    pthread_mutex_lock(&h->mu);
    pthread_cond_signal(&h->feed_cv); /* the first stream may need the log's end */
    pthread_mutex_unlock(&h->mu);
}

void el_hub_leave(el_hub *h)
{
    atomic_fetch_sub(&h->streams, 1);
    dbld_gauge_add(streams_gauge(), -1);
}

int64_t el_hub_high(el_hub *h)
{
    pthread_rwlock_rdlock(&h->rw);
    int64_t high = h->ready ? h->high : -1;
    pthread_rwlock_unlock(&h->rw);
    return high;
}

/* Position of the first ring entry with idx >= cursor (count if none). */
static size_t ring_find(const el_hub *h, int64_t cursor)
{
    size_t lo = 0, hi = h->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(h, mid)->idx < cursor)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int el_hub_read(el_hub *h, const el_filter *f, int64_t cursor, size_t max_rows, dbld_arena *a,
                el_hub_row **rows, size_t *n, int64_t *next)
{
    *n = 0;
    *next = cursor;
    *rows = dbld_arena_alloc(a, (max_rows + 1) * sizeof **rows);
    pthread_rwlock_rdlock(&h->rw);
    if (!h->ready || cursor <= h->lo) {
        pthread_rwlock_unlock(&h->rw);
        return EL_HUB_BEHIND;
    }
    size_t i = ring_find(h, cursor), scanned = 0;
    for (; i < h->count && *n < max_rows && scanned < SCAN_MAX; i++, scanned++) {
        const hub_ev *e = ring_at(h, i);
        *next = e->idx + 1;
        if (!el_filter_match(f, &e->f)) continue;
        uint8_t *copy = dbld_arena_alloc(a, e->len ? e->len : 1);
        memcpy(copy, e->payload, e->len);
        (*rows)[(*n)++] = (el_hub_row){e->idx, copy, e->len};
    }
    if (i == h->count && h->high >= cursor) *next = h->high + 1;
    pthread_rwlock_unlock(&h->rw);
    return 0;
}

void el_hub_wait(el_hub *h, int64_t after, int64_t timeout_ms)
{
    struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, timeout_ms);
    pthread_mutex_lock(&h->mu);
    while (h->seen_high <= after && !h->stop)
        if (pthread_cond_timedwait(&h->high_cv, &h->mu, &ts) == ETIMEDOUT) break;
    pthread_mutex_unlock(&h->mu);
}
