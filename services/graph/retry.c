/* retry.c - retry quota decisions, the classification and backoff of
 * infrastructure failures, and the other pure decisions of a task's
 * attempts: failure kinds, launch failures, claim outcomes (see retry.h). */
#include "retry.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/status.h"

#include <string.h>

int gs_retry_weight(const dbld_retry_config *rc, gs_fail_kind kind)
{
    switch (kind) {
    case GS_FAIL_TRANSIENT:
        return rc->transient_failure_weight;
    case GS_FAIL_TIMEOUT:
        return rc->timeout_weight;
    default:
        return rc->failure_weight;
    }
}

int gs_retry_enabled(const dbld_retry_config *rc)
{
    if (rc->single_quota < 0) return 0;
    /* LUCI: an all-zero RetryConfig is no retry config */
    return rc->single_quota || rc->global_quota || rc->failure_weight ||
           rc->transient_failure_weight || rc->timeout_weight;
}

int gs_retry_decide(const dbld_retry_config *rc, gs_fail_kind kind, int job_denied, int attempts,
                    int *task_used, int *build_used, const char **reason)
{
    if (!gs_retry_enabled(rc)) {
        *reason = "retry is not enabled in the config";
        return 0;
    }
    int w = gs_retry_weight(rc, kind);
    *task_used += w;
    *build_used += w;
    if (job_denied) {
        *reason = "job explicitly denies retry in its output";
        return 0;
    }
    if (*task_used > rc->single_quota) {
        *reason = "insufficient quota";
        return 0;
    }
    if (*build_used > rc->global_quota) {
        *reason = "insufficient global quota";
        return 0;
    }
    if (attempts >= GS_RETRY_MAX_ATTEMPTS) {
        *reason = "too many attempts";
        return 0;
    }
    *reason = "";
    return 1;
}

const char *gs_fail_kind_name(gs_fail_kind kind)
{
    switch (kind) {
    case GS_FAIL_TRANSIENT:
        return "FAILURE_TRANSIENT";
    case GS_FAIL_TIMEOUT:
        return "FAILURE_TIMEOUT";
    default:
        return "FAILURE_PERMANENT";
    }
}

gs_run_loss gs_run_classify_loss(int rc, int got_result, int started)
{
    if (got_result) return GS_RUN_OUTCOME;
    switch (rc) {
    case DBLD_UNAVAILABLE:
    case DBLD_CANCELLED:
    case DBLD_RESOURCE_EXHAUSTED:
        return started ? GS_RUN_LOST_NEW_ID : GS_RUN_LOST_SAME_ID;
    case DBLD_ALREADY_EXISTS:
        return GS_RUN_LOST_NEW_ID;
    default:
        return GS_RUN_OUTCOME;
    }
}

int gs_backoff_next(gs_backoff *bo, int64_t now_ms, int64_t total_ms, int64_t *delay_ms)
{
    if (bo->tries == 0) bo->first_ms = now_ms;
    int64_t left = bo->first_ms + total_ms - now_ms;
    if (left <= 0) return 0;
    int64_t d = GS_RELAUNCH_FIRST_MS;
    for (int i = 0; i < bo->tries && d < GS_RELAUNCH_MAX_DELAY_MS; i++)
        d *= 2;
    if (d > GS_RELAUNCH_MAX_DELAY_MS) d = GS_RELAUNCH_MAX_DELAY_MS;
    if (d > left) d = left;
    bo->tries++;
    *delay_ms = d;
    return 1;
}

gs_fail_kind gs_fail_kind_of(int rc, int job_status, int failure_kind)
{
    if (rc == 0) {
        if (failure_kind >= GS_FAIL_PERMANENT && failure_kind <= GS_FAIL_TIMEOUT)
            return (gs_fail_kind)failure_kind;
        return job_status == DATABUILD__V1__JOB_STATUS__JOB_CANCELLED ? GS_FAIL_TRANSIENT
                                                                      : GS_FAIL_PERMANENT;
    }
    switch (rc) {
    case DBLD_UNAVAILABLE:
    case DBLD_CANCELLED:
    case DBLD_RESOURCE_EXHAUSTED:
    case DBLD_ABORTED:
    case DBLD_ALREADY_EXISTS: /* an earlier launch of the run still held there */
        return GS_FAIL_TRANSIENT;
    case DBLD_DEADLINE_EXCEEDED:
        return GS_FAIL_TIMEOUT;
    default:
        return GS_FAIL_PERMANENT;
    }
}

gs_launch_verdict gs_launch_decide(int started, int critical)
{
    if (started) return GS_LAUNCHED;
    return critical ? GS_LAUNCH_FAILS_BUILD : GS_LAUNCH_FAILED_LOGGED;
}

gs_claim_next gs_claim_decide(int outcome, int delegated)
{
    switch (outcome) {
    case DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED:
        return GS_CLAIM_RUN;
    case DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE:
        return delegated ? GS_CLAIM_HOLDER_BUILT : GS_CLAIM_REUSE;
    case DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD:
        return GS_CLAIM_DELEGATE;
    default:
        return GS_CLAIM_UNEXPECTED;
    }
}
