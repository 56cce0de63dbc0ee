/* proc.h - child processes for job binaries: argv only, never a shell.
 *
 * A child runs in its own process group (pgid = its pid) with stdin on
 * /dev/null, stdout and stderr on non-blocking pipes, a default signal
 * disposition and an empty signal mask, and no other inherited descriptor.
 * Its environment is the parent's with extra "KEY=VALUE" entries applied on
 * top (an extra entry replaces an inherited one of the same key).
 *
 * Design decision: the group leader is never reaped before the handle is
 * destroyed. Exit is observed with waitid(WNOWAIT), so the zombie keeps the
 * pid - and with it the process group id - reserved: signalling the group can
 * never hit an unrelated process that got the recycled id. dbld_proc_destroy()
 * SIGKILLs whatever is left of the group (a grandchild that outlived the
 * leader) and only then reaps.
 *
 * A failed exec (missing binary, not executable, bad working directory, a
 * user it could not switch to) is a spawn error with the errno text, never a
 * child exiting with 127.
 *
 * A child dies with its spawner: it gets SIGKILL (PR_SET_PDEATHSIG) when the
 * *thread* that called dbld_proc_spawn() exits - in particular when the
 * process is killed with SIGKILL. So spawn from a thread that outlives the
 * child (that destroys the handle before it exits). Its own children (a
 * shell script's) stay in its process group but get no such signal.
 *
 * The process must not set SIGCHLD to SIG_IGN (children would be reaped
 * by the kernel and their exit status lost).
 *
 * Threading: one thread owns a handle; dbld_proc_wake() and dbld_proc_kill()
 * may also be called from other threads while the owner is blocked in
 * dbld_proc_read() (but not concurrently with dbld_proc_destroy()).
 */
#ifndef DBLD_PROC_H
#define DBLD_PROC_H

#include "dbld/status.h"
#include <stddef.h>
#include <sys/types.h>

typedef struct dbld_proc dbld_proc;

/* A unix user a child runs as (see dbld_proc_user_lookup()). */
typedef struct dbld_proc_user {
    char *name, *home; /* from the passwd entry */
    uid_t uid;
    gid_t gid;     /* primary group */
    gid_t *groups; /* supplementary groups (getgrouplist), gid included */
    size_t n_groups;
} dbld_proc_user;

/* Look up user `name` (getpwnam_r + getgrouplist). On success *out is the
 * user (caller frees with dbld_proc_user_free()); NOT_FOUND names a user
 * that does not exist, INTERNAL a failed lookup. */
int dbld_proc_user_lookup(const char *name, dbld_proc_user **out, dbld_status *st);
void dbld_proc_user_free(dbld_proc_user *u);

typedef struct dbld_proc_opts {
    const char *const *argv; /* NULL-terminated; argv[0] is looked up in PATH unless it has a '/' */
    const char *const *env;  /* extra "KEY=VALUE" entries, applied in order; may be NULL */
    size_t n_env;
    const char *cwd; /* working directory (entered as `user`); NULL: the parent's */
    /* NULL: the child keeps our credentials. Else it drops them to this
     * user's (groups, gid, then uid, between clone and exec; needs root or
     * CAP_SETUID/CAP_SETGID), before it enters cwd and execs. */
    const dbld_proc_user *user;
} dbld_proc_opts;

/* Start a child. On success *out is the handle (caller destroys it with
 * dbld_proc_destroy()). Failures return DBLD_NOT_FOUND (binary or working
 * directory missing), DBLD_PERMISSION_DENIED or DBLD_INTERNAL, with a
 * message such as `could not execute "x": No such file or directory` or
 * `could not switch to user "u" (uid 999) to run "x": Operation not
 * permitted`. */
int dbld_proc_spawn(const dbld_proc_opts *o, dbld_proc **out, dbld_status *st);

/* The child's pid, which is also its process group id. */
pid_t dbld_proc_pid(const dbld_proc *p);

#define DBLD_PROC_STDOUT 1
#define DBLD_PROC_STDERR 2
/* Longest line handed to a callback; longer lines arrive in pieces of this size. */
#define DBLD_PROC_LINE_MAX 65536

/* One line of output without its '\n', NUL-terminated (line[len] == 0);
 * borrowed for the duration of the call. stream is DBLD_PROC_STDOUT/STDERR.
 * more is 1 when the line was longer than DBLD_PROC_LINE_MAX and this is a
 * piece of it that the next call for the stream continues (so a reader that
 * wants the exact bytes appends '\n' only when more is 0). */
typedef void (*dbld_proc_line_fn)(void *user, int stream, const char *line, size_t len, int more);

/* Wait up to timeout_ms (< 0: no limit, 0: just look) for output, the child's
 * exit or a dbld_proc_wake(), then deliver every complete line that is
 * available. At end of file a partial last line is delivered too. Returns the
 * number of output streams still open (0 once both reached end of file), or
 * -1 with errno on a poll/read error. Once both streams are closed and the
 * exit has been observed, it returns 0 at once. */
int dbld_proc_read(dbld_proc *p, int timeout_ms, dbld_proc_line_fn fn, void *user);

/* The line splitter of dbld_proc_read() over bytes the caller holds (tests
 * and fuzzing feed a job's output through it in chunks of any size): feed
 * delivers every complete line (and pieces of DBLD_PROC_LINE_MAX bytes of
 * longer ones) to fn exactly as dbld_proc_read() does for a pipe; end
 * delivers a partial last line, as at end of file. Caller frees. */
typedef struct dbld_proc_lines dbld_proc_lines;
dbld_proc_lines *dbld_proc_lines_new(int stream);
void dbld_proc_lines_feed(dbld_proc_lines *l, const void *data, size_t len, dbld_proc_line_fn fn,
                          void *user);
void dbld_proc_lines_end(dbld_proc_lines *l, dbld_proc_line_fn fn, void *user);
void dbld_proc_lines_free(dbld_proc_lines *l);

/* Make a dbld_proc_read() blocked in another thread return early.
 * Async-signal-safe and thread-safe. */
void dbld_proc_wake(dbld_proc *p);

/* How a child ended. */
typedef struct dbld_proc_exit {
    int exited; /* 1: exited normally with `code` */
    int code;   /* exit code (0..255) when exited */
    int signal; /* the signal that killed it when !exited */
} dbld_proc_exit;

/* Wait up to timeout_ms (< 0: no limit, 0: just look) for the leader to
 * exit, without reaping it. Returns 0 and fills *ex once it has exited,
 * DBLD_DEADLINE_EXCEEDED while it still runs. Output is not read meanwhile:
 * a child blocked on a full pipe does not exit; use dbld_proc_read() in a
 * loop for children that write much. */
int dbld_proc_wait(dbld_proc *p, int timeout_ms, dbld_proc_exit *ex);

/* 1 once the leader has exited (fills *ex when non-NULL), else 0. Never blocks. */
int dbld_proc_exited(dbld_proc *p, dbld_proc_exit *ex);

/* Send sig to the whole process group. Returns 0, or -1 when the group is
 * already gone. */
int dbld_proc_kill(dbld_proc *p, int sig);

/* SIGTERM the group, give the leader grace_ms to exit (delivering output to
 * fn if non-NULL, else discarding it), then SIGKILL the group. Returns 0 and
 * fills *ex (may be NULL) with how the leader ended. */
int dbld_proc_terminate(dbld_proc *p, int grace_ms, dbld_proc_line_fn fn, void *user,
                        dbld_proc_exit *ex);

/* Kill what is left of the process group (SIGKILL), reap the leader, close
 * the pipes and free. Blocks until the leader is gone (it is SIGKILLed if it
 * still runs). NULL is a no-op. */
void dbld_proc_destroy(dbld_proc *p);

/* "exit code 3", "killed by signal 9 (Killed)" into buf; returns buf. */
const char *dbld_proc_exit_str(const dbld_proc_exit *ex, char *buf, size_t cap);

#endif
