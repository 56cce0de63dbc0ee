/* auth.h - who may call what: the role of every method, bearer tokens and
 * mTLS identities with roles, checked by the RPC runtime before a request is
 * read.
 *
 * Roles (a token or identity holds a set of them; none implies another):
 *   reader    every query RPC, events List/Subscribe, lookups and analysis
 *   writer    PutWants, PutTaints, build Submit/Build/Cancel, CancelJobRun
 *   internal  what services call on each other: Append, claims, leases, job
 *             logs, JobRunner.Run, JobConfigure, JobExecute
 *   open      health and reflection, unless configured otherwise
 * Every method served anywhere in the suite is in one table (auth.c); a
 * server refuses to register a method the table does not know, and a unit
 * test walks every service of the .proto files against the table.
 */
#ifndef DBLD_AUTH_H
#define DBLD_AUTH_H

#include "dbld/status.h"
#include <stddef.h>

#define DBLD_ROLE_OPEN 0x0
#define DBLD_ROLE_READER 0x1
#define DBLD_ROLE_WRITER 0x2
#define DBLD_ROLE_INTERNAL 0x4
#define DBLD_ROLE_HEALTH 0x8      /* grpc.health.v1: open unless health_open is off */
#define DBLD_ROLE_REFLECTION 0x10 /* server reflection: open unless reflection_open is off */

/* The role a method ("/databuild.v1.EventLog/Append") requires; -1 when the
 * method is not in the table. */
int dbld_method_role(const char *path);
/* "reader", "writer", "internal", "open", "health", "reflection"; "?" otherwise. */
const char *dbld_role_name(int role);
/* Parse "reader" / "writer" / "internal" to its bit; 0 for anything else. */
int dbld_role_parse(const char *name);
/* The table, for tests: *n entries of paths and roles. */
const char *dbld_method_table_path(size_t i, int *role);
size_t dbld_method_table_size(void);

/* One credential as configured: a token read from a file or an environment
 * variable (never inline in the YAML), or an mTLS client certificate's common
 * name; roles is a mask of DBLD_ROLE_*. */
typedef struct dbld_auth_entry {
    const char *name;       /* for logs; never the secret */
    const char *token_file; /* exactly one of token_file, token_env, common_name */
    const char *token_env;
    const char *common_name; /* mTLS identity (x509 CN of the verified client certificate) */
    int roles;
} dbld_auth_entry;

typedef struct dbld_auth_opts {
    const dbld_auth_entry *entries;
    size_t n_entries;
    int health_open;     /* 1: health needs no credential */
    int reflection_open; /* 1: reflection needs no credential */
} dbld_auth_opts;

typedef struct dbld_auth dbld_auth;

/* Read the tokens (files are trimmed of one trailing newline; an empty token
 * is an error) and build the checker. Errors name the entry and the file or
 * variable. Caller frees with dbld_auth_destroy(). */
int dbld_auth_create(const dbld_auth_opts *opts, dbld_auth **out, dbld_status *st);
void dbld_auth_destroy(dbld_auth *a);
/* Read a token file (at most 4096 bytes, trailing newlines dropped) into *out
 * (malloc'd); errors start with what and name the file. */
int dbld_auth_read_token(const char *what, const char *path, char **out, dbld_status *st);

/* May a caller presenting `authorization` (the metadata value, "Bearer X";
 * NULL or len 0 when absent) and, on an mTLS connection, the verified client
 * common name cn (NULL when none) call path? 0, UNAUTHENTICATED (no or unknown
 * credential) or PERMISSION_DENIED (known, without the role); the message
 * names the method and the role required, never the token. Tokens are
 * compared in constant time. Thread-safe. */
int dbld_auth_check(const dbld_auth *a, const char *path, const char *authorization, size_t len,
                    const char *cn, dbld_status *st);

#endif
