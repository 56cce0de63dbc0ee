/* strmap.c - open-addressing string map (see strmap.h). FNV-1a hashing. */
#include "strmap.h"

#include "dbld/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void gs_strmap_init(gs_strmap *m)
{
    memset(m, 0, sizeof *m);
}

void gs_strmap_free(gs_strmap *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(const char **keys, size_t cap, const char *key)
{
    size_t i = hash_str(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static void grow(gs_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    const char **keys = dbld_xcalloc(cap, sizeof *keys);
    size_t *vals = dbld_xcalloc(cap, sizeof *vals);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = slot_of(keys, cap, m->keys[i]);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
}

int gs_strmap_get(const gs_strmap *m, const char *key, size_t *val)
{
    if (!m->cap) return 0;
    size_t i = slot_of(m->keys, m->cap, key);
    if (!m->keys[i]) return 0;
    if (val) *val = m->vals[i];
    return 1;
}

void gs_strmap_put(gs_strmap *m, const char *key, size_t val)
{
    if (2 * (m->n + 1) > m->cap) grow(m);
    size_t i = slot_of(m->keys, m->cap, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
}
