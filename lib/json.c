/* json.c - proto3 JSON mapping for protobuf-c messages, via jansson.
 *
 * Everything is driven by the protobuf-c descriptors, so one encoder and one
 * decoder cover every message type. protobuf-c 1.4 keeps neither json_name nor
 * the map_entry option, so json names are recomputed the way protoc does
 * (drop '_', upper-case the next character) and a map field is recognised as a
 * repeated message field whose type is a nested "<Field>Entry" message with
 * exactly key = 1 and value = 2.
 *
 * Decoding builds the message in place with the caller's allocator and keeps
 * it consistent for protobuf_c_message_free_unpacked() at every step (counts
 * and oneof cases are set before the memory they describe is filled), so any
 * error is cleaned up by freeing the partial root message.
 */
#include "dbld/json.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 100
#define NAME_MAX_LEN 256

#define MEMBER(msg, off) ((void *)((char *)(msg) + (off)))
#define CMEMBER(msg, off) ((const void *)((const char *)(msg) + (off)))

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */
/* ------------------------------------------------------------------------ */

/* protoc's ToJsonName: drop underscores, upper-case the following character. */
static void json_name(const char *name, char *out, size_t cap)
{
    size_t n = 0;
    int upper = 0;
    for (const char *p = name; *p && n + 1 < cap; p++) {
        if (*p == '_') {
            upper = 1;
        } else {
            out[n++] = upper ? (char)toupper((unsigned char)*p) : *p;
            upper = 0;
        }
    }
    out[n] = '\0';
}

static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

/* 1 if f is a map<k, v> field (see the file comment for the rule). */
static int is_map_field(const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    if (!e || e->n_fields != 2 || !ends_with(e->short_name, "Entry")) return 0;
    if (e->fields[0].id != 1 || strcmp(e->fields[0].name, "key") != 0 ||
        e->fields[0].label == PROTOBUF_C_LABEL_REPEATED)
        return 0;
    if (e->fields[1].id != 2 || strcmp(e->fields[1].name, "value") != 0 ||
        e->fields[1].label == PROTOBUF_C_LABEL_REPEATED)
        return 0;
    /* protoc names the entry CamelCase(field) + "Entry". */
    char camel[NAME_MAX_LEN];
    json_name(f->name, camel, sizeof camel);
    camel[0] = (char)toupper((unsigned char)camel[0]);
    return strlen(e->short_name) == strlen(camel) + 5 &&
           strncmp(e->short_name, camel, strlen(camel)) == 0;
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

static const char *type_name(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
        return "int32";
    case PROTOBUF_C_TYPE_SINT32:
        return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32:
        return "sfixed32";
    case PROTOBUF_C_TYPE_UINT32:
        return "uint32";
    case PROTOBUF_C_TYPE_FIXED32:
        return "fixed32";
    case PROTOBUF_C_TYPE_INT64:
        return "int64";
    case PROTOBUF_C_TYPE_SINT64:
        return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64:
        return "sfixed64";
    case PROTOBUF_C_TYPE_UINT64:
        return "uint64";
    case PROTOBUF_C_TYPE_FIXED64:
        return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "double";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_ENUM:
        return "enum";
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "bytes (base64 string)";
    case PROTOBUF_C_TYPE_MESSAGE:
        return "object";
    }
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Base64                                                                    */
/* ------------------------------------------------------------------------ */

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard alphabet, padded. malloc'd; NULL on out-of-memory. */
static char *b64_encode(const uint8_t *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        out[o++] = b64_std[v >> 18 & 63];
        out[o++] = b64_std[v >> 12 & 63];
        out[o++] = b64_std[v >> 6 & 63];
        out[o++] = b64_std[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)data[i] << 16 | (i + 1 < len ? (uint32_t)data[i + 1] << 8 : 0);
        out[o++] = b64_std[v >> 18 & 63];
        out[o++] = b64_std[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64_std[v >> 6 & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decoded length of s (standard or URL-safe, padding optional), or -1 if invalid. */
static long b64_decoded_len(const char *s, size_t *len)
{
    size_t n = *len;
    if (n % 4 == 0 && n >= 2 && s[n - 1] == '=') n -= s[n - 2] == '=' ? 2 : 1;
    if (n % 4 == 1) return -1;
    for (size_t i = 0; i < n; i++)
        if (b64_value(s[i]) < 0) return -1;
    *len = n;
    return (long)(n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0));
}

/* Decode the n unpadded characters of s (already validated) into out. */
static void b64_decode(const char *s, size_t n, uint8_t *out)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 6 | (uint32_t)b64_value(s[i]);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits & 0xff);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Encoding: message -> json_t                                               */
/* ------------------------------------------------------------------------ */

static json_t *enc_message(const ProtobufCMessage *msg, int flags);

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80) return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

/* JSON string for s. protobuf-c does not check that strings are UTF-8 (job
 * output may not be), so invalid bytes become U+FFFD instead of failing. */
static json_t *enc_string(const char *s)
{
    json_t *j = json_string(s);
    if (j) return j;
    size_t n = strlen(s), o = 0;
    char *buf = malloc(3 * n + 1);
    if (!buf) return NULL;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len == 0) {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(buf + o, s + i, len);
            o += len;
            i += len;
        }
    }
    j = json_stringn(buf, o);
    free(buf);
    return j;
}

static json_t *enc_float(double v)
{
    if (isnan(v)) return json_string("NaN");
    if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

static json_t *enc_enum(const ProtobufCEnumDescriptor *ed, int v)
{
    const ProtobufCEnumValue *ev = ed ? protobuf_c_enum_descriptor_get_value(ed, v) : NULL;
    return ev ? json_string(ev->name) : json_integer(v);
}

/* One value of type f->type stored at p. New reference or NULL on out-of-memory. */
static json_t *enc_value(const ProtobufCFieldDescriptor *f, const void *p, int flags)
{
    char buf[32];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)p);
        return json_string(buf);
    case PROTOBUF_C_TYPE_FLOAT:
        return enc_float(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return enc_float(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM:
        return enc_enum(f->descriptor, *(const int *)p);
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return enc_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *s = b64_encode(b->data, b->len);
        json_t *j = s ? json_string(s) : NULL;
        free(s);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? enc_message(m, flags) : json_object();
    }
    }
    return NULL;
}

/* Map keys are JSON object keys: strings, "true"/"false", or decimal integers. */
static void enc_map_key(const ProtobufCFieldDescriptor *kf, const void *p, char *buf, size_t cap,
                        const char **key)
{
    *key = buf;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        *key = s ? s : "";
        return;
    }
    case PROTOBUF_C_TYPE_BOOL:
        *key = *(const protobuf_c_boolean *)p ? "true" : "false";
        return;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, cap, "%" PRId32, *(const int32_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)p);
        return;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, cap, "%" PRId64, *(const int64_t *)p);
        return;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)p);
        return;
    default: /* not a legal map key type */
        snprintf(buf, cap, "?");
        return;
    }
}

static json_t *enc_map(const ProtobufCFieldDescriptor *f, ProtobufCMessage *const *entries,
                       size_t n, int flags)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    json_t *obj = json_object();
    for (size_t i = 0; obj && i < n; i++) {
        const ProtobufCMessage *e = entries[i];
        if (!e) continue;
        char buf[32];
        const char *key;
        enc_map_key(kf, CMEMBER(e, kf->offset), buf, sizeof buf, &key);
        json_t *k = enc_string(key); /* same U+FFFD repair as values */
        json_t *v = k ? enc_value(vf, CMEMBER(e, vf->offset), flags) : NULL;
        int bad = !v || json_object_set_new(obj, json_string_value(k), v) != 0;
        json_decref(k);
        if (bad) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

static json_t *enc_repeated(const ProtobufCFieldDescriptor *f, const void *arr, size_t n, int flags)
{
    if (is_map_field(f)) return enc_map(f, arr, n, flags);
    json_t *a = json_array();
    size_t es = elem_size(f->type);
    for (size_t i = 0; a && i < n; i++) {
        json_t *v = enc_value(f, (const char *)arr + i * es, flags);
        if (!v || json_array_append_new(a, v) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* 1 if the value at p is the type's zero value (proto3 fields without presence). */
static int is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT: {
        float v = *(const float *)p;
        return v == 0 && !signbit(v);
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double v = *(const double *)p;
        return v == 0 && !signbit(v);
    }
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    }
    return 1;
}

/* 1 if field f of msg should appear in the output. */
static int field_present(const ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, int flags)
{
    const void *p = CMEMBER(msg, f->offset);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)CMEMBER(msg, f->quantifier_offset) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REPEATED:
        return (flags & DBLD_JSON_EMIT_DEFAULTS) ||
               *(const size_t *)CMEMBER(msg, f->quantifier_offset) > 0;
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)p != NULL;
        return *(const protobuf_c_boolean *)CMEMBER(msg, f->quantifier_offset);
    case PROTOBUF_C_LABEL_NONE:
    default:
        if (f->type == PROTOBUF_C_TYPE_MESSAGE)
            return *(void *const *)p != NULL; /* messages always have presence */
        return (flags & DBLD_JSON_EMIT_DEFAULTS) || !is_default(f, p);
    }
}

static json_t *enc_message(const ProtobufCMessage *msg, int flags)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *obj = json_object();
    for (unsigned i = 0; obj && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!field_present(msg, f, flags)) continue;
        const void *p = CMEMBER(msg, f->offset);
        json_t *v;
        if (f->label == PROTOBUF_C_LABEL_REPEATED)
            v = enc_repeated(f, *(void *const *)p,
                             *(const size_t *)CMEMBER(msg, f->quantifier_offset), flags);
        else
            v = enc_value(f, p, flags);
        char name[NAME_MAX_LEN];
        if (flags & DBLD_JSON_ORIGINAL_NAMES)
            snprintf(name, sizeof name, "%s", f->name);
        else
            json_name(f->name, name, sizeof name);
        if (!v || json_object_set_new(obj, name, v) != 0) {
            json_decref(obj);
            return NULL;
        }
    }
    return obj;
}

json_t *dbld_json_from_message(const ProtobufCMessage *msg, int flags)
{
    if (!msg || !msg->descriptor) return NULL;
    return enc_message(msg, flags);
}

char *dbld_json_encode(const ProtobufCMessage *msg, int flags)
{
    json_t *j = dbld_json_from_message(msg, flags);
    if (!j) return NULL;
    size_t dump = (flags & DBLD_JSON_PRETTY) ? JSON_INDENT(2) : JSON_COMPACT;
    char *s = json_dumps(j, dump | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Decoding: json_t -> message                                               */
/* ------------------------------------------------------------------------ */

typedef struct {
    ProtobufCAllocator *alloc;
    dbld_status *st;
    int depth;
    size_t plen;
    char path[768];
} dec_ctx;

/* Append to the path; returns the old length for path_pop(). Truncates quietly. */
static size_t path_push(dec_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(dec_ctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    if (c->plen < sizeof c->path - 1) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->path + c->plen, sizeof c->path - c->plen, fmt, ap);
        va_end(ap);
        if (n > 0) c->plen += (size_t)n;
        if (c->plen > sizeof c->path - 1) c->plen = sizeof c->path - 1;
    }
    return old;
}

static void path_pop(dec_ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static size_t path_push_field(dec_ctx *c, const char *name)
{
    return c->plen ? path_push(c, ".%s", name) : path_push(c, "%s", name);
}

static const char *where(const dec_ctx *c)
{
    return c->plen ? c->path : "top level";
}

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "?";
}

static int type_err(dec_ctx *c, const char *expected, const json_t *j)
{
    return dbld_status_set(c->st, DBLD_INVALID_ARGUMENT, "invalid value at %s: expected %s, got %s",
                           where(c), expected, json_kind(j));
}

static int value_err(dec_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int value_err(dec_ctx *c, const char *fmt, ...)
{
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return dbld_status_set(c->st, DBLD_INVALID_ARGUMENT, "invalid value at %s: %s", where(c),
                           detail);
}

static void *dalloc(dec_ctx *c, size_t n)
{
    void *p = c->alloc->alloc(c->alloc->allocator_data, n ? n : 1);
    if (!p)
        dbld_status_set(c->st, DBLD_RESOURCE_EXHAUSTED, "out of memory decoding JSON at %s",
                        where(c));
    return p;
}

static char *dstrdup(dec_ctx *c, const char *s, size_t n)
{
    char *p = dalloc(c, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Same as protobuf-c's own default (not exported): plain malloc/free, so
 * protobuf_c_message_free_unpacked(msg, NULL) releases what we build. */
static void *sys_alloc(void *ud, size_t n)
{
    (void)ud;
    return malloc(n);
}

static void sys_free(void *ud, void *p)
{
    (void)ud;
    free(p);
}

static ProtobufCAllocator default_alloc = {sys_alloc, sys_free, NULL};

/* Strict decimal integer text: optional '-', digits, nothing else. */
static int parse_int_text(const char *s, int is_unsigned, int64_t *sv, uint64_t *uv)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!*d) return -1;
    for (const char *p = d; *p; p++)
        if (!isdigit((unsigned char)*p)) return -1;
    char *end;
    errno = 0;
    if (is_unsigned) {
        if (s[0] == '-') {
            *uv = 0;
            return strspn(d, "0") == strlen(d) ? 0 : -2; /* "-0" is fine */
        }
        *uv = strtoull(s, &end, 10);
    } else {
        *sv = strtoll(s, &end, 10);
    }
    return errno == ERANGE ? -2 : 0;
}

/* Integer-typed field value from a JSON integer, integral real, or decimal string. */
static int dec_integer(dec_ctx *c, ProtobufCType t, const json_t *j, void *dst)
{
    int is_unsigned = t == PROTOBUF_C_TYPE_UINT32 || t == PROTOBUF_C_TYPE_FIXED32 ||
                      t == PROTOBUF_C_TYPE_UINT64 || t == PROTOBUF_C_TYPE_FIXED64;
    int is64 = elem_size(t) == 8;
    int64_t sv = 0;
    uint64_t uv = 0;
    char text[64];
    if (json_is_integer(j)) {
        sv = json_integer_value(j);
        snprintf(text, sizeof text, "%lld", (long long)sv);
        if (is_unsigned) {
            if (sv < 0) goto range;
            uv = (uint64_t)sv;
        }
    } else if (json_is_real(j)) {
        double v = json_real_value(j);
        snprintf(text, sizeof text, "%.17g", v);
        /* integral? (no libm: every double of magnitude >= 2^63 is an integer) */
        int big = v >= 9223372036854775808.0 || v <= -9223372036854775808.0;
        if (!big && (double)(int64_t)v != v)
            return value_err(c, "%s is not an integer (%s)", text, type_name(t));
        if (is_unsigned) {
            if (v < 0 || v >= 18446744073709551616.0) goto range;
            uv = (uint64_t)v;
        } else {
            if (v < -9223372036854775808.0 || v >= 9223372036854775808.0) goto range;
            sv = (int64_t)v;
        }
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        snprintf(text, sizeof text, "\"%.40s\"", s);
        int r = parse_int_text(s, is_unsigned, &sv, &uv);
        if (r == -1) return value_err(c, "%s is not a decimal %s", text, type_name(t));
        if (r == -2) goto range;
    } else {
        return type_err(c, type_name(t), j);
    }
    if (is64) {
        if (is_unsigned)
            *(uint64_t *)dst = uv;
        else
            *(int64_t *)dst = sv;
    } else if (is_unsigned) {
        if (uv > UINT32_MAX) goto range;
        *(uint32_t *)dst = (uint32_t)uv;
    } else {
        if (sv < INT32_MIN || sv > INT32_MAX) goto range;
        *(int32_t *)dst = (int32_t)sv;
    }
    return 0;
range:
    return value_err(c, "%s is out of range for %s", text, type_name(t));
}

static int dec_floating(dec_ctx *c, ProtobufCType t, const json_t *j, void *dst)
{
    double v;
    if (json_is_number(j)) {
        v = json_number_value(j);
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        if (strcmp(s, "NaN") == 0) {
            v = NAN;
        } else if (strcmp(s, "Infinity") == 0) {
            v = INFINITY;
        } else if (strcmp(s, "-Infinity") == 0) {
            v = -INFINITY;
        } else {
            /* A number in a string; only JSON number characters (no "inf", hex). */
            char *end = NULL;
            int ok = *s && strspn(s, "0123456789+-.eE") == strlen(s);
            if (ok) {
                errno = 0;
                v = strtod(s, &end);
                ok = *end == '\0' && errno != ERANGE;
            }
            if (!ok) return value_err(c, "\"%.40s\" is not a %s", s, type_name(t));
        }
    } else {
        return type_err(c, type_name(t), j);
    }
    if (t == PROTOBUF_C_TYPE_FLOAT) {
        if (isfinite(v) && (v > FLT_MAX || v < -FLT_MAX))
            return value_err(c, "%g is out of range for float", v);
        *(float *)dst = (float)v;
    } else {
        *(double *)dst = v;
    }
    return 0;
}

static int dec_enum(dec_ctx *c, const ProtobufCEnumDescriptor *ed, const json_t *j, int *dst)
{
    if (json_is_string(j)) {
        const char *s = json_string_value(j);
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(ed, s);
        if (!ev) return value_err(c, "unknown %s value \"%s\"", ed->name, s);
        *dst = ev->value;
        return 0;
    }
    if (json_is_integer(j) || json_is_real(j)) {
        int32_t v;
        int rc = dec_integer(c, PROTOBUF_C_TYPE_INT32, j, &v);
        if (rc == 0) *dst = v; /* proto3 enums are open: unknown numbers are kept */
        return rc;
    }
    char expected[300];
    snprintf(expected, sizeof expected, "%s name or number", ed->name);
    return type_err(c, expected, j);
}

static int dec_string(dec_ctx *c, const json_t *j, char **dst, int keep_default_empty)
{
    if (!json_is_string(j)) return type_err(c, "string", j);
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    if (strlen(s) != n) return value_err(c, "string contains a NUL character");
    if (n == 0 && keep_default_empty)
        return 0; /* leave protobuf-c's shared empty-string default in place */
    char *p = dstrdup(c, s, n);
    if (!p) return DBLD_RESOURCE_EXHAUSTED;
    *dst = p;
    return 0;
}

static int dec_bytes(dec_ctx *c, const json_t *j, ProtobufCBinaryData *dst)
{
    if (!json_is_string(j)) return type_err(c, "base64 string", j);
    const char *s = json_string_value(j);
    size_t n = json_string_length(j);
    long out_len = b64_decoded_len(s, &n);
    if (out_len < 0) return value_err(c, "invalid base64 data");
    if (out_len == 0) return 0;
    uint8_t *p = dalloc(c, (size_t)out_len);
    if (!p) return DBLD_RESOURCE_EXHAUSTED;
    b64_decode(s, n, p);
    dst->data = p;
    dst->len = (size_t)out_len;
    return 0;
}

static int dec_fields(dec_ctx *c, const json_t *j, const ProtobufCMessageDescriptor *d,
                      ProtobufCMessage *m);

/* Allocate a message of type d, store it at *slot (so the parent owns it
 * before it is filled) and fill it from the JSON object j. */
static int dec_message(dec_ctx *c, const json_t *j, const ProtobufCMessageDescriptor *d,
                       ProtobufCMessage **slot)
{
    if (!json_is_object(j)) return type_err(c, "object", j);
    if (c->depth >= MAX_DEPTH) return value_err(c, "messages nested more than %d deep", MAX_DEPTH);
    ProtobufCMessage *m = dalloc(c, d->sizeof_message);
    if (!m) return DBLD_RESOURCE_EXHAUSTED;
    protobuf_c_message_init(d, m);
    *slot = m;
    c->depth++;
    int rc = dec_fields(c, j, d, m);
    c->depth--;
    return rc;
}

/* One non-null value of field f into dst. singular: dst is the field itself
 * (not an array element), so an empty string may keep the shared default. */
static int dec_value(dec_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *j, void *dst,
                     int singular)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return dec_integer(c, f->type, j, dst);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return dec_floating(c, f->type, j, dst);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(j)) return type_err(c, "boolean", j);
        *(protobuf_c_boolean *)dst = json_is_true(j);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return dec_enum(c, f->descriptor, j, dst);
    case PROTOBUF_C_TYPE_STRING:
        return dec_string(c, j, dst,
                          singular && f->label == PROTOBUF_C_LABEL_NONE &&
                              !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF));
    case PROTOBUF_C_TYPE_BYTES:
        return dec_bytes(c, j, dst);
    case PROTOBUF_C_TYPE_MESSAGE:
        return dec_message(c, j, f->descriptor, dst);
    }
    return value_err(c, "unsupported field type %d", (int)f->type);
}

/* Map key text into the entry's key field. */
static int dec_map_key(dec_ctx *c, const ProtobufCFieldDescriptor *kf, const char *key, void *dst)
{
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING: {
        if (!*key) return 0;
        char *p = dstrdup(c, key, strlen(key));
        if (!p) return DBLD_RESOURCE_EXHAUSTED;
        *(char **)dst = p;
        return 0;
    }
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(key, "true") != 0 && strcmp(key, "false") != 0)
            return value_err(c, "map key \"%s\" is not true or false", key);
        *(protobuf_c_boolean *)dst = key[0] == 't';
        return 0;
    default: {
        json_t *s = json_string(key);
        if (!s) return dbld_status_set(c->st, DBLD_RESOURCE_EXHAUSTED, "out of memory");
        int rc = dec_integer(c, kf->type, s, dst);
        json_decref(s);
        return rc;
    }
    }
}

static int dec_map(dec_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *j, void *arr_slot,
                   size_t *count)
{
    if (!json_is_object(j)) return type_err(c, "object (map)", j);
    size_t n = json_object_size(j);
    if (n == 0) return 0;
    ProtobufCMessage **arr = dalloc(c, n * sizeof *arr);
    if (!arr) return DBLD_RESOURCE_EXHAUSTED;
    memset(arr, 0, n * sizeof *arr);
    *(ProtobufCMessage ***)arr_slot = arr;
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)j, key, val)
    {
        size_t old = path_push(c, "[\"%s\"]", key);
        ProtobufCMessage *e = dalloc(c, ed->sizeof_message);
        if (!e) return DBLD_RESOURCE_EXHAUSTED;
        protobuf_c_message_init(ed, e);
        arr[i] = e;
        *count = ++i;
        int rc = dec_map_key(c, kf, key, MEMBER(e, kf->offset));
        if (rc == 0 && json_is_null(val)) rc = type_err(c, type_name(vf->type), val);
        if (rc == 0) rc = dec_value(c, vf, val, MEMBER(e, vf->offset), 1);
        if (rc) return rc;
        path_pop(c, old);
    }
    return 0;
}

static int dec_repeated(dec_ctx *c, const ProtobufCFieldDescriptor *f, const json_t *j,
                        void *arr_slot, size_t *count)
{
    if (json_is_null(j)) return 0;
    if (is_map_field(f)) return dec_map(c, f, j, arr_slot, count);
    if (!json_is_array(j)) {
        char expected[64];
        snprintf(expected, sizeof expected, "array of %s", type_name(f->type));
        return type_err(c, expected, j);
    }
    size_t n = json_array_size(j);
    if (n == 0) return 0;
    size_t es = elem_size(f->type);
    char *arr = dalloc(c, n * es);
    if (!arr) return DBLD_RESOURCE_EXHAUSTED;
    memset(arr, 0, n * es);
    *(void **)arr_slot = arr;
    for (size_t i = 0; i < n; i++) {
        size_t old = path_push(c, "[%zu]", i);
        const json_t *v = json_array_get(j, i);
        /* Count the (zeroed) slot first: a partly built submessage must be freed. */
        *count = i + 1;
        int rc = json_is_null(v) ? type_err(c, type_name(f->type), v)
                                 : dec_value(c, f, v, arr + i * es, 0);
        if (rc) {
            if (f->type == PROTOBUF_C_TYPE_MESSAGE && !((void **)arr)[i]) *count = i;
            return rc;
        }
        path_pop(c, old);
    }
    return 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *key)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(d, key);
    if (f) return f;
    for (unsigned i = 0; i < d->n_fields; i++) {
        char name[NAME_MAX_LEN];
        json_name(d->fields[i].name, name, sizeof name);
        if (strcmp(name, key) == 0) return &d->fields[i];
    }
    return NULL;
}

static const char *field_name_by_id(const ProtobufCMessageDescriptor *d, unsigned id)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, id);
    return f ? f->name : "?";
}

static int dec_field(dec_ctx *c, const ProtobufCMessageDescriptor *d,
                     const ProtobufCFieldDescriptor *f, const json_t *v, ProtobufCMessage *m)
{
    void *p = MEMBER(m, f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return dec_repeated(c, f, v, p, MEMBER(m, f->quantifier_offset));
    if (json_is_null(v)) return 0; /* null means default / not set */
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *oneof_case = MEMBER(m, f->quantifier_offset);
        if (*oneof_case != 0 && *oneof_case != f->id)
            return value_err(c, "field \"%s\" is already set in the same oneof",
                             field_name_by_id(d, *oneof_case));
        *oneof_case = f->id; /* before filling, so a partial member is freed */
    } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
               f->type != PROTOBUF_C_TYPE_MESSAGE) {
        *(protobuf_c_boolean *)MEMBER(m, f->quantifier_offset) = 1;
    }
    return dec_value(c, f, v, p, 1);
}

static int dec_fields(dec_ctx *c, const json_t *j, const ProtobufCMessageDescriptor *d,
                      ProtobufCMessage *m)
{
    unsigned char seen_buf[64], *seen = seen_buf;
    if (d->n_fields > sizeof seen_buf) {
        seen = calloc(d->n_fields, 1);
        if (!seen) return dbld_status_set(c->st, DBLD_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        memset(seen_buf, 0, sizeof seen_buf);
    }
    int rc = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)j, key, val)
    {
        const ProtobufCFieldDescriptor *f = find_field(d, key);
        if (!f) {
            if (c->plen)
                rc = dbld_status_set(c->st, DBLD_INVALID_ARGUMENT, "unknown field \"%s\" at %s",
                                     key, c->path);
            else
                rc = dbld_status_set(c->st, DBLD_INVALID_ARGUMENT, "unknown field \"%s\" in %s",
                                     key, d->name);
            break;
        }
        size_t idx = (size_t)(f - d->fields);
        size_t old = path_push_field(c, key);
        if (seen[idx]) {
            rc = value_err(c, "field \"%s\" given more than once", f->name);
            break;
        }
        seen[idx] = 1;
        rc = dec_field(c, d, f, val, m);
        if (rc) break;
        path_pop(c, old);
    }
    if (seen != seen_buf) free(seen);
    return rc;
}

int dbld_json_to_message(const json_t *json, const ProtobufCMessageDescriptor *desc,
                         ProtobufCAllocator *alloc, ProtobufCMessage **out, dbld_status *st)
{
    *out = NULL;
    if (!json || !desc)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no JSON value or descriptor");
    dec_ctx *c = calloc(1, sizeof *c);
    if (!c) return dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED, "out of memory");
    c->alloc = alloc ? alloc : &default_alloc;
    c->st = st;
    ProtobufCMessage *m = NULL;
    int rc = dec_message(c, json, desc, &m);
    if (rc && m) {
        protobuf_c_message_free_unpacked(m, c->alloc);
        m = NULL;
    }
    free(c);
    if (rc == 0) *out = m;
    return rc;
}

int dbld_json_decode(const char *text, size_t len, const ProtobufCMessageDescriptor *desc,
                     ProtobufCAllocator *alloc, ProtobufCMessage **out, dbld_status *st)
{
    *out = NULL;
    json_error_t err;
    json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!j)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "invalid JSON at line %d column %d: %s",
                               err.line, err.column, err.text);
    int rc = dbld_json_to_message(j, desc, alloc, out, st);
    json_decref(j);
    return rc;
}
