/* main.c - databuild-job: runs job binaries for the graph's coordinator.
 *
 * Serves the seed's JobConfigure and JobExecute, the JobRunner extension
 * (Run/Cancel of one configured task) and grpc.health.v1.Health (SERVING
 * once started: the job service has no hard dependency; job logs go to the
 * event log on a best-effort basis). Job runs wait in RPC worker threads, so
 * there are at least max_concurrent_runs + 4 of them. SIGTERM stops every
 * running job (its process group) and exits 0 within the shutdown grace.
 * Before serving, it kills the process groups a killed job service left
 * behind (orphans.h; $DATABUILD_JOB_STATE_DIR). Started as root, it runs
 * its jobs as job.run_as.
 */
#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/proc.h"
#include "dbld/rpc.h"
#include "dbld/security.h"
#include "job_rpc.h"
#include "orphans.h"
#include "runner.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* The user of job.run_as that children switch to (*out; NULL: they keep our
 * credentials). Only root switches users: a job service that is not root
 * refuses a run_as naming someone else, so a config never silently runs
 * jobs as a user it does not name. Started as root without run_as, jobs
 * run as root, with a warning. */
static int resolve_run_as(const dbld_config *cfg, dbld_proc_user **out, dbld_status *st)
{
    *out = NULL;
    const char *name = cfg->job.run_as;
    uid_t me = geteuid();
    if (!name || !*name) {
        if (me == 0)
            dbld_log(DBLD_LOG_WARN, "jobs run as root: set job.run_as to an unprivileged user",
                     NULL);
        return 0;
    }
    dbld_proc_user *u;
    dbld_status lst;
    if (dbld_proc_user_lookup(name, &u, &lst) != 0)
        return dbld_status_set(st, lst.code, "job.run_as: %s", lst.msg);
    if (u->uid == me) { /* already that user: nothing to switch */
        dbld_proc_user_free(u);
        return 0;
    }
    if (me != 0) {
        int rc = dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                 "job.run_as: the job service runs as uid %ld, not root, so it "
                                 "cannot run jobs as user \"%s\" (uid %ld); start it as root, as "
                                 "that user, or without job.run_as",
                                 (long)me, name, (long)u->uid);
        dbld_proc_user_free(u);
        return rc;
    }
    char uid[24], gid[24];
    snprintf(uid, sizeof uid, "%ld", (long)u->uid);
    snprintf(gid, sizeof gid, "%ld", (long)u->gid);
    dbld_log(DBLD_LOG_INFO, "jobs run as another user", "user", u->name, "uid", uid, "gid", gid,
             "home", u->home, NULL);
    *out = u;
    return 0;
}

int main(int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */

    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "job", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);

    dbld_status st;
    dbld_proc_user *run_as = NULL;
    if (resolve_run_as(&cfg, &run_as, &st) != 0) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        dbld_config_free(&cfg);
        return 2;
    }
    orphan_reg *orphans = NULL;
    if (orphan_reg_open(getenv("DATABUILD_JOB_STATE_DIR"), &orphans, &st) != 0) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        dbld_proc_user_free(run_as);
        dbld_config_free(&cfg);
        return 2;
    }
    orphan_reg_sweep(orphans); /* before any job of ours runs */
    jr_engine *engine = jr_engine_create(&cfg, orphans, run_as, &st);
    if (!engine) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        orphan_reg_close(orphans);
        dbld_proc_user_free(run_as);
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
        .max_streams = sc->max_streams,
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
        dbld_proc_user_free(run_as);
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
        dbld_proc_user_free(run_as);
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
    dbld_proc_user_free(run_as);
    dbld_config_free(&cfg);
    dbld_log(DBLD_LOG_INFO, "stopped", NULL);
    dbld_security_free(&sec);
    return 0;
}
