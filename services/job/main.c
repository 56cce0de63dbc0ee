/* job service: runs job binaries (configure/execute) for the graph's coordinator.
 *
 * For now it serves only grpc.health.v1.Health (SERVING once started), so the
 * suite's process layout, config section and container entrypoint exist from
 * the start; later issues add JobConfigure, JobExecute and run/cancel.
 */
#include "dbld/config.h"
#include "dbld/log.h"
#include "dbld/rpc.h"

#include <signal.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    dbld_signals_block(); /* before any thread starts */

    dbld_config cfg;
    int rc = dbld_config_from_args(argc, argv, "job", &cfg);
    if (rc != DBLD_CONFIG_RUN) return DBLD_CONFIG_EXIT_STATUS(rc);

    const dbld_server_config *sc = &cfg.job.server;
    dbld_server_opts opts = {
        .service_name = "job",
        .listen = sc->listen,
        .workers = sc->workers,
        .max_message_bytes = sc->max_message_bytes,
        .shutdown_grace_ms = sc->shutdown_grace_ms,
    };
    dbld_status st;
    dbld_server *srv = NULL;
    if (dbld_server_create(&opts, &srv, &st) != 0 || dbld_server_start(srv, &st) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start server", "error", st.msg, NULL);
        if (srv) dbld_server_destroy(srv);
        dbld_config_free(&cfg);
        return 1;
    }
    /* No dependencies yet: serving as soon as the port is bound. */
    dbld_server_set_health_all(srv, 1);

    char port[16];
    snprintf(port, sizeof port, "%d", dbld_server_port(srv));
    dbld_log(DBLD_LOG_INFO, "started", "listen", sc->listen, "port", port, NULL);

    int sig = dbld_signals_wait();
    dbld_log(DBLD_LOG_INFO, "shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM", NULL);
    dbld_server_shutdown(srv);
    dbld_server_destroy(srv);
    dbld_config_free(&cfg);
    return 0;
}
