/* eventlog_rpc.h - the EventLog service table; user data is the el_store. */
#ifndef EL_EVENTLOG_RPC_H
#define EL_EVENTLOG_RPC_H
#include "dbld/rpc.h"
#include "store.h"
extern const dbld_service el_eventlog_service;
extern const dbld_service el_claims_service;  /* databuild.v1.PartitionClaims */
extern const dbld_service el_joblogs_service; /* databuild.v1.JobLogs */
extern const dbld_service el_leases_service;  /* databuild.v1.BuildLeases */
/* PartitionClaims/Status handler (leases_rpc.c). */
int el_partition_status(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                        dbld_status *st);
#endif
