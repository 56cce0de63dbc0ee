/* harness.h - integration test harness: a forking test runner, a private
 * PostgreSQL, real service processes, and BuildEvent builders.
 *
 * A test binary is a list of tests and a main():
 *
 *     DBLD_TEST(round_trip) { ... CHECK_EQ_INT(n, 3); ... }
 *     DBLD_TEST_MAIN(DBLD_TEST_ENTRY(round_trip), DBLD_TEST_ENTRY_T(slow_one, 300))
 *
 * Like libuv's runner, every test runs in a forked child process (its own
 * process group) with an alarm() timeout, so a crash, hang or failed CHECK in
 * one test cannot affect the next. The first failed CHECK prints
 * "FAIL name: file:line: message" and ends the child; the parent then kills the
 * child's process group (the services it started), stops any PostgreSQL
 * cluster it created, drops its databases and prints the service logs.
 *
 * PostgreSQL: DBLD_TEST_PG (libpq conninfo of a superuser) when set, else the
 * runner initdb's a temporary cluster for the whole binary and removes it at
 * exit. Clusters run as DBLD_TEST_PG_RUNAS (or "databuild") when we are root.
 *
 * Sanitizers: every process a test starts writes its ASan/UBSan/LSan reports
 * to the test's directory (ASAN_OPTIONS/UBSAN_OPTIONS log_path, set in the
 * test process); any report fails the test and is printed. Services still
 * running when the test ends are SIGKILLed, so only those the test stops
 * (h_service_stop) get a leak check.
 *
 * Usage: test_x [--list] [--timeout SECONDS] [--no-fork] [NAME...]
 * Environment: DBLD_TEST_TIMEOUT (seconds per test), DBLD_TEST_KEEP=1 keeps the
 * temporary directory, DBLD_BIN_DIR overrides where service binaries live.
 */
#ifndef DBLD_HARNESS_H
#define DBLD_HARNESS_H

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/rpc.h"
#include "dbld/status.h"
#include "dbld/util.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* ------------------------------------------------------------------------ */
/* runner                                                                    */

typedef struct h_test {
    const char *name;
    void (*fn)(void);
    int timeout_s; /* 0 = default (DBLD_TEST_TIMEOUT or 120) */
} h_test;

#define DBLD_TEST(name) static void h_test_##name(void)
#define DBLD_TEST_ENTRY(name)                                                                      \
    {                                                                                              \
#name, h_test_##name, 0                                                                    \
    }
#define DBLD_TEST_ENTRY_T(name, secs)                                                              \
    {                                                                                              \
#name, h_test_##name, (secs)                                                               \
    }
#define DBLD_TEST_MAIN(...)                                                                        \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const h_test h_tests_[] = {__VA_ARGS__};                                            \
        return h_main(argc, argv, h_tests_, sizeof h_tests_ / sizeof h_tests_[0]);                 \
    }

int h_main(int argc, char **argv, const h_test *tests, size_t n);

/* Fail the current test: print "FAIL name: file:line: msg" and exit the test
 * process. Callable from any thread. */
void h_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
/* Progress note to stderr, prefixed with the test name. */
void h_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Name of the running test. */
const char *h_test_name(void);
/* Per-test scratch directory (kept when the test fails). */
const char *h_test_dir(void);

#define H_FAIL(...) h_fail(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) h_fail(__FILE__, __LINE__, "CHECK(%s) failed", #cond);                        \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) h_fail(__FILE__, __LINE__, __VA_ARGS__);                                      \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) h_fail(__FILE__, __LINE__, "%s == %s failed: %lld != %lld", #a, #b, a_, b_); \
    } while (0)
#define CHECK_CMP_INT(a, op, b)                                                                    \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ op b_))                                                                           \
            h_fail(__FILE__, __LINE__, "%s %s %s failed: %lld vs %lld", #a, #op, #b, a_, b_);      \
    } while (0)
#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            h_fail(__FILE__, __LINE__, "%s == %s failed: \"%s\" != \"%s\"", #a, #b,                \
                   a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                        \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !n_ || !strstr(h_, n_))                                                         \
            h_fail(__FILE__, __LINE__, "%s does not contain %s: \"%s\" lacks \"%s\"", #hay,        \
                   #needle, h_ ? h_ : "(null)", n_ ? n_ : "(null)");                               \
    } while (0)
/* rc: the value a dbld call returned; st: its dbld_status (for the message). */
#define CHECK_CODE(rc, st, want)                                                                   \
    do {                                                                                           \
        int rc_ = (rc), want_ = (want);                                                            \
        if (rc_ != want_)                                                                          \
            h_fail(__FILE__, __LINE__, "%s: want %s, got %s: \"%s\"", #rc, dbld_code_name(want_),  \
                   dbld_code_name(rc_), (st).msg);                                                 \
    } while (0)
#define CHECK_OK(rc, st) CHECK_CODE(rc, st, DBLD_OK)

/* Poll cond every 20 ms until it holds or timeout_ms passes; evaluates to 1
 * if it held. For waiting on conditions, never as a fixed sleep. */
#define H_POLL_UNTIL(timeout_ms, cond)                                                             \
    __extension__({                                                                                \
        int64_t hdl_ = dbld_mono_ms() + (timeout_ms);                                              \
        int hok_;                                                                                  \
        while (!(hok_ = !!(cond)) && dbld_mono_ms() < hdl_)                                        \
            dbld_sleep_ms(20);                                                                     \
        hok_;                                                                                      \
    })

/* ------------------------------------------------------------------------ */
/* processes, ports, files                                                   */

/* A free TCP port on 127.0.0.1 (bind to port 0, read it, close). */
int h_free_port(void);
/* Run argv (execvp, never a shell), stdout+stderr appended to log (NULL =
 * /dev/null), optionally as the PostgreSQL user; returns the exit status
 * (128+signal when killed, 127 when exec failed). */
int h_run(const char *const *argv, const char *log, int as_pg_user);
/* malloc'd contents of a file (NULL if unreadable); *len optional. */
char *h_read_file(const char *path, size_t *len);
/* Write a file (fails the test on error). */
void h_write_file(const char *path, const char *text);
/* Path of a service binary: DBLD_BIN_DIR "/databuild-<kind>" (static buffer per call). */
const char *h_bin_path(const char *kind, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* PostgreSQL                                                                */

/* Conninfo of the superuser on the shared test cluster (dbname=postgres). */
const char *h_pg_dsn_main(void);

/* A private cluster (initdb + pg_ctl) on its own port, for tests that stop
 * and restart PostgreSQL. Lives in the test's directory; the runner stops it
 * when the test ends even if the test does not. */
typedef struct h_pg {
    char dir[512];  /* owned by the PostgreSQL user */
    char data[600]; /* dir/data */
    char log[600];  /* dir/postgres.log */
    int port;
    int running;
    char dsn[256]; /* superuser, dbname=postgres */
} h_pg;

h_pg *h_pg_cluster_start(void);
void h_pg_stop(h_pg *c);  /* pg_ctl stop -m fast -w */
void h_pg_start(h_pg *c); /* pg_ctl start -w, same port and data dir */
void h_pg_destroy(h_pg *c);

/* CREATE DATABASE with a generated unique name "dbld_<runner>_<test>_<n>_<hint>"
 * (hint: [a-z0-9_] only, may be NULL) on the cluster behind server_dsn; writes
 * the new database's conninfo to dsn_out. Dropped WITH (FORCE) after the test. */
void h_db_create_at(const char *server_dsn, const char *hint, char *dsn_out, size_t cap);
/* The same on the shared cluster. */
void h_db_create(const char *hint, char *dsn_out, size_t cap);

/* conninfo with dbname replaced (handles key=value and URI forms); malloc'd. */
char *h_dsn_with_db(const char *dsn, const char *dbname);

/* Query results, read with h_rows_*; freed with h_rows_free (or at exit). */
typedef struct h_rows h_rows;
h_rows *h_sql_(const char *file, int line, const char *dsn, const char *sql,
               const char *const *params, int n);
#define h_sql(dsn, sql, ...)                                                                       \
    h_sql_(__FILE__, __LINE__, dsn, sql, (const char *const[]){NULL, ##__VA_ARGS__} + 1,           \
           (int)(sizeof((const char *const[]){NULL, ##__VA_ARGS__}) / sizeof(const char *)) - 1)
int h_rows_n(const h_rows *r);
/* Borrowed; NULL for SQL NULL. */
const char *h_rows_get(const h_rows *r, int row, int col);
long long h_rows_i64(const h_rows *r, int row, int col);
void h_rows_free(h_rows *r);

/* pg_stat_database.xact_commit of dsn's database, read from the cluster's
 * "postgres" database (so the reading transaction is not counted). Backends
 * report their counts at most once a second while busy and within 10 s once
 * idle: compare counts taken far enough apart, or poll. */
long long h_pg_xact_commits(const char *dsn);

/* ------------------------------------------------------------------------ */
/* services                                                                  */

typedef struct h_service_opts {
    int workers;                 /* default 4 */
    int db_pool_size;            /* eventlog; default 4 */
    int group_commit_max_events; /* eventlog; default 5000 */
    const char *eventlog_addr;   /* shared.peers.eventlog for non-eventlog services */
    const char *extra_section;   /* extra YAML lines (indented 2) for the service section */
    const char *log_level;       /* default "debug" */
} h_service_opts;

typedef struct h_service {
    char kind[32];
    char name[48]; /* kind-N, names the log file */
    char addr[64]; /* 127.0.0.1:port */
    int port;
    pid_t pid;       /* 0 when not running */
    int exit_status; /* after stop/kill: 0..255 exit code, 128+sig when killed */
    char config_path[600];
    char log_path[600];
    char dsn[512];
    dbld_client *client;
} h_service;

/* Write the config, fork/exec the binary with --config, wait until health
 * Check("") answers SERVING (20 s). Fails the test otherwise. opts may be NULL. */
h_service *h_service_start(const char *kind, const char *dsn, const h_service_opts *opts);
/* The same without waiting for SERVING (returns once the process was spawned). */
h_service *h_service_spawn(const char *kind, const char *dsn, const h_service_opts *opts);
/* Spawn a service whose config must be refused: fails the test unless it exits
 * with status 2 (config error) within 10 s, every line of its stderr is a JSON
 * object and one at level error says why. Returns those errors as plain text,
 * "msg: error" per line (caller frees). */
char *h_service_refused(const char *kind, const char *dsn, const h_service_opts *opts);
/* Restart a stopped/killed service with the same config and port; waits SERVING. */
void h_service_restart(h_service *s);
void h_service_respawn(h_service *s); /* restart without waiting */
/* Wait until Check(service) answers with the wanted state; 1 on success. */
int h_service_wait_health(h_service *s, const char *service, int serving, int64_t timeout_ms);
/* One health Check; returns the dbld code (0: *serving set). */
int h_service_health(h_service *s, const char *service, int *serving, dbld_status *st);
/* 1 while the process is running (reaps it if it exited). */
int h_service_alive(h_service *s);
/* Send sig and wait for the process to exit (timeout_ms <= 0: 30 s). Returns
 * exit_status (exit code, or 128+signal). */
int h_service_signal_wait(h_service *s, int sig, int64_t timeout_ms);
/* SIGKILL and reap. */
void h_service_kill(h_service *s);
/* SIGTERM, wait, CHECK that the exit status is 0. */
void h_service_stop(h_service *s);

/* ------------------------------------------------------------------------ */
/* EventLog calls                                                            */

#define H_APPEND_PATH "/databuild.v1.EventLog/Append"
#define H_LIST_PATH "/databuild.v1.EventLog/List"
#define H_SUBSCRIBE_PATH "/databuild.v1.EventLog/Subscribe"

/* Raw calls: return the dbld code, st filled; *resp unpacked into the arena. */
int h_append(h_service *s, dbld_arena *a, Databuild__V1__BuildEvent **evs, size_t n,
             Databuild__V1__AppendResponse **resp, int64_t timeout_ms, dbld_status *st);
int h_list(h_service *s, dbld_arena *a, const Databuild__V1__EventFilter *filter, int64_t start_idx,
           uint32_t limit, Databuild__V1__EventPage **page, int64_t timeout_ms, dbld_status *st);

/* Append and CHECK success and one response entry per event. */
#define h_append_ok(s, a, evs, n) h_append_ok_(__FILE__, __LINE__, s, a, evs, n)
Databuild__V1__AppendResponse *h_append_ok_(const char *file, int line, h_service *s, dbld_arena *a,
                                            Databuild__V1__BuildEvent **evs, size_t n);

/* Every event matching filter from start_idx on, paging with limit
 * (0 = server default), CHECKing each page. events/n into the arena. */
typedef struct h_event_list {
    Databuild__V1__BuildEvent **events;
    size_t n;
    size_t pages;
} h_event_list;
#define h_list_all(s, a, filter, limit) h_list_all_(__FILE__, __LINE__, s, a, filter, limit)
h_event_list h_list_all_(const char *file, int line, h_service *s, dbld_arena *a,
                         const Databuild__V1__EventFilter *filter, uint32_t limit);

/* Open a Subscribe stream (no deadline). */
dbld_stream *h_subscribe(h_service *s, const Databuild__V1__EventFilter *filter, int64_t start_idx);
/* Next IndexedEvent within wait_ms; returns the code (DEADLINE_EXCEEDED when
 * nothing arrived in time). */
int h_stream_next(dbld_stream *st, dbld_arena *a, Databuild__V1__IndexedEvent **out,
                  int64_t wait_ms, dbld_status *status);

/* ------------------------------------------------------------------------ */
/* acknowledged appends and the invariants they must satisfy                */

/* Thread-safe record of every Append response a test received. */
typedef struct h_ack {
    char event_id[64];
    int64_t idx;
    int64_t sent_ms, acked_ms; /* dbld_mono_ms() before the call / after the ack */
    int batch;                 /* batch number (one per Append call) */
    int pos;                   /* position within its batch */
    int duplicate;
} h_ack;
typedef struct h_acklog h_acklog;

h_acklog *h_acklog_new(void);
/* Record one successful Append (resp->events[i] for request position i). */
void h_acklog_add(h_acklog *l, const Databuild__V1__AppendResponse *resp, int64_t sent_ms,
                  int64_t acked_ms);
/* Snapshot of the non-duplicate acks sorted by idx; *n set. Caller frees. */
h_ack *h_acklog_sorted(h_acklog *l, size_t *n);
size_t h_acklog_count(h_acklog *l);
/* 1 if event_id was acked (and *idx set). */
int h_acklog_find(h_acklog *l, const char *event_id, int64_t *idx);

#define H_VERIFY_EXACT 0x1   /* the log holds exactly the acked events (else: at least) */
#define H_VERIFY_BATCHES 0x2 /* each batch occupies adjacent positions in the log, in order */
#define H_VERIFY_IDX 0x4     /* Subscribe from 0 returns every acked (idx, event_id) */
/* Checks, failing the test at file:line:
 *  - every acked event_id has one idx, idx values are unique;
 *  - commit order: if X was acked before Y was sent, idx(X) < idx(Y);
 *  - List over everything (paged) contains each acked event exactly once, in
 *    idx order (H_VERIFY_EXACT: and nothing else), plus the flags above.
 * Returns the number of events List returned. */
#define h_acklog_verify(l, s, flags) h_acklog_verify_(__FILE__, __LINE__, l, s, flags)
size_t h_acklog_verify_(const char *file, int line, h_acklog *l, h_service *s, int flags);

/* ------------------------------------------------------------------------ */
/* BuildEvent builders (all memory from the arena)                           */

/* NULL-terminated string lists: H_STRS("a", "b"). */
#define H_STRS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define H_NOSTRS ((const char *const[]){NULL})

/* An event with a fresh UUID, the given timestamp (0 = leave for the server)
 * and build_request_id; no payload (event_type not set). */
Databuild__V1__BuildEvent *h_event_base(dbld_arena *a, const char *build_request_id, int64_t ts_ns);

Databuild__V1__BuildEvent *h_event_build_request(dbld_arena *a, const char *br,
                                                 Databuild__V1__BuildRequestStatusCode code,
                                                 const char *const *refs, const char *comment,
                                                 const char *want_id);
Databuild__V1__BuildEvent *h_event_partition(dbld_arena *a, const char *br, const char *ref,
                                             Databuild__V1__PartitionStatus status,
                                             const char *job_run_id);
Databuild__V1__BuildEvent *h_event_job(dbld_arena *a, const char *br, const char *job_run_id,
                                       const char *label, Databuild__V1__JobStatus status,
                                       const char *const *targets);
Databuild__V1__BuildEvent *h_event_delegation(dbld_arena *a, const char *br, const char *ref,
                                              const char *delegated_to);
/* A graph whose outputs are `outputs` and with one node per label, node i
 * producing node_outputs[i] (a single ref). */
Databuild__V1__BuildEvent *h_event_job_graph(dbld_arena *a, const char *br,
                                             const char *const *outputs, const char *const *labels,
                                             const char *const *node_outputs);
Databuild__V1__BuildEvent *h_event_invalidation(dbld_arena *a, const char *br, const char *ref,
                                                const char *reason);
Databuild__V1__BuildEvent *h_event_job_run_cancel(dbld_arena *a, const char *br,
                                                  const char *job_run_id, const char *reason);
Databuild__V1__BuildEvent *h_event_build_cancel(dbld_arena *a, const char *br, const char *reason);
Databuild__V1__BuildEvent *h_event_want(dbld_arena *a, const char *br, const char *want_id,
                                        const char *const *refs,
                                        Databuild__V1__SourceTypeCode source, const char *comment);
Databuild__V1__BuildEvent *h_event_taint(dbld_arena *a, const char *br, const char *const *refs,
                                         Databuild__V1__SourceTypeCode source, const char *comment);

/* One fully populated event of each of the 10 kinds (oneof field numbers
 * 10..19 in order), every field set, for round-trip tests. */
size_t h_events_all_kinds(dbld_arena *a, const char *br, Databuild__V1__BuildEvent **out10);

/* Spec helpers, computed on the client side from the event contents: the
 * partition refs / job labels / job run ids an event touches. */
size_t h_event_refs(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out);
size_t h_event_labels(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out);
size_t h_event_run_ids(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out);

/* Serialize into the arena. */
uint8_t *h_pack(dbld_arena *a, const ProtobufCMessage *m, size_t *len);
/* 1 if both messages serialize to identical bytes. */
int h_msg_equal(const ProtobufCMessage *x, const ProtobufCMessage *y);
/* A filter in the arena from NULL-terminated lists (NULL = empty field). */
Databuild__V1__EventFilter *h_filter(dbld_arena *a, const char *const *refs,
                                     const char *const *patterns, const char *const *labels,
                                     const char *const *run_ids, const char *const *br_ids);
/* A unique token of [a-z0-9] for build ids, refs etc. */
char *h_unique(dbld_arena *a, const char *prefix);

#endif
