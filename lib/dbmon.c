/* dbmon.c - the database health monitor the services share (dbmon.h).
 *
 * State (up, the last error) lives under one mutex; the thread sleeps on a
 * CLOCK_MONOTONIC condition variable, which dbld_dbmon_down() and destroy
 * signal. Health is pushed to the server outside the mutex, only on a
 * transition.
 */
#include "dbld/dbmon.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_OK_MS 1000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct dbld_dbmon {
    dbld_dbmon_opts opts;
    char *dsn;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int up, stop, started;
    char last_err[512];
    pthread_t th;
};

dbld_dbmon *dbld_dbmon_create(const dbld_dbmon_opts *opts)
{
    dbld_dbmon *m = dbld_xcalloc(1, sizeof *m);
    m->opts = *opts;
    if (m->opts.ok_ms <= 0) m->opts.ok_ms = DEFAULT_OK_MS;
    m->dsn = dbld_xstrdup(opts->dsn);
    pthread_mutex_init(&m->mu, NULL);
    dbld_cond_init_mono(&m->cv);
    snprintf(m->last_err, sizeof m->last_err, "not connected yet");
    return m;
}

static void set_up(dbld_dbmon *m, int up, const char *why)
{
    pthread_mutex_lock(&m->mu);
    int changed = m->up != up;
    m->up = up;
    if (!up && why) snprintf(m->last_err, sizeof m->last_err, "%s", why);
    if (!up && changed) pthread_cond_signal(&m->cv); /* recheck now; while down, backoff rules */
    pthread_mutex_unlock(&m->mu);
    if (!changed) return;
    if (up)
        dbld_log(DBLD_LOG_INFO, "database available: serving", (char *)NULL);
    else
        dbld_log(DBLD_LOG_WARN, "database unavailable: not serving", "error", why ? why : "",
                 (char *)NULL);
    if (m->opts.server) dbld_server_set_health_all(m->opts.server, up);
}

void dbld_dbmon_down(dbld_dbmon *m, const char *why)
{
    if (m) set_up(m, 0, why);
}

int dbld_dbmon_up(dbld_dbmon *m, char *why, size_t n)
{
    pthread_mutex_lock(&m->mu);
    int up = m->up;
    if (!up && why && n) snprintf(why, n, "%s", m->last_err);
    pthread_mutex_unlock(&m->mu);
    return up;
}

/* One check: (re)connect when needed, then the service's probe. */
static int check(dbld_dbmon *m, dbld_db **db, dbld_status *st)
{
    if (*db && !dbld_db_alive(*db)) {
        dbld_db_close(*db);
        *db = NULL;
    }
    if (!*db) {
        int rc = dbld_db_connect_opts(m->dsn, &m->opts.session, db, st);
        if (rc) return rc;
    }
    return m->opts.probe(m->opts.user, *db, st);
}

static void *monitor_main(void *arg)
{
    dbld_dbmon *m = arg;
    dbld_db *db = NULL;
    int64_t backoff = BACKOFF_MIN_MS;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        pthread_mutex_unlock(&m->mu);
        dbld_status st;
        dbld_status_clear(&st);
        int ok = check(m, &db, &st) == 0;
        set_up(m, ok, st.msg);
        int64_t wait = ok ? m->opts.ok_ms : backoff;
        backoff =
            ok ? BACKOFF_MIN_MS : (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2);
        struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, wait);
        pthread_mutex_lock(&m->mu);
        /* a dbld_dbmon_down() since the check: recheck now */
        if (!m->stop && (m->up || !ok)) pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    }
    pthread_mutex_unlock(&m->mu);
    dbld_db_close(db);
    return NULL;
}

int dbld_dbmon_start(dbld_dbmon *m)
{
    if (pthread_create(&m->th, NULL, monitor_main, m) != 0) return -1;
    m->started = 1;
    return 0;
}

void dbld_dbmon_destroy(dbld_dbmon *m)
{
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->started) pthread_join(m->th, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m->dsn);
    free(m);
}
