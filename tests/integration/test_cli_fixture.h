/* test_cli_fixture.h - running the real `databuild` binary in integration
 * tests (test_cli_*.c): fork/execv with stdout and stderr to files in the
 * test directory, the exit code, and checks of its output - a failure is
 * exactly one stderr line "databuild: ..." - and of --json lines.
 *
 * Functions are static and marked unused: each test binary uses a subset.
 */
#ifndef TEST_CLI_FIXTURE_H
#define TEST_CLI_FIXTURE_H

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CF_UNUSED __attribute__((unused))

typedef struct cli_out {
    int code;  /* exit code (128+signal when killed) */
    char *out; /* stdout, malloc'd */
    char *err; /* stderr, malloc'd */
} cli_out;

static CF_UNUSED const char *cli_bin(void)
{
    static char path[1024];
    const char *dir = getenv("DBLD_BIN_DIR");
    snprintf(path, sizeof path, "%s/databuild", dir && *dir ? dir : DBLD_BIN_DIR);
    return path;
}

/* Start the CLI with args (NULL-terminated), stdout/stderr to files. */
static CF_UNUSED pid_t cli_spawn(const char *const *args, const char *out_path,
                                 const char *err_path)
{
    const char *argv[64];
    size_t n = 0;
    argv[n++] = cli_bin();
    for (size_t i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) H_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0) _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(err, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static CF_UNUSED int wait_code(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) H_FAIL("waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static CF_UNUSED cli_out cli_runv(const char *const *args)
{
    static int seq;
    char out_path[700], err_path[700];
    seq++;
    snprintf(out_path, sizeof out_path, "%s/cli-%d.out", h_test_dir(), seq);
    snprintf(err_path, sizeof err_path, "%s/cli-%d.err", h_test_dir(), seq);
    cli_out r;
    r.code = wait_code(cli_spawn(args, out_path, err_path));
    r.out = h_read_file(out_path, NULL);
    r.err = h_read_file(err_path, NULL);
    if (!r.out) r.out = dbld_xstrdup("");
    if (!r.err) r.err = dbld_xstrdup("");
    return r;
}

/* cli(&r, "--server", addr, "builds", "list") */
#define CLI(...) cli_runv((const char *const[]){__VA_ARGS__, NULL})

/* The CLI succeeded (exit 0). */
#define CHECK_CLI_OK(r)                                                                            \
    CHECK_MSG((r).code == 0, "exit %d, stderr: %s, stdout: %s", (r).code, (r).err, (r).out)

/* The CLI failed with exit code `want` and exactly one stderr line
 * "databuild: ..." containing each of the needles (NULL-terminated). */
static CF_UNUSED void check_fail_(const char *file, int line, cli_out r, int want,
                                  const char *const *needles)
{
    if (r.code != want)
        h_fail(file, line, "want exit %d, got %d; stderr: %s; stdout: %s", want, r.code, r.err,
               r.out);
    size_t len = strlen(r.err);
    if (len == 0 || r.err[len - 1] != '\n' || strchr(r.err, '\n') != r.err + len - 1)
        h_fail(file, line, "stderr is not one line: \"%s\"", r.err);
    if (strncmp(r.err, "databuild: ", 11) != 0)
        h_fail(file, line, "stderr does not start with \"databuild: \": \"%s\"", r.err);
    for (size_t i = 0; needles[i]; i++)
        if (!strstr(r.err, needles[i]))
            h_fail(file, line, "stderr lacks \"%s\": \"%s\"", needles[i], r.err);
}
#define CHECK_FAIL(r, code, ...)                                                                   \
    check_fail_(__FILE__, __LINE__, r, code, (const char *const[]){__VA_ARGS__, NULL})

static CF_UNUSED int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The line of text containing needle (malloc'd), or NULL. */
static CF_UNUSED char *line_with(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (!p) return NULL;
    const char *b = p, *e = p;
    while (b > text && b[-1] != '\n')
        b--;
    while (*e && *e != '\n')
        e++;
    char *l = dbld_xmalloc((size_t)(e - b) + 1);
    memcpy(l, b, (size_t)(e - b));
    l[e - b] = 0;
    return l;
}

/* Each stdout line parsed as a JSON object; the string at `path` (a.b.c) of
 * each, in order, into the arena. */
static CF_UNUSED size_t json_field(dbld_arena *a, const char *text, const char *path, char ***out)
{
    size_t n = 0, cap = 16;
    char **vals = dbld_arena_alloc(a, cap * sizeof *vals);
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0) {
            json_error_t err;
            json_t *o = json_loadb(p, len, 0, &err);
            CHECK_MSG(o && json_is_object(o), "not a JSON object: \"%.*s\": %s", (int)len, p,
                      err.text);
            json_t *v = o;
            char key[128];
            for (const char *k = path; v && *k;) {
                size_t kl = strcspn(k, ".");
                snprintf(key, sizeof key, "%.*s", (int)kl, k);
                v = json_object_get(v, key);
                k += kl + (k[kl] == '.');
            }
            if (n == cap) {
                char **g = dbld_arena_alloc(a, 2 * cap * sizeof *g);
                memcpy(g, vals, n * sizeof *g);
                vals = g;
                cap *= 2;
            }
            vals[n++] = dbld_arena_strdup(a, v && json_is_string(v) ? json_string_value(v)
                                                                    : (v ? "<non-string>" : ""));
            json_decref(o);
        }
        p += len + (e ? 1 : 0);
    }
    *out = vals;
    return n;
}

#endif
