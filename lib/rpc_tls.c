/* rpc_tls.c - PEM files for the RPC runtime's TLS: read and checked at
 * start-up so that a missing or wrong file is a configuration error naming
 * the file, not a failed handshake later. */
#include "dbld/rpc.h"

#include "dbld/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PEM_BYTES (1024 * 1024)

int dbld_tls_read_pem(const char *what, const char *path, char **out, dbld_status *st)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: could not read \"%s\": %s", what,
                               path, strerror(errno));
    char *buf = dbld_xcalloc(1, MAX_PEM_BYTES + 1);
    size_t n = fread(buf, 1, MAX_PEM_BYTES, f);
    int err = ferror(f);
    fclose(f);
    if (err || n == 0 || n >= MAX_PEM_BYTES || !strstr(buf, "-----BEGIN ")) {
        free(buf);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: \"%s\" is not a PEM file", what,
                               path);
    }
    *out = buf;
    return 0;
}

static int check_one(const char *what, const char *path, dbld_status *st)
{
    char *pem = NULL;
    int rc = dbld_tls_read_pem(what, path, &pem, st);
    free(pem);
    return rc;
}

int dbld_tls_check(const dbld_tls_opts *t, int server, dbld_status *st)
{
    if (!t) return 0;
    if (server && t->cert_file && !t->key_file)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "tls.cert_file is set but tls.key_file is not");
    if (!t->cert_file && t->key_file)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "tls.key_file is set but tls.cert_file is not");
    if (server && t->client_auth != DBLD_TLS_CLIENT_NONE && !t->ca_file)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "tls.client_auth needs tls.ca_file (the CA of client certificates)");
    if (t->cert_file && check_one("tls.cert_file", t->cert_file, st)) return st->code;
    if (t->key_file && check_one("tls.key_file", t->key_file, st)) return st->code;
    if (t->ca_file && check_one("tls.ca_file", t->ca_file, st)) return st->code;
    return 0;
}
