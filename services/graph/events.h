/* events.h - builders for the BuildEvents the coordinator appends.
 *
 * Every event gets its event_id (a fresh UUID) and timestamp when built, so
 * an append retried after a lost reply re-sends the same ids and the event
 * log stores each event once. Status names are the enum value names of the
 * seed ("BUILD_REQUEST_EXECUTING", "PARTITION_AVAILABLE", "JOB_SKIPPED").
 * All memory comes from the given arena; strings are borrowed, not copied.
 */
#ifndef GRAPH_EVENTS_H
#define GRAPH_EVENTS_H

#include "databuild.pb-c.h"
#include "dbld/arena.h"

#include <stddef.h>

typedef Databuild__V1__BuildEvent gs_event;

/* An event with its id, timestamp and build only (the kind is the caller's). */
gs_event *gs_ev_base(dbld_arena *a, const char *br);
gs_event *gs_ev_build_request(dbld_arena *a, const char *br, int code, const char *message);
gs_event *gs_ev_partition(dbld_arena *a, const char *br, const char *ref, int status,
                          const char *job_run_id, const char *message);
/* targets/config/manifest may be NULL. */
gs_event *gs_ev_job(dbld_arena *a, const char *br, const char *job_run_id, const char *label,
                    const Databuild__V1__JobConfig *targets_of, int status, const char *message);
gs_event *gs_ev_delegation(dbld_arena *a, const char *br, const char *ref, const char *to,
                           const char *message);
gs_event *gs_ev_job_graph(dbld_arena *a, const char *br, Databuild__V1__JobGraph *g,
                          const char *message);
gs_event *gs_ev_build_cancel(dbld_arena *a, const char *br, const char *reason);

/* PartitionRef list in the arena. */
Databuild__V1__PartitionRef **gs_refs(dbld_arena *a, const char *const *refs, size_t n);

/* A growable list of events (arena-backed). */
typedef struct gs_evlist {
    gs_event **evs;
    size_t n, cap;
    /* job log entries written with the events (gsb_append), borrowed; may be NULL */
    Databuild__V1__JobLogEntry **logs;
    size_t n_logs;
} gs_evlist;
void gs_evlist_add(dbld_arena *a, gs_evlist *l, gs_event *e);

#endif
