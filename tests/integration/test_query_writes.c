/* test_query_writes.c - the query service's write paths and the rest:
 * PutWants / ListWants / GetWantSummary and PutTaints / ListTaints /
 * GetTaintSummary round trips (through the real event log), job logs
 * paging (QueryOps.GetJobLogs), Batched with failing keys, CancelBuild
 * forwarded to a stand-in graph service, health that waits for the schema,
 * and a read-only database role.
 */
#include "test_query_fixture.h"

#include <pthread.h>
#include <unistd.h>

#define JOB(x) DATABUILD__V1__JOB_STATUS__JOB_##x
#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x

/* A finished build of one partition, so wants and taints have something to show. */
static void built(qf *f, const char *br, const char *run, const char *ref, int64_t t0)
{
    qf_seq q;
    qf_seq_init(&q, f->a, t0);
    qf_br(&q, br, BR(RECEIVED), H_STRS(ref), "", NULL);
    qf_br(&q, br, BR(EXECUTING), H_STRS(ref), "", NULL);
    qf_run(&q, br, run, "//jobs:agg", ref, JOB(COMPLETED), NULL);
    qf_br(&q, br, BR(COMPLETED), H_STRS(ref), "", NULL);
    qf_flush(f, &q);
}

static Databuild__V1__IndividualWantRequest *want_req(dbld_arena *a, const char *ref, uint64_t ttl)
{
    Databuild__V1__IndividualWantRequest *w =
        dbld_arena_msg(a, &databuild__v1__individual_want_request__descriptor);
    w->ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
    w->ref->str = (char *)ref;
    w->ttl_seconds = ttl;
    return w;
}

static Databuild__V1__PartitionWantSummary *want_summary(qf *f, const char *id)
{
    Databuild__V1__WantSummaryRequest req = DATABUILD__V1__WANT_SUMMARY_REQUEST__INIT;
    req.want_id = (char *)id;
    return QF_OK(f, "GetWantSummary", &req, Databuild__V1__WantSummaryResponse,
                 databuild__v1__want_summary_response__descriptor)
        ->want;
}

static Databuild__V1__ListWantsResponse *list_wants(qf *f, uint64_t until, uint64_t ttl_until)
{
    Databuild__V1__ListWantsRequest req = DATABUILD__V1__LIST_WANTS_REQUEST__INIT;
    req.requested_until = until;
    req.ttl_until = ttl_until;
    return QF_OK(f, "ListWants", &req, Databuild__V1__ListWantsResponse,
                 databuild__v1__list_wants_response__descriptor);
}

static int has_want(const Databuild__V1__ListWantsResponse *r, const char *id)
{
    for (size_t i = 0; i < r->n_wants; i++)
        if (strcmp(r->wants[i]->want->want_id, id) == 0) return 1;
    return 0;
}

DBLD_TEST(wants_round_trip)
{
    qf f = qf_start("qwants");
    built(&f, "build-w", "run-w", "agg/date=2026-01-01", QF_T0);
    h_append_ok(
        f.el, f.a,
        (Databuild__V1__BuildEvent *[]){h_event_invalidation(f.a, "", "agg/date=2026-01-01", "x")},
        1);
    built(&f, "build-w2", "run-w2", "agg/date=2026-01-01", QF_T0 + 100 * QF_SEC);

    Databuild__V1__PutWantsRequest req = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    Databuild__V1__IndividualWantRequest *ws[3] = {want_req(f.a, "agg/date=2026-01-01", 3600),
                                                   want_req(f.a, "raw/date=2026-01-01", 0),
                                                   want_req(f.a, "reviews/date=2026-01-05", 1)};
    ws[0]->date_timestamp = (uint64_t)QF_T0;
    ws[0]->sla_seconds = 600;
    req.wants = ws;
    req.n_wants = 3;
    Databuild__V1__WantSource src = DATABUILD__V1__WANT_SOURCE__INIT;
    Databuild__V1__SourceType type = DATABUILD__V1__SOURCE_TYPE__INIT;
    type.code = DATABUILD__V1__SOURCE_TYPE_CODE__DASHBOARD_MANUAL;
    src.source_type = &type;
    req.source = &src;
    req.comment = "please keep built";
    int64_t before = dbld_now_ns();
    Databuild__V1__PutWantsResponse *put =
        QF_OK(&f, "PutWants", &req, Databuild__V1__PutWantsResponse,
              databuild__v1__put_wants_response__descriptor);
    CHECK_EQ_INT(put->n_wants, 3);
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_STR(put->wants[i]->ref->str, ws[i]->ref->str);
        CHECK(dbld_uuid_valid(put->wants[i]->want_id));
    }
    CHECK(strcmp(put->wants[0]->want_id, put->wants[1]->want_id) != 0);

    Databuild__V1__PartitionWantSummary *w = want_summary(&f, put->wants[0]->want_id);
    CHECK_EQ_STR(w->want->want_id, put->wants[0]->want_id);
    CHECK_EQ_STR(w->want->ref->str, "agg/date=2026-01-01");
    CHECK_CMP_INT(w->want->created_at, >=, before);
    CHECK_EQ_INT(w->want->data_timestamp, QF_T0);
    CHECK_EQ_INT(w->want->ttl_seconds, 3600);
    CHECK_EQ_INT(w->want->sla_seconds, 600);
    CHECK_EQ_STR(w->comment, "please keep built");
    CHECK_EQ_INT(w->n_partitions, 1);
    Databuild__V1__PartitionSummary *p = w->partitions[0];
    CHECK_EQ_STR(p->partition_ref->str, "agg/date=2026-01-01");
    CHECK_EQ_INT(p->status_code, DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_STR(p->status_name, "PARTITION_AVAILABLE");
    CHECK_EQ_INT(p->builds_count, 2);
    CHECK_EQ_INT(p->invalidation_count, 1);
    CHECK_EQ_STR(p->last_successful_build, "build-w2");
    CHECK_EQ_INT(w->n_external_partitions, 0);

    w = want_summary(&f, put->wants[1]->want_id); /* an external dependency */
    CHECK_EQ_INT(w->n_partitions, 0);
    CHECK_EQ_INT(w->n_external_partitions, 1);
    CHECK_EQ_STR(w->external_partitions[0]->ref->str, "raw/date=2026-01-01");
    /* wanted, never seen before: listed as REQUESTED from the WantEvent on */
    CHECK_EQ_INT(w->external_partitions[0]->status->status,
                 DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED);
    CHECK_EQ_INT(w->want->ttl_seconds, 0);

    /* the recorded WantEvent: source, comment, and the terms kept as fields 1001.. */
    Databuild__V1__ListBuildEventsRequest er = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    er.filters = h_filter(f.a, H_STRS("agg/date=2026-01-01"), NULL, NULL, NULL, NULL);
    Databuild__V1__ListBuildEventsResponse *evs =
        QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
              databuild__v1__list_build_events_response__descriptor);
    CHECK_EQ_INT(evs->events[evs->n_events - 1]->event_type_case,
                 DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT);
    Databuild__V1__WantEvent *we = evs->events[evs->n_events - 1]->want_event;
    CHECK_EQ_STR(we->want_id, put->wants[0]->want_id);
    CHECK_EQ_STR(we->comment, "please keep built");
    CHECK_EQ_INT(we->source->source_type->code, DATABUILD__V1__SOURCE_TYPE_CODE__DASHBOARD_MANUAL);
    CHECK_EQ_STR(we->source->source_type->name, "DASHBOARD_MANUAL");
    CHECK_EQ_INT(we->base.n_unknown_fields, 3);
    size_t len;
    uint8_t *bytes = h_pack(f.a, &we->base, &len);
    Databuild__V1__WantEventTerms *terms =
        databuild__v1__want_event_terms__unpack(NULL, len, bytes);
    CHECK(terms != NULL);
    CHECK_EQ_INT(terms->ttl_seconds, 3600);
    CHECK_EQ_INT(terms->sla_seconds, 600);
    CHECK_EQ_INT(terms->data_timestamp, QF_T0);
    databuild__v1__want_event_terms__free_unpacked(terms, NULL);

    /* listing: newest first, ttl_until drops expired wants only */
    Databuild__V1__ListWantsResponse *l = list_wants(&f, 0, 0);
    CHECK_EQ_INT(l->n_wants, 3);
    for (size_t i = 1; i < l->n_wants; i++)
        CHECK_CMP_INT(l->wants[i]->want->created_at, <=, l->wants[i - 1]->want->created_at);
    CHECK_EQ_INT(l->min_requested_at, l->wants[2]->want->created_at);
    CHECK_EQ_INT(l->wants[0]->n_partitions + l->wants[0]->n_external_partitions, 1);
    l = list_wants(&f, 0, (uint64_t)(dbld_now_ns() + 10 * QF_SEC));
    CHECK_EQ_INT(l->n_wants, 2);
    CHECK(has_want(l, put->wants[0]->want_id));  /* ttl 3600 s */
    CHECK(has_want(l, put->wants[1]->want_id));  /* no ttl */
    CHECK(!has_want(l, put->wants[2]->want_id)); /* ttl 1 s */
    l = list_wants(&f, (uint64_t)before, 0);
    CHECK_EQ_INT(l->n_wants, 0);

    /* refused requests record nothing */
    Databuild__V1__IndividualWantRequest *bad[2] = {want_req(f.a, "agg/date=2026-01-02", 0),
                                                    want_req(f.a, "nope/x", 0)};
    req.wants = bad;
    req.n_wants = 2;
    QF_ERR(&f, "PutWants", &req, databuild__v1__put_wants_response__descriptor,
           DBLD_INVALID_ARGUMENT, "wants[1].ref \"nope/x\"");
    req.n_wants = 0;
    QF_ERR(&f, "PutWants", &req, databuild__v1__put_wants_response__descriptor,
           DBLD_INVALID_ARGUMENT, "wants is required");
    bad[0]->ref = NULL;
    req.n_wants = 1;
    QF_ERR(&f, "PutWants", &req, databuild__v1__put_wants_response__descriptor,
           DBLD_INVALID_ARGUMENT, "wants[0].ref is required");
    CHECK_EQ_INT(list_wants(&f, 0, 0)->n_wants, 3);

    Databuild__V1__WantSummaryRequest sr = DATABUILD__V1__WANT_SUMMARY_REQUEST__INIT;
    sr.want_id = "no-such-want";
    QF_ERR(&f, "GetWantSummary", &sr, databuild__v1__want_summary_response__descriptor,
           DBLD_NOT_FOUND, "no-such-want");
    sr.want_id = "";
    QF_ERR(&f, "GetWantSummary", &sr, databuild__v1__want_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "want_id");
}

/* A WantEvent appended straight to the event log at ts, with ttl_seconds
 * carried as PutWants does (field 1002 of WantEventTerms, an unknown field
 * of the seed's WantEvent). */
static Databuild__V1__BuildEvent *want_at(dbld_arena *a, const char *id, int64_t ts, uint64_t ttl)
{
    Databuild__V1__BuildEvent *e =
        h_event_want(a, "", id, H_STRS("agg/date=2026-01-01"),
                     DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "paging");
    e->timestamp = ts;
    if (ttl) {
        uint8_t *buf = dbld_arena_alloc(a, 10);
        size_t len = 0;
        for (uint64_t v = ttl; len == 0 || v; v >>= 7)
            buf[len++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
        ProtobufCMessageUnknownField *u = dbld_arena_alloc(a, sizeof *u);
        *u = (ProtobufCMessageUnknownField){
            .tag = 1002, .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT, .len = len, .data = buf};
        e->want_event->base.unknown_fields = u;
        e->want_event->base.n_unknown_fields = 1;
    }
    return e;
}

#define N_PAGED_WANTS 260

/* ListWants with ttl_until over several pages: the filter is applied before
 * the page is cut, so every live want comes exactly once (also those sharing
 * a created time across a page boundary) and no expired one at all. */
DBLD_TEST(wants_ttl_paging)
{
    qf f = qf_start("qwantpages");
    Databuild__V1__BuildEvent **evs = dbld_arena_alloc(f.a, N_PAGED_WANTS * sizeof *evs);
    int live[N_PAGED_WANTS], n_live = 0;
    for (int i = 0; i < N_PAGED_WANTS; i++) {
        /* three wants per created time; every 5th expires 1 s after creation */
        uint64_t ttl = i % 5 == 0 ? 1 : i % 5 == 1 ? 0 : 100000;
        evs[i] =
            want_at(f.a, dbld_arena_printf(f.a, "want-%03d", i), QF_T0 + (i / 3) * QF_SEC, ttl);
        live[i] = i % 5 != 0;
        n_live += live[i];
    }
    h_append_ok(f.el, f.a, evs, N_PAGED_WANTS);
    uint64_t ttl_until = (uint64_t)(QF_T0 + 200 * QF_SEC);
    int seen[N_PAGED_WANTS] = {0};
    uint64_t until = 0, last_created = (uint64_t)INT64_MAX;
    int pages = 0, total = 0;
    for (;;) {
        Databuild__V1__ListWantsResponse *r = list_wants(&f, until, ttl_until);
        pages++;
        CHECK(pages < 20);
        if (r->n_wants == 0) break;
        for (size_t k = 0; k < r->n_wants; k++) {
            const Databuild__V1__PartitionWant *w = r->wants[k]->want;
            int i = atoi(w->want_id + strlen("want-"));
            CHECK(i >= 0 && i < N_PAGED_WANTS);
            CHECK_MSG(live[i], "expired %s listed", w->want_id);
            CHECK_MSG(seen[i] == 0, "%s listed twice", w->want_id);
            seen[i]++;
            total++;
            CHECK_CMP_INT(w->created_at, <=, last_created); /* newest first */
            last_created = w->created_at;
        }
        CHECK_EQ_INT(r->min_requested_at, r->wants[r->n_wants - 1]->want->created_at);
        until = r->min_requested_at;
    }
    CHECK_EQ_INT(total, n_live);
    CHECK_CMP_INT(pages, >=, 3); /* two full pages and the rest, then the empty one */
    /* without the filter: every want, expired ones too */
    until = 0;
    total = 0;
    for (Databuild__V1__ListWantsResponse *r; (r = list_wants(&f, until, 0))->n_wants;) {
        total += (int)r->n_wants;
        until = r->min_requested_at;
    }
    CHECK_EQ_INT(total, N_PAGED_WANTS);
}

static Databuild__V1__PutTaintsResponse *put_taint(qf *f, const char *const *refs, int source,
                                                   const char *comment)
{
    Databuild__V1__PutTaintsRequest req = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    size_t n = 0;
    while (refs[n])
        n++;
    req.refs = dbld_arena_alloc(f->a, (n + 1) * sizeof *req.refs);
    for (size_t i = 0; i < n; i++) {
        req.refs[i] = dbld_arena_msg(f->a, &databuild__v1__partition_ref__descriptor);
        req.refs[i]->str = (char *)refs[i];
    }
    req.n_refs = n;
    Databuild__V1__SourceType st = DATABUILD__V1__SOURCE_TYPE__INIT;
    st.code = source;
    req.source = source >= 0 ? &st : NULL;
    req.comment = (char *)comment;
    return QF_OK(f, "PutTaints", &req, Databuild__V1__PutTaintsResponse,
                 databuild__v1__put_taints_response__descriptor);
}

DBLD_TEST(taints_round_trip)
{
    qf f = qf_start("qtaints");
    built(&f, "build-t", "run-t", "agg/date=2026-01-01", QF_T0);
    int64_t before = dbld_now_ns();
    Databuild__V1__PutTaintsResponse *t1 = put_taint(
        &f, H_STRS("agg/date=2026-01-01", "agg/date=2026-01-02"), -1, "bad upstream data");
    CHECK(dbld_uuid_valid(t1->taint_id));
    Databuild__V1__TaintSummaryRequest sr = DATABUILD__V1__TAINT_SUMMARY_REQUEST__INIT;
    sr.taint_id = t1->taint_id;
    Databuild__V1__PartitionTaintSummary *t =
        QF_OK(&f, "GetTaintSummary", &sr, Databuild__V1__TaintSummaryResponse,
              databuild__v1__taint_summary_response__descriptor)
            ->taint;
    CHECK_EQ_STR(t->taint_id, t1->taint_id);
    CHECK_EQ_INT(t->n_refs, 2);
    CHECK_EQ_STR(t->refs[1]->str, "agg/date=2026-01-02");
    CHECK_EQ_STR(t->comment, "bad upstream data");
    CHECK_CMP_INT(t->tainted_at, >=, before);
    CHECK_EQ_INT(t->source->code, DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST);
    CHECK_EQ_STR(t->source->name, "API_REQUEST");

    Databuild__V1__PutTaintsResponse *t2 = put_taint(
        &f, H_STRS("agg/date=2026-01-01"), DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL, "");
    Databuild__V1__ListTaintsRequest lr = DATABUILD__V1__LIST_TAINTS_REQUEST__INIT;
    Databuild__V1__ListTaintsResponse *l =
        QF_OK(&f, "ListTaints", &lr, Databuild__V1__ListTaintsResponse,
              databuild__v1__list_taints_response__descriptor);
    CHECK_EQ_INT(l->n_taints, 2);
    CHECK_EQ_STR(l->taints[0]->taint_id, t2->taint_id);
    CHECK_EQ_STR(l->taints[1]->taint_id, t1->taint_id);
    CHECK_EQ_INT(l->taints[0]->source->code, DATABUILD__V1__SOURCE_TYPE_CODE__CLI_MANUAL);
    CHECK_EQ_INT(l->min_tainted_at, l->taints[1]->tainted_at);
    lr.tainted_at_until = l->taints[0]->tainted_at;
    l = QF_OK(&f, "ListTaints", &lr, Databuild__V1__ListTaintsResponse,
              databuild__v1__list_taints_response__descriptor);
    CHECK_EQ_INT(l->n_taints, 1);
    CHECK_EQ_STR(l->taints[0]->taint_id, t1->taint_id);

    /* the partition now shows the invalidation, and the event log marks it tainted */
    Databuild__V1__PartitionSummaryRequest pr = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    pr.ref = dbld_arena_msg(f.a, &databuild__v1__partition_ref__descriptor);
    pr.ref->str = "agg/date=2026-01-01";
    Databuild__V1__PartitionSummaryV2 *ps =
        QF_OK(&f, "GetPartitionsSummary", &pr, Databuild__V1__PartitionSummaryResponse,
              databuild__v1__partition_summary_response__descriptor)
            ->partition;
    CHECK_CMP_INT(ps->last_invalidated_at, >=, t->tainted_at);
    CHECK_EQ_INT(ps->status->code, DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    Databuild__V1__PartitionStatusRequest stq = DATABUILD__V1__PARTITION_STATUS_REQUEST__INIT;
    char *refs[] = {"agg/date=2026-01-01"};
    stq.refs = refs;
    stq.n_refs = 1;
    Databuild__V1__PartitionStatusResponse *stp = NULL;
    dbld_status st;
    CHECK_OK(qf_call_at(f.el, "/databuild.v1.PartitionClaims/Status", &stq,
                        &databuild__v1__partition_status_response__descriptor, f.a, &stp, &st),
             st);
    CHECK(stp->partitions[0]->tainted);

    Databuild__V1__ListBuildEventsRequest er = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    er.filters = h_filter(f.a, H_STRS("agg/date=2026-01-02"), NULL, NULL, NULL, NULL);
    Databuild__V1__ListBuildEventsResponse *evs =
        QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
              databuild__v1__list_build_events_response__descriptor);
    CHECK_EQ_INT(evs->n_events, 2);
    CHECK_EQ_STR(evs->events[0]->event_id, t1->taint_id);
    CHECK_EQ_INT(evs->events[0]->event_type_case,
                 DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT);
    CHECK_EQ_INT(evs->events[1]->event_type_case,
                 DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT);
    CHECK_EQ_STR(evs->events[0]->taint_event->comment, "bad upstream data");
    CHECK_EQ_STR(evs->events[1]->partition_invalidation_event->reason, "bad upstream data");

    Databuild__V1__PutTaintsRequest empty = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    QF_ERR(&f, "PutTaints", &empty, databuild__v1__put_taints_response__descriptor,
           DBLD_INVALID_ARGUMENT, "refs is required");
    /* an empty ref among good ones: refused, nothing recorded */
    Databuild__V1__PartitionRef good = DATABUILD__V1__PARTITION_REF__INIT, blank = good;
    good.str = "agg/date=2026-01-01";
    blank.str = "";
    empty.refs = (Databuild__V1__PartitionRef *[]){&good, &blank};
    empty.n_refs = 2;
    QF_ERR(&f, "PutTaints", &empty, databuild__v1__put_taints_response__descriptor,
           DBLD_INVALID_ARGUMENT, "refs[1] is empty");
    empty.refs = (Databuild__V1__PartitionRef *[]){&blank};
    empty.n_refs = 1;
    QF_ERR(&f, "PutTaints", &empty, databuild__v1__put_taints_response__descriptor,
           DBLD_INVALID_ARGUMENT, "refs[0] is empty");
    lr.tainted_at_until = 0;
    CHECK_EQ_INT(QF_OK(&f, "ListTaints", &lr, Databuild__V1__ListTaintsResponse,
                       databuild__v1__list_taints_response__descriptor)
                     ->n_taints,
                 2);
    sr.taint_id = "";
    QF_ERR(&f, "GetTaintSummary", &sr, databuild__v1__taint_summary_response__descriptor,
           DBLD_INVALID_ARGUMENT, "taint_id is required");
    sr.taint_id = "00000000-0000-4000-8000-000000000000";
    QF_ERR(&f, "GetTaintSummary", &sr, databuild__v1__taint_summary_response__descriptor,
           DBLD_NOT_FOUND, "00000000-0000-4000-8000-000000000000");
}

/* ---- job logs ---- */

#define LOG_RUN "run-logs-1"
#define N_LOGS 250

static int64_t log_ts(int seq)
{
    return QF_T0 + (int64_t)(seq / 2) * QF_SEC;
} /* pairs share one */

static void append_logs(qf *f)
{
    qf_append_logs(f, LOG_RUN, 1, N_LOGS, log_ts);
}

/* 1: get_logs() calls the event log's internal JobLogs/List, which pages
 * the same way as the query service's GetJobLogs. */
static int logs_from_eventlog;

static int get_logs(qf *f, const char *run, int64_t since, int min_level, uint32_t limit,
                    Databuild__V1__JobLogsResponse **out, dbld_status *st)
{
    Databuild__V1__JobLogsRequest req = DATABUILD__V1__JOB_LOGS_REQUEST__INIT;
    req.job_run_id = (char *)run;
    req.since_timestamp = since;
    req.min_level = min_level;
    req.limit = limit;
    if (logs_from_eventlog)
        return qf_call_at(f->el, "/databuild.v1.JobLogs/List", &req,
                          &databuild__v1__job_logs_response__descriptor, f->a, out, st);
    return qf_call_at(f->q, "/databuild.v1.QueryOps/GetJobLogs", &req,
                      &databuild__v1__job_logs_response__descriptor, f->a, out, st);
}

static int passes(int seq, int min_level)
{
    return seq % 10 == 0 || seq % 4 >= min_level;
}

DBLD_TEST(job_logs)
{
    qf f = qf_start("qlogs");
    append_logs(&f);
    Databuild__V1__JobLogsResponse *r;
    dbld_status st;
    CHECK_OK(get_logs(&f, LOG_RUN, 0, 0, 0, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, N_LOGS);
    CHECK(!r->has_more);
    for (int i = 0; i < N_LOGS; i++)
        CHECK_EQ_INT(r->entries[i]->sequence_number, i + 1);

    for (int min_level = 0; min_level <= 3; min_level += 2) {
        /* pages of 40, cursor = last timestamp: every entry once, in order */
        int64_t since = 0;
        int next = 1, pages = 0;
        for (;;) {
            CHECK_OK(get_logs(&f, LOG_RUN, since, min_level, 40, &r, &st), st);
            pages++;
            for (size_t i = 0; i < r->n_entries; i++) {
                while (next <= N_LOGS && !passes(next, min_level))
                    next++;
                CHECK_EQ_INT(r->entries[i]->sequence_number, next);
                next++;
            }
            if (!r->has_more) break;
            /* limit is a maximum: a page ends before a pair it cannot hold whole */
            CHECK_CMP_INT(r->n_entries, >=, 39);
            CHECK_CMP_INT(r->n_entries, <=, 40);
            since = strtoll(r->entries[r->n_entries - 1]->timestamp, NULL, 10);
            CHECK(pages < 100);
        }
        while (next <= N_LOGS && !passes(next, min_level))
            next++;
        CHECK_EQ_INT(next, N_LOGS + 1);
        CHECK_CMP_INT(pages, >=, 2);
    }
    /* since in seconds (the wrapper's other timestamp form) */
    CHECK_OK(get_logs(&f, LOG_RUN, QF_T0 / QF_SEC + 100, 0, 0, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, N_LOGS - 201);
    CHECK_EQ_INT(r->entries[0]->sequence_number, 202);

    CHECK_CODE(get_logs(&f, "no-such-run", 0, 0, 0, &r, &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "no-such-run");
    CHECK_CODE(get_logs(&f, LOG_RUN, 0, 5, 0, &r, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "min_level");
    CHECK_CODE(get_logs(&f, "", 0, 0, 0, &r, &st), st, DBLD_INVALID_ARGUMENT);
    CHECK_CONTAINS(st.msg, "job_run_id");
    CHECK_OK(get_logs(&f, LOG_RUN, 0, 0, 1000000, &r, &st), st); /* capped, not refused */
    CHECK_EQ_INT(r->n_entries, N_LOGS);

    /* limit 2: entry 3 shares entry 2's timestamp, so the page is entry 1 alone */
    CHECK_OK(get_logs(&f, LOG_RUN, 0, 0, 2, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, 1);
    CHECK(r->has_more);
    /* limit 1 through runs of two equal timestamps: a run longer than the
     * limit on its own is the one case of a page above it (returned whole,
     * the only lossless answer with a timestamp cursor) */
    int64_t since = 0;
    int next = 1, pages = 0;
    do {
        CHECK_OK(get_logs(&f, LOG_RUN, since, 0, 1, &r, &st), st);
        CHECK(++pages <= N_LOGS);
        CHECK_CMP_INT(r->n_entries, >=, 1);
        CHECK_CMP_INT(r->n_entries, <=, 2);
        if (r->n_entries == 2) CHECK_EQ_STR(r->entries[0]->timestamp, r->entries[1]->timestamp);
        for (size_t i = 0; i < r->n_entries; i++)
            CHECK_EQ_INT(r->entries[i]->sequence_number, next++);
        since = strtoll(r->entries[r->n_entries - 1]->timestamp, NULL, 10);
    } while (r->has_more);
    CHECK_EQ_INT(next, N_LOGS + 1);
    CHECK_EQ_INT(pages, N_LOGS / 2 + 1);
}

#define BIG_RUN "run-logs-big"
#define N_BIG 10500

static int64_t triple_ts(int seq)
{
    return QF_T0 + (int64_t)(seq / 3) * 1000000;
} /* runs of three equal timestamps, 1 ms apart */

static int64_t same_ts(int seq)
{
    return QF_T0 + (seq > 5 ? seq - 5 : 0) * QF_SEC;
} /* entries 1..5 share one timestamp, the rest one each */

/* Every entry of run exactly once, in order, paging with limit; returns the
 * number of pages and CHECKs that none held more than max entries. */
static int page_all(qf *f, const char *run, uint32_t limit, int n, size_t max)
{
    Databuild__V1__JobLogsResponse *r;
    dbld_status st;
    int64_t since = 0;
    int next = 1, pages = 0;
    do {
        CHECK_OK(get_logs(f, run, since, 0, limit, &r, &st), st);
        CHECK(++pages <= n);
        CHECK_CMP_INT(r->n_entries, >=, 1);
        CHECK_CMP_INT(r->n_entries, <=, max);
        for (size_t i = 0; i < r->n_entries; i++)
            CHECK_EQ_INT(r->entries[i]->sequence_number, next++);
        since = strtoll(r->entries[r->n_entries - 1]->timestamp, NULL, 10);
    } while (r->has_more);
    CHECK_EQ_INT(next, n + 1);
    return pages;
}

static void check_logs_limit(qf *f)
{
    Databuild__V1__JobLogsResponse *r;
    dbld_status st;
    /* default limit 1000: entries 999..1001 share a timestamp, so the first
     * page ends at 998 */
    CHECK_OK(get_logs(f, BIG_RUN, 0, 0, 0, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, 998);
    CHECK(r->has_more);
    CHECK_EQ_INT(r->entries[997]->sequence_number, 998);
    CHECK_CMP_INT(page_all(f, BIG_RUN, 0, N_BIG, 1000), >=, 11);
    /* the cap: 10000 at most, whatever is asked for (here 9998: 9999..10001
     * share a timestamp) */
    CHECK_OK(get_logs(f, BIG_RUN, 0, 0, 1000000, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, 9998);
    CHECK(r->has_more);
    CHECK_EQ_INT(page_all(f, BIG_RUN, 1000000, N_BIG, 10000), 2);
    CHECK_CMP_INT(page_all(f, BIG_RUN, 7, N_BIG, 7), >=, N_BIG / 7);

    /* one run of equal timestamps longer than the limit: returned whole */
    CHECK_OK(get_logs(f, "run-logs-same", 0, 0, 2, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, 5);
    CHECK(r->has_more);
    CHECK_OK(get_logs(f, "run-logs-same", (int64_t)QF_T0, 0, 2, &r, &st), st);
    CHECK_EQ_INT(r->n_entries, 2);
    CHECK_EQ_INT(r->entries[0]->sequence_number, 6);
    CHECK(r->has_more);
    CHECK_EQ_INT(page_all(f, "run-logs-same", 2, 8, 5), 3);
}

/* GetJobLogs' limit is a maximum (default 1000, capped at 10000) and paging
 * through more entries than that loses and repeats nothing; the same for the
 * event log's own JobLogs/List. */
DBLD_TEST(job_logs_limit)
{
    qf f = qf_start("qloglimit");
    qf_append_logs(&f, BIG_RUN, 1, N_BIG, triple_ts);
    qf_append_logs(&f, "run-logs-same", 1, 8, same_ts);
    for (logs_from_eventlog = 0; logs_from_eventlog <= 1; logs_from_eventlog++)
        check_logs_limit(&f);
}

/* ---- Batched ---- */

static Databuild__V1__BatchedRequest__RequestsEntry *
entry(dbld_arena *a, const char *key, const char *summary_of, const char *events_of, int empty_tmpl)
{
    Databuild__V1__BatchedRequest__RequestsEntry *e =
        dbld_arena_msg(a, &databuild__v1__batched_request__requests_entry__descriptor);
    e->key = (char *)key;
    e->value = dbld_arena_msg(a, &databuild__v1__request_container__descriptor);
    if (summary_of) {
        e->value->build_request_status =
            dbld_arena_msg(a, &databuild__v1__build_summary_request__descriptor);
        e->value->build_request_status->build_id = (char *)summary_of;
    }
    if (events_of || empty_tmpl) {
        Databuild__V1__ListBuildEventsResponse *t =
            dbld_arena_msg(a, &databuild__v1__list_build_events_response__descriptor);
        if (events_of) {
            t->events = dbld_arena_alloc(a, sizeof *t->events);
            t->events[0] = h_event_base(a, events_of, 0);
            t->n_events = 1;
        }
        e->value->list_build_events = t;
    }
    return e;
}

static const Databuild__V1__ResponseContainer *resp_for(const Databuild__V1__BatchedResponse *r,
                                                        const char *key)
{
    for (size_t i = 0; i < r->n_responses; i++)
        if (strcmp(r->responses[i]->key, key) == 0) return r->responses[i]->value;
    return NULL;
}

static const char *err_for(const Databuild__V1__BatchedResponse *r, const char *key)
{
    for (size_t i = 0; i < r->n_errors; i++)
        if (strcmp(r->errors[i]->key, key) == 0) return r->errors[i]->value->error_message;
    return NULL;
}

DBLD_TEST(batched)
{
    qf f = qf_start("qbatch");
    built(&f, "build-a", "run-a", "agg/date=2026-01-01", QF_T0);
    built(&f, "build-b", "run-b", "agg/date=2026-01-02", QF_T0 + 100 * QF_SEC);
    Databuild__V1__BatchedRequest req = DATABUILD__V1__BATCHED_REQUEST__INIT;
    Databuild__V1__BatchedRequest__RequestsEntry *es[] = {
        entry(f.a, "summary", "build-a", NULL, 0), entry(f.a, "events", NULL, "build-b", 0),
        entry(f.a, "both", "build-b", NULL, 1), entry(f.a, "missing", "no-such-build", NULL, 0),
        entry(f.a, "empty", NULL, NULL, 0)};
    req.requests = es;
    req.n_requests = 5;
    Databuild__V1__BatchedResponse *r = QF_OK(&f, "Batched", &req, Databuild__V1__BatchedResponse,
                                              databuild__v1__batched_response__descriptor);
    CHECK_EQ_INT(r->n_responses, 3);
    CHECK_EQ_INT(r->n_errors, 2);
    const Databuild__V1__ResponseContainer *c = resp_for(r, "summary");
    CHECK(c && c->build_request_status && !c->list_build_events);
    CHECK_EQ_STR(c->build_request_status->build_id, "build-a");
    CHECK_EQ_INT(c->build_request_status->status, BR(COMPLETED));
    c = resp_for(r, "events");
    CHECK(c && c->list_build_events && !c->build_request_status);
    CHECK_EQ_INT(c->list_build_events->n_events, 8);
    for (size_t i = 0; i < c->list_build_events->n_events; i++)
        CHECK_EQ_STR(c->list_build_events->events[i]->build_request_id, "build-b");
    c = resp_for(r, "both"); /* empty template + summary: that build's events */
    CHECK(c && c->list_build_events && c->build_request_status);
    CHECK_EQ_INT(c->list_build_events->n_events, 8);
    CHECK_EQ_STR(c->list_build_events->events[0]->build_request_id, "build-b");
    CHECK_EQ_INT(c->build_request_status->summary->total_jobs, 1);
    const char *e = err_for(r, "missing");
    CHECK(e != NULL);
    CHECK_CONTAINS(e, "NOT_FOUND");
    CHECK_CONTAINS(e, "no-such-build");
    e = err_for(r, "empty");
    CHECK(e != NULL);
    CHECK_CONTAINS(e, "INVALID_ARGUMENT");

    /* an empty template alone: the newest page of every event */
    Databuild__V1__BatchedRequest__RequestsEntry *all[] = {entry(f.a, "all", NULL, NULL, 1)};
    req.requests = all;
    req.n_requests = 1;
    r = QF_OK(&f, "Batched", &req, Databuild__V1__BatchedResponse,
              databuild__v1__batched_response__descriptor);
    CHECK_EQ_INT(resp_for(r, "all")->list_build_events->n_events, 16);

    Databuild__V1__BatchedRequest__RequestsEntry **many = dbld_arena_alloc(f.a, 101 * sizeof *many);
    for (int i = 0; i < 101; i++)
        many[i] = entry(f.a, dbld_arena_printf(f.a, "k%d", i), "build-a", NULL, 0);
    req.requests = many;
    req.n_requests = 101;
    QF_ERR(&f, "Batched", &req, databuild__v1__batched_response__descriptor, DBLD_INVALID_ARGUMENT,
           "too many requests");
}

/* ---- CancelBuild through a stand-in graph service ---- */

static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;
static char fake_last[128];
static int fake_calls;

static int fake_cancel(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp,
                       dbld_status *st)
{
    (void)call;
    (void)resp;
    const Databuild__V1__CancelBuildRequest *req =
        (const Databuild__V1__CancelBuildRequest *)req_msg;
    pthread_mutex_lock(&fake_mu);
    snprintf(fake_last, sizeof fake_last, "%s|%s", req->build_request_id, req->reason);
    fake_calls++;
    pthread_mutex_unlock(&fake_mu);
    if (strcmp(req->build_request_id, "build-done") == 0)
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION, "build %s already finished",
                               req->build_request_id);
    return 0;
}

static const dbld_method fake_methods[] = {
    {"/databuild.v1.GraphBuilder/Cancel", &databuild__v1__cancel_build_request__descriptor,
     &databuild__v1__cancel_build_response__descriptor, fake_cancel, NULL},
};
static const dbld_service fake_graph = {"databuild.v1.GraphBuilder", fake_methods, 1};

static int cancel(qf *f, const char *id, dbld_status *st)
{
    Databuild__V1__CancelBuildRequest req = DATABUILD__V1__CANCEL_BUILD_REQUEST__INIT;
    req.build_request_id = (char *)id;
    req.reason = "operator";
    Databuild__V1__CancelBuildResponse *resp;
    return qf_call_at(f->q, "/databuild.v1.QueryOps/CancelBuild", &req,
                      &databuild__v1__cancel_build_response__descriptor, f->a, &resp, st);
}

DBLD_TEST(cancel_build)
{
    dbld_server_opts so = {.service_name = "fake-graph",
                           .listen = "127.0.0.1:0",
                           .workers = 2,
                           .shutdown_grace_ms = 100};
    dbld_server *srv = NULL;
    dbld_status st;
    CHECK_OK(dbld_server_create(&so, &srv, &st), st);
    dbld_server_add(srv, &fake_graph, NULL);
    CHECK_OK(dbld_server_start(srv, &st), st);
    dbld_server_set_health_all(srv, 1);
    char *yaml = dbld_arena_printf(dbld_arena_create(), "graph:\n  listen: \"127.0.0.1:%d\"\n%s",
                                   dbld_server_port(srv), QF_GRAPH_YAML + strlen("graph:\n"));
    qf f = qf_start_with("qcancel", yaml);
    built(&f, "build-run", "run-c", "agg/date=2026-01-01", QF_T0);
    built(&f, "build-done", "run-d", "agg/date=2026-01-02", QF_T0 + 100 * QF_SEC);

    CHECK_OK(cancel(&f, "build-run", &st), st);
    pthread_mutex_lock(&fake_mu);
    CHECK_EQ_STR(fake_last, "build-run|operator");
    CHECK_EQ_INT(fake_calls, 1);
    pthread_mutex_unlock(&fake_mu);

    CHECK_CODE(cancel(&f, "build-done", &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "already finished");
    CHECK_CODE(cancel(&f, "no-such-build", &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "no-such-build");
    CHECK_CODE(cancel(&f, "", &st), st, DBLD_INVALID_ARGUMENT);
    pthread_mutex_lock(&fake_mu);
    CHECK_EQ_INT(fake_calls, 2); /* refused requests never reached the graph service */
    pthread_mutex_unlock(&fake_mu);

    dbld_server_shutdown(srv);
    dbld_server_destroy(srv);
    CHECK_CODE(cancel(&f, "build-run", &st), st, DBLD_UNAVAILABLE);
    CHECK_CONTAINS(st.msg, "graph service at 127.0.0.1:");
}

/* ---- health and database access ---- */

DBLD_TEST(health_waits_for_schema)
{
    char dsn[1024];
    h_db_create("qhealth", dsn, sizeof dsn);
    h_service_opts o = {.eventlog_addr = "127.0.0.1:1", .extra_section = QF_GRAPH_YAML};
    h_service *q = h_service_spawn("query", dsn, &o); /* the database has no tables yet */
    CHECK(h_service_wait_health(q, "", 0, 10000));
    dbld_sleep_ms(1500);
    int serving = 1;
    dbld_status st;
    CHECK_OK(h_service_health(q, "databuild.v1.DataBuildService", &serving, &st), st);
    CHECK_EQ_INT(serving, 0);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__ListJobsRequest lj = DATABUILD__V1__LIST_JOBS_REQUEST__INIT;
    void *resp;
    CHECK_CODE(qf_call_at(q, "/databuild.v1.DataBuildService/ListJobs", &lj,
                          &databuild__v1__list_jobs_response__descriptor, a, &resp, &st),
               st, DBLD_UNAVAILABLE);

    h_service_start("eventlog", dsn, NULL); /* migrates */
    CHECK(h_service_wait_health(q, "", 1, 15000));
    CHECK(h_service_wait_health(q, "databuild.v1.DataBuildService", 1, 1000));
    CHECK(h_service_wait_health(q, "databuild.v1.QueryOps", 1, 1000));
    CHECK_OK(qf_call_at(q, "/databuild.v1.DataBuildService/ListJobs", &lj,
                        &databuild__v1__list_jobs_response__descriptor, a, &resp, &st),
             st);
    h_service_stop(q);
}

DBLD_TEST(read_only_role)
{
    qf f = qf_start("qrorole");
    built(&f, "build-ro", "run-ro", "agg/date=2026-01-01", QF_T0);
    if (strstr(f.dsn, "://")) {
        h_note("DSN is a URI; the role override below needs key=value conninfo: skipped");
        return;
    }
    char role[64];
    snprintf(role, sizeof role, "dbld_ro_%d_%s", (int)getpid(), h_unique(f.a, ""));
    h_rows_free(h_sql(f.dsn, dbld_arena_printf(f.a, "CREATE ROLE %s LOGIN", role)));
    h_rows_free(h_sql(
        f.dsn, dbld_arena_printf(f.a, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s", role)));
    char *ro_dsn = dbld_arena_printf(f.a, "%s user=%s", f.dsn, role);
    h_service_opts o = {.eventlog_addr = f.el->addr, .extra_section = QF_GRAPH_YAML};
    h_service *q = h_service_start("query", ro_dsn, &o);
    qf g = f;
    g.q = q;
    Databuild__V1__BuildSummaryRequest br = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    br.build_id = "build-ro";
    CHECK_EQ_INT(QF_OK(&g, "GetBuildSummary", &br, Databuild__V1__BuildSummaryResponse,
                       databuild__v1__build_summary_response__descriptor)
                     ->status,
                 BR(COMPLETED));
    Databuild__V1__PutTaintsResponse *t = put_taint(&g, H_STRS("agg/date=2026-01-01"), -1, "ro");
    CHECK(dbld_uuid_valid(t->taint_id)); /* writes go through the event log */
    h_service_stop(q);
    h_rows_free(h_sql(f.dsn, dbld_arena_printf(f.a, "DROP OWNED BY %s", role)));
    h_rows_free(h_sql(f.dsn, dbld_arena_printf(f.a, "DROP ROLE %s", role)));
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(wants_round_trip), DBLD_TEST_ENTRY(wants_ttl_paging),
               DBLD_TEST_ENTRY(taints_round_trip), DBLD_TEST_ENTRY(job_logs),
               DBLD_TEST_ENTRY(job_logs_limit), DBLD_TEST_ENTRY(batched),
               DBLD_TEST_ENTRY(cancel_build), DBLD_TEST_ENTRY(health_waits_for_schema),
               DBLD_TEST_ENTRY(read_only_role))
