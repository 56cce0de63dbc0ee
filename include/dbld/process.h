/* process.h - helpers for the background-process messages of
 * proto/databuild_process.proto, shared by the event log (the store), the
 * graph service (the runner) and the query service (the Processes API):
 * ProcessParams lookups, bounded error lists, stats, state words, and
 * protobuf unknown fields (how WantEventTerms and WantStateInfo ride inside
 * seed messages). Everything allocates from the caller's arena.
 */
#ifndef DBLD_PROCESS_H
#define DBLD_PROCESS_H

#include "databuild.pb-c.h"
#include "databuild_process.pb-c.h"
#include "dbld/arena.h"

#include <stddef.h>
#include <stdint.h>

#define DBLD_PROC_ITEM_ERRORS 10 /* errors kept per work item */
#define DBLD_PROC_RUN_ERRORS 25  /* errors kept per run */

/* WantEventTerms field numbers (databuild_ext.proto), carried as unknown
 * fields of WantEvent; WantStateInfo's (databuild_process.proto) inside
 * PartitionWantSummary. */
#define DBLD_WANT_TERM_DATA_TS 1001
#define DBLD_WANT_TERM_TTL 1002
#define DBLD_WANT_TERM_SLA 1003
#define DBLD_WANT_STATE 1001
#define DBLD_WANT_STATE_REASON 1002
/* PartitionInvalidationExt fields (databuild_process.proto). */
#define DBLD_INVALIDATION_TAINT_ID 1001
#define DBLD_INVALIDATION_TAINTED_REFS 1002
#define DBLD_INVALIDATION_VIA 1003
/* BuildRequestWants.want_ids, inside a BuildRequestEvent. */
#define DBLD_BUILD_WANT_IDS 1001
/* PartitionSummaryV2Ext.stale, inside a PartitionSummaryV2. */
#define DBLD_PARTITION_STALE 1001

/* The processes every graph replica runs, in this order. */
#define DBLD_PROC_WANT_RECONCILER "want_reconciler"
#define DBLD_PROC_TAINT_PROPAGATOR "taint_propagator"
#define DBLD_PROC_RETENTION "retention"
#define DBLD_PROC_RUN_REAPER "run_reaper"

int64_t dbld_params_int(const Databuild__V1__ProcessParams *p, const char *key, int64_t dflt);
/* Borrowed from p; dflt when absent. */
const char *dbld_params_str(const Databuild__V1__ProcessParams *p, const char *key,
                            const char *dflt);
void dbld_params_set_int(dbld_arena *a, Databuild__V1__ProcessParams *p, const char *key,
                         int64_t v);
void dbld_params_set_str(dbld_arena *a, Databuild__V1__ProcessParams *p, const char *key,
                         const char *v);
/* Every key of from, set into into (from wins). */
void dbld_params_merge(dbld_arena *a, Databuild__V1__ProcessParams *into,
                       const Databuild__V1__ProcessParams *from);

/* Record an error: total_errors + 1, last_error_ns = t, and the list keeps
 * the newest `cap` entries. */
void dbld_pstatus_add_error(dbld_arena *a, Databuild__V1__ProcessStatus *s, int64_t t,
                            const char *text, size_t cap);
/* stats[key] += delta (created when absent). */
void dbld_pstatus_add_stat(dbld_arena *a, Databuild__V1__ProcessStatus *s, const char *key,
                           double delta);
double dbld_pstatus_stat(const Databuild__V1__ProcessStatus *s, const char *key);

/* The seed's WorkResponse words: "queued", "active", "aborted",
 * "incomplete", "completed" ("unspecified" otherwise). */
const char *dbld_process_state_word(int state);
/* "NEW", "ACTIVE", ... for tables. */
const char *dbld_process_state_name(int state);

/* Unpack serialized bytes into the arena; empty or undecodable input gives
 * an empty message (never NULL). */
Databuild__V1__ProcessParams *dbld_params_unpack(dbld_arena *a, const uint8_t *b, size_t n);
Databuild__V1__ProcessStatus *dbld_pstatus_unpack(dbld_arena *a, const uint8_t *b, size_t n);
/* Serialized message in the arena; *n its length. */
uint8_t *dbld_msg_pack(dbld_arena *a, const ProtobufCMessage *m, size_t *n);

/* Unknown varint field `tag` of m (the last occurrence), 0 when absent. */
uint64_t dbld_pb_unknown_varint(const ProtobufCMessage *m, uint32_t tag);
/* Unknown length-delimited field `tag` as a NUL-terminated arena string, or NULL. */
char *dbld_pb_unknown_string(dbld_arena *a, const ProtobufCMessage *m, uint32_t tag);
/* Add unknown fields to m (serialized with it). A zero varint is not added. */
void dbld_pb_add_unknown_varint(dbld_arena *a, ProtobufCMessage *m, uint32_t tag, uint64_t v);
void dbld_pb_add_unknown_string(dbld_arena *a, ProtobufCMessage *m, uint32_t tag, const char *s);

#endif
