/* follow.c - a running build follows its own events in the event log, so
 * that cancels appended from outside (the query service's CancelJobRun and
 * CancelBuild paths, or any client of EventLog/Append) take effect while it
 * runs, not only when it is resumed.
 *
 * The build thread calls gsb_follow() every FOLLOW_MS from execute(). It
 * lists the build's events from where it stopped last time (one filtered
 * page per call while more follow) and acts on two kinds:
 *   - BuildCancelEvent: the build is cancelled as by GraphBuilder.Cancel
 *     (ignored when it already is: our own Cancel appended it);
 *   - JobRunCancelEvent: the task whose current job run it names gets
 *     run_cancel set; its job service is asked to stop the run (the whole
 *     process group), again on every call until it confirms, which covers a
 *     Run that had not reached the job service yet. The task thread then
 *     ends the run CANCELLED (task.c); its downstream tasks are cancelled by
 *     execute() like those of a failed task, independent ones go on.
 * A cancel of a run that already ended, or of no run of this build, is
 * ignored here (the query service refuses those with FAILED_PRECONDITION or
 * NOT_FOUND before appending anything).
 */
#include "build.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>

/* The task whose current job run is run (b->mu held), or NULL. */
static gs_task *task_of_run(gs_build *b, const char *run)
{
    for (size_t i = 0; i < b->n_tasks; i++)
        if (strcmp(b->tasks[i].run_id, run) == 0 && b->tasks[i].state == T_ACTIVE)
            return &b->tasks[i];
    return NULL;
}

static void on_build_cancel(gs_build *b, const Databuild__V1__BuildCancelEvent *c)
{
    pthread_mutex_lock(&b->mu);
    if (!b->cancel) {
        b->cancel = 1;
        free(b->cancel_reason);
        b->cancel_reason = dbld_xstrdup(*c->reason ? c->reason : "cancelled");
        pthread_cond_broadcast(&b->cv);
        dbld_log(DBLD_LOG_INFO, "build cancelled through the event log", "build_request_id", b->id,
                 "reason", b->cancel_reason, (char *)NULL);
    }
    pthread_mutex_unlock(&b->mu);
}

static void on_run_cancel(gs_build *b, const Databuild__V1__JobRunCancelEvent *c)
{
    pthread_mutex_lock(&b->mu);
    gs_task *t = task_of_run(b, c->job_run_id);
    if (t && !t->run_cancel) {
        t->run_cancel = dbld_xstrdup(*c->reason ? c->reason : "cancelled");
        pthread_cond_broadcast(&b->cv);
        dbld_log(DBLD_LOG_INFO, "job run cancelled through the event log", "build_request_id",
                 b->id, "job_run_id", c->job_run_id, "reason", t->run_cancel, (char *)NULL);
    }
    pthread_mutex_unlock(&b->mu);
}

/* Ask the job services to stop the cancelled runs they have not confirmed. */
static void stop_cancelled_runs(gs_build *b)
{
    for (size_t i = 0; i < b->n_tasks; i++) {
        gs_task *t = &b->tasks[i];
        pthread_mutex_lock(&b->mu);
        int ep = t->ep, go = t->run_cancel && ep >= 0 && !t->cancel_found;
        char run[37];
        memcpy(run, t->run_id, sizeof run);
        char *reason = go ? dbld_xstrdup(t->run_cancel) : NULL;
        pthread_mutex_unlock(&b->mu);
        if (!go) continue;
        int found = 0;
        dbld_status st;
        gs_job_cancel(b->svc, ep, run, reason, &found, &st);
        pthread_mutex_lock(&b->mu);
        if (found && t->ep == ep && strcmp(t->run_id, run) == 0) t->cancel_found = 1;
        pthread_mutex_unlock(&b->mu);
        free(reason);
    }
}

void gsb_follow(gs_build *b)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    char *ids[] = {b->id};
    f.build_request_ids = ids;
    f.n_build_request_ids = 1;
    for (int more = 1; more;) {
        Databuild__V1__EventPage *page = NULL;
        dbld_status st;
        dbld_arena_reset(a);
        if (gs_el_list(b->svc, &f, b->follow_idx, a, &page, &st) != 0) break; /* next time */
        for (size_t i = 0; i < page->n_events; i++) {
            const Databuild__V1__BuildEvent *e = page->events[i];
            if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT)
                on_build_cancel(b, e->build_cancel_event);
            else if (e->event_type_case ==
                     DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT)
                on_run_cancel(b, e->job_run_cancel_event);
        }
        if (page->next_idx > b->follow_idx) b->follow_idx = page->next_idx;
        more = page->has_more && page->n_events > 0;
    }
    dbld_arena_destroy(a);
    stop_cancelled_runs(b);
}
