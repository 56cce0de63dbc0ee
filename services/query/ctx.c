/* ctx.c - the query service's process context: connection pool, the graph's
 * output/external regexes (dbld_outputs, for PutWants validation and want
 * summaries) and the database monitor that drives health.
 *
 * Health is NOT_SERVING until a probe of the projection tables succeeds on a
 * dedicated connection (so a busy pool never reads as a dead database), and
 * goes back to NOT_SERVING when a probe or any query reports the database
 * unavailable; the monitor then retries with backoff.
 */
#include "query.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROBE_SQL "SELECT 1 FROM partitions LIMIT 0"
#define MONITOR_OK_MS 1000

int q_ctx_create(const dbld_config *cfg, dbld_server *srv, q_ctx **out, dbld_status *st)
{
    q_db_metrics_init();
    q_ctx *q = dbld_xcalloc(1, sizeof *q);
    q->cfg = cfg;
    q->srv = srv;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    int workers = cfg->query.server.workers > 0 ? cfg->query.server.workers : 4;
    q->pool_size = workers + 1;
    dbld_pool_opts po = {.size = q->pool_size, .db = q_session_opts(cfg)};
    q->pool = dbld_pool_create_opts(cfg->query.postgres_dsn ? cfg->query.postgres_dsn : "", &po);
    q->life = q_lifecache_create();
    q->rx = q_reactor_create(q, workers);
    if (!q->rx) {
        q_ctx_destroy(q);
        return dbld_status_set(st, DBLD_INTERNAL, "could not start the query reactor");
    }
    if (dbld_outputs_create(cfg, &q->outs, st) != 0) {
        q_ctx_destroy(q);
        return st->code;
    }
    *out = q;
    return 0;
}

dbld_db_opts q_session_opts(const dbld_config *cfg)
{
    return (dbld_db_opts){.statement_timeout_ms = cfg->query.statement_timeout_ms, .read_only = 1};
}

int q_ref_kind(const q_ctx *q, const char *ref, size_t *job)
{
    size_t j;
    /* a ref two jobs match (refused at config load) still is producible */
    if (dbld_outputs_job(q->outs, ref, &j, NULL) != 0 || j != DBLD_OUTPUTS_NONE) {
        if (job) *job = j;
        return 1;
    }
    return dbld_outputs_external(q->outs, ref) ? 2 : 0;
}

static void set_up(q_ctx *q, int up, const char *why)
{
    pthread_mutex_lock(&q->mu);
    int changed = q->db_up != up;
    q->db_up = up;
    pthread_mutex_unlock(&q->mu);
    if (!changed) return;
    dbld_server_set_health_all(q->srv, up);
    if (up)
        dbld_log(DBLD_LOG_INFO, "database reachable: serving", (char *)NULL);
    else
        dbld_log(DBLD_LOG_WARN, "database unavailable: not serving", "error", why, (char *)NULL);
}

void q_ctx_db_down(q_ctx *q, const char *why)
{
    set_up(q, 0, why);
    pthread_mutex_lock(&q->mu);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

static int probe(q_ctx *q, dbld_db **db, dbld_status *st)
{
    if (*db && !dbld_db_alive(*db)) {
        dbld_db_close(*db);
        *db = NULL;
    }
    if (!*db) {
        int rc =
            dbld_db_connect(q->cfg->query.postgres_dsn ? q->cfg->query.postgres_dsn : "", db, st);
        if (rc) return rc;
        rc = dbld_db_exec(*db, "SET default_transaction_read_only = on", 0, NULL, NULL, st);
        if (rc) return rc;
    }
    int rc = dbld_db_exec(*db, PROBE_SQL, 0, NULL, NULL, st);
    if (rc && rc != DBLD_UNAVAILABLE)
        dbld_status_prefix(st, "projection tables not readable (has the event log migrated?)");
    return rc;
}

static void *monitor_main(void *arg)
{
    q_ctx *q = arg;
    dbld_db *db = NULL;
    int64_t backoff = 100;
    pthread_mutex_lock(&q->mu);
    while (!q->stop) {
        pthread_mutex_unlock(&q->mu);
        dbld_status st;
        dbld_status_clear(&st);
        int ok = probe(q, &db, &st) == 0;
        set_up(q, ok, st.msg);
        int64_t wait = ok ? MONITOR_OK_MS : backoff;
        backoff = ok ? 100 : (backoff * 2 > 2000 ? 2000 : backoff * 2);
        struct timespec ts = dbld_abs_time(CLOCK_REALTIME, wait);
        pthread_mutex_lock(&q->mu);
        if (!q->stop) pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    pthread_mutex_unlock(&q->mu);
    dbld_db_close(db);
    return NULL;
}

void q_ctx_start(q_ctx *q)
{
    if (pthread_create(&q->monitor, NULL, monitor_main, q) == 0) q->started = 1;
}

void q_ctx_destroy(q_ctx *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->started) pthread_join(q->monitor, NULL);
    q_reactor_destroy(q->rx);
    dbld_pool_destroy(q->pool);
    q_lifecache_destroy(q->life);
    dbld_outputs_destroy(q->outs);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    free(q);
}
