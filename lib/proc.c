/* proc.c - child processes: started in a new process group with
 * clone(CLONE_VM | CLONE_VFORK) + execve, output read line by line from
 * non-blocking pipes with poll(2).
 *
 * Why not posix_spawnp: the child must also set PR_SET_PDEATHSIG (SIGKILL
 * when the thread that spawned it exits, e.g. a job service killed with
 * SIGKILL), and posix_spawn has no attribute for that. So do_spawn() does
 * what glibc's posix_spawnp does - clone sharing our memory, wait until the
 * child has exec'd, signals blocked meanwhile, PATH searched without ever
 * falling back to a shell - plus that one prctl. The child reports a failed
 * step through shared memory, so "binary missing" is an error of the spawn
 * call itself. closefrom(3) in the child closes every descriptor but 0-2
 * even if some library opened one without O_CLOEXEC. A child that runs as
 * another user drops its groups, gid and uid with raw system calls: glibc's
 * setuid() wrappers would change the credentials of every thread of the
 * process, and the child still shares our memory (and thread list). Exit is watched
 * through a pidfd when the kernel has them (poll wakes when the leader
 * exits) and by polling waitid otherwise. See proc.h for why the leader
 * stays unreaped until destroy.
 */
#define _GNU_SOURCE /* pipe2, clone, closefrom, sigabbrev_np */
#include "dbld/proc.h"
#include "dbld/util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define READ_BUDGET (256 * 1024) /* bytes per stream per dbld_proc_read() call */
#define NOPIDFD_POLL_MS 20       /* exit polling interval without a pidfd */
#define CHILD_STACK (64 * 1024)  /* the child's stack between clone and exec */
#define STACKS_KEPT 16           /* child stacks kept for the next spawns */

typedef struct stream {
    int fd; /* -1 once at end of file */
    size_t len;
    char buf[DBLD_PROC_LINE_MAX + 2]; /* one byte of look-ahead, one for the NUL */
} stream;

struct dbld_proc {
    pid_t pid;
    int pidfd;   /* -1 if the kernel has no pidfd_open */
    int wake[2]; /* self-pipe for dbld_proc_wake() */
    int exited;  /* exit observed (leader is a zombie until reaped) */
    int reaped;
    dbld_proc_exit ex;
    stream out, err;
};

/* ---- spawn ---- */

static size_t key_len(const char *kv)
{
    const char *eq = strchr(kv, '=');
    return eq ? (size_t)(eq - kv) : strlen(kv);
}

static int same_key(const char *a, const char *b)
{
    size_t n = key_len(a);
    return n == key_len(b) && strncmp(a, b, n) == 0;
}

/* environ with the extra entries applied on top; the array is malloc'd, the
 * strings are borrowed. */
static char **build_env(const char *const *extra, size_t n_extra)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = dbld_xcalloc(n + n_extra + 1, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int overridden = 0;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = same_key(environ[i], extra[j]);
        if (!overridden) envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++) {
        int later = 0; /* a later extra entry with the same key wins */
        for (size_t l = j + 1; l < n_extra && !later; l++)
            later = same_key(extra[j], extra[l]);
        if (!later) envp[k++] = (char *)extra[j];
    }
    return envp;
}

static int errno_code(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return DBLD_NOT_FOUND;
    case EACCES:
    case EPERM:
        return DBLD_PERMISSION_DENIED;
    default:
        return DBLD_INTERNAL;
    }
}

static int check_cwd(const char *cwd, dbld_status *st)
{
    struct stat sb;
    if (stat(cwd, &sb) != 0)
        return dbld_status_set(st, errno_code(errno), "working directory \"%s\": %s", cwd,
                               strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dbld_status_set(st, DBLD_NOT_FOUND, "working directory \"%s\": %s", cwd,
                               strerror(ENOTDIR));
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* The step of the child that failed (child_args.stage). */
enum { STAGE_SETUP, STAGE_USER, STAGE_CWD, STAGE_EXEC };

/* What the child needs, prepared by the parent: the child shares the
 * parent's memory until it execs, so it allocates nothing and only makes
 * system calls. */
typedef struct child_args {
    const char *const *argv;
    char *const *envp;
    const char *path; /* PATH to search when argv[0] has no '/'; NULL: no search */
    const char *cwd;
    const dbld_proc_user *user; /* NULL: keep our credentials */
    int out_w, err_w;
    pid_t parent;       /* our pid: the child checks it still has this parent */
    volatile int err;   /* errno of the step that failed, set by the child */
    volatile int stage; /* which step that was */
} child_args;

/* fd `from` as `to`, without FD_CLOEXEC. */
static int move_fd(int from, int to)
{
    if (from == to) return fcntl(to, F_SETFD, 0);
    return dup2(from, to) < 0 ? -1 : 0;
}

/* execve argv[0] along PATH as posix_spawnp does (never through a shell):
 * EACCES from one directory is remembered and reported if nothing else
 * runs; a directory that does not hold the file is skipped. Returns only
 * on failure, with errno set. */
static void exec_path(const child_args *c, char *buf, size_t cap)
{
    const char *file = c->argv[0];
    if (!c->path) {
        execve(file, (char *const *)c->argv, c->envp);
        return;
    }
    size_t flen = strlen(file);
    int eacces = 0;
    for (const char *dir = c->path;;) {
        const char *end = strchr(dir, ':');
        size_t dlen = end ? (size_t)(end - dir) : strlen(dir);
        if (dlen + 1 + flen + 1 > cap) {
            errno = ENAMETOOLONG;
        } else {
            size_t n = 0;
            if (dlen) { /* an empty entry is the working directory */
                memcpy(buf, dir, dlen);
                buf[dlen] = '/';
                n = dlen + 1;
            }
            memcpy(buf + n, file, flen + 1);
            execve(buf, (char *const *)c->argv, c->envp);
        }
        switch (errno) {
        case EACCES:
            eacces = 1;
            break;
        case ENOENT:
        case ENOTDIR:
        case ESTALE:
        case ENODEV:
        case ETIMEDOUT:
        case ENAMETOOLONG:
            break;
        default:
            return;
        }
        if (!end) break;
        dir = end + 1;
    }
    errno = eacces ? EACCES : ENOENT;
}

/* Become u: supplementary groups, then gid, then uid (after which we could
 * no longer change the others). Raw system calls only (see the top). */
static int drop_to(const dbld_proc_user *u)
{
    if (syscall(SYS_setgroups, u->n_groups, u->groups) != 0) return -1;
    if (syscall(SYS_setresgid, u->gid, u->gid, u->gid) != 0) return -1;
    return syscall(SYS_setresuid, u->uid, u->uid, u->uid) != 0 ? -1 : 0;
}

/* The child between clone and exec. Signals are blocked (the parent blocked
 * them all before clone) until dispositions are back to default, so no
 * handler of ours ever runs here. */
/* Not instrumented by ASan: it runs on the small clone stack, and ASan's
 * check before the noreturn _exit() (a failed exec) took the stack switch
 * for a corrupted stack and wrote a warning report from every such child. */
__attribute__((no_sanitize_address)) static int child_main(void *arg)
{
    child_args *c = arg;
    char buf[4096];
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL); /* fails harmlessly for libc's internal signals */
    if (setpgid(0, 0) != 0) goto fail;
    if (c->user) {
        c->stage = STAGE_USER;
        if (drop_to(c->user) != 0) goto fail;
        c->stage = STAGE_SETUP;
    }
    /* Die with the thread that spawned us: a job service killed with
     * SIGKILL leaves no job behind. Set after the credentials (changing them
     * clears it). If that thread is already gone, the setting came too
     * late: leave at once. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) goto fail;
    if (getppid() != c->parent) _exit(127);
    int in = open("/dev/null", O_RDONLY);
    if (in < 0 || move_fd(in, 0) != 0) goto fail;
    if (in != 0) close(in);
    if (move_fd(c->out_w, 1) != 0 || move_fd(c->err_w, 2) != 0) goto fail;
    closefrom(3);
    c->stage = STAGE_CWD;
    if (c->cwd && chdir(c->cwd) != 0) goto fail;
    c->stage = STAGE_EXEC;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    exec_path(c, buf, sizeof buf);
fail:
    c->err = errno ? errno : ECHILD;
    _exit(127);
}

/* Child stacks: mapped once and kept (up to STACKS_KEPT, as many as spawns
 * ever ran at once) rather than an mmap + munmap per spawn. A stack is free
 * again once clone() returns: CLONE_VFORK suspends us until the child has
 * exec'd or exited. */
static pthread_mutex_t stacks_mu = PTHREAD_MUTEX_INITIALIZER;
static void *stacks[STACKS_KEPT];
static int n_stacks;

static void *stack_take(void)
{
    void *s = NULL;
    pthread_mutex_lock(&stacks_mu);
    if (n_stacks > 0) s = stacks[--n_stacks];
    pthread_mutex_unlock(&stacks_mu);
    if (s) return s;
    s = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1,
             0);
    return s == MAP_FAILED ? NULL : s;
}

static void stack_give(void *s)
{
    pthread_mutex_lock(&stacks_mu);
    if (n_stacks < STACKS_KEPT) {
        stacks[n_stacks++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&stacks_mu);
    if (s) munmap(s, CHILD_STACK);
}

/* Start the child with the child's ends of the pipes in place; returns 0
 * or an errno. clone(CLONE_VM | CLONE_VFORK) as posix_spawn does (no copy
 * of our address space; we wait until the child has exec'd), but with a
 * step posix_spawn has no attribute for: PR_SET_PDEATHSIG. */
static int do_spawn(const dbld_proc_opts *o, int out_w, int err_w, pid_t *pid, int *stage)
{
    const char *path = NULL;
    if (!strchr(o->argv[0], '/')) {
        path = getenv("PATH");
        if (!path || !*path) path = "/bin:/usr/bin";
    }
    char **envp = build_env(o->env, o->env ? o->n_env : 0);
    child_args c = {.argv = o->argv,
                    .envp = envp,
                    .path = path,
                    .cwd = o->cwd,
                    .user = o->user,
                    .out_w = out_w,
                    .err_w = err_w,
                    .parent = getpid()};
    void *stack = stack_take();
    if (!stack) {
        int e = errno;
        free(envp);
        return e;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t p = clone(child_main, (char *)stack + CHILD_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
    int rc = p < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    stack_give(stack);
    free(envp);
    *stage = c.stage;
    if (rc == 0 && c.err) { /* the child could not exec: it has exited */
        rc = c.err;
        while (waitpid(p, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (rc == 0) *pid = p;
    return rc;
}

/* The message of a failed spawn: which step of the child failed, and why. */
static void spawn_error(const dbld_proc_opts *o, int stage, int err, dbld_status *st)
{
    const char *cmd = o->argv[0];
    switch (stage) {
    case STAGE_USER:
        dbld_status_set(st, errno_code(err),
                        "could not switch to user \"%s\" (uid %ld) to run \"%s\": %s",
                        o->user->name, (long)o->user->uid, cmd, strerror(err));
        break;
    case STAGE_CWD:
        dbld_status_set(st, errno_code(err), "working directory \"%s\"%s%s%s: %s", o->cwd,
                        o->user ? " (as user \"" : "", o->user ? o->user->name : "",
                        o->user ? "\")" : "", strerror(err));
        break;
    case STAGE_EXEC:
        dbld_status_set(st, errno_code(err), "could not execute \"%s\": %s", cmd, strerror(err));
        break;
    default:
        dbld_status_set(st, errno_code(err), "could not start \"%s\": %s", cmd, strerror(err));
    }
}

int dbld_proc_spawn(const dbld_proc_opts *o, dbld_proc **out, dbld_status *st)
{
    *out = NULL;
    if (!o || !o->argv || !o->argv[0] || !o->argv[0][0])
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "no command to run");
    if (o->cwd && check_cwd(o->cwd, st)) return st ? st->code : DBLD_NOT_FOUND;
    /* Not calloc: the two line buffers (128 KiB) are read only up to their
     * len, and clearing them was a memset per spawn. */
    dbld_proc *p = dbld_xmalloc(sizeof *p);
    memset(p, 0, offsetof(dbld_proc, out));
    p->out.fd = p->err.fd = -1;
    p->out.len = p->err.len = 0;
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    p->wake[0] = p->wake[1] = p->pidfd = -1;
    if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC) || pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) ||
        set_nonblock(po[0]) || set_nonblock(pe[0])) {
        int e = errno;
        dbld_status_set(st, DBLD_INTERNAL, "could not create pipes: %s", strerror(e));
        goto fail;
    }
    int stage = STAGE_SETUP;
    int rc = do_spawn(o, po[1], pe[1], &p->pid, &stage);
    if (rc) {
        spawn_error(o, stage, rc, st);
        goto fail;
    }
    close_fd(&po[1]);
    close_fd(&pe[1]);
    p->out.fd = po[0];
    p->err.fd = pe[0];
#ifdef SYS_pidfd_open
    p->pidfd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (p->pidfd >= 0) fcntl(p->pidfd, F_SETFD, FD_CLOEXEC);
#endif
    *out = p;
    return 0;
fail:
    close_fd(&po[0]);
    close_fd(&po[1]);
    close_fd(&pe[0]);
    close_fd(&pe[1]);
    close_fd(&p->wake[0]);
    close_fd(&p->wake[1]);
    free(p);
    return st ? st->code : DBLD_INTERNAL;
}

/* ---- users ---- */

int dbld_proc_user_lookup(const char *name, dbld_proc_user **out, dbld_status *st)
{
    *out = NULL;
    long cap = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t bufsz = cap > 0 ? (size_t)cap : 16384;
    char *buf = dbld_xmalloc(bufsz);
    struct passwd pw, *found = NULL;
    int err;
    while ((err = getpwnam_r(name, &pw, buf, bufsz, &found)) == ERANGE && bufsz < (1u << 20))
        buf = dbld_xrealloc(buf, bufsz *= 2);
    if (err || !found) {
        free(buf);
        if (err && err != ENOENT && err != ESRCH && err != EBADF && err != EPERM)
            return dbld_status_set(st, DBLD_INTERNAL, "could not look up user \"%s\": %s", name,
                                   strerror(err));
        return dbld_status_set(st, DBLD_NOT_FOUND, "no user \"%s\" on this host", name);
    }
    dbld_proc_user *u = dbld_xcalloc(1, sizeof *u);
    u->name = dbld_xstrdup(pw.pw_name);
    u->home = dbld_xstrdup(pw.pw_dir && *pw.pw_dir ? pw.pw_dir : "/");
    u->uid = pw.pw_uid;
    u->gid = pw.pw_gid;
    free(buf);
    int n = 16;
    u->groups = dbld_xcalloc((size_t)n, sizeof *u->groups);
    for (;;) {
        int want = n;
        if (getgrouplist(u->name, u->gid, u->groups, &want) >= 0) {
            n = want;
            break;
        }
        if (want <= n) want = n * 2; /* glibc reports the count it needs; others may not */
        if (want > 65536) {
            dbld_proc_user_free(u);
            return dbld_status_set(st, DBLD_INTERNAL, "user \"%s\" is in too many groups", name);
        }
        n = want;
        u->groups = dbld_xrealloc(u->groups, (size_t)n * sizeof *u->groups);
    }
    u->n_groups = (size_t)n;
    *out = u;
    return 0;
}

void dbld_proc_user_free(dbld_proc_user *u)
{
    if (!u) return;
    free(u->name);
    free(u->home);
    free(u->groups);
    free(u);
}

pid_t dbld_proc_pid(const dbld_proc *p)
{
    return p->pid;
}

/* ---- output ---- */

static void emit(int which, char *line, size_t len, int more, dbld_proc_line_fn fn, void *user)
{
    line[len] = 0;
    if (fn) fn(user, which, line, len, more);
}

/* Hand out the complete lines in s->buf (the newest `fresh` bytes are not
 * yet scanned) and keep the partial rest at the front. */
static void split_lines(stream *s, int which, size_t fresh, dbld_proc_line_fn fn, void *user)
{
    size_t start = 0, scan = s->len - fresh;
    char *nl;
    while ((nl = memchr(s->buf + scan, '\n', s->len - scan)) != NULL) {
        size_t end = (size_t)(nl - s->buf);
        emit(which, s->buf + start, end - start, 0, fn, user);
        start = scan = end + 1;
    }
    if (start > 0) {
        memmove(s->buf, s->buf + start, s->len - start);
        s->len -= start;
    }
    if (s->len == DBLD_PROC_LINE_MAX + 1) { /* longer than the limit: hand out a piece */
        char keep = s->buf[DBLD_PROC_LINE_MAX];
        emit(which, s->buf, DBLD_PROC_LINE_MAX, 1, fn, user);
        s->buf[0] = keep;
        s->len = 1;
    }
}

struct dbld_proc_lines {
    int which;
    stream s;
};

dbld_proc_lines *dbld_proc_lines_new(int which)
{
    dbld_proc_lines *l = dbld_xcalloc(1, sizeof *l);
    l->which = which;
    l->s.fd = -1;
    return l;
}

/* What drain() does with each read(), on the caller's bytes. */
void dbld_proc_lines_feed(dbld_proc_lines *l, const void *data, size_t len, dbld_proc_line_fn fn,
                          void *user)
{
    const char *p = data;
    while (len > 0) {
        size_t n = DBLD_PROC_LINE_MAX + 1 - l->s.len;
        if (n > len) n = len;
        memcpy(l->s.buf + l->s.len, p, n);
        l->s.len += n;
        p += n;
        len -= n;
        split_lines(&l->s, l->which, n, fn, user);
    }
}

void dbld_proc_lines_end(dbld_proc_lines *l, dbld_proc_line_fn fn, void *user)
{
    if (l->s.len > 0) emit(l->which, l->s.buf, l->s.len, 0, fn, user);
    l->s.len = 0;
}

void dbld_proc_lines_free(dbld_proc_lines *l)
{
    free(l);
}

/* Read what is there (up to the budget); returns -1 on a read error. */
static int drain(stream *s, int which, dbld_proc_line_fn fn, void *user)
{
    size_t budget = READ_BUDGET;
    while (s->fd >= 0 && budget > 0) {
        ssize_t n = read(s->fd, s->buf + s->len, DBLD_PROC_LINE_MAX + 1 - s->len);
        if (n > 0) {
            s->len += (size_t)n;
            budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
            split_lines(s, which, (size_t)n, fn, user);
        } else if (n == 0) {
            if (s->len > 0) emit(which, s->buf, s->len, 0, fn, user);
            s->len = 0;
            close_fd(&s->fd);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            int e = errno;
            close_fd(&s->fd);
            errno = e;
            return -1;
        }
    }
    return 0;
}

int dbld_proc_read(dbld_proc *p, int timeout_ms, dbld_proc_line_fn fn, void *user)
{
    if (p->out.fd < 0 && p->err.fd < 0 && p->exited) return 0; /* nothing left to wait for */
    struct pollfd pf[4];
    int n = 0, i_out = -1, i_err = -1, i_wake;
    if (p->out.fd >= 0) {
        i_out = n;
        pf[n++] = (struct pollfd){.fd = p->out.fd, .events = POLLIN};
    }
    if (p->err.fd >= 0) {
        i_err = n;
        pf[n++] = (struct pollfd){.fd = p->err.fd, .events = POLLIN};
    }
    i_wake = n;
    pf[n++] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
    if (!p->exited && p->pidfd >= 0)
        pf[n++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
    else if (!p->exited && (timeout_ms < 0 || timeout_ms > NOPIDFD_POLL_MS))
        timeout_ms = NOPIDFD_POLL_MS; /* no pidfd: look at the exit now and then */
    int r;
    do
        r = poll(pf, (nfds_t)n, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0) return -1;
    if (pf[i_wake].revents) {
        char b[64];
        while (read(p->wake[0], b, sizeof b) > 0) {
        }
    }
    int rc = 0;
    if (i_out >= 0 && pf[i_out].revents && drain(&p->out, DBLD_PROC_STDOUT, fn, user)) rc = -1;
    if (i_err >= 0 && pf[i_err].revents && drain(&p->err, DBLD_PROC_STDERR, fn, user)) rc = -1;
    if (rc) return -1;
    return (p->out.fd >= 0) + (p->err.fd >= 0);
}

void dbld_proc_wake(dbld_proc *p)
{
    char c = 1;
    ssize_t r = write(p->wake[1], &c, 1); /* full pipe: a wake is pending anyway */
    (void)r;
}

/* ---- exit ---- */

int dbld_proc_exited(dbld_proc *p, dbld_proc_exit *ex)
{
    if (!p->exited) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int r;
        do
            r = waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT);
        while (r < 0 && errno == EINTR);
        if (r < 0) { /* ECHILD: someone else reaped it (SIGCHLD ignored?) */
            p->exited = p->reaped = 1;
            p->ex = (dbld_proc_exit){.exited = 1, .code = -1};
        } else if (si.si_pid == p->pid) {
            p->exited = 1;
            if (si.si_code == CLD_EXITED)
                p->ex = (dbld_proc_exit){.exited = 1, .code = si.si_status};
            else
                p->ex = (dbld_proc_exit){.exited = 0, .signal = si.si_status};
        }
    }
    if (p->exited && ex) *ex = p->ex;
    return p->exited;
}

int dbld_proc_wait(dbld_proc *p, int timeout_ms, dbld_proc_exit *ex)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : dbld_mono_ms() + timeout_ms;
    for (;;) {
        if (dbld_proc_exited(p, ex)) return 0;
        int64_t left = deadline == INT64_MAX ? -1 : deadline - dbld_mono_ms();
        if (deadline != INT64_MAX && left <= 0) return DBLD_DEADLINE_EXCEEDED;
        if (p->pidfd >= 0) {
            struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
            int ms = left < 0 || left > 1000000 ? 1000000 : (int)left;
            if (poll(&pf, 1, ms) < 0 && errno != EINTR) dbld_sleep_ms(1);
        } else {
            dbld_sleep_ms(left < 0 || left > NOPIDFD_POLL_MS ? NOPIDFD_POLL_MS : left);
        }
    }
}

int dbld_proc_kill(dbld_proc *p, int sig)
{
    if (p->reaped) return -1;
    return kill(-p->pid, sig) == 0 ? 0 : -1;
}

int dbld_proc_terminate(dbld_proc *p, int grace_ms, dbld_proc_line_fn fn, void *user,
                        dbld_proc_exit *ex)
{
    dbld_proc_kill(p, SIGTERM);
    int64_t deadline = dbld_mono_ms() + (grace_ms > 0 ? grace_ms : 0);
    while (!dbld_proc_exited(p, NULL)) {
        int64_t left = deadline - dbld_mono_ms();
        if (left <= 0) break;
        if (dbld_proc_read(p, left > 50 ? 50 : (int)left, fn, user) == 0 && !p->exited)
            dbld_proc_wait(p, left > 50 ? 50 : (int)left, NULL);
    }
    dbld_proc_kill(p, SIGKILL);
    while (!dbld_proc_exited(p, NULL))
        if (dbld_proc_read(p, 50, fn, user) == 0) dbld_proc_wait(p, 50, NULL);
    if (ex) *ex = p->ex;
    return 0;
}

void dbld_proc_destroy(dbld_proc *p)
{
    if (!p) return;
    if (!p->reaped) {
        if (!dbld_proc_exited(p, NULL)) {
            dbld_proc_kill(p, SIGKILL);
            dbld_proc_wait(p, -1, NULL);
        }
        dbld_proc_kill(p, SIGKILL); /* stragglers of the group; the zombie holds the pgid */
        int status;
        while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
        }
        p->reaped = 1;
    }
    close_fd(&p->out.fd);
    close_fd(&p->err.fd);
    close_fd(&p->wake[0]);
    close_fd(&p->wake[1]);
    close_fd(&p->pidfd);
    free(p);
}

const char *dbld_proc_exit_str(const dbld_proc_exit *ex, char *buf, size_t cap)
{
    if (ex->exited) {
        snprintf(buf, cap, "exit code %d", ex->code);
    } else {
        const char *abbrev = sigabbrev_np(ex->signal);
        snprintf(buf, cap, "killed by signal %d (SIG%s)", ex->signal, abbrev ? abbrev : "?");
    }
    return buf;
}
