/* outputs.c - ref -> job through the graph's compiled output patterns (see outputs.h).
 *
 * One flat array of compiled patterns, each with its job, in file order; a
 * lookup tries them all so that a second matching job is noticed.
 */
#include "dbld/outputs.h"

#include "dbld/rxoverlap.h"
#include "dbld/util.h"

#include <regex.h>
#include <stdlib.h>

typedef struct pattern {
    regex_t re;
    size_t job; /* owning job, or DBLD_OUTPUTS_NONE for an external pattern */
} pattern;

struct dbld_outputs {
    const dbld_config *cfg;
    pattern *pats; /* job output patterns */
    size_t n_pats;
    pattern *ext; /* graph.external */
    size_t n_ext;
};

int dbld_outputs_create(const dbld_config *cfg, dbld_outputs **out, dbld_status *st)
{
    dbld_outputs *o = dbld_xcalloc(1, sizeof *o);
    o->cfg = cfg;
    size_t n = 0;
    for (size_t j = 0; j < cfg->graph.n_jobs; j++)
        n += cfg->graph.jobs[j].n_outputs;
    o->pats = dbld_xcalloc(n + 1, sizeof *o->pats);
    o->ext = dbld_xcalloc(cfg->graph.n_external + 1, sizeof *o->ext);
    *out = NULL;
    for (size_t j = 0; j < cfg->graph.n_jobs; j++) {
        const dbld_job_def *jd = &cfg->graph.jobs[j];
        for (size_t k = 0; k < jd->n_outputs; k++) {
            if (dbld_rx_regcomp(&o->pats[o->n_pats].re, jd->outputs[k], st) != 0) {
                dbld_status_prefix(st, "graph.jobs[%zu] (%s)", j, jd->label);
                dbld_outputs_destroy(o);
                return DBLD_INVALID_ARGUMENT;
            }
            o->pats[o->n_pats++].job = j;
        }
    }
    for (size_t k = 0; k < cfg->graph.n_external; k++) {
        if (dbld_rx_regcomp(&o->ext[o->n_ext].re, cfg->graph.external[k], st) != 0) {
            dbld_status_prefix(st, "graph.external[%zu]", k);
            dbld_outputs_destroy(o);
            return DBLD_INVALID_ARGUMENT;
        }
        o->ext[o->n_ext++].job = DBLD_OUTPUTS_NONE;
    }
    *out = o;
    return 0;
}

void dbld_outputs_destroy(dbld_outputs *o)
{
    if (!o) return;
    for (size_t i = 0; i < o->n_pats; i++)
        regfree(&o->pats[i].re);
    for (size_t i = 0; i < o->n_ext; i++)
        regfree(&o->ext[i].re);
    free(o->pats);
    free(o->ext);
    free(o);
}

int dbld_outputs_job(const dbld_outputs *o, const char *ref, size_t *job, dbld_status *st)
{
    *job = DBLD_OUTPUTS_NONE;
    for (size_t i = 0; i < o->n_pats; i++) {
        const pattern *p = &o->pats[i];
        if (p->job == *job || regexec(&p->re, ref, 0, NULL, 0) != 0) continue;
        if (*job != DBLD_OUTPUTS_NONE) {
            const char *a = o->cfg->graph.jobs[*job].label, *b = o->cfg->graph.jobs[p->job].label;
            *job = DBLD_OUTPUTS_NONE;
            return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                   "partition \"%s\" is produced by two jobs: %s and %s", ref, a,
                                   b);
        }
        *job = p->job;
    }
    return 0;
}

int dbld_outputs_external(const dbld_outputs *o, const char *ref)
{
    for (size_t i = 0; i < o->n_ext; i++)
        if (regexec(&o->ext[i].re, ref, 0, NULL, 0) == 0) return 1;
    return 0;
}
