/* analyze.c - round-by-round analysis and cycle detection (see analyze.h). */
#include "analyze.h"

#include "strmap.h"

#include "dbld/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUNDS 100000
#define MAX_TASKS 2000000
/* Refs per configure call, in bytes of the config process's arguments. */
#define CALL_ARG_BYTES ((size_t)1 << 20)

struct gs_plan_arena {
    dbld_arena *a;
    gs_plan_arena *next;
};

/* A growable array of pointers/indexes (malloc'd). */
typedef struct vec {
    void **items;
    size_t n, cap;
} vec;

static void vec_push(vec *v, void *x)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 16;
        v->items = dbld_xrealloc(v->items, v->cap * sizeof *v->items);
    }
    v->items[v->n++] = x;
}

/* One job's refs in one round and the outcome of configuring them. */
typedef struct group {
    size_t job;
    vec refs; /* const char * */
    dbld_arena *a;
    Databuild__V1__JobConfigureResponse *resp;
    int rc;
    dbld_status st;
} group;

typedef struct round_ctx {
    const gs_analyze_env *env;
    group *groups;
    size_t n_groups;
    atomic_size_t next;
} round_ctx;

static void configure_group(const gs_analyze_env *env, group *g)
{
    g->a = dbld_arena_create();
    dbld_status_clear(&g->st);
    g->rc = env->configure(env->user, g->job, (const char *const *)g->refs.items, g->refs.n, g->a,
                           &g->resp, &g->st);
    if (!g->rc && !g->resp)
        g->rc = dbld_status_set(&g->st, DBLD_INTERNAL, "configure returned no response");
}

static void *round_worker(void *arg)
{
    round_ctx *rc = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&rc->next, 1);
        if (i >= rc->n_groups) return NULL;
        configure_group(rc->env, &rc->groups[i]);
    }
}

static void run_round(const gs_analyze_env *env, group *groups, size_t n)
{
    round_ctx rc = {.env = env, .groups = groups, .n_groups = n};
    atomic_init(&rc.next, 0);
    size_t n_threads = (size_t)(env->parallel > 0 ? env->parallel : 8);
    if (n_threads > n) n_threads = n;
    if (n_threads <= 1) {
        round_worker(&rc);
        return;
    }
    pthread_t *th = dbld_xcalloc(n_threads, sizeof *th);
    size_t started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&th[started], NULL, round_worker, &rc) != 0) break;
    round_worker(&rc); /* also works, and covers a failed pthread_create */
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    free(th);
}

/* ---- analysis state ---- */

typedef struct an {
    const gs_analyze_env *env;
    gs_plan *p;
    gs_strmap produced; /* ref -> task */
    gs_strmap pending;  /* refs queued in a frontier -> their job (gs_lookup_ref) */
    gs_strmap external; /* external refs already accepted */
    vec tasks;          /* Databuild__V1__Task * */
    vec task_job;       /* (void *)(uintptr_t)job */
    gs_analyze_error err;
    gs_missing *missing; /* the caller's, or NULL */
} an;

static const char *label_of(const an *s, size_t job)
{
    return gs_lookup_job(s->env->lookup, job)->label;
}

static int an_fail(an *s, gs_analyze_error kind, dbld_status *st, int code, const char *fmt,
                   const char *x, const char *y)
{
    s->err = kind;
    return dbld_status_set(st, code, fmt, x, y);
}

static void keep_arena(gs_plan *p, dbld_arena *a)
{
    gs_plan_arena *pa = dbld_xcalloc(1, sizeof *pa);
    pa->a = a;
    pa->next = p->extra;
    p->extra = pa;
}

/* Add one config of job g->job as a task, or recognise it as a duplicate. */
static int add_config(an *s, group *g, Databuild__V1__JobConfig *cfg, dbld_status *st)
{
    const char *label = label_of(s, g->job);
    if (cfg->n_outputs == 0)
        return an_fail(s, GS_AERR_CONFIGURE, st, DBLD_FAILED_PRECONDITION,
                       "job %s returned a config without outputs%s", label, "");
    size_t mapped = 0, first = 0, same = 1;
    for (size_t i = 0; i < cfg->n_outputs; i++) {
        const char *ref = cfg->outputs[i] && cfg->outputs[i]->str ? cfg->outputs[i]->str : "";
        if (!*ref)
            return an_fail(s, GS_AERR_CONFIGURE, st, DBLD_FAILED_PRECONDITION,
                           "job %s returned a config with an empty output%s", label, "");
        size_t t;
        if (gs_strmap_get(&s->produced, ref, &t)) {
            if (mapped == 0)
                first = t;
            else if (t != first)
                same = 0;
            mapped++;
        }
    }
    if (mapped == cfg->n_outputs && same &&
        ((Databuild__V1__Task *)s->tasks.items[first])->config->n_outputs == cfg->n_outputs)
        return 0; /* the same task again */
    if (mapped)
        for (size_t i = 0; i < cfg->n_outputs; i++)
            if (gs_strmap_get(&s->produced, cfg->outputs[i]->str, NULL))
                return an_fail(s, GS_AERR_CONFIGURE, st, DBLD_FAILED_PRECONDITION,
                               "job %s configured partition \"%s\" in two different tasks", label,
                               cfg->outputs[i]->str);
    for (size_t i = 0; i < cfg->n_outputs; i++) {
        size_t job;
        dbld_status lst;
        /* a ref queued for this job was looked up then (the regexes are the
         * cost of a 100k-task analysis); only the extra outputs are */
        if (gs_strmap_get(&s->pending, cfg->outputs[i]->str, &job) && job == g->job) continue;
        if (gs_lookup_ref(s->env->lookup, cfg->outputs[i]->str, &job, &lst) == 0 &&
            job != GS_LOOKUP_NONE && job != g->job) {
            s->err = GS_AERR_CONFIGURE;
            return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                   "job %s configured output \"%s\" which job %s produces", label,
                                   cfg->outputs[i]->str, label_of(s, job));
        }
    }
    if (s->tasks.n >= MAX_TASKS)
        return an_fail(s, GS_AERR_CONFIGURE, st, DBLD_RESOURCE_EXHAUSTED,
                       "graph has more than %s tasks%s", "2000000", "");
    Databuild__V1__Task *task = dbld_arena_msg(s->p->a, &databuild__v1__task__descriptor);
    task->job = dbld_arena_msg(s->p->a, &databuild__v1__job_label__descriptor);
    task->job->label = (char *)label;
    task->config = cfg;
    size_t t = s->tasks.n;
    vec_push(&s->tasks, task);
    vec_push(&s->task_job, (void *)(uintptr_t)g->job);
    for (size_t i = 0; i < cfg->n_outputs; i++)
        gs_strmap_put(&s->produced, cfg->outputs[i]->str, t);
    return 0;
}

static int process_group(an *s, group *g, dbld_status *st)
{
    const char *label = label_of(s, g->job);
    if (g->rc) {
        s->err = GS_AERR_CONFIGURE;
        *st = g->st;
        return dbld_status_prefix(st, "configure %s", label);
    }
    for (size_t i = 0; i < g->resp->n_configs; i++) {
        if (!g->resp->configs[i]) continue;
        int rc = add_config(s, g, g->resp->configs[i], st);
        if (rc) return rc;
    }
    for (size_t i = 0; i < g->refs.n; i++)
        if (!gs_strmap_get(&s->produced, g->refs.items[i], NULL))
            return an_fail(s, GS_AERR_CONFIGURE, st, DBLD_FAILED_PRECONDITION,
                           "job %s did not configure partition \"%s\"", label, g->refs.items[i]);
    return 0;
}

/* External inputs (graph.external) that are not AVAILABLE: one
 * PRECONDITION_FAILED naming every one of them (the first 20), and all of
 * them in s->missing. */
static int missing_external(an *s, const vec *refs, const vec *needed_by, const int *avail,
                            dbld_status *st)
{
    char msg[sizeof st->msg];
    size_t len = 0, n = 0;
    for (size_t i = 0; i < refs->n; i++) {
        if (avail[i]) continue;
        if (s->missing) {
            s->missing->refs =
                dbld_xrealloc(s->missing->refs, (s->missing->n + 1) * sizeof *s->missing->refs);
            s->missing->refs[s->missing->n++] = dbld_xstrdup(refs->items[i]);
        }
        if (n++ < 20)
            len += (size_t)snprintf(
                msg + len, len < sizeof msg ? sizeof msg - len : 0, "%s\"%s\" (needed by \"%s\")",
                n > 1 ? ", " : "", (const char *)refs->items[i], (const char *)needed_by->items[i]);
        if (len >= sizeof msg) len = sizeof msg - 1;
    }
    if (!n) return 0;
    s->err = GS_AERR_PRECONDITION;
    return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "external partition%s not AVAILABLE: %s%s",
                           n == 1 ? "" : "s", msg, n > 20 ? " and more" : "");
}

/* Inputs of tasks [from, to): queue produced ones, check the others are
 * AVAILABLE (external or not, they are never built here). */
static int next_frontier(an *s, size_t from, size_t to, vec *refs, vec *jobs, dbld_status *st)
{
    vec unknown = {0}, needed_by = {0};
    int rc = 0;
    for (size_t t = from; t < to && !rc; t++) {
        const Databuild__V1__JobConfig *cfg = ((Databuild__V1__Task *)s->tasks.items[t])->config;
        for (size_t i = 0; i < cfg->n_inputs && !rc; i++) {
            const Databuild__V1__DataDep *d = cfg->inputs[i];
            const char *ref =
                d && d->partition_ref && d->partition_ref->str ? d->partition_ref->str : "";
            if (!*ref) {
                rc = an_fail(s, GS_AERR_CONFIGURE, st, DBLD_FAILED_PRECONDITION,
                             "job %s returned an empty input for \"%s\"",
                             ((Databuild__V1__Task *)s->tasks.items[t])->job->label,
                             cfg->outputs[0]->str);
                break;
            }
            if (gs_strmap_get(&s->produced, ref, NULL) || gs_strmap_get(&s->pending, ref, NULL) ||
                gs_strmap_get(&s->external, ref, NULL))
                continue;
            size_t job;
            rc = gs_lookup_ref(s->env->lookup, ref, &job, st);
            if (rc) {
                s->err = GS_AERR_LOOKUP;
                break;
            }
            if (job != GS_LOOKUP_NONE) {
                /* a QUERY input is read, not built: its producer is planned
                 * only when something else needs it built; its reader
                 * waits for it then, else for it to be AVAILABLE (task.c) */
                if (d->dep_type_code == DATABUILD__V1__DEP_TYPE__QUERY) continue;
                gs_strmap_put(&s->pending, ref, job);
                vec_push(refs, (void *)ref);
                vec_push(jobs, (void *)(uintptr_t)job);
                continue;
            }
            gs_strmap_put(&s->external, ref, 0);
            s->p->n_external++;
            /* never built here: it must be AVAILABLE already (graph.external
             * or not, an outside system makes it so) */
            vec_push(&unknown, (void *)ref);
            vec_push(&needed_by, (void *)cfg->outputs[0]->str);
        }
    }
    if (!rc && unknown.n) {
        int *avail = dbld_xcalloc(unknown.n, sizeof *avail);
        rc = s->env->available(s->env->user, (const char *const *)unknown.items, unknown.n, avail,
                               st);
        if (rc) {
            s->err = GS_AERR_AVAILABILITY;
            dbld_status_prefix(st, "could not check external partitions");
        }
        for (size_t i = 0; !rc && i < unknown.n; i++)
            if (!avail[i] && !gs_lookup_external(s->env->lookup, unknown.items[i]))
                rc =
                    an_fail(s, GS_AERR_PRECONDITION, st, DBLD_FAILED_PRECONDITION,
                            "partition \"%s\" (needed by \"%s\") is not produced by any job and is "
                            "not available",
                            unknown.items[i], needed_by.items[i]);
        if (!rc) rc = missing_external(s, &unknown, &needed_by, avail, st);
        free(avail);
    }
    free(unknown.items);
    free(needed_by.items);
    return rc;
}

/* Group a frontier by job, in order of first appearance. A job's refs are
 * split over several calls when they would pass CALL_ARG_BYTES of command
 * line (each ref is an argument of the job's config process, and the kernel
 * refuses an exec whose arguments pass ARG_MAX, 2 MiB by default). */
static group *make_groups(an *s, vec *refs, vec *jobs, size_t *n_groups)
{
    size_t n_jobs = gs_lookup_n_jobs(s->env->lookup);
    size_t *slot = dbld_xcalloc(n_jobs + 1, sizeof *slot);   /* position+1 of the open group */
    size_t *bytes = dbld_xcalloc(n_jobs + 1, sizeof *bytes); /* its argument bytes */
    size_t cap = n_jobs + 1, n = 0;
    group *groups = dbld_xcalloc(cap, sizeof *groups);
    for (size_t i = 0; i < refs->n; i++) {
        size_t job = (size_t)(uintptr_t)jobs->items[i];
        size_t b = strlen(refs->items[i]) + 1 + sizeof(char *);
        if (slot[job] && bytes[job] + b > CALL_ARG_BYTES) slot[job] = 0; /* full: a new call */
        if (!slot[job]) {
            if (n == cap) {
                groups = dbld_xrealloc(groups, 2 * cap * sizeof *groups);
                memset(groups + cap, 0, cap * sizeof *groups);
                cap *= 2;
            }
            groups[n].job = job;
            slot[job] = ++n;
            bytes[job] = 0;
        }
        bytes[job] += b;
        vec_push(&groups[slot[job] - 1].refs, refs->items[i]);
    }
    free(slot);
    free(bytes);
    *n_groups = n;
    return groups;
}

/* ---- dependencies and cycles ---- */

typedef struct edge {
    size_t to;
    const char *ref;
} edge;

static void build_deps(an *s, edge **edges, size_t *n_edges)
{
    gs_plan *p = s->p;
    size_t *seen = dbld_xcalloc(p->n_tasks + 1, sizeof *seen); /* last task (+1) that added it */
    for (size_t t = 0; t < p->n_tasks; t++) {
        const Databuild__V1__JobConfig *cfg = p->graph->nodes[t]->config;
        edges[t] = dbld_arena_alloc(p->a, (cfg->n_inputs + 1) * sizeof *edges[t]);
        p->deps[t] = dbld_arena_alloc(p->a, (cfg->n_inputs + 1) * sizeof *p->deps[t]);
        for (size_t i = 0; i < cfg->n_inputs; i++) {
            size_t u;
            if (!gs_strmap_get(&s->produced, cfg->inputs[i]->partition_ref->str, &u)) continue;
            edges[t][n_edges[t]++] = (edge){u, cfg->inputs[i]->partition_ref->str};
            if (seen[u] != t + 1) {
                seen[u] = t + 1;
                p->deps[t][p->n_deps[t]++] = u;
            }
        }
    }
    free(seen);
}

/* Iterative DFS; on a back edge, name the cycle in refs. */
static int find_cycle(an *s, edge **edges, size_t *n_edges, dbld_status *st)
{
    size_t n = s->p->n_tasks;
    unsigned char *color = dbld_xcalloc(n + 1, 1); /* 0 white, 1 gray, 2 black */
    size_t *stack = dbld_xcalloc(n + 1, sizeof *stack), *pos = dbld_xcalloc(n + 1, sizeof *pos);
    int rc = 0;
    for (size_t root = 0; root < n && !rc; root++) {
        if (color[root]) continue;
        size_t depth = 0;
        stack[depth] = root;
        pos[depth] = 0;
        color[root] = 1;
        while (depth != (size_t)-1 && !rc) {
            size_t t = stack[depth];
            if (pos[depth] == n_edges[t]) {
                color[t] = 2;
                depth--;
                continue;
            }
            edge e = edges[t][pos[depth]++];
            if (color[e.to] == 0) {
                depth++;
                stack[depth] = e.to;
                pos[depth] = 0;
                color[e.to] = 1;
            } else if (color[e.to] == 1) {
                size_t from = depth;
                while (stack[from] != e.to)
                    from--;
                size_t cap = strlen(e.ref) * 2 + 64, len = 0;
                for (size_t k = from; k < depth; k++)
                    cap += strlen(edges[stack[k]][pos[k] - 1].ref) + 4;
                char *path = dbld_xmalloc(cap);
                len += (size_t)snprintf(path + len, cap - len, "%s", e.ref);
                for (size_t k = from; k < depth; k++)
                    len += (size_t)snprintf(path + len, cap - len, " -> %s",
                                            edges[stack[k]][pos[k] - 1].ref);
                snprintf(path + len, cap - len, " -> %s", e.ref);
                s->err = GS_AERR_CYCLE;
                rc = dbld_status_set(st, DBLD_FAILED_PRECONDITION, "dependency cycle: %s", path);
                free(path);
            }
        }
    }
    free(color);
    free(stack);
    free(pos);
    return rc;
}

static int finish(an *s, const char *const *refs, size_t n, dbld_status *st)
{
    gs_plan *p = s->p;
    dbld_arena *a = p->a;
    p->n_tasks = s->tasks.n;
    p->graph = dbld_arena_msg(a, &databuild__v1__job_graph__descriptor);
    p->graph->label = dbld_arena_msg(a, &databuild__v1__graph_label__descriptor);
    p->graph->label->label = dbld_arena_strdup(a, s->env->graph_label ? s->env->graph_label : "");
    p->graph->outputs = dbld_arena_alloc(a, (n + 1) * sizeof *p->graph->outputs);
    gs_strmap seen;
    gs_strmap_init(&seen);
    for (size_t i = 0; i < n; i++) {
        if (gs_strmap_get(&seen, refs[i], NULL)) continue; /* a ref requested twice is one output */
        gs_strmap_put(&seen, refs[i], 0);
        Databuild__V1__PartitionRef *r =
            dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        r->str = dbld_arena_strdup(a, refs[i]);
        p->graph->outputs[p->graph->n_outputs++] = r;
    }
    gs_strmap_free(&seen);
    p->graph->n_nodes = p->n_tasks;
    p->graph->nodes = dbld_arena_alloc(a, (p->n_tasks + 1) * sizeof *p->graph->nodes);
    p->job = dbld_arena_alloc(a, (p->n_tasks + 1) * sizeof *p->job);
    p->deps = dbld_arena_alloc(a, (p->n_tasks + 1) * sizeof *p->deps);
    p->n_deps = dbld_arena_alloc(a, (p->n_tasks + 1) * sizeof *p->n_deps);
    for (size_t t = 0; t < p->n_tasks; t++) {
        p->graph->nodes[t] = s->tasks.items[t];
        p->job[t] = (size_t)(uintptr_t)s->task_job.items[t];
    }
    edge **edges = dbld_xcalloc(p->n_tasks + 1, sizeof *edges);
    size_t *n_edges = dbld_xcalloc(p->n_tasks + 1, sizeof *n_edges);
    build_deps(s, edges, n_edges);
    int rc = find_cycle(s, edges, n_edges, st);
    free(edges);
    free(n_edges);
    return rc;
}

static int start(an *s, const char *const *refs, size_t n, vec *f_refs, vec *f_jobs,
                 dbld_status *st)
{
    if (n == 0)
        return an_fail(s, GS_AERR_LOOKUP, st, DBLD_INVALID_ARGUMENT, "no partitions requested%s%s",
                       "", "");
    for (size_t i = 0; i < n; i++) {
        if (!refs[i] || !*refs[i])
            return an_fail(s, GS_AERR_LOOKUP, st, DBLD_INVALID_ARGUMENT, "empty partition ref%s%s",
                           "", "");
        if (gs_strmap_get(&s->pending, refs[i], NULL)) continue;
        size_t job;
        int rc = gs_lookup_ref(s->env->lookup, refs[i], &job, st);
        if (rc) {
            s->err = GS_AERR_LOOKUP;
            return rc;
        }
        if (job == GS_LOOKUP_NONE)
            return an_fail(s, GS_AERR_LOOKUP, st, DBLD_NOT_FOUND,
                           "no job produces partition \"%s\"%s", refs[i], "");
        gs_strmap_put(&s->pending, refs[i], job);
        vec_push(f_refs, (void *)refs[i]);
        vec_push(f_jobs, (void *)(uintptr_t)job);
    }
    return 0;
}

int gs_analyze(const gs_analyze_env *env, const char *const *refs, size_t n, gs_plan **out,
               gs_analyze_error *err, int *calls_out, gs_missing *missing, dbld_status *st)
{
    an s;
    memset(&s, 0, sizeof s);
    s.env = env;
    s.missing = missing;
    if (missing) memset(missing, 0, sizeof *missing);
    s.p = dbld_xcalloc(1, sizeof *s.p);
    s.p->a = dbld_arena_create();
    gs_strmap_init(&s.produced);
    gs_strmap_init(&s.pending);
    gs_strmap_init(&s.external);
    vec f_refs = {0}, f_jobs = {0};
    int rc = start(&s, refs, n, &f_refs, &f_jobs, st);
    while (!rc && f_refs.n) {
        if (++s.p->rounds > MAX_ROUNDS) {
            rc = an_fail(&s, GS_AERR_CONFIGURE, st, DBLD_RESOURCE_EXHAUSTED,
                         "analysis did not converge after %s rounds%s", "100000", "");
            break;
        }
        size_t n_groups, first_new = s.tasks.n;
        group *groups = make_groups(&s, &f_refs, &f_jobs, &n_groups);
        run_round(env, groups, n_groups);
        s.p->configure_calls += (int)n_groups;
        for (size_t g = 0; g < n_groups; g++) {
            if (!rc) rc = process_group(&s, &groups[g], st);
            keep_arena(s.p, groups[g].a);
            free(groups[g].refs.items);
        }
        free(groups);
        f_refs.n = f_jobs.n = 0;
        if (!rc) rc = next_frontier(&s, first_new, s.tasks.n, &f_refs, &f_jobs, st);
    }
    if (!rc) rc = finish(&s, refs, n, st);
    free(f_refs.items);
    free(f_jobs.items);
    free(s.tasks.items);
    free(s.task_job.items);
    gs_strmap_free(&s.produced);
    gs_strmap_free(&s.pending);
    gs_strmap_free(&s.external);
    if (err) *err = rc ? s.err : GS_AERR_NONE;
    if (calls_out) *calls_out = s.p->configure_calls;
    if (rc) {
        gs_plan_free(s.p);
        *out = NULL;
        return rc;
    }
    *out = s.p;
    return 0;
}

void gs_missing_free(gs_missing *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n; i++)
        free(m->refs[i]);
    free(m->refs);
    memset(m, 0, sizeof *m);
}

void gs_plan_free(gs_plan *p)
{
    if (!p) return;
    while (p->extra) {
        gs_plan_arena *next = p->extra->next;
        dbld_arena_destroy(p->extra->a);
        free(p->extra);
        p->extra = next;
    }
    dbld_arena_destroy(p->a);
    free(p);
}
