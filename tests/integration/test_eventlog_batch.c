/* test_eventlog_batch.c - one request's repeated values (refs, build ids,
 * event ids, log sequence numbers) are de-duplicated before the group
 * commit, so a request with repeats succeeds and never fails or slows the
 * other requests of its batch (issue 15, defect 7).
 *
 * "Slows" is observable: when a batch's transaction fails the writer retries
 * its requests one by one and logs "group commit failed"; none of these tests
 * may make it do that.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define BATCH_FAILED "group commit failed"

static int claim(h_service *el, dbld_arena *a, const char *br, const char *run, char **refs,
                 size_t n_refs, Databuild__V1__BuildEvent **evs, size_t n_evs,
                 Databuild__V1__ClaimResponse **resp, dbld_status *st)
{
    Databuild__V1__ClaimRequest req = DATABUILD__V1__CLAIM_REQUEST__INIT;
    req.build_request_id = (char *)br;
    req.job_run_id = (char *)run;
    req.refs = refs;
    req.n_refs = n_refs;
    req.events_if_granted = evs;
    req.n_events_if_granted = n_evs;
    *resp = NULL;
    dbld_status_clear(st);
    return dbld_client_unary(el->client, "/databuild.v1.PartitionClaims/Claim", &req.base,
                             &databuild__v1__claim_response__descriptor, dbld_arena_allocator(a),
                             (ProtobufCMessage **)resp, 30000, 0, st);
}

static int renew(h_service *el, dbld_arena *a, const char *owner, char **ids, size_t n,
                 Databuild__V1__RenewLeasesResponse **resp, dbld_status *st)
{
    Databuild__V1__RenewLeasesRequest req = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    req.owner = (char *)owner;
    req.build_request_ids = ids;
    req.n_build_request_ids = n;
    req.ttl_ms = 60000;
    *resp = NULL;
    dbld_status_clear(st);
    return dbld_client_unary(el->client, "/databuild.v1.BuildLeases/Renew", &req.base,
                             &databuild__v1__renew_leases_response__descriptor,
                             dbld_arena_allocator(a), (ProtobufCMessage **)resp, 30000, 0, st);
}

static int release(h_service *el, dbld_arena *a, const char *br, char **refs, size_t n,
                   uint32_t *released, dbld_status *st)
{
    Databuild__V1__ReleaseRequest req = DATABUILD__V1__RELEASE_REQUEST__INIT;
    req.build_request_id = (char *)br;
    req.refs = refs;
    req.n_refs = n;
    Databuild__V1__ReleaseResponse *resp = NULL;
    dbld_status_clear(st);
    int rc = dbld_client_unary(el->client, "/databuild.v1.PartitionClaims/Release", &req.base,
                               &databuild__v1__release_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 30000, 0, st);
    *released = rc == 0 && resp ? resp->released : 0;
    return rc;
}

/* JobLogs/Append of entries (run, seqs[i]); *stored from the answer. */
static int append_logs(h_service *el, dbld_arena *a, const char *run, const int *seqs, size_t n,
                       uint32_t *stored, dbld_status *st)
{
    Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    req.entries = dbld_arena_alloc(a, (n + 1) * sizeof *req.entries);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__JobLogEntry *e =
            dbld_arena_msg(a, &databuild__v1__job_log_entry__descriptor);
        Databuild__V1__LogMessage *l = dbld_arena_msg(a, &databuild__v1__log_message__descriptor);
        e->timestamp = dbld_arena_printf(a, "%d", 1700000000 + seqs[i]);
        e->job_id = (char *)run;
        e->sequence_number = (uint64_t)seqs[i];
        l->message = dbld_arena_printf(a, "line %d", seqs[i]);
        e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
        e->log = l;
        req.entries[req.n_entries++] = e;
    }
    Databuild__V1__AppendJobLogsResponse *resp = NULL;
    dbld_status_clear(st);
    int rc = dbld_client_unary(el->client, "/databuild.v1.JobLogs/Append", &req.base,
                               &databuild__v1__append_job_logs_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 30000, 0, st);
    *stored = rc == 0 && resp ? resp->stored : 0;
    return rc;
}

static long long count(const char *dsn, const char *sql, const char *param)
{
    h_rows *r = h_sql(dsn, sql, param);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* CHECK that the service never had to retry a failed batch request by request. */
static void check_no_failed_batch(h_service *el)
{
    char *log = h_read_file(el->log_path, NULL);
    CHECK_MSG(log && !strstr(log, BATCH_FAILED),
              "the event log rolled back a group commit (\"%s\" in %s)", BATCH_FAILED,
              el->log_path);
    free(log);
}

/* Each write path with a value repeated inside one request: the request
 * succeeds as if the value were given once, and nothing is rolled back. */
DBLD_TEST(duplicates_in_one_request)
{
    char dsn[1024];
    h_db_create("dups", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_status st;

    /* Claim(refs=["dup/x","dup/x"]): GRANTED, one claim row, its event once */
    char *refs[] = {"dup/x", "dup/x"};
    Databuild__V1__BuildEvent *ev = h_event_partition(
        a, "br-dup", "dup/x", DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-dup");
    Databuild__V1__BuildEvent *evs[] = {ev, ev}; /* the same event (and event_id) twice */
    Databuild__V1__ClaimResponse *cr;
    CHECK_OK(claim(el, a, "br-dup", "run-dup", refs, 2, evs, 2, &cr, &st), st);
    CHECK_EQ_INT(cr->outcome, DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED);
    CHECK_EQ_INT(cr->n_event_idx, 2);
    CHECK(cr->event_idx[0] > 0);
    CHECK_EQ_INT(cr->event_idx[1], cr->event_idx[0]);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM claims WHERE ref = $1", "dup/x"), 1);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM events WHERE build_request_id = $1", "br-dup"),
                 1);
    /* another build with the same repeat: HELD by the first */
    CHECK_OK(claim(el, a, "br-dup2", "run-dup2", refs, 2, NULL, 0, &cr, &st), st);
    CHECK_EQ_INT(cr->outcome, DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD);
    CHECK_EQ_STR(cr->holder_build_request_id, "br-dup");
    /* AVAILABLE is decided on the distinct refs too */
    Databuild__V1__BuildEvent *avail = h_event_partition(
        a, "br-done", "dup/y", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-y");
    h_append_ok(el, a, &avail, 1);
    char *refs_y[] = {"dup/y", "dup/y", "dup/y"};
    CHECK_OK(claim(el, a, "br-dup3", "run-dup3", refs_y, 3, NULL, 0, &cr, &st), st);
    CHECK_EQ_INT(cr->outcome, DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE);

    /* Renew(build_request_ids=["b","b"]): held once, nothing lost */
    char *ids[] = {"b", "b"};
    Databuild__V1__RenewLeasesResponse *rr;
    CHECK_OK(renew(el, a, "graph-1", ids, 2, &rr, &st), st);
    CHECK_EQ_INT(rr->n_lost, 0);
    CHECK_OK(renew(el, a, "graph-1", ids, 2, &rr, &st), st);
    CHECK_EQ_INT(rr->n_lost, 0);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM build_leases WHERE build_request_id = $1", "b"),
                 1);
    /* another owner: both repeats are reported lost */
    CHECK_OK(renew(el, a, "graph-2", ids, 2, &rr, &st), st);
    CHECK_EQ_INT(rr->n_lost, 2);

    /* Release with a repeated ref */
    uint32_t released = 0;
    CHECK_OK(release(el, a, "br-dup", refs, 2, &released, &st), st);
    CHECK_EQ_INT(released, 1);

    /* Append with two events of one event_id: stored once, same idx */
    Databuild__V1__BuildEvent *twice = h_event_build_cancel(a, "br-twice", "x");
    Databuild__V1__BuildEvent *pair[] = {twice, twice};
    Databuild__V1__AppendResponse *ar = h_append_ok(el, a, pair, 2);
    CHECK(!ar->events[0]->duplicate);
    CHECK(ar->events[1]->duplicate);
    CHECK_EQ_INT(ar->events[1]->idx, ar->events[0]->idx);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM events WHERE build_request_id = $1", "br-twice"),
                 1);

    /* JobLogs/Append with a repeated (job_run_id, sequence_number) */
    uint32_t stored = 0;
    CHECK_OK(append_logs(el, a, "run-logs", (const int[]){1, 2, 2, 1, 3}, 5, &stored, &st), st);
    CHECK_EQ_INT(stored, 3);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM job_logs WHERE job_run_id = $1", "run-logs"), 3);

    check_no_failed_batch(el);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

/* ---- many clients in shared batches, one of them sending repeats ---- */

enum { CLIENTS = 16, ROUNDS = 40, RACES = 20 };

typedef struct client {
    h_service *el;
    int id;
    pthread_barrier_t *start;
    int outcome[RACES]; /* racers: the claim outcome per race */
    char holder[RACES][32];
    int calls, failed;
    char error[512];
} client;

static void fail(client *c, const char *what, int rc, const dbld_status *st)
{
    if (c->failed++) return;
    snprintf(c->error, sizeof c->error, "client %d: %s: %s: %s", c->id, what, dbld_code_name(rc),
             st->msg);
}

/* The client with the bad habits: every write path with repeats. */
static void *dup_sender(void *arg)
{
    client *c = arg;
    dbld_arena *a = dbld_arena_create();
    pthread_barrier_wait(c->start);
    for (int i = 0; i < ROUNDS; i++, c->calls += 4) {
        dbld_arena_reset(a);
        dbld_status st;
        char *ref = dbld_arena_printf(a, "mixdup/p%d", i);
        char *refs[] = {ref, ref};
        Databuild__V1__ClaimResponse *cr;
        int rc = claim(c->el, a, "br-dupsender", dbld_arena_printf(a, "run-dup-%d", i), refs, 2,
                       NULL, 0, &cr, &st);
        if (rc || cr->outcome != DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED)
            fail(c, "claim with a repeated ref", rc, &st);
        char *id = dbld_arena_printf(a, "br-dupsender-%d", i);
        char *ids[] = {id, id};
        Databuild__V1__RenewLeasesResponse *rr;
        rc = renew(c->el, a, "graph-dup", ids, 2, &rr, &st);
        if (rc || rr->n_lost) fail(c, "renew with a repeated id", rc, &st);
        Databuild__V1__BuildEvent *e = h_event_build_cancel(a, "br-dupsender", "again");
        Databuild__V1__BuildEvent *evs[] = {e, e, e};
        Databuild__V1__AppendResponse *ar;
        rc = h_append(c->el, a, evs, 3, &ar, 30000, &st);
        if (rc || ar->n_events != 3 || ar->events[2]->idx != ar->events[0]->idx)
            fail(c, "append with a repeated event_id", rc, &st);
        uint32_t stored;
        rc = append_logs(c->el, a, "run-dupsender", (const int[]){i + 1, i + 1}, 2, &stored, &st);
        if (rc || stored != 1) fail(c, "job logs with a repeated sequence number", rc, &st);
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* A well-behaved appender. */
static void *appender(void *arg)
{
    client *c = arg;
    dbld_arena *a = dbld_arena_create();
    pthread_barrier_wait(c->start);
    for (int i = 0; i < ROUNDS; i++, c->calls++) {
        dbld_arena_reset(a);
        Databuild__V1__BuildEvent *e =
            h_event_partition(a, dbld_arena_printf(a, "br-app%d", c->id),
                              dbld_arena_printf(a, "mix/a%d/%d", c->id, i),
                              DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-app");
        Databuild__V1__AppendResponse *ar;
        dbld_status st;
        int rc = h_append(c->el, a, &e, 1, &ar, 30000, &st);
        if (rc) fail(c, "append", rc, &st);
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* Two racers claim race/k at once from two builds: one wins, the other is
 * HELD by it - never an error for both. */
static void *racer(void *arg)
{
    client *c = arg;
    dbld_arena *a = dbld_arena_create();
    pthread_barrier_wait(c->start);
    for (int k = 0; k < RACES; k++, c->calls++) {
        dbld_arena_reset(a);
        char *refs[] = {dbld_arena_printf(a, "race/%d", k)};
        Databuild__V1__BuildEvent *e =
            h_event_partition(a, dbld_arena_printf(a, "br-racer%d", c->id), refs[0],
                              DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-race");
        Databuild__V1__ClaimResponse *cr;
        dbld_status st;
        int rc = claim(c->el, a, dbld_arena_printf(a, "br-racer%d", c->id),
                       dbld_arena_printf(a, "run-racer%d-%d", c->id, k), refs, 1, &e, 1, &cr, &st);
        if (rc) {
            fail(c, "racing claim", rc, &st);
            continue;
        }
        c->outcome[k] = cr->outcome;
        snprintf(c->holder[k], sizeof c->holder[k], "%s", cr->holder_build_request_id);
    }
    dbld_arena_destroy(a);
    return NULL;
}

DBLD_TEST(bad_request_does_not_fail_batch)
{
    char dsn[1024];
    h_db_create("dupmix", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    static client c[CLIENTS];
    pthread_t th[CLIENTS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, CLIENTS);
    for (int i = 0; i < CLIENTS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].el = el;
        c[i].id = i;
        c[i].start = &start;
        void *(*fn)(void *) = i == 0 ? dup_sender : i <= 2 ? racer : appender;
        if (pthread_create(&th[i], NULL, fn, &c[i]) != 0) H_FAIL("pthread_create");
    }
    int calls = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(th[i], NULL);
        calls += c[i].calls;
    }
    pthread_barrier_destroy(&start);
    for (int i = 0; i < CLIENTS; i++)
        CHECK_MSG(!c[i].failed, "%d failures, first: %s", c[i].failed, c[i].error);
    /* one winner per race, the loser held by it */
    for (int k = 0; k < RACES; k++) {
        int g1 = c[1].outcome[k] == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED;
        int g2 = c[2].outcome[k] == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED;
        CHECK_MSG(g1 + g2 == 1, "race %d: outcomes %d and %d", k, c[1].outcome[k], c[2].outcome[k]);
        client *loser = g1 ? &c[2] : &c[1];
        CHECK_EQ_INT(loser->outcome[k], DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD);
        CHECK_EQ_STR(loser->holder[k], g1 ? "br-racer1" : "br-racer2");
    }
    CHECK_EQ_INT(
        count(dsn, "SELECT count(*) FROM events WHERE build_request_id LIKE $1", "br-app%"),
        (CLIENTS - 3) * ROUNDS);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM claims WHERE ref LIKE $1", "mixdup/%"), ROUNDS);
    CHECK_EQ_INT(count(dsn, "SELECT count(*) FROM job_logs WHERE job_run_id = $1", "run-dupsender"),
                 ROUNDS);
    /* the repeats really shared transactions with other clients' writes */
    long long shared = count(dsn,
                             "SELECT count(*) FROM events d WHERE d.build_request_id = $1"
                             " AND EXISTS (SELECT 1 FROM events o WHERE o.build_request_id"
                             " LIKE 'br-app%' AND o.xmin::text = d.xmin::text)",
                             "br-dupsender");
    h_note("%d calls; %lld of the repeating appends committed with other clients' events", calls,
           shared);
    CHECK_CMP_INT(shared, >, 0);
    check_no_failed_batch(el);
    h_service_stop(el);
}

/* Group commit waits (eventlog.group_commit_wait_us) only while several
 * callers write: a lone caller's appends each commit at once, in a
 * transaction of their own; callers appending one event at a time share
 * transactions of up to 8 requests. Transactions are counted by the rows'
 * xmin (one per transaction that inserted them). */
#define WRITERS 8
#define WRITES 5

typedef struct writer {
    h_service *el;
    int id;
    pthread_barrier_t *start;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    dbld_arena *a = dbld_arena_create();
    pthread_barrier_wait(w->start);
    for (int i = 0; i < WRITES; i++) {
        Databuild__V1__BuildEvent *e =
            h_event_partition(a, "brG", dbld_arena_printf(a, "g/w=%d/i=%d", w->id, i),
                              DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-g");
        h_append_ok(w->el, a, &e, 1);
    }
    dbld_arena_destroy(a);
    return NULL;
}

static long long transactions(const char *dsn, const char *like)
{
    h_rows *r = h_sql(dsn,
                      "SELECT count(DISTINCT xmin::text) FROM events WHERE"
                      " partition_refs[1] LIKE $1",
                      like);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

DBLD_TEST(group_commit_waits_only_for_concurrent_writers)
{
    char dsn[1024];
    h_db_create("groupwait", dsn, sizeof dsn);
    h_service_opts o = {.extra_section = "  group_commit_wait_us: 100000\n"};
    h_service *el = h_service_start("eventlog", dsn, &o);
    dbld_arena *a = dbld_arena_create();
    /* a lone caller: one transaction per append, none waits the 100 ms */
    int64_t t0 = dbld_mono_ms();
    for (int i = 0; i < WRITES; i++) {
        Databuild__V1__BuildEvent *e =
            h_event_partition(a, "brL", dbld_arena_printf(a, "l/i=%d", i),
                              DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-l");
        h_append_ok(el, a, &e, 1);
    }
    int64_t lone_ms = dbld_mono_ms() - t0;
    CHECK_EQ_INT(transactions(dsn, "l/%"), WRITES);
    CHECK_MSG(lone_ms < WRITES * 100, "a lone caller's %d appends took %lld ms: they waited",
              WRITES, (long long)lone_ms);
    /* concurrent callers share transactions: after the first commit each
     * waits for the others' next append (8 requests or the 100 ms) */
    writer w[WRITERS];
    pthread_t th[WRITERS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, WRITERS);
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.el = el, .id = i, .start = &start};
        CHECK(pthread_create(&th[i], NULL, writer_main, &w[i]) == 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    long long tx = transactions(dsn, "g/%");
    h_note("%d appends by %d concurrent callers: %lld transactions", WRITERS * WRITES, WRITERS, tx);
    CHECK_MSG(tx <= WRITES + 4,
              "%d appends by %d concurrent callers took %lld transactions, want <= %d",
              WRITERS * WRITES, WRITERS, tx, WRITES + 4);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(duplicates_in_one_request),
               DBLD_TEST_ENTRY(bad_request_does_not_fail_batch),
               DBLD_TEST_ENTRY(group_commit_waits_only_for_concurrent_writers))
