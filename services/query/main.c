/* main.c - databuild-query: the read side of DataBuild. Serves
 * databuild.v1.DataBuildService (the seed's 17 RPCs) and databuild.v1.QueryOps
 * from the event log's projections, read over a read-only PostgreSQL session
 * (query.postgres_dsn, which may point at a replica); writes (PutWants,
 * PutTaints) go through the event log service (shared.peers.eventlog).
 * Health is SERVING only while the database answers. See README.md. */
#include "query.h"

#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/security.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */

    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "query", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);

    const dbld_server_config *sc = &cfg.query.server;
    dbld_server_opts opts = {
        .service_name = "query",
        .listen = sc->listen,
        .workers = sc->workers,
        .pollers = sc->pollers,
        .max_queue = sc->max_queue,
        .max_message_bytes = sc->max_message_bytes,
        .shutdown_grace_ms = sc->shutdown_grace_ms,
        .max_streams = sc->max_streams,
    };
    dbld_status st;
    dbld_status_clear(&st);
    dbld_server *srv = NULL;
    q_ctx *q = NULL;
    dbld_security sec;
    if (dbld_security_setup(&cfg, sc, &sec, &st) != 0)
        return dbld_security_config_error(&cfg, &sec, &st);
    opts.tls = &sec.server_tls;
    opts.auth = sec.auth;
    opts.metrics_listen = sc->metrics_listen;
    if (dbld_server_create(&opts, &srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not create server", "error", st.msg, (char *)NULL);
        dbld_config_free(&cfg);
        return 1;
    }
    if (q_ctx_create(&cfg, srv, &q, &st) != 0) {
        dbld_config_log_error(&cfg, "%s", st.msg);
        dbld_server_destroy(srv);
        dbld_config_free(&cfg);
        return 2;
    }
    dbld_server_add(srv, &q_databuild_service, q);
    dbld_server_add(srv, &q_ops_service, q);
    dbld_server_add(srv, &q_processes_service, q);
    if (dbld_server_start(srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start server", "error", st.msg, (char *)NULL);
        q_ctx_destroy(q);
        dbld_server_destroy(srv);
        dbld_config_free(&cfg);
        return 1;
    }
    q_ctx_start(q); /* health goes SERVING once the database answers */

    char port[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, "eventlog",
             cfg.shared.peers.eventlog, (char *)NULL);

    int sig = dbld_signals_wait_server(srv); /* SIGHUP reloads TLS files */
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
             (char *)NULL);
    dbld_server_shutdown(srv);
    q_ctx_destroy(q);
    dbld_server_destroy(srv);
    dbld_client_shutdown_all();
    dbld_config_free(&cfg);
    dbld_log(DBLD_LOG_INFO, "stopped", (char *)NULL);
    dbld_security_free(&sec);
    return 0;
}
