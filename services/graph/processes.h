/* processes.h - background processes in the graph service (the HFAS seed;
 * proto/databuild_process.proto). See processes.c for the lease and run
 * cycle, reconciler.c for want_reconciler.
 *
 * A process is a const gs_proc_def: a name and a run function that makes
 * one pass over its work through the gsr_* calls below. The framework holds
 * the lease, decides when a run is due, records the run's status, item
 * changes and a ProcessRunEvent through the event log's ProcessStore
 * (fenced on the lease), and answers RunProcessNow operations.
 */
#ifndef GRAPH_PROCESSES_H
#define GRAPH_PROCESSES_H

#include "graph.h"

#include "databuild_process.pb-c.h"

typedef struct gs_run gs_run;

typedef struct gs_proc_def {
    const char *name;
    /* One pass. 0, or a code with st set: the run ends ABORTED with that error. */
    int (*run)(gs_run *r, dbld_status *st);
    /* 1: after a pass, while gsr_merge() finds changes, run() makes another
     * pass in the same run (over the new items only). */
    int merge;
} gs_proc_def;

extern const gs_proc_def gs_want_reconciler;  /* reconciler.c */
extern const gs_proc_def gs_taint_propagator; /* propagator.c */
extern const gs_proc_def gs_run_reaper;       /* reaper.c */
extern const gs_proc_def gs_retention;        /* retention.c */

/* Start the lease manager and one thread per process (after s->ready).
 * 0 or -1. */
int gs_processes_start(gs_service *s);
/* Stop and join them (a run in progress finishes its current step). */
void gs_processes_stop(gs_service *s);
/* Wake a process now (e.g. a build it submitted ended). */
void gs_processes_kick(gs_service *s, const char *name);

/* ---- inside a run ---- */

gs_service *gsr_service(gs_run *r);
/* The run's arena (freed when the run ends). */
dbld_arena *gsr_arena(gs_run *r);
/* A process setting (ProcessParams.int_params), dflt when unset. Read from
 * the replica's current copy, so a settings change made during a run applies
 * to the rest of it (between items) without a restart. */
int64_t gsr_setting_int(gs_run *r, const char *key, int64_t dflt);
/* 1 while this instance still holds the lease with time to spare. A run
 * stops acting as soon as this says 0: nothing it does afterwards is
 * written (the fence refuses it anyway). */
int gsr_lease_ok(gs_run *r);
/* A run-level error (kept: the newest 25). */
void gsr_error(gs_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gsr_stat(gs_run *r, const char *key, double delta);
/* Every work item of list (WORK_ACTIVE ...), paged from the store, except
 * those an earlier call of this run returned. */
int gsr_list_work(gs_run *r, int list, Databuild__V1__ProcessWork ***items, size_t *n,
                  dbld_status *st);
/* Record a changed item (written at the end of the run). */
void gsr_item_put(gs_run *r, Databuild__V1__ProcessWork *w);
/* An item succeeded: COMPLETED, attempts reset. */
void gsr_item_ok(gs_run *r, Databuild__V1__ProcessWork *w);
/* An item failed: attempts + 1, a bounded error "attempt N: text" (the
 * newest 10 kept, total_errors counts all), then ABORTED when
 * attempts reach the process's max_item_errors setting (default 5), else
 * INCOMPLETE with next_attempt_ns after an exponential backoff
 * (retry_backoff_ms, default 1000, doubling, at most 60 s). */
void gsr_item_error(gs_run *r, Databuild__V1__ProcessWork *w, const char *text);
/* Move an item to the cleanup list. */
void gsr_item_cleanup(gs_run *r, Databuild__V1__ProcessWork *w, const char *why);
/* A build this run submitted (listed in its ProcessRunEvent). */
void gsr_build(gs_run *r, const char *build_request_id);
/* Split a work item's "refs" param (refs joined by newlines) into arena strings. */
void gsr_split_refs(dbld_arena *a, const char *joined, char ***out, size_t *n);
/* A call to the event log's ProcessStore (method "Downstream" ...), *out in
 * the run's arena; retried on UNAVAILABLE. */
int gsr_store_call(gs_run *r, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, void *out, dbld_status *st);
/* This run's fence (name, instance, lease token) for fenced store calls. */
void gsr_fence(gs_run *r, Databuild__V1__ProcessFence *out);
/* The run changed something outside its items (recorded as a ProcessRunEvent). */
void gsr_changed(gs_run *r);
/* Ask for another run no later than at_ns (wall clock). */
void gsr_wake_at(gs_run *r, int64_t at_ns);
/* After a pass (the framework calls it for defs with merge set): 1 when a write registered work or
 * changed the settings since the run (or its last merge) began - the item
 * changes so far are written, and the caller lists its work again
 * (gsr_list_work returns only the new items) and makes one more pass over
 * them in this run; 0 when nothing changed (or after 10 merges, or the lease
 * is going: the next run takes the rest). */
int gsr_merge(gs_run *r);

#endif
