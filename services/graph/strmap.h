/* strmap.h - a string-keyed hash map of size_t values for the graph service.
 *
 * Keys are borrowed (the caller keeps them alive as long as the map), values
 * are plain indexes. Open addressing with linear probing; the table doubles at
 * half load, so lookups stay O(1) for the 10k-partition graphs analysis sees.
 * Not thread-safe: one map belongs to one thread at a time.
 */
#ifndef GRAPH_STRMAP_H
#define GRAPH_STRMAP_H

#include <stddef.h>

typedef struct gs_strmap {
    const char **keys;
    size_t *vals;
    size_t cap, n;
} gs_strmap;

void gs_strmap_init(gs_strmap *m);
void gs_strmap_free(gs_strmap *m);
/* 1 and *val when key is present, else 0. */
int gs_strmap_get(const gs_strmap *m, const char *key, size_t *val);
/* Insert or overwrite. */
void gs_strmap_put(gs_strmap *m, const char *key, size_t val);

#endif
