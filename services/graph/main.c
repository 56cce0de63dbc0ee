/* main.c - databuild-graph: graph lookup, analysis and the build coordinator.
 *
 * Serves the seed's GraphLookup and the GraphBuilder extension (Analyze,
 * Build, Submit, Cancel) plus grpc.health.v1.Health, which stays NOT_SERVING
 * until the event log answers and orphaned builds were adopted. On SIGTERM it
 * stops accepting calls, gives in-flight ones the grace period, drains its
 * build and task pools (builds stop appending, tasks stop their runs) and
 * exits 0 without ending its builds: their leases are set to lapse at once
 * and the next instance (or a live replica) resumes them from the event log.
 *
 * Tuning for tests (environment, milliseconds): DBLD_GRAPH_LEASE_TTL_MS
 * (default 15000; renewals every TTL/5), DBLD_GRAPH_ORPHAN_POLL_MS
 * (default 10000) and DBLD_GRAPH_RELAUNCH_MS (default 120000: how long a
 * task relaunches a run whose job service was lost, see retry.h).
 * The process itself is lib/service_main.c; this file is its hooks.
 */
#include "coordinator.h"
#include "graph_rpc.h"
#include "leases.h"
#include "processes.h"
#include "retry.h"
#include "waiters.h"

#include "dbld/log.h"
#include "dbld/service.h"
#include "dbld/util.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_EXTRA_MS 2000 /* beyond shutdown_grace_ms, for running tasks to stop */

static int64_t env_ms(const char *name, int64_t dflt, int64_t min)
{
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end || x < min ? dflt : (int64_t)x;
}

static void service_init(gs_service *s, dbld_config *cfg, gs_lookup *lookup)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->lookup = lookup;
    s->eventlog = cfg->shared.peers.eventlog;
    char rnd[37];
    dbld_uuid_v4(rnd);
    rnd[8] = 0;
    snprintf(s->owner, sizeof s->owner, "graph@%s/pid%d/%s", cfg->graph.server.listen,
             (int)getpid(), rnd);
    s->lease_ttl_ms = env_ms("DBLD_GRAPH_LEASE_TTL_MS", 15000, 500);
    s->renew_every_ms = s->lease_ttl_ms / 5;
    s->orphan_poll_ms = env_ms("DBLD_GRAPH_ORPHAN_POLL_MS", 10000, 100);
    s->el_timeout_ms = s->lease_ttl_ms > 10000 ? s->lease_ttl_ms : 10000;
    s->relaunch_ms = env_ms("DBLD_GRAPH_RELAUNCH_MS", GS_RELAUNCH_TOTAL_MS, 0);
    s->query_wait_ms = env_ms("DBLD_GRAPH_QUERY_WAIT_MS", 60000, 0);
    atomic_init(&s->ready, 0);
    atomic_init(&s->stopping, 0);
    atomic_init(&s->configure_calls, 0);
    pthread_mutex_init(&s->ep_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->ep_inflight = dbld_xcalloc(cfg->shared.peers.n_job + 1, sizeof *s->ep_inflight);
}

static gs_service svc;

static int graph_init(dbld_config *cfg, void **state, dbld_status *st)
{
    gs_lookup *lookup = NULL;
    if (gs_lookup_create(cfg, &lookup, st) != 0) return DBLD_SERVICE_CONFIG_ERROR;
    service_init(&svc, cfg, lookup);
    *state = &svc;
    int rc = gs_waiters_create(&svc.waiters, st);
    if (!rc)
        rc = gs_pool_create("gs-build", cfg->graph.build_threads, cfg->graph.build_queue, 0,
                            &svc.build_pool, st);
    if (!rc)
        rc = gs_pool_create("gs-task", cfg->graph.task_threads, -1, 1 << 20, &svc.task_pool, st);
    return rc ? DBLD_INTERNAL : 0;
}

static int graph_attach(dbld_config *cfg, void **state, dbld_server *srv, dbld_status *st)
{
    (void)cfg;
    (void)st;
    ((gs_service *)*state)->srv = srv;
    return 0;
}

/* The lease thread (health turns SERVING once the event log answered and
 * orphans were adopted) and the background processes. */
static int graph_start(void *state, dbld_server *srv, dbld_status *st)
{
    (void)srv;
    gs_service *s = state;
    if (gs_background_start(s) != 0)
        return dbld_status_set(st, DBLD_INTERNAL, "could not start the background thread");
    if (gs_processes_start(s) != 0)
        return dbld_status_set(st, DBLD_INTERNAL, "could not start the background processes");
    return 0;
}

static void graph_started(const dbld_config *cfg, void *state, dbld_server *srv)
{
    gs_service *s = state;
    char port[16], jobs[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    snprintf(jobs, sizeof jobs, "%zu", cfg->graph.n_jobs);
    dbld_log(DBLD_LOG_INFO, "started", "listen", cfg->graph.server.listen, "port", port, "jobs",
             jobs, "owner", s->owner, "eventlog", s->eventlog, (char *)NULL);
}

static void graph_stopping(void *state)
{
    gs_service *s = state;
    atomic_store(&s->stopping, 1); /* no new work: tasks stop before their next step */
    gs_waiters_close(s->waiters);  /* Build/Cancel calls waiting for a build: UNAVAILABLE */
}

/* Drain: queued builds never start; running ones stop appending and end once
 * their tasks did (queued tasks end at once, a Run stream within
 * RUN_STOP_POLL_MS: closing it makes the job service stop the process). The
 * build pool first: its builds wait for their tasks. */
static void graph_stop(void *state)
{
    gs_service *s = state;
    graph_stopping(s); /* again, for a start-up that failed: both are idempotent */
    gs_processes_stop(s);
    gs_background_stop(s);
    int64_t drain_ms = s->cfg->graph.server.shutdown_grace_ms + DRAIN_EXTRA_MS;
    int left = gs_pool_stop(s->build_pool, drain_ms);
    left += gs_pool_stop(s->task_pool, left ? 0 : drain_ms);
    s->build_pool = s->task_pool = NULL;
    gs_leases_hand_over(s); /* every build not ended: resumed by the next instance */
    char calls[24], busy[16];
    snprintf(calls, sizeof calls, "%ld", (long)atomic_load(&s->configure_calls));
    snprintf(busy, sizeof busy, "%d", left);
    if (left) {
        /* a build or task blocked in a call that outlived the drain (a
         * configure call, an event log that does not answer): leave without
         * tearing it down; its lease was handed over like the others */
        dbld_log(DBLD_LOG_WARN, "stopped without draining (builds in progress will be resumed)",
                 "configure_calls", calls, "still_running", busy, (char *)NULL);
        _exit(0);
    }
    dbld_log(DBLD_LOG_INFO, "drained (builds in progress will be resumed from their leases)",
             "configure_calls", calls, (char *)NULL);
}

static void graph_destroy(void *state)
{
    (void)state; /* NULL when the lookup could not be made */
    gs_service *s = &svc;
    gs_pool_stop(s->build_pool, 0); /* a failed start-up: nothing ran on them */
    gs_pool_stop(s->task_pool, 0);
    gs_lookup_destroy(s->lookup);
}

static const dbld_service *const graph_services[] = {
    &gs_lookup_service,
    &gs_builder_service,
    NULL,
};

static const dbld_service_def graph_def = {
    .name = "graph",
    .server_offset = offsetof(dbld_config, graph.server),
    .init = graph_init,
    .server_opts = NULL,
    .attach = graph_attach,
    .services = graph_services,
    .start = graph_start,
    .started = graph_started,
    .stopping = graph_stopping,
    .stop = graph_stop,
    .destroy = graph_destroy,
};

int main(int argc, char **argv)
{
    return dbld_service_main(&graph_def, argc, argv);
}
