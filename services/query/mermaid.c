/* mermaid.c - a build's job graph as a mermaid flowchart.
 *
 * Nodes: one per task of the build's (latest) JobGraphEvent, shaped as a
 * subroutine [[label]], and one per partition (task inputs and outputs and
 * the graph's outputs), shaped as a cylinder [(ref)]. Edges run input
 * partition --> job --> output partition. Without a job graph (a build that
 * never finished analysis) the requested partitions are drawn alone.
 *
 * Node ids are generated (j0, j1, ... and p0, p1, ...), so no user text
 * ever lands in an id; labels are quoted with ", #, <, >, &, ` and
 * control characters written as mermaid entity codes (#quot; etc.).
 *
 * Colours: a classDef per status - job_<status> for the task's latest job
 * run in this build (job_pending when none yet) and partition_<status> for
 * the partition's status within the build, else its current status - and
 * `class` lines assigning them, so a renderer colours done / running /
 * failed at a glance.
 */
#include "query.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef struct sbuf {
    dbld_arena *a;
    char *s;
    size_t len, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = dbld_arena_alloc(b->a, cap);
        if (b->len) memcpy(grown, b->s, b->len);
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = dbld_arena_alloc(b->a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_put(b, big, (size_t)n);
}

/* A quoted mermaid label: "text" with the characters mermaid or HTML would
 * interpret written as entity codes. */
static void sb_label(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '"':
            sb_put(b, "#quot;", 6);
            break;
        case '#':
            sb_put(b, "#35;", 4);
            break;
        case '<':
            sb_put(b, "#lt;", 4);
            break;
        case '>':
            sb_put(b, "#gt;", 4);
            break;
        case '&':
            sb_put(b, "#amp;", 5);
            break;
        case '`':
            sb_put(b, "#96;", 4);
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                sb_put(b, " ", 1);
            else
                sb_put(b, s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

/* Class name suffix of a status enum value: "PARTITION_AVAILABLE" -> "available". */
static const char *status_word(dbld_arena *a, const ProtobufCEnumDescriptor *d, int v,
                               const char *prefix)
{
    const char *name = q_enum_name(d, v);
    size_t pl = strlen(prefix);
    if (!*name) return "unknown";
    if (strncmp(name, prefix, pl) == 0) name += pl;
    char *w = dbld_arena_strdup(a, name);
    for (char *c = w; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return w;
}

static const struct {
    const char *cls, *style;
} class_defs[] = {
    {"job_pending", "fill:#f5f5f5,stroke:#9e9e9e,color:#424242"},
    {"job_unknown", "fill:#f5f5f5,stroke:#9e9e9e,color:#424242"},
    {"job_scheduled", "fill:#fff8e1,stroke:#f9a825,color:#5d4037"},
    {"job_running", "fill:#e3f2fd,stroke:#1565c0,color:#0d47a1"},
    {"job_completed", "fill:#e8f5e9,stroke:#2e7d32,color:#1b5e20"},
    {"job_failed", "fill:#ffebee,stroke:#c62828,color:#b71c1c"},
    {"job_cancelled", "fill:#eceff1,stroke:#546e7a,color:#263238,stroke-dasharray:4 2"},
    {"job_skipped", "fill:#f1f8e9,stroke:#7cb342,color:#33691e,stroke-dasharray:4 2"},
    {"partition_unknown", "fill:#fafafa,stroke:#bdbdbd,color:#616161"},
    {"partition_requested", "fill:#fafafa,stroke:#9e9e9e,color:#424242"},
    {"partition_analyzed", "fill:#f3e5f5,stroke:#8e24aa,color:#4a148c"},
    {"partition_building", "fill:#e3f2fd,stroke:#1565c0,color:#0d47a1"},
    {"partition_available", "fill:#e8f5e9,stroke:#2e7d32,color:#1b5e20"},
    {"partition_failed", "fill:#ffebee,stroke:#c62828,color:#b71c1c"},
    {"partition_delegated", "fill:#e0f7fa,stroke:#00838f,color:#006064,stroke-dasharray:4 2"},
};
#define N_CLASSES (sizeof class_defs / sizeof class_defs[0])

typedef struct graph_nodes {
    dbld_strmap ids; /* partition ref -> node number */
    const char **refs;
    int *status; /* PartitionStatus, -1 = not known yet */
    size_t n, cap;
} graph_nodes;

static size_t pnode(graph_nodes *g, dbld_arena *a, const char *ref)
{
    int added;
    size_t before = g->n;
    size_t i = dbld_strmap_index(&g->ids, ref, &g->n, &added);
    if (added) {
        if (before == g->cap) {
            size_t cap = g->cap ? 2 * g->cap : 32;
            const char **refs = dbld_arena_alloc(a, cap * sizeof *refs);
            int *status = dbld_arena_alloc(a, cap * sizeof *status);
            if (before) {
                memcpy(refs, g->refs, before * sizeof *refs);
                memcpy(status, g->status, before * sizeof *status);
            }
            g->refs = refs;
            g->status = status;
            g->cap = cap;
        }
        g->refs[i] = ref;
        g->status[i] = -1;
    }
    return i;
}

/* The task's latest job run in the build: same label, overlapping targets. */
static const q_fold_run *task_run(const q_build_fold *f, const Databuild__V1__Task *t)
{
    const q_fold_run *best = NULL;
    const char *label = t->job && t->job->label ? t->job->label : "";
    for (size_t i = 0; i < f->n_runs; i++) {
        const q_fold_run *run = &f->runs[i];
        if (strcmp(run->label, label) != 0) continue;
        int overlap = !t->config || t->config->n_outputs == 0;
        for (size_t k = 0; t->config && k < t->config->n_outputs && !overlap; k++)
            for (size_t m = 0; m < run->n_targets && !overlap; m++)
                overlap = t->config->outputs[k] &&
                          strcmp(t->config->outputs[k]->str, run->targets[m]) == 0;
        if (overlap && (!best || run->last_idx > best->last_idx)) best = run;
    }
    return best;
}

/* Statuses of partitions the build's events did not mention (inputs built
 * elsewhere): their current status from the partitions projection. */
static int fill_current(q_req *r, graph_nodes *g, dbld_status *st)
{
    char **missing = dbld_arena_alloc(r->a, (g->n + 1) * sizeof *missing);
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->status[i] < 0) missing[n++] = (char *)g->refs[i];
    if (!n) return 0;
    const char *p[] = {q_text_array(r->a, missing, n)};
    dbld_res *res = NULL;
    int rc =
        q_exec(r, "SELECT ref, status FROM partitions WHERE ref = ANY($1::text[])", 1, p, &res, st);
    for (int i = 0; !rc && i < dbld_res_rows(res); i++) {
        size_t k = dbld_strmap_find(&g->ids, dbld_res_get(res, i, 0));
        if (k != DBLD_STRMAP_NONE) g->status[k] = (int)dbld_res_i64(res, i, 1);
    }
    dbld_res_free(res);
    for (size_t i = 0; i < g->n; i++)
        if (g->status[i] < 0) g->status[i] = DATABUILD__V1__PARTITION_STATUS__PARTITION_UNKNOWN;
    return rc;
}

/* One `class a,b,c name` line per class in use. */
static void emit_classes(sbuf *b, dbld_arena *a, const char *const *node_cls, const char *prefix,
                         size_t n)
{
    for (size_t c = 0; c < N_CLASSES; c++) {
        int first = 1;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(node_cls[i], class_defs[c].cls) != 0) continue;
            sb_printf(b, first ? "  class %s%zu" : ",%s%zu", prefix, i);
            first = 0;
        }
        if (!first) sb_printf(b, " %s\n", class_defs[c].cls);
    }
    (void)a;
}

int q_mermaid(q_req *r, const char *build_id, const q_build_fold *f, char **out, dbld_status *st)
{
    (void)build_id;
    dbld_arena *a = r->a;
    sbuf b = {.a = a};
    graph_nodes g;
    memset(&g, 0, sizeof g);
    dbld_strmap_init(&g.ids, a);
    const Databuild__V1__JobGraph *jg = f->graph;
    size_t n_tasks = jg ? jg->n_nodes : 0;

    /* partition nodes in a stable order: graph outputs, then per task inputs and outputs */
    if (jg) {
        for (size_t i = 0; i < jg->n_outputs; i++)
            if (jg->outputs[i] && *jg->outputs[i]->str) pnode(&g, a, jg->outputs[i]->str);
        for (size_t t = 0; t < n_tasks; t++) {
            const Databuild__V1__JobConfig *c = jg->nodes[t] ? jg->nodes[t]->config : NULL;
            for (size_t k = 0; c && k < c->n_inputs; k++)
                if (c->inputs[k] && c->inputs[k]->partition_ref &&
                    *c->inputs[k]->partition_ref->str)
                    pnode(&g, a, c->inputs[k]->partition_ref->str);
            for (size_t k = 0; c && k < c->n_outputs; k++)
                if (c->outputs[k] && *c->outputs[k]->str) pnode(&g, a, c->outputs[k]->str);
        }
    } else {
        for (size_t i = 0; i < f->n_parts; i++)
            pnode(&g, a, f->part_refs[i]);
    }
    for (size_t i = 0; i < g.n; i++) {
        size_t k = dbld_strmap_find(&f->parts, g.refs[i]);
        if (k != DBLD_STRMAP_NONE) g.status[i] = f->part_status[k];
    }
    int rc = fill_current(r, &g, st);
    if (rc) return rc;

    sb_printf(&b, "flowchart LR\n");
    for (size_t c = 0; c < N_CLASSES; c++)
        sb_printf(&b, "  classDef %s %s\n", class_defs[c].cls, class_defs[c].style);
    const char **job_cls = dbld_arena_alloc(a, (n_tasks + 1) * sizeof *job_cls);
    for (size_t t = 0; t < n_tasks; t++) {
        const Databuild__V1__Task *task = jg->nodes[t];
        const char *label = task && task->job && task->job->label ? task->job->label : "";
        sb_printf(&b, "  j%zu[[", t);
        sb_label(&b, label);
        sb_printf(&b, "]]\n");
        const q_fold_run *run = task ? task_run(f, task) : NULL;
        job_cls[t] = run ? dbld_arena_printf(a, "job_%s",
                                             status_word(a, &databuild__v1__job_status__descriptor,
                                                         run->status, "JOB_"))
                         : "job_pending";
    }
    const char **part_cls = dbld_arena_alloc(a, (g.n + 1) * sizeof *part_cls);
    for (size_t i = 0; i < g.n; i++) {
        sb_printf(&b, "  p%zu[(", i);
        sb_label(&b, g.refs[i]);
        sb_printf(&b, ")]\n");
        part_cls[i] = dbld_arena_printf(a, "partition_%s",
                                        status_word(a, &databuild__v1__partition_status__descriptor,
                                                    g.status[i], "PARTITION_"));
    }
    dbld_strmap edges;
    dbld_strmap_init(&edges, a);
    size_t n_edges = 0;
    for (size_t t = 0; t < n_tasks; t++) {
        const Databuild__V1__JobConfig *c = jg->nodes[t] ? jg->nodes[t]->config : NULL;
        for (size_t k = 0; c && k < c->n_inputs; k++) {
            if (!c->inputs[k] || !c->inputs[k]->partition_ref || !*c->inputs[k]->partition_ref->str)
                continue;
            size_t p = dbld_strmap_find(&g.ids, c->inputs[k]->partition_ref->str);
            int added;
            dbld_strmap_index(&edges, dbld_arena_printf(a, "p%zu>j%zu", p, t), &n_edges, &added);
            if (added) sb_printf(&b, "  p%zu --> j%zu\n", p, t);
        }
        for (size_t k = 0; c && k < c->n_outputs; k++) {
            if (!c->outputs[k] || !*c->outputs[k]->str) continue;
            size_t p = dbld_strmap_find(&g.ids, c->outputs[k]->str);
            int added;
            dbld_strmap_index(&edges, dbld_arena_printf(a, "j%zu>p%zu", t, p), &n_edges, &added);
            if (added) sb_printf(&b, "  j%zu --> p%zu\n", t, p);
        }
    }
    emit_classes(&b, a, job_cls, "j", n_tasks);
    emit_classes(&b, a, part_cls, "p", g.n);
    *out = b.s;
    return 0;
}
