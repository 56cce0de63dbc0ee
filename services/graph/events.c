/* events.c - BuildEvent builders (see events.h). */
#include "events.h"

#include "dbld/util.h"

#include <string.h>

static const char *enum_name(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return ev ? ev->name : "";
}

gs_event *gs_ev_base(dbld_arena *a, const char *br)
{
    gs_event *e = dbld_arena_msg(a, &databuild__v1__build_event__descriptor);
    char id[37];
    dbld_uuid_v4(id);
    e->event_id = dbld_arena_strdup(a, id);
    e->timestamp = dbld_now_ns();
    e->build_request_id = (char *)br;
    return e;
}

static Databuild__V1__PartitionRef *ref_msg(dbld_arena *a, const char *ref)
{
    Databuild__V1__PartitionRef *r = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    r->str = (char *)ref;
    return r;
}

Databuild__V1__PartitionRef **gs_refs(dbld_arena *a, const char *const *refs, size_t n)
{
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = ref_msg(a, refs[i]);
    return out;
}

gs_event *gs_ev_build_request(dbld_arena *a, const char *br, int code, const char *message)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__BuildRequestEvent *b =
        dbld_arena_msg(a, &databuild__v1__build_request_event__descriptor);
    b->status = dbld_arena_msg(a, &databuild__v1__build_request_status__descriptor);
    b->status->code = (Databuild__V1__BuildRequestStatusCode)code;
    b->status->name =
        (char *)enum_name(&databuild__v1__build_request_status_code__descriptor, code);
    b->message = (char *)(message ? message : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT;
    e->build_request_event = b;
    return e;
}

gs_event *gs_ev_partition(dbld_arena *a, const char *br, const char *ref, int status,
                          const char *job_run_id, const char *message)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__PartitionEvent *p =
        dbld_arena_msg(a, &databuild__v1__partition_event__descriptor);
    p->partition_ref = ref_msg(a, ref);
    p->status_code = (Databuild__V1__PartitionStatus)status;
    p->status_name = (char *)enum_name(&databuild__v1__partition_status__descriptor, status);
    p->message = (char *)(message ? message : "");
    p->job_run_id = (char *)(job_run_id ? job_run_id : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT;
    e->partition_event = p;
    return e;
}

gs_event *gs_ev_job(dbld_arena *a, const char *br, const char *job_run_id, const char *label,
                    const Databuild__V1__JobConfig *targets_of, int status, const char *message)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__JobEvent *j = dbld_arena_msg(a, &databuild__v1__job_event__descriptor);
    j->job_run_id = (char *)job_run_id;
    j->job_label = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
    j->job_label->label = (char *)label;
    if (targets_of) {
        j->n_target_partitions = targets_of->n_outputs;
        j->target_partitions = targets_of->outputs;
    }
    j->status_code = (Databuild__V1__JobStatus)status;
    j->status_name = (char *)enum_name(&databuild__v1__job_status__descriptor, status);
    j->message = (char *)(message ? message : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT;
    e->job_event = j;
    return e;
}

gs_event *gs_ev_delegation(dbld_arena *a, const char *br, const char *ref, const char *to,
                           const char *message)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__DelegationEvent *d =
        dbld_arena_msg(a, &databuild__v1__delegation_event__descriptor);
    d->partition_ref = ref_msg(a, ref);
    d->delegated_to_build_request_id = (char *)to;
    d->message = (char *)(message ? message : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT;
    e->delegation_event = d;
    return e;
}

gs_event *gs_ev_job_graph(dbld_arena *a, const char *br, Databuild__V1__JobGraph *g,
                          const char *message)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__JobGraphEvent *j =
        dbld_arena_msg(a, &databuild__v1__job_graph_event__descriptor);
    j->job_graph = g;
    j->message = (char *)(message ? message : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT;
    e->job_graph_event = j;
    return e;
}

gs_event *gs_ev_build_cancel(dbld_arena *a, const char *br, const char *reason)
{
    gs_event *e = gs_ev_base(a, br);
    Databuild__V1__BuildCancelEvent *c =
        dbld_arena_msg(a, &databuild__v1__build_cancel_event__descriptor);
    c->reason = (char *)(reason ? reason : "");
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT;
    e->build_cancel_event = c;
    return e;
}

void gs_evlist_add(dbld_arena *a, gs_evlist *l, gs_event *e)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        gs_event **grown = dbld_arena_alloc(a, cap * sizeof *grown);
        if (l->n) memcpy(grown, l->evs, l->n * sizeof *grown);
        l->evs = grown;
        l->cap = cap;
    }
    l->evs[l->n++] = e;
}
