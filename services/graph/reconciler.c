/* reconciler.c - want_reconciler: keeps every live want's partitions built.
 *
 * Work items: one per want, registered by the event log in the same
 * transaction as the WantEvent (params: refs, created_ns, ttl_seconds,
 * sla_seconds, data_timestamp), which also wakes the process. One pass:
 *   1. list the active items; a want past created_ns + ttl_seconds moves to
 *      the cleanup list (never built again);
 *   2. read the status of every ref of the live wants in one call per 5000
 *      refs (PartitionClaims.Status);
 *   3. per want: every ref AVAILABLE and untainted -> COMPLETED; a build of
 *      this want still running, or a ref BUILDING -> ACTIVE; the last build
 *      submitted for it ended without making it AVAILABLE -> an item error
 *      (INCOMPLETE with backoff, ABORTED after max_item_errors); otherwise it
 *      needs a build (unless its backoff has not passed);
 *   4. one build request for the missing refs of all wants that need one,
 *      tagged with every want's id (the first in BuildRequestEvent.want_id,
 *      all of them in its BuildRequestWants field, so triggering_want_ids
 *      finds the build for each) and naming the number of wants in its
 *      comment; each item records the build id.
 *      When that submission is refused (e.g. a ref no job produces), each
 *      want is submitted on its own so the error lands on the right item.
 *   5. when a PutWants registered wants or the settings changed during the
 *      pass (gsr_merge), the new wants get a pass of their own in the same
 *      run, under the settings as they are now.
 * A build's end wakes the process, so a failure is seen (and retried after
 * its backoff) without waiting for the schedule. A build that ended
 * PRECONDITION_FAILED because external inputs (graph.external, never built
 * here) are not AVAILABLE charges no attempt: the item records them
 * (params waiting_on, stat upstream_waiting: the want shows
 * UPSTREAM_WAITING) and is submitted again once they are all AVAILABLE,
 * looked at every upstream_poll_ms (1000). When that build served several
 * wants, the refs it found missing do not say whose input each is: each want is
 * then submitted on its own (params solo=1, no attempt charged), so that
 * only the wants that really need the external input wait for it.
 *
 * Settings: max_item_errors (5), retry_backoff_ms (1000, doubling up to 60 s),
 * upstream_poll_ms (1000).
 */
#include "processes.h"

#include "coordinator.h"
#include "strmap.h"

#include "dbld/process.h"
#include "dbld/util.h"

#include <pthread.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

#define PS_(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x

typedef struct want {
    Databuild__V1__ProcessWork *w;
    char **refs;
    size_t n_refs;
    char **waiting; /* external inputs its last build waited for */
    size_t n_waiting;
} want;

/* ---- builds that ended waiting for external inputs ----
 * The build's end callback keeps the last UPSTREAM_RING of them: build id
 * and the external refs its analysis found missing (gs_build_missing_external(),
 * data from analyze.c, not its message), newline-joined as the items'
 * params keep them. */

#define UPSTREAM_RING 256

static struct {
    pthread_mutex_t mu;
    char id[UPSTREAM_RING][37];
    char *refs[UPSTREAM_RING]; /* malloc'd, newline-joined */
    size_t next;
} g_upstream = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct end_ctx {
    gs_service *s;
    gs_build *b;
} end_ctx;

/* refs[0..n) newline-joined (malloc'd). */
static char *join_refs(char **refs, size_t n)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += strlen(refs[i]) + 1;
    char *out = dbld_xmalloc(cap), *p = out;
    for (size_t i = 0; i < n; i++)
        p += snprintf(p, cap - (size_t)(p - out), "%s%s", i ? "\n" : "", refs[i]);
    *p = 0;
    return out;
}

static void on_build_end(void *arg)
{
    end_ctx *c = arg;
    dbld_arena *a = dbld_arena_create();
    char **missing;
    size_t n = gs_build_missing_external(c->b, a, &missing);
    if (n) {
        char *refs = join_refs(missing, n);
        pthread_mutex_lock(&g_upstream.mu);
        size_t i = g_upstream.next++ % UPSTREAM_RING;
        snprintf(g_upstream.id[i], sizeof g_upstream.id[i], "%s", gs_build_id(c->b));
        free(g_upstream.refs[i]);
        g_upstream.refs[i] = refs;
        pthread_mutex_unlock(&g_upstream.mu);
    }
    dbld_arena_destroy(a);
    gs_build_unref(c->b);
    gs_processes_kick(c->s, DBLD_PROC_WANT_RECONCILER);
    free(c);
}

/* The external refs build id waited for (arena), or NULL. */
static char *upstream_of(dbld_arena *a, const char *id)
{
    char *refs = NULL;
    pthread_mutex_lock(&g_upstream.mu);
    for (size_t i = 0; i < UPSTREAM_RING && !refs; i++)
        if (g_upstream.refs[i] && strcmp(g_upstream.id[i], id) == 0)
            refs = dbld_arena_strdup(a, g_upstream.refs[i]);
    pthread_mutex_unlock(&g_upstream.mu);
    return refs;
}

static void set_stat(dbld_arena *a, Databuild__V1__ProcessStatus *s, const char *key, double v)
{
    dbld_pstatus_add_stat(a, s, key, v - dbld_pstatus_stat(s, key));
}

/* Submit refs for wants ws[0..n); 0 and id, or the refusal in st. */
static int submit(gs_run *r, want **ws, size_t n, char **refs, size_t n_refs, char id[37],
                  dbld_status *st)
{
    gs_service *s = gsr_service(r);
    char comment[160];
    snprintf(comment, sizeof comment, "want_reconciler: %zu want%s", n, n == 1 ? "" : "s");
    const char **ids = dbld_arena_alloc(gsr_arena(r), n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = ws[i]->w->name;
    gs_build *b = NULL;
    int rc =
        gs_build_submit_wants(s, (const char *const *)refs, n_refs, comment, ids, n, id, &b, st);
    if (rc) return rc;
    end_ctx *c = dbld_xcalloc(1, sizeof *c);
    *c = (end_ctx){s, b}; /* the callback drops our reference */
    if (gs_build_on_end(b, on_build_end, c) == 1) on_build_end(c);
    gsr_build(r, id);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__ProcessWork *w = ws[i]->w;
        w->build_request_id = dbld_arena_strdup(gsr_arena(r), id);
        w->status->state = DATABUILD__V1__PROCESS_STATE__PROCESS_ACTIVE;
        w->status->progress_ns = dbld_now_ns();
        set_stat(gsr_arena(r), w->status, "upstream_waiting", 0);
        if (!w->status->start_ns) w->status->start_ns = w->status->progress_ns;
        gsr_item_put(r, w);
    }
    return 0;
}

/* The refs of want wt that are not available, added once to the batch. */
static void add_missing(gs_run *r, const want *wt, Databuild__V1__PartitionState **states,
                        gs_strmap *idx, gs_strmap *batch_set, char ***batch, size_t *n_batch)
{
    for (size_t k = 0; k < wt->n_refs; k++) {
        size_t i, seen;
        gs_strmap_get(idx, wt->refs[k], &i);
        const Databuild__V1__PartitionState *ps = states[i];
        if (ps->status == PS_(AVAILABLE) && !ps->tainted) continue;
        if (gs_strmap_get(batch_set, wt->refs[k], &seen)) continue;
        gs_strmap_put(batch_set, wt->refs[k], *n_batch);
        (*batch)[(*n_batch)++] = wt->refs[k];
    }
    (void)r;
}

static void submit_all(gs_run *r, want **need, size_t n_need, char **batch, size_t n_batch)
{
    if (!n_need) return;
    char id[37];
    dbld_status st;
    if (submit(r, need, n_need, batch, n_batch, id, &st) == 0) return;
    if (n_need == 1) {
        gsr_item_error(r, need[0]->w, st.msg);
        return;
    }
    for (size_t i = 0; i < n_need && gsr_lease_ok(r); i++) /* attribute the refusal */
        if (submit(r, &need[i], 1, need[i]->refs, need[i]->n_refs, id, &st) != 0)
            gsr_item_error(r, need[i]->w, st.msg);
}

/* 1 when every newline-joined ref in refs is AVAILABLE (statuses of step 2). */
static int inputs_available(gs_run *r, const char *refs, Databuild__V1__PartitionState **states,
                            gs_strmap *idx)
{
    char **list;
    size_t n;
    gsr_split_refs(gsr_arena(r), refs, &list, &n);
    for (size_t k = 0; k < n; k++) {
        size_t i;
        if (!gs_strmap_get(idx, list[k], &i) || states[i]->status != PS_(AVAILABLE)) return 0;
    }
    return 1;
}

/* The want's own refs that match graph.external (never built here) and are
 * not AVAILABLE, newline-joined (arena), or NULL. */
static char *external_missing(gs_run *r, const want *wt, Databuild__V1__PartitionState **states,
                              gs_strmap *idx)
{
    gs_service *s = gsr_service(r);
    char *out = NULL;
    for (size_t k = 0; k < wt->n_refs; k++) {
        size_t i;
        gs_strmap_get(idx, wt->refs[k], &i);
        if (states[i]->status == PS_(AVAILABLE) || !gs_lookup_external(s->lookup, wt->refs[k]))
            continue;
        out = out ? dbld_arena_printf(gsr_arena(r), "%s\n%s", out, wt->refs[k])
                  : dbld_arena_strdup(gsr_arena(r), wt->refs[k]);
    }
    return out;
}

/* Decide one live want (step 3); 1 when it needs a build now. shared: its
 * last build served other wants of this pass too. */
static int decide(gs_run *r, want *wt, Databuild__V1__PartitionState **states, gs_strmap *idx,
                  int shared, int64_t now)
{
    gs_service *s = gsr_service(r);
    Databuild__V1__ProcessWork *w = wt->w;
    int avail = 1, building = 0;
    const Databuild__V1__PartitionState *bad = NULL;
    for (size_t k = 0; k < wt->n_refs; k++) {
        size_t i;
        gs_strmap_get(idx, wt->refs[k], &i);
        const Databuild__V1__PartitionState *ps = states[i];
        if (ps->status != PS_(AVAILABLE) || ps->tainted) {
            avail = 0;
            if (!bad) bad = ps;
        }
        if (ps->status == PS_(BUILDING)) building = 1;
    }
    if (avail) {
        gsr_item_ok(r, w);
        return 0;
    }
    if (w->build_request_id[0] && gs_build_active(s, w->build_request_id)) building = 1;
    if (building) {
        gsr_stat(r, "items_building", 1);
        return 0;
    }
    char *ext = external_missing(r, wt, states, idx);
    if (ext) dbld_params_set_str(gsr_arena(r), w->params, "waiting_on", ext);
    if (w->build_request_id[0]) {
        char *up = upstream_of(gsr_arena(r), w->build_request_id);
        if (up && shared) { /* whose input? find out with a build of its own */
            dbld_params_set_int(gsr_arena(r), w->params, "solo", 1);
            w->build_request_id = "";
            gsr_item_put(r, w);
        } else if (up) { /* not the want's fault: wait for the inputs, no attempt charged */
            dbld_params_set_str(gsr_arena(r), w->params, "waiting_on", up);
            w->build_request_id = "";
        }
    }
    const char *waiting = dbld_params_str(w->params, "waiting_on", "");
    if (*waiting) {
        if (!inputs_available(r, waiting, states, idx)) {
            dbld_arena *a = gsr_arena(r);
            if (w->status->state != DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE ||
                dbld_pstatus_stat(w->status, "upstream_waiting") < 1) {
                w->status->state = DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE;
                set_stat(a, w->status, "upstream_waiting", 1);
                dbld_pstatus_add_error(
                    a, w->status, now,
                    dbld_arena_printf(a, "waiting for external input %s", waiting),
                    DBLD_PROC_ITEM_ERRORS);
                gsr_item_put(r, w);
            }
            gsr_stat(r, "items_upstream_waiting", 1);
            gsr_wake_at(r, now + gsr_setting_int(r, "upstream_poll_ms", 1000) * 1000000);
            return 0;
        }
        dbld_params_set_str(gsr_arena(r), w->params, "waiting_on", "");
        gsr_item_put(r, w);
    }
    if (w->build_request_id[0]) {
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(
            &databuild__v1__partition_status__descriptor, bad->status);
        char text[700];
        snprintf(text, sizeof text, "build %s ended without making %s AVAILABLE (%s)",
                 w->build_request_id, bad->ref,
                 bad->tainted ? "tainted"
                 : ev         ? ev->name
                              : "unknown status");
        w->build_request_id = "";
        gsr_item_error(r, w, text);
        if (w->status->state == DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED) return 0;
    }
    if (w->next_attempt_ns > now) {
        gsr_wake_at(r, w->next_attempt_ns);
        return 0;
    }
    return 1;
}

static int reconcile(gs_run *r, dbld_status *st)
{
    gs_service *s = gsr_service(r);
    dbld_arena *a = gsr_arena(r);
    Databuild__V1__ProcessWork **items;
    size_t n_items;
    int rc = gsr_list_work(r, DATABUILD__V1__WORK_LIST__WORK_ACTIVE, &items, &n_items, st);
    if (rc) return rc;
    int64_t now = dbld_now_ns();
    want *live = dbld_arena_alloc(a, (n_items + 1) * sizeof *live);
    size_t n_live = 0, n_refs = 0;
    for (size_t i = 0; i < n_items; i++) {
        Databuild__V1__ProcessWork *w = items[i];
        if (!w->status) w->status = dbld_arena_msg(a, &databuild__v1__process_status__descriptor);
        int64_t ttl = dbld_params_int(w->params, "ttl_seconds", 0);
        int64_t created = dbld_params_int(w->params, "created_ns", 0);
        if (ttl > 0 && now > created + ttl * 1000000000) {
            gsr_item_cleanup(r, w, "expired");
            continue;
        }
        if (w->status->state == DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED) {
            gsr_stat(r, "items_aborted", 1);
            continue;
        }
        want *wt = &live[n_live++];
        wt->w = w;
        gsr_split_refs(a, dbld_params_str(w->params, "refs", ""), &wt->refs, &wt->n_refs);
        gsr_split_refs(a, dbld_params_str(w->params, "waiting_on", ""), &wt->waiting,
                       &wt->n_waiting);
        n_refs += wt->n_refs + wt->n_waiting;
    }
    gsr_stat(r, "items", (double)n_items);
    /* step 2: statuses of the distinct refs */
    gs_strmap idx;
    gs_strmap_init(&idx);
    const char **refs = dbld_arena_alloc(a, (n_refs + 1) * sizeof *refs);
    size_t n_distinct = 0;
    for (size_t i = 0; i < n_live; i++)
        for (size_t k = 0; k < live[i].n_refs + live[i].n_waiting; k++) {
            const char *ref =
                k < live[i].n_refs ? live[i].refs[k] : live[i].waiting[k - live[i].n_refs];
            size_t v;
            if (gs_strmap_get(&idx, ref, &v)) continue;
            gs_strmap_put(&idx, ref, n_distinct);
            refs[n_distinct++] = ref;
        }
    Databuild__V1__PartitionState **states = NULL;
    rc = n_distinct ? gs_el_status(s, refs, n_distinct, a, &states, st) : 0;
    if (rc) {
        gs_strmap_free(&idx);
        return rc;
    }
    /* steps 3 and 4 */
    want **need = dbld_arena_alloc(a, (n_live + 1) * sizeof *need);
    char **batch = dbld_arena_alloc(a, (n_refs + 1) * sizeof *batch);
    size_t n_need = 0, n_batch = 0;
    gs_strmap batch_set;
    gs_strmap_init(&batch_set);
    gs_strmap builds; /* build id -> wants of this pass it served */
    gs_strmap_init(&builds);
    for (size_t i = 0; i < n_live; i++) {
        const char *b = live[i].w->build_request_id;
        size_t c = 0;
        if (!*b) continue;
        gs_strmap_get(&builds, b, &c);
        gs_strmap_put(&builds, b, c + 1);
    }
    for (size_t i = 0; i < n_live && gsr_lease_ok(r); i++) {
        size_t c = 0;
        if (*live[i].w->build_request_id) gs_strmap_get(&builds, live[i].w->build_request_id, &c);
        if (!decide(r, &live[i], states, &idx, c > 1, now)) continue;
        if (dbld_params_int(live[i].w->params, "solo", 0)) {
            char id[37];
            dbld_status sst;
            want *one = &live[i];
            if (submit(r, &one, 1, one->refs, one->n_refs, id, &sst) != 0)
                gsr_item_error(r, one->w, sst.msg);
            continue;
        }
        need[n_need++] = &live[i];
        add_missing(r, &live[i], states, &idx, &batch_set, &batch, &n_batch);
    }
    gs_strmap_free(&builds);
    if (gsr_lease_ok(r)) submit_all(r, need, n_need, batch, n_batch);
    gsr_stat(r, "wants_submitted", (double)n_need);
    gs_strmap_free(&batch_set);
    gs_strmap_free(&idx);
    return 0;
}

const gs_proc_def gs_want_reconciler = {
    .name = DBLD_PROC_WANT_RECONCILER,
    .run = reconcile,
    .merge = 1,
};
