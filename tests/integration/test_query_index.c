/* test_query_index.c - the query service's partition index (services/query/
 * index.c) answers exactly as the SQL path does.
 *
 * Real builds (eventlog, job, graph processes; tests/jobs/graph_job.py: a/X
 * needs b/X and c/X, b/X needs c/X, f/X fails) make a few hundred
 * partitions with several build requests each, statuses AVAILABLE and
 * FAILED, a taint and a rebuild. Two query services read the same database:
 * one with the index (the default), one with `query.index: false` (SQL
 * only). Every GetPartitionsSummary and every ListPartitions page (all
 * pages, with status filters, patterns the index matches itself and ones it
 * leaves to PostgreSQL, errors) must be byte-identical between the two -
 * while the indexed service follows the builds live, and again after it
 * restarts and loads the index from the projections. The indexed service's
 * metrics must show that the index did answer (so the comparison is not SQL
 * against SQL).
 *
 * The same for ListBuildRequests (the build index, bindex.c): builds in
 * every status (appended with shared timestamps, so pages end inside runs
 * of equal times), job runs, cancels, wants, comments, walked page by page
 * with every filter; and a write followed at once by a read sees the write.
 *
 * A partition that is wanted but was never built (a want on an external ref
 * nobody made available) is listed REQUESTED by both services, by the CLI,
 * and by an index followed live or loaded from the projections.
 */
#include "test_build_fixture.h"
#include "test_processes_fixture.h"
#include "test_query_fixture.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//t:f\"\n      command: %CMD%\n      outputs: [\"f/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"f/(.*)\", \"inputs\": [\"c/\\\\1\"], \"exit\": 1}]"

#define AVAILABLE DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE
#define FAILED DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED

typedef struct fx {
    bf b;
    h_service *idx, *sql; /* query with the index / with query.index: false */
    int metrics_port;
    const char *external; /* graph.external of the query services (NULL: none) */
} fx;

static h_service *start_query(fx *x, const char *lines)
{
    const char *jobs = strstr(x->b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts o = {
        .eventlog_addr = x->b.el->addr,
        .extra_section =
            dbld_arena_printf(x->b.a, "%sgraph:\n  listen: \"%s\"\n  external: %s\n%s", lines,
                              x->b.graph->addr, x->external ? x->external : "[]", jobs),
    };
    return h_service_start("query", x->b.dsn, &o);
}

/* The indexed service's /metrics text (malloc'd). */
static char *metrics(fx *x)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)x->metrics_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_MSG(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect to metrics");
    const char *req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    CHECK(write(fd, req, strlen(req)) == (ssize_t)strlen(req));
    size_t cap = 1 << 16, n = 0;
    char *buf = dbld_xmalloc(cap);
    for (;;) {
        if (n + 4096 > cap) buf = dbld_xrealloc(buf, cap *= 2);
        ssize_t k = read(fd, buf + n, cap - n - 1);
        if (k <= 0) break;
        n += (size_t)k;
    }
    close(fd);
    buf[n] = 0;
    return buf;
}

/* The value of the sample line starting with `series ` (-1: absent). */
static long long metric(fx *x, const char *series)
{
    char *text = metrics(x);
    long long v = -1;
    size_t len = strlen(series);
    for (char *line = text; line && *line;) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            v = atoll(line + len + 1);
            break;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    free(text);
    return v;
}

#define LOOKUPS(rpc, src) "databuild_query_index_lookups_total{rpc=\"" rpc "\",source=\"" src "\"}"

/* Wait until the index has applied every stored event and answers. */
static void caught_up(fx *x)
{
    h_rows *r = h_sql(x->b.dsn, "SELECT coalesce(max(idx), 0) FROM events");
    long long want = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    int64_t end = dbld_mono_ms() + 30000;
    while (dbld_mono_ms() < end) {
        if (metric(x, "databuild_query_index_ready") == 1 &&
            metric(x, "databuild_query_index_applied_idx") >= want)
            return;
        dbld_sleep_ms(50);
    }
    CHECK_MSG(0, "the index did not catch up with idx %lld", want);
}

static int call(dbld_arena *a, h_service *s, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, dbld_status *st)
{
    char path[128];
    snprintf(path, sizeof path, "/databuild.v1.DataBuildService/%s", method);
    return qf_call_at(s, path, req, d, a, out, st);
}

/* Both services answer req alike: the same code and message, or equal
 * responses. Returns the indexed service's response (NULL on error). */
static ProtobufCMessage *same(fx *x, const char *method, const ProtobufCMessage *req,
                              const ProtobufCMessageDescriptor *d, const char *what)
{
    ProtobufCMessage *ri = NULL, *rs = NULL;
    dbld_status si, ss;
    dbld_status_clear(&si);
    dbld_status_clear(&ss);
    int ci = call(x->b.a, x->idx, method, req, d, &ri, &si);
    int cs = call(x->b.a, x->sql, method, req, d, &rs, &ss);
    CHECK_MSG(ci == cs, "%s %s: index %s (%s), sql %s (%s)", method, what, dbld_code_name(ci),
              si.msg, dbld_code_name(cs), ss.msg);
    if (ci) {
        CHECK_EQ_STR(si.msg, ss.msg);
        return NULL;
    }
    CHECK_MSG(h_msg_equal(ri, rs), "%s %s: the index's answer differs from SQL's", method, what);
    return ri;
}

static void same_summaries(fx *x)
{
    h_rows *r = h_sql(x->b.dsn, "SELECT ref FROM partitions ORDER BY ref");
    CHECK_CMP_INT(h_rows_n(r), >, 300);
    for (int i = 0; i < h_rows_n(r); i++) {
        Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
        Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
        ref.str = (char *)h_rows_get(r, i, 0);
        req.ref = &ref;
        same(x, "GetPartitionsSummary", &req.base,
             &databuild__v1__partition_summary_response__descriptor, ref.str);
    }
    h_rows_free(r);
    Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
    ref.str = "a/none";
    req.ref = &ref;
    CHECK(!same(x, "GetPartitionsSummary", &req.base,
                &databuild__v1__partition_summary_response__descriptor, "unknown"));
}

/* Walk every page of one ListPartitions question; returns the item count. */
static size_t same_pages(fx *x, const char *pattern, const int *statuses, size_t n_statuses)
{
    const char *cursor = "";
    size_t total = 0;
    for (int page = 0; page < 100; page++) {
        Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
        req.last_partition = (char *)cursor;
        req.ref_pattern = (char *)(pattern ? pattern : "");
        Databuild__V1__PartitionStatus st[4];
        for (size_t i = 0; i < n_statuses; i++)
            st[i] = (Databuild__V1__PartitionStatus)statuses[i];
        req.partition_status = st;
        req.n_partition_status = n_statuses;
        char *what = dbld_arena_printf(x->b.a, "pattern \"%s\" page %d", req.ref_pattern, page);
        Databuild__V1__ListPartitionsResponse *r = (Databuild__V1__ListPartitionsResponse *)same(
            x, "ListPartitions", &req.base, &databuild__v1__list_partitions_response__descriptor,
            what);
        if (!r || r->n_refs == 0) return total;
        total += r->n_refs;
        cursor = r->refs[r->n_refs - 1]->partition_ref->str;
    }
    CHECK_MSG(0, "more than 100 pages");
    return total;
}

static void same_lists(fx *x)
{
    size_t all = same_pages(x, NULL, NULL, 0);
    CHECK_CMP_INT(all, >, 300); /* four pages at least */
    size_t avail = same_pages(x, NULL, (int[]){AVAILABLE}, 1);
    size_t failed = same_pages(x, NULL, (int[]){FAILED}, 1);
    CHECK_CMP_INT(failed, >, 0);
    CHECK_EQ_INT(same_pages(x, NULL, (int[]){AVAILABLE, FAILED}, 2), avail + failed);
    /* twice each: the first teaches the index that PostgreSQL accepts it */
    for (int k = 0; k < 2; k++) {
        CHECK_CMP_INT(same_pages(x, "m/.*", NULL, 0), >, 250);
        CHECK_CMP_INT(same_pages(x, "(a|m)/[0-9]+", (int[]){AVAILABLE}, 1), >, 100);
        same_pages(x, "[bc]/0[0-9]*|f/.|w/.+", NULL, 0);
        same_pages(x, "m/\\d+", NULL, 0);     /* ARE-only: left to PostgreSQL */
        same_pages(x, "m/[0-9]{3}", NULL, 0); /* bounds: left to PostgreSQL */
        same_pages(x, "A/.*", NULL, 0);       /* nothing */
    }
    Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    req.ref_pattern = "a/(";
    CHECK(!same(x, "ListPartitions", &req.base,
                &databuild__v1__list_partitions_response__descriptor, "invalid pattern"));
}

static const char **refs_range(dbld_arena *a, const char *prefix, int from, int to)
{
    const char **r = dbld_arena_alloc(a, (size_t)(to - from + 1) * sizeof *r);
    for (int i = from; i < to; i++)
        r[i - from] = dbld_arena_printf(a, "%s/%02d", prefix, i);
    return r;
}

static void build_ok(fx *x, const char *const *refs)
{
    dbld_status st = {0};
    CHECK_OK(bf_build(&x->b, refs, NULL, &st), st);
}

/* Many partitions through the event log's Append, as the graph writes them:
 * build k requests m/(40k .. 40k+79) mod 300 (so a ref has two or three
 * builds), BUILDING then AVAILABLE (every 13th FAILED), with a REQUESTED
 * intent that must not override; an invalidation and a want (rows without
 * a build). */
static void append_bulk(fx *x, int from, int to)
{
    dbld_arena *a = x->b.a;
    for (int k = from; k < to; k++) {
        char id[37];
        dbld_uuid_v4(id);
        const char *br = dbld_arena_strdup(a, id);
        const char **refs = dbld_arena_alloc(a, 81 * sizeof *refs);
        for (int i = 0; i < 80; i++)
            refs[i] = dbld_arena_printf(a, "m/%03d", (40 * k + i) % 300);
        Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, 300 * sizeof *evs);
        size_t n = 0;
        evs[n++] = h_event_build_request(
            a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED, refs, "bulk",
            "");
        for (int i = 0; i < 80; i++) {
            int fail = ((40 * k + i) % 300) % 13 == 0;
            evs[n++] = h_event_partition(
                a, br, refs[i], DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, "run");
            evs[n++] = h_event_partition(a, br, refs[i], fail ? FAILED : AVAILABLE, "run");
            if (i % 7 == 0)
                evs[n++] = h_event_partition(
                    a, br, refs[i], DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED, "");
        }
        evs[n++] = h_event_build_request(
            a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED, refs, "bulk",
            "");
        evs[n++] = h_event_invalidation(a, br, refs[k % 80], "stale");
        h_append_ok(x->b.el, a, evs, n);
    }
    const char *wanted[] = {dbld_arena_printf(a, "w/%03d", from), "m/001", NULL};
    Databuild__V1__BuildEvent *w =
        h_event_want(a, "", dbld_arena_printf(a, "want-%d", from), wanted,
                     DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "want");
    h_append_ok(x->b.el, a, &w, 1);
}

/* ---- build requests ---- */

static const char *q_test_build_status_name(int code)
{
    return protobuf_c_enum_descriptor_get_value(
               &databuild__v1__build_request_status_code__descriptor, code)
        ->name;
}

static const int BUILD_CODES[] = {
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PLANNING,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_ANALYSIS_COMPLETED,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED,
    DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PRECONDITION_FAILED,
};
#define N_BUILD_CODES (sizeof BUILD_CODES / sizeof BUILD_CODES[0])

/* Builds from..to through Append: build k reaches BUILD_CODES[k % 8] through
 * RECEIVED, PLANNING, EXECUTING (as far as it goes); three builds share each
 * request time (ties); job runs (completed, failed, skipped) for most, a
 * BuildCancelEvent for every 5th, a want for every 4th; comments in mixed
 * case, some not ASCII. */
static void append_builds(fx *x, int from, int to)
{
    dbld_arena *a = x->b.a;
    int64_t base = dbld_now_ns() - 3600LL * 1000000000;
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(a, (size_t)(to - from) * 12 * sizeof *evs);
    size_t n = 0;
    for (int k = from; k < to; k++) {
        char id[37];
        dbld_uuid_v4(id);
        const char *br = dbld_arena_strdup(a, id);
        const char **refs = dbld_arena_alloc(a, 3 * sizeof *refs);
        refs[0] = dbld_arena_printf(a, "o/%03d", k % 40);
        refs[1] = dbld_arena_printf(a, "o/%03d", (k + 7) % 40);
        int code = BUILD_CODES[k % N_BUILD_CODES];
        if (k % N_BUILD_CODES < 4) /* not terminal: leased elsewhere, so no graph adopts it */
            h_rows_free(h_sql(x->b.dsn,
                              "INSERT INTO build_leases VALUES ($1, 'test-elsewhere',"
                              " 9000000000000000000)",
                              br));
        const char *comment = k % 6 == 0   ? dbld_arena_printf(a, "Nightly Größe %d", k)
                              : k % 6 == 1 ? dbld_arena_printf(a, "BULK build %d", k)
                                           : dbld_arena_printf(a, "bulk Build %d", k);
        const char *want = k % 4 == 0 ? dbld_arena_printf(a, "bwant-%d", k % 12) : "";
        int64_t t = base + (int64_t)(k / 3) * 1000000;
        Databuild__V1__BuildEvent *e = h_event_build_request(
            a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED, refs, comment,
            want);
        e->timestamp = t;
        evs[n++] = e;
        const int path[] = {DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PLANNING,
                            DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING};
        for (int i = 0;
             i < 2 && code != DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED &&
             code != path[i];
             i++) {
            e = h_event_build_request(a, br, (Databuild__V1__BuildRequestStatusCode)path[i], NULL,
                                      "", "");
            e->timestamp = t + 1000 * (i + 1);
            evs[n++] = e;
        }
        if (code != DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED) {
            e = h_event_build_request(a, br, (Databuild__V1__BuildRequestStatusCode)code, NULL, "",
                                      "");
            e->timestamp = t + 5000;
            evs[n++] = e;
        }
        if (k % 3) {
            const char *t1[] = {refs[0], NULL}, *t2[] = {refs[1], NULL};
            const char *run = dbld_arena_printf(a, "run-%s-1", br);
            evs[n++] =
                h_event_job(a, br, run, "//t:a", DATABUILD__V1__JOB_STATUS__JOB_COMPLETED, t1);
            evs[n++] =
                h_event_job(a, br, dbld_arena_printf(a, "run-%s-2", br), k % 2 ? "//t:b" : "//t:c",
                            k % 2 ? DATABUILD__V1__JOB_STATUS__JOB_FAILED
                                  : DATABUILD__V1__JOB_STATUS__JOB_SKIPPED,
                            t2);
        }
        if (k % 5 == 0) evs[n++] = h_event_build_cancel(a, br, "stop");
    }
    h_append_ok(x->b.el, a, evs, n);
}

/* Walk every page of one ListBuildRequests question; returns the builds. */
static size_t same_build_pages(fx *x, Databuild__V1__ListBuildsRequest *req, const char *what)
{
    size_t total = 0;
    for (int page = 0; page < 100; page++) {
        char *w = dbld_arena_printf(x->b.a, "%s page %d", what, page);
        Databuild__V1__ListBuildsResponse *r = (Databuild__V1__ListBuildsResponse *)same(
            x, "ListBuildRequests", &req->base, &databuild__v1__list_builds_response__descriptor,
            w);
        if (!r || r->n_builds == 0) return total;
        total += r->n_builds;
        if (!r->has_more) return total;
        req->started_until = r->min_started;
    }
    CHECK_MSG(0, "more than 100 pages");
    return total;
}

static size_t same_builds_with(fx *x, const char *status, const char *output, const char *want,
                               const char *comment, const char *built, const char *job)
{
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    char *st[] = {(char *)status}, *out[] = {(char *)output}, *wa[] = {(char *)want},
         *bu[] = {(char *)built}, *jo[] = {(char *)job};
    req.build_status = st;
    req.n_build_status = status ? 1 : 0;
    req.output_partition = out;
    req.n_output_partition = output ? 1 : 0;
    req.triggering_want_ids = wa;
    req.n_triggering_want_ids = want ? 1 : 0;
    req.comment_contains = (char *)(comment ? comment : "");
    req.built_partition = bu;
    req.n_built_partition = built ? 1 : 0;
    req.run_jobs = jo;
    req.n_run_jobs = job ? 1 : 0;
    return same_build_pages(x, &req,
                            dbld_arena_printf(x->b.a, "status %s output %s want %s comment %s",
                                              status ? status : "-", output ? output : "-",
                                              want ? want : "-", comment ? comment : "-"));
}

static void same_builds(fx *x)
{
    h_rows *r = h_sql(x->b.dsn, "SELECT count(*) FROM build_requests");
    size_t n = (size_t)h_rows_i64(r, 0, 0);
    h_rows_free(r);
    CHECK_CMP_INT(n, >, 250);
    CHECK_EQ_INT(same_builds_with(x, NULL, NULL, NULL, NULL, NULL, NULL), n);
    size_t by_status = 0;
    for (size_t i = 0; i < N_BUILD_CODES; i++) {
        const char *name = q_test_build_status_name(BUILD_CODES[i]);
        by_status += same_builds_with(x, name, NULL, NULL, NULL, NULL, NULL);
    }
    CHECK_EQ_INT(by_status, n);
    CHECK_CMP_INT(same_builds_with(x, "completed", "o/003", NULL, NULL, NULL, NULL), >, 0);
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, "bwant-4", NULL, NULL, NULL), >, 0);
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, NULL, "BULK", NULL, NULL), >, 150);
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, NULL, "größe", NULL, NULL), >, 0);
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, NULL, "GRÖSSE", NULL, NULL), ==, 0);
    CHECK_CMP_INT(same_builds_with(x, "4", "o/010", NULL, "build 1", NULL, NULL), >=, 0);
    /* left to SQL on both sides, still equal */
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, NULL, NULL, "o/003", NULL), >, 0);
    CHECK_CMP_INT(same_builds_with(x, NULL, NULL, NULL, NULL, NULL, "//t:b"), >, 0);
    /* a cursor in the middle of a run of equal times, and an unknown status */
    r = h_sql(x->b.dsn, "SELECT created_ns FROM build_requests ORDER BY created_ns DESC"
                        " OFFSET 120 LIMIT 1");
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    req.started_until = (uint64_t)h_rows_i64(r, 0, 0);
    h_rows_free(r);
    CHECK_CMP_INT(same_build_pages(x, &req, "mid cursor"), >, 100);
    char *bad[] = {"NOT_A_STATUS"};
    req.build_status = bad;
    req.n_build_status = 1;
    CHECK(!same(x, "ListBuildRequests", &req.base, &databuild__v1__list_builds_response__descriptor,
                "bad status"));
}

/* A write followed at once by a read sees it (the freshness gate). */
static void read_your_builds(fx *x)
{
    dbld_arena *a = x->b.a;
    for (int i = 0; i < 20; i++) {
        char id[37];
        dbld_uuid_v4(id);
        const char *refs[] = {"o/ryw", NULL};
        h_rows_free(h_sql(x->b.dsn,
                          "INSERT INTO build_leases VALUES ($1, 'test-elsewhere',"
                          " 9000000000000000000)",
                          id));
        Databuild__V1__BuildEvent *e = h_event_build_request(
            a, id, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED, refs, "ryw",
            "");
        h_append_ok(x->b.el, a, &e, 1);
        for (int step = 0; step < 2; step++) {
            Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
            qf f = {.q = x->idx, .a = a};
            Databuild__V1__ListBuildsResponse *r =
                QF_OK(&f, "ListBuildRequests", &req, Databuild__V1__ListBuildsResponse,
                      databuild__v1__list_builds_response__descriptor);
            CHECK_CMP_INT(r->n_builds, >, 0);
            CHECK_EQ_STR(r->builds[0]->build_request_id, id);
            int want = step ? DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED
                            : DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_RECEIVED;
            CHECK_EQ_INT(r->builds[0]->status->code, want);
            CHECK_EQ_INT(r->builds[0]->completed_at != 0, step);
            if (step) break;
            e = h_event_build_request(
                a, id, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED, NULL, "",
                "");
            h_append_ok(x->b.el, a, &e, 1);
        }
    }
}

DBLD_TEST(index_answers_as_sql)
{
    fx x;
    memset(&x, 0, sizeof x);
    bf_opts o = {.jobs = JOBS, .rules = RULES, .max_parallel = 8, .max_runs = 8};
    bf_setup(&x.b, "qindex", &o);
    x.metrics_port = h_free_port();
    x.idx = start_query(
        &x, dbld_arena_printf(x.b.a, "  metrics_listen: \"127.0.0.1:%d\"\n", x.metrics_port));
    x.sql = start_query(&x, "  index: false\n");
    caught_up(&x); /* the empty database */

    /* real builds the indexed service follows as they happen */
    build_ok(&x, refs_range(x.b.a, "a", 0, 4)); /* a, b, c 00..03 */
    dbld_status st = {0};
    bf_build(&x.b, refs_range(x.b.a, "f", 0, 2), NULL, &st); /* fails: FAILED partitions */
    /* a taint through the query service, then a rebuild of the tainted refs */
    Databuild__V1__PutTaintsRequest tr = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    const char *tainted[] = {"a/01", "b/01", "c/01", NULL};
    tr.refs = bf_prefs(x.b.a, tainted, &tr.n_refs);
    tr.comment = "bad data";
    qf f = {.q = x.idx, .a = x.b.a};
    QF_OK(&f, "PutTaints", &tr, Databuild__V1__PutTaintsResponse,
          databuild__v1__put_taints_response__descriptor);
    build_ok(&x, refs_range(x.b.a, "a", 1, 2));
    append_bulk(&x, 0, 10);
    append_builds(&x, 0, 150);
    append_builds(&x, 150, 260);

    caught_up(&x);
    long long s0 = metric(&x, LOOKUPS("GetPartitionsSummary", "index"));
    long long l0 = metric(&x, LOOKUPS("ListPartitions", "index"));
    same_summaries(&x);
    same_lists(&x);
    long long s1 = metric(&x, LOOKUPS("GetPartitionsSummary", "index"));
    long long l1 = metric(&x, LOOKUPS("ListPartitions", "index"));
    h_note("followed live: %lld summaries and %lld pages from the index", s1 - s0, l1 - l0);
    CHECK_CMP_INT(s1 - s0, >, 300); /* every known ref answered by the index */
    CHECK_CMP_INT(l1 - l0, >, 10);  /* plain, status-filtered and pattern pages */
    long long b0 = metric(&x, LOOKUPS("ListBuildRequests", "index"));
    same_builds(&x);
    long long b1 = metric(&x, LOOKUPS("ListBuildRequests", "index"));
    h_note("followed live: %lld ListBuildRequests pages from the index", b1 - b0);
    CHECK_CMP_INT(b1 - b0, >, 15);
    read_your_builds(&x);

    /* a restart loads the index from the projections */
    h_service_stop(x.idx);
    h_service_restart(x.idx);
    caught_up(&x);
    CHECK_EQ_INT(metric(&x, "databuild_query_index_loads_total"), 1);
    same_summaries(&x);
    same_lists(&x);
    CHECK_CMP_INT(metric(&x, LOOKUPS("GetPartitionsSummary", "index")), >, 300);
    same_builds(&x);
    CHECK_CMP_INT(metric(&x, LOOKUPS("ListBuildRequests", "index")), >, 15);

    /* and it goes on following from there */
    append_bulk(&x, 10, 14);
    append_builds(&x, 260, 300);
    build_ok(&x, refs_range(x.b.a, "a", 3, 5));
    caught_up(&x);
    same_summaries(&x);
    same_lists(&x);
    same_builds(&x);
    read_your_builds(&x);
}

/* ---- the freshness gate: a client reads its own writes ---- */

typedef struct gate_writer {
    h_service *el;
    int id;
    atomic_int *stop;
    int appends, failures;
    char error[256];
} gate_writer;

/* Appends a new build's PartitionEvent for one of its own refs in a loop. */
static void *gate_writer_main(void *arg)
{
    gate_writer *w = arg;
    dbld_arena *a = dbld_arena_create();
    for (int n = 0; !atomic_load(w->stop); n++) {
        dbld_arena_reset(a);
        char id[37];
        dbld_uuid_v4(id);
        const char *ref = dbld_arena_printf(a, "w/%d/%02d", w->id, n % 50);
        Databuild__V1__BuildEvent *e = h_event_partition(a, id, ref, AVAILABLE, "run");
        Databuild__V1__AppendResponse *resp;
        dbld_status st = {0};
        int rc = h_append(w->el, a, &e, 1, &resp, 30000, &st);
        if (rc && !w->failures++)
            snprintf(w->error, sizeof w->error, "%s: %s", dbld_code_name(rc), st.msg);
        w->appends++;
    }
    dbld_arena_destroy(a);
    return NULL;
}

/* Append a new build's event for ref (status st) and read it back at once
 * from the indexed service: it must show that build first and that status. */
static void write_then_read(fx *x, const char *ref, int status)
{
    dbld_arena *a = x->b.a;
    char id[37];
    dbld_uuid_v4(id);
    Databuild__V1__BuildEvent *e = h_event_partition(a, id, ref, status, "run");
    h_append_ok(x->b.el, a, &e, 1);
    Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    req.ref = &pr;
    Databuild__V1__PartitionSummaryResponse *resp = NULL;
    dbld_status st = {0};
    int rc = call(a, x->idx, "GetPartitionsSummary", &req.base,
                  &databuild__v1__partition_summary_response__descriptor,
                  (ProtobufCMessage **)&resp, &st);
    CHECK_MSG(rc == 0, "GetPartitionsSummary %s: %s: %s", ref, dbld_code_name(rc), st.msg);
    Databuild__V1__PartitionSummaryV2 *s = resp->partition;
    CHECK_MSG((int)s->status->code == status, "%s: status %d read after writing %d", ref,
              (int)s->status->code, status);
    CHECK_MSG(s->n_past_build_request > 0 && strcmp(s->past_build_request[0], id) == 0,
              "%s: last build %s read after writing %s", ref,
              s->n_past_build_request ? s->past_build_request[0] : "(none)", id);
}

DBLD_TEST(index_reads_own_writes)
{
    fx x;
    memset(&x, 0, sizeof x);
    x.b.a = dbld_arena_create();
    h_db_create("qgate", x.b.dsn, sizeof x.b.dsn);
    x.b.el = h_service_start("eventlog", x.b.dsn, NULL);
    x.metrics_port = h_free_port();
    h_service_opts o = {
        .eventlog_addr = x.b.el->addr,
        .extra_section =
            dbld_arena_printf(x.b.a, "  metrics_listen: \"127.0.0.1:%d\"\n", x.metrics_port),
    };
    x.idx = h_service_start("query", x.b.dsn, &o);
    const char *refs[8];
    for (int i = 0; i < 8; i++) {
        refs[i] = dbld_arena_printf(x.b.a, "g/%02d", i);
        write_then_read(&x, refs[i], AVAILABLE); /* rows exist (maybe read by SQL) */
    }
    caught_up(&x);

    /* alone, then while two other clients append as fast as they can */
    long long s0 = metric(&x, LOOKUPS("GetPartitionsSummary", "index"));
    for (int i = 0; i < 100; i++)
        write_then_read(&x, refs[i % 8], i % 2 ? FAILED : AVAILABLE);
    atomic_int stop = 0;
    gate_writer w[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (gate_writer){.el = x.b.el, .id = i, .stop = &stop};
        CHECK(pthread_create(&th[i], NULL, gate_writer_main, &w[i]) == 0);
    }
    for (int i = 0; i < 300; i++)
        write_then_read(&x, refs[i % 8], i % 3 ? AVAILABLE : FAILED);
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(w[i].failures == 0, "writer %d: %d of %d appends failed: %s", i, w[i].failures,
                  w[i].appends, w[i].error);
    }
    long long s1 = metric(&x, LOOKUPS("GetPartitionsSummary", "index"));
    h_note("400 writes read back, %lld from the index; concurrent appends: %d + %d", s1 - s0,
           w[0].appends, w[1].appends);
    CHECK_CMP_INT(s1 - s0, >=, 350); /* the index answered (not SQL) */
    CHECK_CMP_INT(w[0].appends + w[1].appends, >, 100);
}

/* ---- a wanted partition never built is listed ---- */

#define REQUESTED DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED

/* The status of ref in s's first ListPartitions page for pattern (status:
 * a filter, 0 = none); -1 when it is not listed. */
static int listed(fx *x, h_service *s, const char *pattern, int status, const char *ref)
{
    Databuild__V1__ListPartitionsRequest req = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    req.ref_pattern = (char *)pattern;
    Databuild__V1__PartitionStatus filter[] = {(Databuild__V1__PartitionStatus)status};
    req.partition_status = filter;
    req.n_partition_status = status ? 1 : 0;
    Databuild__V1__ListPartitionsResponse *r = NULL;
    dbld_status st = {0};
    int rc =
        call(x->b.a, s, "ListPartitions", &req.base,
             &databuild__v1__list_partitions_response__descriptor, (ProtobufCMessage **)&r, &st);
    CHECK_MSG(rc == 0, "ListPartitions on %s: %s: %s", s->name, dbld_code_name(rc), st.msg);
    for (size_t i = 0; i < r->n_refs; i++)
        if (strcmp(r->refs[i]->partition_ref->str, ref) == 0) return (int)r->refs[i]->status->code;
    return -1;
}

/* ref's status in ListPartitions (plain, by pattern, by status filter) and
 * in `databuild partitions list`, from the indexed and the SQL service alike. */
static void check_listed(fx *x, const char *ref, int status, const char *name)
{
    for (int i = 0; i < 2; i++) {
        h_service *s = i ? x->sql : x->idx;
        CHECK_MSG(listed(x, s, "", 0, ref) == status, "%s: %s listed %d, not %s", s->name, ref,
                  listed(x, s, "", 0, ref), name);
        CHECK_EQ_INT(listed(x, s, "ext/.*", 0, ref), status);
        CHECK_EQ_INT(listed(x, s, "", status, ref), status);
        cli_out r = cli_runv((const char *const[]){"--server", s->addr, "partitions", "list",
                                                   "--status", name, NULL});
        CHECK_EQ_INT(r.code, 0);
        char *line = line_with(r.out, ref);
        CHECK_MSG(line && strstr(line, name), "%s: `partitions list --status %s` lacks %s: %s",
                  s->name, name, ref, r.out);
    }
    int statuses[] = {status};
    CHECK_CMP_INT(same_pages(x, NULL, NULL, 0), >=, 1);
    CHECK_CMP_INT(same_pages(x, "ext/.*", statuses, 1), >=, 1);
    Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    req.ref = &pr;
    Databuild__V1__PartitionSummaryResponse *s = (Databuild__V1__PartitionSummaryResponse *)same(
        x, "GetPartitionsSummary", &req.base,
        &databuild__v1__partition_summary_response__descriptor, ref);
    CHECK(s != NULL);
    CHECK_EQ_INT(s->partition->status->code, status);
}

/* The indexed service lists ref REQUESTED from its index: the lookup is
 * counted as the index's (once, or twice when the freshness gate has it
 * answer again after a newer commit), none as PostgreSQL's. */
static void index_lists_it(fx *x, const char *ref)
{
    long long i0 = metric(x, LOOKUPS("ListPartitions", "index"));
    long long s0 = metric(x, LOOKUPS("ListPartitions", "sql"));
    CHECK_EQ_INT(listed(x, x->idx, "", 0, ref), REQUESTED);
    CHECK_CMP_INT(metric(x, LOOKUPS("ListPartitions", "index")), >, i0);
    CHECK_EQ_INT(metric(x, LOOKUPS("ListPartitions", "sql")), s0);
}

DBLD_TEST(wanted_never_built_is_listed)
{
    fx x;
    memset(&x, 0, sizeof x);
    x.external = "[\"ext/.*\"]";
    bf_opts o = {.jobs = JOBS, .rules = RULES, .external = x.external};
    bf_setup(&x.b, "qiwanted", &o);
    x.metrics_port = h_free_port();
    x.idx = start_query(
        &x, dbld_arena_printf(x.b.a, "  metrics_listen: \"127.0.0.1:%d\"\n", x.metrics_port));
    x.sql = start_query(&x, "  index: false\n");
    caught_up(&x);
    /* a want on an external partition nobody has made available: never
     * built here, it stays wanted (once the reconciler has seen it) */
    pf p = {.b = x.b, .q = x.idx};
    char *want = pf_put_want(&p, "ext/w1", 0, 3600, 0);
    char *reason = "";
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&p, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    caught_up(&x);
    /* the index itself lists it */
    index_lists_it(&x, "ext/w1");
    check_listed(&x, "ext/w1", REQUESTED, "REQUESTED");
    /* and so does an index loaded from the projections */
    h_service_stop(x.idx);
    h_service_restart(x.idx);
    caught_up(&x);
    index_lists_it(&x, "ext/w1");
    check_listed(&x, "ext/w1", REQUESTED, "REQUESTED");
    /* marked available by an outside system: listed AVAILABLE by both */
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(x.b.a, "", "ext/w1", AVAILABLE, "")};
    h_append_ok(x.b.el, x.b.a, ev, 1);
    caught_up(&x);
    check_listed(&x, "ext/w1", AVAILABLE, "AVAILABLE");
    CHECK(H_POLL_UNTIL(30000, pf_want_state(&p, want, &reason) == WS(AVAILABLE)));
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(index_answers_as_sql, 400),
               DBLD_TEST_ENTRY_T(index_reads_own_writes, 300),
               DBLD_TEST_ENTRY_T(wanted_never_built_is_listed, 180))
