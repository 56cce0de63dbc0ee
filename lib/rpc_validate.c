/* rpc_validate.c - every request's wire bytes checked against its descriptor
 * before protobuf-c unpacks them.
 *
 * protobuf-c accepts any bytes in a `string` field and hands them out as a
 * NUL-terminated C string, so invalid UTF-8 was stored (and then broke every
 * standard client that read it back) and an embedded NUL silently cut the
 * string short. Neither can be seen after unpacking (the length is gone), so
 * the check walks the serialized message itself, guided by the descriptor,
 * once per request in the RPC runtime: no handler can forget it.
 *
 * What is refused, each with INVALID_ARGUMENT naming the field by its path
 * ("events[2].job_event.config.args[0]"):
 *   - a string that is not valid UTF-8 (overlong forms, surrogates and code
 *     points above U+10FFFF included) or that holds a NUL byte;
 *   - a string longer than the limit of its kind (dbld_string_limit(): refs,
 *     ids, labels, comments, messages, the rest), and a repeated field with
 *     more than DBLD_LIMIT_LIST_ITEMS items;
 *   - an enum value the descriptor does not name (a status of -1);
 *   - a uint64 above INT64_MAX (every such value ends up in a bigint);
 *   - nesting deeper than DBLD_LIMIT_DEPTH (protobuf-c unpacks recursively);
 *   - a field number of 0 or above 2^29 - 1 (protobuf-c reads 0 in a
 *     multi-byte key, keeps it as an unknown field and then cannot read its
 *     own packing of it back).
 * Malformed wire data is left to protobuf-c, which refuses it as before.
 * The walk allocates nothing: field counters live on the stack.
 */
#include "dbld/rpc.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define MAX_FIELDS_ON_STACK 128    /* fields per message type (ours have at most ~20) */
#define MAX_FIELD_NUMBER 536870911 /* 2^29 - 1, protobuf's largest */

typedef struct path {
    const struct path *up;
    const char *name;
    long index; /* -1: not repeated */
} path;

/* ---- limits ---- */

static int name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0) return 1;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

size_t dbld_string_limit(const char *msg_name, const char *field, const char **kind)
{
    static const char *const refs[] = {"ref",
                                       "refs",
                                       "held_ref",
                                       "partition_refs",
                                       "built_partition",
                                       "output_partition",
                                       "last_partition",
                                       "built_partition_refs",
                                       NULL};
    static const char *const patterns[] = {"partition_patterns", "ref_pattern", NULL};
    static const char *const ids[] = {"owner",
                                      "previous_owner",
                                      "lost",
                                      "build_id",
                                      "build_reqeust_ids",
                                      "past_build_request",
                                      "recent_builds",
                                      NULL};
    static const char *const labels[] = {"label", "job_label", "job_labels", "run_jobs", NULL};
    static const char *const comments[] = {"comment", "comment_contains", "reason", "cancel_reason",
                                           NULL};
    static const char *const messages[] = {"message", "stderr_tail", "error_message", NULL};
    const char *k;
    size_t lim;
    if ((msg_name && strcmp(msg_name, "PartitionRef") == 0 && strcmp(field, "str") == 0) ||
        name_in(field, refs))
        k = "a partition ref", lim = DBLD_LIMIT_REF_BYTES;
    else if (name_in(field, patterns))
        k = "a pattern", lim = DBLD_LIMIT_PATTERN_BYTES;
    else if (ends_with(field, "_id") || ends_with(field, "_ids") || name_in(field, ids))
        k = "an id", lim = DBLD_LIMIT_ID_BYTES;
    else if (name_in(field, labels))
        k = "a label", lim = DBLD_LIMIT_LABEL_BYTES;
    else if (name_in(field, comments))
        k = "a comment", lim = DBLD_LIMIT_COMMENT_BYTES;
    else if (name_in(field, messages))
        k = "a message", lim = DBLD_LIMIT_MESSAGE_BYTES;
    else
        k = "a string", lim = DBLD_LIMIT_STRING_BYTES;
    if (kind) *kind = k;
    return lim;
}

/* The shortest limit of dbld_string_limit(). */
#define SHORTEST_LIMIT DBLD_LIMIT_ID_BYTES
_Static_assert(DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_REF_BYTES &&
                   DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_PATTERN_BYTES &&
                   DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_LABEL_BYTES &&
                   DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_COMMENT_BYTES &&
                   DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_MESSAGE_BYTES &&
                   DBLD_LIMIT_ID_BYTES <= DBLD_LIMIT_STRING_BYTES,
               "SHORTEST_LIMIT must be the shortest string limit");

/* ---- field paths in messages ---- */

static void path_format(const path *p, char *out, size_t cap)
{
    const path *chain[DBLD_LIMIT_DEPTH + 2];
    size_t n = 0;
    for (; p && n < sizeof chain / sizeof *chain; p = p->up)
        chain[n++] = p;
    size_t used = 0;
    out[0] = 0;
    while (n-- > 0 && used < cap) {
        int w = chain[n]->index >= 0
                    ? snprintf(out + used, cap - used, "%s%s[%ld]", used ? "." : "", chain[n]->name,
                               chain[n]->index)
                    : snprintf(out + used, cap - used, "%s%s", used ? "." : "", chain[n]->name);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static int refuse(dbld_status *st, const path *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(dbld_status *st, const path *p, const char *fmt, ...)
{
    char where[512], what[512];
    path_format(p, where, sizeof where);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "field %s: %s", where, what);
}

/* ---- UTF-8 ---- */

/* Offset of the first byte that is not part of valid UTF-8 (or a NUL), or
 * len when all is well; *nul tells which. */
static size_t utf8_check(const uint8_t *s, size_t len, int *nul)
{
    size_t i = 0;
    *nul = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0) return *nul = 1, i;
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            n = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            n = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            n = 4, cp = c & 0x07, min = 0x10000;
        else
            return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += n;
    }
    return len;
}

/* ---- the wire walk ---- */

typedef struct reader {
    const uint8_t *p, *end;
} reader;

static int read_varint(reader *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;
        if (shift < 64) x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return *v = x, 0;
    }
    return -1;
}

static int skip(reader *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) return -1;
    r->p += n;
    return 0;
}

static int check_message(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                         const path *up, int depth, dbld_status *st);

static int check_string(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                        const uint8_t *s, size_t len, const path *p, dbld_status *st)
{
    /* the kind's limit is looked up by name only for a string that could
     * pass one: most are shorter than the shortest */
    if (len > SHORTEST_LIMIT) {
        const char *kind;
        size_t lim = dbld_string_limit(d->short_name, f->name, &kind);
        if (len > lim)
            return refuse(st, p, "%zu bytes, over the limit of %zu bytes for %s", len, lim, kind);
    }
    int nul;
    size_t bad = utf8_check(s, len, &nul);
    if (bad == len) return 0;
    if (nul) return refuse(st, p, "NUL byte at offset %zu (NUL is not allowed in strings)", bad);
    return refuse(st, p, "not valid UTF-8 (at byte offset %zu)", bad);
}

static int check_enum(const ProtobufCFieldDescriptor *f, uint64_t v, const path *p, dbld_status *st)
{
    int32_t value = (int32_t)v;
    if (protobuf_c_enum_descriptor_get_value(f->descriptor, value)) return 0;
    const ProtobufCEnumDescriptor *e = f->descriptor;
    return refuse(st, p, "%" PRId32 " is not a %s value", value, e->name);
}

static int check_scalar(const ProtobufCFieldDescriptor *f, uint64_t v, const path *p,
                        dbld_status *st)
{
    if (f->type == PROTOBUF_C_TYPE_ENUM) return check_enum(f, v, p, st);
    if ((f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_FIXED64) &&
        v > (uint64_t)INT64_MAX)
        return refuse(st, p, "%" PRIu64 " is over the largest accepted value %" PRId64, v,
                      INT64_MAX);
    return 0;
}

/* A packed repeated field: each element counts as an item. */
static int check_packed(const ProtobufCFieldDescriptor *f, const uint8_t *buf, size_t len,
                        uint32_t *count, path *p, dbld_status *st)
{
    reader r = {buf, buf + len};
    while (r.p < r.end) {
        uint64_t v = 0;
        switch (f->type) {
        case PROTOBUF_C_TYPE_FIXED64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_DOUBLE:
            if (r.end - r.p < 8) return 0; /* malformed: protobuf-c refuses it */
            memcpy(&v, r.p, 8);
            r.p += 8;
            break;
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_FLOAT:
            if (skip(&r, 4) < 0) return 0;
            break;
        default:
            if (read_varint(&r, &v) < 0) return 0;
        }
        p->index = (long)*count;
        if (++*count > DBLD_LIMIT_LIST_ITEMS)
            return refuse(st, p, "more than %d items", DBLD_LIMIT_LIST_ITEMS);
        if (check_scalar(f, v, p, st)) return st->code;
    }
    return 0;
}

static int is_packable(const ProtobufCFieldDescriptor *f)
{
    return f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_BYTES &&
           f->type != PROTOBUF_C_TYPE_MESSAGE;
}

/* One field occurrence with a length-delimited payload. */
static int check_delimited(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                           const uint8_t *buf, size_t len, uint32_t *count, path *p, int depth,
                           dbld_status *st)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED && is_packable(f))
        return check_packed(f, buf, len, count, p, st);
    if (f->type == PROTOBUF_C_TYPE_STRING) return check_string(d, f, buf, len, p, st);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE)
        return check_message(f->descriptor, buf, len, p, depth + 1, st);
    return 0;
}

static int check_field(const ProtobufCMessageDescriptor *d, reader *r, uint32_t *counts,
                       const path *up, int depth, dbld_status *st)
{
    uint64_t key;
    if (read_varint(r, &key) < 0) return -1;
    if (key >> 3 == 0 || key >> 3 > MAX_FIELD_NUMBER) {
        /* protobuf-c keeps such a field (written as a longer varint) as an
         * unknown field and packs it again as a tag it then refuses: a stored
         * event would no longer decode */
        path bad = {up, "?", -1};
        return refuse(st, &bad, "field number %" PRIu64 " is not valid (1..%d)", key >> 3,
                      MAX_FIELD_NUMBER);
    }
    unsigned wire = (unsigned)(key & 7);
    const ProtobufCFieldDescriptor *f =
        key >> 3 <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3))
                               : NULL;
    uint32_t spare = 0, *count = f ? &counts[f - d->fields] : &spare;
    path p = {up, f ? f->name : "?", -1};
    if (f && f->label == PROTOBUF_C_LABEL_REPEATED && !(wire == 2 && is_packable(f))) {
        p.index = (long)*count;
        if (++*count > DBLD_LIMIT_LIST_ITEMS)
            return refuse(st, &p, "more than %d items", DBLD_LIMIT_LIST_ITEMS);
    }
    uint64_t v = 0, n;
    switch (wire) {
    case 0:
        if (read_varint(r, &v) < 0) return -1;
        return f ? check_scalar(f, v, &p, st) : 0;
    case 1:
        if ((size_t)(r->end - r->p) < 8) return -1;
        memcpy(&v, r->p, 8);
        r->p += 8;
        return f ? check_scalar(f, v, &p, st) : 0;
    case 5:
        return skip(r, 4);
    case 2:
        if (read_varint(r, &n) < 0 || n > (uint64_t)(r->end - r->p)) return -1;
        r->p += n;
        return f ? check_delimited(d, f, r->p - n, (size_t)n, count, &p, depth, st) : 0;
    default:
        return -1; /* groups and reserved wire types: protobuf-c refuses them */
    }
}

static int check_message(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                         const path *up, int depth, dbld_status *st)
{
    if (depth > DBLD_LIMIT_DEPTH)
        return refuse(st, up, "messages nested deeper than %d levels", DBLD_LIMIT_DEPTH);
    /* counts[i]: items of field i seen so far (for the list limit and the
     * index in paths); our largest message has far fewer fields */
    uint32_t counts[MAX_FIELDS_ON_STACK];
    if (d->n_fields > MAX_FIELDS_ON_STACK)
        return refuse(st, up, "message %s has too many fields to check", d->name);
    memset(counts, 0, d->n_fields * sizeof *counts);
    reader r = {buf, buf + len};
    while (r.p < r.end) {
        int rc = check_field(d, &r, counts, up, depth, st);
        if (rc < 0) return 0; /* malformed: protobuf-c's unpack refuses it with its own message */
        if (rc) return rc;
    }
    return 0;
}

int dbld_wire_validate(const ProtobufCMessageDescriptor *d, const void *buf, size_t len,
                       dbld_status *st)
{
    dbld_status_clear(st);
    return check_message(d, buf, len, NULL, 0, st);
}
