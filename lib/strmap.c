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
    if (!m->a) free(m->slots);
    dbld_strmap_init(m, m->a);
}

/* The slot holding key (of hash h), or the empty slot where it belongs. */
static size_t slot_of(const dbld_strmap_slot *slots, size_t cap, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (slots[i].key && (slots[i].hash != h || strcmp(slots[i].key, key) != 0))
        i = (i + 1) & (cap - 1);
    return i;
}

static void grow(dbld_strmap *m)
{
    size_t cap = m->cap ? m->cap * 2 : FIRST_CAP;
    dbld_strmap_slot *slots =
        m->a ? dbld_arena_alloc(m->a, cap * sizeof *slots) : dbld_xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (slots[j].key)
            j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    if (!m->a) free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

int dbld_strmap_get(const dbld_strmap *m, const char *key, size_t *val)
{
    if (!m->cap) return 0;
    size_t i = slot_of(m->slots, m->cap, key, dbld_hash_str(key));
    if (!m->slots[i].key) return 0;
    if (val) *val = m->slots[i].val;
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
    uint64_t h = dbld_hash_str(key);
    size_t i = slot_of(m->slots, m->cap, key, h);
    *added = !m->slots[i].key;
    if (*added) {
        m->slots[i].key = key;
        m->slots[i].hash = h;
        m->n++;
    }
    return i;
}

void dbld_strmap_put(dbld_strmap *m, const char *key, size_t val)
{
    int added;
    size_t i = find_or_add(m, key, &added); /* may grow m->slots */
    m->slots[i].val = val;
}

size_t dbld_strmap_index(dbld_strmap *m, const char *key, size_t *next, int *added)
{
    int is_new;
    size_t i = find_or_add(m, key, &is_new);
    if (is_new) m->slots[i].val = (*next)++;
    if (added) *added = is_new;
    return m->slots[i].val;
}
