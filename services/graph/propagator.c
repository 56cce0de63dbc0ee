/* propagator.c - taint_propagator: makes everything built from a tainted
 * partition stale.
 *
 * Work items: one per TaintEvent, registered by the event log in the taint's
 * transaction (params: the tainted refs), which also wakes the process. For
 * each item not yet done, one pass asks the store for every partition built,
 * transitively, from a tainted ref (ProcessStore.Downstream: the lineage the
 * event log records from each job run's configured inputs) that is AVAILABLE
 * and not tainted yet, and appends a PartitionInvalidationEvent for each,
 * whose reason names the taint and the input it came through ("stale: taint
 * T of R via input X"). The invalidation marks the partition tainted, so:
 *   - the next build that needs it rebuilds it (its claim is granted, not
 *     SKIPPED), and its rebuild (PartitionEvent AVAILABLE) clears it;
 *   - a live want on it makes want_reconciler rebuild it.
 * Each invalidation also carries the taint id, its refs and the input as
 * PartitionInvalidationExt fields, which GetPartitionsSummary shows
 * (services/query/stale.c).
 *
 * Stale cancellation (LUCI): the same walk lists the job runs still
 * SCHEDULED or RUNNING that read a tainted or stale input, and the pass
 * appends the seed's JobRunCancelEvent for each (reason "stale: taint T of
 * R via input X; cancelled by taint_propagator"), exactly what
 * QueryOps.CancelJobRun writes: the owning coordinator follows its build's
 * events (follow.c), stops the run and ends it CANCELLED; tasks downstream
 * of it are cancelled, independent ones go on, and the next build (or a
 * live want, through want_reconciler) rebuilds from the fresh input.
 * A run is left alone when a live request still needs it as it is, which
 * here means: the run, or its build request, was created at or after the
 * taint. Such a request was planned with the taint already recorded, so the
 * claim of a tainted input it needed was granted and that input rebuilt
 * first: the run reads fresh data (or is itself the rebuild).
 *
 * A taint recorded during a pass is taken up by the same run (gsr_merge).
 *
 * Invalidations are written in chunks of 1000 events; an item whose pass
 * fails is retried (INCOMPLETE with backoff); appending an invalidation or a
 * cancel twice is harmless.
 */
#include "processes.h"

#include "databuild_process.pb-c.h"
#include "dbld/eventlog_client.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CHUNK 1000 /* setting chunk: invalidations per Append */
#define CHUNK_MAX 10000

static Databuild__V1__BuildEvent *invalidation(dbld_arena *a, const char *ref, const char *reason,
                                               const char *taint, char **refs, size_t n_refs,
                                               const char *via)
{
    Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    e->build_request_id = "";
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT;
    Databuild__V1__PartitionInvalidationEvent *pi =
        dbld_arena_msg(a, &databuild__v1__partition_invalidation_event__descriptor);
    pi->partition_ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    pi->partition_ref->str = (char *)ref;
    pi->reason = (char *)reason;
    dbld_pb_add_unknown_string(a, &pi->base, DBLD_INVALIDATION_TAINT_ID, taint);
    for (size_t i = 0; i < n_refs; i++)
        dbld_pb_add_unknown_string(a, &pi->base, DBLD_INVALIDATION_TAINTED_REFS, refs[i]);
    dbld_pb_add_unknown_string(a, &pi->base, DBLD_INVALIDATION_VIA, via);
    e->partition_invalidation_event = pi;
    return e;
}

static Databuild__V1__BuildEvent *run_cancel(dbld_arena *a, const Databuild__V1__StaleRun *r,
                                             const char *reason)
{
    Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    e->build_request_id = r->build_request_id;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT;
    Databuild__V1__JobRunCancelEvent *c =
        dbld_arena_msg(a, &databuild__v1__job_run_cancel_event__descriptor);
    c->job_run_id = r->job_run_id;
    c->reason = (char *)reason;
    e->job_run_cancel_event = c;
    return e;
}

/* Cancel the in-flight runs of resp that read a stale input; 0 or a code. */
static int cancel_runs(gs_run *r, const Databuild__V1__DownstreamResponse *resp, const char *taint,
                       const char *what, dbld_status *st)
{
    if (!resp->n_runs) return 0;
    dbld_arena *a = gsr_arena(r);
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, resp->n_runs * sizeof *evs);
    for (size_t i = 0; i < resp->n_runs; i++)
        evs[i] = run_cancel(a, resp->runs[i],
                            dbld_arena_printf(a,
                                              "stale: taint %s of %s via input %s;"
                                              " cancelled by taint_propagator",
                                              taint, what, resp->runs[i]->via));
    gs_service *s = gsr_service(r);
    int rc = dbld_eventlog_append(s->eventlog, evs, resp->n_runs, a, NULL, s->el_timeout_ms, st);
    if (rc) return rc;
    gsr_stat(r, "runs_cancelled", (double)resp->n_runs);
    return 0;
}

/* ---- writing the invalidations: up to WRITERS appends in flight, so that
 * the event log's group commit and PostgreSQL work on one chunk while the
 * next is encoded and sent (chunks are independent: an invalidation
 * appended twice is harmless, and a failed chunk fails the item, which is
 * retried). */

#define WRITERS 3

typedef struct writes {
    gs_run *r;
    gs_service *s;
    Databuild__V1__BuildEvent **evs;
    size_t n, chunk;
    pthread_mutex_t mu;
    size_t next; /* first event not taken yet */
    size_t done; /* events appended */
    int rc;      /* first failure */
    dbld_status st;
} writes;

static void *writer(void *arg)
{
    writes *w = arg;
    dbld_arena *a = dbld_arena_create();
    for (;;) {
        pthread_mutex_lock(&w->mu);
        size_t off = w->next, k = 0;
        if (!w->rc && off < w->n && gsr_lease_ok(w->r)) {
            k = w->n - off < w->chunk ? w->n - off : w->chunk;
            w->next += k;
        }
        pthread_mutex_unlock(&w->mu);
        if (!k) break;
        dbld_status st;
        dbld_arena_reset(a);
        int rc = dbld_eventlog_append(w->s->eventlog, w->evs + off, k, a, NULL, w->s->el_timeout_ms,
                                      &st);
        pthread_mutex_lock(&w->mu);
        if (rc && !w->rc) {
            w->rc = rc;
            w->st = st;
        }
        if (!rc) w->done += k;
        pthread_mutex_unlock(&w->mu);
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* Append evs[0..n) in chunks; *marked += what was written; 0 or a code. */
static int write_all(gs_run *r, Databuild__V1__BuildEvent **evs, size_t n, size_t chunk,
                     int64_t *marked, dbld_status *st)
{
    writes w = {.r = r, .s = gsr_service(r), .evs = evs, .n = n, .chunk = chunk};
    pthread_mutex_init(&w.mu, NULL);
    pthread_t th[WRITERS];
    size_t started = 0, want = (n + chunk - 1) / chunk;
    for (; started < WRITERS && started + 1 < want; started++)
        if (pthread_create(&th[started], NULL, writer, &w) != 0) break;
    writer(&w); /* this thread writes too */
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&w.mu);
    *marked += (int64_t)w.done;
    if (w.rc) {
        *st = w.st;
        return w.rc;
    }
    if (w.done < n) return dbld_status_set(st, DBLD_ABORTED, "lease lost");
    return 0;
}

/* Mark what taint item w makes stale; 0 or a code. */
static int propagate(gs_run *r, Databuild__V1__ProcessWork *w, int64_t *marked, dbld_status *st)
{
    dbld_arena *a = gsr_arena(r);
    char **refs;
    size_t n_refs;
    gsr_split_refs(a, dbld_params_str(w->params, "refs", ""), &refs, &n_refs);
    if (!n_refs) return 0;
    Databuild__V1__DownstreamRequest req = DATABUILD__V1__DOWNSTREAM_REQUEST__INIT;
    req.refs = refs;
    req.n_refs = n_refs;
    req.runs_before_ns = dbld_params_int(w->params, "created_ns", 0);
    Databuild__V1__DownstreamResponse *resp = NULL;
    int64_t t0 = dbld_mono_ms();
    int rc = gsr_store_call(r, "Downstream", &req.base,
                            &databuild__v1__downstream_response__descriptor, &resp, st);
    if (rc) return rc;
    int64_t t1 = dbld_mono_ms();
    gsr_stat(r, "downstream_ms", (double)(t1 - t0));
    if (resp->truncated)
        gsr_error(r, "taint %s: more than %zu stale partitions; the rest on the next pass", w->name,
                  resp->n_partitions);
    const char *what =
        n_refs == 1 ? refs[0] : dbld_arena_printf(a, "%s and %zu more", refs[0], n_refs - 1);
    rc = cancel_runs(r, resp, w->name, what, st);
    if (rc) return rc;
    int64_t cs = gsr_setting_int(r, "chunk", CHUNK);
    size_t chunk = cs < 1 ? 1 : cs > CHUNK_MAX ? CHUNK_MAX : (size_t)cs;
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, (resp->n_partitions + 1) * sizeof *evs);
    for (size_t i = 0; i < resp->n_partitions; i++) {
        const Databuild__V1__StaleEdge *e = resp->partitions[i];
        evs[i] = invalidation(
            a, e->ref,
            dbld_arena_printf(a, "stale: taint %s of %s via input %s", w->name, what, e->via),
            w->name, refs, n_refs, e->via);
    }
    rc = resp->n_partitions ? write_all(r, evs, resp->n_partitions, chunk, marked, st) : 0;
    if (rc) return rc;
    gsr_stat(r, "mark_ms", (double)(dbld_mono_ms() - t1));
    if (resp->truncated) gsr_wake_at(r, dbld_now_ns());
    return 0;
}

static int run(gs_run *r, dbld_status *st)
{
    Databuild__V1__ProcessWork **items;
    size_t n;
    int rc = gsr_list_work(r, DATABUILD__V1__WORK_LIST__WORK_ACTIVE, &items, &n, st);
    if (rc) return rc;
    int64_t now = dbld_now_ns();
    gsr_stat(r, "items", (double)n);
    for (size_t i = 0; i < n && gsr_lease_ok(r); i++) {
        Databuild__V1__ProcessWork *w = items[i];
        if (!w->status)
            w->status = dbld_arena_msg(gsr_arena(r), &databuild__v1__process_status__descriptor);
        int state = w->status->state;
        if (state == DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED ||
            state == DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED)
            continue;
        if (w->next_attempt_ns > now) {
            gsr_wake_at(r, w->next_attempt_ns);
            continue;
        }
        int64_t marked = 0;
        dbld_status ist;
        if (propagate(r, w, &marked, &ist) != 0) {
            gsr_item_error(r, w, ist.msg);
            continue;
        }
        dbld_pstatus_add_stat(gsr_arena(r), w->status, "stale_partitions", (double)marked);
        gsr_stat(r, "stale_partitions", (double)marked);
        gsr_item_ok(r, w);
        gsr_item_put(r, w);
    }
    return 0;
}

const gs_proc_def gs_taint_propagator = {
    .name = DBLD_PROC_TAINT_PROPAGATOR,
    .run = run,
    .merge = 1,
};
