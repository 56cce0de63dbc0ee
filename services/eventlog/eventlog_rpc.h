/* eventlog_rpc.h - the EventLog service table; user data is the el_store. */
#ifndef EL_EVENTLOG_RPC_H
#define EL_EVENTLOG_RPC_H
#include "dbld/rpc.h"
#include "store.h"
extern const dbld_service el_eventlog_service;
extern const dbld_service el_claims_service;    /* databuild.v1.PartitionClaims */
extern const dbld_service el_joblogs_service;   /* databuild.v1.JobLogs */
extern const dbld_service el_leases_service;    /* databuild.v1.BuildLeases */
extern const dbld_service el_processes_service; /* databuild.v1.ProcessStore (processes_rpc.c) */
/* A call waiting for the writer (DBLD_ASYNC handlers): embed first in the
 * handler's context and pass el_async_done as the store's callback. On
 * failure the call gets the writer's status; on success respond() builds the
 * answer in the call's arena. */
typedef struct el_async {
    dbld_call *call;
    ProtobufCMessage *(*respond)(struct el_async *self, dbld_arena *a);
} el_async;
void el_async_done(void *arg, const dbld_status *st);
/* JobLogEntry messages as the store's text columns (joblogs_rpc.c), checked:
 * INVALID_ARGUMENT naming the entry when one cannot be stored. */
int el_joblogs_prepare(dbld_arena *a, Databuild__V1__JobLogEntry *const *entries, size_t n,
                       el_joblogs *logs, dbld_status *st);
/* PartitionClaims/Status handler (leases_rpc.c). */
int el_partition_status(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st);
#endif
