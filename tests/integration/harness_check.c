/* harness_check.c - the ack log: every Append response a test received, and
 * the invariants the event log owes its callers, checked against what List
 * and Subscribe return. Used by the concurrency and crash tests, where the
 * oracle is "what was acknowledged", not a precomputed list.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct h_acklog {
    pthread_mutex_t mu;
    h_ack *v;
    size_t n, cap;
    int batches;
};

h_acklog *h_acklog_new(void)
{
    h_acklog *l = dbld_xcalloc(1, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    return l;
}

void h_acklog_add(h_acklog *l, const Databuild__V1__AppendResponse *resp, int64_t sent_ms,
                  int64_t acked_ms)
{
    pthread_mutex_lock(&l->mu);
    int batch = l->batches++;
    for (size_t i = 0; i < resp->n_events; i++) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 1024;
            l->v = dbld_xrealloc(l->v, l->cap * sizeof *l->v);
        }
        h_ack *a = &l->v[l->n++];
        memset(a, 0, sizeof *a);
        snprintf(a->event_id, sizeof a->event_id, "%s", resp->events[i]->event_id);
        a->idx = resp->events[i]->idx;
        a->sent_ms = sent_ms;
        a->acked_ms = acked_ms;
        a->batch = batch;
        a->pos = (int)i;
        a->duplicate = resp->events[i]->duplicate;
    }
    pthread_mutex_unlock(&l->mu);
}

size_t h_acklog_count(h_acklog *l)
{
    pthread_mutex_lock(&l->mu);
    size_t n = l->n;
    pthread_mutex_unlock(&l->mu);
    return n;
}

static int by_idx(const void *x, const void *y)
{
    const h_ack *a = x, *b = y;
    if (a->idx != b->idx) return a->idx < b->idx ? -1 : 1;
    return strcmp(a->event_id, b->event_id);
}

static int by_id(const void *x, const void *y)
{
    const h_ack *a = x, *b = y;
    int c = strcmp(a->event_id, b->event_id);
    if (c) return c;
    return a->duplicate - b->duplicate; /* the original first */
}

static int by_id_only(const void *x, const void *y)
{
    return strcmp(((const h_ack *)x)->event_id, ((const h_ack *)y)->event_id);
}

static h_ack *snapshot(h_acklog *l, size_t *n)
{
    pthread_mutex_lock(&l->mu);
    h_ack *v = dbld_xmalloc((l->n + 1) * sizeof *v);
    if (l->n) memcpy(v, l->v, l->n * sizeof *v);
    *n = l->n;
    pthread_mutex_unlock(&l->mu);
    return v;
}

/* One entry per distinct event_id (the first ack of it), sorted by idx. */
h_ack *h_acklog_sorted(h_acklog *l, size_t *n)
{
    size_t all;
    h_ack *v = snapshot(l, &all);
    qsort(v, all, sizeof *v, by_id);
    size_t k = 0;
    for (size_t i = 0; i < all; i++)
        if (k == 0 || strcmp(v[k - 1].event_id, v[i].event_id) != 0) v[k++] = v[i];
    qsort(v, k, sizeof *v, by_idx);
    *n = k;
    return v;
}

int h_acklog_find(h_acklog *l, const char *event_id, int64_t *idx)
{
    pthread_mutex_lock(&l->mu);
    int found = 0;
    for (size_t i = 0; i < l->n && !found; i++)
        if (strcmp(l->v[i].event_id, event_id) == 0) {
            *idx = l->v[i].idx;
            found = 1;
        }
    pthread_mutex_unlock(&l->mu);
    return found;
}

typedef struct id_pos {
    const char *id;
    size_t pos;
} id_pos;

static int id_pos_cmp(const void *x, const void *y)
{
    return strcmp(((const id_pos *)x)->id, ((const id_pos *)y)->id);
}

static const id_pos *id_find(const id_pos *v, size_t n, const char *id)
{
    id_pos key = {id, 0};
    return bsearch(&key, v, n, sizeof *v, id_pos_cmp);
}

size_t h_acklog_verify_(const char *file, int line, h_acklog *l, h_service *s, int flags)
{
    size_t all;
    h_ack *v = snapshot(l, &all);

    /* one idx per event_id, at most one non-duplicate ack per id, unique idx */
    qsort(v, all, sizeof *v, by_id);
    for (size_t i = 1; i < all; i++) {
        if (strcmp(v[i - 1].event_id, v[i].event_id) != 0) continue;
        if (v[i - 1].idx != v[i].idx)
            h_fail(file, line, "event %s acked with idx %lld and %lld", v[i].event_id,
                   (long long)v[i - 1].idx, (long long)v[i].idx);
        if (!v[i].duplicate)
            h_fail(file, line, "event %s acked twice as new (duplicate=false), idx %lld",
                   v[i].event_id, (long long)v[i].idx);
    }
    size_t n_ids;
    h_ack *ids = h_acklog_sorted(l, &n_ids);
    for (size_t i = 1; i < n_ids; i++)
        if (ids[i - 1].idx == ids[i].idx)
            h_fail(file, line, "events %s and %s both acked with idx %lld", ids[i - 1].event_id,
                   ids[i].event_id, (long long)ids[i].idx);

    /* commit order: acked before the other was sent => smaller idx */
    for (size_t y = 0; y < all; y++) {
        if (v[y].duplicate) continue;
        for (size_t x = 0; x < all; x++)
            if (v[x].acked_ms < v[y].sent_ms && v[x].idx >= v[y].idx)
                h_fail(file, line,
                       "commit order: %s (idx %lld) was acked %lld ms before %s was sent, but "
                       "that got idx %lld",
                       v[x].event_id, (long long)v[x].idx,
                       (long long)(v[y].sent_ms - v[x].acked_ms), v[y].event_id,
                       (long long)v[y].idx);
    }

    /* List everything */
    dbld_arena *a = dbld_arena_create();
    h_event_list got = h_list_all_(file, line, s, a, NULL, 0);
    id_pos *listed = dbld_xmalloc((got.n + 1) * sizeof *listed);
    for (size_t i = 0; i < got.n; i++)
        listed[i] = (id_pos){got.events[i]->event_id, i};
    qsort(listed, got.n, sizeof *listed, id_pos_cmp);
    for (size_t i = 1; i < got.n; i++)
        if (strcmp(listed[i - 1].id, listed[i].id) == 0)
            h_fail(file, line, "List returned event %s twice (positions %zu and %zu)", listed[i].id,
                   listed[i - 1].pos, listed[i].pos);
    size_t prev_pos = 0;
    for (size_t i = 0; i < n_ids; i++) {
        const id_pos *p = id_find(listed, got.n, ids[i].event_id);
        if (!p)
            h_fail(file, line, "acked event %s (idx %lld) missing from List (%zu events listed)",
                   ids[i].event_id, (long long)ids[i].idx, got.n);
        if (i > 0 && p->pos <= prev_pos)
            h_fail(file, line, "List order disagrees with acked idx order at event %s (idx %lld)",
                   ids[i].event_id, (long long)ids[i].idx);
        prev_pos = p->pos;
    }
    if ((flags & H_VERIFY_EXACT) && got.n != n_ids)
        h_fail(file, line, "List returned %zu events, %zu were acked", got.n, n_ids);

    if (flags & H_VERIFY_BATCHES) {
        /* v is sorted by id; re-sort by (batch, pos) */
        h_ack *b = snapshot(l, &all);
        for (size_t i = 0; i < all; i++) {
            if (b[i].duplicate) continue;
            /* the next non-duplicate member of the same batch */
            size_t j = i + 1;
            while (j < all && b[j].batch == b[i].batch && b[j].duplicate)
                j++;
            if (j >= all || b[j].batch != b[i].batch) continue;
            const id_pos *pi = id_find(listed, got.n, b[i].event_id);
            const id_pos *pj = id_find(listed, got.n, b[j].event_id);
            if (pi && pj && pj->pos != pi->pos + 1)
                h_fail(file, line,
                       "batch %d: event %d (idx %lld) and event %d (idx %lld) are not adjacent in "
                       "the log (List positions %zu and %zu)",
                       b[i].batch, b[i].pos, (long long)b[i].idx, b[j].pos, (long long)b[j].idx,
                       pi->pos, pj->pos);
        }
        free(b);
    }

    if (flags & H_VERIFY_IDX) {
        h_ack *byid = dbld_xmalloc((n_ids + 1) * sizeof *byid);
        if (n_ids) memcpy(byid, ids, n_ids * sizeof *byid);
        qsort(byid, n_ids, sizeof *byid, by_id);
        dbld_arena *sa = dbld_arena_create();
        dbld_stream *st = h_subscribe(s, NULL, 0);
        int64_t deadline = dbld_mono_ms() + 60000;
        int64_t last = -1;
        size_t k = 0;
        while (k < got.n) {
            Databuild__V1__IndexedEvent *ie;
            dbld_status status = {0};
            int64_t left = deadline - dbld_mono_ms();
            int rc = h_stream_next(st, sa, &ie, left > 0 ? left : 1, &status);
            if (rc != DBLD_OK || !ie)
                h_fail(file, line, "Subscribe from 0: after %zu of %zu events: %s: %s", k, got.n,
                       dbld_code_name(rc), status.msg);
            if (!ie->event || strcmp(ie->event->event_id, got.events[k]->event_id) != 0)
                h_fail(file, line, "Subscribe event %zu is %s, List has %s", k,
                       ie->event ? ie->event->event_id : "(none)", got.events[k]->event_id);
            if (ie->idx <= last)
                h_fail(file, line, "Subscribe idx not increasing: %lld after %lld",
                       (long long)ie->idx, (long long)last);
            last = ie->idx;
            h_ack key;
            snprintf(key.event_id, sizeof key.event_id, "%s", ie->event->event_id);
            key.duplicate = 0;
            const h_ack *acked = bsearch(&key, byid, n_ids, sizeof *byid, by_id_only);
            if (acked && acked->idx != ie->idx)
                h_fail(file, line, "event %s was acked with idx %lld, Subscribe says %lld",
                       ie->event->event_id, (long long)acked->idx, (long long)ie->idx);
            k++;
            if (k % 256 == 0) dbld_arena_reset(sa);
        }
        dbld_stream_close(st);
        dbld_arena_destroy(sa);
        free(byid);
    }
    size_t n_listed = got.n;
    free(listed);
    free(ids);
    free(v);
    dbld_arena_destroy(a);
    return n_listed;
}
