/* test_taints.c - taint_propagator (services/graph/propagator.c) with real
 * event log, job and graph services: a taint makes every partition built,
 * transitively, from the tainted one stale (PartitionInvalidationEvents
 * naming the taint and the input), the next build rebuilds exactly those
 * and nothing else, and a live want on a downstream partition has the
 * reconciler rebuild them with no build command.
 *
 * The graph: a/X needs b/X and c/X, b/X needs c/X; r/W (a weekly report)
 * needs a/W-1 .. a/W-3 (tests/jobs/graph_job.py).
 */
#include "test_build_fixture.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"

#define JOBS                                                                                       \
    "    - label: \"//t:a\"\n      command: %CMD%\n      outputs: [\"a/.*\"]\n"                    \
    "    - label: \"//t:b\"\n      command: %CMD%\n      outputs: [\"b/.*\"]\n"                    \
    "    - label: \"//t:c\"\n      command: %CMD%\n      outputs: [\"c/.*\"]\n"                    \
    "    - label: \"//t:r\"\n      command: %CMD%\n      outputs: [\"r/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"a/(.*)\", \"inputs\": [\"b/\\\\1\", \"c/\\\\1\"]},"                            \
    " {\"match\": \"b/(.*)\", \"inputs\": [\"c/\\\\1\"]},"                                         \
    " {\"match\": \"r/(.*)\", \"inputs\": [\"a/\\\\1-1\", \"a/\\\\1-2\", \"a/\\\\1-3\"]}]"

static void setup(bf *f, const char *hint)
{
    setenv("DBLD_GRAPH_PROCESS_LEASE_MS", "1500", 1);
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(f, hint, &o);
}

static void taint(bf *f, const char *ref)
{
    Databuild__V1__BuildEvent *e =
        h_event_taint(f->a, "", (const char *const[]){ref, NULL},
                      DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "bad input");
    h_append_ok(f->el, f->a, &e, 1);
}

/* Tainted flag of ref (PartitionClaims.Status). */
static int tainted(bf *f, const char *ref)
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
    return r->partitions[0]->tainted;
}

/* The reason of the latest invalidation of ref ("" when none). */
static const char *stale_reason(bf *f, const char *ref)
{
    h_event_list all = bf_all_events(f);
    const char *reason = "";
    for (size_t i = 0; i < all.n; i++) {
        const Databuild__V1__BuildEvent *e = all.events[i];
        if (e->event_type_case ==
                DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT &&
            strcmp(e->partition_invalidation_event->partition_ref->str, ref) == 0)
            reason = e->partition_invalidation_event->reason;
    }
    return reason;
}

static void build_ok(bf *f, const char *ref)
{
    dbld_status st = {0};
    CHECK_OK(bf_build(f, (const char *const[]){ref, NULL}, NULL, &st), st);
}

DBLD_TEST(taint_rebuilds_exactly_the_downstream)
{
    bf f;
    setup(&f, "taintdown");
    build_ok(&f, "r/w");
    /* r/w, a/w-1..3, b/w-1..3, c/w-1..3: 10 runs */
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 10);
    taint(&f, "c/w-2");
    CHECK_MSG(H_POLL_UNTIL(20000, tainted(&f, "r/w")), "r/w not made stale");
    CHECK(tainted(&f, "b/w-2"));
    CHECK(tainted(&f, "a/w-2"));
    CHECK(!tainted(&f, "a/w-1"));
    CHECK(!tainted(&f, "c/w-3"));
    CHECK_CONTAINS(stale_reason(&f, "b/w-2"), "via input c/w-2");
    CHECK_CONTAINS(stale_reason(&f, "r/w"), "via input a/w-2");
    CHECK_CONTAINS(stale_reason(&f, "r/w"), "of c/w-2");
    /* rebuilding the week reruns exactly the tainted day's chain and the report */
    build_ok(&f, "r/w");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
    CHECK_EQ_INT(bf_execs(&f, "c/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "b/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/w-2"), 2);
    CHECK_EQ_INT(bf_execs(&f, "r/w"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/w-1"), 1);
    CHECK_EQ_INT(bf_execs(&f, "c/w-3"), 1);
    /* the rebuild cleared the staleness: building again runs nothing */
    CHECK(!tainted(&f, "r/w"));
    CHECK(!tainted(&f, "a/w-2"));
    build_ok(&f, "r/w");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
    /* the propagation item is COMPLETED, with its count */
    h_rows *r = h_sql(f.dsn, "SELECT state FROM process_work WHERE process = 'taint_propagator'");
    CHECK_EQ_INT(h_rows_n(r), 1);
    CHECK_EQ_INT(h_rows_i64(r, 0, 0), DATABUILD__V1__PROCESS_STATE__PROCESS_COMPLETED);
    h_rows_free(r);
}

DBLD_TEST(live_want_rebuilds_stale_without_a_command)
{
    bf f;
    setup(&f, "taintwant");
    char id[37];
    dbld_uuid_v4(id);
    Databuild__V1__BuildEvent *e =
        h_event_want(f.a, "", id, H_STRS("r/v"), DATABUILD__V1__SOURCE_TYPE_CODE__API_REQUEST, "");
    h_append_ok(f.el, f.a, &e, 1);
    CHECK(H_POLL_UNTIL(60000, bf_part_status(&f, "r/v") ==
                                  DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE));
    CHECK(H_POLL_UNTIL(20000, bf_lines(&f, "exec.log") == 10));
    taint(&f, "c/v-1");
    CHECK_MSG(H_POLL_UNTIL(60000, bf_execs(&f, "r/v") == 2 && !tainted(&f, "r/v") &&
                                      bf_part_status(&f, "r/v") ==
                                          DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "r/v not rebuilt for its live want");
    CHECK_EQ_INT(bf_execs(&f, "c/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "b/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/v-1"), 2);
    CHECK_EQ_INT(bf_execs(&f, "a/v-2"), 1);
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 14);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(taint_rebuilds_exactly_the_downstream, 240),
               DBLD_TEST_ENTRY_T(live_want_rebuilds_stale_without_a_command, 240))
