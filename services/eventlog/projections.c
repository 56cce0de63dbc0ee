/* projections.c - fold a batch of events into per-key deltas, then apply each
 * table's deltas with one set-based statement (insert the new rows, update
 * the others, from unnest()). A delta field left NULL means "unchanged", so one batch
 * costs a handful of round trips however many events it holds.
 *
 * Rules (later events win):
 *   PartitionEvent        partitions: status, build_request_id, job_run_id, message,
 *                         updated_ns; AVAILABLE clears tainted
 *   TaintEvent            partitions.tainted = true for each ref; a taints row
 *   PartitionInvalidation partitions.tainted = true, last_invalidated_ns
 *   BuildRequestEvent     build_requests: status, message, requested partitions,
 *                         comment and want_id when set, created/updated
 *   JobEvent              job_runs: status, label, targets, message, build request
 *   WantEvent             wants: one row per want_id (event_id when empty)
 */
#include "projections.h"
#include "dbld/db_domain.h"
#include "dbld/strmap.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char *i64s(dbld_arena *a, int64_t v)
{
    return dbld_arena_printf(a, "%" PRId64, v);
}

/* ---- partitions ---- */

typedef struct part_delta {
    const char *ref, *status, *brid, *run, *msg, *updated, *invalidated, *tainted, *idx;
} part_delta;

typedef struct fold {
    dbld_arena *a;
    dbld_strmap pk, bk, jk, wk; /* key -> index into its delta array */
    part_delta *parts;
    size_t n_parts;
    struct br_delta {
        const char *id, *status, *requested, *comment, *want, *msg, *created, *updated, *idx;
    } * brs;
    size_t n_brs;
    struct jr_delta {
        const char *id, *brid, *label, *status, *targets, *msg, *created, *updated, *idx;
    } * jrs;
    size_t n_jrs;
    struct want_row {
        const char *id, *refs, *source, *comment, *created, *brid, *idx;
    } * wants;
    size_t n_wants;
    struct taint_row {
        const char *id, *refs, *source, *comment, *created, *brid, *idx;
    } * taints;
    size_t n_taints;
} fold;

static part_delta *part_for(fold *f, const char *ref)
{
    int is_new;
    size_t i = dbld_strmap_index(&f->pk, ref, &f->n_parts, &is_new);
    if (is_new) {
        memset(&f->parts[i], 0, sizeof f->parts[i]);
        f->parts[i].ref = ref;
    }
    return &f->parts[i];
}

static const char *refs_lit(dbld_arena *a, Databuild__V1__PartitionRef **refs, size_t n)
{
    const char **s = dbld_arena_alloc(a, (n + 1) * sizeof *s);
    for (size_t i = 0; i < n; i++)
        s[i] = refs[i] && refs[i]->str ? refs[i]->str : "";
    return dbld_pg_text_array(a, s, n);
}

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

static void fold_partition_event(fold *f, const el_event *e)
{
    const Databuild__V1__PartitionEvent *pe = e->ev->partition_event;
    if (!pe->partition_ref || !*pe->partition_ref->str) return;
    part_delta *d = part_for(f, pe->partition_ref->str);
    int cur = d->status ? atoi(d->status) : -1;
    /* one build request's view (REQUESTED, ANALYZED, DELEGATED) never replaces
     * BUILDING or AVAILABLE; the SQL applies the same rule against the stored row */
    if (dbld_partition_intent(pe->status_code) &&
        (cur == DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING ||
         cur == DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE))
        return; /* one build's intent does not override another's BUILDING / AVAILABLE */
    d->status = i64s(f->a, pe->status_code);
    d->brid = e->ev->build_request_id;
    d->run = pe->job_run_id;
    d->msg = pe->message;
    d->updated = i64s(f->a, e->ev->timestamp);
    if (pe->status_code == DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE)
        d->tainted = "false";
    d->idx = i64s(f->a, e->idx);
}

static void fold_taint(fold *f, const el_event *e)
{
    const Databuild__V1__TaintEvent *t = e->ev->taint_event;
    for (size_t i = 0; i < t->n_refs; i++) {
        if (!t->refs[i] || !*t->refs[i]->str) continue;
        part_delta *d = part_for(f, t->refs[i]->str);
        d->tainted = "true";
        d->idx = i64s(f->a, e->idx);
    }
    struct taint_row *r = &f->taints[f->n_taints++];
    r->id = e->ev->event_id;
    r->refs = refs_lit(f->a, t->refs, t->n_refs);
    r->source = i64s(f->a, t->source_type ? t->source_type->code : 0);
    r->comment = t->comment;
    r->created = i64s(f->a, t->created_at ? (int64_t)t->created_at : e->ev->timestamp);
    r->brid = e->ev->build_request_id;
    r->idx = i64s(f->a, e->idx);
}

static void fold_invalidation(fold *f, const el_event *e)
{
    const Databuild__V1__PartitionInvalidationEvent *pi = e->ev->partition_invalidation_event;
    if (!pi->partition_ref || !*pi->partition_ref->str) return;
    part_delta *d = part_for(f, pi->partition_ref->str);
    d->tainted = "true";
    d->invalidated = i64s(f->a, e->ev->timestamp);
    d->idx = i64s(f->a, e->idx);
}

static void fold_build_request(fold *f, const el_event *e)
{
    const Databuild__V1__BuildRequestEvent *b = e->ev->build_request_event;
    const char *id = e->ev->build_request_id;
    if (!*id) return;
    int is_new;
    size_t i = dbld_strmap_index(&f->bk, id, &f->n_brs, &is_new);
    struct br_delta *d = &f->brs[i];
    if (is_new) {
        memset(d, 0, sizeof *d);
        d->id = id;
        d->created = i64s(f->a, e->ev->timestamp);
    }
    if (b->status) d->status = i64s(f->a, b->status->code);
    if (b->n_requested_partitions)
        d->requested = refs_lit(f->a, b->requested_partitions, b->n_requested_partitions);
    if (nonempty(b->comment)) d->comment = b->comment;
    if (nonempty(b->want_id)) d->want = b->want_id;
    d->msg = b->message;
    d->updated = i64s(f->a, e->ev->timestamp);
    d->idx = i64s(f->a, e->idx);
}

static void fold_job_event(fold *f, const el_event *e)
{
    const Databuild__V1__JobEvent *j = e->ev->job_event;
    if (!nonempty(j->job_run_id)) return;
    int is_new;
    size_t i = dbld_strmap_index(&f->jk, j->job_run_id, &f->n_jrs, &is_new);
    struct jr_delta *d = &f->jrs[i];
    if (is_new) {
        memset(d, 0, sizeof *d);
        d->id = j->job_run_id;
        d->created = i64s(f->a, e->ev->timestamp);
    }
    if (nonempty(e->ev->build_request_id)) d->brid = e->ev->build_request_id;
    if (j->job_label && nonempty(j->job_label->label)) d->label = j->job_label->label;
    d->status = i64s(f->a, j->status_code);
    if (j->n_target_partitions)
        d->targets = refs_lit(f->a, j->target_partitions, j->n_target_partitions);
    d->msg = j->message;
    d->updated = i64s(f->a, e->ev->timestamp);
    d->idx = i64s(f->a, e->idx);
}

static void fold_want(fold *f, const el_event *e)
{
    const Databuild__V1__WantEvent *w = e->ev->want_event;
    const char *id = nonempty(w->want_id) ? w->want_id : e->ev->event_id;
    int is_new;
    size_t i = dbld_strmap_index(&f->wk, id, &f->n_wants, &is_new);
    struct want_row *r = &f->wants[i];
    r->id = id;
    r->refs = refs_lit(f->a, w->requested_partitions, w->n_requested_partitions);
    r->source = i64s(f->a, w->source && w->source->source_type ? w->source->source_type->code : 0);
    r->comment = w->comment;
    r->created = i64s(f->a, e->ev->timestamp);
    r->brid = e->ev->build_request_id;
    r->idx = i64s(f->a, e->idx);
}

/* ---- applying deltas ---- */

#define COL(arr, n, field)                                                                         \
    col_lit(a, (const char *)(arr), sizeof *(arr), offsetof(__typeof__(*(arr)), field), n)

static const char *col_lit(dbld_arena *a, const char *base, size_t stride, size_t off, size_t n)
{
    const char **vals = dbld_arena_alloc(a, (n + 1) * sizeof *vals);
    for (size_t i = 0; i < n; i++)
        vals[i] = *(const char *const *)(base + i * stride + off);
    return dbld_pg_text_array(a, vals, n);
}

/* Statements are collected, not run: the writer sends them in one pipeline
 * together with COMMIT. Parameter arrays are copied into the arena. */
typedef struct stmts {
    dbld_arena *a;
    dbld_stmt *list;
    size_t n;
} stmts;

static int run(stmts *out, const char *name, const char *sql, int n, const char *const *p)
{
    const char **params = dbld_arena_alloc(out->a, (size_t)n * sizeof *params);
    memcpy(params, p, (size_t)n * sizeof *params);
    out->list[out->n++] = (dbld_stmt){.name = name, .sql = sql, .n = n, .params = params};
    return 0;
}

/* Each projected table takes one statement per batch: the CTE `ins` inserts
 * the keys that have no row yet with their final values (the defaults of
 * the schema where the delta leaves a field unchanged), and the UPDATE
 * applies the deltas of the others. All the statement's parts see the same
 * snapshot, so the UPDATE does not see the rows `ins` inserts, and the
 * INSERT skips exactly the rows the UPDATE finds: every writer of these
 * tables holds the append lock (store.c), so no row appears in between. */

static int apply_partitions(stmts *db, dbld_arena *a, fold *f)
{
    if (!f->n_parts) return 0;
    part_delta *d = f->parts;
    size_t n = f->n_parts;
    const char *p[] = {COL(d, n, ref),         COL(d, n, status),  COL(d, n, brid),
                       COL(d, n, run),         COL(d, n, msg),     COL(d, n, updated),
                       COL(d, n, invalidated), COL(d, n, tainted), COL(d, n, idx)};
    /* a new row has status 0, so KEEP never holds for it */
#define KEEP "(u.status IN (" DBLD_SQL_PART_INTENT ") AND p.status IN (" DBLD_SQL_PART_PROGRESS "))"
    return run(db, "el_partitions",
               "WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[],"
               " $5::text[], $6::bigint[], $7::bigint[], $8::bool[], $9::bigint[])"
               " AS u(ref, status, brid, run, msg, updated, inv, tainted, idx)),"
               " ins AS (INSERT INTO partitions (ref, status, build_request_id, job_run_id,"
               " message, updated_ns, last_invalidated_ns, tainted, last_idx)"
               " SELECT u.ref, coalesce(u.status, 0), coalesce(u.brid, ''), coalesce(u.run, ''),"
               " coalesce(u.msg, ''), coalesce(u.updated, 0), coalesce(u.inv, 0),"
               " coalesce(u.tainted, false), coalesce(u.idx, 0) FROM u ON CONFLICT DO NOTHING)"
               " UPDATE partitions p SET"
               " status = CASE WHEN " KEEP " THEN p.status ELSE coalesce(u.status, p.status) END,"
               " build_request_id = CASE WHEN " KEEP " THEN p.build_request_id"
               "   ELSE coalesce(u.brid, p.build_request_id) END,"
               " job_run_id = CASE WHEN " KEEP
               " THEN p.job_run_id ELSE coalesce(u.run, p.job_run_id) END,"
               " message = CASE WHEN " KEEP " THEN p.message ELSE coalesce(u.msg, p.message) END,"
               " updated_ns = CASE WHEN " KEEP
               " THEN p.updated_ns ELSE coalesce(u.updated, p.updated_ns) END,"
               " last_invalidated_ns = coalesce(u.inv, p.last_invalidated_ns),"
               " tainted = coalesce(u.tainted, p.tainted),"
               " last_idx = coalesce(u.idx, p.last_idx)"
               " FROM u WHERE p.ref = u.ref",
               9, p);
#undef KEEP
}

static int apply_build_requests(stmts *db, dbld_arena *a, fold *f)
{
    if (!f->n_brs) return 0;
    struct br_delta *d = f->brs;
    size_t n = f->n_brs;
    const char *p[] = {COL(d, n, id),      COL(d, n, status),  COL(d, n, requested),
                       COL(d, n, comment), COL(d, n, want),    COL(d, n, msg),
                       COL(d, n, created), COL(d, n, updated), COL(d, n, idx)};
    return run(db, "el_build_requests",
               "WITH u AS (SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[],"
               " $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])"
               " AS u(id, status, requested, comment, want, msg, created, updated, idx)),"
               " ins AS (INSERT INTO build_requests (build_request_id, status,"
               " requested_partitions, comment, want_id, message, created_ns, updated_ns,"
               " last_idx)"
               " SELECT u.id, coalesce(u.status, 0), coalesce(u.requested::text[], '{}'),"
               " coalesce(u.comment, ''), coalesce(u.want, ''), coalesce(u.msg, ''), u.created,"
               " coalesce(u.updated, 0), coalesce(u.idx, 0) FROM u ON CONFLICT DO NOTHING)"
               " UPDATE build_requests b SET"
               " status = coalesce(u.status, b.status),"
               " requested_partitions = coalesce(u.requested::text[], b.requested_partitions),"
               " comment = coalesce(u.comment, b.comment),"
               " want_id = coalesce(u.want, b.want_id),"
               " message = coalesce(u.msg, b.message),"
               " updated_ns = coalesce(u.updated, b.updated_ns),"
               " last_idx = coalesce(u.idx, b.last_idx)"
               " FROM u WHERE b.build_request_id = u.id",
               9, p);
}

static int apply_job_runs(stmts *db, dbld_arena *a, fold *f)
{
    if (!f->n_jrs) return 0;
    struct jr_delta *d = f->jrs;
    size_t n = f->n_jrs;
    const char *p[] = {COL(d, n, id),      COL(d, n, brid),    COL(d, n, label),
                       COL(d, n, status),  COL(d, n, targets), COL(d, n, msg),
                       COL(d, n, created), COL(d, n, updated), COL(d, n, idx)};
    return run(db, "el_job_runs",
               "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[],"
               " $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[])"
               " AS u(id, brid, label, status, targets, msg, created, updated, idx)),"
               " ins AS (INSERT INTO job_runs (job_run_id, build_request_id, job_label, status,"
               " target_partitions, message, created_ns, updated_ns, last_idx)"
               " SELECT u.id, coalesce(u.brid, ''), coalesce(u.label, ''), coalesce(u.status, 0),"
               " coalesce(u.targets::text[], '{}'), coalesce(u.msg, ''), u.created,"
               " coalesce(u.updated, 0), coalesce(u.idx, 0) FROM u ON CONFLICT DO NOTHING)"
               " UPDATE job_runs j SET"
               " build_request_id = coalesce(u.brid, j.build_request_id),"
               " job_label = coalesce(u.label, j.job_label),"
               " status = coalesce(u.status, j.status),"
               " target_partitions = coalesce(u.targets::text[], j.target_partitions),"
               " message = coalesce(u.msg, j.message),"
               " updated_ns = coalesce(u.updated, j.updated_ns),"
               " last_idx = coalesce(u.idx, j.last_idx)"
               " FROM u WHERE j.job_run_id = u.id",
               9, p);
}

static int apply_wants(stmts *db, dbld_arena *a, fold *f)
{
    if (!f->n_wants) return 0;
    struct want_row *d = f->wants;
    size_t n = f->n_wants;
    const char *p[] = {COL(d, n, id),      COL(d, n, refs), COL(d, n, source), COL(d, n, comment),
                       COL(d, n, created), COL(d, n, brid), COL(d, n, idx)};
    return run(db, "el_wants",
               "INSERT INTO wants AS w (want_id, refs, source_code, comment, created_ns,"
               " build_request_id, last_idx)"
               " SELECT u.id, u.refs::text[], u.source, u.comment, u.created, u.brid, u.idx"
               " FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bigint[],"
               " $6::text[], $7::bigint[]) AS u(id, refs, source, comment, created, brid, idx)"
               " ON CONFLICT (want_id) DO UPDATE SET refs = EXCLUDED.refs,"
               " source_code = EXCLUDED.source_code, comment = EXCLUDED.comment,"
               " build_request_id = EXCLUDED.build_request_id, last_idx = EXCLUDED.last_idx",
               7, p);
}

static int apply_taints(stmts *db, dbld_arena *a, fold *f)
{
    if (!f->n_taints) return 0;
    struct taint_row *d = f->taints;
    size_t n = f->n_taints;
    const char *p[] = {COL(d, n, id),      COL(d, n, refs), COL(d, n, source), COL(d, n, comment),
                       COL(d, n, created), COL(d, n, brid), COL(d, n, idx)};
    return run(db, "el_taints",
               "INSERT INTO taints (event_id, refs, source_code, comment, created_ns,"
               " build_request_id, idx)"
               " SELECT u.id, u.refs::text[], u.source, u.comment, u.created, u.brid, u.idx"
               " FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::bigint[],"
               " $6::text[], $7::bigint[]) AS u(id, refs, source, comment, created, brid, idx)"
               " ON CONFLICT (event_id) DO NOTHING",
               7, p);
}

size_t el_project(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out)
{
    fold f;
    memset(&f, 0, sizeof f);
    f.a = a;
    size_t n_refs = 0;
    for (size_t i = 0; i < n; i++)
        n_refs += evs[i]->n_refs;
    dbld_strmap_init(&f.pk, a);
    dbld_strmap_init(&f.bk, a);
    dbld_strmap_init(&f.jk, a);
    dbld_strmap_init(&f.wk, a);
    f.parts = dbld_arena_alloc(a, (n_refs + 1) * sizeof *f.parts);
    f.brs = dbld_arena_alloc(a, (n + 1) * sizeof *f.brs);
    f.jrs = dbld_arena_alloc(a, (n + 1) * sizeof *f.jrs);
    f.wants = dbld_arena_alloc(a, (n + 1) * sizeof *f.wants);
    f.taints = dbld_arena_alloc(a, (n + 1) * sizeof *f.taints);
    for (size_t i = 0; i < n; i++) {
        const el_event *e = evs[i];
        switch (e->ev->event_type_case) {
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
            fold_partition_event(&f, e);
            break;
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT:
            fold_taint(&f, e);
            break;
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT:
            fold_invalidation(&f, e);
            break;
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
            fold_build_request(&f, e);
            break;
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
            fold_job_event(&f, e);
            break;
        case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT:
            fold_want(&f, e);
            break;
        default:
            break;
        }
    }
    stmts list = {.a = a, .list = out, .n = 0};
    apply_partitions(&list, a, &f);
    apply_build_requests(&list, a, &f);
    apply_job_runs(&list, a, &f);
    apply_wants(&list, a, &f);
    apply_taints(&list, a, &f);
    list.n += el_project_processes(a, evs, n, out + list.n);
    return list.n;
}
