/* retry.c - retry quota decisions and the classification and backoff of
 * infrastructure failures (see retry.h). */
#include "retry.h"

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
