/* test_hostile_input.c - requests a standard client could never send, sent to
 * the running event log and query services as raw bytes: invalid UTF-8 and
 * NUL bytes in string fields, strings over their documented limits, unknown
 * enum values, uint64 values past bigint, field number 0. Each must be refused with
 * INVALID_ARGUMENT naming the field (never INTERNAL with PostgreSQL's text),
 * store nothing, and leave the service serving the next good request.
 * The check itself is unit-tested in tests/unit/test_rpc_validate.c.
 */
#include "dbld/util.h"
#include "test_query_fixture.h"

#include <stdint.h>
#include <stdlib.h>

#define APPEND_RESP &databuild__v1__append_response__descriptor

/* One PartitionEvent of ref (UTF-8 unchecked: the caller patches bytes). */
static Databuild__V1__AppendRequest *partition_append(dbld_arena *a, const char *ref,
                                                      const char *message)
{
    Databuild__V1__BuildEvent *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    e->event_id = dbld_arena_alloc(a, 37);
    dbld_uuid_v4(e->event_id);
    e->build_request_id = "br-hostile";
    e->timestamp = QF_T0;
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    e->partition_event = dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
    e->partition_event->partition_ref =
        dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    e->partition_event->partition_ref->str = (char *)ref;
    e->partition_event->status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
    e->partition_event->message = (char *)message;
    Databuild__V1__AppendRequest *r = dbld_arena_msg(a, &databuild__v1__append_request__descriptor);
    r->events = dbld_arena_alloc(a, sizeof *r->events);
    r->events[0] = e;
    r->n_events = 1;
    return r;
}

/* Replace the first occurrence of marker in buf (same length). */
static void patch(uint8_t *buf, size_t len, const char *marker, const void *with)
{
    size_t n = strlen(marker);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, marker, n) == 0) {
            memcpy(buf + i, with, n);
            return;
        }
    CHECK_MSG(0, "marker %s not in the packed request", marker);
}

/* Send raw bytes; CHECK INVALID_ARGUMENT with needle in the message. */
static void expect_refused_raw(h_service *s, const char *path, const uint8_t *buf, size_t len,
                               const char *needle)
{
    void *out = NULL;
    size_t out_len = 0;
    dbld_status st;
    int rc = dbld_client_unary_raw(s->client, path, buf, len, &out, &out_len, 10000, &st);
    free(out);
    CHECK_MSG(rc == DBLD_INVALID_ARGUMENT, "%s: want INVALID_ARGUMENT, got %s: %s", path,
              dbld_code_name(rc), st.msg);
    CHECK_CONTAINS(st.msg, needle);
}

static size_t count_events(qf *f)
{
    h_event_list all = h_list_all(f->el, f->a, NULL, 100);
    return all.n;
}

/* The repro of the issue: config.args holding ff fe fd was stored and then
 * broke every List and Subscribe of standard clients. */
DBLD_TEST(invalid_utf8_refused_and_nothing_stored)
{
    qf f = qf_start("hostile_utf8");
    Databuild__V1__AppendRequest *r = partition_append(f.a, "ok/ref", "ok");
    Databuild__V1__BuildEvent *e = r->events[0];
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    e->job_event = dbld_arena_msg(f.a, &databuild__v1__job_event__descriptor);
    e->job_event->job_run_id = "run-utf8";
    e->job_event->status_code = DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED;
    e->job_event->config = dbld_arena_msg(f.a, &databuild__v1__job_config__descriptor);
    e->job_event->config->args = dbld_arena_alloc(f.a, sizeof(char *));
    e->job_event->config->args[0] = "MARKER";
    e->job_event->config->n_args = 1;
    size_t len;
    uint8_t *buf = h_pack(f.a, &r->base, &len);
    patch(buf, len, "MARKER",
          "ab\xff\xfe\xfd"
          "c");
    expect_refused_raw(
        f.el, H_APPEND_PATH, buf, len,
        "field events[0].job_event.config.args[0]: not valid UTF-8 (at byte offset 2)");
    CHECK_EQ_INT(count_events(&f), 0);

    /* the same bytes in a query service request (a want's comment) */
    Databuild__V1__PutTaintsRequest t = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    t.comment = "MARKER";
    buf = h_pack(f.a, &t.base, &len);
    patch(buf, len, "MARKER",
          "\xc0\xaf\xff\xfe\xfd"
          "c");
    expect_refused_raw(f.q, "/databuild.v1.DataBuildService/PutTaints", buf, len,
                       "field comment: not valid UTF-8 (at byte offset 0)");
    CHECK_EQ_INT(count_events(&f), 0);

    /* the service still serves good requests, and they round-trip */
    h_append_ok(f.el, f.a, &partition_append(f.a, "ok/ünïcödé", "fine ✓")->events[0], 1);
    h_event_list all = h_list_all(f.el, f.a, NULL, 100);
    CHECK_EQ_INT(all.n, 1);
    CHECK_EQ_STR(all.events[0]->partition_event->partition_ref->str, "ok/ünïcödé");
}

/* r/nul\0after was stored as r/nul. */
DBLD_TEST(nul_byte_refused)
{
    qf f = qf_start("hostile_nul");
    size_t len;
    uint8_t *buf = h_pack(f.a, &partition_append(f.a, "r/nulXafter", "m")->base, &len);
    patch(buf, len, "r/nulXafter", "r/nul\0after");
    expect_refused_raw(f.el, H_APPEND_PATH, buf, len,
                       "field events[0].partition_event.partition_ref.str: NUL byte at offset 5");
    CHECK_EQ_INT(count_events(&f), 0);

    /* a GetPartition of a ref cut at a NUL would answer for another partition */
    Databuild__V1__PartitionSummaryRequest ps = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
    ref.str = "r/nulXafter";
    ps.ref = &ref;
    buf = h_pack(f.a, &ps.base, &len);
    patch(buf, len, "r/nulXafter", "r/nul\0after");
    expect_refused_raw(f.q, "/databuild.v1.DataBuildService/GetPartitionsSummary", buf, len,
                       "field ref.str: NUL byte at offset 5");
}

/* An event carrying field number 0 (its key written as the two bytes 81 00,
 * which protobuf-c reads and keeps as an unknown field) was stored, and its
 * stored payload (packed again: key 01) no longer decoded, so every List
 * and Subscribe that reached it failed. Found by tests/fuzz/fuzz_wire. */
DBLD_TEST(field_number_zero_refused)
{
    qf f = qf_start("hostile_field0");
    size_t ev_len;
    uint8_t *ev = h_pack(f.a, &partition_append(f.a, "r/field0", "m")->events[0]->base, &ev_len);
    static const uint8_t field0[] = {0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8}; /* field 0, fixed64 */
    size_t inner = ev_len + sizeof field0;
    CHECK(inner < 128); /* one length byte */
    uint8_t *buf = dbld_arena_alloc(f.a, inner + 2);
    buf[0] = 0x0a; /* AppendRequest.events, length-delimited */
    buf[1] = (uint8_t)inner;
    memcpy(buf + 2, ev, ev_len);
    memcpy(buf + 2 + ev_len, field0, sizeof field0);
    expect_refused_raw(f.el, H_APPEND_PATH, buf, inner + 2,
                       "field events[0].?: field number 0 is not valid");
    CHECK_EQ_INT(count_events(&f), 0);
    h_append_ok(f.el, f.a, &partition_append(f.a, "r/after", "m")->events[0], 1);
    CHECK_EQ_INT(count_events(&f), 1);
}

static char *big_string(dbld_arena *a, size_t n, char c)
{
    char *s = dbld_arena_alloc(a, n + 1);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

/* 1 MB strings gave INTERNAL "index row requires 12024 bytes". */
DBLD_TEST(strings_over_limits_refused)
{
    qf f = qf_start("hostile_limits");
    char *mb = big_string(f.a, 1 << 20, 'x');

    Databuild__V1__PutTaintsRequest t = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT, *refp = &ref;
    ref.str = mb;
    t.refs = &refp;
    t.n_refs = 1;
    QF_ERR(&f, "PutTaints", &t, databuild__v1__put_taints_response__descriptor,
           DBLD_INVALID_ARGUMENT,
           "field refs[0].str: 1048576 bytes, over the limit of 1024 bytes for a partition ref");

    Databuild__V1__RenewLeasesRequest rn = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    char *ids[] = {mb};
    rn.owner = "owner-1";
    rn.build_request_ids = ids;
    rn.n_build_request_ids = 1;
    void *resp = NULL;
    dbld_status st;
    int rc = qf_call_at(f.el, "/databuild.v1.BuildLeases/Renew", &rn,
                        &databuild__v1__renew_leases_response__descriptor, f.a, &resp, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "field build_request_ids[0]: 1048576 bytes, over the limit of 128");

    Databuild__V1__JobLogEntry e = DATABUILD__V1__JOB_LOG_ENTRY__INIT, *ep = &e;
    Databuild__V1__AppendJobLogsRequest jl = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    e.job_id = mb;
    e.sequence_number = 1;
    jl.entries = &ep;
    jl.n_entries = 1;
    rc = qf_call_at(f.el, "/databuild.v1.JobLogs/Append", &jl,
                    &databuild__v1__append_job_logs_response__descriptor, f.a, &resp, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "field entries[0].job_id: 1048576 bytes, over the limit of 128");

    /* a comment at its limit is fine, one byte more is not */
    ref.str = "ok/ref";
    t.comment = big_string(f.a, DBLD_LIMIT_COMMENT_BYTES, 'c');
    QF_OK(&f, "PutTaints", &t, Databuild__V1__PutTaintsResponse,
          databuild__v1__put_taints_response__descriptor);
    t.comment = big_string(f.a, DBLD_LIMIT_COMMENT_BYTES + 1, 'c');
    QF_ERR(&f, "PutTaints", &t, databuild__v1__put_taints_response__descriptor,
           DBLD_INVALID_ARGUMENT, "field comment: 4097 bytes, over the limit of 4096 bytes");
}

/* partition_status=[-1] blamed ref_pattern with "4294967295 is out of range";
 * a sequence_number of 2^64-1 gave "out of range for type bigint". */
DBLD_TEST(numbers_out_of_range_refused)
{
    qf f = qf_start("hostile_numbers");
    Databuild__V1__ListPartitionsRequest lp = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    Databuild__V1__PartitionStatus bad[] = {(Databuild__V1__PartitionStatus)-1};
    lp.partition_status = bad;
    lp.n_partition_status = 1;
    QF_ERR(&f, "ListPartitions", &lp, databuild__v1__list_partitions_response__descriptor,
           DBLD_INVALID_ARGUMENT,
           "field partition_status[0]: -1 is not a databuild.v1.PartitionStatus value");

    Databuild__V1__JobLogEntry e = DATABUILD__V1__JOB_LOG_ENTRY__INIT, *ep = &e;
    Databuild__V1__AppendJobLogsRequest jl = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    e.job_id = "run-seq";
    e.timestamp = "1";
    e.sequence_number = UINT64_MAX;
    Databuild__V1__LogMessage lm = DATABUILD__V1__LOG_MESSAGE__INIT;
    lm.message = "hello";
    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
    e.log = &lm;
    jl.entries = &ep;
    jl.n_entries = 1;
    void *resp = NULL;
    dbld_status st;
    int rc = qf_call_at(f.el, "/databuild.v1.JobLogs/Append", &jl,
                        &databuild__v1__append_job_logs_response__descriptor, f.a, &resp, &st);
    CHECK_CODE(rc, st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "field entries[0].sequence_number: 18446744073709551615 is over the "
                           "largest accepted value 9223372036854775807");
    /* the largest accepted value is stored */
    e.sequence_number = INT64_MAX;
    rc = qf_call_at(f.el, "/databuild.v1.JobLogs/Append", &jl,
                    &databuild__v1__append_job_logs_response__descriptor, f.a, &resp, &st);
    CHECK_OK(rc, st);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(invalid_utf8_refused_and_nothing_stored),
               DBLD_TEST_ENTRY(nul_byte_refused), DBLD_TEST_ENTRY(strings_over_limits_refused),
               DBLD_TEST_ENTRY(numbers_out_of_range_refused),
               DBLD_TEST_ENTRY(field_number_zero_refused))
