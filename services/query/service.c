/* service.c - the method tables: databuild.v1.DataBuildService (the seed's
 * 17 RPCs) and databuild.v1.QueryOps (databuild_ext.proto). Every handler is
 * q_run() around the RPC body, which gets a q_req (arena + lazily borrowed
 * read-only connection). */
#include "query.h"

#include "databuild_process.pb-c.h"

#define HANDLER(fn, op)                                                                            \
    static int h_##fn(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,       \
                      dbld_status *st)                                                             \
    {                                                                                              \
        return q_run(call, op, q_##fn, req, resp, st);                                             \
    }

HANDLER(get_build_events, "get build events")
HANDLER(batched, "answer the batch")
HANDLER(get_build_summary, "get the build summary")
HANDLER(get_build_mermaid, "draw the build graph")
HANDLER(list_jobs, "list jobs")
HANDLER(get_job_summary, "get the job summary")
HANDLER(list_job_runs, "list job runs")
HANDLER(get_job_run_summary, "get the job run summary")
HANDLER(list_wants, "list wants")
HANDLER(get_want_summary, "get the want summary")
HANDLER(put_wants, "put wants")
HANDLER(list_taints, "list taints")
HANDLER(get_taint_summary, "get the taint summary")
HANDLER(put_taints, "put taints")
HANDLER(get_job_logs, "get job logs")
HANDLER(cancel_build, "cancel the build")
HANDLER(get_build_execution, "get the build execution")
HANDLER(cancel_job_run, "cancel the job run")
HANDLER(list_processes, "list processes")
HANDLER(get_process, "get the process")
HANDLER(update_process_settings, "update process settings")
HANDLER(run_process_now, "run the process")
HANDLER(get_operation, "get the operation")

/* One pipeline each: answered by the reactor, no worker thread waits (q_job). */
#define JOB_HANDLER(fn, op)                                                                        \
    static int h_##fn(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,       \
                      dbld_status *st)                                                             \
    {                                                                                              \
        return q_job_submit(call, op, q_##fn, req, resp, st);                                      \
    }

JOB_HANDLER(list_partitions, "list partitions")
JOB_HANDLER(list_build_requests_job, "list build requests")
JOB_HANDLER(get_partitions_summary, "get the partition summary")

#define SVC "/databuild.v1.DataBuildService/"
#define M_FLAGS(name, req, resp, fn, flags)                                                        \
    {                                                                                              \
        SVC name, &databuild__v1__##req##__descriptor, &databuild__v1__##resp##__descriptor,       \
            h_##fn, NULL, flags                                                                    \
    }
#define M(name, req, resp, fn) M_FLAGS(name, req, resp, fn, 0)

static const dbld_method methods[] = {
    M("GetBuildEvents", list_build_events_request, list_build_events_response, get_build_events),
    M("Batched", batched_request, batched_response, batched),
    M_FLAGS("ListBuildRequests", list_builds_request, list_builds_response, list_build_requests_job,
            DBLD_METHOD_NONBLOCKING),
    M("GetBuildSummary", build_summary_request, build_summary_response, get_build_summary),
    M("GetBuildMermaid", build_summary_request, build_mermaid_response, get_build_mermaid),
    M_FLAGS("ListPartitions", list_partitions_request, list_partitions_response, list_partitions,
            DBLD_METHOD_NONBLOCKING),
    M_FLAGS("GetPartitionsSummary", partition_summary_request, partition_summary_response,
            get_partitions_summary, DBLD_METHOD_NONBLOCKING),
    M("ListJobs", list_jobs_request, list_jobs_response, list_jobs),
    M("GetJobSummary", job_summary_request, job_summary_response, get_job_summary),
    M("ListJobRuns", list_job_runs_request, list_job_runs_response, list_job_runs),
    M("GetJobRunSummary", job_run_summary_request, job_run_summary_response, get_job_run_summary),
    M("ListWants", list_wants_request, list_wants_response, list_wants),
    M("GetWantSummary", want_summary_request, want_summary_response, get_want_summary),
    M("PutWants", put_wants_request, put_wants_response, put_wants),
    M("ListTaints", list_taints_request, list_taints_response, list_taints),
    M("GetTaintSummary", taint_summary_request, taint_summary_response, get_taint_summary),
    M("PutTaints", put_taints_request, put_taints_response, put_taints),
};

const dbld_service q_databuild_service = {
    .name = "databuild.v1.DataBuildService",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};

static const dbld_method ops_methods[] = {
    {"/databuild.v1.QueryOps/GetJobLogs", &databuild__v1__job_logs_request__descriptor,
     &databuild__v1__job_logs_response__descriptor, h_get_job_logs, NULL},
    {"/databuild.v1.QueryOps/CancelBuild", &databuild__v1__cancel_build_request__descriptor,
     &databuild__v1__cancel_build_response__descriptor, h_cancel_build, NULL},
    {"/databuild.v1.QueryOps/GetBuildExecution",
     &databuild__v1__build_execution_request__descriptor,
     &databuild__v1__build_execution_response__descriptor, h_get_build_execution, NULL},
    {"/databuild.v1.QueryOps/CancelJobRun", &databuild__v1__job_run_cancel_request__descriptor,
     &databuild__v1__job_run_cancel_response__descriptor, h_cancel_job_run, NULL},
};

const dbld_service q_ops_service = {
    .name = "databuild.v1.QueryOps",
    .methods = ops_methods,
    .n_methods = sizeof ops_methods / sizeof ops_methods[0],
};

#define PSVC "/databuild.v1.Processes/"
#define P(name, req, resp, fn)                                                                     \
    {                                                                                              \
        PSVC name, &databuild__v1__##req##__descriptor, &databuild__v1__##resp##__descriptor,      \
            h_##fn, NULL, 0                                                                        \
    }

static const dbld_method processes_methods[] = {
    P("ListProcesses", list_processes_request, list_processes_response, list_processes),
    P("GetProcess", get_process_request, get_process_response, get_process),
    P("UpdateProcessSettings", update_process_settings_request, process, update_process_settings),
    P("RunProcessNow", run_process_now_request, work_response, run_process_now),
    P("GetOperation", get_operation_request, work_response, get_operation),
};

const dbld_service q_processes_service = {
    .name = "databuild.v1.Processes",
    .methods = processes_methods,
    .n_methods = sizeof processes_methods / sizeof processes_methods[0],
};
