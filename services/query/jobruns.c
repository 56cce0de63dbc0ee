/* jobruns.c - ListJobRuns and GetJobRunSummary, from the job_runs projection
 * plus each run's JobEvents (for its times) and JobRunCancelEvents.
 *
 * ListJobRuns pages backwards by scheduled time (the run's first event):
 * started_until is an exclusive upper bound, min_start_at the oldest
 * scheduled time in the page (pass it as the next started_until; an empty
 * page ends the listing). The seed calls each of its filters "ORing", so
 * they are ORed with each other too: a run is listed when it matches any
 * non-empty filter (job_run_ids, job_labels, build_reqeust_ids - the seed's
 * spelling - or built_partition_refs); with no filter, every run is.
 * built_partition_refs are "partitions produced by these job runs": a run
 * matches when it COMPLETED with one of them among its target partitions
 * (as ListBuildRequests' built_partition); runs that failed, were cancelled,
 * were skipped or are still running produced nothing.
 *
 * Times: scheduled_at = first SCHEDULED event (else the first event),
 * started_at = first RUNNING, completed_at = first COMPLETED / FAILED /
 * CANCELLED / SKIPPED event, duration_ms = completed_at - started_at (or
 * - scheduled_at when it never ran), 0 while running. cancelled: status
 * CANCELLED or a JobRunCancelEvent names the run.
 */
#include "query.h"

#include "dbld/db_domain.h"

#include <string.h>

#define RUN_COLS                                                                                   \
    "j.job_run_id, j.job_label, j.build_request_id, j.status, j.target_partitions, j.message,"     \
    " j.created_ns"

#define LIST_SQL                                                                                   \
    "SELECT " RUN_COLS " FROM job_runs j WHERE"                                                    \
    " (($1::text[] IS NULL AND $2::text[] IS NULL AND $3::text[] IS NULL AND $4::text[] IS NULL)"  \
    "  OR j.job_run_id = ANY($1::text[]) OR j.job_label = ANY($2::text[])"                         \
    "  OR j.build_request_id = ANY($3::text[])"                                                    \
    "  OR (j.target_partitions && $4::text[] AND j.status = " DBLD_SQL_JOB_COMPLETED "))"          \
    " AND %s"

#define TIMES_SQL                                                                                  \
    "SELECT ts_ns, payload FROM events WHERE job_run_ids && $1::text[]"                            \
    " AND kind IN (" DBLD_SQL_KIND_JOB ", " DBLD_SQL_KIND_JOB_RUN_CANCEL ")"                       \
    " ORDER BY idx"

static void apply_event(Databuild__V1__JobRunSummary *s, const Databuild__V1__BuildEvent *ev,
                        int64_t ts)
{
    if (ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT) {
        s->cancelled = 1;
        return;
    }
    if (ev->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT) return;
    switch (ev->job_event->status_code) {
    case DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED:
        if (!s->scheduled_at) s->scheduled_at = ts;
        break;
    case DATABUILD__V1__JOB_STATUS__JOB_RUNNING:
        if (!s->started_at) s->started_at = ts;
        break;
    case DATABUILD__V1__JOB_STATUS__JOB_COMPLETED:
    case DATABUILD__V1__JOB_STATUS__JOB_FAILED:
    case DATABUILD__V1__JOB_STATUS__JOB_CANCELLED:
    case DATABUILD__V1__JOB_STATUS__JOB_SKIPPED:
        if (!s->completed_at) s->completed_at = ts;
        break;
    default:
        break;
    }
}

/* Summaries for n rows of "SELECT RUN_COLS ...". */
static int run_summaries(q_req *r, const dbld_res *rows, int n, Databuild__V1__JobRunSummary ***out,
                         dbld_status *st)
{
    dbld_arena *a = r->a;
    Databuild__V1__JobRunSummary **sums = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *sums);
    char **ids = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *ids);
    int64_t *first = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *first);
    dbld_strmap by_id;
    dbld_strmap_init(&by_id, a);
    size_t count = 0;
    int added;
    for (int i = 0; i < n; i++) {
        Databuild__V1__JobRunSummary *s =
            dbld_arena_msg(a, &databuild__v1__job_run_summary__descriptor);
        s->job_run_id = dbld_arena_strdup(a, dbld_res_get(rows, i, 0));
        s->job_label = dbld_arena_strdup(a, dbld_res_get(rows, i, 1));
        s->build_request_id = dbld_arena_strdup(a, dbld_res_get(rows, i, 2));
        s->status_code = (int)dbld_res_i64(rows, i, 3);
        s->status_name =
            (char *)q_enum_name(&databuild__v1__job_status__descriptor, s->status_code);
        char **targets = q_parse_array(a, dbld_res_get(rows, i, 4), &s->n_target_partitions);
        s->target_partitions = q_refs(a, targets, s->n_target_partitions);
        s->message = dbld_arena_strdup(a, dbld_res_get(rows, i, 5));
        s->cancelled = s->status_code == DATABUILD__V1__JOB_STATUS__JOB_CANCELLED;
        first[i] = dbld_res_i64(rows, i, 6);
        sums[i] = s;
        ids[i] = s->job_run_id;
        dbld_strmap_index(&by_id, s->job_run_id, &count, &added);
    }
    *out = sums;
    if (!n) return 0;
    const char *p[] = {dbld_pg_text_array(a, (const char *const *)ids, (size_t)n)};
    dbld_res *res = NULL;
    int rc = q_exec_prepared(r, "q_run_times", TIMES_SQL, 1, p, &res, st);
    for (int i = 0; !rc && i < dbld_res_rows(res); i++) {
        Databuild__V1__BuildEvent *ev = q_decode_event(a, dbld_res_get(res, i, 1));
        if (!ev) continue;
        const char *id = NULL; /* event_type is a oneof: read only the member that is set */
        if (ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
            id = ev->job_event->job_run_id;
        else if (ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT)
            id = ev->job_run_cancel_event->job_run_id;
        size_t k = id ? dbld_strmap_find(&by_id, id) : DBLD_STRMAP_NONE;
        if (k != DBLD_STRMAP_NONE) apply_event(sums[k], ev, dbld_res_i64(res, i, 0));
    }
    dbld_res_free(res);
    for (int i = 0; i < n; i++) {
        Databuild__V1__JobRunSummary *s = sums[i];
        if (!s->scheduled_at) s->scheduled_at = first[i];
        if (s->completed_at) {
            int64_t from = s->started_at ? s->started_at : s->scheduled_at;
            s->duration_ms = s->completed_at > from ? (s->completed_at - from) / 1000000 : 0;
        }
    }
    return rc;
}

int q_list_job_runs(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                    dbld_status *st)
{
    const Databuild__V1__ListJobRunsRequest *req =
        (const Databuild__V1__ListJobRunsRequest *)req_msg;
    dbld_arena *a = r->a;
    const char *p[] = {
        q_text_array(a, req->job_run_ids, req->n_job_run_ids),
        q_text_array(a, req->job_labels, req->n_job_labels),
        q_text_array(a, req->build_reqeust_ids, req->n_build_reqeust_ids),
        q_text_array(a, req->built_partition_refs, req->n_built_partition_refs),
    };
    q_pager pg = {.sql = LIST_SQL,
                  .n = 4,
                  .params = p,
                  .ts_col = "j.created_ns",
                  .key_col = "j.job_run_id",
                  .ts_field = 6,
                  .desc = 1,
                  .cursor = req->started_until > (uint64_t)INT64_MAX ? INT64_MAX
                                                                     : (int64_t)req->started_until,
                  .limit = Q_PAGE};
    dbld_res *res;
    int n, more;
    int rc = q_page(r, &pg, &res, &n, &more, st);
    if (rc) return rc;
    Databuild__V1__ListJobRunsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_job_runs_response__descriptor);
    rc = run_summaries(r, res, n, &resp->job_runs, st);
    resp->n_job_runs = (size_t)n;
    resp->min_start_at = n ? (uint64_t)dbld_res_i64(res, n - 1, 6) : 0;
    dbld_res_free(res);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

int q_get_job_run_summary(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                          dbld_status *st)
{
    const Databuild__V1__JobRunSummaryRequest *req =
        (const Databuild__V1__JobRunSummaryRequest *)req_msg;
    if (!*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    const char *p[] = {req->job_run_id};
    dbld_res *res = NULL;
    int rc = q_exec_prepared(r, "q_run_row",
                             "SELECT " RUN_COLS " FROM job_runs j WHERE j.job_run_id = $1", 1, p,
                             &res, st);
    if (rc) return rc;
    if (dbld_res_rows(res) == 0) {
        dbld_res_free(res);
        return dbld_status_set(st, DBLD_NOT_FOUND, "no job run \"%.200s\"", req->job_run_id);
    }
    Databuild__V1__JobRunSummary **sums;
    rc = run_summaries(r, res, 1, &sums, st);
    dbld_res_free(res);
    if (rc) return rc;
    Databuild__V1__JobRunSummaryResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__job_run_summary_response__descriptor);
    resp->job_run = sums[0];
    Databuild__V1__JobRunAttemptLinks *links = NULL;
    rc = q_job_run_links(r, req->job_run_id, &links, st);
    if (rc) return rc;
    if (links) q_attach_links(r->a, &resp->base, links);
    *resp_msg = &resp->base;
    return 0;
}
