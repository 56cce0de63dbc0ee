/* lookup.c - ref -> job by the graph's output regexes (see lookup.h). */
#include "lookup.h"

#include "dbld/util.h"

#include <stdlib.h>

struct gs_lookup {
    const dbld_config *cfg;
    dbld_outputs *outs;
};

int gs_lookup_create(const dbld_config *cfg, gs_lookup **out, dbld_status *st)
{
    dbld_outputs *outs;
    int rc = dbld_outputs_create(cfg, &outs, st);
    if (rc) return rc;
    gs_lookup *l = dbld_xcalloc(1, sizeof *l);
    l->cfg = cfg;
    l->outs = outs;
    *out = l;
    return 0;
}

void gs_lookup_destroy(gs_lookup *l)
{
    if (!l) return;
    dbld_outputs_destroy(l->outs);
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
    return dbld_outputs_job(l->outs, ref, job, st);
}

int gs_lookup_external(const gs_lookup *l, const char *ref)
{
    return dbld_outputs_external(l->outs, ref);
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
