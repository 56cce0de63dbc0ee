/* coordinator.c - a build's lifecycle: submit, plan, schedule its tasks
 * (task.c runs each one), end it, cancel it, resume it after a crash.
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
#include "build.h"

#include "retry.h"
#include "strmap.h"

#include "dbld/metrics.h"
#include "dbld/log.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CANCEL_RESEND_MS 300
#define MSG_MAX 4000

/* ------------------------------------------------------------ scheduling */

static void sched_free(gs_sched *sc)
{
    free(sc->recheck);
    free(sc->listed);
    free(sc->ready);
    free(sc->first);
    free(sc->dependents);
    memset(sc, 0, sizeof *sc);
}

/* Every task waiting is looked at once; the reverse edges of the plan. */
static void sched_init(gs_build *b)
{
    gs_sched *sc = &b->sched;
    size_t n = b->n_tasks, n_edges = 0;
    sched_free(sc);
    sc->recheck = dbld_xcalloc(n + 1, sizeof *sc->recheck);
    sc->listed = dbld_xcalloc(n + 1, 1);
    sc->ready = dbld_xcalloc(n + 1, sizeof *sc->ready);
    sc->first = dbld_xcalloc(n + 1, sizeof *sc->first);
    for (size_t i = 0; i < n; i++) {
        n_edges += b->plan->n_deps[i];
        for (size_t k = 0; k < b->plan->n_deps[i]; k++)
            sc->first[b->plan->deps[i][k]]++;
    }
    sc->dependents = dbld_xcalloc(n_edges + 1, sizeof *sc->dependents);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) { /* counts -> ends of each range */
        at += sc->first[i];
        sc->first[i] = at;
    }
    sc->first[n] = at;
    for (size_t i = n; i-- > 0;) /* fill backwards: first[d] ends as its start */
        for (size_t k = b->plan->n_deps[i]; k-- > 0;)
            sc->dependents[--sc->first[b->plan->deps[i][k]]] = i;
    for (size_t i = n; i-- > 0;) {
        if (b->tasks[i].state != T_WAITING) continue;
        sc->n_waiting++;
        sc->listed[i] = 1;
        sc->recheck[sc->n_recheck++] = i;
    }
}

static void ready_push(gs_sched *sc, size_t v)
{
    size_t i = sc->n_ready++;
    while (i > 0 && sc->ready[(i - 1) / 2] > v) {
        sc->ready[i] = sc->ready[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    sc->ready[i] = v;
}

static size_t ready_pop(gs_sched *sc)
{
    size_t top = sc->ready[0], v = sc->ready[--sc->n_ready], i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= sc->n_ready) break;
        if (c + 1 < sc->n_ready && sc->ready[c + 1] < sc->ready[c]) c++;
        if (sc->ready[c] >= v) break;
        sc->ready[i] = sc->ready[c];
        i = c;
    }
    if (sc->n_ready) sc->ready[i] = v;
    return top;
}

void gsb_task_ended_locked(gs_build *b, const gs_task *t)
{
    gs_sched *sc = &b->sched;
    if (!sc->first) return; /* not executing */
    for (size_t k = sc->first[t->idx]; k < sc->first[t->idx + 1]; k++) {
        size_t d = sc->dependents[k];
        if (sc->listed[d] || b->tasks[d].state != T_WAITING) continue;
        sc->listed[d] = 1;
        sc->recheck[sc->n_recheck++] = d;
    }
}

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
        free(b->tasks[i].run_cancel);
        free(b->tasks[i].dep_optional);
        gsx_free(&b->tasks[i].exec);
    }
    free(b->tasks);
    sched_free(&b->sched);
    for (size_t i = 0; i < b->n_prior; i++) {
        free(b->prior[i].ref);
        free(b->prior[i].buf);
    }
    free(b->prior);
    for (size_t i = 0; i < b->n_planned; i++)
        free(b->planned[i].ref);
    free(b->planned);
    gs_plan_free(b->plan);
    for (size_t i = 0; i < b->n_refs; i++)
        free(b->refs[i]);
    free(b->refs);
    free(b->comment);
    free(b->want_id);
    free(b->prev_owner);
    free(b->cancel_reason);
    free(b->fail_msg);
    free(b->result_msg);
    gs_missing_free(&b->missing);
    while (b->on_end) { /* only if it never ran: the build thread takes them */
        gs_end_cb *cb = b->on_end;
        b->on_end = cb->next;
        free(cb);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    free(b);
}

void gs_build_unref(gs_build *b)
{
    if (!b) return;
    gs_service *s = b->svc;
    pthread_mutex_lock(&s->mu);
    int last = --b->refcount == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) build_free(b);
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
    if (b) b->refcount++;
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
        if (strcmp(s->recent[i].id, id) == 0) status = s->recent[i].status;
    pthread_mutex_unlock(&s->mu);
    return status;
}

/* ------------------------------------------------------------ helpers */

static const char *status_name(int code)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
        &databuild__v1__build_request_status_code__descriptor, code);
    return v ? v->name : "BUILD_REQUEST_UNKNOWN";
}

/* Mark the build abandoned (caller does not hold b->mu). */
void gsb_abandon(gs_build *b, const dbld_status *st)
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

static void cancel_runs(gs_build *b);

void gsb_fail(gs_build *b, const dbld_status *st)
{
    gsb_abandon(b, st);
    /* fenced out: another instance took the build over and re-runs them */
    if (st->code == DBLD_FAILED_PRECONDITION) cancel_runs(b);
}

void gsb_fail_at_once(gs_build *b, const char *why)
{
    pthread_mutex_lock(&b->mu);
    int first = !b->cancel;
    if (first) {
        b->fail_msg = dbld_xstrdup(why);
        b->cancel = 1;
        b->dirty = 1;
        free(b->cancel_reason);
        size_t len = strlen(why) + 16;
        b->cancel_reason = dbld_xmalloc(len);
        snprintf(b->cancel_reason, len, "build failed: %s", why);
        pthread_cond_broadcast(&b->cv);
    }
    pthread_mutex_unlock(&b->mu);
    if (first)
        dbld_log(DBLD_LOG_WARN, "failing build at once", "build_request_id", b->id, "reason", why,
                 (char *)NULL);
}

int gsb_stopped(gs_build *b)
{
    pthread_mutex_lock(&b->mu);
    int r = b->abandoned;
    pthread_mutex_unlock(&b->mu);
    return r || atomic_load(&b->svc->stopping);
}

/* Append; on failure abandon the build and return non-zero. */
int gsb_append(gs_build *b, dbld_arena *a, gs_evlist *l)
{
    if (!l->n) return 0;
    if (gsb_stopped(b)) return DBLD_ABORTED;
    dbld_status st;
    int rc = gs_el_append_logs(b->svc, b->id, l->evs, l->n, l->logs, l->n_logs, a, &st);
    if (rc) gsb_fail(b, &st);
    l->n = 0;
    l->logs = NULL;
    l->n_logs = 0;
    return rc;
}

int gsb_append1(gs_build *b, dbld_arena *a, gs_event *e)
{
    gs_evlist l = {0};
    gs_evlist_add(a, &l, e);
    return gsb_append(b, a, &l);
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

void gsb_new_id(char out[37])
{
    dbld_uuid_v4(out);
}

/* "a, b, c" of the refs, truncated, appended to buf. */
static void list_refs(char *buf, size_t cap, Databuild__V1__PartitionRef **refs, size_t n,
                      int *first)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(buf);
        if (len + 8 >= cap) return;
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
    int rc = gsb_append1(b, a, gs_ev_build_request(a, b->id, code, msg));
    dbld_arena_destroy(a);
    if (rc) return; /* abandoned: resumed later */
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
    char labels[96];
    snprintf(labels, sizeof labels, "status=\"%s\"", status_name(code));
    dbld_counter_add(dbld_counter_get("databuild_graph_builds_total",
                                      "Builds that ended, by final status.", labels),
                     1);
    dbld_log(code == BR(COMPLETED) ? DBLD_LOG_INFO : DBLD_LOG_WARN, "build ended",
             "build_request_id", b->id, "status", status_name(code), "message", msg, (char *)NULL);
}

/* ------------------------------------------------------------ execution */

/* The first output of a dependency of t that is not OK (b->mu held). */
static const gs_task *failed_dep(gs_build *b, const gs_task *t)
{
    size_t n = b->plan->n_deps[t->idx];
    for (size_t i = 0; i < n; i++) {
        const gs_task *d = &b->tasks[b->plan->deps[t->idx][i]];
        if (t->dep_optional[i]) continue; /* it runs without that input */
        if (d->state == T_FAILED || d->state == T_CANCELLED) return d;
    }
    return NULL;
}

static int deps_ok(gs_build *b, const gs_task *t)
{
    size_t n = b->plan->n_deps[t->idx];
    for (size_t i = 0; i < n; i++) {
        int st = b->tasks[b->plan->deps[t->idx][i]].state;
        if (st == T_OK || (t->dep_optional[i] && (st == T_FAILED || st == T_CANCELLED)))
            continue; /* an optional input that failed: run without it */
        return 0;
    }
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
        int ep = t->ep, running = ep >= 0 && !t->cancel_found;
        char run[37];
        memcpy(run, t->run_id, sizeof run);
        char *reason = dbld_xstrdup(b->cancel_reason ? b->cancel_reason : "build cancelled");
        pthread_mutex_unlock(&b->mu);
        if (running) { /* on a job service and not yet cancelled there */
            int found = 0;
            dbld_status st;
            gs_job_cancel(s, ep, run, reason, &found, &st);
            pthread_mutex_lock(&b->mu);
            if (found && t->ep == ep && strcmp(t->run_id, run) == 0) t->cancel_found = 1;
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
    char *msg = dbld_arena_printf(a, "upstream %s %s", dcfg->outputs[0]->str,
                                  dep->run_cancel ? "was cancelled" : "failed");
    gsb_append_cancelled(t, a, t->first_run, OUT_ANALYZED, msg); /* never ran: its planned run */
    pthread_mutex_lock(&b->mu);
    t->state = T_CANCELLED;
    b->sched.n_waiting--;
    gsb_task_ended_locked(b, t);
    free(t->why);
    t->why = dbld_xstrdup(msg);
    b->dirty = 1;
    pthread_mutex_unlock(&b->mu);
    dbld_arena_destroy(a);
}

static void execute(gs_build *b)
{
    int max_parallel = b->svc->cfg->graph.max_parallel > 0 ? b->svc->cfg->graph.max_parallel : 8;
    int64_t next_cancel = 0, next_follow = dbld_mono_ms() + GSB_FOLLOW_MS;
    gs_sched *sc = &b->sched;
    pthread_mutex_lock(&b->mu);
    sched_init(b);
    b->dirty = 1;
    for (;;) {
        int stop = b->cancel || b->abandoned || atomic_load(&b->svc->stopping);
        if (b->dirty && !stop) {
            b->dirty = 0;
            /* the tasks a change may concern: cancelled downstream of a
             * failure, or ready (then they start in plan order) */
            while (sc->n_recheck) {
                size_t i = sc->recheck[--sc->n_recheck];
                gs_task *t = &b->tasks[i];
                sc->listed[i] = 0;
                if (t->state != T_WAITING) continue;
                const gs_task *dep = failed_dep(b, t);
                if (dep) {
                    pthread_mutex_unlock(&b->mu);
                    cancel_downstream(b, t, dep);
                    pthread_mutex_lock(&b->mu);
                } else if (deps_ok(b, t)) {
                    sc->listed[i] = 1; /* its inputs stay ready: it waits for a slot */
                    ready_push(sc, i);
                }
            }
            while (b->running < max_parallel && sc->n_ready) {
                gs_task *t = &b->tasks[ready_pop(sc)];
                t->state = T_ACTIVE;
                sc->n_waiting--;
                b->running++;
                gsb_task_launch(t);
            }
        }
        if (b->running == 0 && (stop || sc->n_waiting == 0 || !b->dirty)) break;
        if (b->cancel && dbld_mono_ms() >= next_cancel) {
            pthread_mutex_unlock(&b->mu);
            cancel_runs(b);
            pthread_mutex_lock(&b->mu);
            next_cancel = dbld_mono_ms() + CANCEL_RESEND_MS;
        }
        if (!stop && dbld_mono_ms() >= next_follow) { /* cancels appended from outside */
            pthread_mutex_unlock(&b->mu);
            gsb_follow(b);
            pthread_mutex_lock(&b->mu);
            next_follow = dbld_mono_ms() + GSB_FOLLOW_MS;
            continue;
        }
        if (b->dirty && !stop) continue;
        struct timespec ts =
            dbld_abs_time(CLOCK_MONOTONIC, b->cancel ? CANCEL_RESEND_MS : GSB_FOLLOW_MS);
        pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
    gsb_follow_end(b);
}

/* The build's final state from its tasks. */
static void conclude(gs_build *b)
{
    if (gsb_stopped(b)) return;
    char *failed = dbld_xcalloc(1, MSG_MAX), *skipped = dbld_xcalloc(1, MSG_MAX);
    char *optional = dbld_xcalloc(1, MSG_MAX);
    int ff = 1, fs = 1, fo = 1, n_failed = 0, n_cancelled = 0, n_waiting = 0, n_optional = 0;
    pthread_mutex_lock(&b->mu);
    int cancel = b->cancel;
    for (size_t i = 0; i < b->n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        const Databuild__V1__JobConfig *cfg = t->task->config;
        if (!t->critical && (t->state == T_FAILED || t->state == T_CANCELLED)) {
            n_optional++; /* does not gate the build */
            list_refs(optional, MSG_MAX, cfg->outputs, cfg->n_outputs, &fo);
        } else if (t->state == T_FAILED) {
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
    char *fail_msg = b->fail_msg ? dbld_xstrdup(b->fail_msg) : NULL;
    pthread_mutex_unlock(&b->mu);
    if (cancel) {
        /* Tasks that never started: record them as cancelled too. */
        dbld_arena *a = dbld_arena_create();
        for (size_t i = 0; i < b->n_tasks; i++) {
            gs_task *t = &b->tasks[i];
            if (t->state != T_WAITING) continue;
            gsb_append_cancelled(t, a, t->first_run, OUT_ANALYZED,
                                 fail_msg ? reason : "build cancelled");
            t->state = T_CANCELLED;
            dbld_arena_reset(a);
        }
        dbld_arena_destroy(a);
        char *msg = dbld_xmalloc(MSG_MAX + 64);
        if (fail_msg) {
            snprintf(msg, MSG_MAX + 64, "%s", fail_msg);
            finish(b, BR(FAILED), msg, DBLD_ABORTED);
        } else {
            snprintf(msg, MSG_MAX + 64, "cancelled%s%s", *reason ? ": " : "", reason);
            finish(b, BR(CANCELLED), msg, DBLD_CANCELLED);
        }
        free(msg);
    } else if (n_failed || n_cancelled || n_waiting) {
        char *msg = dbld_xmalloc(2 * MSG_MAX + 128);
        snprintf(msg, 2 * MSG_MAX + 128, "partitions failed: %s%s%s", *failed ? failed : "(none)",
                 *skipped ? "; not built because upstream failed: " : "", skipped);
        finish(b, BR(FAILED), msg, DBLD_ABORTED);
        free(msg);
    } else {
        char *msg = dbld_xmalloc(MSG_MAX + 128);
        snprintf(msg, MSG_MAX + 128, "%zu tasks done%s%s", b->n_tasks,
                 n_optional ? "; optional inputs failed: " : "", optional);
        finish(b, BR(COMPLETED), msg, DBLD_OK);
        free(msg);
    }
    free(reason);
    free(fail_msg);
    free(optional);
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

/* A resumed build goes on from where it was: each task gets back its
 * execution as its last ExecutionEvent recorded it (attempts, used quota),
 * and the build its used global quota (recover() read both). Attempts left
 * PENDING or TRIGGERED died with the previous coordinator (recover() failed
 * their job runs): they are discarded, which costs no quota. */
static void restore_prior(gs_build *b, gs_task *tasks, size_t n_tasks, dbld_arena *a, gs_evlist *l)
{
    gs_strmap first; /* a task's first output -> the task */
    gs_strmap_init(&first);
    for (size_t i = 0; b->n_prior && i < n_tasks; i++)
        if (tasks[i].task->config->n_outputs)
            gs_strmap_put(&first, tasks[i].task->config->outputs[0]->str, i);
    for (size_t r = 0; r < b->n_prior; r++) {
        size_t i;
        if (!gs_strmap_get(&first, b->prior[r].ref, &i)) continue;
        Databuild__V1__TaskExecution *te =
            (Databuild__V1__TaskExecution *)protobuf_c_message_unpack(
                &databuild__v1__task_execution__descriptor, dbld_arena_allocator(a),
                b->prior[r].len, b->prior[r].buf);
        if (!te) continue;
        gsx_restore(&tasks[i].exec, te, &tasks[i].used_quota, &tasks[i].attempts);
        for (size_t k = 0; k < te->n_attempts; k++) {
            int st = te->attempts[k]->status;
            if (st == GSX_ST(PENDING) || st == GSX_ST(TRIGGERED))
                gs_evlist_add(a, l,
                              gsx_record(&tasks[i], a, te->attempts[k]->job_run_id, 0,
                                         GSX_ST(CANCELLED), 0, GSX_LOG(JOB_RUN_DISCARDED),
                                         "graph service restarted"));
        }
    }
    gs_strmap_free(&first);
    if (b->n_prior) {
        char used[32];
        snprintf(used, sizeof used, "%d", b->global_used);
        dbld_log(DBLD_LOG_INFO, "execution state restored from the event log", "build_request_id",
                 b->id, "global_used", used, (char *)NULL);
    }
}

/* With force, the tasks producing a requested ref are forced (their
 * upstream is not). */
static void mark_forced(gs_build *b, gs_task *tasks, size_t n_tasks)
{
    if (!b->force) return;
    gs_strmap req;
    gs_strmap_init(&req);
    for (size_t i = 0; i < b->n_refs; i++)
        gs_strmap_put(&req, b->refs[i], i);
    for (size_t i = 0; i < n_tasks; i++) {
        const Databuild__V1__JobConfig *cfg = tasks[i].task->config;
        for (size_t o = 0; o < cfg->n_outputs && !tasks[i].forced; o++)
            tasks[i].forced = gs_strmap_get(&req, cfg->outputs[o]->str, NULL);
    }
    gs_strmap_free(&req);
}

/* PLANNING (saying whether the build is resumed). Non-zero: abandoned. */
static int plan_begin(gs_build *b, dbld_arena *a)
{
    gs_service *s = b->svc;
    const char *msg =
        b->resumed ? dbld_arena_printf(a, "resumed by %s (previous owner %s)", s->owner,
                                       b->prev_owner && *b->prev_owner ? b->prev_owner : "none")
                   : dbld_arena_printf(a, "analyzing %zu partitions", b->n_refs);
    if (gsb_append1(b, a, gs_ev_build_request(a, b->id, BR(PLANNING), msg)) != 0) return 1;
    set_status(b, BR(PLANNING));
    return 0;
}

/* The analysis failed with rc: end the build by the kind of error (or
 * abandon it when the event log could not be asked). The external inputs
 * it found missing stay with the build (gs_build_missing_external()). */
static void analysis_failed(gs_build *b, int rc, gs_analyze_error err, gs_missing *missing,
                            const dbld_status *st)
{
    pthread_mutex_lock(&b->mu);
    gs_missing_free(&b->missing);
    b->missing = *missing;
    pthread_mutex_unlock(&b->mu);
    memset(missing, 0, sizeof *missing);
    if (err == GS_AERR_AVAILABILITY) {
        gsb_abandon(b, st);
        return;
    }
    pthread_mutex_lock(&b->mu);
    int cancelled = b->cancel;
    pthread_mutex_unlock(&b->mu);
    if (cancelled) {
        finish(b, BR(CANCELLED), "cancelled", DBLD_CANCELLED);
    } else if (err == GS_AERR_PRECONDITION) {
        finish(b, BR(PRECONDITION_FAILED), st->msg, DBLD_FAILED_PRECONDITION);
    } else {
        char m[DBLD_STATUS_MSG_MAX + 32];
        snprintf(m, sizeof m, "analysis failed: %s", st->msg);
        finish(b, BR(FAILED), m, rc == DBLD_UNAVAILABLE ? DBLD_UNAVAILABLE : rc);
    }
}

/* Analyze the requested refs: 0 with *out, or the build has ended. */
static int analyze(gs_build *b, gs_plan **out)
{
    gs_analyze_env env;
    gs_analyze_env_init(b->svc, &env);
    gs_analyze_error err;
    int calls = 0;
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    gs_missing missing;
    int rc =
        gs_analyze(&env, (const char *const *)b->refs, b->n_refs, out, &err, &calls, &missing, &st);
    char info[256];
    snprintf(info, sizeof info, "%d configure calls, %" PRId64 " ms", calls, dbld_mono_ms() - t0);
    dbld_log(DBLD_LOG_INFO, rc ? "analysis failed" : "analysis done", "build_request_id", b->id,
             "configure", info, "error", rc ? st.msg : NULL, (char *)NULL);
    if (rc) analysis_failed(b, rc, err, &missing, &st);
    gs_missing_free(&missing);
    return rc;
}

/* The tasks of plan p (malloc'd): a resumed build keeps the job_run_id its
 * ANALYZED events planned for each (b->planned); forced and optional marks. */
static gs_task *make_tasks(gs_build *b, gs_plan *p)
{
    gs_task *tasks = dbld_xcalloc(p->n_tasks + 1, sizeof *tasks);
    gs_strmap planned; /* resumed: output ref -> its planned run (b->planned) */
    gs_strmap_init(&planned);
    for (size_t r = 0; r < b->n_planned; r++)
        gs_strmap_put(&planned, b->planned[r].ref, r);
    for (size_t i = 0; i < p->n_tasks; i++) {
        tasks[i].b = b;
        tasks[i].idx = i;
        tasks[i].task = p->graph->nodes[i];
        tasks[i].job = gs_lookup_job(b->svc->lookup, p->job[i]);
        tasks[i].ep = -1;
        gsb_new_id(tasks[i].first_run);
        const Databuild__V1__JobConfig *cfg = tasks[i].task->config;
        size_t r;
        for (size_t o = 0; o < cfg->n_outputs; o++)
            if (gs_strmap_get(&planned, cfg->outputs[o]->str, &r))
                memcpy(tasks[i].first_run, b->planned[r].run, sizeof tasks[i].first_run);
        tasks[i].analyzed = dbld_xcalloc(cfg->n_outputs + 1, 1);
    }
    gs_strmap_free(&planned);
    mark_forced(b, tasks, p->n_tasks);
    gsb_mark_optional(b, p, tasks, p->n_tasks);
    return tasks;
}

/* Every output of the tasks (*outs, in task order) and whether it counts as
 * AVAILABLE now (*avail; in a). */
static size_t outputs_available(gs_build *b, const gs_task *tasks, size_t n_tasks, dbld_arena *a,
                                const char ***outs, int **avail)
{
    size_t n_out = 0, k = 0;
    for (size_t i = 0; i < n_tasks; i++)
        n_out += tasks[i].task->config->n_outputs;
    *outs = dbld_arena_alloc(a, (n_out + 1) * sizeof **outs);
    *avail = dbld_arena_alloc(a, (n_out + 1) * sizeof **avail);
    for (size_t i = 0; i < n_tasks; i++)
        for (size_t j = 0; j < tasks[i].task->config->n_outputs; j++)
            (*outs)[k++] = tasks[i].task->config->outputs[j]->str;
    available_now(b->svc, *outs, n_out, *avail);
    k = 0;
    /* forced outputs will be rebuilt; after a resume, one AVAILABLE now was
     * made since the build's RECEIVED (its REQUESTED and ANALYZED turned any
     * older state away), so the claim reuses it and no ANALYZED may hide it */
    for (size_t i = 0; !b->resumed && i < n_tasks; i++)
        for (size_t j = 0; j < tasks[i].task->config->n_outputs; j++, k++)
            if (tasks[i].forced) (*avail)[k] = 0;
    return n_out;
}

/* JobGraphEvent, ANALYSIS_COMPLETED, RequirementChanged (and a resumed
 * build's restored executions), ANALYZED for the outputs not available,
 * EXECUTING: one append. Non-zero: abandoned. */
static int append_plan(gs_build *b, dbld_arena *a, const gs_plan *p, gs_task *tasks,
                       const char *const *outs, const int *avail)
{
    char *gmsg = dbld_arena_printf(
        a, "%zu task%s, %d configure call%s in %d round%s, %zu external input%s", p->n_tasks,
        p->n_tasks == 1 ? "" : "s", p->configure_calls, p->configure_calls == 1 ? "" : "s",
        p->rounds, p->rounds == 1 ? "" : "s", p->n_external, p->n_external == 1 ? "" : "s");
    gs_evlist l = {0};
    gs_evlist_add(a, &l, gs_ev_job_graph(a, b->id, p->graph, gmsg));
    gs_evlist_add(a, &l, gs_ev_build_request(a, b->id, BR(ANALYSIS_COMPLETED), gmsg));
    gs_evlist_add(a, &l, gsx_requirement(b, a, b->resumed ? "re-planned after a resume" : gmsg));
    restore_prior(b, tasks, p->n_tasks, a, &l);
    size_t k = 0;
    for (size_t i = 0; i < p->n_tasks; i++)
        for (size_t j = 0; j < tasks[i].task->config->n_outputs; j++, k++)
            if (!avail[k]) {
                tasks[i].analyzed[j] = 1;
                gs_evlist_add(
                    a, &l,
                    gs_ev_partition(a, b->id, outs[k], PS(ANALYZED), tasks[i].first_run, ""));
            }
    gs_evlist_add(a, &l,
                  gs_ev_build_request(a, b->id, BR(EXECUTING),
                                      dbld_arena_printf(a, "running %zu tasks", p->n_tasks)));
    return gsb_append(b, a, &l);
}

/* Analyze and append the graph. 0 to execute; otherwise the build has ended
 * (or was abandoned). */
static int plan(gs_build *b)
{
    dbld_arena *a = dbld_arena_create();
    gs_plan *p = NULL;
    if (plan_begin(b, a) != 0 || analyze(b, &p) != 0) {
        dbld_arena_destroy(a);
        return 1;
    }
    gs_task *tasks = make_tasks(b, p);
    const char **outs;
    int *avail;
    outputs_available(b, tasks, p->n_tasks, a, &outs, &avail);
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
    int rc = append_plan(b, a, p, tasks, outs, avail);
    dbld_arena_destroy(a);
    if (rc) return 1;
    set_status(b, BR(EXECUTING));
    return 0;
}

/* ------------------------------------------------------------ resume */

typedef struct dangling {
    char *run, *label;
    int status;
    Databuild__V1__JobConfig targets; /* outputs only */
} dangling;

/* Keep the latest execution of a task (by its first output) for plan(). */
static void keep_execution(gs_build *b, gs_strmap *prior_idx,
                           const Databuild__V1__ExecutionEvent *x)
{
    if (x->options) { /* the request's options (appended with RECEIVED) */
        b->force = x->options->force;
        return;
    }
    pthread_mutex_lock(&b->mu);
    b->global_used = x->used_global_quota;
    pthread_mutex_unlock(&b->mu);
    const Databuild__V1__TaskExecution *te = x->execution;
    if (!te || te->n_outputs == 0) return;
    size_t r;
    if (!gs_strmap_get(prior_idx, te->outputs[0], &r)) {
        r = b->n_prior++;
        b->prior = dbld_xrealloc(b->prior, b->n_prior * sizeof *b->prior);
        b->prior[r].ref = dbld_xstrdup(te->outputs[0]);
        b->prior[r].buf = NULL;
        gs_strmap_put(prior_idx, b->prior[r].ref, r);
    }
    free(b->prior[r].buf);
    b->prior[r].len = protobuf_c_message_get_packed_size(&te->base);
    b->prior[r].buf = dbld_xmalloc(b->prior[r].len + 1);
    protobuf_c_message_pack(&te->base, b->prior[r].buf);
}

/* What recover() gathers from the build's events (all borrowed from its
 * arena but the arrays and maps). */
typedef struct recovery {
    dangling *runs; /* every job run, with its last status */
    size_t n_runs, cap;
    const Databuild__V1__PartitionEvent **analyzed; /* ANALYZED with a planned job run */
    size_t n_analyzed, acap;
    gs_strmap run_idx;   /* job_run_id -> index in runs */
    gs_strmap prior_idx; /* a task's first output -> index in b->prior */
} recovery;

static void recovery_free(recovery *rv)
{
    free(rv->runs);
    free(rv->analyzed);
    gs_strmap_free(&rv->run_idx);
    gs_strmap_free(&rv->prior_idx);
}

/* A recorded BuildCancelEvent: the resumed build ends CANCELLED. */
static void recover_cancel(gs_build *b, const Databuild__V1__BuildCancelEvent *c)
{
    pthread_mutex_lock(&b->mu);
    b->cancel = 1;
    free(b->cancel_reason);
    b->cancel_reason = dbld_xstrdup(c->reason);
    pthread_mutex_unlock(&b->mu);
}

static void recover_analyzed(recovery *rv, const Databuild__V1__PartitionEvent *pe)
{
    if (pe->status_code != PS(ANALYZED) || !dbld_uuid_valid(pe->job_run_id)) return;
    if (rv->n_analyzed == rv->acap) {
        rv->acap = rv->acap ? 2 * rv->acap : 16;
        rv->analyzed = dbld_xrealloc(rv->analyzed, rv->acap * sizeof *rv->analyzed);
    }
    rv->analyzed[rv->n_analyzed++] = pe;
}

/* The last status, label and targets of each job run. */
static void recover_job(recovery *rv, const Databuild__V1__JobEvent *j)
{
    size_t r = rv->n_runs;
    if (!gs_strmap_get(&rv->run_idx, j->job_run_id, &r)) {
        gs_strmap_put(&rv->run_idx, j->job_run_id, rv->n_runs);
        if (rv->n_runs == rv->cap) {
            rv->cap = rv->cap ? 2 * rv->cap : 16;
            rv->runs = dbld_xrealloc(rv->runs, rv->cap * sizeof *rv->runs);
        }
        memset(&rv->runs[rv->n_runs], 0, sizeof rv->runs[rv->n_runs]);
        rv->runs[rv->n_runs].run = j->job_run_id;
        rv->n_runs++;
    }
    rv->runs[r].status = j->status_code;
    if (j->job_label) rv->runs[r].label = j->job_label->label;
    if (j->n_target_partitions) {
        rv->runs[r].targets.outputs = j->target_partitions;
        rv->runs[r].targets.n_outputs = j->n_target_partitions;
    }
}

static void recover_event(gs_build *b, recovery *rv, const Databuild__V1__BuildEvent *e)
{
    switch (e->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT:
        recover_cancel(b, e->build_cancel_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
        recover_analyzed(rv, e->partition_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT:
        keep_execution(b, &rv->prior_idx, e->execution_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        if (e->build_request_event->status &&
            e->build_request_event->status->code == BR(RECEIVED) && e->timestamp > 0)
            b->created_ns = e->timestamp; /* force reuses what the build made since */
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        recover_job(rv, e->job_event);
        break;
    default:
        break;
    }
}

/* Read every event of the build (into a); b->follow_idx ends after them.
 * Non-zero: the event log failed, the build is abandoned. */
static int recover_read(gs_build *b, dbld_arena *a, recovery *rv)
{
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    char *ids[] = {b->id};
    f.build_request_ids = ids;
    f.n_build_request_ids = 1;
    for (int64_t start = 0;;) {
        Databuild__V1__EventPage *page = NULL;
        dbld_status st;
        int rc = gs_el_list(b->svc, &f, NULL, 0, start, a, &page, &st);
        if (rc) {
            gsb_abandon(b, &st);
            return rc;
        }
        for (size_t i = 0; i < page->n_events; i++)
            recover_event(b, rv, page->events[i]);
        b->follow_idx = page->next_idx;
        if (!page->has_more) return 0;
        start = page->next_idx;
    }
}

/* Planned first attempts that never started keep their job_run_id (the
 * ANALYZED events name it); plan() matches them by the task's outputs. */
static void recover_planned(gs_build *b, const recovery *rv)
{
    for (size_t i = 0; i < rv->n_analyzed; i++) {
        if (gs_strmap_get(&rv->run_idx, rv->analyzed[i]->job_run_id, NULL)) continue;
        b->planned = dbld_xrealloc(b->planned, (b->n_planned + 1) * sizeof *b->planned);
        b->planned[b->n_planned].ref = dbld_xstrdup(rv->analyzed[i]->partition_ref->str);
        snprintf(b->planned[b->n_planned].run, sizeof b->planned[b->n_planned].run, "%s",
                 rv->analyzed[i]->job_run_id);
        b->n_planned++;
    }
}

/* A run the previous owner left SCHEDULED/RUNNING: FAILED, with its outputs
 * it was still BUILDING. Non-zero: abandoned. */
static int fail_dangling(gs_build *b, dbld_arena *a, const dangling *run)
{
    const char *msg =
        dbld_arena_printf(a, "graph service restarted: job run abandoned by %s",
                          b->prev_owner && *b->prev_owner ? b->prev_owner : "its previous owner");
    gs_evlist l = {0};
    gs_evlist_add(a, &l,
                  gs_ev_job(a, b->id, run->run, run->label ? run->label : "", &run->targets,
                            JS(FAILED), msg));
    size_t n = run->targets.n_outputs;
    const char **refs = dbld_arena_alloc(a, (n + 1) * sizeof *refs);
    for (size_t i = 0; i < n; i++)
        refs[i] = run->targets.outputs[i]->str;
    Databuild__V1__PartitionState **ps = NULL;
    dbld_status st;
    if (n && gs_el_status(b->svc, refs, n, a, &ps, &st) == 0)
        for (size_t i = 0; i < n; i++)
            if (ps[i]->status == PS(BUILDING) && strcmp(ps[i]->job_run_id, run->run) == 0)
                gs_evlist_add(a, &l, gs_ev_partition(a, b->id, refs[i], PS(FAILED), run->run, msg));
    dbld_log(DBLD_LOG_INFO, "failing job run left by the previous owner", "build_request_id", b->id,
             "job_run_id", run->run, (char *)NULL);
    return gsb_append(b, a, &l);
}

/* Read the build back from its events: a recorded cancel, the request's
 * options, the tasks' executions, the planned runs; job runs the previous
 * owner left SCHEDULED/RUNNING become FAILED (their processes died with the
 * Run call). */
static int recover(gs_build *b)
{
    dbld_arena *a = dbld_arena_create();
    recovery rv;
    memset(&rv, 0, sizeof rv);
    gs_strmap_init(&rv.run_idx);
    gs_strmap_init(&rv.prior_idx);
    int rc = recover_read(b, a, &rv);
    if (!rc) recover_planned(b, &rv);
    for (size_t r = 0; !rc && r < rv.n_runs; r++)
        if (rv.runs[r].status == JS(SCHEDULED) || rv.runs[r].status == JS(RUNNING))
            rc = fail_dangling(b, a, &rv.runs[r]);
    recovery_free(&rv);
    dbld_arena_destroy(a);
    return rc;
}

/* ------------------------------------------------------------ build thread
 *
 * A build runs on a thread of the build pool (graph.build_threads) from its
 * start to its end; its tasks run on the task pool (graph.task_threads), a
 * separate one, so a build waiting for its tasks never holds the thread a
 * task needs. Submit and adoption reserve the build's room first
 * (gs_build_reserve()): beyond build_threads + build_queue builds a Submit
 * is refused RESOURCE_EXHAUSTED before anything is recorded, and an orphan
 * is left for a later poll (or another instance).
 */

static void *build_main(void *arg)
{
    gs_build *b = arg;
    int rc = 0;
    if (b->resumed) rc = recover(b);
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
        finish(b, BR(FAILED), "cannot resume: no requested partitions recorded",
               DBLD_FAILED_PRECONDITION);
        rc = 1;
    }
    if (!rc) rc = plan(b);
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
    b->ended = 1;
    gs_end_cb *cbs = b->on_end;
    b->on_end = NULL;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    while (cbs) { /* the calls waiting for this build (waiters.c) */
        gs_end_cb *cb = cbs;
        cbs = cb->next;
        cb->fn(cb->arg);
        free(cb);
    }
    /* A build stopped by a shutdown stays registered: gs_leases_hand_over()
     * lets its lease lapse at once, for the next instance to resume it. */
    if (terminal || !atomic_load(&b->svc->stopping)) registry_remove(b->svc, b, terminal);
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
    b->created_ns = dbld_now_ns();
    pthread_mutex_init(&b->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    return b;
}

static void build_work(gs_work *w)
{
    build_main(DBLD_FIFO_ENTRY(&w->link, gs_build, work));
}

/* Queue b on the build pool, in the room gs_build_reserve() took. */
static void start_build(gs_build *b)
{
    b->work.fn = build_work;
    gs_pool_push(b->svc->build_pool, &b->work, 1);
}

int gs_build_reserve(gs_service *s, dbld_status *st)
{
    return gs_pool_reserve(s->build_pool, "graph service (graph.build_threads, graph.build_queue)",
                           st);
}

void gs_build_unreserve(gs_service *s)
{
    gs_pool_unreserve(s->build_pool);
}

int gs_build_submit(gs_service *s, const char *const *refs, size_t n, const char *comment,
                    const char *want_id, char id_out[37], gs_build **out, dbld_status *st)
{
    return gs_build_submit_forced(s, refs, n, comment, want_id, 0, id_out, out, st);
}

static int submit(gs_service *s, const char *const *refs, size_t n, const char *comment,
                  const char *const *want_ids, size_t n_wants, int force, char id_out[37],
                  gs_build **out, dbld_status *st);

int gs_build_submit_forced(gs_service *s, const char *const *refs, size_t n, const char *comment,
                           const char *want_id, int force, char id_out[37], gs_build **out,
                           dbld_status *st)
{
    const char *ids[] = {want_id ? want_id : ""};
    return submit(s, refs, n, comment, ids, 1, force, id_out, out, st);
}

int gs_build_submit_wants(gs_service *s, const char *const *refs, size_t n, const char *comment,
                          const char *const *want_ids, size_t n_wants, char id_out[37],
                          gs_build **out, dbld_status *st)
{
    return submit(s, refs, n, comment, want_ids, n_wants, 0, id_out, out, st);
}

static int submit(gs_service *s, const char *const *refs, size_t n, const char *comment,
                  const char *const *want_ids, size_t n_wants, int force, char id_out[37],
                  gs_build **out, dbld_status *st)
{
    if (out) *out = NULL;
    if (!atomic_load(&s->ready))
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "graph service is not ready (event log not reachable yet)");
    if (n == 0) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no partitions requested");
    for (size_t i = 0; i < n; i++) {
        size_t job;
        if (!refs[i] || !*refs[i])
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "partition ref %zu is empty", i);
        int rc = gs_lookup_ref(s->lookup, refs[i], &job, st);
        if (rc) return rc;
        if (job == GS_LOOKUP_NONE)
            return dbld_status_set(st, DBLD_NOT_FOUND, "no job produces partition \"%s\"", refs[i]);
    }
    if (atomic_load(&s->stopping))
        return dbld_status_set(st, DBLD_UNAVAILABLE, "graph service is shutting down");
    int rc = gs_build_reserve(s, st); /* before anything is recorded */
    if (rc) {
        dbld_log(DBLD_LOG_WARN, "build refused", "error", st->msg, (char *)NULL);
        return rc;
    }
    char id[37];
    gsb_new_id(id);
    dbld_arena *a = dbld_arena_create();
    char *ids[] = {id};
    Databuild__V1__RenewLeasesResponse *lr = NULL;
    rc = gs_el_renew(s, ids, 1, 0, a, &lr, st);
    if (!rc && lr->n_lost)
        rc = dbld_status_set(st, DBLD_INTERNAL, "could not take the lease on new build %s", id);
    if (rc) {
        gs_build_unreserve(s);
        dbld_arena_destroy(a);
        return rc;
    }
    gs_build *b = build_new(s, id, refs, n, comment, n_wants ? want_ids[0] : "");
    b->force = force;
    refs = (const char *const *)b->refs; /* deduplicated */
    n = b->n_refs;
    registry_add(s, b); /* before RECEIVED: the orphan poller must never see it unregistered */
    int *avail = dbld_arena_alloc(a, (n + 1) * sizeof *avail);
    available_now(s, refs, n, avail);
    for (size_t i = 0; force && i < n; i++)
        avail[i] = 0; /* they will be rebuilt */
    gs_evlist l = {0};
    gs_event *rcv = gs_ev_build_request(a, id, BR(RECEIVED), "");
    rcv->build_request_event->requested_partitions = gs_refs(a, refs, n);
    rcv->build_request_event->n_requested_partitions = n;
    rcv->build_request_event->comment = b->comment;
    rcv->build_request_event->want_id = b->want_id;
    for (size_t i = 0; n_wants > 1 && i < n_wants; i++) /* BuildRequestWants.want_ids */
        dbld_pb_add_unknown_string(a, &rcv->build_request_event->base, DBLD_BUILD_WANT_IDS,
                                   want_ids[i]);
    gs_evlist_add(a, &l, rcv);
    if (force) /* a resumed build reads it back (recover()) */
        gs_evlist_add(a, &l, gsx_options(a, id, force));
    b->created_ns = rcv->timestamp; /* force's reuse window starts here, also after a resume */
    for (size_t i = 0; i < n; i++)
        if (!avail[i]) gs_evlist_add(a, &l, gs_ev_partition(a, id, refs[i], PS(REQUESTED), "", ""));
    rc = gs_el_append(s, id, l.evs, l.n, a, st);
    dbld_arena_destroy(a);
    if (rc) {
        pthread_mutex_lock(&b->mu);
        b->done = 1;
        b->ended = 1; /* no thread, nobody waits for it */
        pthread_mutex_unlock(&b->mu);
        registry_remove(s, b, 0);
        gs_build_unreserve(s);
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
    start_build(b);
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
    start_build(b);
}

void gs_build_abandon(gs_service *s, const char *id, const char *why)
{
    gs_build *b = registry_find(s, id);
    if (!b) return;
    dbld_status st;
    dbld_status_set(&st, DBLD_ABORTED, "%s", why);
    gsb_abandon(b, &st);
    /* Kill its job runs: the new owner re-runs them. */
    pthread_mutex_lock(&b->mu);
    b->cancel_reason = b->cancel_reason ? b->cancel_reason : dbld_xstrdup(why);
    pthread_mutex_unlock(&b->mu);
    cancel_runs(b);
    gs_build_unref(b);
}

/* ------------------------------------------------------------ end/cancel */

int gs_build_on_end(gs_build *b, gs_build_end_fn fn, void *arg)
{
    pthread_mutex_lock(&b->mu);
    int ended = b->ended;
    if (!ended) {
        gs_end_cb *cb = dbld_xcalloc(1, sizeof *cb);
        cb->fn = fn;
        cb->arg = arg;
        cb->next = b->on_end;
        b->on_end = cb;
    }
    pthread_mutex_unlock(&b->mu);
    return ended;
}

const char *gs_build_id(const gs_build *b)
{
    return b->id;
}

size_t gs_build_missing_external(gs_build *b, dbld_arena *a, char ***refs)
{
    pthread_mutex_lock(&b->mu);
    size_t n = b->done && b->status == BR(PRECONDITION_FAILED) ? b->missing.n : 0;
    *refs = dbld_arena_alloc(a, (n + 1) * sizeof **refs);
    for (size_t i = 0; i < n; i++)
        (*refs)[i] = dbld_arena_strdup(a, b->missing.refs[i]);
    pthread_mutex_unlock(&b->mu);
    return n;
}

int gs_build_result(gs_build *b, dbld_arena *a, Databuild__V1__GraphBuildResponse **out,
                    dbld_status *st)
{
    pthread_mutex_lock(&b->mu);
    int code = b->done ? b->result_code : DBLD_UNAVAILABLE;
    if (code) {
        dbld_status_set(st, code, "build %s %s: %s", b->id,
                        !b->done || b->abandoned ? "interrupted" : status_name(b->status),
                        b->result_msg ? b->result_msg : "not ended");
        pthread_mutex_unlock(&b->mu);
        return code;
    }
    Databuild__V1__GraphBuildResponse *r =
        dbld_arena_msg(a, &databuild__v1__graph_build_response__descriptor);
    r->manifests = dbld_arena_alloc(a, (b->n_tasks + 1) * sizeof *r->manifests);
    for (size_t i = 0; i < b->n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        if (!t->manifest) continue;
        Databuild__V1__PartitionManifest *m =
            (Databuild__V1__PartitionManifest *)protobuf_c_message_unpack(
                &databuild__v1__partition_manifest__descriptor, dbld_arena_allocator(a),
                t->manifest_len, t->manifest);
        if (m) r->manifests[r->n_manifests++] = m;
    }
    pthread_mutex_unlock(&b->mu);
    *out = r;
    return 0;
}

int gs_build_cancel(gs_service *s, const char *id, const char *reason, gs_build **out,
                    dbld_status *st)
{
    *out = NULL;
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
        int rc = gs_el_append(s, id, (gs_event *[]){gs_ev_build_cancel(a, id, why)}, 1, a, st);
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
        dbld_log(DBLD_LOG_INFO, "cancelling build", "build_request_id", id, "reason", why,
                 (char *)NULL);
    }
    *out = b;
    return 0;
}
