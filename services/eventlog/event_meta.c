/* event_meta.c - validation and filter-column extraction for BuildEvents.
 *
 * The refs, labels and run ids extracted here are stored in array columns of
 * the events table (GIN-indexed), which is what makes EventFilter queries
 * cheap. Which fields count is listed once, in extract() below.
 */
#include "event_meta.h"
#include "dbld/db.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <ctype.h>
#include <string.h>

typedef struct strlist {
    const char **items;
    size_t n, cap;
} strlist;

static void add(dbld_arena *a, strlist *l, const char *s)
{
    if (!s || !*s) return;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], s) == 0) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        const char **grown = dbld_arena_alloc(a, cap * sizeof *grown);
        if (l->n) memcpy(grown, l->items, l->n * sizeof *grown);
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = s;
}

static void add_ref(dbld_arena *a, strlist *l, const Databuild__V1__PartitionRef *r)
{
    if (r) add(a, l, r->str);
}

static void add_refs(dbld_arena *a, strlist *l, Databuild__V1__PartitionRef **refs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        add_ref(a, l, refs[i]);
}

/* An ExecutionEvent touches its task's outputs and label and every job run
 * of its snapshot (so a job run's filter finds the executions naming it). */
static void extract_execution(dbld_arena *a, const Databuild__V1__ExecutionEvent *x, strlist *refs,
                              strlist *labels, strlist *runs)
{
    const Databuild__V1__TaskExecution *te = x->execution;
    if (te) {
        for (size_t i = 0; i < te->n_outputs; i++)
            add(a, refs, te->outputs[i]);
        add(a, labels, te->job_label);
        for (size_t i = 0; i < te->n_attempts; i++)
            add(a, runs, te->attempts[i]->job_run_id);
    }
    const Databuild__V1__ExecutionLogEntry *e = x->entry;
    if (e && e->kind_case == DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_REQUIREMENT_CHANGED)
        for (size_t i = 0; i < e->requirement_changed->n_tasks; i++) {
            const Databuild__V1__TaskExecution *t = e->requirement_changed->tasks[i];
            for (size_t k = 0; k < t->n_outputs; k++)
                add(a, refs, t->outputs[k]);
            add(a, labels, t->job_label);
        }
}

static void extract(dbld_arena *a, const Databuild__V1__BuildEvent *ev, strlist *refs,
                    strlist *labels, strlist *runs)
{
    switch (ev->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        add_refs(a, refs, ev->build_request_event->requested_partitions,
                 ev->build_request_event->n_requested_partitions);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
        add_ref(a, refs, ev->partition_event->partition_ref);
        add(a, runs, ev->partition_event->job_run_id);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT: {
        const Databuild__V1__JobEvent *j = ev->job_event;
        add_refs(a, refs, j->target_partitions, j->n_target_partitions);
        add(a, runs, j->job_run_id);
        if (j->job_label) add(a, labels, j->job_label->label);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT:
        add_ref(a, refs, ev->delegation_event->partition_ref);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT: {
        const Databuild__V1__JobGraph *g = ev->job_graph_event->job_graph;
        if (!g) break;
        add_refs(a, refs, g->outputs, g->n_outputs);
        for (size_t i = 0; i < g->n_nodes; i++) {
            const Databuild__V1__Task *t = g->nodes[i];
            if (t->job) add(a, labels, t->job->label);
            if (t->config) add_refs(a, refs, t->config->outputs, t->config->n_outputs);
        }
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT:
        add_ref(a, refs, ev->partition_invalidation_event->partition_ref);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT:
        add(a, runs, ev->job_run_cancel_event->job_run_id);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT:
        add_refs(a, refs, ev->want_event->requested_partitions,
                 ev->want_event->n_requested_partitions);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT:
        add_refs(a, refs, ev->taint_event->refs, ev->taint_event->n_refs);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT:
        extract_execution(a, ev->execution_event, refs, labels, runs);
        break;
    default:
        break;
    }
}

void el_event_fields(dbld_arena *a, const Databuild__V1__BuildEvent *ev, el_fields *out)
{
    strlist refs = {0}, labels = {0}, runs = {0};
    extract(a, ev, &refs, &labels, &runs);
    *out = (el_fields){.kind = (int)ev->event_type_case,
                       .build_request_id = ev->build_request_id ? ev->build_request_id : "",
                       .refs = refs.items,
                       .n_refs = refs.n,
                       .labels = labels.items,
                       .n_labels = labels.n,
                       .runs = runs.items,
                       .n_runs = runs.n};
}

el_fields el_event_fields_of(const el_event *e)
{
    return (el_fields){.kind = e->kind,
                       .build_request_id = e->ev->build_request_id,
                       .refs = e->refs,
                       .n_refs = e->n_refs,
                       .labels = e->labels,
                       .n_labels = e->n_labels,
                       .runs = e->runs,
                       .n_runs = e->n_runs};
}

static const char *const kind_names[] = {
    "build_request_event",  "partition_event",    "job_event",
    "delegation_event",     "job_graph_event",    "partition_invalidation_event",
    "job_run_cancel_event", "build_cancel_event", "want_event",
    "taint_event",
};

/* Kinds outside the seed's 10..19 (BuildEvent members added by this project). */
static const struct {
    int kind;
    const char *name;
} added_kinds[] = {
    {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT, "process_run_event"},
    {DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT, "execution_event"},
};

const char *el_kind_name(int kind)
{
    if (kind >= 10 && kind <= 19) return kind_names[kind - 10];
    for (size_t i = 0; i < sizeof added_kinds / sizeof added_kinds[0]; i++)
        if (added_kinds[i].kind == kind) return added_kinds[i].name;
    return "unknown";
}

int el_event_prepare(dbld_arena *a, Databuild__V1__BuildEvent *ev, size_t index, el_event *out,
                     dbld_status *st)
{
    memset(out, 0, sizeof *out);
    int kind = (int)ev->event_type_case;
    if (strcmp(el_kind_name(kind), "unknown") == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "event %zu: event_type is not set (one of build_request_event, "
                               "partition_event, job_event, ..., taint_event is required)",
                               index);
    if (!ev->event_id || !*ev->event_id) {
        char id[37];
        dbld_uuid_v4(id);
        ev->event_id = dbld_arena_strdup(a, id);
    } else if (!dbld_uuid_valid(ev->event_id)) {
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "event %zu: event_id \"%.100s\" is not a UUID", index, ev->event_id);
    } else {
        /* One spelling per UUID: idempotency compares ids as text. */
        char *id = dbld_arena_strdup(a, ev->event_id);
        for (char *p = id; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        ev->event_id = id;
    }
    if (ev->timestamp == 0) ev->timestamp = dbld_now_ns();
    if (!ev->build_request_id) ev->build_request_id = dbld_arena_strdup(a, "");
    strlist refs = {0}, labels = {0}, runs = {0};
    extract(a, ev, &refs, &labels, &runs);
    out->ev = ev;
    out->kind = kind;
    out->refs = refs.items;
    out->n_refs = refs.n;
    out->labels = labels.items;
    out->n_labels = labels.n;
    out->runs = runs.items;
    out->n_runs = runs.n;
    out->payload = dbld_msg_pack(a, &ev->base, &out->payload_len);
    return 0;
}
