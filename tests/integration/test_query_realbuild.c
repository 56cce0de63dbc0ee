/* test_query_realbuild.c - the query service over the event log of REAL
 * builds: eventlog, job, graph and query processes, the test job
 * tests/jobs/graph_job.py (a/X needs b/X and c/X, b/X needs c/X; f/X fails;
 * s/X is slow), builds through GraphBuilder, then every kind of question:
 * build lists, summaries and mermaid, partitions, jobs, job runs, the job
 * wrapper's logs, wants; a taint put through the query service causing a
 * rebuild on the next build request; CancelBuild forwarded to the real
 * graph service.
 */
#include "test_build_fixture.h"
#include "test_query_fixture.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//t:f\"\n      command: %CMD%\n      outputs: [\"f/.*\"]\n"                    \
    "    - label: \"//t:s\"\n      command: %CMD%\n      outputs: [\"s/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"f/(.*)\", \"inputs\": [\"c/\\\\1\"], \"exit\": 1},"                            \
    " {\"match\": \"s/(.*)\", \"sleep\": 60}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JOB(x) DATABUILD__V1__JOB_STATUS__JOB_##x
#define AVAILABLE DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE

/* Event log + job + graph (test_build_fixture.h) and a query service
 * configured with the same graph, its graph peer the real graph service. */
static qf setup(bf *b, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES, .external = "[\"ext/.*\"]"};
    bf_setup(b, hint, &o);
    return qf_over_build(b, "  external: [\"ext/.*\"]\n");
}

/* Build synchronously; returns the new build request's id (the newest). */
static const char *build(bf *b, qf *f, const char *const *refs, int want_ok)
{
    Databuild__V1__GraphBuildResponse *r = NULL;
    dbld_status st = {0};
    int rc = bf_build(b, refs, &r, &st);
    if (want_ok) CHECK_OK(rc, st);
    Databuild__V1__ListBuildsRequest req = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    Databuild__V1__ListBuildsResponse *l =
        QF_OK(f, "ListBuildRequests", &req, Databuild__V1__ListBuildsResponse,
              databuild__v1__list_builds_response__descriptor);
    CHECK(l->n_builds > 0);
    return l->builds[0]->build_request_id;
}

static Databuild__V1__BuildSummaryResponse *summary(qf *f, const char *id)
{
    Databuild__V1__BuildSummaryRequest req = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    req.build_id = (char *)id;
    return QF_OK(f, "GetBuildSummary", &req, Databuild__V1__BuildSummaryResponse,
                 databuild__v1__build_summary_response__descriptor);
}

static Databuild__V1__ListJobRunsResponse *runs_of(qf *f, const char *id)
{
    Databuild__V1__ListJobRunsRequest req = DATABUILD__V1__LIST_JOB_RUNS_REQUEST__INIT;
    char *ids[] = {(char *)id};
    req.build_reqeust_ids = ids;
    req.n_build_reqeust_ids = 1;
    return QF_OK(f, "ListJobRuns", &req, Databuild__V1__ListJobRunsResponse,
                 databuild__v1__list_job_runs_response__descriptor);
}

static const Databuild__V1__JobRunSummary *run_for(const Databuild__V1__ListJobRunsResponse *r,
                                                   const char *label)
{
    for (size_t i = 0; i < r->n_job_runs; i++)
        if (strcmp(r->job_runs[i]->job_label, label) == 0) return r->job_runs[i];
    return NULL;
}

static Databuild__V1__PartitionSummaryV2 *partition(qf *f, const char *ref)
{
    Databuild__V1__PartitionSummaryRequest req = DATABUILD__V1__PARTITION_SUMMARY_REQUEST__INIT;
    req.ref = dbld_arena_msg(f->a, &databuild__v1__partition_ref__descriptor);
    req.ref->str = (char *)ref;
    return QF_OK(f, "GetPartitionsSummary", &req, Databuild__V1__PartitionSummaryResponse,
                 databuild__v1__partition_summary_response__descriptor)
        ->partition;
}

DBLD_TEST(real_builds)
{
    bf b;
    qf f = setup(&b, "qreal");

    /* 1. a/1 builds c/1, b/1, a/1 */
    const char *id1 = build(&b, &f, H_STRS("a/1"), 1);
    CHECK(dbld_uuid_valid(id1));
    Databuild__V1__BuildSummaryResponse *s = summary(&f, id1);
    CHECK_EQ_INT(s->status, BR(COMPLETED));
    CHECK_EQ_INT(s->summary->total_jobs, 3);
    CHECK_EQ_INT(s->summary->completed_jobs, 3);
    CHECK_EQ_INT(s->summary->failed_jobs, 0);
    CHECK(s->summary->requested_at > 0);
    CHECK(s->summary->started_at >= s->summary->requested_at);
    CHECK(s->summary->completed_at >= s->summary->started_at);
    CHECK_EQ_INT(s->summary->duration_ms,
                 (s->summary->completed_at - s->summary->requested_at) / 1000000);
    CHECK_EQ_INT(s->n_partitions, 3);
    for (size_t i = 0; i < s->n_partitions; i++)
        CHECK_EQ_INT(s->partitions[i]->status, AVAILABLE);
    CHECK_EQ_STR(s->partitions[0]->ref->str, "a/1");

    Databuild__V1__BuildSummaryRequest mr = DATABUILD__V1__BUILD_SUMMARY_REQUEST__INIT;
    mr.build_id = (char *)id1;
    char *m = QF_OK(&f, "GetBuildMermaid", &mr, Databuild__V1__BuildMermaidResponse,
                    databuild__v1__build_mermaid_response__descriptor)
                  ->mermaid;
    h_note("mermaid of a real build:\n%s", m);
    CHECK(strncmp(m, "flowchart LR\n", 13) == 0);
    CHECK_EQ_INT(qf_count(m, "[[\"//t:"), 3);
    CHECK_EQ_INT(qf_count(m, " --> "), 6); /* inputs c->b, b->a, c->a; three outputs */
    CHECK_CONTAINS(m, "  class j0,j1,j2 job_completed\n");
    CHECK_CONTAINS(m, "  class p0,p1,p2 partition_available\n");

    Databuild__V1__ListJobRunsResponse *runs = runs_of(&f, id1);
    CHECK_EQ_INT(runs->n_job_runs, 3);
    const Databuild__V1__JobRunSummary *rc1 = run_for(runs, "//t:c");
    CHECK(rc1 != NULL);
    CHECK_EQ_INT(rc1->status_code, JOB(COMPLETED));
    CHECK(rc1->started_at >= rc1->scheduled_at && rc1->completed_at >= rc1->started_at);
    CHECK_EQ_STR(rc1->target_partitions[0]->str, "c/1");

    /* the job wrapper's log lines of that run */
    Databuild__V1__JobLogsRequest lr = DATABUILD__V1__JOB_LOGS_REQUEST__INIT;
    lr.job_run_id = rc1->job_run_id;
    Databuild__V1__JobLogsResponse *logs = NULL;
    dbld_status st = {0};
    CHECK(H_POLL_UNTIL(10000, qf_call_at(f.q, "/databuild.v1.QueryOps/GetJobLogs", &lr,
                                         &databuild__v1__job_logs_response__descriptor, f.a, &logs,
                                         &st) == 0 &&
                                  logs->n_entries > 0));
    int saw_line = 0;
    for (size_t i = 0; i < logs->n_entries; i++)
        saw_line |= logs->entries[i]->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG &&
                    strstr(logs->entries[i]->log->message, "building c/1");
    CHECK_MSG(saw_line, "no \"building c/1\" line among %zu log entries", logs->n_entries);

    Databuild__V1__ListJobsRequest jr = DATABUILD__V1__LIST_JOBS_REQUEST__INIT;
    Databuild__V1__ListJobsResponse *jobs =
        QF_OK(&f, "ListJobs", &jr, Databuild__V1__ListJobsResponse,
              databuild__v1__list_jobs_response__descriptor);
    CHECK_EQ_INT(jobs->n_jobs, 5);
    CHECK_EQ_STR(jobs->jobs[2]->job_label, "//t:c");
    CHECK_EQ_INT(jobs->jobs[2]->successful_runs, 1);
    CHECK_EQ_INT(jobs->jobs[4]->total_runs, 0); /* //t:s never ran */

    Databuild__V1__PartitionSummaryV2 *p = partition(&f, "c/1");
    CHECK_EQ_INT(p->status->code, AVAILABLE);
    CHECK_EQ_INT(p->last_invalidated_at, 0);
    CHECK(qf_same_strs(p->past_build_request, p->n_past_build_request, H_STRS(id1)));

    /* 2. building it again skips everything */
    const char *id2 = build(&b, &f, H_STRS("a/1"), 1);
    CHECK(strcmp(id2, id1) != 0);
    s = summary(&f, id2);
    CHECK_EQ_INT(s->status, BR(COMPLETED));
    CHECK_EQ_INT(s->summary->completed_jobs, s->summary->total_jobs);
    runs = runs_of(&f, id2);
    for (size_t i = 0; i < runs->n_job_runs; i++)
        CHECK_EQ_INT(runs->job_runs[i]->status_code, JOB(SKIPPED));

    /* 3. a taint put through the query service makes the next build rebuild c/1 */
    Databuild__V1__PutTaintsRequest tr = DATABUILD__V1__PUT_TAINTS_REQUEST__INIT;
    Databuild__V1__PartitionRef *tref =
        dbld_arena_msg(f.a, &databuild__v1__partition_ref__descriptor);
    tref->str = "c/1";
    tr.refs = &tref;
    tr.n_refs = 1;
    tr.comment = "upstream fixed";
    QF_OK(&f, "PutTaints", &tr, Databuild__V1__PutTaintsResponse,
          databuild__v1__put_taints_response__descriptor);
    CHECK(partition(&f, "c/1")->last_invalidated_at > 0);
    const char *id3 = build(&b, &f, H_STRS("a/1"), 1);
    runs = runs_of(&f, id3);
    const Databuild__V1__JobRunSummary *rc3 = run_for(runs, "//t:c");
    CHECK_MSG(rc3 && rc3->status_code == JOB(COMPLETED), "c/1 was not rebuilt after the taint");
    p = partition(&f, "c/1");
    CHECK_EQ_INT(p->status->code, AVAILABLE);
    CHECK_EQ_STR(p->past_build_request[0], id3);

    /* 4. a failing job fails its build */
    const char *id4 = build(&b, &f, H_STRS("f/1"), 0);
    s = summary(&f, id4);
    CHECK_EQ_INT(s->status, BR(FAILED));
    CHECK_CMP_INT(s->summary->failed_jobs, >=, 1);
    mr.build_id = (char *)id4;
    m = QF_OK(&f, "GetBuildMermaid", &mr, Databuild__V1__BuildMermaidResponse,
              databuild__v1__build_mermaid_response__descriptor)
            ->mermaid;
    CHECK_CONTAINS(m, "job_failed\n");
    CHECK_CONTAINS(m, "partition_failed\n");
    Databuild__V1__ListBuildsRequest lb = DATABUILD__V1__LIST_BUILDS_REQUEST__INIT;
    char *failed[] = {"FAILED"};
    lb.build_status = failed;
    lb.n_build_status = 1;
    Databuild__V1__ListBuildsResponse *l =
        QF_OK(&f, "ListBuildRequests", &lb, Databuild__V1__ListBuildsResponse,
              databuild__v1__list_builds_response__descriptor);
    CHECK_EQ_INT(l->n_builds, 1);
    CHECK_EQ_STR(l->builds[0]->build_request_id, id4);

    /* 5. wants are validated against the same graph */
    Databuild__V1__PutWantsRequest wr = DATABUILD__V1__PUT_WANTS_REQUEST__INIT;
    Databuild__V1__IndividualWantRequest w = DATABUILD__V1__INDIVIDUAL_WANT_REQUEST__INIT;
    w.ref = dbld_arena_msg(f.a, &databuild__v1__partition_ref__descriptor);
    w.ref->str = "a/2";
    Databuild__V1__IndividualWantRequest *ws[] = {&w};
    wr.wants = ws;
    wr.n_wants = 1;
    QF_OK(&f, "PutWants", &wr, Databuild__V1__PutWantsResponse,
          databuild__v1__put_wants_response__descriptor);
    w.ref->str = "zz/2";
    QF_ERR(&f, "PutWants", &wr, databuild__v1__put_wants_response__descriptor,
           DBLD_INVALID_ARGUMENT, "zz/2");
}

DBLD_TEST(cancel_through_query)
{
    bf b;
    qf f = setup(&b, "qrealcancel");
    char *id = bf_submit(&b, H_STRS("s/1"));
    /* wait until the slow job runs */
    CHECK(H_POLL_UNTIL(30000, ({
                           Databuild__V1__ListJobRunsResponse *r = runs_of(&f, id);
                           r->n_job_runs > 0 && r->job_runs[0]->status_code == JOB(RUNNING);
                       })));
    Databuild__V1__CancelBuildRequest req = DATABUILD__V1__CANCEL_BUILD_REQUEST__INIT;
    req.build_request_id = id;
    req.reason = "operator said so";
    Databuild__V1__CancelBuildResponse *resp;
    dbld_status st = {0};
    CHECK_OK(qf_call_at(f.q, "/databuild.v1.QueryOps/CancelBuild", &req,
                        &databuild__v1__cancel_build_response__descriptor, f.a, &resp, &st),
             st);
    bf_wait(&b, id, 30000);
    Databuild__V1__BuildSummaryResponse *s = summary(&f, id);
    CHECK_EQ_INT(s->status, BR(CANCELLED));
    CHECK(s->summary->cancelled);
    Databuild__V1__ListJobRunsResponse *r = runs_of(&f, id);
    CHECK_EQ_INT(r->job_runs[0]->status_code, JOB(CANCELLED));
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(real_builds, 300), DBLD_TEST_ENTRY_T(cancel_through_query, 180))
