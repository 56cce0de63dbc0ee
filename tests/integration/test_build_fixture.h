/* test_build_fixture.h - shared fixture of the graph service's integration
 * tests (test_build_*.c): an event log, one or two job services and a graph
 * service on 127.0.0.1, the test job tests/jobs/graph_job.py driven by a JSON
 * spec, calls to GraphLookup/GraphBuilder, and readers that turn the event
 * log back into per-build, per-partition and per-job-run status sequences.
 *
 * The graph service's config is written here (not by the harness) because it
 * needs a list of job endpoints in shared.peers.job; it is then started with
 * the harness's h_service_restart(), so kill/restart work as for any service.
 * Leases are shortened through DBLD_GRAPH_LEASE_TTL_MS/_ORPHAN_POLL_MS so
 * crash recovery is observable within seconds.
 *
 * Functions are static and marked unused: each test binary uses a subset.
 */
#ifndef TEST_BUILD_FIXTURE_H
#define TEST_BUILD_FIXTURE_H

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BF_UNUSED __attribute__((unused))
#define GRAPH_JOB DBLD_SOURCE_DIR "/tests/jobs/graph_job.py"
#define BF_CALL_MS 60000

typedef struct bf_opts {
    int n_job;               /* job services (default 1) */
    int max_parallel;        /* graph.max_parallel (default 4) */
    int max_runs;            /* job.max_concurrent_runs (default 4) */
    int graph_workers;       /* graph.workers: RPC worker threads (default 8) */
    const char *jobs;        /* YAML list items of graph.jobs, indented 4 ("    - label: ...") */
    const char *external;    /* YAML flow list for graph.external, e.g. "[\"ext/.*\"]" */
    const char *rules;       /* JSON array of graph_job.py rules */
    const char *graph_extra; /* more graph keys, lines indented 2 (e.g. "  build_threads: 2\n") */
} bf_opts;

typedef struct bf {
    char dsn[1024];
    h_service *el;
    h_service *job[2];
    int n_job;
    h_service *graph;
    dbld_arena *a;
    char state[600]; /* graph_job.py state dir */
    char spec[700];
    char graph_yaml[16384];
} bf;

/* The command line of a job in YAML (for bf_opts.jobs). */
static BF_UNUSED const char *bf_cmd(bf *f)
{
    return dbld_arena_printf(f->a, "[python3, \"%s\", \"--spec\", \"%s\"]", GRAPH_JOB, f->spec);
}

static BF_UNUSED void bf_write_spec(bf *f, const char *rules)
{
    char *text = dbld_arena_printf(f->a, "{\"state\": \"%s\", \"rules\": %s}\n", f->state,
                                   rules ? rules : "[]");
    h_write_file(f->spec, text);
}

/* A graph service from f->graph_yaml, not started. */
static BF_UNUSED h_service *bf_graph_new(bf *f, int idx)
{
    h_service *s = dbld_xcalloc(1, sizeof *s);
    snprintf(s->kind, sizeof s->kind, "graph");
    snprintf(s->name, sizeof s->name, "graph-%d", idx);
    s->port = h_free_port();
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
    snprintf(s->config_path, sizeof s->config_path, "%s/%s.yaml", h_test_dir(), s->name);
    snprintf(s->log_path, sizeof s->log_path, "%s/%s.log", h_test_dir(), s->name);
    char *text = dbld_arena_printf(f->a, f->graph_yaml, s->addr);
    h_write_file(s->config_path, text);
    s->client = dbld_client_get(s->addr);
    return s;
}

/* Set up everything; jobs_yaml may contain "%CMD%" for the job command. */
static BF_UNUSED void bf_setup(bf *f, const char *hint, const bf_opts *o)
{
    memset(f, 0, sizeof *f);
    f->a = dbld_arena_create();
    setenv("DBLD_GRAPH_LEASE_TTL_MS", "3000", 1);
    setenv("DBLD_GRAPH_ORPHAN_POLL_MS", "500", 1);
    snprintf(f->state, sizeof f->state, "%s/state", h_test_dir());
    mkdir(f->state, 0755);
    snprintf(f->spec, sizeof f->spec, "%s/spec.json", h_test_dir());
    bf_write_spec(f, o->rules);
    /* jobs with the command filled in */
    const char *cmd = bf_cmd(f);
    const char *src = o->jobs;
    size_t cap = strlen(src) * 2 + strlen(cmd) * 16 + 64, n = 0;
    char *jobs = dbld_arena_alloc(f->a, cap);
    for (const char *p = src; *p;) {
        if (strncmp(p, "%CMD%", 5) == 0) {
            n += (size_t)snprintf(jobs + n, cap - n, "%s", cmd);
            p += 5;
        } else {
            jobs[n++] = *p++;
        }
    }
    jobs[n] = 0;
    h_db_create(hint, f->dsn, sizeof f->dsn);
    f->el = h_service_start("eventlog", f->dsn, NULL);
    f->n_job = o->n_job > 0 ? o->n_job : 1;
    char peers[256] = "";
    for (int i = 0; i < f->n_job; i++) {
        h_service_opts jo = {
            .eventlog_addr = f->el->addr,
            .extra_section = dbld_arena_printf(f->a,
                                               "  max_concurrent_runs: %d\n"
                                               "  kill_grace_ms: 500\n"
                                               "  heartbeat_ms: 1000\n"
                                               "graph:\n"
                                               "  jobs:\n%s",
                                               o->max_runs > 0 ? o->max_runs : 4, jobs),
        };
        f->job[i] = h_service_start("job", NULL, &jo);
        size_t len = strlen(peers);
        snprintf(peers + len, sizeof peers - len, "%s\"%s\"", i ? ", " : "", f->job[i]->addr);
    }
    snprintf(f->graph_yaml, sizeof f->graph_yaml,
             "# written by test_build_fixture.h (%s)\n"
             "shared:\n"
             "  log_level: debug\n"
             "  peers:\n"
             "    eventlog: \"%s\"\n"
             "    job: [%s]\n"
             "graph:\n"
             "  listen: \"%%s\"\n"
             "  workers: %d\n"
             "  shutdown_grace_ms: 1000\n"
             "  max_parallel: %d\n"
             "  external: %s\n"
             "%s"
             "  jobs:\n%s",
             h_test_name(), f->el->addr, peers, o->graph_workers > 0 ? o->graph_workers : 8,
             o->max_parallel > 0 ? o->max_parallel : 4, o->external ? o->external : "[]",
             o->graph_extra ? o->graph_extra : "", jobs);
    f->graph = bf_graph_new(f, 1);
    h_service_restart(f->graph);
}

/* ---- graph calls ---- */

static BF_UNUSED Databuild__V1__PartitionRef **bf_prefs(dbld_arena *a, const char *const *refs,
                                                        size_t *n)
{
    for (*n = 0; refs[*n]; (*n)++) {
    }
    Databuild__V1__PartitionRef **out = dbld_arena_alloc(a, (*n + 1) * sizeof *out);
    for (size_t i = 0; i < *n; i++) {
        out[i] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        out[i]->str = dbld_arena_strdup(a, refs[i]);
    }
    return out;
}

static BF_UNUSED int bf_submit_to(bf *f, h_service *g, const char *const *refs, const char *comment,
                                  char *id_out, dbld_status *st)
{
    Databuild__V1__SubmitBuildRequest req = DATABUILD__V1__SUBMIT_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(f->a, refs, &req.n_outputs);
    req.comment = (char *)(comment ? comment : "");
    req.want_id = "";
    Databuild__V1__SubmitBuildResponse *r = NULL;
    int rc =
        dbld_client_unary(g->client, "/databuild.v1.GraphBuilder/Submit", &req.base,
                          &databuild__v1__submit_build_response__descriptor,
                          dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0, st);
    if (rc == 0) snprintf(id_out, 37, "%s", r->build_request_id);
    return rc;
}

static BF_UNUSED char *bf_submit(bf *f, const char *const *refs)
{
    char *id = dbld_arena_alloc(f->a, 37);
    dbld_status st = {0};
    CHECK_OK(bf_submit_to(f, f->graph, refs, "test", id, &st), st);
    return id;
}

static BF_UNUSED int bf_build(bf *f, const char *const *refs,
                              Databuild__V1__GraphBuildResponse **out, dbld_status *st)
{
    Databuild__V1__GraphBuildRequest req = DATABUILD__V1__GRAPH_BUILD_REQUEST__INIT;
    req.outputs = bf_prefs(f->a, refs, &req.n_outputs);
    Databuild__V1__GraphBuildResponse *r = NULL;
    int rc = dbld_client_unary(f->graph->client, "/databuild.v1.GraphBuilder/Build", &req.base,
                               &databuild__v1__graph_build_response__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, 120000, 0, st);
    if (out) *out = r;
    return rc;
}

static BF_UNUSED int bf_analyze(bf *f, const char *const *refs,
                                Databuild__V1__GraphAnalyzeResponse **out, dbld_status *st)
{
    Databuild__V1__GraphAnalyzeRequest req = DATABUILD__V1__GRAPH_ANALYZE_REQUEST__INIT;
    req.outputs = bf_prefs(f->a, refs, &req.n_outputs);
    Databuild__V1__GraphAnalyzeResponse *r = NULL;
    int rc =
        dbld_client_unary(f->graph->client, "/databuild.v1.GraphBuilder/Analyze", &req.base,
                          &databuild__v1__graph_analyze_response__descriptor,
                          dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0, st);
    if (out) *out = r;
    return rc;
}

static BF_UNUSED int bf_lookup(bf *f, const char *const *refs,
                               Databuild__V1__GraphLookupResponse **out, dbld_status *st)
{
    Databuild__V1__GraphLookupRequest req = DATABUILD__V1__GRAPH_LOOKUP_REQUEST__INIT;
    req.outputs = bf_prefs(f->a, refs, &req.n_outputs);
    Databuild__V1__GraphLookupResponse *r = NULL;
    int rc =
        dbld_client_unary(f->graph->client, "/databuild.v1.GraphLookup/Lookup", &req.base,
                          &databuild__v1__graph_lookup_response__descriptor,
                          dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0, st);
    if (out) *out = r;
    return rc;
}

static BF_UNUSED int bf_cancel(bf *f, const char *id, const char *reason, dbld_status *st)
{
    Databuild__V1__CancelBuildRequest req = DATABUILD__V1__CANCEL_BUILD_REQUEST__INIT;
    req.build_request_id = (char *)id;
    req.reason = (char *)reason;
    Databuild__V1__CancelBuildResponse *r = NULL;
    return dbld_client_unary(f->graph->client, "/databuild.v1.GraphBuilder/Cancel", &req.base,
                             &databuild__v1__cancel_build_response__descriptor,
                             dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0,
                             st);
}

/* ---- reading the event log back ---- */

static BF_UNUSED h_event_list bf_events(bf *f, const char *build_id)
{
    return h_list_all(f->el, f->a, h_filter(f->a, NULL, NULL, NULL, NULL, H_STRS(build_id)), 0);
}

static BF_UNUSED h_event_list bf_all_events(bf *f)
{
    return h_list_all(f->el, f->a, NULL, 0);
}

static BF_UNUSED const char *bf_short(const char *name)
{
    static const char *const prefixes[] = {"BUILD_REQUEST_", "PARTITION_", "JOB_"};
    for (size_t i = 0; i < 3; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return name + strlen(prefixes[i]);
    return name;
}

static BF_UNUSED const char *bf_enum(const ProtobufCEnumDescriptor *d, int v)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, v);
    return bf_short(ev ? ev->name : "?");
}

static BF_UNUSED void bf_cat(dbld_arena *a, char **s, const char *sep, const char *x)
{
    *s = dbld_arena_printf(a, "%s%s%s", *s, **s ? sep : "", x);
}

/* "RECEIVED PLANNING ..." of the build's BuildRequestEvents. */
static BF_UNUSED char *bf_build_seq(bf *f, const char *id)
{
    h_event_list l = bf_events(f, id);
    char *s = "";
    for (size_t i = 0; i < l.n; i++)
        if (l.events[i]->event_type_case ==
            DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT)
            bf_cat(f->a, &s, " ",
                   bf_enum(&databuild__v1__build_request_status_code__descriptor,
                           l.events[i]->build_request_event->status->code));
    return s;
}

/* The last BuildRequestEvent (NULL if none). */
static BF_UNUSED Databuild__V1__BuildRequestEvent *bf_build_last(bf *f, const char *id)
{
    h_event_list l = bf_events(f, id);
    Databuild__V1__BuildRequestEvent *last = NULL;
    for (size_t i = 0; i < l.n; i++)
        if (l.events[i]->event_type_case ==
            DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT)
            last = l.events[i]->build_request_event;
    return last;
}

static BF_UNUSED int bf_terminal(int code)
{
    return code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PRECONDITION_FAILED;
}

/* Wait for a terminal BuildRequestEvent; returns it (fails the test on timeout). */
static BF_UNUSED Databuild__V1__BuildRequestEvent *bf_wait(bf *f, const char *id,
                                                           int64_t timeout_ms)
{
    Databuild__V1__BuildRequestEvent *last = NULL;
    if (!H_POLL_UNTIL(timeout_ms, (last = bf_build_last(f, id)) && bf_terminal(last->status->code)))
        H_FAIL("build %s not finished within %lld ms (events: %s)", id, (long long)timeout_ms,
               bf_build_seq(f, id));
    return last;
}

/* "REQUESTED ANALYZED BUILDING AVAILABLE" of one partition within a build. */
static BF_UNUSED char *bf_part_seq(bf *f, const char *id, const char *ref)
{
    h_event_list l = bf_events(f, id);
    char *s = "";
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT &&
            strcmp(e->partition_event->partition_ref->str, ref) == 0)
            bf_cat(f->a, &s, " ",
                   bf_enum(&databuild__v1__partition_status__descriptor,
                           e->partition_event->status_code));
    }
    return s;
}

static BF_UNUSED int bf_has_ref(Databuild__V1__PartitionRef **refs, size_t n, const char *ref)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(refs[i]->str, ref) == 0) return 1;
    return 0;
}

/* Job runs of a build that target ref, in order of first appearance:
 * "SCHEDULED RUNNING FAILED | SCHEDULED RUNNING COMPLETED". */
static BF_UNUSED char *bf_runs_seq(bf *f, const char *id, const char *ref)
{
    h_event_list l = bf_events(f, id);
    const char *runs[64];
    char *seqs[64];
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT) continue;
        const Databuild__V1__JobEvent *j = e->job_event;
        if (!bf_has_ref(j->target_partitions, j->n_target_partitions, ref)) continue;
        size_t k = 0;
        while (k < n && strcmp(runs[k], j->job_run_id) != 0)
            k++;
        if (k == n) {
            if (n == 64) H_FAIL("too many job runs");
            runs[n] = j->job_run_id;
            seqs[n++] = "";
        }
        bf_cat(f->a, &seqs[k], " ",
               bf_enum(&databuild__v1__job_status__descriptor, j->status_code));
    }
    char *s = "";
    for (size_t k = 0; k < n; k++)
        bf_cat(f->a, &s, " | ", seqs[k]);
    return s;
}

/* Messages of the job events of a build targeting ref with the given status, joined by "\n". */
static BF_UNUSED char *bf_job_messages(bf *f, const char *id, const char *ref, int status)
{
    h_event_list l = bf_events(f, id);
    char *s = "";
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT) continue;
        const Databuild__V1__JobEvent *j = e->job_event;
        if (j->status_code == (Databuild__V1__JobStatus)status &&
            bf_has_ref(j->target_partitions, j->n_target_partitions, ref))
            bf_cat(f->a, &s, "\n", j->message);
    }
    return s;
}

/* The id of the build whose RECEIVED event requested ref ("" if none yet). */
static BF_UNUSED const char *bf_build_of(bf *f, const char *ref)
{
    h_event_list l = bf_all_events(f);
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT &&
            bf_has_ref(e->build_request_event->requested_partitions,
                       e->build_request_event->n_requested_partitions, ref))
            return e->build_request_id;
    }
    return "";
}

/* Count events of a build by kind (oneof case) */
static BF_UNUSED size_t bf_count_kind(bf *f, const char *id, int kind)
{
    h_event_list l = bf_events(f, id);
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++)
        n += (int)l.events[i]->event_type_case == kind;
    return n;
}

/* Every event carries the build id; job and partition events a job run id
 * (except the planning-time REQUESTED/ANALYZED partition events). */
static BF_UNUSED void bf_check_ids(bf *f, const char *id)
{
    h_event_list l = bf_events(f, id);
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        CHECK_EQ_STR(e->build_request_id, id);
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
            CHECK(dbld_uuid_valid(e->job_event->job_run_id));
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT) {
            const Databuild__V1__PartitionEvent *pe = e->partition_event;
            /* REQUESTED comes with the request, before any job run exists;
             * from ANALYZED on each names its job run (ANALYZED the planned
             * first attempt, which a JobEvent of this build must then use) */
            if (pe->status_code == DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED) continue;
            CHECK_MSG(dbld_uuid_valid(pe->job_run_id),
                      "partition event %s of %s without job_run_id", pe->status_name,
                      pe->partition_ref->str);
            if (pe->status_code != DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED) continue;
            int used = 0;
            for (size_t k = 0; k < l.n && !used; k++)
                used = l.events[k]->event_type_case ==
                           DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
                       strcmp(l.events[k]->job_event->job_run_id, pe->job_run_id) == 0;
            CHECK_MSG(used, "ANALYZED %s names job run %s, which no JobEvent of the build has",
                      pe->partition_ref->str, pe->job_run_id);
        }
    }
}

/* The event log's state of ref (PartitionClaims/Status), in f->a. */
static BF_UNUSED Databuild__V1__PartitionState *bf_part_state(bf *f, const char *ref)
{
    Databuild__V1__PartitionStatusRequest req = DATABUILD__V1__PARTITION_STATUS_REQUEST__INIT;
    char *refs[] = {(char *)ref};
    req.refs = refs;
    req.n_refs = 1;
    Databuild__V1__PartitionStatusResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(dbld_client_unary(f->el->client, "/databuild.v1.PartitionClaims/Status", &req.base,
                               &databuild__v1__partition_status_response__descriptor,
                               dbld_arena_allocator(f->a), (ProtobufCMessage **)&r, BF_CALL_MS, 0,
                               &st),
             st);
    CHECK_EQ_INT(r->n_partitions, 1);
    return r->partitions[0];
}

/* Current partition status from the event log. */
static BF_UNUSED int bf_part_status(bf *f, const char *ref)
{
    return bf_part_state(f, ref)->status;
}

/* 1 while ref is tainted or stale (taint_propagator's mark; a rebuild clears it). */
static BF_UNUSED int bf_tainted(bf *f, const char *ref)
{
    return bf_part_state(f, ref)->tainted;
}

/* Every ProcessRunEvent of process name so far (*out: them, in log order; out may be NULL). */
static BF_UNUSED size_t bf_process_runs(bf *f, const char *name,
                                        Databuild__V1__ProcessRunEvent ***out)
{
    h_event_list all = bf_all_events(f);
    Databuild__V1__ProcessRunEvent **runs = dbld_arena_alloc(f->a, (all.n + 1) * sizeof *runs);
    size_t n = 0;
    for (size_t i = 0; i < all.n; i++)
        if (all.events[i]->event_type_case ==
                DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT &&
            strcmp(all.events[i]->process_run_event->process_name, name) == 0)
            runs[n++] = all.events[i]->process_run_event;
    if (out) *out = runs;
    return n;
}

/* Sleep until ref's partition is at least ms old by its updated_ns (what a
 * reuse window is measured against): a rebuild expected once a partition is
 * older than a window sleeps past it from there, not from a test's clock. */
static BF_UNUSED void bf_age_at_least(bf *f, const char *ref, int64_t ms)
{
    int64_t until = bf_part_state(f, ref)->updated_ns + ms * 1000000;
    int64_t left = (until - dbld_now_ns()) / 1000000 + 1;
    if (left > 0) dbld_sleep_ms(left);
}

/* ref's age in ms now, by its updated_ns. */
static BF_UNUSED int64_t bf_age_ms(bf *f, const char *ref)
{
    return (dbld_now_ns() - bf_part_state(f, ref)->updated_ns) / 1000000;
}

/* Gone, or a zombie nobody reaps yet. */
static BF_UNUSED int bf_pid_gone(int pid)
{
    if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    char *text = h_read_file(path, NULL);
    if (!text) return 1;
    char *close = strrchr(text, ')');
    int zombie = close && close[1] == ' ' && close[2] == 'Z';
    free(text);
    return zombie;
}

/* ---- the test job's state ---- */

static BF_UNUSED char *bf_state_file(bf *f, const char *name)
{
    char path[800];
    snprintf(path, sizeof path, "%s/%s", f->state, name);
    char *text = h_read_file(path, NULL);
    return text;
}

/* Lines of config.log / exec.log (0 when missing). */
static BF_UNUSED int bf_lines(bf *f, const char *name)
{
    char *text = bf_state_file(f, name);
    int n = 0;
    for (char *p = text; p && *p; p++)
        n += *p == '\n';
    free(text);
    return n;
}

/* Exec count of one ref in exec.log. */
static BF_UNUSED int bf_execs(bf *f, const char *ref)
{
    char *text = bf_state_file(f, "exec.log");
    int n = 0;
    size_t len = strlen(ref);
    for (char *p = text; p && *p;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        n += l == len && memcmp(p, ref, len) == 0;
        p = nl ? nl + 1 : p + l;
    }
    free(text);
    return n;
}

#endif
