/* db_domain.h - the domain rules of the event log's schema, one definition
 * each: which statuses are terminal (build request, job run), which
 * partition statuses are one build's intent, and the same sets and the
 * event kinds as SQL text for the statements that filter on the integer
 * columns (`status IN (" DBLD_SQL_BUILD_TERMINAL ")`).
 *
 * The SQL spellings are literals (C cannot stringify an enum), so every one
 * is tied to the generated proto enums by a _Static_assert below: a
 * renumbered enum value breaks the build, not the queries. Use these in
 * store, projections and query code instead of raw numbers.
 */
#ifndef DBLD_DB_DOMAIN_H
#define DBLD_DB_DOMAIN_H

#include "databuild.pb-c.h"

/* BuildRequestStatusCode: COMPLETED, FAILED, CANCELLED, PRECONDITION_FAILED. */
int dbld_build_terminal(int code);
/* BuildRequestStatusCode: PLANNING, ANALYSIS_COMPLETED, EXECUTING (started, not ended). */
int dbld_build_started(int code);
/* JobStatus: COMPLETED, FAILED, CANCELLED, SKIPPED. */
int dbld_job_terminal(int code);
/* PartitionStatus: REQUESTED, ANALYZED, DELEGATED - one build request's view
 * of a partition, which never replaces BUILDING or AVAILABLE. */
int dbld_partition_intent(int code);

/* ---- SQL spellings (integer lists for IN (...), single values) ---- */

#define DBLD_SQL_BUILD_TERMINAL "4, 5, 6, 8"
_Static_assert(DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED == 4 &&
                   DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED == 5 &&
                   DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED == 6 &&
                   DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PRECONDITION_FAILED == 8,
               "DBLD_SQL_BUILD_TERMINAL");

#define DBLD_SQL_JOB_ACTIVE "1, 2" /* SCHEDULED, RUNNING */
_Static_assert(DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED == 1 &&
                   DATABUILD__V1__JOB_STATUS__JOB_RUNNING == 2,
               "DBLD_SQL_JOB_ACTIVE");
#define DBLD_SQL_JOB_COMPLETED "3"
#define DBLD_SQL_JOB_FAILED "4"
#define DBLD_SQL_JOB_CANCELLED "5"
#define DBLD_SQL_JOB_SKIPPED "6"
#define DBLD_SQL_JOB_DONE "3, 6" /* COMPLETED or SKIPPED: the outputs are there */
_Static_assert(DATABUILD__V1__JOB_STATUS__JOB_COMPLETED == 3 &&
                   DATABUILD__V1__JOB_STATUS__JOB_FAILED == 4 &&
                   DATABUILD__V1__JOB_STATUS__JOB_CANCELLED == 5 &&
                   DATABUILD__V1__JOB_STATUS__JOB_SKIPPED == 6,
               "DBLD_SQL_JOB_*");

#define DBLD_SQL_PART_BUILDING "3"
#define DBLD_SQL_PART_AVAILABLE "4"
#define DBLD_SQL_PART_INTENT "1, 2, 6" /* see dbld_partition_intent() */
#define DBLD_SQL_PART_PROGRESS "3, 4"  /* BUILDING, AVAILABLE: what an intent keeps */
_Static_assert(DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED == 1 &&
                   DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED == 2 &&
                   DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING == 3 &&
                   DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE == 4 &&
                   DATABUILD__V1__PARTITION_STATUS__PARTITION_DELEGATED == 6,
               "DBLD_SQL_PART_*");

/* events.kind: the BuildEvent oneof field number */
#define DBLD_SQL_KIND_BUILD_REQUEST "10"
#define DBLD_SQL_KIND_PARTITION "11"
#define DBLD_SQL_KIND_JOB "12"
#define DBLD_SQL_KIND_DELEGATION "13"
#define DBLD_SQL_KIND_JOB_GRAPH "14"
#define DBLD_SQL_KIND_INVALIDATION "15"
#define DBLD_SQL_KIND_JOB_RUN_CANCEL "16"
#define DBLD_SQL_KIND_BUILD_CANCEL "17"
#define DBLD_SQL_KIND_EXECUTION "110"
_Static_assert(DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT == 10 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT == 11 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT == 12 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT == 13 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT == 14 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT == 15 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT == 16 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT == 17 &&
                   DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT == 110,
               "DBLD_SQL_KIND_*");

#endif
