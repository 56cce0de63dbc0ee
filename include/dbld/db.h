/* db.h - the PostgreSQL layer: connections, parameterized queries, a pool.
 *
 * The only module that includes libpq. All SQL is parameterized
 * (PQexecParams); values travel as text parameters, never spliced into SQL.
 * Errors are mapped to dbld status codes here (dbld_db_code_for_sqlstate()).
 */
#ifndef DBLD_DB_H
#define DBLD_DB_H

#include "dbld/arena.h"
#include "dbld/status.h"
#include "dbld/strmap.h"
#include <stddef.h>
#include <stdint.h>

typedef struct dbld_db dbld_db;   /* one connection */
typedef struct dbld_res dbld_res; /* one result */

/* The dbld code for an error's SQLSTATE: a lost or refused connection (NULL:
 * no SQLSTATE, class 08, 57P01..57P03 shutdown, 53300 too many connections)
 * is UNAVAILABLE; other insufficient resources (class 53: disk full, out of
 * memory) RESOURCE_EXHAUSTED; a data exception (class 22, e.g. 2201B a bad
 * regular expression, 22003 a number out of range) or a program limit
 * exceeded by a value (class 54, e.g. an index row too large)
 * INVALID_ARGUMENT; 23505 unique violation ALREADY_EXISTS; 40001
 * serialization failure and 40P01 deadlock ABORTED; 57014 statement timeout
 * / cancel DEADLINE_EXCEEDED; 25006 read-only transaction
 * FAILED_PRECONDITION; everything else (SQL that does not fit the schema:
 * a bug) INTERNAL. (A connection found bad after the error is UNAVAILABLE
 * whatever the SQLSTATE.)
 *
 * Error messages never carry PostgreSQL's text, which can quote SQL and
 * values: a failed statement's status says "database error (SQLSTATE
 * 42P01)" (or "a value was rejected by the database (SQLSTATE 22003)" for
 * INVALID_ARGUMENT), and the full text goes to the log (dbld_log, warn).
 * Exceptions: an invalid regular expression (2201B) keeps PostgreSQL's
 * message, which is about the caller's pattern; a lost connection says
 * "database unavailable: <libpq's reason>"; a statement timeout or an
 * interrupt (dbld_db_set_interrupt) says so. Callers prefix the operation
 * ("could not list events: ..."). */
int dbld_db_code_for_sqlstate(const char *sqlstate);

/* Session settings applied once at connect time (0 = the server's default). */
typedef struct dbld_db_opts {
    int statement_timeout_ms; /* SET statement_timeout: no statement runs longer */
    int read_only;            /* SET default_transaction_read_only = on */
} dbld_db_opts;

/* Connect (connect_timeout 5 s unless the DSN says otherwise). Caller frees
 * with dbld_db_close(). On failure *out is NULL and st says why (UNAVAILABLE). */
int dbld_db_connect(const char *dsn, dbld_db **out, dbld_status *st);
/* The same with session settings (opts may be NULL). */
int dbld_db_connect_opts(const char *dsn, const dbld_db_opts *opts, dbld_db **out, dbld_status *st);
void dbld_db_close(dbld_db *db);
/* 1 while the connection is usable, 0 after it was lost (reconnect then) or
 * after a cancel was sent on it (dbld_db_cancel(), an interrupt): a cancel
 * that reaches the server late could hit the next statement, so such a
 * connection is not reused. */
int dbld_db_alive(dbld_db *db);

/* Interrupting waits. While a statement of dbld_db_exec() or
 * dbld_db_pipeline() runs, fn(arg) is polled every DBLD_DB_POLL_MS; when it
 * returns a code (non-zero, e.g. DBLD_CANCELLED or DBLD_DEADLINE_EXCEEDED:
 * the RPC that waits was cancelled or passed its deadline), the statement is
 * cancelled on the server (PQcancel) and the call returns that code. fn
 * NULL: no polling. Set by the connection's current user (e.g. for one RPC),
 * cleared (NULL) before the connection goes back to a pool. */
#define DBLD_DB_POLL_MS 50
typedef int (*dbld_db_interrupt_fn)(void *arg);
void dbld_db_set_interrupt(dbld_db *db, dbld_db_interrupt_fn fn, void *arg);
/* Ask the server to cancel whatever runs on db now; callable from any thread
 * while another uses db (the cancel key is copied at connect time). code is
 * what the interrupted statement then returns (DBLD_CANCELLED or
 * DBLD_DEADLINE_EXCEEDED); 0 on success, else UNAVAILABLE (no cancel sent). */
int dbld_db_cancel(dbld_db *db, int code);

/* Run one statement with text parameters (params[i] NULL = SQL NULL). On
 * success *out (if out is non-NULL) holds the result: caller frees with
 * dbld_res_free(). Multi-statement SQL is allowed only with n == 0 and no
 * out. Waits by polling the socket, so an interrupt (dbld_db_set_interrupt)
 * can end it; so does dbld_db_pipeline(). */
int dbld_db_exec(dbld_db *db, const char *sql, int n, const char *const *params, dbld_res **out,
                 dbld_status *st);

/* One statement of a pipeline. With a name, the statement is prepared on
 * first use on each connection and executed as prepared afterwards: a
 * connection remembers every name it sent a PREPARE for (any number of
 * them), from the moment the PREPARE is sent, so a pipeline that uses one
 * name twice prepares it once; a PREPARE that fails is forgotten again. A
 * new connection (after a reconnect) starts with none. */
typedef struct dbld_stmt {
    const char *name; /* NULL: run unprepared; else a string that outlives the connection */
    const char *sql;
    int n;
    const char *const *params;
    /* NULL: every parameter is text (a C string). Else params[i] is in
     * PostgreSQL's binary format when formats[i] is 1 (dbld_pg_bin_*()), its
     * length in bytes lengths[i]; text when formats[i] is 0. */
    const int *formats;
    const int *lengths;
    dbld_res **out; /* NULL: discard the result */
    /* set by the pipeline for the statement whose error it returns: failed 1
     * and its SQLSTATE ("" when the error has none) */
    int failed;
    char sqlstate[6];
} dbld_stmt;

/* Send the statements in one round trip (libpq pipeline mode) and collect
 * their results in order. The first failing statement aborts the rest (the
 * server skips them); its error is returned. Results already stored in
 * stmts[i].out stay owned by the caller even on error. */
int dbld_db_pipeline(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st);

/* The same without waiting, for event loops: dbld_db_pipeline_send() sends
 * (0, or an error and nothing is pending); then, each time the connection's
 * socket is readable, dbld_db_pipeline_recv() with the same statements reads
 * what has arrived and returns 0 (wait again) or 1 (done: *rc and st are
 * what dbld_db_pipeline() would have returned, stmts[i].out filled). */
int dbld_db_socket(dbld_db *db);
int dbld_db_pipeline_send(dbld_db *db, dbld_stmt *stmts, size_t n, dbld_status *st);
int dbld_db_pipeline_recv(dbld_db *db, dbld_stmt *stmts, size_t n, int *rc, dbld_status *st);

int dbld_res_rows(const dbld_res *r);
/* Borrowed until dbld_res_free(); "" for NULL. */
const char *dbld_res_get(const dbld_res *r, int row, int col);
int dbld_res_null(const dbld_res *r, int row, int col);
int64_t dbld_res_i64(const dbld_res *r, int row, int col);
/* Command tag count ("INSERT 0 5" -> 5). */
int64_t dbld_res_affected(const dbld_res *r);
void dbld_res_free(dbld_res *r);
/* Index r's rows by the text of column col: *m (initialized here, arrays in
 * a) maps each value to its first row. Keys are borrowed from r: use the map
 * only until dbld_res_free(r). Matching rows to keys costs O(rows + keys),
 * not O(rows x keys). */
void dbld_res_index(const dbld_res *r, int col, dbld_arena *a, dbld_strmap *m);

/* A PostgreSQL array literal ({"a","b\"c",NULL}) for the given strings (NULL
 * items become SQL NULLs), to pass as a text parameter and cast in SQL
 * (`$1::text[]`, `$2::bigint[]`). Allocated in the arena. */
char *dbld_pg_text_array(dbld_arena *a, const char *const *items, size_t n);
/* Parse a one-dimensional text[] value as PostgreSQL prints it ({a,"b c"})
 * into arena strings; 0, or -1 (nothing returned) when lit is not such a
 * literal. A SQL NULL element comes back as the string "NULL", like a quoted
 * "NULL": callers put the items straight into messages and never see NULLs. */
int dbld_pg_parse_text_array(dbld_arena *a, const char *lit, char ***items, size_t *n);
/* One-dimensional arrays in PostgreSQL's binary format, for a parameter
 * cast in SQL to text[] / bytea[] / bigint[] and sent with format 1 (see
 * dbld_stmt.formats): no quoting, escaping or hex on either side. Allocated
 * in the arena; *len is the size in bytes. NULL items (text, bytea) become
 * SQL NULLs. The caller keeps the whole under 2 GiB (libpq's limit). */
const char *dbld_pg_bin_text_array(dbld_arena *a, const char *const *items, size_t n, int *len);
const char *dbld_pg_bin_bytea_array(dbld_arena *a, const uint8_t *const *items, const size_t *lens,
                                    size_t n, int *len);
const char *dbld_pg_bin_int8_array(dbld_arena *a, const int64_t *items, size_t n, int *len);
/* Lower-case hex of bytes (for decode($1,'hex')); and back. */
char *dbld_hex_encode(dbld_arena *a, const void *data, size_t len);
/* m serialized, in hex: packed into the second half of the string's own
 * allocation and encoded in place (no second copy of the bytes). */
char *dbld_msg_hex(dbld_arena *a, const ProtobufCMessage *m);
/* Decodes a bytea text value ("\x0a0b") into arena memory. */
int dbld_bytea_decode(dbld_arena *a, const char *text, uint8_t **out, size_t *len);

/* A fixed-size pool of connections to one DSN. Connections are made lazily
 * (with the pool's session settings) and remade after they were lost.
 * Thread-safe.
 *
 * `reserved` of the connections are kept for the service's internal needs:
 * dbld_pool_acquire_user() (reads on behalf of any client, which may be slow
 * or hostile) waits while no more than `reserved` are free, so user reads
 * that hold every other connection get RESOURCE_EXHAUSTED while
 * dbld_pool_acquire() (internal work: leases, claims) still finds one. */
typedef struct dbld_pool_opts {
    int size;        /* connections (at least 1) */
    int reserved;    /* of them kept from dbld_pool_acquire_user() (at most size - 1) */
    dbld_db_opts db; /* session settings of every connection */
} dbld_pool_opts;
typedef struct dbld_pool dbld_pool;
dbld_pool *dbld_pool_create(const char *dsn, int size);
dbld_pool *dbld_pool_create_opts(const char *dsn, const dbld_pool_opts *opts);
void dbld_pool_destroy(dbld_pool *p);
/* Borrow a connection, waiting up to timeout_ms for one to be free: any
 * connection (internal work), or one that leaves `reserved` free (user reads).
 * RESOURCE_EXHAUSTED naming the pool's size when none came in time. */
int dbld_pool_acquire(dbld_pool *p, int64_t timeout_ms, dbld_db **out, dbld_status *st);
int dbld_pool_acquire_user(dbld_pool *p, int64_t timeout_ms, dbld_db **out, dbld_status *st);
/* Give db back (its interrupt is cleared); a lost or cancelled one is closed. */
void dbld_pool_release(dbld_pool *p, dbld_db *db);

#endif
