/* store_write.c - the event log's group-commit writer (see store.c's
 * opening comment): RPC handlers queue a `pending` and return; the writer
 * thread writes every queued request (appends, claims, job logs) in ONE
 * transaction, then answers them and hands the new events to the commit
 * feed (hub.c). Claims are decided inside that transaction; releases run on
 * a reader connection.
 */
#include "store_int.h"

#include <errno.h>
#include <time.h>

/* ---- writer thread ---- */

#define INSERT_SQL                                                                                 \
    "INSERT INTO events (event_id, ts_ns, build_request_id, kind, partition_refs, job_labels,"     \
    " job_run_ids, payload)"                                                                       \
    " SELECT u.e, u.t, u.b, u.k, u.r::text[], u.l::text[], u.j::text[], u.p"                       \
    " FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[],"     \
    " $7::text[], $8::bytea[]) WITH ORDINALITY AS u(e, t, b, k, r, l, j, p, ord)"                  \
    " ORDER BY u.ord"                                                                              \
    " ON CONFLICT (event_id) DO NOTHING RETURNING idx, event_id"

static const int insert_formats[8] = {1, 1, 1, 1, 1, 1, 1, 1};

/* The eight array parameters of INSERT_SQL for evs, in binary (their
 * lengths in *lens): no escaping here, no parsing of the outer arrays and no
 * hex for the payloads in the database. */
static const char **insert_params(dbld_arena *a, el_event **evs, size_t n, const int **lens)
{
    const char **text[5]; /* event_id, build_request_id, refs, labels, runs */
    for (int c = 0; c < 5; c++)
        text[c] = dbld_arena_alloc(a, (n + 1) * sizeof *text[c]);
    int64_t *ts = dbld_arena_alloc(a, (n + 1) * sizeof *ts);
    int64_t *kind = dbld_arena_alloc(a, (n + 1) * sizeof *kind);
    const uint8_t **payload = dbld_arena_alloc(a, (n + 1) * sizeof *payload);
    size_t *payload_len = dbld_arena_alloc(a, (n + 1) * sizeof *payload_len);
    for (size_t i = 0; i < n; i++) {
        el_event *e = evs[i];
        text[0][i] = e->ev->event_id;
        ts[i] = e->ev->timestamp;
        text[1][i] = e->ev->build_request_id;
        kind[i] = e->kind;
        text[2][i] = dbld_pg_text_array(a, e->refs, e->n_refs);
        text[3][i] = dbld_pg_text_array(a, e->labels, e->n_labels);
        text[4][i] = dbld_pg_text_array(a, e->runs, e->n_runs);
        payload[i] = e->payload;
        payload_len[i] = e->payload_len;
    }
    const char **p = dbld_arena_alloc(a, 8 * sizeof *p);
    int *l = dbld_arena_alloc(a, 8 * sizeof *l);
    p[0] = dbld_pg_bin_text_array(a, text[0], n, &l[0]);
    p[1] = dbld_pg_bin_int8_array(a, ts, n, &l[1]);
    p[2] = dbld_pg_bin_text_array(a, text[1], n, &l[2]);
    p[3] = dbld_pg_bin_int8_array(a, kind, n, &l[3]);
    for (int c = 2; c < 5; c++)
        p[c + 2] = dbld_pg_bin_text_array(a, text[c], n, &l[c + 2]);
    p[7] = dbld_pg_bin_bytea_array(a, payload, payload_len, n, &l[7]);
    *lens = l;
    return p;
}

/* Give each event the idx from rows of (idx, event_id); duplicate marks them.
 * The events' ids are unique (batch_events() folded repeats). */
static void assign_idx(dbld_arena *a, const dbld_res *r, el_event **evs, size_t n, int duplicate)
{
    dbld_strmap rows;
    dbld_res_index(r, 1, a, &rows);
    for (size_t i = 0; i < n; i++) {
        size_t row;
        if (evs[i]->idx != 0 || !dbld_strmap_get(&rows, evs[i]->ev->event_id, &row)) continue;
        evs[i]->idx = dbld_res_i64(r, (int)row, 0);
        evs[i]->duplicate = duplicate;
    }
}

/* Ids the INSERT skipped already existed: read their original idx. */
static int resolve_existing(dbld_db *db, dbld_arena *a, el_event **evs, size_t n, dbld_status *st)
{
    const char **ids = dbld_arena_alloc(a, (n + 1) * sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!evs[i]->idx) ids[k++] = evs[i]->ev->event_id;
    if (!k) return 0;
    const char *p[] = {dbld_pg_text_array(a, ids, k)};
    dbld_res *r = NULL;
    int rc = dbld_db_exec(db, "SELECT idx, event_id FROM events WHERE event_id = ANY($1::text[])",
                          1, p, &r, st);
    if (!rc) assign_idx(a, r, evs, n, 1);
    dbld_res_free(r);
    return rc;
}

/* The events this transaction inserted, in idx order (for the projection fold). */
static el_event **fresh_events(dbld_arena *a, el_event **evs, size_t n, size_t *n_fresh)
{
    el_event **fresh = dbld_arena_alloc(a, (n + 1) * sizeof *fresh);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!evs[i]->duplicate) fresh[k++] = evs[i];
    for (size_t i = 1; i < k; i++) /* insertion sort: input is nearly sorted */
        for (size_t j = i; j > 0 && fresh[j - 1]->idx > fresh[j]->idx; j--) {
            el_event *t = fresh[j];
            fresh[j] = fresh[j - 1];
            fresh[j - 1] = t;
        }
    *n_fresh = k;
    return fresh;
}

/* Make sure the writer's connection is usable. */
static int writer_connect(el_store *s, dbld_db **db, dbld_status *st)
{
    if (*db && dbld_db_alive(*db)) return 0;
    dbld_db_close(*db);
    *db = NULL;
    int rc = el__store_unavailable(s, st);
    if (rc) return rc;
    if (dbld_db_connect(s->dsn, db, st) != 0) {
        el__store_set_down(s, st->msg);
        return dbld_status_set(st, DBLD_UNAVAILABLE, "event log database unavailable: %s", st->msg);
    }
    /* The writer's statements are prepared once per connection, and planning
     * them on every execution would cost about a third of the database's CPU
     * per batch: use one generic plan each. Every one of them looks rows up
     * by key from a small array (unnest, = ANY), so the right plan is always
     * index scans in nested loops; a generic plan costed while the tables
     * were tiny (seq scan + hash join) would stay cached as they grow, so the
     * other join and scan methods are ruled out on this connection. */
    return dbld_db_exec(*db,
                        "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off;"
                        " SET enable_hashjoin = off; SET enable_mergejoin = off",
                        0, NULL, NULL, st);
}

/* ---- claims ---- */

/* Decide the outcome from the locked state; 0 or an error. */
static int claim_decide(dbld_db *db, dbld_arena *a, el_claim *c, const char *refs_lit,
                        dbld_status *st)
{
    const char *p[] = {refs_lit, dbld_arena_printf(a, "%lld", (long long)c->min_available_ns)};
    dbld_res *r = NULL;
    int rc = dbld_db_exec(db,
                          "SELECT count(*) FROM partitions WHERE ref = ANY($1::text[])"
                          " AND status = " DBLD_SQL_PART_AVAILABLE
                          " AND NOT tainted AND updated_ns >= $2::bigint",
                          2, p, &r, st);
    if (rc) return rc;
    int64_t available = dbld_res_i64(r, 0, 0);
    dbld_res_free(r);
    if (available == (int64_t)c->n_refs) {
        c->outcome = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE;
        return 0;
    }
    rc = dbld_db_exec(db,
                      "SELECT c.ref, c.build_request_id, c.job_run_id, coalesce(b.status, 0),"
                      " coalesce(j.status, 0), coalesce(l.expires_ns, 0) FROM claims c"
                      " LEFT JOIN build_requests b ON b.build_request_id = c.build_request_id"
                      " LEFT JOIN job_runs j ON j.job_run_id = c.job_run_id"
                      " LEFT JOIN build_leases l ON l.build_request_id = c.build_request_id"
                      " WHERE c.ref = ANY($1::text[]) ORDER BY c.ref",
                      1, p, &r, st);
    if (rc) return rc;
    c->outcome = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED;
    for (int i = 0; i < dbld_res_rows(r); i++) {
        const char *holder = dbld_res_get(r, i, 1);
        if (strcmp(holder, c->build_request_id) == 0)
            continue; /* our own build (e.g. a retry): take it over */
        int64_t lease = dbld_res_i64(r, i, 5);
        if (dbld_build_terminal((int)dbld_res_i64(r, i, 3)) ||
            dbld_job_terminal((int)dbld_res_i64(r, i, 4)) || (lease > 0 && lease < dbld_now_ns()))
            continue; /* stale: the holder finished, or its coordinator died */
        c->outcome = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD;
        c->held_ref = dbld_arena_strdup(a, dbld_res_get(r, i, 0));
        c->holder_build_request_id = dbld_arena_strdup(a, holder);
        c->holder_job_run_id = dbld_arena_strdup(a, dbld_res_get(r, i, 2));
        break;
    }
    dbld_res_free(r);
    return 0;
}

/* ---- batches: claims and appends in one transaction ---- */

static int granted(const pending *p)
{
    return p->claim && p->claim->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED;
}

/* The events request p writes: an append's, or a granted claim's. */
static el_event *req_events(const pending *p, size_t *n)
{
    if (p->claim) {
        *n = granted(p) ? p->claim->n_events : 0;
        return p->claim->events;
    }
    *n = p->n - (p->logs ? p->logs->n : 0); /* an append may carry job logs */
    return p->evs;
}

/* Collect the events of reqs, marking repeated event_ids (a client retrying
 * inside one batch) with their first copy. A hash set keeps this linear:
 * batches reach thousands of events. */
static el_event **batch_events(dbld_arena *a, pending **reqs, size_t n_reqs, size_t *n_out)
{
    size_t total = 0, k;
    for (size_t r = 0; r < n_reqs; r++) {
        req_events(reqs[r], &k);
        total += k;
    }
    el_event **out = dbld_arena_alloc(a, (total + 1) * sizeof *out);
    dbld_strmap seen; /* event_id -> index into out */
    dbld_strmap_init(&seen, a);
    size_t n = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        el_event *evs = req_events(reqs[r], &k);
        for (size_t i = 0; i < k; i++) {
            el_event *e = &evs[i];
            e->idx = 0;
            e->duplicate = 0;
            e->first = NULL;
            int added;
            size_t at = dbld_strmap_index(&seen, e->ev->event_id, &n, &added);
            if (added)
                out[at] = e;
            else
                e->first = out[at];
        }
    }
    *n_out = n;
    return out;
}

/* After a successful write, give in-batch repeats the idx of their first copy. */
static void resolve_repeats(pending **reqs, size_t n_reqs)
{
    for (size_t r = 0; r < n_reqs; r++) {
        size_t k;
        el_event *evs = req_events(reqs[r], &k);
        for (size_t i = 0; i < k; i++)
            if (evs[i].first) {
                evs[i].idx = evs[i].first->idx;
                evs[i].duplicate = 1;
            }
    }
}

/* The claim rows of the granted claims in reqs as one statement in *out;
 * 0 when there are none. Their refs are disjoint (see batch_tx()). */
static size_t claim_rows(dbld_arena *a, pending **reqs, size_t n_reqs, dbld_stmt *out)
{
    size_t total = 0;
    for (size_t r = 0; r < n_reqs; r++)
        if (granted(reqs[r])) total += reqs[r]->claim->n_refs;
    if (!total) return 0;
    const char **col[4];
    for (int c = 0; c < 4; c++)
        col[c] = dbld_arena_alloc(a, total * sizeof *col[c]);
    size_t k = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        if (!granted(reqs[r])) continue;
        const el_claim *c = reqs[r]->claim;
        const char *now = dbld_arena_printf(a, "%" PRId64, dbld_now_ns());
        for (size_t i = 0; i < c->n_refs; i++, k++) {
            col[0][k] = c->refs[i];
            col[1][k] = c->build_request_id;
            col[2][k] = c->job_run_id;
            col[3][k] = now;
        }
    }
    const char **p = dbld_arena_alloc(a, 4 * sizeof *p);
    for (int c = 0; c < 4; c++)
        p[c] = dbld_pg_text_array(a, col[c], total);
    *out = (dbld_stmt){
        .name = "el_claim_rows",
        .sql = "INSERT INTO claims (ref, build_request_id, job_run_id, claimed_ns)"
               " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
               " ON CONFLICT (ref) DO UPDATE SET build_request_id = EXCLUDED.build_request_id,"
               " job_run_id = EXCLUDED.job_run_id, claimed_ns = EXCLUDED.claimed_ns",
        .n = 4,
        .params = p};
    return 1;
}

#define JOBLOG_COLS 6

/* The job log entries of reqs as one statement in *out (0 when there are
 * none). An entry repeated in the batch is sent once, for its first request:
 * the rows the INSERT returns are credited to that request (credit_joblogs). */
static size_t joblog_rows(dbld_arena *a, pending **reqs, size_t n_reqs, dbld_strmap *keys,
                          dbld_stmt *out, dbld_res **res)
{
    size_t total = 0;
    for (size_t r = 0; r < n_reqs; r++)
        if (reqs[r]->logs) total += reqs[r]->logs->n;
    dbld_strmap_init(keys, a); /* "run\nseq" -> index into reqs */
    if (!total) return 0;
    const char **col[JOBLOG_COLS];
    for (int c = 0; c < JOBLOG_COLS; c++)
        col[c] = dbld_arena_alloc(a, total * sizeof *col[c]);
    size_t k = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        el_joblogs *l = reqs[r]->logs;
        for (size_t i = 0; l && i < l->n; i++) {
            l->stored = 0;
            const char *key = dbld_arena_printf(a, "%s\n%s", l->cols[0][i], l->cols[1][i]);
            size_t first = r;
            int added;
            dbld_strmap_index(keys, key, &first, &added);
            if (!added) continue;
            for (int c = 0; c < JOBLOG_COLS; c++)
                col[c][k] = l->cols[c][i];
            k++;
        }
    }
    const char **p = dbld_arena_alloc(a, JOBLOG_COLS * sizeof *p);
    for (int c = 0; c < JOBLOG_COLS; c++)
        p[c] = dbld_pg_text_array(a, col[c], k);
    *out = (dbld_stmt){.name = "el_joblogs",
                       .sql = "INSERT INTO job_logs (job_run_id, seq, ts_ns, content, level, entry)"
                              " SELECT u.r, u.s, u.t, u.c, u.l, decode(u.e, 'hex') FROM unnest("
                              "$1::text[], $2::bigint[], $3::bigint[], $4::smallint[], $5::int[],"
                              " $6::text[]) AS u(r, s, t, c, l, e)"
                              " ON CONFLICT (job_run_id, seq) DO NOTHING RETURNING job_run_id, seq",
                       .n = JOBLOG_COLS,
                       .params = p,
                       .out = res};
    return 1;
}

/* Count the stored rows (job_run_id, seq) for the requests they came from. */
static void credit_joblogs(dbld_arena *a, const dbld_res *r, const dbld_strmap *keys,
                           pending **reqs)
{
    for (int row = 0; row < dbld_res_rows(r); row++) {
        const char *key =
            dbld_arena_printf(a, "%s\n%s", dbld_res_get(r, row, 0), dbld_res_get(r, row, 1));
        size_t i = dbld_strmap_find(keys, key);
        if (i != DBLD_STRMAP_NONE) reqs[i]->logs->stored++;
    }
}

/* Fences (AppendRequest.fence, ClaimRequest.lease_owner) are checked
 * optimistically, in the transaction's first round trip: one statement reads
 * the fenced requests' lease rows FOR SHARE (in key order, as Renew takes
 * them: a lease cannot change hands until this transaction ends). When every
 * fence holds - always, but after a takeover - nothing more is paid. When one
 * does not, the transaction is rolled back before anything else is decided,
 * the refused requests are taken out (marked refused) and the rest is tried
 * again. */
#define EL_REFUSED (-2) /* batch_tx_once(): some fence did not hold; roll back, redo */

/* el_top: the highest idx committed before this batch (under the lock), so
 * the commit feed knows whether other replicas wrote in between. */
#define TOP_SQL "SELECT coalesce(max(idx), 0) FROM events"

/* The statement that follows the lock, into *out (result into *res): el_top
 * when no request of reqs is fenced (returns 0), else el_fence (returns 1),
 * which answers el_top's value in its first column and the lease rows of
 * the fenced builds in the other two (one row of NULLs when there is none):
 * one statement less per fenced batch. */
static int top_stmt(dbld_arena *a, pending **reqs, size_t n, dbld_stmt *out, dbld_res **res)
{
    size_t n_fenced = 0;
    for (size_t i = 0; i < n; i++)
        n_fenced += reqs[i]->fence.build_request_id != NULL;
    *res = NULL;
    if (!n_fenced) {
        *out = (dbld_stmt){.name = "el_top", .sql = TOP_SQL, .out = res};
        return 0;
    }
    const char **ids = dbld_arena_alloc(a, n_fenced * sizeof *ids);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (reqs[i]->fence.build_request_id) ids[k++] = reqs[i]->fence.build_request_id;
    const char **p = dbld_arena_alloc(a, sizeof *p);
    p[0] = dbld_pg_text_array(a, ids, k);
    *out = (dbld_stmt){.name = "el_fence",
                       .sql = "SELECT (" TOP_SQL "), l.build_request_id, l.owner"
                              " FROM (SELECT 1) AS one LEFT JOIN"
                              " (SELECT build_request_id, owner FROM build_leases"
                              " WHERE build_request_id = ANY($1::text[])"
                              " ORDER BY build_request_id FOR SHARE) AS l ON true",
                       .n = 1,
                       .params = p,
                       .out = res};
    return 1;
}

/* Mark the requests whose fence does not hold (leases: el_fence's result,
 * kept by the caller); returns how many. */
static size_t fence_verdict(dbld_arena *a, const dbld_res *leases, pending **reqs, size_t n)
{
    size_t refused = 0;
    dbld_strmap by_build;
    dbld_res_index(leases, 1, a, &by_build);
    for (size_t i = 0; i < n; i++) {
        pending *q = reqs[i];
        if (!q->fence.build_request_id) continue;
        size_t row;
        const char *owner = dbld_strmap_get(&by_build, q->fence.build_request_id, &row) &&
                                    !dbld_res_null(leases, (int)row, 1) /* no lease at all */
                                ? dbld_res_get(leases, (int)row, 2)
                                : NULL;
        if (!owner)
            q->refused = dbld_arena_printf(q->arena, "lease fence: build %s has no lease",
                                           q->fence.build_request_id);
        else if (strcmp(owner, q->fence.owner) != 0)
            q->refused =
                dbld_arena_printf(q->arena, "lease fence: build %s is coordinated by %s, not by %s",
                                  q->fence.build_request_id, owner, q->fence.owner);
        refused += q->refused != NULL;
    }
    return refused;
}

/* Write reqs inside the open transaction: the granted claims' rows, all
 * events (in reqs order) and their projections, and the job log entries, in
 * two round trips: [pre..., claim rows, INSERT events, INSERT job logs] then
 * [projection updates, COMMIT when commit is set]. When fence is set, pre
 * holds el_fence, whose result lands there (the caller frees it): if a fence
 * does not hold, EL_REFUSED before anything else (the caller rolls back). */
static int write_reqs(dbld_db *db, dbld_arena *a, const dbld_stmt *pre, size_t n_pre,
                      dbld_res **fence, pending **reqs, size_t n_reqs, int commit, int64_t *max_idx,
                      dbld_status *st)
{
    size_t n = 0;
    el_event **evs = batch_events(a, reqs, n_reqs, &n);
    dbld_stmt first[6];
    if (n_pre) memcpy(first, pre, n_pre * sizeof *first);
    size_t k = n_pre + claim_rows(a, reqs, n_reqs, &first[n_pre]);
    dbld_res *ins = NULL, *logs = NULL;
    if (n) {
        const int *lens;
        const char **p = insert_params(a, evs, n, &lens);
        first[k++] = (dbld_stmt){.name = "el_insert",
                                 .sql = INSERT_SQL,
                                 .n = 8,
                                 .params = p,
                                 .formats = insert_formats,
                                 .lengths = lens,
                                 .out = &ins};
    }
    dbld_strmap keys;
    k += joblog_rows(a, reqs, n_reqs, &keys, &first[k], &logs);
    int rc = k ? dbld_db_pipeline(db, first, k, st) : 0;
    if (!rc && fence && fence_verdict(a, *fence, reqs, n_reqs)) rc = EL_REFUSED;
    if (rc == EL_REFUSED) {
        dbld_res_free(logs);
        dbld_res_free(ins);
        return rc;
    }
    if (!rc && logs) credit_joblogs(a, logs, &keys, reqs);
    dbld_res_free(logs);
    if (!rc && n) {
        assign_idx(a, ins, evs, n, 0);
        rc = resolve_existing(db, a, evs, n, st);
    }
    dbld_res_free(ins);
    if (rc) return rc;
    size_t n_fresh;
    el_event **fresh = fresh_events(a, evs, n, &n_fresh);
    dbld_stmt second[EL_PROJECT_MAX_STMTS + 1];
    size_t m = n_fresh ? el_project(a, fresh, n_fresh, second) : 0;
    if (commit) second[m++] = (dbld_stmt){.sql = "COMMIT"};
    rc = m ? dbld_db_pipeline(db, second, m, st) : 0;
    if (rc) return rc;
    resolve_repeats(reqs, n_reqs);
    for (size_t i = 0; i < n; i++)
        if (evs[i]->idx > *max_idx) *max_idx = evs[i]->idx;
    return 0;
}

/* The partitions a granted claim changes: its claim rows and its events' refs. */
static void add_touched(dbld_strmap *touched, const el_claim *c)
{
    for (size_t i = 0; i < c->n_refs; i++)
        dbld_strmap_put(touched, c->refs[i], 0);
    for (size_t i = 0; i < c->n_events; i++)
        for (size_t r = 0; r < c->events[i].n_refs; r++)
            dbld_strmap_put(touched, c->events[i].refs[r], 0);
}

/* One row per claim (in claim order): how many of its partitions are
 * available, and whether another build holds a claim row on one of them.
 * Both lookups go by the primary key alone (the conditions on other columns
 * are aggregate filters): whatever the table sizes were when its generic plan
 * was made, only a key lookup serves ref = ANY(...). */
#define CLAIM_PEEK_SQL                                                                             \
    "SELECT (SELECT count(*) FILTER (WHERE status = " DBLD_SQL_PART_AVAILABLE                      \
    " AND NOT tainted AND updated_ns >= u.min)"                                                    \
    " FROM partitions WHERE ref = ANY(u.refs::text[])),"                                           \
    " (SELECT coalesce(bool_or(build_request_id <> u.brid), false) FROM claims"                    \
    " WHERE ref = ANY(u.refs::text[]))"                                                            \
    " FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS u(refs, brid, min, "    \
    "ord)"                                                                                         \
    " ORDER BY u.ord"

/* One transaction for reqs: the claims (which come first) decided one after
 * another, then every event written together.
 *
 * The first round trip opens the transaction, takes the lock and peeks at
 * each claim's partitions as they are at the lock: how many are available,
 * and whether another build holds a claim row on one of them. That answers
 * most claims at once (all available: AVAILABLE; no other holder: GRANTED).
 * A claim is decided with claim_decide() instead - after the grants before it
 * are written into the transaction - when another build holds one of its
 * partitions, or when an earlier grant of this batch touched one of them (its
 * claim rows or its events' partitions: the peek is stale there). Either way
 * each outcome is the one deciding the claims one by one would give, and the
 * grants written together have disjoint refs. */
static int batch_tx_once(dbld_db *db, dbld_arena *a, pending **reqs, size_t n_reqs,
                         int64_t *max_idx, dbld_res **top, dbld_status *st)
{
    const char **lp = dbld_arena_alloc(a, sizeof *lp);
    lp[0] = dbld_arena_printf(a, "%lld", LOCK_APPEND);
    dbld_stmt open[4] = {
        {.sql = "BEGIN"},
        {.name = "el_lock",
         .sql = "SELECT pg_advisory_xact_lock($1::bigint)",
         .n = 1,
         .params = lp},
    };
    /* *top: el_top's or el_fence's result (batch_tx() reads and frees it) */
    dbld_res **fence = top_stmt(a, reqs, n_reqs, &open[2], top) ? top : NULL;
    size_t n_open = 3;
    size_t n_claims = 0;
    while (n_claims < n_reqs && reqs[n_claims]->claim)
        n_claims++;
    if (!n_claims) return write_reqs(db, a, open, n_open, fence, reqs, n_reqs, 1, max_idx, st);
    const char **lits = dbld_arena_alloc(a, n_claims * sizeof *lits);
    const char **brids = dbld_arena_alloc(a, n_claims * sizeof *brids);
    const char **mins = dbld_arena_alloc(a, n_claims * sizeof *mins);
    for (size_t i = 0; i < n_claims; i++) {
        const el_claim *c = reqs[i]->claim;
        lits[i] = dbld_pg_text_array(a, (const char *const *)c->refs, c->n_refs);
        brids[i] = c->build_request_id;
        mins[i] = dbld_arena_printf(a, "%lld", (long long)c->min_available_ns);
    }
    const char **p = dbld_arena_alloc(a, 3 * sizeof *p);
    p[0] = dbld_pg_text_array(a, lits, n_claims);
    p[1] = dbld_pg_text_array(a, brids, n_claims);
    p[2] = dbld_pg_text_array(a, mins, n_claims);
    dbld_res *peek = NULL;
    open[n_open++] = (dbld_stmt){
        .name = "el_claim_peek", .sql = CLAIM_PEEK_SQL, .n = 3, .params = p, .out = &peek};
    int rc = dbld_db_pipeline(db, open, n_open, st);
    if (!rc && fence && fence_verdict(a, *fence, reqs, n_reqs)) rc = EL_REFUSED;
    if (!rc && dbld_res_rows(peek) != (int)n_claims)
        rc = dbld_status_set(st, DBLD_INTERNAL, "claim peek: %d rows for %zu claims",
                             dbld_res_rows(peek), n_claims);
    dbld_strmap touched;
    dbld_strmap_init(&touched, a);
    size_t from = 0; /* reqs[from..i) are decided but not written yet */
    for (size_t i = 0; !rc && i < n_claims; i++) {
        el_claim *c = reqs[i]->claim;
        int stale = 0;
        for (size_t r = 0; r < c->n_refs && !stale; r++)
            stale = dbld_strmap_get(&touched, c->refs[r], NULL);
        int held_elsewhere = strcmp(dbld_res_get(peek, (int)i, 1), "t") == 0;
        if (!stale && dbld_res_i64(peek, (int)i, 0) == (int64_t)c->n_refs) {
            c->outcome = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE;
        } else if (!stale && !held_elsewhere) {
            c->outcome = DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED;
        } else {
            if (from < i)
                rc = write_reqs(db, a, NULL, 0, NULL, reqs + from, i - from, 0, max_idx, st);
            from = i;
            if (!rc) rc = claim_decide(db, reqs[i]->arena, c, lits[i], st);
        }
        if (!rc && granted(reqs[i])) add_touched(&touched, c);
    }
    dbld_res_free(peek);
    if (!rc) rc = write_reqs(db, a, NULL, 0, NULL, reqs + from, n_reqs - from, 1, max_idx, st);
    return rc;
}

/* batch_tx_once() until no fence refuses (each round takes at least one
 * request out); rolls back what failed. *prev_max: the highest idx committed
 * before the batch that committed. */
static int batch_tx(dbld_db *db, dbld_arena *a, pending **reqs, size_t n_reqs, int64_t *max_idx,
                    int64_t *prev_max, dbld_status *st)
{
    for (size_t i = 0; i < n_reqs; i++)
        reqs[i]->refused = NULL;
    for (;;) {
        dbld_res *top = NULL;
        int rc = batch_tx_once(db, a, reqs, n_reqs, max_idx, &top, st);
        if (!rc && top) *prev_max = dbld_res_i64(top, 0, 0);
        dbld_res_free(top);
        if (rc && dbld_db_alive(db)) dbld_db_exec(db, "ROLLBACK", 0, NULL, NULL, NULL);
        if (rc != EL_REFUSED) return rc;
        size_t kept = 0;
        for (size_t i = 0; i < n_reqs; i++)
            if (!reqs[i]->refused) reqs[kept++] = reqs[i];
        n_reqs = kept;
        if (n_reqs == 0) return 0;
    }
}

static int cmp_idx(const void *x, const void *y)
{
    int64_t a = (*(el_event *const *)x)->idx, b = (*(el_event *const *)y)->idx;
    return (a > b) - (a < b);
}

/* Hand the new events of the committed requests to the commit feed, in idx
 * order (requests a fence refused wrote nothing). */
static void publish(el_store *s, dbld_arena *a, pending **reqs, size_t n_reqs, int64_t prev_max,
                    int64_t max_idx)
{
    size_t total = 0, k;
    for (size_t r = 0; r < n_reqs; r++)
        if (!reqs[r]->refused) {
            req_events(reqs[r], &k);
            total += k;
        }
    el_event **fresh = dbld_arena_alloc(a, (total + 1) * sizeof *fresh);
    size_t n = 0;
    for (size_t r = 0; r < n_reqs; r++) {
        if (reqs[r]->refused) continue;
        el_event *evs = req_events(reqs[r], &k);
        for (size_t i = 0; i < k; i++)
            if (!evs[i].duplicate) fresh[n++] = &evs[i];
    }
    qsort(fresh, n, sizeof *fresh, cmp_idx);
    el_hub_publish(s->hub, prev_max, fresh, n, max_idx);
}

/* Write the requests of one batch (claims and appends) in one transaction. */
/* ---- metrics ---- */

static struct {
    dbld_counter *appended;
    dbld_histogram *batch, *commit;
} mx;

static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};

static double metric_queue(void *arg)
{
    el_store *s = arg;
    pthread_mutex_lock(&s->mu);
    size_t n = s->queued_events;
    pthread_mutex_unlock(&s->mu);
    return (double)n;
}

void el__store_metrics_init(el_store *s)
{
    mx.appended = dbld_counter_get("databuild_eventlog_appended_events_total",
                                   "Build events committed (appends and claims' events).", NULL);
    mx.batch = dbld_histogram_get("databuild_eventlog_commit_batch_events",
                                  "Events, claims and job log entries per group commit.", NULL,
                                  batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
    mx.commit = dbld_histogram_get("databuild_eventlog_commit_seconds",
                                   "Time of one group-commit transaction.", NULL,
                                   dbld_latency_buckets, dbld_n_latency_buckets);
    dbld_gauge_fn("databuild_eventlog_write_queue_events",
                  "Events waiting for the writer (the queue is capped).", NULL, metric_queue, s);
}

static void metrics_batch(pending *const *arr, size_t n, int64_t t0, int64_t max_idx,
                          int64_t prev_max)
{
    size_t items = 0;
    for (size_t i = 0; i < n; i++)
        items += arr[i]->n;
    dbld_histogram_observe(mx.batch, (double)items);
    dbld_histogram_observe(mx.commit, (double)(dbld_mono_ms() - t0) / 1000.0);
    if (max_idx > prev_max) dbld_counter_add(mx.appended, (uint64_t)(max_idx - prev_max));
}

static int write_batch(el_store *s, dbld_db **db, pending *reqs, dbld_status *st)
{
    int rc = writer_connect(s, db, st);
    if (rc) return rc;
    dbld_arena *a = dbld_arena_create();
    size_t n = 0;
    for (pending *p = reqs; p; p = p->next)
        n++;
    /* Claims first (each decided before any of the batch's appends), then
     * appends, then job logs, each group in queue order. */
    pending **arr = dbld_arena_alloc(a, n * sizeof *arr);
    size_t k = 0;
    for (int pass = 0; pass < 3; pass++)
        for (pending *p = reqs; p; p = p->next)
            if ((p->claim ? 0 : p->evs ? 1 : 2) == pass) arr[k++] = p;
    int64_t max_idx = 0, prev_max = 0;
    int64_t t0 = dbld_mono_ms();
    rc = batch_tx(*db, a, arr, n, &max_idx, &prev_max, st);
    if (!rc) {
        metrics_batch(arr, n, t0, max_idx, prev_max);
        publish(s, a, arr, n, prev_max, max_idx);
    } else if (rc == DBLD_UNAVAILABLE) {
        el__store_set_down(s, st->msg);
    }
    dbld_arena_destroy(a);
    return rc;
}

/* Report the outcome to each request. A callback answers its RPC, after which
 * the pending (in the RPC's arena) may be gone: read next first. */
static void finish(el_store *s, pending *reqs, const dbld_status *st)
{
    (void)s;
    while (reqs) {
        pending *next = reqs->next;
        if (!st->code && reqs->refused) {
            dbld_status r;
            dbld_status_set(&r, DBLD_FAILED_PRECONDITION, "%s", reqs->refused);
            reqs->cb(reqs->cb_arg, &r);
        } else if (st->code) {
            dbld_status e = *st; /* name the operation: a request may see its batch's error */
            dbld_status_prefix(&e, "%s",
                               reqs->claim  ? "could not decide the claim"
                               : !reqs->evs ? "could not store job logs"
                                            : "could not append events");
            reqs->cb(reqs->cb_arg, &e);
        } else {
            reqs->cb(reqs->cb_arg, st);
        }
        reqs = next;
    }
}

static void process(el_store *s, dbld_db **db, pending *reqs)
{
    dbld_status st;
    dbld_status_clear(&st);
    int rc = write_batch(s, db, reqs, &st);
    if (rc && rc != DBLD_UNAVAILABLE && reqs->next) {
        /* Not a database outage: one request's data may be at fault. Retry
         * each request alone so the others are not failed with it. */
        dbld_log(DBLD_LOG_WARN, "group commit failed, retrying requests one by one", "error",
                 st.msg, (char *)NULL);
        while (reqs) {
            pending *next = reqs->next;
            reqs->next = NULL;
            dbld_status one;
            dbld_status_clear(&one);
            write_batch(s, db, reqs, &one);
            finish(s, reqs, &one);
            reqs = next;
        }
        return;
    }
    finish(s, reqs, &st);
}

/* Under s->mu: whole requests from the queue up to the batch limit (always
 * at least one), chained by next for the batch. */
static pending *take_batch(el_store *s)
{
    pending *first = DBLD_FIFO_ENTRY(dbld_fifo_pop(&s->queue), pending, link), *last = first;
    size_t events = first->n, bytes = first->bytes;
    pending *p;
    while ((p = DBLD_FIFO_ENTRY(dbld_fifo_first(&s->queue), pending, link)) &&
           events + p->n <= (size_t)s->opts.max_batch_events) {
        dbld_fifo_pop(&s->queue);
        last->next = p;
        last = p;
        events += p->n;
        bytes += p->bytes;
    }
    last->next = NULL;
    s->queued_events -= events;
    s->queued_bytes -= bytes;
    return first;
}

/* Group commit: a transaction costs PostgreSQL about as much again as the
 * requests in it (BEGIN, the lock, the fence, one statement per table,
 * COMMIT), and in a no-op build each caller has one request in flight at a
 * time, so batches stay at one or two requests. When the previous batch
 * held more than one request (several callers are writing) and fewer than
 * GROUP_MIN_REQUESTS wait, the writer waits up to group_wait_us for more
 * (s->mu held; a lone caller never waits). */
#define GROUP_MIN_REQUESTS 8

static void wait_for_company(el_store *s)
{
    if (s->opts.group_wait_us <= 0 || s->last_batch < 2) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = ts.tv_nsec + (int64_t)s->opts.group_wait_us * 1000;
    ts.tv_sec += (time_t)(ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (s->queue.n < GROUP_MIN_REQUESTS && !s->stop)
        if (pthread_cond_timedwait(&s->work_cv, &s->mu, &ts) == ETIMEDOUT) break;
}

void *el__store_writer_main(void *arg)
{
    el_store *s = arg;
    dbld_db *db = NULL;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->queue.n && !s->stop)
            pthread_cond_wait(&s->work_cv, &s->mu);
        if (!s->queue.n && s->stop) break;
        if (s->queue.n < GROUP_MIN_REQUESTS) wait_for_company(s);
        s->last_batch = s->queue.n;
        pending *first = take_batch(s);
        pthread_mutex_unlock(&s->mu);
        process(s, &db, first);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    dbld_db_close(db);
    return NULL;
}

/* Queue p (in the requester's arena) for the writer; its callback reports the outcome. */
static int submit_async(el_store *s, pending *p, dbld_status *st)
{
    int rc = el__store_unavailable(s, st);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return dbld_status_set(st, DBLD_UNAVAILABLE, "event log is shutting down");
    }
    size_t heap, mapped;
    dbld_arena_stats(p->arena, &heap, &mapped);
    p->bytes = heap + mapped;
    /* UNAVAILABLE, not RESOURCE_EXHAUSTED: it passes once the database
     * catches up, and idempotent clients retry it with backoff */
    if (s->queued_events && s->queued_events + p->n > s->max_queued) {
        size_t queued = s->queued_events;
        pthread_mutex_unlock(&s->mu);
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "event log write queue is full: %zu events queued, %zu more"
                               " would pass the cap of %zu; the database is not keeping up",
                               queued, p->n, s->max_queued);
    }
    if (s->queued_bytes && s->queued_bytes + p->bytes > QUEUE_MAX_BYTES) {
        size_t queued = s->queued_bytes;
        pthread_mutex_unlock(&s->mu);
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "event log write queue is full: %zu KiB of requests queued, %zu KiB"
                               " more would pass the cap of %u KiB; the database is not keeping up",
                               queued >> 10, p->bytes >> 10, QUEUE_MAX_BYTES >> 10);
    }
    dbld_fifo_push(&s->queue, &p->link);
    s->queued_events += p->n;
    s->queued_bytes += p->bytes;
    pthread_cond_signal(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

static pending *new_async(dbld_arena *a, el_append_cb cb, void *arg)
{
    pending *p = dbld_arena_alloc(a, sizeof *p);
    memset(p, 0, sizeof *p);
    p->cb = cb;
    p->cb_arg = arg;
    p->arena = a;
    return p;
}

int el_store_append_async(el_store *s, el_event *evs, size_t n, const el_fence *fence,
                          el_joblogs *logs, dbld_arena *a, el_append_cb cb, void *arg,
                          dbld_status *st)
{
    pending *p = new_async(a, cb, arg);
    if (fence) p->fence = *fence;
    p->evs = evs;
    p->logs = logs;
    p->n = n + (logs ? logs->n : 0);
    return submit_async(s, p, st);
}

int el_store_claim_async(el_store *s, el_claim *c, dbld_arena *a, el_append_cb cb, void *arg,
                         dbld_status *st)
{
    pending *p = new_async(a, cb, arg);
    p->claim = c;
    if (c->lease_owner && *c->lease_owner)
        p->fence = (el_fence){c->build_request_id, c->lease_owner};
    p->n = c->n_events;
    return submit_async(s, p, st);
}

int el_store_joblogs_async(el_store *s, el_joblogs *logs, dbld_arena *a, el_append_cb cb, void *arg,
                           dbld_status *st)
{
    pending *p = new_async(a, cb, arg);
    p->logs = logs;
    p->n = logs->n;
    return submit_async(s, p, st);
}

typedef struct release_args {
    const char *brid, *run, *refs;
    uint32_t released;
} release_args;

static int release_fn(dbld_db *db, void *arg, dbld_status *st)
{
    release_args *ra = arg;
    const char *p[] = {ra->brid, ra->run, ra->refs};
    dbld_res *r = NULL;
    int rc = dbld_db_exec(db,
                          "DELETE FROM claims WHERE build_request_id = $1"
                          " AND ($2 = '' OR job_run_id = $2)"
                          " AND ($3::text[] IS NULL OR ref = ANY($3::text[]))",
                          3, p, &r, st);
    if (!rc) ra->released = (uint32_t)dbld_res_affected(r);
    dbld_res_free(r);
    return rc;
}

int el_store_release(el_store *s, const char *build_request_id, const char *job_run_id, char **refs,
                     size_t n, uint32_t *released, dbld_status *st)
{
    dbld_arena *a = dbld_arena_create();
    release_args ra = {.brid = build_request_id,
                       .run = job_run_id ? job_run_id : "",
                       .refs = n ? dbld_pg_text_array(a, (const char *const *)refs, n) : NULL};
    int rc = el_store_with_db(s, release_fn, &ra, st);
    dbld_arena_destroy(a);
    *released = ra.released;
    return rc;
}
