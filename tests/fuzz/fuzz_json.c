/* fuzz_json.c - the proto3 JSON codec (lib/json.c) on what the project reads
 * as JSON: a job's `config` output (JobConfigureResponse), `databuild events
 * append` input (BuildEvent) and job log lines (MetricPoint, JobLogEntry).
 *
 * Input: one byte choosing the message type (low 2 bits) and the output flags
 * (next 3 bits), then the JSON text. Property: whatever decodes encodes to
 * text that decodes to the same message (identical wire bytes), and encoding
 * that again gives the same text. A refusal must say why.
 */
#include "fuzz.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/json.h"

static const ProtobufCMessageDescriptor *const types[] = {
    &databuild__v1__job_configure_response__descriptor,
    &databuild__v1__build_event__descriptor,
    &databuild__v1__metric_point__descriptor,
    &databuild__v1__job_log_entry__descriptor,
};

static uint8_t *pack(dbld_arena *a, const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = dbld_arena_alloc(a, *len + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = types[data[0] & 3];
    int flags =
        (data[0] >> 2) & (DBLD_JSON_PRETTY | DBLD_JSON_ORIGINAL_NAMES | DBLD_JSON_EMIT_DEFAULTS);
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    dbld_arena *a = dbld_arena_create();
    ProtobufCAllocator *al = dbld_arena_allocator(a);
    ProtobufCMessage *m = NULL;
    dbld_status st;
    if (dbld_json_decode(text, len, d, al, &m, &st) != 0) {
        FUZZ_CHECK(m == NULL && st.code != 0 && st.msg[0], "a refusal without a message");
        dbld_arena_destroy(a);
        return 0;
    }
    FUZZ_CHECK(m != NULL, "decoded without a message");
    char *out = dbld_json_encode(m, flags);
    FUZZ_CHECK(out != NULL, "a decoded %s does not encode", d->name);
    ProtobufCMessage *m2 = NULL;
    FUZZ_CHECK(dbld_json_decode(out, strlen(out), d, al, &m2, &st) == 0,
               "the encoding of a decoded %s does not decode: %s\n%s", d->name, st.msg, out);
    size_t n1, n2;
    uint8_t *b1 = pack(a, m, &n1), *b2 = pack(a, m2, &n2);
    FUZZ_CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0,
               "%s changed through its JSON (%zu -> %zu wire bytes):\n%s", d->name, n1, n2, out);
    char *again = dbld_json_encode(m2, flags);
    FUZZ_CHECK(again && strcmp(out, again) == 0, "encoding is not stable:\n%s\n%s", out,
               again ? again : "(null)");
    free(again);
    free(out);
    dbld_arena_destroy(a);
    return 0;
}
