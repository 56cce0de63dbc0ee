/* bindex.c - the build index: ListBuildRequests answered from memory.
 *
 * Part of the partition index's generation (index.c): loaded in the same
 * REPEATABLE READ snapshot and fed by the same follower thread, batch by
 * batch; a call passes the same freshness gate as the partition calls
 * (index.c: ListBuildRequests is a q_job whose fresh_worker reads this
 * store on a worker once the gate vouches for it; what it cannot answer
 * runs its SQL there). What it holds, per build request:
 * exactly what ListBuildRequests' SQL path (builds.c) reads -
 *   - the build_requests row: status, requested_partitions, comment,
 *     created_ns, last_idx, want_ids (re-read by the follower for every
 *     build a batch's BuildRequestEvents name: the projection's own values,
 *     never a second implementation of its rules),
 *   - the job counts of COUNTS_SQL (re-read for the builds a batch's
 *     JobEvents name),
 *   - whether a BuildCancelEvent names it,
 *   - the lifecycle times (first started / first terminal BuildRequestEvent)
 *     together with the idx of the last BuildRequestEvent applied: a build
 *     is answered only while that equals its row's last_idx (what lifecache.c
 *     checks), so a row read ahead of the stream makes the call run its SQL.
 * Builds are kept sorted by (created_ns, id) for the newest-first pages.
 *
 * It answers a page when the SQL's result cannot differ: no built_partition
 * or run_jobs filter (those read job_runs; they stay SQL), a database whose
 * collation sorts bytewise (the tie-breaker ORDER BY build_request_id) and,
 * for comment_contains, whose ctype is C/POSIX (lower() then folds ASCII
 * only). Otherwise, or over query.index_max_builds, the SQL answers.
 *
 * Memory: ~80 bytes per build + its id, comment, requested refs and want
 * ids (one malloc'd block); the load benchmark's 7.4k builds of 50 refs
 * each: +7.6 MiB RSS.
 */
#include "query.h"

#include "dbld/db_domain.h"
#include "dbld/log.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define QB_FETCH "5000"

typedef struct qb_build {
    int64_t created;  /* build_requests.created_ns */
    int64_t row_idx;  /* build_requests.last_idx */
    int64_t life_idx; /* idx of the last BuildRequestEvent applied */
    int64_t started, completed;
    uint32_t total, done, failed, cancelled;
    int32_t status;
    uint32_t n_req, n_wants;
    uint32_t req_bytes; /* the refs' size on the wire */
    uint32_t req_coded; /* ... and in strs (front-coded) */
    uint8_t row;        /* a build_requests row was read */
    uint8_t sorted;     /* in s->sorted */
    uint8_t cancel_ev;  /* a BuildCancelEvent names it */
    /* malloc'd (NULL: none): comment \0, the requested refs front-coded
     * (req_coded bytes; REF_CODE below), wants \0... */
    char *strs;
    char id[];
} qb_build;

struct qb_store {
    dbld_arena *a;   /* entries */
    dbld_strmap ids; /* id -> qb_build * */
    qb_build **sorted;
    size_t n_sorted, cap_sorted, n_builds, max;
    int c_order, ctype_c;
    int off;        /* over max: holds nothing, answers nothing */
    size_t max_ref; /* the longest requested ref held (a decoding buffer's size) */
};

qb_store *qb_store_new(size_t max_builds)
{
    qb_store *s = dbld_xcalloc(1, sizeof *s);
    s->a = dbld_arena_create();
    dbld_strmap_init(&s->ids, NULL);
    s->max = max_builds;
    s->off = max_builds == 0;
    return s;
}

/* Forget every entry (their strs already freed). */
static void store_clear(qb_store *s)
{
    dbld_strmap_free(&s->ids);
    free(s->sorted);
    s->sorted = NULL;
    s->n_sorted = s->cap_sorted = s->n_builds = 0;
    dbld_arena_destroy(s->a);
    s->a = dbld_arena_create();
    dbld_strmap_init(&s->ids, NULL);
}

void qb_store_free(qb_store *s)
{
    if (!s) return;
    /* only entries with a row have strs, and those are all in sorted */
    for (size_t i = 0; i < s->n_sorted; i++)
        free(s->sorted[i]->strs);
    dbld_strmap_free(&s->ids);
    free(s->sorted);
    dbld_arena_destroy(s->a);
    free(s);
}

int qb_store_off(const qb_store *s)
{
    return !s || s->off;
}

size_t qb_store_count(const qb_store *s)
{
    return s && !s->off ? s->n_sorted : 0;
}

static void switch_off(qb_store *s)
{
    if (s->off) return;
    for (size_t i = 0; i < s->n_sorted; i++)
        free(s->sorted[i]->strs);
    store_clear(s);
    s->off = 1;
    dbld_logf(DBLD_LOG_WARN,
              "build index off: more than query.index_max_builds (%zu) build requests;"
              " ListBuildRequests answers come from SQL",
              s->max);
}

static qb_build *build_get(qb_store *s, const char *id)
{
    size_t v = dbld_strmap_find(&s->ids, id);
    if (v != DBLD_STRMAP_NONE) return (qb_build *)(uintptr_t)v;
    size_t len = strlen(id);
    qb_build *b = dbld_arena_alloc(s->a, sizeof *b + len + 1); /* zeroed */
    memcpy(b->id, id, len + 1);
    dbld_strmap_put(&s->ids, b->id, (size_t)(uintptr_t)b);
    if (++s->n_builds > s->max) switch_off(s);
    return s->off ? NULL : b;
}

static int by_time(const void *x, const void *y)
{
    const qb_build *a = *(qb_build *const *)x, *b = *(qb_build *const *)y;
    if (a->created != b->created) return a->created < b->created ? -1 : 1;
    return strcmp(a->id, b->id);
}

/* REF_CODE: a build's requested refs are kept front-coded: per ref,
 * varint(bytes shared with the previous ref), varint(length of the rest),
 * the rest. A build's refs are mostly one dataset's consecutive partitions
 * (the load benchmark's 50 refs "bench/p=NNNNNN" take 3-4 bytes each instead
 * of 18 on the wire: -5 MiB of RSS for its 7.4k builds).
 *
 * A page writes them as BuildSummary.requested_partitions goes on the wire:
 * per ref, REF_TAG (field 3, length-delimited), varint(len of the
 * PartitionRef), 0x0a (its field 1, `str`), varint(len of str), str; and
 * hands the block to protobuf-c as one unknown field of tag 3 whose data is
 * the block after its first tag byte, which protobuf-c writes itself: the
 * bytes are exactly the refs' occurrences of field 3, in order. Building
 * PartitionRef messages instead cost ~100 ns per ref (mostly strlen), and a
 * page holds 100 builds of up to 50 refs (pages are packed once per index
 * version, index.c). */
#define REF_FIELD 3  /* BuildSummary.requested_partitions */
#define REF_TAG 0x1a /* (REF_FIELD << 3) | length-delimited */
#define REF_STR_TAG 0x0a

static size_t varint_size(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static unsigned char *put_varint(unsigned char *p, size_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static size_t get_varint(const unsigned char **p)
{
    size_t v = 0;
    for (int shift = 0;; shift += 7) {
        unsigned char c = *(*p)++;
        v |= (size_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
}

/* The wire size of ref (its block entry), str_len = strlen(ref). */
static size_t ref_wire_size(size_t str_len)
{
    size_t msg = 1 + varint_size(str_len) + str_len;
    return 1 + varint_size(msg) + msg;
}

/* Wire header of a ref of len bytes (its str follows). */
static unsigned char *put_ref_head(unsigned char *p, size_t len)
{
    *p++ = REF_TAG;
    p = put_varint(p, 1 + varint_size(len) + len);
    *p++ = REF_STR_TAG;
    return put_varint(p, len);
}

/* Bytes a and b share at their start. */
static size_t shared_prefix(const char *a, const char *b)
{
    size_t n = 0;
    while (a[n] && a[n] == b[n])
        n++;
    return n;
}

/* Front-code ref (len bytes) after prev (NULL: the first) at p. */
static unsigned char *code_ref(unsigned char *p, const char *prev, const char *ref, size_t len)
{
    size_t shared = prev ? shared_prefix(prev, ref) : 0;
    p = put_varint(p, shared);
    p = put_varint(p, len - shared);
    memcpy(p, ref + shared, len - shared);
    return p + len - shared;
}

/* The front-coded size of ref after prev. */
static size_t coded_size(const char *prev, const char *ref, size_t len)
{
    size_t shared = prev ? shared_prefix(prev, ref) : 0;
    return varint_size(shared) + varint_size(len - shared) + len - shared;
}

/* Decode the next ref of a front-coded block at *p (advanced past it) into
 * ref, which holds the previous one: its length. */
static size_t next_ref(const unsigned char **p, char *ref)
{
    size_t shared = get_varint(p), rest = get_varint(p);
    memcpy(ref + shared, *p, rest);
    *p += rest;
    return shared + rest;
}

/* Copy s with its NUL to p; the byte after it. */
static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s) + 1;
    memcpy(p, s, n);
    return p + n;
}

/* Room for element n of *arr (capacity *cap, doubling; arena a). */
static void *grow(dbld_arena *a, void *arr_ptr, size_t n, size_t *cap, size_t elem)
{
    unsigned char **arr = arr_ptr;
    if (n == *cap) {
        size_t ncap = *cap ? 2 * *cap : 64;
        unsigned char *g = dbld_arena_alloc(a, ncap * elem);
        if (n) memcpy(g, *arr, n * elem);
        *arr = g;
        *cap = ncap;
    }
    return *arr + n * elem;
}

/* ---- rows ---- */

#define ROW_COLS                                                                                   \
    "build_request_id, status, requested_partitions, comment, created_ns, last_idx, want_ids"

/* Row i of a ROW_COLS result into its entry. */
static void apply_row(qb_store *s, dbld_arena *tmp, const dbld_res *r, int i, int *resort)
{
    qb_build *b = build_get(s, dbld_res_get(r, i, 0));
    if (!b) return;
    int64_t created = dbld_res_i64(r, i, 4);
    if (b->sorted && created != b->created) *resort = 1;
    b->created = created;
    b->status = (int32_t)dbld_res_i64(r, i, 1);
    b->row_idx = dbld_res_i64(r, i, 5);
    size_t n_req = 0, n_wants = 0;
    char **req = q_parse_array(tmp, dbld_res_get(r, i, 2), &n_req);
    char **wants = q_parse_array(tmp, dbld_res_get(r, i, 6), &n_wants);
    const char *comment = dbld_res_get(r, i, 3);
    size_t len = strlen(comment) + 1, req_bytes = 0, req_coded = 0;
    for (size_t k = 0; k < n_req; k++) {
        size_t rl = strlen(req[k]);
        if (rl > s->max_ref) s->max_ref = rl;
        req_bytes += ref_wire_size(rl);
        req_coded += coded_size(k ? req[k - 1] : NULL, req[k], rl);
    }
    len += req_coded;
    for (size_t k = 0; k < n_wants; k++)
        len += strlen(wants[k]) + 1;
    free(b->strs);
    b->strs = dbld_xmalloc(len);
    char *p = put_str(b->strs, comment);
    unsigned char *w = (unsigned char *)p;
    for (size_t k = 0; k < n_req; k++)
        w = code_ref(w, k ? req[k - 1] : NULL, req[k], strlen(req[k]));
    p = (char *)w;
    for (size_t k = 0; k < n_wants; k++)
        p = put_str(p, wants[k]);
    b->req_bytes = (uint32_t)req_bytes;
    b->req_coded = (uint32_t)req_coded;
    b->n_req = (uint32_t)n_req;
    b->n_wants = (uint32_t)n_wants;
    b->row = 1;
    if (!b->sorted) {
        if (s->n_sorted == s->cap_sorted) {
            s->cap_sorted = s->cap_sorted ? 2 * s->cap_sorted : 256;
            s->sorted = dbld_xrealloc(s->sorted, s->cap_sorted * sizeof *s->sorted);
        }
        s->sorted[s->n_sorted++] = b;
        b->sorted = 1;
        if (s->n_sorted > 1 &&
            by_time(&s->sorted[s->n_sorted - 2], &s->sorted[s->n_sorted - 1]) > 0)
            *resort = 1;
    }
}

static void apply_rows(qb_store *s, dbld_arena *tmp, const dbld_res *r)
{
    int resort = 0;
    for (int i = 0; i < dbld_res_rows(r) && !s->off; i++)
        apply_row(s, tmp, r, i, &resort);
    if (resort && !s->off) qsort(s->sorted, s->n_sorted, sizeof *s->sorted, by_time);
}

/* Rows of Q_BUILD_COUNTS_COLS (builds.c's COUNTS_SQL) into their entries. */
#define COUNTS_COLS Q_BUILD_COUNTS_COLS
static void apply_counts(qb_store *s, const dbld_res *r)
{
    for (int i = 0; i < dbld_res_rows(r) && !s->off; i++) {
        qb_build *b = build_get(s, dbld_res_get(r, i, 0));
        if (!b) return;
        b->total = (uint32_t)dbld_res_i64(r, i, 1);
        b->done = (uint32_t)dbld_res_i64(r, i, 2);
        b->failed = (uint32_t)dbld_res_i64(r, i, 3);
        b->cancelled = (uint32_t)dbld_res_i64(r, i, 4);
    }
}

/* One BuildRequestEvent of b (builds.c's apply_lifecycle, in idx order). */
static void apply_life(qb_build *b, int64_t idx, int64_t ts, const Databuild__V1__BuildEvent *ev)
{
    if (idx > b->life_idx) b->life_idx = idx;
    if (!ev || ev->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT ||
        !ev->build_request_event->status)
        return;
    int code = ev->build_request_event->status->code;
    if (!b->started && dbld_build_started(code)) b->started = ts;
    if (!b->completed && dbld_build_terminal(code)) b->completed = ts;
}

/* ---- the load (inside index.c's snapshot) ---- */

static int exec_all(dbld_db *db, const char *sql, dbld_res **out, dbld_status *st)
{
    return dbld_db_exec(db, sql, 0, NULL, out, st);
}

int qb_store_load(qb_store *s, dbld_db *db, dbld_status *st)
{
    if (s->off) return 0;
    dbld_res *r = NULL;
    int rc = exec_all(db,
                      "SELECT datcollate IN ('C', 'POSIX'), datctype IN ('C', 'POSIX')"
                      " FROM pg_database WHERE datname = current_database()",
                      &r, st);
    if (rc) return rc;
    s->c_order = dbld_res_get(r, 0, 0)[0] == 't';
    s->ctype_c = dbld_res_get(r, 0, 1)[0] == 't';
    dbld_res_free(r);
    dbld_arena *tmp = dbld_arena_create();
    rc = exec_all(db, "SELECT " ROW_COLS " FROM build_requests", &r, st);
    if (!rc) {
        apply_rows(s, tmp, r);
        dbld_res_free(r);
        rc = exec_all(db, "SELECT " COUNTS_COLS " FROM job_runs GROUP BY build_request_id", &r, st);
    }
    if (!rc) {
        apply_counts(s, r);
        dbld_res_free(r);
        rc = exec_all(db,
                      "SELECT DISTINCT build_request_id FROM events"
                      " WHERE kind = " DBLD_SQL_KIND_BUILD_CANCEL " AND build_request_id <> ''",
                      &r, st);
    }
    if (!rc) {
        for (int i = 0; i < dbld_res_rows(r) && !s->off; i++) {
            qb_build *b = build_get(s, dbld_res_get(r, i, 0));
            if (b) b->cancel_ev = 1;
        }
        dbld_res_free(r);
        rc = exec_all(db,
                      "DECLARE qb_life NO SCROLL CURSOR FOR"
                      " SELECT build_request_id, idx, ts_ns, payload FROM events"
                      " WHERE kind = " DBLD_SQL_KIND_BUILD_REQUEST " AND build_request_id <> ''"
                      " ORDER BY idx",
                      NULL, st);
    }
    while (!rc && !s->off) {
        rc = exec_all(db, "FETCH " QB_FETCH " FROM qb_life", &r, st);
        if (rc) break;
        int n = dbld_res_rows(r);
        for (int i = 0; i < n && !s->off; i++) {
            qb_build *b = build_get(s, dbld_res_get(r, i, 0));
            if (b)
                apply_life(b, dbld_res_i64(r, i, 1), dbld_res_i64(r, i, 2),
                           q_decode_event(tmp, dbld_res_get(r, i, 3)));
        }
        dbld_res_free(r);
        dbld_arena_reset(tmp);
        if (!n) break;
    }
    dbld_arena_destroy(tmp);
    return rc;
}

/* ---- following the commits ---- */

struct qb_batch {
    dbld_arena *a; /* the follower's batch arena (reset per batch) */
    dbld_strmap rows, counts;
    const char **row_ids, **count_ids;
    size_t n_rows, n_counts, cap_rows, cap_counts;
    struct qb_ev {
        const char *id;
        int64_t idx, ts;
        const Databuild__V1__BuildEvent *ev; /* NULL: a BuildCancelEvent */
    } * evs;
    size_t n_evs, cap_evs;
    dbld_res *row_res, *count_res;
};

qb_batch *qb_batch_new(void)
{
    return dbld_xcalloc(1, sizeof(qb_batch));
}

void qb_batch_free(qb_batch *b)
{
    if (!b) return;
    dbld_res_free(b->row_res);
    dbld_res_free(b->count_res);
    free(b);
}

void qb_batch_reset(qb_batch *b, dbld_arena *a)
{
    dbld_res_free(b->row_res);
    dbld_res_free(b->count_res);
    memset(b, 0, sizeof *b);
    b->a = a;
    dbld_strmap_init(&b->rows, a);
    dbld_strmap_init(&b->counts, a);
}

static void id_add(dbld_arena *a, dbld_strmap *m, const char ***ids, size_t *n, size_t *cap,
                   const char *id)
{
    int added;
    size_t next = *n;
    dbld_strmap_index(m, id, &next, &added);
    if (!added) return;
    *(const char **)grow(a, ids, *n, cap, sizeof **ids) = id;
    (*n)++;
}

void qb_batch_add(qb_batch *b, const Databuild__V1__IndexedEvent *ie)
{
    const Databuild__V1__BuildEvent *ev = ie->event;
    if (!ev || !ev->build_request_id || !*ev->build_request_id) return;
    const char *id = ev->build_request_id;
    switch (ev->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        id_add(b->a, &b->rows, &b->row_ids, &b->n_rows, &b->cap_rows, id);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        id_add(b->a, &b->counts, &b->count_ids, &b->n_counts, &b->cap_counts, id);
        return;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT:
        ev = NULL;
        break;
    default:
        return;
    }
    *(struct qb_ev *)grow(b->a, &b->evs, b->n_evs++, &b->cap_evs, sizeof *b->evs) =
        (struct qb_ev){id, ie->idx, ie->event->timestamp, ev};
}

int qb_batch_read(qb_batch *b, const qb_store *s, dbld_db *db, dbld_status *st)
{
    if (s->off || (!b->n_rows && !b->n_counts)) return 0;
    const char *pr[] = {dbld_pg_text_array(b->a, b->row_ids, b->n_rows)};
    const char *pc[] = {dbld_pg_text_array(b->a, b->count_ids, b->n_counts)};
    dbld_stmt stmts[2];
    size_t n = 0;
    if (b->n_rows)
        stmts[n++] = (dbld_stmt){.sql = "SELECT " ROW_COLS " FROM build_requests"
                                        " WHERE build_request_id = ANY($1::text[])",
                                 .n = 1,
                                 .params = pr,
                                 .out = &b->row_res};
    if (b->n_counts)
        stmts[n++] = (dbld_stmt){
            .sql = "SELECT " COUNTS_COLS " FROM job_runs"
                   " WHERE build_request_id = ANY($1::text[]) GROUP BY build_request_id",
            .n = 1,
            .params = pc,
            .out = &b->count_res};
    return dbld_db_pipeline(db, stmts, n, st);
}

void qb_batch_apply(qb_store *s, qb_batch *b)
{
    if (s->off) return;
    for (size_t i = 0; i < b->n_evs && !s->off; i++) {
        qb_build *e = build_get(s, b->evs[i].id);
        if (!e) break;
        if (b->evs[i].ev)
            apply_life(e, b->evs[i].idx, b->evs[i].ts, b->evs[i].ev);
        else
            e->cancel_ev = 1;
    }
    if (b->row_res && !s->off) apply_rows(s, b->a, b->row_res);
    if (b->count_res && !s->off) apply_counts(s, b->count_res);
}

/* ---- answers ---- */

int qb_store_can(const qb_store *s, const q_build_query *q)
{
    return s && !s->off && s->c_order && (!q->comment || s->ctype_c);
}

/* PostgreSQL's lower() under a C ctype: ASCII letters only. */
static char *ascii_lower(dbld_arena *a, const char *s)
{
    char *out = dbld_arena_strdup(a, s);
    for (char *p = out; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return out;
}

/* Any of the n strings from *p (advanced past them) among vals. */
static int overlaps(const char **p, uint32_t n, char *const *vals, size_t n_vals)
{
    int hit = 0;
    for (uint32_t i = 0; i < n; i++) {
        for (size_t k = 0; k < n_vals && !hit; k++)
            hit = strcmp(*p, vals[k]) == 0;
        *p += strlen(*p) + 1;
    }
    return hit;
}

/* Any of the n refs of the front-coded block at p among vals (ref: room
 * for the longest ref). */
static int refs_overlap(const unsigned char *p, uint32_t n, char *ref, char *const *vals,
                        size_t n_vals)
{
    for (uint32_t i = 0; i < n; i++) {
        size_t len = next_ref(&p, ref);
        for (size_t k = 0; k < n_vals; k++)
            /* strncmp stops at vals[k]'s end; then vals[k][len] is in it */
            if (strncmp(vals[k], ref, len) == 0 && vals[k][len] == 0) return 1;
    }
    return 0;
}

static int matches(dbld_arena *a, const qb_build *b, const q_build_query *q, const char *needle,
                   char *ref)
{
    if (q->n_codes) {
        size_t k = 0;
        while (k < q->n_codes && q->codes[k] != b->status)
            k++;
        if (k == q->n_codes) return 0;
    }
    const char *p = b->strs;
    const char *comment = p;
    p += strlen(p) + 1;
    if (q->n_outputs &&
        !refs_overlap((const unsigned char *)p, b->n_req, ref, q->outputs, q->n_outputs))
        return 0;
    p += b->req_coded;
    int want_hit = overlaps(&p, b->n_wants, q->wants, q->n_wants);
    if (q->n_wants && !want_hit) return 0;
    if (needle && !strstr(ascii_lower(a, comment), needle)) return 0;
    return 1;
}

static Databuild__V1__BuildSummary *summary_of(dbld_arena *a, const qb_build *b)
{
    Databuild__V1__BuildSummary *s = dbld_arena_msg(a, &databuild__v1__build_summary__descriptor);
    s->build_request_id = dbld_arena_strdup(a, b->id);
    s->status = q_build_status(a, b->status);
    const char *p = b->strs;
    s->comment = dbld_arena_strdup(a, p);
    p += strlen(p) + 1;
    /* the refs as they go on the wire (b->strs may change once the caller
     * lets go of the index), as one unknown field (REF_CODE above) */
    if (b->req_bytes) {
        ProtobufCMessageUnknownField *f = dbld_arena_alloc(a, sizeof *f);
        uint8_t *w = dbld_arena_alloc(a, b->req_bytes), *o = w;
        const unsigned char *c = (const unsigned char *)p;
        const char *prev = NULL;
        for (uint32_t i = 0; i < b->n_req; i++) {
            size_t shared = get_varint(&c), rest = get_varint(&c);
            o = put_ref_head(o, shared + rest);
            if (shared) memcpy(o, prev, shared);
            memcpy(o + shared, c, rest);
            c += rest;
            prev = (const char *)o;
            o += shared + rest;
        }
        *f = (ProtobufCMessageUnknownField){.tag = REF_FIELD,
                                            .wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED,
                                            .len = b->req_bytes - 1,
                                            .data = w + 1};
        s->base.n_unknown_fields = 1;
        s->base.unknown_fields = f;
    }
    s->requested_at = b->created;
    s->cancelled = b->status == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED ||
                   b->cancel_ev;
    s->total_jobs = b->total;
    s->completed_jobs = b->done;
    s->failed_jobs = b->failed;
    s->cancelled_jobs = b->cancelled;
    s->started_at = b->started;
    s->completed_at = b->completed;
    if (s->completed_at) s->duration_ms = (s->completed_at - s->requested_at) / 1000000;
    return s;
}

int qb_store_list(const qb_store *s, dbld_arena *a, const q_build_query *q, size_t limit,
                  q_build_page *out)
{
    if (!qb_store_can(s, q)) return 0;
    const char *needle = q->comment ? ascii_lower(a, q->comment) : NULL;
    char *ref = q->n_outputs ? dbld_arena_alloc(a, s->max_ref + 1) : NULL; /* refs_overlap() */
    /* the newest entry with created < cursor (cursor 0: none) */
    size_t hi = s->n_sorted;
    if (q->cursor) {
        size_t lo = 0;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->sorted[mid]->created < q->cursor)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    const qb_build **page = NULL;
    size_t n = 0, cap = 0, i = hi;
    int more = 0;
    while (i > 0) {
        const qb_build *b = s->sorted[--i];
        if (!matches(a, b, q, needle, ref)) continue;
        /* past the page: finish a run of equal times (q_page()), then one more says has_more */
        if (n >= limit && (!n || b->created != page[n - 1]->created)) {
            more = 1;
            break;
        }
        *(const qb_build **)grow(a, &page, n++, &cap, sizeof *page) = b;
    }
    for (size_t k = 0; k < n; k++)
        if (page[k]->life_idx != page[k]->row_idx) return 0; /* row ahead of the stream */
    out->builds = dbld_arena_alloc(a, (n + 1) * sizeof *out->builds);
    for (size_t k = 0; k < n; k++)
        out->builds[k] = summary_of(a, page[k]);
    out->n = n;
    out->has_more = more;
    out->min_started = n ? page[n - 1]->created : 0;
    return 1;
}
