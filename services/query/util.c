/* util.c - small value helpers for the query service: SQL literals, event
 * decoding, enum names, message builders and an arena string map. */
#include "query.h"

#include <inttypes.h>
#include <string.h>

const char *q_i64(dbld_arena *a, int64_t v)
{
    return dbld_arena_printf(a, "%" PRId64, v);
}

const char *q_text_array(dbld_arena *a, char *const *items, size_t n)
{
    return n ? dbld_pg_text_array(a, (const char *const *)items, n) : NULL;
}

char **q_parse_array(dbld_arena *a, const char *lit, size_t *n)
{
    char **items = NULL;
    if (dbld_pg_parse_text_array(a, lit, &items, n) != 0) *n = 0;
    return items;
}

Databuild__V1__BuildEvent *q_decode_event(dbld_arena *a, const char *bytea_text)
{
    uint8_t *buf;
    size_t len;
    if (dbld_bytea_decode(a, bytea_text, &buf, &len) != 0) return NULL;
    return (Databuild__V1__BuildEvent *)protobuf_c_message_unpack(
        &databuild__v1__build_event__descriptor, dbld_arena_allocator(a), len, buf);
}

const char *q_enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    return v ? v->name : "";
}

Databuild__V1__PartitionRef *q_ref(dbld_arena *a, const char *s)
{
    Databuild__V1__PartitionRef *r = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    r->str = (char *)(s ? s : "");
    return r;
}

Databuild__V1__PartitionRef **q_refs(dbld_arena *a, char *const *strs, size_t n)
{
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = q_ref(a, strs[i]);
    return out;
}

Databuild__V1__BuildRequestStatus *q_build_status(dbld_arena *a, int code)
{
    Databuild__V1__BuildRequestStatus *s =
        dbld_arena_msg(a, &databuild__v1__build_request_status__descriptor);
    s->code = code;
    s->name = (char *)q_enum_name(&databuild__v1__build_request_status_code__descriptor, code);
    return s;
}

Databuild__V1__SourceType *q_source_type(dbld_arena *a, int code)
{
    Databuild__V1__SourceType *s = dbld_arena_msg(a, &databuild__v1__source_type__descriptor);
    s->code = code;
    s->name = (char *)q_enum_name(&databuild__v1__source_type_code__descriptor, code);
    return s;
}

/* ---- string map: open addressing over arena arrays ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void q_strmap_init(q_strmap *m, dbld_arena *a)
{
    memset(m, 0, sizeof *m);
    m->a = a;
}

size_t q_strmap_get(const q_strmap *m, const char *key)
{
    if (!m->cap) return (size_t)-1;
    for (size_t i = hash_str(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return (size_t)-1;
        if (strcmp(m->keys[i], key) == 0) return m->vals[i];
    }
}

static void put(const char **keys, size_t *vals, size_t cap, const char *key, size_t val)
{
    size_t i = hash_str(key) & (cap - 1);
    while (keys[i])
        i = (i + 1) & (cap - 1);
    keys[i] = key;
    vals[i] = val;
}

size_t q_strmap_add(q_strmap *m, const char *key, size_t *n, int *added)
{
    size_t v = q_strmap_get(m, key);
    if (v != (size_t)-1) {
        *added = 0;
        return v;
    }
    if (2 * (m->n + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        const char **keys = dbld_arena_alloc(m->a, cap * sizeof *keys);
        size_t *vals = dbld_arena_alloc(m->a, cap * sizeof *vals);
        for (size_t i = 0; i < m->cap; i++)
            if (m->keys[i]) put(keys, vals, cap, m->keys[i], m->vals[i]);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    v = (*n)++;
    put(m->keys, m->vals, m->cap, key, v);
    m->n++;
    *added = 1;
    return v;
}
