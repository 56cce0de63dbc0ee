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

static void run_workers(worker *w, int n)
{
    pthread_t th[64];
    for (int i = 0; i < n; i++)
        if (pthread_create(&th[i], NULL, append_worker, &w[i]) != 0)
            H_FAIL("pthread_create");
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < n; i++)
        CHECK_MSG(!w[i].failed, "%s", w[i].error);
}

DBLD_TEST(concurrent_appenders)
{
    char dsn[1024];
    h_db_create("concurrent", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    h_acklog *log = h_acklog_new();
    enum { SINGLE = 16, BATCHERS = 4 };
    worker w[SINGLE + BATCHERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < SINGLE + BATCHERS; i++) {
        w[i].targets = &el;
        w[i].n_targets = 1;
        w[i].log = log;
        w[i].id = i;
        w[i].calls = i < SINGLE ? 200 : 25;
        w[i].batch_max = i < SINGLE ? 1 : 50;
    }
    int64_t t0 = dbld_mono_ms();
    run_workers(w, SINGLE + BATCHERS);
    size_t acked = h_acklog_count(log);
    h_note("%zu events acked in %lld ms", acked, (long long)(dbld_mono_ms() - t0));
    CHECK_CMP_INT(acked, >=, SINGLE * 200 + BATCHERS * 25);
    size_t listed = h_acklog_verify(log, el, H_VERIFY_EXACT | H_VERIFY_BATCHES | H_VERIFY_IDX);
    CHECK_EQ_INT(listed, acked);
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
            snprintf(r->error, sizeof r->error, "racer %d: %s: %s", r->id, dbld_code_name(rc), st.msg);
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
        if (pthread_create(&th[c], NULL, race_worker, &r[c]) != 0)
            H_FAIL("pthread_create");
    }
    for (int c = 0; c < RACE_CALLERS; c++)
        pthread_join(th[c], NULL);
    for (int c = 0; c < RACE_CALLERS; c++)
        CHECK_MSG(!r[c].failed, "%s", r[c].error);
    for (int i = 0; i < RACE_IDS; i++) {
        int fresh = 0;
        for (int c = 0; c < RACE_CALLERS; c++) {
            CHECK_MSG(r[c].idx[i] == r[0].idx[i], "event %d: caller %d got idx %lld, caller 0 got %lld",
                      i, c, (long long)r[c].idx[i], (long long)r[0].idx[i]);
            fresh += !r[c].dup[i];
        }
        CHECK_MSG(fresh == 1, "event %d: %d callers were told it was new (duplicate=false)", i, fresh);
    }
    h_event_list all = h_list_all(el, a, NULL, 0);
    CHECK_EQ_INT(all.n, RACE_IDS);
    int seen[RACE_IDS] = {0};
    for (size_t k = 0; k < all.n; k++)
        for (int i = 0; i < RACE_IDS; i++)
            if (strcmp(all.events[k]->event_id, evs[i]->event_id) == 0)
                seen[i]++;
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
                      "round %d: replica %s: databuild.v1.EventLog not SERVING", round, rep[i]->name);
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

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(concurrent_appenders), DBLD_TEST_ENTRY(same_event_from_many_callers),
               DBLD_TEST_ENTRY_T(two_replicas, 240))
