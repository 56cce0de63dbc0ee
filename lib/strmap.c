/* strmap.c - the one string-keyed hash map (strmap.h): open addressing with
 * linear probing at most half full, FNV-1a hashing. */
#include "dbld/strmap.h"

#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>

#define FIRST_CAP 16

uint64_t dbld_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void dbld_strmap_init(dbld_strmap *m, dbld_arena *a)
{
    memset(m, 0, sizeof *m);
    m->a = a;
}

void dbld_strmap_free(dbld_strmap *m)
{
    if (!m->a) {
        free(m->keys);
        free(m->vals);
    }
    dbld_strmap_init(m, m->a);
}

static void *zalloc(dbld_strmap *m, size_t n, size_t size)
{
    return m->a ? dbld_arena_alloc(m->a, n * size) : dbld_xcalloc(n, size);
}

/* The slot holding key, or the empty slot where it belongs. */
static size_t slot_of(const char **keys, size_t cap, const char *key)
{
    size_t i = (size_t)dbld_hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static void grow(dbld_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : FIRST_CAP;
    const char **keys = zalloc(m, cap, sizeof *keys);
    size_t *vals = zalloc(m, cap, sizeof *vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = slot_of(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    if (!m->a) {
        free(m->keys);
        free(m->vals);
    }
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
}

int dbld_strmap_get(const dbld_strmap *m, const char *key, size_t *val)
{
    if (!m->cap) return 0;
    size_t i = slot_of(m->keys, m->cap, key);
    if (!m->keys[i]) return 0;
    if (val) *val = m->vals[i];
    return 1;
}

size_t dbld_strmap_find(const dbld_strmap *m, const char *key)
{
    size_t v;
    return dbld_strmap_get(m, key, &v) ? v : DBLD_STRMAP_NONE;
}

/* The slot of key, inserted (value unset) when absent; *added says so. */
static size_t find_or_add(dbld_strmap *m, const char *key, int *added)
{
    if (2 * (m->n + 1) > m->cap) grow(m);
    size_t i = slot_of(m->keys, m->cap, key);
    *added = !m->keys[i];
    if (*added) {
        m->keys[i] = key;
        m->n++;
    }
    return i;
}

void dbld_strmap_put(dbld_strmap *m, const char *key, size_t val)
{
    int added;
    size_t i = find_or_add(m, key, &added); /* may grow m->vals */
    m->vals[i] = val;
}

size_t dbld_strmap_index(dbld_strmap *m, const char *key, size_t *next, int *added)
{
    int is_new;
    size_t i = find_or_add(m, key, &is_new);
    if (is_new) m->vals[i] = (*next)++;
    if (added) *added = is_new;
    return m->vals[i];
}
