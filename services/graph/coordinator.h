/* coordinator.h - build requests: submit, wait, cancel, resume.
 *
 * A build is coordinated by one thread of the instance holding its lease:
 * RECEIVED -> PLANNING -> (JobGraphEvent) ANALYSIS_COMPLETED -> EXECUTING ->
 * COMPLETED | FAILED | CANCELLED | PRECONDITION_FAILED. Each task runs on a
 * thread of its own (at most graph.max_parallel per build): claim its outputs
 * (SKIPPED when available, delegation when another build holds them), run it
 * on a job service, retry per the job's quota. Every state change is appended
 * to the event log before the coordinator acts on it, which is what makes a
 * build resumable by another instance after a crash (gs_build_resume()).
 */
#ifndef GRAPH_COORDINATOR_H
#define GRAPH_COORDINATOR_H

#include "analyze.h"
#include "graph.h"

/* Validate refs, take the lease, append RECEIVED (+ REQUESTED per ref) and
 * start coordinating. id_out gets the build_request_id. With out non-NULL
 * the caller gets a reference (gs_build_unref()). */
int gs_build_submit(gs_service *s, const char *const *refs, size_t n, const char *comment,
                    const char *want_id, char id_out[37], gs_build **out, dbld_status *st);

/* Adopt an orphan whose lease this instance has just taken. */
void gs_build_resume(gs_service *s, const Databuild__V1__OrphanBuild *ob);

/* Wait until the build ended or the call was cancelled. Returns 0 with the
 * manifests when it COMPLETED; else ABORTED (FAILED), FAILED_PRECONDITION
 * (precondition or analysis error), CANCELLED, or UNAVAILABLE when the call
 * ended first (client gone or server shutting down). */
int gs_build_wait(gs_build *b, dbld_call *call, dbld_arena *a,
                  Databuild__V1__GraphBuildResponse **out, dbld_status *st);

/* Cancel a build this instance coordinates: BuildCancelEvent, cancel running
 * job runs, wait up to wait_ms for it to end. NOT_FOUND for an unknown id,
 * FAILED_PRECONDITION for one that already ended. */
int gs_build_cancel(gs_service *s, const char *id, const char *reason, int64_t wait_ms,
                    dbld_status *st);

void gs_build_unref(gs_build *b);

/* 1 if the build is in this instance's registry. */
int gs_build_active(gs_service *s, const char *id);
/* Malloc'd array of the ids of every active build (each malloc'd); *n set. */
char **gs_build_active_ids(gs_service *s, size_t *n);
/* Stop coordinating (lease lost): no further events are appended. */
void gs_build_abandon(gs_service *s, const char *id, const char *why);

/* Analysis callbacks shared with the Analyze RPC (user = gs_service *). */
void gs_analyze_env_init(gs_service *s, gs_analyze_env *env);

#endif
