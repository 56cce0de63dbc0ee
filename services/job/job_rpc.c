/* job_rpc.c - request validation and translation for the job service's RPCs;
 * the engine (runner.c) does the work. */
#include "job_rpc.h"
#include "databuild_ext.pb-c.h"
#include "dbld/util.h"
#include "runner.h"

#include <string.h>

static int ctx_cancelled(void *arg)
{
    return dbld_call_cancelled(arg);
}

static int64_t ctx_remaining(void *arg)
{
    return dbld_call_remaining_ms(arg);
}

static jr_ctx call_ctx(dbld_call *call)
{
    return (jr_ctx){.cancelled = ctx_cancelled, .remaining_ms = ctx_remaining, .arg = call};
}

static const char **ref_strs(dbld_arena *a, Databuild__V1__PartitionRef *const *refs, size_t n)
{
    const char **s = dbld_arena_alloc(a, (n + 1) * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i] = refs[i] && refs[i]->str ? refs[i]->str : "";
    return s;
}

/* Resolve the job of the requested outputs and configure them. */
static int configure_outputs(dbld_call *call, Databuild__V1__PartitionRef *const *outputs, size_t n,
                             const job_entry **job, Databuild__V1__JobConfigureResponse **resp,
                             dbld_status *st)
{
    jr_engine *e = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    const char **refs = ref_strs(a, outputs, n);
    int rc = job_resolve(jr_jobs(e), refs, n, job, st);
    if (rc) return rc;
    jr_ctx ctx = call_ctx(call);
    return jr_configure(e, &ctx, *job, refs, n, a, resp, st);
}

static int configure(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                     dbld_status *st)
{
    const Databuild__V1__JobConfigureRequest *req =
        (const Databuild__V1__JobConfigureRequest *)req_msg;
    const job_entry *job;
    Databuild__V1__JobConfigureResponse *resp;
    int rc = configure_outputs(call, req->outputs, req->n_outputs, &job, &resp, st);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

/* Seed Execute: refused. A run through it would take no partition claims
 * and have no build request, so it could overlap a build of the same
 * partitions, and it would append no JobEvents or execution state, so it
 * would be missing from the query service's job runs. The claims belong to
 * build requests with leases (the graph service's); the job service cannot
 * take them safely on its own. So Execute answers UNIMPLEMENTED before it
 * configures or runs anything, naming what to use instead. */
static int execute(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    (void)call;
    (void)req_msg;
    (void)resp_msg;
    return dbld_status_set(st, DBLD_UNIMPLEMENTED,
                           "JobExecute.Execute is refused: a run through it would take no "
                           "partition claims and record no JobEvents (it could overlap a build of "
                           "the same partitions and be missing from the event log); build "
                           "partitions with GraphBuilder.Submit or GraphBuilder.Build "
                           "(databuild build REF)");
}

int job_run_request_check(const job_table *jobs, const Databuild__V1__RunJobRequest *req,
                          const job_entry **job, dbld_status *st)
{
    if (!req->job_run_id || !*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    if (!req->task || !req->task->job || !req->task->job->label || !*req->task->job->label)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "task.job.label is required");
    if (!req->task->config || req->task->config->n_outputs == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "task.config must name at least one output");
    *job = job_find(jobs, req->task->job->label);
    if (!*job)
        return dbld_status_set(st, DBLD_NOT_FOUND, "unknown job label \"%s\"",
                               req->task->job->label);
    return 0;
}

/* Validate a RunJobRequest and run it (Run and RunStreamed). */
static int run_checked(dbld_call *call, const jr_ctx *ctx, const Databuild__V1__RunJobRequest *req,
                       Databuild__V1__RunJobResponse **resp, dbld_status *st)
{
    jr_engine *e = dbld_call_user(call);
    const job_entry *job;
    int rc = job_run_request_check(jr_jobs(e), req, &job, st);
    if (rc) return rc;
    return jr_run(e, ctx, job, req->job_run_id, req->build_request_id, req->task,
                  dbld_call_arena(call), resp, st);
}

static int run(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
               dbld_status *st)
{
    const Databuild__V1__RunJobRequest *req = (const Databuild__V1__RunJobRequest *)req_msg;
    jr_ctx ctx = call_ctx(call);
    ctx.return_logs = req->return_logs;
    Databuild__V1__RunJobResponse *resp;
    int rc = run_checked(call, &ctx, req, &resp, st);
    if (rc) return rc;
    *resp_msg = &resp->base;
    return 0;
}

/* RunStreamed: `started` as soon as the process is spawned, then `result`. */
static void stream_started(void *arg, int pid, int64_t start_ns, int64_t waited_ms)
{
    dbld_call *call = arg;
    Databuild__V1__RunJobStarted started = DATABUILD__V1__RUN_JOB_STARTED__INIT;
    started.pid = pid;
    started.start_time_ns = start_ns;
    started.waited_ms = waited_ms;
    Databuild__V1__RunJobUpdate u = DATABUILD__V1__RUN_JOB_UPDATE__INIT;
    u.update_case = DATABUILD__V1__RUN_JOB_UPDATE__UPDATE_STARTED;
    u.started = &started;
    dbld_status st;
    (void)dbld_call_send(call, &u.base, &st); /* a caller gone away cancels the run anyway */
}

static int run_streamed(dbld_call *call, const ProtobufCMessage *req_msg, dbld_status *st)
{
    const Databuild__V1__RunJobRequest *req = (const Databuild__V1__RunJobRequest *)req_msg;
    jr_ctx ctx = call_ctx(call);
    ctx.started = stream_started;
    ctx.return_logs = req->return_logs;
    Databuild__V1__RunJobResponse *resp;
    int rc = run_checked(call, &ctx, req, &resp, st);
    if (rc) return rc;
    Databuild__V1__RunJobUpdate *u =
        dbld_arena_msg(dbld_call_arena(call), &databuild__v1__run_job_update__descriptor);
    u->update_case = DATABUILD__V1__RUN_JOB_UPDATE__UPDATE_RESULT;
    u->result = resp;
    rc = dbld_call_send_last(call, &u->base, st);      /* with the status: one batch */
    if (rc) jr_store_logs(dbld_call_user(call), resp); /* nobody took the handed-back log */
    return rc;
}

static int cancel(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    jr_engine *e = dbld_call_user(call);
    const Databuild__V1__CancelJobRunRequest *req =
        (const Databuild__V1__CancelJobRunRequest *)req_msg;
    if (!req->job_run_id || !*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "job_run_id is required");
    Databuild__V1__CancelJobRunResponse *resp =
        dbld_arena_msg(dbld_call_arena(call), &databuild__v1__cancel_job_run_response__descriptor);
    resp->found = jr_cancel(e, req->job_run_id, req->reason);
    *resp_msg = &resp->base;
    return 0;
}

static int known_runs(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                      dbld_status *st)
{
    jr_engine *e = dbld_call_user(call);
    const Databuild__V1__KnownRunsRequest *req = (const Databuild__V1__KnownRunsRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    Databuild__V1__KnownRunsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__known_runs_response__descriptor);
    resp->known = dbld_arena_alloc(a, (req->n_job_run_ids + 1) * sizeof *resp->known);
    for (size_t i = 0; i < req->n_job_run_ids; i++)
        if (*req->job_run_ids[i] && jr_known(e, req->job_run_ids[i]))
            resp->known[resp->n_known++] = req->job_run_ids[i];
    (void)st;
    *resp_msg = &resp->base;
    return 0;
}

static const dbld_method configure_methods[] = {
    {"/databuild.v1.JobConfigure/Configure", &databuild__v1__job_configure_request__descriptor,
     &databuild__v1__job_configure_response__descriptor, configure, NULL},
};
static const dbld_method execute_methods[] = {
    {"/databuild.v1.JobExecute/Execute", &databuild__v1__job_execute_request__descriptor,
     &databuild__v1__job_execute_response__descriptor, execute, NULL},
};
static const dbld_method runner_methods[] = {
    {"/databuild.v1.JobRunner/Run", &databuild__v1__run_job_request__descriptor,
     &databuild__v1__run_job_response__descriptor, run, NULL},
    {"/databuild.v1.JobRunner/Cancel", &databuild__v1__cancel_job_run_request__descriptor,
     &databuild__v1__cancel_job_run_response__descriptor, cancel, NULL,
     DBLD_METHOD_NONBLOCKING}, /* sets a flag and wakes the run: never queued behind workers */
    {"/databuild.v1.JobRunner/RunStreamed", &databuild__v1__run_job_request__descriptor,
     &databuild__v1__run_job_update__descriptor, NULL, run_streamed},
    {"/databuild.v1.JobRunner/KnownRuns", &databuild__v1__known_runs_request__descriptor,
     &databuild__v1__known_runs_response__descriptor, known_runs, NULL},
};

const dbld_service job_configure_service = {
    .name = "databuild.v1.JobConfigure",
    .methods = configure_methods,
    .n_methods = 1,
};
const dbld_service job_execute_service = {
    .name = "databuild.v1.JobExecute",
    .methods = execute_methods,
    .n_methods = 1,
};
const dbld_service job_runner_service = {
    .name = "databuild.v1.JobRunner",
    .methods = runner_methods,
    .n_methods = sizeof runner_methods / sizeof runner_methods[0],
};
