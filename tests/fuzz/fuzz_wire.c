/* fuzz_wire.c - the wire check of every request type (lib/rpc_validate.c)
 * and protobuf-c's unpack, as the RPC runtime runs them (fuzz_request.h).
 *
 * Input: one byte choosing the request type (every request message of the
 * four services, the event log's extensions and grpc.health), then the wire
 * bytes. The fuzz_req_<service> targets run the same path and then the
 * handlers' validation; this one needs no service code.
 */
#include "fuzz_request.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#define D(x) &databuild__v1__##x##__descriptor
static const ProtobufCMessageDescriptor *const requests[] = {
    /* event log */
    D(append_request),
    D(list_events_request),
    D(subscribe_request),
    D(claim_request),
    D(release_request),
    D(partition_status_request),
    D(renew_leases_request),
    D(orphans_request),
    D(append_job_logs_request),
    D(job_logs_request),
    /* job */
    D(job_configure_request),
    D(job_execute_request),
    D(run_job_request),
    D(cancel_job_run_request),
    /* graph */
    D(graph_lookup_request),
    D(graph_analyze_request),
    D(graph_build_request),
    D(submit_build_request),
    D(cancel_build_request),
    /* query */
    D(list_build_events_request),
    D(batched_request),
    D(list_builds_request),
    D(build_summary_request),
    D(list_partitions_request),
    D(partition_summary_request),
    D(list_jobs_request),
    D(job_summary_request),
    D(list_job_runs_request),
    D(job_run_summary_request),
    D(list_wants_request),
    D(want_summary_request),
    D(put_wants_request),
    D(list_taints_request),
    D(taint_summary_request),
    D(put_taints_request),
    /* every service */
    &grpc__health__v1__health_check_request__descriptor,
};
#undef D
#define N_REQUESTS (sizeof requests / sizeof requests[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    fuzz_request_free(fuzz_request(requests[data[0] % N_REQUESTS], data + 1, size - 1));
    return 0;
}
