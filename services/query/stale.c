/* stale.c - why a partition is stale, for GetPartitionsSummary (and any
 * other path that builds its PartitionSummaryV2, such as an in-memory
 * index: call q_stale_fill(), or q_stale_stmt() + q_stale_decode() +
 * q_stale_attach() to fold the read into a pipeline of your own).
 *
 * A partition is stale while partitions.tainted is set: a TaintEvent named
 * it, or taint_propagator appended a PartitionInvalidationEvent for it
 * because an input it was built from is tainted or stale; its rebuild
 * (PartitionEvent AVAILABLE) clears the flag. The latest of those two events
 * that names the ref says why:
 *   TaintEvent                taint_id = its event id, tainted_refs = its
 *                             refs, via_input "" (tainted itself), reason =
 *                             its comment
 *   PartitionInvalidationEvent taint_id, tainted_refs and via_input from its
 *                             PartitionInvalidationExt fields (propagator.c
 *                             writes them), reason = its reason text
 * The result is a PartitionStaleInfo written into the PartitionSummaryV2 as
 * unknown field 1001 (PartitionSummaryV2Ext.stale), which seed readers skip.
 * One indexed statement (events_refs_gin), no row when the partition is not
 * tainted.
 */
#include "query.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#include <stdlib.h>
#include <string.h>

#define STALE_SQL                                                                                  \
    "SELECT e.kind, e.event_id, e.ts_ns, e.payload FROM events e"                                  \
    " WHERE e.partition_refs @> ARRAY[$1::text] AND e.kind IN (15, 19)"                            \
    " AND EXISTS (SELECT 1 FROM partitions p WHERE p.ref = $1::text AND p.tainted)"                \
    " ORDER BY e.idx DESC LIMIT 1"
_Static_assert(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT == 15,
               "STALE_SQL's kinds");
_Static_assert(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT == 19, "STALE_SQL's kinds");

void q_stale_stmt(dbld_arena *a, const char *ref, dbld_stmt *stmt, dbld_res **out)
{
    const char **p = dbld_arena_alloc(a, sizeof *p);
    p[0] = ref;
    *stmt = (dbld_stmt){.name = "q_stale", .sql = STALE_SQL, .n = 1, .params = p, .out = out};
}

/* The PartitionInvalidationExt fields of pi (arena). */
static Databuild__V1__PartitionInvalidationExt *
invalidation_ext(dbld_arena *a, const Databuild__V1__PartitionInvalidationEvent *pi)
{
    size_t n;
    uint8_t *b = dbld_msg_pack(a, &pi->base, &n);
    Databuild__V1__PartitionInvalidationExt *x =
        (Databuild__V1__PartitionInvalidationExt *)protobuf_c_message_unpack(
            &databuild__v1__partition_invalidation_ext__descriptor, dbld_arena_allocator(a), n, b);
    return x ? x : dbld_arena_msg(a, &databuild__v1__partition_invalidation_ext__descriptor);
}

Databuild__V1__PartitionStaleInfo *q_stale_decode(dbld_arena *a, const dbld_res *res)
{
    if (!res || dbld_res_rows(res) < 1) return NULL;
    Databuild__V1__BuildEvent *ev = q_decode_event(a, dbld_res_get(res, 0, 3));
    if (!ev) return NULL;
    Databuild__V1__PartitionStaleInfo *s =
        dbld_arena_msg(a, &databuild__v1__partition_stale_info__descriptor);
    s->since_ns = dbld_res_i64(res, 0, 2);
    if (ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT) {
        const Databuild__V1__TaintEvent *t = ev->taint_event;
        s->taint_id = dbld_arena_strdup(a, dbld_res_get(res, 0, 1));
        s->tainted_refs = dbld_arena_alloc(a, (t->n_refs + 1) * sizeof *s->tainted_refs);
        for (size_t i = 0; i < t->n_refs; i++)
            if (t->refs[i] && t->refs[i]->str)
                s->tainted_refs[s->n_tainted_refs++] = t->refs[i]->str;
        s->via_input = "";
        s->reason = t->comment && *t->comment ? t->comment : "tainted";
        return s;
    }
    if (ev->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT)
        return NULL;
    const Databuild__V1__PartitionInvalidationEvent *pi = ev->partition_invalidation_event;
    Databuild__V1__PartitionInvalidationExt *x = invalidation_ext(a, pi);
    s->taint_id = x->taint_id;
    s->tainted_refs = x->tainted_refs;
    s->n_tainted_refs = x->n_tainted_refs;
    s->via_input = x->via_input;
    s->reason = pi->reason;
    return s;
}

void q_stale_attach(dbld_arena *a, Databuild__V1__PartitionSummaryV2 *resp,
                    const Databuild__V1__PartitionStaleInfo *info)
{
    if (!info) return;
    /* protobuf-c packs an unknown field as its tag and then data as is, so
     * data holds the length prefix (a varint) and the message */
    size_t len = protobuf_c_message_get_packed_size(&info->base), h = 0;
    ProtobufCMessageUnknownField *u =
        dbld_arena_alloc(a, (resp->base.n_unknown_fields + 1) * sizeof *u);
    if (resp->base.n_unknown_fields)
        memcpy(u, resp->base.unknown_fields, resp->base.n_unknown_fields * sizeof *u);
    ProtobufCMessageUnknownField *f = &u[resp->base.n_unknown_fields];
    f->tag = DBLD_PARTITION_STALE;
    f->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
    f->data = dbld_arena_alloc(a, len + 10);
    for (size_t v = len; h == 0 || v; v >>= 7)
        f->data[h++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
    protobuf_c_message_pack(&info->base, f->data + h);
    f->len = h + len;
    resp->base.unknown_fields = u;
    resp->base.n_unknown_fields++;
}

int q_stale_fill(q_req *r, Databuild__V1__PartitionSummaryV2 *resp, dbld_status *st)
{
    dbld_stmt stmt;
    dbld_res *res = NULL;
    if (!resp->partition_ref || !*resp->partition_ref->str) return 0;
    q_stale_stmt(r->a, resp->partition_ref->str, &stmt, &res);
    int rc = q_exec(r, stmt.sql, stmt.n, stmt.params, &res, st);
    if (rc) return rc;
    q_stale_attach(r->a, resp, q_stale_decode(r->a, res));
    dbld_res_free(res);
    return 0;
}
