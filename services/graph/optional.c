/* optional.c - critical and optional work of a build (LUCI's critical /
 * optional tryjob definitions, issue 12).
 *
 * A job may list `optional_inputs` (regexes matched in full): an input of
 * its task that matches is optional, and a dependency edge is optional when
 * every output of the producing task that the reader takes as input is.
 * The reader of a failed or cancelled optional input still runs; its JobEvent
 * SCHEDULED says which inputs are absent. A task is *critical* when the
 * build requested one of its outputs or a critical task needs it through a
 * non-optional edge; only critical tasks gate the build's status (a failed
 * optional one is named in the COMPLETED message and in the execution state).
 */
#include "build.h"

#include "dbld/util.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ref matches one of the job's optional_inputs (in full). */
static int optional_ref(const dbld_job_def *job, const char *ref)
{
    for (size_t i = 0; i < job->n_optional_inputs; i++) {
        size_t len = strlen(job->optional_inputs[i]) + 5;
        char *anchored = dbld_xmalloc(len);
        snprintf(anchored, len, "^(%s)$", job->optional_inputs[i]);
        regex_t re;
        int ok = regcomp(&re, anchored, REG_EXTENDED | REG_NOSUB) == 0;
        free(anchored);
        int match = ok && regexec(&re, ref, 0, NULL, 0) == 0;
        if (ok) regfree(&re);
        if (match) return 1;
    }
    return 0;
}

static int is_input(const Databuild__V1__JobConfig *cfg, const char *ref)
{
    for (size_t i = 0; i < cfg->n_inputs; i++)
        if (cfg->inputs[i]->partition_ref && strcmp(cfg->inputs[i]->partition_ref->str, ref) == 0)
            return 1;
    return 0;
}

/* The edge reader -> producer is optional: every output of the producer the
 * reader reads is one of its optional inputs. */
static int edge_optional(const gs_task *reader, const gs_task *producer)
{
    if (reader->job->n_optional_inputs == 0) return 0;
    const Databuild__V1__JobConfig *out = producer->task->config;
    int any = 0;
    for (size_t o = 0; o < out->n_outputs; o++) {
        if (!is_input(reader->task->config, out->outputs[o]->str)) continue;
        if (!optional_ref(reader->job, out->outputs[o]->str)) return 0;
        any = 1;
    }
    return any;
}

static int requested(const gs_build *b, const gs_task *t)
{
    const Databuild__V1__JobConfig *cfg = t->task->config;
    for (size_t o = 0; o < cfg->n_outputs; o++)
        for (size_t r = 0; r < b->n_refs; r++)
            if (strcmp(cfg->outputs[o]->str, b->refs[r]) == 0) return 1;
    return 0;
}

void gsb_mark_optional(gs_build *b, const gs_plan *p, gs_task *tasks, size_t n)
{
    size_t *stack = dbld_xcalloc(n + 1, sizeof *stack), top = 0;
    for (size_t i = 0; i < n; i++) {
        tasks[i].dep_optional = dbld_xcalloc(p->n_deps[i] + 1, 1);
        for (size_t k = 0; k < p->n_deps[i]; k++)
            tasks[i].dep_optional[k] =
                (unsigned char)edge_optional(&tasks[i], &tasks[p->deps[i][k]]);
        if (requested(b, &tasks[i])) {
            tasks[i].critical = 1;
            stack[top++] = i;
        }
    }
    while (top) { /* critical flows down non-optional edges */
        size_t i = stack[--top];
        for (size_t k = 0; k < p->n_deps[i]; k++) {
            gs_task *d = &tasks[p->deps[i][k]];
            if (tasks[i].dep_optional[k] || d->critical) continue;
            d->critical = 1;
            stack[top++] = d->idx;
        }
    }
    free(stack);
}

char *gsb_absent_inputs(gs_task *t)
{
    gs_build *b = t->b;
    char *msg = NULL;
    size_t len = 0;
    pthread_mutex_lock(&b->mu);
    for (size_t k = 0; k < b->plan->n_deps[t->idx]; k++) {
        const gs_task *d = &b->tasks[b->plan->deps[t->idx][k]];
        if (!t->dep_optional[k] || d->state == T_OK) continue;
        const char *ref = d->task->config->n_outputs ? d->task->config->outputs[0]->str : "?";
        size_t need = len + strlen(ref) + 64;
        msg = dbld_xrealloc(msg, need);
        len += (size_t)snprintf(msg + len, need - len, "%s%s",
                                len ? ", " : "optional input absent: ", ref);
    }
    pthread_mutex_unlock(&b->mu);
    if (msg) {
        size_t need = len + 32;
        msg = dbld_xrealloc(msg, need);
        snprintf(msg + len, need - len, " (upstream failed)");
    }
    return msg;
}
