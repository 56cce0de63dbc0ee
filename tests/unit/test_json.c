/* test_json.c - proto3 JSON mapping: round trips over the project's messages,
 * the job-binary protocol example, error texts, and every scalar type through a
 * hand-built descriptor (the project's protos have no bytes field). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/json.h"

/* ---- helpers ---- */

static void assert_packed_equal(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
    size_t na = protobuf_c_message_get_packed_size(a);
    size_t nb = protobuf_c_message_get_packed_size(b);
    assert_int_equal(na, nb);
    uint8_t *ba = malloc(na + 1), *bb = malloc(nb + 1);
    protobuf_c_message_pack(a, ba);
    protobuf_c_message_pack(b, bb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
}

/* encode -> decode -> identical wire bytes, and the re-encoding is the same text. */
static void roundtrip_flags(const ProtobufCMessage *m, int flags)
{
    char *text = dbld_json_encode(m, flags);
    assert_non_null(text);
    ProtobufCMessage *out = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = dbld_json_decode(text, strlen(text), m->descriptor, NULL, &out, &st);
    if (rc) print_error("decode failed: %s\n%s\n", st.msg, text);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    assert_packed_equal(m, out);
    char *again = dbld_json_encode(out, flags);
    assert_non_null(again);
    assert_string_equal(text, again);
    free(again);
    free(text);
    protobuf_c_message_free_unpacked(out, NULL);
}

static void roundtrip(const ProtobufCMessage *m)
{
    roundtrip_flags(m, 0);
    roundtrip_flags(m, DBLD_JSON_ORIGINAL_NAMES);
    roundtrip_flags(m, DBLD_JSON_PRETTY);
    roundtrip_flags(m, DBLD_JSON_EMIT_DEFAULTS);
    roundtrip_flags(m, DBLD_JSON_EMIT_DEFAULTS | DBLD_JSON_ORIGINAL_NAMES | DBLD_JSON_PRETTY);
}

/* Decode text expecting failure; returns the status for inspection. */
static dbld_status decode_fail(const char *text, const ProtobufCMessageDescriptor *d)
{
    dbld_status st;
    dbld_status_clear(&st);
    ProtobufCMessage *out = (ProtobufCMessage *)0x1;
    int rc = dbld_json_decode(text, strlen(text), d, NULL, &out, &st);
    assert_int_not_equal(rc, 0);
    assert_int_equal(rc, st.code);
    assert_null(out);
    return st;
}

static ProtobufCMessage *decode_ok(const char *text, const ProtobufCMessageDescriptor *d)
{
    dbld_status st;
    dbld_status_clear(&st);
    ProtobufCMessage *out = NULL;
    int rc = dbld_json_decode(text, strlen(text), d, NULL, &out, &st);
    if (rc) print_error("decode failed: %s\n", st.msg);
    assert_int_equal(rc, 0);
    assert_non_null(out);
    return out;
}

static void assert_encodes(const ProtobufCMessage *m, int flags, const char *want)
{
    char *text = dbld_json_encode(m, flags);
    assert_non_null(text);
    assert_string_equal(text, want);
    free(text);
}

/* ---- shared sample data (stack-built, never freed) ---- */

static Databuild__V1__PartitionRef ref_a = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__partition_ref__descriptor), "data/a/2024-01-01"};
static Databuild__V1__PartitionRef ref_b = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__partition_ref__descriptor),
    "data/b/ünïcode \"quoted\"\n"};
static Databuild__V1__PartitionRef *refs_ab[] = {&ref_a, &ref_b};

static Databuild__V1__JobLabel job_label = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__job_label__descriptor), "//jobs:ingest"};

static Databuild__V1__DataDep dep_mat = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__data_dep__descriptor),
    DATABUILD__V1__DEP_TYPE__MATERIALIZE, "materialize", &ref_b};
static Databuild__V1__DataDep dep_query = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__data_dep__descriptor), DATABUILD__V1__DEP_TYPE__QUERY,
    "query", &ref_a};
static Databuild__V1__DataDep *deps[] = {&dep_mat, &dep_query};

static Databuild__V1__JobConfig__EnvEntry env1 = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__job_config__env_entry__descriptor), "PATH", "/bin"};
static Databuild__V1__JobConfig__EnvEntry env2 = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__job_config__env_entry__descriptor), "EMPTY", ""};
static Databuild__V1__JobConfig__EnvEntry env3 = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__job_config__env_entry__descriptor), "A_KEY", "v=1"};
static Databuild__V1__JobConfig__EnvEntry *envs[] = {&env1, &env2, &env3};
static char *job_args[] = {"--date", "2024-01-01", ""};

static Databuild__V1__JobConfig job_config = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__job_config__descriptor),
    2,
    refs_ab,
    2,
    deps,
    3,
    job_args,
    3,
    envs};

static Databuild__V1__Task task = {PROTOBUF_C_MESSAGE_INIT(&databuild__v1__task__descriptor),
                                   &job_label, &job_config};

static Databuild__V1__PartitionManifest__MetadataEntry md1 = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__partition_manifest__metadata_entry__descriptor), "rows",
    "1234"};
static Databuild__V1__PartitionManifest__MetadataEntry *mds[] = {&md1};

static Databuild__V1__PartitionManifest inner_manifest = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__partition_manifest__descriptor),
    1,
    &refs_ab[1],
    0,
    NULL,
    -5,
    0,
    NULL,
    0,
    NULL};
static Databuild__V1__PartitionManifest *inner_manifests[] = {&inner_manifest};
static Databuild__V1__PartitionManifest manifest = {
    PROTOBUF_C_MESSAGE_INIT(&databuild__v1__partition_manifest__descriptor),
    1,
    refs_ab,
    1,
    inner_manifests,
    1700000000,
    INT64_MAX,
    &task,
    1,
    mds};
static Databuild__V1__PartitionManifest *manifests[] = {&manifest, &inner_manifest};

/* BuildEvent with payload case c, built into the static storage below. */
static Databuild__V1__BuildEvent make_event(Databuild__V1__BuildEvent__EventTypeCase c)
{
    static Databuild__V1__BuildRequestStatus brs = DATABUILD__V1__BUILD_REQUEST_STATUS__INIT;
    static Databuild__V1__BuildRequestEvent bre = DATABUILD__V1__BUILD_REQUEST_EVENT__INIT;
    static Databuild__V1__PartitionEvent pe = DATABUILD__V1__PARTITION_EVENT__INIT;
    static Databuild__V1__JobEvent je = DATABUILD__V1__JOB_EVENT__INIT;
    static Databuild__V1__DelegationEvent de = DATABUILD__V1__DELEGATION_EVENT__INIT;
    static Databuild__V1__GraphLabel gl = DATABUILD__V1__GRAPH_LABEL__INIT;
    static Databuild__V1__Task *nodes[] = {&task, &task};
    static Databuild__V1__JobGraph jg = DATABUILD__V1__JOB_GRAPH__INIT;
    static Databuild__V1__JobGraphEvent jge = DATABUILD__V1__JOB_GRAPH_EVENT__INIT;
    static Databuild__V1__PartitionInvalidationEvent pie =
        DATABUILD__V1__PARTITION_INVALIDATION_EVENT__INIT;
    static Databuild__V1__JobRunCancelEvent jrce = DATABUILD__V1__JOB_RUN_CANCEL_EVENT__INIT;
    static Databuild__V1__BuildCancelEvent bce = DATABUILD__V1__BUILD_CANCEL_EVENT__INIT;
    static Databuild__V1__SourceType stype = DATABUILD__V1__SOURCE_TYPE__INIT;
    static Databuild__V1__WantSource wsrc = DATABUILD__V1__WANT_SOURCE__INIT;
    static Databuild__V1__WantEvent we = DATABUILD__V1__WANT_EVENT__INIT;
    static Databuild__V1__TaintEvent te = DATABUILD__V1__TAINT_EVENT__INIT;

    Databuild__V1__BuildEvent ev = DATABUILD__V1__BUILD_EVENT__INIT;
    ev.event_id = "0b7c4b3e-2f7a-4c1e-9a51-1d2f3e4a5b6c";
    ev.timestamp = 1700000000123456789LL;
    ev.build_request_id = "br-1";
    ev.event_type_case = c;
    switch (c) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        brs.code = DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_ANALYSIS_COMPLETED;
        brs.name = "analysis completed";
        bre.status = &brs;
        bre.n_requested_partitions = 2;
        bre.requested_partitions = refs_ab;
        bre.comment = "nightly";
        bre.want_id = "w-1";
        ev.build_request_event = &bre;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
        pe.partition_ref = &ref_a;
        pe.status_code = DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE;
        pe.status_name = "available";
        pe.job_run_id = "jr-1";
        ev.partition_event = &pe;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        je.job_run_id = "jr-2";
        je.job_label = &job_label;
        je.n_target_partitions = 2;
        je.target_partitions = refs_ab;
        je.status_code = DATABUILD__V1__JOB_STATUS__JOB_COMPLETED;
        je.status_name = "completed";
        je.message = "ok";
        je.config = &job_config;
        je.n_manifests = 2;
        je.manifests = manifests;
        ev.job_event = &je;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT:
        de.partition_ref = &ref_b;
        de.delegated_to_build_request_id = "br-0";
        ev.delegation_event = &de;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT:
        gl.label = "//graphs:main";
        jg.label = &gl;
        jg.n_outputs = 2;
        jg.outputs = refs_ab;
        jg.n_nodes = 2;
        jg.nodes = nodes;
        jge.job_graph = &jg;
        jge.message = "analyzed";
        ev.job_graph_event = &jge;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT:
        pie.partition_ref = &ref_a;
        pie.reason = "bad upstream";
        ev.partition_invalidation_event = &pie;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT:
        jrce.job_run_id = "jr-3";
        jrce.reason = "user";
        ev.job_run_cancel_event = &jrce;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT:
        /* all-default payload: still present because oneof members have presence */
        ev.build_cancel_event = &bce;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT:
        stype.code = DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST;
        stype.name = "api";
        wsrc.source_type = &stype;
        we.n_requested_partitions = 1;
        we.requested_partitions = refs_ab;
        we.want_id = "w-2";
        we.source = &wsrc;
        we.comment = "please";
        ev.want_event = &we;
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT:
        te.n_refs = 2;
        te.refs = refs_ab;
        te.created_at = UINT64_MAX;
        te.source_type = &stype;
        te.comment = "taint";
        ev.taint_event = &te;
        break;
    default:
        break;
    }
    return ev;
}

/* ---- tests ---- */

static void test_build_event_all_payloads(void **state)
{
    (void)state;
    for (int c = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT;
         c <= DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT; c++) {
        Databuild__V1__BuildEvent ev = make_event((Databuild__V1__BuildEvent__EventTypeCase)c);
        roundtrip(&ev.base);
    }
    /* no payload at all */
    Databuild__V1__BuildEvent empty = DATABUILD__V1__BUILD_EVENT__INIT;
    roundtrip(&empty.base);
    assert_encodes(&empty.base, 0, "{}");
}

static void test_build_event_shape(void **state)
{
    (void)state;
    Databuild__V1__BuildEvent ev =
        make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT);
    assert_encodes(&ev.base, 0,
                   "{\"eventId\":\"0b7c4b3e-2f7a-4c1e-9a51-1d2f3e4a5b6c\","
                   "\"timestamp\":\"1700000000123456789\",\"buildRequestId\":\"br-1\","
                   "\"partitionEvent\":{\"partitionRef\":{\"str\":\"data/a/2024-01-01\"},"
                   "\"statusCode\":\"PARTITION_AVAILABLE\",\"statusName\":\"available\","
                   "\"jobRunId\":\"jr-1\"}}");
    ev = make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT);
    assert_encodes(&ev.base, DBLD_JSON_ORIGINAL_NAMES,
                   "{\"event_id\":\"0b7c4b3e-2f7a-4c1e-9a51-1d2f3e4a5b6c\","
                   "\"timestamp\":\"1700000000123456789\",\"build_request_id\":\"br-1\","
                   "\"build_cancel_event\":{}}");
    ev = make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT);
    char *text = dbld_json_encode(&ev.base, 0);
    assert_non_null(strstr(text, "\"createdAt\":\"18446744073709551615\""));
    assert_non_null(strstr(text, "\"sourceType\":{\"code\":\"API_REQUEST\",\"name\":\"api\"}"));
    free(text);
}

static void test_job_event_maps(void **state)
{
    (void)state;
    Databuild__V1__BuildEvent ev = make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT);
    char *text = dbld_json_encode(&ev.base, 0);
    assert_non_null(text);
    assert_non_null(strstr(text, "\"env\":{\"PATH\":\"/bin\",\"EMPTY\":\"\",\"A_KEY\":\"v=1\"}"));
    assert_non_null(strstr(text, "\"args\":[\"--date\",\"2024-01-01\",\"\"]"));
    assert_non_null(strstr(text, "\"metadata\":{\"rows\":\"1234\"}"));
    assert_non_null(strstr(text, "\"endTime\":\"9223372036854775807\""));
    assert_non_null(strstr(text, "\"startTime\":\"-5\""));
    assert_non_null(strstr(text, "\"depTypeCode\":\"MATERIALIZE\""));
    free(text);

    /* decoded message is well-formed for protobuf-c: free via unpack path too */
    text = dbld_json_encode(&ev.base, 0);
    Databuild__V1__BuildEvent *out =
        (Databuild__V1__BuildEvent *)decode_ok(text, &databuild__v1__build_event__descriptor);
    assert_int_equal(out->event_type_case, DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT);
    Databuild__V1__JobConfig *cfg = out->job_event->config;
    assert_int_equal(cfg->n_env, 3);
    assert_string_equal(cfg->env[1]->key, "EMPTY");
    assert_string_equal(cfg->env[1]->value, "");
    assert_string_equal(cfg->args[2], "");
    assert_string_equal(out->job_event->target_partitions[1]->str, ref_b.str);
    assert_int_equal(out->job_event->manifests[0]->inputs[0]->start_time, -5);
    free(text);
    protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void test_job_log_entry(void **state)
{
    (void)state;
    Databuild__V1__LogMessage__FieldsEntry f1 = DATABUILD__V1__LOG_MESSAGE__FIELDS_ENTRY__INIT;
    f1.key = "k1";
    f1.value = "v1";
    Databuild__V1__LogMessage__FieldsEntry f2 = DATABUILD__V1__LOG_MESSAGE__FIELDS_ENTRY__INIT;
    f2.key = "";
    f2.value = "empty key";
    Databuild__V1__LogMessage__FieldsEntry *fields[] = {&f1, &f2};
    Databuild__V1__LogMessage log = DATABUILD__V1__LOG_MESSAGE__INIT;
    log.level = DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__WARN;
    log.message = "disk almost full";
    log.n_fields = 2;
    log.fields = fields;

    Databuild__V1__JobLogEntry e = DATABUILD__V1__JOB_LOG_ENTRY__INIT;
    e.timestamp = "1700000000";
    e.job_id = "job-1";
    e.n_outputs = 2;
    e.outputs = refs_ab;
    e.sequence_number = 42;
    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
    e.log = &log;
    roundtrip(&e.base);
    assert_encodes(&e.base, 0,
                   "{\"timestamp\":\"1700000000\",\"jobId\":\"job-1\",\"outputs\":[{\"str\":"
                   "\"data/a/2024-01-01\"},{\"str\":\"data/b/ünïcode \\\"quoted\\\"\\n\"}],"
                   "\"sequenceNumber\":\"42\",\"log\":{\"level\":\"WARN\",\"message\":\"disk "
                   "almost full\",\"fields\":{\"k1\":\"v1\",\"\":\"empty key\"}}}");

    Databuild__V1__MetricPoint__LabelsEntry l1 = DATABUILD__V1__METRIC_POINT__LABELS_ENTRY__INIT;
    l1.key = "host";
    l1.value = "a";
    Databuild__V1__MetricPoint__LabelsEntry *labels[] = {&l1};
    Databuild__V1__MetricPoint mp = DATABUILD__V1__METRIC_POINT__INIT;
    mp.name = "rows";
    mp.labels = labels;
    mp.n_labels = 1;
    mp.unit = "count";
    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC;
    e.metric = &mp;
    double values[] = {0.1, 1.0 / 3.0, -2.5e-300, 1e300, 12345, -0.0, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        mp.value = values[i];
        roundtrip(&e.base);
    }
    mp.value = NAN;
    char *text = dbld_json_encode(&e.base, 0);
    assert_non_null(strstr(text, "\"value\":\"NaN\""));
    free(text);
    mp.value = -INFINITY;
    text = dbld_json_encode(&e.base, 0);
    assert_non_null(strstr(text, "\"value\":\"-Infinity\""));
    free(text);

    Databuild__V1__WrapperJobEvent__MetadataEntry wm =
        DATABUILD__V1__WRAPPER_JOB_EVENT__METADATA_ENTRY__INIT;
    wm.key = "exit";
    wm.value = "137";
    Databuild__V1__WrapperJobEvent__MetadataEntry *wms[] = {&wm};
    Databuild__V1__WrapperJobEvent wje = DATABUILD__V1__WRAPPER_JOB_EVENT__INIT;
    wje.event_type = "task_failed";
    wje.metadata = wms;
    wje.n_metadata = 1;
    wje.exit_code = -9;
    wje.job_label = "//jobs:x";
    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_JOB_EVENT;
    e.job_event = &wje;
    roundtrip(&e.base);

    e.content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_MANIFEST;
    e.manifest = &manifest;
    e.sequence_number = UINT64_MAX;
    roundtrip(&e.base);
}

static void test_job_configure_response_protocol(void **state)
{
    (void)state;
    const char *text = "{\"configs\":[{\"outputs\":[{\"str\":\"a/x\"}],\"inputs\":[{\"dep_type_"
                       "code\":1,\"partition_ref\":{\"str\":\"b/x\"}}],\"args\":[\"x\"],"
                       "\"env\":{\"K\":\"V\"}}]}";
    Databuild__V1__JobConfigureResponse *r = (Databuild__V1__JobConfigureResponse *)decode_ok(
        text, &databuild__v1__job_configure_response__descriptor);
    assert_int_equal(r->n_configs, 1);
    Databuild__V1__JobConfig *c = r->configs[0];
    assert_int_equal(c->n_outputs, 1);
    assert_string_equal(c->outputs[0]->str, "a/x");
    assert_int_equal(c->n_inputs, 1);
    assert_int_equal(c->inputs[0]->dep_type_code, DATABUILD__V1__DEP_TYPE__MATERIALIZE);
    assert_string_equal(c->inputs[0]->dep_type_name, "");
    assert_string_equal(c->inputs[0]->partition_ref->str, "b/x");
    assert_int_equal(c->n_args, 1);
    assert_string_equal(c->args[0], "x");
    assert_int_equal(c->n_env, 1);
    assert_string_equal(c->env[0]->key, "K");
    assert_string_equal(c->env[0]->value, "V");
    assert_encodes(&r->base, DBLD_JSON_ORIGINAL_NAMES,
                   "{\"configs\":[{\"outputs\":[{\"str\":\"a/x\"}],\"inputs\":[{\"dep_type_code\":"
                   "\"MATERIALIZE\",\"partition_ref\":{\"str\":\"b/x\"}}],\"args\":[\"x\"],"
                   "\"env\":{\"K\":\"V\"}}]}");
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* protobuf-c's own unpack of our pack gives the same thing back */
    r = (Databuild__V1__JobConfigureResponse *)decode_ok(
        text, &databuild__v1__job_configure_response__descriptor);
    size_t n = protobuf_c_message_get_packed_size(&r->base);
    uint8_t *buf = malloc(n);
    protobuf_c_message_pack(&r->base, buf);
    Databuild__V1__JobConfigureResponse *u =
        databuild__v1__job_configure_response__unpack(NULL, n, buf);
    assert_non_null(u);
    assert_packed_equal(&r->base, &u->base);
    databuild__v1__job_configure_response__free_unpacked(u, NULL);
    free(buf);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void test_enum_name_and_number(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &databuild__v1__partition_event__descriptor;
    Databuild__V1__PartitionEvent *pe;
    pe = (Databuild__V1__PartitionEvent *)decode_ok("{\"statusCode\":\"PARTITION_FAILED\"}", d);
    assert_int_equal(pe->status_code, DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
    protobuf_c_message_free_unpacked(&pe->base, NULL);
    pe = (Databuild__V1__PartitionEvent *)decode_ok("{\"status_code\":5}", d);
    assert_int_equal(pe->status_code, DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED);
    protobuf_c_message_free_unpacked(&pe->base, NULL);
    /* open enum: unknown numbers are kept and written back as numbers */
    pe = (Databuild__V1__PartitionEvent *)decode_ok("{\"statusCode\":99}", d);
    assert_int_equal(pe->status_code, 99);
    assert_encodes(&pe->base, 0, "{\"statusCode\":99}");
    protobuf_c_message_free_unpacked(&pe->base, NULL);
    /* nested enum type */
    Databuild__V1__LogMessage *lm = (Databuild__V1__LogMessage *)decode_ok(
        "{\"level\":\"ERROR\"}", &databuild__v1__log_message__descriptor);
    assert_int_equal(lm->level, DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR);
    protobuf_c_message_free_unpacked(&lm->base, NULL);

    dbld_status st = decode_fail("{\"statusCode\":\"AVAILABLE\"}", d);
    assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "invalid value at statusCode: unknown "
                                "databuild.v1.PartitionStatus value \"AVAILABLE\"");
    st = decode_fail("{\"statusCode\":true}", d);
    assert_string_equal(st.msg,
                        "invalid value at statusCode: expected databuild.v1.PartitionStatus "
                        "name or number, got boolean");
    st = decode_fail("{\"statusCode\":3000000000}", d);
    assert_non_null(strstr(st.msg, "out of range"));
}

static void test_int64_string_and_number(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &databuild__v1__build_event__descriptor;
    const char *ok[] = {"{\"timestamp\":\"-9223372036854775808\"}",
                        "{\"timestamp\":-9223372036854775808}",
                        "{\"timestamp\":9223372036854775807}",
                        "{\"timestamp\":\"123\"}",
                        "{\"timestamp\":123}",
                        "{\"timestamp\":1.23e2}"};
    int64_t want[] = {INT64_MIN, INT64_MIN, INT64_MAX, 123, 123, 123};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        Databuild__V1__BuildEvent *ev = (Databuild__V1__BuildEvent *)decode_ok(ok[i], d);
        assert_true(ev->timestamp == want[i]);
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    Databuild__V1__TaintEvent *te = (Databuild__V1__TaintEvent *)decode_ok(
        "{\"createdAt\":\"18446744073709551615\"}", &databuild__v1__taint_event__descriptor);
    assert_true(te->created_at == UINT64_MAX);
    protobuf_c_message_free_unpacked(&te->base, NULL);

    dbld_status st = decode_fail("{\"timestamp\":\"9223372036854775808\"}", d);
    assert_string_equal(st.msg, "invalid value at timestamp: \"9223372036854775808\" is out of "
                                "range for int64");
    st = decode_fail("{\"timestamp\":\"12abc\"}", d);
    assert_string_equal(st.msg, "invalid value at timestamp: \"12abc\" is not a decimal int64");
    st = decode_fail("{\"timestamp\":1.5}", d);
    assert_non_null(strstr(st.msg, "is not an integer"));
    st = decode_fail("{\"createdAt\":-1}", &databuild__v1__taint_event__descriptor);
    assert_string_equal(st.msg, "invalid value at createdAt: -1 is out of range for uint64");
    st = decode_fail("{\"createdAt\":\"-1\"}", &databuild__v1__taint_event__descriptor);
    assert_non_null(strstr(st.msg, "out of range for uint64"));
    /* 32-bit fields */
    Databuild__V1__WrapperJobEvent *w = (Databuild__V1__WrapperJobEvent *)decode_ok(
        "{\"exitCode\":\"-2147483648\"}", &databuild__v1__wrapper_job_event__descriptor);
    assert_int_equal(w->exit_code, INT32_MIN);
    protobuf_c_message_free_unpacked(&w->base, NULL);
    st = decode_fail("{\"exitCode\":2147483648}", &databuild__v1__wrapper_job_event__descriptor);
    assert_string_equal(st.msg, "invalid value at exitCode: 2147483648 is out of range for int32");
    st = decode_fail("{\"limit\":4294967296}", &databuild__v1__partitions_list_request__descriptor);
    assert_string_equal(st.msg, "invalid value at limit: 4294967296 is out of range for uint32");
    st = decode_fail("{\"limit\":-1}", &databuild__v1__partitions_list_request__descriptor);
    assert_non_null(strstr(st.msg, "out of range for uint32"));
}

static void test_unknown_field_path(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &databuild__v1__job_configure_response__descriptor;
    dbld_status st = decode_fail("{\"configs\":[{\"outputs\":[{\"str\":\"a\"},{\"foo\":1}]}]}", d);
    assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "unknown field \"foo\" at configs[0].outputs[1]");
    st = decode_fail("{\"configs\":[],\"bar\":null}", d);
    assert_string_equal(st.msg, "unknown field \"bar\" in databuild.v1.JobConfigureResponse");
    st = decode_fail("{\"configs\":[{},{\"inputs\":[{\"partitionRef\":{\"x\":1}}]}]}", d);
    assert_string_equal(st.msg, "unknown field \"x\" at configs[1].inputs[0].partitionRef");
    st = decode_fail("{\"configs\":[{\"env\":{\"K\":\"V\",\"L\":7}}]}", d);
    assert_string_equal(st.msg,
                        "invalid value at configs[0].env[\"L\"]: expected string, got integer");
}

static void test_wrong_type(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &databuild__v1__job_configure_response__descriptor;
    dbld_status st = decode_fail("{\"configs\":[{\"args\":[\"a\",1]}]}", d);
    assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg,
                        "invalid value at configs[0].args[1]: expected string, got integer");
    st = decode_fail("{\"configs\":{}}", d);
    assert_string_equal(st.msg, "invalid value at configs: expected array of object, got object");
    st = decode_fail("{\"configs\":[{\"outputs\":[\"a/x\"]}]}", d);
    assert_string_equal(st.msg,
                        "invalid value at configs[0].outputs[0]: expected object, got string");
    st = decode_fail("{\"configs\":[{\"env\":[]}]}", d);
    assert_string_equal(st.msg,
                        "invalid value at configs[0].env: expected object (map), got array");
    st = decode_fail("{\"configs\":[null]}", d);
    assert_string_equal(st.msg, "invalid value at configs[0]: expected object, got null");
    st = decode_fail("[1,2]", d);
    assert_string_equal(st.msg, "invalid value at top level: expected object, got array");
    st = decode_fail("{\"hasMore\":\"true\"}", &databuild__v1__event_page__descriptor);
    assert_string_equal(st.msg, "invalid value at hasMore: expected boolean, got string");
    st = decode_fail("{\"value\":\"fast\"}", &databuild__v1__metric_point__descriptor);
    assert_string_equal(st.msg, "invalid value at value: \"fast\" is not a double");
    /* two members of one oneof */
    st = decode_fail("{\"log\":{},\"metric\":{}}", &databuild__v1__job_log_entry__descriptor);
    assert_string_equal(st.msg, "invalid value at metric: field \"log\" is already set in the "
                                "same oneof");
    /* the same field under both of its names */
    st = decode_fail("{\"jobId\":\"a\",\"job_id\":\"b\"}",
                     &databuild__v1__job_log_entry__descriptor);
    assert_string_equal(st.msg, "invalid value at job_id: field \"job_id\" given more than once");
}

static void test_invalid_json_text(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &databuild__v1__job_configure_response__descriptor;
    dbld_status st = decode_fail("{\"configs\": [\n  {\"args\": [\"x\",]}\n]}", d);
    assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "invalid JSON at line 2 column"));
    st = decode_fail("", d);
    assert_non_null(strstr(st.msg, "invalid JSON at line"));
    st = decode_fail("{\"configs\":[],\"configs\":[]}", d);
    assert_non_null(strstr(st.msg, "duplicate"));
}

static void test_null_and_defaults(void **state)
{
    (void)state;
    /* null means default for every kind of field */
    Databuild__V1__JobEvent *je = (Databuild__V1__JobEvent *)decode_ok(
        "{\"jobRunId\":null,\"jobLabel\":null,\"targetPartitions\":null,\"statusCode\":null,"
        "\"config\":{\"env\":null},\"manifests\":[]}",
        &databuild__v1__job_event__descriptor);
    assert_string_equal(je->job_run_id, "");
    assert_null(je->job_label);
    assert_int_equal(je->n_target_partitions, 0);
    assert_non_null(je->config);
    assert_int_equal(je->config->n_env, 0);
    assert_encodes(&je->base, 0, "{\"config\":{}}");
    protobuf_c_message_free_unpacked(&je->base, NULL);
    /* a null oneof member leaves the oneof unset */
    Databuild__V1__BuildEvent *ev = (Databuild__V1__BuildEvent *)decode_ok(
        "{\"jobEvent\":null,\"taintEvent\":{}}", &databuild__v1__build_event__descriptor);
    assert_int_equal(ev->event_type_case, DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT);
    protobuf_c_message_free_unpacked(&ev->base, NULL);
}

static void test_original_names_and_emit_defaults(void **state)
{
    (void)state;
    Databuild__V1__DataDep dd = DATABUILD__V1__DATA_DEP__INIT;
    assert_encodes(&dd.base, 0, "{}");
    assert_encodes(&dd.base, DBLD_JSON_EMIT_DEFAULTS,
                   "{\"depTypeCode\":\"QUERY\",\"depTypeName\":\"\"}");
    assert_encodes(&dd.base, DBLD_JSON_EMIT_DEFAULTS | DBLD_JSON_ORIGINAL_NAMES,
                   "{\"dep_type_code\":\"QUERY\",\"dep_type_name\":\"\"}");
    Databuild__V1__JobConfig jc = DATABUILD__V1__JOB_CONFIG__INIT;
    assert_encodes(&jc.base, DBLD_JSON_EMIT_DEFAULTS,
                   "{\"outputs\":[],\"inputs\":[],\"args\":[],\"env\":{}}");
    Databuild__V1__PartitionSummary ps = DATABUILD__V1__PARTITION_SUMMARY__INIT;
    assert_encodes(&ps.base, DBLD_JSON_EMIT_DEFAULTS | DBLD_JSON_ORIGINAL_NAMES,
                   "{\"status_code\":\"PARTITION_UNKNOWN\",\"status_name\":\"\","
                   "\"last_updated\":\"0\",\"builds_count\":0,\"invalidation_count\":0,"
                   "\"last_successful_build\":\"\"}");
    Databuild__V1__JobSummary js = DATABUILD__V1__JOB_SUMMARY__INIT;
    js.job_label = "//j";
    js.average_partitions_per_run = 2.5;
    js.last_run_timestamp = 7;
    assert_encodes(&js.base, 0,
                   "{\"jobLabel\":\"//j\",\"averagePartitionsPerRun\":2.5,\"lastRunTimestamp\":"
                   "\"7\"}");
    assert_encodes(&js.base, DBLD_JSON_ORIGINAL_NAMES,
                   "{\"job_label\":\"//j\",\"average_partitions_per_run\":2.5,"
                   "\"last_run_timestamp\":\"7\"}");
    assert_encodes(&js.base, DBLD_JSON_PRETTY,
                   "{\n  \"jobLabel\": \"//j\",\n  \"averagePartitionsPerRun\": 2.5,\n"
                   "  \"lastRunTimestamp\": \"7\"\n}");
    /* decoding accepts both spellings, also mixed */
    Databuild__V1__JobSummary *out = (Databuild__V1__JobSummary *)decode_ok(
        "{\"job_label\":\"//j\",\"averagePartitionsPerRun\":2.5,\"last_run_timestamp\":7}",
        &databuild__v1__job_summary__descriptor);
    assert_packed_equal(&js.base, &out->base);
    protobuf_c_message_free_unpacked(&out->base, NULL);
}

static void test_map_of_messages(void **state)
{
    (void)state;
    Databuild__V1__EventFilter ef = DATABUILD__V1__EVENT_FILTER__INIT;
    char *pats[] = {"^a/.*"};
    ef.n_partition_patterns = 1;
    ef.partition_patterns = pats;
    Databuild__V1__ListBuildEventsRequest lreq = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    lreq.filters = &ef;
    lreq.max_timestamp_ns = 99;
    Databuild__V1__BuildSummaryRequest bsr = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    bsr.build_id = "b-7";
    Databuild__V1__ListBuildEventsResponse lresp = DATABUILD__V1__LIST_BUILD_EVENTS_RESPONSE__INIT;
    Databuild__V1__BuildEvent ev = make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT);
    Databuild__V1__BuildEvent *evs[] = {&ev};
    lresp.events = evs;
    lresp.n_events = 1;
    lresp.has_more = 1;
    Databuild__V1__RequestContainer rc1 = DATABUILD__V1__REQUEST_CONTAINER__INIT;
    rc1.list_build_events = &lresp;
    Databuild__V1__RequestContainer rc2 = DATABUILD__V1__REQUEST_CONTAINER__INIT;
    rc2.build_request_status = &bsr;
    Databuild__V1__BatchedRequest__RequestsEntry e1 =
        DATABUILD__V1__BATCHED_REQUEST__REQUESTS_ENTRY__INIT;
    e1.key = "first";
    e1.value = &rc1;
    Databuild__V1__BatchedRequest__RequestsEntry e2 =
        DATABUILD__V1__BATCHED_REQUEST__REQUESTS_ENTRY__INIT;
    e2.key = "second";
    e2.value = &rc2;
    Databuild__V1__BatchedRequest__RequestsEntry *es[] = {&e1, &e2};
    Databuild__V1__BatchedRequest br = DATABUILD__V1__BATCHED_REQUEST__INIT;
    br.requests = es;
    br.n_requests = 2;
    roundtrip(&br.base);
    (void)lreq;
    char *text = dbld_json_encode(&br.base, 0);
    assert_non_null(strstr(text, "\"second\":{\"buildRequestStatus\":{\"buildId\":\"b-7\"}}"));
    free(text);
    /* the extension proto too */
    Databuild__V1__IndexedEvent ie = DATABUILD__V1__INDEXED_EVENT__INIT;
    ie.idx = 12;
    ie.event = &ev;
    roundtrip(&ie.base);
}

static void test_arena_decode(void **state)
{
    (void)state;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__BuildEvent ev = make_event(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT);
    char *text = dbld_json_encode(&ev.base, 0);
    ProtobufCMessage *out = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    assert_int_equal(dbld_json_decode(text, strlen(text), &databuild__v1__build_event__descriptor,
                                      dbld_arena_allocator(a), &out, &st),
                     0);
    assert_packed_equal(&ev.base, out);
    free(text);
    /* errors inside an arena leave nothing to free either */
    const char *bad = "{\"jobEvent\":{\"config\":{\"env\":{\"K\":\"V\"},\"args\":[\"a\",{}]}}}";
    assert_int_equal(dbld_json_decode(bad, strlen(bad), &databuild__v1__build_event__descriptor,
                                      dbld_arena_allocator(a), &out, &st),
                     DBLD_INVALID_ARGUMENT);
    assert_null(out);
    dbld_arena_destroy(a);
}

static void test_partial_results_freed(void **state)
{
    (void)state;
    /* each fails deep inside allocated structure; valgrind checks nothing leaks */
    const char *bad[] = {
        "{\"jobEvent\":{\"jobRunId\":\"x\",\"config\":{\"env\":{\"K\":\"V\",\"L\":1}}}}",
        "{\"jobEvent\":{\"manifests\":[{\"inputs\":[{\"task\":{\"config\":{\"args\":[\"a\","
        "\"b\",null]}}}]}]}}",
        "{\"jobGraphEvent\":{\"jobGraph\":{\"nodes\":[{\"job\":{\"label\":\"l\"}},{\"nope\":1}]}}}",
        "{\"eventId\":\"e\",\"wantEvent\":{\"wantId\":\"w\"},\"taintEvent\":{}}",
        "{\"taintEvent\":{\"refs\":[{\"str\":\"a\"}],\"createdAt\":\"x\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        decode_fail(bad[i], &databuild__v1__build_event__descriptor);
    /* deep nesting is refused rather than recursing without bound */
    char deep[4096] = "";
    for (int i = 0; i < 150; i++)
        strcat(deep, "{\"inputs\":[");
    for (int i = 0; i < 150; i++)
        strcat(deep, "]}");
    dbld_status st = decode_fail(deep, &databuild__v1__partition_manifest__descriptor);
    assert_non_null(strstr(st.msg, "nested more than"));
}

/* ---- every scalar type, bytes, non-string map keys: a hand-built descriptor ---- */

typedef struct {
    ProtobufCMessage base;
    int64_t key;
    ProtobufCBinaryData value;
} T_ImapEntry;

typedef struct {
    ProtobufCMessage base;
    protobuf_c_boolean key;
    int32_t value;
} T_BoolMapEntry;

typedef struct {
    ProtobufCMessage base;
    int32_t i32;
    int32_t s32;
    int32_t sf32;
    uint32_t u32;
    uint32_t f32;
    int64_t i64;
    int64_t s64;
    int64_t sf64;
    uint64_t u64;
    uint64_t f64;
    float fl;
    double db;
    protobuf_c_boolean b;
    ProtobufCBinaryData by;
    size_t n_rby;
    ProtobufCBinaryData *rby;
    size_t n_rdb;
    double *rdb;
    size_t n_imap;
    T_ImapEntry **imap;
    size_t n_bool_map;
    T_BoolMapEntry **bool_map;
    int en;
    size_t n_ren;
    int *ren;
} T_AllTypes;

static const ProtobufCMessageDescriptor imap_entry_desc, bool_map_entry_desc, all_types_desc;

static void imap_entry_init(T_ImapEntry *m)
{
    memset(m, 0, sizeof *m);
    m->base.descriptor = &imap_entry_desc;
}
static void bool_map_entry_init(T_BoolMapEntry *m)
{
    memset(m, 0, sizeof *m);
    m->base.descriptor = &bool_map_entry_desc;
}
static void all_types_init(T_AllTypes *m)
{
    memset(m, 0, sizeof *m);
    m->base.descriptor = &all_types_desc;
}

#define FLD(name, id, label, type, q, st, member, desc, flags)                                     \
    {                                                                                              \
        name, id, PROTOBUF_C_LABEL_##label, PROTOBUF_C_TYPE_##type, q, offsetof(st, member), desc, \
            NULL, flags, 0, NULL, NULL                                                             \
    }
#define SCALAR(name, id, type) FLD(#name, id, NONE, type, 0, T_AllTypes, name, NULL, 0)
#define REPEATED(name, id, type, desc, flags)                                                      \
    FLD(#name, id, REPEATED, type, offsetof(T_AllTypes, n_##name), T_AllTypes, name, desc, flags)

static const ProtobufCFieldDescriptor imap_entry_fields[] = {
    FLD("key", 1, NONE, SINT64, 0, T_ImapEntry, key, NULL, 0),
    FLD("value", 2, NONE, BYTES, 0, T_ImapEntry, value, NULL, 0),
};
static const ProtobufCFieldDescriptor bool_map_entry_fields[] = {
    FLD("key", 1, NONE, BOOL, 0, T_BoolMapEntry, key, NULL, 0),
    FLD("value", 2, NONE, INT32, 0, T_BoolMapEntry, value, NULL, 0),
};
static const ProtobufCFieldDescriptor all_types_fields[] = {
    SCALAR(i32, 1, INT32),
    SCALAR(s32, 2, SINT32),
    SCALAR(sf32, 3, SFIXED32),
    SCALAR(u32, 4, UINT32),
    SCALAR(f32, 5, FIXED32),
    SCALAR(i64, 6, INT64),
    SCALAR(s64, 7, SINT64),
    SCALAR(sf64, 8, SFIXED64),
    SCALAR(u64, 9, UINT64),
    SCALAR(f64, 10, FIXED64),
    SCALAR(fl, 11, FLOAT),
    SCALAR(db, 12, DOUBLE),
    SCALAR(b, 13, BOOL),
    SCALAR(by, 14, BYTES),
    REPEATED(rby, 15, BYTES, NULL, 0),
    REPEATED(rdb, 16, DOUBLE, NULL, PROTOBUF_C_FIELD_FLAG_PACKED),
    REPEATED(imap, 17, MESSAGE, &imap_entry_desc, 0),
    REPEATED(bool_map, 18, MESSAGE, &bool_map_entry_desc, 0),
    FLD("en", 19, NONE, ENUM, 0, T_AllTypes, en, &databuild__v1__dep_type__descriptor, 0),
    REPEATED(ren, 20, ENUM, &databuild__v1__dep_type__descriptor, PROTOBUF_C_FIELD_FLAG_PACKED),
};
#define N_ALL (sizeof all_types_fields / sizeof all_types_fields[0])

static const unsigned entry_by_name[] = {0, 1};
static unsigned all_by_name[N_ALL]; /* filled by sort_names() */
static const ProtobufCIntRange entry_ranges[] = {{1, 0}, {0, 2}};
static const ProtobufCIntRange all_ranges[] = {{1, 0}, {0, N_ALL}};

static const ProtobufCMessageDescriptor imap_entry_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                           "test.AllTypes.ImapEntry",
                                                           "ImapEntry",
                                                           "T_ImapEntry",
                                                           "test",
                                                           sizeof(T_ImapEntry),
                                                           2,
                                                           imap_entry_fields,
                                                           entry_by_name,
                                                           1,
                                                           entry_ranges,
                                                           (ProtobufCMessageInit)imap_entry_init,
                                                           NULL,
                                                           NULL,
                                                           NULL};
static const ProtobufCMessageDescriptor bool_map_entry_desc = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.AllTypes.BoolMapEntry",
    "BoolMapEntry",
    "T_BoolMapEntry",
    "test",
    sizeof(T_BoolMapEntry),
    2,
    bool_map_entry_fields,
    entry_by_name,
    1,
    entry_ranges,
    (ProtobufCMessageInit)bool_map_entry_init,
    NULL,
    NULL,
    NULL};
static const ProtobufCMessageDescriptor all_types_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                          "test.AllTypes",
                                                          "AllTypes",
                                                          "T_AllTypes",
                                                          "test",
                                                          sizeof(T_AllTypes),
                                                          N_ALL,
                                                          all_types_fields,
                                                          all_by_name,
                                                          1,
                                                          all_ranges,
                                                          (ProtobufCMessageInit)all_types_init,
                                                          NULL,
                                                          NULL,
                                                          NULL};

static int cmp_by_name(const void *a, const void *b)
{
    return strcmp(all_types_fields[*(const unsigned *)a].name,
                  all_types_fields[*(const unsigned *)b].name);
}

static int sort_names(void **state)
{
    (void)state;
    for (unsigned i = 0; i < N_ALL; i++)
        all_by_name[i] = i;
    qsort(all_by_name, N_ALL, sizeof all_by_name[0], cmp_by_name);
    return 0;
}

static void test_all_scalar_types_and_bytes(void **state)
{
    (void)state;
    static uint8_t raw[] = {0x00, 0x01, 0x02, 0xff, 0xfe, 0xfb};
    static uint8_t raw2[] = {'h', 'i', '?'};
    ProtobufCBinaryData rby[] = {{3, raw2}, {0, NULL}, {1, raw}};
    double rdb[] = {-0.0, 1.5, INFINITY};
    int ren[] = {0, 1, 9};
    T_ImapEntry ie1 = {PROTOBUF_C_MESSAGE_INIT(&imap_entry_desc), -3, {2, raw2}};
    T_ImapEntry ie2 = {PROTOBUF_C_MESSAGE_INIT(&imap_entry_desc), 5, {0, NULL}};
    T_ImapEntry *imap[] = {&ie1, &ie2};
    T_BoolMapEntry be1 = {PROTOBUF_C_MESSAGE_INIT(&bool_map_entry_desc), 1, 1};
    T_BoolMapEntry be2 = {PROTOBUF_C_MESSAGE_INIT(&bool_map_entry_desc), 0, -2};
    T_BoolMapEntry *bmap[] = {&be1, &be2};
    T_AllTypes m;
    all_types_init(&m);
    m.i32 = INT32_MIN;
    m.s32 = -5;
    m.sf32 = INT32_MAX;
    m.u32 = UINT32_MAX;
    m.f32 = 7;
    m.i64 = INT64_MIN;
    m.s64 = -1;
    m.sf64 = INT64_MAX;
    m.u64 = UINT64_MAX;
    m.f64 = 12345678901234ULL;
    m.fl = 0.1f;
    m.db = 1.0 / 3.0;
    m.b = 1;
    m.by.len = sizeof raw;
    m.by.data = raw;
    m.n_rby = 3;
    m.rby = rby;
    m.n_rdb = 3;
    m.rdb = rdb;
    m.n_imap = 2;
    m.imap = imap;
    m.n_bool_map = 2;
    m.bool_map = bmap;
    m.en = 7;
    m.n_ren = 3;
    m.ren = ren;
    roundtrip(&m.base);

    assert_encodes(&m.base, 0,
                   "{\"i32\":-2147483648,\"s32\":-5,\"sf32\":2147483647,\"u32\":4294967295,"
                   "\"f32\":7,\"i64\":\"-9223372036854775808\",\"s64\":\"-1\","
                   "\"sf64\":\"9223372036854775807\",\"u64\":\"18446744073709551615\","
                   "\"f64\":\"12345678901234\",\"fl\":0.10000000149011612,"
                   "\"db\":0.33333333333333331,\"b\":true,\"by\":\"AAEC//77\","
                   "\"rby\":[\"aGk/\",\"\",\"AA==\"],\"rdb\":[-0.0,1.5,\"Infinity\"],"
                   "\"imap\":{\"-3\":\"aGk=\",\"5\":\"\"},\"boolMap\":{\"true\":1,\"false\":-2},"
                   "\"en\":7,\"ren\":[\"QUERY\",\"MATERIALIZE\",9]}");

    /* URL-safe and unpadded base64 are accepted; numbers given as strings too */
    T_AllTypes *out = (T_AllTypes *)decode_ok(
        "{\"by\":\"AAEC__77\",\"rby\":[\"aGk_\",\"AA\",\"aGk\"],\"fl\":\"0.25\",\"db\":\"-1e3\","
        "\"u32\":\"4294967295\",\"bool_map\":{\"false\":\"3\"},\"imap\":{\"-9\":\"AQ\"},"
        "\"rdb\":[\"NaN\",\"-Infinity\",2]}",
        &all_types_desc);
    assert_int_equal(out->by.len, sizeof raw);
    assert_memory_equal(out->by.data, raw, sizeof raw);
    assert_int_equal(out->n_rby, 3);
    assert_int_equal(out->rby[0].len, 3);
    assert_memory_equal(out->rby[0].data, raw2, 3);
    assert_int_equal(out->rby[1].len, 1);
    assert_int_equal(out->rby[1].data[0], 0);
    assert_int_equal(out->rby[2].len, 2);
    assert_true(out->fl == 0.25f);
    assert_true(out->db == -1000.0);
    assert_true(out->u32 == UINT32_MAX);
    assert_int_equal(out->n_bool_map, 1);
    assert_int_equal(out->bool_map[0]->key, 0);
    assert_int_equal(out->bool_map[0]->value, 3);
    assert_int_equal(out->imap[0]->key, -9);
    assert_int_equal(out->imap[0]->value.len, 1);
    assert_true(isnan(out->rdb[0]));
    assert_true(isinf(out->rdb[1]) && out->rdb[1] < 0);
    assert_true(out->rdb[2] == 2.0);
    protobuf_c_message_free_unpacked(&out->base, NULL);

    dbld_status st = decode_fail("{\"by\":\"AAE*\"}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at by: invalid base64 data");
    st = decode_fail("{\"by\":\"A\"}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at by: invalid base64 data");
    st = decode_fail("{\"bool_map\":{\"yes\":1}}", &all_types_desc);
    assert_string_equal(st.msg,
                        "invalid value at bool_map[\"yes\"]: map key \"yes\" is not true or false");
    st = decode_fail("{\"imap\":{\"x\":\"\"}}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at imap[\"x\"]: \"x\" is not a decimal sint64");
    st = decode_fail("{\"fl\":1e300}", &all_types_desc);
    assert_non_null(strstr(st.msg, "out of range for float"));
    st = decode_fail("{\"db\":\"inf\"}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at db: \"inf\" is not a double");
    st = decode_fail("{\"rdb\":[1,\"x\"],\"rby\":[\"AA\",5]}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at rdb[1]: \"x\" is not a double");
    st = decode_fail("{\"rby\":[\"AA\",5]}", &all_types_desc);
    assert_string_equal(st.msg, "invalid value at rby[1]: expected base64 string, got integer");

    /* EMIT_DEFAULTS for every kind */
    T_AllTypes empty;
    all_types_init(&empty);
    assert_encodes(&empty.base, 0, "{}");
    assert_encodes(
        &empty.base, DBLD_JSON_EMIT_DEFAULTS | DBLD_JSON_ORIGINAL_NAMES,
        "{\"i32\":0,\"s32\":0,\"sf32\":0,\"u32\":0,\"f32\":0,\"i64\":\"0\",\"s64\":\"0\","
        "\"sf64\":\"0\",\"u64\":\"0\",\"f64\":\"0\",\"fl\":0.0,\"db\":0.0,\"b\":false,"
        "\"by\":\"\",\"rby\":[],\"rdb\":[],\"imap\":{},\"bool_map\":{},\"en\":\"QUERY\","
        "\"ren\":[]}");
    roundtrip(&empty.base);
}

static void test_json_value_api(void **state)
{
    (void)state;
    Databuild__V1__DataDep dd = DATABUILD__V1__DATA_DEP__INIT;
    dd.dep_type_code = DATABUILD__V1__DEP_TYPE__MATERIALIZE;
    dd.partition_ref = &ref_a;
    json_t *j = dbld_json_from_message(&dd.base, 0);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "depTypeCode")), "MATERIALIZE");
    ProtobufCMessage *out = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    assert_int_equal(dbld_json_to_message(j, &databuild__v1__data_dep__descriptor, NULL, &out, &st),
                     0);
    assert_packed_equal(&dd.base, out);
    protobuf_c_message_free_unpacked(out, NULL);
    json_decref(j);
    /* json_t strings may hold NUL bytes; C strings cannot */
    j = json_pack("{s:s%}", "dep_type_name", "a\0b", (size_t)3);
    assert_int_equal(dbld_json_to_message(j, &databuild__v1__data_dep__descriptor, NULL, &out, &st),
                     DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg, "invalid value at dep_type_name: string contains a NUL character");
    json_decref(j);
    assert_null(dbld_json_from_message(NULL, 0));
    assert_null(dbld_json_encode(NULL, 0));
}

static void test_invalid_utf8_repaired(void **state)
{
    (void)state;
    /* protobuf-c does not validate UTF-8; encoding repairs instead of failing */
    Databuild__V1__LogMessage__FieldsEntry f = DATABUILD__V1__LOG_MESSAGE__FIELDS_ENTRY__INIT;
    f.key = "k\xff";
    f.value = "\xc3\xa9ok\xc3";
    Databuild__V1__LogMessage__FieldsEntry *fs[] = {&f};
    Databuild__V1__LogMessage lm = DATABUILD__V1__LOG_MESSAGE__INIT;
    lm.message = "bad \xed\xa0\x80 surrogate";
    lm.fields = fs;
    lm.n_fields = 1;
    assert_encodes(&lm.base, 0,
                   "{\"message\":\"bad \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd surrogate\","
                   "\"fields\":{\"k\xef\xbf\xbd\":\"\xc3\xa9ok\xef\xbf\xbd\"}}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_event_all_payloads),
        cmocka_unit_test(test_build_event_shape),
        cmocka_unit_test(test_job_event_maps),
        cmocka_unit_test(test_job_log_entry),
        cmocka_unit_test(test_job_configure_response_protocol),
        cmocka_unit_test(test_enum_name_and_number),
        cmocka_unit_test(test_int64_string_and_number),
        cmocka_unit_test(test_unknown_field_path),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_invalid_json_text),
        cmocka_unit_test(test_null_and_defaults),
        cmocka_unit_test(test_original_names_and_emit_defaults),
        cmocka_unit_test(test_map_of_messages),
        cmocka_unit_test(test_arena_decode),
        cmocka_unit_test(test_partial_results_freed),
        cmocka_unit_test(test_all_scalar_types_and_bytes),
        cmocka_unit_test(test_json_value_api),
        cmocka_unit_test(test_invalid_utf8_repaired),
    };
    return cmocka_run_group_tests(tests, sort_names, NULL);
}
