/* config_security.c - TLS options, the auth checker and the client token of
 * a process, from shared.tls / <service>.tls / shared.auth. */
#include "dbld/security.h"

#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOKENS 64

static const char *pick(const char *own, const char *shared)
{
    return own ? own : shared;
}

static int client_auth_mode(const char *s)
{
    if (s && strcmp(s, "require") == 0) return DBLD_TLS_CLIENT_REQUIRE;
    if (s && strcmp(s, "request") == 0) return DBLD_TLS_CLIENT_REQUEST;
    return DBLD_TLS_CLIENT_NONE;
}

/* Read the token this process sends: a file (one trailing newline dropped)
 * or an environment variable. */
static int read_client_token(const char *file, const char *env, char **out, dbld_status *st)
{
    *out = NULL;
    if (file) {
        if (dbld_auth_read_token("shared.auth.client_token_file", file, out, st)) return st->code;
    } else if (env) {
        const char *v = getenv(env);
        if (!v || !*v)
            return dbld_status_set(
                st, DBLD_INVALID_ARGUMENT,
                "shared.auth.client_token_env: environment variable %s is not set", env);
        *out = dbld_xstrdup(v);
    }
    return 0;
}

int dbld_security_client(const dbld_tls_opts *tls, const char *server_name, const char *token_file,
                         const char *token_env, dbld_status *st)
{
    if (tls && dbld_tls_check(tls, 0, st)) return st->code;
    char *token = NULL;
    if (read_client_token(token_file, token_env, &token, st)) return st->code;
    dbld_client_security cs = {.server_name = server_name, .token = token};
    if (tls) cs.tls = *tls;
    int rc = dbld_client_set_security(&cs, st);
    if (token) memset(token, 0, strlen(token));
    free(token);
    return rc;
}

static int build_auth(const dbld_config *cfg, dbld_auth **out, dbld_status *st)
{
    size_t n = cfg->shared.auth.n_tokens;
    if (n == 0) return 0;
    if (n > MAX_TOKENS)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "shared.auth.tokens: more than %d",
                               MAX_TOKENS);
    dbld_auth_entry entries[MAX_TOKENS];
    for (size_t i = 0; i < n; i++) {
        const dbld_auth_token_config *t = &cfg->shared.auth.tokens[i];
        int roles = 0;
        for (size_t k = 0; k < t->n_roles; k++)
            roles |= dbld_role_parse(t->roles[k]);
        entries[i] = (dbld_auth_entry){.name = t->name,
                                       .token_file = t->token_file,
                                       .token_env = t->token_env,
                                       .common_name = t->common_name,
                                       .roles = roles};
    }
    dbld_auth_opts o = {.entries = entries,
                        .n_entries = n,
                        .health_open = cfg->shared.auth.health_open,
                        .reflection_open = cfg->shared.auth.reflection_open};
    if (dbld_auth_create(&o, out, st)) return dbld_status_prefix(st, "shared.auth.tokens");
    return 0;
}

int dbld_security_setup(const dbld_config *cfg, const dbld_server_config *sc, dbld_security *out,
                        dbld_status *st)
{
    memset(out, 0, sizeof *out);
    const dbld_tls_config *own = &sc->tls, *shared = &cfg->shared.tls.files;
    dbld_tls_opts t = {
        .cert_file = pick(own->cert_file, shared->cert_file),
        .key_file = pick(own->key_file, shared->key_file),
        .ca_file = pick(own->ca_file, shared->ca_file),
        .client_auth = client_auth_mode(pick(own->client_auth, shared->client_auth)),
    };
    if (dbld_tls_check(&t, 1, st)) return st->code;
    out->server_tls = t;
    if (build_auth(cfg, &out->auth, st)) return st->code;
    /* as a client: verify peers with the CA, present our certificate for mTLS */
    dbld_tls_opts client = {.ca_file = t.ca_file};
    if (t.ca_file) {
        client.cert_file = t.cert_file;
        client.key_file = t.key_file;
    }
    return dbld_security_client(t.ca_file ? &client : NULL, cfg->shared.tls.server_name,
                                cfg->shared.auth.client_token_file,
                                cfg->shared.auth.client_token_env, st);
}

void dbld_security_free(dbld_security *s)
{
    if (!s) return;
    dbld_auth_destroy(s->auth);
    free(s->client_token);
    memset(s, 0, sizeof *s);
}

int dbld_security_config_error(dbld_config *cfg, dbld_security *sec, const dbld_status *st)
{
    dbld_config_log_error(cfg, "%s", st->msg);
    dbld_security_free(sec);
    dbld_config_free(cfg);
    return DBLD_CONFIG_ERROR;
}
