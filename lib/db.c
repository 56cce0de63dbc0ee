/* db.c - libpq wrapper: connect, parameterized exec, pipelines, error
 * mapping, a pool.
 *
 * Every PGresult is owned by a dbld_res and cleared by dbld_res_free(), or
 * cleared here on the error path. A connection that reports CONNECTION_BAD is
 * marked dead; the pool replaces dead connections on the next acquire.
 *
 * Waiting: no call blocks inside libpq. Statements are sent, then
 * wait_ready() polls the socket (PQconsumeInput / PQisBusy) in slices of
 * DBLD_DB_POLL_MS while an interrupt function is set, and asks it each time
 * whether the caller still wants the answer; when not, the server is told to
 * cancel (PQcancel, through a cancel handle made at connect time) and the
 * statement ends with the interrupt's code instead of running on unobserved.
 */
#include "dbld/db.h"
#include "dbld/log.h"
#include "dbld/util.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A statement name this connection sent a PREPARE for. */
typedef struct prepared {
    const char *name;
    int pending; /* 1: sent, its result not read yet; 0: confirmed */
} prepared;

struct dbld_db {
    PGconn *conn;
    PGcancel *cancel; /* made at connect: PQcancel() on it is thread-safe */
    int statement_timeout_ms;
    /* names prepared (or being prepared) on this connection; grows as needed */
    prepared *prep;
    size_t n_prep, cap_prep;
    /* the current user's interrupt (dbld_db_set_interrupt) */
    dbld_db_interrupt_fn interrupt;
    void *interrupt_arg;
    atomic_int cancel_code; /* non-zero once a cancel was sent: what the statement returns */
    /* a pipeline sent with dbld_db_pipeline_send(): results per statement, and
     * the results read so far by dbld_db_pipeline_recv() (NULLs included) */
    int *expect;
    PGresult **got;
    size_t n_got, cap_got, next_got;
};

struct dbld_res {
    PGresult *res;
};

int dbld_db_code_for_sqlstate(const char *state)
{
    if (!state) return DBLD_UNAVAILABLE; /* no SQLSTATE: the connection itself failed */
    if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
        strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 || strcmp(state, "53300") == 0)
        return DBLD_UNAVAILABLE;
    if (strncmp(state, "53", 2) == 0) return DBLD_RESOURCE_EXHAUSTED; /* disk full, memory */
    /* data exceptions (2201B a bad regular expression, 22003 out of range) and
     * limits a value exceeds (54000: an index row too large) */
    if (strncmp(state, "22", 2) == 0 || strncmp(state, "54", 2) == 0) return DBLD_INVALID_ARGUMENT;
    if (strcmp(state, "23505") == 0) return DBLD_ALREADY_EXISTS;
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) return DBLD_ABORTED;
    if (strcmp(state, "57014") == 0) return DBLD_DEADLINE_EXCEEDED;
    if (strcmp(state, "25006") == 0) return DBLD_FAILED_PRECONDITION; /* read-only transaction */
    return DBLD_INTERNAL;
}

static void trim_newline(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static int connect_failed(PGconn *c, dbld_status *st)
{
    dbld_status_set(st, DBLD_UNAVAILABLE, "could not connect to database: %s",
                    c ? PQerrorMessage(c) : "out of memory");
    if (st) trim_newline(st->msg);
    PQfinish(c);
    return DBLD_UNAVAILABLE;
}

/* Apply opts to a new session (parameterized: set_config(), not SET). */
static int apply_opts(dbld_db *db, const dbld_db_opts *o, dbld_status *st)
{
    char timeout[32];
    snprintf(timeout, sizeof timeout, "%d",
             o->statement_timeout_ms > 0 ? o->statement_timeout_ms : 0);
    const char *p[] = {timeout, o->read_only ? "on" : "off"};
    db->statement_timeout_ms = o->statement_timeout_ms > 0 ? o->statement_timeout_ms : 0;
    return dbld_db_exec(db,
                        "SELECT set_config('statement_timeout', $1, false),"
                        " set_config('default_transaction_read_only', $2, false)",
                        2, p, NULL, st);
}

int dbld_db_connect_opts(const char *dsn, const dbld_db_opts *opts, dbld_db **out, dbld_status *st)
{
    *out = NULL;
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {dsn, "5", "databuild", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1 /* expand dbname as a conninfo */);
    if (!c || PQstatus(c) != CONNECTION_OK) return connect_failed(c, st);
    PQsetNoticeProcessor(c, ignore_notice, NULL); /* libpq would print them on stderr */
    dbld_db *db = dbld_xcalloc(1, sizeof *db);
    db->conn = c;
    db->cancel = PQgetCancel(c);
    if (opts && (opts->statement_timeout_ms > 0 || opts->read_only)) {
        int rc = apply_opts(db, opts, st);
        if (rc) {
            dbld_db_close(db);
            return rc;
        }
    }
    *out = db;
    return 0;
}

int dbld_db_connect(const char *dsn, dbld_db **out, dbld_status *st)
{
    return dbld_db_connect_opts(dsn, NULL, out, st);
}

static void drop_got(dbld_db *db)
{
    for (size_t i = db->next_got; i < db->n_got; i++)
        PQclear(db->got[i]);
    db->n_got = db->next_got = 0;
    free(db->expect);
    db->expect = NULL;
}

void dbld_db_close(dbld_db *db)
{
    if (!db) return;
    drop_got(db);
    free(db->got);
    free(db->prep);
    if (db->cancel) PQfreeCancel(db->cancel);
    PQfinish(db->conn);
    free(db);
}

int dbld_db_alive(dbld_db *db)
{
    return db && PQstatus(db->conn) == CONNECTION_OK && !atomic_load(&db->cancel_code);
}

void dbld_db_set_interrupt(dbld_db *db, dbld_db_interrupt_fn fn, void *arg)
{
    db->interrupt = fn;
    db->interrupt_arg = arg;
}

int dbld_db_cancel(dbld_db *db, int code)
{
    char err[256];
    int expected = 0;
    if (!atomic_compare_exchange_strong(&db->cancel_code, &expected, code))
        return 0; /* already sent */
    if (db->cancel && PQcancel(db->cancel, err, sizeof err)) return 0;
    return DBLD_UNAVAILABLE;
}

/* ---- errors ---- */

/* The message for a statement that ended with code / state (not a lost
 * connection): never PostgreSQL's own text but for a bad regex. */
static void error_message(const dbld_db *db, int code, const char *state, const char *primary,
                          dbld_status *st)
{
    int interrupted = atomic_load(&db->cancel_code);
    if (state && strcmp(state, "57014") == 0 && interrupted)
        dbld_status_set(st, code, "database statement cancelled: %s",
                        interrupted == DBLD_DEADLINE_EXCEEDED ? "the call's deadline passed"
                                                              : "the call was cancelled");
    else if (state && strcmp(state, "57014") == 0 && db->statement_timeout_ms)
        dbld_status_set(st, code,
                        "database statement cancelled after the statement timeout (%d ms)",
                        db->statement_timeout_ms);
    else if (state && strcmp(state, "57014") == 0)
        dbld_status_set(st, code, "database statement cancelled by the server");
    else if (state && strcmp(state, "2201B") == 0 && primary)
        dbld_status_set(st, code, "%s", primary); /* "invalid regular expression: ..." */
    else if (code == DBLD_INVALID_ARGUMENT)
        dbld_status_set(st, code, "a value was rejected by the database (SQLSTATE %s)", state);
    else
        dbld_status_set(st, code, "database error (SQLSTATE %s)", state ? state : "none");
}

static int fail_result(dbld_db *db, PGresult *r, dbld_status *st)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(db->conn);
    if (!msg || !*msg) msg = "unknown database error";
    int code =
        PQstatus(db->conn) != CONNECTION_OK ? DBLD_UNAVAILABLE : dbld_db_code_for_sqlstate(state);
    if (code == DBLD_UNAVAILABLE) {
        dbld_status_set(st, code, "database unavailable: %s", msg);
        if (st) trim_newline(st->msg);
        return code;
    }
    int interrupted = atomic_load(&db->cancel_code);
    if (interrupted && state && strcmp(state, "57014") == 0) code = interrupted;
    error_message(db, code, state, msg, st);
    /* the full text only here, in the server's log */
    const char *detail = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL) : NULL;
    dbld_log_level level = code == DBLD_INTERNAL                               ? DBLD_LOG_ERROR
                           : interrupted || (state && !strcmp(state, "2201B")) ? DBLD_LOG_INFO
                                                                               : DBLD_LOG_WARN;
    dbld_log(level, "database statement failed", "sqlstate", state ? state : "", "error", msg,
             "detail", detail ? detail : "", "status", dbld_code_name(code), (char *)NULL);
    return code;
}

/* ---- waiting ---- */

/* Wait until PQgetResult() will not block: poll the socket, feed libpq, and
 * between slices ask the interrupt whether to cancel. -1 when the connection
 * failed (PQgetResult then reports it without blocking). */
static int wait_ready(dbld_db *db)
{
    int fd = PQsocket(db->conn);
    if (fd < 0) return -1;
    while (PQisBusy(db->conn)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, db->interrupt ? DBLD_DB_POLL_MS : -1);
        if (r < 0 && errno != EINTR) return -1;
        if (r > 0 && !PQconsumeInput(db->conn)) return -1;
        if (db->interrupt && !atomic_load(&db->cancel_code)) {
            int code = db->interrupt(db->interrupt_arg);
            if (code) dbld_db_cancel(db, code);
        }
    }
    return 0;
}

static PGresult *get_result(dbld_db *db)
{
    wait_ready(db);
    return PQgetResult(db->conn);
}

/* ---- prepared statement names ---- */

static prepared *find_prepared(dbld_db *db, const char *name)
{
    for (size_t i = 0; i < db->n_prep; i++)
        if (strcmp(db->prep[i].name, name) == 0) return &db->prep[i];
    return NULL;
}

static void add_prepared(dbld_db *db, const char *name)
{
    if (db->n_prep == db->cap_prep) {
        db->cap_prep = db->cap_prep ? 2 * db->cap_prep : 16;
        db->prep = dbld_xrealloc(db->prep, db->cap_prep * sizeof *db->prep);
    }
    db->prep[db->n_prep++] = (prepared){.name = name, .pending = 1};
}

/* A PREPARE's result arrived: keep the name (ok) or forget it. */
static void settle_prepared(dbld_db *db, const char *name, int ok)
{
    prepared *p = find_prepared(db, name);
    if (!p) return;
    if (ok) {
        p->pending = 0;
    } else {
        *p = db->prep[--db->n_prep];
    }
}

/* ---- pipelines ---- */

/* Queue one statement (and its PREPARE when its name was never sent on this
 * connection); returns how many results the server will send for it (1, or
 * 2 with the PREPARE), or -1. */
static int send_stmt(dbld_db *db, const dbld_stmt *s)
{
    if (!s->name)
        return PQsendQueryParams(db->conn, s->sql, s->n, NULL, s->params, s->lengths, s->formats, 0)
                   ? 1
                   : -1;
    int extra = 0;
    if (!find_prepared(db, s->name)) {
        if (!PQsendPrepare(db->conn, s->name, s->sql, s->n, NULL)) return -1;
        add_prepared(db, s->name); /* pending: later statements of this pipeline use it */
        extra = 1;
    }
    return PQsendQueryPrepared(db->conn, s->name, s->n, s->params, s->lengths, s->formats, 0)
               ? 1 + extra
               : -1;
}

/* Enter pipeline mode and queue the statements and the sync point; on
 * success db->expect holds how many results each statement yields. */
static int pipeline_send(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st)
{
    for (size_t i = 0; i < n; i++) {
        if (stmts[i].out) *stmts[i].out = NULL;
        stmts[i].failed = 0;
        stmts[i].sqlstate[0] = '\0';
    }
    drop_got(db);
    if (!PQenterPipelineMode(db->conn)) return fail_result(db, NULL, st);
    db->expect = dbld_xcalloc(n ? n : 1, sizeof *db->expect);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if ((db->expect[i] = send_stmt(db, &stmts[i])) < 0) rc = fail_result(db, NULL, st);
    if (!rc && !PQpipelineSync(db->conn)) rc = fail_result(db, NULL, st);
    if (rc) { /* nothing usable was sent; the connection state is unknown */
        for (size_t i = 0; i < n; i++)
            if (db->expect[i] == 2) settle_prepared(db, stmts[i].name, 0);
        drop_got(db);
        PQexitPipelineMode(db->conn);
    }
    return rc;
}

/* The next result of the pipeline: read ahead by dbld_db_pipeline_recv(),
 * else waited for. */
static PGresult *next_result(dbld_db *db)
{
    if (db->next_got < db->n_got) return db->got[db->next_got++];
    return get_result(db);
}

/* Collect the results of the statements sent by pipeline_send(). */
static int pipeline_collect(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < db->expect[i]; k++) {
            int is_exec = k == db->expect[i] - 1;
            PGresult *r = next_result(db);
            ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
            int ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
            if (!is_exec) settle_prepared(db, stmts[i].name, ok);
            if (ok) {
                if (is_exec && stmts[i].out) {
                    *stmts[i].out = dbld_xmalloc(sizeof **stmts[i].out);
                    (*stmts[i].out)->res = r;
                    r = NULL;
                }
            } else if (!rc && s != PGRES_PIPELINE_ABORTED) {
                rc = fail_result(db, r, st);
                stmts[i].failed = 1;
                const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
                snprintf(stmts[i].sqlstate, sizeof stmts[i].sqlstate, "%s", state ? state : "");
            } else if (!rc) {
                rc = dbld_status_set(st, DBLD_INTERNAL, "pipeline aborted");
                stmts[i].failed = 1;
            }
            PQclear(r);
            if (PQstatus(db->conn) != CONNECTION_OK) {
                drop_got(db);
                return rc ? rc : fail_result(db, NULL, st);
            }
            PGresult *end = next_result(db); /* NULL separates commands */
            PQclear(end);
        }
    }
    /* The sync point. */
    PGresult *r = next_result(db);
    PQclear(r);
    drop_got(db);
    if (!PQexitPipelineMode(db->conn) && !rc) rc = fail_result(db, NULL, st);
    return rc;
}

int dbld_db_pipeline(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st)
{
    int rc = pipeline_send(db, stmts, n, st);
    return rc ? rc : pipeline_collect(db, stmts, n, st);
}

int dbld_db_socket(dbld_db *db)
{
    return PQsocket(db->conn);
}

int dbld_db_pipeline_send(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st)
{
    return pipeline_send(db, stmts, n, st);
}

int dbld_db_pipeline_recv(dbld_db *db, dbld_stmt *stmts, size_t n, int *rc, dbld_status *st)
{
    if (!PQconsumeInput(db->conn)) {
        *rc = fail_result(db, NULL, st);
        drop_got(db);
        return 1;
    }
    while (!PQisBusy(db->conn)) {
        PGresult *r = PQgetResult(db->conn);
        if (db->n_got == db->cap_got) {
            db->cap_got = db->cap_got ? 2 * db->cap_got : 8;
            db->got = dbld_xrealloc(db->got, db->cap_got * sizeof *db->got);
        }
        db->got[db->n_got++] = r;
        if (r && PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            *rc = pipeline_collect(db, stmts, n, st);
            return 1;
        }
    }
    return 0;
}

/* ---- one statement ---- */

int dbld_db_exec(dbld_db *db, const char *sql, int n, const char *const *params, dbld_res **out,
                 dbld_status *st)
{
    if (out) *out = NULL;
    /* the simple protocol (several statements allowed) only without params or a result */
    int sent = n == 0 && !out ? PQsendQuery(db->conn, sql)
                              : PQsendQueryParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (!sent) return fail_result(db, NULL, st);
    /* Read every result: the first error wins, else the last result counts. */
    PGresult *last = NULL, *err = NULL, *r;
    while ((r = get_result(db))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
            PQclear(last);
            last = r;
        } else if (!err) {
            err = r;
        } else {
            PQclear(r);
        }
        if (PQstatus(db->conn) != CONNECTION_OK) break;
    }
    if (err || !last) {
        PQclear(last);
        int code = fail_result(db, err, st);
        PQclear(err);
        return code;
    }
    if (out) {
        *out = dbld_xmalloc(sizeof **out);
        (*out)->res = last;
    } else {
        PQclear(last);
    }
    return 0;
}

int dbld_res_rows(const dbld_res *r)
{
    return r ? PQntuples(r->res) : 0;
}

const char *dbld_res_get(const dbld_res *r, int row, int col)
{
    return PQgetvalue(r->res, row, col);
}

int dbld_res_null(const dbld_res *r, int row, int col)
{
    return PQgetisnull(r->res, row, col);
}

int64_t dbld_res_i64(const dbld_res *r, int row, int col)
{
    return strtoll(PQgetvalue(r->res, row, col), NULL, 10);
}

int64_t dbld_res_affected(const dbld_res *r)
{
    return strtoll(PQcmdTuples(r->res), NULL, 10);
}

void dbld_res_index(const dbld_res *r, int col, dbld_arena *a, dbld_strmap *m)
{
    dbld_strmap_init(m, a);
    for (int row = 0; row < dbld_res_rows(r); row++) {
        size_t next = (size_t)row;
        dbld_strmap_index(m, dbld_res_get(r, row, col), &next, NULL);
    }
}

void dbld_res_free(dbld_res *r)
{
    if (!r) return;
    PQclear(r->res);
    free(r);
}

/* ---- literals ---- */

char *dbld_pg_text_array(dbld_arena *a, const char *const *items, size_t n)
{
    /* the exact length: the writer's batches make literals of megabytes */
    size_t len = 3;
    for (size_t i = 0; i < n; i++) {
        len += 5;
        if (items[i])
            for (const char *s = items[i]; *s; s++)
                len += 1 + (*s == '"' || *s == '\\');
    }
    char *out = dbld_arena_alloc(a, len), *p = out;
    *p++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i) *p++ = ',';
        if (!items[i]) {
            memcpy(p, "NULL", 4);
            p += 4;
            continue;
        }
        *p++ = '"';
        for (const char *s = items[i]; *s; s++) {
            if (*s == '"' || *s == '\\') *p++ = '\\';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

/* ---- binary arrays (array_send's format) ---- */

/* Element type OIDs (pg_type.h; stable across PostgreSQL versions). */
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

static char *put_u32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
    return p + 4;
}

/* The header of an n-element array of type oid, whose elements take
 * payload bytes (their 4-byte lengths included), in a buffer of the exact
 * size; returns where the elements go. An empty array has no dimension. */
static char *bin_header(dbld_arena *a, uint32_t oid, size_t n, size_t payload, int has_nulls,
                        char **out, int *len)
{
    size_t total = 12 + (n ? 8 : 0) + payload;
    char *p = *out = dbld_arena_alloc(a, total ? total : 1);
    *len = (int)total;
    p = put_u32(p, n ? 1 : 0); /* dimensions */
    p = put_u32(p, (uint32_t)has_nulls);
    p = put_u32(p, oid);
    if (n) {
        p = put_u32(p, (uint32_t)n);
        p = put_u32(p, 1); /* lower bound */
    }
    return p;
}

static const char *bin_var_array(dbld_arena *a, uint32_t oid, const char *const *items,
                                 const size_t *lens, size_t n, int *len)
{
    size_t payload = 4 * n;
    int nulls = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i])
            payload += lens ? lens[i] : strlen(items[i]);
        else
            nulls = 1;
    }
    char *out, *p = bin_header(a, oid, n, payload, nulls, &out, len);
    for (size_t i = 0; i < n; i++) {
        if (!items[i]) {
            p = put_u32(p, UINT32_MAX); /* -1: NULL */
            continue;
        }
        size_t l = lens ? lens[i] : strlen(items[i]);
        p = put_u32(p, (uint32_t)l);
        memcpy(p, items[i], l);
        p += l;
    }
    return out;
}

const char *dbld_pg_bin_text_array(dbld_arena *a, const char *const *items, size_t n, int *len)
{
    return bin_var_array(a, OID_TEXT, items, NULL, n, len);
}

const char *dbld_pg_bin_bytea_array(dbld_arena *a, const uint8_t *const *items, const size_t *lens,
                                    size_t n, int *len)
{
    return bin_var_array(a, OID_BYTEA, (const char *const *)items, lens, n, len);
}

const char *dbld_pg_bin_int8_array(dbld_arena *a, const int64_t *items, size_t n, int *len)
{
    char *out, *p = bin_header(a, OID_INT8, n, 12 * n, 0, &out, len);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)items[i];
        p = put_u32(p, 8);
        p = put_u32(p, (uint32_t)(v >> 32));
        p = put_u32(p, (uint32_t)v);
    }
    return out;
}

/* One element at *s (quoted, or bare up to the next ',' or '}') into w;
 * returns the end of what was written, or NULL when the element is malformed. */
static char *parse_element(const char **sp, char *w)
{
    const char *s = *sp;
    if (*s == '"') {
        for (s++; *s && *s != '"'; s++) {
            if (*s == '\\' && s[1]) s++;
            *w++ = *s;
        }
        if (*s++ != '"') return NULL;
    } else {
        const char *start = s;
        while (*s && *s != ',' && *s != '}' && *s != '{' && *s != '"' && *s != '\\')
            *w++ = *s++;
        if (s == start) return NULL;
    }
    *sp = s;
    *w++ = '\0';
    return w;
}

int dbld_pg_parse_text_array(dbld_arena *a, const char *lit, char ***items, size_t *n)
{
    *items = NULL;
    *n = 0;
    if (!lit || lit[0] != '{') return -1;
    size_t cap = 1;
    for (const char *s = lit; *s; s++)
        cap += *s == ',';
    char **arr = dbld_arena_alloc(a, cap * sizeof *arr);
    char *buf = dbld_arena_alloc(a, strlen(lit) + 1);
    const char *s = lit + 1;
    size_t k = 0;
    while (*s != '}') {
        char *end = parse_element(&s, buf);
        /* every element ends at ',' or '}': at most cap of them */
        if (!end || (*s != ',' && *s != '}') || (*s == ',' && s[1] == '}')) return -1;
        arr[k++] = buf;
        buf = end;
        if (*s == ',') s++;
    }
    if (s[1] != '\0') return -1;
    *items = arr;
    *n = k;
    return 0;
}

char *dbld_hex_encode(dbld_arena *a, const void *data, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *d = data;
    char *out = dbld_arena_alloc(a, 2 * len + 1);
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

char *dbld_msg_hex(dbld_arena *a, const ProtobufCMessage *m)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = protobuf_c_message_get_packed_size(m);
    char *out = dbld_arena_alloc(a, 2 * len + 1);
    unsigned char *d = (unsigned char *)out + len;
    protobuf_c_message_pack(m, d);
    /* byte i (at len + i) is read before out[2i], out[2i + 1] are written,
     * and 2i + 1 <= len + i: no unread byte is overwritten */
    for (size_t i = 0; i < len; i++) {
        unsigned char b = d[i];
        out[2 * i] = hex[b >> 4];
        out[2 * i + 1] = hex[b & 15];
    }
    out[2 * len] = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int dbld_bytea_decode(dbld_arena *a, const char *text, uint8_t **out, size_t *len)
{
    if (text[0] != '\\' || text[1] != 'x') return -1;
    size_t n = strlen(text + 2) / 2;
    uint8_t *b = dbld_arena_alloc(a, n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(text[2 + 2 * i]), lo = hexval(text[3 + 2 * i]);
        if (hi < 0 || lo < 0) return -1;
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = b;
    *len = n;
    return 0;
}

/* ---- pool ---- */

struct dbld_pool {
    char *dsn;
    dbld_pool_opts opts;
    dbld_db **free_conns; /* stack of idle connections (NULL = not yet made) */
    int n_free;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

dbld_pool *dbld_pool_create_opts(const char *dsn, const dbld_pool_opts *opts)
{
    dbld_pool *p = dbld_xcalloc(1, sizeof *p);
    p->dsn = dbld_xstrdup(dsn);
    p->opts = *opts;
    if (p->opts.size < 1) p->opts.size = 1;
    if (p->opts.reserved > p->opts.size - 1) p->opts.reserved = p->opts.size - 1;
    if (p->opts.reserved < 0) p->opts.reserved = 0;
    p->free_conns = dbld_xcalloc((size_t)p->opts.size, sizeof *p->free_conns);
    p->n_free = p->opts.size; /* all slots idle; NULL entries connect lazily */
    pthread_mutex_init(&p->mu, NULL);
    dbld_cond_init_mono(&p->cv);
    return p;
}

dbld_pool *dbld_pool_create(const char *dsn, int size)
{
    dbld_pool_opts o = {.size = size};
    return dbld_pool_create_opts(dsn, &o);
}

void dbld_pool_destroy(dbld_pool *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_free; i++)
        dbld_db_close(p->free_conns[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->free_conns);
    free(p->dsn);
    free(p);
}

/* Take a slot once more than `keep` are free; connect it if needed. */
static int acquire(dbld_pool *p, int keep, int64_t timeout_ms, dbld_db **out, dbld_status *st)
{
    *out = NULL;
    int64_t end = dbld_mono_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    pthread_mutex_lock(&p->mu);
    while (p->n_free <= keep) {
        int64_t left = end - dbld_mono_ms();
        if (left <= 0) {
            pthread_mutex_unlock(&p->mu);
            if (keep)
                return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                                       "all %d database connections for reads are busy (and %d"
                                       " kept for the service's own work)",
                                       p->opts.size - keep, keep);
            return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                                   "all %d database connections are busy", p->opts.size);
        }
        struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, left);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    dbld_db *db = p->free_conns[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    if (db && !dbld_db_alive(db)) {
        dbld_db_close(db);
        db = NULL;
    }
    if (!db && dbld_db_connect_opts(p->dsn, &p->opts.db, &db, st) != 0) {
        dbld_pool_release(p, NULL); /* give the slot back */
        return st ? st->code : DBLD_UNAVAILABLE;
    }
    *out = db;
    return 0;
}

int dbld_pool_acquire(dbld_pool *p, int64_t timeout_ms, dbld_db **out, dbld_status *st)
{
    return acquire(p, 0, timeout_ms, out, st);
}

int dbld_pool_acquire_user(dbld_pool *p, int64_t timeout_ms, dbld_db **out, dbld_status *st)
{
    return acquire(p, p->opts.reserved, timeout_ms, out, st);
}

void dbld_pool_release(dbld_pool *p, dbld_db *db)
{
    if (db) dbld_db_set_interrupt(db, NULL, NULL);
    if (db && !dbld_db_alive(db)) {
        dbld_db_close(db);
        db = NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->free_conns[p->n_free++] = db;
    /* every waiter: an internal one may be behind a user one that cannot take it */
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
