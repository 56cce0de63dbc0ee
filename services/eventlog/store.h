/* store.h - the event log's PostgreSQL store: migrations, the group-commit
 * writer, reads, and database health.
 *
 * Appends, claims and job logs from all RPC threads go into one queue; a
 * single writer thread drains it into one transaction per batch (group
 * commit) and answers each request by callback after COMMIT. Writers of every replica take a
 * transaction-scoped advisory lock, so idx order equals commit order across replicas. A monitor
 * thread pings the database, applies migrations once reachable, and flips the
 * server's health; the writer feeds each commit to the commit feed (hub.h); while the database is
 * down appends and reads fail fast with UNAVAILABLE.
 */
#ifndef EL_STORE_H
#define EL_STORE_H

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/db.h"
#include "dbld/rpc.h"
#include "dbld/status.h"
#include "event_meta.h"

#include <stdint.h>

typedef struct el_store el_store;

typedef struct el_store_opts {
    const char *dsn;
    int max_batch_events;     /* events per transaction */
    int group_wait_us;        /* when writes come from several callers, a batch of fewer than
                               * GROUP_MIN_REQUESTS waits up to this long for more (0: never) */
    int pool_size;            /* reader connections (one is kept from user reads, see below) */
    int statement_timeout_ms; /* on reader connections (0: none) */
    dbld_server *server;      /* health is reported here (may be NULL) */
} el_store_opts;

/* Caller frees with el_store_destroy(). Nothing runs until el_store_start(). */
el_store *el_store_create(const el_store_opts *opts);
/* Start the monitor (connect, migrate, health), writer and commit feed
 * threads; 0, or a status when the writer's thread cannot be made (nothing
 * to join then: el_store_destroy() still frees). */
int el_store_start(el_store *s, dbld_status *st);
void el_store_destroy(el_store *s);

/* Requests to the writer are asynchronous: no RPC thread waits for a commit.
 *
 * Append: queue n prepared events and return at once (0, or a code: the
 * database is known to be down, or RESOURCE_EXHAUSTED when they would take
 * the events queued for the writer past max(10 x max_batch_events, 10000);
 * a request alone always fits; claims and job logs count alike). cb(arg, st)
 * then runs exactly once on the writer thread after the batch holding them
 * committed (st->code 0, idx/duplicate filled) or failed. evs and the
 * bookkeeping allocated from a must stay valid until cb runs. */
typedef void (*el_append_cb)(void *arg, const dbld_status *st);

/* A lease fence (AppendRequest.fence): the request is written only if
 * build_request_id's lease row has this owner, checked in the writing
 * transaction with the row locked until commit; else cb gets
 * FAILED_PRECONDITION and nothing of it is written. */
typedef struct el_fence {
    const char *build_request_id, *owner;
} el_fence;

typedef struct el_joblogs el_joblogs; /* below */

/* fence may be NULL (no fence); logs may be NULL, else job log entries
 * written in the same transaction (and fence) as the events. */
int el_store_append_async(el_store *s, el_event *evs, size_t n, const el_fence *fence,
                          el_joblogs *logs, dbld_arena *a, el_append_cb cb, void *arg,
                          dbld_status *st);

/* One stored event. */
typedef struct el_row {
    int64_t idx;
    Databuild__V1__BuildEvent *ev; /* in the arena */
} el_row;

/* Events matching filter with idx >= start_idx, in idx order, at most limit;
 * *has_more tells whether more match. Rows come from the arena. Patterns are
 * checked first (dbld_regex_check(), then PostgreSQL's syntax in the same
 * round trip as the page): INVALID_ARGUMENT naming the pattern. A user read
 * (el_store_read_with_db()) on behalf of call: it ends with CANCELLED /
 * DEADLINE_EXCEEDED when the call does; other errors are "could not list
 * events: ...". */
int el_store_list(el_store *s, dbld_call *call, const Databuild__V1__EventFilter *filter,
                  const int32_t *kinds, size_t n_kinds, int64_t start_idx, int limit, dbld_arena *a,
                  el_row **rows, size_t *n, int *has_more, dbld_status *st);

/* The commit feed every Subscribe stream reads (hub.h); borrowed, lives
 * as long as the store. */
struct el_hub;
struct el_hub *el_store_hub(el_store *s);

/* A claim on all outputs of one task (see PartitionClaims in databuild_ext.proto). */
typedef struct el_claim {
    const char *build_request_id;
    const char *job_run_id;
    char **refs;
    size_t n_refs;
    el_event *events; /* appended in the same transaction when granted */
    size_t n_events;
    const char *lease_owner;  /* non-empty: fenced on build_request_id's lease (see el_fence) */
    int64_t min_available_ns; /* an AVAILABLE ref older than this is claimable (0: none is) */
    /* results (strings in the arena given to el_store_claim_async) */
    int outcome; /* Databuild__V1__ClaimOutcome */
    const char *held_ref, *holder_build_request_id, *holder_job_run_id;
} el_claim;

/* Decide and record a claim atomically, serialized with all appends; cb as
 * for el_store_append_async (c and its result strings live in a). */
int el_store_claim_async(el_store *s, el_claim *c, dbld_arena *a, el_append_cb cb, void *arg,
                         dbld_status *st);
/* Drop claims of (build_request_id, job_run_id or any when empty) on refs (all when n == 0). */
int el_store_release(el_store *s, const char *build_request_id, const char *job_run_id, char **refs,
                     size_t n, uint32_t *released, dbld_status *st);

/* Job log entries (JobLogs/Append) as text columns: job_run_id, seq,
 * ts_ns, content, level, entry (serialized JobLogEntry, hex). */
struct el_joblogs {
    const char **cols[6];
    size_t n;
    uint32_t stored; /* result: entries not stored before */
};

/* Store job log entries durably (idempotent on (job_run_id, seq)), in the
 * writer's next group commit; cb as for el_store_append_async. */
int el_store_joblogs_async(el_store *s, el_joblogs *logs, dbld_arena *a, el_append_cb cb, void *arg,
                           dbld_status *st);

/* Run fn with a pooled connection (fails fast with UNAVAILABLE while the
 * database is down; marks it down when fn reports UNAVAILABLE). For the
 * service's own callers (leases, claims): may take every connection. */
typedef int (*el_db_fn)(dbld_db *db, void *arg, dbld_status *st);
int el_store_with_db(el_store *s, el_db_fn fn, void *arg, dbld_status *st);
/* The same for reads any client may send (List, Subscribe, JobLogs/List),
 * which may be slow: they leave one connection of the pool to
 * el_store_with_db() (RESOURCE_EXHAUSTED when the others are busy), and a
 * statement ends as soon as call is cancelled or passes its deadline
 * (PQcancel; CANCELLED / DEADLINE_EXCEEDED). */
int el_store_read_with_db(el_store *s, dbld_call *call, el_db_fn fn, void *arg, dbld_status *st);

/* Validate partition patterns: the limits of dbld_regex_check(), then
 * PostgreSQL's regex syntax; INVALID_ARGUMENT naming the pattern. */
int el_store_check_patterns(el_store *s, dbld_call *call, const Databuild__V1__EventFilter *filter,
                            dbld_status *st);

#endif
