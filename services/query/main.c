/* main.c - databuild-query: the read side of DataBuild. Serves
 * databuild.v1.DataBuildService (the seed's 17 RPCs) and databuild.v1.QueryOps
 * from the event log's projections, read over a read-only PostgreSQL session
 * (query.postgres_dsn, which may point at a replica); writes (PutWants,
 * PutTaints) go through the event log service (shared.peers.eventlog).
 * Health is SERVING only while the database answers. See README.md.
 * The process itself is lib/service_main.c; this file is its hooks. */
#include "query.h"

#include "dbld/service.h"

#include <stddef.h>

static int q_attach(dbld_config *cfg, void **state, dbld_server *srv, dbld_status *st)
{
    q_ctx *q = NULL;
    if (q_ctx_create(cfg, srv, &q, st) != 0) return DBLD_SERVICE_CONFIG_ERROR;
    *state = q;
    return 0;
}

static int q_start(void *state, dbld_server *srv, dbld_status *st)
{
    (void)srv;
    (void)st;
    q_ctx_start(state); /* health goes SERVING once the database answers */
    return 0;
}

static void q_stop(void *state)
{
    q_ctx_destroy(state);
}

/* One malloc arena: with two, memory freed by the threads of one could not
 * serve the other's, and under 1,000 clients both grew (bench/run_load.sh:
 * RSS peak 43 MiB with one, 48 with two, at the same CPU per call). */
static void q_server_opts(const dbld_config *cfg, void *state, dbld_server_opts *opts)
{
    (void)cfg;
    (void)state;
    opts->malloc_arenas = 1;
}

static const dbld_service *const q_services[] = {
    &q_databuild_service,
    &q_ops_service,
    &q_processes_service,
    NULL,
};

static const dbld_service_def q_def = {
    .name = "query",
    .server_offset = offsetof(dbld_config, query.server),
    .init = NULL, /* q_attach: the context needs the server */
    .server_opts = q_server_opts,
    .attach = q_attach,
    .services = q_services,
    .start = q_start,
    .started = NULL, /* listen, port, eventlog */
    .stopping = NULL,
    .stop = q_stop,
    .destroy = NULL, /* q_stop freed the context */
};

int main(int argc, char **argv)
{
    return dbld_service_main(&q_def, argc, argv);
}
