/* test_processes_fixture.h - shared fixture of the background-process tests
 * that need the query service too (test_processes_cli.c, test_external.c):
 * the graph fixture (test_build_fixture.h) plus a query service configured
 * with the same jobs, PutWants of one want, and a want's WantStateInfo read
 * back from GetWantSummary as a client of databuild_process.proto would.
 *
 * Functions are static and marked unused: each test binary uses a subset.
 */
#ifndef TEST_PROCESSES_FIXTURE_H
#define TEST_PROCESSES_FIXTURE_H

#include "test_build_fixture.h"
#include "test_cli_fixture.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#define PF_UNUSED __attribute__((unused))
#define WS(x) DATABUILD__V1__WANT_STATE__WANT_##x

typedef struct pf {
    bf b;
    h_service *q;
} pf;

/* Event log, job, graph (process lease 1.5 s) and query services; external
 * is graph.external as a YAML flow list (NULL: none). */
static PF_UNUSED void pf_setup(pf *f, const char *hint, const char *jobs_yaml, const char *rules,
                               const char *external)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = jobs_yaml, .rules = rules, .external = external};
    bf_setup(&f->b, hint, &o);
    const char *jobs = strstr(f->b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts qo = {
        .eventlog_addr = f->b.el->addr,
        .extra_section = dbld_arena_printf(f->b.a, "graph:\n  listen: \"%s\"\n  external: %s\n%s",
                                           f->b.graph->addr, external ? external : "[]", jobs),
    };
    f->q = h_service_start("query", f->b.dsn, &qo);
}

/* PutWants through the query service (one want). */
static PF_UNUSED char *pf_put_want(pf *f, const char *ref, uint64_t data_ts, uint64_t ttl,
                                   uint64_t sla)
{
    Databuild__V1__PutWantsRequest req = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    Databuild__V1__IndividualWantRequest w = DATABUILD__V1__INDIVIDUAL_WANT_REQUEST__INIT;
    Databuild__V1__PartitionRef pr = DATABUILD__V1__PARTITION_REF__INIT;
    pr.str = (char *)ref;
    w.ref = &pr;
    w.date_timestamp = data_ts;
    w.ttl_seconds = ttl;
    w.sla_seconds = sla;
    Databuild__V1__IndividualWantRequest *ws[] = {&w};
    req.wants = ws;
    req.n_wants = 1;
    Databuild__V1__PutWantsResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/PutWants", &req.base,
                               &databuild__v1__put_wants_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    CHECK_EQ_INT(resp->n_wants, 1);
    return resp->wants[0]->want_id;
}

/* GetWantSummary of a want (the response holds a summary). */
static PF_UNUSED Databuild__V1__WantSummaryResponse *pf_want_summary(pf *f, const char *id)
{
    Databuild__V1__WantSummaryRequest req = DATABUILD__V1__WANT_SUMMARY_REQUEST__INIT;
    req.want_id = (char *)id;
    Databuild__V1__WantSummaryResponse *resp = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->q->client, "/databuild.v1.DataBuildService/GetWantSummary",
                               &req.base, &databuild__v1__want_summary_response__descriptor,
                               dbld_arena_allocator(f->b.a), (ProtobufCMessage **)&resp, BF_CALL_MS,
                               0, &st),
             st);
    CHECK(resp->want);
    return resp;
}

/* The want's WantStateInfo from GetWantSummary; *reason set. */
static PF_UNUSED int pf_want_state(pf *f, const char *id, char **reason)
{
    Databuild__V1__WantSummaryResponse *resp = pf_want_summary(f, id);
    /* read them as a WantStateInfo would: re-parse the summary's bytes */
    size_t n;
    uint8_t *b = dbld_msg_pack(f->b.a, &resp->want->base, &n);
    Databuild__V1__WantStateInfo *info =
        databuild__v1__want_state_info__unpack(dbld_arena_allocator(f->b.a), n, b);
    CHECK(info != NULL);
    if (reason) *reason = info->state_reason;
    return info->state;
}

#endif
