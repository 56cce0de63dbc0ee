/* test_proc.c - lib/proc: spawning argv (never a shell of ours: the tests
 * run `sh -c` only as the *child* to build interesting process trees), line
 * reading from both streams, exit codes and signals, killing a process group
 * including a grandchild, exec failures, environment, working directory,
 * large output, and a child that dies with the process that spawned it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/proc.h"
#include "dbld/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers ---- */

#define MAX_LINES 300000

typedef struct collected {
    char **lines; /* "1:text" / "2:text" */
    size_t n;
    size_t n_out, n_err;
    size_t bytes;
    size_t n_more;
    int more[64]; /* the `more` flag of the first 64 lines */
} collected;

static void collect(void *user, int stream, const char *line, size_t len, int more)
{
    collected *c = user;
    assert_true(!more || len == DBLD_PROC_LINE_MAX); /* only full pieces continue */
    if (more) c->n_more++;
    if (c->n < 64) c->more[c->n] = more;
    assert_int_equal(strlen(line), len); /* NUL-terminated, no embedded newline */
    assert_null(memchr(line, '\n', len));
    if (stream == DBLD_PROC_STDOUT)
        c->n_out++;
    else
        c->n_err++;
    c->bytes += len;
    if (c->n < MAX_LINES && (c->n < 1000 || len > 100)) {
        if (!c->lines) c->lines = dbld_xcalloc(MAX_LINES, sizeof *c->lines);
        char *s = dbld_xmalloc(len + 3);
        s[0] = (char)('0' + stream);
        s[1] = ':';
        memcpy(s + 2, line, len + 1);
        c->lines[c->n] = s;
    }
    c->n++;
}

static void collected_free(collected *c)
{
    for (size_t i = 0; i < c->n && i < MAX_LINES; i++)
        free(c->lines ? c->lines[i] : NULL);
    free(c->lines);
    memset(c, 0, sizeof *c);
}

static dbld_proc *spawn_ok(const char *const *argv, const char *const *env, size_t n_env,
                           const char *cwd)
{
    dbld_proc_opts o = {.argv = argv, .env = env, .n_env = n_env, .cwd = cwd};
    dbld_proc *p = NULL;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = dbld_proc_spawn(&o, &p, &st);
    if (rc) fail_msg("spawn %s: %s", argv[0], st.msg);
    assert_non_null(p);
    return p;
}

/* Read to the end of both streams and wait for the exit. */
static dbld_proc_exit run_all(dbld_proc *p, collected *c)
{
    int64_t deadline = dbld_mono_ms() + 60000;
    while (dbld_proc_read(p, 1000, collect, c) > 0)
        assert_true(dbld_mono_ms() < deadline);
    dbld_proc_exit ex;
    assert_int_equal(dbld_proc_wait(p, 30000, &ex), 0);
    return ex;
}

static dbld_proc_exit run_argv(const char *const *argv, collected *c)
{
    dbld_proc *p = spawn_ok(argv, NULL, 0, NULL);
    dbld_proc_exit ex = run_all(p, c);
    dbld_proc_destroy(p);
    return ex;
}

/* Alive and not a zombie (a killed grandchild may linger as a zombie until
 * init reaps it; that process is gone for our purposes). */
static int pid_alive(pid_t pid)
{
    if (kill(pid, 0) != 0) return 0;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

static int wait_dead(pid_t pid, int64_t ms)
{
    int64_t end = dbld_mono_ms() + ms;
    while (pid_alive(pid) && dbld_mono_ms() < end)
        dbld_sleep_ms(10);
    return !pid_alive(pid);
}

/* Read lines until one on stdout appears; returns it as a pid. */
static pid_t read_pid_line(dbld_proc *p, collected *c)
{
    int64_t deadline = dbld_mono_ms() + 10000;
    while (c->n_out == 0 && dbld_mono_ms() < deadline)
        dbld_proc_read(p, 100, collect, c);
    assert_true(c->n_out > 0);
    for (size_t i = 0; i < c->n; i++)
        if (c->lines[i][0] == '1') return (pid_t)atoi(c->lines[i] + 2);
    fail_msg("no stdout line");
    return 0;
}

/* ---- tests ---- */

static void test_lines_both_streams(void **state)
{
    (void)state;
    collected c = {0};
    dbld_proc_exit ex = run_argv(
        (const char *const[]){"sh", "-c",
                              "echo out1; echo err1 >&2; echo; echo out2; printf 'partial'; "
                              "printf 'errpartial' >&2",
                              NULL},
        &c);
    assert_true(ex.exited);
    assert_int_equal(ex.code, 0);
    assert_int_equal(c.n_out, 4);
    assert_int_equal(c.n_err, 2);
    /* Order within a stream is kept. */
    const char *want_out[] = {"1:out1", "1:", "1:out2", "1:partial"};
    const char *want_err[] = {"2:err1", "2:errpartial"};
    size_t io = 0, ie = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (c.lines[i][0] == '1')
            assert_string_equal(c.lines[i], want_out[io++]);
        else
            assert_string_equal(c.lines[i], want_err[ie++]);
    }
    collected_free(&c);
}

static void test_exit_codes(void **state)
{
    (void)state;
    int codes[] = {0, 1, 3, 75, 255};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char script[32];
        snprintf(script, sizeof script, "exit %d", codes[i]);
        collected c = {0};
        dbld_proc_exit ex = run_argv((const char *const[]){"sh", "-c", script, NULL}, &c);
        assert_true(ex.exited);
        assert_int_equal(ex.code, codes[i]);
        collected_free(&c);
    }
    char buf[64];
    dbld_proc_exit e3 = {.exited = 1, .code = 3};
    assert_string_equal(dbld_proc_exit_str(&e3, buf, sizeof buf), "exit code 3");
}

static void test_signal(void **state)
{
    (void)state;
    collected c = {0};
    dbld_proc_exit ex = run_argv((const char *const[]){"sh", "-c", "kill -USR1 $$", NULL}, &c);
    assert_false(ex.exited);
    assert_int_equal(ex.signal, SIGUSR1);
    char buf[64];
    assert_string_equal(dbld_proc_exit_str(&ex, buf, sizeof buf), "killed by signal 10 (SIGUSR1)");
    collected_free(&c);

    /* Killed from outside. */
    dbld_proc *p = spawn_ok((const char *const[]){"sleep", "100", NULL}, NULL, 0, NULL);
    assert_int_equal(dbld_proc_wait(p, 50, &ex), DBLD_DEADLINE_EXCEEDED);
    assert_false(dbld_proc_exited(p, NULL));
    assert_int_equal(dbld_proc_kill(p, SIGKILL), 0);
    assert_int_equal(dbld_proc_wait(p, 10000, &ex), 0);
    assert_false(ex.exited);
    assert_int_equal(ex.signal, SIGKILL);
    dbld_proc_destroy(p);
}

/* A timeout: the child and a grandchild sleep; terminate() kills the group. */
static void test_timeout_kills_group(void **state)
{
    (void)state;
    dbld_proc *p = spawn_ok(
        (const char *const[]){"sh", "-c", "sleep 100 & echo $!; sleep 100; echo never", NULL}, NULL,
        0, NULL);
    pid_t leader = dbld_proc_pid(p);
    assert_int_equal(getpgid(leader), leader); /* its own process group */
    assert_int_not_equal(getpgid(leader), getpgid(0));
    collected c = {0};
    pid_t grandchild = read_pid_line(p, &c);
    assert_true(grandchild > 0);
    assert_int_equal(getpgid(grandchild), leader);
    /* "Timeout": nothing more happens for a while. */
    int64_t t0 = dbld_mono_ms();
    while (dbld_mono_ms() - t0 < 200)
        dbld_proc_read(p, 50, collect, &c);
    assert_false(dbld_proc_exited(p, NULL));
    dbld_proc_exit ex;
    t0 = dbld_mono_ms();
    assert_int_equal(dbld_proc_terminate(p, 5000, collect, &c, &ex), 0);
    assert_true(dbld_mono_ms() - t0 < 4000); /* sh dies of SIGTERM at once */
    assert_false(ex.exited);
    assert_int_equal(ex.signal, SIGTERM);
    dbld_proc_destroy(p);
    assert_true(wait_dead(grandchild, 5000));
    assert_false(pid_alive(leader));
    collected_free(&c);
}

/* A group that ignores SIGTERM gets SIGKILL after the grace period. */
static void test_terminate_escalates(void **state)
{
    (void)state;
    dbld_proc *p = spawn_ok(
        (const char *const[]){"sh", "-c",
                              "trap '' TERM; sleep 100 & echo $!; while :; do sleep 1; done", NULL},
        NULL, 0, NULL);
    collected c = {0};
    pid_t grandchild = read_pid_line(p, &c);
    dbld_proc_exit ex;
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(dbld_proc_terminate(p, 300, collect, &c, &ex), 0);
    int64_t took = dbld_mono_ms() - t0;
    assert_true(took >= 290);
    assert_true(took < 5000);
    assert_false(ex.exited);
    assert_int_equal(ex.signal, SIGKILL);
    dbld_proc_destroy(p);
    assert_true(wait_dead(grandchild, 5000));
    collected_free(&c);
}

/* The leader exits but a grandchild keeps the pipes open: destroy() kills it. */
static void test_destroy_kills_stragglers(void **state)
{
    (void)state;
    dbld_proc *p = spawn_ok((const char *const[]){"sh", "-c", "sleep 100 & echo $!; exit 4", NULL},
                            NULL, 0, NULL);
    collected c = {0};
    pid_t grandchild = read_pid_line(p, &c);
    dbld_proc_exit ex;
    assert_int_equal(dbld_proc_wait(p, 10000, &ex), 0);
    assert_true(ex.exited);
    assert_int_equal(ex.code, 4);
    /* The grandchild still holds stdout: the stream does not end by itself. */
    assert_int_equal(dbld_proc_read(p, 100, collect, &c), 2);
    assert_true(pid_alive(grandchild));
    /* The group can still be signalled (the unreaped leader holds the pgid). */
    assert_int_equal(dbld_proc_kill(p, 0), 0);
    dbld_proc_destroy(p);
    assert_true(wait_dead(grandchild, 5000));
    collected_free(&c);
}

static void test_missing_binary(void **state)
{
    (void)state;
    dbld_status st;
    dbld_proc *p = (dbld_proc *)1;
    dbld_proc_opts o = {.argv = (const char *const[]){"/nonexistent/dir/job", "config", NULL}};
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_NOT_FOUND);
    assert_null(p);
    assert_string_equal(st.msg,
                        "could not execute \"/nonexistent/dir/job\": No such file or directory");

    o.argv = (const char *const[]){"dbld-no-such-binary-on-path", NULL};
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_NOT_FOUND);
    assert_non_null(strstr(st.msg, "could not execute \"dbld-no-such-binary-on-path\""));

    /* Not executable. */
    char path[] = "/tmp/dbld_test_proc_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(write(fd, "#!/bin/sh\necho hi\n", 18) == 18);
    close(fd);
    o.argv = (const char *const[]){path, NULL};
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_PERMISSION_DENIED);
    assert_non_null(strstr(st.msg, "Permission denied"));
    unlink(path);

    /* Empty argv. */
    o.argv = (const char *const[]){NULL};
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_INVALID_ARGUMENT);
}

static void test_env_and_cwd(void **state)
{
    (void)state;
    setenv("DBLD_T_INHERITED", "parent", 1);
    setenv("DBLD_T_OVERRIDE", "parent", 1);
    const char *env[] = {"DBLD_T_OVERRIDE=child1", "DBLD_T_NEW=a=b c", "DBLD_T_OVERRIDE=child2"};
    dbld_proc *p = spawn_ok(
        (const char *const[]){"sh", "-c",
                              "echo \"$DBLD_T_INHERITED\"; echo \"$DBLD_T_OVERRIDE\"; "
                              "echo \"$DBLD_T_NEW\"; env | grep -c '^DBLD_T_OVERRIDE='; pwd",
                              NULL},
        env, 3, "/tmp");
    collected c = {0};
    dbld_proc_exit ex = run_all(p, &c);
    dbld_proc_destroy(p);
    assert_true(ex.exited && ex.code == 0);
    assert_int_equal(c.n_out, 5);
    assert_string_equal(c.lines[0], "1:parent");
    assert_string_equal(c.lines[1], "1:child2");
    assert_string_equal(c.lines[2], "1:a=b c");
    assert_string_equal(c.lines[3], "1:1");
    assert_string_equal(c.lines[4], "1:/tmp");
    collected_free(&c);

    dbld_status st;
    dbld_proc_opts o = {.argv = (const char *const[]){"true", NULL}, .cwd = "/nonexistent/wd"};
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_NOT_FOUND);
    assert_string_equal(st.msg, "working directory \"/nonexistent/wd\": No such file or directory");
    unsetenv("DBLD_T_INHERITED");
    unsetenv("DBLD_T_OVERRIDE");
}

/* Shell and quote characters are argv bytes, nothing else. */
static void test_argv_untouched(void **state)
{
    (void)state;
    const char *weird = "a/b c;'\"$(x)`y` *|&>\\n";
    collected c = {0};
    dbld_proc_exit ex = run_argv((const char *const[]){"printf", "%s\\n", weird, NULL}, &c);
    assert_true(ex.exited && ex.code == 0);
    assert_int_equal(c.n_out, 1);
    assert_string_equal(c.lines[0] + 2, weird);
    collected_free(&c);
}

/* stdin is /dev/null and no descriptor of ours leaks into the child. */
static void test_stdin_and_fds(void **state)
{
    (void)state;
    int leak = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
    assert_true(leak >= 3);
    collected c = {0};
    dbld_proc_exit ex = run_argv((const char *const[]){"cat", NULL}, &c);
    assert_true(ex.exited && ex.code == 0);
    assert_int_equal(c.n, 0);
    collected_free(&c);

    char script[128];
    snprintf(script, sizeof script, "test -e /proc/$$/fd/%d && echo leaked; ls /proc/$$/fd", leak);
    ex = run_argv((const char *const[]){"sh", "-c", script, NULL}, &c);
    assert_true(ex.exited && ex.code == 0);
    for (size_t i = 0; i < c.n; i++) {
        assert_string_not_equal(c.lines[i], "1:leaked");
        int fd = atoi(c.lines[i] + 2);
        assert_true(fd <= 2 || fd >= 10); /* 0-2, and whatever sh itself opens high */
    }
    collected_free(&c);
    close(leak);
}

static void test_huge_output(void **state)
{
    (void)state;
    collected c = {0};
    dbld_proc_exit ex = run_argv(
        (const char *const[]){"sh", "-c", "yes 0123456789 | head -n 200000; echo done >&2", NULL},
        &c);
    assert_true(ex.exited && ex.code == 0);
    assert_int_equal(c.n_out, 200000);
    assert_int_equal(c.n_err, 1);
    assert_int_equal(c.bytes, 200000 * 10 + 4);
    collected_free(&c);

    /* A 200000-byte line comes in 64 KiB pieces; lines after it are intact. */
    ex = run_argv((const char *const[]){"sh", "-c",
                                        "head -c 200000 /dev/zero | tr '\\000' x; echo; echo end",
                                        NULL},
                  &c);
    assert_true(ex.exited && ex.code == 0);
    assert_int_equal(c.n_out, 5);
    assert_int_equal(strlen(c.lines[0]) - 2, DBLD_PROC_LINE_MAX);
    assert_int_equal(strlen(c.lines[1]) - 2, DBLD_PROC_LINE_MAX);
    assert_int_equal(strlen(c.lines[2]) - 2, DBLD_PROC_LINE_MAX);
    assert_int_equal(strlen(c.lines[3]) - 2, 200000 - 3 * DBLD_PROC_LINE_MAX);
    assert_string_equal(c.lines[4], "1:end");
    assert_int_equal(c.n_more, 3);
    assert_true(c.more[0] && c.more[1] && c.more[2] && !c.more[3] && !c.more[4]);
    collected_free(&c);

    /* A line of exactly the limit is one line (no empty piece after it);
     * one byte more is a full piece and a 1-byte piece. */
    ex = run_argv((const char *const[]){"sh", "-c",
                                        "head -c 65536 /dev/zero | tr '\\000' y; echo; "
                                        "head -c 65537 /dev/zero | tr '\\000' z; echo",
                                        NULL},
                  &c);
    assert_int_equal(c.n_out, 3);
    assert_int_equal(strlen(c.lines[0]) - 2, DBLD_PROC_LINE_MAX);
    assert_int_equal(strlen(c.lines[1]) - 2, DBLD_PROC_LINE_MAX);
    assert_string_equal(c.lines[2], "1:z");
    assert_true(!c.more[0] && c.more[1] && !c.more[2]);
    collected_free(&c);
}

static void *waker(void *arg)
{
    dbld_sleep_ms(100);
    dbld_proc_wake(arg);
    return NULL;
}

static void test_wake_and_exit_wakes_read(void **state)
{
    (void)state;
    dbld_proc *p = spawn_ok((const char *const[]){"sleep", "100", NULL}, NULL, 0, NULL);
    pthread_t t;
    pthread_create(&t, NULL, waker, p);
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(dbld_proc_read(p, 10000, NULL, NULL), 2);
    int64_t took = dbld_mono_ms() - t0;
    assert_true(took >= 50 && took < 5000);
    pthread_join(t, NULL);
    dbld_proc_destroy(p);

    /* The leader's exit wakes a reader even when a grandchild holds the pipes. */
    p = spawn_ok((const char *const[]){"sh", "-c", "sleep 100 & sleep 0.2; exit 0", NULL}, NULL, 0,
                 NULL);
    t0 = dbld_mono_ms();
    while (!dbld_proc_exited(p, NULL) && dbld_mono_ms() - t0 < 10000)
        dbld_proc_read(p, 10000, NULL, NULL);
    took = dbld_mono_ms() - t0;
    assert_true(dbld_proc_exited(p, NULL));
    assert_true(took < 3000);
    dbld_proc_destroy(p);
}

/* A helper process spawns `sleep` from a thread of its own (as the job
 * service does from an RPC worker) and is then killed with SIGKILL: the
 * child must not outlive it (PR_SET_PDEATHSIG), also when it runs as
 * another user (changing credentials clears that setting). */
typedef struct sleeper {
    int fd;
    const dbld_proc_user *user;
} sleeper;

static void *spawn_sleep(void *arg)
{
    const sleeper *sl = arg;
    int fd = sl->fd;
    dbld_proc_opts o = {.argv = (const char *const[]){"sleep", "1000", NULL}, .user = sl->user};
    dbld_proc *p = NULL;
    dbld_status st;
    if (dbld_proc_spawn(&o, &p, &st) != 0) _exit(4);
    pid_t pid = dbld_proc_pid(p);
    if (write(fd, &pid, sizeof pid) != (ssize_t)sizeof pid) _exit(3);
    for (;;)
        pause(); /* the thread outlives the child, as a job service's worker does */
    return NULL;
}

static void child_dies_with_parent(const dbld_proc_user *user)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0) {
        pthread_t t;
        sleeper sl = {.fd = fds[1], .user = user};
        if (pthread_create(&t, NULL, spawn_sleep, &sl) != 0) _exit(2);
        for (;;)
            pause();
    }
    pid_t child = 0;
    assert_int_equal(read(fds[0], &child, sizeof child), (ssize_t)sizeof child);
    close(fds[0]);
    close(fds[1]);
    assert_true(child > 0 && pid_alive(child));
    if (user) {
        char path[64], *line = NULL;
        size_t cap = 0;
        snprintf(path, sizeof path, "/proc/%d/status", (int)child);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        long uid = -1;
        while (getline(&line, &cap, f) > 0)
            if (strncmp(line, "Uid:", 4) == 0) uid = strtol(line + 4, NULL, 10);
        free(line);
        fclose(f);
        assert_int_equal(uid, (long)user->uid);
    }
    assert_int_equal(kill(helper, SIGKILL), 0);
    assert_int_equal(waitpid(helper, NULL, 0), helper);
    assert_true(wait_dead(child, 5000));
}

static void test_child_dies_with_parent(void **state)
{
    (void)state;
    child_dies_with_parent(NULL);
}

/* ---- running as another user ---- */

/* As root: the child runs as `nobody` (uid, gid and groups), from a second
 * thread, and we stay root (the switch must not touch our own threads);
 * a working directory `nobody` may not enter is an error naming both; the
 * parent-death signal survives the switch. Not root: the switch fails with
 * PERMISSION_DENIED naming the user. */
static void *spawn_id(void *arg)
{
    const dbld_proc_user *u = arg;
    dbld_proc_opts o = {.argv = (const char *const[]){"sh", "-c", "id -u; id -g; id -G", NULL},
                        .user = u};
    dbld_proc *p = NULL;
    dbld_status st;
    if (dbld_proc_spawn(&o, &p, &st) != 0) fail_msg("spawn as %s: %s", u->name, st.msg);
    collected *c = dbld_xcalloc(1, sizeof *c);
    dbld_proc_exit ex = run_all(p, c);
    dbld_proc_destroy(p);
    assert_true(ex.exited && ex.code == 0);
    return c;
}

static void test_run_as_user(void **state)
{
    (void)state;
    dbld_status st;
    dbld_proc_user *u = NULL;
    assert_int_equal(dbld_proc_user_lookup("dbld-no-such-user", &u, &st), DBLD_NOT_FOUND);
    assert_null(u);
    assert_string_equal(st.msg, "no user \"dbld-no-such-user\" on this host");

    if (geteuid() != 0) {
        assert_int_equal(dbld_proc_user_lookup("root", &u, &st), 0);
        dbld_proc_opts o = {.argv = (const char *const[]){"true", NULL}, .user = u};
        dbld_proc *p = NULL;
        assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_PERMISSION_DENIED);
        assert_null(p);
        assert_string_equal(
            st.msg, "could not switch to user \"root\" (uid 0) to run \"true\": Operation not "
                    "permitted");
        dbld_proc_user_free(u);
        return;
    }
    assert_int_equal(dbld_proc_user_lookup("nobody", &u, &st), 0);
    assert_string_equal(u->name, "nobody");
    assert_true(u->uid != 0 && u->n_groups >= 1);
    pthread_t t;
    void *res = NULL;
    assert_int_equal(pthread_create(&t, NULL, spawn_id, u), 0);
    assert_int_equal(pthread_join(t, &res), 0);
    collected *c = res;
    assert_int_equal(geteuid(), 0); /* every thread of ours is still root */
    assert_int_equal(getegid(), 0);
    assert_int_equal(c->n_out, 3);
    char want[64];
    snprintf(want, sizeof want, "1:%ld", (long)u->uid);
    assert_string_equal(c->lines[0], want);
    snprintf(want, sizeof want, "1:%ld", (long)u->gid);
    assert_string_equal(c->lines[1], want);
    /* `id -G`: exactly the user's groups (root's are gone) */
    size_t n_seen = 0;
    for (char *save = NULL, *g = strtok_r(c->lines[2] + 2, " ", &save); g;
         g = strtok_r(NULL, " ", &save), n_seen++) {
        int member = 0;
        for (size_t i = 0; i < u->n_groups; i++)
            member |= (long)u->groups[i] == atol(g);
        assert_true(member);
    }
    assert_true(n_seen >= 1 && n_seen <= u->n_groups);
    collected_free(c);
    free(c);

    char dir[] = "/tmp/dbld_test_proc_dir_XXXXXX";
    assert_non_null(mkdtemp(dir)); /* 0700, root's */
    dbld_proc_opts o = {.argv = (const char *const[]){"true", NULL}, .cwd = dir, .user = u};
    dbld_proc *p = NULL;
    assert_int_equal(dbld_proc_spawn(&o, &p, &st), DBLD_PERMISSION_DENIED);
    char msg[256];
    snprintf(msg, sizeof msg, "working directory \"%s\" (as user \"nobody\"): Permission denied",
             dir);
    assert_string_equal(st.msg, msg);
    rmdir(dir);

    child_dies_with_parent(u);
    dbld_proc_user_free(u);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_both_streams),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_signal),
        cmocka_unit_test(test_timeout_kills_group),
        cmocka_unit_test(test_terminate_escalates),
        cmocka_unit_test(test_destroy_kills_stragglers),
        cmocka_unit_test(test_missing_binary),
        cmocka_unit_test(test_env_and_cwd),
        cmocka_unit_test(test_argv_untouched),
        cmocka_unit_test(test_stdin_and_fds),
        cmocka_unit_test(test_huge_output),
        cmocka_unit_test(test_wake_and_exit_wakes_read),
        cmocka_unit_test(test_child_dies_with_parent),
        cmocka_unit_test(test_run_as_user),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
