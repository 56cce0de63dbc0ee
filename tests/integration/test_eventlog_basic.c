/* test_eventlog_basic.c - the EventLog service over gRPC, one caller at a time:
 * round trip of all 10 BuildEvent kinds, Append validation, idempotent
 * re-append, List filters (against an independent client-side oracle),
 * paging, limits, and the projection tables.
 *
 * Every test gets a fresh database and its own databuild-eventlog process.
 */
#include "dbld/db.h"
#include "harness.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fixture {
    char dsn[1024];
    h_service *el;
    dbld_arena *a;
} fixture;

static fixture setup(const char *hint)
{
    fixture f;
    h_db_create(hint, f.dsn, sizeof f.dsn);
    f.el = h_service_start("eventlog", f.dsn, NULL);
    f.a = dbld_arena_create();
    return f;
}

#define EV(x) ((Databuild__V1__BuildEvent *)(x))

/* CHECK that got has exactly the event ids of want[0..n), in that order. */
#define CHECK_IDS(got, want, n) check_ids(__FILE__, __LINE__, got, want, n)
static void check_ids(const char *file, int line, h_event_list got,
                      Databuild__V1__BuildEvent *const *want, size_t n)
{
    for (size_t i = 0; i < got.n && i < n; i++)
        if (strcmp(got.events[i]->event_id, want[i]->event_id) != 0)
            h_fail(file, line, "event %zu: got %s, want %s", i, got.events[i]->event_id,
                   want[i]->event_id);
    if (got.n != n) h_fail(file, line, "got %zu events, want %zu", got.n, n);
}

/* ------------------------------------------------------------ round trip */

DBLD_TEST(round_trip_all_kinds)
{
    fixture f = setup("roundtrip");
    Databuild__V1__BuildEvent *evs[10];
    size_t n = h_events_all_kinds(f.a, "br-roundtrip", evs);
    CHECK_EQ_INT(n, 10);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(evs[i]->event_type_case, 10 + (int)i);

    Databuild__V1__AppendResponse *r = h_append_ok(f.el, f.a, evs, n);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_STR(r->events[i]->event_id, evs[i]->event_id);
        CHECK(!r->events[i]->duplicate);
        if (i > 0) CHECK_CMP_INT(r->events[i]->idx, >, r->events[i - 1]->idx);
    }

    /* everything, and by build request: byte-identical, in append order */
    h_event_list all = h_list_all(f.el, f.a, NULL, 0);
    CHECK_IDS(all, evs, n);
    h_event_list by_br =
        h_list_all(f.el, f.a, h_filter(f.a, NULL, NULL, NULL, NULL, H_STRS("br-roundtrip")), 0);
    CHECK_IDS(by_br, evs, n);
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(h_msg_equal(&all.events[i]->base, &evs[i]->base),
                  "event kind %d (%s) did not round-trip byte-identically", 10 + (int)i,
                  evs[i]->event_id);
    }

    /* server-filled event_id and timestamp, for every kind */
    Databuild__V1__BuildEvent *filled[10];
    h_events_all_kinds(f.a, "br-filled", filled);
    for (size_t i = 0; i < n; i++) {
        filled[i]->event_id = "";
        filled[i]->timestamp = 0;
    }
    int64_t before = dbld_now_ns();
    r = h_append_ok(f.el, f.a, filled, n);
    int64_t after = dbld_now_ns();
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(dbld_uuid_valid(r->events[i]->event_id),
                  "generated event_id \"%s\" is not a UUID", r->events[i]->event_id);
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(r->events[i]->event_id, r->events[j]->event_id) != 0);
        filled[i]->event_id = r->events[i]->event_id;
    }
    h_event_list got =
        h_list_all(f.el, f.a, h_filter(f.a, NULL, NULL, NULL, NULL, H_STRS("br-filled")), 0);
    CHECK_IDS(got, filled, n);
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(got.events[i]->timestamp >= before && got.events[i]->timestamp <= after,
                  "server timestamp %lld not within the Append call [%lld, %lld]",
                  (long long)got.events[i]->timestamp, (long long)before, (long long)after);
        filled[i]->timestamp = got.events[i]->timestamp;
        CHECK_MSG(h_msg_equal(&got.events[i]->base, &filled[i]->base),
                  "server-filled event kind %d did not round-trip", 10 + (int)i);
    }
    h_service_stop(f.el);
}

/* ------------------------------------------------------------ validation */

DBLD_TEST(append_validation)
{
    fixture f = setup("validation");
    Databuild__V1__AppendResponse *r;
    dbld_status st = {0};

    /* empty batch */
    int rc = h_append(f.el, f.a, NULL, 0, &r, 10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);

    /* event 1 has no payload */
    Databuild__V1__BuildEvent *ok0 = h_event_build_cancel(f.a, "br-v", "ok");
    Databuild__V1__BuildEvent *bad1 = h_event_base(f.a, "br-v", 0);
    Databuild__V1__BuildEvent *b1[] = {ok0, bad1};
    rc = h_append(f.el, f.a, b1, 2, &r, 10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "event 1");
    CHECK_CONTAINS(st.msg, "event_type");

    /* a non-UUID event_id, in the middle of a batch */
    Databuild__V1__BuildEvent *ok2 = h_event_partition(
        f.a, "br-v", "v/p=1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "");
    Databuild__V1__BuildEvent *bad_id = h_event_build_cancel(f.a, "br-v", "bad id");
    bad_id->event_id = "not-a-uuid-42";
    Databuild__V1__BuildEvent *ok3 = h_event_build_cancel(f.a, "br-v", "ok3");
    Databuild__V1__BuildEvent *b2[] = {ok2, bad_id, ok3};
    rc = h_append(f.el, f.a, b2, 3, &r, 10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "not-a-uuid-42");

    /* nothing of either batch was written: the log and the projections are empty */
    h_event_list all = h_list_all(f.el, f.a, NULL, 0);
    CHECK_EQ_INT(all.n, 0);
    h_rows *rows = h_sql(f.dsn, "SELECT count(*) FROM partitions");
    CHECK_EQ_INT(h_rows_i64(rows, 0, 0), 0);
    h_rows_free(rows);

    /* and the valid events are new when appended on their own */
    Databuild__V1__BuildEvent *good[] = {ok0, ok2, ok3};
    r = h_append_ok(f.el, f.a, good, 3);
    for (int i = 0; i < 3; i++)
        CHECK_MSG(!r->events[i]->duplicate, "event %d of a rejected batch was stored", i);
    all = h_list_all(f.el, f.a, NULL, 0);
    CHECK_IDS(all, good, 3);

    /* the service is still healthy */
    int serving = 0;
    CHECK_OK(h_service_health(f.el, "", &serving, &st), st);
    CHECK(serving);
    h_service_stop(f.el);
}

/* ----------------------------------------------------------- idempotency */

DBLD_TEST(idempotent_reappend)
{
    fixture f = setup("idem");
    Databuild__V1__BuildEvent *e1 = h_event_partition(
        f.a, "br-i", "i/p=1", DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run-1");
    e1->timestamp = 1767225600000000000LL; /* fixed, so the stored bytes are known */
    Databuild__V1__AppendResponse *r = h_append_ok(f.el, f.a, &e1, 1);
    int64_t idx1 = r->events[0]->idx;
    CHECK(!r->events[0]->duplicate);

    /* the same event again */
    r = h_append_ok(f.el, f.a, &e1, 1);
    CHECK_EQ_INT(r->events[0]->idx, idx1);
    CHECK(r->events[0]->duplicate);
    CHECK_EQ_STR(r->events[0]->event_id, e1->event_id);

    /* same event_id, different content: still the original, nothing written */
    size_t orig_len;
    uint8_t *orig = h_pack(f.a, &e1->base, &orig_len);
    Databuild__V1__BuildEvent *changed = h_event_partition(
        f.a, "br-other", "i/p=changed", DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED, "run-x");
    changed->event_id = e1->event_id;
    changed->timestamp = e1->timestamp + 1;
    r = h_append_ok(f.el, f.a, &changed, 1);
    CHECK_EQ_INT(r->events[0]->idx, idx1);
    CHECK(r->events[0]->duplicate);

    /* a duplicate inside a batch of new events */
    Databuild__V1__BuildEvent *e2 = h_event_build_cancel(f.a, "br-i", "two");
    Databuild__V1__BuildEvent *e3 = h_event_build_cancel(f.a, "br-i", "three");
    Databuild__V1__BuildEvent *b[] = {e2, e1, e3};
    r = h_append_ok(f.el, f.a, b, 3);
    CHECK(!r->events[0]->duplicate);
    CHECK(r->events[1]->duplicate);
    CHECK(!r->events[2]->duplicate);
    CHECK_EQ_INT(r->events[1]->idx, idx1);
    CHECK_CMP_INT(r->events[0]->idx, >, idx1);
    CHECK_CMP_INT(r->events[2]->idx, >, r->events[0]->idx);

    /* the same new id twice in one batch */
    Databuild__V1__BuildEvent *e4 = h_event_build_cancel(f.a, "br-i", "four");
    Databuild__V1__BuildEvent *twice[] = {e4, e4};
    r = h_append_ok(f.el, f.a, twice, 2);
    CHECK(!r->events[0]->duplicate);
    CHECK(r->events[1]->duplicate);
    CHECK_EQ_INT(r->events[1]->idx, r->events[0]->idx);

    /* the log holds each event once, with the original content */
    h_event_list all = h_list_all(f.el, f.a, NULL, 0);
    Databuild__V1__BuildEvent *want[] = {e1, e2, e3, e4};
    CHECK_IDS(all, want, 4);
    size_t got_len;
    uint8_t *got = h_pack(f.a, &all.events[0]->base, &got_len);
    CHECK_MSG(got_len == orig_len && memcmp(got, orig, orig_len) == 0,
              "re-append with changed content overwrote the stored event");
    /* nor did the changed duplicate touch the projections */
    h_rows *rows =
        h_sql(f.dsn, "SELECT status, job_run_id FROM partitions WHERE ref = $1", "i/p=changed");
    CHECK_EQ_INT(h_rows_n(rows), 0);
    h_rows_free(rows);
    rows = h_sql(f.dsn, "SELECT status, job_run_id FROM partitions WHERE ref = $1", "i/p=1");
    CHECK_EQ_INT(h_rows_n(rows), 1);
    CHECK_EQ_INT(h_rows_i64(rows, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING);
    CHECK_EQ_STR(h_rows_get(rows, 0, 1), "run-1");
    h_rows_free(rows);
    h_service_stop(f.el);
}

/* An event_id is a UUID whatever the case of its hex digits: stored and
 * answered in lower case, so the same id in upper, lower or mixed case
 * (e.g. from clients that format UUIDs differently) is one event. */
DBLD_TEST(idempotent_event_id_case)
{
    fixture f = setup("idcase");
    const char *upper = "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9";
    const char *lower = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    Databuild__V1__BuildEvent *e = h_event_build_cancel(f.a, "br-case", "upper");
    e->event_id = (char *)upper;
    Databuild__V1__AppendResponse *r = h_append_ok(f.el, f.a, &e, 1);
    int64_t idx = r->events[0]->idx;
    CHECK(!r->events[0]->duplicate);
    CHECK_EQ_STR(r->events[0]->event_id, lower);

    const char *spellings[] = {lower, "0f1e2d3c-4B5A-4978-8695-a4b3c2d1E0F9"};
    for (int i = 0; i < 2; i++) {
        Databuild__V1__BuildEvent *again = h_event_build_cancel(f.a, "br-case", "again");
        again->event_id = (char *)spellings[i];
        r = h_append_ok(f.el, f.a, &again, 1);
        CHECK_MSG(r->events[0]->duplicate && r->events[0]->idx == idx,
                  "%s: stored again (idx %lld, first %lld)", spellings[i],
                  (long long)r->events[0]->idx, (long long)idx);
        CHECK_EQ_STR(r->events[0]->event_id, lower);
    }
    /* both spellings in one batch of a new id */
    Databuild__V1__BuildEvent *b[2];
    const char *ids[] = {"ABCDEF01-2345-4789-ABCD-EF0123456789",
                         "abcdef01-2345-4789-abcd-ef0123456789"};
    for (int i = 0; i < 2; i++) {
        b[i] = h_event_build_cancel(f.a, "br-case", "batch");
        b[i]->event_id = (char *)ids[i];
    }
    r = h_append_ok(f.el, f.a, b, 2);
    CHECK(!r->events[0]->duplicate);
    CHECK(r->events[1]->duplicate);
    CHECK_EQ_INT(r->events[1]->idx, r->events[0]->idx);

    h_event_list all = h_list_all(f.el, f.a, NULL, 0);
    CHECK_EQ_INT(all.n, 2);
    CHECK_EQ_STR(all.events[0]->event_id, lower);
    CHECK_EQ_STR(all.events[1]->event_id, ids[1]);
    h_service_stop(f.el);
}

/* -------------------------------------------------------- batch ordering */

DBLD_TEST(batch_idx_in_request_order)
{
    fixture f = setup("batch");
    Databuild__V1__BuildEvent *first = h_event_build_cancel(f.a, "br-b", "first");
    h_append_ok(f.el, f.a, &first, 1);
    enum { N = 200 };
    Databuild__V1__BuildEvent *evs[N];
    for (int i = 0; i < N; i++)
        evs[i] = h_event_partition(f.a, "br-b", dbld_arena_printf(f.a, "b/p=%03d", i),
                                   DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED, "");
    Databuild__V1__AppendResponse *r = h_append_ok(f.el, f.a, evs, N);
    for (int i = 1; i < N; i++)
        CHECK_CMP_INT(r->events[i]->idx, >, r->events[i - 1]->idx);
    Databuild__V1__BuildEvent *last = h_event_build_cancel(f.a, "br-b", "last");
    Databuild__V1__AppendResponse *rl = h_append_ok(f.el, f.a, &last, 1);
    CHECK_CMP_INT(rl->events[0]->idx, >, r->events[N - 1]->idx);

    h_event_list all = h_list_all(f.el, f.a, NULL, 0);
    Databuild__V1__BuildEvent *want[N + 2];
    want[0] = first;
    memcpy(want + 1, evs, sizeof evs);
    want[N + 1] = last;
    CHECK_IDS(all, want, N + 2);
    h_service_stop(f.el);
}

/* ---------------------------------------------------------------- filters */

typedef struct dataset {
    Databuild__V1__BuildEvent *ev[32];
    size_t n;
} dataset;

static dataset filter_dataset(dbld_arena *a)
{
    dataset d = {.n = 0};
    Databuild__V1__BuildEvent **e = d.ev;
    const int RECEIVED = DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED;
    e[0] = h_event_build_request(a, "brA", RECEIVED, H_STRS("data/a=1", "data/b=1"), "", "");
    e[1] = h_event_build_request(a, "brB", RECEIVED, H_STRS("data/c=1"), "", "");
    e[2] = h_event_job_graph(a, "brA", H_STRS("data/a=1"), H_STRS("//j:L1", "//j:L2"),
                             H_STRS("data/a=1", "node/only=1"));
    e[3] = h_event_job(a, "brA", "r1", "//j:L1", DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED,
                       H_STRS("data/a=1"));
    e[4] = h_event_partition(a, "brA", "data/a=1",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "r1");
    e[5] = h_event_job(a, "brB", "r2", "//j:L3", DATABUILD__V1__JOB_STATUS__JOB_RUNNING,
                       H_STRS("data/c=1", "other/x"));
    e[6] = h_event_partition(a, "brB", "data/c=1",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "r2");
    e[7] = h_event_delegation(a, "brC", "data/a=1", "brA");
    e[8] = h_event_invalidation(a, "brC", "data/b=1", "stale");
    e[9] = h_event_job_run_cancel(a, "brB", "r2", "stop");
    e[10] = h_event_build_cancel(a, "brC", "cancelled");
    e[11] = h_event_want(a, "", "want-1", H_STRS("data/a=2"),
                         DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL, "");
    e[12] = h_event_taint(a, "brA", H_STRS("data/a=2", "other/x"),
                          DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL, "");
    e[13] = h_event_partition(a, "brA", "data/a=2",
                              DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED, "");
    e[14] = h_event_job(a, "brC", "r3", "//j:L1", DATABUILD__V1__JOB_STATUS__JOB_FAILED,
                        H_STRS("data/b=1"));
    d.n = 15;
    return d;
}

static int any_in(const char **have, size_t n_have, char **want, size_t n_want)
{
    for (size_t i = 0; i < n_have; i++)
        for (size_t j = 0; j < n_want; j++)
            if (strcmp(have[i], want[j]) == 0) return 1;
    return 0;
}

static int full_match(const char *pattern, const char *s)
{
    regex_t re;
    char *anchored = dbld_xmalloc(strlen(pattern) + 8);
    sprintf(anchored, "^(%s)$", pattern);
    if (regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) != 0)
        H_FAIL("test pattern %s does not compile", pattern);
    int m = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    free(anchored);
    return m;
}

/* The spec, independently of the server: fields ANDed, values ORed. */
static int oracle(dbld_arena *a, const Databuild__V1__EventFilter *f,
                  const Databuild__V1__BuildEvent *e)
{
    if (!f) return 1;
    const char **refs, **labels, **runs;
    size_t nr = h_event_refs(a, e, &refs), nl = h_event_labels(a, e, &labels),
           nj = h_event_run_ids(a, e, &runs);
    if (f->n_partition_refs && !any_in(refs, nr, f->partition_refs, f->n_partition_refs)) return 0;
    if (f->n_partition_patterns) {
        int hit = 0;
        for (size_t i = 0; i < nr && !hit; i++)
            for (size_t j = 0; j < f->n_partition_patterns && !hit; j++)
                hit = full_match(f->partition_patterns[j], refs[i]);
        if (!hit) return 0;
    }
    if (f->n_job_labels && !any_in(labels, nl, f->job_labels, f->n_job_labels)) return 0;
    if (f->n_job_run_ids && !any_in(runs, nj, f->job_run_ids, f->n_job_run_ids)) return 0;
    const char *br[] = {e->build_request_id};
    if (f->n_build_request_ids && !any_in(br, 1, f->build_request_ids, f->n_build_request_ids))
        return 0;
    return 1;
}

typedef struct fcase {
    const char *name;
    Databuild__V1__EventFilter *f;
    int want[16]; /* -1 terminated; want[0] == -2: oracle only */
} fcase;

#define W(...)                                                                                     \
    {                                                                                              \
        __VA_ARGS__, -1                                                                            \
    }
#define ORACLE_ONLY                                                                                \
    {                                                                                              \
        -2                                                                                         \
    }

DBLD_TEST(list_filters)
{
    fixture f = setup("filters");
    dbld_arena *a = f.a;
    dataset d = filter_dataset(a);
    /* appended in a few batches */
    h_append_ok(f.el, a, d.ev, 4);
    h_append_ok(f.el, a, d.ev + 4, 1);
    h_append_ok(f.el, a, d.ev + 5, 7);
    h_append_ok(f.el, a, d.ev + 12, d.n - 12);

    fcase cases[] = {
        {"ref a=1", h_filter(a, H_STRS("data/a=1"), NULL, NULL, NULL, NULL), W(0, 2, 3, 4, 7)},
        {"refs a=2|other/x", h_filter(a, H_STRS("data/a=2", "other/x"), NULL, NULL, NULL, NULL),
         W(5, 11, 12, 13)},
        {"ref only in a graph node", h_filter(a, H_STRS("node/only=1"), NULL, NULL, NULL, NULL),
         W(2)},
        {"ref b=1", h_filter(a, H_STRS("data/b=1"), NULL, NULL, NULL, NULL), W(0, 8, 14)},
        {"pattern data/a=.*", h_filter(a, NULL, H_STRS("data/a=.*"), NULL, NULL, NULL),
         W(0, 2, 3, 4, 7, 11, 12, 13)},
        {"pattern is anchored (suffix)", h_filter(a, NULL, H_STRS("a=1"), NULL, NULL, NULL), W(-1)},
        {"pattern is anchored (prefix)", h_filter(a, NULL, H_STRS("data/a"), NULL, NULL, NULL),
         W(-1)},
        {"patterns ORed", h_filter(a, NULL, H_STRS("data/(b|c)=1", "other/.*"), NULL, NULL, NULL),
         W(0, 1, 5, 6, 8, 12, 14)},
        {"pattern class", h_filter(a, NULL, H_STRS("data/a=[12]"), NULL, NULL, NULL), ORACLE_ONLY},
        {"label L1", h_filter(a, NULL, NULL, H_STRS("//j:L1"), NULL, NULL), W(2, 3, 14)},
        {"label only in a graph node", h_filter(a, NULL, NULL, H_STRS("//j:L2"), NULL, NULL), W(2)},
        {"labels L1|L3", h_filter(a, NULL, NULL, H_STRS("//j:L1", "//j:L3"), NULL, NULL),
         W(2, 3, 5, 14)},
        {"run r2", h_filter(a, NULL, NULL, NULL, H_STRS("r2"), NULL), W(5, 6, 9)},
        {"runs r1|r3", h_filter(a, NULL, NULL, NULL, H_STRS("r1", "r3"), NULL), W(3, 4, 14)},
        {"build request brC", h_filter(a, NULL, NULL, NULL, NULL, H_STRS("brC")), W(7, 8, 10, 14)},
        {"build requests brA|brB", h_filter(a, NULL, NULL, NULL, NULL, H_STRS("brA", "brB")),
         ORACLE_ONLY},
        {"ref AND build request", h_filter(a, H_STRS("data/a=1"), NULL, NULL, NULL, H_STRS("brC")),
         W(7)},
        {"label AND run", h_filter(a, NULL, NULL, H_STRS("//j:L1"), H_STRS("r3"), NULL), W(14)},
        {"pattern AND build request",
         h_filter(a, NULL, H_STRS("data/.*"), NULL, NULL, H_STRS("brB")), W(1, 5, 6)},
        {"ref AND label AND build request",
         h_filter(a, H_STRS("data/a=1"), NULL, H_STRS("//j:L1"), NULL, H_STRS("brA")), W(2, 3)},
        {"ref AND pattern", h_filter(a, H_STRS("other/x"), H_STRS("data/c=.*"), NULL, NULL, NULL),
         W(5)},
        {"unknown ref", h_filter(a, H_STRS("nope"), NULL, NULL, NULL, NULL), W(-1)},
        {"unknown run", h_filter(a, NULL, NULL, NULL, H_STRS("r9"), NULL), W(-1)},
        {"empty filter", h_filter(a, NULL, NULL, NULL, NULL, NULL), ORACLE_ONLY},
        {"no filter", NULL, ORACLE_ONLY},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        fcase *fc = &cases[c];
        Databuild__V1__BuildEvent *want[32];
        size_t nw = 0;
        for (size_t i = 0; i < d.n; i++)
            if (oracle(a, fc->f, d.ev[i])) want[nw++] = d.ev[i];
        if (fc->want[0] != -2) { /* the oracle agrees with the hand-written answer */
            size_t k = 0;
            while (fc->want[k] >= 0)
                k++;
            CHECK_MSG(k == nw, "filter \"%s\": oracle finds %zu events, expected %zu", fc->name, nw,
                      k);
            for (size_t i = 0; i < k; i++)
                CHECK_MSG(want[i] == d.ev[fc->want[i]], "filter \"%s\": oracle disagrees at %zu",
                          fc->name, i);
        }
        for (uint32_t limit = 0; limit <= 2; limit += 2) { /* one page, and pages of 2 */
            h_event_list got = h_list_all(f.el, a, fc->f, limit);
            int ok = got.n == nw;
            for (size_t i = 0; ok && i < nw; i++)
                ok = strcmp(got.events[i]->event_id, want[i]->event_id) == 0;
            if (!ok) {
                char gs[512] = "", ws[512] = "";
                for (size_t i = 0; i < got.n; i++)
                    for (size_t j = 0; j < d.n; j++)
                        if (strcmp(got.events[i]->event_id, d.ev[j]->event_id) == 0)
                            snprintf(gs + strlen(gs), sizeof gs - strlen(gs), " %zu", j);
                for (size_t i = 0; i < nw; i++)
                    for (size_t j = 0; j < d.n; j++)
                        if (want[i] == d.ev[j])
                            snprintf(ws + strlen(ws), sizeof ws - strlen(ws), " %zu", j);
                H_FAIL("filter \"%s\" (limit %u): got events [%s ], want [%s ]", fc->name, limit,
                       gs, ws);
            }
        }
    }
    h_service_stop(f.el);
}

/* Refs that need quoting or escaping in the text[] parameters (the events'
 * columns, the filter) survive the round trip through PostgreSQL: each ref
 * filters exactly its own event, the string "NULL" is not SQL NULL, and the
 * stored column parses back to the ref (tests/unit/test_db.c has the
 * literals themselves). */
DBLD_TEST(list_refs_with_special_characters)
{
    fixture f = setup("refchars");
    static const char *const refs[] = {
        "with space",
        "comma,inside",
        "{braces}",
        "quote\"inside",
        "back\\slash",
        "\\\"both\\\"",
        "NULL",
        "null",
        " ",
        "trailing\\",
        "héllo/日付=2025-01-01 ✓",
        "} , {",
        "a=1,b=2",
    };
    enum { N = sizeof refs / sizeof refs[0] };
    Databuild__V1__BuildEvent *e[N];
    for (int i = 0; i < N; i++)
        e[i] = h_event_partition(f.a, "br-chars", refs[i],
                                 DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-c");
    Databuild__V1__AppendResponse *r = h_append_ok(f.el, f.a, e, N);
    for (int i = 0; i < N; i++) {
        Databuild__V1__EventFilter *by_ref = h_filter(f.a, H_STRS(refs[i]), NULL, NULL, NULL, NULL);
        h_event_list got = h_list_all(f.el, f.a, by_ref, 0);
        CHECK_MSG(got.n == 1 && strcmp(got.events[0]->event_id, e[i]->event_id) == 0,
                  "filter by ref \"%s\": %zu events", refs[i], got.n);
        CHECK_EQ_STR(got.events[0]->partition_event->partition_ref->str, refs[i]);
        /* the stored column, as PostgreSQL prints it, parses back to the ref */
        char idx[32];
        snprintf(idx, sizeof idx, "%lld", (long long)r->events[i]->idx);
        h_rows *rows = h_sql(f.dsn, "SELECT partition_refs FROM events WHERE idx = $1", idx);
        char **items;
        size_t n;
        CHECK_EQ_INT(dbld_pg_parse_text_array(f.a, h_rows_get(rows, 0, 0), &items, &n), 0);
        CHECK_MSG(n == 1 && strcmp(items[0], refs[i]) == 0, "stored %s for \"%s\"",
                  h_rows_get(rows, 0, 0), refs[i]);
        h_rows_free(rows);
        rows = h_sql(f.dsn, "SELECT status FROM partitions WHERE ref = $1", refs[i]);
        CHECK_EQ_INT(h_rows_n(rows), 1);
        h_rows_free(rows);
    }
    /* several at once; "" matches nothing */
    Databuild__V1__EventFilter *several =
        h_filter(f.a, H_STRS("", "comma,inside", "NULL", "} , {"), NULL, NULL, NULL, NULL);
    h_event_list got = h_list_all(f.el, f.a, several, 0);
    Databuild__V1__BuildEvent *want[] = {e[1], e[6], e[11]};
    CHECK_IDS(got, want, 3);
    /* a filter on "NULL" as a build request id or job run id is a string too */
    got = h_list_all(f.el, f.a, h_filter(f.a, NULL, NULL, NULL, H_STRS("NULL"), NULL), 0);
    CHECK_EQ_INT(got.n, 0);
    h_service_stop(f.el);
}

DBLD_TEST(list_invalid_pattern)
{
    fixture f = setup("badregex");
    Databuild__V1__BuildEvent *e = h_event_partition(
        f.a, "br", "x/y=1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "");
    h_append_ok(f.el, f.a, &e, 1);
    Databuild__V1__EventPage *page;
    dbld_status st = {0};
    int rc =
        h_list(f.el, f.a, h_filter(f.a, NULL, H_STRS("x/.*", "data/(unclosed"), NULL, NULL, NULL),
               0, 0, &page, 10000, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "data/(unclosed");
    /* a good pattern still works afterwards */
    h_event_list got =
        h_list_all(f.el, f.a, h_filter(f.a, NULL, H_STRS("x/.*"), NULL, NULL, NULL), 0);
    CHECK_EQ_INT(got.n, 1);
    h_service_stop(f.el);
}

/* ----------------------------------------------------------------- paging */

typedef struct acked {
    Databuild__V1__BuildEvent **ev;
    int64_t *idx;
    size_t n;
} acked;

/* Append n events in batches of varying size (1..max_batch); returns them with their idx. */
static acked append_many(fixture *f, size_t n, size_t max_batch, const char *br_every_third)
{
    acked r = {dbld_arena_alloc(f->a, n * sizeof *r.ev), dbld_arena_alloc(f->a, n * sizeof *r.idx),
               0};
    for (size_t i = 0; i < n; i++) {
        const char *br = (br_every_third && i % 3 == 0) ? br_every_third : "br-bulk";
        r.ev[i] = h_event_partition(f->a, br, dbld_arena_printf(f->a, "bulk/p=%zu", i),
                                    DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "");
    }
    size_t size = 1;
    while (r.n < n) {
        size_t k = size < n - r.n ? size : n - r.n;
        Databuild__V1__AppendResponse *resp = h_append_ok(f->el, f->a, r.ev + r.n, k);
        for (size_t i = 0; i < k; i++)
            r.idx[r.n + i] = resp->events[i]->idx;
        r.n += k;
        size = (size * 7 + 3) % max_batch + 1; /* 1..max_batch, varying */
    }
    return r;
}

/* Page through with the given limit and CHECK every page against `want`
 * (event i has idx want_idx[i]). */
static void check_paging(fixture *f, const Databuild__V1__EventFilter *filter, uint32_t limit,
                         int64_t start, Databuild__V1__BuildEvent **want, int64_t *want_idx,
                         size_t n_want)
{
    size_t eff = limit == 0 ? 500 : limit;
    size_t k = 0, pages = 0;
    for (;;) {
        Databuild__V1__EventPage *page;
        dbld_status st = {0};
        CHECK_OK(h_list(f->el, f->a, filter, start, limit, &page, 30000, &st), st);
        pages++;
        size_t expect = n_want - k < eff ? n_want - k : eff;
        CHECK_MSG(page->n_events == expect,
                  "limit %u, start %lld: page %zu has %zu events, want %zu", limit,
                  (long long)start, pages, page->n_events, expect);
        for (size_t i = 0; i < page->n_events; i++, k++)
            CHECK_MSG(strcmp(page->events[i]->event_id, want[k]->event_id) == 0,
                      "limit %u: event %zu is %s, want %s", limit, k, page->events[i]->event_id,
                      want[k]->event_id);
        int64_t next = page->n_events ? want_idx[k - 1] + 1 : start;
        CHECK_MSG(page->next_idx == next, "limit %u, page %zu: next_idx %lld, want %lld", limit,
                  pages, (long long)page->next_idx, (long long)next);
        int more = k < n_want;
        CHECK_MSG(page->has_more == more, "limit %u, page %zu (%zu of %zu): has_more %d, want %d",
                  limit, pages, k, n_want, page->has_more, more);
        if (!page->has_more) break;
        start = page->next_idx;
        dbld_arena_reset(f->a); /* pages are big; want lives in the caller's arena */
    }
    CHECK_EQ_INT(k, n_want);
}

DBLD_TEST(list_paging)
{
    fixture f = setup("paging");
    dbld_arena *keep = dbld_arena_create();
    dbld_arena *scratch = f.a;
    f.a = keep;
    acked all = append_many(&f, 1234, 97, "br-third");
    f.a = scratch;
    for (size_t i = 1; i < all.n; i++)
        CHECK_CMP_INT(all.idx[i], >, all.idx[i - 1]);

    const uint32_t limits[] = {1, 7, 100, 0, 1234, 5000};
    for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
        if (limits[l] == 1) { /* limit 1 over everything is slow: use the first 60 */
            Databuild__V1__EventFilter *few =
                h_filter(keep, NULL, H_STRS("bulk/p=[0-5]?[0-9]"), NULL, NULL, NULL);
            check_paging(&f, few, 1, 0, all.ev, all.idx, 60);
            continue;
        }
        check_paging(&f, NULL, limits[l], 0, all.ev, all.idx, all.n);
    }
    /* a filter, pages of 10: every third event */
    Databuild__V1__BuildEvent **third = dbld_arena_alloc(keep, all.n * sizeof *third);
    int64_t *third_idx = dbld_arena_alloc(keep, all.n * sizeof *third_idx);
    size_t nt = 0;
    for (size_t i = 0; i < all.n; i += 3) {
        third[nt] = all.ev[i];
        third_idx[nt++] = all.idx[i];
    }
    Databuild__V1__EventFilter *fbr = h_filter(keep, NULL, NULL, NULL, NULL, H_STRS("br-third"));
    check_paging(&f, fbr, 10, 0, third, third_idx, nt);
    /* exactly one page of matches: has_more false */
    check_paging(&f, fbr, (uint32_t)nt, 0, third, third_idx, nt);

    /* starting in the middle, at an idx and just after it */
    check_paging(&f, NULL, 100, all.idx[600], all.ev + 600, all.idx + 600, all.n - 600);
    check_paging(&f, NULL, 100, all.idx[600] + 1, all.ev + 601, all.idx + 601, all.n - 601);
    /* past the end: nothing, next_idx == start_idx */
    check_paging(&f, NULL, 10, all.idx[all.n - 1] + 1, NULL, NULL, 0);
    check_paging(&f, NULL, 10, all.idx[all.n - 1] + 1000, NULL, NULL, 0);
    dbld_arena_destroy(keep);
    h_service_stop(f.el);
}

DBLD_TEST(list_limit_default_and_cap)
{
    fixture f = setup("limits");
    enum { N = 5100 };
    dbld_arena *keep = dbld_arena_create();
    Databuild__V1__BuildEvent **ev = dbld_arena_alloc(keep, N * sizeof *ev);
    for (int i = 0; i < N; i++)
        ev[i] = h_event_build_cancel(keep, "br-cap", "x");
    for (int i = 0; i < N; i += 1000)
        h_append_ok(f.el, f.a, ev + i, N - i < 1000 ? (size_t)(N - i) : 1000);

    Databuild__V1__EventPage *page;
    dbld_status st = {0};
    CHECK_OK(h_list(f.el, f.a, NULL, 0, 0, &page, 30000, &st), st);
    CHECK_EQ_INT(page->n_events, 500);
    CHECK(page->has_more);
    CHECK_EQ_STR(page->events[499]->event_id, ev[499]->event_id);

    CHECK_OK(h_list(f.el, f.a, NULL, 0, 100000, &page, 30000, &st), st);
    CHECK_EQ_INT(page->n_events, 5000);
    CHECK(page->has_more);
    CHECK_EQ_STR(page->events[4999]->event_id, ev[4999]->event_id);

    CHECK_OK(h_list(f.el, f.a, NULL, page->next_idx, 5000, &page, 30000, &st), st);
    CHECK_EQ_INT(page->n_events, N - 5000);
    CHECK(!page->has_more);
    CHECK_EQ_STR(page->events[0]->event_id, ev[5000]->event_id);
    dbld_arena_destroy(keep);
    h_service_stop(f.el);
}

/* ------------------------------------------------------------ projections */

static h_rows *one_row(const char *dsn, const char *sql, const char *key)
{
    h_rows *r = h_sql(dsn, sql, key);
    CHECK_MSG(h_rows_n(r) == 1, "%s [%s]: %d rows, want 1", sql, key, h_rows_n(r));
    return r;
}

#define T0 1767225600000000000LL /* 2026-01-01 in ns */

DBLD_TEST(projections)
{
    fixture f = setup("projections");
    dbld_arena *a = f.a;
    const char *br = "br-proj";
    Databuild__V1__BuildEvent *e[16];
    int n = 0;
    e[n++] = h_event_build_request(a, br,
                                   DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                                   H_STRS("pj/p=1", "pj/p=2"), "first build", "want-9");
    e[n++] = h_event_build_request(
        a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING,
        H_STRS("pj/p=1", "pj/p=2"), "first build", "want-9");
    e[n++] = h_event_job(a, br, "run-p", "//pj:job", DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED,
                         H_STRS("pj/p=1"));
    e[n++] = h_event_partition(a, br, "pj/p=1", DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                               "run-p");
    e[n++] = h_event_job(a, br, "run-p", "//pj:job", DATABUILD__V1__JOB_STATUS__JOB_RUNNING,
                         H_STRS("pj/p=1"));
    e[n++] = h_event_partition(a, br, "pj/p=1",
                               DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-p");
    e[n++] = h_event_job(a, br, "run-p", "//pj:job", DATABUILD__V1__JOB_STATUS__JOB_COMPLETED,
                         H_STRS("pj/p=1"));
    e[n++] = h_event_want(a, br, "want-9", H_STRS("pj/p=1", "pj/p=2"),
                          DATABUILD__V1__SOURCE_TYPE_CODE__SCHEDULED, "daily");
    for (int i = 0; i < n; i++)
        e[i]->timestamp = T0 + i * 1000;
    e[1]->build_request_event->message = "executing now";
    Databuild__V1__AppendResponse *r1 = h_append_ok(f.el, a, e, 4);
    Databuild__V1__AppendResponse *r2 = h_append_ok(f.el, a, e + 4, (size_t)n - 4);
    int64_t idx[16];
    for (int i = 0; i < 4; i++)
        idx[i] = r1->events[i]->idx;
    for (int i = 4; i < n; i++)
        idx[i] = r2->events[i - 4]->idx;

    h_rows *r =
        one_row(f.dsn,
                "SELECT status, array_to_string(requested_partitions, ','), comment, want_id,"
                " message, created_ns, updated_ns, last_idx FROM build_requests"
                " WHERE build_request_id = $1",
                br);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0),
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "pj/p=1,pj/p=2");
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "first build");
    CHECK_EQ_STR(h_rows_get(r, 0, 3), "want-9");
    CHECK_EQ_STR(h_rows_get(r, 0, 4), "executing now");
    CHECK_EQ_INT(h_rows_i64(r, 0, 5), T0);
    CHECK_EQ_INT(h_rows_i64(r, 0, 6), T0 + 1000);
    CHECK_EQ_INT(h_rows_i64(r, 0, 7), idx[1]);
    h_rows_free(r);

    r = one_row(
        f.dsn,
        "SELECT build_request_id, job_label, status, array_to_string(target_partitions, ','),"
        " created_ns, updated_ns, last_idx FROM job_runs WHERE job_run_id = $1",
        "run-p");
    CHECK_EQ_STR(h_rows_get(r, 0, 0), br);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "//pj:job");
    CHECK_EQ_INT(h_rows_i64(r, 0, 2), DATABUILD__V1__JOB_STATUS__JOB_COMPLETED);
    CHECK_EQ_STR(h_rows_get(r, 0, 3), "pj/p=1");
    CHECK_EQ_INT(h_rows_i64(r, 0, 4), T0 + 2000);
    CHECK_EQ_INT(h_rows_i64(r, 0, 5), T0 + 6000);
    CHECK_EQ_INT(h_rows_i64(r, 0, 6), idx[6]);
    h_rows_free(r);

    const char *part_sql =
        "SELECT status, build_request_id, job_run_id, updated_ns, last_invalidated_ns,"
        " tainted, last_idx FROM partitions WHERE ref = $1";
    r = one_row(f.dsn, part_sql, "pj/p=1");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), br);
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "run-p");
    CHECK_EQ_INT(h_rows_i64(r, 0, 3), T0 + 5000);
    CHECK_EQ_STR(h_rows_get(r, 0, 5), "f");
    CHECK_EQ_INT(h_rows_i64(r, 0, 6), idx[5]);
    h_rows_free(r);

    r = one_row(
        f.dsn,
        "SELECT array_to_string(refs, ','), source_code, comment, created_ns, build_request_id,"
        " last_idx FROM wants WHERE want_id = $1",
        "want-9");
    CHECK_EQ_STR(h_rows_get(r, 0, 0), "pj/p=1,pj/p=2");
    CHECK_EQ_INT(h_rows_i64(r, 0, 1), DATABUILD__V1__SOURCE_TYPE_CODE__SCHEDULED);
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "daily");
    CHECK_EQ_INT(h_rows_i64(r, 0, 3), T0 + 7000);
    CHECK_EQ_STR(h_rows_get(r, 0, 4), br);
    CHECK_EQ_INT(h_rows_i64(r, 0, 5), idx[7]);
    h_rows_free(r);

    /* taint p=1, invalidate p=2 */
    Databuild__V1__BuildEvent *t = h_event_taint(
        a, br, H_STRS("pj/p=1"), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "bad upstream");
    t->timestamp = T0 + 8000;
    Databuild__V1__BuildEvent *inv = h_event_invalidation(a, br, "pj/p=2", "late data");
    inv->timestamp = T0 + 9000;
    Databuild__V1__BuildEvent *ti[] = {t, inv};
    Databuild__V1__AppendResponse *r3 = h_append_ok(f.el, a, ti, 2);

    r = one_row(f.dsn,
                "SELECT array_to_string(refs, ','), source_code, comment, build_request_id, idx"
                " FROM taints WHERE event_id = $1",
                t->event_id);
    CHECK_EQ_STR(h_rows_get(r, 0, 0), "pj/p=1");
    CHECK_EQ_INT(h_rows_i64(r, 0, 1), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST);
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "bad upstream");
    CHECK_EQ_STR(h_rows_get(r, 0, 3), br);
    CHECK_EQ_INT(h_rows_i64(r, 0, 4), r3->events[0]->idx);
    h_rows_free(r);
    r = one_row(f.dsn, part_sql, "pj/p=1");
    CHECK_EQ_STR(h_rows_get(r, 0, 5), "t");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    h_rows_free(r);
    r = one_row(f.dsn, part_sql, "pj/p=2");
    CHECK_EQ_INT(h_rows_i64(r, 0, 4), T0 + 9000);
    CHECK_EQ_STR(h_rows_get(r, 0, 5), "t");
    h_rows_free(r);

    /* a duplicate of an old event changes nothing */
    Databuild__V1__AppendResponse *dup = h_append_ok(f.el, a, e, 1);
    CHECK(dup->events[0]->duplicate);
    r = one_row(f.dsn, "SELECT status, last_idx FROM build_requests WHERE build_request_id = $1",
                br);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0),
                 DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING);
    CHECK_EQ_INT(h_rows_i64(r, 0, 1), idx[1]);
    h_rows_free(r);

    /* rebuilt: AVAILABLE again clears the taint */
    Databuild__V1__BuildEvent *again = h_event_partition(
        a, "br-proj-2", "pj/p=1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-q");
    again->timestamp = T0 + 10000;
    Databuild__V1__AppendResponse *r4 = h_append_ok(f.el, a, &again, 1);
    r = one_row(f.dsn, part_sql, "pj/p=1");
    CHECK_EQ_STR(h_rows_get(r, 0, 5), "f");
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "br-proj-2");
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "run-q");
    CHECK_EQ_INT(h_rows_i64(r, 0, 3), T0 + 10000);
    CHECK_EQ_INT(h_rows_i64(r, 0, 6), r4->events[0]->idx);
    h_rows_free(r);
    r = one_row(f.dsn, part_sql, "pj/p=2");
    CHECK_EQ_STR(h_rows_get(r, 0, 5), "t"); /* untouched */
    h_rows_free(r);
    h_service_stop(f.el);
}

/* REQUESTED / ANALYZED / DELEGATED are one build's view: they must not turn
 * another build's BUILDING or AVAILABLE partition back into "to be built". */
DBLD_TEST(projection_intent_does_not_override)
{
    fixture f = setup("proj_intent");
    dbld_arena *a = f.a;
    Databuild__V1__BuildEvent *e[8];
    e[0] = h_event_partition(a, "br-a", "pi/x", DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                             "run-a");
    e[1] = h_event_partition(a, "br-a", "pi/x",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "run-a");
    h_append_ok(f.el, a, e, 2);
    /* Another build's intent, in its own batch and mixed into one batch. */
    e[0] = h_event_partition(a, "br-b", "pi/x",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED, "");
    h_append_ok(f.el, a, e, 1);
    e[0] = h_event_partition(a, "br-b", "pi/x", DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED,
                             "");
    e[1] = h_event_partition(a, "br-b", "pi/x",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_DELEGATED, "");
    e[2] = h_event_partition(a, "br-b", "pi/y", DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                             "run-y");
    e[3] = h_event_partition(a, "br-c", "pi/y", DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED,
                             "");
    h_append_ok(f.el, a, e, 4);
    const char *sql = "SELECT status, build_request_id, job_run_id FROM partitions WHERE ref = $1";
    h_rows *r = one_row(f.dsn, sql, "pi/x");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "br-a");
    CHECK_EQ_STR(h_rows_get(r, 0, 2), "run-a");
    h_rows_free(r);
    r = one_row(f.dsn, sql, "pi/y");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "br-b");
    h_rows_free(r);
    /* A hard status still applies: a FAILED rebuild replaces AVAILABLE. */
    e[0] = h_event_partition(a, "br-d", "pi/x", DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED,
                             "run-d");
    h_append_ok(f.el, a, e, 1);
    r = one_row(f.dsn, sql, "pi/x");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
    CHECK_EQ_STR(h_rows_get(r, 0, 1), "br-d");
    h_rows_free(r);
    /* And an intent applies to a FAILED partition. */
    e[0] = h_event_partition(a, "br-e", "pi/x",
                             DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED, "");
    h_append_ok(f.el, a, e, 1);
    r = one_row(f.dsn, sql, "pi/x");
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED);
    h_rows_free(r);
    h_service_stop(f.el);
}

/* The whole projection row of key in table (columns cols) as one string. */
static char *proj_row(const fixture *f, const char *cols, const char *table, const char *key_col,
                      const char *key)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT concat_ws('|', %s) FROM %s WHERE %s = $1", cols, table,
             key_col);
    h_rows *r = one_row(f->dsn, sql, key);
    char *out = dbld_arena_strdup(f->a, h_rows_n(r) ? h_rows_get(r, 0, 0) : "");
    h_rows_free(r);
    return out;
}

#define PART_COLS                                                                                  \
    "status, build_request_id, job_run_id, message, updated_ns, last_invalidated_ns, tainted,"     \
    " last_idx"
#define JOB_COLS                                                                                   \
    "build_request_id, job_label, status, array_to_string(target_partitions, ','), message,"       \
    " created_ns, updated_ns, last_idx"
#define BR_COLS                                                                                    \
    "status, array_to_string(requested_partitions, ','), comment, want_id, message, created_ns,"   \
    " updated_ns, last_idx"

/* run-n and br-n of projection_new_rows: only status, updated_ns and
 * last_idx change after their first event. */
static void check_run_n(fixture *f, int status, int64_t updated, int64_t idx)
{
    CHECK_EQ_STR(proj_row(f, JOB_COLS, "job_runs", "job_run_id", "run-n"),
                 dbld_arena_printf(f->a, "br-1|//pn:job|%d|pn/x,pn/y|job message|%lld|%lld|%lld",
                                   status, T0 + 7000, (long long)updated, (long long)idx));
}

static void check_br_n(fixture *f, int status, int64_t updated, int64_t idx)
{
    CHECK_EQ_STR(proj_row(f, BR_COLS, "build_requests", "build_request_id", "br-n"),
                 dbld_arena_printf(f->a,
                                   "%d|pn/x|new build|want-n|build request message|%lld|%lld|%lld",
                                   status, T0 + 8000, (long long)updated, (long long)idx));
}

/* Rows the projections create: every column of a key's first row comes from
 * the deltas of its first batch (the schema's defaults where they leave a
 * field unchanged), whatever mix of events the batch holds - an intent for a
 * partition without a row followed by BUILDING in the same batch or in the
 * next one, BUILDING then another build's intent, a taint or an
 * invalidation alone - and the next batch updates them. */
DBLD_TEST(projection_new_rows)
{
    fixture f = setup("proj_new");
    dbld_arena *a = f.a;
    const Databuild__V1__PartitionStatus REQ = DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED,
                                         ANA = DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED,
                                         BLD = DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING,
                                         AVL = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
    Databuild__V1__BuildEvent *e[16];
    int n = 0;
    e[n++] = h_event_partition(a, "br-1", "pn/a", REQ, "");      /* 0 */
    e[n++] = h_event_partition(a, "br-2", "pn/a", BLD, "run-a"); /* 1 */
    e[n++] = h_event_partition(a, "br-2", "pn/b", BLD, "run-b"); /* 2 */
    e[n++] = h_event_partition(a, "br-3", "pn/b", ANA, "");      /* 3 */
    e[n++] = h_event_partition(a, "br-1", "pn/c", REQ, "");      /* 4 */
    e[n++] = h_event_taint(a, "br-1", H_STRS("pn/d"), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST,
                           "t");                               /* 5 */
    e[n++] = h_event_invalidation(a, "br-1", "pn/e", "stale"); /* 6 */
    e[n++] = h_event_job(a, "br-1", "run-n", "//pn:job", DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED,
                         H_STRS("pn/x", "pn/y")); /* 7 */
    e[n++] = h_event_build_request(a, "br-n",
                                   DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
                                   H_STRS("pn/x"), "new build", "want-n"); /* 8 */
    for (int i = 0; i < n; i++)
        e[i]->timestamp = T0 + i * 1000;
    Databuild__V1__AppendResponse *r1 = h_append_ok(f.el, a, e, (size_t)n);
    int64_t idx[16];
    for (int i = 0; i < n; i++)
        idx[i] = r1->events[i]->idx;
#define CHECK_PART(ref, ...)                                                                       \
    CHECK_EQ_STR(proj_row(&f, PART_COLS, "partitions", "ref", ref),                                \
                 dbld_arena_printf(a, __VA_ARGS__))
    const char *pm = "partition message";
    CHECK_PART("pn/a", "%d|br-2|run-a|%s|%lld|0|f|%lld", BLD, pm, T0 + 1000, (long long)idx[1]);
    CHECK_PART("pn/b", "%d|br-2|run-b|%s|%lld|0|f|%lld", BLD, pm, T0 + 2000, (long long)idx[2]);
    CHECK_PART("pn/c", "%d|br-1||%s|%lld|0|f|%lld", REQ, pm, T0 + 4000, (long long)idx[4]);
    CHECK_PART("pn/d", "0||||0|0|t|%lld", (long long)idx[5]);
    CHECK_PART("pn/e", "0||||0|%lld|t|%lld", T0 + 6000, (long long)idx[6]);
    check_run_n(&f, DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED, T0 + 7000, idx[7]);
    check_br_n(&f, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED, T0 + 8000,
               idx[8]);

    /* the next batch: updates of the rows made above, and another new row */
    n = 0;
    e[n++] = h_event_partition(a, "br-2", "pn/c", BLD, "run-c"); /* 0 */
    e[n++] = h_event_partition(a, "br-2", "pn/d", AVL, "run-d"); /* 1 */
    e[n++] = h_event_partition(a, "br-4", "pn/a", REQ, "");      /* 2: kept out */
    e[n++] =
        h_event_job(a, "", "run-n", "", DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_NOSTRS); /* 3 */
    e[n++] = h_event_build_request(
        a, "br-n", DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING, H_NOSTRS, "",
        "");                                                /* 4 */
    e[n++] = h_event_partition(a, "br-4", "pn/f", ANA, ""); /* 5 */
    for (int i = 0; i < n; i++)
        e[i]->timestamp = T0 + 100000 + i * 1000;
    Databuild__V1__AppendResponse *r2 = h_append_ok(f.el, a, e, (size_t)n);
    for (int i = 0; i < n; i++)
        idx[i] = r2->events[i]->idx;
    CHECK_PART("pn/c", "%d|br-2|run-c|%s|%lld|0|f|%lld", BLD, pm, T0 + 100000, (long long)idx[0]);
    CHECK_PART("pn/d", "%d|br-2|run-d|%s|%lld|0|f|%lld", AVL, pm, T0 + 101000, (long long)idx[1]);
    /* an intent keeps BUILDING but still moves last_idx */
    CHECK_PART("pn/a", "%d|br-2|run-a|%s|%lld|0|f|%lld", BLD, pm, T0 + 1000, (long long)idx[2]);
    check_run_n(&f, DATABUILD__V1__JOB_STATUS__JOB_RUNNING, T0 + 103000, idx[3]);
    check_br_n(&f, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING, T0 + 104000,
               idx[4]);
    CHECK_PART("pn/f", "%d|br-4||%s|%lld|0|f|%lld", ANA, pm, T0 + 105000, (long long)idx[5]);
#undef CHECK_PART
    h_service_stop(f.el);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(round_trip_all_kinds), DBLD_TEST_ENTRY(append_validation),
               DBLD_TEST_ENTRY(idempotent_reappend), DBLD_TEST_ENTRY(idempotent_event_id_case),
               DBLD_TEST_ENTRY(batch_idx_in_request_order), DBLD_TEST_ENTRY(list_filters),
               DBLD_TEST_ENTRY(list_refs_with_special_characters),
               DBLD_TEST_ENTRY(list_invalid_pattern), DBLD_TEST_ENTRY(list_paging),
               DBLD_TEST_ENTRY(list_limit_default_and_cap), DBLD_TEST_ENTRY(projections),
               DBLD_TEST_ENTRY(projection_intent_does_not_override),
               DBLD_TEST_ENTRY(projection_new_rows))
