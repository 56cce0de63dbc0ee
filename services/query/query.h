/* query.h - the query service's shared context and helpers.
 *
 * The query service answers databuild.v1.DataBuildService (and the QueryOps
 * extension) from the event log's projection tables, read directly from
 * PostgreSQL over a read-only session; it writes only by appending events
 * through the event log service. One file per RPC group (events, builds,
 * partitions, jobs, job runs, wants, taints, ops); this header holds what
 * they share: the per-process context (q_ctx), the per-call context (q_req,
 * which borrows one pooled connection lazily), SQL helpers, the keyset pager
 * and small message builders. Design notes: README.md beside this file.
 */
#ifndef Q_QUERY_H
#define Q_QUERY_H

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "databuild_process.pb-c.h"
#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/db.h"
#include "dbld/fifo.h"
#include "dbld/outputs.h"
#include "dbld/rpc.h"
#include "dbld/status.h"
#include "dbld/strmap.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* Page sizes of the list RPCs. The seed's list requests carry no limit, so
 * every list page has this many items (more only to finish a run of equal
 * timestamps, see q_page()). Job logs take a limit: default and cap below. */
#define Q_PAGE 100
#define Q_LOGS_DEFAULT 1000
#define Q_LOGS_MAX 10000
#define Q_BATCH_MAX 100    /* keys in one Batched request */
#define Q_PAST_BUILDS 100  /* past_build_request entries of a partition summary */
#define Q_RECENT_BUILDS 10 /* JobSummary.recent_builds */

/* ---- per-process context ---- */

/* Build lifecycle times, cached by build request id and valid for one
 * build_requests.last_idx (lifecache.c). Thread-safe, bounded. */
typedef struct q_life {
    int64_t last_idx;  /* build_requests.last_idx they were computed at */
    int64_t started;   /* BuildSummary.started_at (0: not yet) */
    int64_t completed; /* BuildSummary.completed_at (0: not yet) */
} q_life;
typedef struct q_lifecache q_lifecache;
q_lifecache *q_lifecache_create(void);
void q_lifecache_destroy(q_lifecache *c);
/* 1 and *out when an entry for id computed at last_idx is there. */
int q_lifecache_get(q_lifecache *c, const char *id, int64_t last_idx, q_life *out);
void q_lifecache_put(q_lifecache *c, const char *id, const q_life *v);

/* The partition index (index.c): GetPartitionsSummary and ListPartitions
 * from memory, following the event log's commits (EventLog.Subscribe), with
 * the projections as the source at start-up and after a failure. NULL when
 * query.index is false. Every lookup may say "ask SQL" (0): not loaded or
 * not caught up, or a question it cannot answer exactly. */
struct q_ctx;
typedef struct q_index q_index;
typedef struct q_index_part {
    const char *ref;
    int status; /* PartitionStatus */
    int64_t updated, invalidated;
    const char *last_build; /* partitions.build_request_id ("" none) */
    int tainted;            /* partitions.tainted: stale (stale.c says why) */
    char **past;            /* summary only: build requests, most recent first */
    size_t n_past;
} q_index_part;
q_index *q_index_create(struct q_ctx *q);
void q_index_start(q_index *x);
void q_index_destroy(q_index *x);
/* 1 and *out (strings in a) when the index holds ref's row. */
int q_index_summary(q_index *x, dbld_arena *a, const char *ref, q_index_part *out);
/* 1 and the page (*out, *n_out <= limit; strings in a): refs > after
 * (bytewise), matching pattern (NULL: any; anchored) and one of statuses
 * (n_statuses 0: any), in ref order. */
int q_index_list(q_index *x, dbld_arena *a, const char *after, const char *pattern,
                 const int *statuses, size_t n_statuses, size_t limit, q_index_part **out,
                 size_t *n_out);
/* PostgreSQL accepted pattern as a ref_pattern: the index may now match it. */
void q_index_pattern_accepted(q_index *x, const char *pattern);
/* Queue job j (its index_fn set) behind the freshness gate: 1 (the gate
 * answers the call, from the index or by running its statements), or 0 when
 * the index is not ready (run the statements now). */
struct q_job;
int q_index_gate(q_index *x, struct q_job *j);

/* The build index (bindex.c), held and fed by the partition index (index.c):
 * ListBuildRequests from memory. A query: the request's filters that the
 * index can answer (built_partition and run_jobs are not among them). */
typedef struct q_build_query {
    const int *codes; /* build_status (BuildRequestStatusCode); n_codes 0: any */
    size_t n_codes;
    char *const *outputs; /* output_partition: requested_partitions overlap */
    size_t n_outputs;
    char *const *wants; /* triggering_want_ids: want_ids overlap */
    size_t n_wants;
    const char *comment; /* comment_contains (NULL: any) */
    int64_t cursor;      /* started_until: requested time < cursor (0: none) */
} q_build_query;
typedef struct q_build_page {
    Databuild__V1__BuildSummary **builds;
    size_t n;
    int has_more;
    int64_t min_started;
    uint64_t version; /* of the index's contents it was read from */
} q_build_page;
/* 1 and *out (arena a): the page q_page() would give for q; 0 when the index
 * cannot answer (a q_index_fn behind the freshness gate: busy on the poller
 * counts as such, see index.c). */
int q_index_list_builds(q_index *x, dbld_arena *a, const q_build_query *q, q_build_page *out);
/* ListBuildRequests pages packed once per request and version of the index:
 * every client polling the newest page shares one copy of its bytes (under
 * 1,000 clients the pages in flight were a third of the RSS peak, and
 * building them most of the call's CPU). q_index_builds_cached(): 1 when
 * call now holds the page kept for req at the index's current version
 * (answer it with no response); q_index_builds_keep(): keep resp, read at
 * version (q_build_page.version), for req; 1 when call now holds it. */
int q_index_builds_cached(q_index *x, dbld_call *call, const ProtobufCMessage *req);
int q_index_builds_keep(q_index *x, dbld_call *call, uint64_t version, const ProtobufCMessage *req,
                        const ProtobufCMessage *resp);
/* A ListBuildRequests page the SQL answered without asking the index (the
 * lookups metric's source="sql"). */
void q_index_count_sql_builds(q_index *x);

/* bindex.c's store, for index.c */
typedef struct qb_store qb_store;
typedef struct qb_batch qb_batch;
qb_store *qb_store_new(size_t max_builds);
void qb_store_free(qb_store *s);
int qb_store_off(const qb_store *s);
size_t qb_store_count(const qb_store *s);
/* Load every build, inside the caller's snapshot, on db. */
int qb_store_load(qb_store *s, dbld_db *db, dbld_status *st);
qb_batch *qb_batch_new(void);
void qb_batch_free(qb_batch *b);
void qb_batch_reset(qb_batch *b, dbld_arena *a);
void qb_batch_add(qb_batch *b, const Databuild__V1__IndexedEvent *ie);
/* Read the rows and counts of the batch's builds (no lock needed). */
int qb_batch_read(qb_batch *b, const qb_store *s, dbld_db *db, dbld_status *st);
/* Apply the batch (under the index's write lock). */
void qb_batch_apply(qb_store *s, qb_batch *b);
int qb_store_can(const qb_store *s, const q_build_query *q);
int qb_store_list(const qb_store *s, dbld_arena *a, const q_build_query *q, size_t limit,
                  q_build_page *out);

typedef struct q_ctx {
    const dbld_config *cfg;
    dbld_server *srv;
    dbld_pool *pool;
    int pool_size;
    dbld_outputs *outs;     /* graph.jobs[].outputs and graph.external, compiled (q_ref_kind()) */
    struct q_reactor *rx;   /* q_job_submit()'s connections and thread */
    q_lifecache *life;      /* build lifecycle times (builds.c) */
    struct dbld_dbmon *mon; /* database health (lib/dbmon.c) */
    q_index *index;         /* partition lookups from memory (index.c); NULL: off */
} q_ctx;

/* Caller frees with q_ctx_destroy(). Compiles the graph's regexes (a bad one
 * is an error naming it). */
int q_ctx_create(const dbld_config *cfg, dbld_server *srv, q_ctx **out, dbld_status *st);
/* Start the monitor thread: health SERVING once the schema answers. */
void q_ctx_start(q_ctx *q);
void q_ctx_destroy(q_ctx *q);
/* The session of every read connection: read-only, query.statement_timeout_ms. */
dbld_db_opts q_session_opts(const dbld_config *cfg);
/* A query failed with UNAVAILABLE: go NOT_SERVING and let the monitor recheck. */
void q_ctx_db_down(q_ctx *q, const char *why);
/* 1 while the database monitor's last probe succeeded. */
int q_ctx_db_up(q_ctx *q);

/* Ref classification against the graph config: 1 producible by a job
 * (*job = index into cfg->graph.jobs), 2 external, 0 neither. */
int q_ref_kind(const q_ctx *q, const char *ref, size_t *job);

/* ---- per-call context ---- */

typedef struct q_req {
    q_ctx *q;
    dbld_arena *a;
    dbld_call *call;    /* its statements end when it is cancelled (NULL: not interrupted) */
    dbld_db *db;        /* borrowed from the pool on first q_db(), returned by q_req_done() */
    int64_t timeout_ms; /* what is left of the client's deadline (capped) */
    int db_failed;      /* a statement failed: q_run() prefixes "could not <op>" */
} q_req;

typedef int (*q_fn)(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    dbld_status *st);

/* Run fn for a call: set up the q_req, return its connection afterwards.
 * A database error is reported as "could not <op>: <error>" (op e.g. "list
 * build requests"). */
int q_run(dbld_call *call, const char *op, q_fn fn, const ProtobufCMessage *req,
          ProtobufCMessage **resp, dbld_status *st);
void q_req_done(q_req *r);
/* Register the pool metrics (databuild_query_db_*) so they show from the start. */
void q_db_metrics_init(void);

/* The call's connection (acquired on first use; a read-only session with
 * the statement timeout; interrupted when the call is cancelled). */
int q_db(q_req *r, dbld_db **db, dbld_status *st);
/* One statement with text params; *out (may be NULL) freed by the caller
 * with dbld_res_free(). UNAVAILABLE marks the database down. */
int q_exec(q_req *r, const char *sql, int n, const char *const *params, dbld_res **out,
           dbld_status *st);
/* The same as a named prepared statement (hot paths only: a connection
 * prepares at most a few dozen names). name must be a static string. */
int q_exec_prepared(q_req *r, const char *name, const char *sql, int n, const char *const *params,
                    dbld_res **out, dbld_status *st);
/* Several statements in one round trip (see dbld_db_pipeline()). */
int q_pipeline(q_req *r, dbld_stmt *stmts, size_t n, dbld_status *st);
/* Validate a caller's regular expression: dbld_regex_check()'s limits, then
 * PostgreSQL's engine: INVALID_ARGUMENT "invalid <what> \"pat\": <reason>"
 * when it is too costly or does not compile. */
int q_check_regex(q_req *r, const char *pattern, const char *what, dbld_status *st);

/* ---- one pipeline per call, without a worker thread (qasync.c) ----
 *
 * An RPC that is one pipeline of at most Q_JOB_STMTS statements is split in
 * two: its start function checks the request and fills a q_job's statements
 * (from the call's arena), its finish function turns the pipeline's outcome
 * (rc, st and the statements' results, which it frees) into the response.
 * q_job_submit() runs them without a thread waiting: the statements are sent
 * on an idle connection of a small set the service keeps for this (or queued
 * until one is idle) and a reactor thread, which waits on all their sockets,
 * finishes the call. Handlers using it are DBLD_METHOD_NONBLOCKING. */
#define Q_JOB_STMTS 2
typedef struct q_job q_job;
typedef int (*q_job_finish_fn)(q_req *r, q_job *j, int rc, ProtobufCMessage **resp,
                               dbld_status *st);
/* A job start may also set index_fn: the answer from the partition index,
 * computed once the index holds every event committed before the call
 * arrived (the index's freshness gate, index.c). It returns a status (0 with
 * *resp) or Q_INDEX_MISS: the index cannot answer, run the statements. */
#define Q_INDEX_MISS (-1)
typedef int (*q_index_fn)(q_req *r, q_job *j, ProtobufCMessage **resp, dbld_status *st);
struct q_job {
    ProtobufCMessage *answer; /* set by start: answered without the database */
    q_index_fn index_fn;      /* set by start: try the index first (after its freshness gate) */
    dbld_stmt stmts[Q_JOB_STMTS];
    size_t n;
    dbld_res *res[Q_JOB_STMTS]; /* where the statements' results go (stmts[i].out) */
    const void *req;            /* the request, for finish */
    q_job_finish_fn finish;
    /* set by start instead of statements: the blocking handler a worker runs
     * when the index cannot answer (dbld_call_to_workers()) */
    dbld_unary_fn worker;
    /* set by start instead of index_fn: the call waits at the freshness gate
     * without an answer computed on arrival, and once the gate vouches for
     * the index a worker runs this (it reads the index, else SQL). For pages
     * too big to hold for every waiting call: the workers bound how many are
     * built at once. */
    dbld_unary_fn fresh_worker;
    /* q_job_submit()'s */
    dbld_call *call;
    const char *op; /* "list partitions": database errors say "could not <op>: ..." */
    q_req r;
    int attempts;
    dbld_fifo_link link; /* in the reactor's queue */
    /* the index's freshness gate (index.c): a probe it sends sets done, which
     * the reactor calls instead of finish + dbld_call_complete (it answers
     * the calls the probe serves, call the first of them); gate_idx is the
     * events' highest idx a waiting call must see applied; pre / pre_idx its
     * answer computed on arrival (by the thread that received it) */
    void (*done)(q_job *j, int rc, dbld_status *st);
    int64_t gate_idx;
    int pre;         /* index_fn's answer on arrival is held in the call (dbld_call_hold_answer()),
                        valid once pre_idx is vouched for */
    int64_t pre_idx; /* the index's applied idx before it was computed */
};
typedef int (*q_job_start_fn)(q_req *r, const ProtobufCMessage *req, q_job *j, dbld_status *st);
/* For a handler: returns DBLD_ASYNC, or a status when start fails, or 0
 * with *resp when start answered by itself (j->answer, e.g. from the index).
 * The statements are cancelled on the server when the call is (see
 * qasync.c). */
int q_job_submit(dbld_call *call, const char *op, q_job_start_fn start, const ProtobufCMessage *req,
                 ProtobufCMessage **resp, dbld_status *st);
/* Run a job's statements for a call that already returned DBLD_ASYNC (the
 * index's gate hands back what it cannot answer, and sends its probes so). */
void q_job_run_sql(q_job *j);
/* The reactor and its connections (n of them), made by q_ctx_create(). */
typedef struct q_reactor q_reactor;
q_reactor *q_reactor_create(q_ctx *q, int n);
void q_reactor_destroy(q_reactor *rx);

/* ---- keyset paging over a timestamp column ----
 *
 * Lists page by a timestamp cursor that is EXCLUSIVE: the next page is asked
 * for with the previous page's last timestamp. Timestamps are not unique, so
 * a page never ends inside a run of equal timestamps: when item `limit` and
 * item `limit+1` share one, the page is extended to the end of that run -
 * or, with hard_limit, ends before that run (which then opens the next
 * page), so it holds at most `limit` items unless one run of equal
 * timestamps alone is longer than `limit`: then that run is the page, whole.
 * Thus paging never loses or repeats an item.
 *
 * sql has exactly one "%s" at the end of its WHERE clause (after at least
 * one condition, joined with AND); the pager puts the cursor condition,
 * ORDER BY and LIMIT there, with its parameters after the caller's n. */
typedef struct q_pager {
    const char *sql;
    int n;
    const char *const *params;
    const char *ts_col;  /* e.g. "b.created_ns" */
    const char *key_col; /* unique tie-breaker, e.g. "b.build_request_id" */
    int ts_field;        /* result column holding ts_col */
    int desc;            /* 1: newest first (cursor is an upper bound) */
    int64_t cursor;      /* exclusive bound; 0 = none */
    int64_t other;       /* exclusive bound on the other side; 0 = none */
    int limit;
    int hard_limit; /* 1: limit is a maximum but for one oversized run (see above) */
} q_pager;
/* On success *out holds the page's rows in order (*rows of them, all to be
 * used) and *has_more whether more items lie beyond. Caller frees *out. */
int q_page(q_req *r, const q_pager *pg, dbld_res **out, int *rows, int *has_more, dbld_status *st);

/* ---- values ---- */

const char *q_i64(dbld_arena *a, int64_t v);
/* NULL (SQL NULL, "no filter") when n == 0, else a text[] literal. */
const char *q_text_array(dbld_arena *a, char *const *items, size_t n);
/* Parse a text[] result value. */
char **q_parse_array(dbld_arena *a, const char *lit, size_t *n);
/* A serialized BuildEvent from a bytea column; NULL if it does not decode. */
Databuild__V1__BuildEvent *q_decode_event(dbld_arena *a, const char *bytea_text);
/* "PARTITION_AVAILABLE" etc.; "" for values outside the enum. */
const char *q_enum_name(const ProtobufCEnumDescriptor *d, int value);

/* ---- message builders (arena) ---- */

Databuild__V1__PartitionRef *q_ref(dbld_arena *a, const char *s);
Databuild__V1__PartitionRef **q_refs(dbld_arena *a, char *const *strs, size_t n);
Databuild__V1__BuildRequestStatus *q_build_status(dbld_arena *a, int code);
Databuild__V1__SourceType *q_source_type(dbld_arena *a, int code);

/* ---- what the build fold computes (builds.c, used by mermaid.c) ---- */

typedef struct q_fold_run {
    const char *id;
    const char *label;
    char **targets;
    size_t n_targets;
    int status;       /* JobStatus */
    int64_t last_idx; /* idx of its latest JobEvent */
} q_fold_run;

typedef struct q_build_fold {
    Databuild__V1__JobGraph *graph; /* from the latest JobGraphEvent; NULL if none */
    dbld_strmap parts;              /* ref -> index into part_refs/part_status */
    const char **part_refs;
    int *part_status; /* PartitionStatus within this build */
    size_t n_parts, cap_parts;
    dbld_strmap runs_by_id;
    q_fold_run *runs;
    size_t n_runs, cap_runs;
} q_build_fold;

/* Read every event of a build and fold it (partition status within the
 * build, job runs, job graph). NOT_FOUND when the build has no events. */
int q_build_fold_load(q_req *r, const char *build_id, q_build_fold *f, dbld_status *st);
/* Mermaid flowchart text of a folded build (arena). */
int q_mermaid(q_req *r, const char *build_id, const q_build_fold *f, char **out, dbld_status *st);

/* ---- RPC bodies (also used by Batched) ---- */

int q_get_build_events(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       dbld_status *st);
int q_batched(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
/* ListBuildRequests as a q_job: past the freshness gate, a worker answers
 * from the build index (else SQL); without the index, q_list_build_requests()
 * on a worker. */
int q_list_build_requests_job(q_req *r, const ProtobufCMessage *req, q_job *j, dbld_status *st);
int q_list_build_requests(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          dbld_status *st);
int q_get_build_summary(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st);
int q_get_build_mermaid(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st);
int q_list_partitions(q_req *r, const ProtobufCMessage *req, q_job *j, dbld_status *st);
int q_get_partitions_summary(q_req *r, const ProtobufCMessage *req, q_job *j, dbld_status *st);
int q_list_jobs(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_get_job_summary(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      dbld_status *st);
int q_list_job_runs(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    dbld_status *st);
int q_get_job_run_summary(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          dbld_status *st);
int q_list_wants(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_get_want_summary(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                       dbld_status *st);
int q_put_wants(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_list_taints(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_get_taint_summary(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st);
int q_put_taints(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_get_job_logs(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_cancel_build(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_get_build_execution(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          dbld_status *st);
int q_cancel_job_run(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     dbld_status *st);
/* Write each want's WantStateInfo (state, reason) into its summary as
 * unknown fields; partitions must be filled (want_state.c). */
int q_want_states(q_req *r, Databuild__V1__PartitionWantSummary **sums, size_t n, dbld_status *st);
/* Why a partition is stale (stale.c): PartitionStaleInfo as field 1001 of
 * a PartitionSummaryV2. q_stale_fill() reads and attaches it for
 * s->partition_ref (one statement on r's connection; nothing attached when
 * the partition is not tainted). Or, inside a pipeline: q_stale_stmt()
 * fills stmt (params in a; result to *out, freed by the caller),
 * q_stale_decode() turns that result into the info (arena; NULL when not
 * stale) and q_stale_attach() adds it (NULL: no-op). */
int q_stale_fill(q_req *r, Databuild__V1__PartitionSummaryV2 *s, dbld_status *st);
void q_stale_stmt(dbld_arena *a, const char *ref, dbld_stmt *stmt, dbld_res **out);
Databuild__V1__PartitionStaleInfo *q_stale_decode(dbld_arena *a, const dbld_res *res);
void q_stale_attach(dbld_arena *a, Databuild__V1__PartitionSummaryV2 *s,
                    const Databuild__V1__PartitionStaleInfo *info);
/* databuild.v1.Processes (processes.c) */
int q_list_processes(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     dbld_status *st);
int q_get_process(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp, dbld_status *st);
int q_update_process_settings(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                              dbld_status *st);
int q_run_process_now(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                      dbld_status *st);
int q_get_operation(q_req *r, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    dbld_status *st);

/* Build summaries for rows of
 *   SELECT build_request_id, status, requested_partitions, comment, want_id,
 *          created_ns, updated_ns, last_idx FROM build_requests ...
 * (job counts and lifecycle times are read here). *out: n summaries. */
#define Q_BUILD_COLS                                                                               \
    "b.build_request_id, b.status, b.requested_partitions, b.comment, b.want_id, b.created_ns,"    \
    " b.updated_ns, b.last_idx"
int q_build_summaries(q_req *r, const dbld_res *rows, int n, Databuild__V1__BuildSummary ***out,
                      dbld_status *st);
/* A build's job counts from job_runs (GROUP BY build_request_id): id,
 * total, completed or skipped, failed, cancelled (builds.c, bindex.c). */
#define Q_BUILD_COUNTS_COLS                                                                        \
    "build_request_id, count(*), count(*) FILTER (WHERE status IN (" DBLD_SQL_JOB_DONE ")),"       \
    " count(*) FILTER (WHERE status = " DBLD_SQL_JOB_FAILED "),"                                   \
    " count(*) FILTER (WHERE status = " DBLD_SQL_JOB_CANCELLED ")"

/* execution.c: the attempt links of a job run from its build's execution
 * state (*out NULL when no execution names it), and attaching them to a
 * JobRunSummaryResponse as field 1001 (JobRunSummaryResponseExt). */
int q_job_run_links(q_req *r, const char *run, Databuild__V1__JobRunAttemptLinks **out,
                    dbld_status *st);
void q_attach_links(dbld_arena *a, ProtobufCMessage *msg,
                    const Databuild__V1__JobRunAttemptLinks *l);

/* The service tables (service.c). */
extern const dbld_service q_databuild_service;
extern const dbld_service q_ops_service;
extern const dbld_service q_processes_service; /* databuild.v1.Processes */

#endif
