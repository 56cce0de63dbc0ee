/* fuzz_req_eventlog.c - requests to the event log (EventLog, PartitionClaims,
 * BuildLeases, JobLogs, ProcessStore), chosen by the first input byte, through the
 * runtime's request path (fuzz_request.h). EventLog/Append then runs the
 * handler's validation of each event, el_event_prepare()
 * (services/eventlog/event_meta.c: event type, event id, the refs, labels
 * and ids a filter needs), as the handler does before it queues the batch
 * for the database. */
#include "fuzz_request.h"

#include "event_meta.h"
#include "eventlog_rpc.h"

static int validate(const dbld_method *m, ProtobufCMessage *msg, dbld_arena *a, dbld_status *st)
{
    if (strcmp(m->path, "/databuild.v1.EventLog/Append") != 0) return 0;
    Databuild__V1__AppendRequest *req = (Databuild__V1__AppendRequest *)msg;
    for (size_t i = 0; i < req->n_events; i++) {
        el_event ev;
        int rc = el_event_prepare(a, req->events[i], i, &ev, st);
        if (rc) return rc;
        FUZZ_CHECK(ev.ev == req->events[i] && ev.kind >= 10 && ev.kind <= 19, "event %zu: kind %d",
                   i, ev.kind);
        FUZZ_CHECK(req->events[i]->event_id && *req->events[i]->event_id, "event %zu has no id", i);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const dbld_service *const services[] = {&el_eventlog_service,  &el_claims_service,
                                                   &el_leases_service,    &el_joblogs_service,
                                                   &el_processes_service, NULL};
    fuzz_service_request(services, data, size, validate);
    return 0;
}
