/* event_meta.h - what the event log needs to know about one BuildEvent:
 * validation, defaults (event_id, timestamp), and the refs / job labels /
 * job run ids an EventFilter matches on. */
#ifndef EL_EVENT_META_H
#define EL_EVENT_META_H

#include "databuild.pb-c.h"
#include "dbld/arena.h"
#include "dbld/status.h"

#include <stdint.h>

/* One event on its way into the store. Everything lives in the call's arena. */
typedef struct el_event {
    Databuild__V1__BuildEvent *ev;
    int kind;          /* BuildEvent oneof field number, 10..19 */
    const char **refs; /* partition refs the event touches */
    size_t n_refs;
    const char **labels; /* job labels */
    size_t n_labels;
    const char **runs; /* job run ids */
    size_t n_runs;
    uint8_t *payload; /* serialized BuildEvent */
    size_t payload_len;
    /* results, filled by the store */
    int64_t idx;
    int duplicate;
    struct el_event *first; /* a repeat of an earlier event_id in the same batch */
} el_event;

/* Validate ev (index = position in the batch, for messages), fill a missing
 * event_id / timestamp, lower-case the event_id (the stored and answered
 * spelling, so a UUID in either case is the same event), extract filter
 * columns and serialize. */
int el_event_prepare(dbld_arena *a, Databuild__V1__BuildEvent *ev, size_t index, el_event *out,
                     dbld_status *st);

/* What an EventFilter matches on, of one event (borrowed pointers). */
typedef struct el_fields {
    int kind; /* BuildEvent oneof field number */
    const char *build_request_id;
    const char *const *refs; /* partition refs the event touches */
    size_t n_refs;
    const char *const *labels; /* job labels */
    size_t n_labels;
    const char *const *runs; /* job run ids */
    size_t n_runs;
} el_fields;

/* The fields of a stored event, extracted as el_event_prepare() does (the
 * lists in the arena, the strings borrowed from ev). */
void el_event_fields(dbld_arena *a, const Databuild__V1__BuildEvent *ev, el_fields *out);

/* The fields of a prepared event (borrowed from e). */
el_fields el_event_fields_of(const el_event *e);

/* "partition_event" etc. for a kind number; "unknown" otherwise. */
const char *el_kind_name(int kind);

#endif
