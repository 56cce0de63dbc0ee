/* strmap.h - the graph service's name for lib/'s string map (dbld/strmap.h).
 *
 * Keys are borrowed (the caller keeps them alive as long as the map), values
 * are plain indexes; the arrays come from malloc. The gs_ names stay so that
 * the coordinator's files need no change in this round.
 */
#ifndef GRAPH_STRMAP_H
#define GRAPH_STRMAP_H

#include "dbld/strmap.h"

#include <stddef.h>

typedef dbld_strmap gs_strmap;

static inline void gs_strmap_init(gs_strmap *m)
{
    dbld_strmap_init(m, NULL);
}
static inline void gs_strmap_free(gs_strmap *m)
{
    dbld_strmap_free(m);
}
/* 1 and *val when key is present, else 0. */
static inline int gs_strmap_get(const gs_strmap *m, const char *key, size_t *val)
{
    return dbld_strmap_get(m, key, val);
}
/* Insert or overwrite. */
static inline void gs_strmap_put(gs_strmap *m, const char *key, size_t val)
{
    dbld_strmap_put(m, key, val);
}

#endif
