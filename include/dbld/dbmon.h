/* dbmon.h - the database health monitor the services share.
 *
 * A thread with a connection of its own (so a busy pool never reads as a
 * dead database) runs the service's probe: every ok_ms while it succeeds,
 * with a backoff of 100 ms doubling to 2 s while it fails. The server's
 * health (every service name) follows: SERVING while the probe succeeds.
 * A query of the service that finds the database unavailable calls
 * dbld_dbmon_down(): NOT_SERVING at once, and the monitor rechecks now
 * instead of at its next period. Transitions are logged once each.
 */
#ifndef DBLD_DBMON_H
#define DBLD_DBMON_H

#include "dbld/db.h"
#include "dbld/rpc.h"
#include "dbld/status.h"

#include <stddef.h>

/* The service's check on the monitor's connection (e.g. migrate once, then
 * SELECT 1; or read the tables it serves): 0 when the database serves it.
 * A failing probe's st names the problem. */
typedef int (*dbld_dbmon_probe_fn)(void *user, dbld_db *db, dbld_status *st);

typedef struct dbld_dbmon_opts {
    const char *dsn;
    dbld_db_opts session; /* the monitor connection's session settings */
    int ok_ms;            /* period while the probe succeeds (0: 1000) */
    dbld_dbmon_probe_fn probe;
    void *user;
    dbld_server *server; /* its health follows the probe; NULL: none */
} dbld_dbmon_opts;

typedef struct dbld_dbmon dbld_dbmon;

/* Caller frees with dbld_dbmon_destroy(). Down ("not connected yet") until
 * the first probe succeeds. */
dbld_dbmon *dbld_dbmon_create(const dbld_dbmon_opts *opts);
/* Start the thread; 0, or -1 when it could not be made. */
int dbld_dbmon_start(dbld_dbmon *m);
/* A query found the database unavailable (why: its error). */
void dbld_dbmon_down(dbld_dbmon *m, const char *why);
/* 1 while the last probe succeeded; else 0 and, if why, the last error. */
int dbld_dbmon_up(dbld_dbmon *m, char *why, size_t n);
/* Stops the thread (if started) and closes its connection. */
void dbld_dbmon_destroy(dbld_dbmon *m);

#endif
