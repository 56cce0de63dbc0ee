/* leases.c - the graph service's background thread: start-up, lease renewal,
 * orphan adoption.
 *
 * Start-up waits until the event log answers (health stays NOT_SERVING until
 * then), adopts orphan builds once, then turns SERVING. From then on it renews
 * the leases of every build in the registry every renew_every_ms (TTL/5) and
 * asks for orphans every orphan_poll_ms, so builds of a dead instance (or of a
 * build this instance abandoned) are resumed. A build whose lease was taken by
 * someone else, or whose lease could not be renewed for a whole TTL, is
 * abandoned: another instance may be coordinating it now.
 */
#include "leases.h"

#include "coordinator.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void renew_all(gs_service *s, int64_t *last_ok)
{
    size_t n;
    char **ids = gs_build_active_ids(s, &n);
    if (n == 0) {
        *last_ok = dbld_mono_ms();
        free_ids(ids, n);
        return;
    }
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__RenewLeasesResponse *r = NULL;
    dbld_status st;
    if (gs_el_renew(s, ids, n, 0, a, &r, &st) == 0) {
        *last_ok = dbld_mono_ms();
        for (size_t i = 0; i < r->n_lost; i++)
            gs_build_abandon(s, r->lost[i], "lease lost to another graph service instance");
    } else {
        dbld_log(DBLD_LOG_WARN, "could not renew build leases", "error", st.msg, (char *)NULL);
        if (dbld_mono_ms() - *last_ok > s->lease_ttl_ms)
            for (size_t i = 0; i < n; i++)
                gs_build_abandon(s, ids[i], "leases could not be renewed for a whole TTL");
    }
    dbld_arena_destroy(a);
    free_ids(ids, n);
}

/* Adopt every orphan we can take the lease of. 0, or the Orphans call's code. */
static int adopt_orphans(gs_service *s)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__OrphansResponse *r = NULL;
    dbld_status st;
    int rc = gs_el_orphans(s, a, &r, &st);
    if (rc) {
        dbld_log(DBLD_LOG_WARN, "could not list orphan builds", "error", st.msg, (char *)NULL);
        dbld_arena_destroy(a);
        return rc;
    }
    for (size_t i = 0; i < r->n_builds && !atomic_load(&s->stopping); i++) {
        const Databuild__V1__OrphanBuild *ob = r->builds[i];
        if (gs_build_active(s, ob->build_request_id)) continue;
        if (gs_build_reserve(s, &st) != 0) { /* left for a later poll or another instance */
            dbld_log(DBLD_LOG_WARN, "not adopting orphan builds now", "error", st.msg,
                     (char *)NULL);
            break;
        }
        char *ids[] = {ob->build_request_id};
        Databuild__V1__RenewLeasesResponse *lr = NULL;
        if (gs_el_renew(s, ids, 1, 0, a, &lr, &st) != 0 || lr->n_lost) {
            gs_build_unreserve(s);
            continue; /* another instance was faster */
        }
        gs_build_resume(s, ob);
    }
    dbld_arena_destroy(a);
    return 0;
}

/* Sleep up to ms, waking early when stopping. Returns 1 if stopping. */
static int nap(gs_service *s, int64_t ms)
{
    int64_t end = dbld_mono_ms() + ms;
    while (!atomic_load(&s->stopping)) {
        int64_t left = end - dbld_mono_ms();
        if (left <= 0) return 0;
        dbld_sleep_ms(left < 100 ? left : 100);
    }
    return 1;
}

static void *bg_main(void *arg)
{
    gs_service *s = arg;
    dbld_client *el = dbld_client_get(s->eventlog);
    for (;;) {
        int serving = 0;
        dbld_status st;
        if (dbld_health_check(el, "", &serving, 1000, &st) == 0 && serving) break;
        if (nap(s, 200)) return NULL;
    }
    while (adopt_orphans(s) != 0)
        if (nap(s, 500)) return NULL;
    atomic_store(&s->ready, 1);
    dbld_server_set_health_all(s->srv, 1);
    dbld_log(DBLD_LOG_INFO, "serving", "owner", s->owner, (char *)NULL);
    int64_t last_ok = dbld_mono_ms();
    int64_t next_renew = dbld_mono_ms() + s->renew_every_ms;
    int64_t next_orphans = dbld_mono_ms() + s->orphan_poll_ms;
    while (!atomic_load(&s->stopping)) {
        int64_t now = dbld_mono_ms();
        if (now >= next_renew) {
            renew_all(s, &last_ok);
            next_renew = dbld_mono_ms() + s->renew_every_ms;
        }
        if (now >= next_orphans) {
            adopt_orphans(s);
            next_orphans = dbld_mono_ms() + s->orphan_poll_ms;
        }
        int64_t wake = next_renew < next_orphans ? next_renew : next_orphans;
        nap(s, wake - dbld_mono_ms());
    }
    return NULL;
}

int gs_background_start(gs_service *s)
{
    if (pthread_create(&s->bg, NULL, bg_main, s) != 0) return -1;
    s->bg_started = 1;
    return 0;
}

void gs_background_stop(gs_service *s)
{
    atomic_store(&s->stopping, 1);
    if (s->bg_started) pthread_join(s->bg, NULL);
    s->bg_started = 0;
}

void gs_leases_hand_over(gs_service *s)
{
    size_t n;
    char **ids = gs_build_active_ids(s, &n);
    if (n) {
        dbld_arena *a = dbld_arena_create();
        Databuild__V1__RenewLeasesResponse *r = NULL;
        dbld_status st;
        /* A 1 ms lease has lapsed by the time anyone looks: the builds are
         * orphans at once and the next instance adopts them at start-up. */
        if (gs_el_renew(s, ids, n, 1, a, &r, &st) != 0)
            dbld_log(DBLD_LOG_WARN, "could not hand over build leases (they lapse by themselves)",
                     "error", st.msg, (char *)NULL);
        dbld_arena_destroy(a);
    }
    free_ids(ids, n);
}
