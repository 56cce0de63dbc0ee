/* config_schema.c - YAML text -> node tree -> struct, driven by dbld__cfg_key tables.
 *
 * Two passes. First libyaml's event parser builds a small tree of nodes in an
 * arena, each remembering its start mark; we use events rather than the
 * document API because the document API silently resolves aliases, and we
 * want to reject them (an anchor followed by `<<: *x` merges is too clever for
 * a config file and hides where a value came from). Then the tree is walked
 * against the schema, which checks every key and value and writes the struct.
 * Errors stop at the first problem and name file:line:column and the key path.
 */
#include "config_schema.h"

#include "dbld/arena.h"
#include "dbld/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64 /* nesting limit while building the tree (stack safety) */
#define PATH_MAX_LEN 256

/* ---- the node tree ---- */

typedef enum { N_SCALAR, N_MAP, N_SEQ, N_ALIAS } node_kind;

typedef struct node {
    node_kind kind;
    int line, col;    /* 1-based */
    int is_null;      /* plain scalar "", "~", "null" (or tagged !!null) */
    const char *text; /* scalar value or alias name, NUL-terminated */
    size_t len;
    struct node **kids; /* SEQ: items; MAP: key0, value0, key1, value1, ... */
    size_t n, cap;
} node;

typedef struct {
    yaml_parser_t parser;
    dbld_arena *arena;
    const char *name, *text;
    size_t len;
    dbld_status *st;
} reader;

static int at_error(dbld_status *st, const char *name, int line, int col, const char *path,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int at_error(dbld_status *st, const char *name, int line, int col, const char *path,
                    const char *fmt, ...)
{
    char problem[DBLD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s:%d:%d: %s%s%s", name, line, col,
                           path ? path : "", path && path[0] ? ": " : "", problem);
}

/* libyaml reports reader errors (bad UTF-8, control characters) by byte offset only. */
static void offset_to_mark(const reader *r, size_t off, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < r->len; i++) {
        if (r->text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int yaml_failed(reader *r)
{
    const yaml_parser_t *p = &r->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return dbld_status_set(r->st, DBLD_RESOURCE_EXHAUSTED, "%s: out of memory parsing YAML",
                               r->name);
    case YAML_READER_ERROR:
        offset_to_mark(r, p->problem_offset, &line, &col);
        return at_error(r->st, r->name, line, col, NULL, "invalid YAML: %s", problem);
    default:
        if (p->context)
            return at_error(r->st, r->name, line, col, NULL,
                            "invalid YAML: %s (%s at line %d, column %d)", problem, p->context,
                            (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
        return at_error(r->st, r->name, line, col, NULL, "invalid YAML: %s", problem);
    }
}

static int next_event(reader *r, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&r->parser, ev)) return yaml_failed(r);
    return 0;
}

static node *node_new(reader *r, node_kind kind, const yaml_mark_t *mark)
{
    node *n = dbld_arena_alloc(r->arena, sizeof *n);
    n->kind = kind;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    return n;
}

static void node_push(reader *r, node *parent, node *kid)
{
    if (parent->n == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 8;
        node **grown = dbld_arena_alloc(r->arena, cap * sizeof *grown);
        if (parent->n) memcpy(grown, parent->kids, parent->n * sizeof *grown);
        parent->kids = grown;
        parent->cap = cap;
    }
    parent->kids[parent->n++] = kid;
}

static int plain_null(const yaml_event_t *ev)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag && strcmp(tag, YAML_NULL_TAG) == 0) return 1;
    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || tag) return 0;
    const char *v = (const char *)ev->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* Build the node that starts with *ev (consumed here) and everything under it. */
static int build(reader *r, yaml_event_t *ev, int depth, node **out)
{
    node *n;
    node_kind kind;
    yaml_event_type_t end;
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(r, N_SCALAR, &ev->start_mark);
        n->len = ev->data.scalar.length;
        n->text = dbld_arena_strndup(r->arena, (const char *)ev->data.scalar.value, n->len);
        n->is_null = plain_null(ev);
        yaml_event_delete(ev);
        *out = n;
        return 0;
    case YAML_ALIAS_EVENT:
        n = node_new(r, N_ALIAS, &ev->start_mark);
        n->text = dbld_arena_strdup(r->arena, (const char *)ev->data.alias.anchor);
        yaml_event_delete(ev);
        *out = n;
        return 0;
    case YAML_MAPPING_START_EVENT:
        kind = N_MAP;
        end = YAML_MAPPING_END_EVENT;
        break;
    case YAML_SEQUENCE_START_EVENT:
        kind = N_SEQ;
        end = YAML_SEQUENCE_END_EVENT;
        break;
    default: {
        int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
        yaml_event_delete(ev);
        return at_error(r->st, r->name, line, col, NULL, "invalid YAML: unexpected event");
    }
    }
    n = node_new(r, kind, &ev->start_mark);
    yaml_event_delete(ev);
    if (depth >= MAX_DEPTH)
        return at_error(r->st, r->name, n->line, n->col, NULL,
                        "invalid YAML: nesting deeper than %d levels", MAX_DEPTH);
    for (;;) {
        yaml_event_t kid_ev;
        int rc = next_event(r, &kid_ev);
        if (rc) return rc;
        if (kid_ev.type == end) {
            yaml_event_delete(&kid_ev);
            break;
        }
        node *kid;
        rc = build(r, &kid_ev, depth + 1, &kid);
        if (rc) return rc;
        node_push(r, n, kid);
    }
    *out = n;
    return 0;
}

/* Parse the stream into *root (NULL for an empty stream). At most one document. */
static int load_tree(reader *r, node **root)
{
    yaml_event_t ev;
    int rc;
    *root = NULL;
    if ((rc = next_event(r, &ev))) return rc;
    yaml_event_delete(&ev); /* STREAM_START */
    for (int docs = 0;; docs++) {
        if ((rc = next_event(r, &ev))) return rc;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return 0;
        }
        if (docs > 0) {
            int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
            yaml_event_delete(&ev);
            return at_error(r->st, r->name, line, col, NULL,
                            "only one YAML document is allowed in a config file");
        }
        yaml_event_delete(&ev); /* DOCUMENT_START */
        if ((rc = next_event(r, &ev)) || (rc = build(r, &ev, 0, root))) return rc;
        if ((rc = next_event(r, &ev))) return rc;
        yaml_event_delete(&ev); /* DOCUMENT_END */
    }
}

/* ---- walking the tree against a schema ---- */

typedef struct {
    const char *name;
    dbld_status *st;
} walker;

static int fail(walker *w, const node *at, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(walker *w, const node *at, const char *path, const char *fmt, ...)
{
    char problem[DBLD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    return at_error(w->st, w->name, at->line, at->col, path, "%s", problem);
}

/* "a mapping", "null", "\"text\"" (quoted, escaped, shortened) for messages. */
static const char *describe(const node *n, char *buf, size_t cap)
{
    switch (n->kind) {
    case N_MAP:
        return "a mapping";
    case N_SEQ:
        return "a sequence";
    case N_ALIAS:
        return "an alias";
    case N_SCALAR:
        break;
    }
    if (n->is_null) return "null";
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n->len && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)n->text[i];
        if (i == 40) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static void join_path(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_MAX_LEN, "%s%s%s", path, path[0] ? "." : "", key);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int unknown_key(walker *w, const node *key, const char *path, const dbld__cfg_key *schema)
{
    char hint[128] = "", list[512];
    size_t best = (size_t)-1, o = 0;
    const char *closest = NULL;
    list[0] = '\0';
    for (const dbld__cfg_key *k = schema; k->name; k++) {
        size_t d = edit_distance(key->text, k->name);
        if (d < best) {
            best = d;
            closest = k->name;
        }
        int m = snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", k->name);
        if (m > 0 && (size_t)m < sizeof list - o) o += (size_t)m;
    }
    size_t klen = strlen(key->text);
    if (closest && best > 0 && best <= (klen < 6 ? 2 : klen / 3))
        snprintf(hint, sizeof hint, "did you mean \"%s\"? ", closest);
    char buf[128];
    return fail(w, key, path, "unknown key %s (%sexpected one of: %s)",
                describe(key, buf, sizeof buf), hint, list);
}

static int walk_mapping(walker *w, const dbld__cfg_key *schema, void *base, const node *map,
                        const char *path);

static int no_alias(walker *w, const node *n, const char *path)
{
    if (n->kind == N_ALIAS)
        return fail(w, n, path, "YAML aliases are not supported (*%s)", n->text);
    return 0;
}

static int expect_scalar(walker *w, const node *n, const char *path, const char *what)
{
    char buf[128];
    int rc = no_alias(w, n, path);
    if (rc) return rc;
    if (n->kind != N_SCALAR || n->is_null)
        return fail(w, n, path, "expected %s, got %s", what, describe(n, buf, sizeof buf));
    return 0;
}

static int get_string(walker *w, const dbld__cfg_key *k, const node *n, const char *path,
                      char **out)
{
    int rc = expect_scalar(w, n, path, "a string");
    if (rc) return rc;
    if (memchr(n->text, '\0', n->len))
        return fail(w, n, path, "strings may not contain NUL characters");
    char why[512];
    if (k->check && k->check(n->text, why, sizeof why)) return fail(w, n, path, "%s", why);
    *out = dbld_xstrdup(n->text);
    return 0;
}

static int set_int(walker *w, const dbld__cfg_key *k, const node *n, const char *path, int *out)
{
    char buf[128];
    int rc = expect_scalar(w, n, path, "an integer");
    if (rc) return rc;
    const char *s = n->text;
    size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (s[i] == '\0' || strspn(s + i, "0123456789") != strlen(s + i))
        return fail(w, n, path, "expected an integer, got %s", describe(n, buf, sizeof buf));
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v < k->min || v > k->max)
        return fail(w, n, path, "%s is out of range (expected %lld..%lld)", s, k->min, k->max);
    *out = (int)v;
    return 0;
}

static int set_bool(walker *w, const node *n, const char *path, int *out)
{
    char buf[128];
    int rc = expect_scalar(w, n, path, "a boolean");
    if (rc) return rc;
    static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False",
                                                                              "FALSE"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(n->text, yes[i]) == 0 || strcmp(n->text, no[i]) == 0) {
            *out = strcmp(n->text, yes[i]) == 0;
            return 0;
        }
    }
    return fail(w, n, path, "expected a boolean (true or false), got %s",
                describe(n, buf, sizeof buf));
}

static void free_strlist(char ***arr, size_t *n)
{
    for (size_t i = 0; i < *n; i++)
        free((*arr)[i]);
    free(*arr);
    *arr = NULL;
    *n = 0;
}

static int set_strlist(walker *w, const dbld__cfg_key *k, const node *n, const char *path,
                       char ***arr, size_t *count)
{
    char buf[128], item_path[PATH_MAX_LEN];
    int rc = no_alias(w, n, path);
    if (rc) return rc;
    if (n->kind == N_MAP || (n->kind == N_SCALAR && n->is_null))
        return fail(w, n, path, "expected a list of strings, got %s", describe(n, buf, sizeof buf));
    const node *const *items = n->kind == N_SEQ ? (const node *const *)n->kids : &n;
    size_t m = n->kind == N_SEQ ? n->n : 1;
    if ((long long)m < k->min)
        return fail(w, n, path, "expected at least %lld item%s, got %zu", k->min,
                    k->min == 1 ? "" : "s", m);
    char **out = dbld_xcalloc(m ? m : 1, sizeof *out);
    for (size_t i = 0; i < m; i++) {
        if (n->kind == N_SEQ)
            snprintf(item_path, sizeof item_path, "%.200s[%zu]", path, i);
        else
            snprintf(item_path, sizeof item_path, "%s", path);
        if ((rc = get_string(w, k, items[i], item_path, &out[i]))) {
            free_strlist(&out, &i);
            return rc;
        }
    }
    free_strlist(arr, count);
    *arr = out;
    *count = m;
    return 0;
}

static int set_list(walker *w, const dbld__cfg_key *k, const node *n, const char *path, void **arr,
                    size_t *count)
{
    char buf[128], item_path[PATH_MAX_LEN];
    int rc = no_alias(w, n, path);
    if (rc) return rc;
    int empty = n->kind == N_SCALAR && n->is_null;
    if (n->kind != N_SEQ && !empty)
        return fail(w, n, path, "expected a list of mappings, got %s",
                    describe(n, buf, sizeof buf));
    size_t m = empty ? 0 : n->n;
    if ((long long)m < k->min)
        return fail(w, n, path, "expected at least %lld item%s, got %zu", k->min,
                    k->min == 1 ? "" : "s", m);
    /* Replace the old list first so a failure below leaves a consistent, freeable struct. */
    for (size_t i = 0; i < *count; i++)
        dbld__cfg_free(k->sub, (char *)*arr + i * k->elem_size);
    free(*arr);
    *arr = dbld_xcalloc(m ? m : 1, k->elem_size);
    *count = 0;
    for (size_t i = 0; i < m; i++) {
        void *elem = (char *)*arr + i * k->elem_size;
        dbld__cfg_defaults(k->sub, elem);
        *count = i + 1;
        snprintf(item_path, sizeof item_path, "%.200s[%zu]", path, i);
        const node *item = n->kids[i];
        if (item->kind != N_MAP) {
            if ((rc = no_alias(w, item, item_path))) return rc;
            return fail(w, item, item_path, "expected a mapping, got %s",
                        describe(item, buf, sizeof buf));
        }
        if ((rc = walk_mapping(w, k->sub, elem, item, item_path))) return rc;
    }
    return 0;
}

static int walk_value(walker *w, const dbld__cfg_key *k, void *base, const node *n,
                      const char *path)
{
    void *field = (char *)base + k->offset;
    switch (k->type) {
    case DBLD__CFG_STRING: {
        char *s;
        int rc = get_string(w, k, n, path, &s);
        if (rc) return rc;
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    }
    case DBLD__CFG_INT:
        return set_int(w, k, n, path, field);
    case DBLD__CFG_BOOL:
        return set_bool(w, n, path, field);
    case DBLD__CFG_STRLIST:
        return set_strlist(w, k, n, path, field, (size_t *)((char *)base + k->count_offset));
    case DBLD__CFG_SECTION:
        return walk_mapping(w, k->sub, field, n, path);
    case DBLD__CFG_LIST:
        return set_list(w, k, n, path, field, (size_t *)((char *)base + k->count_offset));
    }
    return fail(w, n, path, "internal error: unknown schema type %d", (int)k->type);
}

static int walk_mapping(walker *w, const dbld__cfg_key *schema, void *base, const node *map,
                        const char *path)
{
    char buf[128], key_path[PATH_MAX_LEN];
    int rc = no_alias(w, map, path);
    if (rc) return rc;
    if (map->kind == N_SCALAR && map->is_null)
        return 0; /* `section:` with nothing under it: all defaults */
    if (map->kind != N_MAP) {
        if (!path[0])
            return fail(w, map, path, "expected a mapping at the top level, got %s",
                        describe(map, buf, sizeof buf));
        return fail(w, map, path, "expected a mapping, got %s", describe(map, buf, sizeof buf));
    }
    uint64_t seen = 0;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const node *key = map->kids[i], *val = map->kids[i + 1];
        if ((rc = no_alias(w, key, path))) return rc;
        if (key->kind != N_SCALAR)
            return fail(w, key, path, "keys must be strings, got %s",
                        describe(key, buf, sizeof buf));
        size_t idx = 0;
        while (schema[idx].name && strcmp(schema[idx].name, key->text) != 0)
            idx++;
        if (!schema[idx].name) return unknown_key(w, key, path, schema);
        join_path(key_path, path, key->text);
        if (idx < 64 && (seen & (UINT64_C(1) << idx))) {
            for (size_t j = 0; j < i; j += 2) {
                if (strcmp(map->kids[j]->text, key->text) == 0)
                    return fail(w, key, key_path, "duplicate key (first set at line %d, column %d)",
                                map->kids[j]->line, map->kids[j]->col);
            }
        }
        if (idx < 64) seen |= UINT64_C(1) << idx;
        if ((rc = walk_value(w, &schema[idx], base, val, key_path))) return rc;
    }
    for (size_t idx = 0; schema[idx].name && idx < 64; idx++) {
        if ((schema[idx].flags & DBLD__CFG_REQUIRED) && !(seen & (UINT64_C(1) << idx)))
            return fail(w, map, path, "missing required key \"%s\"", schema[idx].name);
    }
    return 0;
}

/* ---- public (to config.c) entry points ---- */

void dbld__cfg_defaults(const dbld__cfg_key *schema, void *base)
{
    for (const dbld__cfg_key *k = schema; k->name; k++) {
        void *field = (char *)base + k->offset;
        switch (k->type) {
        case DBLD__CFG_STRING:
            *(char **)field = k->def_str ? dbld_xstrdup(k->def_str) : NULL;
            break;
        case DBLD__CFG_INT:
        case DBLD__CFG_BOOL:
            *(int *)field = (int)k->def_int;
            break;
        case DBLD__CFG_STRLIST: {
            size_t *n = (size_t *)((char *)base + k->count_offset);
            char **arr = NULL;
            if (k->def_str) {
                arr = dbld_xcalloc(1, sizeof *arr);
                arr[0] = dbld_xstrdup(k->def_str);
            }
            *(char ***)field = arr;
            *n = arr ? 1 : 0;
            break;
        }
        case DBLD__CFG_SECTION:
            dbld__cfg_defaults(k->sub, field);
            break;
        case DBLD__CFG_LIST:
            *(void **)field = NULL;
            *(size_t *)((char *)base + k->count_offset) = 0;
            break;
        }
    }
}

void dbld__cfg_free(const dbld__cfg_key *schema, void *base)
{
    for (const dbld__cfg_key *k = schema; k->name; k++) {
        void *field = (char *)base + k->offset;
        switch (k->type) {
        case DBLD__CFG_STRING:
            free(*(char **)field);
            *(char **)field = NULL;
            break;
        case DBLD__CFG_INT:
        case DBLD__CFG_BOOL:
            break;
        case DBLD__CFG_STRLIST:
            free_strlist(field, (size_t *)((char *)base + k->count_offset));
            break;
        case DBLD__CFG_SECTION:
            dbld__cfg_free(k->sub, field);
            break;
        case DBLD__CFG_LIST: {
            size_t *n = (size_t *)((char *)base + k->count_offset);
            void **arr = field;
            for (size_t i = 0; i < *n; i++)
                dbld__cfg_free(k->sub, (char *)*arr + i * k->elem_size);
            free(*arr);
            *arr = NULL;
            *n = 0;
            break;
        }
        }
    }
}

struct dbld__cfg_doc {
    const char *name;
    const node *root;
};

/* The value at a key path such as "graph.jobs[3].outputs[0]", or NULL. A lone
 * scalar given for a list is its own item [0]. */
static const node *resolve(const node *n, const char *path)
{
    while (n && *path) {
        if (*path == '.') path++;
        if (*path == '[') {
            char *end;
            unsigned long i = strtoul(path + 1, &end, 10);
            if (*end != ']') return NULL;
            path = end + 1;
            if (n->kind == N_SEQ)
                n = i < n->n ? n->kids[i] : NULL;
            else if (n->kind != N_SCALAR || i != 0)
                n = NULL;
            continue;
        }
        size_t len = strcspn(path, ".[");
        const node *found = NULL;
        for (size_t k = 0; n->kind == N_MAP && k + 1 < n->n && !found; k += 2)
            if (n->kids[k]->kind == N_SCALAR && strlen(n->kids[k]->text) == len &&
                memcmp(n->kids[k]->text, path, len) == 0)
                found = n->kids[k + 1];
        n = found;
        path += len;
    }
    return n;
}

int dbld__cfg_error_at(const dbld__cfg_doc *doc, dbld_status *st, const char *path, const char *fmt,
                       ...)
{
    char problem[DBLD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof problem, fmt, ap);
    va_end(ap);
    const node *n = resolve(doc->root, path);
    if (n) return at_error(st, doc->name, n->line, n->col, path, "%s", problem);
    return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "%s: %s: %s", doc->name, path, problem);
}

int dbld__cfg_parse(const char *text, size_t len, const char *name, const dbld__cfg_key *schema,
                    void *base, dbld__cfg_check_all_fn check_all, dbld_status *st)
{
    reader r = {.name = name ? name : "<config>",
                .text = text ? text : "",
                .len = text ? len : 0,
                .st = st};
    dbld_status local;
    if (!r.st) r.st = &local;
    dbld_status_clear(r.st);
    if (!yaml_parser_initialize(&r.parser))
        return dbld_status_set(r.st, DBLD_RESOURCE_EXHAUSTED, "%s: out of memory parsing YAML",
                               r.name);
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)r.text, r.len);
    r.arena = dbld_arena_create();
    node *root = NULL;
    int rc = load_tree(&r, &root);
    yaml_parser_delete(&r.parser);
    if (!rc && root) {
        walker w = {.name = r.name, .st = r.st};
        rc = walk_mapping(&w, schema, base, root, "");
    }
    if (!rc && check_all) {
        dbld__cfg_doc doc = {.name = r.name, .root = root};
        rc = check_all(base, &doc, r.st);
    }
    dbld_arena_destroy(r.arena);
    return rc;
}
