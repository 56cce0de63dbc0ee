/* main.c - databuild-job: runs job binaries for the graph's coordinator.
 *
 * Serves the seed's JobConfigure and JobExecute, the JobRunner extension
 * (Run/Cancel of one configured task) and grpc.health.v1.Health (SERVING
 * once started: the job service has no hard dependency; job logs go to the
 * event log on a best-effort basis). Job runs wait in RPC worker threads, so
 * there are at least max_concurrent_runs + 4 of them. SIGTERM stops every
 * running job (its process group) and exits 0 within the shutdown grace.
 * Before serving, it kills the process groups a killed job service left
 * behind (orphans.h; $DATABUILD_JOB_STATE_DIR).
 */
#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/security.h"
#include "job_rpc.h"
#include "orphans.h"
#include "runner.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */

    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "job", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);

    dbld_status st;
    orphan_reg *orphans = NULL;
    if (orphan_reg_open(getenv("DATABUILD_JOB_STATE_DIR"), &orphans, &st) != 0) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        dbld_config_free(&cfg);
        return 2;
    }
    orphan_reg_sweep(orphans); /* before any job of ours runs */
    jr_engine *engine = jr_engine_create(&cfg, orphans, &st);
    if (!engine) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        orphan_reg_close(orphans);
        dbld_config_free(&cfg);
        return 2;
    }

    const dbld_server_config *sc = &cfg.job.server;
    int workers = sc->workers;
    if (workers < cfg.job.max_concurrent_runs + 4) workers = cfg.job.max_concurrent_runs + 4;
    dbld_server_opts opts = {
        .service_name = "job",
        .listen = sc->listen,
        .workers = workers,
        .pollers = sc->pollers,
        .max_queue = sc->max_queue,
        .max_message_bytes = sc->max_message_bytes,
        .shutdown_grace_ms = sc->shutdown_grace_ms,
    };
    dbld_server *srv = NULL;
    dbld_security sec;
    if (dbld_security_setup(&cfg, &cfg.job.server, &sec, &st) != 0)
        return dbld_security_config_error(&cfg, &sec, &st);
    opts.tls = &sec.server_tls;
    opts.auth = sec.auth;
    opts.metrics_listen = sc->metrics_listen;
    if (dbld_server_create(&opts, &srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not create server", "error", st.msg, NULL);
        jr_engine_destroy(engine);
        orphan_reg_close(orphans);
        dbld_config_free(&cfg);
        return 1;
    }
    dbld_server_add(srv, &job_configure_service, engine);
    dbld_server_add(srv, &job_execute_service, engine);
    dbld_server_add(srv, &job_runner_service, engine);
    if (dbld_server_start(srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start server", "error", st.msg, NULL);
        dbld_server_destroy(srv);
        jr_engine_destroy(engine);
        orphan_reg_close(orphans);
        dbld_config_free(&cfg);
        return 1;
    }
    dbld_server_set_health_all(srv, 1);

    char port[16], nw[16], nj[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    snprintf(nw, sizeof nw, "%d", workers);
    snprintf(nj, sizeof nj, "%zu", cfg.graph.n_jobs);
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, "workers", nw, "jobs",
             nj, "eventlog", cfg.shared.peers.eventlog, NULL);

    int sig = dbld_signals_wait_server(srv); /* SIGHUP reloads TLS files */
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    /* Running jobs get at most half the grace to die, so their calls (and
     * final log flushes) still finish inside it. */
    int kill_ms = cfg.job.kill_grace_ms;
    if (kill_ms > sc->shutdown_grace_ms / 2) kill_ms = sc->shutdown_grace_ms / 2;
    jr_engine_shutdown(engine, kill_ms);
    dbld_server_shutdown(srv);
    dbld_client_shutdown_all();
    dbld_server_destroy(srv);
    jr_engine_destroy(engine);
    orphan_reg_close(orphans);
    dbld_config_free(&cfg);
    dbld_log(DBLD_LOG_INFO, "stopped", NULL);
    dbld_security_free(&sec);
    return 0;
}
