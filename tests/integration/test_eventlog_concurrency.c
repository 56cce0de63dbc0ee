/* test_eventlog_concurrency.c - many callers at once, and two replicas.
 *
 * The oracle is the ack log (harness_check.c): whatever Append acknowledged
 * must be in the log exactly once with the acknowledged idx; idx values are
 * unique; an event acked before another was sent has the smaller idx; the
 * events of one batch are adjacent in the log, in request order.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct worker {
    h_service **targets; /* round-robin over these */
    size_t n_targets;
    h_acklog *log;
    int id;
    int calls;     /* Append calls to make */
    int batch_max; /* events per call: 1..batch_max, varying */
    /* results */
    int failed;
    char error[512];
} worker;

static void *append_worker(void *arg)
{
    worker *w = arg;
    dbld_arena *a = dbld_arena_create();
    int64_t prev_max = -1;
    for (int c = 0; c < w->calls && !w->failed; c++) {
        dbld_arena_reset(a);
        size_t n = w->batch_max <= 1 ? 1 : (size_t)((c * 7 + w->id) % w->batch_max) + 1;
        Databuild__V1__BuildEvent *evs[64];
        for (size_t i = 0; i < n; i++)
            evs[i] = h_event_partition(a, dbld_arena_printf(a, "br-w%d", w->id),
                                       dbld_arena_printf(a, "c/w%d/c%d/e%zu", w->id, c, i),
                                       DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE,
                                       dbld_arena_printf(a, "run-w%d", w->id));
        h_service *s = w->targets[(size_t)(c + w->id) % w->n_targets];
        Databuild__V1__AppendResponse *r;
        dbld_status st = {0};
        int64_t sent = dbld_mono_ms();
        int rc = h_append(s, a, evs, n, &r, 30000, &st);
        int64_t acked = dbld_mono_ms();
        if (rc != DBLD_OK || !r || r->n_events != n) {
            w->failed = 1;
            snprintf(w->error, sizeof w->error, "worker %d call %d (%zu events via %s): %s: %s",
                     w->id, c, n, s->name, dbld_code_name(rc), st.msg);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (strcmp(r->events[i]->event_id, evs[i]->event_id) != 0 || r->events[i]->duplicate) {
                w->failed = 1;
                snprintf(w->error, sizeof w->error, "worker %d call %d: entry %zu is %s dup=%d",
                         w->id, c, i, r->events[i]->event_id, r->events[i]->duplicate);
            }
            /* one caller's sequential appends: strictly increasing idx */
            if (r->events[i]->idx <= prev_max && !w->failed) {
                w->failed = 1;
                snprintf(w->error, sizeof w->error,
                         "worker %d call %d: idx %lld not above its previous %lld", w->id, c,
                         (long long)r->events[i]->idx, (long long)prev_max);
            }
            prev_max = r->events[i]->idx;
        }
        h_acklog_add(w->log, r, sent, acked);
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* Run fn on each of the n items (size bytes each) in threads of their own. */
static void run_threads(void *(*fn)(void *), void *items, size_t size, int n)
{
    pthread_t th[64];
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, fn, (char *)items + (size_t)i * size) != 0)
            H_FAIL("pthread_create");
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static void run_workers(worker *w, int n)
{
    run_threads(append_worker, w, sizeof *w, n);
    for (int i = 0; i < n; i++)
        CHECK_MSG(!w[i].failed, "%s", w[i].error);
}

/* 36 callers at once (32 single-event, 4 with batches of up to 50). Besides
 * the ack log's invariants, group commit: the database commits far fewer
 * transactions than there were Append calls (pg_stat_database.xact_commit of
 * the test's database, which also counts the service's health pings). */
DBLD_TEST(concurrent_appenders)
{
    char dsn[1024];
    h_db_create("concurrent", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    enum { SINGLE = 32, BATCHERS = 4, SINGLE_CALLS = 100, BATCH_CALLS = 25 };
    enum { CALLS = SINGLE * SINGLE_CALLS + BATCHERS * BATCH_CALLS };
    worker w[SINGLE + BATCHERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < SINGLE + BATCHERS; i++) {
        w[i].targets = &el;
        w[i].n_targets = 1;
        w[i].log = log;
        w[i].id = i;
        w[i].calls = i < SINGLE ? SINGLE_CALLS : BATCH_CALLS;
        w[i].batch_max = i < SINGLE ? 1 : 50;
    }
    long long commits0 = h_pg_xact_commits(dsn);
    int64_t t0 = dbld_mono_ms();
    run_workers(w, SINGLE + BATCHERS);
    size_t acked = h_acklog_count(log);
    h_note("%zu events acked in %lld ms", acked, (long long)(dbld_mono_ms() - t0));
    CHECK_CMP_INT(acked, >=, SINGLE * SINGLE_CALLS + BATCHERS * BATCH_CALLS);
    /* A backend reports its counts at most once a second: one more Append
     * after a pause makes the writer's backend report the whole run. Every
     * caller waits for its ack, so a transaction holds at most one call per
     * caller: at least CALLS / 36 transactions must show up. */
    dbld_sleep_ms(1100);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *last = h_event_partition(
        a, "br-last", "c/last", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-last");
    int64_t sent = dbld_mono_ms();
    h_acklog_add(log, h_append_ok(el, a, &last, 1), sent, dbld_mono_ms());
    long long commits = 0;
    H_POLL_UNTIL(12000,
                 (commits = h_pg_xact_commits(dsn) - commits0) >= CALLS / (SINGLE + BATCHERS));
    h_note("%d Append calls, %lld transactions committed", CALLS + 1, commits);
    CHECK_CMP_INT(commits, >=, CALLS / (SINGLE + BATCHERS));
    CHECK_CMP_INT(commits, <, CALLS / 2);
    dbld_arena_destroy(a);
    size_t listed = h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
    CHECK_EQ_INT(listed, h_acklog_count(log));
    h_service_stop(el);
}

/* 16 callers race to append the same 50 new event ids (each in its own
 * rotated order, one per call): every id is stored once, every caller gets
 * the same idx for it, and exactly one caller sees duplicate=false. */
enum { RACE_IDS = 50, RACE_CALLERS = 16 };

typedef struct racer {
    h_service *el;
    Databuild__V1__BuildEvent **evs;
    int id;
    int64_t idx[RACE_IDS];
    int dup[RACE_IDS];
    int failed;
    char error[512];
} racer;

static void *race_worker(void *arg)
{
    racer *r = arg;
    dbld_arena *a = dbld_arena_create();
    for (int k = 0; k < RACE_IDS && !r->failed; k++) {
        int i = (k + r->id * 3) % RACE_IDS;
        Databuild__V1__AppendResponse *resp;
        dbld_status st = {0};
        int rc = h_append(r->el, a, &r->evs[i], 1, &resp, 30000, &st);
        if (rc != DBLD_OK || resp->n_events != 1) {
            r->failed = 1;
            snprintf(r->error, sizeof r->error, "racer %d: %s: %s", r->id, dbld_code_name(rc),
                     st.msg);
            break;
        }
        r->idx[i] = resp->events[0]->idx;
        r->dup[i] = resp->events[0]->duplicate;
    }
    dbld_arena_destroy(a);
    return NULL;
}

DBLD_TEST(same_event_from_many_callers)
{
    char dsn[1024];
    h_db_create("race", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *evs[RACE_IDS];
    for (int i = 0; i < RACE_IDS; i++)
        evs[i] = h_event_build_cancel(a, "br-race", "same");
    racer r[RACE_CALLERS];
    memset(r, 0, sizeof r);
    pthread_t th[RACE_CALLERS];
    for (int c = 0; c < RACE_CALLERS; c++) {
        r[c].el = el;
        r[c].evs = evs;
        r[c].id = c;
        if (pthread_create(&th[c], NULL, race_worker, &r[c]) != 0) H_FAIL("pthread_create");
    }
    for (int c = 0; c < RACE_CALLERS; c++)
        pthread_join(th[c], NULL);
    for (int c = 0; c < RACE_CALLERS; c++)
        CHECK_MSG(!r[c].failed, "%s", r[c].error);
    for (int i = 0; i < RACE_IDS; i++) {
        int fresh = 0;
        for (int c = 0; c < RACE_CALLERS; c++) {
            CHECK_MSG(r[c].idx[i] == r[0].idx[i],
                      "event %d: caller %d got idx %lld, caller 0 got %lld", i, c,
                      (long long)r[c].idx[i], (long long)r[0].idx[i]);
            fresh += !r[c].dup[i];
        }
        CHECK_MSG(fresh == 1, "event %d: %d callers were told it was new (duplicate=false)", i,
                  fresh);
    }
    h_event_list all = h_list_all(el, a, NULL, 0);
    CHECK_EQ_INT(all.n, RACE_IDS);
    int seen[RACE_IDS] = {0};
    for (size_t k = 0; k < all.n; k++)
        for (int i = 0; i < RACE_IDS; i++)
            if (strcmp(all.events[k]->event_id, evs[i]->event_id) == 0) seen[i]++;
    for (int i = 0; i < RACE_IDS; i++)
        CHECK_MSG(seen[i] == 1, "event %d listed %d times", i, seen[i]);
    h_service_stop(el);
}

/* Two replicas started at once on a fresh database: both come up SERVING
 * (migrations under an advisory lock), and appends through both interleave
 * with unique idx in commit order. Three rounds, to give the start-up race a
 * few chances. */
DBLD_TEST(two_replicas)
{
    for (int round = 0; round < 3; round++) {
        char dsn[1024];
        h_db_create("replicas", dsn, sizeof dsn);
        h_service *rep[2];
        rep[0] = h_service_spawn("eventlog", dsn, NULL);
        rep[1] = h_service_spawn("eventlog", dsn, NULL);
        for (int i = 0; i < 2; i++)
            CHECK_MSG(h_service_wait_health(rep[i], "", 1, 20000),
                      "round %d: replica %s not SERVING within 20 s", round, rep[i]->name);
        for (int i = 0; i < 2; i++)
            CHECK_MSG(h_service_wait_health(rep[i], "databuild.v1.EventLog", 1, 5000),
                      "round %d: replica %s: databuild.v1.EventLog not SERVING", round,
                      rep[i]->name);
        h_acklog *log = h_acklog_new();
        enum { W = 8 };
        worker w[W];
        memset(w, 0, sizeof w);
        for (int i = 0; i < W; i++) {
            w[i].targets = rep;
            w[i].n_targets = 2;
            w[i].log = log;
            w[i].id = i;
            w[i].calls = 60;
            w[i].batch_max = 3;
        }
        run_workers(w, W);
        size_t n = h_acklog_verify(log, rep[0], H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
        CHECK_EQ_INT(n, h_acklog_count(log));
        /* the other replica sees the same log */
        size_t n1 = h_acklog_verify(log, rep[1], H_VERIFY_EXACT);
        CHECK_EQ_INT(n1, n);
        h_service_stop(rep[0]);
        h_service_stop(rep[1]);
    }
}

/* Claims from many callers at once, decided in shared transactions: each
 * group of partitions is claimed by 12 builds (two overlapping shapes:
 * {a, b} and {b, c}); exactly one claim per group is GRANTED and the others
 * are HELD by it, as if decided one after another. Then, with the even groups
 * AVAILABLE, every claim there answers AVAILABLE; in the odd groups the
 * holder's build takes its claim over and everyone else stays HELD. */
enum { CLAIM_GROUPS = 30, CLAIMERS = 12 };

typedef struct claimer {
    h_service *el;
    int id, round;
    int outcome[CLAIM_GROUPS];
    char holder_br[CLAIM_GROUPS][64], holder_run[CLAIM_GROUPS][64];
    int64_t idx[CLAIM_GROUPS][2];
    char event_id[CLAIM_GROUPS][2][64];
    int failed;
    char error[512];
} claimer;

static void *claim_worker(void *arg)
{
    claimer *c = arg;
    dbld_arena *a = dbld_arena_create();
    for (int j = 0; j < CLAIM_GROUPS && !c->failed; j++) {
        int k = (j + (c->id % 3) * 10) % CLAIM_GROUPS; /* four claimers in step */
        dbld_arena_reset(a);
        const char *br = dbld_arena_printf(a, "br-c%d", c->id);
        const char *run = dbld_arena_printf(a, "run-c%d-g%d-r%d", c->id, k, c->round);
        char *refs[2];
        refs[0] = dbld_arena_printf(a, "claims/g%d/%s", k, c->id % 2 ? "b" : "a");
        refs[1] = dbld_arena_printf(a, "claims/g%d/%s", k, c->id % 2 ? "c" : "b");
        Databuild__V1__BuildEvent *evs[2];
        for (int i = 0; i < 2; i++)
            evs[i] = h_event_partition(a, br, refs[i],
                                       DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, run);
        Databuild__V1__ClaimRequest req = DATABUILD__V1__CLAIM_REQUEST__INIT;
        req.build_request_id = (char *)br;
        req.job_run_id = (char *)run;
        req.refs = refs;
        req.n_refs = 2;
        req.events_if_granted = evs;
        req.n_events_if_granted = 2;
        Databuild__V1__ClaimResponse *resp = NULL;
        dbld_status st = {0};
        int rc =
            dbld_client_unary(c->el->client, "/databuild.v1.PartitionClaims/Claim", &req.base,
                              &databuild__v1__claim_response__descriptor, dbld_arena_allocator(a),
                              (ProtobufCMessage **)&resp, 30000, 0, &st);
        if (rc != DBLD_OK) {
            c->failed = 1;
            snprintf(c->error, sizeof c->error, "claimer %d group %d: %s: %s", c->id, k,
                     dbld_code_name(rc), st.msg);
            break;
        }
        c->outcome[k] = resp->outcome;
        snprintf(c->holder_br[k], sizeof c->holder_br[k], "%s", resp->holder_build_request_id);
        snprintf(c->holder_run[k], sizeof c->holder_run[k], "%s", resp->holder_job_run_id);
        for (int i = 0; i < 2; i++) {
            c->idx[k][i] = i < (int)resp->n_event_idx ? resp->event_idx[i] : 0;
            snprintf(c->event_id[k][i], sizeof c->event_id[k][i], "%s", evs[i]->event_id);
        }
    }
    dbld_arena_destroy(a);
    return NULL;
}

static void run_claimers(claimer *c, h_service *el, int round)
{
    for (int i = 0; i < CLAIMERS; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].el = el;
        c[i].id = i;
        c[i].round = round;
    }
    run_threads(claim_worker, c, sizeof *c, CLAIMERS);
    for (int i = 0; i < CLAIMERS; i++)
        CHECK_MSG(!c[i].failed, "%s", c[i].error);
}

DBLD_TEST(concurrent_claims)
{
    char dsn[1024];
    h_db_create("claims", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    static claimer c[CLAIMERS];
    run_claimers(c, el, 0);
    int holder[CLAIM_GROUPS];
    for (int k = 0; k < CLAIM_GROUPS; k++) {
        int granted = 0;
        holder[k] = -1;
        for (int i = 0; i < CLAIMERS; i++)
            if (c[i].outcome[k] == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED) {
                granted++;
                holder[k] = i;
            }
        CHECK_MSG(granted == 1, "group %d: %d claims granted", k, granted);
        if (holder[k] < 0) continue;
        char br[64], run[64];
        snprintf(br, sizeof br, "br-c%d", holder[k]);
        snprintf(run, sizeof run, "run-c%d-g%d-r0", holder[k], k);
        for (int i = 0; i < CLAIMERS; i++) {
            if (i == holder[k]) continue;
            CHECK_MSG(c[i].outcome[k] == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD,
                      "group %d claimer %d: outcome %d", k, i, c[i].outcome[k]);
            CHECK_EQ_STR(c[i].holder_br[k], br);
            CHECK_EQ_STR(c[i].holder_run[k], run);
        }
    }
    /* the granted claims' events are in the log once, at the answered idx */
    h_event_list all = h_list_all(el, a, NULL, 0);
    CHECK_EQ_INT(all.n, 2 * CLAIM_GROUPS);
    for (int k = 0; k < CLAIM_GROUPS; k++)
        for (int e = 0; holder[k] >= 0 && e < 2; e++) {
            const claimer *h = &c[holder[k]];
            int found = 0;
            for (size_t x = 0; x < all.n; x++)
                found += strcmp(all.events[x]->event_id, h->event_id[k][e]) == 0;
            CHECK_MSG(found == 1, "group %d event %d listed %d times", k, e, found);
            Databuild__V1__EventPage *page = NULL;
            dbld_status st = {0};
            CHECK_OK(h_list(el, a, NULL, h->idx[k][e], 1, &page, 30000, &st), st);
            CHECK_MSG(page->n_events == 1 && h->idx[k][e] > 0 &&
                          strcmp(page->events[0]->event_id, h->event_id[k][e]) == 0,
                      "group %d event %d: idx %lld holds another event", k, e,
                      (long long)h->idx[k][e]);
        }
    /* even groups become AVAILABLE */
    for (int k = 0; k < CLAIM_GROUPS; k += 2) {
        Databuild__V1__BuildEvent *evs[3];
        for (int r = 0; r < 3; r++)
            evs[r] =
                h_event_partition(a, "br-done", dbld_arena_printf(a, "claims/g%d/%c", k, 'a' + r),
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-done");
        h_append_ok(el, a, evs, 3);
    }
    run_claimers(c, el, 1);
    for (int k = 0; k < CLAIM_GROUPS; k++)
        for (int i = 0; i < CLAIMERS; i++) {
            int want = k % 2 == 0       ? DATABUILD__V1__CLAIM_OUTCOME__CLAIM_AVAILABLE
                       : i == holder[k] ? DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED
                                        : DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD;
            CHECK_MSG(c[i].outcome[k] == want, "round 1 group %d claimer %d: outcome %d, want %d",
                      k, i, c[i].outcome[k], want);
            if (want == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD && holder[k] >= 0) {
                char br[64];
                snprintf(br, sizeof br, "br-c%d", holder[k]);
                CHECK_EQ_STR(c[i].holder_br[k], br);
            }
        }
    dbld_arena_destroy(a);
    h_service_stop(el);
}

/* JobLogs/Append from many callers at once, group-committed together: 8
 * callers send overlapping windows of one run's 40 entries (and one repeats
 * an entry inside its request); every entry is stored once, the callers'
 * `stored` counts add up to 40, and a repeat of it all stores nothing. */
enum { LOG_ENTRIES = 40, LOG_CALLERS = 8 };

typedef struct log_caller {
    h_service *el;
    int id, calls;
    uint32_t stored;
    int failed;
    char error[512];
} log_caller;

static void *log_worker(void *arg)
{
    log_caller *c = arg;
    dbld_arena *a = dbld_arena_create();
    for (int call = 0; call < c->calls && !c->failed; call++) {
        dbld_arena_reset(a);
        Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
        req.entries = dbld_arena_alloc(a, 12 * sizeof *req.entries);
        int from = (c->id * 5 + call * 9) % LOG_ENTRIES;
        for (int k = 0; k < 11; k++) {
            int seq = k == 10 ? from + 1 : (from + k) % LOG_ENTRIES + 1; /* k == 10: a repeat */
            Databuild__V1__JobLogEntry *e =
                dbld_arena_msg(a, &databuild__v1__job_log_entry__descriptor);
            Databuild__V1__LogMessage *l =
                dbld_arena_msg(a, &databuild__v1__log_message__descriptor);
            e->timestamp = dbld_arena_printf(a, "%d", 1700000000 + seq);
            e->job_id = "logs-run";
            e->sequence_number = (uint64_t)seq;
            l->message = dbld_arena_printf(a, "line %d", seq);
            e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
            e->log = l;
            req.entries[req.n_entries++] = e;
        }
        Databuild__V1__AppendJobLogsResponse *resp = NULL;
        dbld_status st = {0};
        int rc =
            dbld_client_unary(c->el->client, "/databuild.v1.JobLogs/Append", &req.base,
                              &databuild__v1__append_job_logs_response__descriptor,
                              dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 30000, 0, &st);
        if (rc != DBLD_OK) {
            c->failed = 1;
            snprintf(c->error, sizeof c->error, "log caller %d: %s: %s", c->id, dbld_code_name(rc),
                     st.msg);
            break;
        }
        c->stored += resp->stored;
    }
    dbld_arena_destroy(a);
    return NULL;
}

static uint32_t run_log_callers(h_service *el)
{
    log_caller c[LOG_CALLERS];
    memset(c, 0, sizeof c);
    for (int i = 0; i < LOG_CALLERS; i++) {
        c[i].el = el;
        c[i].id = i;
        c[i].calls = 6;
    }
    run_threads(log_worker, c, sizeof *c, LOG_CALLERS);
    uint32_t stored = 0;
    for (int i = 0; i < LOG_CALLERS; i++) {
        CHECK_MSG(!c[i].failed, "%s", c[i].error);
        stored += c[i].stored;
    }
    return stored;
}

DBLD_TEST(concurrent_job_logs)
{
    char dsn[1024];
    h_db_create("joblogs", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    CHECK_EQ_INT(run_log_callers(el), LOG_ENTRIES);
    CHECK_EQ_INT(run_log_callers(el), 0);
    h_rows *r =
        h_sql(dsn, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM job_logs");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), LOG_ENTRIES);
    CHECK_EQ_INT(h_rows_i64(r, 0, 1), LOG_ENTRIES);
    CHECK_EQ_INT(h_rows_i64(r, 0, 2), 1);
    CHECK_EQ_INT(h_rows_i64(r, 0, 3), LOG_ENTRIES);
    h_rows_free(r);
    h_service_stop(el);
}

/* ---- lease fences ---- */

static int fenced_append(h_service *el, dbld_arena *a, const char *br, const char *owner,
                         Databuild__V1__BuildEvent *ev, dbld_status *st)
{
    Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
    req.events = &ev;
    req.n_events = 1;
    Databuild__V1__LeaseFence f = DATABUILD__V1__LEASE_FENCE__INIT;
    f.build_request_id = (char *)br;
    f.owner = (char *)owner;
    if (br) req.fence = &f;
    ProtobufCMessage *resp = NULL;
    dbld_status_clear(st);
    return dbld_client_unary(el->client, H_APPEND_PATH, &req.base,
                             &databuild__v1__append_response__descriptor, dbld_arena_allocator(a),
                             &resp, 30000, 0, st);
}

/* BuildLeases/Renew of one build; returns 1 when the owner holds it after. */
static int renew_lease(h_service *el, dbld_arena *a, const char *owner, const char *br,
                       uint32_t ttl_ms)
{
    Databuild__V1__RenewLeasesRequest req = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    req.owner = (char *)owner;
    req.build_request_ids = (char *[]){(char *)br};
    req.n_build_request_ids = 1;
    req.ttl_ms = ttl_ms;
    Databuild__V1__RenewLeasesResponse *resp = NULL;
    dbld_status st = {0};
    int rc = dbld_client_unary(el->client, "/databuild.v1.BuildLeases/Renew", &req.base,
                               &databuild__v1__renew_leases_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 30000, 0, &st);
    CHECK_OK(rc, st);
    return resp->n_lost == 0;
}

static size_t count_events(h_service *el, dbld_arena *a, const char *br)
{
    Databuild__V1__EventFilter f = DATABUILD__V1__EVENT_FILTER__INIT;
    f.build_request_ids = (char *[]){(char *)br};
    f.n_build_request_ids = 1;
    return h_list_all(el, a, &f, 0).n;
}

typedef struct fencer {
    h_service *el;
    int id;
    int ok_fenced, ok_free, refused, other;
    char error[512];
} fencer;

#define FENCE_ROUNDS 30

/* Refused, accepted fenced and unfenced appends at once: they share group
 * commits, and a refusal must not fail (or let through) anything else. */
static void *fence_worker(void *arg)
{
    fencer *f = arg;
    dbld_arena *a = dbld_arena_create();
    for (int i = 0; i < FENCE_ROUNDS; i++) {
        dbld_arena_reset(a);
        dbld_status st;
        int kind = (i + f->id) % 3;
        const char *br = kind == 2 ? "br-fence-free" : "br-fence";
        int rc =
            fenced_append(f->el, a, kind == 2 ? NULL : br, kind == 0 ? "graph-new" : "graph-old",
                          h_event_build_cancel(a, br, kind == 1 ? "stale" : "fresh"), &st);
        if (kind == 1 && rc == DBLD_FAILED_PRECONDITION)
            f->refused++;
        else if (kind == 0 && rc == DBLD_OK)
            f->ok_fenced++;
        else if (kind == 2 && rc == DBLD_OK)
            f->ok_free++;
        else if (!f->other++)
            snprintf(f->error, sizeof f->error, "kind %d: %s: %s", kind, dbld_code_name(rc),
                     st.msg);
    }
    dbld_arena_destroy(a);
    return NULL;
}

DBLD_TEST(lease_fence)
{
    char dsn[1024];
    h_db_create("fence", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_status st;
    const char *br = "br-fence";

    /* no lease yet: refused, nothing written */
    int rc = fenced_append(el, a, br, "graph-old", h_event_build_cancel(a, br, "x"), &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "build br-fence has no lease");
    /* a fence names both */
    rc = fenced_append(el, a, br, "", h_event_build_cancel(a, br, "x"), &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_EQ_INT(count_events(el, a, br), 0);

    CHECK(renew_lease(el, a, "graph-old", br, 60000));
    CHECK_OK(fenced_append(el, a, br, "graph-old", h_event_build_cancel(a, br, "1"), &st), st);
    rc = fenced_append(el, a, br, "graph-other", h_event_build_cancel(a, br, "x"), &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "coordinated by graph-old, not by graph-other");
    /* expired but not taken over: still the owner's */
    CHECK(renew_lease(el, a, "graph-old", br, 1));
    dbld_sleep_ms(20);
    CHECK_OK(fenced_append(el, a, br, "graph-old", h_event_build_cancel(a, br, "2"), &st), st);
    /* taken over: the old owner is fenced out, appends and claims alike */
    CHECK(renew_lease(el, a, "graph-new", br, 60000));
    CHECK(!renew_lease(el, a, "graph-old", br, 60000));
    rc = fenced_append(el, a, br, "graph-old", h_event_build_cancel(a, br, "x"), &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "coordinated by graph-new, not by graph-old");
    CHECK_EQ_INT(count_events(el, a, br), 2);

    char *refs[] = {"fence/p1"};
    Databuild__V1__BuildEvent *evs[] = {h_event_partition(
        a, br, refs[0], DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-old")};
    Databuild__V1__ClaimRequest cr = DATABUILD__V1__CLAIM_REQUEST__INIT;
    cr.build_request_id = (char *)br;
    cr.job_run_id = "run-old";
    cr.refs = refs;
    cr.n_refs = 1;
    cr.events_if_granted = evs;
    cr.n_events_if_granted = 1;
    cr.lease_owner = "graph-old";
    Databuild__V1__ClaimResponse *cresp = NULL;
    rc = dbld_client_unary(el->client, "/databuild.v1.PartitionClaims/Claim", &cr.base,
                           &databuild__v1__claim_response__descriptor, dbld_arena_allocator(a),
                           (ProtobufCMessage **)&cresp, 30000, 0, &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    h_rows *r = h_sql(dsn, "SELECT count(*) FROM claims WHERE ref = 'fence/p1'");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), 0);
    h_rows_free(r);
    CHECK_EQ_INT(count_events(el, a, br), 2);
    cr.lease_owner = "graph-new";
    cr.job_run_id = "run-new";
    evs[0] = h_event_partition(a, br, refs[0], DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                               "run-new");
    rc = dbld_client_unary(el->client, "/databuild.v1.PartitionClaims/Claim", &cr.base,
                           &databuild__v1__claim_response__descriptor, dbld_arena_allocator(a),
                           (ProtobufCMessage **)&cresp, 30000, 0, &st);
    CHECK_OK(rc, st);
    CHECK_EQ_INT(cresp->outcome, DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED);
    CHECK_EQ_INT(count_events(el, a, br), 3);

    /* mixed, concurrent */
    static fencer f[8];
    for (int i = 0; i < 8; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].el = el;
        f[i].id = i;
    }
    run_threads(fence_worker, f, sizeof *f, 8);
    int ok_fenced = 0, ok_free = 0, refused = 0;
    for (int i = 0; i < 8; i++) {
        CHECK_MSG(f[i].other == 0, "fencer %d: %d unexpected answers, first %s", i, f[i].other,
                  f[i].error);
        ok_fenced += f[i].ok_fenced;
        ok_free += f[i].ok_free;
        refused += f[i].refused;
    }
    CHECK_EQ_INT(ok_fenced + ok_free + refused, 8 * FENCE_ROUNDS);
    CHECK_EQ_INT(count_events(el, a, br), 3 + (size_t)ok_fenced);
    CHECK_EQ_INT(count_events(el, a, "br-fence-free"), ok_free);
    Databuild__V1__EventFilter ef = DATABUILD__V1__EVENT_FILTER__INIT;
    ef.build_request_ids = (char *[]){(char *)br};
    ef.n_build_request_ids = 1;
    h_event_list all = h_list_all(el, a, &ef, 0);
    for (size_t i = 0; i < all.n; i++)
        if (all.events[i]->event_type_case ==
            DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT)
            CHECK_MSG(strcmp(all.events[i]->build_cancel_event->reason, "stale") != 0,
                      "a fenced-out append landed");
    dbld_arena_destroy(a);
    h_service_stop(el);
}

/* AppendRequest.job_logs: a short run's log with its result events, in their
 * transaction and under their fence (the graph service sends it so). */
static int append_with_logs(h_service *el, dbld_arena *a, const char *br, const char *owner,
                            const char *run, uint64_t first_seq, size_t n_logs, dbld_status *st)
{
    Databuild__V1__BuildEvent *ev = h_event_build_cancel(a, br, "with logs");
    Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
    req.events = &ev;
    req.n_events = 1;
    Databuild__V1__LeaseFence f = DATABUILD__V1__LEASE_FENCE__INIT;
    f.build_request_id = (char *)br;
    f.owner = (char *)owner;
    req.fence = &f;
    req.job_logs = dbld_arena_alloc(a, (n_logs + 1) * sizeof *req.job_logs);
    for (size_t i = 0; i < n_logs; i++) {
        Databuild__V1__JobLogEntry *e =
            dbld_arena_msg(a, &databuild__v1__job_log_entry__descriptor);
        e->job_id = (char *)run;
        e->sequence_number = first_seq ? first_seq + i : 0;
        Databuild__V1__LogMessage *m = dbld_arena_msg(a, &databuild__v1__log_message__descriptor);
        m->message = dbld_arena_printf(a, "line %zu", i);
        e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
        e->log = m;
        req.job_logs[i] = e;
    }
    req.n_job_logs = n_logs;
    ProtobufCMessage *resp = NULL;
    dbld_status_clear(st);
    return dbld_client_unary(el->client, H_APPEND_PATH, &req.base,
                             &databuild__v1__append_response__descriptor, dbld_arena_allocator(a),
                             &resp, 30000, 0, st);
}

static int64_t count_logs(const char *dsn, const char *run)
{
    h_rows *r = h_sql(dsn, "SELECT count(*) FROM job_logs WHERE job_run_id = $1", run);
    int64_t n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

DBLD_TEST(append_with_job_logs)
{
    char dsn[1024];
    h_db_create("applogs", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_status st;
    const char *br = "br-applogs";
    CHECK(renew_lease(el, a, "graph-a", br, 60000));
    CHECK_OK(append_with_logs(el, a, br, "graph-a", "run-applogs", 1, 3, &st), st);
    CHECK_EQ_INT(count_events(el, a, br), 1);
    CHECK_EQ_INT(count_logs(dsn, "run-applogs"), 3);
    /* a resend stores the entries once */
    CHECK_OK(append_with_logs(el, a, br, "graph-a", "run-applogs", 1, 3, &st), st);
    CHECK_EQ_INT(count_logs(dsn, "run-applogs"), 3);
    /* fenced out: neither the events nor the log */
    int rc = append_with_logs(el, a, br, "graph-b", "run-applogs", 4, 2, &st);
    CHECK_CODE(rc, st, DBLD_FAILED_PRECONDITION);
    CHECK_EQ_INT(count_logs(dsn, "run-applogs"), 3);
    /* an entry the event log cannot store refuses the request, naming it */
    rc = append_with_logs(el, a, br, "graph-a", "run-applogs", 0, 1, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "job_logs");
    CHECK_CONTAINS(st.msg, "sequence_number");
    CHECK_EQ_INT(count_logs(dsn, "run-applogs"), 3);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(concurrent_appenders), DBLD_TEST_ENTRY(same_event_from_many_callers),
               DBLD_TEST_ENTRY(concurrent_claims), DBLD_TEST_ENTRY(concurrent_job_logs),
               DBLD_TEST_ENTRY(lease_fence), DBLD_TEST_ENTRY(append_with_job_logs),
               DBLD_TEST_ENTRY_T(two_replicas, 240))
