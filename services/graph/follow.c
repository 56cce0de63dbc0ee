/* follow.c - a running build follows its own events in the event log, so
 * that cancels appended from outside (the query service's CancelJobRun and
 * CancelBuild paths, or any client of EventLog/Append) take effect while it
 * runs, not only when it is resumed.
 *
 * The build thread calls gsb_follow() every GSB_FOLLOW_MS from execute().
 * It reads the build's events from where it stopped last time through an
 * EventLog/Subscribe stream filtered to the build (the event log serves it
 * from its in-memory commit feed, so a running build costs no query), taking
 * what has arrived without waiting. When the stream cannot be opened or ends
 * (the event log restarted, or refused it: its max_streams; or this process
 * holds FOLLOW_MAX_STREAMS already), the call lists
 * the events instead (EventLog/List, one filtered page per call while more
 * follow) and the stream is opened again, from where the reading stopped,
 * FOLLOW_REOPEN_MS later. Either way it asks for (and acts on) two kinds:
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

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define FOLLOW_REOPEN_MS 5000 /* a lost stream is opened again this much later */
#define FOLLOW_DRAIN_MAX 1000 /* events taken from the stream per call */
/* Streams this process holds open at most: the event log's max_streams
 * (256 in the example) also serve the CLI's follow and tail; builds beyond
 * this poll List. */
#define FOLLOW_MAX_STREAMS 64

static atomic_int n_streams;

/* The kinds acted on: only those are sent (a build's own events are ~9 per
 * task; decoding them all cost as much as the rest of the follow). */
static int32_t follow_kinds[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT,
                                 DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT};
#define N_FOLLOW_KINDS (sizeof follow_kinds / sizeof follow_kinds[0])

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

static void on_event(gs_build *b, const Databuild__V1__BuildEvent *e)
{
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT)
        on_build_cancel(b, e->build_cancel_event);
    else if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT)
        on_run_cancel(b, e->job_run_cancel_event);
}

/* Subscribe to the build's events from b->follow_idx. */
static int stream_open(gs_build *b)
{
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    char *ids[] = {b->id};
    f.build_request_ids = ids;
    f.n_build_request_ids = 1;
    Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
    req.filter = &f;
    req.start_idx = b->follow_idx;
    req.kinds = follow_kinds;
    req.n_kinds = N_FOLLOW_KINDS;
    dbld_status st;
    if (atomic_fetch_add(&n_streams, 1) >= FOLLOW_MAX_STREAMS) {
        atomic_fetch_sub(&n_streams, 1);
        b->follow_stream = NULL;
        return DBLD_RESOURCE_EXHAUSTED;
    }
    int rc = dbld_client_stream_open(dbld_client_get(b->svc->eventlog),
                                     "/databuild.v1.EventLog/Subscribe", &req.base, 0,
                                     &b->follow_stream, &st);
    if (rc) {
        atomic_fetch_sub(&n_streams, 1);
        b->follow_stream = NULL;
        return rc;
    }
    dbld_log(DBLD_LOG_DEBUG, "following the build's events through EventLog/Subscribe",
             "build_request_id", b->id, (char *)NULL);
    return 0;
}

static void stream_lost(gs_build *b, const char *why)
{
    dbld_log(DBLD_LOG_INFO, "build event stream lost; polling EventLog/List until it reopens",
             "build_request_id", b->id, "error", why, (char *)NULL);
    dbld_stream_close(b->follow_stream);
    atomic_fetch_sub(&n_streams, 1);
    b->follow_stream = NULL;
    b->follow_reopen_ms = dbld_mono_ms() + FOLLOW_REOPEN_MS;
}

/* Take what the stream has: 1 when it is open and was drained (at most
 * FOLLOW_DRAIN_MAX events now, the rest next time); 0 when there is no
 * stream (not reopened yet, or it just ended): poll List instead. */
static int follow_stream(gs_build *b)
{
    if (!b->follow_stream) {
        if (dbld_mono_ms() < b->follow_reopen_ms) return 0;
        if (stream_open(b) != 0) {
            b->follow_reopen_ms = dbld_mono_ms() + FOLLOW_REOPEN_MS;
            return 0;
        }
    }
    dbld_arena *a = dbld_arena_create();
    int open = 1;
    for (int i = 0; i < FOLLOW_DRAIN_MAX; i++) {
        dbld_arena_reset(a);
        ProtobufCMessage *m = NULL;
        dbld_status st;
        int rc = dbld_stream_next(b->follow_stream, &databuild__v1__indexed_event__descriptor,
                                  dbld_arena_allocator(a), &m, 1, &st);
        if (m) {
            const Databuild__V1__IndexedEvent *ie = (const Databuild__V1__IndexedEvent *)m;
            if (ie->event) on_event(b, ie->event);
            if (ie->idx + 1 > b->follow_idx) b->follow_idx = ie->idx + 1;
            continue;
        }
        if (rc == DBLD_DEADLINE_EXCEEDED) break; /* nothing more for now */
        stream_lost(b, rc ? st.msg : "the stream ended");
        open = 0;
        break;
    }
    dbld_arena_destroy(a);
    return open;
}

void gsb_follow_end(gs_build *b)
{
    if (!b->follow_stream) return;
    dbld_stream_close(b->follow_stream);
    atomic_fetch_sub(&n_streams, 1);
    b->follow_stream = NULL;
}

/* One round of EventLog/List from b->follow_idx (while pages are full). */
static void follow_list(gs_build *b)
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
        if (gs_el_list(b->svc, &f, follow_kinds, N_FOLLOW_KINDS, b->follow_idx, a, &page, &st) != 0)
            break; /* next time */
        for (size_t i = 0; i < page->n_events; i++)
            on_event(b, page->events[i]);
        if (page->next_idx > b->follow_idx) b->follow_idx = page->next_idx;
        more = page->has_more && page->n_events > 0;
    }
    dbld_arena_destroy(a);
}

void gsb_follow(gs_build *b)
{
    if (!follow_stream(b)) follow_list(b);
    stop_cancelled_runs(b);
}
