/* retry.h - LUCI-style retry quotas (luci_cv_tryjob_storage.proto RetryConfig).
 *
 * After a failed attempt the weight of its kind is added to the task's used
 * quota and to the build's total; another attempt is allowed only while
 * used <= single_quota and total <= global_quota. A job without a retry
 * config (single_quota < 0), or with an all-zero one (as in LUCI), is never
 * retried. Pure arithmetic: the caller
 * holds whatever lock protects the counters.
 */
#ifndef GRAPH_RETRY_H
#define GRAPH_RETRY_H

#include "dbld/config.h"

#include <stdint.h>

typedef enum {
    GS_FAIL_PERMANENT = 1, /* FailureKind numbers */
    GS_FAIL_TRANSIENT = 2,
    GS_FAIL_TIMEOUT = 3,
} gs_fail_kind;

/* Hard stop against zero weights: no task gets more attempts than this. */
#define GS_RETRY_MAX_ATTEMPTS 100

/* Account one failed attempt (attempts = attempts made so far, including the
 * failed one; job_denied: the job itself asked not to be retried, by exiting
 * with one of its no_retry_exit_codes) and decide. Returns 1 to retry; 0 with
 * *reason set to a static string, LUCI's verbatim ("retry is not enabled in
 * the config", "job explicitly denies retry in its output", "insufficient
 * quota", "insufficient global quota") or DataBuild's hard stop "too many
 * attempts". A denied failure is still charged to the quotas. */
int gs_retry_decide(const dbld_retry_config *rc, gs_fail_kind kind, int job_denied, int attempts,
                    int *task_used, int *build_used, const char **reason);

/* 0 when rc allows no retry at all (no config, or all zeros). */
int gs_retry_enabled(const dbld_retry_config *rc);

/* The weight a failure of this kind adds to the used quotas. */
int gs_retry_weight(const dbld_retry_config *rc, gs_fail_kind kind);

/* "FAILURE_PERMANENT" etc. */
const char *gs_fail_kind_name(gs_fail_kind kind);

/* ---- infrastructure failures: losing the job service is not an attempt ----
 *
 * A run whose job service went away (connection refused, UNAVAILABLE, the
 * stream broken before a result) did not fail because of the job: it is
 * relaunched, not retried, and costs no retry quota. LUCI retries launches
 * the same way (exponential backoff from 100 ms, at most 10 s between tries,
 * about 2 min in all); only when the job service stays lost for that long
 * does the loss end the attempt: as a launch failure (UNTRIGGERED, never
 * retried; a critical one fails the build at once, task.c) when its last
 * launch had not started, else as a transient failure of the attempt, which
 * the quota then decides about. Both functions are pure (no clock, no I/O). */

typedef enum {
    GS_RUN_OUTCOME = 0,  /* a result, or an error that belongs to the attempt */
    GS_RUN_LOST_SAME_ID, /* lost before the process started: relaunch as the same job run */
    GS_RUN_LOST_NEW_ID,  /* lost after it started (its logs and RUNNING are on record), or the job
                          * service still holds that job run: relaunch as a new job run */
} gs_run_loss;

/* Classify how a JobRunner/RunStreamed call ended, from structured data only:
 * rc is its dbld code (0 when a result arrived), got_result whether a
 * RunJobResponse arrived, started whether the job service reported the
 * process spawned. A result is always the attempt's outcome (even a
 * failure); so are DEADLINE_EXCEEDED (the job's timeout) and errors about
 * the request itself (INVALID_ARGUMENT, NOT_FOUND, ...). UNAVAILABLE,
 * CANCELLED (the job service ended the call) and RESOURCE_EXHAUSTED (it
 * refused the work) lose the executor; ALREADY_EXISTS means the job service
 * still holds an earlier launch of that job run, which is lost to us too.
 * The caller checks first that the build itself did not cancel the run. */
gs_run_loss gs_run_classify_loss(int rc, int got_result, int started);

/* ---- how an attempt ends and what a claim leads to (pure) ---- */

/* The failure kind of an attempt that did not succeed (and that the build
 * did not cancel itself): rc 0 with a RunJobResponse (its job_status and
 * failure_kind: the job service's classification; an unclassified CANCELLED
 * - the job service stopped it - is transient, anything else permanent), or
 * the call's error code: a lost or refusing job service is transient, the
 * job's timeout a timeout, an error about the request permanent. */
gs_fail_kind gs_fail_kind_of(int rc, int job_status, int failure_kind);

typedef enum {
    GS_LAUNCHED = 0,         /* the process started: the retry quota decides about a failure */
    GS_LAUNCH_FAILS_BUILD,   /* a critical task could not be launched: the build fails at once */
    GS_LAUNCH_FAILED_LOGGED, /* optional work could not be launched: logged, the build goes on */
} gs_launch_verdict;

/* A failed attempt whose run never started (started 0) is a launch failure:
 * UNTRIGGERED, never retried, and by the task's criticality either fatal to
 * the build or only logged. */
gs_launch_verdict gs_launch_decide(int started, int critical);

typedef enum {
    GS_CLAIM_RUN = 0,      /* granted: launch the run */
    GS_CLAIM_REUSE,        /* AVAILABLE: reuse, naming the run that built them */
    GS_CLAIM_HOLDER_BUILT, /* AVAILABLE after a delegation: the holder's run built them */
    GS_CLAIM_DELEGATE,     /* HELD by another build: delegate and wait for it */
    GS_CLAIM_UNEXPECTED,   /* an outcome this coordinator does not know: abandon */
} gs_claim_next;

/* What a task does with a ClaimResponse.outcome (ClaimOutcome numbers);
 * delegated: it waited for another build before this claim. */
gs_claim_next gs_claim_decide(int outcome, int delegated);

#define GS_RELAUNCH_FIRST_MS 100
#define GS_RELAUNCH_MAX_DELAY_MS 10000
#define GS_RELAUNCH_TOTAL_MS 120000

/* Relaunch backoff of one attempt. Zero it ({0}) when an attempt begins. */
typedef struct gs_backoff {
    int64_t first_ms; /* monotonic time of the attempt's first loss (when tries > 0) */
    int tries;        /* relaunches handed out; 0: no loss yet */
} gs_backoff;

/* One more loss at now_ms (monotonic): returns 1 with *delay_ms, how long to
 * wait before relaunching (100 ms doubling per loss, at most 10 s, and never
 * past first loss + total_ms); 0 once total_ms have passed since the first
 * loss: give up, the loss becomes a transient failure of the attempt. */
int gs_backoff_next(gs_backoff *bo, int64_t now_ms, int64_t total_ms, int64_t *delay_ms);

#endif
