/* retention.c - retention: trims old job logs and the fine-grained events
 * of finished build requests.
 *
 * Each pass deletes, in batches of `batch` rows (default 1000) through
 * ProcessStore.Trim (fenced on the lease, one short transaction per batch),
 *   - job log entries older than job_log_max_age_ms (default 30 days);
 *   - PartitionEvents, JobEvents, DelegationEvents and JobRunCancelEvents of
 *     finished build requests older than event_max_age_ms (default 90 days).
 * 0 keeps forever. Build request lifecycle events, job graphs, wants,
 * taints, invalidations and process runs are kept, and the projections
 * (partitions, build requests, job runs, wants, taints) are not touched, so
 * summaries stay correct and the query API answers for what remains. A pass
 * stops after max_pass_ms (default 5000) and asks to run again at once when
 * rows were left, so the database is never held long.
 */
#include "processes.h"

#include "dbld/process.h"
#include "dbld/util.h"

#define DAY_MS (24LL * 3600 * 1000)

/* Trim kind while rows come and time is left; 1 when the pass ran out of
 * time before the end. */
static int trim_kind(gs_run *r, int kind, int64_t max_age_ms, int64_t deadline_ms, const char *stat,
                     dbld_status *st, int *rc)
{
    *rc = 0;
    if (max_age_ms <= 0) return 0;
    for (;;) {
        if (!gsr_lease_ok(r)) return 0;
        if (dbld_mono_ms() >= deadline_ms) return 1;
        Databuild__V1__TrimRequest req = DATABUILD__V1__TRIM_REQUEST__INIT;
        Databuild__V1__ProcessFence fence = DATABUILD__V1__PROCESS_FENCE__INIT;
        gsr_fence(r, &fence);
        req.fence = &fence;
        req.kind = (Databuild__V1__TrimKind)kind;
        req.older_than_ns = dbld_now_ns() - max_age_ms * 1000000;
        req.batch = (uint32_t)gsr_setting_int(r, "batch", 1000);
        Databuild__V1__TrimResponse *resp = NULL;
        *rc = gsr_store_call(r, "Trim", &req.base, &databuild__v1__trim_response__descriptor, &resp,
                             st);
        if (*rc) return 0;
        gsr_stat(r, stat, (double)resp->deleted);
        if (resp->deleted) gsr_changed(r);
        if (resp->deleted < (int64_t)req.batch) return 0;
    }
}

static int run(gs_run *r, dbld_status *st)
{
    int64_t deadline = dbld_mono_ms() + gsr_setting_int(r, "max_pass_ms", 5000);
    int rc;
    int more = trim_kind(r, DATABUILD__V1__TRIM_KIND__TRIM_JOB_LOGS,
                         gsr_setting_int(r, "job_log_max_age_ms", 30 * DAY_MS), deadline,
                         "job_log_entries_deleted", st, &rc);
    if (rc) return rc;
    more |= trim_kind(r, DATABUILD__V1__TRIM_KIND__TRIM_EVENTS,
                      gsr_setting_int(r, "event_max_age_ms", 90 * DAY_MS), deadline,
                      "events_deleted", st, &rc);
    if (rc) return rc;
    if (more) gsr_wake_at(r, dbld_now_ns());
    return 0;
}

const gs_proc_def gs_retention = {
    .name = DBLD_PROC_RETENTION,
    .run = run,
};
