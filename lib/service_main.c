/* service_main.c - the one main() of the four services (service.h).
 *
 * Each service used to spell this sequence out in its own main.c, with the
 * unwinding of every failure copied four times and dbld_server_add()'s
 * result ignored. Here it is once; the services keep only their hooks and
 * their tables of gRPC services.
 */
#include "dbld/service.h"

#include "dbld/log.h"
#include "dbld/security.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* Exit status for a hook's failure: 2 (logged as a config error) or 1. */
static int hook_failed(const dbld_config *cfg, int rc, const char *what, const dbld_status *st)
{
    if (rc == DBLD_SERVICE_CONFIG_ERROR) {
        dbld_config_log_error(cfg, "%s", st->msg);
        return 2;
    }
    dbld_log(DBLD_LOG_ERROR, what, "error", st->msg, (char *)NULL);
    return 1;
}

static void log_started(const dbld_config *cfg, const dbld_server_config *sc, dbld_server *srv)
{
    char port[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, "eventlog",
             cfg->shared.peers.eventlog, (char *)NULL);
}

/* Create, fill and start the server; 0 or the exit status (with srv
 * destroyed, after the stop hook once attach succeeded). */
static int serve(const dbld_service_def *def, dbld_config *cfg, void **state,
                 const dbld_server_opts *opts, dbld_server **out)
{
    dbld_status st;
    dbld_status_clear(&st);
    dbld_server *srv = NULL;
    int rc = dbld_server_create(opts, &srv, &st);
    if (rc) return hook_failed(cfg, rc, "could not create server", &st);
    if (def->attach && (rc = def->attach(cfg, state, srv, &st)) != 0) {
        rc = hook_failed(cfg, rc, "could not start", &st);
        goto fail_server;
    }
    for (size_t i = 0; def->services && def->services[i]; i++)
        if ((rc = dbld_server_add(srv, def->services[i], *state)) != 0) {
            dbld_status_set(&st, rc, "could not register %s", def->services[i]->name);
            rc = hook_failed(cfg, rc, "could not start server", &st);
            goto fail_attached;
        }
    if ((rc = dbld_server_start(srv, &st)) != 0) {
        rc = hook_failed(cfg, rc, "could not start server", &st);
        goto fail_attached;
    }
    if (def->start && (rc = def->start(*state, srv, &st)) != 0) {
        rc = hook_failed(cfg, rc, "could not start", &st);
        dbld_server_shutdown(srv);
        goto fail_attached;
    }
    *out = srv;
    return 0;
fail_attached:
    if (def->stop) def->stop(*state);
fail_server:
    dbld_server_destroy(srv);
    return rc;
}

int dbld_service_main(const dbld_service_def *def, int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */
    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, def->name, &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);
    dbld_status st;
    dbld_status_clear(&st);
    void *state = NULL;
    if (def->init && (rc = def->init(&cfg, &state, &st)) != 0) {
        rc = hook_failed(&cfg, rc, "could not start", &st);
        if (def->destroy) def->destroy(state); /* what init made before failing */
        dbld_config_free(&cfg);
        return rc;
    }
    const dbld_server_config *sc =
        (const dbld_server_config *)(const void *)((const char *)&cfg + def->server_offset);
    dbld_security sec;
    if (dbld_security_setup(&cfg, sc, &sec, &st) != 0) {
        if (def->destroy) def->destroy(state);
        return dbld_security_config_error(&cfg, &sec, &st);
    }
    dbld_server_opts opts = {
        .service_name = def->name,
        .listen = sc->listen,
        .workers = sc->workers,
        .pollers = sc->pollers,
        .max_queue = sc->max_queue,
        .max_message_bytes = sc->max_message_bytes,
        .shutdown_grace_ms = sc->shutdown_grace_ms,
        .max_streams = sc->max_streams,
        .max_concurrent_streams = sc->max_concurrent_streams,
        .tls = &sec.server_tls,
        .auth = sec.auth,
        .metrics_listen = sc->metrics_listen,
    };
    if (def->server_opts) def->server_opts(&cfg, state, &opts);
    dbld_server *srv = NULL;
    if ((rc = serve(def, &cfg, &state, &opts, &srv)) != 0) {
        if (def->destroy) def->destroy(state);
        dbld_client_shutdown_all();
        dbld_config_free(&cfg);
        dbld_security_free(&sec);
        return rc;
    }
    if (def->started)
        def->started(&cfg, state, srv);
    else
        log_started(&cfg, sc, srv);

    int sig = dbld_signals_wait_server(srv); /* SIGHUP reloads TLS files */
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
             (char *)NULL);
    if (def->stopping) def->stopping(state);
    dbld_server_shutdown(srv);
    if (def->stop) def->stop(state);
    dbld_server_destroy(srv);
    dbld_client_shutdown_all();
    if (def->destroy) def->destroy(state);
    dbld_config_free(&cfg);
    dbld_log(DBLD_LOG_INFO, "stopped", (char *)NULL);
    dbld_security_free(&sec);
    return 0;
}
