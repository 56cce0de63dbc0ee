/* lifecache.c - build lifecycle times by build request id (query.h).
 *
 * A BuildSummary's started_at / completed_at come from the build's
 * BuildRequestEvents, whose payloads a page of 100 summaries had to read and
 * decode every time (hundreds of rows, ~1 MB of hex): under load that was
 * most of ListBuildRequests' cost. They are a function of the build's
 * BuildRequestEvents up to build_requests.last_idx (the projection sets
 * last_idx to the idx of each such event, and idx is commit order), so an
 * entry stored with the last_idx it was computed at is exact while the row
 * still shows that last_idx, and simply missed when it does not.
 *
 * Bounded: a fixed table of Q_LIFE_SLOTS entries, direct-mapped by the id's
 * hash (a colliding build overwrites the slot; ids longer than the slot's
 * key, which a UUID never is, are not cached). One mutex; the critical
 * sections copy 64 bytes.
 */
#include "query.h"

#include "dbld/strmap.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>

#define Q_LIFE_SLOTS 8192 /* x 64 bytes = 512 KiB */
#define KEY_MAX 40

typedef struct slot {
    char id[KEY_MAX]; /* "" = empty */
    q_life v;
} slot;

struct q_lifecache {
    pthread_mutex_t mu;
    slot slots[Q_LIFE_SLOTS];
};

q_lifecache *q_lifecache_create(void)
{
    q_lifecache *c = dbld_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

void q_lifecache_destroy(q_lifecache *c)
{
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static slot *slot_for(q_lifecache *c, const char *id)
{
    return &c->slots[dbld_hash_str(id) & (Q_LIFE_SLOTS - 1)];
}

int q_lifecache_get(q_lifecache *c, const char *id, int64_t last_idx, q_life *out)
{
    if (!c || strlen(id) >= KEY_MAX) return 0;
    slot *s = slot_for(c, id);
    pthread_mutex_lock(&c->mu);
    int hit = strcmp(s->id, id) == 0 && s->v.last_idx == last_idx;
    if (hit) *out = s->v;
    pthread_mutex_unlock(&c->mu);
    return hit;
}

void q_lifecache_put(q_lifecache *c, const char *id, const q_life *v)
{
    if (!c || !*id || strlen(id) >= KEY_MAX) return;
    slot *s = slot_for(c, id);
    pthread_mutex_lock(&c->mu);
    strcpy(s->id, id);
    s->v = *v;
    pthread_mutex_unlock(&c->mu);
}
