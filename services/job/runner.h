/* runner.h - the job service's engine: runs job binaries for configure and
 * exec, with concurrency slots, timeouts, cancellation and the wrapper log.
 *
 * Exec processes are limited to job.max_concurrent_runs at once; further runs
 * queue (FIFO) for a slot until the caller's deadline. Every run is known by
 * its job_run_id while it waits or runs, so Cancel can reach it. Timeout and
 * cancel SIGTERM the run's process group and SIGKILL it after
 * job.kill_grace_ms. Shutdown stops every run the same way (with a shorter
 * grace) and reports it as a transient failure, so a coordinator retries it
 * elsewhere.
 *
 * Every env entry of a task (task.config.env) and of what a config step
 * returns must pass the policy of dbld/jobenv.h: Run refuses the task with
 * INVALID_ARGUMENT, Configure fails with FAILED_PRECONDITION, both naming
 * the variable and the rule.
 *
 * Callers pass their RPC call as a jr_ctx: a run whose caller went away (client
 * cancelled, deadline passed) is stopped too.
 */
#ifndef JOB_RUNNER_H
#define JOB_RUNNER_H

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/proc.h"
#include "dbld/status.h"
#include "jobs.h"
#include "orphans.h"

#include <stdint.h>

typedef struct jr_engine jr_engine;

/* The caller's deadline and cancellation (both may be NULL). */
typedef struct jr_ctx {
    int (*cancelled)(void *arg);        /* 1 once the caller is gone */
    int64_t (*remaining_ms)(void *arg); /* ms to the caller's deadline (INT64_MAX: none) */
    /* exec runs only, may be NULL: the job process was spawned (pid), after
     * waiting waited_ms for a slot; called on jr_run()'s thread */
    void (*started)(void *arg, int pid, int64_t start_ns, int64_t waited_ms);
    void *arg;
    /* RunJobRequest.return_logs: a short run's job log comes back in
     * RunJobResponse.log_entries (joblog.h, jl_close_hand_back) unless the
     * caller has gone away; the caller stores it (jr_store_logs() when the
     * answer could not be sent). */
    int return_logs;
} jr_ctx;

/* cfg, orphans (may be NULL: children's process groups are not recorded)
 * and run_as (may be NULL: children keep our credentials; else they run as
 * that user, with its HOME, USER and LOGNAME) must outlive the engine.
 * Caller frees with jr_engine_destroy(). */
jr_engine *jr_engine_create(const dbld_config *cfg, orphan_reg *orphans,
                            const dbld_proc_user *run_as, dbld_status *st);
/* Begin shutdown: stop every waiting and running job (SIGTERM, SIGKILL after
 * kill_ms) and refuse new runs with UNAVAILABLE. Returns at once. */
void jr_engine_shutdown(jr_engine *e, int kill_ms);
/* After every call has returned. */
void jr_engine_destroy(jr_engine *e);

const job_table *jr_jobs(const jr_engine *e);

/* `command... config REF...`: the parsed JobConfigureResponse (in arena a).
 * Errors name the job, the refs and the cause with the stderr tail:
 * INTERNAL (could not start), FAILED_PRECONDITION (non-zero exit, invalid
 * JSON, a ref no config produces, an env entry the policy refuses),
 * DEADLINE_EXCEEDED (timeout), CANCELLED,
 * UNAVAILABLE (shutting down). */
int jr_configure(jr_engine *e, const jr_ctx *ctx, const job_entry *job, const char *const *refs,
                 size_t n, dbld_arena *a, Databuild__V1__JobConfigureResponse **out,
                 dbld_status *st);

/* Run one configured task as job run job_run_id: `command... exec ARGS...`.
 * Returns 0 with *out (in arena a) for every outcome of the job itself
 * (COMPLETED, FAILED with a failure kind, CANCELLED); an error only when the
 * run did not take place: INVALID_ARGUMENT (an env entry the policy
 * refuses), ALREADY_EXISTS (that job_run_id is active),
 * DEADLINE_EXCEEDED (no slot before the caller's deadline), CANCELLED (the
 * caller went away while waiting), UNAVAILABLE (shutting down). */
/* Store r->log_entries with JobLogs/Append ourselves: the answer that handed
 * them back could not be sent. */
void jr_store_logs(jr_engine *e, const Databuild__V1__RunJobResponse *r);

int jr_run(jr_engine *e, const jr_ctx *ctx, const job_entry *job, const char *job_run_id,
           const char *build_request_id, const Databuild__V1__Task *task, dbld_arena *a,
           Databuild__V1__RunJobResponse **out, dbld_status *st);

/* Cancel the active run job_run_id (waiting or running). Returns 1 if found. */
int jr_cancel(jr_engine *e, const char *job_run_id, const char *reason);
/* 1 when job_run_id is active here (waiting for a slot or running). */
int jr_known(jr_engine *e, const char *job_run_id);

#endif
