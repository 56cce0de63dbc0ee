/* hub.h - the commit feed: one reader of new commits for every Subscribe
 * stream of this replica.
 *
 * The writer publishes each committed batch (its new events, and the highest
 * idx committed before it); one feeder thread turns that into a ring of
 * recent events that covers an idx range (lo, high] completely: every event
 * committed with lo < idx <= high is in it, whichever replica wrote it.
 * Events another replica committed are fetched from PostgreSQL once, for
 * all streams: when a batch's "highest idx before" is above high, and by a
 * poll every EL_HUB_POLL_MS while streams are open and the writer is quiet.
 * Streams read the ring under a shared lock and filter in memory; a stream
 * whose position is at or below lo (it started in the past, or fell behind
 * what the ring keeps) reads PostgreSQL by pages until it is inside the
 * range again. The ring is bounded (EL_HUB_MAX_EVENTS events and
 * EL_HUB_MAX_BYTES bytes, oldest dropped first), so memory does not grow
 * with streams or with a slow reader.
 */
#ifndef EL_HUB_H
#define EL_HUB_H

#include "dbld/arena.h"
#include "dbld/status.h"
#include "event_meta.h"
#include "filter.h"

#include <stdint.h>

#define EL_HUB_MAX_EVENTS 16384
#define EL_HUB_MAX_BYTES (32 * 1024 * 1024)
#define EL_HUB_POLL_MS 500 /* cross-replica commits are seen within this when idle */

typedef struct el_hub el_hub;

/* Caller frees with el_hub_destroy() (after the writer stopped publishing).
 * dsn: the feeder's own connection (made when needed, remade when lost). */
el_hub *el_hub_create(const char *dsn);
void el_hub_start(el_hub *h);
void el_hub_destroy(el_hub *h);

/* ---- the writer ---- */

/* After a COMMIT: prev_max is the highest idx committed before the batch
 * (read under the append lock), evs its new events in idx order (copied
 * when streams are open; may be freed on return), max_idx the batch's
 * highest idx (0 when it wrote no event). Never blocks on the database. */
void el_hub_publish(el_hub *h, int64_t prev_max, el_event *const *evs, size_t n, int64_t max_idx);

/* ---- the streams ---- */

/* A stream is open / has ended (the feeder polls only while some are). */
void el_hub_join(el_hub *h);
void el_hub_leave(el_hub *h);

/* One stored event as a stream receives it. */
typedef struct el_hub_row {
    int64_t idx;
    const uint8_t *payload; /* serialized BuildEvent, in the caller's arena */
    size_t len;
} el_hub_row;

#define EL_HUB_BEHIND 1 /* el_hub_read(): the ring does not reach back to cursor */

/* Events passing f with idx >= cursor, up to max_rows, copied into a.
 * Returns 0 with *next the position after what was looked at (cursor itself
 * when nothing new is committed yet), or EL_HUB_BEHIND when the ring does
 * not cover cursor (read PostgreSQL instead). */
int el_hub_read(el_hub *h, const el_filter *f, int64_t cursor, size_t max_rows, dbld_arena *a,
                el_hub_row **rows, size_t *n, int64_t *next);

/* The ring's high end (every event up to it is committed and visible to a
 * query started now), or -1 before the feeder knows it. */
int64_t el_hub_high(el_hub *h);

/* Wait until high > after, the hub stops, or timeout_ms passes. */
void el_hub_wait(el_hub *h, int64_t after, int64_t timeout_ms);

#endif
