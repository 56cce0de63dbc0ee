/* fuzz_req_query.c - requests to the query service (DataBuildService,
 * QueryOps, Processes), chosen by the first input byte, through the runtime's request
 * path (fuzz_request.h). The query handlers check their requests inline,
 * on a per-call context that holds a database connection (q_req), so this
 * target stops after the request path; the refs of PutWants and PutTaints
 * are then classified against the example graph as their handlers do
 * (dbld_outputs_job(), behind q_ref_kind()). */
#include "fuzz_request.h"

#include "dbld/outputs.h"
#include "query.h"

static int classify(dbld_arena *a, Databuild__V1__PartitionRef *const *refs, size_t n,
                    dbld_status *st)
{
    static dbld_outputs *outs;
    if (!outs)
        FUZZ_CHECK(dbld_outputs_create(fuzz_example_config(), &outs, st) == 0, "%s", st->msg);
    const char **strs = fuzz_refs(a, refs, n);
    for (size_t i = 0; i < n; i++) {
        size_t job;
        int rc = dbld_outputs_job(outs, strs[i], &job, st);
        if (rc) return rc;
    }
    return 0;
}

static int validate(const dbld_method *m, ProtobufCMessage *msg, dbld_arena *a, dbld_status *st)
{
    if (m->request == &databuild__v1__put_taints_request__descriptor) {
        Databuild__V1__PutTaintsRequest *r = (Databuild__V1__PutTaintsRequest *)msg;
        return classify(a, r->refs, r->n_refs, st);
    }
    if (m->request == &databuild__v1__put_wants_request__descriptor) {
        Databuild__V1__PutWantsRequest *r = (Databuild__V1__PutWantsRequest *)msg;
        for (size_t i = 0; i < r->n_wants; i++) {
            int rc = r->wants[i]->ref ? classify(a, &r->wants[i]->ref, 1, st) : 0;
            if (rc) return rc;
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dbld_service *const services[] = {&q_databuild_service, &q_ops_service,
                                                   &q_processes_service, NULL};
    fuzz_service_request(services, data, size, validate);
    return 0;
}
