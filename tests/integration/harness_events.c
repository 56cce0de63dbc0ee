/* harness_events.c - BuildEvent builders and the spec's "what does an event
 * touch" rules, computed client-side so filter tests have an independent
 * oracle. All memory comes from the caller's arena.
 */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>

#define MSG(a, type, TYPE) ((type *)dbld_arena_msg((a), &TYPE##__descriptor))

static size_t count(const char *const *strs)
{
    size_t n = 0;
    while (strs && strs[n])
        n++;
    return n;
}

static Databuild__V1__PartitionRef *ref(dbld_arena *a, const char *s)
{
    Databuild__V1__PartitionRef *r =
        MSG(a, Databuild__V1__PartitionRef, databuild__v1__partition_ref);
    r->str = dbld_arena_strdup(a, s);
    return r;
}

static Databuild__V1__PartitionRef **refs(dbld_arena *a, const char *const *strs, size_t *n)
{
    *n = count(strs);
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (*n + 1) * sizeof *out);
    for (size_t i = 0; i < *n; i++)
        out[i] = ref(a, strs[i]);
    return out;
}

static char **strv(dbld_arena *a, const char *const *strs, size_t *n)
{
    *n = count(strs);
    char **out = dbld_arena_alloc(a, (*n + 1) * sizeof *out);
    for (size_t i = 0; i < *n; i++)
        out[i] = dbld_arena_strdup(a, strs[i]);
    return out;
}

char *h_unique(dbld_arena *a, const char *prefix)
{
    char u[37];
    dbld_uuid_v4(u);
    return dbld_arena_printf(a, "%s%.8s%.4s", prefix, u, u + 9);
}

Databuild__V1__BuildEvent *h_event_base(dbld_arena *a, const char *br, int64_t ts_ns)
{
    Databuild__V1__BuildEvent *e = MSG(a, Databuild__V1__BuildEvent, databuild__v1__build_event);
    char u[37];
    dbld_uuid_v4(u);
    e->event_id = dbld_arena_strdup(a, u);
    e->timestamp = ts_ns;
    e->build_request_id = dbld_arena_strdup(a, br ? br : "");
    return e;
}

static Databuild__V1__JobLabel *label(dbld_arena *a, const char *s)
{
    Databuild__V1__JobLabel *l = MSG(a, Databuild__V1__JobLabel, databuild__v1__job_label);
    l->label = dbld_arena_strdup(a, s);
    return l;
}

static Databuild__V1__SourceType *source(dbld_arena *a, Databuild__V1__SourceTypeCode code)
{
    static const char *names[] = {"cli_manual", "dashboard_manual", "scheduled", "api_request"};
    Databuild__V1__SourceType *s = MSG(a, Databuild__V1__SourceType, databuild__v1__source_type);
    s->code = code;
    s->name = dbld_arena_strdup(a, (unsigned)code < 4 ? names[code] : "other");
    return s;
}

Databuild__V1__BuildEvent *h_event_build_request(dbld_arena *a, const char *br,
                                                 Databuild__V1__BuildRequestStatusCode code,
                                                 const char *const *rs, const char *comment,
                                                 const char *want_id)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__BuildRequestEvent *p =
        MSG(a, Databuild__V1__BuildRequestEvent, databuild__v1__build_request_event);
    p->status = MSG(a, Databuild__V1__BuildRequestStatus, databuild__v1__build_request_status);
    p->status->code = code;
    p->status->name = dbld_arena_printf(a, "status_%d", (int)code);
    p->requested_partitions = refs(a, rs, &p->n_requested_partitions);
    p->comment = dbld_arena_strdup(a, comment ? comment : "");
    p->want_id = dbld_arena_strdup(a, want_id ? want_id : "");
    p->message = dbld_arena_strdup(a, "build request message");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT;
    e->build_request_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_partition(dbld_arena *a, const char *br, const char *r,
                                             Databuild__V1__PartitionStatus status,
                                             const char *job_run_id)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__PartitionEvent *p =
        MSG(a, Databuild__V1__PartitionEvent, databuild__v1__partition_event);
    p->partition_ref = ref(a, r);
    p->status_code = status;
    p->status_name = dbld_arena_printf(a, "partition_status_%d", (int)status);
    p->message = dbld_arena_strdup(a, "partition message");
    p->job_run_id = dbld_arena_strdup(a, job_run_id ? job_run_id : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    e->partition_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_job(dbld_arena *a, const char *br, const char *job_run_id,
                                       const char *lbl, Databuild__V1__JobStatus status,
                                       const char *const *targets)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__JobEvent *p = MSG(a, Databuild__V1__JobEvent, databuild__v1__job_event);
    p->job_run_id = dbld_arena_strdup(a, job_run_id ? job_run_id : "");
    p->job_label = label(a, lbl);
    p->target_partitions = refs(a, targets, &p->n_target_partitions);
    p->status_code = status;
    p->status_name = dbld_arena_printf(a, "job_status_%d", (int)status);
    p->message = dbld_arena_strdup(a, "job message");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    e->job_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_delegation(dbld_arena *a, const char *br, const char *r,
                                              const char *delegated_to)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__DelegationEvent *p =
        MSG(a, Databuild__V1__DelegationEvent, databuild__v1__delegation_event);
    p->partition_ref = ref(a, r);
    p->delegated_to_build_request_id = dbld_arena_strdup(a, delegated_to ? delegated_to : "");
    p->message = dbld_arena_strdup(a, "delegated");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT;
    e->delegation_event = p;
    return e;
}

static Databuild__V1__JobConfig *job_config(dbld_arena *a, const char *const *outputs, int rich)
{
    Databuild__V1__JobConfig *c = MSG(a, Databuild__V1__JobConfig, databuild__v1__job_config);
    c->outputs = refs(a, outputs, &c->n_outputs);
    if (!rich) return c;
    c->n_inputs = 2;
    c->inputs = dbld_arena_alloc(a, 2 * sizeof *c->inputs);
    for (size_t i = 0; i < 2; i++) {
        Databuild__V1__DataDep *d = MSG(a, Databuild__V1__DataDep, databuild__v1__data_dep);
        d->dep_type_code =
            i ? DATABUILD__V1__DEP_TYPE__MATERIALIZE : DATABUILD__V1__DEP_TYPE__QUERY;
        d->dep_type_name = dbld_arena_strdup(a, i ? "materialize" : "query");
        d->partition_ref = ref(a, i ? "raw/input=b" : "raw/input=a");
        c->inputs[i] = d;
    }
    c->args = strv(a, H_STRS("--date", "2025-01-01", "caf\xc3\xa9 \"quoted\""), &c->n_args);
    c->n_env = 2;
    c->env = dbld_arena_alloc(a, 2 * sizeof *c->env);
    const char *kv[2][2] = {{"ZED", "last"}, {"ALPHA", "first=1"}}; /* not sorted: order kept */
    for (size_t i = 0; i < 2; i++) {
        Databuild__V1__JobConfig__EnvEntry *en =
            MSG(a, Databuild__V1__JobConfig__EnvEntry, databuild__v1__job_config__env_entry);
        en->key = dbld_arena_strdup(a, kv[i][0]);
        en->value = dbld_arena_strdup(a, kv[i][1]);
        c->env[i] = en;
    }
    return c;
}

Databuild__V1__BuildEvent *h_event_job_graph(dbld_arena *a, const char *br,
                                             const char *const *outputs, const char *const *labels,
                                             const char *const *node_outputs)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__JobGraphEvent *p =
        MSG(a, Databuild__V1__JobGraphEvent, databuild__v1__job_graph_event);
    Databuild__V1__JobGraph *g = MSG(a, Databuild__V1__JobGraph, databuild__v1__job_graph);
    g->label = MSG(a, Databuild__V1__GraphLabel, databuild__v1__graph_label);
    g->label->label = dbld_arena_strdup(a, "//graph:main");
    g->outputs = refs(a, outputs, &g->n_outputs);
    g->n_nodes = count(labels);
    g->nodes = dbld_arena_alloc(a, (g->n_nodes + 1) * sizeof *g->nodes);
    for (size_t i = 0; i < g->n_nodes; i++) {
        Databuild__V1__Task *t = MSG(a, Databuild__V1__Task, databuild__v1__task);
        t->job = label(a, labels[i]);
        const char *one[] = {node_outputs && node_outputs[i] ? node_outputs[i] : NULL, NULL};
        t->config = job_config(a, one, 0);
        g->nodes[i] = t;
    }
    p->job_graph = g;
    p->message = dbld_arena_strdup(a, "analyzed");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT;
    e->job_graph_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_invalidation(dbld_arena *a, const char *br, const char *r,
                                                const char *reason)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__PartitionInvalidationEvent *p = MSG(a, Databuild__V1__PartitionInvalidationEvent,
                                                       databuild__v1__partition_invalidation_event);
    p->partition_ref = ref(a, r);
    p->reason = dbld_arena_strdup(a, reason ? reason : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT;
    e->partition_invalidation_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_job_run_cancel(dbld_arena *a, const char *br,
                                                  const char *job_run_id, const char *reason)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__JobRunCancelEvent *p =
        MSG(a, Databuild__V1__JobRunCancelEvent, databuild__v1__job_run_cancel_event);
    p->job_run_id = dbld_arena_strdup(a, job_run_id ? job_run_id : "");
    p->reason = dbld_arena_strdup(a, reason ? reason : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT;
    e->job_run_cancel_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_build_cancel(dbld_arena *a, const char *br, const char *reason)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__BuildCancelEvent *p =
        MSG(a, Databuild__V1__BuildCancelEvent, databuild__v1__build_cancel_event);
    p->reason = dbld_arena_strdup(a, reason ? reason : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT;
    e->build_cancel_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_want(dbld_arena *a, const char *br, const char *want_id,
                                        const char *const *rs, Databuild__V1__SourceTypeCode src,
                                        const char *comment)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__WantEvent *p = MSG(a, Databuild__V1__WantEvent, databuild__v1__want_event);
    p->requested_partitions = refs(a, rs, &p->n_requested_partitions);
    p->want_id = dbld_arena_strdup(a, want_id ? want_id : "");
    p->source = MSG(a, Databuild__V1__WantSource, databuild__v1__want_source);
    p->source->source_type = source(a, src);
    p->comment = dbld_arena_strdup(a, comment ? comment : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT;
    e->want_event = p;
    return e;
}

Databuild__V1__BuildEvent *h_event_taint(dbld_arena *a, const char *br, const char *const *rs,
                                         Databuild__V1__SourceTypeCode src, const char *comment)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, 0);
    Databuild__V1__TaintEvent *p = MSG(a, Databuild__V1__TaintEvent, databuild__v1__taint_event);
    p->refs = refs(a, rs, &p->n_refs);
    p->created_at = (uint64_t)dbld_now_ns();
    p->source_type = source(a, src);
    p->comment = dbld_arena_strdup(a, comment ? comment : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT;
    e->taint_event = p;
    return e;
}

static Databuild__V1__PartitionManifest *manifest(dbld_arena *a, const char *out, int depth)
{
    Databuild__V1__PartitionManifest *m =
        MSG(a, Databuild__V1__PartitionManifest, databuild__v1__partition_manifest);
    m->outputs = refs(a, H_STRS(out), &m->n_outputs);
    m->start_time = 1735689600 + depth;
    m->end_time = 1735689660 + depth;
    m->task = MSG(a, Databuild__V1__Task, databuild__v1__task);
    m->task->job = label(a, "//jobs:ingest");
    m->task->config = job_config(a, H_STRS(out), 1);
    m->n_metadata = 2;
    m->metadata = dbld_arena_alloc(a, 2 * sizeof *m->metadata);
    const char *kv[2][2] = {{"rows", "1234"}, {"bytes", "99"}};
    for (size_t i = 0; i < 2; i++) {
        Databuild__V1__PartitionManifest__MetadataEntry *en =
            MSG(a, Databuild__V1__PartitionManifest__MetadataEntry,
                databuild__v1__partition_manifest__metadata_entry);
        en->key = dbld_arena_strdup(a, kv[i][0]);
        en->value = dbld_arena_strdup(a, kv[i][1]);
        m->metadata[i] = en;
    }
    if (depth < 1) {
        m->n_inputs = 1;
        m->inputs = dbld_arena_alloc(a, sizeof *m->inputs);
        m->inputs[0] = manifest(a, "raw/input=a", depth + 1);
    }
    return m;
}

size_t h_events_all_kinds(dbld_arena *a, const char *br, Databuild__V1__BuildEvent **out)
{
    char *run = h_unique(a, "run-");
    char *p1 = h_unique(a, "rt/p1=");
    char *p2 = h_unique(a, "rt/p2=");
    size_t n = 0;
    out[n++] = h_event_build_request(
        a, br, DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING, H_STRS(p1, p2),
        "nightly \xe2\x9c\x93", "want-1");
    out[n++] =
        h_event_partition(a, br, p1, DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, run);
    Databuild__V1__BuildEvent *job = h_event_job(
        a, br, run, "//jobs:ingest", DATABUILD__V1__JOB_STATUS__JOB_COMPLETED, H_STRS(p1, p2));
    job->job_event->config = job_config(a, H_STRS(p1, p2), 1);
    job->job_event->n_manifests = 2;
    job->job_event->manifests = dbld_arena_alloc(a, 2 * sizeof(void *));
    job->job_event->manifests[0] = manifest(a, p1, 0);
    job->job_event->manifests[1] = manifest(a, p2, 1);
    out[n++] = job;
    out[n++] = h_event_delegation(a, br, p2, "other-build");
    out[n++] = h_event_job_graph(a, br, H_STRS(p1, p2), H_STRS("//jobs:ingest", "//jobs:agg"),
                                 H_STRS(p1, p2));
    out[n++] = h_event_invalidation(a, br, p1, "bad data");
    out[n++] = h_event_job_run_cancel(a, br, run, "user asked");
    out[n++] = h_event_build_cancel(a, br, "superseded");
    out[n++] = h_event_want(a, br, "want-1", H_STRS(p1, p2),
                            DATABUILD__V1__SOURCE_TYPE_CODE__SCHEDULED, "keep fresh");
    out[n++] = h_event_taint(a, br, H_STRS(p1), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST,
                             "taint comment");
    for (size_t i = 0; i < n; i++)
        out[i]->timestamp = 1735689600000000000LL + (int64_t)i * 1000;
    return n;
}

/* ------------------------------------------------------------ spec rules */

typedef struct strlist {
    dbld_arena *a;
    const char **v;
    size_t n, cap;
} strlist;

static void sl_add(strlist *l, const char *s)
{
    if (!s || !*s) return;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        const char **v = dbld_arena_alloc(l->a, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
}

static void sl_refs(strlist *l, Databuild__V1__PartitionRef **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i]) sl_add(l, r[i]->str);
}

size_t h_event_refs(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out)
{
    strlist l = {.a = a};
    switch (e->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
        if (e->partition_event->partition_ref) sl_add(&l, e->partition_event->partition_ref->str);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        sl_refs(&l, e->job_event->target_partitions, e->job_event->n_target_partitions);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        sl_refs(&l, e->build_request_event->requested_partitions,
                e->build_request_event->n_requested_partitions);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT:
        if (e->delegation_event->partition_ref) sl_add(&l, e->delegation_event->partition_ref->str);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT: {
        Databuild__V1__JobGraph *g = e->job_graph_event->job_graph;
        if (g) {
            sl_refs(&l, g->outputs, g->n_outputs);
            for (size_t i = 0; i < g->n_nodes; i++)
                if (g->nodes[i]->config)
                    sl_refs(&l, g->nodes[i]->config->outputs, g->nodes[i]->config->n_outputs);
        }
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT:
        if (e->partition_invalidation_event->partition_ref)
            sl_add(&l, e->partition_invalidation_event->partition_ref->str);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT:
        sl_refs(&l, e->want_event->requested_partitions, e->want_event->n_requested_partitions);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT:
        sl_refs(&l, e->taint_event->refs, e->taint_event->n_refs);
        break;
    default:
        break;
    }
    *out = l.v;
    return l.n;
}

size_t h_event_labels(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out)
{
    strlist l = {.a = a};
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
        e->job_event->job_label)
        sl_add(&l, e->job_event->job_label->label);
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT &&
        e->job_graph_event->job_graph) {
        Databuild__V1__JobGraph *g = e->job_graph_event->job_graph;
        for (size_t i = 0; i < g->n_nodes; i++)
            if (g->nodes[i]->job) sl_add(&l, g->nodes[i]->job->label);
    }
    *out = l.v;
    return l.n;
}

size_t h_event_run_ids(dbld_arena *a, const Databuild__V1__BuildEvent *e, const char ***out)
{
    strlist l = {.a = a};
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT)
        sl_add(&l, e->partition_event->job_run_id);
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
        sl_add(&l, e->job_event->job_run_id);
    if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT)
        sl_add(&l, e->job_run_cancel_event->job_run_id);
    *out = l.v;
    return l.n;
}

/* ------------------------------------------------------------- messages */

uint8_t *h_pack(dbld_arena *a, const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = dbld_arena_alloc(a, *len + 1);
    protobuf_c_message_pack(m, buf);
    return buf;
}

int h_msg_equal(const ProtobufCMessage *x, const ProtobufCMessage *y)
{
    if (!x || !y) return x == y;
    size_t lx = protobuf_c_message_get_packed_size(x);
    size_t ly = protobuf_c_message_get_packed_size(y);
    if (lx != ly || x->descriptor != y->descriptor) return 0;
    uint8_t *bx = dbld_xmalloc(lx + 1), *by = dbld_xmalloc(ly + 1);
    protobuf_c_message_pack(x, bx);
    protobuf_c_message_pack(y, by);
    int eq = memcmp(bx, by, lx) == 0;
    free(bx);
    free(by);
    return eq;
}

Databuild__V1__EventFilter *h_filter(dbld_arena *a, const char *const *rs,
                                     const char *const *patterns, const char *const *labels,
                                     const char *const *run_ids, const char *const *br_ids)
{
    Databuild__V1__EventFilter *f = MSG(a, Databuild__V1__EventFilter, databuild__v1__event_filter);
    f->partition_refs = strv(a, rs, &f->n_partition_refs);
    f->partition_patterns = strv(a, patterns, &f->n_partition_patterns);
    f->job_labels = strv(a, labels, &f->n_job_labels);
    f->job_run_ids = strv(a, run_ids, &f->n_job_run_ids);
    f->build_request_ids = strv(a, br_ids, &f->n_build_request_ids);
    return f;
}
