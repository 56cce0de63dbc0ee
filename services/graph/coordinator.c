/* coordinator.c - build lifecycle, task execution, retries, cancel, resume.
 *
 * Locking: b->mu protects the task states, counters and flags of a build;
 * it is never held across a remote call. Task threads and the build thread
 * append their own events, so the events of one task (and of the build) are
 * in order; events of different tasks interleave.
 *
 * Partition events that only express this build's intent (REQUESTED,
 * ANALYZED) are not appended for refs that are AVAILABLE at the time: the
 * event log's partitions projection lets the latest event win, so they would
 * turn an AVAILABLE partition back into one that claims have to build again.
 * For the same reason FAILED is only appended for outputs this build was
 * building or had marked ANALYZED.
 *
 * When the event log cannot take an event (after the client's retries), the
 * build is abandoned: nothing more is appended, its lease is no longer
 * renewed, and the orphan poller (this instance's or another's) resumes it
 * later from the event log.
 */
#include "coordinator.h"

#include "retry.h"
#include "strmap.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUN_MARGIN_MS 60000
#define NO_TIMEOUT_MS (30LL * 24 * 3600 * 1000)
#define DELEGATION_POLL_MS 200
#define DELEGATION_RECLAIM_MS 2000
#define CANCEL_RESEND_MS 300
#define MSG_MAX 4000

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

typedef enum { T_WAITING, T_ACTIVE, T_OK, T_FAILED, T_CANCELLED } tstate;

typedef struct gs_task {
    gs_build *b;
    size_t idx;
    Databuild__V1__Task *task;
    const dbld_job_def *job;
    tstate state;
    int used_quota;
    int attempts;
    int ep;           /* job endpoint of the Run in flight, -1 when none */
    int cancel_found; /* the job service confirmed our cancel */
    char run_id[37];  /* job run in flight (for cancel) */
    unsigned char *analyzed; /* per output: this build appended ANALYZED for it */
    void *manifest;   /* packed PartitionManifest of the completed run */
    size_t manifest_len;
    char *why; /* malloc'd: why it failed / was cancelled */
} gs_task;

struct gs_build {
    gs_service *svc;
    char id[37];
    char **refs;
    size_t n_refs;
    char *comment, *want_id;
    int resumed;
    char *prev_owner;
    int refcount; /* under svc->mu */
    gs_build *next;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    int status;    /* last BuildRequestStatusCode appended */
    int done;      /* ended (terminal event appended) or abandoned */
    int abandoned; /* stopped without a terminal event */
    int cancel;
    char *cancel_reason;
    int result_code;
    char *result_msg;
    gs_plan *plan;
    gs_task *tasks;
    size_t n_tasks;
    int running;
    int global_used;
    int dirty; /* a task changed state: rescan */
};

/* ------------------------------------------------------------ registry */

static void registry_add(gs_service *s, gs_build *b)
{
    pthread_mutex_lock(&s->mu);
    b->refcount++;
    b->next = s->builds;
    s->builds = b;
    pthread_mutex_unlock(&s->mu);
}

static void build_free(gs_build *b)
{
    for (size_t i = 0; i < b->n_tasks; i++) {
        free(b->tasks[i].manifest);
        free(b->tasks[i].why);
        free(b->tasks[i].analyzed);
    }
    free(b->tasks);
    gs_plan_free(b->plan);
    for (size_t i = 0; i < b->n_refs; i++)
        free(b->refs[i]);
    free(b->refs);
    free(b->comment);
    free(b->want_id);
    free(b->prev_owner);
    free(b->cancel_reason);
    free(b->result_msg);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void gs_build_unref(gs_build *b)
{
    if (!b)
        return;
    gs_service *s = b->svc;
    pthread_mutex_lock(&s->mu);
    int last = --b->refcount == 0;
    pthread_mutex_unlock(&s->mu);
    if (last)
        build_free(b);
}

static void registry_remove(gs_service *s, gs_build *b, int terminal_status)
{
    pthread_mutex_lock(&s->mu);
    for (gs_build **pp = &s->builds; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    if (terminal_status) {
        gs_recent *r = &s->recent[s->n_recent++ % GS_RECENT_MAX];
        snprintf(r->id, sizeof r->id, "%s", b->id);
        r->status = terminal_status;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    gs_build_unref(b);
}

static gs_build *registry_find(gs_service *s, const char *id)
{
    pthread_mutex_lock(&s->mu);
    gs_build *b = s->builds;
    while (b && strcmp(b->id, id) != 0)
        b = b->next;
    if (b)
        b->refcount++;
    pthread_mutex_unlock(&s->mu);
    return b;
}

int gs_build_active(gs_service *s, const char *id)
{
    gs_build *b = registry_find(s, id);
    gs_build_unref(b);
    return b != NULL;
}

char **gs_build_active_ids(gs_service *s, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    size_t count = 0;
    for (gs_build *b = s->builds; b; b = b->next)
        count++;
    char **ids = dbld_xcalloc(count + 1, sizeof *ids);
    size_t i = 0;
    for (gs_build *b = s->builds; b; b = b->next)
        ids[i++] = dbld_xstrdup(b->id);
    pthread_mutex_unlock(&s->mu);
    *n = count;
    return ids;
}

static int recent_status(gs_service *s, const char *id)
{
    int status = 0;
    pthread_mutex_lock(&s->mu);
    size_t n = s->n_recent < GS_RECENT_MAX ? s->n_recent : GS_RECENT_MAX;
    for (size_t i = 0; i < n && !status; i++)
        if (strcmp(s->recent[i].id, id) == 0)
            status = s->recent[i].status;
    pthread_mutex_unlock(&s->mu);
    return status;
}

/* ------------------------------------------------------------ helpers */

static const char *status_name(int code)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&databuild__v1__build_request_status_code__descriptor, code);
    return v ? v->name : "BUILD_REQUEST_UNKNOWN";
}

/* Mark the build abandoned (caller does not hold b->mu). */
static void abandon(gs_build *b, const dbld_status *st)
{
    pthread_mutex_lock(&b->mu);
    int first = !b->abandoned;
    b->abandoned = 1;
    b->dirty = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    if (first)
        dbld_log(DBLD_LOG_ERROR, "abandoning build (it will be resumed from the event log)",
                 "build_request_id", b->id, "error", st ? st->msg : "lease lost", (char *)NULL);
}

static int stopped(gs_build *b)
{
    pthread_mutex_lock(&b->mu);
    int r = b->abandoned;
    pthread_mutex_unlock(&b->mu);
    return r || atomic_load(&b->svc->stopping);
}

/* Append; on failure abandon the build and return non-zero. */
static int append(gs_build *b, dbld_arena *a, gs_evlist *l)
{
    if (!l->n)
        return 0;
    if (stopped(b))
        return DBLD_ABORTED;
    dbld_status st;
    int rc = gs_el_append(b->svc, l->evs, l->n, a, &st);
    if (rc)
        abandon(b, &st);
    l->n = 0;
    return rc;
}

static int append1(gs_build *b, dbld_arena *a, gs_event *e)
{
    gs_evlist l = {0};
    gs_evlist_add(a, &l, e);
    return append(b, a, &l);
}

/* refs that are AVAILABLE and untainted now: avail[i] = 1. Errors leave 0s. */
static void available_now(gs_service *s, const char *const *refs, size_t n, int *avail)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionState **ps = NULL;
    dbld_status st;
    if (gs_el_status(s, refs, n, a, &ps, &st) == 0)
        for (size_t i = 0; i < n; i++)
            avail[i] = ps[i]->status == PS(AVAILABLE) && !ps[i]->tainted;
    dbld_arena_destroy(a);
}

static void new_id(char out[37]) { dbld_uuid_v4(out); }

/* "a, b, c" of the refs, truncated, appended to buf. */
static void list_refs(char *buf, size_t cap, Databuild__V1__PartitionRef **refs, size_t n,
                      int *first)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(buf);
        if (len + 8 >= cap)
            return;
        snprintf(buf + len, cap - len, "%s%s", *first ? "" : ", ", refs[i]->str);
        *first = 0;
    }
}

/* ------------------------------------------------------------ analysis */

static int cb_configure(void *user, size_t job, const char *const *refs, size_t n, dbld_arena *a,
                        Databuild__V1__JobConfigureResponse **resp, dbld_status *st)
{
    gs_service *s = user;
    char count[24];
    snprintf(count, sizeof count, "%zu", n);
    const char *label = gs_lookup_job(s->lookup, job)->label;
    dbld_log(DBLD_LOG_DEBUG, "configure", "job", label, "refs", count, "first_ref", refs[0],
             (char *)NULL);
    int rc = gs_job_configure(s, job, refs, n, a, resp, st);
    if (rc)
        dbld_log(DBLD_LOG_WARN, "configure failed", "job", label, "error", st->msg, (char *)NULL);
    return rc;
}

static int cb_available(void *user, const char *const *refs, size_t n, int *avail, dbld_status *st)
{
    gs_service *s = user;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionState **ps = NULL;
    int rc = gs_el_status(s, refs, n, a, &ps, st);
    for (size_t i = 0; !rc && i < n; i++)
        avail[i] = ps[i]->status == PS(AVAILABLE) && !ps[i]->tainted;
    dbld_arena_destroy(a);
    return rc;
}

void gs_analyze_env_init(gs_service *s, gs_analyze_env *env)
{
    memset(env, 0, sizeof *env);
    env->lookup = s->lookup;
    env->graph_label = s->cfg->graph.label;
    env->configure = cb_configure;
    env->available = cb_available;
    env->user = s;
    env->parallel = 8;
}

/* ------------------------------------------------------------ finishing */

static void finish(gs_build *b, int code, const char *msg, int rpc_code)
{
    dbld_arena *a = dbld_arena_create();
    int rc = append1(b, a, gs_ev_build_request(a, b->id, code, msg));
    dbld_arena_destroy(a);
    if (rc)
        return; /* abandoned: resumed later */
    dbld_status st;
    if (gs_el_release(b->svc, b->id, &st) != 0)
        dbld_log(DBLD_LOG_WARN, "could not release claims", "build_request_id", b->id, "error",
                 st.msg, (char *)NULL);
    pthread_mutex_lock(&b->mu);
    b->status = code;
    b->result_code = rpc_code;
    free(b->result_msg);
    b->result_msg = dbld_xstrdup(msg ? msg : "");
    b->done = 1;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    dbld_log(code == BR(COMPLETED) ? DBLD_LOG_INFO : DBLD_LOG_WARN, "build ended",
             "build_request_id", b->id, "status", status_name(code), "message", msg, (char *)NULL);
}

/* ------------------------------------------------------------ tasks */

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

#define OUT_ANALYZED 0 /* FAILED for the outputs this build marked ANALYZED */
#define OUT_ALL 1      /* ... for every output (this build's claim was granted: BUILDING) */
#define OUT_NONE 2     /* no partition events (delegated: another build is building them) */

/* JobEvent CANCELLED for run plus PartitionEvent FAILED for outputs per `owned`. */
static void append_cancelled(gs_task *t, dbld_arena *a, const char *run, int owned, const char *msg)
{
    gs_build *b = t->b;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, t->job->label, cfg, JS(CANCELLED), msg));
    for (size_t i = 0; i < cfg->n_outputs; i++)
        if (owned == OUT_ALL || (owned == OUT_ANALYZED && t->analyzed[i]))
            gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), run, msg));
    append(b, a, &l);
}

typedef struct outcome {
    int ok, cancelled;
    gs_fail_kind kind;
    char msg[1500];
} outcome;

static void classify(gs_task *t, int rc, const dbld_status *st, const Databuild__V1__RunJobResponse *r,
                     int ep, outcome *o)
{
    memset(o, 0, sizeof *o);
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
                  : r->status == JS(CANCELLED)                ? GS_FAIL_TRANSIENT
                                                              : GS_FAIL_PERMANENT;
        snprintf(o->msg, sizeof o->msg, "%s", *r->message ? r->message : "job failed");
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
        snprintf(o->msg, sizeof o->msg, "lost job service %s: %s", addr, st->msg);
        break;
    case DBLD_DEADLINE_EXCEEDED:
        o->kind = GS_FAIL_TIMEOUT;
        snprintf(o->msg, sizeof o->msg, "job service %s did not answer within the job's timeout: %s",
                 addr, st->msg);
        break;
    default:
        o->kind = GS_FAIL_PERMANENT;
        snprintf(o->msg, sizeof o->msg, "job service %s: %s: %s", addr, dbld_code_name(rc), st->msg);
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
    if (gs_el_list(s, &f, 0, a, &page, &st) != 0)
        return 0;
    const Databuild__V1__JobEvent *last = NULL;
    for (size_t i = 0; i < page->n_events; i++)
        if (page->events[i]->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
            last = page->events[i]->job_event;
    if (!last || last->status_code != JS(COMPLETED) || page->has_more)
        return 0;
    const Databuild__V1__JobConfig *cfg = t->task->config;
    for (size_t i = 0; i < cfg->n_outputs; i++) {
        int found = 0;
        for (size_t k = 0; k < last->n_target_partitions && !found; k++)
            found = strcmp(last->target_partitions[k]->str, cfg->outputs[i]->str) == 0;
        if (!found)
            return 0;
    }
    const char **refs = dbld_arena_alloc(a, (cfg->n_outputs + 1) * sizeof *refs);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        refs[i] = cfg->outputs[i]->str;
    Databuild__V1__PartitionState **ps = NULL;
    if (gs_el_status(s, refs, cfg->n_outputs, a, &ps, &st) != 0)
        return 0;
    for (size_t i = 0; i < cfg->n_outputs; i++)
        if (ps[i]->tainted)
            return 0;
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
        if (!b->cancel && !b->abandoned)
            pthread_cond_timedwait(&b->cv, &b->mu, &ts);
        int stop = b->cancel || b->abandoned;
        pthread_mutex_unlock(&b->mu);
        if (stop || atomic_load(&b->svc->stopping))
            return 1;
        if (dbld_mono_ms() >= reclaim_at)
            return 0;
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
            if (avail == cfg->n_outputs)
                again = 1;
        }
        dbld_arena_destroy(qa);
        if (again)
            return 0;
    }
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
    new_id(run);
    int avoid_ep = -1;
    for (;;) {
        dbld_arena_reset(a);
        if (stopped(b)) {
            task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (task_cancelled(t)) {
            append_cancelled(t, a, run, *delegated_to ? OUT_NONE : OUT_ANALYZED, "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        /* claim, with SCHEDULED + BUILDING appended atomically when granted */
        gs_evlist l = {0};
        Databuild__V1__BuildEvent *sched =
            gs_ev_job(a, b->id, run, label, cfg, JS(SCHEDULED), "");
        sched->job_event->config = (Databuild__V1__JobConfig *)cfg;
        gs_evlist_add(a, &l, sched);
        for (size_t i = 0; i < cfg->n_outputs; i++)
            gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(BUILDING), run, ""));
        Databuild__V1__ClaimResponse *cr = NULL;
        dbld_status st;
        if (gs_el_claim(s, b->id, run, cfg->outputs, cfg->n_outputs, l.evs, l.n, a, &cr, &st) != 0) {
            abandon(b, &st);
            task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (cr->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE) {
            char *msg = *delegated_to ? dbld_arena_printf(a, "outputs were built by build %s", delegated_to)
                                      : "outputs already available";
            if (append1(b, a, gs_ev_job(a, b->id, run, label, cfg, JS(SKIPPED), msg)) == 0)
                task_end(t, T_OK, NULL);
            else
                task_end(t, T_CANCELLED, "abandoned");
            break;
        }
        if (cr->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD) {
            if (strcmp(delegated_to, cr->holder_build_request_id) != 0) {
                snprintf(delegated_to, sizeof delegated_to, "%s", cr->holder_build_request_id);
                snprintf(holder_run, sizeof holder_run, "%s", cr->holder_job_run_id);
                char *msg = dbld_arena_printf(a, "partition %s is being built by build %s (job run %s)",
                                              cr->held_ref, cr->holder_build_request_id,
                                              cr->holder_job_run_id);
                l.n = 0;
                for (size_t i = 0; i < cfg->n_outputs; i++) {
                    gs_evlist_add(a, &l, gs_ev_delegation(a, b->id, cfg->outputs[i]->str,
                                                          delegated_to, msg));
                    gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str,
                                                         PS(DELEGATED), holder_run, msg));
                }
                if (append(b, a, &l) != 0)
                    continue; /* abandoned: handled at the top */
            } else {
                snprintf(holder_run, sizeof holder_run, "%s", cr->holder_job_run_id);
            }
            wait_delegation(t, a);
            continue;
        }
        if (cr->outcome != DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED) {
            dbld_status_set(&st, DBLD_INTERNAL, "claim: unexpected outcome %d", cr->outcome);
            abandon(b, &st);
            continue;
        }
        /* GRANTED: our SCHEDULED + BUILDING events are in the log. */
        if (*delegated_to && holder_built(t, a, holder_run)) {
            l.n = 0;
            gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, label, cfg, JS(SKIPPED),
                                           dbld_arena_printf(a, "outputs were built by job run %s of build %s",
                                                             holder_run, delegated_to)));
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE),
                                                     holder_run, "built by the delegated build"));
            task_end(t, append(b, a, &l) == 0 ? T_OK : T_CANCELLED, NULL);
            break;
        }
        delegated_to[0] = 0;
        int ep = gs_ep_acquire(s, avoid_ep);
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
            append_cancelled(t, a, run, OUT_ALL, "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        Databuild__V1__RunJobResponse *rr = NULL;
        int rc = append1(b, a, gs_ev_job(a, b->id, run, label, cfg, JS(RUNNING),
                                         dbld_arena_printf(a, "attempt %d on %s", t->attempts,
                                                           gs_ep_addr(s, ep))));
        if (rc == 0) {
            int64_t timeout = t->job->timeout_ms > 0 ? t->job->timeout_ms + RUN_MARGIN_MS : NO_TIMEOUT_MS;
            rc = gs_job_run(s, ep, run, b->id, t->task, timeout, a, &rr, &st);
        }
        pthread_mutex_lock(&b->mu);
        t->ep = -1;
        pthread_mutex_unlock(&b->mu);
        gs_ep_release(s, ep);
        if (stopped(b))
            continue; /* abandoned: no more events */
        outcome o;
        classify(t, rc, &st, rr, ep, &o);
        if (o.ok) {
            l.n = 0;
            Databuild__V1__BuildEvent *done = gs_ev_job(a, b->id, run, label, cfg, JS(COMPLETED), "");
            if (rr->manifest) {
                done->job_event->n_manifests = 1;
                done->job_event->manifests = &rr->manifest;
            }
            gs_evlist_add(a, &l, done);
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(AVAILABLE), run, ""));
            if (append(b, a, &l) != 0)
                continue;
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
            append_cancelled(t, a, run, OUT_ALL, "build cancelled");
            task_end(t, T_CANCELLED, "build cancelled");
            break;
        }
        const char *reason;
        pthread_mutex_lock(&b->mu);
        int retry = gs_retry_decide(&t->job->retry, o.kind, t->attempts, &t->used_quota,
                                    &b->global_used, &reason);
        pthread_mutex_unlock(&b->mu);
        char next[37];
        new_id(next);
        const char *kind = gs_fail_kind_name(o.kind);
        char *msg = retry ? dbld_arena_printf(a, "attempt %d: %s: %s; retrying as %s", t->attempts,
                                              kind, o.msg, next)
                          : dbld_arena_printf(a, "attempt %d: %s: %s; retry denied: %s", t->attempts,
                                              kind, o.msg, reason);
        l.n = 0;
        gs_evlist_add(a, &l, gs_ev_job(a, b->id, run, label, cfg, JS(FAILED), msg));
        char *pmsg = dbld_arena_printf(a, "job %s failed: %s: %s", label, kind, o.msg);
        if (!retry)
            for (size_t i = 0; i < cfg->n_outputs; i++)
                gs_evlist_add(a, &l, gs_ev_partition(a, b->id, cfg->outputs[i]->str, PS(FAILED), run, pmsg));
        dbld_log(DBLD_LOG_WARN, "job run failed", "build_request_id", b->id, "job_run_id", run,
                 "job", label, "message", msg, (char *)NULL);
        if (append(b, a, &l) != 0)
            continue;
        if (!retry) {
            task_end(t, T_FAILED, pmsg);
            break;
        }
        if (o.kind == GS_FAIL_TRANSIENT)
            avoid_ep = ep;
        memcpy(run, next, sizeof run);
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* ------------------------------------------------------------ execution */

static void launch(gs_task *t)
{
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1 << 20);
    if (pthread_create(&th, &attr, task_main, t) != 0) {
        dbld_log(DBLD_LOG_ERROR, "could not start a task thread; retrying", (char *)NULL);
        dbld_sleep_ms(100);
        if (pthread_create(&th, &attr, task_main, t) != 0)
            abort();
    }
    pthread_attr_destroy(&attr);
}

/* The first output of a dependency of t that is not OK (b->mu held). */
static const gs_task *failed_dep(gs_build *b, const gs_task *t)
{
    size_t n = b->plan->n_deps[t->idx];
    for (size_t i = 0; i < n; i++) {
        const gs_task *d = &b->tasks[b->plan->deps[t->idx][i]];
        if (d->state == T_FAILED || d->state == T_CANCELLED)
            return d;
    }
    return NULL;
}

static int deps_ok(gs_build *b, const gs_task *t)
{
    size_t n = b->plan->n_deps[t->idx];
    for (size_t i = 0; i < n; i++)
        if (b->tasks[b->plan->deps[t->idx][i]].state != T_OK)
            return 0;
    return 1;
}

/* Cancel job runs in flight on the job services (b->mu not held). */
static void cancel_runs(gs_build *b)
{
    gs_service *s = b->svc;
    pthread_mutex_lock(&b->mu);
    size_t n_tasks = b->n_tasks;
    pthread_mutex_unlock(&b->mu);
    for (size_t i = 0; i < n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        pthread_mutex_lock(&b->mu);
        int ep = t->ep, todo = ep >= 0 && !t->cancel_found;
        char run[37];
        memcpy(run, t->run_id, sizeof run);
        char *reason = dbld_xstrdup(b->cancel_reason ? b->cancel_reason : "build cancelled");
        pthread_mutex_unlock(&b->mu);
        if (todo) {
            int found = 0;
            dbld_status st;
            gs_job_cancel(s, ep, run, reason, &found, &st);
            pthread_mutex_lock(&b->mu);
            if (found && t->ep == ep && strcmp(t->run_id, run) == 0)
                t->cancel_found = 1;
            pthread_mutex_unlock(&b->mu);
        }
        free(reason);
    }
}

/* Downstream of a failure: JobEvent CANCELLED + FAILED outputs. */
static void cancel_downstream(gs_build *b, gs_task *t, const gs_task *dep)
{
    dbld_arena *a = dbld_arena_create();
    const Databuild__V1__JobConfig *dcfg = dep->task->config;
    char *msg = dbld_arena_printf(a, "upstream %s failed", dcfg->outputs[0]->str);
    char run[37];
    new_id(run);
    append_cancelled(t, a, run, OUT_ANALYZED, msg);
    pthread_mutex_lock(&b->mu);
    t->state = T_CANCELLED;
    free(t->why);
    t->why = dbld_xstrdup(msg);
    b->dirty = 1;
    pthread_mutex_unlock(&b->mu);
    dbld_arena_destroy(a);
}

static void execute(gs_build *b)
{
    int max_parallel = b->svc->cfg->graph.max_parallel > 0 ? b->svc->cfg->graph.max_parallel : 8;
    int64_t next_cancel = 0;
    pthread_mutex_lock(&b->mu);
    b->dirty = 1;
    for (;;) {
        int stop = b->cancel || b->abandoned || atomic_load(&b->svc->stopping);
        size_t waiting = 0;
        if (b->dirty && !stop) {
            b->dirty = 0;
            for (size_t i = 0; i < b->n_tasks; i++) {
                gs_task *t = &b->tasks[i];
                if (t->state != T_WAITING)
                    continue;
                const gs_task *dep = failed_dep(b, t);
                if (dep) {
                    pthread_mutex_unlock(&b->mu);
                    cancel_downstream(b, t, dep);
                    pthread_mutex_lock(&b->mu);
                    continue;
                }
                if (b->running < max_parallel && deps_ok(b, t)) {
                    t->state = T_ACTIVE;
                    b->running++;
                    launch(t);
                }
            }
        }
        for (size_t i = 0; i < b->n_tasks; i++)
            waiting += b->tasks[i].state == T_WAITING;
        if (b->running == 0 && (stop || waiting == 0 || !b->dirty))
            break;
        if (b->cancel && dbld_mono_ms() >= next_cancel) {
            pthread_mutex_unlock(&b->mu);
            cancel_runs(b);
            pthread_mutex_lock(&b->mu);
            next_cancel = dbld_mono_ms() + CANCEL_RESEND_MS;
        }
        if (b->dirty && !stop)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)CANCEL_RESEND_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
}

/* The build's final state from its tasks. */
static void conclude(gs_build *b)
{
    if (stopped(b))
        return;
    char *failed = dbld_xcalloc(1, MSG_MAX), *skipped = dbld_xcalloc(1, MSG_MAX);
    int ff = 1, fs = 1, n_failed = 0, n_cancelled = 0, n_waiting = 0;
    pthread_mutex_lock(&b->mu);
    int cancel = b->cancel;
    for (size_t i = 0; i < b->n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        const Databuild__V1__JobConfig *cfg = t->task->config;
        if (t->state == T_FAILED) {
            n_failed++;
            list_refs(failed, MSG_MAX, cfg->outputs, cfg->n_outputs, &ff);
        } else if (t->state == T_CANCELLED) {
            n_cancelled++;
            list_refs(skipped, MSG_MAX, cfg->outputs, cfg->n_outputs, &fs);
        } else if (t->state == T_WAITING) {
            n_waiting++;
        }
    }
    char *reason = dbld_xstrdup(b->cancel_reason ? b->cancel_reason : "");
    pthread_mutex_unlock(&b->mu);
    if (cancel) {
        /* Tasks that never started: record them as cancelled too. */
        dbld_arena *a = dbld_arena_create();
        for (size_t i = 0; i < b->n_tasks; i++) {
            gs_task *t = &b->tasks[i];
            if (t->state != T_WAITING)
                continue;
            char run[37];
            new_id(run);
            append_cancelled(t, a, run, OUT_ANALYZED, "build cancelled");
            t->state = T_CANCELLED;
            dbld_arena_reset(a);
        }
        dbld_arena_destroy(a);
        char *msg = dbld_xmalloc(MSG_MAX + 64);
        snprintf(msg, MSG_MAX + 64, "cancelled%s%s", *reason ? ": " : "", reason);
        finish(b, BR(CANCELLED), msg, DBLD_CANCELLED);
        free(msg);
    } else if (n_failed || n_cancelled || n_waiting) {
        char *msg = dbld_xmalloc(2 * MSG_MAX + 128);
        snprintf(msg, 2 * MSG_MAX + 128, "partitions failed: %s%s%s", *failed ? failed : "(none)",
                 *skipped ? "; not built because upstream failed: " : "", skipped);
        finish(b, BR(FAILED), msg, DBLD_ABORTED);
        free(msg);
    } else {
        char msg[128];
        snprintf(msg, sizeof msg, "%zu tasks done", b->n_tasks);
        finish(b, BR(COMPLETED), msg, DBLD_OK);
    }
    free(reason);
    free(failed);
    free(skipped);
}

/* ------------------------------------------------------------ planning */

static void set_status(gs_build *b, int code)
{
    pthread_mutex_lock(&b->mu);
    b->status = code;
    pthread_mutex_unlock(&b->mu);
}

/* Analyze and append the graph. 0 to execute; otherwise the build has ended
 * (or was abandoned). */
static int plan(gs_build *b)
{
    gs_service *s = b->svc;
    dbld_arena *a = dbld_arena_create();
    const char *msg = b->resumed ? dbld_arena_printf(a, "resumed by %s (previous owner %s)", s->owner,
                                                     b->prev_owner && *b->prev_owner ? b->prev_owner : "none")
                                 : dbld_arena_printf(a, "analyzing %zu partitions", b->n_refs);
    if (append1(b, a, gs_ev_build_request(a, b->id, BR(PLANNING), msg)) != 0) {
        dbld_arena_destroy(a);
        return 1;
    }
    set_status(b, BR(PLANNING));
    gs_analyze_env env;
    gs_analyze_env_init(s, &env);
    gs_plan *p = NULL;
    gs_analyze_error err;
    int calls = 0;
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    int rc = gs_analyze(&env, (const char *const *)b->refs, b->n_refs, &p, &err, &calls, &st);
    char info[256];
    snprintf(info, sizeof info, "%d configure calls, %" PRId64 " ms", calls, dbld_mono_ms() - t0);
    dbld_log(DBLD_LOG_INFO, rc ? "analysis failed" : "analysis done", "build_request_id", b->id,
             "configure", info, "error", rc ? st.msg : NULL, (char *)NULL);
    if (rc) {
        dbld_arena_destroy(a);
        if (err == GS_AERR_AVAILABILITY) {
            abandon(b, &st);
            return 1;
        }
        pthread_mutex_lock(&b->mu);
        int cancelled = b->cancel;
        pthread_mutex_unlock(&b->mu);
        if (cancelled) {
            finish(b, BR(CANCELLED), "cancelled", DBLD_CANCELLED);
            return 1;
        }
        if (err == GS_AERR_PRECONDITION)
            finish(b, BR(PRECONDITION_FAILED), st.msg, DBLD_FAILED_PRECONDITION);
        else {
            char m[DBLD_STATUS_MSG_MAX + 32];
            snprintf(m, sizeof m, "analysis failed: %s", st.msg);
            finish(b, BR(FAILED), m, rc == DBLD_UNAVAILABLE ? DBLD_UNAVAILABLE : rc);
        }
        return 1;
    }
    /* tasks */
    gs_task *tasks = dbld_xcalloc(p->n_tasks + 1, sizeof *tasks);
    size_t n_out = 0;
    for (size_t i = 0; i < p->n_tasks; i++) {
        tasks[i].b = b;
        tasks[i].idx = i;
        tasks[i].task = p->graph->nodes[i];
        tasks[i].job = gs_lookup_job(s->lookup, p->job[i]);
        tasks[i].ep = -1;
        tasks[i].analyzed = dbld_xcalloc(tasks[i].task->config->n_outputs + 1, 1);
        n_out += tasks[i].task->config->n_outputs;
    }
    const char **outs = dbld_arena_alloc(a, (n_out + 1) * sizeof *outs);
    int *avail = dbld_arena_alloc(a, (n_out + 1) * sizeof *avail);
    size_t k = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t j = 0; j < tasks[i].task->config->n_outputs; j++)
            outs[k++] = tasks[i].task->config->outputs[j]->str;
    available_now(s, outs, n_out, avail);
    pthread_mutex_lock(&b->mu);
    b->plan = p;
    b->tasks = tasks;
    b->n_tasks = p->n_tasks;
    int cancel = b->cancel;
    pthread_mutex_unlock(&b->mu);
    if (cancel) {
        dbld_arena_destroy(a);
        finish(b, BR(CANCELLED), "cancelled", DBLD_CANCELLED);
        return 1;
    }
    char *gmsg = dbld_arena_printf(a, "%zu tasks, %d configure calls in %d rounds, %zu external inputs",
                                   p->n_tasks, p->configure_calls, p->rounds, p->n_external);
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job_graph(a, b->id, p->graph, gmsg));
    gs_evlist_add(a, &l, gs_ev_build_request(a, b->id, BR(ANALYSIS_COMPLETED), gmsg));
    k = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t j = 0; j < tasks[i].task->config->n_outputs; j++, k++)
            if (!avail[k]) {
                tasks[i].analyzed[j] = 1;
                gs_evlist_add(a, &l, gs_ev_partition(a, b->id, outs[k], PS(ANALYZED), "", ""));
            }
    gs_evlist_add(a, &l, gs_ev_build_request(a, b->id, BR(EXECUTING),
                                             dbld_arena_printf(a, "running %zu tasks", p->n_tasks)));
    rc = append(b, a, &l);
    dbld_arena_destroy(a);
    if (rc)
        return 1;
    set_status(b, BR(EXECUTING));
    return 0;
}

/* ------------------------------------------------------------ resume */

typedef struct dangling {
    char *run, *label;
    int status;
    Databuild__V1__JobConfig targets; /* outputs only */
} dangling;

/* Job runs the previous owner left SCHEDULED/RUNNING become FAILED (their
 * processes died with the Run call); a recorded cancel is honoured. */
static int recover(gs_build *b)
{
    gs_service *s = b->svc;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    char *ids[] = {b->id};
    f.build_request_ids = ids;
    f.n_build_request_ids = 1;
    dangling *runs = NULL;
    size_t n_runs = 0, cap = 0;
    int64_t start = 0;
    int rc = 0;
    for (;;) {
        Databuild__V1__EventPage *page = NULL;
        dbld_status st;
        rc = gs_el_list(s, &f, start, a, &page, &st);
        if (rc) {
            abandon(b, &st);
            break;
        }
        for (size_t i = 0; i < page->n_events; i++) {
            const Databuild__V1__BuildEvent *e = page->events[i];
            if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT) {
                pthread_mutex_lock(&b->mu);
                b->cancel = 1;
                free(b->cancel_reason);
                b->cancel_reason = dbld_xstrdup(e->build_cancel_event->reason);
                pthread_mutex_unlock(&b->mu);
            }
            if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
                continue;
            const Databuild__V1__JobEvent *j = e->job_event;
            size_t r = 0;
            while (r < n_runs && strcmp(runs[r].run, j->job_run_id) != 0)
                r++;
            if (r == n_runs) {
                if (n_runs == cap) {
                    cap = cap ? 2 * cap : 16;
                    runs = dbld_xrealloc(runs, cap * sizeof *runs);
                }
                memset(&runs[n_runs], 0, sizeof runs[n_runs]);
                runs[n_runs].run = j->job_run_id;
                n_runs++;
            }
            runs[r].status = j->status_code;
            if (j->job_label)
                runs[r].label = j->job_label->label;
            if (j->n_target_partitions) {
                runs[r].targets.outputs = j->target_partitions;
                runs[r].targets.n_outputs = j->n_target_partitions;
            }
        }
        if (!page->has_more)
            break;
        start = page->next_idx;
    }
    for (size_t r = 0; !rc && r < n_runs; r++) {
        if (runs[r].status != JS(SCHEDULED) && runs[r].status != JS(RUNNING))
            continue;
        const char *msg = dbld_arena_printf(a, "graph service restarted: job run abandoned by %s",
                                            b->prev_owner && *b->prev_owner ? b->prev_owner : "its previous owner");
        gs_evlist l = {0};
        gs_evlist_add(a, &l, gs_ev_job(a, b->id, runs[r].run, runs[r].label ? runs[r].label : "",
                                       &runs[r].targets, JS(FAILED), msg));
        size_t n = runs[r].targets.n_outputs;
        const char **refs = dbld_arena_alloc(a, (n + 1) * sizeof *refs);
        for (size_t i = 0; i < n; i++)
            refs[i] = runs[r].targets.outputs[i]->str;
        Databuild__V1__PartitionState **ps = NULL;
        dbld_status st;
        if (n && gs_el_status(s, refs, n, a, &ps, &st) == 0)
            for (size_t i = 0; i < n; i++)
                if (ps[i]->status == PS(BUILDING) && strcmp(ps[i]->job_run_id, runs[r].run) == 0)
                    gs_evlist_add(a, &l, gs_ev_partition(a, b->id, refs[i], PS(FAILED), runs[r].run, msg));
        dbld_log(DBLD_LOG_INFO, "failing job run left by the previous owner", "build_request_id",
                 b->id, "job_run_id", runs[r].run, (char *)NULL);
        rc = append(b, a, &l);
    }
    free(runs);
    dbld_arena_destroy(a);
    return rc;
}

/* ------------------------------------------------------------ build thread */

static void *build_main(void *arg)
{
    gs_build *b = arg;
    int rc = 0;
    if (b->resumed)
        rc = recover(b);
    pthread_mutex_lock(&b->mu);
    int cancel = b->cancel;
    pthread_mutex_unlock(&b->mu);
    if (!rc && cancel) {
        char msg[600];
        snprintf(msg, sizeof msg, "cancelled: %s", b->cancel_reason ? b->cancel_reason : "");
        finish(b, BR(CANCELLED), msg, DBLD_CANCELLED);
        rc = 1;
    }
    if (!rc && b->n_refs == 0) {
        finish(b, BR(FAILED), "cannot resume: no requested partitions recorded", DBLD_FAILED_PRECONDITION);
        rc = 1;
    }
    if (!rc)
        rc = plan(b);
    if (!rc) {
        execute(b);
        conclude(b);
    }
    pthread_mutex_lock(&b->mu);
    int terminal = b->done ? b->status : 0;
    if (!b->done) {
        b->abandoned = 1;
        b->done = 1;
        b->result_code = DBLD_UNAVAILABLE;
        free(b->result_msg);
        b->result_msg = dbld_xstrdup("the graph service stopped coordinating this build (event log "
                                     "unavailable or lease lost); it will be resumed");
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    registry_remove(b->svc, b, terminal);
    return NULL;
}

static gs_build *build_new(gs_service *s, const char *id, const char *const *refs, size_t n,
                           const char *comment, const char *want_id)
{
    gs_build *b = dbld_xcalloc(1, sizeof *b);
    b->svc = s;
    snprintf(b->id, sizeof b->id, "%s", id);
    b->refs = dbld_xcalloc(n + 1, sizeof *b->refs);
    gs_strmap seen;
    gs_strmap_init(&seen);
    for (size_t i = 0; i < n; i++) {
        if (gs_strmap_get(&seen, refs[i], NULL))
            continue; /* a ref requested twice is requested once */
        gs_strmap_put(&seen, refs[i], 0);
        b->refs[b->n_refs++] = dbld_xstrdup(refs[i]);
    }
    gs_strmap_free(&seen);
    b->comment = dbld_xstrdup(comment ? comment : "");
    b->want_id = dbld_xstrdup(want_id ? want_id : "");
    b->status = BR(RECEIVED);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    return b;
}

static void start_thread(gs_build *b)
{
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &attr, build_main, b) != 0)
        abort();
    pthread_attr_destroy(&attr);
}

int gs_build_submit(gs_service *s, const char *const *refs, size_t n, const char *comment,
                    const char *want_id, char id_out[37], gs_build **out, dbld_status *st)
{
    if (out)
        *out = NULL;
    if (!atomic_load(&s->ready))
        return dbld_status_set(st, DBLD_UNAVAILABLE, "graph service is not ready (event log not reachable yet)");
    if (n == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no partitions requested");
    for (size_t i = 0; i < n; i++) {
        size_t job;
        if (!refs[i] || !*refs[i])
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "partition ref %zu is empty", i);
        int rc = gs_lookup_ref(s->lookup, refs[i], &job, st);
        if (rc)
            return rc;
        if (job == GS_LOOKUP_NONE)
            return dbld_status_set(st, DBLD_NOT_FOUND, "no job produces partition \"%s\"", refs[i]);
    }
    char id[37];
    new_id(id);
    dbld_arena *a = dbld_arena_create();
    char *ids[] = {id};
    Databuild__V1__RenewLeasesResponse *lr = NULL;
    int rc = gs_el_renew(s, ids, 1, 0, a, &lr, st);
    if (!rc && lr->n_lost)
        rc = dbld_status_set(st, DBLD_INTERNAL, "could not take the lease on new build %s", id);
    if (rc) {
        dbld_arena_destroy(a);
        return rc;
    }
    gs_build *b = build_new(s, id, refs, n, comment, want_id);
    refs = (const char *const *)b->refs; /* deduplicated */
    n = b->n_refs;
    registry_add(s, b); /* before RECEIVED: the orphan poller must never see it unregistered */
    int *avail = dbld_arena_alloc(a, (n + 1) * sizeof *avail);
    available_now(s, refs, n, avail);
    gs_evlist l = {0};
    gs_event *rcv = gs_ev_build_request(a, id, BR(RECEIVED), "");
    rcv->build_request_event->requested_partitions = gs_refs(a, refs, n);
    rcv->build_request_event->n_requested_partitions = n;
    rcv->build_request_event->comment = b->comment;
    rcv->build_request_event->want_id = b->want_id;
    gs_evlist_add(a, &l, rcv);
    for (size_t i = 0; i < n; i++)
        if (!avail[i])
            gs_evlist_add(a, &l, gs_ev_partition(a, id, refs[i], PS(REQUESTED), "", ""));
    rc = gs_el_append(s, l.evs, l.n, a, st);
    dbld_arena_destroy(a);
    if (rc) {
        pthread_mutex_lock(&b->mu);
        b->done = 1;
        pthread_mutex_unlock(&b->mu);
        registry_remove(s, b, 0);
        return rc;
    }
    if (out) {
        pthread_mutex_lock(&s->mu);
        b->refcount++;
        pthread_mutex_unlock(&s->mu);
        *out = b;
    }
    memcpy(id_out, id, 37);
    dbld_log(DBLD_LOG_INFO, "build received", "build_request_id", id, "comment", b->comment,
             (char *)NULL);
    start_thread(b);
    return 0;
}

void gs_build_resume(gs_service *s, const Databuild__V1__OrphanBuild *ob)
{
    const char **refs = dbld_xcalloc(ob->n_requested_partitions + 1, sizeof *refs);
    for (size_t i = 0; i < ob->n_requested_partitions; i++)
        refs[i] = ob->requested_partitions[i]->str;
    gs_build *b = build_new(s, ob->build_request_id, refs, ob->n_requested_partitions, ob->comment,
                            ob->want_id);
    free(refs);
    b->resumed = 1;
    b->prev_owner = dbld_xstrdup(ob->previous_owner);
    b->status = ob->status;
    registry_add(s, b);
    dbld_log(DBLD_LOG_INFO, "resuming build", "build_request_id", b->id, "previous_owner",
             ob->previous_owner, "status", status_name(ob->status), (char *)NULL);
    start_thread(b);
}

void gs_build_abandon(gs_service *s, const char *id, const char *why)
{
    gs_build *b = registry_find(s, id);
    if (!b)
        return;
    dbld_status st;
    dbld_status_set(&st, DBLD_ABORTED, "%s", why);
    abandon(b, &st);
    /* Kill its job runs: the new owner re-runs them. */
    pthread_mutex_lock(&b->mu);
    b->cancel_reason = b->cancel_reason ? b->cancel_reason : dbld_xstrdup(why);
    pthread_mutex_unlock(&b->mu);
    cancel_runs(b);
    gs_build_unref(b);
}

/* ------------------------------------------------------------ wait/cancel */

static int wait_done(gs_build *b, dbld_call *call, int64_t wait_ms)
{
    int64_t deadline = wait_ms >= 0 ? dbld_mono_ms() + wait_ms : INT64_MAX;
    pthread_mutex_lock(&b->mu);
    while (!b->done && dbld_mono_ms() < deadline) {
        pthread_mutex_unlock(&b->mu);
        if (call && dbld_call_cancelled(call))
            return 0;
        pthread_mutex_lock(&b->mu);
        if (b->done)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    int done = b->done;
    pthread_mutex_unlock(&b->mu);
    return done;
}

int gs_build_wait(gs_build *b, dbld_call *call, dbld_arena *a,
                  Databuild__V1__GraphBuildResponse **out, dbld_status *st)
{
    if (!wait_done(b, call, -1))
        return dbld_status_set(st, DBLD_UNAVAILABLE, "build %s: the call ended before the build (it goes on)",
                               b->id);
    pthread_mutex_lock(&b->mu);
    int code = b->result_code;
    if (code) {
        dbld_status_set(st, code, "build %s %s: %s", b->id,
                        b->abandoned ? "interrupted" : status_name(b->status), b->result_msg);
        pthread_mutex_unlock(&b->mu);
        return code;
    }
    Databuild__V1__GraphBuildResponse *r = dbld_arena_msg(a, &databuild__v1__graph_build_response__descriptor);
    r->manifests = dbld_arena_alloc(a, (b->n_tasks + 1) * sizeof *r->manifests);
    for (size_t i = 0; i < b->n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        if (!t->manifest)
            continue;
        Databuild__V1__PartitionManifest *m = (Databuild__V1__PartitionManifest *)protobuf_c_message_unpack(
            &databuild__v1__partition_manifest__descriptor, dbld_arena_allocator(a), t->manifest_len,
            t->manifest);
        if (m)
            r->manifests[r->n_manifests++] = m;
    }
    pthread_mutex_unlock(&b->mu);
    *out = r;
    return 0;
}

int gs_build_cancel(gs_service *s, const char *id, const char *reason, int64_t wait_ms,
                    dbld_status *st)
{
    gs_build *b = registry_find(s, id);
    if (!b) {
        int status = recent_status(s, id);
        if (status)
            return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "build %s already ended (%s)", id,
                                   status_name(status));
        return dbld_status_set(st, DBLD_NOT_FOUND, "no active build %s on this graph service", id);
    }
    pthread_mutex_lock(&b->mu);
    int already = b->cancel, done = b->done, status = b->status;
    pthread_mutex_unlock(&b->mu);
    if (done) {
        gs_build_unref(b);
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "build %s already ended (%s)", id,
                               status_name(status));
    }
    if (!already) {
        dbld_arena *a = dbld_arena_create();
        const char *why = reason && *reason ? reason : "cancelled by request";
        int rc = gs_el_append(s, (gs_event *[]){gs_ev_build_cancel(a, id, why)}, 1, a, st);
        dbld_arena_destroy(a);
        if (rc) {
            gs_build_unref(b);
            return rc;
        }
        pthread_mutex_lock(&b->mu);
        b->cancel = 1;
        b->dirty = 1;
        free(b->cancel_reason);
        b->cancel_reason = dbld_xstrdup(why);
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->mu);
        dbld_log(DBLD_LOG_INFO, "cancelling build", "build_request_id", id, "reason", why, (char *)NULL);
    }
    wait_done(b, NULL, wait_ms);
    gs_build_unref(b);
    return 0;
}
