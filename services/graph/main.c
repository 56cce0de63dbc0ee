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
 */
#include "coordinator.h"
#include "graph_rpc.h"
#include "leases.h"
#include "processes.h"
#include "retry.h"
#include "waiters.h"

#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/security.h"
#include "dbld/util.h"

#include <signal.h>
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

int main(int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */

    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "graph", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);

    dbld_status st;
    gs_lookup *lookup = NULL;
    if (gs_lookup_create(&cfg, &lookup, &st) != 0) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        dbld_config_free(&cfg);
        return 2;
    }
    static gs_service svc;
    service_init(&svc, &cfg, lookup);
    if (gs_waiters_create(&svc.waiters, &st) != 0 ||
        gs_pool_create("gs-build", cfg.graph.build_threads, cfg.graph.build_queue, 0,
                       &svc.build_pool, &st) != 0 ||
        gs_pool_create("gs-task", cfg.graph.task_threads, -1, 1 << 20, &svc.task_pool, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start", "error", st.msg, (char *)NULL);
        return 1;
    }

    const dbld_server_config *sc = &cfg.graph.server;
    dbld_server_opts opts = {
        .service_name = "graph",
        .listen = sc->listen,
        .workers = sc->workers,
        .pollers = sc->pollers,
        .max_queue = sc->max_queue,
        .max_message_bytes = sc->max_message_bytes,
        .shutdown_grace_ms = sc->shutdown_grace_ms,
        .max_streams = sc->max_streams,
    };
    dbld_server *srv = NULL;
    dbld_security sec;
    if (dbld_security_setup(&cfg, sc, &sec, &st) != 0)
        return dbld_security_config_error(&cfg, &sec, &st);
    opts.tls = &sec.server_tls;
    opts.auth = sec.auth;
    opts.metrics_listen = sc->metrics_listen;
    if (dbld_server_create(&opts, &srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not create server", "error", st.msg, (char *)NULL);
        return 1;
    }
    svc.srv = srv;
    dbld_server_add(srv, &gs_lookup_service, &svc);
    dbld_server_add(srv, &gs_builder_service, &svc);
    if (dbld_server_start(srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start server", "error", st.msg, (char *)NULL);
        dbld_server_destroy(srv);
        return 1;
    }
    char port[16], jobs[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    snprintf(jobs, sizeof jobs, "%zu", cfg.graph.n_jobs);
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, "jobs", jobs, "owner",
             svc.owner, "eventlog", svc.eventlog, (char *)NULL);
    if (gs_background_start(&svc) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start the background thread", (char *)NULL);
        return 1;
    }
    if (gs_processes_start(&svc) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start the background processes", (char *)NULL);
        return 1;
    }

    int sig = dbld_signals_wait_server(srv); /* SIGHUP reloads TLS files */
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
             (char *)NULL);
    atomic_store(&svc.stopping, 1); /* no new work: tasks stop before their next step */
    gs_waiters_close(svc.waiters);  /* Build/Cancel calls waiting for a build: UNAVAILABLE */
    dbld_server_shutdown(srv);
    gs_processes_stop(&svc);
    gs_background_stop(&svc);
    /* Drain: queued builds never start; running ones stop appending and end
     * once their tasks did (queued tasks end at once, a Run stream within
     * RUN_STOP_POLL_MS: closing it makes the job service stop the process).
     * The build pool first: its builds wait for their tasks. */
    int64_t drain_ms = sc->shutdown_grace_ms + DRAIN_EXTRA_MS;
    int left = gs_pool_stop(svc.build_pool, drain_ms);
    left += gs_pool_stop(svc.task_pool, left ? 0 : drain_ms);
    gs_leases_hand_over(&svc); /* every build not ended: resumed by the next instance */
    char calls[24], busy[16];
    snprintf(calls, sizeof calls, "%ld", (long)atomic_load(&svc.configure_calls));
    snprintf(busy, sizeof busy, "%d", left);
    if (left) {
        /* a build or task blocked in a call that outlived the drain (a
         * configure call, an event log that does not answer): leave without
         * tearing it down; its lease was handed over like the others */
        dbld_log(DBLD_LOG_WARN, "stopped without draining (builds in progress will be resumed)",
                 "configure_calls", calls, "still_running", busy, (char *)NULL);
        _exit(0);
    }
    dbld_server_destroy(srv);
    dbld_client_shutdown_all();
    dbld_log(DBLD_LOG_INFO, "stopped (builds in progress will be resumed from their leases)",
             "configure_calls", calls, (char *)NULL);
    gs_lookup_destroy(lookup);
    dbld_config_free(&cfg);
    dbld_security_free(&sec);
    return 0;
}
