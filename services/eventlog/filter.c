/* filter.c - EventFilter in memory: each string field becomes a sorted array
 * (binary search), each pattern a compiled regex_t. A filter lives as long
 * as its Subscribe stream and is only read after el_filter_compile(). */
#include "filter.h"
#include "dbld/arena.h"
#include "dbld/rxoverlap.h"
#include "dbld/util.h"

#include <ctype.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

typedef struct strs {
    char **v; /* sorted */
    size_t n;
} strs;

struct el_filter {
    dbld_arena *arena; /* the value copies */
    strs refs, labels, runs, builds;
    int32_t *kinds; /* in the arena; none: every kind */
    size_t n_kinds;
    regex_t *pats;
    size_t n_pats;
};

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static strs sorted_copy(dbld_arena *a, char *const *v, size_t n)
{
    strs s = {.v = dbld_arena_alloc(a, (n + 1) * sizeof *s.v), .n = n};
    for (size_t i = 0; i < n; i++)
        s.v[i] = dbld_arena_strdup(a, v[i] ? v[i] : "");
    qsort(s.v, n, sizeof *s.v, cmp_str);
    return s;
}

static int has(const strs *s, const char *key)
{
    return bsearch(&key, s->v, s->n, sizeof *s->v, cmp_str) != NULL;
}

/* A field constrains unless empty: does any of the event's values pass? */
static int any_in(const strs *s, const char *const *vals, size_t n)
{
    if (!s->n) return 1;
    for (size_t i = 0; i < n; i++)
        if (has(s, vals[i])) return 1;
    return 0;
}

/* The reason pattern p cannot be used, or NULL: an escape that POSIX and
 * PostgreSQL read differently (\d is a digit to PostgreSQL, a `d` to glibc),
 * also inside [], where PostgreSQL reads escapes and POSIX does not), or a
 * `)` without its `(` (the anchoring "^(p)$" would then match a prefix or a
 * suffix only; a `)` inside [] is literal in both). */
static const char *pattern_problem(const char *p)
{
    int depth = 0;
    for (size_t i = 0; p[i]; i++) {
        char c = p[i];
        if (c == '\\') {
            char e = p[i + 1];
            if (!e) return "it ends in a backslash";
            if (isalpha((unsigned char)e) && !strchr("wWsS", e))
                return "a backslash before a letter other than w, W, s, S means different things "
                       "to POSIX and PostgreSQL regexes (write [0-9] for \\d)";
            i++;
        } else if (c == '[') {
            size_t j = i + 1;
            if (p[j] == '^') j++;
            if (p[j] == ']') j++; /* a leading ] is literal */
            while (p[j] && p[j] != ']') {
                if (p[j] == '[' && (p[j + 1] == ':' || p[j + 1] == '.' || p[j + 1] == '=')) {
                    const char *end = strchr(p + j + 2, p[j + 1]);
                    if (!end || end[1] != ']') return "a bracket expression is not closed";
                    j = (size_t)(end - p) + 2;
                } else if (p[j] == '\\' && isalpha((unsigned char)p[j + 1])) {
                    return "a backslash before a letter inside [] is an escape to PostgreSQL and "
                           "two characters to POSIX regexes";
                } else {
                    j++;
                }
            }
            if (!p[j]) return "a bracket expression is not closed";
            i = j;
        } else if (c == '(') {
            depth++;
        } else if (c == ')' && --depth < 0) {
            return "it has a ')' without its '('";
        }
    }
    return NULL;
}

static int compile_pattern(regex_t *re, size_t i, const char *p, dbld_status *st)
{
    size_t len = strlen(p);
    if (len > EL_PATTERN_MAX)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "partition_patterns[%zu] is %zu bytes long, the limit is %d", i, len,
                               EL_PATTERN_MAX);
    const char *why = pattern_problem(p);
    if (why)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "invalid partition pattern \"%.200s\": %s", p, why);
    if (dbld_rx_regcomp(re, p, st) != 0) {
        dbld_status_prefix(st, "partition_patterns[%zu]", i);
        return DBLD_INVALID_ARGUMENT;
    }
    return 0;
}

int el_kinds_check(const int32_t *kinds, size_t n_kinds, const char *field, dbld_status *st)
{
    for (size_t i = 0; i < n_kinds; i++)
        if (strcmp(el_kind_name(kinds[i]), "unknown") == 0)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "%s[%zu] is %d, which is no BuildEvent kind (event_type field "
                                   "numbers: 10 build_request_event ... 19 taint_event, %d "
                                   "process_run_event, %d execution_event)",
                                   field, i, (int)kinds[i],
                                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT,
                                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT);
    return 0;
}

int el_filter_compile(const Databuild__V1__EventFilter *f, const int32_t *kinds, size_t n_kinds,
                      el_filter **out, dbld_status *st)
{
    *out = NULL;
    int rc = el_kinds_check(kinds, n_kinds, "kinds", st);
    if (rc) return rc;
    el_filter *ef = dbld_xcalloc(1, sizeof *ef);
    ef->arena = dbld_arena_create();
    ef->kinds = dbld_arena_alloc(ef->arena, (n_kinds + 1) * sizeof *ef->kinds);
    if (n_kinds) memcpy(ef->kinds, kinds, n_kinds * sizeof *kinds);
    ef->n_kinds = n_kinds;
    if (!f) {
        *out = ef;
        return 0;
    }
    ef->refs = sorted_copy(ef->arena, f->partition_refs, f->n_partition_refs);
    ef->labels = sorted_copy(ef->arena, f->job_labels, f->n_job_labels);
    ef->runs = sorted_copy(ef->arena, f->job_run_ids, f->n_job_run_ids);
    ef->builds = sorted_copy(ef->arena, f->build_request_ids, f->n_build_request_ids);
    ef->pats = dbld_xcalloc(f->n_partition_patterns + 1, sizeof *ef->pats);
    for (size_t i = 0; i < f->n_partition_patterns; i++) {
        rc = compile_pattern(&ef->pats[i], i, f->partition_patterns[i], st);
        if (rc) {
            el_filter_free(ef);
            return rc;
        }
        ef->n_pats++;
    }
    *out = ef;
    return 0;
}

void el_filter_free(el_filter *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_pats; i++)
        regfree(&f->pats[i]);
    free(f->pats);
    dbld_arena_destroy(f->arena);
    free(f);
}

static int any_ref_matches(const el_filter *f, const el_fields *e)
{
    if (!f->n_pats) return 1;
    for (size_t r = 0; r < e->n_refs; r++)
        for (size_t p = 0; p < f->n_pats; p++)
            if (regexec(&f->pats[p], e->refs[r], 0, NULL, 0) == 0) return 1;
    return 0;
}

static int kind_in(const el_filter *f, int kind)
{
    if (!f->n_kinds) return 1;
    for (size_t i = 0; i < f->n_kinds; i++)
        if (f->kinds[i] == kind) return 1;
    return 0;
}

int el_filter_match(const el_filter *f, const el_fields *e)
{
    if (!kind_in(f, e->kind)) return 0;
    const char *br = e->build_request_id ? e->build_request_id : "";
    return any_in(&f->builds, &br, 1) && any_in(&f->refs, e->refs, e->n_refs) &&
           any_in(&f->labels, e->labels, e->n_labels) && any_in(&f->runs, e->runs, e->n_runs) &&
           any_ref_matches(f, e);
}

void el_filter_without_patterns(const Databuild__V1__EventFilter *f,
                                Databuild__V1__EventFilter *out)
{
    Databuild__V1__EventFilter empty = DATABUILD__V1__EVENT_FILTER__INIT;
    *out = f ? *f : empty;
    out->partition_patterns = NULL;
    out->n_partition_patterns = 0;
}
