/* execution.c - task execution state and ExecutionEvents (see execution.h).
 *
 * The in-memory state of a task is a list of attempts; an event is built
 * from it under the build's mutex right after the change it records, so the
 * snapshot an event carries is exactly the state the change produced. The
 * task thread is the only writer of its attempts except for the build
 * thread's cancels of tasks that never started (which have no attempt).
 */
#include "execution.h"

#include "build.h"
#include "retry.h"

#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gsx_free(gs_exec *x)
{
    for (size_t i = 0; i < x->n; i++)
        free(x->att[i].reason);
    free(x->att);
    memset(x, 0, sizeof *x);
}

static gs_attempt *find(gs_exec *x, const char *run)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->att[i].run, run) == 0) return &x->att[i];
    return NULL;
}

static gs_attempt *add(gs_exec *x, const char *run, int attempt)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 4;
        x->att = dbld_xrealloc(x->att, x->cap * sizeof *x->att);
    }
    gs_attempt *at = &x->att[x->n++];
    memset(at, 0, sizeof *at);
    snprintf(at->run, sizeof at->run, "%s", run);
    at->attempt = attempt;
    at->status = GSX_ST(PENDING);
    return at;
}

int gsx_result_of(int fail_kind)
{
    switch (fail_kind) {
    case GS_FAIL_TRANSIENT:
        return GSX_RES(FAILED_TRANSIENTLY);
    case GS_FAIL_TIMEOUT:
        return GSX_RES(TIMEOUT);
    default:
        return GSX_RES(FAILED_PERMANENTLY);
    }
}

/* ---- messages (all in the arena; b->mu held while reading the state) ---- */

static Databuild__V1__ExecutionAttempt *attempt_msg(dbld_arena *a, const gs_attempt *at)
{
    Databuild__V1__ExecutionAttempt *m =
        dbld_arena_msg(a, &databuild__v1__execution_attempt__descriptor);
    m->job_run_id = dbld_arena_strdup(a, at->run);
    m->status = (Databuild__V1__ExecutionAttempt__Status)at->status;
    m->result = (Databuild__V1__ExecutionAttempt__Result)at->result;
    m->reused = at->reused;
    m->untriggered_reason = dbld_arena_strdup(a, at->reason ? at->reason : "");
    m->attempt = at->attempt;
    m->build_request_id = dbld_arena_strdup(a, at->build);
    return m;
}

/* The task's outputs as strings (the execution messages carry plain refs). */
static char **output_strs(dbld_arena *a, const gs_task *t, size_t *n)
{
    const Databuild__V1__JobConfig *cfg = t->task->config;
    char **out = dbld_arena_alloc(a, (cfg->n_outputs + 1) * sizeof *out);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        out[i] = cfg->outputs[i]->str;
    *n = cfg->n_outputs;
    return out;
}

static Databuild__V1__TaskExecution *task_msg(dbld_arena *a, const gs_task *t, int with_attempts)
{
    Databuild__V1__TaskExecution *m = dbld_arena_msg(a, &databuild__v1__task_execution__descriptor);
    m->job_label = (char *)t->job->label;
    m->outputs = output_strs(a, t, &m->n_outputs);
    m->critical = t->critical;
    m->forced = t->forced;
    if (!with_attempts) return m;
    m->used_quota = t->used_quota;
    m->attempts = dbld_arena_alloc(a, (t->exec.n + 1) * sizeof *m->attempts);
    for (size_t i = 0; i < t->exec.n; i++)
        m->attempts[m->n_attempts++] = attempt_msg(a, &t->exec.att[i]);
    return m;
}

static Databuild__V1__JobRunSnapshot *snapshot(dbld_arena *a, const gs_task *t,
                                               const gs_attempt *at, const char *run)
{
    Databuild__V1__JobRunSnapshot *s =
        dbld_arena_msg(a, &databuild__v1__job_run_snapshot__descriptor);
    s->job_run_id = dbld_arena_strdup(a, at ? at->run : run);
    s->job_label = (char *)t->job->label;
    s->outputs = output_strs(a, t, &s->n_outputs);
    if (at) {
        s->status = (Databuild__V1__ExecutionAttempt__Status)at->status;
        s->result = (Databuild__V1__ExecutionAttempt__Result)at->result;
        s->reused = at->reused;
        s->attempt = at->attempt;
    } else {
        s->status = GSX_ST(CANCELLED);
    }
    return s;
}

/* A one-element snapshot list. */
static Databuild__V1__JobRunSnapshot **one(dbld_arena *a, Databuild__V1__JobRunSnapshot *s)
{
    Databuild__V1__JobRunSnapshot **l = dbld_arena_alloc(a, 2 * sizeof *l);
    l[0] = s;
    return l;
}

static Databuild__V1__ExecutionLogEntry *entry(dbld_arena *a, int kind,
                                               Databuild__V1__JobRunSnapshot *s, const char *reason)
{
    Databuild__V1__ExecutionLogEntry *e =
        dbld_arena_msg(a, &databuild__v1__execution_log_entry__descriptor);
    e->time = dbld_now_ns();
    e->kind_case = (Databuild__V1__ExecutionLogEntry__KindCase)kind;
    char *why = dbld_arena_strdup(a, reason ? reason : "");
    switch (kind) {
    case GSX_LOG(JOB_RUNS_LAUNCHED):
        e->job_runs_launched =
            dbld_arena_msg(a, &databuild__v1__execution_log_entry__job_runs_launched__descriptor);
        e->job_runs_launched->n_job_runs = 1;
        e->job_runs_launched->job_runs = one(a, s);
        break;
    case GSX_LOG(JOB_RUNS_LAUNCH_FAILED): {
        Databuild__V1__ExecutionLogEntry__JobRunLaunchFailed *f = dbld_arena_msg(
            a, &databuild__v1__execution_log_entry__job_run_launch_failed__descriptor);
        f->job_run = s;
        f->reason = why;
        e->job_runs_launch_failed = dbld_arena_msg(
            a, &databuild__v1__execution_log_entry__job_runs_launch_failed__descriptor);
        e->job_runs_launch_failed->n_job_runs = 1;
        e->job_runs_launch_failed->job_runs = dbld_arena_alloc(a, 2 * sizeof f);
        e->job_runs_launch_failed->job_runs[0] = f;
        break;
    }
    case GSX_LOG(JOB_RUNS_REUSED):
        e->job_runs_reused =
            dbld_arena_msg(a, &databuild__v1__execution_log_entry__job_runs_reused__descriptor);
        e->job_runs_reused->n_job_runs = 1;
        e->job_runs_reused->job_runs = one(a, s);
        break;
    case GSX_LOG(JOB_RUNS_ENDED):
        e->job_runs_ended =
            dbld_arena_msg(a, &databuild__v1__execution_log_entry__job_runs_ended__descriptor);
        e->job_runs_ended->n_job_runs = 1;
        e->job_runs_ended->job_runs = one(a, s);
        break;
    case GSX_LOG(JOB_RUN_DISCARDED):
        e->job_run_discarded =
            dbld_arena_msg(a, &databuild__v1__execution_log_entry__job_run_discarded__descriptor);
        e->job_run_discarded->snapshot = s;
        e->job_run_discarded->reason = why;
        break;
    case GSX_LOG(RETRY_DENIED):
        e->retry_denied =
            dbld_arena_msg(a, &databuild__v1__execution_log_entry__retry_denied__descriptor);
        e->retry_denied->n_job_runs = 1;
        e->retry_denied->job_runs = one(a, s);
        e->retry_denied->reason = why;
        break;
    default:
        return NULL;
    }
    return e;
}

static gs_event *exec_event(dbld_arena *a, const char *br, Databuild__V1__ExecutionLogEntry *en,
                            Databuild__V1__TaskExecution *te, int used_global)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__ExecutionEvent *x =
        dbld_arena_msg(a, &databuild__v1__execution_event__descriptor);
    x->entry = en;
    x->execution = te;
    x->used_global_quota = used_global;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT;
    e->execution_event = x;
    return e;
}

/* The event of t's state now, with an entry about run (b->mu held). */
static gs_event *event_now(gs_task *t, dbld_arena *a, const char *run, int kind, const char *reason)
{
    const gs_attempt *at = find(&t->exec, run);
    Databuild__V1__ExecutionLogEntry *en =
        kind == GSX_NO_ENTRY ? NULL : entry(a, kind, snapshot(a, t, at, run), reason);
    return exec_event(a, t->b->id, en, task_msg(a, t, 1), t->b->global_used);
}

gs_event *gsx_record(gs_task *t, dbld_arena *a, const char *run, int attempt, int status,
                     int result, int kind, const char *reason)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    gs_attempt *at = find(&t->exec, run);
    if (!at && attempt > 0) at = add(&t->exec, run, attempt);
    if (at) {
        if (status) at->status = status;
        if (result) at->result = result;
        if (reason && status == GSX_ST(UNTRIGGERED)) {
            free(at->reason);
            at->reason = dbld_xstrdup(reason);
        }
    }
    gs_event *e = event_now(t, a, run, kind, reason);
    pthread_mutex_unlock(&b->mu);
    return e;
}

gs_event *gsx_reused(gs_task *t, dbld_arena *a, const char *run, const char *build)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    gs_attempt *at = find(&t->exec, run);
    if (!at) at = add(&t->exec, run, t->attempts + 1);
    at->status = GSX_ST(ENDED);
    at->result = GSX_RES(SUCCEEDED);
    at->reused = 1;
    snprintf(at->build, sizeof at->build, "%s", build ? build : "");
    gs_event *e = event_now(t, a, run, GSX_LOG(JOB_RUNS_REUSED), NULL);
    pthread_mutex_unlock(&b->mu);
    return e;
}

void gsx_drop(gs_task *t, const char *run)
{
    gs_build *b = t->b;
    pthread_mutex_lock(&b->mu);
    gs_attempt *at = find(&t->exec, run);
    if (at) {
        free(at->reason);
        size_t i = (size_t)(at - t->exec.att);
        memmove(at, at + 1, (t->exec.n - i - 1) * sizeof *at);
        t->exec.n--;
    }
    pthread_mutex_unlock(&b->mu);
}

int gsx_has(gs_task *t, const char *run)
{
    pthread_mutex_lock(&t->b->mu);
    int has = find(&t->exec, run) != NULL;
    pthread_mutex_unlock(&t->b->mu);
    return has;
}

gs_event *gsx_options(dbld_arena *a, const char *br, int force)
{
    Databuild__V1__BuildOptions *o = dbld_arena_msg(a, &databuild__v1__build_options__descriptor);
    o->force = force != 0;
    gs_event *e = exec_event(a, br, NULL, NULL, 0);
    e->execution_event->options = o;
    return e;
}

gs_event *gsx_requirement(gs_build *b, dbld_arena *a, const char *msg)
{
    Databuild__V1__ExecutionLogEntry *en =
        dbld_arena_msg(a, &databuild__v1__execution_log_entry__descriptor);
    en->time = dbld_now_ns();
    en->kind_case = GSX_LOG(REQUIREMENT_CHANGED);
    Databuild__V1__ExecutionLogEntry__RequirementChanged *rc =
        dbld_arena_msg(a, &databuild__v1__execution_log_entry__requirement_changed__descriptor);
    rc->message = dbld_arena_strdup(a, msg ? msg : "");
    pthread_mutex_lock(&b->mu);
    rc->tasks = dbld_arena_alloc(a, (b->n_tasks + 1) * sizeof *rc->tasks);
    for (size_t i = 0; i < b->n_tasks; i++)
        rc->tasks[rc->n_tasks++] = task_msg(a, &b->tasks[i], 0);
    int used = b->global_used;
    pthread_mutex_unlock(&b->mu);
    en->requirement_changed = rc;
    return exec_event(a, b->id, en, NULL, used);
}

void gsx_restore(gs_exec *x, const Databuild__V1__TaskExecution *te, int *used, int *attempts)
{
    gsx_free(x);
    *used = te->used_quota;
    *attempts = 0;
    for (size_t i = 0; i < te->n_attempts; i++) {
        const Databuild__V1__ExecutionAttempt *m = te->attempts[i];
        gs_attempt *at = add(x, m->job_run_id, m->attempt);
        at->status = m->status;
        at->result = m->result;
        at->reused = m->reused;
        if (*m->untriggered_reason) at->reason = dbld_xstrdup(m->untriggered_reason);
        snprintf(at->build, sizeof at->build, "%s", m->build_request_id);
        if (m->attempt > *attempts && !m->reused) *attempts = m->attempt;
    }
}
