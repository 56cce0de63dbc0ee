/* waiters.h - RPC calls answered when a build ends: GraphBuilder/Build, and
 * the wait of GraphBuilder/Cancel.
 *
 * Their handlers register a waiter and return DBLD_ASYNC, so no RPC worker
 * waits for a build (a blocking Build used to hold one for the whole build,
 * and a few of them starved Lookup, Submit and Cancel). A waiter is answered
 * exactly once, by whichever comes first: the build's end (with its result),
 * the call going away (client cancelled or deadline passed; the build goes
 * on), the end of Cancel's wait, or gs_waiters_close() at shutdown.
 */
#ifndef GRAPH_WAITERS_H
#define GRAPH_WAITERS_H

#include "graph.h"

typedef struct gs_waiter gs_waiter;

typedef enum {
    GS_WAIT_BUILD,  /* answered with the build's result (gs_build_result()) */
    GS_WAIT_CANCEL, /* answered with an empty CancelBuildResponse */
} gs_wait_kind;

/* Calls waiting at once, at most; more Builds get RESOURCE_EXHAUSTED. */
#define GS_WAITERS_MAX 10000

/* Start the registry and its sweeper thread (it notices calls that went
 * away). Caller ends it with gs_waiters_close(). */
int gs_waiters_create(gs_waiters **out, dbld_status *st);
/* Shutdown: answer every waiting call UNAVAILABLE (its build goes on, and is
 * resumed from the event log by the next instance), refuse new waiters, stop
 * the sweeper. The registry stays allocated: build threads may still call
 * back into it. */
void gs_waiters_close(gs_waiters *ws);

/* Reserve a waiter for call before starting anything (counted against
 * GS_WAITERS_MAX). NULL with st set: RESOURCE_EXHAUSTED (too many calls
 * waiting) or UNAVAILABLE (shutting down). */
gs_waiter *gs_waiter_new(gs_waiters *ws, dbld_call *call, gs_wait_kind kind, dbld_status *st);
/* Give back a reserved waiter that was never armed. */
void gs_waiter_drop(gs_waiter *w);
/* Answer w's call when b ends, or (wait_ms >= 0) once wait_ms passed. Takes
 * over the caller's reference to b. Returns DBLD_ASYNC, for the handler to
 * return; the handler must not touch the call afterwards. */
int gs_waiter_arm(gs_waiter *w, gs_build *b, int64_t wait_ms);

#endif
