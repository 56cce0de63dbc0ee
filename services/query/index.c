/* index.c - the partition index: GetPartitionsSummary and ListPartitions
 * answered from memory, following the event log's commits.
 *
 * What it holds, per partition ref mentioned by any event: the partitions
 * projection's row (status, updated_ns, last_invalidated_ns,
 * build_request_id, tainted; `row` 0 while no row exists) and the build
 * requests of the events mentioning the ref, most recent first, at most
 * Q_PAST_BUILDS - exactly what SUMMARY_SQL / LIST_SQL in partitions.c read.
 * Refs sit in one array sorted bytewise (ListPartitions' order under the C
 * collation), found by binary search (see Memory below); build ids are
 * interned (4 bytes per history entry).
 *
 * How it follows PostgreSQL: one thread (the follower) loads everything in
 * one REPEATABLE READ snapshot (the rows, then the histories aggregated from
 * the events' ref column, and the snapshot's highest idx S), then subscribes
 * to the event log from S + 1 (EventLog.Subscribe: every committed event in
 * idx order, read from PostgreSQL when behind). Per batch of events it
 *   - moves each event's build request to the front of each mentioned ref's
 *     history (idx order is commit order, so this is "ORDER BY max(idx)
 *     DESC"),
 *   - re-reads the partitions rows of the mentioned refs (one statement per
 *     batch), so the row fields are the projection's own, never a second
 *     implementation of its rules.
 * A broken stream makes the index not ready (answers come from SQL) until a
 * new subscription from the last applied idx has caught up with the
 * events' highest idx as of its start; a batch that cannot be applied (its
 * rows not read) drops the index and reloads it from the projections.
 *
 * Consistency: a call answered from the index first passes the freshness
 * gate (below): it is answered once the index has applied every event
 * committed before the call arrived, so a client that appended and then
 * reads sees its write, as on the SQL path; answers equal the SQL path's.
 * While it is not ready, or cannot answer exactly (a ref it has no row for,
 * a pattern it has not seen PostgreSQL accept, a pattern outside the subset
 * whose meaning is the same in PostgreSQL's regex engine and POSIX ERE, a
 * database whose collation does not sort bytewise), the call runs its SQL.
 *
 * Memory (bounded by query.index_max_partitions, default 1,000,000; over it
 * the index switches itself off and every answer comes from SQL): per
 * partition 48 bytes of entry + the ref (rounded up to 16 bytes together) +
 * 8-16 bytes of sorted array, ~ 80 bytes for a 16-byte ref, plus 4 bytes per
 * past build beyond the first 4 (in a malloc'd array); per build id ~ 60
 * bytes. Refs are found by binary search in the sorted array, not in a hash
 * map: the map's slots (24 bytes, at most half full) cost 48-96 bytes per
 * partition, more than the entry, and a lookup of a few hundred nanoseconds
 * is nothing beside the call around it. Only the entries added since the
 * last merge into the sorted array (one batch, or a load) are in a map.
 */
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#include "query.h"

#include "event_meta.h"

#include "dbld/fifo.h"
#include "dbld/log.h"
#include "dbld/metrics.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define QI_INLINE 4      /* past builds kept in the entry itself */
#define QI_FETCH "5000"  /* rows per FETCH of the load */
#define QI_BATCH 2000    /* events applied under one lock */
#define QI_PATTERNS 32   /* ref_patterns PostgreSQL accepted, remembered */
#define QI_WAIT_MS 200   /* stream wait between checks of stop */
#define QI_RETRY_MS 1000 /* after a failure */
#define QI_SUBSCRIBE "/databuild.v1.EventLog/Subscribe"
#define QI_PAGES 8      /* ListBuildRequests pages kept packed */
#define QI_PAGE_KEY 256 /* their requests' packed size at most */

/* A ListBuildRequests page as packed for every call asking for it (same
 * request bytes) while the index stays at `version`. */
typedef struct qi_page {
    uint64_t version;
    size_t key_len;
    unsigned char key[QI_PAGE_KEY];
    dbld_packed *page; /* NULL: free slot */
} qi_page;

/* A ref_pattern PostgreSQL accepted, compiled once (regexec on one regex_t
 * is thread-safe in glibc). refs (under mu): lookups using it; one evicted
 * from the list is freed by its last user. */
typedef struct qi_pat {
    char *pat;
    regex_t rx; /* ^(pat)$, POSIX ERE */
    int refs, evicted;
} qi_pat;

typedef struct qi_part {
    int64_t updated, invalidated;
    uint32_t brid; /* the row's build_request_id, interned (0: "") */
    int32_t status;
    uint16_t n_hist, cap_hist; /* cap_hist 0: hist.in */
    uint8_t row;               /* a partitions row exists */
    uint8_t tainted;
    union {
        uint32_t in[QI_INLINE];
        uint32_t *out;
    } hist; /* interned build ids, most recent first */
    char ref[];
} qi_part;

/* One loaded generation; a reload builds a new one and frees the old. */
typedef struct qi_data {
    dbld_arena *a;    /* entries and build id strings */
    qi_part **sorted; /* every entry; bytewise by ref up to n_merged */
    size_t n_sorted, cap_sorted, n_merged;
    dbld_strmap fresh; /* ref -> (qi_part *) of sorted[n_merged..] (malloc'd arrays) */
    dbld_strmap bids;  /* build id -> index into bid */
    const char **bid;
    size_t n_bid, cap_bid;
    size_t n_rows, n_nonascii, n_hist_out;
    int c_order; /* the database's collation sorts bytewise */
    int64_t applied;
    qb_store *builds; /* the build index (bindex.c) */
} qi_data;

struct q_index {
    q_ctx *q;
    size_t max_parts, max_builds;
    pthread_rwlock_t rw; /* d and its contents, version */
    qi_data *d;
    uint64_t version; /* bumped whenever d or its contents change */
    pthread_mutex_t pages_mu;
    qi_page pages[QI_PAGES];
    size_t next_page;
    atomic_int ready;
    pthread_mutex_t mu; /* stop, pats */
    pthread_cond_t cv;
    int stop;
    qi_pat *pats[QI_PATTERNS];
    size_t n_pats, next_pat;
    pthread_t th;
    int started;
    int too_big; /* follower: over max_parts, switched off */
    dbld_db *db; /* the follower's connection */
    /* the freshness gate (under mu) */
    dbld_fifo gate_q;       /* q_job.link: calls waiting for the next probe */
    dbld_fifo probe_q;      /* the calls the probe in flight serves */
    int probing;            /* a probe is in flight */
    dbld_fifo slow_q;       /* calls whose probe's idx the follower has not applied yet */
    pthread_cond_t gate_cv; /* gate thread: slow_q filled / stop */
    pthread_cond_t idx_cv;  /* gate thread: applied_pub grew / not ready */
    int64_t applied_pub;    /* the follower's applied idx, published */
    pthread_t gate_th;
    int gate_started;
};

static dbld_counter *g_hits_summary, *g_hits_list, *g_sql_summary, *g_sql_list, *g_reloads;
static dbld_counter *g_hits_builds, *g_sql_builds;
static dbld_gauge *g_ready, *g_parts, *g_idx, *g_builds;

static void metrics_init(void)
{
    const char *h = "Partition lookups answered from the index (source=index) or PostgreSQL";
    g_hits_summary = dbld_counter_get("databuild_query_index_lookups_total", h,
                                      "rpc=\"GetPartitionsSummary\",source=\"index\"");
    g_sql_summary = dbld_counter_get("databuild_query_index_lookups_total", h,
                                     "rpc=\"GetPartitionsSummary\",source=\"sql\"");
    g_hits_list = dbld_counter_get("databuild_query_index_lookups_total", h,
                                   "rpc=\"ListPartitions\",source=\"index\"");
    g_sql_list = dbld_counter_get("databuild_query_index_lookups_total", h,
                                  "rpc=\"ListPartitions\",source=\"sql\"");
    g_hits_builds = dbld_counter_get("databuild_query_index_lookups_total", h,
                                     "rpc=\"ListBuildRequests\",source=\"index\"");
    g_sql_builds = dbld_counter_get("databuild_query_index_lookups_total", h,
                                    "rpc=\"ListBuildRequests\",source=\"sql\"");
    g_builds = dbld_gauge_get("databuild_query_index_builds",
                              "Build requests in the index (0: over query.index_max_builds)", NULL);
    g_reloads = dbld_counter_get("databuild_query_index_loads_total",
                                 "Loads of the partition index from the projections", NULL);
    g_ready =
        dbld_gauge_get("databuild_query_index_ready",
                       "1 while the partition index answers (caught up with the event log)", NULL);
    g_parts =
        dbld_gauge_get("databuild_query_index_partitions", "Refs in the partition index", NULL);
    g_idx = dbld_gauge_get("databuild_query_index_applied_idx",
                           "Highest event idx applied to the partition index", NULL);
}

static void pat_free(qi_pat *p)
{
    if (!p) return;
    regfree(&p->rx);
    free(p->pat);
    free(p);
}

/* ---- one generation ---- */

static qi_data *data_new(void)
{
    qi_data *d = dbld_xcalloc(1, sizeof *d);
    d->a = dbld_arena_create();
    dbld_strmap_init(&d->fresh, NULL);
    dbld_strmap_init(&d->bids, NULL);
    d->bid = dbld_xmalloc(16 * sizeof *d->bid);
    d->cap_bid = 16;
    d->bid[d->n_bid++] = ""; /* 0: no build request */
    return d;
}

static void data_free(qi_data *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->n_sorted; i++)
        if (d->sorted[i]->cap_hist) free(d->sorted[i]->hist.out);
    dbld_strmap_free(&d->fresh);
    dbld_strmap_free(&d->bids);
    free(d->sorted);
    free(d->bid);
    qb_store_free(d->builds);
    dbld_arena_destroy(d->a);
    free(d);
}

static uint32_t bid_intern(qi_data *d, const char *id)
{
    if (!id || !*id) return 0;
    size_t v = dbld_strmap_find(&d->bids, id);
    if (v != DBLD_STRMAP_NONE) return (uint32_t)v;
    if (d->n_bid == d->cap_bid) {
        d->cap_bid *= 2;
        d->bid = dbld_xrealloc(d->bid, d->cap_bid * sizeof *d->bid);
    }
    const char *s = dbld_arena_strdup(d->a, id);
    d->bid[d->n_bid] = s;
    dbld_strmap_put(&d->bids, s, d->n_bid);
    return (uint32_t)d->n_bid++;
}

static int is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 0;
    return 1;
}

static int by_ref(const void *x, const void *y)
{
    return strcmp((*(qi_part *const *)x)->ref, (*(qi_part *const *)y)->ref);
}

/* The merged entry of ref, or NULL. */
static qi_part *find_merged(const qi_data *d, const char *ref)
{
    size_t lo = 0, hi = d->n_merged;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(d->sorted[mid]->ref, ref);
        if (c == 0) return d->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The entry of ref; created (not yet in sorted: *fresh says so) when absent. */
static qi_part *part_get(qi_data *d, const char *ref, int *fresh)
{
    qi_part *p = find_merged(d, ref);
    size_t v = p ? 0 : dbld_strmap_find(&d->fresh, ref);
    if (!p && v != DBLD_STRMAP_NONE) p = (qi_part *)(uintptr_t)v;
    *fresh = !p;
    if (p) return p;
    size_t len = strlen(ref);
    p = dbld_arena_alloc(d->a, sizeof *p + len + 1); /* zeroed */
    memcpy(p->ref, ref, len + 1);
    dbld_strmap_put(&d->fresh, p->ref, (size_t)(uintptr_t)p);
    if (!is_ascii(ref)) d->n_nonascii++;
    return p;
}

static void sorted_push(qi_data *d, qi_part *p)
{
    if (d->n_sorted == d->cap_sorted) {
        d->cap_sorted = d->cap_sorted ? 2 * d->cap_sorted : 1024;
        d->sorted = dbld_xrealloc(d->sorted, d->cap_sorted * sizeof *d->sorted);
    }
    d->sorted[d->n_sorted++] = p;
}

/* Merge the entries pushed since the last merge (in any order) into the rest. */
static void sorted_merge(qi_data *d)
{
    size_t n_old = d->n_merged, n_new = d->n_sorted - n_old;
    d->n_merged = d->n_sorted;
    if (!n_new) return;
    dbld_strmap_free(&d->fresh); /* they are found by binary search now */
    dbld_strmap_init(&d->fresh, NULL);
    qi_part **s = d->sorted;
    qsort(s + n_old, n_new, sizeof *s, by_ref);
    if (!n_old || strcmp(s[n_old - 1]->ref, s[n_old]->ref) < 0) return;
    qi_part **fresh = dbld_xmalloc(n_new * sizeof *fresh);
    memcpy(fresh, s + n_old, n_new * sizeof *fresh);
    size_t i = n_old, j = n_new, k = d->n_sorted; /* merge from the back */
    while (j > 0) {
        if (i > 0 && strcmp(s[i - 1]->ref, fresh[j - 1]->ref) > 0)
            s[--k] = s[--i];
        else
            s[--k] = fresh[--j];
    }
    free(fresh);
}

static uint32_t *hist_of(qi_part *p)
{
    return p->cap_hist ? p->hist.out : p->hist.in;
}

/* Room for one more past build (n_hist < Q_PAST_BUILDS). */
static void hist_grow(qi_data *d, qi_part *p)
{
    size_t cap = p->cap_hist ? p->cap_hist : QI_INLINE;
    if (p->n_hist < cap) return;
    size_t ncap = cap * 2 < Q_PAST_BUILDS ? cap * 2 : Q_PAST_BUILDS;
    uint32_t *h = dbld_xmalloc(ncap * sizeof *h);
    memcpy(h, hist_of(p), p->n_hist * sizeof *h);
    if (p->cap_hist)
        free(p->hist.out);
    else
        d->n_hist_out++;
    p->hist.out = h;
    p->cap_hist = (uint16_t)ncap;
}

/* The load's rows come most recent first. */
static void hist_append(qi_data *d, qi_part *p, uint32_t b)
{
    if (p->n_hist >= Q_PAST_BUILDS) return;
    hist_grow(d, p);
    hist_of(p)[p->n_hist++] = b;
}

/* An event of build b mentions p: b becomes its most recent build. */
static void hist_touch(qi_data *d, qi_part *p, uint32_t b)
{
    uint32_t *h = hist_of(p);
    size_t i = 0;
    while (i < p->n_hist && h[i] != b)
        i++;
    if (i == p->n_hist) { /* new: the oldest falls off a full history */
        if (p->n_hist < Q_PAST_BUILDS) {
            hist_grow(d, p);
            h = hist_of(p);
            p->n_hist++;
        } else {
            i = Q_PAST_BUILDS - 1;
        }
    }
    memmove(h + 1, h, i * sizeof *h);
    h[0] = b;
}

/* Row i of PARTS_SQL into p. */
#define PARTS_COLS "ref, status, updated_ns, last_invalidated_ns, build_request_id, tainted"
static void apply_row(qi_data *d, qi_part *p, const dbld_res *r, int i)
{
    if (!p->row) d->n_rows++;
    p->row = 1;
    p->status = (int32_t)dbld_res_i64(r, i, 1);
    p->updated = dbld_res_i64(r, i, 2);
    p->invalidated = dbld_res_i64(r, i, 3);
    p->brid = bid_intern(d, dbld_res_get(r, i, 4));
    p->tainted = dbld_res_get(r, i, 5)[0] == 't';
}

/* ---- loading ---- */

static int stopped(q_index *x)
{
    pthread_mutex_lock(&x->mu);
    int s = x->stop;
    pthread_mutex_unlock(&x->mu);
    return s;
}

static int interrupt(void *arg)
{
    return stopped(arg) ? DBLD_CANCELLED : 0;
}

static int exec(q_index *x, const char *sql, int n, const char *const *p, dbld_res **out,
                dbld_status *st)
{
    return dbld_db_exec(x->db, sql, n, p, out, st);
}

/* FETCH from cursor `name` until empty, fn per result. */
static int fetch_all(q_index *x, qi_data *d, const char *name,
                     int (*fn)(q_index *, qi_data *, const dbld_res *, dbld_status *),
                     dbld_status *st)
{
    char sql[64];
    snprintf(sql, sizeof sql, "FETCH " QI_FETCH " FROM %s", name);
    for (;;) {
        dbld_res *r = NULL;
        int rc = exec(x, sql, 0, NULL, &r, st);
        if (rc) return rc;
        int n = dbld_res_rows(r);
        rc = n ? fn(x, d, r, st) : 0;
        dbld_res_free(r);
        if (rc || !n) return rc;
    }
}

static int load_rows(q_index *x, qi_data *d, const dbld_res *r, dbld_status *st)
{
    for (int i = 0; i < dbld_res_rows(r); i++) {
        int fresh;
        qi_part *p = part_get(d, dbld_res_get(r, i, 0), &fresh);
        if (fresh) sorted_push(d, p);
        apply_row(d, p, r, i);
    }
    if (d->n_sorted > x->max_parts) {
        x->too_big = 1;
        return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                               "more than query.index_max_partitions (%zu) refs", x->max_parts);
    }
    return 0;
}

static int load_hist(q_index *x, qi_data *d, const dbld_res *r, dbld_status *st)
{
    for (int i = 0; i < dbld_res_rows(r); i++) {
        int fresh;
        qi_part *p = part_get(d, dbld_res_get(r, i, 0), &fresh);
        if (fresh) sorted_push(d, p);
        hist_append(d, p, bid_intern(d, dbld_res_get(r, i, 1)));
    }
    if (d->n_sorted > x->max_parts) {
        x->too_big = 1;
        return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                               "more than query.index_max_partitions (%zu) refs", x->max_parts);
    }
    return 0;
}

static int load_body(q_index *x, qi_data *d, dbld_status *st)
{
    dbld_res *r = NULL;
    int rc = exec(x,
                  "SELECT coalesce((SELECT max(idx) FROM events), 0),"
                  " (SELECT datcollate IN ('C', 'POSIX') FROM pg_database"
                  "  WHERE datname = current_database())",
                  0, NULL, &r, st);
    if (rc) return rc;
    d->applied = dbld_res_i64(r, 0, 0);
    d->c_order = dbld_res_get(r, 0, 1)[0] == 't';
    dbld_res_free(r);
    rc = exec(x, "DECLARE qi_rows NO SCROLL CURSOR FOR SELECT " PARTS_COLS " FROM partitions", 0,
              NULL, NULL, st);
    if (!rc) rc = fetch_all(x, d, "qi_rows", load_rows, st);
    if (rc) return rc;
    /* SUMMARY_SQL's history of every ref at once */
    rc = exec(x,
              "DECLARE qi_hist NO SCROLL CURSOR FOR"
              " SELECT r.ref, e.build_request_id FROM events e"
              " CROSS JOIN LATERAL unnest(e.partition_refs) AS r(ref)"
              " WHERE e.build_request_id <> '' GROUP BY 1, 2 ORDER BY 1, max(e.idx) DESC",
              0, NULL, NULL, st);
    if (!rc) rc = fetch_all(x, d, "qi_hist", load_hist, st);
    return rc;
}

/* A new generation from the projections, as of one snapshot. */
static int load(q_index *x, qi_data **out, dbld_status *st)
{
    int64_t t0 = dbld_mono_ms();
    qi_data *d = data_new();
    d->builds = qb_store_new(x->max_builds);
    int rc = exec(x, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL, st);
    if (!rc) {
        rc = load_body(x, d, st);
        if (!rc) rc = qb_store_load(d->builds, x->db, st);
        dbld_status tst;
        dbld_status_clear(&tst);
        int trc = exec(x, rc ? "ROLLBACK" : "COMMIT", 0, NULL, NULL, &tst);
        if (!rc && trc) {
            rc = trc;
            *st = tst;
        }
    }
    if (rc) {
        data_free(d);
        return rc;
    }
    sorted_merge(d);
    malloc_trim(0); /* the FETCH results, the map of the load's entries */
    dbld_counter_add(g_reloads, 1);
    dbld_logf(DBLD_LOG_INFO,
              "partition index loaded: %zu refs (%zu rows), %zu build ids, %zu build requests,"
              " idx %" PRId64 ", %" PRId64 " ms",
              d->n_sorted, d->n_rows, d->n_bid - 1, qb_store_count(d->builds), d->applied,
              dbld_mono_ms() - t0);
    *out = d;
    return 0;
}

/* ---- following the commits ---- */

typedef struct qi_batch {
    dbld_arena *a;
    dbld_strmap touched; /* ref -> index into refs */
    const char **refs;
    size_t n_refs, cap_refs;
    struct qi_touch {
        const char *ref, *brid;
    } * touches; /* in idx order */
    size_t n_touches, cap_touches;
    int64_t last_idx;
    size_t n_events;
    qb_batch *bb; /* the build index's part (bindex.c) */
} qi_batch;

static void batch_reset(qi_batch *b)
{
    dbld_arena_reset(b->a);
    memset(&b->touched, 0, sizeof b->touched);
    dbld_strmap_init(&b->touched, b->a);
    b->refs = NULL;
    b->touches = NULL;
    b->n_refs = b->cap_refs = b->n_touches = b->cap_touches = 0;
    b->n_events = 0;
    qb_batch_reset(b->bb, b->a);
}

static void batch_add(qi_batch *b, const Databuild__V1__IndexedEvent *ie)
{
    b->n_events++;
    if (ie->idx > b->last_idx) b->last_idx = ie->idx;
    qb_batch_add(b->bb, ie);
    if (!ie->event) return;
    el_fields f;
    el_event_fields(b->a, ie->event, &f);
    for (size_t i = 0; i < f.n_refs; i++) {
        int added;
        size_t next = b->n_refs;
        dbld_strmap_index(&b->touched, f.refs[i], &next, &added);
        if (added) {
            if (b->n_refs == b->cap_refs) {
                size_t cap = b->cap_refs ? 2 * b->cap_refs : 64;
                const char **g = dbld_arena_alloc(b->a, cap * sizeof *g);
                if (b->n_refs) memcpy(g, b->refs, b->n_refs * sizeof *g);
                b->refs = g;
                b->cap_refs = cap;
            }
            b->refs[b->n_refs++] = f.refs[i];
        }
        if (!*f.build_request_id) continue;
        if (b->n_touches == b->cap_touches) {
            size_t cap = b->cap_touches ? 2 * b->cap_touches : 64;
            struct qi_touch *g = dbld_arena_alloc(b->a, cap * sizeof *g);
            if (b->n_touches) memcpy(g, b->touches, b->n_touches * sizeof *g);
            b->touches = g;
            b->cap_touches = cap;
        }
        b->touches[b->n_touches++] = (struct qi_touch){f.refs[i], f.build_request_id};
    }
}

/* Apply a batch: rows read first (no lock held), then one write lock. */
static int batch_apply(q_index *x, qi_batch *b, dbld_status *st)
{
    dbld_res *r = NULL;
    if (b->n_refs) {
        const char *p[] = {dbld_pg_text_array(b->a, b->refs, b->n_refs)};
        int rc = exec(x, "SELECT " PARTS_COLS " FROM partitions WHERE ref = ANY($1::text[])", 1, p,
                      &r, st);
        if (rc) return rc;
    }
    int brc = qb_batch_read(b->bb, x->d->builds, x->db, st); /* x->d: only this thread sets it */
    if (brc) {
        dbld_res_free(r);
        return brc;
    }
    pthread_rwlock_wrlock(&x->rw);
    x->version++;
    qi_data *d = x->d;
    qb_batch_apply(d->builds, b->bb);
    size_t n_builds = qb_store_count(d->builds);
    for (size_t i = 0; i < b->n_touches; i++) {
        int fresh;
        qi_part *p = part_get(d, b->touches[i].ref, &fresh);
        if (fresh) sorted_push(d, p);
        hist_touch(d, p, bid_intern(d, b->touches[i].brid));
    }
    for (int i = 0; r && i < dbld_res_rows(r); i++) {
        int fresh;
        qi_part *p = part_get(d, dbld_res_get(r, i, 0), &fresh);
        if (fresh) sorted_push(d, p);
        apply_row(d, p, r, i);
    }
    sorted_merge(d);
    if (b->last_idx > d->applied) d->applied = b->last_idx;
    size_t n = d->n_sorted;
    int64_t applied = d->applied;
    pthread_rwlock_unlock(&x->rw);
    dbld_res_free(r);
    pthread_mutex_lock(&x->mu);
    x->applied_pub = applied;
    pthread_cond_broadcast(&x->idx_cv);
    pthread_mutex_unlock(&x->mu);
    dbld_gauge_set(g_parts, (int64_t)n);
    dbld_gauge_set(g_idx, applied);
    dbld_gauge_set(g_builds, (int64_t)n_builds);
    if (n > x->max_parts) {
        x->too_big = 1;
        return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                               "more than query.index_max_partitions (%zu) refs", x->max_parts);
    }
    return 0;
}

static void set_ready(q_index *x, int on)
{
    atomic_store(&x->ready, on);
    dbld_gauge_set(g_ready, on);
    pthread_mutex_lock(&x->mu);
    pthread_cond_broadcast(&x->idx_cv); /* the gate stops waiting for a stale index */
    pthread_mutex_unlock(&x->mu);
}

static void nap(q_index *x, int64_t ms)
{
    pthread_mutex_lock(&x->mu);
    struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, ms);
    if (!x->stop) pthread_cond_timedwait(&x->cv, &x->mu, &ts);
    pthread_mutex_unlock(&x->mu);
}

/* Follow one subscription until it breaks (0), a batch fails (its code:
 * reload) or stop. */
static int follow(q_index *x, qi_batch *b, dbld_status *st)
{
    pthread_rwlock_rdlock(&x->rw);
    int64_t from = x->d->applied + 1;
    pthread_rwlock_unlock(&x->rw);
    dbld_res *r = NULL;
    int rc = exec(x, "SELECT coalesce(max(idx), 0) FROM events", 0, NULL, &r, st);
    if (rc) return 0; /* retried by the caller */
    int64_t target = dbld_res_i64(r, 0, 0);
    dbld_res_free(r);
    Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
    req.start_idx = from;
    dbld_stream *s = NULL;
    if (dbld_client_stream_open(dbld_client_get(x->q->cfg->shared.peers.eventlog), QI_SUBSCRIBE,
                                &req.base, 0, &s, st) != 0)
        return 0;
    int ready = from > target;
    set_ready(x, ready);
    rc = 0;
    int ended = 0, applied_since_trim = 0, got_any = 0;
    while (!ended && !stopped(x)) {
        batch_reset(b);
        ProtobufCMessage *m = NULL;
        dbld_status sst;
        dbld_status_clear(&sst);
        int code = dbld_stream_next(s, &databuild__v1__indexed_event__descriptor,
                                    dbld_arena_allocator(b->a), &m, QI_WAIT_MS, &sst);
        if (!m && code == DBLD_DEADLINE_EXCEEDED) {
            if (applied_since_trim) { /* the stream went quiet: give the batches' memory back */
                malloc_trim(0);
                applied_since_trim = 0;
            }
            continue;
        }
        while (m) {
            batch_add(b, (Databuild__V1__IndexedEvent *)m);
            if (b->n_events >= QI_BATCH) break;
            m = NULL; /* whatever else has arrived */
            code = dbld_stream_next(s, &databuild__v1__indexed_event__descriptor,
                                    dbld_arena_allocator(b->a), &m, 1, &sst);
        }
        ended = !m && code != DBLD_DEADLINE_EXCEEDED && b->n_events < QI_BATCH;
        if (ended) /* a stream refused at once (e.g. no event log yet) is retried quietly */
            dbld_logf(got_any || ready ? DBLD_LOG_WARN : DBLD_LOG_DEBUG,
                      "partition index: event stream ended: %s", code ? sst.msg : "by the server");
        got_any |= b->n_events > 0;
        if (b->n_events) {
            rc = batch_apply(x, b, st);
            if (rc) break;
            applied_since_trim = 1;
            if (!ready && b->last_idx >= target) set_ready(x, ready = 1);
        }
    }
    set_ready(x, 0);
    dbld_stream_close(s);
    return rc;
}

static void drop_data(q_index *x)
{
    set_ready(x, 0);
    pthread_rwlock_wrlock(&x->rw);
    x->version++;
    qi_data *d = x->d;
    x->d = NULL;
    pthread_rwlock_unlock(&x->rw);
    data_free(d);
    malloc_trim(0);
}

static void *follower_main(void *arg)
{
    q_index *x = arg;
    const dbld_config *cfg = x->q->cfg;
    qi_batch b = {.a = dbld_arena_create(), .bb = qb_batch_new()};
    while (!stopped(x)) {
        dbld_status st;
        dbld_status_clear(&st);
        if (!x->db) {
            /* the read session, without the statement timeout: the load is one long read */
            dbld_db_opts o = {.read_only = 1};
            if (dbld_db_connect_opts(cfg->query.postgres_dsn ? cfg->query.postgres_dsn : "", &o,
                                     &x->db, &st) != 0) {
                x->db = NULL;
                nap(x, QI_RETRY_MS);
                continue;
            }
            dbld_db_set_interrupt(x->db, interrupt, x);
        }
        if (!x->d) {
            qi_data *d = NULL;
            int rc = load(x, &d, &st);
            if (x->too_big) {
                dbld_logf(DBLD_LOG_WARN, "partition index off: %s; answers come from SQL", st.msg);
                break;
            }
            if (rc) {
                if (!stopped(x))
                    dbld_logf(DBLD_LOG_WARN, "partition index: load failed: %s", st.msg);
                dbld_db_close(x->db);
                x->db = NULL;
                nap(x, QI_RETRY_MS);
                continue;
            }
            pthread_rwlock_wrlock(&x->rw);
            x->version++;
            x->d = d;
            pthread_rwlock_unlock(&x->rw);
            pthread_mutex_lock(&x->mu);
            x->applied_pub = d->applied;
            pthread_mutex_unlock(&x->mu);
            dbld_gauge_set(g_parts, (int64_t)d->n_sorted);
            dbld_gauge_set(g_idx, d->applied);
            dbld_gauge_set(g_builds, (int64_t)qb_store_count(d->builds));
        }
        int rc = follow(x, &b, &st);
        if (x->too_big) {
            dbld_logf(DBLD_LOG_WARN, "partition index off: %s; answers come from SQL", st.msg);
            drop_data(x);
            break;
        }
        if (rc && !stopped(x)) { /* a batch that could not be applied: start over */
            dbld_logf(DBLD_LOG_WARN, "partition index: reloading: %s", st.msg);
            drop_data(x);
            dbld_db_close(x->db);
            x->db = NULL;
        }
        if (!dbld_db_alive(x->db)) {
            dbld_db_close(x->db);
            x->db = NULL;
        }
        nap(x, rc ? QI_RETRY_MS : 100);
    }
    qb_batch_free(b.bb);
    dbld_arena_destroy(b.a);
    return NULL;
}

/* q_index_gate()'s answer on arrival runs on an RPC poller, which must not
 * wait for the follower's write lock: there a busy index means "after the
 * probe" (qi_busy), not "ask SQL". */
static __thread int qi_try, qi_busy;

static int read_lock(q_index *x)
{
    if (!qi_try) {
        pthread_rwlock_rdlock(&x->rw);
        return 1;
    }
    if (pthread_rwlock_tryrdlock(&x->rw) == 0) return 1;
    qi_busy = 1;
    return 0;
}

/* ---- the freshness gate ----
 *
 * A call answered from the index must see every write committed before it
 * arrived (a client that appended and then reads sees its write, as with
 * SQL). So the index answers a call only once it has applied the events'
 * highest idx M read by a probe sent after the call arrived.
 *
 * The probe (GATE_SQL, prepared) is a q_job on the reactor's connections
 * (qasync.c), carried by a call of the group it serves: the call that
 * finds no probe in flight sends it from its own thread (the poller: no
 * hand-off) with every call waiting, and the reactor thread, woken by the
 * result, answers them at once when the follower has applied M (normally:
 * the stream runs ahead of the probe), so a call costs no thread hand-off
 * beyond the wake-up on PostgreSQL's answer. Calls arriving while a probe
 * is in flight wait for the next one (a probe that started before them
 * cannot vouch for them), which the reactor sends as soon as the one in
 * flight returns: at most one probe in flight, under load one serves
 * hundreds of calls. When the follower is behind M, the group waits on the
 * gate thread (at most QI_GATE_WAIT_MS). What the index cannot answer, or
 * when it is not ready, the probe fails or M is not reached in time, runs
 * its statements as if there were no index (or, for ListBuildRequests,
 * whose SQL is no reactor job, its blocking handler on a worker).
 */
#define QI_GATE_WAIT_MS 2000
#define GATE_SQL "SELECT coalesce(max(idx), 0) FROM events"

/* Answer j, now that the index has applied m: with the answer computed on
 * arrival when the index had applied m already then, else a new one. */
static void gate_answer(q_job *j, int64_t m)
{
    if (j->fresh_worker) {
        dbld_call_to_workers(j->call, j->fresh_worker);
        return;
    }
    if (j->pre && j->pre_idx >= m) {
        dbld_call_complete_held(j->call);
        return;
    }
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = j->index_fn(&j->r, j, &resp, &st);
    if (rc == Q_INDEX_MISS)
        q_job_run_sql(j);
    else
        dbld_call_complete(j->call, rc, rc ? st.msg : "", rc ? NULL : resp);
}

/* Answer the calls in `calls`: from the index when fresh (it applied m),
 * else by SQL. */
static void gate_release(dbld_fifo *calls, int fresh, int64_t m)
{
    q_job *j;
    while ((j = DBLD_FIFO_ENTRY(dbld_fifo_pop(calls), q_job, link)) != NULL) {
        if (fresh)
            gate_answer(j, m);
        else
            q_job_run_sql(j);
    }
}

static void gate_probed(q_job *p, int rc, dbld_status *st);

/* Send the probe for the calls in probe_q, carried by `carrier` (one of
 * them; the probe lives in its arena, so carrier is answered last). */
static void gate_probe_send(q_job *carrier)
{
    q_job *p = dbld_arena_alloc(carrier->r.a, sizeof *p);
    memset(p, 0, sizeof *p);
    p->call = carrier->call;
    p->op = "read the events' highest idx";
    p->r = carrier->r;
    p->stmts[0] = (dbld_stmt){.name = "q_gate_probe", .sql = GATE_SQL, .out = &p->res[0]};
    p->n = 1;
    p->done = gate_probed;
    q_job_run_sql(p); /* a failure to send calls gate_probed at once */
}

/* The reactor (or the sender, when the probe could not be sent): the probe
 * returned M (rc 0) or failed. */
static void gate_probed(q_job *p, int rc, dbld_status *st)
{
    (void)st;
    q_index *x = p->r.q->index;
    dbld_call *carrier = p->call;
    int64_t m = rc == 0 && dbld_res_rows(p->res[0]) == 1 ? dbld_res_i64(p->res[0], 0, 0) : -1;
    dbld_res_free(p->res[0]);
    p->res[0] = NULL;
    dbld_fifo group, late;
    dbld_fifo_init(&late);
    pthread_mutex_lock(&x->mu);
    dbld_fifo_take(&x->probe_q, &group);
    int ready = atomic_load(&x->ready) && !x->stop;
    int fresh = m >= 0 && ready && x->applied_pub >= m;
    if (m >= 0 && ready && !fresh) { /* the follower is behind M: the gate thread waits */
        q_job *j;
        while ((j = DBLD_FIFO_ENTRY(dbld_fifo_pop(&group), q_job, link)) != NULL) {
            j->gate_idx = m;
            dbld_fifo_push(&x->slow_q, &j->link);
        }
        pthread_cond_signal(&x->gate_cv);
    }
    /* the calls that came during this probe get the next one */
    q_job *next = NULL;
    if (x->gate_q.n && !x->stop) {
        dbld_fifo_take(&x->gate_q, &x->probe_q);
        next = DBLD_FIFO_ENTRY(dbld_fifo_first(&x->probe_q), q_job, link);
    } else {
        x->probing = 0;
        dbld_fifo_take(&x->gate_q, &late); /* stopping: to SQL */
    }
    pthread_mutex_unlock(&x->mu);
    if (next) gate_probe_send(next);
    /* the probe's memory is the carrier's: answer it last */
    q_job *last = NULL, *j;
    dbld_fifo rest;
    dbld_fifo_init(&rest);
    while ((j = DBLD_FIFO_ENTRY(dbld_fifo_pop(&group), q_job, link)) != NULL) {
        if (j->call == carrier)
            last = j;
        else
            dbld_fifo_push(&rest, &j->link);
    }
    if (last) dbld_fifo_push(&rest, &last->link);
    gate_release(&rest, fresh, m);
    gate_release(&late, 0, 0);
}

/* The gate thread: calls whose probe's M the follower had not applied wait
 * for it here (at most QI_GATE_WAIT_MS), then are answered. */
static void *gate_main(void *arg)
{
    q_index *x = arg;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        while (!x->slow_q.n && !x->stop)
            pthread_cond_wait(&x->gate_cv, &x->mu);
        int stop = x->stop;
        dbld_fifo calls;
        dbld_fifo_take(&x->slow_q, &calls);
        int64_t m = 0;
        for (dbld_fifo_link *l = dbld_fifo_first(&calls); l; l = l->next) {
            q_job *j = DBLD_FIFO_ENTRY(l, q_job, link);
            if (j->gate_idx > m) m = j->gate_idx;
        }
        struct timespec until = dbld_abs_time(CLOCK_MONOTONIC, QI_GATE_WAIT_MS);
        while (!stop && x->applied_pub < m && atomic_load(&x->ready) && !x->stop)
            if (pthread_cond_timedwait(&x->idx_cv, &x->mu, &until) != 0) break;
        int64_t applied = atomic_load(&x->ready) ? x->applied_pub : -1;
        pthread_mutex_unlock(&x->mu);
        q_job *j;
        while ((j = DBLD_FIFO_ENTRY(dbld_fifo_pop(&calls), q_job, link)) != NULL) {
            if (!stop && applied >= j->gate_idx)
                gate_answer(j, j->gate_idx);
            else
                q_job_run_sql(j);
        }
        if (stop) return NULL;
    }
}

int q_index_gate(q_index *x, q_job *j)
{
    if (!x || !x->gate_started || !atomic_load(&x->ready)) return 0;
    /* the answer as of now, computed here (spread over the threads that
     * receive calls, not on the one answering the group): sent as it is
     * when the probe's M is at most what the index had applied before it */
    if (!j->fresh_worker) {
        pthread_mutex_lock(&x->mu);
        j->pre_idx = x->applied_pub;
        pthread_mutex_unlock(&x->mu);
        dbld_status st;
        dbld_status_clear(&st);
        qi_try = 1;
        qi_busy = 0;
        /* built in a scratch arena and held packed (the call keeps a third
         * of the bytes while it waits for the probe; under 1,000 clients the
         * waiting ListPartitions pages were most of the RSS peak) */
        dbld_arena *call_arena = j->r.a;
        j->r.a = dbld_arena_create();
        ProtobufCMessage *pre = NULL;
        int rc = j->index_fn(&j->r, j, &pre, &st);
        if (rc == 0) rc = dbld_call_hold_answer(j->call, pre, &st);
        dbld_arena_destroy(j->r.a);
        j->r.a = call_arena;
        int busy = qi_busy;
        qi_try = qi_busy = 0;
        if (rc == Q_INDEX_MISS && !busy) return 0; /* the index cannot answer: SQL at once */
        j->pre = rc == 0;                          /* else answered after the probe */
    }
    pthread_mutex_lock(&x->mu);
    int ok = !x->stop, send = ok && !x->probing;
    if (send) {
        x->probing = 1;
        dbld_fifo_push(&x->probe_q, &j->link);
    } else if (ok) {
        dbld_fifo_push(&x->gate_q, &j->link);
    }
    pthread_mutex_unlock(&x->mu);
    if (send) gate_probe_send(j);
    return ok;
}

/* ---- the process's handle ---- */

q_index *q_index_create(q_ctx *q)
{
    const dbld_config *cfg = q->cfg;
    if (!cfg->query.index || !cfg->shared.peers.eventlog || !*cfg->shared.peers.eventlog)
        return NULL;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, metrics_init);
    q_index *x = dbld_xcalloc(1, sizeof *x);
    x->q = q;
    x->max_parts = (size_t)cfg->query.index_max_partitions;
    x->max_builds = (size_t)cfg->query.index_max_builds;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&x->rw, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&x->mu, NULL);
    pthread_mutex_init(&x->pages_mu, NULL);
    dbld_cond_init_mono(&x->cv);
    dbld_cond_init_mono(&x->gate_cv);
    dbld_cond_init_mono(&x->idx_cv);
    dbld_fifo_init(&x->gate_q);
    dbld_fifo_init(&x->probe_q);
    dbld_fifo_init(&x->slow_q);
    return x;
}

void q_index_start(q_index *x)
{
    if (!x) return;
    x->gate_started = pthread_create(&x->gate_th, NULL, gate_main, x) == 0;
    x->started = x->gate_started && pthread_create(&x->th, NULL, follower_main, x) == 0;
    if (!x->started)
        dbld_log(DBLD_LOG_WARN, "partition index off: could not start its thread", (char *)NULL);
}

void q_index_destroy(q_index *x)
{
    if (!x) return;
    pthread_mutex_lock(&x->mu);
    x->stop = 1;
    pthread_cond_broadcast(&x->cv);
    pthread_cond_broadcast(&x->gate_cv);
    pthread_cond_broadcast(&x->idx_cv);
    pthread_mutex_unlock(&x->mu);
    if (x->started) pthread_join(x->th, NULL);
    if (x->gate_started) pthread_join(x->gate_th, NULL); /* hands what waits to SQL */
    dbld_db_close(x->db);
    data_free(x->d);
    for (size_t i = 0; i < x->n_pats; i++)
        pat_free(x->pats[i]);
    for (size_t i = 0; i < QI_PAGES; i++)
        dbld_packed_free(x->pages[i].page);
    pthread_rwlock_destroy(&x->rw);
    pthread_mutex_destroy(&x->mu);
    pthread_mutex_destroy(&x->pages_mu);
    pthread_cond_destroy(&x->cv);
    pthread_cond_destroy(&x->gate_cv);
    pthread_cond_destroy(&x->idx_cv);
    free(x);
}

/* ---- answers ---- */

static void fill(dbld_arena *a, const qi_data *d, qi_part *p, q_index_part *out, int history)
{
    out->ref = dbld_arena_strdup(a, p->ref);
    out->status = p->status;
    out->updated = p->updated;
    out->invalidated = p->invalidated;
    out->tainted = p->tainted;
    out->last_build = p->brid ? dbld_arena_strdup(a, d->bid[p->brid]) : "";
    out->n_past = 0;
    out->past = NULL;
    if (!history || !p->n_hist) return;
    out->past = dbld_arena_alloc(a, p->n_hist * sizeof *out->past);
    const uint32_t *h = hist_of(p);
    for (size_t i = 0; i < p->n_hist; i++)
        out->past[i] = dbld_arena_strdup(a, d->bid[h[i]]);
    out->n_past = p->n_hist;
}

int q_index_summary(q_index *x, dbld_arena *a, const char *ref, q_index_part *out)
{
    int hit = 0;
    if (x && atomic_load(&x->ready) && read_lock(x)) {
        qi_data *d = x->d;
        qi_part *p = d ? find_merged(d, ref) : NULL;
        if (p && p->row) {
            fill(a, d, p, out, 1);
            hit = 1;
        }
        pthread_rwlock_unlock(&x->rw);
    }
    if (x && !qi_busy) dbld_counter_add(hit ? g_hits_summary : g_sql_summary, 1);
    return hit;
}

/* A pattern whose full-match meaning is the same in PostgreSQL's ARE and
 * POSIX ERE (applied to ASCII refs): no escapes, no ARE-only syntax (`(?`,
 * `***`, lazy quantifiers), no bounds, no collating elements. */
static int portable(const char *pat)
{
    if (!is_ascii(pat) || strstr(pat, "***") || strstr(pat, "(?") || strstr(pat, "[.") ||
        strstr(pat, "[="))
        return 0;
    for (const char *s = pat; *s; s++) {
        if (*s == '\\' || *s == '{' || *s == '}') return 0;
        if (*s == '?' && s > pat && (s[-1] == '*' || s[-1] == '+' || s[-1] == '?')) return 0;
    }
    return 1;
}

/* The compiled pattern pat, held (pattern_put() it); NULL: not accepted yet. */
static qi_pat *pattern_get(q_index *x, const char *pat)
{
    pthread_mutex_lock(&x->mu);
    qi_pat *found = NULL;
    for (size_t i = 0; i < x->n_pats && !found; i++)
        if (strcmp(x->pats[i]->pat, pat) == 0) found = x->pats[i];
    if (found) found->refs++;
    pthread_mutex_unlock(&x->mu);
    return found;
}

static void pattern_put(q_index *x, qi_pat *p)
{
    if (!p) return;
    pthread_mutex_lock(&x->mu);
    int last = --p->refs == 0 && p->evicted;
    pthread_mutex_unlock(&x->mu);
    if (last) pat_free(p);
}

void q_index_pattern_accepted(q_index *x, const char *pat)
{
    if (!x || !pat || !portable(pat)) return;
    qi_pat *known = pattern_get(x, pat);
    if (known) {
        pattern_put(x, known);
        return;
    }
    qi_pat *p = dbld_xcalloc(1, sizeof *p);
    char *full = dbld_xmalloc(strlen(pat) + 5);
    sprintf(full, "^(%s)$", pat);
    int bad = regcomp(&p->rx, full, REG_EXTENDED | REG_NOSUB) != 0;
    free(full);
    if (bad) { /* left to PostgreSQL */
        free(p);
        return;
    }
    p->pat = dbld_xstrdup(pat);
    qi_pat *old = NULL;
    pthread_mutex_lock(&x->mu);
    if (x->n_pats < QI_PATTERNS) {
        x->pats[x->n_pats++] = p;
    } else {
        old = x->pats[x->next_pat];
        old->evicted = 1;
        if (old->refs) old = NULL; /* its last user frees it */
        x->pats[x->next_pat] = p;
        x->next_pat = (x->next_pat + 1) % QI_PATTERNS;
    }
    pthread_mutex_unlock(&x->mu);
    pat_free(old);
}

/* First entry with ref > after (bytewise). */
static size_t lower(const qi_data *d, const char *after)
{
    size_t lo = 0, hi = d->n_sorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(d->sorted[mid]->ref, after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int q_index_list(q_index *x, dbld_arena *a, const char *after, const char *pattern,
                 const int *statuses, size_t n_statuses, size_t limit, q_index_part **out,
                 size_t *n_out)
{
    if (!x) return 0;
    qi_pat *pat = NULL;
    if (!atomic_load(&x->ready) || (pattern && !(pat = pattern_get(x, pattern)))) {
        dbld_counter_add(g_sql_list, 1);
        return 0;
    }
    int hit = 0;
    if (!read_lock(x)) {
        pattern_put(x, pat);
        return 0;
    }
    qi_data *d = x->d;
    if (d && d->c_order && (!pattern || !d->n_nonascii)) {
        hit = 1;
        q_index_part *parts = dbld_arena_alloc(a, (limit + 1) * sizeof *parts);
        size_t n = 0;
        for (size_t i = lower(d, after ? after : ""); i < d->n_sorted && n < limit; i++) {
            qi_part *p = d->sorted[i];
            if (!p->row) continue;
            if (n_statuses) {
                size_t k = 0;
                while (k < n_statuses && statuses[k] != p->status)
                    k++;
                if (k == n_statuses) continue;
            }
            if (pat && regexec(&pat->rx, p->ref, 0, NULL, 0) != 0) continue;
            fill(a, d, p, &parts[n++], 0);
        }
        *out = parts;
        *n_out = n;
    }
    pthread_rwlock_unlock(&x->rw);
    pattern_put(x, pat);
    dbld_counter_add(hit ? g_hits_list : g_sql_list, 1);
    return hit;
}

/* ---- build requests (bindex.c) ---- */

void q_index_count_sql_builds(q_index *x)
{
    if (x) dbld_counter_add(g_sql_builds, 1);
}

int q_index_list_builds(q_index *x, dbld_arena *a, const q_build_query *q, q_build_page *out)
{
    if (!x) return 0;
    int hit = 0;
    if (atomic_load(&x->ready)) {
        pthread_rwlock_rdlock(&x->rw); /* on a worker (builds.c's fresh_worker) */
        hit = x->d && qb_store_list(x->d->builds, a, q, Q_PAGE, out);
        out->version = x->version;
        pthread_rwlock_unlock(&x->rw);
    }
    dbld_counter_add(hit ? g_hits_builds : g_sql_builds, 1);
    return hit;
}

/* req's packed bytes into key (QI_PAGE_KEY): their length, 0 when too long. */
static size_t page_key(const ProtobufCMessage *req, unsigned char *key)
{
    size_t n = protobuf_c_message_get_packed_size(req);
    if (n > QI_PAGE_KEY) return 0;
    return protobuf_c_message_pack(req, key);
}

static qi_page *page_find(q_index *x, uint64_t version, const unsigned char *key, size_t len)
{
    for (size_t i = 0; i < QI_PAGES; i++) {
        qi_page *p = &x->pages[i];
        if (p->page && p->version == version && p->key_len == len && !memcmp(p->key, key, len))
            return p;
    }
    return NULL;
}

int q_index_builds_cached(q_index *x, dbld_call *call, const ProtobufCMessage *req)
{
    if (!x || !call || !atomic_load(&x->ready)) return 0;
    unsigned char key[QI_PAGE_KEY];
    size_t len = page_key(req, key);
    if (!len && protobuf_c_message_get_packed_size(req)) return 0;
    pthread_rwlock_rdlock(&x->rw);
    uint64_t version = x->version;
    int held = 0;
    if (x->d) {
        dbld_status st;
        pthread_mutex_lock(&x->pages_mu);
        qi_page *p = page_find(x, version, key, len);
        held = p && dbld_call_hold_packed(call, p->page, &st) == 0;
        pthread_mutex_unlock(&x->pages_mu);
    }
    pthread_rwlock_unlock(&x->rw);
    if (held) dbld_counter_add(g_hits_builds, 1);
    return held;
}

int q_index_builds_keep(q_index *x, dbld_call *call, uint64_t version, const ProtobufCMessage *req,
                        const ProtobufCMessage *resp)
{
    if (!x || !call) return 0;
    unsigned char key[QI_PAGE_KEY];
    size_t len = page_key(req, key);
    if (!len && protobuf_c_message_get_packed_size(req)) return 0;
    dbld_packed *page = dbld_packed_new(resp);
    if (!page) return 0;
    dbld_status st;
    int held = dbld_call_hold_packed(call, page, &st) == 0;
    dbld_packed *old = NULL;
    pthread_mutex_lock(&x->pages_mu);
    if (!page_find(x, version, key, len)) { /* else another worker kept the same page */
        qi_page *slot = NULL;
        for (size_t i = 0; i < QI_PAGES && !slot; i++) /* a free slot, else an older version's */
            if (!x->pages[i].page || x->pages[i].version != version) slot = &x->pages[i];
        if (!slot) slot = &x->pages[x->next_page++ % QI_PAGES];
        old = slot->page;
        slot->page = page;
        slot->version = version;
        slot->key_len = len;
        memcpy(slot->key, key, len);
        page = NULL;
    }
    pthread_mutex_unlock(&x->pages_mu);
    dbld_packed_free(old); /* calls holding it keep their bytes */
    dbld_packed_free(page);
    return held;
}
