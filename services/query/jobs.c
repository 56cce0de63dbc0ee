/* jobs.c - ListJobs and GetJobSummary: per-job statistics over the job_runs
 * projection.
 *
 * ListJobs lists every job of the graph config (graph.jobs, in config order,
 * also those that never ran) followed by any other label found in job_runs
 * (jobs since removed from the config), sorted. Statistics count runs that
 * were actually run: a SKIPPED "run" (outputs already available) is not
 * counted in total_runs nor taken as the last run.
 *   successful/failed/cancelled_runs  COMPLETED / FAILED / CANCELLED runs
 *   average_partitions_per_run        mean number of target partitions
 *   last_run_*                        the most recently scheduled run
 *   recent_builds                     build requests of the latest runs,
 *                                     most recent first, at most Q_RECENT_BUILDS
 */
#include "query.h"

#include "dbld/db_domain.h"

#include <stdlib.h>
#include <string.h>

#define STATS_SQL                                                                                  \
    "SELECT job_label, count(*) FILTER (WHERE status <> " DBLD_SQL_JOB_SKIPPED "),"                \
    " count(*) FILTER (WHERE status = " DBLD_SQL_JOB_COMPLETED "),"                                \
    " count(*) FILTER (WHERE status = " DBLD_SQL_JOB_FAILED "),"                                   \
    " count(*) FILTER (WHERE status = " DBLD_SQL_JOB_CANCELLED "),"                                \
    " coalesce(avg(cardinality(target_partitions))"                                                \
    "   FILTER (WHERE status <> " DBLD_SQL_JOB_SKIPPED "), 0)"                                     \
    " FROM job_runs WHERE ($1::text IS NULL OR job_label = $1::text) GROUP BY job_label"

#define LAST_SQL                                                                                   \
    "SELECT l.label, coalesce(last.status, 0), coalesce(last.created_ns, 0),"                      \
    " ARRAY(SELECT s.build_request_id FROM (SELECT build_request_id, created_ns FROM job_runs"     \
    "       WHERE job_label = l.label AND status <> " DBLD_SQL_JOB_SKIPPED                         \
    "       AND build_request_id <> ''"                                                            \
    "       ORDER BY created_ns DESC LIMIT 100) s"                                                 \
    "       GROUP BY s.build_request_id ORDER BY max(s.created_ns) DESC LIMIT 10)"                 \
    " FROM unnest($1::text[]) AS l(label)"                                                         \
    " LEFT JOIN LATERAL (SELECT status, created_ns FROM job_runs WHERE job_label = l.label"        \
    "       AND status <> " DBLD_SQL_JOB_SKIPPED " ORDER BY created_ns DESC LIMIT 1) last ON true"
_Static_assert(Q_RECENT_BUILDS == 10, "LAST_SQL's LIMIT 10 is Q_RECENT_BUILDS");

static Databuild__V1__JobSummary *new_summary(dbld_arena *a, const char *label)
{
    Databuild__V1__JobSummary *s = dbld_arena_msg(a, &databuild__v1__job_summary__descriptor);
    s->job_label = (char *)label;
    s->last_run_status_name = (char *)q_enum_name(&databuild__v1__job_status__descriptor,
                                                  DATABUILD__V1__JOB_STATUS__JOB_UNKNOWN);
    return s;
}

static int cmp_label(const void *x, const void *y)
{
    const Databuild__V1__JobSummary *a = *(Databuild__V1__JobSummary *const *)x;
    const Databuild__V1__JobSummary *b = *(Databuild__V1__JobSummary *const *)y;
    return strcmp(a->job_label, b->job_label);
}

/* Summaries for one label (label != NULL) or for the config's jobs plus
 * every label seen in job_runs. *found: rows in job_runs for label. */
static int summaries(q_req *r, const char *label, Databuild__V1__JobSummary ***out, size_t *n_out,
                     int *found, dbld_status *st)
{
    dbld_arena *a = r->a;
    const dbld_config *cfg = r->q->cfg;
    const char *p[] = {label};
    dbld_res *stats = NULL;
    int rc = q_exec(r, STATS_SQL, 1, p, &stats, st);
    if (rc) return rc;
    int n_stats = dbld_res_rows(stats);
    *found = n_stats > 0;
    size_t cap = (label ? 1 : cfg->graph.n_jobs) + (size_t)n_stats + 1;
    Databuild__V1__JobSummary **sums = dbld_arena_alloc(a, cap * sizeof *sums);
    dbld_strmap idx;
    dbld_strmap_init(&idx, a);
    size_t n = 0;
    int added;
    if (label) {
        dbld_strmap_index(&idx, label, &n, &added);
        sums[0] = new_summary(a, label);
    } else {
        for (size_t j = 0; j < cfg->graph.n_jobs; j++) {
            dbld_strmap_index(&idx, cfg->graph.jobs[j].label, &n, &added);
            if (added) sums[n - 1] = new_summary(a, cfg->graph.jobs[j].label);
        }
    }
    size_t n_config = n;
    for (int i = 0; i < n_stats; i++) {
        const char *l = dbld_arena_strdup(a, dbld_res_get(stats, i, 0));
        size_t k = dbld_strmap_index(&idx, l, &n, &added);
        if (added) sums[k] = new_summary(a, l);
        Databuild__V1__JobSummary *s = sums[k];
        s->total_runs = (uint32_t)dbld_res_i64(stats, i, 1);
        s->successful_runs = (uint32_t)dbld_res_i64(stats, i, 2);
        s->failed_runs = (uint32_t)dbld_res_i64(stats, i, 3);
        s->cancelled_runs = (uint32_t)dbld_res_i64(stats, i, 4);
        s->average_partitions_per_run = strtod(dbld_res_get(stats, i, 5), NULL);
    }
    dbld_res_free(stats);
    /* labels only seen in job_runs: after the config's, sorted */
    if (n > n_config) qsort(sums + n_config, n - n_config, sizeof *sums, cmp_label);
    char **labels = dbld_arena_alloc(a, (n + 1) * sizeof *labels);
    dbld_strmap pos;
    dbld_strmap_init(&pos, a);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        labels[i] = sums[i]->job_label;
        dbld_strmap_index(&pos, labels[i], &m, &added);
    }
    const char *lp[] = {dbld_pg_text_array(a, (const char *const *)labels, n)};
    dbld_res *last = NULL;
    rc = n ? q_exec(r, LAST_SQL, 1, lp, &last, st) : 0;
    for (int i = 0; !rc && i < dbld_res_rows(last); i++) {
        size_t k = dbld_strmap_find(&pos, dbld_res_get(last, i, 0));
        if (k == DBLD_STRMAP_NONE) continue;
        Databuild__V1__JobSummary *s = sums[k];
        s->last_run_status_code = (int)dbld_res_i64(last, i, 1);
        s->last_run_status_name =
            (char *)q_enum_name(&databuild__v1__job_status__descriptor, s->last_run_status_code);
        s->last_run_timestamp = dbld_res_i64(last, i, 2);
        s->recent_builds = q_parse_array(a, dbld_res_get(last, i, 3), &s->n_recent_builds);
    }
    dbld_res_free(last);
    *out = sums;
    *n_out = n;
    return rc;
}

int q_list_jobs(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                dbld_status *st)
{
    (void)req_msg;
    Databuild__V1__ListJobsResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__list_jobs_response__descriptor);
    int found;
    int rc = summaries(r, NULL, &resp->jobs, &resp->n_jobs, &found, st);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

int q_get_job_summary(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                      dbld_status *st)
{
    const Databuild__V1__JobSummaryRequest *req = (const Databuild__V1__JobSummaryRequest *)req_msg;
    if (!*req->job_label)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_label is required");
    int in_config = 0;
    for (size_t j = 0; j < r->q->cfg->graph.n_jobs && !in_config; j++)
        in_config = strcmp(r->q->cfg->graph.jobs[j].label, req->job_label) == 0;
    Databuild__V1__JobSummary **sums;
    size_t n;
    int found;
    int rc = summaries(r, req->job_label, &sums, &n, &found, st);
    if (rc) return rc;
    if (!found && !in_config)
        return dbld_status_set(st, DBLD_NOT_FOUND,
                               "no job \"%.200s\" (not in the graph and never run)",
                               req->job_label);
    Databuild__V1__JobSummaryResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__job_summary_response__descriptor);
    resp->job = sums[0];
    *resp_msg = &resp->base;
    return 0;
}
