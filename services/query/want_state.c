/* want_state.c - the state of a want (WantStateInfo, databuild_process.proto)
 * for ListWants and GetWantSummary, written into each PartitionWantSummary
 * as unknown fields 1001 (state) and 1002 (reason), which seed readers skip.
 *
 * Decided from the want's terms, its partitions' current status (already in
 * the summary), which of them are tainted, and its want_reconciler work item,
 * first match wins:
 *   EXPIRED           past created_at + ttl_seconds (or moved to cleanup)
 *   AVAILABLE         every partition AVAILABLE and untainted
 *   SLA_BREACHED      not AVAILABLE by data_timestamp + sla_seconds
 *   FAILED            the reconciler gave up on it (ABORTED), or a partition
 *                     FAILED and nothing is building it
 *   UPSTREAM_WAITING  an external input (graph.external) is not AVAILABLE:
 *                     the want's own ref, or an input its build needed
 *   BUILDING          a partition is being built, or a build submitted for
 *                     the want has not ended
 *   WANTED            otherwise (the reconciler has not acted yet)
 *
 * The same pass fills PartitionWant.external_dependencies: every ref
 * matching graph.external that the want depends on, AVAILABLE or not (the
 * seed: "cross-graph dependencies determined in the analysis phase"): its
 * own external refs, the external inputs found walking the recorded lineage
 * up from its refs (partition_inputs: the inputs each job run was
 * configured with), and the external inputs its last build waited for
 * (the work item's waiting_on: a build refused at analysis schedules no
 * run, so it leaves no lineage). Sorted, each once.
 */
#include "query.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define WS(x) DATABUILD__V1__WANT_STATE__WANT_##x

typedef struct item_info {
    int state, list, upstream;
    const char *brid, *last_error;
    int64_t attempts;
} item_info;

static void set_state(dbld_arena *a, Databuild__V1__PartitionWantSummary *s, int state,
                      const char *reason)
{
    dbld_pb_add_unknown_varint(a, &s->base, DBLD_WANT_STATE, (uint64_t)state);
    dbld_pb_add_unknown_string(a, &s->base, DBLD_WANT_STATE_REASON, reason);
}

static const char *status_name(int status)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&databuild__v1__partition_status__descriptor, status);
    return v ? v->name : "PARTITION_UNKNOWN";
}

static int in_list(char **items, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(items[i], s) == 0) return 1;
    return 0;
}

static void decide(dbld_arena *a, Databuild__V1__PartitionWantSummary *s, const item_info *it,
                   char **tainted, size_t n_tainted, int64_t now)
{
    const Databuild__V1__PartitionWant *w = s->want;
    uint64_t ttl = w->ttl_seconds, sla = w->sla_seconds;
    if ((ttl && (uint64_t)now > w->created_at + ttl * 1000000000ULL) ||
        (it && it->list == DATABUILD__V1__WORK_LIST__WORK_CLEANUP)) {
        set_state(a, s, WS(EXPIRED),
                  dbld_arena_printf(a, "TTL of %" PRIu64 " s passed; no longer built", ttl));
        return;
    }
    const char *missing = NULL, *failed = NULL, *building = NULL, *ext = NULL;
    int ext_status = 0;
    for (size_t i = 0; i < s->n_partitions; i++) {
        const Databuild__V1__PartitionSummary *p = s->partitions[i];
        const char *ref = p->partition_ref->str;
        int st = p->status_code;
        if (st == PS(AVAILABLE) && in_list(tainted, n_tainted, ref) && !missing) missing = ref;
        if (st != PS(AVAILABLE) && !missing) missing = ref;
        if (st == PS(FAILED) && !failed) failed = ref;
        if ((st == PS(BUILDING) || st == PS(ANALYZED) || st == PS(DELEGATED)) && !building)
            building = ref;
    }
    for (size_t i = 0; i < s->n_external_partitions; i++) {
        const Databuild__V1__LabeledPartitionBuildStatus *l = s->external_partitions[i];
        if (l->status && l->status->status != PS(AVAILABLE) && !ext) {
            ext = l->ref->str;
            ext_status = l->status->status;
        }
    }
    if (!missing && !ext) {
        set_state(a, s, WS(AVAILABLE), "every partition is AVAILABLE");
        return;
    }
    if (sla && w->data_timestamp && (uint64_t)now > w->data_timestamp + sla * 1000000000ULL) {
        set_state(a, s, WS(SLA_BREACHED),
                  dbld_arena_printf(a, "%s is not AVAILABLE %" PRIu64 " s after its data time",
                                    missing ? missing : ext, sla));
        return;
    }
    if (it && it->state == DATABUILD__V1__PROCESS_STATE__PROCESS_ABORTED) {
        set_state(a, s, WS(FAILED),
                  dbld_arena_printf(a, "given up after %" PRId64 " failed attempts: %s",
                                    it->attempts, it->last_error ? it->last_error : ""));
        return;
    }
    if (it && it->upstream && it->state == DATABUILD__V1__PROCESS_STATE__PROCESS_INCOMPLETE) {
        set_state(a, s, WS(UPSTREAM_WAITING), it->last_error ? it->last_error : "waiting");
        return;
    }
    int active = it && it->brid && *it->brid;
    if (failed && !building && !active) {
        set_state(a, s, WS(FAILED),
                  dbld_arena_printf(a, "%s FAILED%s", failed,
                                    it && it->last_error
                                        ? dbld_arena_printf(a, " (%s); retried", it->last_error)
                                        : ""));
        return;
    }
    if (ext) {
        set_state(a, s, WS(UPSTREAM_WAITING),
                  dbld_arena_printf(a, "external input %s is %s", ext, status_name(ext_status)));
        return;
    }
    if (building || active) {
        set_state(a, s, WS(BUILDING),
                  active ? dbld_arena_printf(a, "build %s", it->brid)
                         : dbld_arena_printf(a, "%s is being built", building));
        return;
    }
    set_state(a, s, WS(WANTED),
              dbld_arena_printf(a, "%s is %s; the want_reconciler will build it", missing,
                                status_name(0)));
}

/* Add ref to the want's external_dependencies when it matches
 * graph.external and is not there yet (cap: the array's size). */
static void add_external(q_req *r, Databuild__V1__PartitionWant *w, const char *ref, size_t cap)
{
    if (q_ref_kind(r->q, ref, NULL) != 2 || w->n_external_dependencies >= cap) return;
    if (in_list(w->external_dependencies, w->n_external_dependencies, ref)) return;
    w->external_dependencies[w->n_external_dependencies++] = dbld_arena_strdup(r->a, ref);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* external_dependencies of sums[i] from its refs, the lineage rows (want,
 * ref) of up, and its waiting_on (waits[i], newline-joined or NULL). */
static void fill_external(q_req *r, Databuild__V1__PartitionWantSummary **sums, size_t n,
                          const dbld_res *up, char **waits)
{
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__PartitionWant *w = sums[i]->want;
        size_t cap = sums[i]->n_external_partitions + (size_t)dbld_res_rows(up) +
                     (waits[i] ? strlen(waits[i]) : 0) + 1;
        w->external_dependencies = dbld_arena_alloc(r->a, cap * sizeof *w->external_dependencies);
        w->n_external_dependencies = 0;
        for (size_t k = 0; k < sums[i]->n_external_partitions; k++)
            add_external(r, w, sums[i]->external_partitions[k]->ref->str, cap);
        for (int row = 0; row < dbld_res_rows(up); row++)
            if (strcmp(dbld_res_get(up, row, 0), w->want_id) == 0)
                add_external(r, w, dbld_res_get(up, row, 1), cap);
        for (char *p = waits[i], *nl; p && *p; p = nl ? nl + 1 : p + strlen(p)) {
            nl = strchr(p, '\n');
            if (nl) *nl = 0;
            add_external(r, w, p, cap);
        }
        if (w->n_external_dependencies > 1)
            qsort(w->external_dependencies, w->n_external_dependencies,
                  sizeof *w->external_dependencies, cmp_str);
    }
}

int q_want_states(q_req *r, Databuild__V1__PartitionWantSummary **sums, size_t n, dbld_status *st)
{
    if (!n) return 0;
    dbld_arena *a = r->a;
    char **ids = dbld_arena_alloc(a, n * sizeof *ids);
    size_t n_refs = 0;
    for (size_t i = 0; i < n; i++) {
        ids[i] = sums[i]->want->want_id;
        n_refs += sums[i]->n_partitions;
    }
    char **refs = dbld_arena_alloc(a, (n_refs + 1) * sizeof *refs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sums[i]->n_partitions; j++)
            refs[k++] = sums[i]->partitions[j]->partition_ref->str;
    /* (want, ref) pairs where the lineage walk starts */
    size_t n_starts = k;
    for (size_t i = 0; i < n; i++)
        n_starts += sums[i]->n_external_partitions;
    char **sw = dbld_arena_alloc(a, (n_starts + 1) * sizeof *sw);
    char **sr = dbld_arena_alloc(a, (n_starts + 1) * sizeof *sr);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sums[i]->n_partitions + sums[i]->n_external_partitions; j++) {
            sw[m] = ids[i];
            sr[m++] = j < sums[i]->n_partitions
                          ? sums[i]->partitions[j]->partition_ref->str
                          : sums[i]->external_partitions[j - sums[i]->n_partitions]->ref->str;
        }
    const char *p[] = {q_text_array(a, ids, n), k ? q_text_array(a, refs, k) : "{}",
                       m ? q_text_array(a, sw, m) : "{}", m ? q_text_array(a, sr, m) : "{}"};
    dbld_res *items = NULL, *taints = NULL, *up = NULL;
    dbld_stmt stmts[] = {
        {.sql = "SELECT name, state, list, status, build_request_id, attempts, params"
                " FROM process_work"
                " WHERE process = 'want_reconciler' AND name = ANY($1::text[])",
         .n = 1,
         .params = p,
         .out = &items},
        {.sql = "SELECT ref FROM partitions WHERE tainted AND ref = ANY($1::text[])",
         .n = 1,
         .params = p + 1,
         .out = &taints},
        {.sql = "WITH RECURSIVE up(want, ref) AS ("
                "  SELECT * FROM unnest($1::text[], $2::text[])"
                "  UNION"
                "  SELECT up.want, pi.input FROM partition_inputs pi JOIN up ON pi.ref = up.ref)"
                " SELECT up.want, up.ref FROM up"
                " WHERE NOT EXISTS (SELECT 1 FROM partition_inputs pi WHERE pi.ref = up.ref)",
         .n = 2,
         .params = p + 2,
         .out = &up},
    };
    int rc = q_pipeline(r, stmts, 3, st);
    if (rc) {
        dbld_res_free(items);
        dbld_res_free(taints);
        dbld_res_free(up);
        return rc;
    }
    char **waits = dbld_arena_alloc(a, n * sizeof *waits);
    char **tainted = dbld_arena_alloc(a, ((size_t)dbld_res_rows(taints) + 1) * sizeof *tainted);
    size_t n_tainted = 0;
    for (int i = 0; i < dbld_res_rows(taints); i++)
        tainted[n_tainted++] = dbld_arena_strdup(a, dbld_res_get(taints, i, 0));
    int64_t now = dbld_now_ns();
    for (size_t i = 0; i < n; i++) {
        item_info info = {0}, *it = NULL;
        for (int row = 0; row < dbld_res_rows(items) && !it; row++) {
            if (strcmp(dbld_res_get(items, row, 0), ids[i]) != 0) continue;
            it = &info;
            info.state = (int)dbld_res_i64(items, row, 1);
            info.list = (int)dbld_res_i64(items, row, 2);
            uint8_t *b = NULL;
            size_t len = 0;
            dbld_bytea_decode(a, dbld_res_get(items, row, 3), &b, &len);
            Databuild__V1__ProcessStatus *ps = dbld_pstatus_unpack(a, b, len);
            info.last_error = ps->n_errors ? ps->errors[ps->n_errors - 1]->text : NULL;
            info.upstream = dbld_pstatus_stat(ps, "upstream_waiting") >= 1;
            info.brid = dbld_arena_strdup(a, dbld_res_get(items, row, 4));
            info.attempts = dbld_res_i64(items, row, 5);
            dbld_bytea_decode(a, dbld_res_get(items, row, 6), &b, &len);
            const char *wait = dbld_params_str(dbld_params_unpack(a, b, len), "waiting_on", "");
            waits[i] = *wait ? dbld_arena_strdup(a, wait) : NULL;
        }
        if (!it) waits[i] = NULL;
        decide(a, sums[i], it, tainted, n_tainted, now);
    }
    fill_external(r, sums, n, up, waits);
    dbld_res_free(items);
    dbld_res_free(taints);
    dbld_res_free(up);
    return 0;
}
