/* test_build_recovery.c - concurrency and crashes: two builds (and two graph
 * replicas) asking for one partition at once produce exactly one job run and a
 * delegation; a graph service killed with SIGKILL (or stopped with SIGTERM)
 * mid-build and restarted resumes the build from the event log; a live replica
 * adopts the builds of a dead one; a job service killed mid-run is an
 * infrastructure failure, not an attempt: the run is relaunched (on the other
 * job service when there is one, else once the only one is back) without
 * charging the retry quota, and the lost run leaves nothing running: its job
 * dies with it, and the job's grandchild when the job service restarts.
 */
#include "test_build_fixture.h"
#include "test_query_fixture.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

#define JOBS                                                                                       \
    "    - label: \"//r:shared\"\n      command: %CMD%\n      outputs: [\"shared/.*\"]\n"          \
    "    - label: \"//r:chain\"\n      command: %CMD%\n      outputs: [\"chain/.*\"]\n"            \
    "    - label: \"//r:link\"\n      command: %CMD%\n      outputs: [\"link/.*\"]\n"              \
    "    - label: \"//r:js\"\n      command: %CMD%\n      outputs: [\"js/.*\"]\n"                  \
    "      retry: {single_quota: 2, transient_failure_weight: 1}\n"                                \
    "    - label: \"//r:rq\"\n      command: %CMD%\n      outputs: [\"rq/.*\"]\n"                  \
    "      retry: {single_quota: 1, failure_weight: 1}\n"                                          \
    "    - label: \"//r:nr\"\n      command: %CMD%\n      outputs: [\"nr/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"shared/.*\", \"sleep\": 1.5},"                                                 \
    " {\"match\": \"chain/(.*)\", \"inputs\": [\"link/\\\\1\"]},"                                  \
    " {\"match\": \"link/.*\", \"sleep\": 2.5, \"pidfile\": true, \"tag\": \"link\"},"             \
    " {\"match\": \"js/.*\", \"sleep\": 2.5, \"pidfile\": true, \"tag\": \"js\"},"                 \
    " {\"match\": \"rq/.*\", \"sleep\": 2, \"fail_times\": 99, \"tag\": \"rq\"},"                  \
    " {\"match\": \"nr/.*\", \"sleep\": 2.5, \"pidfile\": true, \"tag\": \"nr\"}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

static void setup(bf *f, const char *hint, int n_job)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES, .n_job = n_job};
    bf_setup(f, hint, &o);
}

/* RUNNING job events for ref across every build. */
static int running_runs(bf *f, const char *ref)
{
    h_event_list l = bf_all_events(f);
    int n = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        n += e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
             e->job_event->status_code == JS(RUNNING) &&
             bf_has_ref(e->job_event->target_partitions, e->job_event->n_target_partitions, ref);
    }
    return n;
}

/* The delegation events of a build for ref: their count; *to = target build. */
static int delegations(bf *f, const char *id, const char *ref, const char **to)
{
    h_event_list l = bf_events(f, id);
    int n = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT &&
            strcmp(e->delegation_event->partition_ref->str, ref) == 0) {
            n++;
            *to = e->delegation_event->delegated_to_build_request_id;
        }
    }
    return n;
}

static void check_one_run_and_delegation(bf *f, const char *id1, const char *id2, const char *ref)
{
    CHECK_EQ_INT(bf_wait(f, id1, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_wait(f, id2, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_execs(f, ref), 1);
    CHECK_EQ_INT(running_runs(f, ref), 1);
    const char *to1 = NULL, *to2 = NULL;
    int d1 = delegations(f, id1, ref, &to1), d2 = delegations(f, id2, ref, &to2);
    CHECK_MSG(d1 + d2 == 1, "delegations: %d + %d", d1, d2);
    const char *delegator = d1 ? id1 : id2, *builder = d1 ? id2 : id1;
    CHECK_EQ_STR(d1 ? to1 : to2, builder);
    CHECK_EQ_STR(bf_part_seq(f, delegator, ref), "REQUESTED ANALYZED DELEGATED AVAILABLE");
    CHECK_EQ_STR(bf_runs_seq(f, delegator, ref), "SKIPPED");
    CHECK_CONTAINS(bf_job_messages(f, delegator, ref, JS(SKIPPED)), builder);
    CHECK_EQ_STR(bf_runs_seq(f, builder, ref), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_INT(bf_part_status(f, ref), PS(AVAILABLE));
}

typedef struct submitter {
    bf *f;
    h_service *g;
    const char *ref;
    char id[37];
    int rc;
    dbld_status st;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *s = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__SubmitBuildRequest req = DATABUILD__V1__SUBMIT_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(a, (const char *const[]){s->ref, NULL}, &req.n_outputs);
    Databuild__V1__SubmitBuildResponse *r = NULL;
    s->rc =
        dbld_client_unary(s->g->client, "/databuild.v1.GraphBuilder/Submit", &req.base,
                          &databuild__v1__submit_build_response__descriptor,
                          dbld_arena_allocator(a), (ProtobufCMessage **)&r, BF_CALL_MS, 0, &s->st);
    if (s->rc == 0) snprintf(s->id, sizeof s->id, "%s", r->build_request_id);
    dbld_arena_destroy(a);
    return NULL;
}

/* Submit ref to both graph services at the same moment. */
static void submit_both(bf *f, h_service *g1, h_service *g2, const char *ref, char *id1, char *id2)
{
    submitter s[2] = {{.f = f, .g = g1, .ref = ref}, {.f = f, .g = g2, .ref = ref}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, submit_thread, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK_OK(s[0].rc, s[0].st);
    CHECK_OK(s[1].rc, s[1].st);
    memcpy(id1, s[0].id, 37);
    memcpy(id2, s[1].id, 37);
}

DBLD_TEST(concurrent_builds_one_job_run)
{
    bf f;
    setup(&f, "concurrent", 1);
    char id1[37], id2[37];
    submit_both(&f, f.graph, f.graph, "shared/1", id1, id2);
    check_one_run_and_delegation(&f, id1, id2, "shared/1");
}

DBLD_TEST(two_replicas_one_job_run)
{
    bf f;
    setup(&f, "replicas", 1);
    h_service *g2 = bf_graph_new(&f, 2);
    h_service_restart(g2);
    char id1[37], id2[37];
    submit_both(&f, f.graph, g2, "shared/2", id1, id2);
    check_one_run_and_delegation(&f, id1, id2, "shared/2");
}

static int read_pids(bf *f, const char *tag, int *pid, int *child)
{
    char *text = bf_state_file(f, dbld_arena_printf(f->a, "pid-%s", tag));
    int ok = text && sscanf(text, "%d %d", pid, child) == 2;
    free(text);
    return ok;
}

/* Once a job's process is up, its JobEvent RUNNING follows within the
 * graph service's deferral (100 ms, or with the result of a shorter run):
 * the crash tests wait for it, so they crash a build whose run is on record
 * as RUNNING. */
static int link_running(bf *f, const char *id, const char *ref)
{
    return strstr(bf_runs_seq(f, id, ref), "RUNNING") != NULL;
}

/* No partition of the build is left BUILDING and the build is not EXECUTING. */
static void check_settled(bf *f, const char *id, const char *const *refs)
{
    Databuild__V1__BuildRequestEvent *end = bf_build_last(f, id);
    CHECK(bf_terminal(end->status->code));
    for (size_t i = 0; refs[i]; i++)
        CHECK_MSG(bf_part_status(f, refs[i]) != PS(BUILDING), "%s is still BUILDING", refs[i]);
}

static void crash_and_resume(int sig)
{
    bf f;
    setup(&f, sig == SIGKILL ? "kill9" : "sigterm", 1);
    char *id = bf_submit(&f, H_STRS("chain/1"));
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "link", &pid, &child)));
    CHECK(H_POLL_UNTIL(10000, link_running(&f, id, "link/1")));
    int rc = h_service_signal_wait(f.graph, sig, 20000);
    if (sig == SIGTERM) CHECK_EQ_INT(rc, 0);
    /* the job service stops the run whose caller went away */
    CHECK(H_POLL_UNTIL(10000, bf_pid_gone(pid) && bf_pid_gone(child)));
    unlink(dbld_arena_printf(f.a, "%s/pid-link", f.state));
    h_service_restart(f.graph);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    check_settled(&f, id, H_STRS("chain/1", "link/1"));
    CHECK_EQ_INT(bf_part_status(&f, "chain/1"), PS(AVAILABLE));
    CHECK_CONTAINS(bf_job_messages(&f, id, "link/1", JS(FAILED)), "graph service restarted");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "link/1"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "chain/1"), "SCHEDULED RUNNING COMPLETED");
    char *seq = bf_build_seq(&f, id);
    CHECK_CONTAINS(seq, "EXECUTING PLANNING ANALYSIS_COMPLETED EXECUTING COMPLETED");
    CHECK_EQ_INT(bf_execs(&f, "link/1"), 2);
    bf_check_ids(&f, id);
}

DBLD_TEST(graph_killed_mid_build_resumes)
{
    crash_and_resume(SIGKILL);
}

DBLD_TEST(graph_sigterm_mid_build_resumes)
{
    crash_and_resume(SIGTERM);
}

/* A restart does not refill the retry quota: rq/1 fails every time and may
 * be retried once (single_quota 1, failure_weight 1). Attempt 1 fails and is
 * retried; the graph service dies during attempt 2; the resumed build runs
 * attempt 3 (attempt 2 died with its coordinator: no kind, no charge), whose
 * failure brings the used quota to 2 > 1: denied. A quota that started
 * afresh would have allowed a fourth run. */
DBLD_TEST(resumed_build_keeps_its_retry_quota)
{
    bf f;
    setup(&f, "quota", 1);
    char *id = bf_submit(&f, H_STRS("rq/1"));
    /* attempt 2 runs and is on record as RUNNING (which may follow its spawn
     * by up to 100 ms: a kill inside that window records SCHEDULED FAILED) */
    CHECK(H_POLL_UNTIL(30000, bf_execs(&f, "rq/1") == 2 && strstr(bf_runs_seq(&f, id, "rq/1"),
                                                                  "FAILED | SCHEDULED RUNNING")));
    h_service_kill(f.graph);
    h_service_restart(f.graph);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_INT(bf_execs(&f, "rq/1"), 3);
    char *failed = bf_job_messages(&f, id, "rq/1", JS(FAILED));
    CHECK_CONTAINS(failed, "attempt 1: FAILURE_PERMANENT");
    CHECK_CONTAINS(failed, "graph service restarted");
    CHECK_CONTAINS(failed, "attempt 3: FAILURE_PERMANENT");
    CHECK_CONTAINS(failed, "retry denied: insufficient quota");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "rq/1"), "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING FAILED"
                                              " | SCHEDULED RUNNING FAILED");
    CHECK_EQ_INT(bf_part_status(&f, "rq/1"), PS(FAILED));
    check_settled(&f, id, H_STRS("rq/1"));
}

/* Two graph replicas; REF submitted to the first; returns once its link job
 * runs (*pid: that job process) and is recorded RUNNING. */
static char *submit_with_replica(bf *f, const char *hint, const char *ref, h_service **g2, int *pid)
{
    setup(f, hint, 1);
    *g2 = bf_graph_new(f, 2);
    h_service_restart(*g2);
    char *id = bf_submit(f, (const char *const[]){ref, NULL});
    int child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(f, "link", pid, &child)));
    char *link = dbld_arena_printf(f->a, "link/%s", strchr(ref, '/') + 1);
    CHECK(H_POLL_UNTIL(10000, link_running(f, id, link)));
    return id;
}

/* A coordinator frozen past its lease (SIGSTOP here; a VM pause or a long
 * stall in production) while a live replica adopted its build cannot write
 * into that build when it wakes: its appends are fenced on the lease. Its job
 * run finished while it was frozen; that run's COMPLETED must not land after
 * the new owner failed the run and started another. */
DBLD_TEST(frozen_coordinator_is_fenced_out)
{
    bf f;
    h_service *g2;
    int pid = 0;
    char *id = submit_with_replica(&f, "frozen", "chain/7", &g2, &pid);
    CHECK_EQ_INT(kill(f.graph->pid, SIGSTOP), 0);
    /* g2 adopts the build and fails the frozen owner's run */
    CHECK(H_POLL_UNTIL(30000, strstr(bf_job_messages(&f, id, "link/7", JS(FAILED)),
                                     "graph service restarted") != NULL));
    /* the first run's process ends while its coordinator is still frozen */
    CHECK(H_POLL_UNTIL(20000, bf_pid_gone(pid)));
    CHECK_EQ_INT(kill(f.graph->pid, SIGCONT), 0);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    dbld_sleep_ms(500); /* give the woken coordinator time to try */
    CHECK_EQ_STR(bf_runs_seq(&f, id, "link/7"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING COMPLETED");
    check_settled(&f, id, H_STRS("chain/7", "link/7"));
    CHECK_EQ_INT(bf_part_status(&f, "chain/7"), PS(AVAILABLE));
    CHECK(h_service_alive(f.graph));
}

DBLD_TEST(live_replica_adopts_orphans)
{
    bf f;
    h_service *g2;
    int pid = 0;
    char *id = submit_with_replica(&f, "adopt", "chain/2", &g2, &pid);
    h_service_kill(f.graph);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    check_settled(&f, id, H_STRS("chain/2", "link/2"));
    /* graph-2 resumed it */
    h_event_list l = bf_events(&f, id);
    int resumed_by_2 = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT &&
            strstr(e->build_request_event->message, "resumed by") &&
            strstr(e->build_request_event->message, g2->addr))
            resumed_by_2 = 1;
    }
    CHECK(resumed_by_2);
}

DBLD_TEST(job_service_killed_mid_run_retried_elsewhere)
{
    bf f;
    setup(&f, "jobkill", 2);
    char *id = bf_submit(&f, H_STRS("js/1"));
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "js", &pid, &child)));
    char *ppid_text = bf_state_file(&f, "ppid-js");
    CHECK(ppid_text);
    int ppid = atoi(ppid_text);
    free(ppid_text);
    h_service *victim = f.job[0]->pid == ppid ? f.job[0] : f.job[1];
    h_service *survivor = victim == f.job[0] ? f.job[1] : f.job[0];
    CHECK_EQ_INT(victim->pid, ppid);
    unlink(dbld_arena_printf(f.a, "%s/pid-js", f.state));
    h_service_kill(victim);
    /* The first attempt dies with its job service (it would otherwise sleep
     * on for over 2 s and then write js/1 alongside the retry). */
    CHECK_MSG(H_POLL_UNTIL(1500, bf_pid_gone(pid)), "the orphaned first attempt %d still runs",
              pid);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    /* the lost run ends CANCELLED and the attempt goes on as a new job run
     * on the other job service: no failure, no quota */
    CHECK_EQ_STR(bf_runs_seq(&f, id, "js/1"),
                 "SCHEDULED RUNNING CANCELLED | SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_job_messages(&f, id, "js/1", JS(FAILED)), "");
    char *msg = bf_job_messages(&f, id, "js/1", JS(CANCELLED));
    CHECK_CONTAINS(msg, dbld_arena_printf(f.a, "lost job service %s", victim->addr));
    CHECK_CONTAINS(msg, "infrastructure failure");
    char *running = bf_job_messages(&f, id, "js/1", JS(RUNNING));
    CHECK_CONTAINS(running, dbld_arena_printf(f.a, "attempt 1 on %s", survivor->addr));
    CHECK(strstr(running, "attempt 2") == NULL);
    ppid_text = bf_state_file(&f, "ppid-js");
    CHECK(ppid_text);
    CHECK_EQ_INT(atoi(ppid_text), survivor->pid);
    free(ppid_text);
    check_settled(&f, id, H_STRS("js/1"));
    /* Its grandchild (same process group, no parent-death signal) is killed
     * when the job service starts again. */
    CHECK_MSG(!bf_pid_gone(child), "grandchild %d already gone before the restart", child);
    h_service_restart(victim);
    CHECK_MSG(H_POLL_UNTIL(5000, bf_pid_gone(child)),
              "grandchild %d of the first attempt still runs", child);
    char *log = h_read_file(victim->log_path, NULL);
    CHECK(log != NULL);
    CHECK_CONTAINS(log, "killed the process group of a job left by a dead job service");
    free(log);
}

/* The number of job runs of ref in a build ("A | B" -> 2). */
static int n_runs(bf *f, const char *id, const char *ref)
{
    const char *seq = bf_runs_seq(f, id, ref);
    int n = *seq ? 1 : 0;
    for (const char *p = seq; (p = strstr(p, " | ")); p += 3)
        n++;
    return n;
}

/* A relaunch of ref's run, after losing its job service before it started, is on record. */
static int relaunching(bf *f, const char *id, const char *ref)
{
    return strstr(bf_job_messages(f, id, ref, JS(SCHEDULED)), "relaunching in") != NULL;
}

/* Issue 15, defect 3: the only job service is killed with SIGKILL mid-run
 * and is back 3 s later. Losing the executor is an infrastructure failure,
 * not an attempt of the job: nr/1 has no retry config at all (any failed
 * attempt would end the build), yet the build completes. The lost run ends
 * CANCELLED, the attempt goes on as a new job run that is relaunched with
 * backoff (each relaunch while the job service is down recorded in that run's
 * SCHEDULED message), no JobEvent says FAILED or "retry denied", and every
 * run is attempt 1. */
DBLD_TEST(job_service_restarted_mid_build_costs_no_attempt)
{
    bf f;
    setup(&f, "jobrestart", 1);
    char *id = bf_submit(&f, H_STRS("nr/1"));
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "nr", &pid, &child)));
    CHECK(H_POLL_UNTIL(30000, link_running(&f, id, "nr/1")));
    unlink(dbld_arena_printf(f.a, "%s/pid-nr", f.state));
    h_service *job = f.job[0];
    h_service_kill(job);
    /* relaunches fail while it is down, and say so */
    CHECK(H_POLL_UNTIL(30000, relaunching(&f, id, "nr/1")));
    dbld_sleep_ms(3000); /* the outage of the issue */
    h_service_restart(job);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_STR(bf_job_messages(&f, id, "nr/1", JS(FAILED)), "");
    CHECK_EQ_INT(n_runs(&f, id, "nr/1"), 2);
    char *seq = bf_runs_seq(&f, id, "nr/1");
    const char *head = "SCHEDULED RUNNING CANCELLED | SCHEDULED SCHEDULED";
    CHECK_MSG(strncmp(seq, head, strlen(head)) == 0, "runs: %s", seq);
    CHECK_MSG(strcmp(seq + strlen(seq) - strlen(" RUNNING COMPLETED"), " RUNNING COMPLETED") == 0,
              "runs: %s", seq);
    char *lost = bf_job_messages(&f, id, "nr/1", JS(CANCELLED));
    CHECK_CONTAINS(lost, dbld_arena_printf(f.a, "lost job service %s", job->addr));
    CHECK_CONTAINS(lost, "infrastructure failure, not an attempt");
    CHECK_CONTAINS(lost, "no retry quota charged");
    CHECK(strstr(lost, "retry denied") == NULL);
    char *sched = bf_job_messages(&f, id, "nr/1", JS(SCHEDULED));
    CHECK_CONTAINS(sched, "before the run started: infrastructure failure, not an attempt");
    CHECK(strstr(sched, "retry denied") == NULL);
    /* the attempt count is unchanged: both runs are attempt 1 */
    char *running = bf_job_messages(&f, id, "nr/1", JS(RUNNING));
    CHECK_CONTAINS(running, "attempt 1 on");
    CHECK_CONTAINS(running, "\nattempt 1 on");
    CHECK(strstr(running, "attempt 2") == NULL);
    CHECK_EQ_INT(bf_execs(&f, "nr/1"), 2);
    CHECK_EQ_STR(bf_part_seq(&f, id, "nr/1"), "REQUESTED ANALYZED BUILDING BUILDING AVAILABLE");
    CHECK_EQ_INT(bf_part_status(&f, "nr/1"), PS(AVAILABLE));
    check_settled(&f, id, H_STRS("nr/1"));
    bf_check_ids(&f, id);
}

/* The relaunches are bounded (DBLD_GRAPH_RELAUNCH_MS shortens the 2 min):
 * a job service that stays away turns the relaunch into a launch failure
 * (UNTRIGGERED, not retried), which fails the build at once since nr/2 is
 * critical. */
DBLD_TEST(job_service_gone_for_good_fails_after_relaunches)
{
    setenv("DBLD_GRAPH_RELAUNCH_MS", "1500", 1);
    bf f;
    setup(&f, "jobgone", 1);
    char *id = bf_submit(&f, H_STRS("nr/2"));
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "nr", &pid, &child)));
    CHECK(H_POLL_UNTIL(30000, link_running(&f, id, "nr/2")));
    h_service_kill(f.job[0]);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(FAILED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_CONTAINS(end->message, "could not be launched: lost job service");
    char *failed = bf_job_messages(&f, id, "nr/2", JS(FAILED));
    CHECK_CONTAINS(failed, "attempt 1: launch failed: lost job service");
    CHECK_CONTAINS(failed, "gave up relaunching after");
    CHECK_CONTAINS(failed, "not retried: a critical task that cannot be launched fails the build");
    CHECK(strstr(failed, "retry denied") == NULL);
    CHECK_EQ_INT(n_runs(&f, id, "nr/2"), 2);
    CHECK_EQ_INT(bf_part_status(&f, "nr/2"), PS(FAILED));
    check_settled(&f, id, H_STRS("nr/2"));
    bf_check_ids(&f, id);
    /* the execution state (GetBuildExecution): the started run lost with its
     * job service is discarded, the same attempt's relaunch that never
     * started is UNTRIGGERED with the reason, a launch failure; no quota */
    qf q = qf_over_build(&f, "");
    Databuild__V1__BuildExecutionResponse *r = qf_execution_ok(&q, id);
    CHECK_EQ_INT(r->state->status, DATABUILD__V1__BUILD_EXECUTION_STATE__STATUS__FAILED);
    const Databuild__V1__TaskExecution *te = qf_task_of(r, "nr/2");
    CHECK_EQ_STR(qf_attempts_str(&f, te),
                 "1:CANCELLED/RESULT_UNSPECIFIED 1:UNTRIGGERED/FAILED_TRANSIENTLY");
    CHECK_EQ_INT(te->used_quota, 0);
    const Databuild__V1__ExecutionAttempt *u = te->attempts[1];
    CHECK_CONTAINS(u->untriggered_reason, "lost job service");
    CHECK_CONTAINS(u->untriggered_reason, "gave up relaunching after");
    CHECK_CONTAINS(failed, u->untriggered_reason); /* the JobEvent FAILED says the same */
    CHECK_EQ_INT(r->state->failures->n_launch_failures, 1);
    const Databuild__V1__BuildExecutionState__Failures__LaunchFailure *lf =
        r->state->failures->launch_failures[0];
    CHECK_EQ_STR(lf->job_run_id, u->job_run_id);
    CHECK_EQ_STR(lf->job_label, "//r:nr");
    CHECK_EQ_STR(lf->reason, u->untriggered_reason);
    CHECK_EQ_INT(r->state->failures->n_unsuccessful_job_run_ids, 0);
    CHECK_EQ_STR(qf_log_kinds(&f, r), "requirement_changed job_runs_launched job_run_discarded"
                                      " job_runs_launch_failed");
    const Databuild__V1__ExecutionLogEntry *last = r->log[r->n_log - 1];
    CHECK_EQ_STR(last->job_runs_launch_failed->job_runs[0]->reason, u->untriggered_reason);
    CHECK_EQ_STR(last->job_runs_launch_failed->job_runs[0]->job_run->job_run_id, u->job_run_id);
    CHECK_EQ_INT(last->job_runs_launch_failed->job_runs[0]->job_run->status,
                 DATABUILD__V1__EXECUTION_ATTEMPT__STATUS__UNTRIGGERED);
    CHECK_EQ_STR(r->log[2]->job_run_discarded->snapshot->job_run_id, te->attempts[0]->job_run_id);
    CHECK_CONTAINS(r->log[2]->job_run_discarded->reason, "infrastructure failure, not an attempt");
}

/* A Cancel while the task waits to relaunch ends the build without waiting
 * for the job service (or for the backoff). */
DBLD_TEST(cancel_while_relaunching)
{
    bf f;
    setup(&f, "jobcancel", 1);
    char *id = bf_submit(&f, H_STRS("nr/3"));
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "nr", &pid, &child)));
    CHECK(H_POLL_UNTIL(30000, link_running(&f, id, "nr/3")));
    h_service_kill(f.job[0]);
    CHECK(H_POLL_UNTIL(30000, relaunching(&f, id, "nr/3")));
    dbld_status st = {0};
    CHECK_OK(bf_cancel(&f, id, "stop waiting", &st), st);
    Databuild__V1__BuildRequestEvent *end = bf_build_last(&f, id);
    CHECK_MSG(end->status->code == BR(CANCELLED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_STR(bf_job_messages(&f, id, "nr/3", JS(FAILED)), "");
    char *seq = bf_runs_seq(&f, id, "nr/3");
    CHECK_MSG(strcmp(seq + strlen(seq) - strlen(" CANCELLED"), " CANCELLED") == 0, "runs: %s", seq);
    CHECK_CONTAINS(bf_job_messages(&f, id, "nr/3", JS(CANCELLED)), "build cancelled");
    CHECK_EQ_INT(bf_part_status(&f, "nr/3"), PS(FAILED));
    check_settled(&f, id, H_STRS("nr/3"));
    bf_check_ids(&f, id);
}

/* The event log goes away for a while mid-run. */
static void event_log_outage(int64_t outage_ms, const char *ref, const char *link)
{
    bf f;
    setup(&f, outage_ms > 3000 ? "outagelong" : "outageshort", 1);
    char *id = bf_submit(&f, (const char *const[]){ref, NULL});
    int pid = 0, child = 0;
    CHECK(H_POLL_UNTIL(20000, read_pids(&f, "link", &pid, &child)));
    h_service_kill(f.el);
    dbld_sleep_ms(outage_ms);
    h_service_restart(f.el);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 90000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    check_settled(&f, id, (const char *const[]){ref, link, NULL});
    CHECK_EQ_INT(bf_part_status(&f, ref), PS(AVAILABLE));
    if (outage_ms < 3000) { /* shorter than the lease: the build just waits */
        CHECK_EQ_STR(bf_runs_seq(&f, id, link), "SCHEDULED RUNNING COMPLETED");
        CHECK_EQ_INT(bf_execs(&f, link), 1);
    } else { /* the lease lapsed: abandoned, then resumed */
        CHECK_CONTAINS(bf_build_seq(&f, id), "EXECUTING PLANNING");
    }
    bf_check_ids(&f, id);
}

DBLD_TEST(event_log_outage_shorter_than_lease)
{
    event_log_outage(1000, "chain/5", "link/5");
}

DBLD_TEST(event_log_outage_longer_than_lease)
{
    event_log_outage(5000, "chain/6", "link/6");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(concurrent_builds_one_job_run),
               DBLD_TEST_ENTRY(two_replicas_one_job_run),
               DBLD_TEST_ENTRY(graph_killed_mid_build_resumes),
               DBLD_TEST_ENTRY(graph_sigterm_mid_build_resumes),
               DBLD_TEST_ENTRY(resumed_build_keeps_its_retry_quota),
               DBLD_TEST_ENTRY(live_replica_adopts_orphans),
               DBLD_TEST_ENTRY(frozen_coordinator_is_fenced_out),
               DBLD_TEST_ENTRY(job_service_killed_mid_run_retried_elsewhere),
               DBLD_TEST_ENTRY(job_service_restarted_mid_build_costs_no_attempt),
               DBLD_TEST_ENTRY(job_service_gone_for_good_fails_after_relaunches),
               DBLD_TEST_ENTRY(cancel_while_relaunching),
               DBLD_TEST_ENTRY(event_log_outage_shorter_than_lease),
               DBLD_TEST_ENTRY(event_log_outage_longer_than_lease))
