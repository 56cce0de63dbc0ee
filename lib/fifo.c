/* fifo.c - the one intrusive FIFO queue (fifo.h). */
#include "dbld/fifo.h"

void dbld_fifo_init(dbld_fifo *q)
{
    q->head = NULL;
    q->tail = &q->head;
    q->n = 0;
}

void dbld_fifo_push(dbld_fifo *q, dbld_fifo_link *l)
{
    l->next = NULL;
    *q->tail = l;
    q->tail = &l->next;
    q->n++;
}

void dbld_fifo_push_front(dbld_fifo *q, dbld_fifo_link *l)
{
    l->next = q->head;
    if (!q->head) q->tail = &l->next;
    q->head = l;
    q->n++;
}

dbld_fifo_link *dbld_fifo_pop(dbld_fifo *q)
{
    dbld_fifo_link *l = q->head;
    if (!l) return NULL;
    q->head = l->next;
    if (!q->head) q->tail = &q->head;
    q->n--;
    l->next = NULL;
    return l;
}

void dbld_fifo_take(dbld_fifo *q, dbld_fifo *out)
{
    dbld_fifo_init(out);
    if (!q->head) return;
    out->head = q->head;
    out->tail = q->tail;
    out->n = q->n;
    dbld_fifo_init(q);
}
