/* qdb.c - how a query call talks to PostgreSQL: one pooled connection per
 * call (borrowed lazily, returned when the call ends), a read-only session,
 * and the keyset pager every list RPC uses.
 *
 * Sessions: the pool opens every connection read-only with the configured
 * statement timeout (query.statement_timeout_ms, SET at connect time), so
 * no read holds a connection longer. While a call holds its connection, its
 * statements are interrupted (PQcancel) as soon as the call is cancelled or
 * passes its deadline (dbld_call_interrupt). The DSN may point at a replica:
 * nothing here writes.
 */
#include "query.h"

#include "dbld/db_regex.h"
#include "dbld/metrics.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define ACQUIRE_MAX_MS 5000

int q_run(dbld_call *call, const char *op, q_fn fn, const ProtobufCMessage *req,
          ProtobufCMessage **resp, dbld_status *st)
{
    int64_t left = dbld_call_remaining_ms(call);
    q_req r = {.q = dbld_call_user(call),
               .a = dbld_call_arena(call),
               .call = call,
               .timeout_ms = left > 30000 ? 30000
                             : left < 1   ? 1
                                          : left};
    int rc = fn(&r, req, resp, st);
    q_req_done(&r);
    if (rc && r.db_failed) dbld_status_prefix(st, "could not %s", op);
    return rc;
}

/* The pool as Prometheus sees it: connections handed out to requests, and
 * how long a request waited for one. Made once; recording is lock-free. */
static dbld_gauge *g_pool_in_use;
static dbld_histogram *g_pool_wait;
static pthread_once_t g_pool_mx_once = PTHREAD_ONCE_INIT;

static void pool_mx_init(void)
{
    g_pool_in_use = dbld_gauge_get("databuild_query_db_connections_in_use",
                                   "PostgreSQL connections of the pool held by requests.", NULL);
    g_pool_wait = dbld_histogram_get("databuild_query_db_wait_seconds",
                                     "Time a request waited for a pooled PostgreSQL connection.",
                                     NULL, dbld_latency_buckets, dbld_n_latency_buckets);
}

void q_db_metrics_init(void)
{
    pthread_once(&g_pool_mx_once, pool_mx_init);
}

void q_req_done(q_req *r)
{
    if (!r->db) return;
    dbld_gauge_add(g_pool_in_use, -1);
    dbld_pool_release(r->q->pool, r->db); /* closes a lost or cancelled connection */
    r->db = NULL;
}

int q_db(q_req *r, dbld_db **db, dbld_status *st)
{
    if (r->db) {
        *db = r->db;
        return 0;
    }
    int up = q_ctx_db_up(r->q);
    if (!up)
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "database unavailable (query service is not serving)");
    pthread_once(&g_pool_mx_once, pool_mx_init);
    int64_t t0 = dbld_mono_ms();
    int rc = dbld_pool_acquire(
        r->q->pool, r->timeout_ms < ACQUIRE_MAX_MS ? r->timeout_ms : ACQUIRE_MAX_MS, db, st);
    dbld_histogram_observe(g_pool_wait, (double)(dbld_mono_ms() - t0) / 1000.0);
    if (rc) {
        if (rc == DBLD_UNAVAILABLE) q_ctx_db_down(r->q, st->msg);
        return rc;
    }
    if (r->call) dbld_db_set_interrupt(*db, dbld_call_interrupt, r->call);
    r->db = *db;
    dbld_gauge_add(g_pool_in_use, 1);
    return 0;
}

/* A statement's outcome: the database's errors are marked so that q_run()
 * names the operation. */
static int after(q_req *r, int rc, dbld_status *st)
{
    if (rc == DBLD_UNAVAILABLE) q_ctx_db_down(r->q, st->msg);
    if (rc) r->db_failed = 1;
    return rc;
}

/* A read that failed because its pooled connection was lost (PostgreSQL
 * restarted or dropped it while it sat idle) is retried on another one:
 * reads are safe to repeat. A lost connection is discarded by the pool, and
 * a fresh connect that fails ends the retries in q_db(), so this loops at
 * most once per pooled connection. */
static int lost(q_req *r, int rc, dbld_db *db, int *attempts)
{
    if (rc != DBLD_UNAVAILABLE || dbld_db_alive(db) || ++*attempts > r->q->pool_size) return 0;
    q_req_done(r);
    return 1;
}

int q_exec(q_req *r, const char *sql, int n, const char *const *params, dbld_res **out,
           dbld_status *st)
{
    if (out) *out = NULL;
    int attempts = 0, rc;
    for (;;) {
        dbld_db *db;
        rc = q_db(r, &db, st);
        if (rc) return rc;
        dbld_res *tmp = NULL;
        /* always ask for a result: dbld_db_exec uses the simple protocol otherwise */
        rc = dbld_db_exec(db, sql, n, params, &tmp, st);
        if (lost(r, rc, db, &attempts)) continue;
        if (out)
            *out = tmp;
        else
            dbld_res_free(tmp);
        return after(r, rc, st);
    }
}

int q_exec_prepared(q_req *r, const char *name, const char *sql, int n, const char *const *params,
                    dbld_res **out, dbld_status *st)
{
    dbld_stmt s = {.name = name, .sql = sql, .n = n, .params = params, .out = out};
    return q_pipeline(r, &s, 1, st);
}

int q_pipeline(q_req *r, dbld_stmt *stmts, size_t n, dbld_status *st)
{
    int attempts = 0, rc;
    for (;;) {
        dbld_db *db;
        rc = q_db(r, &db, st);
        if (rc) return rc;
        rc = dbld_db_pipeline(db, stmts, n, st);
        if (!lost(r, rc, db, &attempts)) return after(r, rc, st);
        for (size_t i = 0; i < n; i++) { /* results of the lost attempt */
            if (stmts[i].out) {
                dbld_res_free(*stmts[i].out);
                *stmts[i].out = NULL;
            }
        }
    }
}

int q_check_regex(q_req *r, const char *pattern, const char *what, dbld_status *st)
{
    int rc = dbld_regex_check(pattern, what, st);
    if (rc) return rc;
    const char *p[] = {pattern};
    rc = q_exec(r, "SELECT '' ~ $1", 1, p, NULL, st);
    if (rc == DBLD_INVALID_ARGUMENT) {
        dbld_status_prefix(st, "invalid %s \"%.200s\"", what, pattern);
        r->db_failed = 0; /* the caller's pattern, named already */
    }
    return rc;
}

/* ---- the pager ---- */

static char *page_sql(dbld_arena *a, const q_pager *pg, const char *extra, int with_limit)
{
    const char *dir = pg->desc ? "DESC" : "ASC";
    int k = pg->n + 1, w = pg->n + 2, x = pg->n + 3;
    char *clause = dbld_arena_printf(
        a,
        "($%d::bigint = 0 OR %s %s $%d::bigint) AND ($%d::bigint = 0 OR %s %s $%d::bigint)%s%s"
        " ORDER BY %s %s, %s %s%s",
        k, pg->ts_col, pg->desc ? "<" : ">", k, w, pg->ts_col, pg->desc ? ">" : "<", w,
        extra ? " AND " : "", extra ? extra : "", pg->ts_col, dir, pg->key_col, dir,
        with_limit ? dbld_arena_printf(a, " LIMIT $%d::int", x) : "");
    return dbld_arena_printf(a, pg->sql, clause);
}

int q_page(q_req *r, const q_pager *pg, dbld_res **out, int *rows, int *has_more, dbld_status *st)
{
    *out = NULL;
    *rows = 0;
    *has_more = 0;
    dbld_arena *a = r->a;
    const char **p = dbld_arena_alloc(a, (size_t)(pg->n + 3) * sizeof *p);
    for (int i = 0; i < pg->n; i++)
        p[i] = pg->params[i];
    p[pg->n] = q_i64(a, pg->cursor);
    p[pg->n + 1] = q_i64(a, pg->other);
    p[pg->n + 2] = q_i64(a, pg->limit + 1);
    dbld_res *res = NULL;
    int rc = q_exec(r, page_sql(a, pg, NULL, 1), pg->n + 3, p, &res, st);
    if (rc) return rc;
    int n = dbld_res_rows(res);
    if (n <= pg->limit) {
        *out = res;
        *rows = n;
        return 0;
    }
    int64_t last = dbld_res_i64(res, pg->limit - 1, pg->ts_field);
    int cut = pg->limit; /* rows of the page */
    if (pg->hard_limit) {
        /* end the page before the run that item limit+1 continues */
        int64_t next = dbld_res_i64(res, pg->limit, pg->ts_field);
        while (cut > 0 && dbld_res_i64(res, cut - 1, pg->ts_field) == next)
            cut--;
    } else if (dbld_res_i64(res, pg->limit, pg->ts_field) == last) {
        cut = 0;
    }
    if (cut > 0) {
        *out = res;
        *rows = cut;
        *has_more = 1;
        return 0;
    }
    /* The page would end inside a run of equal timestamps (with hard_limit:
     * the page is that run alone): take the whole run. */
    dbld_res_free(res);
    p[pg->n + 2] = q_i64(a, last);
    char *upto =
        dbld_arena_printf(a, "%s %s $%d::bigint", pg->ts_col, pg->desc ? ">=" : "<=", pg->n + 3);
    rc = q_exec(r, page_sql(a, pg, upto, 0), pg->n + 3, p, &res, st);
    if (rc) return rc;
    char *beyond =
        dbld_arena_printf(a, "%s %s $%d::bigint", pg->ts_col, pg->desc ? "<" : ">", pg->n + 3);
    dbld_res *more = NULL;
    rc = q_exec(r, dbld_arena_printf(a, "%s LIMIT 1", page_sql(a, pg, beyond, 0)), pg->n + 3, p,
                &more, st);
    if (rc) {
        dbld_res_free(res);
        return rc;
    }
    *has_more = dbld_res_rows(more) > 0;
    dbld_res_free(more);
    *out = res;
    *rows = dbld_res_rows(res);
    return 0;
}
