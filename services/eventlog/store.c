/* store.c - the event log's store: life cycle, migrations and database
 * health (the writer is in store_write.c, the reads in store_read.c; what
 * they share in store_int.h).
 *
 * Threads: RPC handlers (appends, claims, job logs) queue a `pending` in
 * their call's arena and return; no thread waits. The writer thread takes
 * every queued request up to max_batch_events, writes them in ONE
 * transaction and, after COMMIT, runs each request's callback, which answers
 * its RPC: durable throughput scales with concurrency instead of being
 * bounded by one fsync per event. The database monitor (lib/dbmon.c) owns
 * database health: its probe applies migrations under a session advisory
 * lock (safe with several replicas starting at once), then pings every
 * 500 ms, and the server's health follows it. Reads use a small connection pool. After each commit
 * the writer hands the batch's new events to the commit feed (hub.c), which
 * serves every Subscribe stream.
 */
#include "store_int.h"

/* ---- helpers ---- */

/* A statement found the database unavailable: health follows at once. */
void el__store_set_down(el_store *s, const char *err)
{
    dbld_dbmon_down(s->mon, err);
}

int el__store_unavailable(el_store *s, dbld_status *st)
{
    char err[512];
    if (dbld_dbmon_up(s->mon, err, sizeof err)) return 0;
    return dbld_status_set(st, DBLD_UNAVAILABLE, "event log database unavailable%s%s",
                           err[0] ? ": " : "", err);
}

/* ---- migrations ---- */

static int migrate(dbld_db *db, dbld_status *st)
{
    char lock[64];
    snprintf(lock, sizeof lock, "%lld", LOCK_MIGRATE);
    const char *p[] = {lock};
    int rc = dbld_db_exec(db, "SELECT pg_advisory_lock($1::bigint)", 1, p, NULL, st);
    if (rc) return rc;
    rc = dbld_db_exec(db,
                      "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY,"
                      " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                      0, NULL, NULL, st);
    for (size_t i = 0; !rc && i < dbld_n_migrations; i++) {
        const dbld_migration *m = &dbld_migrations[i];
        char ver[16];
        snprintf(ver, sizeof ver, "%d", m->version);
        const char *vp[] = {ver, m->name};
        dbld_res *r = NULL;
        rc = dbld_db_exec(db, "SELECT 1 FROM schema_migrations WHERE version = $1::int", 1, vp, &r,
                          st);
        int have = !rc && dbld_res_rows(r) > 0;
        dbld_res_free(r);
        if (rc || have) continue;
        rc = dbld_db_exec(db, "BEGIN", 0, NULL, NULL, st);
        if (!rc) rc = dbld_db_exec(db, m->sql, 0, NULL, NULL, st);
        if (!rc)
            rc = dbld_db_exec(db,
                              "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)",
                              2, vp, NULL, st);
        if (!rc) rc = dbld_db_exec(db, "COMMIT", 0, NULL, NULL, st);
        if (rc) {
            dbld_status_prefix(st, "migration %s failed", m->name);
            dbld_db_exec(db, "ROLLBACK", 0, NULL, NULL, NULL);
        } else {
            dbld_log(DBLD_LOG_INFO, "applied migration", "name", m->name, (char *)NULL);
        }
    }
    dbld_db_exec(db, "SELECT pg_advisory_unlock($1::bigint)", 1, p, NULL, NULL);
    return rc;
}

/* ---- database monitor ---- */

/* dbld_dbmon_probe_fn: migrate once, then ping. */
static int probe(void *user, dbld_db *db, dbld_status *st)
{
    el_store *s = user;
    if (!s->migrated) {
        if (migrate(db, st) != 0) return st->code;
        s->migrated = 1;
    }
    return dbld_db_exec(db, "SELECT 1", 0, NULL, NULL, st);
}

/* ---- public ---- */

el_store *el_store_create(const el_store_opts *opts)
{
    el_store *s = dbld_xcalloc(1, sizeof *s);
    s->opts = *opts;
    if (s->opts.max_batch_events < 1) s->opts.max_batch_events = 5000;
    el__store_metrics_init(s);
    s->max_queued = (size_t)s->opts.max_batch_events * QUEUE_BATCHES;
    if (s->max_queued < QUEUE_MIN_EVENTS) s->max_queued = QUEUE_MIN_EVENTS;
    s->dsn = dbld_xstrdup(opts->dsn);
    /* one reader connection stays free for the service's own work (leases,
     * claims): user reads cannot starve the coordinators' orphan polls */
    dbld_pool_opts po = {.size = opts->pool_size,
                         .reserved = READS_RESERVED,
                         .db = {.statement_timeout_ms = opts->statement_timeout_ms}};
    s->pool = dbld_pool_create_opts(opts->dsn, &po);
    pthread_mutex_init(&s->mu, NULL);
    dbld_cond_init_mono(&s->work_cv);
    dbld_fifo_init(&s->queue);
    s->hub = el_hub_create(opts->dsn);
    dbld_dbmon_opts mo = {.dsn = opts->dsn,
                          .ok_ms = MONITOR_OK_MS,
                          .probe = probe,
                          .user = s,
                          .server = opts->server};
    s->mon = dbld_dbmon_create(&mo);
    return s;
}

int el_store_start(el_store *s, dbld_status *st)
{
    dbld_dbmon_start(s->mon);
    int err = pthread_create(&s->writer, NULL, el__store_writer_main, s);
    if (err)
        return dbld_status_set(st, DBLD_INTERNAL, "could not start the writer thread: %s",
                               strerror(err));
    el_hub_start(s->hub);
    s->started = 1;
    return 0;
}

void el_store_destroy(el_store *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->work_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->writer, NULL); /* drains the queue first */
    dbld_dbmon_destroy(s->mon);
    el_hub_destroy(s->hub); /* the writer, its only publisher, is gone */
    dbld_pool_destroy(s->pool);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work_cv);
    free(s->dsn);
    free(s);
}

el_hub *el_store_hub(el_store *s)
{
    return s->hub;
}
