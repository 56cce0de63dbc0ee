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
