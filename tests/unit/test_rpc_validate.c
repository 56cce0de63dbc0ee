/* test_rpc_validate.c - the wire check every request passes before it is
 * unpacked (lib/rpc_validate.c): UTF-8, NUL bytes, string and list limits,
 * enum values, uint64 range, nesting depth, field paths in the messages, and
 * that real messages of every kind pass. The same check against running
 * services: tests/integration/test_hostile_input.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/rpc.h"

#include <stdlib.h>
#include <string.h>

typedef struct packed {
    uint8_t *buf;
    size_t len;
} packed;

static packed pack(const ProtobufCMessage *m)
{
    packed p;
    p.len = protobuf_c_message_get_packed_size(m);
    p.buf = malloc(p.len + 1);
    assert_non_null(p.buf);
    assert_int_equal(protobuf_c_message_pack(m, p.buf), p.len);
    return p;
}

/* Overwrite the first occurrence of marker (same length) in p. */
static void patch(packed p, const char *marker, const void *with, size_t n)
{
    assert_int_equal(strlen(marker), n);
    for (size_t i = 0; i + n <= p.len; i++)
        if (memcmp(p.buf + i, marker, n) == 0) {
            memcpy(p.buf + i, with, n);
            return;
        }
    fail_msg("marker %s not found", marker);
}

static void expect_refused(const ProtobufCMessageDescriptor *d, packed p, const char *needle)
{
    dbld_status st;
    int rc = dbld_wire_validate(d, p.buf, p.len, &st);
    if (rc != DBLD_INVALID_ARGUMENT || !strstr(st.msg, needle))
        fail_msg("want INVALID_ARGUMENT with \"%s\", got %d \"%s\"", needle, rc, st.msg);
}

static void expect_ok(const ProtobufCMessageDescriptor *d, packed p)
{
    dbld_status st;
    int rc = dbld_wire_validate(d, p.buf, p.len, &st);
    if (rc != 0) fail_msg("want OK, got %d \"%s\"", rc, st.msg);
}

/* An Append of one JobEvent with config.args = {"--date", arg}. */
typedef struct append_msg {
    Databuild__V1__AppendRequest req;
    Databuild__V1__BuildEvent ev, *evp;
    Databuild__V1__JobEvent je;
    Databuild__V1__JobConfig cfg;
    Databuild__V1__JobLabel label;
    Databuild__V1__PartitionRef out, *outp;
    char *args[2];
} append_msg;

static void append_init(append_msg *m, const char *arg, const char *ref)
{
    memset(m, 0, sizeof *m);
    databuild__v1__append_request__init(&m->req);
    databuild__v1__build_event__init(&m->ev);
    databuild__v1__job_event__init(&m->je);
    databuild__v1__job_config__init(&m->cfg);
    databuild__v1__job_label__init(&m->label);
    databuild__v1__partition_ref__init(&m->out);
    m->out.str = (char *)ref;
    m->outp = &m->out;
    m->label.label = "//examples:ingest";
    m->args[0] = "--date";
    m->args[1] = (char *)arg;
    m->cfg.n_args = 2;
    m->cfg.args = m->args;
    m->cfg.n_outputs = 1;
    m->cfg.outputs = &m->outp;
    m->je.job_run_id = "0b7b8a40-1d3c-4c57-9a55-1b2f1f0d9a11";
    m->je.job_label = &m->label;
    m->je.config = &m->cfg;
    m->je.status_code = DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED;
    m->ev.event_id = "6f0b1c2e-8a8d-4f8b-bb0e-2b8f4e1f0c33";
    m->ev.build_request_id = "br-1";
    m->ev.event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    m->ev.job_event = &m->je;
    m->evp = &m->ev;
    m->req.n_events = 1;
    m->req.events = &m->evp;
}

static void test_valid_messages_pass(void **state)
{
    (void)state;
    append_msg m;
    append_init(&m, "2025-03-03 héllo ✓ 日付 \U0001F600", "raw/reviews/date=2025-03-03");
    packed p = pack(&m.req.base);
    expect_ok(&databuild__v1__append_request__descriptor, p);
    free(p.buf);
    /* empty message */
    expect_ok(&databuild__v1__append_request__descriptor, (packed){(uint8_t *)"", 0});
}

static void test_invalid_utf8_names_the_field(void **state)
{
    (void)state;
    append_msg m;
    append_init(&m, "ABC", "r/x");
    packed p = pack(&m.req.base);
    patch(p, "ABC", "\xff\xfe\xfd", 3);
    expect_refused(&databuild__v1__append_request__descriptor, p,
                   "field events[0].job_event.config.args[1]: not valid UTF-8");
    free(p.buf);

    /* overlong '/', a surrogate, above U+10FFFF, a truncated sequence */
    static const char *const bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "a\xe2\x82"};
    static const char *const marks[] = {"AB", "ABC", "ABCD", "ABC"};
    for (size_t i = 0; i < 4; i++) {
        append_init(&m, "x", marks[i]);
        p = pack(&m.req.base);
        patch(p, marks[i], bad[i], strlen(marks[i]));
        expect_refused(&databuild__v1__append_request__descriptor, p,
                       "field events[0].job_event.config.outputs[0].str: not valid UTF-8");
        free(p.buf);
    }
}

static void test_nul_byte_refused(void **state)
{
    (void)state;
    append_msg m;
    append_init(&m, "x", "r/nulXafter");
    packed p = pack(&m.req.base);
    patch(p, "r/nulXafter", "r/nul\0after", 11);
    expect_refused(&databuild__v1__append_request__descriptor, p,
                   "config.outputs[0].str: NUL byte at offset 5");
    free(p.buf);
}

static void test_string_limits_by_kind(void **state)
{
    (void)state;
    const char *kind;
    assert_int_equal(dbld_string_limit("PartitionRef", "str", &kind), DBLD_LIMIT_REF_BYTES);
    assert_string_equal(kind, "a partition ref");
    assert_int_equal(dbld_string_limit("X", "build_request_ids", &kind), DBLD_LIMIT_ID_BYTES);
    assert_int_equal(dbld_string_limit("X", "job_run_id", NULL), DBLD_LIMIT_ID_BYTES);
    assert_int_equal(dbld_string_limit("X", "label", NULL), DBLD_LIMIT_LABEL_BYTES);
    assert_int_equal(dbld_string_limit("X", "comment", NULL), DBLD_LIMIT_COMMENT_BYTES);
    assert_int_equal(dbld_string_limit("X", "message", NULL), DBLD_LIMIT_MESSAGE_BYTES);
    assert_int_equal(dbld_string_limit("X", "ref_pattern", NULL), DBLD_LIMIT_PATTERN_BYTES);
    assert_int_equal(dbld_string_limit("X", "args", NULL), DBLD_LIMIT_STRING_BYTES);

    /* a ref at the limit passes, one byte more is refused with the limit named */
    char *ref = malloc(DBLD_LIMIT_REF_BYTES + 2);
    memset(ref, 'r', DBLD_LIMIT_REF_BYTES + 1);
    ref[DBLD_LIMIT_REF_BYTES] = 0;
    append_msg m;
    append_init(&m, "x", ref);
    packed p = pack(&m.req.base);
    expect_ok(&databuild__v1__append_request__descriptor, p);
    free(p.buf);
    ref[DBLD_LIMIT_REF_BYTES] = 'r';
    ref[DBLD_LIMIT_REF_BYTES + 1] = 0;
    p = pack(&m.req.base);
    expect_refused(&databuild__v1__append_request__descriptor, p,
                   "outputs[0].str: 1025 bytes, over the limit of 1024 bytes for a partition ref");
    free(p.buf);
    free(ref);

    /* a 1 MB build id in Renew */
    Databuild__V1__RenewLeasesRequest rr = DATABUILD__V1__RENEW_LEASES_REQUEST__INIT;
    char *big = malloc(1 << 20);
    memset(big, 'b', (1 << 20) - 1);
    big[(1 << 20) - 1] = 0;
    char *ids[] = {"ok", big};
    rr.owner = "graph-1";
    rr.n_build_request_ids = 2;
    rr.build_request_ids = ids;
    p = pack(&rr.base);
    expect_refused(
        &databuild__v1__renew_leases_request__descriptor, p,
        "field build_request_ids[1]: 1048575 bytes, over the limit of 128 bytes for an id");
    free(p.buf);
    free(big);
}

static void test_enum_values_checked(void **state)
{
    (void)state;
    Databuild__V1__ListPartitionsRequest r = DATABUILD__V1__LIST_PARTITIONS_REQUEST__INIT;
    Databuild__V1__PartitionStatus sts[] = {DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE,
                                            (Databuild__V1__PartitionStatus)-1};
    r.n_partition_status = 1;
    r.partition_status = sts;
    packed p = pack(&r.base);
    expect_ok(&databuild__v1__list_partitions_request__descriptor, p);
    free(p.buf);
    r.n_partition_status = 2;
    p = pack(&r.base);
    expect_refused(&databuild__v1__list_partitions_request__descriptor, p,
                   "field partition_status[1]: -1 is not a databuild.v1.PartitionStatus value");
    free(p.buf);
}

static void test_uint64_over_int64_refused(void **state)
{
    (void)state;
    Databuild__V1__JobLogEntry e = DATABUILD__V1__JOB_LOG_ENTRY__INIT;
    Databuild__V1__JobLogEntry *ep = &e;
    Databuild__V1__AppendJobLogsRequest r = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    e.job_id = "run-1";
    e.sequence_number = INT64_MAX;
    r.n_entries = 1;
    r.entries = &ep;
    packed p = pack(&r.base);
    expect_ok(&databuild__v1__append_job_logs_request__descriptor, p);
    free(p.buf);
    e.sequence_number = UINT64_MAX;
    p = pack(&r.base);
    expect_refused(&databuild__v1__append_job_logs_request__descriptor, p,
                   "field entries[0].sequence_number: 18446744073709551615 is over the largest "
                   "accepted value 9223372036854775807");
    free(p.buf);
}

static void test_list_limit(void **state)
{
    (void)state;
    size_t n = DBLD_LIMIT_LIST_ITEMS + 1;
    char **refs = malloc(n * sizeof *refs);
    for (size_t i = 0; i < n; i++)
        refs[i] = "r";
    Databuild__V1__PartitionStatusRequest r = DATABUILD__V1__PARTITION_STATUS_REQUEST__INIT;
    r.n_refs = n - 1;
    r.refs = refs;
    packed p = pack(&r.base);
    expect_ok(&databuild__v1__partition_status_request__descriptor, p);
    free(p.buf);
    r.n_refs = n;
    p = pack(&r.base);
    expect_refused(&databuild__v1__partition_status_request__descriptor, p,
                   "field refs[100000]: more than 100000 items");
    free(p.buf);
    free(refs);
}

/* PartitionManifest.inputs nests without bound in the schema. */
static void test_depth_limit(void **state)
{
    (void)state;
    enum { N = DBLD_LIMIT_DEPTH + 5 };
    Databuild__V1__PartitionManifest ms[N], *ptrs[N];
    for (int i = 0; i < N; i++) {
        databuild__v1__partition_manifest__init(&ms[i]);
        ptrs[i] = &ms[i];
        if (i > 0) {
            ms[i - 1].n_inputs = 1;
            ms[i - 1].inputs = &ptrs[i];
        }
    }
    Databuild__V1__JobExecuteResponse r = DATABUILD__V1__JOB_EXECUTE_RESPONSE__INIT;
    r.n_manifests = 1;
    r.manifests = ptrs;
    packed p = pack(&r.base);
    expect_refused(&databuild__v1__job_execute_response__descriptor, p, "nested deeper than 32");
    free(p.buf);
    ms[DBLD_LIMIT_DEPTH - 3].n_inputs = 0; /* 30 levels pass */
    p = pack(&r.base);
    expect_ok(&databuild__v1__job_execute_response__descriptor, p);
    free(p.buf);
}

/* Malformed bytes are left to protobuf-c: the check neither crashes nor
 * claims a field, whatever the input. */
static void test_malformed_bytes_pass_through(void **state)
{
    (void)state;
    static const uint8_t cases[][6] = {
        {0x0a, 0x7f, 'a'},              /* length past the end */
        {0x0a, 0xff, 0xff, 0xff, 0xff}, /* unterminated varint length */
        {0x0b},                         /* start group */
    };
    dbld_status st;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(
            dbld_wire_validate(&databuild__v1__append_request__descriptor, cases[i], 6, &st), 0);
}

/* Field number 0 (possible in a key written as a longer varint, which
 * protobuf-c accepts and keeps as an unknown field, then packs as a tag it
 * refuses to read back: found by tests/fuzz/fuzz_wire) and numbers above
 * 2^29 - 1 are refused. */
static void test_invalid_field_numbers_refused(void **state)
{
    (void)state;
    static const struct {
        uint8_t bytes[12];
        size_t len;
    } cases[] = {
        {{0x81, 0x00, 1, 2, 3, 4, 5, 6, 7, 8}, 10}, /* field 0, fixed64, in a 2-byte key */
        {{0x80, 0x80, 0x00, 0x00}, 4},              /* field 0, varint, in a 3-byte key */
        {{0xf8, 0xff, 0xff, 0xff, 0xff, 0x7f}, 6},  /* beyond 2^29 - 1 */
        {{0x80, 0x80, 0x80, 0x80, 0x10, 0x00}, 6},  /* 2^29 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        packed p = {(uint8_t *)cases[i].bytes, cases[i].len};
        expect_refused(&databuild__v1__append_request__descriptor, p, "is not valid");
        expect_refused(&databuild__v1__job_summary_request__descriptor, p, "is not valid");
    }
    /* the largest number is fine (an unknown field) */
    static uint8_t top[] = {0xf8, 0xff, 0xff, 0xff, 0x0f, 0x00};
    expect_ok(&databuild__v1__append_request__descriptor, (packed){top, sizeof top});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_messages_pass),
        cmocka_unit_test(test_invalid_utf8_names_the_field),
        cmocka_unit_test(test_nul_byte_refused),
        cmocka_unit_test(test_string_limits_by_kind),
        cmocka_unit_test(test_enum_values_checked),
        cmocka_unit_test(test_uint64_over_int64_refused),
        cmocka_unit_test(test_list_limit),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_malformed_bytes_pass_through),
        cmocka_unit_test(test_invalid_field_numbers_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
