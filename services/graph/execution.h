/* execution.h - a task's execution state (LUCI CV's ExecutionState.Execution,
 * luci_cv_tryjob_storage.proto) and the ExecutionEvents that record it.
 *
 * Every change of a task's execution (an attempt added, launched, ended,
 * cancelled, reused) is appended as a BuildEvent.execution_event in the same
 * append as the JobEvents it describes. The event carries the task's whole
 * execution after the change (so the last one of a task is its state), the
 * build's used global quota, and, unless the change is one the log does not
 * show, an ExecutionLogEntry (JobRunsLaunched, JobRunsEnded, RetryDenied, ...)
 * with a snapshot of the job run and the time. A resumed build reads its
 * state back from these events (gsx_restore()); nothing parses message text.
 *
 * The state lives in gs_task.exec and is protected by the build's mutex:
 * every function here that takes a gs_task locks b->mu itself, so the caller
 * must not hold it. Events come from the given arena.
 */
#ifndef GRAPH_EXECUTION_H
#define GRAPH_EXECUTION_H

#include "events.h"

#include <stddef.h>

struct gs_task;
struct gs_build;

#define GSX_ST(x) DATABUILD__V1__EXECUTION_ATTEMPT__STATUS__##x
#define GSX_RES(x) DATABUILD__V1__EXECUTION_ATTEMPT__RESULT__##x
#define GSX_LOG(x) DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_##x
#define GSX_NO_ENTRY DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND__NOT_SET

/* One attempt (one job run) of a task. */
typedef struct gs_attempt {
    char run[37];
    int status;   /* GSX_ST(...) */
    int result;   /* GSX_RES(...) */
    int reused;   /* the outputs of an earlier run were reused */
    int attempt;  /* 1-based attempt number */
    char *reason; /* malloc'd untriggered_reason, NULL when none */
    char build[37];
} gs_attempt;

typedef struct gs_exec {
    gs_attempt *att;
    size_t n, cap;
} gs_exec;

void gsx_free(gs_exec *x);

/* Record a change of run's attempt (added with number `attempt` when the
 * task has none for run; status/result 0 leave them; reason becomes the
 * untriggered_reason when non-NULL) and return its ExecutionEvent, with the
 * log entry `kind` (GSX_NO_ENTRY: state only; reason is also the entry's for
 * JobRunsLaunchFailed, JobRunDiscarded and RetryDenied). */
gs_event *gsx_record(struct gs_task *t, dbld_arena *a, const char *run, int attempt, int status,
                     int result, int kind, const char *reason);

/* A reused run: the outputs were built by run `run` of build `build`
 * (JobRunsReused). */
gs_event *gsx_reused(struct gs_task *t, dbld_arena *a, const char *run, const char *build);

/* Forget run's attempt (its claim was not granted: nothing was recorded). */
void gsx_drop(struct gs_task *t, const char *run);

/* 1 when t has an attempt for run. */
int gsx_has(struct gs_task *t, const char *run);

/* The build request's options (BuildOptions, appended with RECEIVED when
 * any is set) for a resumed build to read back. */
gs_event *gsx_options(dbld_arena *a, const char *br, int force);

/* RequirementChanged: the build's tasks (b->tasks set), with msg. */
gs_event *gsx_requirement(struct gs_build *b, dbld_arena *a, const char *msg);

/* A resumed task's state from its last recorded execution: its attempts,
 * *used (its used quota) and *attempts (the highest attempt number). */
void gsx_restore(gs_exec *x, const Databuild__V1__TaskExecution *te, int *used, int *attempts);

/* GSX_RES of a gs_fail_kind. */
int gsx_result_of(int fail_kind);

#endif
