/* reaper.c - run_reaper: ends job runs whose owner is gone.
 *
 * A job run stays SCHEDULED or RUNNING in the projections until its
 * coordinator appends how it ended. When that coordinator is gone for good -
 * the run's build request ended without it, was never recorded, or its lease
 * expired and nobody adopted it for lost_after_ms - nothing else will, and
 * the run would show RUNNING forever. Each pass asks the event log for such
 * runs (ProcessStore.LostRuns: not updated for lost_after_ms, default 10
 * minutes) and appends, per run, a JobEvent FAILED "lost: <why>; ended by
 * run_reaper" and a PartitionEvent FAILED for each of its targets still
 * BUILDING by that run. No work items: the runs are found afresh each pass.
 * A run of a build that is merely slow keeps its coordinator's lease renewed
 * and is never touched.
 *
 * Before ending them, the pass asks every job service of shared.peers.job
 * which of the candidates it is still running or has queued
 * (JobRunner.KnownRuns, read-only, one call per job service per pass): a run
 * a job service knows is left alone (stat runs_still_known) - its process
 * is alive, and its result may still be recorded by a coordinator that
 * adopts the build. A job service that does not answer within 5 s counts as
 * not knowing the run (it cannot report the run's end either; the pass
 * notes the error), so a job service gone for good does not keep its runs
 * RUNNING forever.
 *
 * Settings: lost_after_ms (600000).
 */
#include "processes.h"

#include "dbld/eventlog_client.h"
#include "dbld/process.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <string.h>

static Databuild__V1__PartitionRef **refs_of(dbld_arena *a, char **strs, size_t n)
{
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++) {
        out[i] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        out[i]->str = strs[i];
    }
    return out;
}

/* JobEvent FAILED for l, then PartitionEvent FAILED per building target. */
static size_t end_events(dbld_arena *a, const Databuild__V1__LostRun *l,
                         Databuild__V1__BuildEvent **out)
{
    const char *msg = dbld_arena_printf(a, "lost: %s; ended by run_reaper", l->why);
    Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    e->build_request_id = l->build_request_id;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    Databuild__V1__JobEvent *j = dbld_arena_msg(a, &databuild__v1__job_event__descriptor);
    j->job_run_id = l->job_run_id;
    j->job_label = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
    j->job_label->label = l->job_label;
    j->target_partitions = refs_of(a, l->targets, l->n_targets);
    j->n_target_partitions = l->n_targets;
    j->status_code = DATABUILD__V1__JOB_STATUS__JOB_FAILED;
    j->status_name = "JOB_FAILED";
    j->message = (char *)msg;
    e->job_event = j;
    size_t n = 0;
    out[n++] = e;
    for (size_t i = 0; i < l->n_building; i++) {
        Databuild__V1__BuildEvent *pe = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
        pe->build_request_id = l->build_request_id;
        pe->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
        Databuild__V1__PartitionEvent *p =
            dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
        p->partition_ref = refs_of(a, &l->building[i], 1)[0];
        p->status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED;
        p->status_name = "PARTITION_FAILED";
        p->message = (char *)msg;
        p->job_run_id = l->job_run_id;
        pe->partition_event = p;
        out[n++] = pe;
    }
    return n;
}

/* Mark in still[] the runs of resp that some job service knows. */
static void ask_job_services(gs_run *r, const Databuild__V1__LostRunsResponse *resp, int *still)
{
    gs_service *s = gsr_service(r);
    dbld_arena *a = gsr_arena(r);
    Databuild__V1__KnownRunsRequest req = DATABUILD__V1__KNOWN_RUNS_REQUEST__INIT;
    req.job_run_ids = dbld_arena_alloc(a, (resp->n_runs + 1) * sizeof *req.job_run_ids);
    for (size_t i = 0; i < resp->n_runs; i++)
        req.job_run_ids[req.n_job_run_ids++] = resp->runs[i]->job_run_id;
    for (size_t ep = 0; ep < s->cfg->shared.peers.n_job; ep++) {
        const char *addr = gs_ep_addr(s, (int)ep);
        Databuild__V1__KnownRunsResponse *kr = NULL;
        dbld_status kst;
        if (dbld_client_unary(dbld_client_get(addr), "/databuild.v1.JobRunner/KnownRuns", &req.base,
                              &databuild__v1__known_runs_response__descriptor,
                              dbld_arena_allocator(a), (ProtobufCMessage **)&kr, 5000, 0,
                              &kst) != 0) {
            gsr_error(r, "job service %s did not say which runs it knows: %s", addr, kst.msg);
            continue;
        }
        for (size_t k = 0; k < kr->n_known; k++)
            for (size_t i = 0; i < resp->n_runs; i++)
                if (strcmp(kr->known[k], resp->runs[i]->job_run_id) == 0) still[i] = 1;
    }
}

static int run(gs_run *r, dbld_status *st)
{
    dbld_arena *a = gsr_arena(r);
    Databuild__V1__LostRunsRequest req = DATABUILD__V1__LOST_RUNS_REQUEST__INIT;
    req.grace_ms = gsr_setting_int(r, "lost_after_ms", 600000);
    Databuild__V1__LostRunsResponse *resp = NULL;
    int rc = gsr_store_call(r, "LostRuns", &req.base,
                            &databuild__v1__lost_runs_response__descriptor, &resp, st);
    if (rc) return rc;
    gs_service *s = gsr_service(r);
    int *still = dbld_arena_alloc(a, (resp->n_runs + 1) * sizeof *still);
    memset(still, 0, (resp->n_runs + 1) * sizeof *still);
    if (resp->n_runs) ask_job_services(r, resp, still);
    for (size_t i = 0; i < resp->n_runs && gsr_lease_ok(r); i++) {
        const Databuild__V1__LostRun *l = resp->runs[i];
        if (still[i]) {
            gsr_stat(r, "runs_still_known", 1);
            continue;
        }
        Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, (l->n_building + 1) * sizeof *evs);
        size_t n = end_events(a, l, evs);
        dbld_status ast;
        if (dbld_eventlog_append(s->eventlog, evs, n, a, NULL, s->el_timeout_ms, &ast) != 0) {
            gsr_error(r, "could not end lost run %s: %s", l->job_run_id, ast.msg);
            continue;
        }
        gsr_stat(r, "runs_ended", 1);
        gsr_changed(r);
    }
    return 0;
}

const gs_proc_def gs_run_reaper = {
    .name = DBLD_PROC_RUN_REAPER,
    .run = run,
};
