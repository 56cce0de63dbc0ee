/* fifo.h - the one intrusive FIFO queue: an element embeds a dbld_fifo_link
 * and is found back with DBLD_FIFO_ENTRY(). O(1) push at either end and pop;
 * no allocation. Not thread-safe (callers hold their own lock).
 */
#ifndef DBLD_FIFO_H
#define DBLD_FIFO_H

#include <stddef.h>

typedef struct dbld_fifo_link {
    struct dbld_fifo_link *next;
} dbld_fifo_link;

typedef struct dbld_fifo {
    dbld_fifo_link *head;
    dbld_fifo_link **tail; /* &last->next, or &head when empty */
    size_t n;
} dbld_fifo;

/* The element holding link l (l may be NULL: then NULL; l is evaluated once). */
#define DBLD_FIFO_ENTRY(l, type, member) ((type *)dbld_fifo_entry_((l), offsetof(type, member)))
static inline void *dbld_fifo_entry_(dbld_fifo_link *l, size_t offset)
{
    return l ? (void *)((char *)l - offset) : NULL;
}

void dbld_fifo_init(dbld_fifo *q);
void dbld_fifo_push(dbld_fifo *q, dbld_fifo_link *l);       /* at the back */
void dbld_fifo_push_front(dbld_fifo *q, dbld_fifo_link *l); /* first out next */
/* The first / last element's link, left in place; NULL when empty. */
static inline dbld_fifo_link *dbld_fifo_first(const dbld_fifo *q)
{
    return q->head;
}
static inline dbld_fifo_link *dbld_fifo_last(const dbld_fifo *q)
{
    return q->head ? (dbld_fifo_link *)(void *)((char *)q->tail - offsetof(dbld_fifo_link, next))
                   : NULL;
}
/* The first element's link, removed; NULL when empty. */
dbld_fifo_link *dbld_fifo_pop(dbld_fifo *q);
/* Move every element of q into out (initialized by this), leaving q empty. */
void dbld_fifo_take(dbld_fifo *q, dbld_fifo *out);

#endif
