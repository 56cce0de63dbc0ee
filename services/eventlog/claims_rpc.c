/* claims_rpc.c - databuild.v1.PartitionClaims: Claim and Release. The
 * decision itself is made by the store's writer, serialized with appends. */
#include "eventlog_rpc.h"
#include "databuild_ext.pb-c.h"

#include <stdlib.h>
#include <string.h>

typedef struct claim_ctx {
    el_async as; /* first */
    el_claim c;
} claim_ctx;

/* The writer decided (and, if granted, committed) the claim. */
static ProtobufCMessage *claim_respond(el_async *as, dbld_arena *a)
{
    el_claim *c = &((claim_ctx *)as)->c;
    Databuild__V1__ClaimResponse *resp =
        dbld_arena_msg(a, &databuild__v1__claim_response__descriptor);
    resp->outcome = (Databuild__V1__ClaimOutcome)c->outcome;
    if (c->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_HELD) {
        resp->held_ref = (char *)c->held_ref;
        resp->holder_build_request_id = (char *)c->holder_build_request_id;
        resp->holder_job_run_id = (char *)c->holder_job_run_id;
    }
    if (c->outcome == DATABUILD__V1__CLAIM_OUTCOME__CLAIM_GRANTED && c->n_events) {
        resp->n_event_idx = c->n_events;
        resp->event_idx = dbld_arena_alloc(a, c->n_events * sizeof *resp->event_idx);
        for (size_t i = 0; i < c->n_events; i++)
            resp->event_idx[i] = c->events[i].idx;
    }
    return &resp->base;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* The distinct refs of a request, sorted, in the arena (*n updated): a ref
 * given twice is claimed once. Repeats must not reach the writer, where
 * they would fail the batch's claim-row upsert for every request in it. */
static char **distinct_refs(dbld_arena *a, char *const *refs, size_t *n)
{
    char **out = dbld_arena_alloc(a, (*n + 1) * sizeof *out);
    memcpy(out, refs, *n * sizeof *out);
    qsort(out, *n, sizeof *out, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++)
        if (k == 0 || strcmp(out[k - 1], out[i]) != 0) out[k++] = out[i];
    *n = k;
    return out;
}

/* Nonblocking: validate, queue for the writer, answer from claim_respond. */
static int claim(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                 dbld_status *st)
{
    (void)resp_msg;
    el_store *store = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__ClaimRequest *req = (const Databuild__V1__ClaimRequest *)req_msg;
    if (!*req->build_request_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "claim: build_request_id is required");
    if (!*req->job_run_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "claim: job_run_id is required");
    if (req->n_refs == 0) return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "claim: refs is empty");
    for (size_t i = 0; i < req->n_refs; i++)
        if (!*req->refs[i])
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "claim: ref %zu is empty", i);
    size_t n_refs = req->n_refs;
    char **refs = distinct_refs(a, req->refs, &n_refs);
    claim_ctx *ctx = dbld_arena_alloc(a, sizeof *ctx);
    *ctx = (claim_ctx){.as = {call, claim_respond},
                       .c = {.build_request_id = req->build_request_id,
                             .job_run_id = req->job_run_id,
                             .refs = refs,
                             .n_refs = n_refs,
                             .n_events = req->n_events_if_granted,
                             .lease_owner = req->lease_owner,
                             .min_available_ns = req->min_available_ns}};
    el_claim *c = &ctx->c;
    c->events = dbld_arena_alloc(a, (c->n_events + 1) * sizeof *c->events);
    for (size_t i = 0; i < c->n_events; i++) {
        int rc = el_event_prepare(a, req->events_if_granted[i], i, &c->events[i], st);
        if (rc) return rc;
    }
    /* Once queued the call belongs to the writer: touch nothing after. */
    int rc = el_store_claim_async(store, c, a, el_async_done, ctx, st);
    return rc ? rc : DBLD_ASYNC;
}

static int release(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                   dbld_status *st)
{
    el_store *store = dbld_call_user(call);
    const Databuild__V1__ReleaseRequest *req = (const Databuild__V1__ReleaseRequest *)req_msg;
    if (!*req->build_request_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "release: build_request_id is required");
    uint32_t released = 0;
    int rc = el_store_release(store, req->build_request_id, req->job_run_id, req->refs, req->n_refs,
                              &released, st);
    if (rc) return rc;
    Databuild__V1__ReleaseResponse *resp =
        dbld_arena_msg(dbld_call_arena(call), &databuild__v1__release_response__descriptor);
    resp->released = released;
    *resp_msg = &resp->base;
    return 0;
}

static const dbld_method methods[] = {
    {"/databuild.v1.PartitionClaims/Claim", &databuild__v1__claim_request__descriptor,
     &databuild__v1__claim_response__descriptor, claim, NULL, DBLD_METHOD_NONBLOCKING},
    {"/databuild.v1.PartitionClaims/Release", &databuild__v1__release_request__descriptor,
     &databuild__v1__release_response__descriptor, release, NULL},
    {"/databuild.v1.PartitionClaims/Status", &databuild__v1__partition_status_request__descriptor,
     &databuild__v1__partition_status_response__descriptor, el_partition_status, NULL},
};

const dbld_service el_claims_service = {
    .name = "databuild.v1.PartitionClaims",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
