/* ctx.c - the query service's process context: connection pool, the graph's
 * output/external regexes (dbld_outputs, for PutWants validation and want
 * summaries) and the database monitor that drives health.
 *
 * Health is NOT_SERVING until a probe of the projection tables succeeds on
 * the database monitor's own connection (lib/dbmon.c: a busy pool never
 * reads as a dead database; the session is the read connections' own), and
 * goes back to NOT_SERVING when a probe or any query reports the database
 * unavailable; the monitor then retries with backoff.
 */
#include "query.h"

#include "dbld/dbmon.h"
#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROBE_SQL "SELECT 1 FROM partitions LIMIT 0"
#define MONITOR_OK_MS 1000

/* dbld_dbmon_probe_fn: the projection tables answer. */
static int probe(void *user, dbld_db *db, dbld_status *st)
{
    (void)user;
    int rc = dbld_db_exec(db, PROBE_SQL, 0, NULL, NULL, st);
    if (rc && rc != DBLD_UNAVAILABLE)
        dbld_status_prefix(st, "projection tables not readable (has the event log migrated?)");
    return rc;
}

int q_ctx_create(const dbld_config *cfg, dbld_server *srv, q_ctx **out, dbld_status *st)
{
    q_db_metrics_init();
    q_ctx *q = dbld_xcalloc(1, sizeof *q);
    q->cfg = cfg;
    q->srv = srv;
    int workers = cfg->query.server.workers > 0 ? cfg->query.server.workers : 4;
    q->pool_size = workers + 1;
    dbld_pool_opts po = {.size = q->pool_size, .db = q_session_opts(cfg)};
    q->pool = dbld_pool_create_opts(cfg->query.postgres_dsn ? cfg->query.postgres_dsn : "", &po);
    dbld_dbmon_opts mo = {.dsn = cfg->query.postgres_dsn ? cfg->query.postgres_dsn : "",
                          .session = q_session_opts(cfg),
                          .ok_ms = MONITOR_OK_MS,
                          .probe = probe,
                          .user = q,
                          .server = srv};
    q->mon = dbld_dbmon_create(&mo);
    q->life = q_lifecache_create();
    q->index = q_index_create(q);
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

void q_ctx_db_down(q_ctx *q, const char *why)
{
    dbld_dbmon_down(q->mon, why);
}

int q_ctx_db_up(q_ctx *q)
{
    return dbld_dbmon_up(q->mon, NULL, 0);
}

void q_ctx_start(q_ctx *q)
{
    dbld_dbmon_start(q->mon);
    q_index_start(q->index);
}

void q_ctx_destroy(q_ctx *q)
{
    if (!q) return;
    q_index_destroy(q->index); /* first: its thread reads q */
    dbld_dbmon_destroy(q->mon);
    q_reactor_destroy(q->rx);
    dbld_pool_destroy(q->pool);
    q_lifecache_destroy(q->life);
    dbld_outputs_destroy(q->outs);
    free(q);
}
