/* test_build_execution.c - the execution state and log of real builds (issue
 * 12, after LUCI CV's tryjob ExecutionState): event log, job, graph and query
 * processes and the test job tests/jobs/graph_job.py.
 *
 * - a flaky job retried then denied: every attempt with its status and
 *   result, the used quotas, the log in order ending in RetryDenied with
 *   LUCI's reason string, and each run's previous/next attempt links in
 *   GetJobRunSummary;
 * - a job that exceeds its timeout_ms: each attempt ENDED with result
 *   TIMEOUT, retried then denied, the log in order;
 * - a graph service killed between attempts resumes with the used quota the
 *   events recorded (the attempt that died with it is discarded, uncharged);
 * - a reused partition names the job run that built it;
 * - GetBuildExecution of an unknown build is NOT_FOUND;
 * - CancelJobRun: the run's process group gone within 2 s, the run and its
 *   downstream CANCELLED, the independent branch completed; NOT_FOUND,
 *   FAILED_PRECONDITION; a BuildCancelEvent appended from outside cancels
 *   the running build;
 * - `databuild build --force` rebuilds exactly the named partitions; a job's
 *   max_age_ms reuse window rebuilds an old partition;
 * - an optional input that fails: its reader still runs and the build
 *   completes; the same input needed critically fails the build;
 * - the CLI: `databuild builds execution ID` (the attempt table and the log)
 *   and `databuild runs show ID` (the attempt links).
 */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"
#include "test_query_fixture.h"

/* //x:old's max_age_ms in JOBS (reuse_window_rebuilds_an_old_partition) */
#define OLD_WINDOW_MS 12000

#define JOBS                                                                                       \
    "    - label: \"//x:flaky\"\n      command: %CMD%\n      outputs: [\"flaky/.*\"]\n"            \
    "      transient_exit_codes: [\"75\"]\n"                                                       \
    "      retry: {single_quota: 2, transient_failure_weight: 1}\n"                                \
    "    - label: \"//x:rq\"\n      command: %CMD%\n      outputs: [\"rq/.*\"]\n"                  \
    "      retry: {single_quota: 2, failure_weight: 1}\n"                                          \
    "    - label: \"//x:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//x:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//x:hang\"\n      command: %CMD%\n      outputs: [\"hang/.*\"]\n"              \
    "    - label: \"//x:down\"\n      command: %CMD%\n      outputs: [\"down/.*\"]\n"              \
    "    - label: \"//x:ind\"\n      command: %CMD%\n      outputs: [\"ind/.*\"]\n"                \
    "    - label: \"//x:old\"\n      command: %CMD%\n      outputs: [\"old/.*\"]\n"                \
    "      max_age_ms: 12000\n"                                                                    \
    "    - label: \"//x:opt\"\n      command: %CMD%\n      outputs: [\"opt/.*\"]\n"                \
    "    - label: \"//x:reader\"\n      command: %CMD%\n      outputs: [\"reader/.*\"]\n"          \
    "      optional_inputs: [\"opt/.*\"]\n"                                                        \
    "    - label: \"//x:creader\"\n      command: %CMD%\n      outputs: [\"creader/.*\"]\n"        \
    "    - label: \"//x:fa\"\n      command: %CMD%\n      outputs: [\"fa/.*\"]\n"                  \
    "    - label: \"//x:fb\"\n      command: %CMD%\n      outputs: [\"fb/.*\"]\n"                  \
    "    - label: \"//x:sg\"\n      command: %CMD%\n      outputs: [\"sg/.*\"]\n"                  \
    "    - label: \"//x:qr\"\n      command: %CMD%\n      outputs: [\"qr/.*\"]\n"                  \
    "    - label: \"//x:qg\"\n      command: %CMD%\n      outputs: [\"qg/.*\"]\n"                  \
    "    - label: \"//x:slow\"\n      command: %CMD%\n      outputs: [\"slow/.*\"]\n"              \
    "      timeout_ms: 6000\n"                                                                     \
    "      retry: {single_quota: 1, timeout_weight: 1}\n"

#define RULES                                                                                      \
    "[{\"match\": \"flaky/.*\", \"exit\": 75},"                                                    \
    " {\"match\": \"rq/.*\", \"exit\": 3, \"sleep\": 2},"                                          \
    " {\"match\": \"a/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"hang/(.*)\", \"sleep\": 60, \"pidfile\": true, \"tag\": \"hang\"},"            \
    " {\"match\": \"down/(.*)\", \"inputs\": [\"hang/\\\\1\"]},"                                   \
    " {\"match\": \"ind/(.*)\", \"sleep\": 2},"                                                    \
    " {\"match\": \"opt/.*\", \"exit\": 3},"                                                       \
    " {\"match\": \"reader/(.*)\", \"inputs\": [\"opt/\\\\1\", \"c/\\\\1\"]},"                     \
    " {\"match\": \"creader/(.*)\", \"inputs\": [\"opt/\\\\1\"]},"                                 \
    " {\"match\": \"fa/(.*)\", \"inputs\": [\"sg/\\\\1\"]},"                                       \
    " {\"match\": \"sg/.*\", \"gate\": \"open-sg\", \"tag\": \"sg\"},"                             \
    " {\"match\": \"qr/(.*)\", \"query_inputs\": [\"c/\\\\1\"]},"                                  \
    " {\"match\": \"qg/(.*)\", \"query_inputs\": [\"sg/\\\\1\"]},"                                 \
    " {\"match\": \"slow/.*\", \"sleep\": 60, \"pidfile\": true, \"tag\": \"slow\"}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define AST(x) DATABUILD__V1__EXECUTION_ATTEMPT__STATUS__##x
#define ARES(x) DATABUILD__V1__EXECUTION_ATTEMPT__RESULT__##x
#define LOG(x) DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_##x

static qf setup(bf *b, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(b, hint, &o);
    return qf_over_build(b, "");
}

/* The tests' jobs plus //x:nospawn, whose working_dir (wd, created empty
 * here) its own config step removes: its configure works, every spawn of
 * its runs then fails. //x:oreader reads nospawn/ as an optional input. */
#define NOSPAWN_RULES                                                                              \
    "[{\"match\": \"nospawn/.*\", \"config_rmdir\": true},"                                        \
    " {\"match\": \"oreader/(.*)\", \"inputs\": [\"nospawn/\\\\1\", \"c/\\\\1\"]},"                \
    " {\"match\": \"hang/(.*)\", \"sleep\": 60, \"pidfile\": true, \"tag\": \"hang\"}]"

static qf setup_nospawn(bf *b, const char *hint, char **wd)
{
    size_t cap = strlen(h_test_dir()) + 16;
    *wd = dbld_xmalloc(cap);
    snprintf(*wd, cap, "%s/wd-nospawn", h_test_dir());
    CHECK(mkdir(*wd, 0755) == 0);
    char *jobs = dbld_xmalloc(strlen(JOBS) + strlen(*wd) + 512);
    snprintf(
        jobs, strlen(JOBS) + strlen(*wd) + 512,
        "%s    - label: \"//x:nospawn\"\n      command: %%CMD%%\n      outputs: [\"nospawn/.*\"]\n"
        "      working_dir: \"%s\"\n"
        "      retry: {single_quota: 5, failure_weight: 1, transient_failure_weight: 1}\n"
        "    - label: \"//x:oreader\"\n      command: %%CMD%%\n      outputs: [\"oreader/.*\"]\n"
        "      optional_inputs: [\"nospawn/.*\"]\n",
        JOBS, *wd);
    bf_opts o = {.jobs = jobs, .rules = NOSPAWN_RULES};
    bf_setup(b, hint, &o);
    free(jobs);
    return qf_over_build(b, "");
}

static Databuild__V1__JobRunAttemptLinks *links_of(qf *f, const char *run)
{
    Databuild__V1__JobRunSummaryRequest req = DATABUILD__V1__JOB_RUN_SUMMARY_REQUEST__INIT;
    req.job_run_id = (char *)run;
    Databuild__V1__JobRunSummaryResponse *r =
        QF_OK(f, "GetJobRunSummary", &req, Databuild__V1__JobRunSummaryResponse,
              databuild__v1__job_run_summary_response__descriptor);
    CHECK_EQ_STR(r->job_run->job_run_id, run);
    /* field 1001 rides along as an unknown field: read it as the Ext message */
    size_t len = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *buf = dbld_arena_alloc(f->a, len + 1);
    protobuf_c_message_pack(&r->base, buf);
    Databuild__V1__JobRunSummaryResponseExt *x =
        (Databuild__V1__JobRunSummaryResponseExt *)protobuf_c_message_unpack(
            &databuild__v1__job_run_summary_response_ext__descriptor, dbld_arena_allocator(f->a),
            len, buf);
    CHECK(x != NULL);
    CHECK_MSG(x->attempt_links != NULL, "no attempt links on job run %s", run);
    return x->attempt_links;
}

DBLD_TEST(flaky_job_retried_then_denied)
{
    bf b;
    qf f = setup(&b, "flaky");
    char *id = bf_submit(&b, H_STRS("flaky/1"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(FAILED));
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    CHECK_EQ_STR(r->build_request_id, id);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__FAILED);
    CHECK(r->state->end_time > 0);
    CHECK_EQ_INT(r->state->n_executions, 1);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "flaky/1");
    CHECK_EQ_STR(te->job_label, "//x:flaky");
    CHECK(te->critical);
    /* single_quota 2, weight 1: attempts 1 and 2 retried (used 1, 2), 3 denied (used 3) */
    CHECK_EQ_STR(qf_attempts_str(&b, te), "1:ENDED/FAILED_TRANSIENTLY 2:ENDED/FAILED_TRANSIENTLY"
                                          " 3:ENDED/FAILED_TRANSIENTLY");
    CHECK_EQ_INT(te->used_quota, 3);
    CHECK_EQ_INT(r->state->used_global_quota, 3);
    CHECK_EQ_INT(r->state->failures->n_unsuccessful_job_run_ids, 3);
    CHECK_EQ_INT(r->state->failures->n_launch_failures, 0);
    CHECK_EQ_STR(qf_log_kinds(&b, r),
                 "requirement_changed job_runs_launched job_runs_ended job_runs_launched"
                 " job_runs_ended job_runs_launched job_runs_ended retry_denied");
    const Databuild__V1__ExecutionLogEntry *last = r->log[r->n_log - 1];
    CHECK_EQ_STR(last->retry_denied->reason, "insufficient quota");
    CHECK_EQ_INT(last->retry_denied->n_job_runs, 1);
    CHECK_EQ_STR(last->retry_denied->job_runs[0]->job_run_id, te->attempts[2]->job_run_id);
    CHECK_EQ_INT(last->retry_denied->job_runs[0]->attempt, 3);
    for (size_t i = 1; i < r->n_log; i++) /* each entry has a time, in order */
        CHECK_CMP_INT(r->log[i]->time, >=, r->log[i - 1]->time);
    CHECK(r->log[0]->time > 0);
    CHECK_EQ_STR(r->log[0]->requirement_changed->tasks[0]->outputs[0], "flaky/1");
    CHECK_EQ_STR(r->log[2]->job_runs_ended->job_runs[0]->job_run_id, te->attempts[0]->job_run_id);
    CHECK_EQ_INT(r->log[2]->job_runs_ended->job_runs[0]->result, ARES(FAILED_TRANSIENTLY));
    /* the attempt chain on each job run */
    Databuild__V1__JobRunAttemptLinks *l1 = links_of(&f, te->attempts[0]->job_run_id);
    Databuild__V1__JobRunAttemptLinks *l2 = links_of(&f, te->attempts[1]->job_run_id);
    Databuild__V1__JobRunAttemptLinks *l3 = links_of(&f, te->attempts[2]->job_run_id);
    CHECK_EQ_INT(l1->attempt, 1);
    CHECK_EQ_STR(l1->previous_job_run_id, "");
    CHECK_EQ_STR(l1->next_job_run_id, te->attempts[1]->job_run_id);
    CHECK_EQ_INT(l2->attempt, 2);
    CHECK_EQ_STR(l2->previous_job_run_id, te->attempts[0]->job_run_id);
    CHECK_EQ_STR(l2->next_job_run_id, te->attempts[2]->job_run_id);
    CHECK_EQ_STR(l3->previous_job_run_id, te->attempts[1]->job_run_id);
    CHECK_EQ_STR(l3->next_job_run_id, "");
    CHECK_EQ_INT(bf_execs(&b, "flaky/1"), 3);
    /* the CLI */
    cli_out c = cli_runv(H_STRS("--server", f.q->addr, "builds", "execution", id));
    CHECK_MSG(c.code == 0, "builds execution: exit %d: %s", c.code, c.err);
    h_note("databuild builds execution:\n%s", c.out);
    CHECK_CONTAINS(line_with(c.out, "global quota used"), "3");
    CHECK_CONTAINS(line_with(c.out, te->attempts[1]->job_run_id), "ENDED");
    CHECK_CONTAINS(line_with(c.out, te->attempts[1]->job_run_id), "FAILED_TRANSIENTLY");
    CHECK_CONTAINS(line_with(c.out, "retry_denied"), "attempt 3: insufficient quota");
    CHECK_CONTAINS(line_with(c.out, "flaky/1"), "//x:flaky");
    free(c.out);
    free(c.err);
    c = cli_runv(H_STRS("--server", f.q->addr, "runs", "show", te->attempts[1]->job_run_id));
    CHECK_MSG(c.code == 0, "runs show: exit %d: %s", c.code, c.err);
    CHECK_CONTAINS(line_with(c.out, "previous attempt"), te->attempts[0]->job_run_id);
    CHECK_CONTAINS(line_with(c.out, "next attempt"), te->attempts[2]->job_run_id);
    free(c.out);
    free(c.err);
}

/* slow/1 sleeps 60 s under timeout_ms 6000 (room for a slow start on a
 * loaded machine: the timeout also bounds the job's config step, and the job
 * writes exec.log first); retry {single_quota: 1, timeout_weight: 1}.
 * Attempt 1 times out (used 1) and is retried, attempt 2 times out (used 2)
 * and is denied: both attempts ENDED with result TIMEOUT, in the state, in
 * the log (in order) and in the JobEvents, and the timed-out process group
 * is gone. */
DBLD_TEST(timed_out_attempts_end_timeout)
{
    bf b;
    qf f = setup(&b, "timeout");
    int64_t t0 = dbld_mono_ms();
    char *id = bf_submit(&b, H_STRS("slow/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 90000);
    int64_t took = dbld_mono_ms() - t0;
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_MSG(took < 50000, "the build took %lld ms: a 60 s sleep was awaited", (long long)took);
    CHECK_EQ_INT(bf_execs(&b, "slow/1"), 2);
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__FAILED);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "slow/1");
    CHECK_EQ_STR(qf_attempts_str(&b, te), "1:ENDED/TIMEOUT 2:ENDED/TIMEOUT");
    CHECK_EQ_INT(te->used_quota, 2);
    CHECK_EQ_INT(r->state->used_global_quota, 2);
    CHECK_EQ_INT(r->state->failures->n_unsuccessful_job_run_ids, 2);
    CHECK_EQ_INT(r->state->failures->n_launch_failures, 0);
    CHECK_EQ_STR(qf_log_kinds(&b, r), "requirement_changed job_runs_launched job_runs_ended"
                                      " job_runs_launched job_runs_ended retry_denied");
    for (size_t i = 1; i < r->n_log; i++)
        CHECK_CMP_INT(r->log[i]->time, >=, r->log[i - 1]->time);
    for (int k = 0; k < 2; k++) {
        const Databuild__V1__JobRunSnapshot *s = r->log[1 + 2 * k]->job_runs_launched->job_runs[0];
        CHECK_EQ_STR(s->job_run_id, te->attempts[k]->job_run_id);
        CHECK_EQ_INT(s->status, AST(TRIGGERED));
        s = r->log[2 + 2 * k]->job_runs_ended->job_runs[0];
        CHECK_EQ_STR(s->job_run_id, te->attempts[k]->job_run_id);
        CHECK_EQ_INT(s->status, AST(ENDED));
        CHECK_EQ_INT(s->result, ARES(TIMEOUT));
        CHECK_EQ_INT(s->attempt, k + 1);
    }
    CHECK_EQ_STR(r->log[5]->retry_denied->reason, "insufficient quota");
    CHECK_EQ_STR(r->log[5]->retry_denied->job_runs[0]->job_run_id, te->attempts[1]->job_run_id);
    CHECK_EQ_INT(r->log[5]->retry_denied->job_runs[0]->result, ARES(TIMEOUT));
    char *failed = bf_job_messages(&b, id, "slow/1", DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_CONTAINS(failed, "attempt 1: FAILURE_TIMEOUT: job //x:slow timed out after 6000 ms");
    CHECK_CONTAINS(failed, "attempt 2: FAILURE_TIMEOUT: ");
    CHECK_CONTAINS(failed, "retry denied: insufficient quota");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "slow/1"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING FAILED");
    char *pids = bf_state_file(&b, "pid-slow"); /* the last attempt's */
    CHECK(pids != NULL);
    int pid = 0, child = 0;
    CHECK_EQ_INT(sscanf(pids, "%d %d", &pid, &child), 2);
    free(pids);
    CHECK(H_POLL_UNTIL(20000, bf_pid_gone(pid) && bf_pid_gone(child)));
}

/* The ExecutionEvents of a build, in order. */
static size_t exec_events(bf *b, const char *id, const Databuild__V1__ExecutionEvent **out,
                          size_t cap)
{
    h_event_list l = bf_events(b, id);
    size_t n = 0;
    for (size_t i = 0; i < l.n && n < cap; i++)
        if (l.events[i]->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT)
            out[n++] = l.events[i]->execution_event;
    return n;
}

/* rq/1 fails every time (2 s each); single_quota 2, weight 1. Attempt 1
 * fails (used 1) and is retried; the graph service is killed while attempt
 * 2 runs. The resumed build reads used quota 1 back from the events
 * (nothing parses text), discards attempt 2 (it died with its coordinator,
 * no charge), and attempts 3 (used 2, retried) and 4 (used 3, denied) run.
 * A quota that started afresh would have run a fifth attempt. */
DBLD_TEST(killed_between_attempts_keeps_used_quota)
{
    bf b;
    qf f = setup(&b, "resume");
    char *id = bf_submit(&b, H_STRS("rq/1"));
    Databuild__V1__BuildExecutionResponse *r = NULL;
    dbld_status st = {0};
    CHECK(H_POLL_UNTIL(30000, qf_execution(&f, id, &r, &st) == 0 && r->state->n_executions == 1 &&
                                  r->state->executions[0]->n_attempts == 2 &&
                                  r->state->executions[0]->attempts[1]->status == AST(TRIGGERED) &&
                                  bf_execs(&b, "rq/1") == 2)); /* the job itself started */
    CHECK_EQ_INT(r->state->executions[0]->used_quota, 1);
    h_service_kill(b.graph);
    h_service_restart(b.graph);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 90000);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&b, "rq/1"), 4);
    r = qf_execution_ok(&f, id);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "rq/1");
    CHECK_EQ_STR(qf_attempts_str(&b, te),
                 "1:ENDED/FAILED_PERMANENTLY 2:CANCELLED/RESULT_UNSPECIFIED"
                 " 3:ENDED/FAILED_PERMANENTLY 4:ENDED/FAILED_PERMANENTLY");
    CHECK_EQ_INT(te->used_quota, 3);
    CHECK_EQ_INT(r->state->used_global_quota, 3);
    CHECK_EQ_STR(r->log[r->n_log - 1]->retry_denied->reason, "insufficient quota");
    /* right after the resume's RequirementChanged, the state carries the
     * recorded quota: the discard of attempt 2 still says used 1 */
    const Databuild__V1__ExecutionEvent *xs[64];
    size_t n = exec_events(&b, id, xs, 64), k = 0, reqs = 0;
    for (; k < n; k++)
        if (xs[k]->entry && xs[k]->entry->kind_case == LOG(REQUIREMENT_CHANGED) && ++reqs == 2)
            break;
    CHECK_MSG(k + 1 < n, "no second RequirementChanged (%zu execution events)", n);
    CHECK_EQ_STR(xs[k]->entry->requirement_changed->message, "re-planned after a resume");
    const Databuild__V1__ExecutionEvent *after = xs[k + 1];
    CHECK_EQ_INT(after->entry->kind_case, LOG(JOB_RUN_DISCARDED));
    CHECK_EQ_STR(after->entry->job_run_discarded->reason, "graph service restarted");
    CHECK_EQ_INT(after->execution->used_quota, 1);
    CHECK_EQ_INT(after->used_global_quota, 1);
}

/* A second build of an AVAILABLE partition reuses it and says which run built it. */
DBLD_TEST(reuse_names_the_building_run)
{
    bf b;
    qf f = setup(&b, "reuse");
    char *first = bf_submit(&b, H_STRS("c/1"));
    CHECK_EQ_INT(bf_wait(&b, first, 60000)->status->code, BR(COMPLETED));
    const Databuild__V1__TaskExecution *built = qf_task_of(qf_execution_ok(&f, first), "c/1");
    CHECK_EQ_STR(qf_attempts_str(&b, built), "1:ENDED/SUCCEEDED");
    const char *run = built->attempts[0]->job_run_id;
    char *second = bf_submit(&b, H_STRS("a/1"));
    CHECK_EQ_INT(bf_wait(&b, second, 60000)->status->code, BR(COMPLETED));
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, second);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__SUCCEEDED);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "c/1");
    CHECK_EQ_STR(qf_attempts_str(&b, te), "1:ENDED/SUCCEEDED/reused");
    CHECK_EQ_STR(te->attempts[0]->job_run_id, run);
    CHECK_EQ_STR(te->attempts[0]->build_request_id, first);
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "a/1")), "1:ENDED/SUCCEEDED");
    int reused = 0;
    for (size_t i = 0; i < r->n_log; i++)
        if (r->log[i]->kind_case == LOG(JOB_RUNS_REUSED)) {
            reused++;
            CHECK_EQ_STR(r->log[i]->job_runs_reused->job_runs[0]->job_run_id, run);
        }
    CHECK_EQ_INT(reused, 1);
    CHECK_CONTAINS(bf_job_messages(&b, second, "c/1", DATABUILD__V1__JOB_STATUS__JOB_SKIPPED),
                   dbld_arena_printf(b.a, "built by job run %s of build %s", run, first));
    CHECK_EQ_INT(bf_execs(&b, "c/1"), 1);
    /* as DataBuild's historical delegation: a DelegationEvent to the build
     * that made it, naming the run, ahead of the SKIPPED */
    h_event_list l = bf_events(&b, second);
    size_t deleg = l.n, skipped = l.n;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT) {
            CHECK_MSG(deleg == l.n, "more than one DelegationEvent");
            deleg = i;
            CHECK_EQ_STR(e->delegation_event->partition_ref->str, "c/1");
            CHECK_EQ_STR(e->delegation_event->delegated_to_build_request_id, first);
            CHECK_CONTAINS(e->delegation_event->message, run);
        }
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
            e->job_event->status_code == DATABUILD__V1__JOB_STATUS__JOB_SKIPPED)
            skipped = i;
    }
    CHECK_MSG(deleg < skipped && skipped < l.n, "DelegationEvent at %zu, SKIPPED at %zu", deleg,
              skipped);
    /* the reusing build's summary still shows c/1 AVAILABLE (SKIPPED wins) */
    Databuild__V1__BuildSummaryRequest sreq = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    sreq.build_id = second;
    Databuild__V1__BuildSummaryResponse *sum =
        QF_OK(&f, "GetBuildSummary", &sreq, Databuild__V1__BuildSummaryResponse,
              databuild__v1__build_summary_response__descriptor);
    int found = 0;
    for (size_t i = 0; i < sum->n_partitions; i++)
        if (strcmp(sum->partitions[i]->ref->str, "c/1") == 0) {
            found = 1;
            CHECK_EQ_INT(sum->partitions[i]->status,
                         DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
        }
    CHECK(found);
}

DBLD_TEST(unknown_build_not_found)
{
    bf b;
    qf f = setup(&b, "unknown");
    Databuild__V1__BuildExecutionResponse *r = NULL;
    dbld_status st = {0};
    CHECK_CODE(qf_execution(&f, "00000000-0000-4000-8000-000000000000", &r, &st), st,
               DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "no build request");
    CHECK_CODE(qf_execution(&f, "", &r, &st), st, DBLD_INVALID_ARGUMENT);
}

/* The last line of the graph service's log containing needle ("" if none). */
static const char *graph_log_line(bf *b, const char *needle)
{
    char *text = h_read_file(b->graph->log_path, NULL);
    const char *out = "";
    for (char *line = text ? strtok(text, "\n") : NULL; line; line = strtok(NULL, "\n"))
        if (strstr(line, needle)) out = line;
    out = dbld_arena_strdup(b->a, out);
    free(text);
    return out;
}

static int cancel_run(qf *f, const char *run, const char *reason, dbld_status *st)
{
    Databuild__V1__JobRunCancelRequest req = DATABUILD__V1__JOB_RUN_CANCEL_REQUEST__INIT;
    req.job_run_id = (char *)run;
    req.reason = (char *)reason;
    Databuild__V1__JobRunCancelResponse *r = NULL;
    return qf_call_at(f->q, "/databuild.v1.QueryOps/CancelJobRun", &req,
                      &databuild__v1__job_run_cancel_response__descriptor, f->a, &r, st);
}

/* Start down/1 (needs hang/1, which runs 60 s) and ind/1 (2 s); returns the
 * build id once hang/1 runs, with its job run, pid and grandchild pid. */
static char *start_hang(bf *b, qf *f, const char **run, int *pid, int *child)
{
    char *id = bf_submit(b, H_STRS("down/1", "ind/1"));
    char *pids = NULL;
    CHECK(H_POLL_UNTIL(20000, (pids = bf_state_file(b, "pid-hang")) != NULL));
    CHECK_EQ_INT(sscanf(pids, "%d %d", pid, child), 2);
    free(pids);
    Databuild__V1__BuildExecutionResponse *r = NULL;
    dbld_status st = {0};
    CHECK(H_POLL_UNTIL(10000, qf_execution(f, id, &r, &st) == 0 &&
                                  qf_task_of(r, "hang/1")->n_attempts == 1 &&
                                  qf_task_of(r, "hang/1")->attempts[0]->status == AST(TRIGGERED)));
    *run = qf_task_of(r, "hang/1")->attempts[0]->job_run_id;
    CHECK(!bf_pid_gone(*pid));
    CHECK(!bf_pid_gone(*child));
    return id;
}

/* CancelJobRun on a long run: its process group is gone within 2 s, the run
 * ends CANCELLED, the task downstream of it is CANCELLED, the independent
 * branch completes; then NOT_FOUND and FAILED_PRECONDITION. */
DBLD_TEST(cancel_one_job_run)
{
    bf b;
    qf f = setup(&b, "cancelrun");
    const char *run;
    int pid, child;
    char *id = start_hang(&b, &f, &run, &pid, &child);
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    CHECK_OK(cancel_run(&f, run, "test says stop", &st), st);
    CHECK_MSG(H_POLL_UNTIL(2000, bf_pid_gone(pid) && bf_pid_gone(child)),
              "process group of job run %s still there 2 s after CancelJobRun", run);
    h_note("process group gone %lld ms after CancelJobRun", (long long)(dbld_mono_ms() - t0));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 30000);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_STR(bf_runs_seq(&b, id, "hang/1"), "SCHEDULED RUNNING CANCELLED");
    CHECK_CONTAINS(bf_job_messages(&b, id, "hang/1", DATABUILD__V1__JOB_STATUS__JOB_CANCELLED),
                   "job run cancelled: test says stop");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "down/1"), "CANCELLED");
    CHECK_CONTAINS(bf_job_messages(&b, id, "down/1", DATABUILD__V1__JOB_STATUS__JOB_CANCELLED),
                   "upstream hang/1 was cancelled");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "ind/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_INT(bf_part_status(&b, "ind/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_INT(bf_count_kind(&b, id, DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT),
                 1);
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "hang/1")), "1:CANCELLED/RESULT_UNSPECIFIED");
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "ind/1")), "1:ENDED/SUCCEEDED");
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "down/1")), ""); /* never launched */
    const Databuild__V1__ExecutionLogEntry *disc = NULL;
    for (size_t i = 0; i < r->n_log; i++)
        if (r->log[i]->kind_case == LOG(JOB_RUN_DISCARDED) &&
            strcmp(r->log[i]->job_run_discarded->snapshot->job_run_id, run) == 0)
            disc = r->log[i];
    CHECK(disc != NULL);
    CHECK_CONTAINS(disc->job_run_discarded->reason, "test says stop");
    /* unknown run; a run that ended */
    CHECK_CODE(cancel_run(&f, "00000000-0000-4000-8000-000000000000", "x", &st), st,
               DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "no job run");
    CHECK_CODE(cancel_run(&f, run, "again", &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "already ended");
    const char *ind = qf_task_of(r, "ind/1")->attempts[0]->job_run_id;
    CHECK_CODE(cancel_run(&f, ind, "x", &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CODE(cancel_run(&f, "", "x", &st), st, DBLD_INVALID_ARGUMENT);
    /* the CLI */
    cli_out c = cli_runv(H_STRS("--server", f.q->addr, "runs", "cancel", ind));
    CHECK_EQ_INT(c.code, 1);
    CHECK_CONTAINS(c.err, "FAILED_PRECONDITION");
    free(c.out);
    free(c.err);
}

/* A BuildCancelEvent appended to the event log from outside (not through
 * GraphBuilder.Cancel) cancels the running build. */
DBLD_TEST(outside_build_cancel_event_honoured)
{
    bf b;
    qf f = setup(&b, "outside");
    const char *run;
    int pid, child;
    char *id = start_hang(&b, &f, &run, &pid, &child);
    Databuild__V1__BuildEvent *ev = h_event_base(b.a, id, 0);
    ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT;
    ev->build_cancel_event = dbld_arena_msg(b.a, &databuild__v1__build_cancel_event__descriptor);
    ev->build_cancel_event->reason = "appended from outside";
    Databuild__V1__BuildEvent *evs[] = {ev};
    h_append_ok(b.el, b.a, evs, 1);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 30000);
    CHECK_EQ_INT(end->status->code, BR(CANCELLED));
    CHECK_CONTAINS(end->message, "appended from outside");
    CHECK(H_POLL_UNTIL(10000, bf_pid_gone(pid) && bf_pid_gone(child)));
    CHECK_EQ_STR(bf_runs_seq(&b, id, "hang/1"), "SCHEDULED RUNNING CANCELLED");
    /* it came through the build's EventLog/Subscribe stream, not polling */
    CHECK_CONTAINS(graph_log_line(&b, "following the build's events through EventLog/Subscribe"),
                   id);
    (void)run;
}

/* The event log restarts while the build runs: its Subscribe stream ends,
 * the build polls EventLog/List meanwhile and subscribes again; a cancel
 * appended from outside after the restart is still honoured. */
DBLD_TEST(follow_survives_an_event_log_restart)
{
    bf b;
    qf f = setup(&b, "followrestart");
    const char *run;
    int pid, child;
    char *id = start_hang(&b, &f, &run, &pid, &child);
    CHECK(H_POLL_UNTIL(10000, strstr(graph_log_line(&b, "through EventLog/Subscribe"), id)));
    h_service_kill(b.el);
    h_service_restart(b.el);
    CHECK(H_POLL_UNTIL(15000, strstr(graph_log_line(&b, "build event stream lost"), id)));
    Databuild__V1__BuildEvent *ev = h_event_base(b.a, id, 0);
    ev->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT;
    ev->build_cancel_event = dbld_arena_msg(b.a, &databuild__v1__build_cancel_event__descriptor);
    ev->build_cancel_event->reason = "after the restart";
    Databuild__V1__BuildEvent *evs[] = {ev};
    h_append_ok(b.el, b.a, evs, 1);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 30000);
    CHECK_EQ_INT(end->status->code, BR(CANCELLED));
    CHECK_CONTAINS(end->message, "after the restart");
    CHECK(H_POLL_UNTIL(10000, bf_pid_gone(pid) && bf_pid_gone(child)));
    (void)run;
}

/* `databuild build --force a/1` rebuilds a/1 and only it: its input c/1,
 * AVAILABLE, is reused (the reuse names the run that built it). */
DBLD_TEST(force_rebuilds_exactly_the_named_partitions)
{
    bf b;
    qf f = setup(&b, "force");
    char *first = bf_submit(&b, H_STRS("a/1"));
    CHECK_EQ_INT(bf_wait(&b, first, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(&b, "a/1"), 1);
    CHECK_EQ_INT(bf_execs(&b, "c/1"), 1);
    /* without force: everything reused */
    char *again = bf_submit(&b, H_STRS("a/1"));
    CHECK_EQ_INT(bf_wait(&b, again, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(&b, "a/1"), 1);
    /* with force, through the CLI */
    cli_out c = cli_runv(H_STRS("--server", b.graph->addr, "build", "--force", "--quiet",
                                "--eventlog", b.el->addr, "a/1"));
    CHECK_MSG(c.code == 0, "build --force: exit %d: %s%s", c.code, c.out, c.err);
    free(c.out);
    free(c.err);
    CHECK_EQ_INT(bf_execs(&b, "a/1"), 2);
    CHECK_EQ_INT(bf_execs(&b, "c/1"), 1);
    h_event_list l = bf_all_events(&b); /* the newest build ended last */
    const char *forced = l.events[l.n - 1]->build_request_id;
    CHECK(strcmp(forced, first) != 0 && strcmp(forced, again) != 0);
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, forced);
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "a/1")), "1:ENDED/SUCCEEDED");
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "c/1")), "1:ENDED/SUCCEEDED/reused");
    CHECK_EQ_STR(qf_task_of(r, "c/1")->attempts[0]->build_request_id, first);
    CHECK_EQ_INT(bf_part_status(&b, "a/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
}

/* //x:old has max_age_ms 12000: its output is reused while younger, rebuilt
 * once older. The window is the behaviour under test, so its margins are
 * wide: the reuse is asked for at once after the first build (12 s of room
 * for the build's end, the second build's job config and claim on a loaded
 * machine: 6 s was not enough there), the rebuild only after sleeping past
 * the window as the partition's own updated_ns measures it (an age only
 * grows). */
DBLD_TEST(reuse_window_rebuilds_an_old_partition)
{
    bf b;
    qf f = setup(&b, "maxage");
    (void)f;
    char *id = bf_submit(&b, H_STRS("old/1"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(COMPLETED));
    int64_t built_ns = bf_part_state(&b, "old/1")->updated_ns;
    id = bf_submit(&b, H_STRS("old/1"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(COMPLETED));
    int64_t age = bf_age_ms(&b, "old/1"); /* after the build: at least its age at the claim */
    h_note("second build done, old/1 %lld ms old", (long long)age);
    CHECK_MSG(bf_execs(&b, "old/1") == 1, "old/1 rebuilt at most %lld ms old (window %lld ms)",
              (long long)age, (long long)OLD_WINDOW_MS); /* young: reused */
    /* a reuse leaves the partition as it was: it still ages from its build */
    CHECK_EQ_INT(bf_part_state(&b, "old/1")->updated_ns, built_ns);
    bf_age_at_least(&b, "old/1", OLD_WINDOW_MS + 1000);
    id = bf_submit(&b, H_STRS("old/1"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(&b, "old/1"), 2); /* older than the window: rebuilt */
    CHECK_EQ_STR(bf_runs_seq(&b, id, "old/1"), "SCHEDULED RUNNING COMPLETED");
}

/* reader/1 reads opt/1 (optional for //x:reader) and c/1: opt/1 fails, the
 * reader still runs (its SCHEDULED names the absent input) and the build
 * completes; opt/1's execution is not critical. creader/1 needs opt/1
 * critically: the build fails. */
DBLD_TEST(optional_input_failure_does_not_fail_the_build)
{
    bf b;
    qf f = setup(&b, "optional");
    char *id = bf_submit(&b, H_STRS("reader/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_CONTAINS(end->message, "optional inputs failed: opt/1");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "opt/1"), "SCHEDULED RUNNING FAILED");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "reader/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_CONTAINS(bf_job_messages(&b, id, "reader/1", DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED),
                   "optional input absent: opt/1");
    CHECK_EQ_INT(bf_execs(&b, "reader/1"), 1);
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__SUCCEEDED);
    CHECK(!qf_task_of(r, "opt/1")->critical);
    CHECK(qf_task_of(r, "reader/1")->critical);
    CHECK(qf_task_of(r, "c/1")->critical);
    CHECK_EQ_STR(qf_attempts_str(&b, qf_task_of(r, "opt/1")), "1:ENDED/FAILED_PERMANENTLY");
    /* the same input, critical */
    id = bf_submit(&b, H_STRS("creader/1"));
    end = bf_wait(&b, id, 60000);
    CHECK_EQ_INT(end->status->code, BR(FAILED));
    CHECK_EQ_STR(bf_runs_seq(&b, id, "creader/1"), "CANCELLED");
    CHECK(qf_task_of(qf_execution_ok(&f, id), "opt/1")->critical);
}

/* A critical task whose run cannot be spawned fails the build at once: its
 * attempt is UNTRIGGERED with the reason, nothing is retried (the job has
 * quota for 5 attempts) and the independent 60 s hang/1 is cancelled instead
 * of awaited. The same failure of an optional input is only logged: its
 * reader runs and the build completes. */
DBLD_TEST(launch_failure_critical_fails_at_once_optional_logged)
{
    bf b;
    char *wd;
    qf f = setup_nospawn(&b, "nospawn", &wd);
    int64_t t0 = dbld_mono_ms();
    char *id = bf_submit(&b, H_STRS("nospawn/1", "hang/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 40000);
    int64_t took = dbld_mono_ms() - t0;
    h_note("build with a critical launch failure ended after %lld ms", (long long)took);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_MSG(took < 30000, "the build took %lld ms: it waited for hang/1", (long long)took);
    CHECK_CONTAINS(end->message, "could not be launched");
    CHECK_CONTAINS(end->message, "nospawn/1");
    CHECK_CONTAINS(end->message, "working directory");
    CHECK_EQ_INT(bf_execs(&b, "nospawn/1"), 0);
    char *failed = bf_job_messages(&b, id, "nospawn/1", DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_CONTAINS(failed, "attempt 1: launch failed: ");
    CHECK_CONTAINS(failed, "not retried: a critical task");
    CHECK(strstr(failed, "retry denied") == NULL);
    CHECK_EQ_STR(bf_runs_seq(&b, id, "nospawn/1"), "SCHEDULED FAILED");
    char *hang = bf_runs_seq(&b, id, "hang/1");
    CHECK_MSG(strlen(hang) >= 9 && strcmp(hang + strlen(hang) - 9, "CANCELLED") == 0, "hang/1: %s",
              hang);
    CHECK_CONTAINS(bf_job_messages(&b, id, "hang/1", DATABUILD__V1__JOB_STATUS__JOB_CANCELLED),
                   "build failed: ");
    char *pids = bf_state_file(&b, "pid-hang");
    if (pids) { /* it had started: its process group is gone */
        int pid = 0, child = 0;
        CHECK_EQ_INT(sscanf(pids, "%d %d", &pid, &child), 2);
        CHECK(H_POLL_UNTIL(5000, bf_pid_gone(pid) && bf_pid_gone(child)));
        free(pids);
    }
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "nospawn/1");
    CHECK(te->critical);
    CHECK_EQ_STR(qf_attempts_str(&b, te), "1:UNTRIGGERED/FAILED_TRANSIENTLY");
    CHECK_CONTAINS(te->attempts[0]->untriggered_reason, "could not be started");
    CHECK_EQ_INT(te->used_quota, 0);
    CHECK_EQ_INT(r->state->failures->n_launch_failures, 1);
    CHECK_CONTAINS(r->state->failures->launch_failures[0]->reason, "could not be started");
    char *kinds = qf_log_kinds(&b, r);
    CHECK_CONTAINS(kinds, "job_runs_launch_failed");
    CHECK(strstr(kinds, "retry_denied") == NULL);

    /* optional: only logged */
    CHECK(mkdir(wd, 0755) == 0); /* the config step removes it again */
    id = bf_submit(&b, H_STRS("oreader/1"));
    end = bf_wait(&b, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_CONTAINS(end->message, "optional inputs failed: nospawn/1");
    failed = bf_job_messages(&b, id, "nospawn/1", DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_CONTAINS(failed, "launch failed: ");
    CHECK_CONTAINS(failed, "not retried: optional work");
    CHECK_EQ_STR(bf_runs_seq(&b, id, "oreader/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_CONTAINS(bf_job_messages(&b, id, "oreader/1", DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED),
                   "optional input absent: nospawn/1");
    r = qf_execution_ok(&f, id);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__SUCCEEDED);
    te = qf_task_of(r, "nospawn/1");
    CHECK(!te->critical);
    CHECK_EQ_STR(qf_attempts_str(&b, te), "1:UNTRIGGERED/FAILED_TRANSIENTLY");
    CHECK_EQ_INT(r->state->failures->n_launch_failures, 1);
    free(wd);
}

static char *submit_forced(bf *b, const char *const *refs)
{
    Databuild__V1__SubmitBuildRequest req = DATABUILD__V1__SUBMIT_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(b->a, refs, &req.n_outputs);
    req.comment = "forced";
    req.want_id = "";
    req.force = 1;
    Databuild__V1__SubmitBuildResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(b->graph->client, "/databuild.v1.GraphBuilder/Submit", &req.base,
                               &databuild__v1__submit_build_response__descriptor,
                               dbld_arena_allocator(b->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0,
                               &st),
             st);
    return dbld_arena_strdup(b->a, r->build_request_id);
}

/* The build's second RequirementChanged (the one a resume appends), or NULL. */
static const Databuild__V1__ExecutionLogEntry__RequirementChanged *
second_requirement(bf *b, const char *id)
{
    const Databuild__V1__ExecutionEvent *xs[128];
    size_t n = exec_events(b, id, xs, 128), reqs = 0;
    for (size_t k = 0; k < n; k++)
        if (xs[k]->entry && xs[k]->entry->kind_case == LOG(REQUIREMENT_CHANGED) && ++reqs == 2)
            return xs[k]->entry->requirement_changed;
    return NULL;
}

static void gate(bf *b, const char *name, int open)
{
    char *path = dbld_arena_printf(b->a, "%s/%s", b->state, name);
    if (open)
        h_write_file(path, "open\n");
    else
        unlink(path);
}

/* A forced build killed (SIGKILL) mid-build keeps its force when resumed:
 * fa/1, fb/1 and sg/1, all AVAILABLE, are forced; fb/1 is rebuilt, then the
 * graph service dies while sg/1 waits at its gate. The resumed build reads
 * force back from the events (its re-planned tasks are forced), rebuilds
 * sg/1 and fa/1, and reuses fb/1, which it had rebuilt before the kill (its
 * reuse window starts at the build's RECEIVED, not at the resume). */
DBLD_TEST(force_survives_a_resume)
{
    bf b;
    qf f = setup(&b, "forceresume");
    gate(&b, "open-sg", 1);
    char *first = bf_submit(&b, H_STRS("fa/1", "fb/1"));
    CHECK_EQ_INT(bf_wait(&b, first, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(&b, "sg/1"), 1);
    gate(&b, "open-sg", 0);
    gate(&b, "waiting-sg", 0);
    char *id = submit_forced(&b, H_STRS("fa/1", "fb/1", "sg/1"));
    Databuild__V1__BuildExecutionResponse *r = NULL;
    dbld_status st = {0};
    char *waiting = NULL;
    CHECK(H_POLL_UNTIL(
        30000, qf_execution(&f, id, &r, &st) == 0 && r->state->n_executions == 3 &&
                   strcmp(qf_attempts_str(&b, qf_task_of(r, "fb/1")), "1:ENDED/SUCCEEDED") == 0 &&
                   (waiting = bf_state_file(&b, "waiting-sg")) != NULL));
    free(waiting);
    CHECK(qf_task_of(r, "fb/1")->forced);
    CHECK_EQ_INT(bf_execs(&b, "fb/1"), 2);
    h_service_kill(b.graph);
    h_service_restart(b.graph);
    /* resumed once the lease expired: the re-planned tasks are forced */
    const Databuild__V1__ExecutionLogEntry__RequirementChanged *rc = NULL;
    CHECK(H_POLL_UNTIL(30000, (rc = second_requirement(&b, id)) != NULL));
    CHECK_EQ_STR(rc->message, "re-planned after a resume");
    CHECK_EQ_INT(rc->n_tasks, 3);
    for (size_t i = 0; i < rc->n_tasks; i++)
        CHECK_MSG(rc->tasks[i]->forced, "%s not forced after the resume", rc->tasks[i]->outputs[0]);
    gate(&b, "open-sg", 1);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 90000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&b, "sg/1"), 3); /* first build, the killed run, the resumed one */
    CHECK_EQ_INT(bf_execs(&b, "fa/1"), 2);
    CHECK_EQ_INT(bf_execs(&b, "fb/1"), 2);
    r = qf_execution_ok(&f, id);
    CHECK(qf_task_of(r, "fa/1")->forced);
    CHECK(qf_task_of(r, "sg/1")->forced);
    const Databuild__V1__TaskExecution *fb = qf_task_of(r, "fb/1");
    CHECK_EQ_STR(qf_attempts_str(&b, fb), "1:ENDED/SUCCEEDED/reused");
    CHECK_EQ_STR(fb->attempts[0]->build_request_id, id); /* it made it itself */
}

/* The seed's DepType QUERY: qr/N reads c/N but does not build it. With c/1
 * missing the task fails at once naming the input, and nothing builds c/1;
 * once c/1 is AVAILABLE qr/1 runs. qg/3 reads sg/3, which another build is
 * building: it waits (bounded) and runs once sg/3 is AVAILABLE. A QUERY input
 * the build produces anyway (c/2 requested too) is waited for as an edge. */
DBLD_TEST(query_inputs_are_read_not_built)
{
    bf b;
    qf f = setup(&b, "query");
    char *id = bf_submit(&b, H_STRS("qr/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&b, id, 60000);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&b, "c/1"), 0);
    CHECK_EQ_INT(bf_execs(&b, "qr/1"), 0);
    char *failed = bf_job_messages(&b, id, "qr/1", DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_CONTAINS(failed, "QUERY input c/1 is ");
    CHECK_CONTAINS(failed, "a query input is read, not built");
    CHECK_EQ_INT(bf_part_status(&b, "qr/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&f, id);
    CHECK_EQ_INT(r->state->n_executions, 1); /* no task for c/1 */
    /* c/1 built by its own build: now qr/1 reads it */
    char *cid = bf_submit(&b, H_STRS("c/1"));
    CHECK_EQ_INT(bf_wait(&b, cid, 60000)->status->code, BR(COMPLETED));
    id = bf_submit(&b, H_STRS("qr/1"));
    end = bf_wait(&b, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&b, "qr/1"), 1);
    CHECK_EQ_INT(bf_execs(&b, "c/1"), 1);
    /* produced by this build anyway: an edge */
    id = bf_submit(&b, H_STRS("qr/2", "c/2"));
    CHECK_EQ_INT(bf_wait(&b, id, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(&b, "qr/2"), 1);
    CHECK_EQ_INT(bf_execs(&b, "c/2"), 1);
    /* being built by another build: waited for */
    char *sid = bf_submit(&b, H_STRS("sg/3"));
    char *waiting = NULL;
    CHECK(H_POLL_UNTIL(30000, (waiting = bf_state_file(&b, "waiting-sg")) != NULL));
    free(waiting);
    id = bf_submit(&b, H_STRS("qg/3"));
    CHECK(H_POLL_UNTIL(30000, bf_part_status(&b, "qg/3") ==
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED));
    dbld_sleep_ms(1500);
    CHECK_EQ_INT(bf_execs(&b, "qg/3"), 0);         /* still waiting for sg/3 */
    CHECK_EQ_STR(bf_runs_seq(&b, id, "qg/3"), ""); /* not even claimed */
    gate(&b, "open-sg", 1);
    CHECK_EQ_INT(bf_wait(&b, sid, 60000)->status->code, BR(COMPLETED));
    end = bf_wait(&b, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&b, "qg/3"), 1);
    CHECK_EQ_INT(bf_execs(&b, "sg/3"), 1);
    CHECK_EQ_INT(qf_execution_ok(&f, id)->state->n_executions, 1); /* qg/3 only */
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(flaky_job_retried_then_denied, 180),
               DBLD_TEST_ENTRY_T(killed_between_attempts_keeps_used_quota, 240),
               DBLD_TEST_ENTRY_T(timed_out_attempts_end_timeout, 180),
               DBLD_TEST_ENTRY_T(reuse_names_the_building_run, 180),
               DBLD_TEST_ENTRY_T(unknown_build_not_found, 120),
               DBLD_TEST_ENTRY_T(cancel_one_job_run, 180),
               DBLD_TEST_ENTRY_T(outside_build_cancel_event_honoured, 180),
               DBLD_TEST_ENTRY_T(follow_survives_an_event_log_restart, 180),
               DBLD_TEST_ENTRY_T(force_rebuilds_exactly_the_named_partitions, 180),
               DBLD_TEST_ENTRY_T(reuse_window_rebuilds_an_old_partition, 180),
               DBLD_TEST_ENTRY_T(optional_input_failure_does_not_fail_the_build, 180),
               DBLD_TEST_ENTRY_T(launch_failure_critical_fails_at_once_optional_logged, 180),
               DBLD_TEST_ENTRY_T(force_survives_a_resume, 240),
               DBLD_TEST_ENTRY_T(query_inputs_are_read_not_built, 180))
