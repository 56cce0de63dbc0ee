/* test_auth.c - the role table and the token check (lib/rpc_auth.c): every
 * method of every service in the .proto files has a role; each credential
 * case gives the right code and a message that names the method and role
 * and never the token; token files and variables. The same against running
 * services over TLS: tests/python/test_security.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "databuild_process.pb-c.h"
#include "dbld/auth.h"
#include "dbld/security.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every service protobuf-c generated from proto/ (databuild.proto and
 * databuild_ext.proto). A service added to the .proto files must be added
 * here too; the count check below says so. */
static const ProtobufCServiceDescriptor *const services[] = {
    &databuild__v1__job_configure__descriptor, &databuild__v1__job_execute__descriptor,
    &databuild__v1__graph_lookup__descriptor,  &databuild__v1__data_build_service__descriptor,
    &databuild__v1__event_log__descriptor,     &databuild__v1__partition_claims__descriptor,
    &databuild__v1__build_leases__descriptor,  &databuild__v1__job_logs__descriptor,
    &databuild__v1__job_runner__descriptor,    &databuild__v1__graph_builder__descriptor,
    &databuild__v1__query_ops__descriptor,     &databuild__v1__processes__descriptor,
    &databuild__v1__process_store__descriptor,
};

static void test_every_method_has_a_role(void **state)
{
    (void)state;
    size_t n_methods = 0;
    for (size_t i = 0; i < sizeof services / sizeof services[0]; i++)
        for (unsigned k = 0; k < services[i]->n_methods; k++) {
            char path[256];
            snprintf(path, sizeof path, "/%s/%s", services[i]->name, services[i]->methods[k].name);
            if (dbld_method_role(path) < 0) fail_msg("%s has no role in lib/rpc_auth.c", path);
            n_methods++;
        }
    /* the table holds these, health (2) and reflection (2), nothing else */
    assert_int_equal(dbld_method_table_size(), n_methods + 4);
    assert_int_equal(dbld_method_role("/grpc.health.v1.Health/Check"), DBLD_ROLE_HEALTH);
    assert_int_equal(dbld_method_role("/databuild.v1.EventLog/Append"), DBLD_ROLE_INTERNAL);
    assert_int_equal(dbld_method_role("/databuild.v1.DataBuildService/PutTaints"),
                     DBLD_ROLE_WRITER);
    assert_int_equal(dbld_method_role("/databuild.v1.EventLog/List"), DBLD_ROLE_READER);
    assert_int_equal(dbld_method_role("/nope.X/Y"), -1);
}

static char g_dir[64];

static const char *token_file(const char *name, const char *text)
{
    static char path[6][128];
    static int next;
    char *p = path[next++ % 6];
    snprintf(p, 128, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

static dbld_auth *make_auth(int health_open)
{
    setenv("TEST_AUTH_WRITER_TOKEN", "w-secret", 1);
    dbld_auth_entry e[] = {
        {.name = "reader",
         .token_file = token_file("r.token", "r-secret\n"),
         .roles = DBLD_ROLE_READER},
        {.name = "writer", .token_env = "TEST_AUTH_WRITER_TOKEN", .roles = DBLD_ROLE_WRITER},
        {.name = "graph-svc", .common_name = "graph", .roles = DBLD_ROLE_INTERNAL},
    };
    dbld_auth_opts o = {
        .entries = e, .n_entries = 3, .health_open = health_open, .reflection_open = 1};
    dbld_auth *a = NULL;
    dbld_status st;
    if (dbld_auth_create(&o, &a, &st)) fail_msg("%s", st.msg);
    return a;
}

static int check(dbld_auth *a, const char *path, const char *authz, const char *cn, dbld_status *st)
{
    return dbld_auth_check(a, path, authz, authz ? strlen(authz) : 0, cn, st);
}

static void test_codes_and_messages(void **state)
{
    (void)state;
    dbld_auth *a = make_auth(1);
    dbld_status st;
    const char *put = "/databuild.v1.DataBuildService/PutTaints";
    assert_int_equal(check(a, put, NULL, NULL, &st), DBLD_UNAUTHENTICATED);
    assert_non_null(strstr(st.msg, put));
    assert_non_null(strstr(st.msg, "requires role writer"));
    assert_int_equal(check(a, put, "Bearer nope", NULL, &st), DBLD_UNAUTHENTICATED);
    assert_null(strstr(st.msg, "nope"));
    assert_int_equal(check(a, put, "Bearer r-secret", NULL, &st), DBLD_PERMISSION_DENIED);
    assert_non_null(strstr(st.msg, "requires role writer"));
    assert_null(strstr(st.msg, "r-secret"));
    assert_int_equal(check(a, put, "Bearer w-secret", NULL, &st), 0);
    assert_int_equal(check(a, put, "bearer w-secret", NULL, &st), 0); /* scheme is case-free */
    assert_int_equal(check(a, put, "Bearer w-secre", NULL, &st), DBLD_UNAUTHENTICATED);
    assert_int_equal(check(a, put, "Bearer w-secretx", NULL, &st), DBLD_UNAUTHENTICATED);
    assert_int_equal(check(a, put, "w-secret", NULL, &st), DBLD_UNAUTHENTICATED);
    /* mTLS identity */
    const char *append = "/databuild.v1.EventLog/Append";
    assert_int_equal(check(a, append, NULL, "graph", &st), 0);
    assert_int_equal(check(a, append, NULL, "someone", &st), DBLD_UNAUTHENTICATED);
    assert_int_equal(check(a, put, NULL, "graph", &st), DBLD_PERMISSION_DENIED);
    /* open by configuration; closed health takes any known credential */
    assert_int_equal(check(a, "/grpc.health.v1.Health/Check", NULL, NULL, &st), 0);
    assert_int_equal(check(a, "/databuild.v1.Nope/X", "Bearer w-secret", NULL, &st),
                     DBLD_PERMISSION_DENIED);
    dbld_auth_destroy(a);
    a = make_auth(0);
    assert_int_equal(check(a, "/grpc.health.v1.Health/Check", NULL, NULL, &st),
                     DBLD_UNAUTHENTICATED);
    assert_int_equal(check(a, "/grpc.health.v1.Health/Check", "Bearer r-secret", NULL, &st), 0);
    dbld_auth_destroy(a);
}

static void test_bad_credentials_config(void **state)
{
    (void)state;
    dbld_status st;
    dbld_auth *a = NULL;
    dbld_auth_entry missing = {
        .name = "ops", .token_file = "/nonexistent/ops.token", .roles = DBLD_ROLE_READER};
    dbld_auth_opts o = {.entries = &missing, .n_entries = 1};
    assert_int_equal(dbld_auth_create(&o, &a, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "/nonexistent/ops.token"));
    assert_non_null(strstr(st.msg, "ops"));
    unsetenv("TEST_AUTH_UNSET");
    dbld_auth_entry env = {.name = "e", .token_env = "TEST_AUTH_UNSET", .roles = 1};
    o.entries = &env;
    assert_int_equal(dbld_auth_create(&o, &a, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "TEST_AUTH_UNSET is not set"));
    dbld_auth_entry empty = {.name = "e", .token_file = token_file("empty", "\n"), .roles = 1};
    o.entries = &empty;
    assert_int_equal(dbld_auth_create(&o, &a, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "empty"));
    dbld_auth_entry two = {.name = "t", .token_env = "X", .common_name = "y", .roles = 1};
    o.entries = &two;
    assert_int_equal(dbld_auth_create(&o, &a, &st), DBLD_INVALID_ARGUMENT);
    assert_null(a);
}

static void test_tls_files_checked(void **state)
{
    (void)state;
    dbld_status st;
    dbld_tls_opts t = {.cert_file = "/nonexistent/server.crt", .key_file = "/nonexistent/k"};
    assert_int_equal(dbld_tls_check(&t, 1, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "tls.cert_file"));
    assert_non_null(strstr(st.msg, "/nonexistent/server.crt"));
    t.cert_file = token_file("notpem.crt", "hello\n");
    assert_int_equal(dbld_tls_check(&t, 1, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "is not a PEM file"));
    dbld_tls_opts half = {.cert_file = t.cert_file};
    assert_int_equal(dbld_tls_check(&half, 1, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "tls.key_file"));
    dbld_tls_opts mtls = {.client_auth = DBLD_TLS_CLIENT_REQUIRE,
                          .cert_file = token_file("a.crt", "-----BEGIN CERTIFICATE-----\n"),
                          .key_file = token_file("a.key", "-----BEGIN PRIVATE KEY-----\n")};
    assert_int_equal(dbld_tls_check(&mtls, 1, &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "tls.ca_file"));
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/dbld-auth-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    static const char *const names[] = {"r.token", "empty", "notpem.crt", "a.crt", "a.key"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", g_dir, names[i]);
        unlink(cmd);
    }
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_method_has_a_role),
        cmocka_unit_test(test_codes_and_messages),
        cmocka_unit_test(test_bad_credentials_config),
        cmocka_unit_test(test_tls_files_checked),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
