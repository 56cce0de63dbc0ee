/* task.c - one task of a build: claim, delegate, run, retry.
 *
 * Each task runs on a thread of its own. An attempt is a job run with its
 * own job_run_id: claim the outputs (SCHEDULED + BUILDING appended with the
 * grant), or SKIPPED when they are available, or a delegation to the build
 * holding them; then JobRunner/RunStreamed on the job service with the
 * fewest runs in flight, RUNNING once that service has spawned the process
 * (a run may wait there for a slot), and COMPLETED or a classified failure that the
 * job's retry quota (retry.c) turns into another attempt or a final FAILED.
 */
#include "build.h"

#include "retry.h"

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

static int task_cancelled(gs_task *t)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    int c = b->cancel;
    pthread_mutex_unlock(&b->mu);
    return c;
}

static void task_end(gs_task *t, tstate state, const char *why)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    t->state = state;
    if (why) {
        free(t->why);
        t->why = dbld_xstrdup(why);
    }
    b->running--;
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
        o->kind = r->failure_kind >= 1 && r->failure_kind <= 3 ? (gs_fail_kind)r->failure_kind
                  : r->status == JS(CANCELLED)                 ? GS_FAIL_TRANSIENT
                                                               : GS_FAIL_PERMANENT;
        o->denied = r->retry_denied;
        o->msg = *r->message ? dbld_arena_strdup(a, r->message) : "job failed";
        return;
    }
    if (task_cancelled(t)) {
        o->cancelled = 1;
        return;
    }
    switch (rc) {
    case DBLD_UNAVAILABLE:
    case DBLD_CANCELLED:
    case DBLD_RESOURCE_EXHAUSTED:
    case DBLD_ABORTED:
        o->kind = GS_FAIL_TRANSIENT;
        o->msg = dbld_arena_printf(a, "lost job service %s: %s", addr, st->msg);
        break;
    case DBLD_DEADLINE_EXCEEDED:
        o->kind = GS_FAIL_TIMEOUT;
        o->msg = dbld_arena_printf(a, "job service %s did not answer within the job's timeout: %s",
                                   addr, st->msg);
        break;
    default:
        o->kind = GS_FAIL_PERMANENT;
        o->msg = dbld_arena_printf(a, "job service %s: %s: %s", addr, dbld_code_name(rc), st->msg);
    }
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
    if (gs_el_list(s, &f, 0, a, &page, &st) != 0) return 0;
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
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += DELEGATION_POLL_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
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
    int recorded; /* RUNNING appended (or the append failed) */
} attempt_ctx;

static gs_event *running_event(attempt_ctx *c, const Databuild__V1__RunJobStarted *started)
{
    gs_build *b = c->t->b;
    char *msg = dbld_arena_printf(c->a, "attempt %d on %s (pid %lld", c->attempt,
                                  gs_ep_addr(b->svc, c->ep), (long long)started->pid);
    if (started->waited_ms > 0)
        msg = dbld_arena_printf(c->a, "%s, after %lld ms waiting for a slot", msg,
                                (long long)started->waited_ms);
    msg = dbld_arena_printf(c->a, "%s)", msg);
    gs_event *e =
        gs_ev_job(c->a, b->id, c->run, c->t->job->label, c->t->task->config, JS(RUNNING), msg);
    if (started->start_time_ns > 0) e->timestamp = started->start_time_ns;
    return e;
}

static void attempt_started(void *arg, const Databuild__V1__RunJobStarted *started)
{
    attempt_ctx *c = arg;
    c->recorded = 1;
    /* a failure abandons the build (and, fenced out, cancels this run) */
    (void)gsb_append1(c->t->b, c->a, running_event(c, started));
}

/* The start of a short run goes in front of its result's events. */
static void add_deferred_running(attempt_ctx *c, const Databuild__V1__RunJobStarted *started,
                                 gs_evlist *l)
{
    if (started && !c->recorded) gs_evlist_add(c->a, l, running_event(c, started));
    c->recorded = 1;
}

static void *task_main(void *arg)
{
    gs_task *t = arg;
    gs_build *b = t->b;
    gs_service *s = b->svc;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    const char *label = t->job->label;
    dbld_arena *a = dbld_arena_create();
    char run[37], delegated_to[64] = "", holder_run[64] = "";
    memcpy(run, t->first_run, sizeof run); /* planned: ANALYZED carries it */
    int avoid_ep = -1;
    for (;;) {
        dbld_arena_reset(a);
        if (gsb_stopped(b)) {
            task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (task_cancelled(t)) {
            gsb_append_cancelled(t, a, run, *delegated_to ? OUT_NONE : OUT_ANALYZED,
                                 "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        /* claim, with SCHEDULED + BUILDING appended atomically when granted;
         * RUNNING follows once the job service has started the process */
        gs_evlist l = {0};
        Databuild__V1__BuildEvent *sched = gs_ev_job(a, b->id, run, label, cfg, JS(SCHEDULED), "");
        sched->job_event->config = (Databuild__V1__JobConfig *)cfg;
        gs_evlist_add(a, &l, sched);
        for (size_t i = 0; i < cfg->n_outputs; i++)
            gs_evlist_add(a, &l,
                          gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(BUILDING), run, ""));
        Databuild__V1__ClaimResponse *cr = NULL;
        dbld_status st;
        int crc = gs_el_claim(s, b->id, run, cfg->outputs, cfg->n_outputs, l.evs, l.n, a, &cr, &st);
        if (crc != 0) {
            gsb_fail(b, &st);
            task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (cr->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE) {
            l.n = 0;
            if (*delegated_to) {
                /* the build we delegated to built them: our DELEGATED
                 * partitions end AVAILABLE, naming the run that built them */
                char *msg = dbld_arena_printf(a, "outputs were built by job run %s of build %s",
                                              holder_run, delegated_to);
                gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, label, cfg, JS(SKIPPED), msg));
                for (size_t i = 0; i < cfg->n_outputs; i++)
                    gs_evlist_add(a, &l,
                                  gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE),
                                                  holder_run, "built by the delegated build"));
            } else {
                gs_evlist_add(
                    a, &l,
                    gs_ev_job(a, b->id, run, label, cfg, JS(SKIPPED), "outputs already available"));
            }
            if (gsb_append(b, a, &l) == 0)
                task_end(t, T_OK, NULL);
            else
                task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (cr->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD) {
            if (strcmp(delegated_to, cr->holder_build_request_id) != 0) {
                snprintf(delegated_to, sizeof delegated_to, "%s", cr->holder_build_request_id);
                snprintf(holder_run, sizeof holder_run, "%s", cr->holder_job_run_id);
                char *msg = dbld_arena_printf(
                    a, "partition %s is being built by build %s (job run %s)", cr->held_ref,
                    cr->holder_build_request_id, cr->holder_job_run_id);
                l.n = 0;
                for (size_t i = 0; i < cfg->n_outputs; i++) {
                    gs_evlist_add(
                        a, &l, gs_ev_delegation(a, b->id, cfg->outputs[i]->str, delegated_to, msg));
                    gs_evlist_add(a, &l,
                                  gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(DELEGATED),
                                                  holder_run, msg));
                }
                if (gsb_append(b, a, &l) != 0) continue; /* abandoned: handled at the top */
            } else {
                snprintf(holder_run, sizeof holder_run, "%s", cr->holder_job_run_id);
            }
            wait_delegation(t, a);
            continue;
        }
        if (cr->outcome != DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED) {
            dbld_status_set(&st, DBLD_INTERNAL, "claim: unexpected outcome %d", cr->outcome);
            gsb_abandon(b, &st);
            continue;
        }
        /* GRANTED: our SCHEDULED + BUILDING events are in the log. */
        if (*delegated_to && holder_built(t, a, holder_run)) {
            l.n = 0;
            gs_evlist_add(
                a, &l,
                gs_ev_job(a, b->id, run, label, cfg, JS(SKIPPED),
                          dbld_arena_printf(a, "outputs were built by job run %s of build %s",
                                            holder_run, delegated_to)));
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(a, &l,
                              gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE),
                                              holder_run, "built by the delegated build"));
            task_end(t, gsb_append(b, a, &l) == 0 ? T_OK : T_CANCELLED, NULL);
            break;
        }
        int ep = gs_ep_acquire(s, avoid_ep);
        delegated_to[0] = 0;
        pthread_mutex_lock(&b->mu);
        int cancel = b->cancel;
        if (!cancel) {
            t->ep = ep;
            t->cancel_found = 0;
            snprintf(t->run_id, sizeof t->run_id, "%s", run);
            t->attempts++;
        }
        pthread_mutex_unlock(&b->mu);
        if (cancel) {
            gs_ep_release(s, ep);
            gsb_append_cancelled(t, a, run, OUT_ALL, "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        Databuild__V1__RunJobResponse *rr = NULL;
        int64_t timeout =
            t->job->timeout_ms > 0 ? t->job->timeout_ms + RUN_MARGIN_MS : NO_TIMEOUT_MS;
        attempt_ctx actx = {.t = t, .a = a, .run = run, .ep = ep, .attempt = t->attempts};
        Databuild__V1__RunJobStarted *started = NULL;
        int rc = gs_job_run(s, ep, run, b->id, t->task, timeout, RUNNING_DEFER_MS, attempt_started,
                            &actx, a, &started, &rr, &st);
        pthread_mutex_lock(&b->mu);
        t->ep = -1;
        pthread_mutex_unlock(&b->mu);
        gs_ep_release(s, ep);
        if (gsb_stopped(b)) continue; /* abandoned: no more events */
        outcome o;
        classify(t, a, rc, &st, rr, ep, &o);
        if (o.ok) {
            l.n = 0;
            add_deferred_running(&actx, started, &l);
            Databuild__V1__BuildEvent *done =
                gs_ev_job(a, b->id, run, label, cfg, JS(COMPLETED), "");
            if (rr->manifest) {
                done->job_event->n_manifests = 1;
                done->job_event->manifests = &rr->manifest;
            }
            gs_evlist_add(a, &l, done);
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(
                    a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE), run, ""));
            if (gsb_append(b, a, &l) != 0) continue;
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
            break;
        }
        if (o.cancelled) {
            l.n = 0;
            add_deferred_running(&actx, started, &l);
            if (l.n && gsb_append(b, a, &l) != 0) continue;
            gsb_append_cancelled(t, a, run, OUT_ALL, "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        const char *reason;
        pthread_mutex_lock(&b->mu);
        int retry = gs_retry_decide(&t->job->retry, o.kind, o.denied, t->attempts, &t->used_quota,
                                    &b->global_used, &reason);
        pthread_mutex_unlock(&b->mu);
        char next[37];
        gsb_new_id(next);
        const char *kind = gs_fail_kind_name(o.kind);
        char *msg = retry ? dbld_arena_printf(a, "attempt %d: %s: %s; retrying as %s", t->attempts,
                                              kind, o.msg, next)
                          : dbld_arena_printf(a, "attempt %d: %s: %s; retry denied: %s",
                                              t->attempts, kind, o.msg, reason);
        l.n = 0;
        add_deferred_running(&actx, started, &l);
        gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, label, cfg, JS(FAILED), msg));
        char *pmsg = dbld_arena_printf(a, "job %s failed: %s: %s", label, kind, o.msg);
        if (!retry)
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(
                    a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), run, pmsg));
        dbld_log(DBLD_LOG_WARN, "job run failed", "build_request_id", b->id, "job_run_id", run,
                 "job", label, "message", msg, (char *)NULL);
        if (gsb_append(b, a, &l) != 0) continue;
        if (!retry) {
            task_end(t, T_FAILED, pmsg);
            break;
        }
        if (o.kind == GS_FAIL_TRANSIENT) avoid_ep = ep;
        memcpy(run, next, sizeof run);
    }
    dbld_arena_destroy(a);
    return NULL;
}

void gsb_task_launch(gs_task *t)
{
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    if (pthread_create(&th, &attr, task_main, t) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start a task thread; retrying", (char *)NULL);
        dbld_sleep_ms(100);
        if (pthread_create(&th, &attr, task_main, t) != 0) abort();
    }
    pthread_attr_destroy(&attr);
}
