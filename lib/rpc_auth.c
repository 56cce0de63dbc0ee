/* rpc_auth.c - the role of every method, and the bearer-token / mTLS check.
 *
 * One table below names every method any service of the suite serves, with
 * the role it requires; dbld_server_add() refuses a method missing from it, so
 * a new RPC cannot be served unprotected by accident. Tokens are read once at
 * start-up (from files or environment variables) and compared in constant
 * time; a caller's answer names the method and the role, never a token.
 */
#include "dbld/auth.h"

#include "dbld/util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define R DBLD_ROLE_READER
#define W DBLD_ROLE_WRITER
#define I DBLD_ROLE_INTERNAL
#define MAX_TOKEN_BYTES 4096

static const struct {
    const char *path;
    int role;
} methods[] = {
    /* the seed's job and graph services */
    {"/databuild.v1.JobConfigure/Configure", I},
    {"/databuild.v1.JobExecute/Execute", I},
    {"/databuild.v1.GraphLookup/Lookup", R},
    /* the seed's query API */
    {"/databuild.v1.DataBuildService/GetBuildEvents", R},
    {"/databuild.v1.DataBuildService/Batched", R},
    {"/databuild.v1.DataBuildService/ListBuildRequests", R},
    {"/databuild.v1.DataBuildService/GetBuildSummary", R},
    {"/databuild.v1.DataBuildService/GetBuildMermaid", R},
    {"/databuild.v1.DataBuildService/ListPartitions", R},
    {"/databuild.v1.DataBuildService/GetPartitionsSummary", R},
    {"/databuild.v1.DataBuildService/ListJobs", R},
    {"/databuild.v1.DataBuildService/GetJobSummary", R},
    {"/databuild.v1.DataBuildService/ListJobRuns", R},
    {"/databuild.v1.DataBuildService/GetJobRunSummary", R},
    {"/databuild.v1.DataBuildService/ListWants", R},
    {"/databuild.v1.DataBuildService/GetWantSummary", R},
    {"/databuild.v1.DataBuildService/PutWants", W},
    {"/databuild.v1.DataBuildService/ListTaints", R},
    {"/databuild.v1.DataBuildService/GetTaintSummary", R},
    {"/databuild.v1.DataBuildService/PutTaints", W},
    /* the event log */
    {"/databuild.v1.EventLog/Append", I},
    {"/databuild.v1.EventLog/List", R},
    {"/databuild.v1.EventLog/Subscribe", R},
    {"/databuild.v1.PartitionClaims/Claim", I},
    {"/databuild.v1.PartitionClaims/Release", I},
    {"/databuild.v1.PartitionClaims/Status", R},
    {"/databuild.v1.BuildLeases/Renew", I},
    {"/databuild.v1.BuildLeases/Orphans", I},
    {"/databuild.v1.JobLogs/Append", I},
    {"/databuild.v1.JobLogs/List", R},
    /* the job service */
    {"/databuild.v1.JobRunner/Run", I},
    {"/databuild.v1.JobRunner/RunStreamed", I},
    {"/databuild.v1.JobRunner/Cancel", W},
    {"/databuild.v1.JobRunner/KnownRuns", I},
    /* the graph service */
    {"/databuild.v1.GraphBuilder/Analyze", R},
    {"/databuild.v1.GraphBuilder/Build", W},
    {"/databuild.v1.GraphBuilder/Submit", W},
    {"/databuild.v1.GraphBuilder/Cancel", W},
    /* the query service's additions */
    {"/databuild.v1.QueryOps/GetJobLogs", R},
    {"/databuild.v1.QueryOps/CancelBuild", W},
    {"/databuild.v1.QueryOps/GetBuildExecution", R},
    {"/databuild.v1.QueryOps/CancelJobRun", W},
    /* background processes (databuild_process.proto): the query service's
     * Processes, and the event log's ProcessStore for graph replicas */
    {"/databuild.v1.Processes/ListProcesses", R},
    {"/databuild.v1.Processes/GetProcess", R},
    {"/databuild.v1.Processes/UpdateProcessSettings", W},
    {"/databuild.v1.Processes/RunProcessNow", W},
    {"/databuild.v1.Processes/GetOperation", R},
    {"/databuild.v1.ProcessStore/Acquire", I},
    {"/databuild.v1.ProcessStore/ListWork", I},
    {"/databuild.v1.ProcessStore/Update", I},
    {"/databuild.v1.ProcessStore/UpdateSettings", I},
    {"/databuild.v1.ProcessStore/RunNow", I},
    {"/databuild.v1.ProcessStore/Downstream", I},
    {"/databuild.v1.ProcessStore/LostRuns", I},
    {"/databuild.v1.ProcessStore/Trim", I},
    /* every server */
    {"/grpc.health.v1.Health/Check", DBLD_ROLE_HEALTH},
    {"/grpc.health.v1.Health/Watch", DBLD_ROLE_HEALTH},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", DBLD_ROLE_REFLECTION},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", DBLD_ROLE_REFLECTION},
};
#define N_METHODS (sizeof methods / sizeof methods[0])

int dbld_method_role(const char *path)
{
    for (size_t i = 0; path && i < N_METHODS; i++)
        if (strcmp(methods[i].path, path) == 0) return methods[i].role;
    return -1;
}

size_t dbld_method_table_size(void)
{
    return N_METHODS;
}

const char *dbld_method_table_path(size_t i, int *role)
{
    if (i >= N_METHODS) return NULL;
    if (role) *role = methods[i].role;
    return methods[i].path;
}

const char *dbld_role_name(int role)
{
    switch (role) {
    case DBLD_ROLE_OPEN:
        return "open";
    case DBLD_ROLE_READER:
        return "reader";
    case DBLD_ROLE_WRITER:
        return "writer";
    case DBLD_ROLE_INTERNAL:
        return "internal";
    case DBLD_ROLE_HEALTH:
        return "health";
    case DBLD_ROLE_REFLECTION:
        return "reflection";
    default:
        return "?";
    }
}

int dbld_role_parse(const char *name)
{
    static const int roles[] = {DBLD_ROLE_READER, DBLD_ROLE_WRITER, DBLD_ROLE_INTERNAL};
    for (size_t i = 0; name && i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(name, dbld_role_name(roles[i])) == 0) return roles[i];
    return 0;
}

/* ---- credentials ---- */

typedef struct cred {
    char *name;
    char *token; /* NULL for an mTLS identity */
    size_t len;
    char *cn;
    int roles;
} cred;

struct dbld_auth {
    cred *creds;
    size_t n;
    int health_open, reflection_open;
};

int dbld_auth_read_token(const char *name, const char *path, char **out, dbld_status *st)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "%s: could not read token file \"%s\": %s", name, path,
                               strerror(errno));
    char *buf = dbld_xcalloc(1, MAX_TOKEN_BYTES + 2);
    size_t n = fread(buf, 1, MAX_TOKEN_BYTES + 1, f);
    fclose(f);
    if (n > MAX_TOKEN_BYTES) {
        free(buf);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: token file \"%s\" is over %d bytes",
                               name, path, MAX_TOKEN_BYTES);
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    *out = buf;
    return 0;
}

static int load_cred(const dbld_auth_entry *e, cred *c, dbld_status *st)
{
    const char *name = e->name ? e->name : "(unnamed)";
    int sources = !!e->token_file + !!e->token_env + !!e->common_name;
    if (sources != 1)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "auth token %s: give exactly one of token_file, token_env, "
                               "common_name",
                               name);
    c->name = dbld_xstrdup(name);
    c->roles = e->roles;
    if (e->common_name) {
        c->cn = dbld_xstrdup(e->common_name);
        return 0;
    }
    if (e->token_file) {
        char what[200];
        snprintf(what, sizeof what, "auth token %s", name);
        if (dbld_auth_read_token(what, e->token_file, &c->token, st)) return st->code;
    } else {
        const char *v = getenv(e->token_env);
        if (!v || !*v)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "auth token %s: environment variable %s is not set", name,
                                   e->token_env);
        c->token = dbld_xstrdup(v);
    }
    c->len = strlen(c->token);
    if (c->len == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "auth token %s: the token is empty",
                               name);
    return 0;
}

int dbld_auth_create(const dbld_auth_opts *opts, dbld_auth **out, dbld_status *st)
{
    *out = NULL;
    dbld_auth *a = dbld_xcalloc(1, sizeof *a);
    a->health_open = opts->health_open;
    a->reflection_open = opts->reflection_open;
    a->creds = dbld_xcalloc(opts->n_entries + 1, sizeof *a->creds);
    for (; a->n < opts->n_entries; a->n++)
        if (load_cred(&opts->entries[a->n], &a->creds[a->n], st)) {
            a->n++;
            dbld_auth_destroy(a);
            return st->code;
        }
    *out = a;
    return 0;
}

void dbld_auth_destroy(dbld_auth *a)
{
    if (!a) return;
    for (size_t i = 0; i < a->n; i++) {
        free(a->creds[i].name);
        if (a->creds[i].token) memset(a->creds[i].token, 0, a->creds[i].len);
        free(a->creds[i].token);
        free(a->creds[i].cn);
    }
    free(a->creds);
    free(a);
}

/* Equal in time that depends only on the lengths, not on where they differ. */
static int ct_equal(const char *x, size_t xl, const char *y, size_t yl)
{
    volatile unsigned char diff = (unsigned char)(xl != yl);
    for (size_t i = 0; i < xl; i++)
        diff |= (unsigned char)(x[i] ^ y[i % (yl ? yl : 1)]);
    return diff == 0;
}

/* The credential presented, or NULL. Every token is compared (no early exit),
 * so the time does not tell which one matched. */
static const cred *find_token(const dbld_auth *a, const char *tok, size_t len)
{
    const cred *hit = NULL;
    for (size_t i = 0; i < a->n; i++)
        if (a->creds[i].token && ct_equal(tok, len, a->creds[i].token, a->creds[i].len))
            hit = &a->creds[i];
    return hit;
}

static const cred *find_cn(const dbld_auth *a, const char *cn)
{
    for (size_t i = 0; cn && i < a->n; i++)
        if (a->creds[i].cn && strcmp(a->creds[i].cn, cn) == 0) return &a->creds[i];
    return NULL;
}

int dbld_auth_check(const dbld_auth *a, const char *path, const char *authorization, size_t len,
                    const char *cn, dbld_status *st)
{
    int need = dbld_method_role(path);
    if (need < 0)
        return dbld_status_set(st, DBLD_PERMISSION_DENIED, "%s: method not in the role table",
                               path);
    if (!a || need == DBLD_ROLE_OPEN) return 0;
    if (need == DBLD_ROLE_HEALTH && a->health_open) return 0;
    if (need == DBLD_ROLE_REFLECTION && a->reflection_open) return 0;
    /* health and reflection, when closed, take any valid credential */
    int any = need == DBLD_ROLE_HEALTH || need == DBLD_ROLE_REFLECTION;
    static const char bearer[] = "Bearer ";
    const cred *c = NULL;
    if (authorization && len > sizeof bearer - 1 &&
        strncasecmp(authorization, bearer, sizeof bearer - 1) == 0)
        c = find_token(a, authorization + sizeof bearer - 1, len - (sizeof bearer - 1));
    int roles = c ? c->roles : 0;
    const cred *id = find_cn(a, cn);
    if (id) roles |= id->roles;
    if (!c && !id) {
        const char *why = !authorization || len == 0 ? "no credentials (send \"authorization: "
                                                       "Bearer <token>\")"
                                                     : "unknown token";
        return dbld_status_set(st, DBLD_UNAUTHENTICATED, "%s requires role %s: %s", path,
                               any ? "any" : dbld_role_name(need), why);
    }
    if (any || (roles & need)) return 0;
    return dbld_status_set(st, DBLD_PERMISSION_DENIED,
                           "%s requires role %s, which %s does not have", path,
                           dbld_role_name(need), c ? c->name : id->name);
}
