/* fuzz_req_job.c - requests to the job service (JobConfigure, JobExecute,
 * JobRunner), chosen by the first input byte, through the runtime's request
 * path (fuzz_request.h). Then the handlers' checks against the example
 * graph, before any job process is spawned: Configure and Execute resolve
 * their outputs with job_resolve() (services/job/jobs.c), Run and
 * RunStreamed run job_run_request_check() (services/job/job_rpc.c). */
#include "fuzz_request.h"

#include "databuild_ext.pb-c.h"
#include "job_rpc.h"
#include "jobs.h"

static int validate(const dbld_method *m, ProtobufCMessage *msg, dbld_arena *a, dbld_status *st)
{
    static job_table jobs;
    static int ready;
    if (!ready) {
        FUZZ_CHECK(job_table_init(&jobs, fuzz_example_config(), st) == 0, "%s", st->msg);
        ready = 1;
    }
    Databuild__V1__PartitionRef **outputs;
    size_t n;
    const job_entry *job = NULL;
    if (m->request == &databuild__v1__run_job_request__descriptor) {
        int rc = job_run_request_check(&jobs, (Databuild__V1__RunJobRequest *)msg, &job, st);
        FUZZ_CHECK(rc != 0 || job != NULL, "a checked run without a job");
        return rc;
    } else if (m->request == &databuild__v1__job_configure_request__descriptor) {
        Databuild__V1__JobConfigureRequest *r = (Databuild__V1__JobConfigureRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else if (m->request == &databuild__v1__job_execute_request__descriptor) {
        Databuild__V1__JobExecuteRequest *r = (Databuild__V1__JobExecuteRequest *)msg;
        outputs = r->outputs, n = r->n_outputs;
    } else {
        return 0;
    }
    int rc = job_resolve(&jobs, fuzz_refs(a, outputs, n), n, &job, st);
    FUZZ_CHECK(rc != 0 || job != NULL, "resolved without a job");
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dbld_service *const services[] = {&job_configure_service, &job_execute_service,
                                                   &job_runner_service, NULL};
    fuzz_service_request(services, data, size, validate);
    return 0;
}
