/* fuzz_request.h - the request path the RPC runtime takes with every request
 * (lib/rpc_server.c): dbld_wire_validate() on the wire bytes, then
 * protobuf_c_message_unpack() into an arena. Shared by fuzz_wire and the
 * fuzz_req_<service> targets, which go on with the handler's validation.
 *
 * Properties, when the wire check accepts and unpack succeeds:
 *  - every string of the message is valid UTF-8 and exactly as long as it
 *    was on the wire (protobuf-c allocates wire length + 1 for a string; the
 *    unpack allocator here records each size, so a NUL the check missed
 *    shows as a shorter strlen);
 *  - the message packs again, and those bytes pass the check and unpack too.
 * A refusal must name a field ("field ...").
 */
#ifndef DBLD_FUZZ_REQUEST_H
#define DBLD_FUZZ_REQUEST_H

#include "fuzz.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/config.h"
#include "dbld/rpc.h"

#include <protobuf-c/protobuf-c.h>

/* An allocator that keeps each block's size in front of it. */
#define FUZZ_HDR 16

static inline void *sized_alloc(void *data, size_t n)
{
    (void)data;
    uint8_t *p = malloc(n + FUZZ_HDR);
    if (!p) abort();
    memcpy(p, &n, sizeof n);
    return p + FUZZ_HDR;
}

static inline void sized_free(void *data, void *p)
{
    (void)data;
    if (p) free((uint8_t *)p - FUZZ_HDR);
}

static ProtobufCAllocator fuzz_sized_allocator = {sized_alloc, sized_free, NULL};

static inline size_t sized_len(const void *p)
{
    size_t n;
    memcpy(&n, (const uint8_t *)p - FUZZ_HDR, sizeof n);
    return n;
}

static inline int fuzz_utf8_valid(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xe0) == 0xc0 ? 2
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4
                                        : 0;
        if (!n || len - i < n) return 0;
        uint32_t cp = n == 1 ? c : c & (0x7f >> n);
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        i += n;
    }
    return 1;
}

static inline void check_string(const ProtobufCFieldDescriptor *f, const char *s)
{
    if (!s || s == protobuf_c_empty_string || s == f->default_value) return;
    size_t len = strlen(s);
    FUZZ_CHECK(len + 1 == sized_len(s), "field %s: %zu bytes on the wire, strlen %zu", f->name,
               sized_len(s) - 1, len);
    FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *)s, len), "field %s: not UTF-8", f->name);
}

/* Every string field of m, recursively. */
static inline void check_strings(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which;
            memcpy(&which, (const char *)m + f->quantifier_offset, sizeof which);
            if (which != f->id) continue;
        }
        size_t n = 1;
        const void *const *items = (const void *const *)base;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            memcpy(&n, (const char *)m + f->quantifier_offset, sizeof n);
            items = *(const void *const *const *)base;
        }
        for (size_t k = 0; k < n; k++) {
            if (f->type == PROTOBUF_C_TYPE_STRING)
                check_string(f, items[k]);
            else if (items[k])
                check_strings(items[k]);
        }
    }
}

/* The runtime's request path; returns the unpacked request (free with
 * fuzz_request_free()) or NULL when it was refused. */
static inline ProtobufCMessage *fuzz_request(const ProtobufCMessageDescriptor *d,
                                             const uint8_t *buf, size_t len)
{
    dbld_status st;
    if (dbld_wire_validate(d, buf, len, &st) != 0) {
        FUZZ_CHECK(st.code == DBLD_INVALID_ARGUMENT && strncmp(st.msg, "field ", 6) == 0,
                   "%s refused with %s: %s", d->name, dbld_code_name(st.code), st.msg);
        return NULL;
    }
    ProtobufCMessage *m = protobuf_c_message_unpack(d, &fuzz_sized_allocator, len, buf);
    if (!m) return NULL;
    check_strings(m);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *again = malloc(n + 1);
    if (!again) abort();
    protobuf_c_message_pack(m, again);
    FUZZ_CHECK(dbld_wire_validate(d, again, n, &st) == 0, "%s repacked is refused: %s", d->name,
               st.msg);
    ProtobufCMessage *m2 = protobuf_c_message_unpack(d, NULL, n, again);
    FUZZ_CHECK(m2 != NULL, "%s repacked does not unpack", d->name);
    protobuf_c_message_free_unpacked(m2, NULL);
    free(again);
    return m;
}

static inline void fuzz_request_free(ProtobufCMessage *m)
{
    if (m) protobuf_c_message_free_unpacked(m, &fuzz_sized_allocator);
}

#endif

/* ---- the fuzz_req_<service> targets ---- */

/* A service's validation of one decoded request (the code its handler runs
 * before any database or network access); returns 0 or a dbld code with st
 * set. */
typedef int (*fuzz_validate_fn)(const dbld_method *m, ProtobufCMessage *req, dbld_arena *a,
                                dbld_status *st);

/* The method (data[0] modulo the methods of services, a NULL-terminated
 * list) gets data + 1 through the request path and then validate. A
 * refusal must come with a message. */
static inline void fuzz_service_request(const dbld_service *const *services, const uint8_t *data,
                                        size_t size, fuzz_validate_fn validate)
{
    if (size < 1) return;
    size_t n = 0, pick;
    for (size_t i = 0; services[i]; i++)
        n += services[i]->n_methods;
    pick = data[0] % n;
    const dbld_method *m = NULL;
    for (size_t i = 0; services[i] && !m; i++) {
        if (pick < services[i]->n_methods)
            m = &services[i]->methods[pick];
        else
            pick -= services[i]->n_methods;
    }
    ProtobufCMessage *checked = fuzz_request(m->request, data + 1, size - 1);
    if (!checked) return;
    fuzz_request_free(checked);
    /* as the runtime hands it to the handler: in the call's arena (handlers
     * may fill in fields with arena strings) */
    dbld_arena *a = dbld_arena_create();
    ProtobufCMessage *req =
        protobuf_c_message_unpack(m->request, dbld_arena_allocator(a), size - 1, data + 1);
    FUZZ_CHECK(req != NULL, "%s unpacks once but not twice", m->path);
    dbld_status st;
    dbld_status_clear(&st);
    int rc = validate(m, req, a, &st);
    FUZZ_CHECK(rc == 0 || (rc == st.code && st.msg[0]), "%s: code %d without a message (%s)",
               m->path, rc, st.msg);
    dbld_arena_destroy(a);
}

/* Refs of PartitionRef messages, "" for a missing one, in the arena. */
static inline const char **fuzz_refs(dbld_arena *a, Databuild__V1__PartitionRef *const *refs,
                                     size_t n)
{
    const char **out = dbld_arena_alloc(a, (n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = refs[i] && refs[i]->str ? refs[i]->str : "";
    return out;
}

/* The example pipeline's configuration (examples/databuild.yaml), which the
 * service targets validate against; loaded once. */
static inline const dbld_config *fuzz_example_config(void)
{
    static dbld_config cfg;
    static int loaded;
    if (!loaded) {
        dbld_status st;
        FUZZ_CHECK(dbld_config_load(DBLD_SOURCE_DIR "/examples/databuild.yaml", &cfg, &st) == 0,
                   "examples/databuild.yaml: %s", st.msg);
        loaded = 1;
    }
    return &cfg;
}
