/* test_cli_query.c - the query subcommands of the `databuild` CLI against a
 * real event log and query service (and, for `builds cancel`, a real graph
 * and job service running tests/jobs/graph_job.py).
 *
 * The built binary is run with fork/execv and its stdout, stderr and exit
 * code are checked: table output holds the expected rows, --json lines parse
 * as proto3 JSON, --all with a small --limit returns every item exactly once
 * (also across items sharing a cursor timestamp), errors are one line with
 * the gRPC code name and exit 1, usage errors exit 2, --help exits 0 for
 * every command.
 */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"
#include "test_query_fixture.h"

#include <signal.h>

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define JOB(x) DATABUILD__V1__JOB_STATUS__JOB_##x
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x

/* got (n strings) holds each of want exactly once and nothing else. */
static void check_same_set_(const char *file, int line, char **got, size_t n,
                            const char *const *want, size_t n_want)
{
    if (n != n_want) h_fail(file, line, "want %zu items, got %zu", n_want, n);
    for (size_t i = 0; i < n_want; i++) {
        int seen = 0;
        for (size_t k = 0; k < n; k++)
            seen += strcmp(got[k], want[i]) == 0;
        if (seen != 1) h_fail(file, line, "\"%s\" seen %d times", want[i], seen);
    }
}
#define CHECK_SAME_SET(got, n, want, n_want)                                                       \
    check_same_set_(__FILE__, __LINE__, got, n, (const char *const *)(want), n_want)

/* The CLI succeeded and its --json lines' `field` values are exactly the
 * listed ones (in any order; none listed: no output at all). */
static void check_ids_(const char *file, int line, dbld_arena *a, cli_out r, const char *field,
                       const char *const *want)
{
    if (r.code != 0) h_fail(file, line, "exit %d, stderr: %s", r.code, r.err);
    char **got;
    size_t n = json_field(a, r.out, field, &got), n_want = 0;
    while (want[n_want])
        n_want++;
    check_same_set_(file, line, got, n, want, n_want);
}
#define CHECK_IDS(a, r, field, ...)                                                                \
    check_ids_(__FILE__, __LINE__, a, r, field, QF_LIST(__VA_ARGS__))

/* ------------------------------------------------------------------------ */
/* scenario                                                                  */

#define N_BUILDS 6
#define N_DATES 6

typedef struct scenario {
    const char *builds[N_BUILDS]; /* oldest first */
    const char *runs[2 * N_BUILDS];
    size_t n_runs;
    const char *refs[2 * N_DATES]; /* every partition, sorted */
    size_t n_refs;
} scenario;

static const char *date_ref(dbld_arena *a, const char *prefix, int i)
{
    return dbld_arena_printf(a, "%s/date=2026-01-0%d", prefix, i + 1);
}

/* Six builds, each one ingest run (reviews/date=...); builds 2 and 3 share
 * their requested time, and their runs their scheduled time. Build 4 fails;
 * build 5 also runs //jobs:agg (agg/date=...); build 1 was triggered by want
 * "want-cli-1". */
static scenario populate(qf *f)
{
    scenario sc;
    memset(&sc, 0, sizeof sc);
    qf_seq s;
    qf_seq_init(&s, f->a, QF_T0);
    int64_t t_br2 = 0, t_run2 = 0;
    for (int i = 0; i < N_BUILDS; i++) {
        const char *br = dbld_arena_printf(f->a, "br-%d", i);
        const char *ref = date_ref(f->a, "reviews", i);
        sc.builds[i] = br;
        const char *want = i == 1 ? "want-cli-1" : "";
        int64_t t = qf_br(&s, br, BR(RECEIVED), H_STRS(ref),
                          dbld_arena_printf(f->a, "nightly %d", i), want);
        if (i == 2) t_br2 = t;
        if (i == 3) s.evs[s.n - 1]->timestamp = t_br2; /* requested with build 2 */
        const char *run = dbld_arena_printf(f->a, "run-%d", i);
        sc.runs[sc.n_runs++] = run;
        int64_t tr[3];
        qf_run(&s, br, run, "//jobs:ingest", ref, i == 4 ? JOB(FAILED) : JOB(COMPLETED), tr);
        if (i == 2) t_run2 = tr[0];
        if (i == 3) {
            /* run 3 is scheduled at the same time as run 2 */
            size_t k = s.n;
            while (k > 0 && !(s.evs[k - 1]->event_type_case ==
                                  DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT &&
                              s.evs[k - 1]->job_event->status_code == JOB(SCHEDULED)))
                k--;
            CHECK(k > 0);
            s.evs[k - 1]->timestamp = t_run2;
        }
        if (i == 5) {
            const char *agg = date_ref(f->a, "agg", i);
            const char *run2 = "run-agg";
            sc.runs[sc.n_runs++] = run2;
            qf_run(&s, br, run2, "//jobs:agg", agg, JOB(COMPLETED), NULL);
        }
        qf_br(&s, br, i == 4 ? BR(FAILED) : BR(COMPLETED), H_STRS(ref), NULL, want);
    }
    qf_flush(f, &s);
    for (int i = 0; i < N_DATES; i++)
        sc.refs[sc.n_refs++] = date_ref(f->a, "reviews", i);
    /* agg/... sorts before reviews/... */
    memmove(sc.refs + 1, sc.refs, sc.n_refs * sizeof *sc.refs);
    sc.refs[0] = date_ref(f->a, "agg", 5);
    sc.n_refs++;
    return sc;
}

static int64_t pair_ts(int seq)
{
    return QF_T0 + (seq / 2) * QF_SEC;
} /* log entries in pairs sharing a timestamp */

/* n log entries of run (qf_append_logs): pairs share a timestamp. */
static void append_logs(qf *f, const char *run, int first_seq, int n)
{
    qf_append_logs(f, run, first_seq, n, pair_ts);
}

/* ------------------------------------------------------------------------ */
/* tests                                                                     */

DBLD_TEST(help_and_usage)
{
    /* no services needed: help and command-line errors never call anything */
    dbld_arena *a = dbld_arena_create();
    static const char *const cmds[][3] = {
        {"builds"},
        {"builds", "list"},
        {"builds", "show"},
        {"builds", "mermaid"},
        {"builds", "cancel"},
        {"partitions"},
        {"partitions", "list"},
        {"partitions", "show"},
        {"jobs"},
        {"jobs", "list"},
        {"jobs", "show"},
        {"runs"},
        {"runs", "list"},
        {"runs", "show"},
        {"logs"},
        {"wants"},
        {"wants", "list"},
        {"wants", "show"},
        {"wants", "put"},
        {"taints"},
        {"taints", "list"},
        {"taints", "show"},
        {"taints", "put"},
        {"events"},
        {"events", "append"},
        {"build"},
        {"analyze"},
        {"health"},
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *name = dbld_arena_printf(a, "%s%s%s", cmds[i][0], cmds[i][1] ? " " : "",
                                             cmds[i][1] ? cmds[i][1] : "");
        cli_out r = cmds[i][1] ? CLI(cmds[i][0], cmds[i][1], "--help") : CLI(cmds[i][0], "--help");
        CHECK_MSG(r.code == 0, "%s --help: exit %d: %s", name, r.code, r.err);
        CHECK_CONTAINS(r.out, dbld_arena_printf(a, "usage: databuild %s ", name));
        CHECK_CONTAINS(r.out, "--server ADDR");
        /* -h before the command works too */
        r = cmds[i][1] ? CLI("-h", cmds[i][0], cmds[i][1]) : CLI("-h", cmds[i][0]);
        CHECK_EQ_INT(r.code, 0);
    }
    CHECK_CONTAINS(CLI("--help").out, "partitions list");
    /* events talks to the event log, and says so */
    CHECK_CONTAINS(CLI("events", "--help").out, "Talks to the EVENT LOG service");
    CHECK_CONTAINS(CLI("events", "append", "--help").out, "Talks to the event log service");

    /* missing arguments and bad values: usage error, exit 2, one line */
    CHECK_FAIL(CLI("builds", "show"), 2, "missing build request id");
    CHECK_FAIL(CLI("builds", "mermaid"), 2, "missing build request id");
    CHECK_FAIL(CLI("builds", "cancel"), 2, "missing build request id");
    CHECK_FAIL(CLI("builds", "show", "a", "b"), 2, "unexpected argument \"b\"");
    CHECK_FAIL(CLI("partitions", "show"), 2, "missing partition ref");
    CHECK_FAIL(CLI("jobs", "show"), 2, "missing job label");
    CHECK_FAIL(CLI("runs", "show"), 2, "missing job run id");
    CHECK_FAIL(CLI("logs"), 2, "missing job run id");
    CHECK_FAIL(CLI("wants", "show"), 2, "missing want id");
    CHECK_FAIL(CLI("wants", "put"), 2, "missing partition ref");
    CHECK_FAIL(CLI("taints", "show"), 2, "missing taint id");
    CHECK_FAIL(CLI("taints", "put", "a/1"), 2, "--comment TEXT is required");
    CHECK_FAIL(CLI("builds"), 2, "expected a subcommand");
    CHECK_FAIL(CLI("builds", "frobnicate"), 2, "unknown subcommand \"frobnicate\"");
    CHECK_FAIL(CLI("builds", "list", "--limit", "x"), 2, "--limit");
    CHECK_FAIL(CLI("builds", "list", "--status", "bogus"), 2, "unknown build status \"bogus\"");
    CHECK_FAIL(CLI("partitions", "list", "--status", "nope"), 2,
               "unknown partition status \"nope\"");
    CHECK_FAIL(CLI("logs", "r", "--level", "loud"), 2, "--level");
    CHECK_FAIL(CLI("runs", "list", "--frob"), 2, "unknown option --frob");
}

DBLD_TEST(builds)
{
    qf f = qf_start("clibuilds");
    scenario sc = populate(&f);
    const char *srv = f.q->addr;

    /* table: a header and one row per build, newest first */
    cli_out r = CLI("--server", srv, "builds", "list");
    CHECK_CLI_OK(r);
    h_note("builds list:\n%s", r.out);
    CHECK(strncmp(r.out, "BUILD_REQUEST_ID  STATUS", 24) == 0);
    CHECK_CONTAINS(r.out, "REQUESTED");
    CHECK_CONTAINS(r.out, "DURATION");
    CHECK_EQ_INT(count_lines(r.out), 1 + N_BUILDS);
    char *l = line_with(r.out, "br-4 ");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "  FAILED  ");
    CHECK_CONTAINS(l, "reviews/date=2026-01-05");
    CHECK_CONTAINS(l, "nightly 4");
    CHECK_CONTAINS(l, "2026-01-01T00:");
    CHECK_CONTAINS(l, "0/1/1"); /* done/failed/total */
    l = line_with(r.out, "br-0 ");
    CHECK_CONTAINS(l, "  COMPLETED  ");
    CHECK_CONTAINS(l, "1/0/1");
    CHECK(strstr(r.out, "br-5") < strstr(r.out, "br-0")); /* newest first */

    /* --json: one BuildSummary per line */
    r = CLI("--server", srv, "builds", "list", "--json");
    CHECK_CLI_OK(r);
    char **ids;
    size_t n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, sc.builds, N_BUILDS);
    char **codes;
    json_field(f.a, r.out, "status.code", &codes);
    CHECK_EQ_STR(codes[1], "BUILD_REQUEST_FAILED"); /* br-4, second newest */

    /* paging: --all --limit 2 returns each build once, also br-2/br-3 which
     * share their requested time */
    r = CLI("--server", srv, "builds", "list", "--all", "--limit", "2", "--json");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, sc.builds, N_BUILDS);
    r = CLI("--server", srv, "builds", "list", "--all", "--limit", "1");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 1 + N_BUILDS);
    /* one page of 2: the newest two and a hint with the cursor */
    r = CLI("--server", srv, "builds", "list", "--limit", "2", "--json");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(ids[0], "br-5");
    CHECK_EQ_STR(ids[1], "br-4");
    CHECK_CONTAINS(r.err, "more build requests follow: --all, or --until ");
    /* ... and the cursor continues where the page ended */
    char *until = strstr(r.err, "--until ") + 8;
    until[strcspn(until, ")")] = 0;
    r = CLI("--server", srv, "builds", "list", "--limit", "1", "--json", "--until", until);
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    /* br-3 and br-2 share a requested time: a page of 1 holds both */
    CHECK_SAME_SET(ids, n, ((const char *[]){"br-3", "br-2"}), 2);

    /* filters */
    r = CLI("--server", srv, "builds", "list", "--status", "failed", "--json");
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, ((const char *[]){"br-4"}), 1);
    r = CLI("--server", srv, "builds", "list", "--status", "BUILD_REQUEST_FAILED", "--status", "4",
            "--json");
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, ((const char *[]){"br-4", "br-0", "br-1", "br-2", "br-3", "br-5"}), 6);
    r = CLI("--server", srv, "builds", "list", "--partition", "reviews/date=2026-01-02", "--json");
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, ((const char *[]){"br-1"}), 1);
    r = CLI("--server", srv, "builds", "list", "--job", "//jobs:agg", "--json");
    n = json_field(f.a, r.out, "buildRequestId", &ids);
    CHECK_SAME_SET(ids, n, ((const char *[]){"br-5"}), 1);
    r = CLI("--server", srv, "builds", "list", "--comment", "NIGHTLY 3");
    CHECK_EQ_INT(count_lines(r.out), 2);
    CHECK_CONTAINS(r.out, "br-3");
    /* --built: a run of the build COMPLETED with that target (br-4's failed) */
    const char *bid = "buildRequestId";
    CHECK_IDS(f.a,
              CLI("--server", srv, "builds", "list", "--built", "agg/date=2026-01-06", "--json"),
              bid, "br-5");
    CHECK_IDS(
        f.a, CLI("--server", srv, "builds", "list", "--built", "reviews/date=2026-01-05", "--json"),
        bid);
    CHECK_IDS(f.a,
              CLI("--server", srv, "builds", "list", "--built", "reviews/date=2026-01-02",
                  "--built", "agg/date=2026-01-06", "--built", "reviews/date=2026-01-05", "--json"),
              bid, "br-5", "br-1");
    /* --want: the triggering want; ANDed with the other filters */
    CHECK_IDS(f.a,
              CLI("--server", srv, "builds", "list", "--want", "want-cli-1", "--want", "want-nope",
                  "--json"),
              bid, "br-1");
    CHECK_IDS(f.a,
              CLI("--server", srv, "builds", "list", "--want", "want-cli-1", "--built",
                  "agg/date=2026-01-06", "--json"),
              bid);

    /* show */
    r = CLI("--server", srv, "builds", "show", "br-5");
    CHECK_CLI_OK(r);
    h_note("builds show:\n%s", r.out);
    CHECK_CONTAINS(r.out, "build request:    br-5\n");
    CHECK_CONTAINS(r.out, "status:           COMPLETED\n");
    CHECK_CONTAINS(r.out, "jobs:             2 total, 2 completed, 0 failed, 0 cancelled\n");
    CHECK_CONTAINS(r.out, "comment:          nightly 5\n");
    CHECK_CONTAINS(r.out, "PARTITION");
    l = line_with(r.out, "agg/date=2026-01-06");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "AVAILABLE");
    r = CLI("--server", srv, "--json", "builds", "show", "br-4");
    CHECK_CLI_OK(r);
    json_field(f.a, r.out, "status", &codes);
    CHECK_EQ_STR(codes[0], "BUILD_REQUEST_FAILED");
    CHECK_FAIL(CLI("--server", srv, "builds", "show", "no-such-build"), 1, "NOT_FOUND",
               "no-such-build");

    /* mermaid (the build has no job graph event: its partitions alone) */
    r = CLI("--server", srv, "builds", "mermaid", "br-5");
    CHECK_CLI_OK(r);
    CHECK(strncmp(r.out, "flowchart LR\n", 13) == 0);
    CHECK_CONTAINS(r.out, "reviews/date=2026-01-06");
    r = CLI("--server", srv, "builds", "mermaid", "br-5", "--json");
    CHECK_CLI_OK(r);
    char **m;
    json_field(f.a, r.out, "mermaid", &m);
    CHECK(strncmp(m[0], "flowchart LR\n", 13) == 0);
    CHECK_FAIL(CLI("--server", srv, "builds", "mermaid", "nope-7"), 1, "NOT_FOUND", "nope-7");

    /* cancel of an unknown build: NOT_FOUND from the query service itself */
    CHECK_FAIL(CLI("--server", srv, "builds", "cancel", "nope-8", "--reason", "x"), 1, "NOT_FOUND",
               "nope-8");

    /* --config: the query peer from the file */
    char *cfg = dbld_arena_printf(f.a, "%s/cli.yaml", h_test_dir());
    h_write_file(cfg, dbld_arena_printf(f.a, "shared:\n  peers:\n    query: \"%s\"\n", srv));
    r = CLI("--config", cfg, "builds", "list", "--status", "failed");
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "br-4");
    /* nothing listening: UNAVAILABLE, one line naming the address */
    char *dead = dbld_arena_printf(f.a, "127.0.0.1:%d", h_free_port());
    CHECK_FAIL(CLI("--server", dead, "--timeout", "2000", "builds", "list"), 1, dead);
}

DBLD_TEST(partitions_jobs_runs)
{
    qf f = qf_start("clipartitions");
    scenario sc = populate(&f);
    const char *srv = f.q->addr;

    /* partitions list: sorted by ref */
    cli_out r = CLI("--server", srv, "partitions", "list");
    CHECK_CLI_OK(r);
    h_note("partitions list:\n%s", r.out);
    CHECK(strncmp(r.out, "REF", 3) == 0);
    CHECK_CONTAINS(r.out, "STATUS");
    CHECK_CONTAINS(r.out, "LAST_BUILD");
    CHECK_EQ_INT(count_lines(r.out), 1 + (int)sc.n_refs);
    char *l = line_with(r.out, "reviews/date=2026-01-05");
    CHECK_CONTAINS(l, "  FAILED  ");
    CHECK_CONTAINS(l, "br-4");
    l = line_with(r.out, "reviews/date=2026-01-01");
    CHECK_CONTAINS(l, "  AVAILABLE  ");
    CHECK(strstr(r.out, "agg/") < strstr(r.out, "reviews/date=2026-01-01"));

    char **refs;
    r = CLI("--server", srv, "partitions", "list", "--json", "--all", "--limit", "2");
    CHECK_CLI_OK(r);
    size_t n = json_field(f.a, r.out, "partitionRef.str", &refs);
    CHECK_SAME_SET(refs, n, sc.refs, sc.n_refs);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_STR(refs[i], sc.refs[i]); /* in ref order */
    r = CLI("--server", srv, "partitions", "list", "--limit", "3");
    CHECK_EQ_INT(count_lines(r.out), 4);
    CHECK_CONTAINS(r.err, "more partitions follow: --all, or --after reviews/date=2026-01-02");
    r = CLI("--server", srv, "partitions", "list", "--after", "reviews/date=2026-01-04", "--json");
    n = json_field(f.a, r.out, "partitionRef.str", &refs);
    CHECK_SAME_SET(refs, n, sc.refs + 5, 2);

    /* status filter: name, PARTITION_ name, number agree */
    static const char *const forms[] = {"failed", "PARTITION_FAILED", "5"};
    for (size_t i = 0; i < 3; i++) {
        r = CLI("--server", srv, "partitions", "list", "--status", forms[i], "--json");
        CHECK_CLI_OK(r);
        n = json_field(f.a, r.out, "partitionRef.str", &refs);
        CHECK_SAME_SET(refs, n, ((const char *[]){"reviews/date=2026-01-05"}), 1);
    }
    r = CLI("--server", srv, "partitions", "list", "--status", "available", "--pattern",
            "reviews/.*", "--all", "--limit", "2", "--json");
    n = json_field(f.a, r.out, "partitionRef.str", &refs);
    CHECK_EQ_INT(n, N_DATES - 1);
    CHECK_FAIL(CLI("--server", srv, "partitions", "list", "--pattern", "reviews/(oops"), 1,
               "INVALID_ARGUMENT", "reviews/(oops");

    /* partitions show */
    r = CLI("--server", srv, "partitions", "show", "reviews/date=2026-01-05",
            "agg/date=2026-01-06");
    CHECK_CLI_OK(r);
    h_note("partitions show:\n%s", r.out);
    CHECK_CONTAINS(r.out, "partition:        reviews/date=2026-01-05\nstatus:           FAILED\n");
    CHECK_CONTAINS(r.out, "partition:        agg/date=2026-01-06\nstatus:           AVAILABLE\n");
    CHECK_CONTAINS(r.out, "br-5");
    r = CLI("--server", srv, "partitions", "show", "agg/date=2026-01-06", "--json");
    char **st;
    json_field(f.a, r.out, "partition.status.code", &st);
    CHECK_EQ_STR(st[0], "PARTITION_AVAILABLE");
    r = CLI("--server", srv, "partitions", "show", "agg/date=2026-01-06", "nope/x=1");
    CHECK_FAIL(r, 1, "NOT_FOUND", "nope/x=1");
    CHECK_CONTAINS(r.out, "agg/date=2026-01-06"); /* the known one is still shown */

    /* jobs */
    r = CLI("--server", srv, "jobs", "list");
    CHECK_CLI_OK(r);
    h_note("jobs list:\n%s", r.out);
    CHECK(strncmp(r.out, "JOB", 3) == 0);
    CHECK_EQ_INT(count_lines(r.out), 4);
    l = line_with(r.out, "//jobs:ingest");
    CHECK_CONTAINS(l, "  6  "); /* runs */
    CHECK_CONTAINS(l, "  5  "); /* ok */
    CHECK_CONTAINS(l, "COMPLETED");
    l = line_with(r.out, "//jobs:never");
    CHECK_CONTAINS(l, "  0  ");
    r = CLI("--server", srv, "jobs", "list", "--json");
    char **labels;
    n = json_field(f.a, r.out, "jobLabel", &labels);
    CHECK_SAME_SET(labels, n, ((const char *[]){"//jobs:ingest", "//jobs:agg", "//jobs:never"}), 3);
    r = CLI("--server", srv, "jobs", "show", "//jobs:ingest");
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "job:              //jobs:ingest\n");
    CHECK_CONTAINS(r.out, "runs:             6 (5 completed, 1 failed, 0 cancelled)\n");
    r = CLI("--server", srv, "jobs", "show", "//jobs:agg", "--json");
    json_field(f.a, r.out, "job.jobLabel", &labels);
    CHECK_EQ_STR(labels[0], "//jobs:agg");
    CHECK_FAIL(CLI("--server", srv, "jobs", "show", "//jobs:nope"), 1, "NOT_FOUND", "//jobs:nope");

    /* runs */
    r = CLI("--server", srv, "runs", "list");
    CHECK_CLI_OK(r);
    h_note("runs list:\n%s", r.out);
    CHECK(strncmp(r.out, "JOB_RUN_ID", 10) == 0);
    CHECK_EQ_INT(count_lines(r.out), 1 + (int)sc.n_runs);
    l = line_with(r.out, "run-4 ");
    CHECK_CONTAINS(l, "//jobs:ingest");
    CHECK_CONTAINS(l, "FAILED");
    CHECK_CONTAINS(l, "br-4");
    CHECK_CONTAINS(l, "reviews/date=2026-01-05");
    char **ids;
    r = CLI("--server", srv, "runs", "list", "--all", "--limit", "2", "--json");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "jobRunId", &ids);
    CHECK_SAME_SET(ids, n, sc.runs, sc.n_runs);
    r = CLI("--server", srv, "runs", "list", "--all", "--limit", "1", "--json");
    n = json_field(f.a, r.out, "jobRunId", &ids);
    CHECK_SAME_SET(ids, n, sc.runs, sc.n_runs);
    r = CLI("--server", srv, "runs", "list", "--job", "//jobs:agg", "--build", "br-1", "--json");
    n = json_field(f.a, r.out, "jobRunId", &ids);
    CHECK_SAME_SET(ids, n, ((const char *[]){"run-agg", "run-1"}), 2);
    /* --partition: runs that built it (run-4 FAILED on reviews/date=2026-01-05);
     * --run; all ORed */
    const char *rid = "jobRunId";
    CHECK_IDS(
        f.a,
        CLI("--server", srv, "runs", "list", "--partition", "reviews/date=2026-01-02", "--json"),
        rid, "run-1");
    CHECK_IDS(
        f.a,
        CLI("--server", srv, "runs", "list", "--partition", "reviews/date=2026-01-05", "--json"),
        rid);
    CHECK_IDS(f.a, CLI("--server", srv, "runs", "list", "--run", "run-3", "--json"), rid, "run-3");
    CHECK_IDS(f.a,
              CLI("--server", srv, "runs", "list", "--run", "run-3", "--run", "run-nope",
                  "--partition", "agg/date=2026-01-06", "--partition", "reviews/date=2026-01-05",
                  "--json"),
              rid, "run-3", "run-agg");
    r = CLI("--server", srv, "runs", "show", "run-4");
    CHECK_CLI_OK(r);
    h_note("runs show:\n%s", r.out);
    CHECK_CONTAINS(r.out, "job run:          run-4\n");
    CHECK_CONTAINS(r.out, "status:           FAILED\n");
    CHECK_CONTAINS(r.out, "build request:    br-4\n");
    CHECK_CONTAINS(r.out, "duration:         ");
    r = CLI("--server", srv, "runs", "show", "run-1", "--json");
    json_field(f.a, r.out, "jobRun.statusCode", &st);
    CHECK_EQ_STR(st[0], "JOB_COMPLETED");
    CHECK_FAIL(CLI("--server", srv, "runs", "show", "run-nope"), 1, "NOT_FOUND", "run-nope");
}

DBLD_TEST(wants_taints)
{
    qf f = qf_start("cliwants");
    populate(&f);
    const char *srv = f.q->addr;

    /* wants put: one want per ref, in order */
    cli_out r =
        CLI("--server", srv, "wants", "put", "reviews/date=2026-01-01", "reviews/date=2026-01-09",
            "raw/date=2026-01-01", "--comment", "backfill", "--ttl", "3600", "--sla", "7200");
    CHECK_CLI_OK(r);
    h_note("wants put:\n%s", r.out);
    CHECK(strncmp(r.out, "REF", 3) == 0);
    CHECK_EQ_INT(count_lines(r.out), 4);
    r = CLI("--server", srv, "wants", "put", "agg/date=2026-01-06", "agg/date=2026-01-07",
            "--json");
    CHECK_CLI_OK(r);
    char **wref;
    size_t n = json_field(f.a, r.out, "wants", &wref); /* an array: not a string */
    CHECK_EQ_INT(n, 1);
    json_t *o = json_loads(r.out, 0, NULL);
    CHECK(json_array_size(json_object_get(o, "wants")) == 2);
    const char *agg_want = json_string_value(
        json_object_get(json_array_get(json_object_get(o, "wants"), 0), "wantId"));
    CHECK(agg_want && dbld_uuid_valid(agg_want));
    CHECK_FAIL(CLI("--server", srv, "wants", "put", "bogus/x=1"), 1, "INVALID_ARGUMENT",
               "bogus/x=1");

    /* wants list: five, newest first; --all --limit 2 returns each once */
    r = CLI("--server", srv, "wants", "list");
    CHECK_CLI_OK(r);
    h_note("wants list:\n%s", r.out);
    CHECK(strncmp(r.out, "WANT_ID", 7) == 0);
    CHECK_EQ_INT(count_lines(r.out), 6);
    char *l = line_with(r.out, "reviews/date=2026-01-01");
    CHECK_CONTAINS(l, "AVAILABLE");
    CHECK_CONTAINS(l, "1h00m");
    CHECK_CONTAINS(l, "2h00m");
    CHECK_CONTAINS(l, "backfill");
    char **all;
    r = CLI("--server", srv, "wants", "list", "--json");
    size_t n_all = json_field(f.a, r.out, "want.wantId", &all);
    CHECK_EQ_INT(n_all, 5);
    char **ids;
    r = CLI("--server", srv, "wants", "list", "--json", "--all", "--limit", "2");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "want.wantId", &ids);
    CHECK_SAME_SET(ids, n, all, n_all);
    r = CLI("--server", srv, "wants", "list", "--json", "--all", "--limit", "1");
    n = json_field(f.a, r.out, "want.wantId", &ids);
    CHECK_SAME_SET(ids, n, all, n_all);
    r = CLI("--server", srv, "wants", "list", "--live", "--json");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 5);
    /* two wants that expire after a second: listed, but not --live */
    r = CLI("--server", srv, "wants", "put", "reviews/date=2026-01-02", "reviews/date=2026-01-03",
            "--ttl", "1", "--json");
    CHECK_CLI_OK(r);
    o = json_loads(r.out, 0, NULL);
    CHECK(o && json_array_size(json_object_get(o, "wants")) == 2);
    const char *gone[2];
    for (size_t i = 0; i < 2; i++)
        gone[i] =
            dbld_arena_strdup(f.a, json_string_value(json_object_get(
                                       json_array_get(json_object_get(o, "wants"), i), "wantId")));
    json_decref(o);
    dbld_sleep_ms(1500);
    r = CLI("--server", srv, "wants", "list", "--json");
    n = json_field(f.a, r.out, "want.wantId", &ids);
    CHECK_EQ_INT(n, 7);
    r = CLI("--server", srv, "wants", "list", "--live", "--json");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "want.wantId", &ids);
    CHECK_SAME_SET(ids, n, all, n_all);
    r = CLI("--server", srv, "wants", "list", "--live", "--json", "--all", "--limit", "1");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "want.wantId", &ids);
    CHECK_SAME_SET(ids, n, all, n_all);
    r = CLI("--server", srv, "wants", "list", "--live");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 6);
    CHECK(!strstr(r.out, gone[0]) && !strstr(r.out, gone[1]));

    r = CLI("--server", srv, "wants", "show", agg_want);
    CHECK_CLI_OK(r);
    h_note("wants show:\n%s", r.out);
    CHECK_CONTAINS(r.out, "partition:        agg/date=2026-01-06\n");
    CHECK_CONTAINS(r.out, "status:           AVAILABLE\n");
    l = line_with(r.out, "agg/date=2026-01-06  ");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "br-5");
    r = CLI("--server", srv, "wants", "show", agg_want, "--json");
    char **ref;
    json_field(f.a, r.out, "want.want.ref.str", &ref);
    CHECK_EQ_STR(ref[0], "agg/date=2026-01-06");
    CHECK_FAIL(CLI("--server", srv, "wants", "show", "want-nope"), 1, "NOT_FOUND", "want-nope");

    /* taints: five puts */
    const char *taint_ids[5];
    for (int i = 0; i < 5; i++) {
        r = CLI("--server", srv, "taints", "put", date_ref(f.a, "reviews", i), "--comment",
                dbld_arena_printf(f.a, "bad data %d", i));
        CHECK_CLI_OK(r);
        r.out[strcspn(r.out, "\n")] = 0;
        CHECK_MSG(dbld_uuid_valid(r.out), "taint id \"%s\"", r.out);
        taint_ids[i] = dbld_arena_strdup(f.a, r.out);
    }
    r = CLI("--server", srv, "taints", "list");
    CHECK_CLI_OK(r);
    h_note("taints list:\n%s", r.out);
    CHECK(strncmp(r.out, "TAINT_ID", 8) == 0);
    CHECK_EQ_INT(count_lines(r.out), 6);
    l = line_with(r.out, taint_ids[3]);
    CHECK_CONTAINS(l, "CLI_MANUAL");
    CHECK_CONTAINS(l, "reviews/date=2026-01-04");
    CHECK_CONTAINS(l, "bad data 3");
    r = CLI("--server", srv, "taints", "list", "--json", "--all", "--limit", "2");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "taintId", &ids);
    CHECK_SAME_SET(ids, n, taint_ids, 5);
    r = CLI("--server", srv, "taints", "show", taint_ids[0]);
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "comment:          bad data 0\n");
    CHECK_CONTAINS(r.out, "refs:             1: reviews/date=2026-01-01\n");
    r = CLI("--server", srv, "taints", "show", taint_ids[0], "--json");
    char **c;
    json_field(f.a, r.out, "taint.comment", &c);
    CHECK_EQ_STR(c[0], "bad data 0");
    CHECK_FAIL(CLI("--server", srv, "taints", "show", "taint-nope"), 1, "NOT_FOUND", "taint-nope");
    /* the taint shows on the partition */
    r = CLI("--server", srv, "partitions", "show", "reviews/date=2026-01-01");
    l = line_with(r.out, "last invalidated:");
    CHECK(l != NULL && strstr(l, "T") != NULL);
}

DBLD_TEST(logs)
{
    qf f = qf_start("clilogs");
    populate(&f);
    const char *srv = f.q->addr;
    /* 1200 entries: more than one GetJobLogs page (1000), pairs share a timestamp */
    append_logs(&f, "run-1", 1, 1200);

    cli_out r = CLI("--server", srv, "logs", "run-1");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 1200);
    static const char first[] = "2026-01-01T00:00:00.000Z  INFO      line 1\n";
    CHECK_MSG(strncmp(r.out, first, strlen(first)) == 0, "first line: %.80s", r.out);
    char *l = line_with(r.out, "rows=");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "METRIC    rows=10");
    CHECK_CONTAINS(r.out, "ERROR     line 1199\n");

    char **seqs;
    r = CLI("--server", srv, "logs", "run-1", "--json");
    CHECK_CLI_OK(r);
    size_t n = json_field(f.a, r.out, "sequenceNumber", &seqs);
    CHECK_EQ_INT(n, 1200);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(atoll(seqs[i]), (long long)i + 1); /* each once, in order */

    r = CLI("--server", srv, "logs", "run-1", "--limit", "3");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 3);
    r = CLI("--server", srv, "logs", "run-1", "--level", "warn", "--limit", "20");
    CHECK_CLI_OK(r);
    CHECK(strstr(r.out, " INFO ") == NULL && strstr(r.out, " DEBUG ") == NULL);
    CHECK_CONTAINS(r.out, "WARN      line 2\n");
    CHECK_CONTAINS(r.out, "METRIC");
    CHECK_FAIL(CLI("--server", srv, "logs", "run-nope"), 1, "NOT_FOUND", "run-nope");
}

DBLD_TEST(logs_follow)
{
    qf f = qf_start("clifollow");
    /* a running job run */
    qf_seq s;
    qf_seq_init(&s, f.a, QF_T0);
    qf_br(&s, "br-f", BR(RECEIVED), H_STRS("reviews/date=2026-02-01"), NULL, "");
    qf_run(&s, "br-f", "run-f", "//jobs:ingest", "reviews/date=2026-02-01", JOB(RUNNING), NULL);
    qf_flush(&f, &s);
    append_logs(&f, "run-f", 1, 3);

    char out_path[700], err_path[700];
    snprintf(out_path, sizeof out_path, "%s/follow.out", h_test_dir());
    snprintf(err_path, sizeof err_path, "%s/follow.err", h_test_dir());
    pid_t pid =
        cli_spawn(H_STRS("--server", f.q->addr, "logs", "run-f", "--follow"), out_path, err_path);
    CHECK(H_POLL_UNTIL(10000, ({
                           char *t = h_read_file(out_path, NULL);
                           int ok = t && count_lines(t) == 3;
                           free(t);
                           ok;
                       })));
    /* still following */
    int status;
    CHECK_EQ_INT(waitpid(pid, &status, WNOHANG), 0);
    append_logs(&f, "run-f", 4, 2);
    CHECK(H_POLL_UNTIL(10000, ({
                           char *t = h_read_file(out_path, NULL);
                           int ok = t && count_lines(t) == 5;
                           free(t);
                           ok;
                       })));
    CHECK_EQ_INT(waitpid(pid, &status, WNOHANG), 0);
    /* the run finishes: the last entries are printed and the CLI exits 0 */
    append_logs(&f, "run-f", 6, 1);
    qf_add(&s, h_event_job(f.a, "br-f", "run-f", "//jobs:ingest", JOB(COMPLETED),
                           H_STRS("reviews/date=2026-02-01")));
    qf_flush(&f, &s);
    int64_t deadline = dbld_mono_ms() + 10000;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && dbld_mono_ms() < deadline)
        dbld_sleep_ms(20);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        H_FAIL("logs --follow did not exit after the run finished");
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *t = h_read_file(out_path, NULL);
    CHECK_EQ_INT(count_lines(t), 6);
    CHECK_CONTAINS(t, "line 6\n");
    free(t);
}

/* Wait until the file at path has at least n lines; its text (malloc'd) or NULL. */
static char *wait_lines(const char *path, int n, int64_t ms)
{
    char *t = NULL;
    int64_t deadline = dbld_mono_ms() + ms;
    for (;;) {
        t = h_read_file(path, NULL);
        if ((t && count_lines(t) >= n) || dbld_mono_ms() >= deadline) return t;
        free(t);
        dbld_sleep_ms(20);
    }
}

/* `databuild events` lists and follows the EVENT LOG (not the query
 * service): filters, --json, --limit, and --follow printing an event
 * appended while it runs. */
DBLD_TEST(events)
{
    qf f = qf_start("clievents");
    populate(&f);
    const char *el = f.el->addr;

    /* what the query service says br-4's events are */
    Databuild__V1__ListBuildEventsRequest er = DATABUILD__V1__LIST_BUILD_EVENTS_REQUEST__INIT;
    er.filters = h_filter(f.a, NULL, NULL, NULL, NULL, H_STRS("br-4"));
    Databuild__V1__ListBuildEventsResponse *want =
        QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
              databuild__v1__list_build_events_response__descriptor);
    CHECK_CMP_INT(want->n_events, >=, 5);

    cli_out r = CLI("--server", el, "events", "--build-request-id", "br-4");
    CHECK_CLI_OK(r);
    h_note("events --build-request-id br-4:\n%s", r.out);
    CHECK_EQ_INT(count_lines(r.out), (int)want->n_events);
    char *l = line_with(r.out, "RECEIVED");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "br-4");
    CHECK_CONTAINS(l, "build_request");
    CHECK_CONTAINS(l, "reviews/date=2026-01-05");
    l = line_with(r.out, "run run-4 -> FAILED");
    CHECK(l != NULL);
    CHECK_CONTAINS(l, "//jobs:ingest");

    /* --json: {"idx":N,"event":{...}}, the same events in the same order */
    r = CLI("--server", el, "events", "--build-request-id", "br-4", "--json");
    CHECK_CLI_OK(r);
    char **ids, **brs;
    size_t n = json_field(f.a, r.out, "event.eventId", &ids);
    CHECK_EQ_INT(n, want->n_events);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_STR(ids[i], want->events[i]->event_id);
    json_t *o = json_loads(r.out, JSON_DISABLE_EOF_CHECK, NULL);
    CHECK(o && json_integer_value(json_object_get(o, "idx")) > 0);
    json_decref(o);

    /* a ref filter ANDed with a label filter; --limit */
    r = CLI("--server", el, "events", "--ref", "reviews/date=2026-01-05", "--job-label",
            "//jobs:ingest", "--json");
    CHECK_CLI_OK(r);
    n = json_field(f.a, r.out, "event.jobEvent.jobRunId", &ids);
    CHECK_EQ_INT(n, 3); /* run-4: SCHEDULED, RUNNING, FAILED */
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_STR(ids[i], "run-4");
    r = CLI("--server", el, "events", "--pattern", "reviews/.*", "--limit", "4");
    CHECK_CLI_OK(r);
    CHECK_EQ_INT(count_lines(r.out), 4);
    r = CLI("--server", el, "events", "--build-request-id", "br-nope");
    CHECK_CLI_OK(r);
    CHECK_EQ_STR(r.out, "");
    /* the query service does not serve the event log */
    CHECK_FAIL(CLI("--server", f.q->addr, "events"), 1, f.q->addr);

    /* --follow: br-5's stored events, then one appended while it runs */
    er.filters = h_filter(f.a, NULL, NULL, NULL, NULL, H_STRS("br-5"));
    int stored = (int)QF_OK(&f, "GetBuildEvents", &er, Databuild__V1__ListBuildEventsResponse,
                            databuild__v1__list_build_events_response__descriptor)
                     ->n_events;
    char out_path[700], err_path[700];
    snprintf(out_path, sizeof out_path, "%s/events-follow.out", h_test_dir());
    snprintf(err_path, sizeof err_path, "%s/events-follow.err", h_test_dir());
    pid_t pid = cli_spawn(
        H_STRS("--server", el, "events", "--follow", "--build-request-id", "br-5", "--json"),
        out_path, err_path);
    char *t = wait_lines(out_path, stored, 10000);
    CHECK_MSG(t && count_lines(t) == stored, "followed %d lines, want %d: %s",
              t ? count_lines(t) : -1, stored, t ? t : "");
    free(t);
    int status;
    CHECK_EQ_INT(waitpid(pid, &status, WNOHANG), 0); /* still following */
    r = CLI("--server", el, "events", "append",
            "{\"buildRequestId\":\"br-5\",\"partitionEvent\":{\"partitionRef\":{\"str\":"
            "\"agg/date=2026-01-06\"},\"statusCode\":\"PARTITION_AVAILABLE\",\"message\":"
            "\"seen by follow\"}}");
    CHECK_CLI_OK(r);
    r = CLI("--server", el, "events", "append",
            "{\"buildRequestId\":\"br-0\",\"buildCancelEvent\":{\"reason\":\"other build\"}}");
    CHECK_CLI_OK(r);
    t = wait_lines(out_path, stored + 1, 10000);
    CHECK(t && count_lines(t) == stored + 1);
    n = json_field(f.a, t, "event.partitionEvent.message", &ids);
    CHECK_EQ_STR(ids[n - 1], "seen by follow");
    json_field(f.a, t, "event.buildRequestId", &brs);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_STR(brs[i], "br-5"); /* br-0's event is filtered out */
    free(t);
    CHECK_EQ_INT(waitpid(pid, &status, WNOHANG), 0);
    kill(pid, SIGTERM);
    CHECK_EQ_INT(wait_code(pid), 128 + SIGTERM);
    t = h_read_file(out_path, NULL);
    CHECK_EQ_INT(count_lines(t), stored + 1);
    free(t);
}

/* builds cancel through the query service to a real graph service. */
#define JOBS_YAML "    - label: \"//t:s\"\n      command: %CMD%\n      outputs: [\"s/.*\"]\n"
#define RULES "[{\"match\": \"s/(.*)\", \"sleep\": 60}]"

DBLD_TEST(cancel_real_build)
{
    bf b;
    bf_opts o = {.jobs = JOBS_YAML, .rules = RULES};
    bf_setup(&b, "clicancel", &o);
    const char *jobs = strstr(b.graph_yaml, "  jobs:\n");
    CHECK(jobs != NULL);
    h_service_opts qo = {
        .eventlog_addr = b.el->addr,
        .extra_section =
            dbld_arena_printf(b.a, "graph:\n  listen: \"%s\"\n%s", b.graph->addr, jobs),
    };
    h_service *q = h_service_start("query", b.dsn, &qo);
    char *id = bf_submit(&b, H_STRS("s/1"));

    /* wait for the slow run, through the CLI */
    CHECK(H_POLL_UNTIL(30000, ({
                           cli_out r = CLI("--server", q->addr, "runs", "list", "--build", id);
                           int ok = r.code == 0 && strstr(r.out, "RUNNING") != NULL;
                           free(r.out);
                           free(r.err);
                           ok;
                       })));
    cli_out r = CLI("--server", q->addr, "builds", "cancel", id, "--reason", "operator said so");
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, id);
    bf_wait(&b, id, 30000);
    r = CLI("--server", q->addr, "builds", "show", id);
    CHECK_CLI_OK(r);
    h_note("cancelled build:\n%s", r.out);
    CHECK_CONTAINS(r.out, "status:           CANCELLED\n");
    CHECK_CONTAINS(r.out, "cancelled:        yes\n");
    r = CLI("--server", q->addr, "builds", "list", "--status", "cancelled");
    CHECK_CONTAINS(r.out, id);
    r = CLI("--server", q->addr, "runs", "list", "--build", id);
    CHECK_CONTAINS(r.out, "CANCELLED");
    r = CLI("--server", q->addr, "builds", "mermaid", id);
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "  class j0 job_cancelled\n");
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(help_and_usage), DBLD_TEST_ENTRY_T(builds, 180),
               DBLD_TEST_ENTRY_T(partitions_jobs_runs, 180), DBLD_TEST_ENTRY_T(wants_taints, 180),
               DBLD_TEST_ENTRY_T(logs, 180), DBLD_TEST_ENTRY_T(logs_follow, 120),
               DBLD_TEST_ENTRY_T(events, 120), DBLD_TEST_ENTRY_T(cancel_real_build, 180))
