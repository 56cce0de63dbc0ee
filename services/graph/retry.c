/* retry.c - retry quota decisions (see retry.h). */
#include "retry.h"

static int weight_of(const dbld_retry_config *rc, gs_fail_kind kind)
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

int gs_retry_decide(const dbld_retry_config *rc, gs_fail_kind kind, int attempts, int *task_used,
                    int *build_used, const char **reason)
{
    if (rc->single_quota < 0) {
        *reason = "retry is not enabled in the config";
        return 0;
    }
    int w = weight_of(rc, kind);
    *task_used += w;
    *build_used += w;
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
