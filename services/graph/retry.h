/* retry.h - LUCI-style retry quotas (luci_cv_tryjob_storage.proto RetryConfig).
 *
 * After a failed attempt the weight of its kind is added to the task's used
 * quota and to the build's total; another attempt is allowed only while
 * used <= single_quota and total <= global_quota. A job without a retry
 * config (single_quota < 0) is never retried. Pure arithmetic: the caller
 * holds whatever lock protects the counters.
 */
#ifndef GRAPH_RETRY_H
#define GRAPH_RETRY_H

#include "dbld/config.h"

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
 * *reason set to a static string ("retry is not enabled in the config", "the
 * job denied retry", "insufficient quota", "insufficient global quota", "too
 * many attempts"). A denied failure is still charged to the quotas. */
int gs_retry_decide(const dbld_retry_config *rc, gs_fail_kind kind, int job_denied, int attempts,
                    int *task_used, int *build_used, const char **reason);

/* The weight a failure of this kind adds to the used quotas. */
int gs_retry_weight(const dbld_retry_config *rc, gs_fail_kind kind);

/* Read back what a JobEvent FAILED message written by task.c says
 * ("attempt N: FAILURE_KIND: ..."): 1 with *attempt and *kind set, 0 for any
 * other message (e.g. a run failed because its coordinator restarted). A
 * resumed build uses it to charge its earlier failures to the quotas again. */
int gs_retry_parse_failure(const char *msg, int *attempt, gs_fail_kind *kind);

/* "FAILURE_PERMANENT" etc. */
const char *gs_fail_kind_name(gs_fail_kind kind);

#endif
