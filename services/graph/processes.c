/* processes.c - the lease manager and the run cycle of the background
 * processes (processes.h).
 *
 * Leases. One manager thread per replica calls ProcessStore.Acquire for all
 * processes every poll_ms (200 ms): the store renews this replica's leases
 * once a third of the TTL has passed and hands over any lease that has
 * expired, with a new fencing token. The manager also learns each process's
 * settings, frequency, wake sequence (bumped by the writes that create work:
 * PutWants, taints, settings, RunProcessNow) and queued operations. The
 * local view of a lease ends at (monotonic time the renewing Acquire was
 * sent) + TTL - TTL/10, so a replica that was frozen (SIGSTOP, a long GC-like
 * pause) sees its lease gone the moment it runs again, before it acts; the
 * store's fence refuses its writes anyway.
 *
 *   Acquire every poll_ms ──> held? ──no──> idle
 *                               │yes
 *                        due? (wake_seq moved, an operation is queued,
 *                              last start + frequency passed, a wake-at
 *                              passed, or kicked)
 *                               │yes
 *   Update(ACTIVE, ops ACTIVE) ─┴─> def->run() ─> Update(final status, items,
 *                                                ProcessRunEvent, ops final)
 *
 * Changes during a run are merged without a restart: settings are read
 * from the manager's current copy (gsr_setting_int), so the rest of a pass
 * uses them; and for processes with work items (def->merge), a wake_seq that
 * moved during a pass (a PutWants or taint registered items, or settings
 * changed) makes the run write its item changes, list its work again and
 * make one more pass over the new items (gsr_merge, at most MERGES_MAX).
 * DBLD_GRAPH_PROCESS_MERGE_PAUSE_MS (tests only) pauses after a run's first
 * pass, so that a test can make changes during a run.
 *
 * Each process has its own thread, so a slow pass of one never delays
 * another. A run's state: COMPLETED without errors, INCOMPLETE when an item
 * or the run recorded errors, ABORTED when run() failed or the lease was
 * lost (then nothing more is written). Every run updates the process row;
 * a run that submitted, changed, served or failed something is also
 * recorded as a ProcessRunEvent (every run with the record_idle_runs
 * setting), so an idle suite's event log stays quiet.
 */
#include "processes.h"

#include "strmap.h"

#include "dbld/log.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 200
#define FLUSH_ITEMS 1000 /* item changes written per Update */
#define LIST_PAGE 1000
#define MERGES_MAX 10 /* merge rounds per run; more changes wait for the next run */

static const gs_proc_def *const defs[] = {&gs_want_reconciler, &gs_taint_propagator, &gs_run_reaper,
                                          &gs_retention};
#define N_PROCS (sizeof defs / sizeof defs[0])

typedef struct gs_proc {
    const gs_proc_def *def;
    struct gs_procs *m;
    pthread_t th;
    /* under m->mu */
    int held;
    int64_t token;
    int64_t expires_ns;  /* as the store said, to notice renewals */
    int64_t deadline_ms; /* monotonic end of the local view of the lease */
    int64_t freq_ms;
    Databuild__V1__ProcessParams *settings; /* in settings_arena */
    dbld_arena *settings_arena;
    int64_t wake_seq, seen_wake;
    int64_t last_start_ns;
    int64_t wake_at_ns;
    char **ops; /* malloc'd ids of queued operations not yet served */
    size_t n_ops;
    int kick;
} gs_proc;

typedef struct gs_procs {
    gs_service *s;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    gs_proc procs[N_PROCS];
    pthread_t mgr;
    int started, stop;
    int64_t ttl_ms;
    int64_t merge_pause_ms; /* DBLD_GRAPH_PROCESS_MERGE_PAUSE_MS (tests) */
} gs_procs;

struct gs_run {
    gs_proc *p;
    gs_service *s;
    dbld_arena *a;
    int64_t token, deadline_ms;
    Databuild__V1__ProcessStatus *status;
    Databuild__V1__ProcessWork **items; /* changed items not yet written */
    size_t n_items, cap_items;
    int64_t n_completed, n_incomplete, n_aborted;
    char **builds;
    size_t n_builds, cap_builds;
    int64_t wake_at_ns;
    int64_t n_written; /* item changes written */
    int changed;       /* gsr_changed() */
    int lost;          /* the fence refused a write */
    int64_t seen_wake; /* the wake_seq this run has merged */
    int merges;        /* gsr_merge() calls that found changes */
    gs_strmap listed;  /* names gsr_list_work() returned in this run */
};

static gs_procs g_procs; /* one per process: the graph service is a singleton */

/* ---- store calls ---- */

static int store_call(gs_service *s, const char *method, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *resp_desc, dbld_arena *a, void *out,
                      int64_t timeout_ms, dbld_status *st)
{
    char path[96];
    snprintf(path, sizeof path, "/databuild.v1.ProcessStore/%s", method);
    int rc = dbld_client_unary(dbld_client_get(s->eventlog), path, req, resp_desc,
                               dbld_arena_allocator(a), (ProtobufCMessage **)out, timeout_ms,
                               DBLD_CALL_IDEMPOTENT, st);
    if (rc) dbld_status_prefix(st, "event log %s", method);
    return rc;
}

/* ---- leases ---- */

static void apply_lease(gs_procs *m, gs_proc *p, const Databuild__V1__ProcessLease *l,
                        int64_t sent_ms)
{
    if (!l->held) {
        if (p->held)
            dbld_log(DBLD_LOG_INFO, "process lease lost", "process", p->def->name, "holder",
                     l->holder, (char *)NULL);
        p->held = 0;
    } else {
        if (!p->held || p->token != l->lease_token) {
            char tok[24];
            snprintf(tok, sizeof tok, "%" PRId64, l->lease_token);
            dbld_log(DBLD_LOG_INFO, "process lease taken", "process", p->def->name, "token", tok,
                     (char *)NULL);
            p->deadline_ms = sent_ms + m->ttl_ms - m->ttl_ms / 10;
        } else if (l->expires_ns != p->expires_ns) {
            p->deadline_ms = sent_ms + m->ttl_ms - m->ttl_ms / 10; /* renewed by this call */
        }
        p->held = 1;
        p->token = l->lease_token;
        p->expires_ns = l->expires_ns;
    }
    p->freq_ms = l->frequency_ms > 0 ? l->frequency_ms : 10000;
    p->wake_seq = l->wake_seq;
    if (l->last_start_ns > p->last_start_ns) p->last_start_ns = l->last_start_ns;
    dbld_arena_destroy(p->settings_arena);
    p->settings_arena = dbld_arena_create();
    size_t n;
    uint8_t *b = l->settings ? dbld_msg_pack(p->settings_arena, &l->settings->base, &n) : NULL;
    p->settings = dbld_params_unpack(p->settings_arena, b, b ? n : 0);
    for (size_t i = 0; i < l->n_pending_operations; i++) {
        int known = 0;
        for (size_t k = 0; k < p->n_ops && !known; k++)
            known = strcmp(p->ops[k], l->pending_operations[i]) == 0;
        if (known) continue;
        p->ops = dbld_xrealloc(p->ops, (p->n_ops + 1) * sizeof *p->ops);
        p->ops[p->n_ops++] = dbld_xstrdup(l->pending_operations[i]);
    }
}

static void acquire_once(gs_procs *m)
{
    gs_service *s = m->s;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__AcquireProcessesRequest req = DATABUILD__V1__ACQUIRE_PROCESSES_REQUEST__INIT;
    req.instance = s->owner;
    req.ttl_ms = (uint32_t)m->ttl_ms;
    char *names[N_PROCS];
    for (size_t i = 0; i < N_PROCS; i++)
        names[i] = (char *)defs[i]->name;
    req.names = names;
    req.n_names = N_PROCS;
    Databuild__V1__AcquireProcessesResponse *resp = NULL;
    dbld_status st;
    int64_t sent = dbld_mono_ms();
    int rc =
        store_call(s, "Acquire", &req.base, &databuild__v1__acquire_processes_response__descriptor,
                   a, &resp, m->ttl_ms / 3, &st);
    if (rc) {
        dbld_log(DBLD_LOG_WARN, "could not acquire process leases", "error", st.msg, (char *)NULL);
        dbld_arena_destroy(a);
        return;
    }
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < resp->n_leases; i++)
        for (size_t k = 0; k < N_PROCS; k++)
            if (strcmp(resp->leases[i]->name, m->procs[k].def->name) == 0)
                apply_lease(m, &m->procs[k], resp->leases[i], sent);
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    dbld_arena_destroy(a);
}

static void *mgr_main(void *arg)
{
    gs_procs *m = arg;
    while (!atomic_load(&m->s->ready) && !atomic_load(&m->s->stopping))
        dbld_sleep_ms(100);
    while (!atomic_load(&m->s->stopping)) {
        pthread_mutex_lock(&m->mu);
        int stop = m->stop;
        pthread_mutex_unlock(&m->mu);
        if (stop) break;
        acquire_once(m);
        dbld_sleep_ms(POLL_MS);
    }
    return NULL;
}

/* ---- the run ---- */

gs_service *gsr_service(gs_run *r)
{
    return r->s;
}

dbld_arena *gsr_arena(gs_run *r)
{
    return r->a;
}

int64_t gsr_setting_int(gs_run *r, const char *key, int64_t dflt)
{
    /* the manager's copy, refreshed by every Acquire: a settings change
     * reaches a run in progress within poll_ms */
    gs_procs *m = r->p->m;
    pthread_mutex_lock(&m->mu);
    int64_t v = dbld_params_int(r->p->settings, key, dflt);
    pthread_mutex_unlock(&m->mu);
    return v;
}

int gsr_lease_ok(gs_run *r)
{
    if (r->lost || atomic_load(&r->s->stopping)) return 0;
    gs_procs *m = r->p->m;
    pthread_mutex_lock(&m->mu);
    int ok = r->p->held && r->p->token == r->token && dbld_mono_ms() < r->p->deadline_ms;
    pthread_mutex_unlock(&m->mu);
    return ok;
}

void gsr_error(gs_run *r, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    dbld_pstatus_add_error(r->a, r->status, dbld_now_ns(), buf, DBLD_PROC_RUN_ERRORS);
}

void gsr_stat(gs_run *r, const char *key, double delta)
{
    dbld_pstatus_add_stat(r->a, r->status, key, delta);
}

int gsr_list_work(gs_run *r, int list, Databuild__V1__ProcessWork ***items, size_t *n,
                  dbld_status *st)
{
    Databuild__V1__ProcessWork **all = NULL;
    size_t cnt = 0, cap = 0;
    const char *after = "";
    for (;;) {
        Databuild__V1__ListWorkRequest req = DATABUILD__V1__LIST_WORK_REQUEST__INIT;
        req.name = (char *)r->p->def->name;
        req.list = (Databuild__V1__WorkList)list;
        req.after = (char *)after;
        req.limit = LIST_PAGE;
        Databuild__V1__ListWorkResponse *resp = NULL;
        int rc =
            store_call(r->s, "ListWork", &req.base, &databuild__v1__list_work_response__descriptor,
                       r->a, &resp, r->s->el_timeout_ms, st);
        if (rc) return rc;
        if (cnt + resp->n_items > cap) {
            size_t ncap = (cnt + resp->n_items) * 2 + 16;
            Databuild__V1__ProcessWork **grown = dbld_arena_alloc(r->a, ncap * sizeof *grown);
            if (cnt) memcpy(grown, all, cnt * sizeof *grown);
            all = grown;
            cap = ncap;
        }
        for (size_t i = 0; i < resp->n_items; i++) {
            size_t seen;
            if (gs_strmap_get(&r->listed, resp->items[i]->name, &seen)) continue;
            gs_strmap_put(&r->listed, resp->items[i]->name, 1);
            all[cnt++] = resp->items[i];
        }
        if (!resp->has_more || !resp->n_items) break;
        after = resp->items[resp->n_items - 1]->name;
    }
    *items = all;
    *n = cnt;
    return 0;
}

static int flush(gs_run *r, int final, Databuild__V1__ProcessRunEvent *ev, char **ops, size_t n_ops,
                 int op_state, dbld_status *st);

void gsr_item_put(gs_run *r, Databuild__V1__ProcessWork *w)
{
    for (size_t i = 0; i < r->n_items; i++)
        if (r->items[i] == w) return;
    if (r->n_items == r->cap_items) {
        size_t ncap = r->cap_items * 2 + 64;
        Databuild__V1__ProcessWork **grown = dbld_arena_alloc(r->a, ncap * sizeof *grown);
        if (r->n_items) memcpy(grown, r->items, r->n_items * sizeof *grown);
        r->items = grown;
        r->cap_items = ncap;
    }
    r->items[r->n_items++] = w;
    if (r->n_items >= FLUSH_ITEMS && gsr_lease_ok(r)) {
        dbld_status st;
        if (flush(r, 0, NULL, NULL, 0, 0, &st) != 0)
            gsr_error(r, "could not write work items: %s", st.msg);
    }
}

static Databuild__V1__ProcessStatus *item_status(gs_run *r, Databuild__V1__ProcessWork *w)
{
    if (!w->status) w->status = dbld_arena_msg(r->a, &databuild__v1__process_status__descriptor);
    return w->status;
}

void gsr_item_ok(gs_run *r, Databuild__V1__ProcessWork *w)
{
    Databuild__V1__ProcessStatus *s = item_status(r, w);
    int64_t now = dbld_now_ns();
    if (s->state == DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED && !w->attempts &&
        !w->build_request_id[0]) {
        r->n_completed++;
        return; /* unchanged: nothing to write */
    }
    s->state = DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED;
    s->progress_ns = s->finish_ns = now;
    w->attempts = 0;
    w->next_attempt_ns = 0;
    w->build_request_id = "";
    r->n_completed++;
    gsr_item_put(r, w);
}

void gsr_item_error(gs_run *r, Databuild__V1__ProcessWork *w, const char *text)
{
    Databuild__V1__ProcessStatus *s = item_status(r, w);
    int64_t now = dbld_now_ns();
    w->attempts++;
    dbld_pstatus_add_error(r->a, s, now,
                           dbld_arena_printf(r->a, "attempt %" PRId64 ": %s", w->attempts, text),
                           DBLD_PROC_ITEM_ERRORS);
    gsr_error(r, "%s: %s", w->name, text);
    s->progress_ns = now;
    int64_t cap = gsr_setting_int(r, "max_item_errors", 5);
    if (w->attempts >= cap) {
        s->state = DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED;
        s->finish_ns = now;
        r->n_aborted++;
    } else {
        s->state = DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE;
        int64_t backoff = gsr_setting_int(r, "retry_backoff_ms", 1000);
        for (int64_t i = 1; i < w->attempts && backoff < 60000; i++)
            backoff *= 2;
        if (backoff > 60000) backoff = 60000;
        w->next_attempt_ns = now + backoff * 1000000;
        gsr_wake_at(r, w->next_attempt_ns);
        r->n_incomplete++;
    }
    gsr_item_put(r, w);
}

void gsr_item_cleanup(gs_run *r, Databuild__V1__ProcessWork *w, const char *why)
{
    Databuild__V1__ProcessStatus *s = item_status(r, w);
    w->list = DATABUILD__V1__WORK_LIST__WORK_CLEANUP;
    w->modified_ns = dbld_now_ns();
    s->state = DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED;
    s->finish_ns = w->modified_ns;
    dbld_pstatus_add_stat(r->a, s, why, 1);
    gsr_stat(r, "items_cleaned_up", 1);
    gsr_item_put(r, w);
}

void gsr_build(gs_run *r, const char *id)
{
    if (r->n_builds == r->cap_builds) {
        size_t ncap = r->cap_builds * 2 + 8;
        char **grown = dbld_arena_alloc(r->a, ncap * sizeof *grown);
        if (r->n_builds) memcpy(grown, r->builds, r->n_builds * sizeof *grown);
        r->builds = grown;
        r->cap_builds = ncap;
    }
    r->builds[r->n_builds++] = dbld_arena_strdup(r->a, id);
    gsr_stat(r, "builds_submitted", 1);
}

void gsr_split_refs(dbld_arena *a, const char *joined, char ***out, size_t *n)
{
    size_t cnt = 1;
    for (const char *p = joined; *p; p++)
        cnt += *p == '\n';
    char **refs = dbld_arena_alloc(a, (cnt + 1) * sizeof *refs);
    size_t k = 0;
    char *copy = dbld_arena_strdup(a, joined), *save = NULL;
    for (char *t = strtok_r(copy, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
        refs[k++] = t;
    *out = refs;
    *n = k;
}

int gsr_store_call(gs_run *r, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, void *out, dbld_status *st)
{
    return store_call(r->s, method, req, resp_desc, r->a, out, r->s->el_timeout_ms, st);
}

void gsr_fence(gs_run *r, Databuild__V1__ProcessFence *out)
{
    out->name = (char *)r->p->def->name;
    out->instance = r->s->owner;
    out->lease_token = r->token;
}

void gsr_changed(gs_run *r)
{
    r->changed = 1;
}

void gsr_wake_at(gs_run *r, int64_t at_ns)
{
    if (!r->wake_at_ns || at_ns < r->wake_at_ns) r->wake_at_ns = at_ns;
}

int gsr_merge(gs_run *r)
{
    gs_procs *m = r->p->m;
    if (!r->merges && m->merge_pause_ms) dbld_sleep_ms(m->merge_pause_ms);
    if (r->merges >= MERGES_MAX || !gsr_lease_ok(r)) return 0;
    pthread_mutex_lock(&m->mu);
    int moved = r->p->wake_seq != r->seen_wake;
    if (moved) r->seen_wake = r->p->seen_wake = r->p->wake_seq;
    pthread_mutex_unlock(&m->mu);
    if (!moved) return 0;
    r->merges++;
    gsr_stat(r, "merges", 1);
    if (r->n_items) { /* the next listing reads what this run decided so far */
        dbld_status st;
        if (flush(r, 0, NULL, NULL, 0, 0, &st) != 0) {
            gsr_error(r, "could not write work items: %s", st.msg);
            return 0;
        }
    }
    return 1;
}

/* Write the run's status and the changed items (emptied), fenced. */
static int flush(gs_run *r, int final, Databuild__V1__ProcessRunEvent *ev, char **ops, size_t n_ops,
                 int op_state, dbld_status *st)
{
    Databuild__V1__UpdateProcessRequest req = DATABUILD__V1__UPDATE_PROCESS_REQUEST__INIT;
    Databuild__V1__ProcessFence fence = DATABUILD__V1__PROCESS_FENCE__INIT;
    gsr_fence(r, &fence);
    req.fence = &fence;
    r->status->progress_ns = dbld_now_ns();
    req.status = r->status;
    req.finished = final;
    req.items = r->items;
    req.n_items = r->n_items;
    req.event = ev;
    req.operations = ops;
    req.n_operations = n_ops;
    req.op_state = (Databuild__V1__ProcessState)op_state;
    Databuild__V1__UpdateProcessResponse *resp = NULL;
    int rc =
        store_call(r->s, "Update", &req.base, &databuild__v1__update_process_response__descriptor,
                   r->a, &resp, r->s->el_timeout_ms, st);
    if (rc == DBLD_FAILED_PRECONDITION) r->lost = 1;
    if (!rc) {
        r->n_written += (int64_t)r->n_items;
        r->n_items = 0;
    }
    return rc;
}

static int final_state(const gs_run *r, int rc)
{
    if (rc || r->lost) return DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED;
    if (r->status->total_errors || r->n_incomplete || r->n_aborted)
        return DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE;
    return DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED;
}

static Databuild__V1__ProcessRunEvent *run_event(gs_run *r, char **ops, size_t n_ops)
{
    Databuild__V1__ProcessRunEvent *ev =
        dbld_arena_msg(r->a, &databuild__v1__process_run_event__descriptor);
    ev->process_name = (char *)r->p->def->name;
    ev->instance = r->s->owner;
    ev->lease_token = r->token;
    ev->start_ns = r->status->start_ns;
    ev->finish_ns = r->status->finish_ns;
    ev->state = r->status->state;
    ev->items = (int64_t)dbld_pstatus_stat(r->status, "items");
    ev->items_completed = r->n_completed;
    ev->items_incomplete = r->n_incomplete;
    ev->items_aborted = r->n_aborted;
    ev->errors = r->status->total_errors;
    ev->message = r->status->n_errors ? r->status->errors[r->status->n_errors - 1]->text : "";
    ev->operation_ids = ops;
    ev->n_operation_ids = n_ops;
    ev->build_request_ids = r->builds;
    ev->n_build_request_ids = r->n_builds;
    return ev;
}

/* One run; ops are the operations it serves (malloc'd, freed here). */
static void run_once(gs_proc *p, char **ops, size_t n_ops)
{
    gs_procs *m = p->m;
    gs_run r = {.p = p, .s = m->s, .a = dbld_arena_create()};
    gs_strmap_init(&r.listed);
    pthread_mutex_lock(&m->mu);
    r.token = p->token;
    r.seen_wake = p->seen_wake;
    pthread_mutex_unlock(&m->mu);
    char **aops = dbld_arena_alloc(r.a, (n_ops + 1) * sizeof *aops);
    for (size_t i = 0; i < n_ops; i++) {
        aops[i] = dbld_arena_strdup(r.a, ops[i]);
        free(ops[i]);
    }
    free(ops);
    r.status = dbld_arena_msg(r.a, &databuild__v1__process_status__descriptor);
    r.status->start_ns = dbld_now_ns();
    r.status->state = DATABUILD__V1__PROCESS_STATE__PROCESS_ACTIVE;
    dbld_status st;
    int rc = flush(&r, 0, NULL, aops, n_ops, DATABUILD__V1__PROCESS_STATE__PROCESS_ACTIVE, &st);
    if (rc) {
        dbld_log(DBLD_LOG_WARN, "process run not started", "process", p->def->name, "error", st.msg,
                 (char *)NULL);
        gs_strmap_free(&r.listed);
        dbld_arena_destroy(r.a);
        return;
    }
    dbld_status rst;
    dbld_status_clear(&rst);
    while ((rc = p->def->run(&r, &rst)) == 0 && p->def->merge && gsr_merge(&r))
        ;
    if (rc) gsr_error(&r, "%s", rst.msg);
    r.status->finish_ns = dbld_now_ns();
    r.status->state = final_state(&r, rc);
    /* A run that changed nothing is counted on the process row only, unless
     * the record_idle_runs setting asks for every run in the event log. */
    int changed = r.changed || r.n_builds || n_ops || r.status->total_errors || r.n_written ||
                  r.n_items || r.status->state != DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED;
    int record = changed || gsr_setting_int(&r, "record_idle_runs", 0);
    if (gsr_lease_ok(&r)) {
        Databuild__V1__ProcessRunEvent *ev = record ? run_event(&r, aops, n_ops) : NULL;
        if (flush(&r, 1, ev, aops, n_ops, r.status->state, &st) != 0)
            dbld_log(DBLD_LOG_WARN, "could not record the process run", "process", p->def->name,
                     "error", st.msg, (char *)NULL);
    } else {
        dbld_log(DBLD_LOG_WARN, "process run dropped: lease lost", "process", p->def->name,
                 (char *)NULL);
    }
    pthread_mutex_lock(&m->mu);
    if (r.wake_at_ns && (!p->wake_at_ns || r.wake_at_ns < p->wake_at_ns))
        p->wake_at_ns = r.wake_at_ns;
    pthread_mutex_unlock(&m->mu);
    gs_strmap_free(&r.listed);
    dbld_arena_destroy(r.a);
}

/* Under m->mu: should p run now? */
static int due(gs_proc *p)
{
    if (!p->held || dbld_mono_ms() >= p->deadline_ms) return 0;
    int64_t now = dbld_now_ns();
    return p->kick || p->n_ops || p->wake_seq != p->seen_wake ||
           now >= p->last_start_ns + p->freq_ms * 1000000 ||
           (p->wake_at_ns && now >= p->wake_at_ns);
}

static void *proc_main(void *arg)
{
    gs_proc *p = arg;
    gs_procs *m = p->m;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        if (!due(p)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 100 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->cv, &m->mu, &ts);
            continue;
        }
        p->kick = 0;
        p->seen_wake = p->wake_seq;
        p->wake_at_ns = 0;
        p->last_start_ns = dbld_now_ns();
        char **ops = p->ops;
        size_t n_ops = p->n_ops;
        p->ops = NULL;
        p->n_ops = 0;
        pthread_mutex_unlock(&m->mu);
        run_once(p, ops, n_ops);
        pthread_mutex_lock(&m->mu);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

static int64_t env_ms(const char *name, int64_t dflt)
{
    const char *v = getenv(name);
    long long x = v ? atoll(v) : 0;
    return x >= 100 ? x : dflt;
}

int gs_processes_start(gs_service *s)
{
    gs_procs *m = &g_procs;
    memset(m, 0, sizeof *m);
    m->s = s;
    m->ttl_ms = env_ms("DBLD_GRAPH_PROCESS_LEASE_MS", 15000);
    m->merge_pause_ms = env_ms("DBLD_GRAPH_PROCESS_MERGE_PAUSE_MS", 0);
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    for (size_t i = 0; i < N_PROCS; i++) {
        m->procs[i].def = defs[i];
        m->procs[i].m = m;
        m->procs[i].settings_arena = dbld_arena_create();
        m->procs[i].settings =
            dbld_arena_msg(m->procs[i].settings_arena, &databuild__v1__process_params__descriptor);
        m->procs[i].freq_ms = 10000;
    }
    if (pthread_create(&m->mgr, NULL, mgr_main, m) != 0) goto fail_arenas;
    size_t started = 0;
    for (; started < N_PROCS; started++)
        if (pthread_create(&m->procs[started].th, NULL, proc_main, &m->procs[started]) != 0)
            goto fail_threads;
    m->started = 1;
    return 0;

fail_threads: /* stop and join what did start */
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->mgr, NULL);
    for (size_t i = 0; i < started; i++)
        pthread_join(m->procs[i].th, NULL);
fail_arenas:
    for (size_t i = 0; i < N_PROCS; i++)
        dbld_arena_destroy(m->procs[i].settings_arena);
    return -1;
}

void gs_processes_stop(gs_service *s)
{
    (void)s;
    gs_procs *m = &g_procs;
    if (!m->started) return;
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->mgr, NULL);
    for (size_t i = 0; i < N_PROCS; i++) {
        pthread_join(m->procs[i].th, NULL);
        for (size_t k = 0; k < m->procs[i].n_ops; k++)
            free(m->procs[i].ops[k]);
        free(m->procs[i].ops);
        dbld_arena_destroy(m->procs[i].settings_arena);
    }
    m->started = 0;
}

void gs_processes_kick(gs_service *s, const char *name)
{
    (void)s;
    gs_procs *m = &g_procs;
    if (!m->started) return;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < N_PROCS; i++)
        if (strcmp(m->procs[i].def->name, name) == 0) m->procs[i].kick = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
}
