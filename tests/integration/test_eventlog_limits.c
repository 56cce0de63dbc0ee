/* test_eventlog_limits.c - the event log's reads under hostile filters and
 * out-of-range values (issue 15, defects 2 and 8):
 *   - a regular expression whose matching explodes is refused before it
 *     reaches PostgreSQL;
 *   - a slow read (an accepted pattern over many long refs) ends with its
 *     call: the backend stops when the client's deadline passes or the
 *     stream is closed, and within the statement timeout otherwise;
 *   - slow reads never take the last reader connection: BuildLeases (the
 *     graph's orphan poll) still answers while they run;
 *   - a value the database cannot store is the caller's INVALID_ARGUMENT
 *     naming the field, and no error carries PostgreSQL's text.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define STMT_TIMEOUT_MS 2000
#define EXTRA "  statement_timeout_ms: 2000"
/* Within dbld_regex_check()'s limits (cost 1000: a structural check cannot
 * see every slow pattern), yet about 10 ms per long ref in PostgreSQL and
 * never matching (refs end in digits): a List over SLOW_EVENTS such refs
 * runs far past the statement timeout unless it is stopped. */
#define SLOW_PATTERN "(.*){1,100}(?=(.*)*)/"
#define SLOW_EVENTS 2000
#define EVIL_PATTERN "(.*){1,200}(.*){1,200}x"
/* How the List statement shows in pg_stat_activity. */
#define LIST_SQL_LIKE "SELECT idx, payload FROM events WHERE%unnest($3::text[]) pat%"

/* Backends of dsn's database running a statement LIKE sql_like. */
static long long running(const char *dsn, const char *sql_like)
{
    h_rows *r = h_sql(dsn,
                      "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                      " AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE $1",
                      sql_like);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* SLOW_EVENTS events, each with one ref of about 200 characters. */
static void fill_long_refs(h_service *el)
{
    dbld_arena *a = dbld_arena_create();
    char pad[200];
    memset(pad, 'a', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < SLOW_EVENTS; i += 500) {
        Databuild__V1__BuildEvent *evs[500];
        for (int k = 0; k < 500; k++)
            evs[k] =
                h_event_partition(a, "br-slow", dbld_arena_printf(a, "slow/%s/n=%d", pad, i + k),
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "");
        h_append_ok(el, a, evs, 500);
        dbld_arena_reset(a);
    }
    dbld_arena_destroy(a);
}

static h_service *start_el(const char *hint, char *dsn, size_t cap)
{
    h_db_create(hint, dsn, cap);
    /* the defaults: 8 workers, 4 reader connections */
    h_service_opts o = {.workers = 8, .db_pool_size = 4, .extra_section = EXTRA};
    return h_service_start("eventlog", dsn, &o);
}

/* A List on a thread of its own. */
typedef struct bg_list {
    h_service *el;
    const char *pattern;
    int64_t deadline_ms;
    int rc;
    dbld_status st;
    int64_t ms;
    atomic_int done;
    pthread_t th;
} bg_list;

static void *bg_list_main(void *arg)
{
    bg_list *b = arg;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__EventPage *page;
    int64_t t0 = dbld_mono_ms();
    b->rc = h_list(b->el, a, h_filter(a, NULL, H_STRS(b->pattern), NULL, NULL, NULL), 0, 0, &page,
                   b->deadline_ms, &b->st);
    b->ms = dbld_mono_ms() - t0;
    atomic_store(&b->done, 1);
    dbld_arena_destroy(a);
    return NULL;
}

static void bg_list_start(bg_list *b, h_service *el, const char *pattern, int64_t deadline_ms)
{
    *b = (bg_list){.el = el, .pattern = pattern, .deadline_ms = deadline_ms};
    if (pthread_create(&b->th, NULL, bg_list_main, b) != 0) H_FAIL("pthread_create");
}

/* A normal List (no pattern); returns how long it took. */
static int64_t normal_list(h_service *el)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__EventPage *page;
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    CHECK_OK(h_list(el, a, NULL, 0, 10, &page, 10000, &st), st);
    int64_t ms = dbld_mono_ms() - t0;
    CHECK_EQ_INT(page->n_events, 10);
    dbld_arena_destroy(a);
    return ms;
}

/* The pattern (and one too long) are refused by List and Subscribe
 * at once, naming the pattern; nothing runs in PostgreSQL. */
DBLD_TEST(explosive_pattern_refused)
{
    char dsn[1024];
    h_service *el = start_el("evilrx", dsn, sizeof dsn);
    fill_long_refs(el);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__EventPage *page;
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    int rc = h_list(el, a, h_filter(a, NULL, H_STRS(EVIL_PATTERN), NULL, NULL, NULL), 0, 0, &page,
                    10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "invalid partition pattern \"" EVIL_PATTERN "\"");
    CHECK_CONTAINS(st.msg, "too costly to match");
    h_note("List with %s: %s after %lld ms", EVIL_PATTERN, st.msg,
           (long long)(dbld_mono_ms() - t0));
    CHECK_EQ_INT(running(dsn, LIST_SQL_LIKE), 0);

    char long_pat[300];
    memset(long_pat, 'a', sizeof long_pat - 1);
    long_pat[sizeof long_pat - 1] = '\0';
    rc = h_list(el, a, h_filter(a, NULL, H_STRS(long_pat), NULL, NULL, NULL), 0, 0, &page, 10000,
                &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "299 bytes, over the limit of 256 bytes for a pattern");

    dbld_stream *s = h_subscribe(el, h_filter(a, NULL, H_STRS(EVIL_PATTERN), NULL, NULL, NULL), 0);
    Databuild__V1__IndexedEvent *ie;
    rc = h_stream_next(s, a, &ie, 10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "too costly to match");
    dbld_stream_close(s);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

/* A slow read in flight: a normal List still answers within 1 s; when the
 * slow call's deadline passes, its statement is cancelled in PostgreSQL
 * (not left running for minutes); a slow call with time to spare ends at
 * the statement timeout with DEADLINE_EXCEEDED saying so; closing a
 * Subscribe stream stops its statement too. */
DBLD_TEST(slow_read_ends_with_its_call)
{
    char dsn[1024];
    h_service *el = start_el("slowread", dsn, sizeof dsn);
    fill_long_refs(el);

    /* deadline 600 ms, far below the statement timeout */
    bg_list slow;
    bg_list_start(&slow, el, SLOW_PATTERN, 600);
    CHECK_MSG(H_POLL_UNTIL(5000, running(dsn, LIST_SQL_LIKE) == 1 || atomic_load(&slow.done)),
              "the slow List never ran");
    int64_t ms = normal_list(el);
    h_note("normal List with a slow one in flight: %lld ms", (long long)ms);
    CHECK_CMP_INT(ms, <, 1000);
    pthread_join(slow.th, NULL);
    CHECK_CODE(slow.rc, slow.st, DBLD_DEADLINE_EXCEEDED);
    int64_t t0 = dbld_mono_ms();
    CHECK_MSG(H_POLL_UNTIL(STMT_TIMEOUT_MS, running(dsn, LIST_SQL_LIKE) == 0),
              "the slow List's statement still runs %d ms after its deadline", STMT_TIMEOUT_MS);
    h_note("backend gone %lld ms after the client's deadline", (long long)(dbld_mono_ms() - t0));

    /* a long deadline: the statement timeout ends it */
    bg_list_start(&slow, el, SLOW_PATTERN, 20000);
    pthread_join(slow.th, NULL);
    CHECK_CODE(slow.rc, slow.st, DBLD_DEADLINE_EXCEEDED);
    CHECK_CONTAINS(slow.st.msg, "could not list events: ");
    CHECK_CONTAINS(slow.st.msg, "statement timeout (2000 ms)");
    CHECK_CMP_INT(slow.ms, <, 20000);
    h_note("slow List with a 20 s deadline: %s after %lld ms", slow.st.msg, (long long)slow.ms);
    CHECK_EQ_INT(running(dsn, LIST_SQL_LIKE), 0);

    /* Subscribe filters patterns in memory (hub.c, filter.c): the slow
     * pattern never reaches PostgreSQL, and an open stream holds no backend */
    dbld_arena *a = dbld_arena_create();
    dbld_stream *s = h_subscribe(el, h_filter(a, NULL, H_STRS(SLOW_PATTERN), NULL, NULL, NULL), 0);
    Databuild__V1__IndexedEvent *ie = NULL;
    dbld_status sst;
    int src = h_stream_next(s, a, &ie, 1000, &sst);
    CHECK_MSG(src == DBLD_DEADLINE_EXCEEDED || src == DBLD_INVALID_ARGUMENT || src == 0,
              "Subscribe with the slow pattern: %s: %s", dbld_code_name(src), sst.msg);
    CHECK_EQ_INT(running(dsn, LIST_SQL_LIKE), 0);
    dbld_stream_close(s);
    CHECK_CMP_INT(normal_list(el), <, 1000);
    h_service_stop(el);
}

/* The exhaustion: five slow Lists at once. They get at most
 * db_pool_size - 1 connections; BuildLeases/Orphans (the graph service's
 * orphan poll) answers meanwhile; every slow List ends with a timeout or
 * RESOURCE_EXHAUSTED, never hangs; then reads work again. */
DBLD_TEST(slow_reads_leave_a_connection_for_leases)
{
    char dsn[1024];
    h_service *el = start_el("reserve", dsn, sizeof dsn);
    fill_long_refs(el);
    enum { N = 5 };
    bg_list slow[N];
    for (int i = 0; i < N; i++)
        bg_list_start(&slow[i], el, SLOW_PATTERN, 30000);
    CHECK_MSG(H_POLL_UNTIL(5000, running(dsn, LIST_SQL_LIKE) == 3),
              "three slow Lists never ran at once");
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__OrphansRequest req = DATABUILD__V1__ORPHANS_REQUEST__INIT;
    req.owner = "graph-test";
    Databuild__V1__OrphansResponse *resp = NULL;
    dbld_status st = {0};
    int64_t t0 = dbld_mono_ms();
    int rc = dbld_client_unary(el->client, "/databuild.v1.BuildLeases/Orphans", &req.base,
                               &databuild__v1__orphans_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 1000, 0, &st);
    CHECK_OK(rc, st);
    h_note("Orphans with every read connection busy: %lld ms", (long long)(dbld_mono_ms() - t0));
    CHECK_CMP_INT(running(dsn, LIST_SQL_LIKE), <=, 3); /* the fourth stays free */
    for (int i = 0; i < N; i++) {
        pthread_join(slow[i].th, NULL);
        CHECK_MSG(slow[i].rc == DBLD_DEADLINE_EXCEEDED || slow[i].rc == DBLD_RESOURCE_EXHAUSTED,
                  "slow List %d: %s: %s", i, dbld_code_name(slow[i].rc), slow[i].st.msg);
        h_note("slow List %d: %s after %lld ms: %s", i, dbld_code_name(slow[i].rc),
               (long long)slow[i].ms, slow[i].st.msg);
    }
    CHECK_EQ_INT(running(dsn, LIST_SQL_LIKE), 0);
    normal_list(el);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

/* JobLogs sequence numbers are stored as bigint: 2^64-1 is the caller's
 * error naming the field, checked before anything is queued (it used to fail
 * its whole group commit with PostgreSQL's "out of range for type bigint"). */
DBLD_TEST(joblog_sequence_out_of_range)
{
    char dsn[1024];
    h_service *el = start_el("seqrange", dsn, sizeof dsn);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__LogMessage msg = DATABUILD__V1__LOG_MESSAGE__INIT;
    msg.message = "hello";
    Databuild__V1__JobLogEntry e = DATABUILD__V1__JOB_LOG_ENTRY__INIT;
    e.job_id = "run-seq";
    e.sequence_number = UINT64_MAX;
    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
    e.log = &msg;
    Databuild__V1__JobLogEntry *entries[] = {&e};
    Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    req.entries = entries;
    req.n_entries = 1;
    Databuild__V1__AppendJobLogsResponse *resp = NULL;
    dbld_status st = {0};
    int rc = dbld_client_unary(el->client, "/databuild.v1.JobLogs/Append", &req.base,
                               &databuild__v1__append_job_logs_response__descriptor,
                               dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 10000, 0, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "sequence_number: 18446744073709551615 is over the largest accepted "
                           "value 9223372036854775807");
    CHECK(!strstr(st.msg, "bigint"));
    e.sequence_number = (uint64_t)INT64_MAX; /* the largest that fits is stored */
    rc = dbld_client_unary(el->client, "/databuild.v1.JobLogs/Append", &req.base,
                           &databuild__v1__append_job_logs_response__descriptor,
                           dbld_arena_allocator(a), (ProtobufCMessage **)&resp, 10000, 0, &st);
    CHECK_OK(rc, st);
    CHECK_EQ_INT(resp->stored, 1);
    dbld_arena_destroy(a);
    h_service_stop(el);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(explosive_pattern_refused),
               DBLD_TEST_ENTRY(slow_read_ends_with_its_call),
               DBLD_TEST_ENTRY(slow_reads_leave_a_connection_for_leases),
               DBLD_TEST_ENTRY(joblog_sequence_out_of_range))
