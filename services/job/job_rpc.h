/* job_rpc.h - the job service's RPC tables; user data is the jr_engine.
 *   databuild.v1.JobConfigure  Configure (seed)
 *   databuild.v1.JobExecute    Execute (seed): refused (UNIMPLEMENTED), see README
 *   databuild.v1.JobRunner     Run / Cancel of one configured task
 */
#ifndef JOB_JOB_RPC_H
#define JOB_JOB_RPC_H

#include "databuild_ext.pb-c.h"
#include "dbld/rpc.h"
#include "jobs.h"

extern const dbld_service job_configure_service;
extern const dbld_service job_execute_service;
extern const dbld_service job_runner_service;

/* What Run and RunStreamed check before anything runs: job_run_id, the
 * task's label (a job of the table: *job) and at least one output. 0, or
 * INVALID_ARGUMENT / NOT_FOUND naming the field. */
int job_run_request_check(const job_table *jobs, const Databuild__V1__RunJobRequest *req,
                          const job_entry **job, dbld_status *st);

#endif
