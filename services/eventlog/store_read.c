/* store_read.c - the event log's reads over the reader pool: a connection
 * for the service's own work (el_store_with_db) or a user's read, which
 * gives up sooner and is interrupted with its call (el_store_read_with_db),
 * the EventFilter pattern check and List.
 */
#include "store_int.h"

int el_store_with_db(el_store *s, el_db_fn fn, void *arg, dbld_status *st)
{
    int rc = el__store_unavailable(s, st);
    if (rc) return rc;
    dbld_db *db;
    rc = dbld_pool_acquire(s->pool, ACQUIRE_MS, &db, st);
    if (rc) return rc;
    rc = fn(db, arg, st);
    dbld_pool_release(s->pool, db);
    if (rc == DBLD_UNAVAILABLE) el__store_set_down(s, st->msg);
    return rc;
}

int el_store_read_with_db(el_store *s, dbld_call *call, el_db_fn fn, void *arg, dbld_status *st)
{
    int rc = el__store_unavailable(s, st);
    if (rc) return rc;
    int64_t left = dbld_call_remaining_ms(call);
    dbld_db *db;
    rc = dbld_pool_acquire_user(
        s->pool, left < READ_ACQUIRE_MS ? (left > 1 ? left : 1) : READ_ACQUIRE_MS, &db, st);
    if (rc) return rc;
    dbld_db_set_interrupt(db, dbld_call_interrupt, call);
    rc = fn(db, arg, st);
    dbld_pool_release(s->pool, db); /* clears the interrupt; closes a cancelled connection */
    if (rc == DBLD_UNAVAILABLE) el__store_set_down(s, st->msg);
    return rc;
}

static const char *filter_lit(dbld_arena *a, char **items, size_t n)
{
    return n ? dbld_pg_text_array(a, (const char *const *)items, n) : NULL;
}

/* "{10,17}", or NULL (every kind) for none. */
static const char *kinds_lit(dbld_arena *a, const int32_t *kinds, size_t n)
{
    if (!n) return NULL;
    char *s = dbld_arena_alloc(a, n * 12 + 3), *p = s;
    *p++ = '{';
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%d", i ? "," : "", (int)kinds[i]);
    strcpy(p, "}");
    return s;
}

typedef struct patterns_args {
    const Databuild__V1__EventFilter *filter;
} patterns_args;

/* PostgreSQL's syntax check of each pattern (ARE: only it knows). */
static int patterns_fn(dbld_db *db, void *arg, dbld_status *st)
{
    const Databuild__V1__EventFilter *f = ((patterns_args *)arg)->filter;
    int rc = 0;
    for (size_t i = 0; !rc && i < f->n_partition_patterns; i++) {
        const char *p[] = {f->partition_patterns[i]};
        rc = dbld_db_exec(db, "SELECT '' ~ $1", 1, p, NULL, st);
        if (rc == DBLD_INVALID_ARGUMENT)
            dbld_status_prefix(st, "invalid partition pattern \"%.200s\"", p[0]);
    }
    return rc;
}

int el_store_check_patterns(el_store *s, dbld_call *call, const Databuild__V1__EventFilter *filter,
                            dbld_status *st)
{
    if (!filter || !filter->n_partition_patterns) return 0;
    for (size_t i = 0; i < filter->n_partition_patterns; i++) {
        int rc = dbld_regex_check(filter->partition_patterns[i], "partition pattern", st);
        if (rc) return rc;
    }
    patterns_args pa = {filter};
    int rc = el_store_read_with_db(s, call, patterns_fn, &pa, st);
    if (rc && rc != DBLD_INVALID_ARGUMENT) dbld_status_prefix(st, "could not check patterns");
    return rc;
}

typedef struct list_args {
    const Databuild__V1__EventFilter *filter;
    const char *const *params;
    dbld_res *res;
} list_args;

/* One round trip: PostgreSQL's syntax check of each pattern (so an error
 * names the pattern), then the page. */
static int list_fn(dbld_db *db, void *arg, dbld_status *st)
{
    list_args *la = arg;
    const Databuild__V1__EventFilter *f = la->filter;
    size_t n = f->n_partition_patterns;
    dbld_stmt *stmts = dbld_xcalloc(n + 1, sizeof *stmts);
    const char **pats = dbld_xcalloc(n + 1, sizeof *pats);
    for (size_t i = 0; i < n; i++) {
        pats[i] = f->partition_patterns[i];
        stmts[i] = (dbld_stmt){.sql = "SELECT '' ~ $1", .n = 1, .params = &pats[i]};
    }
    stmts[n] = (dbld_stmt){
        .sql = "SELECT idx, payload FROM events WHERE idx >= $1::bigint"
               " AND ($2::text[] IS NULL OR partition_refs && $2::text[])"
               " AND ($3::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest(partition_refs) ref,"
               "      unnest($3::text[]) pat WHERE ref ~ ('^(?:' || pat || ')$')))"
               " AND ($4::text[] IS NULL OR job_labels && $4::text[])"
               " AND ($5::text[] IS NULL OR job_run_ids && $5::text[])"
               " AND ($6::text[] IS NULL OR build_request_id = ANY($6::text[]))"
               " AND ($8::smallint[] IS NULL OR kind = ANY($8::smallint[]))"
               " ORDER BY idx LIMIT $7::int",
        .n = 8,
        .params = la->params,
        .out = &la->res};
    int rc = dbld_db_pipeline(db, stmts, n + 1, st);
    for (size_t i = 0; rc == DBLD_INVALID_ARGUMENT && i <= n; i++) {
        if (!stmts[i].failed || strcmp(stmts[i].sqlstate, "2201B") != 0) continue;
        if (i < n)
            dbld_status_prefix(st, "invalid partition pattern \"%.200s\"", pats[i]);
        else /* valid alone, not inside ^(?:...)$ */
            dbld_status_prefix(st, "invalid partition pattern in %.400s", la->params[2]);
    }
    free(stmts);
    free(pats);
    return rc;
}

int el_store_list(el_store *s, dbld_call *call, const Databuild__V1__EventFilter *f,
                  const int32_t *kinds, size_t n_kinds, int64_t start_idx, int limit, dbld_arena *a,
                  el_row **rows, size_t *n, int *has_more, dbld_status *st)
{
    *rows = NULL;
    *n = 0;
    *has_more = 0;
    Databuild__V1__EventFilter empty = DATABUILD__V1__EVENT_FILTER__INIT;
    if (!f) f = &empty;
    for (size_t i = 0; i < f->n_partition_patterns; i++) {
        int rc = dbld_regex_check(f->partition_patterns[i], "partition pattern", st);
        if (rc) return rc;
    }
    const char *p[] = {
        dbld_arena_printf(a, "%" PRId64, start_idx),
        filter_lit(a, f->partition_refs, f->n_partition_refs),
        filter_lit(a, f->partition_patterns, f->n_partition_patterns),
        filter_lit(a, f->job_labels, f->n_job_labels),
        filter_lit(a, f->job_run_ids, f->n_job_run_ids),
        filter_lit(a, f->build_request_ids, f->n_build_request_ids),
        dbld_arena_printf(a, "%d", limit + 1),
        kinds_lit(a, kinds, n_kinds),
    };
    list_args la = {.filter = f, .params = p};
    int rc = el_store_read_with_db(s, call, list_fn, &la, st);
    if (rc) {
        dbld_res_free(la.res);
        if (rc != DBLD_INVALID_ARGUMENT || !strstr(st->msg, "invalid partition pattern"))
            dbld_status_prefix(st, "could not list events");
        return rc;
    }
    dbld_res *r = la.res;
    int total = dbld_res_rows(r);
    int take = total > limit ? limit : total;
    *has_more = total > limit;
    el_row *out = dbld_arena_alloc(a, ((size_t)take + 1) * sizeof *out);
    for (int i = 0; i < take; i++) {
        uint8_t *buf;
        size_t len;
        out[i].idx = dbld_res_i64(r, i, 0);
        if (dbld_bytea_decode(a, dbld_res_get(r, i, 1), &buf, &len) != 0 ||
            !(out[i].ev = (Databuild__V1__BuildEvent *)protobuf_c_message_unpack(
                  &databuild__v1__build_event__descriptor, dbld_arena_allocator(a), len, buf))) {
            rc = dbld_status_set(st, DBLD_DATA_LOSS, "stored event %" PRId64 " does not decode",
                                 out[i].idx);
            break;
        }
    }
    dbld_res_free(r);
    if (rc) return rc;
    *rows = out;
    *n = (size_t)take;
    return 0;
}
