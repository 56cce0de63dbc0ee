/* main.c - databuild-eventlog: the build event log service, sole owner of the
 * PostgreSQL schema. Serves databuild.v1.EventLog and grpc.health.v1.Health;
 * health is SERVING only while the database is reachable and migrated.
 * The process itself is lib/service_main.c; this file is its hooks. */
#include "dbld/service.h"
#include "eventlog_rpc.h"
#include "store.h"

#include <stddef.h>

static int el_init(dbld_config *cfg, void **state, dbld_status *st)
{
    (void)state;
    if (!cfg->shared.postgres_dsn || !*cfg->shared.postgres_dsn) {
        dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                        "shared.postgres_dsn is required (or set DATABUILD_POSTGRES_DSN)");
        return DBLD_SERVICE_CONFIG_ERROR;
    }
    return 0;
}

/* The store reports the database's health through the server. */
static int el_attach(dbld_config *cfg, void **state, dbld_server *srv, dbld_status *st)
{
    (void)st;
    el_store_opts eo = {
        .dsn = cfg->shared.postgres_dsn,
        .max_batch_events = cfg->eventlog.group_commit_max_events,
        .group_wait_us = cfg->eventlog.group_commit_wait_us,
        .pool_size = cfg->eventlog.db_pool_size,
        .statement_timeout_ms = cfg->eventlog.statement_timeout_ms,
        .server = srv,
    };
    *state = el_store_create(&eo);
    return 0;
}

static int el_start(void *state, dbld_server *srv, dbld_status *st)
{
    (void)srv;
    return el_store_start(state, st);
}

static void el_stop(void *state)
{
    el_store_destroy(state);
}

static const dbld_service *const el_services[] = {
    &el_eventlog_service, &el_claims_service,    &el_joblogs_service,
    &el_leases_service,   &el_processes_service, NULL,
};

static const dbld_service_def el_def = {
    .name = "eventlog",
    .server_offset = offsetof(dbld_config, eventlog.server),
    .init = el_init,
    .server_opts = NULL,
    .attach = el_attach,
    .services = el_services,
    .start = el_start,
    .started = NULL, /* listen, port */
    .stopping = NULL,
    .stop = el_stop,
    .destroy = NULL, /* el_stop freed the store */
};

int main(int argc, char **argv)
{
    return dbld_service_main(&el_def, argc, argv);
}
