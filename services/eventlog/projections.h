/* projections.h - current-state tables derived from events, updated in the
 * same transaction as the events (partitions, build_requests, job_runs,
 * wants, taints; schema in migrations/0001_events.sql). */
#ifndef EL_PROJECTIONS_H
#define EL_PROJECTIONS_H

#include "dbld/db.h"
#include "event_meta.h"

/* Fold the newly inserted events (idx order) and upsert the projection rows.
 * Must run inside the writer's transaction. */
int el_project(dbld_db *db, dbld_arena *a, el_event *const *evs, size_t n, dbld_status *st);

#endif
