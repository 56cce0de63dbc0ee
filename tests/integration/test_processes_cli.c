/* test_processes_cli.c - databuild.v1.Processes on the query service and the
 * `databuild processes list|show|run|settings` / `databuild operations show`
 * commands, against real event log, job, graph and query services: a want
 * put with the CLI is built by want_reconciler and shows as a COMPLETED work
 * item; settings are merged and validated; RunProcessNow answers an
 * operation that ends completed; unknown names and ids answer as documented.
 */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"

#include "databuild_process.pb-c.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]}]"

typedef struct pf {
    bf b;
    h_service *q;
} pf;

static void setup(pf *f, const char *hint)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(&f->b, hint, &o);
    const char *jobs = strstr(f->b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts qo = {
        .eventlog_addr = f->b.el->addr,
        .extra_section =
            dbld_arena_printf(f->b.a, "graph:\n  listen: \"%s\"\n%s", f->b.graph->addr, jobs),
    };
    f->q = h_service_start("query", f->b.dsn, &qo);
}

/* Run the CLI against the query service: databuild --server Q args... */
#define DB(f, ...) cli_runv((const char *const[]){"--server", (f)->q->addr, __VA_ARGS__, NULL})

DBLD_TEST(cli_processes_want_settings_run)
{
    pf f;
    setup(&f, "pcli");
    /* list: the four processes, want_reconciler held by the graph service */
    char tag[80];
    snprintf(tag, sizeof tag, "graph@%s/", f.b.graph->addr);
    cli_out r = {0};
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "processes", "list")).code == 0 && r.out &&
                                      strstr(r.out, tag) != NULL),
              "no holder in `processes list`: %s %s", r.out ? r.out : "", r.err ? r.err : "");
    CHECK_CONTAINS(r.out, "want_reconciler");
    CHECK_CONTAINS(r.out, "taint_propagator");
    CHECK_CONTAINS(r.out, "retention");
    CHECK_CONTAINS(r.out, "run_reaper");
    CHECK_CONTAINS(r.out, "HOLDER");

    /* settings: merged, validated, unknown process */
    r = DB(&f, "processes", "settings", "want_reconciler", "--every", "300", "--set",
           "max_item_errors=4");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "max_item_errors = 4");
    r = DB(&f, "processes", "settings", "want_reconciler", "--set", "retry_backoff_ms=200");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "max_item_errors = 4");
    CHECK_CONTAINS(r.out, "retry_backoff_ms = 200");
    r = DB(&f, "processes", "settings", "want_reconciler", "--every", "5");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "INVALID_ARGUMENT");
    CHECK_CONTAINS(r.err, "schedule_frequency_ms 5");
    r = DB(&f, "processes", "settings", "nope", "--every", "1000");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    r = DB(&f, "processes", "settings", "want_reconciler", "--set", "novalue");
    CHECK_EQ_INT(r.code, 2);

    /* a want put with the CLI is built by the reconciler */
    r = DB(&f, "wants", "put", "a/7");
    CHECK_EQ_INT(r.code, 0);
    char *line = line_with(r.out, "a/7");
    CHECK(line != NULL);
    char want[64] = "";
    sscanf(line, "%*s %63s", want);
    CHECK_EQ_INT(strlen(want), 36);
    CHECK_MSG(H_POLL_UNTIL(60000, bf_part_status(&f.b, "a/7") ==
                                      DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "a/7 not built for its want");
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "processes", "show", "want_reconciler")).code == 0 &&
                                      (line = line_with(r.out, want)) != NULL &&
                                      strstr(line, "COMPLETED") != NULL),
              "want item not shown COMPLETED: %s", r.out ? r.out : "");
    CHECK_CONTAINS(r.out, "process");
    CHECK_CONTAINS(r.out, "holder");
    r = DB(&f, "--json", "processes", "show", "want_reconciler", "--limit", "1");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "\"items\"");
    r = DB(&f, "processes", "show", "nope");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    r = DB(&f, "processes", "show", "want_reconciler", "--list", "sideways");
    CHECK_EQ_INT(r.code, 2);

    /* run now: an operation that ends completed */
    r = DB(&f, "processes", "run", "want_reconciler");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "queued");
    char op[64] = "";
    sscanf(r.out, "%63s", op);
    CHECK_EQ_INT(strlen(op), 36);
    CHECK_MSG(H_POLL_UNTIL(20000, (r = DB(&f, "operations", "show", op)).code == 0 &&
                                      strstr(r.out, "completed")),
              "operation %s not completed: %s", op, r.out ? r.out : "");
    r = DB(&f, "operations", "show", "00000000-0000-4000-8000-000000000000");
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "purged");
    r = DB(&f, "processes", "run", "nope");
    CHECK_EQ_INT(r.code, 1);
    CHECK_CONTAINS(r.err, "NOT_FOUND");
    /* the operation's run is in the event log */
    h_event_list all = bf_all_events(&f.b);
    int found = 0;
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        if (e->event_type_case != DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PROCESS_RUN_EVENT)
            continue;
        for (size_t k = 0; k < e->process_run_event->n_operation_ids; k++)
            found += strcmp(e->process_run_event->operation_ids[k], op) == 0;
    }
    CHECK_EQ_INT(found, 1);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(cli_processes_want_settings_run, 240))
