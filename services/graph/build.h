/* build.h - internals shared by coordinator.c (a build's lifecycle) and
 * task.c (one task's attempts): the build and task structs and the helpers
 * both use. Not an API: nothing outside the coordinator includes it.
 */
#ifndef GRAPH_BUILD_H
#define GRAPH_BUILD_H

#include "coordinator.h"
#include "execution.h"

#include <pthread.h>

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

typedef enum { T_WAITING, T_ACTIVE, T_OK, T_FAILED, T_CANCELLED } tstate;

typedef struct gs_task {
    gs_work work; /* on s->task_pool */
    gs_build *b;
    size_t idx;
    Databuild__V1__Task *task;
    const dbld_job_def *job;
    tstate state;
    int used_quota;
    int attempts;
    gs_exec exec;     /* its attempts (execution.h), under b->mu */
    char *run_cancel; /* malloc'd: a JobRunCancelEvent's reason for the run in flight */
    int forced;       /* outputs requested with force: rebuilt even when AVAILABLE */
    int critical;     /* its failure fails the build (execution.c's TaskExecution.critical) */
    unsigned char *dep_optional; /* per plan->deps[idx] entry: an optional input (malloc'd) */
    int ep;                      /* job endpoint of the Run in flight, -1 when none */
    int cancel_found;            /* the job service confirmed our cancel */
    char run_id[37];             /* job run in flight (for cancel) */
    char first_run[37];          /* planned job_run_id of the first attempt (on ANALYZED) */
    unsigned char *analyzed;     /* per output: this build appended ANALYZED for it */
    void *manifest;              /* packed PartitionManifest of the completed run */
    size_t manifest_len;
    char *why; /* malloc'd: why it failed / was cancelled */
} gs_task;

/* A task's execution from before a resume (recover() reads the last
 * ExecutionEvent of each task): its first output and the packed
 * TaskExecution, which plan() restores. */
typedef struct gs_prior_run {
    char *ref;    /* malloc'd */
    uint8_t *buf; /* malloc'd packed Databuild__V1__TaskExecution */
    size_t len;
} gs_prior_run;

/* A resumed build's planned first attempt that never started: the job_run_id
 * its PartitionEvent ANALYZED named, which the new plan keeps. */
typedef struct gs_planned_run {
    char *ref; /* malloc'd: the task's first output */
    char run[37];
} gs_planned_run;

/* A gs_build_on_end() registration. */
typedef struct gs_end_cb {
    gs_build_end_fn fn;
    void *arg;
    struct gs_end_cb *next;
} gs_end_cb;

/* What execute() looks at when a task changes state, so that a build costs
 * time in its edges, not in its tasks squared: the tasks to look at again
 * (a dependency ended; each listed once), the tasks whose inputs are ready
 * and wait for a slot (a min-heap by index: tasks start in plan order), the
 * reverse edges (CSR: the dependents of task i are dependents[first[i] ..
 * first[i + 1])) and how many tasks still wait. Under b->mu. */
typedef struct gs_sched {
    size_t *recheck, n_recheck;
    unsigned char *listed; /* per task: on recheck or ready */
    size_t *ready, n_ready;
    size_t *first, *dependents;
    size_t n_waiting;
} gs_sched;

struct gs_build {
    gs_work work; /* on s->build_pool */
    gs_service *svc;
    char id[37];
    char **refs;
    size_t n_refs;
    char *comment, *want_id;
    int resumed;
    int force;          /* SubmitBuildRequest.force (BuildOptions: kept across a resume) */
    int64_t created_ns; /* the build's RECEIVED time: force's reuse window */
    char *prev_owner;
    int refcount; /* under svc->mu */
    gs_build *next;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: state changes, cancel, abandon */
    int status;        /* last BuildRequestStatusCode appended */
    int done;          /* ended (terminal event appended) or abandoned */
    int abandoned;     /* stopped without a terminal event */
    int cancel;
    char *cancel_reason;
    char *fail_msg; /* a critical task could not be launched: cancel, then end FAILED with this */
    int result_code;
    char *result_msg;
    gs_missing missing; /* ended PRECONDITION_FAILED: the external inputs not AVAILABLE */
    gs_plan *plan;
    gs_task *tasks;
    size_t n_tasks;
    int running;
    int global_used;
    gs_prior_run *prior; /* resumed: the tasks' executions, restored by plan() */
    size_t n_prior;
    gs_planned_run *planned; /* resumed: planned runs that never started */
    size_t n_planned;
    int64_t follow_idx;         /* the event log is followed from here (cancels from outside) */
    dbld_stream *follow_stream; /* EventLog/Subscribe of its events; NULL: List is polled */
    int64_t follow_reopen_ms;   /* monotonic: the stream is opened again no sooner */
    int dirty;                  /* a task changed state: look again */
    gs_sched sched;             /* execute()'s bookkeeping (coordinator.c), under mu */
    gs_end_cb *on_end;          /* called (and freed) once the build thread is done */
    int ended;                  /* the build thread is done: on_end was taken */
};

/* gsb_append_cancelled(): which outputs get PartitionEvent FAILED. */
#define OUT_ANALYZED 0 /* the outputs this build marked ANALYZED */
#define OUT_ALL 1      /* every output (this build's claim was granted: BUILDING) */
#define OUT_NONE 2     /* none (delegated: another build is building them) */

/* Mark the build abandoned: nothing more is appended (b->mu not held). */
void gsb_abandon(gs_build *b, const dbld_status *st);
/* A call to the event log failed: abandon; when the lease fence refused it
 * (FAILED_PRECONDITION: the build has another owner now) also cancel the
 * build's runs in flight. */
void gsb_fail(gs_build *b, const dbld_status *st);
/* A critical task could not be launched: the build fails at once. Its other
 * runs are cancelled as by a cancel, and it ends FAILED naming why (b->mu
 * not held; the first call wins, a cancel before it too). */
void gsb_fail_at_once(gs_build *b, const char *why);
/* 1 once abandoned or the service is stopping. */
int gsb_stopped(gs_build *b);
/* Append the list (then empty it); on failure abandon and return non-zero. */
int gsb_append(gs_build *b, dbld_arena *a, gs_evlist *l);
int gsb_append1(gs_build *b, dbld_arena *a, gs_event *e);
void gsb_new_id(char out[37]);
/* JobEvent CANCELLED for run plus PartitionEvent FAILED per `owned`. */
void gsb_append_cancelled(gs_task *t, dbld_arena *a, const char *run, int owned, const char *msg);
/* Follow the build's events in the event log from b->follow_idx and act on
 * cancels appended from outside (follow.c; b->mu not held; build thread
 * only). gsb_follow_end() closes its stream when the build stops running. */
void gsb_follow(gs_build *b);
void gsb_follow_end(gs_build *b);
#define GSB_FOLLOW_MS 250
/* The claim's reuse window of t's outputs (ClaimRequest.min_available_ns):
 * forced tasks reuse only what this build made; a max_age_ms (the job's, else
 * graph.max_age_ms) reuses only what is younger. 0: any AVAILABLE output. */
int64_t gsb_min_available_ns(const gs_task *t);
/* t ended (b->mu held): its dependents are looked at again. */
void gsb_task_ended_locked(gs_build *b, const gs_task *t);
/* optional.c: per task, which dependency edges are optional (the job's
 * optional_inputs) and whether the task is critical; and the message naming
 * t's optional inputs that are absent (malloc'd, NULL when none; b->mu not
 * held). */
void gsb_mark_optional(gs_build *b, const gs_plan *p, gs_task *tasks, size_t n);
char *gsb_absent_inputs(gs_task *t);
/* Queue t on the task pool; it ends with t->state final and b->running - 1. */
void gsb_task_launch(gs_task *t);

#endif
