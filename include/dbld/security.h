/* security.h - a process's TLS and credentials from the configuration: what
 * its server presents and checks, and what its clients send to peers. */
#ifndef DBLD_SECURITY_H
#define DBLD_SECURITY_H

#include "dbld/auth.h"
#include "dbld/config.h"
#include "dbld/rpc.h"

typedef struct dbld_security {
    dbld_tls_opts server_tls; /* borrowed from the config; cert_file NULL: plaintext */
    dbld_auth *auth;          /* owned; NULL: auth off */
    char *client_token;       /* owned; NULL: none */
} dbld_security;

/* For a service whose section is sc: merge sc->tls over shared.tls, check the
 * files, read the tokens (auth is on when shared.auth.tokens is not empty)
 * and the client token, and set the process's client security
 * (dbld_client_set_security). Errors name the key and the file or variable;
 * they are configuration errors. *out must be freed with
 * dbld_security_free() (also after an error). cfg must outlive *out. */
int dbld_security_setup(const dbld_config *cfg, const dbld_server_config *sc, dbld_security *out,
                        dbld_status *st);
void dbld_security_free(dbld_security *s);
/* A service's exit after dbld_security_setup() failed: logs the configuration
 * error (dbld_config_log_error), frees sec and cfg, returns exit status 2. */
int dbld_security_config_error(dbld_config *cfg, dbld_security *sec, const dbld_status *st);

/* The client half only (the CLI): ca/cert/key files and a token read from
 * token_file or the environment variable token_env (each may be NULL). */
int dbld_security_client(const dbld_tls_opts *tls, const char *server_name, const char *token_file,
                         const char *token_env, dbld_status *st);

#endif
