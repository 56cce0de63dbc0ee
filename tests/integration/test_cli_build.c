/* test_cli_build.c - `databuild build` and `databuild analyze`: the real CLI
 * binary against a real event log, job service and graph service running
 * tests/jobs/graph_job.py (a fan-in: agg/X needs raw/X-a and raw/X-b).
 *
 * build: a successful build exits 0, prints each built partition with the
 * progress [done/running/failed of total] and ends with every requested
 * partition AVAILABLE; built again, every job is skipped; a failing job
 * makes it exit 1 naming the failed partition (an independent branch still
 * builds); an unknown ref exits 1 naming it; --json prints one JSON object
 * per line ending with the result; on a terminal the progress line is
 * redrawn in place while jobs run. analyze: the table and the tree of tasks
 * with their levels, --json parses as the GraphAnalyzeResponse, an unknown
 * ref exits 1 naming it, and nothing is built.
 */
#define _GNU_SOURCE /* memmem */
#include "test_build_fixture.h"
#include "test_cli_fixture.h"

#include <poll.h>
#include <pty.h>

#define JOBS                                                                                       \
    "    - label: \"//c:raw\"\n      command: %CMD%\n      outputs: [\"raw/.*\"]\n"                \
    "    - label: \"//c:agg\"\n      command: %CMD%\n      outputs: [\"agg/.*\"]\n"                \
    "    - label: \"//c:bad\"\n      command: %CMD%\n      outputs: [\"bad/.*\"]\n"

#define RULES                                                                                      \
    "[{\"match\": \"agg/(.*)\", \"inputs\": [\"raw/\\\\1-a\", \"raw/\\\\1-b\"]},"                  \
    " {\"match\": \"raw/slow.*\", \"sleep\": 0.8},"                                                \
    " {\"match\": \"bad/.*\", \"exit\": 3}]"

#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x

static void setup(bf *f, const char *hint)
{
    bf_opts o = {.jobs = JOBS, .rules = RULES};
    bf_setup(f, hint, &o);
}

/* `databuild --server <graph> [--json] build --eventlog <el> REF...` */
static cli_out build(bf *f, int json, const char *const *refs)
{
    const char *args[16];
    size_t n = 0;
    args[n++] = "--server";
    args[n++] = f->graph->addr;
    if (json) args[n++] = "--json";
    args[n++] = "build";
    args[n++] = "--eventlog";
    args[n++] = f->el->addr;
    for (size_t i = 0; refs[i] && n < 15; i++)
        args[n++] = refs[i];
    args[n] = NULL;
    return cli_runv(args);
}

/* Some line of text starts with prefix and contains each of the others. */
static void check_line_(const char *file, int line, const char *text, const char *prefix,
                        const char *const *others)
{
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t len = strcspn(l, "\n"), i = 0;
        if (strncmp(l, prefix, strlen(prefix)) != 0) continue;
        while (others[i] && memmem(l, len, others[i], strlen(others[i])))
            i++;
        if (!others[i]) return;
    }
    h_fail(file, line, "no line starts with \"%s\" and has \"%s\"%s in:\n%s", prefix,
           others[0] ? others[0] : "", others[0] && others[1] ? " ..." : "", text);
}
#define CHECK_LINE(text, needle, ...)                                                              \
    check_line_(__FILE__, __LINE__, text, needle, (const char *const[]){__VA_ARGS__, NULL})

/* The value at path ("a.b.0.c": members and array indexes) as a string: a
 * JSON string's text, another value's compact encoding (in a), "" if absent. */
static const char *jstr(dbld_arena *a, json_t *v, const char *path)
{
    char key[128];
    for (const char *k = path; v && *k;) {
        size_t kl = strcspn(k, ".");
        snprintf(key, sizeof key, "%.*s", (int)kl, k);
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(key)) : json_object_get(v, key);
        k += kl + (k[kl] == '.');
    }
    if (!v) return "";
    if (json_is_string(v)) return dbld_arena_strdup(a, json_string_value(v));
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    const char *out = dbld_arena_strdup(a, text ? text : "");
    free(text);
    return out;
}

/* The last line of text parsed as JSON (fails the test if it is not). */
static json_t *last_json(const char *text)
{
    size_t len = strlen(text);
    while (len > 0 && text[len - 1] == '\n')
        len--;
    const char *start = text + len;
    while (start > text && start[-1] != '\n')
        start--;
    json_error_t err;
    json_t *o = json_loadb(start, (size_t)(text + len - start), 0, &err);
    CHECK_MSG(o != NULL, "last line is not JSON: %s: \"%.*s\"", err.text, (int)(text + len - start),
              start);
    return o;
}

DBLD_TEST(build_ok_then_skipped)
{
    bf f;
    setup(&f, "clibuildok");
    cli_out r = build(&f, 0, H_STRS("agg/1"));
    CHECK_CLI_OK(r);
    h_note("build agg/1:\n%s", r.out);
    CHECK_EQ_STR(r.err, "");
    CHECK_CONTAINS(r.out, "planned: 3 tasks");
    CHECK_CONTAINS(r.out, " of 3] built   raw/1-a  (//c:raw, ");
    CHECK_CONTAINS(r.out, " of 3] built   raw/1-b  (//c:raw, ");
    CHECK_CONTAINS(r.out, "\n[3/0/0 of 3] built   agg/1  (//c:agg, ");
    CHECK_LINE(r.out, "build ", " COMPLETED in ", "3 tasks, 3 built, 0 skipped, 0 failed");
    CHECK_LINE(r.out, "  agg/1 ", "AVAILABLE");
    CHECK_EQ_INT(bf_part_status(&f, "agg/1"), PS(AVAILABLE));
    CHECK_EQ_INT(bf_execs(&f, "agg/1"), 1);

    /* Again: everything is there already. */
    r = build(&f, 0, H_STRS("agg/1"));
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "\n[3/0/0 of 3] skipped agg/1  (//c:agg: ");
    CHECK_LINE(r.out, "build ", " COMPLETED in ", "3 tasks, 0 built, 3 skipped");
    CHECK_LINE(r.out, "  agg/1 ", "AVAILABLE");
    CHECK_EQ_INT(bf_execs(&f, "agg/1"), 1);

    /* --json: the build's events, one per line, then the result. */
    r = build(&f, 1, H_STRS("agg/2", "raw/1-a"));
    CHECK_CLI_OK(r);
    char **ids;
    size_t n = json_field(f.a, r.out, "event.buildRequestId", &ids);
    CHECK_CMP_INT(n, >, 5);
    CHECK(ids[0][0] != 0);
    for (size_t i = 0; i + 1 < n; i++)
        CHECK_EQ_STR(ids[i], ids[0]);
    json_t *res = last_json(r.out);
    CHECK_EQ_STR(jstr(f.a, res, "result.buildRequestId"), ids[0]);
    CHECK_EQ_STR(jstr(f.a, res, "result.status"), "BUILD_REQUEST_COMPLETED");
    CHECK_EQ_STR(jstr(f.a, res, "result.tasks"), "4");
    CHECK_EQ_STR(jstr(f.a, res, "result.built"), "3");
    CHECK_EQ_STR(jstr(f.a, res, "result.skipped"), "1");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.0.ref"), "agg/2");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.0.status"), "PARTITION_AVAILABLE");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.1.ref"), "raw/1-a");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.1.status"), "PARTITION_AVAILABLE");
    json_decref(res);
}

DBLD_TEST(build_failures)
{
    bf f;
    setup(&f, "clibuildfail");
    /* A failing job: exit 1 naming the partition; raw/9 is built anyway. */
    cli_out r = build(&f, 0, H_STRS("bad/1", "raw/9"));
    CHECK_FAIL(r, 1, "FAILED", "1 of 2 requested partitions not available");
    CHECK_CONTAINS(r.out, "/1 of 2] FAILED  bad/1  (//c:bad)\n");
    CHECK_LINE(r.out, "build ", " FAILED in ", "2 tasks, 1 built, 0 skipped, 1 failed");
    CHECK_LINE(r.out, "  partitions failed: ", "bad/1");
    CHECK_LINE(r.out, "  bad/1 ", "FAILED", "exit code 3", "exiting 3 on purpose");
    CHECK_LINE(r.out, "  raw/9 ", "AVAILABLE");
    CHECK_EQ_INT(bf_part_status(&f, "bad/1"), PS(FAILED));

    /* The same with --json: the result says which. */
    r = build(&f, 1, H_STRS("bad/2"));
    CHECK_FAIL(r, 1, "FAILED", "1 of 1 requested partition not available");
    json_t *res = last_json(r.out);
    CHECK_EQ_STR(jstr(f.a, res, "result.status"), "BUILD_REQUEST_FAILED");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.0.ref"), "bad/2");
    CHECK_EQ_STR(jstr(f.a, res, "result.partitions.0.status"), "PARTITION_FAILED");
    CHECK_CONTAINS(jstr(f.a, res, "result.partitions.0.message"), "exiting 3 on purpose");
    json_decref(res);

    /* No job produces it: refused at submit, naming it. */
    r = build(&f, 0, H_STRS("raw/3", "nojob/1"));
    CHECK_FAIL(r, 1, "NOT_FOUND", "\"nojob/1\"");
    CHECK_EQ_STR(r.out, "");
    CHECK_EQ_INT(bf_execs(&f, "raw/3"), 0);
}

/* On a terminal the progress line is redrawn in place ("\r\033[K[...]")
 * while the jobs run. */
DBLD_TEST(build_progress_on_tty)
{
    bf f;
    setup(&f, "clibuildtty");
    const char *argv[] = {cli_bin(),    "--server", f.graph->addr, "build",
                          "--eventlog", f.el->addr, "agg/slow",    NULL};
    struct winsize ws = {.ws_row = 40, .ws_col = 160};
    int master;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    if (pid < 0) H_FAIL("forkpty: %s", strerror(errno));
    if (pid == 0) {
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    char *out = dbld_xcalloc(1, 1);
    size_t len = 0;
    int64_t deadline = dbld_mono_ms() + 60000;
    for (;;) {
        struct pollfd pf = {.fd = master, .events = POLLIN};
        if (dbld_mono_ms() > deadline) H_FAIL("the CLI did not finish; output so far:\n%s", out);
        if (poll(&pf, 1, 1000) <= 0) continue;
        char buf[4096];
        ssize_t n = read(master, buf, sizeof buf);
        if (n <= 0) break; /* EIO once the child side is closed */
        out = dbld_xrealloc(out, len + (size_t)n + 1);
        memcpy(out + len, buf, (size_t)n);
        len += (size_t)n;
        out[len] = 0;
    }
    close(master);
    CHECK_EQ_INT(wait_code(pid), 0);
    CHECK_CONTAINS(out, "progress: [done/running/failed of total tasks]");
    /* every frame of the progress line; some while jobs were running */
    int frames = 0, running_seen = 0, last_done = 0;
    for (const char *p = out; (p = strstr(p, "\r\033[K[")) != NULL; p++) {
        int d, run, fail, total;
        if (sscanf(p + 4, "[%d/%d/%d of %d]", &d, &run, &fail, &total) != 4) continue;
        frames++;
        CHECK_EQ_INT(total, 3);
        CHECK_EQ_INT(fail, 0);
        CHECK_CMP_INT(d, >=, last_done);
        last_done = d;
        running_seen |= run > 0;
    }
    CHECK_MSG(frames >= 3 && running_seen, "%d progress frames (running seen: %d) in:\n%s", frames,
              running_seen, out);
    CHECK_CONTAINS(out, " COMPLETED in ");
    CHECK_CONTAINS(out, "agg/slow   AVAILABLE");
    free(out);
}

DBLD_TEST(analyze)
{
    bf f;
    setup(&f, "clianalyze");
    const char *g = f.graph->addr;
    cli_out r = CLI("--server", g, "analyze", "agg/3");
    CHECK_CLI_OK(r);
    h_note("analyze agg/3:\n%s", r.out);
    CHECK_LINE(r.out, "graph ", ": 3 tasks in 2 levels");
    CHECK_CONTAINS(r.out, "\n\nLEVEL  JOB      OUTPUTS  INPUTS\n"
                          "0      //c:raw  raw/3-a  -\n"
                          "0      //c:raw  raw/3-b  -\n"
                          "1      //c:agg  agg/3    raw/3-a\n"
                          "                         raw/3-b\n");

    r = CLI("--server", g, "analyze", "--tree", "agg/3");
    CHECK_CLI_OK(r);
    CHECK_CONTAINS(r.out, "\nagg/3  [//c:agg]\n|-- raw/3-a  [//c:raw]\n`-- raw/3-b  [//c:raw]\n");

    r = CLI("--server", g, "--json", "analyze", "agg/3");
    CHECK_CLI_OK(r);
    json_error_t err;
    json_t *o = json_loads(r.out, 0, &err);
    CHECK_MSG(o != NULL, "not JSON: %s: %s", err.text, r.out);
    CHECK_EQ_INT(json_array_size(json_object_get(json_object_get(o, "graph"), "nodes")), 3);
    CHECK_EQ_STR(jstr(f.a, o, "graph.outputs.0.str"), "agg/3");
    CHECK_EQ_STR(jstr(f.a, o, "graph.nodes.0.job.label"), "//c:agg");
    CHECK_EQ_STR(jstr(f.a, o, "graph.nodes.0.config.inputs.1.partitionRef.str"), "raw/3-b");
    json_decref(o);

    r = CLI("--server", g, "analyze", "agg/4", "nojob/2");
    CHECK_FAIL(r, 1, "NOT_FOUND", "\"nojob/2\"");
    CHECK_EQ_INT(bf_lines(&f, "exec.log"), 0); /* analyze builds nothing */
}

DBLD_TEST_MAIN(DBLD_TEST_ENTRY(build_ok_then_skipped), DBLD_TEST_ENTRY(build_failures),
               DBLD_TEST_ENTRY(build_progress_on_tty), DBLD_TEST_ENTRY(analyze))
