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
 * its jobs as job.run_as. The process itself is lib/service_main.c; this
 * file is its hooks.
 */
#include "dbld/log.h"
#include "dbld/proc.h"
#include "dbld/service.h"
#include "job_rpc.h"
#include "orphans.h"
#include "runner.h"
#include "joblog.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define LOG_TAILS_AT_EXIT_MS 2000 /* closed runs' log tails, once the server has stopped */

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

typedef struct job_state {
    const dbld_config *cfg;
    dbld_proc_user *run_as;
    orphan_reg *orphans;
    jr_engine *engine;
} job_state;

/* The hooks' state is the engine (the services' user pointer); the rest
 * lives here. */
static job_state g_job;

static int job_init(dbld_config *cfg, void **state, dbld_status *st)
{
    job_state *j = &g_job;
    j->cfg = cfg;
    if (resolve_run_as(cfg, &j->run_as, st) != 0) return DBLD_SERVICE_CONFIG_ERROR;
    if (orphan_reg_open(getenv("DATABUILD_JOB_STATE_DIR"), &j->orphans, st) != 0)
        return DBLD_SERVICE_CONFIG_ERROR;
    orphan_reg_sweep(j->orphans); /* before any job of ours runs */
    j->engine = jr_engine_create(cfg, j->orphans, j->run_as, st);
    *state = j->engine;
    return j->engine ? 0 : DBLD_SERVICE_CONFIG_ERROR;
}

/* Job runs wait in RPC worker threads: max_concurrent_runs + 4 at least. */
static void job_server_opts(const dbld_config *cfg, void *state, dbld_server_opts *opts)
{
    (void)state;
    if (opts->workers < cfg->job.max_concurrent_runs + 4)
        opts->workers = cfg->job.max_concurrent_runs + 4;
}

static int job_start(void *state, dbld_server *srv, dbld_status *st)
{
    (void)state;
    (void)st;
    dbld_server_set_health_all(srv, 1);
    return 0;
}

static void job_started(const dbld_config *cfg, void *state, dbld_server *srv)
{
    (void)state;
    const dbld_server_config *sc = &cfg->job.server;
    int workers = sc->workers;
    if (workers < cfg->job.max_concurrent_runs + 4) workers = cfg->job.max_concurrent_runs + 4;
    char port[16], nw[16], nj[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    snprintf(nw, sizeof nw, "%d", workers);
    snprintf(nj, sizeof nj, "%zu", cfg->graph.n_jobs);
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, "workers", nw, "jobs",
             nj, "eventlog", cfg->shared.peers.eventlog, NULL);
}

/* Running jobs get at most half the grace to die, so their calls (and
 * final log flushes) still finish inside it. */
static void job_stopping(void *state)
{
    (void)state;
    job_state *j = &g_job;
    int kill_ms = j->cfg->job.kill_grace_ms;
    if (kill_ms > j->cfg->job.server.shutdown_grace_ms / 2)
        kill_ms = j->cfg->job.server.shutdown_grace_ms / 2;
    jr_engine_shutdown(j->engine, kill_ms);
}

/* After the server: the log tails of ended runs still being sent get
 * LOG_TAILS_AT_EXIT_MS, before the clients are shut down. */
static void job_stop(void *state)
{
    (void)state;
    jl_shutdown(LOG_TAILS_AT_EXIT_MS);
}

static void job_destroy(void *state)
{
    (void)state;
    job_state *j = &g_job;
    jr_engine_destroy(j->engine);
    orphan_reg_close(j->orphans);
    dbld_proc_user_free(j->run_as);
}

static const dbld_service *const job_services[] = {
    &job_configure_service,
    &job_execute_service,
    &job_runner_service,
    NULL,
};

static const dbld_service_def job_def = {
    .name = "job",
    .server_offset = offsetof(dbld_config, job.server),
    .init = job_init,
    .server_opts = job_server_opts,
    .attach = NULL, /* nothing needs the server before start */
    .services = job_services,
    .start = job_start,
    .started = job_started,
    .stopping = job_stopping,
    .stop = job_stop, /* job_stopping stopped the runs */
    .destroy = job_destroy,
};

int main(int argc, char **argv)
{
    return dbld_service_main(&job_def, argc, argv);
}
