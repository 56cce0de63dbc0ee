/* fuzz_req_graph.c - requests to the graph service (GraphLookup,
 * GraphBuilder), chosen by the first input byte, through the runtime's
 * request path (fuzz_request.h). Lookup, Analyze, Build and Submit then
 * resolve their output refs against the example graph with
 * gs_lookup_group() (services/graph/lookup.c: what Lookup answers, and the
 * first step of the others before any job is configured). */
#include "fuzz_request.h"

#include "graph_rpc.h"
#include "lookup.h"

static int validate(const dbld_method *m, ProtobufCMessage *msg, dbld_arena *a, dbld_status *st)
{
    static gs_lookup *lookup;
    if (!lookup)
        FUZZ_CHECK(gs_lookup_create(fuzz_example_config(), &lookup, st) == 0, "%s", st->msg);
    Databuild__V1__PartitionRef **outputs;
    size_t n;
    if (m->request == &databuild__v1__graph_lookup_request__descriptor) {
        Databuild__V1__GraphLookupRequest *r = (Databuild__V1__GraphLookupRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else if (m->request == &databuild__v1__graph_analyze_request__descriptor) {
        Databuild__V1__GraphAnalyzeRequest *r = (Databuild__V1__GraphAnalyzeRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else if (m->request == &databuild__v1__graph_build_request__descriptor) {
        Databuild__V1__GraphBuildRequest *r = (Databuild__V1__GraphBuildRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else if (m->request == &databuild__v1__submit_build_request__descriptor) {
        Databuild__V1__SubmitBuildRequest *r = (Databuild__V1__SubmitBuildRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else {
        return 0;
    }
    Databuild__V1__GraphLookupResponse *resp = NULL;
    int rc = gs_lookup_group(lookup, fuzz_refs(a, outputs, n), n, a, &resp, st);
    if (rc == 0) {
        size_t refs = 0;
        for (size_t i = 0; i < resp->n_task_refs; i++)
            refs += resp->task_refs[i]->n_outputs;
        FUZZ_CHECK(refs == n, "%zu refs grouped into tasks holding %zu", n, refs);
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dbld_service *const services[] = {&gs_lookup_service, &gs_builder_service, NULL};
    fuzz_service_request(services, data, size, validate);
    return 0;
}
