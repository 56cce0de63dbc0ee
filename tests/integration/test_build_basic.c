/* test_build_basic.c - the graph service end to end with real eventlog, job
 * and graph processes: lookup, analyze (batching, cycles, unknown refs,
 * external inputs, preconditions), a build's exact event sequences, skipping
 * what is already available, and refs full of shell and quote characters.
 *
 * The graph: a/X needs b/X and c/X, b/X needs c/X (tests/jobs/graph_job.py).
 */
#include "test_build_fixture.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//t:cy\"\n      command: %CMD%\n      outputs: [\"cy/.*\"]\n"                  \
    "    - label: \"//t:cz\"\n      command: %CMD%\n      outputs: [\"cz/.*\"]\n"                  \
    "    - label: \"//t:p\"\n      command: %CMD%\n      outputs: [\"p/.*\"]\n"                    \
    "    - label: \"//t:q\"\n      command: %CMD%\n      outputs: [\"q/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"cy/(.*)\", \"inputs\": [\"cz/\\\\1\"]},"                                       \
    " {\"match\": \"cz/(.*)\", \"inputs\": [\"cy/\\\\1\"]},"                                       \
    " {\"match\": \"p/missing/(.*)\", \"inputs\": [\"nobody/\\\\1\"]},"                            \
    " {\"match\": \"p/ext/(.*)\", \"inputs\": [\"ext/\\\\1\"]},"                                   \
    " {\"match\": \"p/avail/(.*)\", \"inputs\": [\"avail/\\\\1\"]},"                               \
    " {\"match\": \"q/.*\", \"tag\": \"q\"}]"

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

static void setup(bf *f, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES, .external = "[\"ext/.*\"]"};
    bf_setup(f, hint, &o);
}

/* idx order helper: position of the first partition event (ref, status). */
static size_t pos_of(h_event_list *l, const char *ref, int status)
{
    for (size_t i = 0; i < l->n; i++) {
        const Databuild__V1__BuildEvent *e = l->events[i];
        if (e->event_type_case == DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT &&
            strcmp(e->partition_event->partition_ref->str, ref) == 0 &&
            (int)e->partition_event->status_code == status)
            return i;
    }
    H_FAIL("no %d event for %s", status, ref);
}

DBLD_TEST(happy_path_event_sequences)
{
    bf f;
    setup(&f, "happy");
    Databuild__V1__GraphBuildResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(bf_build(&f, H_STRS("a/1"), &r, &st), st);
    CHECK_EQ_INT(r->n_manifests, 3);
    /* find the build id from the event log: the only build */
    h_event_list all = bf_all_events(&f);
    CHECK(all.n > 0);
    const char *id = all.events[0]->build_request_id;
    CHECK(dbld_uuid_valid(id));
    CHECK_EQ_STR(bf_build_seq(&f, id), "RECEIVED PLANNING ANALYSIS_COMPLETED EXECUTING COMPLETED");
    CHECK_EQ_STR(bf_part_seq(&f, id, "a/1"), "REQUESTED ANALYZED BUILDING AVAILABLE");
    CHECK_EQ_STR(bf_part_seq(&f, id, "b/1"), "ANALYZED BUILDING AVAILABLE");
    CHECK_EQ_STR(bf_part_seq(&f, id, "c/1"), "ANALYZED BUILDING AVAILABLE");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "a/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "b/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&f, id, "c/1"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_INT(bf_count_kind(&f, id, DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT), 1);
    bf_check_ids(&f, id);
    /* dependency order: an input is AVAILABLE before its consumer starts */
    h_event_list l = bf_events(&f, id);
    CHECK(pos_of(&l, "c/1", 4) < pos_of(&l, "b/1", 3));
    CHECK(pos_of(&l, "b/1", 4) < pos_of(&l, "a/1", 3));
    CHECK(pos_of(&l, "c/1", 4) < pos_of(&l, "a/1", 3));
    /* RECEIVED carries the request; SCHEDULED carries the config; COMPLETED the manifest */
    Databuild__V1__BuildRequestEvent *rcv = l.events[0]->build_request_event;
    CHECK(rcv);
    CHECK_EQ_INT(rcv->n_requested_partitions, 1);
    CHECK_EQ_STR(rcv->requested_partitions[0]->str, "a/1");
    int scheduled_with_config = 0, completed_with_manifest = 0;
    for (size_t i = 0; i < l.n; i++) {
        const Databuild__V1__BuildEvent *e = l.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT) continue;
        if (e->job_event->status_code == DATABUILD__V1__JOB_STATUS__JOB_SCHEDULED &&
            e->job_event->config && e->job_event->config->n_outputs == 1 && e->job_event->job_label)
            scheduled_with_config++;
        if (e->job_event->status_code == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED &&
            e->job_event->n_manifests == 1)
            completed_with_manifest++;
    }
    CHECK_EQ_INT(scheduled_with_config, 3);
    CHECK_EQ_INT(completed_with_manifest, 3);
    CHECK_EQ_INT(bf_part_status(&f, "a/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 3);
}

DBLD_TEST(submit_returns_at_once)
{
    bf f;
    setup(&f, "submit");
    char *id = bf_submit(&f, H_STRS("a/7", "b/8"));
    CHECK(dbld_uuid_valid(id));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_EQ_INT(end->status->code, BR(COMPLETED));
    CHECK_EQ_STR(bf_part_seq(&f, id, "b/8"), "REQUESTED ANALYZED BUILDING AVAILABLE");
    CHECK_EQ_STR(bf_part_seq(&f, id, "c/8"), "ANALYZED BUILDING AVAILABLE");
    h_event_list l = bf_events(&f, id);
    CHECK_EQ_STR(l.events[0]->build_request_event->comment, "test");
}

DBLD_TEST(lookup_groups_by_job)
{
    bf f;
    setup(&f, "lookup");
    Databuild__V1__GraphLookupResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(bf_lookup(&f, H_STRS("a/1", "b/1", "a/2"), &r, &st), st);
    CHECK_EQ_INT(r->n_task_refs, 2);
    CHECK_EQ_STR(r->task_refs[0]->job->label, "//t:a");
    CHECK_EQ_INT(r->task_refs[0]->n_outputs, 2);
    CHECK_EQ_STR(r->task_refs[0]->outputs[1]->str, "a/2");
    CHECK_EQ_STR(r->task_refs[1]->job->label, "//t:b");
    CHECK_CODE(bf_lookup(&f, H_STRS("a/1", "nope/1"), &r, &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "nope/1");
}

/* Two jobs whose output patterns overlap: the graph service refuses to start
 * and names both jobs, both patterns and a ref both match (the lookup that
 * used to answer FAILED_PRECONDITION for such a ref never gets to run). */
DBLD_TEST(overlapping_jobs_refused_at_startup)
{
    h_service_opts o = {.eventlog_addr = "127.0.0.1:1",
                        .extra_section =
                            "  jobs:\n"
                            "    - {label: \"//t:amb1\", command: [\"/bin/true\"], outputs: "
                            "[\"amb/[0-9]+\"]}\n"
                            "    - {label: \"//t:other\", command: [\"/bin/true\"], outputs: "
                            "[\"other/.*\"]}\n"
                            "    - {label: \"//t:amb2\", command: [\"/bin/true\"], outputs: "
                            "[\"amb/1.*\"]}\n"};
    char *log = h_service_refused("graph", NULL, &o);
    CHECK_CONTAINS(log, "graph.jobs[2].outputs[0]: pattern \"amb/1.*\" of job \"//t:amb2\" "
                        "overlaps pattern \"amb/[0-9]+\" of job \"//t:amb1\" (both match "
                        "\"amb/1\")");
    free(log);
}

DBLD_TEST(analyze_batches_configure_per_job_per_round)
{
    bf f;
    setup(&f, "batch");
    Databuild__V1__GraphAnalyzeResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(bf_analyze(&f, H_STRS("a/1", "a/2", "a/3"), &r, &st), st);
    CHECK_EQ_INT(r->graph->n_nodes, 9);
    CHECK_EQ_INT(r->graph->n_outputs, 3);
    CHECK_EQ_STR(r->graph->label->label, "//databuild:graph");
    /* round 1: a (3 refs); round 2: b and c (3 refs each); c/X needed by b is deduplicated */
    CHECK_EQ_INT(bf_lines(&f, "config.log"), 3);
    char *log = bf_state_file(&f, "config.log");
    CHECK_CONTAINS(log, "a/1\ta/2\ta/3\n");
    CHECK_CONTAINS(log, "b/1\tb/2\tb/3\n");
    CHECK_CONTAINS(log, "c/1\tc/2\tc/3\n");
    free(log);
    /* every node's config is the job's: outputs + inputs */
    for (size_t i = 0; i < r->graph->n_nodes; i++) {
        Databuild__V1__Task *t = r->graph->nodes[i];
        CHECK_EQ_INT(t->config->n_outputs, 1);
        if (t->config->outputs[0]->str[0] == 'a') CHECK_EQ_INT(t->config->n_inputs, 2);
    }
    /* nothing was executed and no build was recorded */
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 0);
    CHECK_EQ_INT(bf_all_events(&f).n, 0);
}

DBLD_TEST(cycle_is_named)
{
    bf f;
    setup(&f, "cycle");
    dbld_status st = {0};
    CHECK_CODE(bf_analyze(&f, H_STRS("cy/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "dependency cycle: cy/1 -> cz/1 -> cy/1");
    CHECK_CODE(bf_build(&f, H_STRS("cy/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "dependency cycle");
    h_event_list all = bf_all_events(&f);
    const char *id = all.events[0]->build_request_id;
    Databuild__V1__BuildRequestEvent *end = bf_build_last(&f, id);
    CHECK_EQ_INT(end->status->code, BR(FAILED));
    CHECK_CONTAINS(end->message, "dependency cycle: cy/1 -> cz/1 -> cy/1");
    CHECK_EQ_STR(bf_build_seq(&f, id), "RECEIVED PLANNING FAILED");
}

DBLD_TEST(unknown_ref_not_found)
{
    bf f;
    setup(&f, "unknown");
    dbld_status st = {0};
    CHECK_CODE(bf_analyze(&f, H_STRS("a/1", "zzz/1"), NULL, &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "zzz/1");
    char id[37];
    CHECK_CODE(bf_submit_to(&f, f.graph, H_STRS("zzz/2"), "", id, &st), st, DBLD_NOT_FOUND);
    CHECK_CONTAINS(st.msg, "zzz/2");
    CHECK_CODE(bf_build(&f, H_STRS("zzz/3"), NULL, &st), st, DBLD_NOT_FOUND);
    CHECK_EQ_INT(bf_all_events(&f).n, 0); /* nothing recorded for a request that names nothing */
}

DBLD_TEST(precondition_failed_names_the_input)
{
    bf f;
    setup(&f, "precond");
    dbld_status st = {0};
    CHECK_CODE(bf_analyze(&f, H_STRS("p/missing/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "nobody/1");
    CHECK_CODE(bf_build(&f, H_STRS("p/missing/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "nobody/1");
    h_event_list all = bf_all_events(&f);
    const char *id = all.events[0]->build_request_id;
    Databuild__V1__BuildRequestEvent *end = bf_build_last(&f, id);
    CHECK_EQ_INT(end->status->code, BR(PRECONDITION_FAILED));
    CHECK_CONTAINS(end->message, "nobody/1");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 0);
    /* an external input is never built: not AVAILABLE -> PRECONDITION_FAILED naming it */
    CHECK_CODE(bf_build(&f, H_STRS("p/ext/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    CHECK_CONTAINS(st.msg, "external partition not AVAILABLE: \"ext/1\" (needed by \"p/ext/1\")");
    CHECK_EQ_INT(bf_execs(&f, "ext/1"), 0);
    Databuild__V1__BuildEvent *ext[] = {h_event_partition(
        f.a, "", "ext/1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.el, f.a, ext, 1);
    CHECK_OK(bf_build(&f, H_STRS("p/ext/1"), NULL, &st), st);
    CHECK_EQ_INT(bf_execs(&f, "ext/1"), 0);
    /* an input that is AVAILABLE in the event log is accepted too */
    CHECK_CODE(bf_analyze(&f, H_STRS("p/avail/1"), NULL, &st), st, DBLD_FAILED_PRECONDITION);
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(
        f.a, "", "avail/1", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.el, f.a, ev, 1);
    CHECK_OK(bf_build(&f, H_STRS("p/avail/1"), NULL, &st), st);
    CHECK_EQ_INT(bf_execs(&f, "p/avail/1"), 1);
}

DBLD_TEST(second_build_skips)
{
    bf f;
    setup(&f, "skip");
    char *id1 = bf_submit(&f, H_STRS("a/1"));
    CHECK_EQ_INT(bf_wait(&f, id1, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 3);
    char *id2 = bf_submit(&f, H_STRS("a/1"));
    CHECK_EQ_INT(bf_wait(&f, id2, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 3); /* nothing ran */
    CHECK_EQ_STR(bf_runs_seq(&f, id2, "a/1"), "SKIPPED");
    CHECK_EQ_STR(bf_runs_seq(&f, id2, "b/1"), "SKIPPED");
    CHECK_EQ_STR(bf_runs_seq(&f, id2, "c/1"), "SKIPPED");
    CHECK_EQ_STR(bf_build_seq(&f, id2), "RECEIVED PLANNING ANALYSIS_COMPLETED EXECUTING COMPLETED");
    /* the partitions stay AVAILABLE throughout: no intent events overwrote them */
    CHECK_EQ_STR(bf_part_seq(&f, id2, "a/1"), "");
    CHECK_EQ_INT(bf_part_status(&f, "a/1"), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    bf_check_ids(&f, id2);
    /* a partly built graph: only the missing part runs */
    char *id3 = bf_submit(&f, H_STRS("a/1", "b/2"));
    CHECK_EQ_INT(bf_wait(&f, id3, 60000)->status->code, BR(COMPLETED));
    CHECK_EQ_STR(bf_runs_seq(&f, id3, "b/2"), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_STR(bf_runs_seq(&f, id3, "a/1"), "SKIPPED");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 5);
}

DBLD_TEST(shell_and_quote_characters_pass_through)
{
    bf f;
    setup(&f, "quote");
    const char *ref =
        "q/it's \"quoted\" $(touch /tmp/dbld-pwned) `id` ; echo hi | cat & \\ *?[x] {a,b} ~ #x";
    char *id = bf_submit(&f, H_STRS(ref));
    Databuild__V1__BuildRequestEvent *end = bf_wait(&f, id, 60000);
    CHECK_MSG(end->status->code == BR(COMPLETED), "build ended %s: %s", end->status->name,
              end->message);
    char *out = bf_state_file(&f, "out-q");
    CHECK_EQ_STR(out, ref);
    free(out);
    CHECK_EQ_STR(bf_part_seq(&f, id, ref), "REQUESTED ANALYZED BUILDING AVAILABLE");
    CHECK_EQ_STR(bf_runs_seq(&f, id, ref), "SCHEDULED RUNNING COMPLETED");
    CHECK_EQ_INT(bf_part_status(&f, ref), DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE);
    struct stat sb;
    CHECK(stat("/tmp/dbld-pwned", &sb) != 0);
    Databuild__V1__GraphLookupResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(bf_lookup(&f, H_STRS(ref), &r, &st), st);
    CHECK_EQ_STR(r->task_refs[0]->outputs[0]->str, ref);
}

DBLD_TEST(cancel_unknown_build)
{
    bf f;
    setup(&f, "cancelunknown");
    dbld_status st = {0};
    CHECK_CODE(bf_cancel(&f, "3f1d9a52-4a8e-4c44-9b35-1a2b3c4d5e6f", "x", &st), st, DBLD_NOT_FOUND);
    char *id = bf_submit(&f, H_STRS("c/1"));
    bf_wait(&f, id, 60000);
    CHECK(H_POLL_UNTIL(5000, bf_cancel(&f, id, "late", &st) == DBLD_FAILED_PRECONDITION));
    CHECK_CONTAINS(st.msg, "already ended");
}

DBLD_TEST(health_waits_for_the_event_log)
{
    bf f;
    setup(&f, "health");
    h_service_stop(f.el);
    h_service_kill(f.graph);
    h_service_respawn(f.graph);
    /* up (the port answers) but NOT_SERVING, and Submit says UNAVAILABLE */
    int serving = 1, rc;
    dbld_status st = {0};
    CHECK(H_POLL_UNTIL(20000, (rc = h_service_health(f.graph, "", &serving, &st)) == DBLD_OK));
    int64_t until = dbld_mono_ms() + 1000;
    while (dbld_mono_ms() < until) {
        CHECK_OK(h_service_health(f.graph, "", &serving, &st), st);
        CHECK_EQ_INT(serving, 0);
        dbld_sleep_ms(100);
    }
    char id[37];
    CHECK_CODE(bf_submit_to(&f, f.graph, H_STRS("c/1"), "", id, &st), st, DBLD_UNAVAILABLE);
    h_service_restart(f.el);
    CHECK(h_service_wait_health(f.graph, "", 1, 20000));
    CHECK(h_service_wait_health(f.graph, "databuild.v1.GraphBuilder", 1, 1000));
    char *bid = bf_submit(&f, H_STRS("c/1"));
    CHECK_EQ_INT(bf_wait(&f, bid, 60000)->status->code, BR(COMPLETED));
    (void)rc;
}

/* JobEvent RUNNING means the job service has spawned the process: with one
 * run slot, three ready tasks are SCHEDULED at once but RUNNING one at a
 * time, the later ones after waiting for the slot. */
DBLD_TEST(running_means_the_process_started)
{
    bf f;
    bf_opts o = {.jobs = JOBS,
                 .rules = "[{\"match\": \"c/.*\", \"sleep\": 0.3}]",
                 .max_parallel = 4,
                 .max_runs = 1};
    bf_setup(&f, "slots", &o);
    Databuild__V1__GraphBuildResponse *r = NULL;
    dbld_status st = {0};
    CHECK_OK(bf_build(&f, H_STRS("c/s1", "c/s2", "c/s3"), &r, &st), st);
    h_event_list all = bf_all_events(&f);
    CHECK(all.n > 0);
    const char *id = all.events[0]->build_request_id;
    h_event_list l = bf_events(&f, id);
    int scheduled = 0, running = 0, max_running = 0, max_scheduled = 0, waited = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.events[i]->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT)
            continue;
        const Databuild__V1__JobEvent *j = l.events[i]->job_event;
        if (j->status_code == JS(SCHEDULED)) scheduled++;
        if (j->status_code == JS(RUNNING)) {
            running++;
            if (strstr(j->message, "waiting for a slot")) waited++;
            CHECK_CONTAINS(j->message, "pid ");
        }
        if (j->status_code == JS(COMPLETED)) {
            running--;
            scheduled--;
        }
        if (running > max_running) max_running = running;
        if (scheduled > max_scheduled) max_scheduled = scheduled;
    }
    CHECK_EQ_INT(max_running, 1);
    CHECK_MSG(max_scheduled > 1, "the tasks were scheduled together (%d)", max_scheduled);
    CHECK_MSG(waited >= 1, "no RUNNING event says it waited for a slot");
    for (int k = 1; k <= 3; k++)
        CHECK_EQ_STR(bf_runs_seq(&f, id, dbld_arena_printf(f.a, "c/s%d", k)),
                     "SCHEDULED RUNNING COMPLETED");
    bf_check_ids(&f, id);
}

DBLD_TEST_MAIN(
    DBLD_TEST_ENTRY(happy_path_event_sequences), DBLD_TEST_ENTRY(submit_returns_at_once),
    DBLD_TEST_ENTRY(lookup_groups_by_job), DBLD_TEST_ENTRY(overlapping_jobs_refused_at_startup),
    DBLD_TEST_ENTRY(analyze_batches_configure_per_job_per_round), DBLD_TEST_ENTRY(cycle_is_named),
    DBLD_TEST_ENTRY(unknown_ref_not_found), DBLD_TEST_ENTRY(precondition_failed_names_the_input),
    DBLD_TEST_ENTRY(second_build_skips), DBLD_TEST_ENTRY(shell_and_quote_characters_pass_through),
    DBLD_TEST_ENTRY(cancel_unknown_build), DBLD_TEST_ENTRY(health_waits_for_the_event_log),
    DBLD_TEST_ENTRY(running_means_the_process_started))
