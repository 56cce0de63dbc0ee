/* main.c - databuild-eventlog: the build event log service, sole owner of the
 * PostgreSQL schema. Serves databuild.v1.EventLog and grpc.health.v1.Health;
 * health is SERVING only while the database is reachable and migrated. */
#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/security.h"
#include "eventlog_rpc.h"
#include "store.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    dbld_signals_block();
    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "eventlog", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);
    if (!cfg.shared.postgres_dsn || !*cfg.shared.postgres_dsn) {
        dbld_config_log_error(&cfg, "shared.postgres_dsn is required (or set "
                                    "DATABUILD_POSTGRES_DSN)");
        dbld_config_free(&cfg);
        return 2;
    }
    dbld_status st;
    dbld_status_clear(&st);
    dbld_server_opts so = {
        .service_name = "eventlog",
        .listen = cfg.eventlog.server.listen,
        .workers = cfg.eventlog.server.workers,
        .pollers = cfg.eventlog.server.pollers,
        .max_queue = cfg.eventlog.server.max_queue,
        .max_message_bytes = cfg.eventlog.server.max_message_bytes,
        .shutdown_grace_ms = cfg.eventlog.server.shutdown_grace_ms,
        .max_streams = cfg.eventlog.server.max_streams,
    };
    dbld_server *srv = NULL;
    dbld_security sec;
    if (dbld_security_setup(&cfg, &cfg.eventlog.server, &sec, &st) != 0)
        return dbld_security_config_error(&cfg, &sec, &st);
    so.tls = &sec.server_tls;
    so.auth = sec.auth;
    so.metrics_listen = cfg.eventlog.server.metrics_listen;
    if (dbld_server_create(&so, &srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not create server", "error", st.msg, (char *)NULL);
        dbld_config_free(&cfg);
        return 1;
    }
    el_store_opts eo = {
        .dsn = cfg.shared.postgres_dsn,
        .max_batch_events = cfg.eventlog.group_commit_max_events,
        .pool_size = cfg.eventlog.db_pool_size,
        .statement_timeout_ms = cfg.eventlog.statement_timeout_ms,
        .server = srv,
    };
    el_store *store = el_store_create(&eo);
    dbld_server_add(srv, &el_eventlog_service, store);
    dbld_server_add(srv, &el_claims_service, store);
    dbld_server_add(srv, &el_joblogs_service, store);
    dbld_server_add(srv, &el_leases_service, store);
    dbld_server_add(srv, &el_processes_service, store);
    if (dbld_server_start(srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start server", "error", st.msg, (char *)NULL);
        el_store_destroy(store);
        dbld_server_destroy(srv);
        dbld_config_free(&cfg);
        return 1;
    }
    el_store_start(store);
    dbld_log(DBLD_LOG_INFO, "started", "listen", cfg.eventlog.server.listen, (char *)NULL);
    int sig = dbld_signals_wait_server(srv); /* SIGHUP reloads TLS files */
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == 2 ? "SIGINT" : "SIGTERM",
             (char *)NULL);
    dbld_server_shutdown(srv);
    el_store_destroy(store);
    dbld_server_destroy(srv);
    dbld_config_free(&cfg);
    dbld_log(DBLD_LOG_INFO, "stopped", (char *)NULL);
    dbld_security_free(&sec);
    return 0;
}
