/* task.c - one task of a build: claim, delegate, run, relaunch, retry.
 *
 * Each task runs on a thread of the task pool (graph.task_threads, pool.c)
 * from its first claim to its end; a ready task waits there for a thread.
 * First its QUERY inputs (read, not built) must be AVAILABLE (query_step).
 * An attempt is a job run with its
 * own job_run_id: claim the outputs (SCHEDULED + BUILDING appended with the
 * grant), or reuse them when they are available (a DelegationEvent to the
 * build that made them, SKIPPED), or a delegation to the build
 * holding them; then JobRunner/RunStreamed on the job service with the
 * fewest runs in flight, RUNNING once that service has spawned the process
 * (a run may wait there for a slot), and COMPLETED or a classified failure
 * that the job's retry quota (retry.c) turns into another attempt or a final
 * FAILED. Losing the job service is not a failure of the attempt: the run is
 * relaunched with backoff (retry.h), as a new job run of the same attempt
 * when the lost one had started, on another job service when there is one.
 * A run that never started (launch failure) is not retried: a critical task
 * fails the build at once, an optional one is only logged.
 */
#include "build.h"

#include "retry.h"

#include "dbld/metrics.h"
#include "dbld/log.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUN_MARGIN_MS 60000
#define NO_TIMEOUT_MS (30LL * 24 * 3600 * 1000)
#define DELEGATION_POLL_MS 200
#define DELEGATION_RECLAIM_MS 2000
#define STOP_POLL_MS 200 /* how often a waiting task looks at svc->stopping */

/* The build was cancelled, or the task's current job run (follow.c). */
static int task_cancelled(gs_task *t)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    int c = b->cancel || t->run_cancel;
    pthread_mutex_unlock(&b->mu);
    return c;
}

/* Why a cancelled task ends: "build cancelled" or "job run cancelled: REASON"
 * (in the arena). */
static const char *cancel_why(gs_task *t, dbld_arena *a)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    const char *why = b->fail_msg ? dbld_arena_printf(a, "build failed: %s", b->fail_msg)
                      : !b->cancel && t->run_cancel
                          ? dbld_arena_printf(a, "job run cancelled: %s", t->run_cancel)
                          : "build cancelled";
    pthread_mutex_unlock(&b->mu);
    return why;
}

/* databuild_graph_tasks_total{state}: tasks that ended, by how. */
static void count_task(tstate state)
{
    static const char *const names[] = {"waiting", "active", "ok", "failed", "cancelled"};
    char labels[64];
    snprintf(labels, sizeof labels, "state=\"%s\"", names[state]);
    dbld_counter_add(dbld_counter_get("databuild_graph_tasks_total",
                                      "Tasks of builds that ended, by final state.", labels),
                     1);
}

/* databuild_graph_job_run_duration_seconds{job_label,outcome}: launch to result. */
static void observe_run(const gs_task *t, int64_t start_ms, const char *outcome)
{
    char labels[400];
    snprintf(labels, sizeof labels, "job_label=\"%s\",outcome=\"%s\"", t->job->label, outcome);
    dbld_histogram *h = dbld_histogram_get(
        "databuild_graph_job_run_duration_seconds",
        "Job runs from launch to result, by job label and outcome (ok, failed, cancelled).", labels,
        dbld_latency_buckets, dbld_n_latency_buckets);
    dbld_histogram_observe(h, (double)(dbld_mono_ms() - start_ms) / 1000.0);
}

static void task_end(gs_task *t, tstate state, const char *why)
{
    count_task(state);
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    t->state = state;
    if (why) {
        free(t->why);
        t->why = dbld_xstrdup(why);
    }
    b->running--;
    gsb_task_ended_locked(b, t);
    b->dirty = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

void gsb_append_cancelled(gs_task *t, dbld_arena *a, const char *run, int owned, const char *msg)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, t->job->label, cfg, JS(CANCELLED), msg));
    gs_evlist_add(a, &l,
                  gsx_record(t, a, run, 0, GSX_ST(CANCELLED), 0, GSX_LOG(JOB_RUN_DISCARDED), msg));
    for (size_t i = 0; i < cfg->n_outputs; i++)
        if (owned == OUT_ALL || (owned == OUT_ANALYZED && t->analyzed[i]))
            gs_evlist_add(a, &l,
                          gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), run, msg));
    gsb_append(b, a, &l);
}

typedef struct outcome {
    int ok, cancelled;
    int denied; /* the job denied retry (RunJobResponse.retry_denied) */
    gs_fail_kind kind;
    const char *msg; /* in the attempt's arena: whole, so a stderr tail keeps its last lines */
} outcome;

static void classify(gs_task *t, dbld_arena *a, int rc, const dbld_status *st,
                     const Databuild__V1__RunJobResponse *r, int ep, outcome *o)
{
    memset(o, 0, sizeof *o);
    o->msg = "";
    const char *addr = gs_ep_addr(t->b->svc, ep);
    if (rc == 0) {
        if (r->status == JS(COMPLETED)) {
            o->ok = 1;
            return;
        }
        if (r->status == JS(CANCELLED) && task_cancelled(t)) {
            o->cancelled = 1;
            return;
        }
        o->kind = gs_fail_kind_of(0, r->status, r->failure_kind);
        o->denied = r->retry_denied;
        o->msg = *r->message ? dbld_arena_strdup(a, r->message) : "job failed";
        return;
    }
    if (task_cancelled(t)) {
        o->cancelled = 1;
        return;
    }
    o->kind = gs_fail_kind_of(rc, 0, 0);
    if (o->kind == GS_FAIL_TRANSIENT)
        o->msg = dbld_arena_printf(a, "lost job service %s: %s", addr, st->msg);
    else if (o->kind == GS_FAIL_TIMEOUT)
        o->msg = dbld_arena_printf(a, "job service %s did not answer within the job's timeout: %s",
                                   addr, st->msg);
    else
        o->msg = dbld_arena_printf(a, "job service %s: %s: %s", addr, dbld_code_name(rc), st->msg);
}

/* After a delegation ended in GRANTED: did the holder's run complete our
 * outputs (and nothing tainted them since)? Then they are available and our
 * grant only came from a status race. */
static int holder_built(gs_task *t, dbld_arena *a, const char *holder_run)
{
    gs_service *s = t->b->svc;
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    char *runs[] = {(char *)holder_run};
    f.job_run_ids = runs;
    f.n_job_run_ids = 1;
    Databuild__V1__EventPage *page = NULL;
    dbld_status st;
    int32_t job_events[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT};
    if (gs_el_list(s, &f, job_events, 1, 0, a, &page, &st) != 0) return 0;
    const Databuild__V1__JobEvent *last = NULL;
    for (size_t i = 0; i < page->n_events; i++)
        if (page->events[i]->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
            last = page->events[i]->job_event;
    if (!last || last->status_code != JS(COMPLETED) || page->has_more) return 0;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    for (size_t i = 0; i < cfg->n_outputs; i++) {
        int found = 0;
        for (size_t k = 0; k < last->n_target_partitions && !found; k++)
            found = strcmp(last->target_partitions[k]->str, cfg->outputs[i]->str) == 0;
        if (!found) return 0;
    }
    const char **refs = dbld_arena_alloc(a, (cfg->n_outputs + 1) * sizeof *refs);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        refs[i] = cfg->outputs[i]->str;
    Databuild__V1__PartitionState **ps = NULL;
    if (gs_el_status(s, refs, cfg->n_outputs, a, &ps, &st) != 0) return 0;
    for (size_t i = 0; i < cfg->n_outputs; i++)
        if (ps[i]->tainted) return 0;
    return 1;
}

/* Wait while another build holds our outputs. 0: claim again; 1: stop. */
static int wait_delegation(gs_task *t, dbld_arena *a)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char **refs = dbld_arena_alloc(a, (cfg->n_outputs + 1) * sizeof *refs);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        refs[i] = cfg->outputs[i]->str;
    int64_t reclaim_at = dbld_mono_ms() + DELEGATION_RECLAIM_MS;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, DELEGATION_POLL_MS);
        if (!b->cancel && !b->abandoned) pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        int stop = b->cancel || b->abandoned;
        pthread_mutex_unlock(&b->mu);
        if (stop || atomic_load(&b->svc->stopping)) return 1;
        if (dbld_mono_ms() >= reclaim_at) return 0;
        dbld_arena *qa = dbld_arena_create();
        Databuild__V1__PartitionState **ps = NULL;
        dbld_status st;
        int again = 0;
        if (gs_el_status(b->svc, refs, cfg->n_outputs, qa, &ps, &st) == 0) {
            size_t avail = 0;
            for (size_t i = 0; i < cfg->n_outputs; i++) {
                int s = ps[i]->status;
                if (s == PS(AVAILABLE))
                    avail++;
                else if (s == PS(FAILED) || s == PS(UNKNOWN))
                    again = 1;
            }
            if (avail == cfg->n_outputs) again = 1;
        }
        dbld_arena_destroy(qa);
        if (again) return 0;
    }
}

/* JobEvent RUNNING of an attempt, stamped with the spawn time the job
 * service reported. A run that ends within RUNNING_DEFER_MS of its start gets
 * it in the same append as its result; a longer one as soon as that passes. */
#define RUNNING_DEFER_MS 100

typedef struct attempt_ctx {
    gs_task *t;
    dbld_arena *a;
    const char *run;
    int ep, attempt;
    int relaunch; /* 0 for the attempt's first launch */
    int recorded; /* RUNNING appended (or the append failed) */
    /* the run's job log, handed back with its result (RunJobResponse.log_entries):
     * goes with the result's events; what is left is stored by store_left_logs() */
    Databuild__V1__JobLogEntry **logs;
    size_t n_logs;
} attempt_ctx;

static gs_event *running_event(attempt_ctx *c, const Databuild__V1__RunJobStarted *started)
{
    gs_build *b = c->t->b;
    char *msg = dbld_arena_printf(c->a, "attempt %d on %s (pid %lld", c->attempt,
                                  gs_ep_addr(b->svc, c->ep), (long long)started->pid);
    if (c->relaunch > 0)
        msg =
            dbld_arena_printf(c->a, "%s, relaunch %d after losing a job service", msg, c->relaunch);
    if (started->waited_ms > 0)
        msg = dbld_arena_printf(c->a, "%s, after %lld ms waiting for a slot", msg,
                                (long long)started->waited_ms);
    msg = dbld_arena_printf(c->a, "%s)", msg);
    gs_event *e =
        gs_ev_job(c->a, b->id, c->run, c->t->job->label, c->t->task->config, JS(RUNNING), msg);
    if (started->start_time_ns > 0) e->timestamp = started->start_time_ns;
    return e;
}

/* RUNNING and the execution log's JobRunsLaunched (the attempt TRIGGERED). */
static void add_running(attempt_ctx *c, const Databuild__V1__RunJobStarted *started, gs_evlist *l)
{
    gs_evlist_add(c->a, l, running_event(c, started));
    gs_evlist_add(
        c->a, l,
        gsx_record(c->t, c->a, c->run, 0, GSX_ST(TRIGGERED), 0, GSX_LOG(JOB_RUNS_LAUNCHED), NULL));
}

static void attempt_started(void *arg, const Databuild__V1__RunJobStarted *started)
{
    attempt_ctx *c = arg;
    c->recorded = 1;
    gs_evlist l = {0};
    add_running(c, started, &l);
    /* a failure abandons the build (and, fenced out, cancels this run) */
    (void)gsb_append(c->t->b, c->a, &l);
}

/* The result's events of a run carry its handed-back job log. */
static void add_logs(attempt_ctx *c, gs_evlist *l)
{
    l->logs = c->logs;
    l->n_logs = c->n_logs;
}

/* A handed-back job log that no append carried (the run was cancelled or
 * lost, the build stopped, the append failed): stored on its own, as the job
 * service would have. */
static void store_left_logs(attempt_ctx *c)
{
    if (!c->n_logs) return;
    dbld_status st;
    if (gs_el_joblogs(c->t->b->svc, c->logs, c->n_logs, c->a, &st) != 0)
        dbld_log(DBLD_LOG_WARN, "job log entries not stored", "job_run_id", c->run, "error", st.msg,
                 (char *)NULL);
    c->n_logs = 0;
}

/* The start of a short run goes in front of its result's events. */
static void add_deferred_running(attempt_ctx *c, const Databuild__V1__RunJobStarted *started,
                                 gs_evlist *l)
{
    if (started && !c->recorded) add_running(c, started, l);
    c->recorded = 1;
}

/* A task's way through its attempts (task_main's state, owned by its thread). */
typedef struct task_state {
    char run[37];        /* the current job run */
    int claimed;         /* run's claim was granted: its SCHEDULED + BUILDING are on record */
    int launches;        /* launches of the current attempt (1 + relaunches after losses) */
    gs_backoff bo;       /* the current attempt's relaunches */
    int64_t relaunch_at; /* monotonic ms: do not launch before; 0: at once */
    char lost[37];       /* a started run lost with its job service: it ends CANCELLED
                          * (lost_msg) with the next claim's events; "" none */
    char *lost_msg;      /* malloc'd */
    char *sched_msg;     /* malloc'd, NULL for "": the next claim's SCHEDULED message */
    int avoid_ep;        /* job endpoint to avoid next (failed or lost), -1: none */
    char delegated_to[64], holder_run[64];
    int inputs_ok;       /* its QUERY inputs are AVAILABLE (query_step) */
    int64_t query_until; /* monotonic ms: stop waiting for a QUERY input; 0: not waiting yet */
} task_state;

enum { STEP_DONE, STEP_AGAIN, STEP_GRANTED };

/* JobEvent CANCELLED of the run lost with its job service, when one is
 * pending: it goes into the next append (its outputs move on to the next
 * run, so no partition event). */
static void add_lost(gs_task *t, dbld_arena *a, const task_state *ts, gs_evlist *l)
{
    if (!*ts->lost) return;
    gs_evlist_add(a, l,
                  gs_ev_job(a, t->b->id, ts->lost, t->job->label, t->task->config, JS(CANCELLED),
                            ts->lost_msg));
    gs_evlist_add(a, l,
                  gsx_record(t, a, ts->lost, 0, GSX_ST(CANCELLED), 0, GSX_LOG(JOB_RUN_DISCARDED),
                             ts->lost_msg));
}

static void lost_recorded(task_state *ts)
{
    ts->lost[0] = 0;
    free(ts->lost_msg);
    ts->lost_msg = NULL;
}

/* The build was cancelled before a launch: record this task's end. */
static void end_cancelled(gs_task *t, dbld_arena *a, const task_state *ts)
{
    const char *why = cancel_why(t, a);
    if (*ts->lost) /* its outputs are still BUILDING by the lost run */
        gsb_append_cancelled(t, a, ts->lost, OUT_ALL, why);
    else if (ts->claimed)
        gsb_append_cancelled(t, a, ts->run, OUT_ALL, why);
    else
        gsb_append_cancelled(t, a, ts->run, *ts->delegated_to ? OUT_NONE : OUT_ANALYZED, why);
    task_end(t, T_CANCELLED, why);
}

/* Our delegated outputs were built by the holder's run: SKIPPED, and they
 * end AVAILABLE naming that run. */
static void add_built_by_holder(gs_task *t, dbld_arena *a, const task_state *ts, gs_evlist *l)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    char *msg = dbld_arena_printf(a, "outputs were built by job run %s of build %s", ts->holder_run,
                                  ts->delegated_to);
    gs_evlist_add(a, l, gs_ev_job(a, b->id, ts->run, t->job->label, cfg, JS(SKIPPED), msg));
    for (size_t i = 0; i < cfg->n_outputs; i++)
        gs_evlist_add(a, l,
                      gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE), ts->holder_run,
                                      "built by the delegated build"));
    if (gsx_has(t, ts->run)) /* our claim was granted meanwhile: that attempt is not needed */
        gs_evlist_add(a, l,
                      gsx_record(t, a, ts->run, 0, GSX_ST(CANCELLED), 0, GSX_LOG(JOB_RUN_DISCARDED),
                                 "outputs built by the delegated build"));
    gs_evlist_add(a, l, gsx_reused(t, a, ts->holder_run, ts->delegated_to));
}

/* The outputs are already AVAILABLE: as DataBuild's historical delegation
 * does, a DelegationEvent per output to the build that made it (its message
 * names the job run), SKIPPED naming that run, and the execution log's
 * JobRunsReused with the run and its build. A partition made AVAILABLE
 * without a build (an outside system) gets SKIPPED only. */
static void add_reused(gs_task *t, dbld_arena *a, const task_state *ts, gs_evlist *l)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char *run = "", *build = "";
    const char **refs = dbld_arena_alloc(a, (cfg->n_outputs + 1) * sizeof *refs);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        refs[i] = cfg->outputs[i]->str;
    Databuild__V1__PartitionState **ps = NULL;
    dbld_status st;
    if (cfg->n_outputs && gs_el_status(b->svc, refs, cfg->n_outputs, a, &ps, &st) == 0) {
        run = ps[0]->job_run_id;
        build = ps[0]->build_request_id;
        for (size_t i = 0; i < cfg->n_outputs; i++)
            if (*ps[i]->job_run_id && *ps[i]->build_request_id &&
                strcmp(ps[i]->build_request_id, b->id) != 0) /* not its own, after a resume */
                gs_evlist_add(a, l,
                              gs_ev_delegation(a, b->id, refs[i], ps[i]->build_request_id,
                                               dbld_arena_printf(a,
                                                                 "reused: already available, "
                                                                 "built by job run %s",
                                                                 ps[i]->job_run_id)));
    }
    char *msg = *run ? dbld_arena_printf(a,
                                         "outputs already available (built by job run %s of "
                                         "build %s)",
                                         run, build)
                     : "outputs already available";
    gs_evlist_add(a, l, gs_ev_job(a, b->id, ts->run, t->job->label, cfg, JS(SKIPPED), msg));
    gs_evlist_add(a, l, gsx_reused(t, a, *run ? run : ts->run, build));
}

/* HELD: record the delegation (once per holder) and wait for the holder. */
static int claim_held(gs_task *t, dbld_arena *a, task_state *ts,
                      const Databuild__V1__ClaimResponse *cr)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    gs_evlist l = {0};
    add_lost(t, a, ts, &l);
    if (strcmp(ts->delegated_to, cr->holder_build_request_id) != 0) {
        snprintf(ts->delegated_to, sizeof ts->delegated_to, "%s", cr->holder_build_request_id);
        char *msg =
            dbld_arena_printf(a, "partition %s is being built by build %s (job run %s)",
                              cr->held_ref, cr->holder_build_request_id, cr->holder_job_run_id);
        for (size_t i = 0; i < cfg->n_outputs; i++) {
            gs_evlist_add(a, &l,
                          gs_ev_delegation(a, b->id, cfg->outputs[i]->str, ts->delegated_to, msg));
            gs_evlist_add(a, &l,
                          gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(DELEGATED),
                                          cr->holder_job_run_id, msg));
        }
    }
    snprintf(ts->holder_run, sizeof ts->holder_run, "%s", cr->holder_job_run_id);
    if (gsb_append(b, a, &l) != 0) return STEP_AGAIN; /* abandoned: handled at the top */
    lost_recorded(ts);
    wait_delegation(t, a);
    return STEP_AGAIN;
}

/* Claim the outputs for ts->run, with SCHEDULED + BUILDING (and a lost run's
 * CANCELLED) appended atomically when granted. STEP_GRANTED to launch. */
static int claim_step(gs_task *t, dbld_arena *a, task_state *ts)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char *label = t->job->label;
    gs_evlist l = {0};
    add_lost(t, a, ts, &l);
    int attempt = ts->launches == 0 ? t->attempts + 1 : t->attempts; /* a relaunch keeps it */
    gs_event *pending = gsx_record(t, a, ts->run, attempt, GSX_ST(PENDING), 0, GSX_NO_ENTRY, NULL);
    Databuild__V1__BuildEvent *sched =
        gs_ev_job(a, b->id, ts->run, label, cfg, JS(SCHEDULED), ts->sched_msg ? ts->sched_msg : "");
    sched->job_event->config = (Databuild__V1__JobConfig *)cfg;
    gs_evlist_add(a, &l, sched);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        gs_evlist_add(a, &l,
                      gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(BUILDING), ts->run, ""));
    gs_evlist_add(a, &l, pending);
    Databuild__V1__ClaimResponse *cr = NULL;
    dbld_status st;
    if (gs_el_claim(b->svc, b->id, ts->run, cfg->outputs, cfg->n_outputs, l.evs, l.n,
                    gsb_min_available_ns(t), a, &cr, &st) != 0) {
        gsb_fail(b, &st);
        task_end(t, T_CANCELLED, "abandoned");
        return STEP_DONE;
    }
    gs_claim_next next = gs_claim_decide(cr->outcome, *ts->delegated_to != 0);
    if (next != GS_CLAIM_RUN) gsx_drop(t, ts->run); /* its PENDING attempt was not recorded */
    if (next == GS_CLAIM_REUSE || next == GS_CLAIM_HOLDER_BUILT) {
        l.n = 0;
        add_lost(t, a, ts, &l);
        if (next == GS_CLAIM_HOLDER_BUILT) /* the build we delegated to built them */
            add_built_by_holder(t, a, ts, &l);
        else
            add_reused(t, a, ts, &l);
        if (gsb_append(b, a, &l) == 0)
            task_end(t, T_OK, NULL);
        else
            task_end(t, T_CANCELLED, "abandoned");
        return STEP_DONE;
    }
    if (next == GS_CLAIM_DELEGATE) return claim_held(t, a, ts, cr);
    if (next == GS_CLAIM_UNEXPECTED) {
        dbld_status_set(&st, DBLD_INTERNAL, "claim: unexpected outcome %d", cr->outcome);
        gsb_abandon(b, &st);
        return STEP_AGAIN;
    }
    /* GRANTED: our events are in the log; a CancelJobRun may name the run now */
    pthread_mutex_lock(&b->mu);
    snprintf(t->run_id, sizeof t->run_id, "%s", ts->run);
    pthread_mutex_unlock(&b->mu);
    lost_recorded(ts);
    free(ts->sched_msg);
    ts->sched_msg = NULL;
    ts->claimed = 1;
    if (*ts->delegated_to && holder_built(t, a, ts->holder_run)) {
        l.n = 0;
        add_built_by_holder(t, a, ts, &l);
        task_end(t, gsb_append(b, a, &l) == 0 ? T_OK : T_CANCELLED, NULL);
        return STEP_DONE;
    }
    ts->delegated_to[0] = 0;
    return STEP_GRANTED;
}

/* ---- QUERY inputs ----
 *
 * The seed's DepType QUERY: the task reads the input but does not build it.
 * One that a task of this build produces is an edge of the plan (the task
 * waited for it); any other must be AVAILABLE (and untainted) before the
 * task claims anything. While one is being built elsewhere (REQUESTED,
 * ANALYZED, BUILDING, DELEGATED) the task waits for it, at most
 * svc->query_wait_ms; one nobody is building (missing, FAILED, tainted,
 * or still not there when the wait ends) fails the task with a message
 * naming it. The failure is the task's own, as a failed job run's is:
 * downstream tasks are cancelled and independent ones go on. */

#define QUERY_POLL_MS 250

/* The QUERY inputs of t that no task of the build produces (in a). */
static const char **query_inputs(gs_task *t, dbld_arena *a, size_t *n)
{
    gs_build *b = t->b; /* b->plan and b->tasks are fixed before any task runs */
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char **refs = dbld_arena_alloc(a, (cfg->n_inputs + 1) * sizeof *refs);
    *n = 0;
    for (size_t i = 0; i < cfg->n_inputs; i++) {
        const Databuild__V1__DataDep *d = cfg->inputs[i];
        if (d->dep_type_code != DATABUILD__V1__DEP_TYPE__QUERY || !d->partition_ref) continue;
        int planned = 0;
        for (size_t k = 0; k < b->plan->n_deps[t->idx] && !planned; k++) {
            const Databuild__V1__JobConfig *pc = b->tasks[b->plan->deps[t->idx][k]].task->config;
            for (size_t o = 0; o < pc->n_outputs && !planned; o++)
                planned = strcmp(pc->outputs[o]->str, d->partition_ref->str) == 0;
        }
        if (!planned) refs[(*n)++] = d->partition_ref->str;
    }
    return refs;
}

static int in_progress(int status)
{
    return status == PS(REQUESTED) || status == PS(ANALYZED) || status == PS(BUILDING) ||
           status == PS(DELEGATED);
}

static const char *partition_status_name(int status)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&databuild__v1__partition_status__descriptor, status);
    return v ? v->name : "PARTITION_UNKNOWN";
}

/* The task fails before any run: JobEvent FAILED of its planned run and
 * FAILED for the outputs it had marked ANALYZED. */
static void fail_unlaunched(gs_task *t, dbld_arena *a, const char *msg)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job(a, b->id, t->first_run, t->job->label, cfg, JS(FAILED), msg));
    for (size_t i = 0; i < cfg->n_outputs; i++)
        if (t->analyzed[i])
            gs_evlist_add(
                a, &l,
                gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), t->first_run, msg));
    dbld_log(DBLD_LOG_WARN, "task failed before it ran", "build_request_id", b->id, "job",
             t->job->label, "message", msg, (char *)NULL);
    if (gsb_append(b, a, &l) == 0)
        task_end(t, T_FAILED, msg);
    else
        task_end(t, T_CANCELLED, "abandoned");
}

/* STEP_GRANTED: every QUERY input is AVAILABLE, go on; STEP_AGAIN: wait
 * (one poll went by); STEP_DONE: the task failed. */
static int query_step(gs_task *t, dbld_arena *a, task_state *ts)
{
    gs_build *b = t->b;
    size_t n;
    const char **refs = query_inputs(t, a, &n);
    if (n == 0) return STEP_GRANTED;
    int64_t now = dbld_mono_ms();
    if (!ts->query_until) ts->query_until = now + b->svc->query_wait_ms;
    Databuild__V1__PartitionState **ps = NULL;
    dbld_status st;
    const char *why = NULL;
    if (gs_el_status(b->svc, refs, n, a, &ps, &st) == 0) {
        size_t i = 0;
        while (i < n && ps[i]->status == PS(AVAILABLE) && !ps[i]->tainted)
            i++;
        if (i == n) return STEP_GRANTED;
        const char *status = ps[i]->tainted ? "tainted" : partition_status_name(ps[i]->status);
        if (ps[i]->tainted || !in_progress(ps[i]->status))
            why = dbld_arena_printf(a,
                                    "QUERY input %s is %s: a query input is read, not built (build "
                                    "it first, or make it a MATERIALIZE input)",
                                    refs[i], status);
        else if (now >= ts->query_until)
            why = dbld_arena_printf(a,
                                    "QUERY input %s is still %s after waiting %lld ms for it to "
                                    "become AVAILABLE (it is read, not built)",
                                    refs[i], status, (long long)b->svc->query_wait_ms);
    } else if (now >= ts->query_until) {
        why = dbld_arena_printf(a, "could not check QUERY input %s: %s", refs[0], st.msg);
    }
    if (why) {
        fail_unlaunched(t, a, why);
        return STEP_DONE;
    }
    pthread_mutex_lock(&b->mu);
    struct timespec until = dbld_abs_time(CLOCK_MONOTONIC, QUERY_POLL_MS);
    if (!b->cancel && !t->run_cancel && !b->abandoned)
        pthread_cond_timedwait(&b->cv, &b->mu, &until);
    pthread_mutex_unlock(&b->mu);
    return STEP_AGAIN;
}

/* Wait until `until` (monotonic ms) before a relaunch. 1 when the build was
 * cancelled or abandoned or the service is stopping meanwhile (the top of
 * task_main handles those), so neither waits for the backoff. */
static int wait_relaunch(gs_task *t, int64_t until)
{
    gs_build *b = t->b;
    int stop;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        stop = b->cancel || t->run_cancel || b->abandoned || atomic_load(&b->svc->stopping);
        int64_t left = until - dbld_mono_ms();
        if (stop || left <= 0) break;
        /* cancel and abandon signal b->cv; stopping is polled */
        struct timespec ts =
            dbld_abs_time(CLOCK_MONOTONIC, left < STOP_POLL_MS ? left : STOP_POLL_MS);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    return stop;
}

/* The run's job service was lost (retry.h): schedule a relaunch of the same
 * attempt, charging nothing. A run that had started ends CANCELLED and the
 * attempt goes on as a new job run (its logs and RUNNING belong to the lost
 * one); one that had not keeps its job_run_id and claim. Either way the
 * relaunch avoids the lost endpoint when there is another, and what happens
 * is on record at once (the CANCELLED or a new SCHEDULED message). Returns 0
 * when the relaunch budget is spent: the loss is then the attempt's failure. */
static int schedule_relaunch(gs_task *t, dbld_arena *a, task_state *ts, gs_run_loss loss, int ep,
                             int rc, const dbld_status *st)
{
    gs_build *b = t->b;
    gs_service *s = b->svc;
    int64_t now = dbld_mono_ms(), delay = 0;
    if (!gs_backoff_next(&ts->bo, now, s->relaunch_ms, &delay)) return 0;
    ts->avoid_ep = ep;
    char *lost = dbld_arena_printf(a, "lost job service %s (%s: %s)", gs_ep_addr(s, ep),
                                   dbld_code_name(rc), st->msg);
    char *tail = dbld_arena_printf(
        a, "relaunch %d, %.1f s after the first loss; gives up after %.0f s", ts->bo.tries,
        (double)(now - ts->bo.first_ms) / 1000.0, (double)s->relaunch_ms / 1000.0);
    char *msg;
    if (loss == GS_RUN_LOST_NEW_ID) {
        char next[37];
        gsb_new_id(next);
        msg = dbld_arena_printf(a,
                                "%s: infrastructure failure, not an attempt (no retry quota "
                                "charged); attempt %d goes on as job run %s in %lld ms (%s)",
                                lost, t->attempts, next, (long long)delay, tail);
        free(ts->lost_msg);
        ts->lost_msg = dbld_xstrdup(msg);
        memcpy(ts->lost, ts->run, sizeof ts->lost);
        free(ts->sched_msg);
        ts->sched_msg = dbld_xstrdup(dbld_arena_printf(
            a, "attempt %d relaunched: job run %s lost its job service", t->attempts, ts->lost));
        memcpy(ts->run, next, sizeof ts->run);
        ts->claimed = 0; /* the claim (at the top) records the lost run's end */
    } else {
        msg = dbld_arena_printf(a,
                                "%s before the run started: infrastructure failure, not an attempt "
                                "(no retry quota charged); relaunching in %lld ms (%s)",
                                lost, (long long)delay, tail);
        /* a failure abandons the build: handled at the top */
        (void)gsb_append1(
            b, a, gs_ev_job(a, b->id, ts->run, t->job->label, t->task->config, JS(SCHEDULED), msg));
    }
    dbld_log(DBLD_LOG_WARN, "job service lost; relaunching", "build_request_id", b->id,
             "job_run_id", *ts->lost && !ts->claimed ? ts->lost : ts->run, "relaunch_as", ts->run,
             "job", t->job->label, "message", msg, (char *)NULL);
    ts->relaunch_at = now + delay;
    return 1;
}

/* The run completed: COMPLETED + AVAILABLE, and the manifest for Build. */
static int run_completed(gs_task *t, dbld_arena *a, task_state *ts, attempt_ctx *actx,
                         const Databuild__V1__RunJobStarted *started,
                         Databuild__V1__RunJobResponse *rr)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    gs_evlist l = {0};
    add_deferred_running(actx, started, &l);
    Databuild__V1__BuildEvent *done =
        gs_ev_job(a, b->id, ts->run, t->job->label, cfg, JS(COMPLETED), "");
    if (rr->manifest) {
        done->job_event->n_manifests = 1;
        done->job_event->manifests = &rr->manifest;
    }
    gs_evlist_add(a, &l, done);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        gs_evlist_add(a, &l,
                      gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE), ts->run, ""));
    gs_evlist_add(a, &l,
                  gsx_record(t, a, ts->run, 0, GSX_ST(ENDED), GSX_RES(SUCCEEDED),
                             GSX_LOG(JOB_RUNS_ENDED), NULL));
    add_logs(actx, &l);
    if (gsb_append(b, a, &l) != 0) return STEP_AGAIN;
    actx->n_logs = 0;
    if (rr->manifest) {
        size_t len = protobuf_c_message_get_packed_size(&rr->manifest->base);
        void *buf = dbld_xmalloc(len + 1);
        protobuf_c_message_pack(&rr->manifest->base, buf);
        pthread_mutex_lock(&b->mu);
        t->manifest = buf;
        t->manifest_len = len;
        pthread_mutex_unlock(&b->mu);
    }
    task_end(t, T_OK, NULL);
    return STEP_DONE;
}

/* The run could not be launched: no process was spawned (the spawn failed,
 * the job service refused the run, or it stayed unreachable past the
 * relaunch budget). The attempt is UNTRIGGERED with the reason and is not
 * retried: a launch failure is no result of the job, so the retry quota does
 * not decide about it. A critical task fails the build at once
 * (gsb_fail_at_once()); an optional one is only logged, and its readers run
 * without its outputs. */
static int launch_failed(gs_task *t, dbld_arena *a, task_state *ts, const outcome *o,
                         gs_launch_verdict verdict)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char *label = t->job->label;
    int critical = verdict == GS_LAUNCH_FAILS_BUILD;
    char *msg =
        dbld_arena_printf(a, "attempt %d: launch failed: %s; not retried: %s", t->attempts, o->msg,
                          critical ? "a critical task that cannot be launched fails the build"
                                   : "optional work, the build goes on without it");
    char *pmsg = dbld_arena_printf(a, "job %s could not be launched: %s", label, o->msg);
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job(a, b->id, ts->run, label, cfg, JS(FAILED), msg));
    gs_evlist_add(a, &l,
                  gsx_record(t, a, ts->run, 0, GSX_ST(UNTRIGGERED), gsx_result_of(o->kind),
                             GSX_LOG(JOB_RUNS_LAUNCH_FAILED), o->msg));
    for (size_t i = 0; i < cfg->n_outputs; i++)
        gs_evlist_add(a, &l,
                      gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), ts->run, pmsg));
    dbld_log(DBLD_LOG_WARN, "job run could not be launched", "build_request_id", b->id,
             "job_run_id", ts->run, "job", label, "critical", critical ? "true" : "false",
             "message", msg, (char *)NULL);
    if (gsb_append(b, a, &l) != 0) return STEP_AGAIN;
    if (critical)
        gsb_fail_at_once(b, dbld_arena_printf(a,
                                              "critical job run %s of %s (%s) could not be "
                                              "launched: %s",
                                              ts->run, label, cfg->outputs[0]->str, o->msg));
    task_end(t, T_FAILED, pmsg);
    return STEP_DONE;
}

/* The attempt failed: charge its kind, retry as a new job run or fail. */
static int run_failed(gs_task *t, dbld_arena *a, task_state *ts, attempt_ctx *actx,
                      const Databuild__V1__RunJobStarted *started, const outcome *o, int ep)
{
    gs_launch_verdict verdict = gs_launch_decide(started != NULL, t->critical);
    if (verdict != GS_LAUNCHED) return launch_failed(t, a, ts, o, verdict);
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char *label = t->job->label;
    const char *reason;
    pthread_mutex_lock(&b->mu);
    int retry = gs_retry_decide(&t->job->retry, o->kind, o->denied, t->attempts, &t->used_quota,
                                &b->global_used, &reason);
    pthread_mutex_unlock(&b->mu);
    char next[37];
    gsb_new_id(next);
    const char *kind = gs_fail_kind_name(o->kind);
    char *msg = retry ? dbld_arena_printf(a, "attempt %d: %s: %s; retrying as %s", t->attempts,
                                          kind, o->msg, next)
                      : dbld_arena_printf(a, "attempt %d: %s: %s; retry denied: %s", t->attempts,
                                          kind, o->msg, reason);
    gs_evlist l = {0};
    add_deferred_running(actx, started, &l);
    gs_evlist_add(a, &l, gs_ev_job(a, b->id, ts->run, label, cfg, JS(FAILED), msg));
    gs_evlist_add(a, &l,
                  gsx_record(t, a, ts->run, 0, GSX_ST(ENDED), gsx_result_of(o->kind),
                             GSX_LOG(JOB_RUNS_ENDED), NULL));
    if (!retry)
        gs_evlist_add(a, &l, gsx_record(t, a, ts->run, 0, 0, 0, GSX_LOG(RETRY_DENIED), reason));
    char *pmsg = dbld_arena_printf(a, "job %s failed: %s: %s", label, kind, o->msg);
    if (!retry)
        for (size_t i = 0; i < cfg->n_outputs; i++)
            gs_evlist_add(
                a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), ts->run, pmsg));
    dbld_log(DBLD_LOG_WARN, "job run failed", "build_request_id", b->id, "job_run_id", ts->run,
             "job", label, "message", msg, (char *)NULL);
    add_logs(actx, &l);
    if (gsb_append(b, a, &l) != 0) return STEP_AGAIN;
    actx->n_logs = 0;
    if (!retry) {
        task_end(t, T_FAILED, pmsg);
        return STEP_DONE;
    }
    if (o->kind == GS_FAIL_TRANSIENT) ts->avoid_ep = ep;
    memcpy(ts->run, next, sizeof ts->run); /* a new attempt */
    ts->claimed = 0;
    ts->launches = 0;
    ts->bo = (gs_backoff){0};
    return STEP_AGAIN;
}

/* Act on how the run of run_step() ended (rc, st: the call's outcome). */
static int run_ended(gs_task *t, dbld_arena *a, task_state *ts, attempt_ctx *actx,
                     const Databuild__V1__RunJobStarted *started, Databuild__V1__RunJobResponse *rr,
                     int rc, const dbld_status *st, int64_t run_start)
{
    gs_build *b = t->b;
    int ep = actx->ep;
    if (gsb_stopped(b)) return STEP_AGAIN; /* abandoned: no more events */
    gs_run_loss loss = GS_RUN_OUTCOME;
    if (!task_cancelled(t)) {
        loss = gs_run_classify_loss(rc, rr != NULL, started != NULL);
        if (loss != GS_RUN_OUTCOME && schedule_relaunch(t, a, ts, loss, ep, rc, st))
            return STEP_AGAIN;
    }
    outcome o;
    classify(t, a, rc, st, rr, ep, &o);
    observe_run(t, run_start, o.ok ? "ok" : o.cancelled ? "cancelled" : "failed");
    if (o.ok) return run_completed(t, a, ts, actx, started, rr);
    if (o.cancelled) {
        gs_evlist l = {0};
        add_deferred_running(actx, started, &l);
        if (l.n && gsb_append(b, a, &l) != 0) return STEP_AGAIN;
        const char *why = cancel_why(t, a);
        gsb_append_cancelled(t, a, ts->run, OUT_ALL, why);
        task_end(t, T_CANCELLED, why);
        return STEP_DONE;
    }
    if (loss != GS_RUN_OUTCOME) /* the relaunch budget is spent */
        o.msg =
            dbld_arena_printf(a, "%s; gave up relaunching after %d relaunches in %.1f s", o.msg,
                              ts->bo.tries, (double)(dbld_mono_ms() - ts->bo.first_ms) / 1000.0);
    return run_failed(t, a, ts, actx, started, &o, ep);
}

/* Launch ts->run on a job service and act on how it ended. */
static int run_step(gs_task *t, dbld_arena *a, task_state *ts)
{
    gs_build *b = t->b;
    gs_service *s = b->svc;
    int ep = gs_ep_acquire(s, ts->avoid_ep);
    pthread_mutex_lock(&b->mu);
    int cancel = b->cancel || t->run_cancel;
    if (!cancel) {
        t->ep = ep;
        t->cancel_found = 0;
        snprintf(t->run_id, sizeof t->run_id, "%s", ts->run);
        if (ts->launches == 0) t->attempts++; /* a relaunch is the same attempt */
    }
    pthread_mutex_unlock(&b->mu);
    if (cancel) {
        gs_ep_release(s, ep);
        const char *why = cancel_why(t, a);
        gsb_append_cancelled(t, a, ts->run, OUT_ALL, why);
        task_end(t, T_CANCELLED, why);
        return STEP_DONE;
    }
    Databuild__V1__RunJobResponse *rr = NULL;
    int64_t timeout = t->job->timeout_ms > 0 ? t->job->timeout_ms + RUN_MARGIN_MS : NO_TIMEOUT_MS;
    attempt_ctx actx = {
        .t = t, .a = a, .run = ts->run, .ep = ep, .attempt = t->attempts, .relaunch = ts->launches};
    ts->launches++;
    Databuild__V1__RunJobStarted *started = NULL;
    dbld_status st;
    int64_t run_start = dbld_mono_ms();
    int rc = gs_job_run(s, ep, ts->run, b->id, t->task, timeout, RUNNING_DEFER_MS, attempt_started,
                        &actx, a, &started, &rr, &st);
    pthread_mutex_lock(&b->mu);
    t->ep = -1;
    pthread_mutex_unlock(&b->mu);
    gs_ep_release(s, ep);
    if (rr) {
        actx.logs = rr->log_entries;
        actx.n_logs = rr->n_log_entries;
    }
    int step = run_ended(t, a, ts, &actx, started, rr, rc, &st, run_start);
    store_left_logs(&actx);
    return step;
}

static void *task_main(void *arg)
{
    gs_task *t = arg;
    gs_build *b = t->b;
    dbld_arena *a = dbld_arena_create();
    task_state ts = {.avoid_ep = -1};
    memcpy(ts.run, t->first_run, sizeof ts.run); /* planned: ANALYZED carries it */
    ts.sched_msg = gsb_absent_inputs(t);         /* its SCHEDULED says so */
    for (;;) {
        dbld_arena_reset(a);
        if (gsb_stopped(b)) {
            task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (task_cancelled(t)) {
            end_cancelled(t, a, &ts);
            break;
        }
        if (!ts.inputs_ok) {
            int step = query_step(t, a, &ts);
            if (step == STEP_DONE) break;
            if (step == STEP_AGAIN) continue;
            ts.inputs_ok = 1;
        }
        if (!ts.claimed) {
            int step = claim_step(t, a, &ts);
            if (step == STEP_DONE) break;
            if (step == STEP_AGAIN) continue;
        }
        if (ts.relaunch_at && wait_relaunch(t, ts.relaunch_at)) continue;
        ts.relaunch_at = 0;
        if (run_step(t, a, &ts) == STEP_DONE) break;
    }
    free(ts.lost_msg);
    free(ts.sched_msg);
    dbld_arena_destroy(a);
    return NULL;
}

int64_t gsb_min_available_ns(const gs_task *t)
{
    int64_t min = t->forced ? t->b->created_ns : 0;
    int age = t->job->max_age_ms > 0 ? t->job->max_age_ms : t->b->svc->cfg->graph.max_age_ms;
    if (age > 0) {
        int64_t since = dbld_now_ns() - (int64_t)age * 1000000;
        if (since > min) min = since;
    }
    return min;
}

static void task_work(gs_work *w)
{
    task_main(DBLD_FIFO_ENTRY(&w->link, gs_task, work));
}

void gsb_task_launch(gs_task *t)
{
    t->work.fn = task_work;
    gs_pool_push(t->b->svc->task_pool, &t->work, 0); /* bounded: max_parallel per build */
}
