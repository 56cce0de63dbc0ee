/* projections.h - current-state tables derived from events, updated in the
 * same transaction as the events (partitions, build_requests, job_runs,
 * wants, taints; schema in migrations/0001_events.sql). */
#ifndef EL_PROJECTIONS_H
#define EL_PROJECTIONS_H

#include "dbld/db.h"
#include "event_meta.h"
#include "processes_proj.h"

#define EL_PROJECT_MAX_STMTS (5 + EL_PROJECT_PROCESSES_MAX_STMTS)

/* Fold the newly inserted events (idx order) into the statements that update
 * the projection rows (at most EL_PROJECT_MAX_STMTS, written to out; returns
 * how many). The writer runs them in its transaction, before COMMIT. */
size_t el_project(dbld_arena *a, el_event *const *evs, size_t n, dbld_stmt *out);

#endif
