/* db.c - libpq wrapper: connect, parameterized exec, error mapping, a pool.
 *
 * Every PGresult is owned by a dbld_res and cleared by dbld_res_free(), or
 * cleared here on the error path. A connection that reports CONNECTION_BAD is
 * marked dead; the pool replaces dead connections on the next acquire.
 */
#include "dbld/db.h"
#include "dbld/util.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PREPARED 32

struct dbld_db {
    PGconn *conn;
    const char *prepared[MAX_PREPARED]; /* names prepared on this connection (static strings) */
    int n_prepared;
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
    if (strncmp(state, "22", 2) == 0) /* data exceptions, 2201B a bad regular expression */
        return DBLD_INVALID_ARGUMENT;
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

int dbld_db_connect(const char *dsn, dbld_db **out, dbld_status *st)
{
    *out = NULL;
    const char *keys[] = {"dbname", "connect_timeout", "application_name", NULL};
    const char *vals[] = {dsn, "5", "databuild", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1 /* expand dbname as a conninfo */);
    if (!c)
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "could not connect to database: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        dbld_status_set(st, DBLD_UNAVAILABLE, "could not connect to database: %s",
                        PQerrorMessage(c));
        if (st) trim_newline(st->msg);
        PQfinish(c);
        return DBLD_UNAVAILABLE;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL); /* libpq would print them on stderr */
    *out = dbld_xcalloc(1, sizeof **out);
    (*out)->conn = c;
    return 0;
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
    PQfinish(db->conn);
    free(db);
}

int dbld_db_alive(dbld_db *db)
{
    return db && PQstatus(db->conn) == CONNECTION_OK;
}

static int fail_result(dbld_db *db, PGresult *r, dbld_status *st)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int code =
        PQstatus(db->conn) != CONNECTION_OK ? DBLD_UNAVAILABLE : dbld_db_code_for_sqlstate(state);
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg || !*msg) msg = PQerrorMessage(db->conn);
    dbld_status_set(st, code, "%s%s", code == DBLD_UNAVAILABLE ? "database unavailable: " : "",
                    msg && *msg ? msg : "unknown database error");
    if (st) trim_newline(st->msg);
    return code;
}

static int is_prepared(const dbld_db *db, const char *name)
{
    for (int i = 0; i < db->n_prepared; i++)
        if (strcmp(db->prepared[i], name) == 0) return 1;
    return 0;
}

/* 1 if a statement before stmts[i] in this pipeline has stmts[i]'s name:
 * it prepares the name (once per connection, even when a batch repeats a
 * statement before its first PREPARE has completed). */
static int prepared_earlier(const dbld_stmt *stmts, size_t i)
{
    for (size_t j = 0; j < i; j++)
        if (stmts[j].name && strcmp(stmts[j].name, stmts[i].name) == 0) return 1;
    return 0;
}

/* Queue stmts[i] (and its PREPARE when needed); returns how many results the
 * server will send for it (1 or 2), or -1. */
static int send_stmt(dbld_db *db, const dbld_stmt *stmts, size_t i)
{
    const dbld_stmt *s = &stmts[i];
    if (!s->name)
        return PQsendQueryParams(db->conn, s->sql, s->n, NULL, s->params, NULL, NULL, 0) ? 1 : -1;
    int extra = 0;
    if (!is_prepared(db, s->name) && !prepared_earlier(stmts, i)) {
        if (!PQsendPrepare(db->conn, s->name, s->sql, s->n, NULL)) return -1;
        extra = 1;
    }
    return PQsendQueryPrepared(db->conn, s->name, s->n, s->params, NULL, NULL, 0) ? 1 + extra : -1;
}

/* Enter pipeline mode and queue the statements and the sync point; on
 * success db->expect holds how many results each statement yields. */
static int pipeline_send(dbld_db *db, const dbld_stmt *stmts, size_t n, dbld_status *st)
{
    for (size_t i = 0; i < n; i++)
        if (stmts[i].out) *stmts[i].out = NULL;
    drop_got(db);
    if (!PQenterPipelineMode(db->conn)) return fail_result(db, NULL, st);
    db->expect = dbld_xcalloc(n ? n : 1, sizeof *db->expect);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if ((db->expect[i] = send_stmt(db, stmts, i)) < 0) rc = fail_result(db, NULL, st);
    if (!rc && !PQpipelineSync(db->conn)) rc = fail_result(db, NULL, st);
    if (rc) { /* nothing usable was sent; the connection state is unknown */
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
    return PQgetResult(db->conn);
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
            if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
                if (!is_exec && db->n_prepared < MAX_PREPARED)
                    db->prepared[db->n_prepared++] = stmts[i].name;
                if (is_exec && stmts[i].out) {
                    *stmts[i].out = dbld_xmalloc(sizeof **stmts[i].out);
                    (*stmts[i].out)->res = r;
                    r = NULL;
                }
            } else if (!rc && s != PGRES_PIPELINE_ABORTED) {
                rc = fail_result(db, r, st);
            } else if (!rc) {
                rc = dbld_status_set(st, DBLD_INTERNAL, "pipeline aborted");
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

int dbld_db_exec(dbld_db *db, const char *sql, int n, const char *const *params, dbld_res **out,
                 dbld_status *st)
{
    if (out) *out = NULL;
    PGresult *r = n == 0 && !out ? PQexec(db->conn, sql)
                                 : PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) {
        if (out) {
            *out = dbld_xmalloc(sizeof **out);
            (*out)->res = r;
        } else {
            PQclear(r);
        }
        return 0;
    }
    int code = fail_result(db, r, st);
    PQclear(r);
    return code;
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

void dbld_res_free(dbld_res *r)
{
    if (!r) return;
    PQclear(r->res);
    free(r);
}

/* ---- literals ---- */

char *dbld_pg_text_array(dbld_arena *a, const char *const *items, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++)
        len += 5 + (items[i] ? 2 * strlen(items[i]) : 0);
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
    int size;
    dbld_db **free_conns; /* stack of idle connections (NULL = not yet made) */
    int n_free;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

dbld_pool *dbld_pool_create(const char *dsn, int size)
{
    dbld_pool *p = dbld_xcalloc(1, sizeof *p);
    p->dsn = dbld_xstrdup(dsn);
    p->size = size < 1 ? 1 : size;
    p->free_conns = dbld_xcalloc((size_t)p->size, sizeof *p->free_conns);
    p->n_free = p->size; /* all slots idle; NULL entries connect lazily */
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
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

int dbld_pool_acquire(dbld_pool *p, int64_t timeout_ms, dbld_db **out, dbld_status *st)
{
    *out = NULL;
    int64_t end = dbld_mono_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    pthread_mutex_lock(&p->mu);
    while (p->n_free == 0) {
        int64_t left = end - dbld_mono_ms();
        if (left <= 0) {
            pthread_mutex_unlock(&p->mu);
            return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                                   "all %d database connections are busy", p->size);
        }
        struct timespec ts = dbld_abs_time(CLOCK_REALTIME, left);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    dbld_db *db = p->free_conns[--p->n_free];
    pthread_mutex_unlock(&p->mu);
    if (db && !dbld_db_alive(db)) {
        dbld_db_close(db);
        db = NULL;
    }
    if (!db && dbld_db_connect(p->dsn, &db, st) != 0) {
        dbld_pool_release(p, NULL); /* give the slot back */
        return st ? st->code : DBLD_UNAVAILABLE;
    }
    *out = db;
    return 0;
}

void dbld_pool_release(dbld_pool *p, dbld_db *db)
{
    if (db && !dbld_db_alive(db)) {
        dbld_db_close(db);
        db = NULL;
    }
    pthread_mutex_lock(&p->mu);
    p->free_conns[p->n_free++] = db;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}
