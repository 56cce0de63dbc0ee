/* test_build_failures.c - failing builds end to end: a permanent failure
 * cancels its downstream while an independent branch completes; LUCI-style
 * retries (transient failure retried then succeeding, quota exhausted, no
 * retry config, global quota); a timeout; cancelling a build mid-run kills
 * the job's whole process group.
 */
#include "test_build_fixture.h"

#include <errno.h>
#include <signal.h>

/* //f:slow's timeout_ms in JOBS (timeout_fails_the_run) */
#define SLOW_TIMEOUT_MS 10000

#define JOBS                                                                                       \
    "    - label: \"//f:perm\"\n      command: %CMD%\n      outputs: [\"perm/.*\"]\n"              \
    "    - label: \"//f:down\"\n      command: %CMD%\n      outputs: [\"down/.*\"]\n"              \
    "    - label: \"//f:top\"\n      command: %CMD%\n      outputs: [\"top/.*\"]\n"                \
    "    - label: \"//f:ind\"\n      command: %CMD%\n      outputs: [\"ind/.*\"]\n"                \
    "    - label: \"//f:trans\"\n      command: %CMD%\n      outputs: [\"trans/.*\"]\n"            \
    "      transient_exit_codes: [\"75\"]\n"                                                       \
    "      retry: {single_quota: 2, transient_failure_weight: 1, failure_weight: 5}\n"             \
    "    - label: \"//f:quota\"\n      command: %CMD%\n      outputs: [\"quota/.*\"]\n"            \
    "      retry: {single_quota: 1, failure_weight: 1}\n"                                          \
    "    - label: \"//f:global\"\n      command: %CMD%\n      outputs: [\"global/.*\"]\n"          \
    "      retry: {single_quota: 10, global_quota: 1, failure_weight: 1}\n"                        \
    "    - label: \"//f:noretry\"\n      command: %CMD%\n      outputs: [\"noretry/.*\"]\n"        \
    "    - label: \"//f:deny\"\n      command: %CMD%\n      outputs: [\"deny/.*\"]\n"              \
    "      no_retry_exit_codes: [\"65\"]\n"                                                        \
    "      retry: {single_quota: 10, failure_weight: 1}\n"                                         \
    "    - label: \"//f:slow\"\n      command: %CMD%\n      outputs: [\"slow/.*\"]\n"              \
    "      timeout_ms: 10000\n"                                                                    \
    "    - label: \"//f:hang\"\n      command: %CMD%\n      outputs: [\"hang/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"perm/.*\", \"exit\": 3},"                                                      \
    " {\"match\": \"down/(.*)\", \"inputs\": [\"perm/\\\\1\"]},"                                   \
    " {\"match\": \"top/(.*)\", \"inputs\": [\"down/\\\\1\", \"ind/\\\\1\"]},"                     \
    " {\"match\": \"ind/.*\", \"sleep\": 0.3},"                                                    \
    " {\"match\": \"trans/.*\", \"fail_times\": 1, \"fail_exit\": 75},"                            \
    " {\"match\": \"quota/.*\", \"exit\": 3},"                                                     \
    " {\"match\": \"global/.*\", \"exit\": 3},"                                                    \
    " {\"match\": \"noretry/.*\", \"exit\": 3},"                                                   \
    " {\"match\": \"deny/.*\", \"exit\": 65},"                                                     \
    " {\"match\": \"slow/.*\", \"sleep\": 600},"                                                   \
    " {\"match\": \"hang/(.*)\", \"sleep\": 60, \"pidfile\": true, \"tag\": \"hang\"}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

static void setup(bf *f, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(f, hint, &o);
}

/* The job_run_id of the n-th distinct run of ref in a build (0-based). */
static const char *nth_run(bf *f, const char *id, const char *ref, size_t nth)
{
    h_event_list l = bf_events(f, id);
    const char *seen[16];
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT ||
            !bf_has_ref(e->job_event->target_partitions, e->job_event->n_target_partitions, ref))
            continue;
        size_t k = 0;
        while (k < n && strcmp(seen[k], e->job_event->job_run_id) != 0)
            k++;
        if (k == n && n < 16) seen[n++] = e->job_event->job_run_id;
    }
    return nth < n ? seen[nth] : "";
}

DBLD_TEST(permanent_failure_cancels_downstream_only)
{
    bf f;
    setup(&f, "perm");
    dbld_status st = {0};
    CHECK_CODE(bf_build(&f, H_STRS("top/1", "ind/5"), NULL, &st), st, DBLD_ABORTED);
    CHECK_CONTAINS(st.msg, "perm/1");
    const char *id = bf_all_events(&f).events[0]->build_request_id;
    Databuild__V1__BuildRequestEvent *end = bf_build_last(&f, id);
    CHECK_EQ_INT(end->status->code, BR(FAILED));
    CHECK_CONTAINS(end->message, "perm/1");
    CHECK_CONTAINS(end->message, "down/1");
    CHECK_CONTAINS(end->message, "top/1");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "perm/1"), "SCHEDULED RUNNING FAILED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "perm/1", JS(FAILED)), "FAILURE_PERMANENT");
    CHECK_CONTAINS(bf_job_messages(&f, id, "perm/1", JS(FAILED)),
                   "retry denied: retry is not enabled in the config");
    CHECK_EQ_STR(bf_part_seq(&f, id, "perm/1"), "ANALYZED BUILDING FAILED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "down/1"), "CANCELLED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "down/1", JS(CANCELLED)), "upstream perm/1 failed");
    CHECK_EQ_STR(bf_part_seq(&f, id, "down/1"), "ANALYZED FAILED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "top/1"), "CANCELLED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "top/1", JS(CANCELLED)), "upstream down/1 failed");
    CHECK_EQ_STR(bf_part_seq(&f, id, "top/1"), "REQUESTED ANALYZED FAILED");
    /* the independent branches completed */
    CHECK_EQ_STR(bf_runs_seq(&f, id, "ind/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "ind/5"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_INT(bf_part_status(&f, "ind/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_INT(bf_execs(&f, "down/1"), 0);
    CHECK_EQ_INT(bf_execs(&f, "top/1"), 0);
    bf_check_ids(&f, id);
}

DBLD_TEST(transient_failure_retried_then_succeeds)
{
    bf f;
    setup(&f, "trans");
    char *id = bf_submit(&f, H_STRS("trans/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    CHECK_EQ_STR(bf_runs_seq(&f, id, "trans/1"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING COMPLETED");
    char *msg = bf_job_messages(&f, id, "trans/1", JS(FAILED));
    CHECK_CONTAINS(msg, "FAILURE_TRANSIENT");
    const char *second = nth_run(&f, id, "trans/1", 1);
    CHECK(dbld_uuid_valid(second));
    CHECK_CONTAINS(msg, dbld_arena_printf(f.a, "retrying as %s", second));
    CHECK_EQ_STR(bf_part_seq(&f, id, "trans/1"), "REQUESTED ANALYZED BUILDING BUILDING AVAILABLE");
    CHECK_EQ_INT(bf_execs(&f, "trans/1"), 2);
    bf_check_ids(&f, id);
}

DBLD_TEST(quota_exhausted_denies_retry)
{
    bf f;
    setup(&f, "quota");
    char *id = bf_submit(&f, H_STRS("quota/1"));
    CHECK_EQ_INT(bf_wait(&f, id, 60000)->status->code, BR(FAILED));
    /* single_quota 1, weight 1: the first failure (used 1) is retried, the second (used 2) not */
    CHECK_EQ_STR(bf_runs_seq(&f, id, "quota/1"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING FAILED");
    char *msg = bf_job_messages(&f, id, "quota/1", JS(FAILED));
    CHECK_CONTAINS(msg, "retrying as");
    CHECK_CONTAINS(msg, "retry denied: insufficient quota");
    CHECK_EQ_INT(bf_execs(&f, "quota/1"), 2);
    CHECK_EQ_STR(bf_part_seq(&f, id, "quota/1"), "REQUESTED ANALYZED BUILDING BUILDING FAILED");
}

DBLD_TEST(global_quota_exhausted)
{
    bf f;
    setup(&f, "global");
    char *id = bf_submit(&f, H_STRS("global/1"));
    CHECK_EQ_INT(bf_wait(&f, id, 60000)->status->code, BR(FAILED));
    CHECK_EQ_STR(bf_runs_seq(&f, id, "global/1"),
                 "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING FAILED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "global/1", JS(FAILED)),
                   "retry denied: insufficient global quota");
}

DBLD_TEST(no_retry_config_denies)
{
    bf f;
    setup(&f, "noretry");
    char *id = bf_submit(&f, H_STRS("noretry/1"));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_EQ_INT(end->status->code, BR(FAILED));
    CHECK_CONTAINS(end->message, "noretry/1");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "noretry/1"), "SCHEDULED RUNNING FAILED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "noretry/1", JS(FAILED)),
                   "retry denied: retry is not enabled in the config");
    CHECK_EQ_INT(bf_execs(&f, "noretry/1"), 1);
}

/* The job denies a retry by its exit code: one attempt, whatever the quota. */
DBLD_TEST(job_denies_retry)
{
    bf f;
    setup(&f, "deny");
    char *id = bf_submit(&f, H_STRS("deny/1"));
    CHECK_EQ_INT(bf_wait(&f, id, 60000)->status->code, BR(FAILED));
    CHECK_EQ_STR(bf_runs_seq(&f, id, "deny/1"), "SCHEDULED RUNNING FAILED");
    char *msg = bf_job_messages(&f, id, "deny/1", JS(FAILED));
    CHECK_CONTAINS(msg, "an exit code that denies retry");
    CHECK_CONTAINS(msg, "retry denied: job explicitly denies retry in its output");
    CHECK_EQ_INT(bf_execs(&f, "deny/1"), 1);
}

/* slow/1 sleeps 600 s under a 10 s timeout: the build fails with
 * FAILURE_TIMEOUT no earlier than the timeout and far earlier than the
 * sleep's end. The timeout bounds the job's `config` call too, so it leaves
 * room for python to start on a loaded machine (1 s did not, and 3 s is
 * not generous under ASan with the machine loaded); the bounds on the
 * build's end are generous for the same reason. */
DBLD_TEST(timeout_fails_the_run)
{
    bf f;
    setup(&f, "timeout");
    int64_t t0 = dbld_mono_ms();
    char *id = bf_submit(&f, H_STRS("slow/1"));
    CHECK_EQ_INT(bf_wait(&f, id, 120000)->status->code, BR(FAILED));
    int64_t took = dbld_mono_ms() - t0;
    h_note("the build failed %lld ms after it was submitted (timeout %lld ms)", (long long)took,
           (long long)SLOW_TIMEOUT_MS);
    CHECK_CMP_INT(took, >=, SLOW_TIMEOUT_MS);
    CHECK_CMP_INT(took, <, 100000);
    CHECK_EQ_STR(bf_runs_seq(&f, id, "slow/1"), "SCHEDULED RUNNING FAILED");
    CHECK_CONTAINS(bf_job_messages(&f, id, "slow/1", JS(FAILED)), "FAILURE_TIMEOUT");
    CHECK_EQ_INT(bf_part_status(&f, "slow/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
}

DBLD_TEST(cancel_mid_run_kills_process_group)
{
    bf f;
    setup(&f, "cancel");
    char *id = bf_submit(&f, H_STRS("hang/1", "ind/1"));
    char *pids = NULL;
    CHECK(H_POLL_UNTIL(20000, (pids = bf_state_file(&f, "pid-hang")) != NULL));
    int pid = 0, child = 0;
    CHECK_EQ_INT(sscanf(pids, "%d %d", &pid, &child), 2);
    free(pids);
    CHECK(!bf_pid_gone(pid));
    CHECK(!bf_pid_gone(child));
    dbld_status st = {0};
    CHECK_OK(bf_cancel(&f, id, "test says stop", &st), st);
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 20000);
    CHECK_EQ_INT(end->status->code, BR(CANCELLED));
    CHECK_CONTAINS(end->message, "test says stop");
    CHECK(H_POLL_UNTIL(10000, bf_pid_gone(pid) && bf_pid_gone(child)));
    CHECK_EQ_STR(bf_runs_seq(&f, id, "hang/1"), "SCHEDULED RUNNING CANCELLED");
    CHECK_EQ_INT(bf_count_kind(&f, id, DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT),
                 1);
    CHECK_EQ_INT(bf_part_status(&f, "hang/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
    CHECK_EQ_STR(bf_part_seq(&f, id, "hang/1"), "REQUESTED ANALYZED BUILDING FAILED");
    char *seq = bf_build_seq(&f, id);
    CHECK_EQ_STR(seq, "RECEIVED PLANNING ANALYSIS_COMPLETED EXECUTING CANCELLED");
    bf_check_ids(&f, id);
    /* cancelling again: it already ended */
    CHECK_CODE(bf_cancel(&f, id, "again", &st), st, DBLD_FAILED_PRECONDITION);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(permanent_failure_cancels_downstream_only),
               DBLD_TEST_ENTRY(transient_failure_retried_then_succeeds),
               DBLD_TEST_ENTRY(quota_exhausted_denies_retry),
               DBLD_TEST_ENTRY(global_quota_exhausted), DBLD_TEST_ENTRY(no_retry_config_denies),
               DBLD_TEST_ENTRY(job_denies_retry), DBLD_TEST_ENTRY(timeout_fails_the_run),
               DBLD_TEST_ENTRY(cancel_mid_run_kills_process_group))
