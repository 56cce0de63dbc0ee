/* lookup.c - ref -> job by the graph's output regexes (see lookup.h). */
#include "lookup.h"

#include "dbld/util.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

typedef struct pattern {
    regex_t re;
    size_t job; /* owning job, or GS_LOOKUP_NONE for an external pattern */
} pattern;

struct gs_lookup {
    const dbld_config *cfg;
    pattern *pats;
    size_t n_pats;
    pattern *ext;
    size_t n_ext;
};

static int compile(pattern *p, const char *src, size_t job, dbld_status *st)
{
    size_t len = strlen(src);
    char *anchored = dbld_xmalloc(len + 5);
    memcpy(anchored, "^(", 2);
    memcpy(anchored + 2, src, len);
    memcpy(anchored + 2 + len, ")$", 3);
    int rc = regcomp(&p->re, anchored, REG_EXTENDED | REG_NOSUB);
    free(anchored);
    if (rc != 0) {
        char err[128];
        regerror(rc, &p->re, err, sizeof err);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "invalid pattern \"%s\": %s", src, err);
    }
    p->job = job;
    return 0;
}

int gs_lookup_create(const dbld_config *cfg, gs_lookup **out, dbld_status *st)
{
    gs_lookup *l = dbld_xcalloc(1, sizeof *l);
    l->cfg = cfg;
    size_t n = 0;
    for (size_t j = 0; j < cfg->graph.n_jobs; j++)
        n += cfg->graph.jobs[j].n_outputs;
    l->pats = dbld_xcalloc(n + 1, sizeof *l->pats);
    l->ext = dbld_xcalloc(cfg->graph.n_external + 1, sizeof *l->ext);
    for (size_t j = 0; j < cfg->graph.n_jobs; j++) {
        const dbld_job_def *jd = &cfg->graph.jobs[j];
        for (size_t k = 0; k < jd->n_outputs; k++) {
            if (compile(&l->pats[l->n_pats], jd->outputs[k], j, st) != 0) {
                dbld_status_prefix(st, "graph.jobs[%zu] (%s)", j, jd->label);
                gs_lookup_destroy(l);
                return st->code;
            }
            l->n_pats++;
        }
    }
    for (size_t k = 0; k < cfg->graph.n_external; k++) {
        if (compile(&l->ext[l->n_ext], cfg->graph.external[k], GS_LOOKUP_NONE, st) != 0) {
            dbld_status_prefix(st, "graph.external[%zu]", k);
            gs_lookup_destroy(l);
            return st->code;
        }
        l->n_ext++;
    }
    *out = l;
    return 0;
}

void gs_lookup_destroy(gs_lookup *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->n_pats; i++)
        regfree(&l->pats[i].re);
    for (size_t i = 0; i < l->n_ext; i++)
        regfree(&l->ext[i].re);
    free(l->pats);
    free(l->ext);
    free(l);
}

size_t gs_lookup_n_jobs(const gs_lookup *l)
{
    return l->cfg->graph.n_jobs;
}

const dbld_job_def *gs_lookup_job(const gs_lookup *l, size_t job)
{
    return job < l->cfg->graph.n_jobs ? &l->cfg->graph.jobs[job] : NULL;
}

int gs_lookup_ref(const gs_lookup *l, const char *ref, size_t *job, dbld_status *st)
{
    *job = GS_LOOKUP_NONE;
    for (size_t i = 0; i < l->n_pats; i++) {
        const pattern *p = &l->pats[i];
        if (p->job == *job || regexec(&p->re, ref, 0, NULL, 0) != 0) continue;
        if (*job != GS_LOOKUP_NONE) {
            const char *a = l->cfg->graph.jobs[*job].label, *b = l->cfg->graph.jobs[p->job].label;
            *job = GS_LOOKUP_NONE;
            return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                   "partition \"%s\" is produced by two jobs: %s and %s", ref, a,
                                   b);
        }
        *job = p->job;
    }
    return 0;
}

int gs_lookup_external(const gs_lookup *l, const char *ref)
{
    for (size_t i = 0; i < l->n_ext; i++)
        if (regexec(&l->ext[i].re, ref, 0, NULL, 0) == 0) return 1;
    return 0;
}

int gs_lookup_group(const gs_lookup *l, const char *const *refs, size_t n, dbld_arena *a,
                    Databuild__V1__GraphLookupResponse **out, dbld_status *st)
{
    size_t n_jobs = gs_lookup_n_jobs(l);
    Databuild__V1__TaskRef **by_job = dbld_arena_alloc(a, (n_jobs + 1) * sizeof *by_job);
    Databuild__V1__GraphLookupResponse *resp =
        dbld_arena_msg(a, &databuild__v1__graph_lookup_response__descriptor);
    resp->task_refs = dbld_arena_alloc(a, (n_jobs + 1) * sizeof *resp->task_refs);
    for (size_t i = 0; i < n; i++) {
        size_t job;
        int rc = gs_lookup_ref(l, refs[i], &job, st);
        if (rc) return rc;
        if (job == GS_LOOKUP_NONE)
            return dbld_status_set(st, DBLD_NOT_FOUND, "no job produces partition \"%s\"", refs[i]);
        Databuild__V1__TaskRef *tr = by_job[job];
        if (!tr) {
            tr = by_job[job] = dbld_arena_msg(a, &databuild__v1__task_ref__descriptor);
            tr->job = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
            tr->job->label = l->cfg->graph.jobs[job].label;
            tr->outputs = dbld_arena_alloc(a, (n + 1) * sizeof *tr->outputs);
            resp->task_refs[resp->n_task_refs++] = tr;
        }
        Databuild__V1__PartitionRef *r =
            dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        r->str = (char *)refs[i];
        tr->outputs[tr->n_outputs++] = r;
    }
    *out = resp;
    return 0;
}
