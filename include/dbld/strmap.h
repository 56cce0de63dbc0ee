/* strmap.h - the one string-keyed hash map: open addressing, FNV-1a, values
 * of size_t (an index into the caller's array, usually).
 *
 * Keys are borrowed: the caller keeps them alive (and unchanged) as long as
 * the map. The arrays come from an arena (dbld_strmap_init(m, a): freed with
 * the arena, dbld_strmap_free() does nothing) or from malloc (a NULL:
 * dbld_strmap_free() frees them; a zeroed dbld_strmap is such an empty
 * map). Not thread-safe. No removal: maps here
 * live as long as one call or one fold.
 */
#ifndef DBLD_STRMAP_H
#define DBLD_STRMAP_H

#include "dbld/arena.h"

#include <stddef.h>
#include <stdint.h>

/* One slot: the key's hash is kept so that probing compares strings only
 * on a hash match and growing never reads the keys again. */
typedef struct dbld_strmap_slot {
    const char *key; /* NULL: empty */
    size_t val;
    uint64_t hash;
} dbld_strmap_slot;

typedef struct dbld_strmap {
    dbld_arena *a; /* NULL: malloc */
    dbld_strmap_slot *slots;
    size_t cap, n;
} dbld_strmap;

/* FNV-1a of a NUL-terminated string (also for callers hashing on their own). */
uint64_t dbld_hash_str(const char *s);

void dbld_strmap_init(dbld_strmap *m, dbld_arena *a);
void dbld_strmap_free(dbld_strmap *m);
/* 1 and *val (if val) when key is in the map, else 0. */
int dbld_strmap_get(const dbld_strmap *m, const char *key, size_t *val);
/* The value of key, or DBLD_STRMAP_NONE when it is not in the map. */
#define DBLD_STRMAP_NONE ((size_t)-1)
size_t dbld_strmap_find(const dbld_strmap *m, const char *key);
/* Insert key with val, or set its value when it is there. */
void dbld_strmap_put(dbld_strmap *m, const char *key, size_t val);
/* The value of key; when absent, key is inserted with the value *next, and
 * ++*next (numbering keys in first-seen order). *added (if added) says which. */
size_t dbld_strmap_index(dbld_strmap *m, const char *key, size_t *next, int *added);

#endif
