/* service.h - a service's process as data: one dbld_service_main() runs the
 * life of every databuild-* binary (config, security, server, signals,
 * shutdown) and calls the service's hooks at fixed points, as an nginx
 * module is a table of hooks. Unused hooks are NULL.
 *
 * Order: config (exit 2 on errors, 0 for --help) -> init -> security (exit 2)
 * -> server_opts -> server created -> attach -> services added (a refused
 * table: exit 1) -> server started -> start -> started (the log line) ->
 * SIGTERM/SIGINT (SIGHUP reloads TLS) -> stopping -> server shutdown (grace)
 * -> stop -> server destroyed -> clients shut down -> destroy -> exit 0.
 * A failure before the signal unwinds what was made and exits 1 (2 for a
 * DBLD_SERVICE_CONFIG_ERROR, logged with the config file's name).
 */
#ifndef DBLD_SERVICE_H
#define DBLD_SERVICE_H

#include "dbld/config.h"
#include "dbld/rpc.h"

#include <stddef.h>

/* init/attach: the configuration is wrong (exit 2, message with the file). */
#define DBLD_SERVICE_CONFIG_ERROR (-2)

typedef struct dbld_service_def {
    const char *name;     /* config section and server name: "eventlog" */
    size_t server_offset; /* offsetof(dbld_config, <section>.server) */
    /* Before the server exists: check what the schema cannot and build the
     * state (*state: the user pointer of every service in `services`, and
     * given to every hook). 0, a
     * DBLD_SERVICE_CONFIG_ERROR, or another failure (exit 1); st says why. */
    int (*init)(dbld_config *cfg, void **state, dbld_status *st);
    /* Change the server's options (e.g. more workers). */
    void (*server_opts)(const dbld_config *cfg, void *state, dbld_server_opts *opts);
    /* Once the server exists, before the services are added; as init. */
    int (*attach)(dbld_config *cfg, void **state, dbld_server *srv, dbld_status *st);
    const dbld_service *const *services; /* NULL-terminated; registered with user = state */
    /* The server is serving: start background work. 0, or a failure (exit 1). */
    int (*start)(void *state, dbld_server *srv, dbld_status *st);
    /* The "started" log line (NULL: listen address and port). */
    void (*started)(const dbld_config *cfg, void *state, dbld_server *srv);
    /* A signal arrived; the server still accepts calls. */
    void (*stopping)(void *state);
    /* The server stopped accepting and in-flight calls ended (or the grace
     * ran out); it still exists (health, metrics). Also called when the
     * start-up fails after attach succeeded: undo attach and start. */
    void (*stop)(void *state);
    /* Free the state; called on every path once init ran (also when init
     * failed: then free what it made; state may be NULL). */
    void (*destroy)(void *state);
} dbld_service_def;

/* The whole main() of a service; returns its exit status. */
int dbld_service_main(const dbld_service_def *def, int argc, char **argv);

#endif
