/* jobs.c - graph.jobs compiled for lookups (see jobs.h). */
#include "jobs.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int job_table_init(job_table *t, const dbld_config *cfg, dbld_status *st)
{
    memset(t, 0, sizeof *t);
    int rc = dbld_outputs_create(cfg, &t->outs, st);
    if (rc) return rc;
    t->jobs = dbld_xcalloc(cfg->graph.n_jobs + 1, sizeof *t->jobs);
    for (size_t i = 0; i < cfg->graph.n_jobs; i++)
        t->jobs[i].def = &cfg->graph.jobs[i];
    t->n = cfg->graph.n_jobs;
    return 0;
}

void job_table_free(job_table *t)
{
    dbld_outputs_destroy(t->outs);
    free(t->jobs);
    memset(t, 0, sizeof *t);
}

const job_entry *job_find(const job_table *t, const char *label)
{
    for (size_t i = 0; label && i < t->n; i++)
        if (strcmp(t->jobs[i].def->label, label) == 0) return &t->jobs[i];
    return NULL;
}

int job_resolve(const job_table *t, const char *const *refs, size_t n, const job_entry **out,
                dbld_status *st)
{
    *out = NULL;
    if (n == 0) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no output refs given");
    const job_entry **owner = dbld_xcalloc(n, sizeof *owner);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        size_t job = DBLD_OUTPUTS_NONE;
        if (!refs[i] || !*refs[i])
            rc = dbld_status_set(st, DBLD_INVALID_ARGUMENT, "output ref %zu is empty", i);
        else if ((rc = dbld_outputs_job(t->outs, refs[i], &job, st)) != 0)
            break;
        else if (job == DBLD_OUTPUTS_NONE)
            rc = dbld_status_set(st, DBLD_NOT_FOUND, "no job produces ref \"%s\"", refs[i]);
        else
            owner[i] = &t->jobs[job];
    }
    size_t other = 0;
    for (size_t i = 1; i < n && !rc && !other; i++)
        if (owner[i] != owner[0]) other = i;
    if (!rc && other) {
        /* Name every ref with its job, as far as the message reaches. */
        char list[DBLD_STATUS_MSG_MAX];
        size_t len = 0;
        for (size_t i = 0; i < n && len < sizeof list; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s\"%s\" -> %s", i ? ", " : "",
                                    refs[i], owner[i]->def->label);
        rc = dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                             "refs belong to more than one job (%s, %s): %s; "
                             "configure each job's refs separately",
                             owner[0]->def->label, owner[other]->def->label, list);
    }
    if (!rc) *out = owner[0];
    free(owner);
    return rc;
}

static int code_listed(char *const *codes, size_t n, int code)
{
    for (size_t i = 0; i < n; i++)
        if (atoi(codes[i]) == code) return 1;
    return 0;
}

int job_exit_is_transient(const job_entry *j, int code)
{
    return code_listed(j->def->transient_exit_codes, j->def->n_transient_exit_codes, code);
}

int job_exit_denies_retry(const job_entry *j, int code)
{
    return code_listed(j->def->no_retry_exit_codes, j->def->n_no_retry_exit_codes, code);
}

char *job_refs_str(dbld_arena *a, const char *const *refs, size_t n, size_t max)
{
    size_t cap = 64, len = 0;
    size_t shown = n < max ? n : max;
    for (size_t i = 0; i < shown; i++)
        cap += strlen(refs[i]) + 2;
    char *s = dbld_arena_alloc(a, cap);
    for (size_t i = 0; i < shown; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%s", i ? ", " : "", refs[i]);
    if (n > shown) snprintf(s + len, cap - len, " and %zu more", n - shown);
    return s;
}
