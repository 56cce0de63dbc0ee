/* eventlog_client.h - what other services call to write and read the build
 * event log (databuild.v1.EventLog over gRPC).
 *
 * Appends are made safe to retry: every event without an event_id gets a
 * fresh UUID *before* the first attempt, so a retry after a lost reply (or
 * an UNAVAILABLE while the database restarts) re-sends the same ids and the
 * event log acknowledges the stored copies instead of writing twice.
 */
#ifndef DBLD_EVENTLOG_CLIENT_H
#define DBLD_EVENTLOG_CLIENT_H

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/status.h"

#include <stddef.h>
#include <stdint.h>

/* Append n events to the event log at target ("host:port"), retrying on
 * UNAVAILABLE until timeout_ms (<= 0: 30 s). Missing event_ids are filled in
 * (strings from arena a). On success idx_out[i] (if idx_out is non-NULL)
 * holds each event's idx. */
int dbld_eventlog_append(const char *target, Databuild__V1__BuildEvent *const *events, size_t n,
                         dbld_arena *a, int64_t *idx_out, int64_t timeout_ms, dbld_status *st);

/* The same, fenced on a build's lease (AppendRequest.fence): the events are
 * written only while build_request_id's lease is held by owner; otherwise
 * FAILED_PRECONDITION and nothing is written. logs (n_logs, may be 0): job
 * log entries written with the events (AppendRequest.job_logs). */
int dbld_eventlog_append_fenced(const char *target, const char *build_request_id, const char *owner,
                                Databuild__V1__BuildEvent *const *events, size_t n,
                                Databuild__V1__JobLogEntry *const *logs, size_t n_logs,
                                dbld_arena *a, int64_t *idx_out, int64_t timeout_ms,
                                dbld_status *st);

/* One page of events matching filter (may be NULL) from start_idx; the page
 * is unpacked into arena a. */
int dbld_eventlog_list(const char *target, const Databuild__V1__EventFilter *filter,
                       int64_t start_idx, uint32_t limit, dbld_arena *a,
                       Databuild__V1__EventPage **page, int64_t timeout_ms, dbld_status *st);

#endif
