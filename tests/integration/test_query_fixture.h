/* test_query_fixture.h - shared set-up for the query service's integration
 * tests (test_query_*.c): a fresh database, a real databuild-eventlog and a
 * real databuild-query with a small graph config, typed DataBuildService
 * calls, and builders for realistic event sequences (timestamps are chosen
 * by the test so order and paging are deterministic).
 *
 * Included by each test binary; every function is static and marked unused
 * so a binary may use any subset.
 */
#ifndef TEST_QUERY_FIXTURE_H
#define TEST_QUERY_FIXTURE_H

#include "harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define QF_UNUSED __attribute__((unused))
/* Like H_STRS but may be empty: QF_LIST() is an empty NULL-terminated list. */
#define QF_LIST(...) ((const char *const[]){NULL, ##__VA_ARGS__, NULL} + 1)

/* 2026-01-01T00:00:00Z in nanoseconds: scenario timestamps count up from here. */
#define QF_T0 1767225600000000000LL
#define QF_SEC 1000000000LL

/* The graph the query service is configured with (extra YAML after its section). */
#define QF_GRAPH_YAML                                                                              \
    "graph:\n"                                                                                     \
    "  external: [\"raw/date=[0-9-]+\"]\n"                                                         \
    "  jobs:\n"                                                                                    \
    "    - label: \"//jobs:ingest\"\n"                                                             \
    "      command: [\"/bin/true\"]\n"                                                             \
    "      outputs: [\"reviews/date=[0-9-]+\", \"weird/.*\"]\n"                                    \
    "    - label: \"//jobs:agg\"\n"                                                                \
    "      command: [\"/bin/true\"]\n"                                                             \
    "      outputs: [\"agg/date=[0-9-]+\"]\n"                                                      \
    "    - label: \"//jobs:never\"\n"                                                              \
    "      command: [\"/bin/true\"]\n"                                                             \
    "      outputs: [\"never/.*\"]\n"

typedef struct qf {
    char dsn[1024];
    h_service *el, *q;
    dbld_arena *a;
} qf;

/* Database + eventlog + query. extra: YAML appended after the query section
 * (NULL = QF_GRAPH_YAML). */
static QF_UNUSED qf qf_start_with(const char *hint, const char *extra)
{
    qf f;
    h_db_create(hint, f.dsn, sizeof f.dsn);
    f.el = h_service_start("eventlog", f.dsn, NULL);
    h_service_opts o = {.eventlog_addr = f.el->addr,
                        .extra_section = extra ? extra : QF_GRAPH_YAML};
    f.q = h_service_start("query", f.dsn, &o);
    f.a = dbld_arena_create();
    return f;
}

static QF_UNUSED qf qf_start(const char *hint)
{
    return qf_start_with(hint, NULL);
}

/* ---- calls ---- */

static QF_UNUSED int qf_call_at(h_service *svc, const char *path, const void *req,
                                const ProtobufCMessageDescriptor *desc, dbld_arena *a, void *out,
                                dbld_status *st)
{
    *(ProtobufCMessage **)out = NULL;
    return dbld_client_unary(svc->client, path, (const ProtobufCMessage *)req, desc,
                             dbld_arena_allocator(a), (ProtobufCMessage **)out, 20000, 0, st);
}

static QF_UNUSED int qf_call(qf *f, const char *method, const void *req,
                             const ProtobufCMessageDescriptor *desc, void *out, dbld_status *st)
{
    char path[160];
    snprintf(path, sizeof path, "/databuild.v1.DataBuildService/%s", method);
    return qf_call_at(f->q, path, req, desc, f->a, out, st);
}

/* Call and CHECK success; evaluates to the typed response. */
#define QF_OK(f, method, req, Type, desc)                                                          \
    __extension__({                                                                                \
        Type *resp_ = NULL;                                                                        \
        dbld_status st_;                                                                           \
        int rc_ = qf_call(f, method, req, &desc, &resp_, &st_);                                    \
        CHECK_MSG(rc_ == 0, "%s: %s: %s", method, dbld_code_name(rc_), st_.msg);                   \
        resp_;                                                                                     \
    })

/* Call, CHECK the code and that the message contains `needle`. */
#define QF_ERR(f, method, req, desc, code, needle)                                                 \
    do {                                                                                           \
        void *resp_ = NULL;                                                                        \
        dbld_status st_;                                                                           \
        int rc_ = qf_call(f, method, req, &desc, &resp_, &st_);                                    \
        CHECK_MSG(rc_ == (code), "%s: want %s, got %s: %s", method, dbld_code_name(code),          \
                  dbld_code_name(rc_), st_.msg);                                                   \
        CHECK_CONTAINS(st_.msg, needle);                                                           \
    } while (0)

/* ---- events ---- */

static QF_UNUSED Databuild__V1__BuildEvent *qf_at(Databuild__V1__BuildEvent *e, int64_t ts)
{
    e->timestamp = ts;
    return e;
}

/* A JobGraphEvent with one task per label; task i produces outputs[i] from
 * inputs[i] (NULL entries: no input). */
static QF_UNUSED Databuild__V1__BuildEvent *
qf_graph_event(dbld_arena *a, const char *br, int64_t ts, const char *const *labels,
               const char *const *outputs, const char *const *inputs, const char *const *goals)
{
    Databuild__V1__BuildEvent *e = h_event_base(a, br, ts);
    Databuild__V1__JobGraphEvent *ge =
        dbld_arena_msg(a, &databuild__v1__job_graph_event__descriptor);
    Databuild__V1__JobGraph *g = dbld_arena_msg(a, &databuild__v1__job_graph__descriptor);
    g->label = dbld_arena_msg(a, &databuild__v1__graph_label__descriptor);
    g->label->label = "//graph:test";
    size_t n = 0;
    while (labels[n])
        n++;
    size_t n_goals = 0;
    while (goals && goals[n_goals])
        n_goals++;
    g->outputs = dbld_arena_alloc(a, (n_goals + 1) * sizeof *g->outputs);
    for (size_t i = 0; i < n_goals; i++) {
        g->outputs[i] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        g->outputs[i]->str = (char *)goals[i];
    }
    g->n_outputs = n_goals;
    g->nodes = dbld_arena_alloc(a, (n + 1) * sizeof *g->nodes);
    for (size_t i = 0; i < n; i++) {
        Databuild__V1__Task *t = dbld_arena_msg(a, &databuild__v1__task__descriptor);
        t->job = dbld_arena_msg(a, &databuild__v1__job_label__descriptor);
        t->job->label = (char *)labels[i];
        t->config = dbld_arena_msg(a, &databuild__v1__job_config__descriptor);
        t->config->outputs = dbld_arena_alloc(a, sizeof *t->config->outputs);
        t->config->outputs[0] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        t->config->outputs[0]->str = (char *)outputs[i];
        t->config->n_outputs = 1;
        if (inputs && inputs[i]) {
            Databuild__V1__DataDep *d = dbld_arena_msg(a, &databuild__v1__data_dep__descriptor);
            d->dep_type_code = DATABUILD__V1__DEP_TYPE__MATERIALIZE;
            d->dep_type_name = "materialize";
            d->partition_ref = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
            d->partition_ref->str = (char *)inputs[i];
            t->config->inputs = dbld_arena_alloc(a, sizeof *t->config->inputs);
            t->config->inputs[0] = d;
            t->config->n_inputs = 1;
        }
        g->nodes[i] = t;
    }
    g->n_nodes = n;
    ge->job_graph = g;
    ge->message = "analyzed";
    e->event_type_case = DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT;
    e->job_graph_event = ge;
    return e;
}

/* A growing list of events with increasing timestamps (1 s apart by default). */
typedef struct qf_seq {
    dbld_arena *a;
    Databuild__V1__BuildEvent **evs;
    size_t n, cap;
    int64_t ts;
} qf_seq;

static QF_UNUSED void qf_seq_init(qf_seq *s, dbld_arena *a, int64_t ts)
{
    memset(s, 0, sizeof *s);
    s->a = a;
    s->ts = ts;
}

/* Stamp e with the next timestamp, append, return that timestamp. */
static QF_UNUSED int64_t qf_add(qf_seq *s, Databuild__V1__BuildEvent *e)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        Databuild__V1__BuildEvent **g = dbld_arena_alloc(s->a, s->cap * sizeof *g);
        if (s->n) memcpy(g, s->evs, s->n * sizeof *g);
        s->evs = g;
    }
    s->ts += QF_SEC;
    e->timestamp = s->ts;
    s->evs[s->n++] = e;
    return s->ts;
}

/* Append everything in chunks; CHECKs success. */
static QF_UNUSED void qf_flush(qf *f, qf_seq *s)
{
    for (size_t i = 0; i < s->n; i += 500) {
        size_t k = s->n - i < 500 ? s->n - i : 500;
        h_append_ok(f->el, f->a, s->evs + i, k);
    }
    s->n = 0;
}

/* A job run's SCHEDULED / RUNNING / final events with the partition events a
 * real run has; returns the final event's timestamp. t[0..2] get the
 * timestamps of SCHEDULED, RUNNING and the final event (t may be NULL). */
static QF_UNUSED int64_t qf_run(qf_seq *s, const char *br, const char *run, const char *label,
                                const char *ref, Databuild__V1__JobStatus final, int64_t *t)
{
    dbld_arena *a = s->a;
    int64_t t0 = qf_add(
        s, h_event_job(a, br, run, label, DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED, H_STRS(ref)));
    qf_add(s,
           h_event_partition(a, br, ref, DATABUILD__V1__PARTITION_STATUS__PARTITION_BUILDING, run));
    int64_t t1 = 0;
    if (final != DATABUILD__V1__JOB_STATUS__JOB_CANCELLED)
        t1 = qf_add(
            s, h_event_job(a, br, run, label, DATABUILD__V1__JOB_STATUS__JOB_RUNNING, H_STRS(ref)));
    int64_t t2 = t1;
    if (final != DATABUILD__V1__JOB_STATUS__JOB_RUNNING) {
        t2 = qf_add(s, h_event_job(a, br, run, label, final, H_STRS(ref)));
        if (final == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED)
            qf_add(s, h_event_partition(a, br, ref,
                                        DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, run));
        else if (final == DATABUILD__V1__JOB_STATUS__JOB_FAILED)
            qf_add(s, h_event_partition(a, br, ref,
                                        DATABUILD__V1__PARTITION_STATUS__PARTITION_FAILED, run));
    }
    if (t) {
        t[0] = t0;
        t[1] = t1;
        t[2] = t2;
    }
    return t2;
}

static QF_UNUSED int64_t qf_br(qf_seq *s, const char *br,
                               Databuild__V1__BuildRequestStatusCode code, const char *const *refs,
                               const char *comment, const char *want)
{
    return qf_add(s, h_event_build_request(s->a, br, code, refs, comment, want));
}

/* ---- job logs ---- */

/* n log entries of job run `run` (sequence numbers first..first+n-1, entry
 * seq at timestamp ts(seq) in Unix ns) through the event log's JobLogs,
 * in chunks; every 10th is a metric, the others log lines with levels
 * cycling DEBUG..ERROR ("line <seq>"). CHECKs that all were stored. */
static QF_UNUSED void qf_append_logs(qf *f, const char *run, int first, int n,
                                     int64_t (*ts)(int seq))
{
    for (int done = 0; done < n;) {
        int k = n - done < 2000 ? n - done : 2000;
        Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
        req.entries = dbld_arena_alloc(f->a, (size_t)k * sizeof *req.entries);
        for (int seq = first + done; seq < first + done + k; seq++) {
            Databuild__V1__JobLogEntry *e =
                dbld_arena_msg(f->a, &databuild__v1__job_log_entry__descriptor);
            e->timestamp = dbld_arena_printf(f->a, "%lld", (long long)ts(seq));
            e->job_id = (char *)run;
            e->sequence_number = (uint64_t)seq;
            if (seq % 10 == 0) {
                Databuild__V1__MetricPoint *m =
                    dbld_arena_msg(f->a, &databuild__v1__metric_point__descriptor);
                m->name = "rows";
                m->value = seq;
                e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC;
                e->metric = m;
            } else {
                Databuild__V1__LogMessage *l =
                    dbld_arena_msg(f->a, &databuild__v1__log_message__descriptor);
                l->level = seq % 4;
                l->message = dbld_arena_printf(f->a, "line %d", seq);
                e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
                e->log = l;
            }
            req.entries[req.n_entries++] = e;
        }
        Databuild__V1__AppendJobLogsResponse *resp = NULL;
        dbld_status st;
        CHECK_OK(qf_call_at(f->el, "/databuild.v1.JobLogs/Append", &req,
                            &databuild__v1__append_job_logs_response__descriptor, f->a, &resp, &st),
                 st);
        CHECK_EQ_INT(resp->stored, k);
        done += k;
    }
}

/* ---- small checks ---- */

/* 1 if the NULL-terminated list `want` equals the n strings got (in order). */
static QF_UNUSED int qf_same_strs(char *const *got, size_t n, const char *const *want)
{
    size_t k = 0;
    for (; want[k]; k++)
        if (k >= n || strcmp(got[k], want[k]) != 0) return 0;
    return k == n;
}

static QF_UNUSED int qf_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

#ifdef TEST_BUILD_FIXTURE_H
/* A query service over a build fixture's event log (test_build_fixture.h,
 * included first), configured with the same graph jobs; its graph peer is
 * the fixture's graph service. graph_extra: more lines of its graph section
 * (indented 2, e.g. "  external: [...]\n"), or "". */
static QF_UNUSED qf qf_over_build(bf *b, const char *graph_extra)
{
    const char *jobs = strstr(b->graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    qf f;
    memset(&f, 0, sizeof f);
    snprintf(f.dsn, sizeof f.dsn, "%s", b->dsn);
    f.el = b->el;
    f.a = b->a;
    h_service_opts qo = {
        .eventlog_addr = b->el->addr,
        .extra_section = dbld_arena_printf(b->a, "graph:\n  listen: \"%s\"\n%s%s", b->graph->addr,
                                           graph_extra, jobs),
    };
    f.q = h_service_start("query", b->dsn, &qo);
    return f;
}

/* ---- QueryOps/GetBuildExecution (issue 12's execution state) ---- */

static QF_UNUSED int qf_execution(qf *f, const char *id,
                                  Databuild__V1__BuildExecutionResponse **out, dbld_status *st)
{
    Databuild__V1__BuildExecutionRequest req = DATABUILD__V1__BUILD_EXECUTION_REQUEST__INIT;
    req.build_request_id = (char *)id;
    return qf_call_at(f->q, "/databuild.v1.QueryOps/GetBuildExecution", &req,
                      &databuild__v1__build_execution_response__descriptor, f->a, out, st);
}

static QF_UNUSED Databuild__V1__BuildExecutionResponse *qf_execution_ok(qf *f, const char *id)
{
    Databuild__V1__BuildExecutionResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(qf_execution(f, id, &r, &st), st);
    return r;
}

static QF_UNUSED const Databuild__V1__TaskExecution *
qf_task_of(const Databuild__V1__BuildExecutionResponse *r, const char *ref)
{
    for (size_t i = 0; i < r->state->n_executions; i++)
        if (strcmp(r->state->executions[i]->outputs[0], ref) == 0) return r->state->executions[i];
    H_FAIL("no execution of %s", ref);
    return NULL;
}

/* "REQUIREMENT_CHANGED JOB_RUNS_LAUNCHED ..." of the log. */
static QF_UNUSED char *qf_log_kinds(bf *b, const Databuild__V1__BuildExecutionResponse *r)
{
    char *s = "";
    for (size_t i = 0; i < r->n_log; i++) {
        const ProtobufCFieldDescriptor *fd = protobuf_c_message_descriptor_get_field(
            &databuild__v1__execution_log_entry__descriptor, (unsigned)r->log[i]->kind_case);
        bf_cat(b->a, &s, " ", fd ? fd->name : "?");
    }
    return s;
}

/* "1:ENDED/FAILED_TRANSIENTLY 2:..." of a task's attempts. */
static QF_UNUSED char *qf_attempts_str(bf *b, const Databuild__V1__TaskExecution *te)
{
    char *s = "";
    for (size_t i = 0; i < te->n_attempts; i++) {
        const Databuild__V1__ExecutionAttempt *at = te->attempts[i];
        const ProtobufCEnumValue *sv = protobuf_c_enum_descriptor_get_value(
            &databuild__v1__execution_attempt__status__descriptor, at->status);
        const ProtobufCEnumValue *rv = protobuf_c_enum_descriptor_get_value(
            &databuild__v1__execution_attempt__result__descriptor, at->result);
        bf_cat(b->a, &s, " ",
               dbld_arena_printf(b->a, "%d:%s/%s%s", at->attempt, sv ? sv->name : "?",
                                 rv ? rv->name : "?", at->reused ? "/reused" : ""));
    }
    return s;
}
#endif

#endif
