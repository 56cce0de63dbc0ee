/* job_rpc.h - the job service's RPC tables; user data is the jr_engine.
 *   databuild.v1.JobConfigure  Configure (seed)
 *   databuild.v1.JobExecute    Execute (seed): configure, then exec each config
 *   databuild.v1.JobRunner     Run / Cancel of one configured task
 */
#ifndef JOB_JOB_RPC_H
#define JOB_JOB_RPC_H

#include "dbld/rpc.h"

extern const dbld_service job_configure_service;
extern const dbld_service job_execute_service;
extern const dbld_service job_runner_service;

#endif
