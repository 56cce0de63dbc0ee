/* test_job_service.c - databuild-job over gRPC with a real event log behind
 * it: Configure (ok, garbage JSON, non-zero exit, unknown/mixed refs, missing
 * binary), Execute (refused), Run (success with manifest, permanent and transient
 * failures, a stderr tail far over 4 KiB keeping its last line, timeout
 * killing the process group, spawn failure), Cancel, the
 * concurrency limit, refs with shell and quote characters, the environment
 * and its policy (loader and interpreter variables refused, the YAML env not
 * overridable, env_allow), jobs run as job.run_as with the orphan sweep, the
 * wrapper's job logs as stored by the event log, a dead event log,
 * SIGTERM with a job running, and the state directory's slot file (one per
 * job service, slots reused, swept after SIGKILL, removed at a clean stop).
 *
 * The jobs are tests/jobs/testjob.py in its several modes (see there).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIGURE_PATH "/databuild.v1.JobConfigure/Configure"
#define EXECUTE_PATH "/databuild.v1.JobExecute/Execute"
#define RUN_PATH "/databuild.v1.JobRunner/Run"
#define CANCEL_PATH "/databuild.v1.JobRunner/Cancel"
#define LOGS_LIST_PATH "/databuild.v1.JobLogs/List"
#define TESTJOB DBLD_SOURCE_DIR "/tests/jobs/testjob.py"
#define CALL_MS 30000

typedef struct fixture {
    char dsn[1024];
    h_service *el, *job;
    dbld_arena *a;
} fixture;

typedef struct fixture_opts {
    int max_runs;         /* default 4 */
    int kill_grace_ms;    /* default 300 */
    const char *eventlog; /* override the event log address (a dead one) */
} fixture_opts;

static const char *job_section(dbld_arena *a, const fixture_opts *o)
{
    return dbld_arena_printf(
        a,
        "  max_concurrent_runs: %d\n"
        "  kill_grace_ms: %d\n"
        "  heartbeat_ms: 100\n"
        "graph:\n"
        "  jobs:\n"
        "    - label: \"//test:ok\"\n"
        "      command: [python3, \"" TESTJOB "\"]\n"
        "      outputs: [\"ok/.*\"]\n"
        "      env: [\"ARGV_DUMP=%s/argv\", \"FROM_YAML=yes\"]\n"
        "      transient_exit_codes: [\"75\"]\n"
        "    - label: \"//test:slow\"\n"
        "      command: [python3, \"" TESTJOB "\"]\n"
        "      outputs: [\"slow/.*\"]\n"
        "      timeout_ms: 3000\n"
        "    - label: \"//test:garbage\"\n"
        "      command: [python3, \"" TESTJOB "\", \"--config-mode=garbage\"]\n"
        "      outputs: [\"garbage/.*\"]\n"
        "    - label: \"//test:cfgfail\"\n"
        "      command: [python3, \"" TESTJOB "\", \"--config-mode=fail\"]\n"
        "      outputs: [\"cfgfail/.*\"]\n"
        "    - label: \"//test:partial\"\n"
        "      command: [python3, \"" TESTJOB "\", \"--config-mode=partial\"]\n"
        "      outputs: [\"partial/.*\"]\n"
        "    - label: \"//test:noisy\"\n"
        "      command: [python3, \"" TESTJOB "\", \"--config-mode=noisy\"]\n"
        "      outputs: [\"noisy/.*\"]\n"
        "    - label: \"//test:missing\"\n"
        "      command: [\"/nonexistent/databuild-test-job\"]\n"
        "      outputs: [\"missing/.*\"]\n"
        "    - label: \"//test:allow\"\n"
        "      command: [python3, \"" TESTJOB "\"]\n"
        "      outputs: [\"allow/.*\"]\n"
        "      env_allow: [JOB_REF, \"ALLOWED_*\"]\n"
        "    - label: \"//test:true\"\n"
        "      command: [\"/bin/true\"]\n"
        "      outputs: [\"true/.*\"]\n"
        "    - label: \"//test:badenv\"\n"
        "      command: [python3, \"" TESTJOB "\", \"--config-mode=ldpreload\"]\n"
        "      outputs: [\"badenv/.*\"]\n",
        o->max_runs > 0 ? o->max_runs : 4, o->kill_grace_ms > 0 ? o->kill_grace_ms : 300,
        h_test_dir());
}

static fixture setup_with(const char *hint, const fixture_opts *o)
{
    fixture f;
    f.a = dbld_arena_create();
    h_db_create(hint, f.dsn, sizeof f.dsn);
    f.el = h_service_start("eventlog", f.dsn, NULL);
    h_service_opts jo = {
        .eventlog_addr = o->eventlog ? o->eventlog : f.el->addr,
        .extra_section = job_section(f.a, o),
    };
    f.job = h_service_start("job", NULL, &jo);
    return f;
}

/* Stop the job service gracefully: CHECKs exit status 0 (so a sanitizer
 * build also checks it for leaks). */
static void teardown(fixture *f)
{
    h_service_stop(f->job);
    dbld_arena_destroy(f->a);
}

static fixture setup(const char *hint)
{
    fixture_opts o = {0};
    return setup_with(hint, &o);
}

/* ---- calls ---- */

static Databuild__V1__PartitionRef *pref(dbld_arena *a, const char *s)
{
    Databuild__V1__PartitionRef *r = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    r->str = dbld_arena_strdup(a, s);
    return r;
}

static Databuild__V1__PartitionRef **prefs(dbld_arena *a, const char *const *refs, size_t *n)
{
    for (*n = 0; refs[*n]; (*n)++) {
    }
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (*n + 1) * sizeof *out);
    for (size_t i = 0; i < *n; i++)
        out[i] = pref(a, refs[i]);
    return out;
}

static int configure(fixture *f, const char *const *refs, Databuild__V1__JobConfigureResponse **out,
                     dbld_status *st)
{
    Databuild__V1__JobConfigureRequest req = DATABUILD__V1__JOB_CONFIGURE_REQUEST__INIT;
    req.outputs = prefs(f->a, refs, &req.n_outputs);
    return dbld_client_unary(f->job->client, CONFIGURE_PATH, &req.base,
                             &databuild__v1__job_configure_response__descriptor,
                             dbld_arena_allocator(f->a), (ProtobufCMessage **)out, CALL_MS, 0, st);
}

static int execute(fixture *f, const char *const *refs, Databuild__V1__JobExecuteResponse **out,
                   dbld_status *st)
{
    Databuild__V1__JobExecuteRequest req = DATABUILD__V1__JOB_EXECUTE_REQUEST__INIT;
    req.outputs = prefs(f->a, refs, &req.n_outputs);
    return dbld_client_unary(f->job->client, EXECUTE_PATH, &req.base,
                             &databuild__v1__job_execute_response__descriptor,
                             dbld_arena_allocator(f->a), (ProtobufCMessage **)out, CALL_MS, 0, st);
}

/* A task of job `label` producing `ref` (input up/<ref>), with exec args. */
static Databuild__V1__Task *task(dbld_arena *a, const char *label, const char *ref,
                                 const char *const *args)
{
    Databuild__V1__Task *t = dbld_arena_msg(a, &databuild__v1__task__descriptor);
    t->job = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
    t->job->label = dbld_arena_strdup(a, label);
    Databuild__V1__JobConfig *c = dbld_arena_msg(a, &databuild__v1__job_config__descriptor);
    t->config = c;
    c->outputs = dbld_arena_alloc(a, sizeof *c->outputs);
    c->outputs[0] = pref(a, ref);
    c->n_outputs = 1;
    c->inputs = dbld_arena_alloc(a, sizeof *c->inputs);
    c->inputs[0] = dbld_arena_msg(a, &databuild__v1__data_dep__descriptor);
    c->inputs[0]->dep_type_code = DATABUILD__V1__DEP_TYPE__MATERIALIZE;
    c->inputs[0]->partition_ref = pref(a, dbld_arena_printf(a, "up/%s", ref));
    c->n_inputs = 1;
    for (c->n_args = 0; args[c->n_args]; c->n_args++) {
    }
    c->args = dbld_arena_alloc(a, (c->n_args + 1) * sizeof *c->args);
    for (size_t i = 0; i < c->n_args; i++)
        c->args[i] = dbld_arena_strdup(a, args[i]);
    c->env = dbld_arena_alloc(a, sizeof *c->env);
    c->env[0] = dbld_arena_msg(a, &databuild__v1__job_config__env_entry__descriptor);
    c->env[0]->key = "JOB_REF";
    c->env[0]->value = dbld_arena_strdup(a, ref);
    c->n_env = 1;
    return t;
}

/* Replace the task's env with the pairs key0, value0, key1, ... (NULL-terminated). */
static Databuild__V1__Task *with_env(dbld_arena *a, Databuild__V1__Task *t, const char *const *kv)
{
    Databuild__V1__JobConfig *c = t->config;
    size_t n = 0;
    while (kv[2 * n])
        n++;
    c->env = dbld_arena_alloc(a, (n + 1) * sizeof *c->env);
    for (size_t i = 0; i < n; i++) {
        c->env[i] = dbld_arena_msg(a, &databuild__v1__job_config__env_entry__descriptor);
        c->env[i]->key = dbld_arena_strdup(a, kv[2 * i]);
        c->env[i]->value = dbld_arena_strdup(a, kv[2 * i + 1]);
    }
    c->n_env = n;
    return t;
}

static int run_call(h_service *job, dbld_arena *a, const char *run_id, const char *br,
                    Databuild__V1__Task *t, int64_t timeout_ms, Databuild__V1__RunJobResponse **out,
                    dbld_status *st)
{
    Databuild__V1__RunJobRequest req = DATABUILD__V1__RUN_JOB_REQUEST__INIT;
    req.job_run_id = (char *)run_id;
    req.build_request_id = (char *)br;
    req.task = t;
    return dbld_client_unary(job->client, RUN_PATH, &req.base,
                             &databuild__v1__run_job_response__descriptor, dbld_arena_allocator(a),
                             (ProtobufCMessage **)out, timeout_ms, 0, st);
}

/* Run with RunJobRequest.return_logs set. */
static Databuild__V1__RunJobResponse *run_return_logs(fixture *f, const char *run_id,
                                                      Databuild__V1__Task *t)
{
    Databuild__V1__RunJobRequest req = DATABUILD__V1__RUN_JOB_REQUEST__INIT;
    req.job_run_id = (char *)run_id;
    req.build_request_id = "br-test";
    req.task = t;
    req.return_logs = 1;
    Databuild__V1__RunJobResponse *r = NULL;
    dbld_status st;
    CHECK_OK(dbld_client_unary(
                 f->job->client, RUN_PATH, &req.base, &databuild__v1__run_job_response__descriptor,
                 dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, CALL_MS, 0, &st),
             st);
    return r;
}

static Databuild__V1__RunJobResponse *run_ok(fixture *f, const char *run_id, Databuild__V1__Task *t)
{
    Databuild__V1__RunJobResponse *r = NULL;
    dbld_status st;
    CHECK_OK(run_call(f->job, f->a, run_id, "br-test", t, CALL_MS, &r, &st), st);
    return r;
}

static int cancel_call(fixture *f, const char *run_id, int *found, dbld_status *st)
{
    Databuild__V1__CancelJobRunRequest req = DATABUILD__V1__CANCEL_JOB_RUN_REQUEST__INIT;
    req.job_run_id = (char *)run_id;
    req.reason = "test cancels it";
    Databuild__V1__CancelJobRunResponse *r = NULL;
    int rc = dbld_client_unary(f->job->client, CANCEL_PATH, &req.base,
                               &databuild__v1__cancel_job_run_response__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, CALL_MS, 0, st);
    *found = r ? r->found : 0;
    return rc;
}

/* A Run on its own thread (own arena). */
typedef struct bg_run {
    pthread_t th;
    h_service *job;
    dbld_arena *a;
    const char *run_id;
    Databuild__V1__Task *task;
    int64_t timeout_ms;
    int rc;
    dbld_status st;
    Databuild__V1__RunJobResponse *resp;
} bg_run;

static void *bg_main(void *arg)
{
    bg_run *b = arg;
    b->rc = run_call(b->job, b->a, b->run_id, "br-bg", b->task, b->timeout_ms, &b->resp, &b->st);
    return NULL;
}

static bg_run *bg_start(h_service *job, const char *run_id, const char *label, const char *ref,
                        const char *const *args)
{
    bg_run *b = dbld_xcalloc(1, sizeof *b);
    b->job = job;
    b->a = dbld_arena_create();
    b->run_id = dbld_arena_strdup(b->a, run_id);
    b->task = task(b->a, label, ref, args);
    b->timeout_ms = CALL_MS;
    if (pthread_create(&b->th, NULL, bg_main, b) != 0) H_FAIL("pthread_create failed");
    return b;
}

static void bg_join(bg_run *b)
{
    pthread_join(b->th, NULL);
}

/* ---- processes and files ---- */

/* Running and not a zombie (a killed grandchild may stay a zombie until
 * init reaps it; it is gone for our purposes). */
static int pid_alive(pid_t pid)
{
    if (kill(pid, 0) != 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *stat = h_read_file(path, NULL);
    if (!stat) return 0;
    const char *rp = strrchr(stat, ')');
    int zombie = rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
    free(stat);
    return !zombie;
}

/* Wait for the "<pid> <grandchild pid>" file a `sleep` task writes. */
static void read_pids(const char *path, pid_t *pid, pid_t *grandchild)
{
    char *text = NULL;
    CHECK_MSG(H_POLL_UNTIL(15000, (free(text), text = h_read_file(path, NULL)) != NULL),
              "the job never wrote %s", path);
    int a = 0, b = 0;
    CHECK_MSG(sscanf(text, "%d %d", &a, &b) == 2, "bad pid file %s: \"%s\"", path, text);
    free(text);
    *pid = a;
    *grandchild = b;
    CHECK(pid_alive(*pid));
    CHECK(pid_alive(*grandchild));
}

static void check_gone(pid_t pid, pid_t grandchild)
{
    CHECK_MSG(H_POLL_UNTIL(5000, !pid_alive(pid) && !pid_alive(grandchild)),
              "job process %d or its grandchild %d still alive", (int)pid, (int)grandchild);
}

static const char *path_in_test_dir(dbld_arena *a, const char *name)
{
    return dbld_arena_printf(a, "%s/%s", h_test_dir(), name);
}

static char *new_run_id(dbld_arena *a)
{
    char id[37];
    dbld_uuid_v4(id);
    return dbld_arena_strdup(a, id);
}

/* ================================================================ Configure */

DBLD_TEST(configure_ok)
{
    fixture f = setup("cfgok");
    Databuild__V1__JobConfigureResponse *r = NULL;
    dbld_status st;
    CHECK_OK(configure(&f, H_STRS("ok/a", "ok/b"), &r, &st), st);
    CHECK_EQ_INT(r->n_configs, 2);
    const char *want[] = {"ok/a", "ok/b"};
    for (size_t i = 0; i < 2; i++) {
        Databuild__V1__JobConfig *c = r->configs[i];
        CHECK_EQ_INT(c->n_outputs, 1);
        CHECK_EQ_STR(c->outputs[0]->str, want[i]);
        CHECK_EQ_INT(c->n_inputs, 1);
        CHECK_EQ_INT(c->inputs[0]->dep_type_code, DATABUILD__V1__DEP_TYPE__MATERIALIZE);
        CHECK_EQ_STR(c->inputs[0]->dep_type_name, "materialize");
        CHECK_EQ_STR(c->inputs[0]->partition_ref->str, dbld_arena_printf(f.a, "up/%s", want[i]));
        CHECK_EQ_INT(c->n_args, 2);
        CHECK_EQ_STR(c->args[0], "ok");
        CHECK_EQ_STR(c->args[1], want[i]);
        CHECK_EQ_INT(c->n_env, 1);
        CHECK_EQ_STR(c->env[0]->key, "JOB_REF");
        CHECK_EQ_STR(c->env[0]->value, want[i]);
    }
    /* The job saw `config ok/a ok/b`: one configure call for both refs. */
    size_t len;
    char *argv = h_read_file(path_in_test_dir(f.a, "argv.config"), &len);
    CHECK(argv != NULL);
    const char *tail = "\0config\0ok/a\0ok/b";
    size_t tl = 17;
    CHECK(len > tl && memcmp(argv + len - tl, tail, tl) == 0);
    free(argv);
    teardown(&f);
}

DBLD_TEST(configure_garbage_json)
{
    fixture f = setup("cfggarbage");
    Databuild__V1__JobConfigureResponse *r = NULL;
    dbld_status st;
    CHECK_CODE(configure(&f, H_STRS("garbage/x"), &r, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "job //test:garbage config");
    CHECK_CONTAINS(st.msg, "garbage/x");
    CHECK_CONTAINS(st.msg, "invalid JSON"); /* the JSON error itself */
    CHECK_CONTAINS(st.msg, "this is not json");
    teardown(&f);
}

DBLD_TEST(configure_nonzero_exit)
{
    fixture f = setup("cfgfail");
    Databuild__V1__JobConfigureResponse *r = NULL;
    dbld_status st;
    CHECK_CODE(configure(&f, H_STRS("cfgfail/x", "cfgfail/y"), &r, &st), st,
               DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "job //test:cfgfail config failed with exit code 3");
    CHECK_CONTAINS(st.msg, "cfgfail/x, cfgfail/y");
    CHECK_CONTAINS(st.msg, "stderr tail:\nconfig problem 1\nconfig problem 2\nconfig problem 3\n"
                           "cannot configure: upstream table missing");
    teardown(&f);
}

DBLD_TEST(configure_errors)
{
    fixture f = setup("cfgerr");
    Databuild__V1__JobConfigureResponse *r = NULL;
    dbld_status st;
    /* No job produces it. */
    CHECK_CODE(configure(&f, H_STRS("ok/a", "nomatch/x"), &r, &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "\"nomatch/x\"");
    /* Refs of two jobs in one request. */
    CHECK_CODE(configure(&f, H_STRS("ok/a", "garbage/b"), &r, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "//test:ok");
    CHECK_CONTAINS(st.msg, "//test:garbage");
    CHECK_CONTAINS(st.msg, "\"ok/a\" -> //test:ok");
    CHECK_CONTAINS(st.msg, "\"garbage/b\" -> //test:garbage");
    /* A pattern matches in full only: "ok/.*" does not take "xok/a". */
    CHECK_CODE(configure(&f, H_STRS("xok/a"), &r, &st), st, DBLD_NOT_FOUND);
    /* No refs. */
    CHECK_CODE(configure(&f, H_NOSTRS, &r, &st), st, DBLD_INVALID_ARGUMENT);
    /* The binary does not exist. */
    CHECK_CODE(configure(&f, H_STRS("missing/x"), &r, &st), st, DBLD_INTERNAL);
    CHECK_CONTAINS(st.msg, "job //test:missing config could not be started");
    CHECK_CONTAINS(st.msg, "/nonexistent/databuild-test-job");
    CHECK_CONTAINS(st.msg, "missing/x");
    /* A config that leaves a requested ref out. */
    CHECK_CODE(configure(&f, H_STRS("partial/a", "partial/b"), &r, &st), st,
               DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "no config for ref \"partial/b\"");
    teardown(&f);
}

/* ================================================================== Execute */

/* The seed's Execute is refused (it would run outside claims and the event
 * log): UNIMPLEMENTED naming what to use instead, also for refs whose
 * configure would fail (it configures nothing). */
DBLD_TEST(execute_refused)
{
    fixture f = setup("execute");
    Databuild__V1__JobExecuteResponse *r = NULL;
    dbld_status st;
    CHECK_CODE(execute(&f, H_STRS("ok/e1", "ok/e2"), &r, &st), st, DBLD_UNIMPLEMENTED);
    CHECK_CONTAINS(st.msg, "JobExecute.Execute is refused");
    CHECK_CONTAINS(st.msg, "no partition claims");
    CHECK_CONTAINS(st.msg, "GraphBuilder.Submit");
    CHECK_CODE(execute(&f, H_STRS("cfgfail/x"), &r, &st), st, DBLD_UNIMPLEMENTED);
    /* the same job runs through Configure + Run */
    Databuild__V1__JobConfigureResponse *cr = NULL;
    CHECK_OK(configure(&f, H_STRS("ok/e1"), &cr, &st), st);
    teardown(&f);
}

/* ====================================================================== Run */

DBLD_TEST(run_success_manifest)
{
    fixture f = setup("runok");
    char *id = new_run_id(f.a);
    Databuild__V1__Task *t = task(f.a, "//test:ok", "ok/r1", H_STRS("ok", "ok/r1"));
    int64_t before = dbld_now_ns() / 1000000000;
    Databuild__V1__RunJobResponse *r = run_ok(&f, id, t);
    int64_t after = dbld_now_ns() / 1000000000;
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_EQ_INT(r->exit_code, 0);
    CHECK_EQ_INT(r->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_KIND_UNSPECIFIED);
    CHECK_CONTAINS(r->message, "//test:ok");
    CHECK_CONTAINS(r->stderr_tail, "a warning on stderr");
    Databuild__V1__PartitionManifest *m = r->manifest;
    CHECK(m != NULL);
    CHECK_EQ_INT(m->n_outputs, 1);
    CHECK_EQ_STR(m->outputs[0]->str, "ok/r1");
    CHECK_EQ_INT(m->n_inputs, 1);
    CHECK_EQ_STR(m->inputs[0]->outputs[0]->str, "up/ok/r1");
    CHECK_CMP_INT(m->start_time, >=, before);
    CHECK_CMP_INT(m->start_time, <=, m->end_time);
    CHECK_CMP_INT(m->end_time, <=, after);
    CHECK(m->task != NULL);
    CHECK(h_msg_equal(&m->task->base, &t->base));
    teardown(&f);
}

DBLD_TEST(run_failures)
{
    fixture f = setup("runfail");
    /* Non-zero exit: permanent, with the stderr tail (last 20 lines). */
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, new_run_id(f.a), task(f.a, "//test:ok", "ok/f1", H_STRS("exit", "3")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_EQ_INT(r->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_PERMANENT);
    CHECK_EQ_INT(r->exit_code, 3);
    CHECK(r->manifest == NULL);
    CHECK_CONTAINS(r->message, "job //test:ok failed with exit code 3");
    CHECK_CONTAINS(r->message, "ok/f1");
    CHECK_CONTAINS(r->message, "error line 11\n");
    CHECK_CONTAINS(r->message, "error line 30");
    CHECK(strstr(r->message, "error line 10\n") == NULL);
    CHECK_CONTAINS(r->stderr_tail, "error line 30");

    /* An exit code listed in transient_exit_codes. */
    r = run_ok(&f, new_run_id(f.a), task(f.a, "//test:ok", "ok/f2", H_STRS("exit", "75")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_EQ_INT(r->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT);
    CHECK_EQ_INT(r->exit_code, 75);
    CHECK_CONTAINS(r->message, "exit code 75");

    /* Spawn failure: transient, the cause named. */
    r = run_ok(&f, new_run_id(f.a), task(f.a, "//test:missing", "missing/x", H_STRS("x")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_EQ_INT(r->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT);
    CHECK_CONTAINS(r->message, "job //test:missing could not be started");
    CHECK_CONTAINS(r->message, "No such file or directory");
    CHECK_CONTAINS(r->message, "missing/x");

    /* Requests that cannot run. */
    dbld_status st;
    CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br",
                        task(f.a, "//test:nope", "ok/x", H_STRS("ok")), CALL_MS, &r, &st),
               st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "unknown job label \"//test:nope\"");
    CHECK_CODE(run_call(f.job, f.a, "", "br", task(f.a, "//test:ok", "ok/x", H_STRS("ok")), CALL_MS,
                        &r, &st),
               st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "job_run_id");
    teardown(&f);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A stderr tail far over 4 KiB is cut from the front: its last line stays,
 * in the RunJob message and in Execute's status (1 KiB) alike. */
DBLD_TEST(run_long_stderr_tail)
{
    fixture f = setup("longtail");
    /* 40 lines of 300 bytes, then a short last line. */
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, new_run_id(f.a),
               task(f.a, "//test:ok", "ok/t1", H_STRS("noisy", "40", "300", "0", "3")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_CMP_INT(strlen(r->stderr_tail), <=, 4096);
    CHECK_CMP_INT(strlen(r->stderr_tail), >, 4000);
    CHECK_MSG(ends_with(r->message, "\n the last line"), "message ends: ...%s",
              r->message + strlen(r->message) - 40);
    CHECK_CONTAINS(r->message,
                   "job //test:ok failed with exit code 3 (refs: ok/t1); stderr tail:\n");
    CHECK_CONTAINS(r->message, "noise line 40 ");
    CHECK(strstr(r->message, "noise line 1 ") == NULL);

    /* The last line alone is over 64 KiB: it reaches us in two pieces, the
     * second shorter than 4 KiB. Its end stays, as one line. */
    r = run_ok(&f, new_run_id(f.a),
               task(f.a, "//test:ok", "ok/t2", H_STRS("noisy", "40", "300", "66000", "3")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_EQ_INT(strlen(r->stderr_tail), 4096);
    CHECK(strchr(r->stderr_tail, '\n') == NULL);
    CHECK(ends_with(r->stderr_tail, "zzz the last line"));
    CHECK(ends_with(r->message, "zzz the last line"));

    teardown(&f);
}

static void timeout_case(fixture *f, const char *pidname, const char *const *args, int64_t min_ms)
{
    const char *pidfile = path_in_test_dir(f->a, pidname);
    const char **full = dbld_arena_alloc(f->a, 8 * sizeof *full);
    size_t n = 0;
    full[n++] = "sleep";
    full[n++] = "100";
    full[n++] = pidfile;
    for (size_t i = 0; args[i]; i++)
        full[n++] = args[i];
    bg_run *b = bg_start(f->job, new_run_id(f->a), "//test:slow", "slow/t", full);
    int64_t t0 = dbld_mono_ms();
    pid_t pid, gc;
    read_pids(pidfile, &pid, &gc);
    bg_join(b);
    int64_t took = dbld_mono_ms() - t0;
    CHECK_OK(b->rc, b->st);
    Databuild__V1__RunJobResponse *r = b->resp;
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
    CHECK_EQ_INT(r->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_TIMEOUT);
    CHECK_CONTAINS(r->message, "job //test:slow timed out after 3000 ms");
    CHECK_CONTAINS(r->message, "slow/t");
    CHECK_CMP_INT(took, >=, min_ms - 200);
    CHECK_CMP_INT(took, <, 10000);
    check_gone(pid, gc);
}

DBLD_TEST(run_timeout_kills_group)
{
    fixture f = setup("timeout");
    timeout_case(&f, "pids1", H_NOSTRS, 2800);
    /* A job (and grandchild) ignoring SIGTERM is SIGKILLed after kill_grace_ms. */
    timeout_case(&f, "pids2", H_STRS("ignore-term"), 3000 + 300);
    teardown(&f);
}

DBLD_TEST(cancel_mid_run)
{
    fixture f = setup("cancel");
    const char *pidfile = path_in_test_dir(f.a, "pids");
    char *id = new_run_id(f.a);
    bg_run *b = bg_start(f.job, id, "//test:ok", "ok/c", H_STRS("sleep", "100", pidfile));
    pid_t pid, gc;
    read_pids(pidfile, &pid, &gc);
    /* The same job_run_id cannot run twice at once. */
    Databuild__V1__RunJobResponse *r;
    dbld_status st;
    CHECK_CODE(run_call(f.job, f.a, id, "br", task(f.a, "//test:ok", "ok/c", H_STRS("ok")), CALL_MS,
                        &r, &st),
               st, DBLD_ALREADY_EXISTS);
    int found = 0;
    CHECK_OK(cancel_call(&f, id, &found, &st), st);
    CHECK(found);
    bg_join(b);
    CHECK_OK(b->rc, b->st);
    CHECK_EQ_INT(b->resp->status, DATABUILD__V1__JOB_STATUS__JOB_CANCELLED);
    CHECK_CONTAINS(b->resp->message, "cancelled: test cancels it");
    CHECK_CONTAINS(b->resp->message, "ok/c");
    check_gone(pid, gc);
    /* Finished or unknown runs are not found. */
    CHECK_OK(cancel_call(&f, id, &found, &st), st);
    CHECK(!found);
    CHECK_OK(cancel_call(&f, "no-such-run", &found, &st), st);
    CHECK(!found);
    teardown(&f);
}

static void read_stamps(const char *path, int64_t *start, int64_t *end)
{
    char *text = h_read_file(path, NULL);
    CHECK_MSG(text != NULL, "no stamp file %s", path);
    long long s = 0, e = 0;
    CHECK_MSG(sscanf(text, "%lld %lld", &s, &e) == 2, "bad stamp file %s: \"%s\"", path, text);
    free(text);
    *start = s;
    *end = e;
}

DBLD_TEST(concurrency_limit)
{
    fixture_opts o = {.max_runs = 1};
    fixture f = setup_with("concurrency", &o);
    const char *s1 = path_in_test_dir(f.a, "stamp1"), *s2 = path_in_test_dir(f.a, "stamp2");
    bg_run *b1 = bg_start(f.job, new_run_id(f.a), "//test:ok", "ok/s1", H_STRS("stamp", s1, "0.8"));
    char *text = NULL;
    CHECK(H_POLL_UNTIL(15000, (free(text), text = h_read_file(s1, NULL)) != NULL));
    free(text);
    bg_run *b2 = bg_start(f.job, new_run_id(f.a), "//test:ok", "ok/s2", H_STRS("stamp", s2, "0.2"));
    /* A third run with a short deadline cannot get the slot in time. */
    Databuild__V1__RunJobResponse *r;
    dbld_status st;
    CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br",
                        task(f.a, "//test:ok", "ok/s3", H_STRS("ok", "ok/s3")), 300, &r, &st),
               st, DBLD_DEADLINE_EXCEEDED);
    bg_join(b1);
    bg_join(b2);
    CHECK_OK(b1->rc, b1->st);
    CHECK_OK(b2->rc, b2->st);
    CHECK_EQ_INT(b1->resp->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_EQ_INT(b2->resp->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    int64_t st1, en1, st2, en2;
    read_stamps(s1, &st1, &en1);
    read_stamps(s2, &st2, &en2);
    CHECK_MSG(st2 >= en1, "second run started %lld ns before the first ended",
              (long long)(en1 - st2));
    /* The slot is free again afterwards. */
    r = run_ok(&f, new_run_id(f.a), task(f.a, "//test:ok", "ok/s4", H_STRS("exit", "0")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    teardown(&f);
}

DBLD_TEST(shell_characters_pass_untouched)
{
    fixture f = setup("weird");
    const char *weird = "ok/a b c;'\"$(x)`y`\\ *|&>~";
    Databuild__V1__JobConfigureResponse *cr = NULL;
    dbld_status st;
    CHECK_OK(configure(&f, (const char *const[]){weird, NULL}, &cr, &st), st);
    CHECK_EQ_INT(cr->n_configs, 1);
    CHECK_EQ_STR(cr->configs[0]->outputs[0]->str, weird);
    CHECK_EQ_STR(cr->configs[0]->args[1], weird);
    size_t len;
    char *argv = h_read_file(path_in_test_dir(f.a, "argv.config"), &len);
    CHECK(argv != NULL);
    size_t wl = strlen(weird);
    CHECK(len > wl + 1 && argv[len - wl - 1] == '\0' && memcmp(argv + len - wl, weird, wl) == 0);
    free(argv);

    /* Exec: the configured task with the ref as an argument, dumped by the job. */
    const char *dump = path_in_test_dir(f.a, "argv.exec");
    Databuild__V1__Task *t = dbld_arena_msg(f.a, &databuild__v1__task__descriptor);
    t->job = dbld_arena_msg(f.a, &databuild__v1__job_label__descriptor);
    t->job->label = "//test:ok";
    t->config = cr->configs[0];
    t->config->args = (char **)(const char *[]){"argv", dump, weird};
    t->config->n_args = 3;
    Databuild__V1__RunJobResponse *r = run_ok(&f, new_run_id(f.a), t);
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    argv = h_read_file(dump, &len);
    CHECK(argv != NULL);
    /* ... "exec" NUL "argv" NUL dump NUL weird */
    size_t want_len = 0, dl = strlen(dump);
    char *want = dbld_arena_alloc(f.a, 16 + dl + wl);
    memcpy(want, "exec\0argv\0", 10);
    want_len = 10;
    memcpy(want + want_len, dump, dl + 1);
    want_len += dl + 1;
    memcpy(want + want_len, weird, wl);
    want_len += wl;
    CHECK(len > want_len && memcmp(argv + len - want_len, want, want_len) == 0);
    free(argv);
    CHECK_EQ_STR(r->manifest->outputs[0]->str, weird);
    teardown(&f);
}

DBLD_TEST(run_environment)
{
    fixture f = setup("env");
    const char *dump = path_in_test_dir(f.a, "env");
    char *id = new_run_id(f.a);
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, id, task(f.a, "//test:ok", "ok/env", H_STRS("env", dump)));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    char *env = h_read_file(dump, NULL);
    CHECK(env != NULL);
    CHECK_CONTAINS(env, "\nJOB_REF=ok/env\n"); /* the config's env */
    CHECK_CONTAINS(env, "\nFROM_YAML=yes\n");  /* the job's env from the YAML file */
    CHECK_CONTAINS(env, "\nPATH=");            /* inherited */
    CHECK_CONTAINS(env, dbld_arena_printf(f.a, "\nDATABUILD_JOB_RUN_ID=%s\n", id));
    CHECK_CONTAINS(env, "\nDATABUILD_BUILD_REQUEST_ID=br-test\n");
    CHECK_CONTAINS(env, "\nDATABUILD_JOB_LABEL=//test:ok\n");
    free(env);
    teardown(&f);
}

/* ===================================================================== logs */

static int logs_call(fixture *f, const char *run_id, Databuild__V1__JobLogsResponse **r,
                     dbld_status *st)
{
    Databuild__V1__JobLogsRequest req = DATABUILD__V1__JOB_LOGS_REQUEST__INIT;
    req.job_run_id = (char *)run_id;
    req.limit = 10000;
    *r = NULL;
    return dbld_client_unary(f->el->client, LOGS_LIST_PATH, &req.base,
                             &databuild__v1__job_logs_response__descriptor,
                             dbld_arena_allocator(f->a), (ProtobufCMessage **)r, CALL_MS, 0, st);
}

static Databuild__V1__JobLogsResponse *list_logs(fixture *f, const char *run_id)
{
    Databuild__V1__JobLogsResponse *r;
    dbld_status st;
    CHECK_OK(logs_call(f, run_id, &r, &st), st);
    return r;
}

static const char *field(Databuild__V1__LogMessage *m, const char *k)
{
    for (size_t i = 0; i < m->n_fields; i++)
        if (strcmp(m->fields[i]->key, k) == 0) return m->fields[i]->value;
    return NULL;
}

DBLD_TEST(job_logs_stored)
{
    fixture f = setup("logs");
    char *id = new_run_id(f.a);
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, id, task(f.a, "//test:ok", "ok/logs", H_STRS("ok", "ok/logs")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    /* Stored by the time Run returns. */
    Databuild__V1__JobLogsResponse *lr = list_logs(&f, id);
    size_t n = lr->n_entries;
    CHECK_CMP_INT(n, >=, 9);
    int n_info = 0, n_warn = 0, n_error = 0, n_metric = 0, n_hb = 0, n_launch = 0, n_exit = 0,
        n_manifest = 0, n_bad = 0;
    int64_t prev_ts = 0;
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__JobLogEntry *e = lr->entries[i];
        CHECK_EQ_INT(e->sequence_number, i + 1);
        CHECK_EQ_STR(e->job_id, id);
        CHECK_EQ_INT(e->n_outputs, 1);
        CHECK_EQ_STR(e->outputs[0]->str, "ok/logs");
        char *end;
        long long ts = strtoll(e->timestamp, &end, 10);
        CHECK_MSG(*e->timestamp && !*end && ts > 1600000000000000000LL,
                  "timestamp \"%s\" is not unix ns", e->timestamp);
        CHECK_CMP_INT(ts, >=, prev_ts);
        prev_ts = ts;
        switch (e->content_case) {
        case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG:
            if (strcmp(e->log->message, "hello from stdout for ok/logs") == 0) {
                CHECK_EQ_INT(e->log->level, DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__INFO);
                CHECK_EQ_STR(field(e->log, "stream"), "stdout");
                n_info++;
            } else if (strcmp(e->log->message, "a warning on stderr") == 0) {
                CHECK_EQ_INT(e->log->level, DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__WARN);
                CHECK_EQ_STR(field(e->log, "stream"), "stderr");
                n_warn++;
            } else if (strncmp(e->log->message, "bad ", 4) == 0) {
                /* invalid UTF-8 arrives as U+FFFD replacement characters */
                CHECK_EQ_STR(e->log->message, "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
                n_bad++;
            } else if (strcmp(e->log->message, "structured") == 0) {
                CHECK_EQ_INT(e->log->level, DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR);
                CHECK_EQ_STR(field(e->log, "k"), "v");
                CHECK_EQ_STR(field(e->log, "n"), "3");
                n_error++;
            }
            break;
        case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC:
            CHECK_EQ_STR(e->metric->name, "rows");
            CHECK(e->metric->value == 42.0);
            CHECK_EQ_STR(e->metric->unit, "rows");
            CHECK_EQ_INT(e->metric->n_labels, 1);
            CHECK_EQ_STR(e->metric->labels[0]->key, "table");
            n_metric++;
            break;
        case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_JOB_EVENT:
            CHECK_EQ_STR(e->job_event->job_label, "//test:ok");
            if (strcmp(e->job_event->event_type, "task_launch_success") == 0) {
                CHECK_EQ_INT(i, 0);
                n_launch++;
            } else if (strcmp(e->job_event->event_type, "heartbeat") == 0) {
                CHECK_EQ_STR(e->job_event->job_status, "JOB_RUNNING");
                n_hb++;
            } else if (strcmp(e->job_event->event_type, "task_exit") == 0) {
                CHECK_EQ_INT(e->job_event->exit_code, 0);
                CHECK_EQ_STR(e->job_event->job_status, "JOB_COMPLETED");
                CHECK_EQ_INT(i, n - 2);
                n_exit++;
            } else {
                H_FAIL("unexpected wrapper event \"%s\"", e->job_event->event_type);
            }
            break;
        case DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_MANIFEST:
            CHECK_EQ_INT(i, n - 1);
            CHECK_EQ_STR(e->manifest->outputs[0]->str, "ok/logs");
            CHECK_EQ_STR(e->manifest->task->job->label, "//test:ok");
            n_manifest++;
            break;
        default:
            H_FAIL("entry %zu has no content", i);
        }
    }
    CHECK_EQ_INT(n_info, 1);
    CHECK_EQ_INT(n_warn, 1);
    CHECK_EQ_INT(n_error, 1);
    CHECK_EQ_INT(n_metric, 1);
    CHECK_EQ_INT(n_bad, 1);
    CHECK_EQ_INT(n_launch, 1);
    CHECK_EQ_INT(n_exit, 1);
    CHECK_EQ_INT(n_manifest, 1);
    CHECK_CMP_INT(n_hb, >=, 2); /* heartbeat_ms 100, the job runs ~350 ms */

    /* The same, straight from the table. */
    h_rows *rows = h_sql(f.dsn,
                         "SELECT seq, content, level FROM job_logs WHERE job_run_id = $1 "
                         "ORDER BY seq",
                         id);
    CHECK_EQ_INT(h_rows_n(rows), n);
    for (int i = 0; i < h_rows_n(rows); i++)
        CHECK_EQ_INT(h_rows_i64(rows, i, 0), i + 1);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 1), 7);                  /* job_event */
    CHECK_EQ_INT(h_rows_i64(rows, h_rows_n(rows) - 1, 1), 8); /* manifest */
    h_rows_free(rows);

    /* Many lines: batches, still 1..N without gaps. */
    char *id2 = new_run_id(f.a);
    r = run_ok(&f, id2, task(f.a, "//test:ok", "ok/many", H_STRS("lines", "3000")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    rows = h_sql(f.dsn,
                 "SELECT count(*), min(seq), max(seq), count(*) FILTER (WHERE content = 5) "
                 "FROM job_logs WHERE job_run_id = $1",
                 id2);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 0), h_rows_i64(rows, 0, 2));
    CHECK_EQ_INT(h_rows_i64(rows, 0, 1), 1);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 3), 3000);
    h_rows_free(rows);
    teardown(&f);
}

/* A dead event log does not fail or hang the job run. */
/* 1 when the stored log of run_id has an entry whose message contains text. */
static int log_has(fixture *f, const char *run_id, const char *text)
{
    Databuild__V1__JobLogsResponse *r;
    dbld_status st;
    if (logs_call(f, run_id, &r, &st) != 0) return 0; /* NOT_FOUND until something is stored */
    for (size_t i = 0; i < r->n_entries; i++)
        if (r->entries[i]->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG &&
            strstr(r->entries[i]->log->message, text))
            return 1;
    return 0;
}

/* Output the event log would refuse was lost: 290 lines of 60 kB went in one
 * JobLogs/Append of 17 MB (over the event log's 16 MiB) and a field of 20,000
 * bytes (over the 16 KiB string limit) got the whole batch refused; both were
 * retried until the run ended, then dropped. Batches are now cut at 1 MiB and
 * fields cut to their limit ("..."). Found by tests/fuzz/fuzz_joblog. */
/* RunJobRequest.return_logs: a short run's log comes back in the result and
 * is not stored by the job service; a run that had to send (more than
 * batch_max entries) stores all of it and hands nothing back. Never both,
 * never neither. */
DBLD_TEST(job_logs_handed_back)
{
    fixture f = setup("logsback");
    int handed_back = 0;
    for (int i = 0; i < 5 && !handed_back; i++) {
        char *id = new_run_id(f.a);
        Databuild__V1__RunJobResponse *r =
            run_return_logs(&f, id, task(f.a, "//test:true", "true/a", H_STRS("x")));
        CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
        h_rows *rows = h_sql(f.dsn, "SELECT count(*) FROM job_logs WHERE job_run_id = $1", id);
        int64_t stored = h_rows_i64(rows, 0, 0);
        h_rows_free(rows);
        /* launch, exit, manifest: handed back or stored, not both */
        CHECK_MSG((r->n_log_entries == 3 && stored == 0) || (r->n_log_entries == 0 && stored == 3),
                  "%zu entries handed back, %lld stored", r->n_log_entries, (long long)stored);
        if (!r->n_log_entries) continue; /* it took 200 ms: sent as before */
        handed_back = 1;
        for (size_t k = 0; k < r->n_log_entries; k++) {
            const Databuild__V1__JobLogEntry *e = r->log_entries[k];
            CHECK_EQ_STR(e->job_id, id);
            CHECK_EQ_INT(e->sequence_number, k + 1);
            CHECK_EQ_INT(e->content_case, k == 2 ? DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_MANIFEST
                                                 : DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_JOB_EVENT);
        }
        CHECK_EQ_STR(r->log_entries[0]->job_event->event_type, "task_launch_success");
        CHECK_EQ_STR(r->log_entries[1]->job_event->event_type, "task_exit");
    }
    CHECK_MSG(handed_back, "no run of /bin/true ended within 200 ms in 5 tries");

    /* More than batch_max (500) entries: the run's flusher sent them. */
    char *id = new_run_id(f.a);
    Databuild__V1__RunJobResponse *r =
        run_return_logs(&f, id, task(f.a, "//test:ok", "ok/back", H_STRS("lines", "1200")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_EQ_INT(r->n_log_entries, 0);
    h_rows *rows =
        h_sql(f.dsn, "SELECT count(*), min(seq), max(seq) FROM job_logs WHERE job_run_id = $1", id);
    CHECK_CMP_INT(h_rows_i64(rows, 0, 0), >=, 1203);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 0), h_rows_i64(rows, 0, 2));
    CHECK_EQ_INT(h_rows_i64(rows, 0, 1), 1);
    h_rows_free(rows);
    teardown(&f);
}

/* 1 if the file at path contains text. */
static int file_contains(const char *path, const char *text)
{
    char *s = h_read_file(path, NULL);
    int found = s && strstr(s, text) != NULL;
    free(s);
    return found;
}

/* At least min entries of run id stored, numbered 1..count without a gap. */
static int logs_complete(fixture *f, const char *id, int64_t min)
{
    h_rows *rows = h_sql(f->dsn,
                         "SELECT count(*), coalesce(max(seq), 0) FROM job_logs"
                         " WHERE job_run_id = $1",
                         id);
    int ok = h_rows_i64(rows, 0, 0) >= min && h_rows_i64(rows, 0, 1) == h_rows_i64(rows, 0, 0);
    h_rows_free(rows);
    return ok;
}

DBLD_TEST(job_logs_large_output_stored)
{
    fixture f = setup("biglogs");
    char *id = new_run_id(f.a);
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, id, task(f.a, "//test:ok", "ok/big", H_STRS("biglog", "290", "60000")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    /* launch, 290 lines, the JSON line, heartbeats, exit, manifest: all stored,
     * numbered from 1 without a gap. On a loaded machine the tail may still be
     * on its way (the shared flusher keeps sending what the run's close could
     * not), but none of it is lost. */
    CHECK_MSG(H_POLL_UNTIL(60000, logs_complete(&f, id, 294)),
              "the run's log was not stored whole within 60 s");
    h_rows *rows = h_sql(f.dsn,
                         "SELECT count(*), min(seq), max(seq) FROM job_logs"
                         " WHERE job_run_id = $1",
                         id);
    CHECK_CMP_INT(h_rows_i64(rows, 0, 0), >=, 294);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 1), 1);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 2), h_rows_i64(rows, 0, 0));
    h_rows_free(rows);
    Databuild__V1__JobLogsRequest req = DATABUILD__V1__JOB_LOGS_REQUEST__INIT;
    req.job_run_id = id;
    req.min_level = DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR;
    Databuild__V1__JobLogsResponse *lr = NULL;
    dbld_status st;
    CHECK_OK(dbld_client_unary(f.el->client, LOGS_LIST_PATH, &req.base,
                               &databuild__v1__job_logs_response__descriptor,
                               dbld_arena_allocator(f.a), (ProtobufCMessage **)&lr, CALL_MS, 0,
                               &st),
             st);
    const char *big = NULL;
    for (size_t i = 0; i < lr->n_entries; i++)
        if (lr->entries[i]->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG &&
            strcmp(lr->entries[i]->log->message, "big field") == 0)
            big = field(lr->entries[i]->log, "big");
    CHECK_MSG(big != NULL, "the JSON line with the big field was not stored");
    CHECK_EQ_INT(strlen(big), DBLD_LIMIT_STRING_BYTES);
    CHECK_CMP_INT(strspn(big, "y"), ==, DBLD_LIMIT_STRING_BYTES - 3);
    CHECK_EQ_STR(big + DBLD_LIMIT_STRING_BYTES - 3, "...");
    teardown(&f);
}

/* A long run's log is stored while it runs (the flusher starts once the run
 * has lasted flush_ms), not only when it ends. */
DBLD_TEST(job_logs_stored_while_running)
{
    fixture f = setup("livelogs");
    const char *pidfile = path_in_test_dir(f.a, "pids");
    char *id = new_run_id(f.a);
    bg_run *b = bg_start(f.job, id, "//test:ok", "ok/live", H_STRS("sleep", "30", pidfile));
    pid_t pid, gc;
    read_pids(pidfile, &pid, &gc);
    CHECK_MSG(H_POLL_UNTIL(10000, log_has(&f, id, "sleeping 30")),
              "the running job's output line was not stored within 10 s");
    CHECK_EQ_INT(kill(pid, 0), 0); /* still running */
    int found = 0;
    dbld_status st;
    CHECK_OK(cancel_call(&f, id, &found, &st), st);
    bg_join(b);
    CHECK_EQ_INT(b->resp->status, DATABUILD__V1__JOB_STATUS__JOB_CANCELLED);
    check_gone(pid, gc);
    teardown(&f);
}

DBLD_TEST(eventlog_down_run_still_works)
{
    dbld_arena *a = dbld_arena_create();
    char dead[64];
    snprintf(dead, sizeof dead, "127.0.0.1:%d", h_free_port());
    fixture_opts o = {.eventlog = dead};
    fixture f = setup_with("eldown", &o);
    h_service_kill(f.el); /* not used: the job service points at a dead port */
    int64_t t0 = dbld_mono_ms();
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, new_run_id(a), task(f.a, "//test:ok", "ok/nolog", H_STRS("ok", "ok/nolog")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_CMP_INT(dbld_mono_ms() - t0, <, 15000);
    char *log = h_read_file(f.job->log_path, NULL);
    CHECK_CONTAINS(log, "could not store job logs");
    free(log);
    dbld_arena_destroy(a);
    teardown(&f);
}

/* A run that ends while the event log is down keeps its log: the close gives
 * up after its short last chance, the shared flusher keeps the tail and
 * stores it once the event log is back. */
DBLD_TEST(job_log_tail_stored_after_eventlog_returns)
{
    fixture f = setup("eltail");
    h_service_kill(f.el);
    char *id = new_run_id(f.a);
    Databuild__V1__RunJobResponse *r =
        run_ok(&f, id, task(f.a, "//test:ok", "ok/tail", H_STRS("ok", "ok/tail")));
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_MSG(H_POLL_UNTIL(10000, file_contains(f.job->log_path,
                                                "job log tail left to the background flusher")),
              "the run's unsent log was not left to the flusher");
    h_service_restart(f.el);
    CHECK_MSG(H_POLL_UNTIL(30000, logs_complete(&f, id, 3)),
              "the run's log was not stored once the event log was back");
    CHECK_MSG(H_POLL_UNTIL(
                  10000, file_contains(f.job->log_path, "job log tail stored after the run ended")),
              "the flusher did not say the tail was stored");
    char *log = h_read_file(f.job->log_path, NULL);
    CHECK_MSG(strstr(log, "job log entries not stored") == NULL, "entries were dropped:\n%s", log);
    free(log);
    teardown(&f);
}

/* ======================================================= environment policy */

/* 1 if an env dump (KEY=VALUE lines) has the line kv. */
static int env_has_line(const char *dump, const char *kv)
{
    size_t n = strlen(kv);
    for (const char *p = dump; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, kv, n) == 0 && (p[n] == '\n' || p[n] == 0)) return 1;
    return 0;
}

#define CHECK_ENV_LINE(dump, kv)                                                                   \
    CHECK_MSG(env_has_line((dump), (kv)), "no line \"%s\" in the job's environment:\n%s", (kv),    \
              (dump) ? (dump) : "(none)")

/* Issue 15's repro: a Run request whose task.config.env sets interpreter
 * and loader variables ran code as the job service's user (root). Each is
 * refused with INVALID_ARGUMENT naming it, and no job process starts (no
 * marker, no env dump). */
DBLD_TEST(run_env_policy_refuses)
{
    fixture f = setup("envpolicy");
    const char *marker = path_in_test_dir(f.a, "marker");
    const char *dump = path_in_test_dir(f.a, "env.dump");
    const char *browser = dbld_arena_printf(f.a, "/bin/sh -c 'id > %s' #%%s", marker);
    Databuild__V1__RunJobResponse *r = NULL;
    dbld_status st;
    Databuild__V1__Task *t = task(f.a, "//test:ok", "ok/repro", H_STRS("env", dump));
    with_env(f.a, t,
             H_STRS("JOB_REF", "ok/repro", "PYTHONWARNINGS", "ignore::antigravity.x::0", "BROWSER",
                    browser));
    CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br", t, CALL_MS, &r, &st), st,
               DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "task.config.env refused for job //test:ok: \"PYTHONWARNINGS\" is "
                           "denylisted (PYTHON*: read by an interpreter");

    struct {
        const char *key, *value, *want;
    } cases[] = {
        {"BROWSER", browser, "\"BROWSER\" is denylisted (BROWSER: "},
        {"LD_PRELOAD", "/nonexistent/x.so", "\"LD_PRELOAD\" is denylisted (LD_*: "},
        {"PATH", "/tmp", "\"PATH\" is denylisted (PATH: "},
        {"BASH_ENV", "/tmp/x", "\"BASH_ENV\" is denylisted"},
        /* the YAML env wins */
        {"FROM_YAML", "no", "\"FROM_YAML\" is set by the job's env in the configuration file"},
        {"DATABUILD_JOB_RUN_ID", "x", "\"DATABUILD_JOB_RUN_ID\" is reserved"},
        {"A=B", "x", "\"A=B\" is not a valid variable name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = task(f.a, "//test:ok", "ok/repro", H_STRS("env", dump));
        with_env(f.a, t, H_STRS("JOB_REF", "ok/repro", cases[i].key, cases[i].value));
        CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br", t, CALL_MS, &r, &st), st,
                   DBLD_INVALID_ARGUMENT);
        CHECK_CONTAINS(st.msg, cases[i].want);
    }
    CHECK_MSG(access(marker, F_OK) != 0, "the BROWSER command ran: %s exists", marker);
    CHECK_MSG(access(dump, F_OK) != 0, "a refused job ran: %s exists", dump);

    /* What a config step may set still reaches the job. */
    t = task(f.a, "//test:ok", "ok/fine", H_STRS("env", dump));
    with_env(f.a, t, H_STRS("JOB_REF", "ok/fine", "MY_SETTING", "x y"));
    r = run_ok(&f, new_run_id(f.a), t);
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    char *env = h_read_file(dump, NULL);
    CHECK_ENV_LINE(env, "MY_SETTING=x y");
    CHECK_ENV_LINE(env, "FROM_YAML=yes");
    free(env);
    teardown(&f);
}

/* A job with env_allow: listed names pass and reach the job, others are
 * refused; the list cannot re-enable a denylisted name. */
DBLD_TEST(run_env_allowlist)
{
    fixture f = setup("envallow");
    const char *dump = path_in_test_dir(f.a, "env.dump");
    Databuild__V1__Task *t = task(f.a, "//test:allow", "allow/a", H_STRS("env", dump));
    with_env(f.a, t, H_STRS("JOB_REF", "allow/a", "ALLOWED_X", "1"));
    Databuild__V1__RunJobResponse *r = run_ok(&f, new_run_id(f.a), t);
    CHECK_EQ_INT(r->status, DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    char *env = h_read_file(dump, NULL);
    CHECK_ENV_LINE(env, "ALLOWED_X=1");
    CHECK_ENV_LINE(env, "JOB_REF=allow/a");
    free(env);
    unlink(dump);

    dbld_status st;
    t = task(f.a, "//test:allow", "allow/b", H_STRS("env", dump));
    with_env(f.a, t, H_STRS("JOB_REF", "allow/b", "OTHER", "1"));
    CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br", t, CALL_MS, &r, &st), st,
               DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "task.config.env refused for job //test:allow: \"OTHER\" is not in "
                           "the job's env_allow list");
    t = task(f.a, "//test:allow", "allow/c", H_STRS("env", dump));
    with_env(f.a, t, H_STRS("LD_PRELOAD", "/x.so"));
    CHECK_CODE(run_call(f.job, f.a, new_run_id(f.a), "br", t, CALL_MS, &r, &st), st,
               DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "\"LD_PRELOAD\" is denylisted");
    CHECK(access(dump, F_OK) != 0);
    teardown(&f);
}

/* A config step that returns LD_PRELOAD fails at configure (and so does
 * Execute), naming the variable, before anything runs. */
DBLD_TEST(configure_env_refused)
{
    fixture f = setup("cfgenv");
    Databuild__V1__JobConfigureResponse *r = NULL;
    dbld_status st;
    CHECK_CODE(configure(&f, H_STRS("badenv/a", "badenv/b"), &r, &st), st,
               DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "job //test:badenv config returned an env the job service refuses: "
                           "\"LD_PRELOAD\" is denylisted (LD_*: ");
    CHECK_CONTAINS(st.msg, "(config for badenv/a; refs: badenv/a, badenv/b)");
    teardown(&f);
}

/* ================================================================== run_as */

/* The user the test clusters run as (as the harness picks it). */
static const char *runas_user(void)
{
    const char *u = getenv("DBLD_TEST_PG_RUNAS");
    return u && *u ? u : "databuild";
}

static const char *runas_section(dbld_arena *a, const char *user, const char *dir)
{
    return dbld_arena_printf(a,
                             "  run_as: \"%s\"\n"
                             "  kill_grace_ms: 300\n"
                             "graph:\n"
                             "  jobs:\n"
                             "    - label: \"//test:runas\"\n"
                             "      command: [python3, \"" TESTJOB "\"]\n"
                             "      outputs: [\"ra/.*\"]\n"
                             "      working_dir: \"%s\"\n"
                             "      env: [\"ARGV_DUMP=%s/argv\"]\n",
                             user, dir, dir);
}

static uid_t file_owner(const char *path)
{
    struct stat sb;
    CHECK_MSG(stat(path, &sb) == 0, "stat %s: %s", path, strerror(errno));
    return sb.st_uid;
}

static long proc_uid(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *text = h_read_file(path, NULL);
    CHECK_MSG(text != NULL, "no %s", path);
    const char *u = strstr(text, "\nUid:");
    CHECK(u != NULL);
    long uid = strtol(u + 5, NULL, 10);
    free(text);
    return uid;
}

/* Started as root with job.run_as, the job service runs configure and exec
 * as that user (uid, gid, HOME/USER), still kills a run's process group on
 * timeout/cancel, and a restart after SIGKILL sweeps what the dead one left
 * (the direct child dies with it). Not root: a run_as naming another user
 * is a configuration error. */
DBLD_TEST(run_as_user)
{
    dbld_arena *a = dbld_arena_create();
    char dsn[1024];
    h_db_create("runas", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    if (geteuid() != 0) {
        h_service_opts ro = {.eventlog_addr = el->addr,
                             .extra_section = runas_section(a, "root", "/tmp")};
        char *errs = h_service_refused("job", NULL, &ro);
        CHECK_CONTAINS(errs, "job.run_as: the job service runs as uid");
        CHECK_CONTAINS(errs, "cannot run jobs as user \"root\" (uid 0)");
        free(errs);
        h_note("not root: only the refusal of job.run_as was checked");
        dbld_arena_destroy(a);
        return;
    }
    h_service_opts bad = {.eventlog_addr = el->addr,
                          .extra_section = runas_section(a, "dbld-no-such-user", "/tmp")};
    char *errs = h_service_refused("job", NULL, &bad);
    CHECK_CONTAINS(errs, "job.run_as: no user \"dbld-no-such-user\" on this host");
    free(errs);

    const char *user = runas_user();
    struct passwd *pw = getpwnam(user);
    CHECK_MSG(pw != NULL, "no unix user %s (DBLD_TEST_PG_RUNAS)", user);
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    const char *dir = path_in_test_dir(a, "runas");
    CHECK_MSG(mkdir(dir, 0755) == 0 && chown(dir, uid, gid) == 0, "mkdir/chown %s: %s", dir,
              strerror(errno));
    h_service_opts jo = {.eventlog_addr = el->addr, .extra_section = runas_section(a, user, dir)};
    h_service *job = h_service_start("job", NULL, &jo);
    char *log = h_read_file(job->log_path, NULL);
    CHECK_CONTAINS(log, "jobs run as another user");
    free(log);

    /* configure: its ARGV_DUMP is written by the user */
    Databuild__V1__JobConfigureRequest creq = DATABUILD__V1__JOB_CONFIGURE_REQUEST__INIT;
    creq.outputs = prefs(a, H_STRS("ra/1"), &creq.n_outputs);
    Databuild__V1__JobConfigureResponse *cr = NULL;
    dbld_status st;
    CHECK_OK(dbld_client_unary(job->client, CONFIGURE_PATH, &creq.base,
                               &databuild__v1__job_configure_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&cr, CALL_MS, 0, &st),
             st);
    CHECK_EQ_INT(file_owner(dbld_arena_printf(a, "%s/argv.config", dir)), uid);

    /* exec: uid, gid and the user's environment */
    const char *ids = dbld_arena_printf(a, "%s/ids", dir),
               *envf = dbld_arena_printf(a, "%s/env", dir);
    Databuild__V1__RunJobResponse *r = NULL;
    CHECK_OK(run_call(job, a, new_run_id(a), "br",
                      task(a, "//test:runas", "ra/1", H_STRS("ids", ids)), CALL_MS, &r, &st),
             st);
    CHECK_MSG(r->status == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED, "run: %s", r->message);
    char *text = h_read_file(ids, NULL);
    CHECK(text != NULL);
    CHECK_CONTAINS(
        text, dbld_arena_printf(a, "%ld %ld %ld %ld", (long)uid, (long)uid, (long)gid, (long)gid));
    free(text);
    CHECK_OK(run_call(job, a, new_run_id(a), "br",
                      task(a, "//test:runas", "ra/2", H_STRS("env", envf)), CALL_MS, &r, &st),
             st);
    text = h_read_file(envf, NULL);
    CHECK(text != NULL);
    CHECK_ENV_LINE(text, dbld_arena_printf(a, "USER=%s", user));
    CHECK_ENV_LINE(text, dbld_arena_printf(a, "LOGNAME=%s", user));
    CHECK_ENV_LINE(text, dbld_arena_printf(a, "HOME=%s", pw->pw_dir));
    free(text);

    /* cancel still kills the user's process group */
    const char *pidfile = dbld_arena_printf(a, "%s/pids1", dir);
    char *id = new_run_id(a);
    bg_run *b = bg_start(job, id, "//test:runas", "ra/3", H_STRS("sleep", "100", pidfile));
    pid_t pid, gc;
    read_pids(pidfile, &pid, &gc);
    CHECK_EQ_INT(proc_uid(pid), uid);
    CHECK_EQ_INT(proc_uid(gc), uid);
    int found = 0;
    Databuild__V1__CancelJobRunRequest kreq = DATABUILD__V1__CANCEL_JOB_RUN_REQUEST__INIT;
    kreq.job_run_id = id;
    Databuild__V1__CancelJobRunResponse *kr = NULL;
    CHECK_OK(dbld_client_unary(job->client, CANCEL_PATH, &kreq.base,
                               &databuild__v1__cancel_job_run_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&kr, CALL_MS, 0, &st),
             st);
    found = kr->found;
    CHECK(found);
    bg_join(b);
    CHECK_OK(b->rc, b->st);
    CHECK_EQ_INT(b->resp->status, DATABUILD__V1__JOB_STATUS__JOB_CANCELLED);
    check_gone(pid, gc);

    /* SIGKILL of the job service: the child dies with it (its parent-death
     * signal survived the switch of user), the grandchild is swept by the
     * next start */
    pidfile = dbld_arena_printf(a, "%s/pids2", dir);
    b = bg_start(job, new_run_id(a), "//test:runas", "ra/4", H_STRS("sleep", "100", pidfile));
    read_pids(pidfile, &pid, &gc);
    h_service_kill(job);
    CHECK_MSG(H_POLL_UNTIL(5000, !pid_alive(pid)), "job %d outlived its job service", (int)pid);
    CHECK_MSG(pid_alive(gc), "grandchild %d already gone before the restart", (int)gc);
    bg_join(b);
    h_service_restart(job);
    CHECK_MSG(H_POLL_UNTIL(5000, !pid_alive(gc)), "grandchild %d not swept by the restart",
              (int)gc);
    h_service_stop(job);
    dbld_arena_destroy(a);
}

/* The files of a job service's state directory: their count; *name = the
 * last one's name, *size its size. */
static int state_files(dbld_arena *a, const char *dir, const char **name, off_t *size)
{
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "opendir %s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        n++;
        *name = dbld_arena_strdup(a, de->d_name);
        struct stat sb;
        CHECK(fstatat(dirfd(d), de->d_name, &sb, 0) == 0);
        *size = sb.st_size;
    }
    closedir(d);
    return n;
}

/* Runs are recorded in slots of one file per job service, named by its pid,
 * reused run after run (the file grows only with the runs at once), swept
 * after SIGKILL (the grandchildren of both running jobs die at the next
 * start, the dead one's file goes) and removed at a clean stop. */
DBLD_TEST(state_slots_reused_and_swept)
{
    fixture f = setup("slots");
    dbld_arena *a = f.a;
    const char *dir = dbld_arena_printf(a, "%s/%s.state", h_test_dir(), f.job->name);
    const char *name = NULL;
    off_t size = 0;
    dbld_status st;
    Databuild__V1__RunJobResponse *r = NULL;
    for (int i = 0; i < 5; i++) {
        CHECK_OK(run_call(f.job, a, new_run_id(a), "br",
                          task(a, "//test:ok", dbld_arena_printf(a, "ok/s%d", i), H_STRS("ok")),
                          CALL_MS, &r, &st),
                 st);
        CHECK_MSG(r->status == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED, "run: %s", r->message);
    }
    CHECK_EQ_INT(state_files(a, dir, &name, &size), 1);
    const char *prefix = dbld_arena_printf(a, "%d.", (int)f.job->pid);
    CHECK_MSG(strncmp(name, prefix, strlen(prefix)) == 0 && strstr(name, ".slots") != NULL,
              "state file %s", name);
    CHECK_MSG(size > 0 && size <= 4096, "one run at a time took %ld bytes", (long)size);

    const char *pf1 = path_in_test_dir(a, "slots1"), *pf2 = path_in_test_dir(a, "slots2");
    bg_run *b1 = bg_start(f.job, new_run_id(a), "//test:ok", "ok/s1", H_STRS("sleep", "100", pf1));
    bg_run *b2 = bg_start(f.job, new_run_id(a), "//test:ok", "ok/s2", H_STRS("sleep", "100", pf2));
    pid_t p1, g1, p2, g2;
    read_pids(pf1, &p1, &g1);
    read_pids(pf2, &p2, &g2);
    CHECK_EQ_INT(state_files(a, dir, &name, &size), 1);
    CHECK_MSG(size > 4096 && size <= 2 * 4096, "two runs at a time took %ld bytes", (long)size);
    const char *dead = name;

    h_service_kill(f.job);
    CHECK_MSG(H_POLL_UNTIL(5000, !pid_alive(p1) && !pid_alive(p2)), "a job outlived its service");
    CHECK_MSG(pid_alive(g1) && pid_alive(g2), "a grandchild is gone before the restart");
    bg_join(b1);
    bg_join(b2);
    h_service_restart(f.job);
    CHECK_MSG(H_POLL_UNTIL(5000, !pid_alive(g1) && !pid_alive(g2)),
              "grandchildren %d, %d not swept by the restart", (int)g1, (int)g2);
    int n = state_files(a, dir, &name, &size);
    CHECK_MSG(n == 0, "%d state files after the sweep (%s)", n, n ? name : "");
    char *log = h_read_file(f.job->log_path, NULL);
    CHECK_CONTAINS(log, dbld_arena_printf(a, "\"entry\":\"%s[0]\"", dead));
    CHECK_CONTAINS(log, dbld_arena_printf(a, "\"entry\":\"%s[1]\"", dead));
    free(log);

    CHECK_OK(run_call(f.job, a, new_run_id(a), "br", task(a, "//test:ok", "ok/s9", H_STRS("ok")),
                      CALL_MS, &r, &st),
             st);
    CHECK_EQ_INT(state_files(a, dir, &name, &size), 1);
    h_service_stop(f.job);
    CHECK_EQ_INT(state_files(a, dir, &name, &size), 0);
    dbld_arena_destroy(a);
}

/* SIGTERM with a job running: the job's process group dies, exit 0. */
DBLD_TEST(sigterm_stops_jobs)
{
    fixture f = setup("sigterm");
    const char *pidfile = path_in_test_dir(f.a, "pids");
    bg_run *b = bg_start(f.job, new_run_id(f.a), "//test:ok", "ok/t",
                         H_STRS("sleep", "100", pidfile, "ignore-term"));
    pid_t pid, gc;
    read_pids(pidfile, &pid, &gc);
    int64_t t0 = dbld_mono_ms();
    CHECK_EQ_INT(h_service_signal_wait(f.job, SIGTERM, 15000), 0);
    CHECK_CMP_INT(dbld_mono_ms() - t0, <, 6000); /* inside the 5 s shutdown grace */
    check_gone(pid, gc);
    bg_join(b);
    if (b->rc == 0) { /* the answer made it out before the server closed */
        CHECK_EQ_INT(b->resp->status, DATABUILD__V1__JOB_STATUS__JOB_FAILED);
        CHECK_EQ_INT(b->resp->failure_kind, DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT);
        CHECK_CONTAINS(b->resp->message, "shutting down");
    }
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(configure_ok), DBLD_TEST_ENTRY(configure_garbage_json),
               DBLD_TEST_ENTRY(configure_nonzero_exit), DBLD_TEST_ENTRY(configure_errors),
               DBLD_TEST_ENTRY(execute_refused), DBLD_TEST_ENTRY(run_success_manifest),
               DBLD_TEST_ENTRY(run_failures), DBLD_TEST_ENTRY(run_long_stderr_tail),
               DBLD_TEST_ENTRY(run_timeout_kills_group), DBLD_TEST_ENTRY(cancel_mid_run),
               DBLD_TEST_ENTRY(concurrency_limit), DBLD_TEST_ENTRY(shell_characters_pass_untouched),
               DBLD_TEST_ENTRY(run_environment), DBLD_TEST_ENTRY(job_logs_stored),
               DBLD_TEST_ENTRY(job_logs_stored_while_running),
               DBLD_TEST_ENTRY(job_logs_handed_back), DBLD_TEST_ENTRY(job_logs_large_output_stored),
               DBLD_TEST_ENTRY(job_log_tail_stored_after_eventlog_returns),
               DBLD_TEST_ENTRY(eventlog_down_run_still_works),
               DBLD_TEST_ENTRY(run_env_policy_refuses), DBLD_TEST_ENTRY(run_env_allowlist),
               DBLD_TEST_ENTRY(configure_env_refused), DBLD_TEST_ENTRY(run_as_user),
               DBLD_TEST_ENTRY(sigterm_stops_jobs), DBLD_TEST_ENTRY(state_slots_reused_and_swept))
