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
/* The same with force (SubmitBuildRequest.force): the requested partitions
 * are rebuilt even when AVAILABLE; their upstream is still reused. */
int gs_build_submit_forced(gs_service *s, const char *const *refs, size_t n, const char *comment,
                           const char *want_id, int force, char id_out[37], gs_build **out,
                           dbld_status *st);

/* The same for a build serving several wants (want_reconciler): want_ids[0]
 * goes into BuildRequestEvent.want_id, all of them into its
 * BuildRequestWants field (1001), which ListBuildRequests'
 * triggering_want_ids filter matches. */
int gs_build_submit_wants(gs_service *s, const char *const *refs, size_t n, const char *comment,
                          const char *const *want_ids, size_t n_wants, char id_out[37],
                          gs_build **out, dbld_status *st);

/* Room for one more build on the build pool: 0, or RESOURCE_EXHAUSTED with a
 * message when graph.build_threads builds run and graph.build_queue wait
 * (UNAVAILABLE once stopping). Submit takes it itself; adoption takes it
 * before the orphan's lease and gives it back with gs_build_unreserve() when
 * it does not resume the build after all. */
int gs_build_reserve(gs_service *s, dbld_status *st);
void gs_build_unreserve(gs_service *s);

/* Adopt an orphan whose lease this instance has just taken, in the room
 * taken with gs_build_reserve(). */
void gs_build_resume(gs_service *s, const Databuild__V1__OrphanBuild *ob);

/* Called once when a build ends: its terminal event is appended, or it was
 * abandoned (it will be resumed from the event log). */
typedef void (*gs_build_end_fn)(void *arg);
/* Have fn(arg) called when b ends, on the thread that ends it, with no lock
 * held. Returns 0, or 1 when b has ended already: then fn is not registered
 * and the caller acts at once. The caller keeps a reference to b until fn ran. */
int gs_build_on_end(gs_build *b, gs_build_end_fn fn, void *arg);

/* The outcome of an ended build for its Build call: 0 with the manifests
 * (in a) when it COMPLETED; else ABORTED (FAILED), FAILED_PRECONDITION
 * (precondition or analysis error), CANCELLED, or UNAVAILABLE when it was
 * abandoned (it will be resumed from the event log). */
int gs_build_result(gs_build *b, dbld_arena *a, Databuild__V1__GraphBuildResponse **out,
                    dbld_status *st);

/* Borrowed while the caller holds a reference. */
const char *gs_build_id(const gs_build *b);

/* The external inputs (graph.external) whose absence ended b
 * PRECONDITION_FAILED, as its analysis found them (every one, not only those
 * the message names): their count, with the refs in a (*refs: n + 1 slots).
 * 0 for a build that has not ended so, or was resumed here after such an
 * end elsewhere. */
size_t gs_build_missing_external(gs_build *b, dbld_arena *a, char ***refs);

/* Cancel a build this instance coordinates: BuildCancelEvent, then its job
 * runs are cancelled and the build ends CANCELLED (gs_build_on_end() tells
 * when). *out gets a reference to it (gs_build_unref()). NOT_FOUND for an
 * unknown id, FAILED_PRECONDITION for one that already ended. */
int gs_build_cancel(gs_service *s, const char *id, const char *reason, gs_build **out,
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
