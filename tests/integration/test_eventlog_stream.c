/* test_eventlog_stream.c - Subscribe: stored events first, then new ones as
 * they commit, in idx order with no gaps or repeats; filters; start_idx;
 * many concurrent streams (which must not starve unary calls); a subscriber
 * racing concurrent appenders on one and on two replicas; the cap on open
 * streams and the threads they cost; a reader too slow for the commit feed.
 */
#include "harness.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define LIVE_WAIT_MS 10000 /* a committed event reaches a subscriber within this */
#define QUIET_MS 1500      /* and nothing else arrives within this */

/* CHECK the next streamed event is `want` (byte-identical) with idx `idx`. */
#define EXPECT_NEXT(st, a, want, idx) expect_next(__FILE__, __LINE__, st, a, want, idx)
static void expect_next(const char *file, int line, dbld_stream *st, dbld_arena *a,
                        const Databuild__V1__BuildEvent *want, int64_t idx)
{
    Databuild__V1__IndexedEvent *ie;
    dbld_status status = {0};
    int rc = h_stream_next(st, a, &ie, LIVE_WAIT_MS, &status);
    if (rc != DBLD_OK || !ie)
        h_fail(file, line, "waiting for event %s (idx %lld): %s: %s", want->event_id,
               (long long)idx, dbld_code_name(rc), status.msg);
    if (!ie->event || strcmp(ie->event->event_id, want->event_id) != 0 || ie->idx != idx)
        h_fail(file, line, "streamed (idx %lld, %s), want (idx %lld, %s)", (long long)ie->idx,
               ie->event ? ie->event->event_id : "(no event)", (long long)idx, want->event_id);
    if (!h_msg_equal(&ie->event->base, &want->base))
        h_fail(file, line, "streamed event %s differs from the appended one", want->event_id);
}

#define EXPECT_QUIET(st, a) expect_quiet(__FILE__, __LINE__, st, a)
static void expect_quiet(const char *file, int line, dbld_stream *st, dbld_arena *a)
{
    Databuild__V1__IndexedEvent *ie;
    dbld_status status = {0};
    int rc = h_stream_next(st, a, &ie, QUIET_MS, &status);
    if (rc == DBLD_OK)
        h_fail(file, line, "unexpected streamed event idx %lld %s", (long long)ie->idx,
               ie->event ? ie->event->event_id : "");
    if (rc != DBLD_DEADLINE_EXCEEDED)
        h_fail(file, line, "stream ended: %s: %s", dbld_code_name(rc), status.msg);
}

static Databuild__V1__BuildEvent *ev(dbld_arena *a, const char *br, int i)
{
    Databuild__V1__BuildEvent *e =
        h_event_partition(a, br, dbld_arena_printf(a, "s/%s/p=%d", br, i),
                          DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-s");
    e->timestamp = 1767225600000000000LL + i;
    return e;
}

DBLD_TEST(subscribe_past_then_live)
{
    char dsn[1024];
    h_db_create("sub", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e[30];
    int64_t idx[30];
    for (int i = 0; i < 30; i++)
        e[i] = ev(a, "br", i);
    for (int b = 0; b < 4; b++) { /* 20 stored events, in batches of 5 */
        Databuild__V1__AppendResponse *r = h_append_ok(el, a, e + b * 5, 5);
        for (int i = 0; i < 5; i++)
            idx[b * 5 + i] = r->events[i]->idx;
    }
    dbld_stream *st = h_subscribe(el, NULL, 0);
    for (int i = 0; i < 20; i++)
        EXPECT_NEXT(st, a, e[i], idx[i]);
    EXPECT_QUIET(st, a);
    /* live: each appended event arrives */
    for (int i = 20; i < 30; i++) {
        Databuild__V1__AppendResponse *r = h_append_ok(el, a, &e[i], 1);
        idx[i] = r->events[0]->idx;
        EXPECT_NEXT(st, a, e[i], idx[i]);
    }
    /* a re-append (duplicate) is not a new event */
    h_append_ok(el, a, &e[3], 1);
    EXPECT_QUIET(st, a);
    dbld_stream_close(st);

    /* a second subscriber from the start sees all 30 */
    st = h_subscribe(el, NULL, 0);
    for (int i = 0; i < 30; i++)
        EXPECT_NEXT(st, a, e[i], idx[i]);
    dbld_stream_close(st);
    h_service_stop(el);
}

DBLD_TEST(subscribe_start_idx)
{
    char dsn[1024];
    h_db_create("subidx", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e[12];
    for (int i = 0; i < 12; i++)
        e[i] = ev(a, "br", i);
    Databuild__V1__AppendResponse *r = h_append_ok(el, a, e, 10);
    int64_t idx[12];
    for (int i = 0; i < 10; i++)
        idx[i] = r->events[i]->idx;

    dbld_stream *mid = h_subscribe(el, NULL, idx[7]);
    for (int i = 7; i < 10; i++)
        EXPECT_NEXT(mid, a, e[i], idx[i]);
    dbld_stream *after = h_subscribe(el, NULL, idx[9] + 1); /* nothing stored yet */
    EXPECT_QUIET(after, a);
    r = h_append_ok(el, a, e + 10, 2);
    idx[10] = r->events[0]->idx;
    idx[11] = r->events[1]->idx;
    for (int i = 10; i < 12; i++) {
        EXPECT_NEXT(mid, a, e[i], idx[i]);
        EXPECT_NEXT(after, a, e[i], idx[i]);
    }
    EXPECT_QUIET(mid, a);
    dbld_stream_close(mid);
    dbld_stream_close(after);
    h_service_stop(el);
}

DBLD_TEST(subscribe_filtered)
{
    char dsn[1024];
    h_db_create("subfilter", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e[20];
    int64_t idx[20];
    for (int i = 0; i < 20; i++)
        e[i] = ev(a, i % 2 ? "brY" : "brX", i);
    Databuild__V1__AppendResponse *r = h_append_ok(el, a, e, 10);
    for (int i = 0; i < 10; i++)
        idx[i] = r->events[i]->idx;

    dbld_stream *by_br = h_subscribe(el, h_filter(a, NULL, NULL, NULL, NULL, H_STRS("brX")), 0);
    dbld_stream *by_pat =
        h_subscribe(el, h_filter(a, NULL, H_STRS("s/brY/p=1[0-9]"), NULL, NULL, NULL), 0);
    for (int i = 0; i < 10; i += 2)
        EXPECT_NEXT(by_br, a, e[i], idx[i]);
    EXPECT_QUIET(by_pat, a);        /* no stored brY event >= 10 */
    for (int i = 10; i < 20; i++) { /* live, interleaved */
        r = h_append_ok(el, a, &e[i], 1);
        idx[i] = r->events[0]->idx;
    }
    for (int i = 10; i < 20; i += 2)
        EXPECT_NEXT(by_br, a, e[i], idx[i]);
    for (int i = 11; i < 20; i += 2)
        EXPECT_NEXT(by_pat, a, e[i], idx[i]);
    EXPECT_QUIET(by_br, a);
    EXPECT_QUIET(by_pat, a);
    dbld_stream_close(by_br);
    dbld_stream_close(by_pat);
    h_service_stop(el);
}

/* A filtered subscriber whose filter skips the newest events waits for the
 * next commit instead of querying again at once: while it sits idle the
 * event log runs about four transactions a second (its health ping and the
 * stream's 500 ms poll), where a spinning stream ran thousands. Counted with
 * pg_stat_database.xact_commit over 3 s (at least two stats reports of a
 * busy backend). The matching event still arrives. */
DBLD_TEST(subscribe_filtered_does_not_spin)
{
    char dsn[1024];
    h_db_create("subspin", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_stream *st = h_subscribe(el, h_filter(a, H_STRS("wanted/y"), NULL, NULL, NULL, NULL), 0);
    Databuild__V1__BuildEvent *other[3];
    for (int i = 0; i < 3; i++)
        other[i] = ev(a, "unrelated", i);
    h_append_ok(el, a, other, 3);
    EXPECT_QUIET(st, a); /* the stream has seen the unrelated events by now */
    long long before = h_pg_xact_commits(dsn);
    int64_t t0 = dbld_mono_ms();
    EXPECT_QUIET(st, a);
    EXPECT_QUIET(st, a);
    long long commits = h_pg_xact_commits(dsn) - before;
    h_note("%lld transactions in %lld ms with an idle filtered subscriber", commits,
           (long long)(dbld_mono_ms() - t0));
    CHECK_CMP_INT(commits, <, 60);
    Databuild__V1__BuildEvent *wanted = h_event_partition(
        a, "br", "wanted/y", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-y");
    wanted->timestamp = 1767225600000000000LL;
    Databuild__V1__AppendResponse *r = h_append_ok(el, a, &wanted, 1);
    EXPECT_NEXT(st, a, wanted, r->events[0]->idx);
    EXPECT_QUIET(st, a);
    dbld_stream_close(st);
    h_service_stop(el);
}

/* ------------------------------------------ subscriber vs concurrent appends */

typedef struct reader {
    dbld_stream *st;
    atomic_int stop;
    /* results */
    int64_t *idx;
    char (*ids)[40];
    size_t n, cap;
    int error;
    char msg[512];
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    dbld_arena *a = dbld_arena_create();
    for (;;) {
        Databuild__V1__IndexedEvent *ie;
        dbld_status st = {0};
        int rc = h_stream_next(r->st, a, &ie, 200, &st);
        if (rc == DBLD_DEADLINE_EXCEEDED) {
            if (atomic_load(&r->stop)) break;
            continue;
        }
        if (rc != DBLD_OK) {
            r->error = 1;
            snprintf(r->msg, sizeof r->msg, "stream ended after %zu events: %s: %s", r->n,
                     dbld_code_name(rc), st.msg);
            break;
        }
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 1024;
            r->idx = dbld_xrealloc(r->idx, r->cap * sizeof *r->idx);
            r->ids = dbld_xrealloc(r->ids, r->cap * sizeof *r->ids);
        }
        r->idx[r->n] = ie->idx;
        snprintf(r->ids[r->n], sizeof r->ids[r->n], "%s", ie->event ? ie->event->event_id : "");
        r->n++;
        dbld_arena_reset(a);
    }
    dbld_arena_destroy(a);
    return NULL;
}

typedef struct appender {
    h_service **targets;
    int n_targets;
    h_acklog *log;
    int id, calls;
    int failed;
    char msg[512];
} appender;

static void *appender_main(void *arg)
{
    appender *w = arg;
    dbld_arena *a = dbld_arena_create();
    for (int c = 0; c < w->calls && !w->failed; c++) {
        dbld_arena_reset(a);
        size_t n = (size_t)((c + w->id) % 4) + 1;
        Databuild__V1__BuildEvent *evs[4];
        for (size_t i = 0; i < n; i++)
            evs[i] = h_event_job(a, "br-conc", dbld_arena_printf(a, "run-%d-%d", w->id, c), "//j:x",
                                 DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_STRS("c/x"));
        h_service *s = w->targets[(c + w->id) % w->n_targets];
        Databuild__V1__AppendResponse *r;
        dbld_status st = {0};
        int64_t sent = dbld_mono_ms();
        int rc = h_append(s, a, evs, n, &r, 30000, &st);
        if (rc != DBLD_OK) {
            w->failed = 1;
            snprintf(w->msg, sizeof w->msg, "appender %d via %s: %s: %s", w->id, s->name,
                     dbld_code_name(rc), st.msg);
            break;
        }
        h_acklog_add(w->log, r, sent, dbld_mono_ms());
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* Subscribe on targets[0] from 0 while 8 appenders write through all targets;
 * the stream must deliver exactly the acked events, idx increasing, no gaps. */
static void subscriber_vs_appenders(h_service **targets, int n_targets)
{
    reader rd;
    memset(&rd, 0, sizeof rd);
    rd.st = h_subscribe(targets[0], NULL, 0);
    pthread_t rt;
    if (pthread_create(&rt, NULL, reader_main, &rd) != 0) H_FAIL("pthread_create");
    h_acklog *log = h_acklog_new();
    enum { W = 8 };
    appender w[W];
    pthread_t th[W];
    memset(w, 0, sizeof w);
    for (int i = 0; i < W; i++) {
        w[i] = (appender){
            .targets = targets, .n_targets = n_targets, .log = log, .id = i, .calls = 120};
        if (pthread_create(&th[i], NULL, appender_main, &w[i]) != 0) H_FAIL("pthread_create");
    }
    for (int i = 0; i < W; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < W; i++)
        CHECK_MSG(!w[i].failed, "%s", w[i].msg);
    size_t n_acked;
    h_ack *acked = h_acklog_sorted(log, &n_acked);
    /* wait for the stream to catch up (a condition, polled) */
    int caught_up = H_POLL_UNTIL(30000, rd.error || rd.n >= n_acked);
    atomic_store(&rd.stop, 1);
    pthread_join(rt, NULL);
    CHECK_MSG(!rd.error, "%s", rd.msg);
    CHECK_MSG(caught_up, "subscriber received %zu of %zu acked events within 30 s", rd.n, n_acked);
    for (size_t i = 0; i < rd.n; i++) {
        if (i > 0)
            CHECK_MSG(rd.idx[i] > rd.idx[i - 1], "stream idx %lld after %lld (position %zu)",
                      (long long)rd.idx[i], (long long)rd.idx[i - 1], i);
        CHECK_MSG(i < n_acked, "stream delivered %zu events, only %zu were appended", rd.n,
                  n_acked);
        CHECK_MSG(strcmp(rd.ids[i], acked[i].event_id) == 0 && rd.idx[i] == acked[i].idx,
                  "stream position %zu: (idx %lld, %s), acked order has (idx %lld, %s)", i,
                  (long long)rd.idx[i], rd.ids[i], (long long)acked[i].idx, acked[i].event_id);
    }
    CHECK_EQ_INT(rd.n, n_acked);
    dbld_stream_close(rd.st);
    free(acked);
    free(rd.idx);
    free(rd.ids);
    h_acklog_verify(log, targets[n_targets - 1], H_VERIFY_EXACT | H_VERIFY_BATCHES);
}

DBLD_TEST(subscribe_while_appending)
{
    char dsn[1024];
    h_db_create("subconc", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    subscriber_vs_appenders(&el, 1);
    h_service_stop(el);
}

DBLD_TEST(subscribe_while_appending_two_replicas)
{
    char dsn[1024];
    h_db_create("subrepl", dsn, sizeof dsn);
    h_service *rep[2];
    rep[0] = h_service_start("eventlog", dsn, NULL);
    rep[1] = h_service_start("eventlog", dsn, NULL);
    subscriber_vs_appenders(rep, 2);
    h_service_stop(rep[0]);
    h_service_stop(rep[1]);
}

/* More open streams than worker threads: unary calls still answer, every
 * stream gets new events, and closing some leaves the others working. */
DBLD_TEST(many_streams_do_not_starve_unary)
{
    char dsn[1024];
    h_db_create("manystreams", dsn, sizeof dsn);
    h_service_opts o = {.workers = 2};
    h_service *el = h_service_start("eventlog", dsn, &o);
    dbld_arena *a = dbld_arena_create();
    enum { S = 24 };
    dbld_stream *st[S];
    for (int i = 0; i < S; i++)
        st[i] = h_subscribe(el, NULL, 0);
    /* unary calls are answered while the streams are open */
    Databuild__V1__BuildEvent *e1 = ev(a, "br", 1);
    Databuild__V1__AppendResponse *r;
    dbld_status status = {0};
    CHECK_OK(h_append(el, a, &e1, 1, &r, 5000, &status), status);
    int64_t idx1 = r->events[0]->idx;
    Databuild__V1__EventPage *page;
    CHECK_OK(h_list(el, a, NULL, 0, 0, &page, 5000, &status), status);
    CHECK_EQ_INT(page->n_events, 1);
    int serving = 0;
    CHECK_OK(h_service_health(el, "", &serving, &status), status);
    CHECK(serving);
    for (int i = 0; i < S; i++)
        EXPECT_NEXT(st[i], a, e1, idx1);
    /* cancel half of them */
    for (int i = 0; i < S / 2; i++)
        dbld_stream_close(st[i]);
    Databuild__V1__BuildEvent *e2 = ev(a, "br", 2);
    CHECK_OK(h_append(el, a, &e2, 1, &r, 5000, &status), status);
    for (int i = S / 2; i < S; i++)
        EXPECT_NEXT(st[i], a, e2, r->events[0]->idx);
    for (int i = S / 2; i < S; i++)
        dbld_stream_close(st[i]);
    /* and the service is still well */
    CHECK_OK(h_list(el, a, NULL, 0, 0, &page, 5000, &status), status);
    CHECK_EQ_INT(page->n_events, 2);
    CHECK(h_service_alive(el));
    h_service_stop(el);
}

/* ---------------------------------------------- the cap, threads, the feed */

/* Threads of a process (entries of /proc/<pid>/task). */
static int thread_count(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    CHECK_MSG(d, "cannot read %s", path);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

enum { CAP = 64, ATTEMPTS = 2000 };

/* 2,000 Subscribe attempts against eventlog.max_streams = 64: exactly 64 are
 * served, the others get RESOURCE_EXHAUSTED naming the cap, and the
 * process's thread count stays within the cap of what it was. The open
 * streams cost no queries while idle (one shared reader of new commits, not
 * a poll per stream), all of them get a new event, and once they are closed
 * new streams are served again. */
DBLD_TEST(stream_cap_bounds_threads)
{
    char dsn[1024];
    h_db_create("streamcap", dsn, sizeof dsn);
    h_service_opts o = {.extra_section = "  max_streams: 64"};
    h_service *el = h_service_start("eventlog", dsn, &o);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *first = ev(a, "cap", 0);
    int64_t idx0 = h_append_ok(el, a, &first, 1)->events[0]->idx;
    int base = thread_count(el->pid);
    long long commits0 = h_pg_xact_commits(dsn);
    static dbld_stream *st[ATTEMPTS];
    for (int i = 0; i < ATTEMPTS; i++)
        st[i] = h_subscribe(el, NULL, 0);
    int served = 0, refused = 0, peak = 0;
    for (int i = 0; i < ATTEMPTS; i++) {
        Databuild__V1__IndexedEvent *ie;
        dbld_status status = {0};
        int rc = h_stream_next(st[i], a, &ie, LIVE_WAIT_MS, &status);
        if (rc == DBLD_OK) {
            CHECK_EQ_INT(ie->idx, idx0);
            served++;
        } else {
            CHECK_CODE(rc, status, DBLD_RESOURCE_EXHAUSTED);
            CHECK_CONTAINS(status.msg, "eventlog.max_streams");
            CHECK_CONTAINS(status.msg, "is 64");
            dbld_stream_close(st[i]);
            st[i] = NULL;
            refused++;
        }
        int threads = thread_count(el->pid);
        if (threads > peak) peak = threads;
        if (i % 100 == 0) dbld_arena_reset(a);
    }
    h_note("%d served, %d refused; threads: %d before, at most %d with the streams open", served,
           refused, base, peak);
    CHECK_EQ_INT(served, CAP);
    CHECK_EQ_INT(refused, ATTEMPTS - CAP);
    /* one thread per open stream and no more: the cap bounds them (plus a
     * few that gRPC may start under load; the commit feed's is in base) */
    CHECK_CMP_INT(peak, <=, base + CAP + 8);

    /* Settled: the streams' catch-up reads are over and PostgreSQL has
     * counted them (a backend's commit count may reach pg_stat_database
     * up to 10 s late, PGSTAT_IDLE_INTERVAL, when the machine is busy): at
     * least one transaction per served stream since they were opened, and
     * then a quiet period. Stable alone is not enough: with none of the
     * counts flushed yet the count looks stable too, and the late flush
     * then lands in the measured window (83 transactions, in a full run). */
    long long before = h_pg_xact_commits(dsn);
    for (int settle = 0; settle < 20; settle++) {
        EXPECT_QUIET(st[0], a);
        long long now = h_pg_xact_commits(dsn);
        int stable = now - before < 4 && now - commits0 >= CAP;
        before = now;
        if (stable) break;
    }
    h_note("%lld transactions counted since the streams were opened", before - commits0);
    int64_t t0 = dbld_mono_ms();
    EXPECT_QUIET(st[0], a);
    EXPECT_QUIET(st[0], a);
    long long commits = h_pg_xact_commits(dsn) - before;
    h_note("%lld transactions in %lld ms with %d idle streams", commits,
           (long long)(dbld_mono_ms() - t0), CAP);
    CHECK_CMP_INT(commits, <, 60);

    Databuild__V1__BuildEvent *next = ev(a, "cap", 1);
    int64_t idx1 = h_append_ok(el, a, &next, 1)->events[0]->idx;
    for (int i = 0; i < ATTEMPTS; i++)
        if (st[i]) EXPECT_NEXT(st[i], a, next, idx1);
    for (int i = 0; i < ATTEMPTS; i++)
        if (st[i]) dbld_stream_close(st[i]);
    /* the closed streams' places are free again (each notices its
     * cancellation within a quarter second) */
    int again = 0;
    for (int tries = 0; tries < 200 && again < CAP; tries++) {
        dbld_stream *s = h_subscribe(el, NULL, idx1);
        Databuild__V1__IndexedEvent *ie;
        dbld_status status = {0};
        int rc = h_stream_next(s, a, &ie, LIVE_WAIT_MS, &status);
        if (rc == DBLD_OK) {
            st[again++] = s;
        } else {
            CHECK_CODE(rc, status, DBLD_RESOURCE_EXHAUSTED);
            dbld_stream_close(s);
            dbld_sleep_ms(50);
        }
    }
    CHECK_EQ_INT(again, CAP);
    for (int i = 0; i < again; i++)
        dbld_stream_close(st[i]);
    CHECK(h_service_alive(el));
    h_service_stop(el);
}

/* A reader that stops reading while 20,000 events commit - more than the
 * commit feed keeps - later gets every one of them, in order, without a gap
 * or a repeat (it reads PostgreSQL until it is back inside the feed), and
 * then live events again. */
DBLD_TEST(subscribe_slow_reader_catches_up)
{
    char dsn[1024];
    h_db_create("subslow", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_stream *st = h_subscribe(el, NULL, 0);
    enum { CALLS = 20, PER_CALL = 1000 };
    static int64_t idx[CALLS * PER_CALL];
    static char ids[CALLS * PER_CALL][40];
    for (int c = 0; c < CALLS; c++) {
        dbld_arena_reset(a);
        Databuild__V1__BuildEvent *evs[PER_CALL];
        for (int i = 0; i < PER_CALL; i++)
            evs[i] = ev(a, "slow", c * PER_CALL + i);
        Databuild__V1__AppendResponse *r = h_append_ok(el, a, evs, PER_CALL);
        for (int i = 0; i < PER_CALL; i++) {
            idx[c * PER_CALL + i] = r->events[i]->idx;
            snprintf(ids[c * PER_CALL + i], sizeof ids[0], "%s", r->events[i]->event_id);
        }
    }
    for (int i = 0; i < CALLS * PER_CALL; i++) {
        if (i % 500 == 0) dbld_arena_reset(a);
        Databuild__V1__IndexedEvent *ie;
        dbld_status status = {0};
        int rc = h_stream_next(st, a, &ie, LIVE_WAIT_MS, &status);
        CHECK_MSG(rc == DBLD_OK, "event %d of %d: %s: %s", i, CALLS * PER_CALL, dbld_code_name(rc),
                  status.msg);
        CHECK_MSG(ie->idx == idx[i] && strcmp(ie->event->event_id, ids[i]) == 0,
                  "position %d: streamed (idx %lld, %s), want (idx %lld, %s)", i,
                  (long long)ie->idx, ie->event->event_id, (long long)idx[i], ids[i]);
    }
    EXPECT_QUIET(st, a);
    Databuild__V1__BuildEvent *live = ev(a, "slow-live", 0);
    EXPECT_NEXT(st, a, live, h_append_ok(el, a, &live, 1)->events[0]->idx);
    dbld_stream_close(st);
    h_service_stop(el);
}

/* Events written only through another replica reach a stream whose own
 * replica writes nothing (the commit feed's shared poll), filtered. */
DBLD_TEST(subscribe_sees_other_replica)
{
    char dsn[1024];
    h_db_create("subother", dsn, sizeof dsn);
    h_service *rep[2];
    rep[0] = h_service_start("eventlog", dsn, NULL);
    rep[1] = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    dbld_stream *all = h_subscribe(rep[0], NULL, 0);
    dbld_stream *some =
        h_subscribe(rep[0], h_filter(a, NULL, H_STRS("s/other/p=[13]"), NULL, NULL, NULL), 0);
    EXPECT_QUIET(all, a);
    for (int i = 0; i < 4; i++) {
        Databuild__V1__BuildEvent *e = ev(a, "other", i);
        int64_t idx = h_append_ok(rep[1], a, &e, 1)->events[0]->idx;
        EXPECT_NEXT(all, a, e, idx);
        if (i % 2) EXPECT_NEXT(some, a, e, idx);
    }
    EXPECT_QUIET(some, a);
    dbld_stream_close(all);
    dbld_stream_close(some);
    h_service_stop(rep[0]);
    h_service_stop(rep[1]);
}

/* Patterns are matched in memory as POSIX regexes: one PostgreSQL would
 * read differently, or that would not anchor, is refused with its reason. */
/* kinds: List and Subscribe (stored and live) deliver only events of the
 * kinds asked for, ANDed with the filter; a number that is no kind is
 * INVALID_ARGUMENT naming it, on both. */
DBLD_TEST(subscribe_and_list_by_kind)
{
    char dsn[1024];
    h_db_create("subkind", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent *e[8];
    int64_t idx[8];
    for (int i = 0; i < 8; i++) {
        const char *br = i < 4 ? "brK" : "brL";
        e[i] = i % 4 == 1   ? h_event_build_cancel(a, br, "stop")
               : i % 4 == 3 ? h_event_job_run_cancel(a, br, "run-k", "stop it")
                            : ev(a, br, i);
        e[i]->timestamp = 1767225600000000000LL + i; /* as streamed back */
    }
    Databuild__V1__AppendResponse *r = h_append_ok(el, a, e, 4);
    for (int i = 0; i < 4; i++)
        idx[i] = r->events[i]->idx;
    int32_t cancels[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT,
                         DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT};
    Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
    req.filter = h_filter(a, NULL, NULL, NULL, NULL, H_STRS("brK"));
    req.kinds = cancels;
    req.n_kinds = 2;
    dbld_stream *st = NULL;
    dbld_status status = {0};
    int rc = dbld_client_stream_open(el->client, H_SUBSCRIBE_PATH, &req.base, 0, &st, &status);
    CHECK_CODE(rc, status, DBLD_OK);
    EXPECT_NEXT(st, a, e[1], idx[1]); /* stored: the two cancels of brK only */
    EXPECT_NEXT(st, a, e[3], idx[3]);
    EXPECT_QUIET(st, a);
    r = h_append_ok(el, a, e + 4, 4); /* brL: filtered out by build */
    EXPECT_QUIET(st, a);
    Databuild__V1__BuildEvent *live[2] = {ev(a, "brK", 20),
                                          h_event_build_cancel(a, "brK", "again")};
    live[1]->timestamp = 1767225600000000000LL + 21;
    r = h_append_ok(el, a, live, 2);
    EXPECT_NEXT(st, a, live[1], r->events[1]->idx); /* live: the partition event is skipped */
    EXPECT_QUIET(st, a);
    dbld_stream_close(st);

    /* List: the same selection, over both builds when unfiltered */
    Databuild__V1__ListEventsRequest lr = DATABUILD__V1__LIST_EVENTS_REQUEST__INIT;
    lr.kinds = cancels + 1; /* job run cancels */
    lr.n_kinds = 1;
    Databuild__V1__EventPage *page = NULL;
    rc =
        dbld_client_unary(el->client, H_LIST_PATH, &lr.base, &databuild__v1__event_page__descriptor,
                          dbld_arena_allocator(a), (ProtobufCMessage **)&page, 30000, 0, &status);
    CHECK_CODE(rc, status, DBLD_OK);
    CHECK_EQ_INT(page->n_events, 2);
    CHECK_EQ_STR(page->events[0]->event_id, e[3]->event_id);
    CHECK_EQ_STR(page->events[1]->event_id, e[7]->event_id);

    int32_t bad[] = {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT, 9};
    lr.kinds = bad;
    lr.n_kinds = 2;
    rc =
        dbld_client_unary(el->client, H_LIST_PATH, &lr.base, &databuild__v1__event_page__descriptor,
                          dbld_arena_allocator(a), (ProtobufCMessage **)&page, 30000, 0, &status);
    CHECK_CODE(rc, status, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(status.msg, "kinds[1] is 9");
    req.kinds = bad;
    rc = dbld_client_stream_open(el->client, H_SUBSCRIBE_PATH, &req.base, 0, &st, &status);
    CHECK_CODE(rc, status, DBLD_OK);
    Databuild__V1__IndexedEvent *ie;
    rc = h_stream_next(st, a, &ie, LIVE_WAIT_MS, &status);
    CHECK_CODE(rc, status, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(status.msg, "no BuildEvent kind");
    dbld_stream_close(st);
    h_service_stop(el);
}

DBLD_TEST(subscribe_invalid_pattern)
{
    char dsn[1024];
    h_db_create("subpat", dsn, sizeof dsn);
    h_service *el = h_service_start("eventlog", dsn, NULL);
    dbld_arena *a = dbld_arena_create();
    static char longpat[1100];
    memset(longpat, 'a', sizeof longpat - 1);
    struct {
        const char *pattern, *want;
    } bad[] = {
        {"p=\\d+", "backslash before a letter"},
        {"p=[\\d]", "inside []"},
        {"a)|(b", "not balanced"},
        {"a[bc", "not balanced"},
        {"a{1,2", "braces {} not balanced"},
        {longpat, "over the limit of 256 bytes for a pattern"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dbld_stream *st =
            h_subscribe(el, h_filter(a, NULL, H_STRS(bad[i].pattern), NULL, NULL, NULL), 0);
        Databuild__V1__IndexedEvent *ie;
        dbld_status status = {0};
        int rc = h_stream_next(st, a, &ie, LIVE_WAIT_MS, &status);
        CHECK_CODE(rc, status, DBLD_INVALID_ARGUMENT);
        CHECK_CONTAINS(status.msg, bad[i].want);
        dbld_stream_close(st);
    }
    h_service_stop(el);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(subscribe_past_then_live), DBLD_TEST_ENTRY(subscribe_start_idx),
               DBLD_TEST_ENTRY(subscribe_filtered),
               DBLD_TEST_ENTRY(subscribe_filtered_does_not_spin),
               DBLD_TEST_ENTRY(subscribe_while_appending),
               DBLD_TEST_ENTRY(subscribe_while_appending_two_replicas),
               DBLD_TEST_ENTRY(many_streams_do_not_starve_unary),
               DBLD_TEST_ENTRY_T(stream_cap_bounds_threads, 300),
               DBLD_TEST_ENTRY_T(subscribe_slow_reader_catches_up, 300),
               DBLD_TEST_ENTRY(subscribe_sees_other_replica),
               DBLD_TEST_ENTRY(subscribe_and_list_by_kind),
               DBLD_TEST_ENTRY(subscribe_invalid_pattern))
