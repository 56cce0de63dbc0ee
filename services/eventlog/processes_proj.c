/* processes_proj.c - work registered with the write that creates it.
 *
 * Called from el_project() for every batch the writer commits, so the
 * statements below run in the same transaction as the events:
 *   WantEvent   an active want_reconciler work item named after the want id,
 *               params: the want's refs and terms (created_ns, ttl_seconds,
 *               sla_seconds, data_timestamp), and a wake-up of the process
 *               (processes.wake_seq + 1) so it runs without waiting for its
 *               schedule.
 *   TaintEvent  an active taint_propagator work item named after the taint's
 *               event id (params: its refs), and a wake-up.
 *   JobEvent    with a config (SCHEDULED): the run's outputs and inputs
 *               replace the outputs' rows in partition_inputs (lineage that
 *               taint_propagator follows downstream).
 *   BuildRequestEvent with a want_id or BuildRequestWants ids (field 1001):
 *               build_requests.want_ids (migration 0006), which
 *               ListBuildRequests' triggering_want_ids matches.
 * A want or taint recorded twice (same id) keeps its first item. A wanted
 * partition never seen before gets a partitions row with status REQUESTED,
 * so ListPartitions lists it ("built, building, wanted") before any build.
 */
#include "processes_proj.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#include <inttypes.h>
#include <string.h>

typedef struct items {
    const char **names, **params, **modified;
    size_t n;
    const char **refs; /* wanted refs (wants only) */
    size_t n_refs;
} items;

static const char *join_refs(dbld_arena *a, Databuild__V1__PartitionRef **refs, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += (refs[i] && refs[i]->str ? strlen(refs[i]->str) : 0) + 1;
    char *out = dbld_arena_alloc(a, len), *p = out;
    for (size_t i = 0; i < n; i++) {
        const char *r = refs[i] && refs[i]->str ? refs[i]->str : "";
        if (!*r) continue;
        if (p != out) *p++ = '\n';
        size_t l = strlen(r);
        memcpy(p, r, l);
        p += l;
    }
    *p = 0;
    return out;
}

static const char *params_hex(dbld_arena *a, const Databuild__V1__ProcessParams *pp)
{
    return dbld_msg_hex(a, &pp->base);
}

static void add_item(dbld_arena *a, items *it, const char *name, const char *hex, int64_t ts)
{
    it->names[it->n] = name;
    it->params[it->n] = hex;
    it->modified[it->n] = dbld_arena_printf(a, "%" PRId64, ts);
    it->n++;
}

static void want_item(dbld_arena *a, items *it, const el_event *e)
{
    const Databuild__V1__WantEvent *w = e->ev->want_event;
    const char *id = w->want_id && *w->want_id ? w->want_id : e->ev->event_id;
    Databuild__V1__ProcessParams *pp =
        dbld_arena_msg(a, &databuild__v1__process_params__descriptor);
    const ProtobufCMessage *m = &w->base;
    dbld_params_set_str(a, pp, "refs",
                        join_refs(a, w->requested_partitions, w->n_requested_partitions));
    dbld_params_set_int(a, pp, "created_ns", e->ev->timestamp);
    dbld_params_set_int(a, pp, "ttl_seconds",
                        (int64_t)dbld_pb_unknown_varint(m, DBLD_WANT_TERM_TTL));
    dbld_params_set_int(a, pp, "sla_seconds",
                        (int64_t)dbld_pb_unknown_varint(m, DBLD_WANT_TERM_SLA));
    dbld_params_set_int(a, pp, "data_timestamp",
                        (int64_t)dbld_pb_unknown_varint(m, DBLD_WANT_TERM_DATA_TS));
    add_item(a, it, id, params_hex(a, pp), e->ev->timestamp);
    for (size_t i = 0; i < w->n_requested_partitions; i++) {
        const char *ref = w->requested_partitions[i] ? w->requested_partitions[i]->str : "";
        if (*ref) it->refs[it->n_refs++] = ref;
    }
}

static void taint_item(dbld_arena *a, items *it, const el_event *e)
{
    const Databuild__V1__TaintEvent *t = e->ev->taint_event;
    Databuild__V1__ProcessParams *pp =
        dbld_arena_msg(a, &databuild__v1__process_params__descriptor);
    dbld_params_set_str(a, pp, "refs", join_refs(a, t->refs, t->n_refs));
    dbld_params_set_int(a, pp, "created_ns", e->ev->timestamp);
    add_item(a, it, e->ev->event_id, params_hex(a, pp), e->ev->timestamp);
}

static void items_init(dbld_arena *a, items *it, size_t n, size_t n_refs)
{
    it->refs = dbld_arena_alloc(a, (n_refs + 1) * sizeof *it->refs);
    it->n_refs = 0;
    it->names = dbld_arena_alloc(a, (n + 1) * sizeof *it->names);
    it->params = dbld_arena_alloc(a, (n + 1) * sizeof *it->params);
    it->modified = dbld_arena_alloc(a, (n + 1) * sizeof *it->modified);
    it->n = 0;
}

static size_t register_items(dbld_arena *a, const char *process, const items *it, dbld_stmt *out)
{
    if (!it->n) return 0;
    const char **p = dbld_arena_alloc(a, 4 * sizeof *p);
    p[0] = process;
    p[1] = dbld_pg_text_array(a, it->names, it->n);
    p[2] = dbld_pg_text_array(a, it->params, it->n);
    p[3] = dbld_pg_text_array(a, it->modified, it->n);
    out[0] = (dbld_stmt){
        .name = "el_proc_items",
        .sql = "INSERT INTO process_work (process, name, list, state, modified_ns, params)"
               " SELECT $1::text, u.name, 1, 1, u.modified, decode(u.params, 'hex')"
               " FROM unnest($2::text[], $3::text[], $4::bigint[]) AS u(name, params, modified)"
               " ON CONFLICT (process, name) DO NOTHING",
        .n = 4,
        .params = p};
    out[1] = (dbld_stmt){.name = "el_proc_wake",
                         .sql = "UPDATE processes SET wake_seq = wake_seq + 1 WHERE name = $1",
                         .n = 1,
                         .params = p};
    return 2;
}

typedef struct edges {
    const char **ref, **input, **run, **outs;
    size_t n, n_outs;
} edges;

static void add_edges(dbld_arena *a, edges *g, const Databuild__V1__JobEvent *j, size_t cap)
{
    const Databuild__V1__JobConfig *c = j->config;
    for (size_t o = 0; o < c->n_outputs; o++) {
        const char *out = c->outputs[o] ? c->outputs[o]->str : "";
        if (!*out || g->n_outs >= cap) continue;
        g->outs[g->n_outs++] = out;
        for (size_t i = 0; i < c->n_inputs && g->n < cap; i++) {
            const Databuild__V1__DataDep *d = c->inputs[i];
            if (!d || !d->partition_ref || !*d->partition_ref->str) continue;
            g->ref[g->n] = out;
            g->input[g->n] = d->partition_ref->str;
            g->run[g->n] = j->job_run_id;
            g->n++;
        }
    }
    (void)a;
}

static size_t lineage(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out)
{
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__BuildEvent *e = evs[i]->ev;
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT ||
            !e->job_event->config)
            continue;
        const Databuild__V1__JobConfig *c = e->job_event->config;
        cap += c->n_outputs * (c->n_inputs + 1);
    }
    if (!cap) return 0;
    edges g = {.ref = dbld_arena_alloc(a, cap * sizeof *g.ref),
               .input = dbld_arena_alloc(a, cap * sizeof *g.input),
               .run = dbld_arena_alloc(a, cap * sizeof *g.run),
               .outs = dbld_arena_alloc(a, cap * sizeof *g.outs)};
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__BuildEvent *e = evs[i]->ev;
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
            e->job_event->config)
            add_edges(a, &g, e->job_event, cap);
    }
    if (!g.n_outs) return 0;
    const char **p = dbld_arena_alloc(a, 4 * sizeof *p);
    p[0] = dbld_pg_text_array(a, g.outs, g.n_outs);
    p[1] = dbld_pg_text_array(a, g.ref, g.n);
    p[2] = dbld_pg_text_array(a, g.input, g.n);
    p[3] = dbld_pg_text_array(a, g.run, g.n);
    out[0] = (dbld_stmt){.name = "el_lineage_del",
                         .sql = "DELETE FROM partition_inputs WHERE ref = ANY($1::text[])",
                         .n = 1,
                         .params = p};
    if (!g.n) return 1;
    out[1] = (dbld_stmt){
        .name = "el_lineage_ins",
        .sql = "INSERT INTO partition_inputs (ref, input, job_run_id)"
               " SELECT DISTINCT ON (u.ref, u.input) u.ref, u.input, u.run"
               " FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY"
               " AS u(ref, input, run, ord) ORDER BY u.ref, u.input, u.ord DESC"
               " ON CONFLICT (ref, input) DO UPDATE SET job_run_id = EXCLUDED.job_run_id",
        .n = 3,
        .params = p + 1};
    return 2;
}

/* The want ids of build request event b, newline-joined (arena), or NULL. */
static const char *build_want_ids(dbld_arena *a, const Databuild__V1__BuildRequestEvent *b)
{
    const char *out = b->want_id && *b->want_id ? b->want_id : NULL;
    if (!b->base.n_unknown_fields) return out;
    size_t n;
    uint8_t *buf = dbld_msg_pack(a, &b->base, &n);
    Databuild__V1__BuildRequestWants *w =
        (Databuild__V1__BuildRequestWants *)protobuf_c_message_unpack(
            &databuild__v1__build_request_wants__descriptor, dbld_arena_allocator(a), n, buf);
    for (size_t i = 0; w && i < w->n_want_ids; i++)
        if (*w->want_ids[i])
            out = out ? dbld_arena_printf(a, "%s\n%s", out, w->want_ids[i]) : w->want_ids[i];
    return out;
}

static size_t want_ids(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out)
{
    const char **ids = dbld_arena_alloc(a, (n + 1) * sizeof *ids);
    const char **wants = dbld_arena_alloc(a, (n + 1) * sizeof *wants);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__BuildEvent *e = evs[i]->ev;
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT ||
            !*e->build_request_id)
            continue;
        const char *w = build_want_ids(a, e->build_request_event);
        if (!w) continue;
        ids[m] = e->build_request_id;
        wants[m++] = w;
    }
    if (!m) return 0;
    const char **p = dbld_arena_alloc(a, 2 * sizeof *p);
    p[0] = dbld_pg_text_array(a, ids, m);
    p[1] = dbld_pg_text_array(a, wants, m);
    out[0] =
        (dbld_stmt){.name = "el_br_wants",
                    .sql = "UPDATE build_requests b SET want_ids = ARRAY(SELECT DISTINCT x FROM"
                           " unnest(b.want_ids || string_to_array(u.wants, E'\\n')) x ORDER BY 1)"
                           " FROM unnest($1::text[], $2::text[]) AS u(id, wants)"
                           " WHERE b.build_request_id = u.id",
                    .n = 2,
                    .params = p};
    return 1;
}

size_t el_project_processes(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out)
{
    items wants, taints;
    size_t n_refs = 0;
    for (size_t i = 0; i < n; i++)
        if (evs[i]->ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT)
            n_refs += evs[i]->ev->want_event->n_requested_partitions;
    items_init(a, &wants, n, n_refs);
    items_init(a, &taints, n, 0);
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT)
            want_item(a, &wants, evs[i]);
        else if (evs[i]->ev->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT)
            taint_item(a, &taints, evs[i]);
    }
    size_t m = register_items(a, DBLD_PROC_WANT_RECONCILER, &wants, out);
    m += register_items(a, DBLD_PROC_TAINT_PROPAGATOR, &taints, out + m);
    if (wants.n_refs) {
        const char **p = dbld_arena_alloc(a, 2 * sizeof *p);
        p[0] = dbld_pg_text_array(a, wants.refs, wants.n_refs);
        p[1] = wants.modified[0];
        out[m++] = (dbld_stmt){
            .name = "el_proc_wanted",
            .sql = "INSERT INTO partitions (ref, status, updated_ns)"
                   " SELECT DISTINCT unnest($1::text[]), 1, $2::bigint ON CONFLICT DO NOTHING",
            .n = 2,
            .params = p};
    }
    m += lineage(a, evs, n, out + m);
    m += want_ids(a, evs, n, out + m);
    return m;
}
