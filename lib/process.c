/* process.c - helpers for the background-process messages (see
 * include/dbld/process.h). Lists are grown by copying into the arena: the
 * messages are small (a few settings, at most 25 errors) and live for one
 * call or one run. */
#include "dbld/process.h"

#include "dbld/util.h"

#include <string.h>

#define GROW(a, arr, n)                                                                            \
    do {                                                                                           \
        void *grown_ = dbld_arena_alloc((a), ((n) + 1) * sizeof *(arr));                           \
        if (n) memcpy(grown_, (arr), (n) * sizeof *(arr));                                         \
        (arr) = grown_;                                                                            \
    } while (0)

int64_t dbld_params_int(const Databuild__V1__ProcessParams *p, const char *key, int64_t dflt)
{
    for (size_t i = 0; p && i < p->n_int_params; i++)
        if (strcmp(p->int_params[i]->key, key) == 0) return p->int_params[i]->value;
    return dflt;
}

const char *dbld_params_str(const Databuild__V1__ProcessParams *p, const char *key,
                            const char *dflt)
{
    for (size_t i = 0; p && i < p->n_string_params; i++)
        if (strcmp(p->string_params[i]->key, key) == 0) return p->string_params[i]->value;
    return dflt;
}

void dbld_params_set_int(dbld_arena *a, Databuild__V1__ProcessParams *p, const char *key, int64_t v)
{
    for (size_t i = 0; i < p->n_int_params; i++)
        if (strcmp(p->int_params[i]->key, key) == 0) {
            p->int_params[i]->value = v;
            return;
        }
    Databuild__V1__ProcessParams__IntParamsEntry *e =
        dbld_arena_msg(a, &databuild__v1__process_params__int_params_entry__descriptor);
    e->key = dbld_arena_strdup(a, key);
    e->value = v;
    GROW(a, p->int_params, p->n_int_params);
    p->int_params[p->n_int_params++] = e;
}

void dbld_params_set_str(dbld_arena *a, Databuild__V1__ProcessParams *p, const char *key,
                         const char *v)
{
    for (size_t i = 0; i < p->n_string_params; i++)
        if (strcmp(p->string_params[i]->key, key) == 0) {
            p->string_params[i]->value = dbld_arena_strdup(a, v);
            return;
        }
    Databuild__V1__ProcessParams__StringParamsEntry *e =
        dbld_arena_msg(a, &databuild__v1__process_params__string_params_entry__descriptor);
    e->key = dbld_arena_strdup(a, key);
    e->value = dbld_arena_strdup(a, v);
    GROW(a, p->string_params, p->n_string_params);
    p->string_params[p->n_string_params++] = e;
}

void dbld_params_merge(dbld_arena *a, Databuild__V1__ProcessParams *into,
                       const Databuild__V1__ProcessParams *from)
{
    for (size_t i = 0; from && i < from->n_int_params; i++)
        dbld_params_set_int(a, into, from->int_params[i]->key, from->int_params[i]->value);
    for (size_t i = 0; from && i < from->n_string_params; i++)
        dbld_params_set_str(a, into, from->string_params[i]->key, from->string_params[i]->value);
}

void dbld_pstatus_add_error(dbld_arena *a, Databuild__V1__ProcessStatus *s, int64_t t,
                            const char *text, size_t cap)
{
    s->total_errors++;
    if (t > s->last_error_ns) s->last_error_ns = t;
    if (cap == 0) return;
    Databuild__V1__ProcessError *e = dbld_arena_msg(a, &databuild__v1__process_error__descriptor);
    e->time_ns = t;
    e->text = dbld_arena_strdup(a, text);
    if (s->n_errors >= cap) { /* drop the oldest */
        memmove(s->errors, s->errors + (s->n_errors - cap + 1), (cap - 1) * sizeof *s->errors);
        s->n_errors = cap - 1;
    }
    GROW(a, s->errors, s->n_errors);
    s->errors[s->n_errors++] = e;
}

void dbld_pstatus_add_stat(dbld_arena *a, Databuild__V1__ProcessStatus *s, const char *key,
                           double delta)
{
    for (size_t i = 0; i < s->n_stats; i++)
        if (strcmp(s->stats[i]->key, key) == 0) {
            s->stats[i]->value += delta;
            return;
        }
    Databuild__V1__ProcessStatus__StatsEntry *e =
        dbld_arena_msg(a, &databuild__v1__process_status__stats_entry__descriptor);
    e->key = dbld_arena_strdup(a, key);
    e->value = delta;
    GROW(a, s->stats, s->n_stats);
    s->stats[s->n_stats++] = e;
}

double dbld_pstatus_stat(const Databuild__V1__ProcessStatus *s, const char *key)
{
    for (size_t i = 0; s && i < s->n_stats; i++)
        if (strcmp(s->stats[i]->key, key) == 0) return s->stats[i]->value;
    return 0;
}

const char *dbld_process_state_word(int state)
{
    static const char *const words[] = {"unspecified", "queued",     "active",
                                        "aborted",     "incomplete", "completed"};
    return state >= 0 && state <= 5 ? words[state] : "unspecified";
}

const char *dbld_process_state_name(int state)
{
    static const char *const names[] = {"UNSPECIFIED", "NEW",        "ACTIVE",
                                        "ABORTED",     "INCOMPLETE", "COMPLETED"};
    return state >= 0 && state <= 5 ? names[state] : "UNSPECIFIED";
}

static void *unpack(dbld_arena *a, const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n)
{
    ProtobufCMessage *m = n ? protobuf_c_message_unpack(d, dbld_arena_allocator(a), n, b) : NULL;
    return m ? (void *)m : dbld_arena_msg(a, d);
}

Databuild__V1__ProcessParams *dbld_params_unpack(dbld_arena *a, const uint8_t *b, size_t n)
{
    return unpack(a, &databuild__v1__process_params__descriptor, b, n);
}

Databuild__V1__ProcessStatus *dbld_pstatus_unpack(dbld_arena *a, const uint8_t *b, size_t n)
{
    return unpack(a, &databuild__v1__process_status__descriptor, b, n);
}

uint8_t *dbld_msg_pack(dbld_arena *a, const ProtobufCMessage *m, size_t *n)
{
    *n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = dbld_arena_alloc(a, *n + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

/* ---- unknown fields ---- */

static void add_unknown(dbld_arena *a, ProtobufCMessage *m, uint32_t tag, ProtobufCWireType wt,
                        uint8_t *data, size_t len)
{
    ProtobufCMessageUnknownField *grown =
        dbld_arena_alloc(a, (m->n_unknown_fields + 1) * sizeof *grown);
    if (m->n_unknown_fields) memcpy(grown, m->unknown_fields, m->n_unknown_fields * sizeof *grown);
    grown[m->n_unknown_fields] =
        (ProtobufCMessageUnknownField){.tag = tag, .wire_type = wt, .len = len, .data = data};
    m->unknown_fields = grown;
    m->n_unknown_fields++;
}

static size_t put_varint(uint8_t *buf, uint64_t v)
{
    size_t len = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        buf[len++] = byte | (v ? 0x80 : 0);
    } while (v);
    return len;
}

void dbld_pb_add_unknown_varint(dbld_arena *a, ProtobufCMessage *m, uint32_t tag, uint64_t v)
{
    if (!v) return;
    uint8_t *buf = dbld_arena_alloc(a, 10);
    add_unknown(a, m, tag, PROTOBUF_C_WIRE_TYPE_VARINT, buf, put_varint(buf, v));
}

/* protobuf-c keeps a length-delimited unknown field's bytes with their
 * length prefix (it writes them back as they are). */
void dbld_pb_add_unknown_string(dbld_arena *a, ProtobufCMessage *m, uint32_t tag, const char *s)
{
    size_t len = strlen(s);
    uint8_t *buf = dbld_arena_alloc(a, len + 10);
    size_t pre = put_varint(buf, len);
    memcpy(buf + pre, s, len);
    add_unknown(a, m, tag, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED, buf, pre + len);
}

uint64_t dbld_pb_unknown_varint(const ProtobufCMessage *m, uint32_t tag)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &m->unknown_fields[i];
        if (f->tag != tag || f->wire_type != PROTOBUF_C_WIRE_TYPE_VARINT) continue;
        v = 0; /* the last occurrence wins, as protobuf says */
        for (size_t k = 0; k < f->len && k < 10; k++)
            v |= (uint64_t)(f->data[k] & 0x7f) << (7 * k);
    }
    return v;
}

char *dbld_pb_unknown_string(dbld_arena *a, const ProtobufCMessage *m, uint32_t tag)
{
    char *out = NULL;
    for (unsigned i = 0; i < m->n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *f = &m->unknown_fields[i];
        if (f->tag != tag || f->wire_type != PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) continue;
        uint64_t len = 0;
        size_t k = 0;
        for (; k < f->len && k < 10; k++) {
            len |= (uint64_t)(f->data[k] & 0x7f) << (7 * k);
            if (!(f->data[k] & 0x80)) break;
        }
        k++;
        if (k > f->len || len > f->len - k) continue;
        out = dbld_arena_alloc(a, len + 1);
        memcpy(out, f->data + k, len);
        out[len] = 0;
    }
    return out;
}
