/* builds.c - ListBuildRequests, GetBuildSummary, GetBuildMermaid.
 *
 * A BuildSummary comes from three places: the build_requests projection
 * (status, requested partitions, comment, want), the job_runs projection
 * (job counts) and the build's lifecycle events (BuildRequestEvent and
 * BuildCancelEvent, for the times). Definitions:
 *   requested_at  timestamp of the build's first event (RECEIVED)
 *   started_at    first PLANNING / ANALYSIS_COMPLETED / EXECUTING event
 *   completed_at  first terminal event (COMPLETED, FAILED, CANCELLED,
 *                 PRECONDITION_FAILED); 0 while the build runs
 *   duration_ms   completed_at - requested_at; 0 while the build runs
 *   total_jobs    job runs of the build (skipped ones included)
 *   completed_jobs COMPLETED or SKIPPED runs; failed_jobs / cancelled_jobs
 *   cancelled     status CANCELLED or a BuildCancelEvent was recorded
 *
 * ListBuildRequests' filters are ANDed; values within one filter ORed:
 *   build_status        current status; "BUILD_REQUEST_COMPLETED",
 *                       "COMPLETED", "completed" or "4"
 *   built_partition     a job run of the build COMPLETED with that target
 *   output_partition    the ref was explicitly requested by the build
 *   run_jobs            a job run of the build with that label (not SKIPPED)
 *   triggering_want_ids one of the wants the build serves (want_ids)
 *   comment_contains    case-insensitive substring of the comment
 * Newest first by requested time; started_until is an exclusive upper
 * bound: pass the previous page's min_started to get the next page. The
 * seed's "build start time" is read as the requested time (proto comment of
 * ListBuildsRequest): every build request has one, queued ones too, and it
 * never changes, unlike started_at (planning began).
 *
 * GetBuildSummary's partitions are every partition the build dealt with
 * (requested ones and its tasks' outputs), in first-mention order, with the
 * status they reached *within this build* (later events win: a request
 * makes REQUESTED, the job graph ANALYZED, PartitionEvents their status, a
 * DelegationEvent DELEGATED, a SKIPPED job AVAILABLE).
 */
#include "query.h"

#include "dbld/db_domain.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ListBuildRequests' filters: only those present go into the statement (a
 * sub-select under "$n IS NULL OR ..." cannot become a semi-join, which made
 * run_jobs 50x slower); values stay parameters. "%d" is the parameter number. */
static const char *const list_filters[] = {
    "b.status = ANY($%d::int[])",
    "b.build_request_id IN (SELECT j.build_request_id FROM job_runs j"
    " WHERE j.target_partitions && $%d::text[] AND j.status = " DBLD_SQL_JOB_COMPLETED ")",
    "b.requested_partitions && $%d::text[]",
    "b.build_request_id IN (SELECT j.build_request_id FROM job_runs j"
    " WHERE j.job_label = ANY($%d::text[]) AND j.status <> " DBLD_SQL_JOB_SKIPPED ")",
    "b.want_ids && $%d::text[]", /* every want served (migration 0006), want_id included */
    "strpos(lower(b.comment), lower($%d::text)) > 0",
};
#define N_LIST_FILTERS (sizeof list_filters / sizeof list_filters[0])

#define COUNTS_SQL                                                                                 \
    "SELECT " Q_BUILD_COUNTS_COLS " FROM job_runs WHERE build_request_id = ANY($1::text[])"        \
    " GROUP BY build_request_id"

/* The builds' BuildCancelEvents (no payloads: the partial index alone). */
#define CANCELS_SQL                                                                                \
    "SELECT DISTINCT build_request_id FROM events"                                                 \
    " WHERE build_request_id = ANY($1::text[]) AND kind = " DBLD_SQL_KIND_BUILD_CANCEL

/* The BuildRequestEvents of builds missing from the lifecycle cache, each up
 * to its row's last_idx (what the cache entry is then valid for). */
#define LIFECYCLE_SQL                                                                              \
    "SELECT e.build_request_id, e.ts_ns, e.payload FROM events e"                                  \
    " JOIN unnest($1::text[], $2::bigint[]) AS u(id, upto)"                                        \
    " ON e.build_request_id = u.id AND e.idx <= u.upto WHERE e.kind "                              \
    "= " DBLD_SQL_KIND_BUILD_REQUEST " ORDER BY e.idx"

/* Apply job counts (row of COUNTS_SQL) to s. */
static void apply_counts(Databuild__V1__BuildSummary *s, const dbld_res *res, int row)
{
    s->total_jobs = (uint32_t)dbld_res_i64(res, row, 1);
    s->completed_jobs = (uint32_t)dbld_res_i64(res, row, 2);
    s->failed_jobs = (uint32_t)dbld_res_i64(res, row, 3);
    s->cancelled_jobs = (uint32_t)dbld_res_i64(res, row, 4);
}

/* Apply one BuildRequestEvent (row of LIFECYCLE_SQL) to s. */
static void apply_lifecycle(dbld_arena *a, Databuild__V1__BuildSummary *s, const dbld_res *res,
                            int row)
{
    int64_t ts = dbld_res_i64(res, row, 1);
    Databuild__V1__BuildEvent *ev = q_decode_event(a, dbld_res_get(res, row, 2));
    if (!ev || ev->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT ||
        !ev->build_request_event->status)
        return;
    int code = ev->build_request_event->status->code;
    if (!s->started_at && dbld_build_started(code)) s->started_at = ts;
    if (!s->completed_at && dbld_build_terminal(code)) s->completed_at = ts;
}

/* The summary of row i of Q_BUILD_COLS rows (no counts or times yet). */
static Databuild__V1__BuildSummary *summary_row(dbld_arena *a, const dbld_res *rows, int i)
{
    Databuild__V1__BuildSummary *s = dbld_arena_msg(a, &databuild__v1__build_summary__descriptor);
    s->build_request_id = dbld_arena_strdup(a, dbld_res_get(rows, i, 0));
    int code = (int)dbld_res_i64(rows, i, 1);
    s->status = q_build_status(a, code);
    char **refs = q_parse_array(a, dbld_res_get(rows, i, 2), &s->n_requested_partitions);
    s->requested_partitions = q_refs(a, refs, s->n_requested_partitions);
    s->comment = dbld_arena_strdup(a, dbld_res_get(rows, i, 3));
    s->requested_at = dbld_res_i64(rows, i, 5);
    s->cancelled = code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED;
    return s;
}

int q_build_summaries(q_req *r, const dbld_res *rows, int n, Databuild__V1__BuildSummary ***out,
                      dbld_status *st)
{
    dbld_arena *a = r->a;
    Databuild__V1__BuildSummary **sums = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *sums);
    char **ids = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *ids);
    /* builds whose lifecycle times are not cached: their ids and last_idx */
    char **miss = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *miss);
    char **upto = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *upto);
    size_t n_miss = 0;
    dbld_strmap by_id;
    dbld_strmap_init(&by_id, a);
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        Databuild__V1__BuildSummary *s = summary_row(a, rows, i);
        sums[i] = s;
        ids[i] = s->build_request_id;
        int added;
        dbld_strmap_index(&by_id, s->build_request_id, &count, &added);
        q_life life;
        if (q_lifecache_get(r->q->life, ids[i], dbld_res_i64(rows, i, 7), &life)) {
            s->started_at = life.started;
            s->completed_at = life.completed;
        } else {
            miss[n_miss] = ids[i];
            upto[n_miss++] = dbld_arena_strdup(a, dbld_res_get(rows, i, 7));
        }
    }
    *out = sums;
    if (n == 0) return 0;
    const char *p[] = {dbld_pg_text_array(a, (const char *const *)ids, (size_t)n)};
    const char *pm[] = {dbld_pg_text_array(a, (const char *const *)miss, n_miss),
                        dbld_pg_text_array(a, (const char *const *)upto, n_miss)};
    dbld_res *counts = NULL, *cancels = NULL, *life = NULL;
    dbld_stmt stmts[] = {
        {.name = "q_build_counts", .sql = COUNTS_SQL, .n = 1, .params = p, .out = &counts},
        {.name = "q_build_cancels", .sql = CANCELS_SQL, .n = 1, .params = p, .out = &cancels},
        {.name = "q_build_life", .sql = LIFECYCLE_SQL, .n = 2, .params = pm, .out = &life},
    };
    int rc = q_pipeline(r, stmts, n_miss ? 3 : 2, st);
    for (int i = 0; !rc && i < dbld_res_rows(counts); i++) {
        size_t k = dbld_strmap_find(&by_id, dbld_res_get(counts, i, 0));
        if (k != DBLD_STRMAP_NONE) apply_counts(sums[k], counts, i);
    }
    for (int i = 0; !rc && i < dbld_res_rows(cancels); i++) {
        size_t k = dbld_strmap_find(&by_id, dbld_res_get(cancels, i, 0));
        if (k != DBLD_STRMAP_NONE) sums[k]->cancelled = 1;
    }
    for (int i = 0; !rc && i < dbld_res_rows(life); i++) {
        size_t k = dbld_strmap_find(&by_id, dbld_res_get(life, i, 0));
        if (k != DBLD_STRMAP_NONE) apply_lifecycle(a, sums[k], life, i);
    }
    for (size_t i = 0; !rc && i < n_miss; i++) {
        const Databuild__V1__BuildSummary *s = sums[dbld_strmap_find(&by_id, miss[i])];
        q_life v = {.last_idx = strtoll(upto[i], NULL, 10),
                    .started = s->started_at,
                    .completed = s->completed_at};
        q_lifecache_put(r->q->life, miss[i], &v);
    }
    dbld_res_free(counts);
    dbld_res_free(cancels);
    dbld_res_free(life);
    for (int i = 0; !rc && i < n; i++)
        if (sums[i]->completed_at)
            sums[i]->duration_ms = (sums[i]->completed_at - sums[i]->requested_at) / 1000000;
    return rc;
}

/* "BUILD_REQUEST_COMPLETED" / "COMPLETED" / "completed" / "4" -> code. */
static int parse_build_status(const char *s, int *code)
{
    const ProtobufCEnumDescriptor *d = &databuild__v1__build_request_status_code__descriptor;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*s && end && !*end) {
        if (!protobuf_c_enum_descriptor_get_value(d, (int)v)) return -1;
        *code = (int)v;
        return 0;
    }
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *name = d->values[i].name;
        if (strcasecmp(name, s) == 0 || strcasecmp(name + strlen("BUILD_REQUEST_"), s) == 0) {
            *code = d->values[i].value;
            return 0;
        }
    }
    return -1;
}

/* req's build_status values as codes (*icodes) and as SQL text (*codes). */
static int parse_codes(dbld_arena *a, const Databuild__V1__ListBuildsRequest *req, int **icodes,
                       char ***codes, dbld_status *st)
{
    *codes = dbld_arena_alloc(a, (req->n_build_status + 1) * sizeof **codes);
    *icodes = dbld_arena_alloc(a, (req->n_build_status + 1) * sizeof **icodes);
    for (size_t i = 0; i < req->n_build_status; i++) {
        if (parse_build_status(req->build_status[i], &(*icodes)[i]) != 0)
            return dbld_status_set(
                st, DBLD_INVALID_ARGUMENT,
                "unknown build_status \"%.100s\" (want e.g. BUILD_REQUEST_COMPLETED)",
                req->build_status[i]);
        (*codes)[i] = (char *)q_i64(a, (*icodes)[i]);
    }
    return 0;
}

static int64_t started_until(const Databuild__V1__ListBuildsRequest *req)
{
    return req->started_until > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)req->started_until;
}

/* The SQL path, on a worker (its paging takes up to three statements, each
 * depending on the last: not a reactor job). */
static int list_on_worker(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          dbld_status *st)
{
    q_ctx *q = dbld_call_user(call);
    q_index_count_sql_builds(q->index);
    return q_run(call, "list build requests", q_list_build_requests, req, resp, st);
}

/* Past the freshness gate: the page from the build index (bindex.c), or
 * SQL when the index cannot answer it. */
static int list_fresh(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                      dbld_status *st)
{
    const Databuild__V1__ListBuildsRequest *req = (const Databuild__V1__ListBuildsRequest *)req_msg;
    if (q_index_builds_cached(r->q->index, r->call, req_msg)) {
        *resp_msg = NULL; /* the call holds the page */
        return 0;
    }
    int *icodes;
    char **codes;
    int rc = parse_codes(r->a, req, &icodes, &codes, st);
    if (rc) return rc;
    q_build_query bq = {.codes = icodes,
                        .n_codes = req->n_build_status,
                        .outputs = req->output_partition,
                        .n_outputs = req->n_output_partition,
                        .wants = req->triggering_want_ids,
                        .n_wants = req->n_triggering_want_ids,
                        .comment = *req->comment_contains ? req->comment_contains : NULL,
                        .cursor = started_until(req)};
    q_build_page pg;
    if (!q_index_list_builds(r->q->index, r->a, &bq, &pg))
        return q_list_build_requests(r, req_msg, resp_msg, st);
    Databuild__V1__ListBuildsResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__list_builds_response__descriptor);
    resp->builds = pg.builds;
    resp->n_builds = pg.n;
    resp->min_started = (uint64_t)pg.min_started;
    resp->has_more = pg.has_more;
    *resp_msg = q_index_builds_keep(r->q->index, r->call, pg.version, req_msg, &resp->base)
                    ? NULL /* the call holds it */
                    : &resp->base;
    return 0;
}

static int list_fresh_on_worker(dbld_call *call, const ProtobufCMessage *req,
                                ProtobufCMessage **resp, dbld_status *st)
{
    return q_run(call, "list build requests", list_fresh, req, resp, st);
}

int q_list_build_requests_job(q_req *r, const ProtobufCMessage *req_msg, q_job *j, dbld_status *st)
{
    const Databuild__V1__ListBuildsRequest *req = (const Databuild__V1__ListBuildsRequest *)req_msg;
    int *icodes;
    char **codes;
    int rc = parse_codes(r->a, req, &icodes, &codes, st); /* a bad status fails here, at once */
    if (rc) return rc;
    j->worker = list_on_worker;
    /* built_partition and run_jobs read job_runs, which the index does not hold */
    if (!req->n_built_partition && !req->n_run_jobs) j->fresh_worker = list_fresh_on_worker;
    return 0;
}

int q_list_build_requests(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                          dbld_status *st)
{
    const Databuild__V1__ListBuildsRequest *req = (const Databuild__V1__ListBuildsRequest *)req_msg;
    dbld_arena *a = r->a;
    int *icodes;
    char **codes;
    int rc = parse_codes(a, req, &icodes, &codes, st);
    if (rc) return rc;
    int64_t cursor = started_until(req);
    const char *vals[N_LIST_FILTERS] = {
        q_text_array(a, codes, req->n_build_status),
        q_text_array(a, req->built_partition, req->n_built_partition),
        q_text_array(a, req->output_partition, req->n_output_partition),
        q_text_array(a, req->run_jobs, req->n_run_jobs),
        q_text_array(a, req->triggering_want_ids, req->n_triggering_want_ids),
        *req->comment_contains ? req->comment_contains : NULL,
    };
    const char *p[N_LIST_FILTERS];
    int np = 0;
    char *sql = dbld_arena_printf(a, "SELECT %s FROM build_requests b WHERE", Q_BUILD_COLS);
    for (size_t i = 0; i < N_LIST_FILTERS; i++) {
        if (!vals[i]) continue;
        p[np++] = vals[i];
        sql = dbld_arena_printf(a, "%s %s AND", sql, dbld_arena_printf(a, list_filters[i], np));
    }
    q_pager pg = {.sql = dbld_arena_printf(a, "%s %%s", sql),
                  .n = np,
                  .params = p,
                  .ts_col = "b.created_ns",
                  .key_col = "b.build_request_id",
                  .ts_field = 5,
                  .desc = 1,
                  .cursor = cursor,
                  .limit = Q_PAGE};
    dbld_res *res;
    int n, more;
    rc = q_page(r, &pg, &res, &n, &more, st);
    if (rc) return rc;
    Databuild__V1__ListBuildsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_builds_response__descriptor);
    rc = q_build_summaries(r, res, n, &resp->builds, st);
    resp->n_builds = (size_t)n;
    resp->min_started = n ? (uint64_t)dbld_res_i64(res, n - 1, 5) : 0;
    resp->has_more = more;
    dbld_res_free(res);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

/* The build_requests row of id (NOT_FOUND when there is none). *res freed by caller. */
static int load_build(q_req *r, const char *id, dbld_res **res, dbld_status *st)
{
    if (!*id) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "build_id is required");
    const char *p[] = {id};
    int rc = q_exec_prepared(r, "q_build_row",
                             "SELECT " Q_BUILD_COLS
                             " FROM build_requests b WHERE b.build_request_id = $1",
                             1, p, res, st);
    if (rc) return rc;
    if (dbld_res_rows(*res) == 0) {
        dbld_res_free(*res);
        *res = NULL;
        return dbld_status_set(st, DBLD_NOT_FOUND, "no build request \"%.200s\"", id);
    }
    return 0;
}

/* ---- the fold of a build's events ---- */

static size_t part(q_build_fold *f, dbld_arena *a, const char *ref)
{
    int added;
    size_t before = f->n_parts;
    size_t i = dbld_strmap_index(&f->parts, ref, &f->n_parts, &added);
    if (added) {
        if (before == f->cap_parts) {
            size_t cap = f->cap_parts ? 2 * f->cap_parts : 32;
            const char **refs = dbld_arena_alloc(a, cap * sizeof *refs);
            int *status = dbld_arena_alloc(a, cap * sizeof *status);
            if (before) {
                memcpy(refs, f->part_refs, before * sizeof *refs);
                memcpy(status, f->part_status, before * sizeof *status);
            }
            f->part_refs = refs;
            f->part_status = status;
            f->cap_parts = cap;
        }
        f->part_refs[i] = ref;
        f->part_status[i] = DATABUILD__V1__PARTITION_STATUS__PARTITION_UNKNOWN;
    }
    return i;
}

static void mention(q_build_fold *f, dbld_arena *a, const char *ref, int status, int only_upgrade)
{
    if (!ref || !*ref) return;
    size_t i = part(f, a, ref);
    int cur = f->part_status[i];
    if (!only_upgrade || cur == DATABUILD__V1__PARTITION_STATUS__PARTITION_UNKNOWN ||
        cur == DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED)
        f->part_status[i] = status;
}

static void fold_job(q_build_fold *f, dbld_arena *a, const Databuild__V1__JobEvent *j, int64_t idx)
{
    if (!j->job_run_id || !*j->job_run_id) return;
    int added;
    size_t before = f->n_runs;
    size_t i = dbld_strmap_index(&f->runs_by_id, j->job_run_id, &f->n_runs, &added);
    if (added) {
        if (before == f->cap_runs) {
            size_t cap = f->cap_runs ? 2 * f->cap_runs : 16;
            q_fold_run *runs = dbld_arena_alloc(a, cap * sizeof *runs);
            if (before) memcpy(runs, f->runs, before * sizeof *runs);
            f->runs = runs;
            f->cap_runs = cap;
        }
        memset(&f->runs[i], 0, sizeof f->runs[i]);
        f->runs[i].id = j->job_run_id;
        f->runs[i].label = "";
    }
    q_fold_run *run = &f->runs[i];
    if (j->job_label && j->job_label->label && *j->job_label->label)
        run->label = j->job_label->label;
    if (j->n_target_partitions) {
        run->targets = dbld_arena_alloc(a, j->n_target_partitions * sizeof *run->targets);
        run->n_targets = 0;
        for (size_t k = 0; k < j->n_target_partitions; k++)
            if (j->target_partitions[k] && j->target_partitions[k]->str)
                run->targets[run->n_targets++] = j->target_partitions[k]->str;
    }
    run->status = j->status_code;
    run->last_idx = idx;
    if (j->status_code == DATABUILD__V1__JOB_STATUS__JOB_SKIPPED)
        for (size_t k = 0; k < run->n_targets; k++)
            mention(f, a, run->targets[k], DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, 0);
}

static void fold_graph(q_build_fold *f, dbld_arena *a, Databuild__V1__JobGraph *g)
{
    if (!g) return;
    f->graph = g;
    for (size_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i])
            mention(f, a, g->outputs[i]->str, DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED,
                    1);
    for (size_t i = 0; i < g->n_nodes; i++) {
        const Databuild__V1__Task *t = g->nodes[i];
        if (!t || !t->config) continue;
        for (size_t k = 0; k < t->config->n_outputs; k++)
            if (t->config->outputs[k])
                mention(f, a, t->config->outputs[k]->str,
                        DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED, 1);
    }
}

static void fold_event(q_build_fold *f, dbld_arena *a, const Databuild__V1__BuildEvent *ev,
                       int64_t idx)
{
    switch (ev->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT: {
        const Databuild__V1__BuildRequestEvent *b = ev->build_request_event;
        for (size_t i = 0; i < b->n_requested_partitions; i++)
            if (b->requested_partitions[i])
                mention(f, a, b->requested_partitions[i]->str,
                        DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED, 1);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT:
        fold_graph(f, a, ev->job_graph_event->job_graph);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT: {
        const Databuild__V1__PartitionEvent *pe = ev->partition_event;
        if (pe->partition_ref) mention(f, a, pe->partition_ref->str, pe->status_code, 0);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT:
        if (ev->delegation_event->partition_ref)
            mention(f, a, ev->delegation_event->partition_ref->str,
                    DATABUILD__V1__PARTITION_STATUS__PARTITION_DELEGATED, 0);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        fold_job(f, a, ev->job_event, idx);
        break;
    default:
        break;
    }
}

int q_build_fold_load(q_req *r, const char *build_id, q_build_fold *f, dbld_status *st)
{
    dbld_arena *a = r->a;
    memset(f, 0, sizeof *f);
    dbld_strmap_init(&f->parts, a);
    dbld_strmap_init(&f->runs_by_id, a);
    const char *p[] = {build_id};
    dbld_res *res = NULL;
    int rc =
        q_exec_prepared(r, "q_build_events",
                        "SELECT idx, payload FROM events WHERE build_request_id = $1"
                        " AND kind IN (" DBLD_SQL_KIND_BUILD_REQUEST ", " DBLD_SQL_KIND_PARTITION
                        ", " DBLD_SQL_KIND_JOB ", " DBLD_SQL_KIND_DELEGATION
                        ", " DBLD_SQL_KIND_JOB_GRAPH ") ORDER BY idx",
                        1, p, &res, st);
    if (rc) return rc;
    int n = dbld_res_rows(res);
    for (int i = 0; i < n && !rc; i++) {
        Databuild__V1__BuildEvent *ev = q_decode_event(a, dbld_res_get(res, i, 1));
        if (!ev)
            rc = dbld_status_set(st, DBLD_DATA_LOSS, "stored event %s does not decode",
                                 dbld_res_get(res, i, 0));
        else
            fold_event(f, a, ev, dbld_res_i64(res, i, 0));
    }
    dbld_res_free(res);
    if (!rc && n == 0)
        rc =
            dbld_status_set(st, DBLD_NOT_FOUND, "no events for build request \"%.200s\"", build_id);
    return rc;
}

int q_get_build_summary(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                        dbld_status *st)
{
    const Databuild__V1__BuildSummaryRequest *req =
        (const Databuild__V1__BuildSummaryRequest *)req_msg;
    dbld_arena *a = r->a;
    dbld_res *row = NULL;
    int rc = load_build(r, req->build_id, &row, st);
    if (rc) return rc;
    Databuild__V1__BuildSummary **sums = NULL;
    rc = q_build_summaries(r, row, 1, &sums, st);
    dbld_res_free(row);
    if (rc) return rc;
    q_build_fold f;
    rc = q_build_fold_load(r, req->build_id, &f, st);
    if (rc == DBLD_NOT_FOUND) /* a row without events: nothing to fold */
        rc = 0;
    if (rc) return rc;
    Databuild__V1__BuildSummaryResponse *resp =
        dbld_arena_msg(a, &databuild__v1__build_summary_response__descriptor);
    resp->build_id = req->build_id;
    resp->summary = sums[0];
    resp->status = sums[0]->status->code;
    resp->partitions = dbld_arena_alloc(a, (f.n_parts + 1) * sizeof *resp->partitions);
    for (size_t i = 0; i < f.n_parts; i++) {
        Databuild__V1__PartitionBuildStatus *pb =
            dbld_arena_msg(a, &databuild__v1__partition_build_status__descriptor);
        pb->ref = q_ref(a, f.part_refs[i]);
        pb->status = f.part_status[i];
        resp->partitions[resp->n_partitions++] = pb;
    }
    *resp_msg = &resp->base;
    return 0;
}

int q_get_build_mermaid(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                        dbld_status *st)
{
    const Databuild__V1__BuildSummaryRequest *req =
        (const Databuild__V1__BuildSummaryRequest *)req_msg;
    dbld_res *row = NULL;
    int rc = load_build(r, req->build_id, &row, st);
    dbld_res_free(row);
    if (rc) return rc;
    q_build_fold f;
    rc = q_build_fold_load(r, req->build_id, &f, st);
    if (rc == DBLD_NOT_FOUND) rc = 0;
    if (rc) return rc;
    Databuild__V1__BuildMermaidResponse *resp =
        dbld_arena_msg(r->a, &databuild__v1__build_mermaid_response__descriptor);
    resp->build_id = req->build_id;
    rc = q_mermaid(r, req->build_id, &f, &resp->mermaid, st);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}
