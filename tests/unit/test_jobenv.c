/* test_jobenv.c - lib/config_jobenv.c: the policy deciding which variables a
 * job's config step (and so a Run request) may set - valid names, the
 * denylist (loader, interpreter, shell and identity variables, without
 * regard to case), DATABUILD_*, names the job's YAML env sets, the per-job
 * env_allow list - and the YAML keys env_allow and job.run_as as config
 * loading checks them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/config.h"
#include "dbld/jobenv.h"

#include <stdio.h>
#include <string.h>

/* A job with the given YAML env and env_allow (NULL: the default ["*"]). */
static dbld_job_def job_with(char **env, size_t n_env, char **allow, size_t n_allow)
{
    static char *any[] = {"*"};
    dbld_job_def j = {.label = "//t:job", .env = env, .n_env = n_env};
    j.env_allow = allow ? allow : any;
    j.n_env_allow = allow ? n_allow : 1;
    return j;
}

static dbld_jobenv_verdict check(const dbld_job_def *j, const char *name, char *why)
{
    return dbld_jobenv_check(j, name, why, 512);
}

static void test_plain_names_pass(void **state)
{
    (void)state;
    dbld_job_def j = job_with(NULL, 0, NULL, 0);
    char why[512] = "";
    const char *ok[] = {"JOB_REF", "GRAPH_JOB_REF", "DATA_PARTITION", "_x",
                        "a1",      "http_proxy",    "LANG",           "TZ",
                        "PY",      "LDX",           "PERSON",         "DATABUILD"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(check(&j, ok[i], why), DBLD_JOBENV_OK);
}

static void test_bad_names(void **state)
{
    (void)state;
    dbld_job_def j = job_with(NULL, 0, NULL, 0);
    char why[512];
    const char *bad[] = {"", "1X", "A=B", "A B", "BASH_FUNC_f%%", "X-Y", "É"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(check(&j, bad[i], why), DBLD_JOBENV_BAD_NAME);
    check(&j, "A=B", why);
    assert_string_equal(why, "\"A=B\" is not a valid variable name (letters, digits and _, not "
                             "starting with a digit)");
    assert_int_equal(check(&j, NULL, why), DBLD_JOBENV_BAD_NAME);
}

/* The variables of the repro and their relatives. */
static void test_denylist(void **state)
{
    (void)state;
    dbld_job_def j = job_with(NULL, 0, NULL, 0);
    char why[512];
    const char *denied[] = {
        "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "GLIBC_TUNABLES", "GCONV_PATH", "LOCPATH",
        "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "OPENSSL_CONF", "PYTHONWARNINGS", "PYTHONPATH",
        "PYTHONSTARTUP", "PYTHONHOME", "PERL5LIB", "PERL5OPT", "PERLLIB", "PERL5DB", "RUBYOPT",
        "RUBYLIB", "NODE_OPTIONS", "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS", "CLASSPATH", "LUA_INIT", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS",
        "PS4", "PROMPT_COMMAND", "IFS", "CDPATH", "BROWSER", "EDITOR", "PAGER", "LESSOPEN",
        "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "SHELL", "PATH", "HOME", "USER", "LOGNAME", "TMPDIR",
        "XDG_CONFIG_HOME",
        /* case does not matter */
        "ld_preload", "Path", "pythonpath", "Browser"};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
        dbld_jobenv_verdict v = check(&j, denied[i], why);
        if (v != DBLD_JOBENV_DENIED) fail_msg("%s: verdict %d, want DENIED", denied[i], (int)v);
    }
    check(&j, "LD_PRELOAD", why);
    assert_string_equal(why, "\"LD_PRELOAD\" is denylisted (LD_*: read by the dynamic loader or "
                             "libc, which load code or data from it)");
    check(&j, "BROWSER", why);
    assert_string_equal(
        why, "\"BROWSER\" is denylisted (BROWSER: names a program that other programs start)");
    check(&j, "PYTHONWARNINGS", why);
    assert_non_null(strstr(why, "(PYTHON*: read by an interpreter"));
    assert_string_equal(dbld_jobenv_denied("LD_PRELOAD"), "LD_*");
    assert_string_equal(dbld_jobenv_denied("PATH"), "PATH");
    assert_null(dbld_jobenv_denied("PATHX")); /* an exact rule is not a prefix */
    assert_null(dbld_jobenv_denied("JOB_REF"));
}

static void test_reserved(void **state)
{
    (void)state;
    dbld_job_def j = job_with(NULL, 0, NULL, 0);
    char why[512];
    assert_int_equal(check(&j, "DATABUILD_JOB_RUN_ID", why), DBLD_JOBENV_RESERVED);
    assert_string_equal(why, "\"DATABUILD_JOB_RUN_ID\" is reserved (the job service sets "
                             "DATABUILD_* itself)");
    assert_int_equal(check(&j, "databuild_x", why), DBLD_JOBENV_RESERVED);
}

/* The YAML env wins: a config step cannot override it. */
static void test_yaml_env_wins(void **state)
{
    (void)state;
    char *env[] = {"DATA_DIR=var/data", "MODE=x=y"};
    dbld_job_def j = job_with(env, 2, NULL, 0);
    char why[512];
    assert_int_equal(check(&j, "DATA_DIR", why), DBLD_JOBENV_YAML);
    assert_string_equal(why, "\"DATA_DIR\" is set by the job's env in the configuration file, "
                             "which a config step cannot override");
    assert_int_equal(check(&j, "MODE", why), DBLD_JOBENV_YAML);
    assert_int_equal(check(&j, "DATA", why), DBLD_JOBENV_OK); /* a prefix of a YAML name */
    assert_int_equal(check(&j, "DATA_DIRS", why), DBLD_JOBENV_OK);
}

static void test_allowlist(void **state)
{
    (void)state;
    char *allow[] = {"JOB_REF", "SPARK_*", "LD*"};
    dbld_job_def j = job_with(NULL, 0, allow, 3);
    char why[512];
    assert_int_equal(check(&j, "JOB_REF", why), DBLD_JOBENV_OK);
    assert_int_equal(check(&j, "SPARK_HOME_X", why), DBLD_JOBENV_OK);
    assert_int_equal(check(&j, "SPARK_", why), DBLD_JOBENV_OK);
    assert_int_equal(check(&j, "LDAP_URI", why), DBLD_JOBENV_OK);
    assert_int_equal(check(&j, "job_ref", why), DBLD_JOBENV_NOT_ALLOWED); /* case matters here */
    assert_int_equal(check(&j, "OTHER", why), DBLD_JOBENV_NOT_ALLOWED);
    assert_string_equal(why, "\"OTHER\" is not in the job's env_allow list");
    /* the allowlist never re-enables the denylist */
    assert_int_equal(check(&j, "LD_PRELOAD", why), DBLD_JOBENV_DENIED);
    /* empty: nothing may be set */
    dbld_job_def none = job_with(NULL, 0, allow, 0);
    assert_int_equal(check(&none, "JOB_REF", why), DBLD_JOBENV_NOT_ALLOWED);
}

static void test_allow_entries(void **state)
{
    (void)state;
    char why[512];
    const char *ok[] = {"*", "JOB_REF", "SPARK_*", "L*", "PATH_EXTRA", "PATH*", "DATABUILD*"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (dbld_jobenv_check_allow_entry(ok[i], why, sizeof why))
            fail_msg("%s refused: %s", ok[i], why);
    const char *bad[] = {"",           "A B",         "1X*",        "**",      "A*B",
                         "LD_PRELOAD", "LD_*",        "LD_X*",      "PYTHON*", "PYTHONPATH",
                         "ld_preload", "DATABUILD_*", "DATABUILD_X"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (!dbld_jobenv_check_allow_entry(bad[i], why, sizeof why))
            fail_msg("\"%s\" accepted", bad[i]);
    dbld_jobenv_check_allow_entry("LD_PRELOAD", why, sizeof why);
    assert_string_equal(why, "env_allow entry \"LD_PRELOAD\" can never allow anything: it is "
                             "denylisted (LD_*: read by the dynamic loader or libc, which load "
                             "code or data from it)");
}

/* ---- the YAML keys ---- */

static int parse(const char *yaml, dbld_config *cfg, dbld_status *st)
{
    return dbld_config_parse(yaml, strlen(yaml), "databuild.yaml", cfg, st);
}

static void test_yaml_keys(void **state)
{
    (void)state;
    dbld_config cfg;
    dbld_status st;
    assert_int_equal(parse("job:\n  run_as: databuild\n"
                           "graph:\n  jobs:\n"
                           "    - label: a\n      command: [x]\n      outputs: [a]\n"
                           "    - label: b\n      command: [x]\n      outputs: [b]\n"
                           "      env_allow: [JOB_REF, 'SPARK_*']\n"
                           "    - label: c\n      command: [x]\n      outputs: [c]\n"
                           "      env_allow: []\n",
                           &cfg, &st),
                     0);
    assert_string_equal(cfg.job.run_as, "databuild");
    assert_int_equal(cfg.graph.jobs[0].n_env_allow, 1); /* the default: any name */
    assert_string_equal(cfg.graph.jobs[0].env_allow[0], "*");
    assert_int_equal(cfg.graph.jobs[1].n_env_allow, 2);
    assert_string_equal(cfg.graph.jobs[1].env_allow[1], "SPARK_*");
    assert_int_equal(cfg.graph.jobs[2].n_env_allow, 0);
    dbld_config_free(&cfg);

    assert_int_equal(parse("", &cfg, &st), 0);
    assert_null(cfg.job.run_as);
    dbld_config_free(&cfg);

    assert_int_equal(parse("graph:\n  jobs:\n    - label: a\n      command: [x]\n"
                           "      outputs: [a]\n      env_allow: [JOB_REF, LD_PRELOAD]\n",
                           &cfg, &st),
                     DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "databuild.yaml:6:28: graph.jobs[0].env_allow[1]: env_allow entry "
                                "\"LD_PRELOAD\" can never allow anything: it is denylisted (LD_*: "
                                "read by the dynamic loader or libc, which load code or data from "
                                "it)");
    assert_int_equal(parse("job:\n  run_as: \"a b\"\n", &cfg, &st), DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "databuild.yaml:2:11: job.run_as: invalid user name \"a b\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_names_pass), cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_denylist),         cmocka_unit_test(test_reserved),
        cmocka_unit_test(test_yaml_env_wins),    cmocka_unit_test(test_allowlist),
        cmocka_unit_test(test_allow_entries),    cmocka_unit_test(test_yaml_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
