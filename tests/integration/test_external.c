/* test_external.c - external inputs (graph.external: never built here) with
 * real event log, job, graph and query services: a want whose partition
 * needs a missing external input waits (UPSTREAM_WAITING, naming it, no
 * attempt charged), then is built within seconds of `databuild partitions
 * mark-available`; a want on an external partition itself waits the same
 * way and becomes AVAILABLE once marked; an external ref with quotes in it is
 * waited for as it is (the analysis hands the missing refs over as data).
 *
 * The graph: p/X needs ext/X; ext/.* is external.
 */
#include "test_processes_fixture.h"

#define JOBS "    - label: \"//t:p\"\n      command: %CMD%\n      outputs: [\"p/.*\"]\n"
#define RULES "[{\"match\": \"p/(.*)\", \"inputs\": [\"ext/\\\\1\"]}]"

static void setup(pf *f, const char *hint)
{
    pf_setup(f, hint, JOBS, RULES, "[\"ext/.*\"]");
}

static long long attempts(pf *f, const char *want)
{
    h_rows *r = h_sql(f->b.dsn, "SELECT attempts FROM process_work WHERE name = $1", want);
    long long n = h_rows_n(r) ? h_rows_i64(r, 0, 0) : -1;
    h_rows_free(r);
    return n;
}

DBLD_TEST(want_waits_for_external_input_then_builds)
{
    pf f;
    setup(&f, "extwant");
    char *reason = "";
    char *want = pf_put_want(&f, "p/1", 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    CHECK_CONTAINS(reason, "ext/1");
    CHECK_EQ_INT(bf_execs(&f.b, "p/1"), 0);
    CHECK_EQ_INT(bf_execs(&f.b, "ext/1"), 0);
    /* waiting is not failing: no attempt charged, however long it waits */
    dbld_sleep_ms(2500);
    CHECK_EQ_INT(attempts(&f, want), 0);
    CHECK_EQ_INT(pf_want_state(&f, want, &reason), WS(UPSTREAM_WAITING));
    /* an outside system marks the input AVAILABLE: built within seconds */
    cli_out r = cli_runv((const char *const[]){"--server", f.b.el->addr, "partitions",
                                               "mark-available", "ext/1", NULL});
    CHECK_EQ_INT(r.code, 0);
    CHECK_CONTAINS(r.out, "ext/1");
    int64_t t0 = dbld_mono_ms();
    CHECK_MSG(H_POLL_UNTIL(15000, bf_part_status(&f.b, "p/1") ==
                                      DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "p/1 not built after its input was marked available");
    h_note("built %lld ms after mark-available", (long long)(dbld_mono_ms() - t0));
    CHECK_EQ_INT(bf_execs(&f.b, "p/1"), 1);
    CHECK_EQ_INT(bf_execs(&f.b, "ext/1"), 0);
    CHECK(H_POLL_UNTIL(10000, pf_want_state(&f, want, &reason) == WS(AVAILABLE)));
}

DBLD_TEST(want_on_external_partition_waits)
{
    pf f;
    setup(&f, "extself");
    char *reason = "";
    char *want = pf_put_want(&f, "ext/9", 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    CHECK_CONTAINS(reason, "ext/9");
    dbld_sleep_ms(1500);
    CHECK_EQ_INT(attempts(&f, want), 0);
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(
        f.b.a, "", "ext/9", DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.b.el, f.b.a, ev, 1);
    CHECK(H_POLL_UNTIL(10000, pf_want_state(&f, want, &reason) == WS(AVAILABLE)));
    CHECK_EQ_INT(bf_lines(&f.b, "exec.log"), 0);
}

/* The external refs a build waited for come from its analysis as data, not
 * out of its message: an input whose ref holds quotes and "(needed by"
 * (what the message wraps each ref in) is waited for under its own name,
 * and the want is built once that ref is marked AVAILABLE. */
DBLD_TEST(want_waits_for_an_external_ref_as_it_is)
{
    pf f;
    setup(&f, "extquote");
    const char *ref = "p/\" (needed by \"x", *input = "ext/\" (needed by \"x";
    char *reason = "";
    char *want = pf_put_want(&f, ref, 0, 0, 0);
    CHECK_MSG(H_POLL_UNTIL(30000, pf_want_state(&f, want, &reason) == WS(UPSTREAM_WAITING)),
              "want not UPSTREAM_WAITING: %s", reason);
    CHECK_CONTAINS(reason, input);
    Databuild__V1__PartitionWant *w = pf_want_summary(&f, want)->want->want;
    CHECK_EQ_INT(w->n_external_dependencies, 1);
    CHECK_EQ_STR(w->external_dependencies[0], input);
    Databuild__V1__BuildEvent *ev[] = {h_event_partition(
        f.b.a, "", input, DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE, "")};
    h_append_ok(f.b.el, f.b.a, ev, 1);
    CHECK_MSG(H_POLL_UNTIL(15000, bf_part_status(&f.b, ref) ==
                                      DATABUILD__V1__PARTITION_STATUS__PARTITION_AVAILABLE),
              "%s not built after its input was marked available", ref);
    CHECK_EQ_INT(bf_execs(&f.b, ref), 1);
    CHECK_EQ_INT(attempts(&f, want), 0);
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY_T(want_waits_for_external_input_then_builds, 180),
               DBLD_TEST_ENTRY_T(want_on_external_partition_waits, 180),
               DBLD_TEST_ENTRY_T(want_waits_for_an_external_ref_as_it_is, 180))
