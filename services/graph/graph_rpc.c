/* graph_rpc.c - GraphLookup.Lookup and GraphBuilder.{Analyze,Build,Submit,Cancel}.
 *
 * Handlers only translate: refs out of the request, the work in lookup.c,
 * analyze.c and coordinator.c, the result (or status) back. Analyze builds its
 * plan outside the call arena: it answers with dbld_call_complete() (which
 * packs the response at once) and frees the plan after. Build and Cancel wait for a build's
 * end without holding a worker: they hand the call to waiters.c and return
 * DBLD_ASYNC.
 */
#include "graph_rpc.h"

#include "coordinator.h"
#include "waiters.h"

#include "dbld/log.h"

#include <stdio.h>
#include <string.h>

#define CANCEL_WAIT_MS 30000

static const char **refs_of(dbld_arena *a, Databuild__V1__PartitionRef **refs, size_t n)
{
    const char **out = dbld_arena_alloc(a, (n + 1) * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = refs[i] && refs[i]->str ? refs[i]->str : "";
    return out;
}

static int lookup(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                  dbld_status *st)
{
    gs_service *s = dbld_call_user(call);
    const Databuild__V1__GraphLookupRequest *req =
        (const Databuild__V1__GraphLookupRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    Databuild__V1__GraphLookupResponse *r = NULL;
    int rc = gs_lookup_group(s->lookup, refs_of(a, req->outputs, req->n_outputs), req->n_outputs, a,
                             &r, st);
    if (rc) return rc;
    *resp = &r->base;
    return 0;
}

static int analyze(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                   dbld_status *st)
{
    gs_service *s = dbld_call_user(call);
    const Databuild__V1__GraphAnalyzeRequest *req =
        (const Databuild__V1__GraphAnalyzeRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    gs_analyze_env env;
    gs_analyze_env_init(s, &env);
    gs_plan *p = NULL;
    int calls = 0;
    int rc = gs_analyze(&env, refs_of(a, req->outputs, req->n_outputs), req->n_outputs, &p, NULL,
                        &calls, NULL, st);
    char n_calls[16];
    snprintf(n_calls, sizeof n_calls, "%d", calls);
    dbld_log(DBLD_LOG_INFO, rc ? "analyze failed" : "analyzed", "configure_calls", n_calls, "error",
             rc ? st->msg : NULL, (char *)NULL);
    if (rc) return rc;
    /* answered here, from the plan: dbld_call_complete() packs the message
     * before it returns, so the plan is freed after it (no copy into the
     * call's arena: a 100k-task graph is tens of MB) */
    Databuild__V1__GraphAnalyzeResponse *r =
        dbld_arena_msg(a, &databuild__v1__graph_analyze_response__descriptor);
    r->graph = p->graph;
    dbld_call_complete(call, DBLD_OK, NULL, &r->base);
    gs_plan_free(p);
    (void)resp;
    return DBLD_ASYNC;
}

/* Submit, then answer when the build ends (waiters.c): no worker waits. */
static int build(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                 dbld_status *st)
{
    (void)resp;
    gs_service *s = dbld_call_user(call);
    const Databuild__V1__GraphBuildRequest *req = (const Databuild__V1__GraphBuildRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    gs_waiter *w = gs_waiter_new(s->waiters, call, GS_WAIT_BUILD, st);
    if (!w) return st->code;
    char id[37];
    gs_build *b = NULL;
    int rc = gs_build_submit(s, refs_of(a, req->outputs, req->n_outputs), req->n_outputs, "", "",
                             id, &b, st);
    if (rc) {
        gs_waiter_drop(w);
        return rc;
    }
    return gs_waiter_arm(w, b, -1);
}

static int submit(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                  dbld_status *st)
{
    gs_service *s = dbld_call_user(call);
    const Databuild__V1__SubmitBuildRequest *req =
        (const Databuild__V1__SubmitBuildRequest *)req_msg;
    dbld_arena *a = dbld_call_arena(call);
    char id[37];
    int rc = gs_build_submit_forced(s, refs_of(a, req->outputs, req->n_outputs), req->n_outputs,
                                    req->comment, req->want_id, req->force, id, NULL, st);
    if (rc) return rc;
    Databuild__V1__SubmitBuildResponse *r =
        dbld_arena_msg(a, &databuild__v1__submit_build_response__descriptor);
    r->build_request_id = dbld_arena_strdup(a, id);
    *resp = &r->base;
    return 0;
}

/* Record the cancel, then answer once the build ended (or after up to
 * CANCEL_WAIT_MS, within the client's deadline) without holding a worker. */
static int cancel(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                  dbld_status *st)
{
    (void)resp;
    gs_service *s = dbld_call_user(call);
    const Databuild__V1__CancelBuildRequest *req =
        (const Databuild__V1__CancelBuildRequest *)req_msg;
    if (!*req->build_request_id)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "cancel: build_request_id is required");
    int64_t wait = dbld_call_remaining_ms(call) - 1000;
    if (wait > CANCEL_WAIT_MS) wait = CANCEL_WAIT_MS;
    if (wait < 0) wait = 0;
    gs_build *b = NULL;
    int rc = gs_build_cancel(s, req->build_request_id, req->reason, &b, st);
    if (rc) return rc;
    gs_waiter *w = gs_waiter_new(s->waiters, call, GS_WAIT_CANCEL, st);
    if (!w) { /* recorded; too many calls wait already: do not wait for the end */
        gs_build_unref(b);
        return 0;
    }
    return gs_waiter_arm(w, b, wait);
}

static const dbld_method lookup_methods[] = {
    {"/databuild.v1.GraphLookup/Lookup", &databuild__v1__graph_lookup_request__descriptor,
     &databuild__v1__graph_lookup_response__descriptor, lookup, NULL,
     DBLD_METHOD_NONBLOCKING}, /* regexes in memory: answered on the poller, never queued */
};

const dbld_service gs_lookup_service = {
    .name = "databuild.v1.GraphLookup",
    .methods = lookup_methods,
    .n_methods = sizeof lookup_methods / sizeof lookup_methods[0],
};

static const dbld_method builder_methods[] = {
    {"/databuild.v1.GraphBuilder/Analyze", &databuild__v1__graph_analyze_request__descriptor,
     &databuild__v1__graph_analyze_response__descriptor, analyze, NULL},
    {"/databuild.v1.GraphBuilder/Build", &databuild__v1__graph_build_request__descriptor,
     &databuild__v1__graph_build_response__descriptor, build, NULL},
    {"/databuild.v1.GraphBuilder/Submit", &databuild__v1__submit_build_request__descriptor,
     &databuild__v1__submit_build_response__descriptor, submit, NULL},
    {"/databuild.v1.GraphBuilder/Cancel", &databuild__v1__cancel_build_request__descriptor,
     &databuild__v1__cancel_build_response__descriptor, cancel, NULL},
};

const dbld_service gs_builder_service = {
    .name = "databuild.v1.GraphBuilder",
    .methods = builder_methods,
    .n_methods = sizeof builder_methods / sizeof builder_methods[0],
};
