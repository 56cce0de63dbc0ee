/* test_eventlog_faults.c - the event log when things go wrong: kill -9
 * between and during appends, PostgreSQL stopped and restarted under a
 * running service, the database down at start-up, garbage request bytes,
 * unknown methods, SIGTERM with calls in flight, config errors.
 *
 * Invariant throughout: nothing acknowledged is ever lost (checked with the
 * ack log, harness_check.c).
 */
#include "dbld/db.h"
#include "dbld/eventlog_client.h"
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define CALL_DEADLINE_MS 5000
/* The deadline of a call that must answer, quickly unless the service is
 * broken (UNAVAILABLE with the database down, OK once it is back): it only
 * bounds a hang, so it leaves room for a loaded machine. */
#define ANSWER_MS 30000

static Databuild__V1__BuildEvent *ev(dbld_arena *a, const char *tag, int i)
{
    return h_event_partition(a, "br-faults", dbld_arena_printf(a, "f/%s/p=%d", tag, i),
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-f");
}

/* Append n events in batches of `batch`, recording acks. */
static void append_acked(h_service *el, h_acklog *log, const char *tag, int n, int batch)
{
    dbld_arena *a = dbld_arena_create();
    for (int i = 0; i < n; i += batch) {
        Databuild__V1__BuildEvent *evs[64];
        int k = n - i < batch ? n - i : batch;
        for (int j = 0; j < k; j++)
            evs[j] = ev(a, tag, i + j);
        int64_t sent = dbld_mono_ms();
        Databuild__V1__AppendResponse *r = h_append_ok(el, a, evs, (size_t)k);
        h_acklog_add(log, r, sent, dbld_mono_ms());
        dbld_arena_reset(a);
    }
    dbld_arena_destroy(a);
}

/* ----------------------------------------------------------------- kill -9 */

DBLD_TEST(kill9_between_appends)
{
    char dsn[1024];
    h_db_create("kill9", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    append_acked(el, log, "a", 300, 10);
    h_service_kill(el);
    h_service_restart(el);
    size_t n = h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
    CHECK_EQ_INT(n, 300);
    /* and the log continues after the restart */
    append_acked(el, log, "b", 30, 3);
    h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
    h_service_stop(el);
}

typedef struct appender {
    h_service *el;
    h_acklog *log;
    int id;
    atomic_int *stop;
    /* events whose Append failed: outcome unknown, to be retried */
    Databuild__V1__BuildEvent **unknown;
    size_t n_unknown;
    dbld_arena *a; /* owns unknown */
    int other_error;
    char msg[512];
} appender;

static void *appender_main(void *arg)
{
    appender *w = arg;
    dbld_arena *scratch = dbld_arena_create();
    w->a = dbld_arena_create();
    w->unknown = dbld_arena_alloc(w->a, 64 * sizeof *w->unknown);
    for (int c = 0; !atomic_load(w->stop); c++) {
        size_t n = (size_t)(c % 5) + 1;
        Databuild__V1__BuildEvent *evs[5];
        for (size_t i = 0; i < n; i++)
            evs[i] = ev(w->a, dbld_arena_printf(w->a, "w%d", w->id), c * 10 + (int)i);
        Databuild__V1__AppendResponse *r;
        dbld_status st = {0};
        int64_t sent = dbld_mono_ms();
        int rc = h_append(w->el, scratch, evs, n, &r, CALL_DEADLINE_MS, &st);
        if (rc == DBLD_OK) {
            h_acklog_add(w->log, r, sent, dbld_mono_ms());
        } else {
            /* the process died under us: the outcome of this batch is unknown */
            for (size_t i = 0; i < n; i++)
                w->unknown[w->n_unknown++] = evs[i];
            if (rc != DBLD_UNAVAILABLE && rc != DBLD_CANCELLED && rc != DBLD_DEADLINE_EXCEEDED &&
                rc != DBLD_INTERNAL && rc != DBLD_UNKNOWN) {
                w->other_error = 1;
                snprintf(w->msg, sizeof w->msg, "appender %d: %s: %s", w->id, dbld_code_name(rc),
                         st.msg);
            }
            break;
        }
        dbld_arena_reset(scratch);
    }
    dbld_arena_destroy(scratch);
    return NULL;
}

DBLD_TEST(kill9_during_appends)
{
    char dsn[1024];
    h_db_create("kill9live", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    atomic_int stop = 0;
    enum { W = 8 };
    appender w[W];
    pthread_t th[W];
    memset(w, 0, sizeof w);
    for (int i = 0; i < W; i++) {
        w[i].el = el;
        w[i].log = log;
        w[i].id = i;
        w[i].stop = &stop;
        if (pthread_create(&th[i], NULL, appender_main, &w[i]) != 0) H_FAIL("pthread_create");
    }
    CHECK_MSG(H_POLL_UNTIL(30000, h_acklog_count(log) >= 600), "only %zu events acked in 30 s",
              h_acklog_count(log));
    h_service_kill(el); /* while the appenders are mid-call */
    for (int i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    atomic_store(&stop, 1);
    size_t in_flight = 0;
    for (int i = 0; i < W; i++) {
        CHECK_MSG(!w[i].other_error, "%s", w[i].msg);
        in_flight += w[i].n_unknown;
    }
    h_note("%zu events acked before kill -9, %zu in flight", h_acklog_count(log), in_flight);
    CHECK_CMP_INT(in_flight, >, 0); /* every appender saw the crash */

    h_service_restart(el);
    /* every acked event survived, with its idx */
    h_acklog_verify(log, el, H_VERIFY_BATCHES | H_VERIFY_IDX);
    /* retrying the in-flight ones is safe: each ends up stored exactly once */
    dbld_arena *a = dbld_arena_create();
    for (int i = 0; i < W; i++) {
        if (!w[i].n_unknown) continue;
        int64_t sent = dbld_mono_ms();
        Databuild__V1__AppendResponse *r = h_append_ok(el, a, w[i].unknown, w[i].n_unknown);
        h_acklog_add(log, r, sent, dbld_mono_ms());
    }
    h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_IDX);
    h_service_stop(el);
}

/* ------------------------------------------------------- PostgreSQL faults */

/* One dbld_eventlog_append() (the client library call the services use:
 * fills in missing event ids, retries UNAVAILABLE until its deadline,
 * BG_APPEND_MS) on a thread of its own. */
#define BG_APPEND_MS 120000
typedef struct bg_append {
    const char *target;
    Databuild__V1__BuildEvent **evs;
    size_t n;
    dbld_arena *a; /* owns evs, idx and the filled-in event ids */
    int64_t *idx;
    int64_t sent_ms, acked_ms;
    int rc;
    dbld_status st;
    atomic_int done;
    pthread_t th;
} bg_append;

static void *bg_append_main(void *arg)
{
    bg_append *b = arg;
    b->sent_ms = dbld_mono_ms();
    b->rc = dbld_eventlog_append(b->target, b->evs, b->n, b->a, b->idx, BG_APPEND_MS, &b->st);
    b->acked_ms = dbld_mono_ms();
    atomic_store(&b->done, 1);
    return NULL;
}

/* Start appending evs (n, in arena a, which b then owns) to el. */
static void bg_append_start(bg_append *b, h_service *el, Databuild__V1__BuildEvent **evs, size_t n,
                            dbld_arena *a)
{
    *b = (bg_append){.target = el->addr,
                     .evs = evs,
                     .n = n,
                     .a = a,
                     .idx = dbld_arena_alloc(a, n * sizeof *b->idx)};
    if (pthread_create(&b->th, NULL, bg_append_main, b) != 0) H_FAIL("pthread_create");
}

/* Join b; record its ack like an Append response when it succeeded. */
static int bg_append_join(bg_append *b, h_acklog *log)
{
    pthread_join(b->th, NULL);
    if (b->rc == DBLD_OK) {
        Databuild__V1__AppendResponse *r =
            dbld_arena_msg(b->a, &databuild__v1__append_response__descriptor);
        r->n_events = b->n;
        r->events = dbld_arena_alloc(b->a, b->n * sizeof *r->events);
        for (size_t i = 0; i < b->n; i++) {
            r->events[i] = dbld_arena_msg(b->a, &databuild__v1__appended_event__descriptor);
            r->events[i]->idx = b->idx[i];
            r->events[i]->event_id = b->evs[i]->event_id;
        }
        h_acklog_add(log, r, b->sent_ms, b->acked_ms);
    }
    return b->rc;
}

/* PostgreSQL stopped under a running event log: Append and List answer
 * UNAVAILABLE, health goes NOT_SERVING. A dbld_eventlog_append() issued
 * meanwhile (event id left empty: the client fills it in before its first
 * attempt) keeps retrying and succeeds once PostgreSQL is back, within its
 * deadline; its event is stored exactly once. Every wait is for the
 * condition, bounded by far more than it takes on a loaded machine: a
 * restart of PostgreSQL and the service's reconnect take seconds there. */
DBLD_TEST(postgres_stop_and_restart)
{
    h_pg *pg = h_pg_cluster_start();
    char dsn[1024];
    h_db_create_at(pg->dsn, "pgrestart", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    append_acked(el, log, "before", 50, 5);

    h_pg_stop(pg);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e = ev(a, "during", 0);
    Databuild__V1__AppendResponse *r;
    Databuild__V1__EventPage *page;
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    int rc = h_append(el, a, &e, 1, &r, ANSWER_MS, &st);
    CHECK_CODE(rc, st, DBLD_UNAVAILABLE);
    CHECK_MSG(st.msg[0] != 0, "UNAVAILABLE without a message");
    h_note("Append with PostgreSQL down: %s after %lld ms: %s", dbld_code_name(rc),
           (long long)(dbld_mono_ms() - t0), st.msg);
    rc = h_list(el, a, NULL, 0, 0, &page, ANSWER_MS, &st);
    CHECK_CODE(rc, st, DBLD_UNAVAILABLE);
    CHECK_MSG(st.msg[0] != 0, "UNAVAILABLE without a message");
    CHECK_MSG(h_service_wait_health(el, "", 0, 30000),
              "health not NOT_SERVING 30 s after PostgreSQL stopped");
    CHECK_MSG(h_service_wait_health(el, "databuild.v1.EventLog", 0, 30000),
              "databuild.v1.EventLog health not NOT_SERVING while PostgreSQL is down");
    CHECK(h_service_alive(el));

    dbld_arena *ca_arena = dbld_arena_create();
    Databuild__V1__BuildEvent **ca_ev = dbld_arena_alloc(ca_arena, sizeof *ca_ev);
    ca_ev[0] = ev(ca_arena, "client", 0);
    ca_ev[0]->event_id = "";
    bg_append ca;
    bg_append_start(&ca, el, ca_ev, 1, ca_arena);
    CHECK_MSG(!H_POLL_UNTIL(1000, atomic_load(&ca.done)),
              "dbld_eventlog_append returned while PostgreSQL is down: %s: %s",
              dbld_code_name(ca.rc), ca.st.msg);

    h_pg_start(pg);
    t0 = dbld_mono_ms();
    /* Append (retrying the same event: idempotent) until it succeeds */
    int64_t sent = 0;
    rc = -1;
    while (dbld_mono_ms() - t0 < 60000) {
        sent = dbld_mono_ms();
        rc = h_append(el, a, &e, 1, &r, ANSWER_MS, &st);
        if (rc == DBLD_OK) break;
        CHECK_MSG(rc == DBLD_UNAVAILABLE, "Append while PostgreSQL restarts: %s: %s",
                  dbld_code_name(rc), st.msg);
        dbld_sleep_ms(100);
    }
    CHECK_MSG(rc == DBLD_OK, "Append still failing 60 s after PostgreSQL restarted: %s: %s",
              dbld_code_name(rc), st.msg);
    h_acklog_add(log, r, sent, dbld_mono_ms());
    h_note("Append recovered %lld ms after PostgreSQL restarted", (long long)(dbld_mono_ms() - t0));
    CHECK_MSG(h_service_wait_health(el, "", 1, 60000),
              "health not SERVING 60 s after PostgreSQL restarted");
    CHECK_OK(bg_append_join(&ca, log), ca.st);
    h_note("dbld_eventlog_append issued with PostgreSQL down: acked after %lld ms",
           (long long)(ca.acked_ms - ca.sent_ms));
    CHECK(dbld_uuid_valid(ca_ev[0]->event_id));
    CHECK_CMP_INT(ca.idx[0], >, 0);
    dbld_arena_destroy(ca_arena);
    append_acked(el, log, "after", 20, 4);
    /* exactly the acked events: the client's retries wrote nothing twice */
    h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
    h_service_stop(el);
    h_pg_destroy(pg);
}

/* ------------------------------------------------------- a stalled writer */

/* store.c's LOCK_APPEND: every writer transaction takes it first. Holding it
 * from a test session stalls the writer like a database that stopped
 * answering, while the health ping still succeeds. */
#define WRITER_LOCK 0x44424c4400000002LL

enum { FLOOD_CALLS = 16, FLOOD_EVENTS = 1000 };
/* BYTES_CALLS: the writer takes one, 7 fill the 64 MiB, 4 more are refused
 * (and retry) before the plain Append comes */
enum { BYTES_CALLS = 12, BYTES_EVENTS = 1000, BYTES_COMMENT = 4000 };

/* Events of Append number i (-1: the plain one) of a queue cap case. */
typedef Databuild__V1__BuildEvent **(*flood_fn)(dbld_arena *a, int i, size_t *n);

/* Stall the writer (WRITER_LOCK), start `calls` background Appends (which
 * retry), then check that a plain Append (no retry) is refused with
 * UNAVAILABLE and a message containing want and cap, that nothing was acked
 * while the writer waited, and that once it moves again every Append is
 * acked and stored exactly once. */
static void queue_cap_case(const char *db, const h_service_opts *o, int calls, flood_fn make,
                           const char *want, const char *cap)
{
    char dsn[1024];
    h_db_create(db, dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, o);
    dbld_arena *a = dbld_arena_create();
    dbld_db *lock = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_db_connect(dsn, &lock, &st), st);
    const char *key[] = {dbld_arena_printf(a, "%lld", WRITER_LOCK)};
    CHECK_OK(dbld_db_exec(lock, "SELECT pg_advisory_lock($1::bigint)", 1, key, NULL, &st), st);

    /* the writer takes one request and blocks; more fill the queue; the
     * rest are refused and keep retrying */
    bg_append *f = dbld_arena_alloc(a, (size_t)calls * sizeof *f);
    for (int i = 0; i < calls; i++) {
        dbld_arena *fa = dbld_arena_create();
        size_t n;
        Databuild__V1__BuildEvent **evs = make(fa, i, &n);
        bg_append_start(&f[i], el, evs, n, fa);
    }
    /* a plain Append (no retry) meets the full queue */
    size_t n;
    Databuild__V1__BuildEvent **evs = make(a, -1, &n);
    Databuild__V1__AppendResponse *r = NULL;
    int rc = DBLD_OK;
    CHECK_MSG(H_POLL_UNTIL(30000, (rc = h_append(el, a, evs, n, &r, CALL_DEADLINE_MS, &st)) ==
                                      DBLD_UNAVAILABLE),
              "a plain Append was not refused while the queue is full (%s: %s)", dbld_code_name(rc),
              st.msg);
    CHECK_CONTAINS(st.msg, want);
    CHECK_CONTAINS(st.msg, cap);
    dbld_sleep_ms(500);
    for (int i = 0; i < calls; i++) /* nothing can be acked while the writer waits */
        CHECK_MSG(!atomic_load(&f[i].done), "Append %d returned while the writer was stalled: %s",
                  i, f[i].st.msg);
    CHECK(h_service_alive(el));

    CHECK_OK(dbld_db_exec(lock, "SELECT pg_advisory_unlock($1::bigint)", 1, key, NULL, &st), st);
    dbld_db_close(lock);
    h_acklog *log = h_acklog_new();
    for (int i = 0; i < calls; i++)
        CHECK_CODE(bg_append_join(&f[i], log), f[i].st, DBLD_OK);
    h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES);
    for (int i = 0; i < calls; i++)
        dbld_arena_destroy(f[i].a);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

static Databuild__V1__BuildEvent **flood_events(dbld_arena *a, int i, size_t *n)
{
    const char *tag = i < 0 ? "plain" : dbld_arena_printf(a, "flood%d", i);
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, FLOOD_EVENTS * sizeof *evs);
    for (int k = 0; k < FLOOD_EVENTS; k++)
        evs[k] = ev(a, tag, k);
    *n = FLOOD_EVENTS;
    return evs;
}

/* With the writer stalled, Appends queue up to the cap (10 x
 * group_commit_max_events, at least 10,000 events); past it a write is
 * refused at once with UNAVAILABLE naming the queue size and the cap, which
 * the client library (dbld_eventlog_append) retries with backoff. Once the
 * writer moves again every Append is acked and stored exactly once. */
DBLD_TEST(append_queue_cap)
{
    h_service_opts o = {.group_commit_max_events = 100}; /* cap: the 10,000 minimum */
    queue_cap_case("queuecap", &o, FLOOD_CALLS, flood_events, "events queued", "cap of 10000");
}

/* 1,000 build requests with a comment of 4,000 bytes: ~9 MiB of request
 * memory (the messages and their serialized copies). */
static Databuild__V1__BuildEvent **big_events(dbld_arena *a, int i, size_t *n)
{
    const char *tag = i < 0 ? "plain" : dbld_arena_printf(a, "bg%d", i);
    char *comment = dbld_arena_alloc(a, BYTES_COMMENT + 1);
    memset(comment, 'c', BYTES_COMMENT);
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, BYTES_EVENTS * sizeof *evs);
    for (int k = 0; k < BYTES_EVENTS; k++) {
        const char *refs[] = {dbld_arena_printf(a, "f/bytes/%s/p=%d", tag, k), NULL};
        evs[k] = h_event_build_request(
            a, dbld_arena_printf(a, "br-bytes-%s-%d", tag, k),
            DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED, refs, comment, NULL);
    }
    *n = BYTES_EVENTS;
    return evs;
}

/* The queue's memory is capped too (QUEUE_MAX_BYTES, 64 MiB of the queued
 * requests' arenas), whatever the events' size: Appends of ~9 MiB of
 * request memory each (1,000 events, far below the 50,000-event cap) queue
 * until the next would pass 64 MiB; that one is refused with UNAVAILABLE
 * naming the bytes and the cap. */
DBLD_TEST(append_queue_bytes_cap)
{
    queue_cap_case("queuebytes", NULL, BYTES_CALLS, big_events, "KiB of requests queued",
                   "cap of 65536 KiB");
}

/* ------------------------------------------- claims after a (re)connect */

enum { RC_CLAIMS = 6 };

typedef struct rc_claim {
    h_service *el;
    int round, id;
    int rc, outcome;
    dbld_status st;
    pthread_t th;
} rc_claim;

static void *rc_claim_main(void *arg)
{
    rc_claim *c = arg;
    dbld_arena *a = dbld_arena_create();
    const char *br = dbld_arena_printf(a, "br-rc%d-%d", c->round, c->id);
    const char *run = dbld_arena_printf(a, "run-rc%d-%d", c->round, c->id);
    char *refs[] = {dbld_arena_printf(a, "reconnect/r%d/c%d", c->round, c->id)};
    Databuild__V1__BuildEvent *evs[] = {h_event_partition(
        a, br, refs[0], DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, run)};
    Databuild__V1__ClaimRequest req = DATABUILD__V1__CLAIM_REQUEST__INIT;
    req.build_request_id = (char *)br;
    req.job_run_id = (char *)run;
    req.refs = refs;
    req.n_refs = 1;
    req.events_if_granted = evs;
    req.n_events_if_granted = 1;
    Databuild__V1__ClaimResponse *resp = NULL;
    c->rc = dbld_client_unary(c->el->client, "/databuild.v1.PartitionClaims/Claim", &req.base,
                              &databuild__v1__claim_response__descriptor, dbld_arena_allocator(a),
                              (ProtobufCMessage **)&resp, 30000, 0, &c->st);
    c->outcome = resp ? (int)resp->outcome : -1;
    dbld_arena_destroy(a);
    return NULL;
}

/* Sessions waiting for an advisory lock. */
static long long advisory_waiters(const char *dsn)
{
    h_rows *r = h_sql(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                           " AND NOT granted");
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* RC_CLAIMS claims decided in ONE batch by the writer, on a connection that
 * has written appends but never a claim: the writer is held on LOCK_APPEND
 * (by an Append it took first) while the claims queue up behind it. */
static void claims_in_one_batch(h_service *el, const char *dsn, int round)
{
    dbld_arena *a = dbld_arena_create();
    dbld_db *lock = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_db_connect(dsn, &lock, &st), st);
    const char *key[] = {dbld_arena_printf(a, "%lld", WRITER_LOCK)};
    CHECK_OK(dbld_db_exec(lock, "SELECT pg_advisory_lock($1::bigint)", 1, key, NULL, &st), st);
    dbld_arena *ba = dbld_arena_create();
    Databuild__V1__BuildEvent **bev = dbld_arena_alloc(ba, sizeof *bev);
    bev[0] = ev(ba, dbld_arena_printf(ba, "held%d", round), 0);
    bg_append held;
    bg_append_start(&held, el, bev, 1, ba);
    CHECK_MSG(H_POLL_UNTIL(10000, advisory_waiters(dsn) == 1),
              "the writer never waited for the append lock");
    rc_claim c[RC_CLAIMS];
    for (int i = 0; i < RC_CLAIMS; i++) {
        c[i] = (rc_claim){.el = el, .round = round, .id = i};
        if (pthread_create(&c[i].th, NULL, rc_claim_main, &c[i]) != 0) H_FAIL("pthread_create");
    }
    /* the claims are queued once the server received them: nothing outside
     * shows that, so give them time (they cannot be decided before the
     * lock is released) */
    dbld_sleep_ms(500);
    CHECK_OK(dbld_db_exec(lock, "SELECT pg_advisory_unlock($1::bigint)", 1, key, NULL, &st), st);
    dbld_db_close(lock);
    h_acklog *log = h_acklog_new();
    CHECK_OK(bg_append_join(&held, log), held.st);
    for (int i = 0; i < RC_CLAIMS; i++) {
        pthread_join(c[i].th, NULL);
        CHECK_OK(c[i].rc, c[i].st);
        CHECK_EQ_INT(c[i].outcome, DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED);
    }
    dbld_arena_destroy(ba);
    dbld_arena_destroy(a);
}

/* Issue 15 defect 6: the first batch with several claims on a new writer
 * connection (a fresh process, then after PostgreSQL restarted) prepared
 * el_claim_peek once per claim ("prepared statement already exists"), failed,
 * and was redone one request at a time. Every claim is now decided in the
 * batch: all GRANTED, and the log shows no failed group commit. */
DBLD_TEST(claims_batch_after_reconnect)
{
    h_pg *pg = h_pg_cluster_start();
    char dsn[1024];
    h_db_create_at(pg->dsn, "claimsreconnect", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    append_acked(el, log, "warm", 10, 5); /* the writer's connection: appends only */
    claims_in_one_batch(el, dsn, 0);

    h_pg_stop(pg);
    h_pg_start(pg);
    CHECK_MSG(h_service_wait_health(el, "", 1, 20000), "not SERVING after PostgreSQL restarted");
    /* the writer finds its connection lost on its next batch and reconnects:
     * an append retried until it is acked (dbld_eventlog_append) */
    dbld_arena *wa = dbld_arena_create();
    Databuild__V1__BuildEvent **wev = dbld_arena_alloc(wa, sizeof *wev);
    wev[0] = ev(wa, "rewarm", 0);
    bg_append warm;
    bg_append_start(&warm, el, wev, 1, wa);
    CHECK_OK(bg_append_join(&warm, log), warm.st);
    dbld_arena_destroy(wa);
    claims_in_one_batch(el, dsn, 1);

    char *text = h_read_file(el->log_path, NULL);
    CHECK(text != NULL);
    CHECK_MSG(!strstr(text, "already exists"), "a statement was prepared twice:\n%s", text);
    CHECK_MSG(!strstr(text, "retrying requests one by one"),
              "a batch of claims failed and was redone one by one:\n%s", text);
    free(text);
    h_service_stop(el);
    h_pg_destroy(pg);
}

DBLD_TEST(database_down_at_start)
{
    h_pg *pg = h_pg_cluster_start();
    char dsn[1024];
    h_db_create_at(pg->dsn, "downatstart", dsn, sizeof dsn);
    h_pg_stop(pg);

    h_service *el = h_service_spawn("eventlog", dsn, NULL);
    /* the process serves health (NOT_SERVING) instead of exiting */
    CHECK_MSG(h_service_wait_health(el, "", 0, 20000), "no NOT_SERVING health answer within 20 s");
    CHECK_MSG(h_service_wait_health(el, "databuild.v1.EventLog", 0, 5000),
              "databuild.v1.EventLog not NOT_SERVING while the database is down");
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e = ev(a, "x", 0);
    Databuild__V1__AppendResponse *r;
    dbld_status st = {0};
    int rc = h_append(el, a, &e, 1, &r, CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_UNAVAILABLE);
    int serving = 1;
    CHECK_OK(h_service_health(el, "", &serving, &st), st);
    CHECK(!serving);
    CHECK(h_service_alive(el));

    h_pg_start(pg);
    CHECK_MSG(h_service_wait_health(el, "", 1, 30000),
              "not SERVING 30 s after the database came up");
    CHECK_MSG(h_service_wait_health(el, "databuild.v1.EventLog", 1, 5000),
              "databuild.v1.EventLog not SERVING");
    h_acklog *log = h_acklog_new();
    append_acked(el, log, "up", 10, 2);
    h_acklog_verify(log, el, H_VERIFY_EXACT);
    h_service_stop(el);
    h_pg_destroy(pg);
}

/* --------------------------------------------------------- bad requests */

DBLD_TEST(garbage_and_unknown_methods)
{
    char dsn[1024];
    h_db_create("garbage", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    void *out = NULL;
    size_t out_len = 0;
    dbld_status st = {0};

    int rc = dbld_client_unary_raw(el->client, H_APPEND_PATH, "\xff\xff\xff", 3, &out, &out_len,
                                   CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    free(out);
    out = NULL;
    rc = dbld_client_unary_raw(el->client, H_LIST_PATH, "\xff\xff\xff", 3, &out, &out_len,
                               CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    free(out);
    out = NULL;

    /* a valid request cut short */
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e = ev(a, "g", 0);
    Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
    req.n_events = 1;
    req.events = &e;
    size_t len;
    uint8_t *bytes = h_pack(a, &req.base, &len);
    rc = dbld_client_unary_raw(el->client, H_APPEND_PATH, bytes, len - 3, &out, &out_len,
                               CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    free(out);
    out = NULL;
    /* an empty body is an empty AppendRequest: no events */
    rc = dbld_client_unary_raw(el->client, H_APPEND_PATH, "", 0, &out, &out_len, CALL_DEADLINE_MS,
                               &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    free(out);
    out = NULL;

    rc = dbld_client_unary_raw(el->client, "/databuild.v1.EventLog/Nope", bytes, len, &out,
                               &out_len, CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_UNIMPLEMENTED);
    free(out);
    out = NULL;
    rc = dbld_client_unary_raw(el->client, "/no.such.Service/Append", bytes, len, &out, &out_len,
                               CALL_DEADLINE_MS, &st);
    CHECK_CODE(rc, st, DBLD_UNIMPLEMENTED);
    free(out);
    out = NULL;

    /* nothing was written, and the service keeps working */
    CHECK(h_service_alive(el));
    int serving = 0;
    CHECK_OK(h_service_health(el, "", &serving, &st), st);
    CHECK(serving);
    h_event_list all = h_list_all(el, a, NULL, 0);
    CHECK_EQ_INT(all.n, 0);
    /* the uncut request works */
    rc = dbld_client_unary_raw(el->client, H_APPEND_PATH, bytes, len, &out, &out_len,
                               CALL_DEADLINE_MS, &st);
    CHECK_OK(rc, st);
    Databuild__V1__AppendResponse *resp =
        databuild__v1__append_response__unpack(NULL, out_len, out);
    CHECK(resp != NULL);
    CHECK_EQ_INT(resp->n_events, 1);
    CHECK_EQ_STR(resp->events[0]->event_id, e->event_id);
    databuild__v1__append_response__free_unpacked(resp, NULL);
    free(out);
    all = h_list_all(el, a, NULL, 0);
    CHECK_EQ_INT(all.n, 1);
    h_service_stop(el);
}

DBLD_TEST(health_names)
{
    char dsn[1024];
    h_db_create("health", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    int serving = 0;
    dbld_status st = {0};
    CHECK_OK(h_service_health(el, "", &serving, &st), st);
    CHECK(serving);
    CHECK_OK(h_service_health(el, "databuild.v1.EventLog", &serving, &st), st);
    CHECK(serving);
    /* grpc.health.v1: an unknown service name is NOT_FOUND */
    int rc = h_service_health(el, "no.such.Service", &serving, &st);
    CHECK_CODE(rc, st, DBLD_NOT_FOUND);
    h_service_stop(el);
}

/* ---------------------------------------------------------------- SIGTERM */

DBLD_TEST(sigterm_exits_zero)
{
    char dsn[1024];
    h_db_create("sigterm", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    append_acked(el, log, "idle", 5, 5);
    int64_t t0 = dbld_mono_ms();
    h_service_stop(el); /* idle */
    h_note("idle SIGTERM -> exit in %lld ms", (long long)(dbld_mono_ms() - t0));

    /* with a Subscribe stream open and appends in flight */
    h_service_restart(el);
    dbld_stream *sub = h_subscribe(el, NULL, 0);
    atomic_int stop = 0;
    enum { W = 4 };
    appender w[W];
    pthread_t th[W];
    memset(w, 0, sizeof w);
    for (int i = 0; i < W; i++) {
        w[i].el = el;
        w[i].log = log;
        w[i].id = i;
        w[i].stop = &stop;
        if (pthread_create(&th[i], NULL, appender_main, &w[i]) != 0) H_FAIL("pthread_create");
    }
    size_t before = h_acklog_count(log);
    CHECK_MSG(H_POLL_UNTIL(30000, h_acklog_count(log) >= before + 100),
              "appends are not progressing");
    t0 = dbld_mono_ms();
    int status = h_service_signal_wait(el, SIGTERM, 20000);
    h_note("busy SIGTERM -> exit %d in %lld ms", status, (long long)(dbld_mono_ms() - t0));
    CHECK_EQ_INT(status, 0);
    atomic_store(&stop, 1);
    for (int i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    dbld_stream_close(sub);
    /* whatever was acked before the exit is stored */
    h_service_restart(el);
    h_acklog_verify(log, el, H_VERIFY_BATCHES | H_VERIFY_IDX);
    h_service_stop(el);
}

/* ----------------------------------------------------------- config errors */

DBLD_TEST(config_error_refuses_to_start)
{
    char dsn[1024];
    h_db_create("badconfig", dsn, sizeof dsn);
    h_service_opts o = {.extra_section = "  no_such_key: 1"};
    h_service *el = h_service_spawn("eventlog", dsn, &o);
    CHECK_MSG(H_POLL_UNTIL(10000, !h_service_alive(el)), "started despite an unknown config key");
    CHECK_MSG(el->exit_status != 0, "exited 0 on a config error");
    char *log = h_read_file(el->log_path, NULL);
    CHECK_CONTAINS(log, "no_such_key");
    CHECK_CONTAINS(log, ".yaml:"); /* file:line:column */
    free(log);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(kill9_between_appends), DBLD_TEST_ENTRY(kill9_during_appends),
               DBLD_TEST_ENTRY_T(postgres_stop_and_restart, 300), DBLD_TEST_ENTRY(append_queue_cap),
               DBLD_TEST_ENTRY(append_queue_bytes_cap),
               DBLD_TEST_ENTRY(claims_batch_after_reconnect),
               DBLD_TEST_ENTRY(database_down_at_start),
               DBLD_TEST_ENTRY(garbage_and_unknown_methods), DBLD_TEST_ENTRY(health_names),
               DBLD_TEST_ENTRY(sigterm_exits_zero), DBLD_TEST_ENTRY(config_error_refuses_to_start))
