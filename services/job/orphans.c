/* orphans.c - process groups of running children on disk, and the start-up
 * sweep that kills those a dead job service left behind (see orphans.h).
 *
 * An entry is a file "<owner pid>.<owner start>.<seq>" in the directory,
 * created with O_EXCL; its first line is
 *   "v1 <boot id> <pid namespace> <pgid> <leader start>"
 * and its second the mark. The owner is in the name so that the sweep can
 * skip a live owner's entries without reading them (one may be half
 * written). Start times are field 22 of /proc/PID/stat (clock ticks since
 * boot), so they are compared only within one boot (the boot id) and one
 * pid namespace.
 */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW */
#include "orphans.h"

#include "dbld/log.h"
#include "dbld/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_DIR "DATABUILD_JOB_STATE_DIR"
#define ID_MAX 64      /* boot id / pid namespace text */
#define ENTRY_MAX 4096 /* an entry file, mark included */

struct orphan_reg {
    char *dir;
    int dirfd;
    pid_t self;
    unsigned long long self_start;
    char boot[ID_MAX], pidns[ID_MAX];
    atomic_uint_fast64_t seq;
    atomic_int warned;
};

/* ---- /proc ---- */

typedef struct pstat {
    char state; /* R, S, Z, X, ... */
    pid_t pgrp;
    unsigned long long start; /* clock ticks after boot */
} pstat;

/* Read from fd until end of file, an error or cap bytes; returns the count. */
static size_t read_fd(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    while (n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    return n;
}

/* Read at most cap-1 bytes of a file (NUL-terminated); length or -1. */
static ssize_t read_small(int dirfd, const char *path, char *buf, size_t cap)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = read_fd(fd, buf, cap - 1);
    close(fd);
    buf[n] = 0;
    return (ssize_t)n;
}

/* /proc/PID/stat: 0, or -1 when there is no such process. */
static int proc_stat(pid_t pid, pstat *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(AT_FDCWD, path, buf, sizeof buf) <= 0) return -1;
    const char *p = strrchr(buf, ')'); /* the command name may hold anything */
    if (!p) return -1;
    /* after ")": state(3) ppid(4) pgrp(5) ... starttime(22) */
    char state;
    int ppid, pgrp;
    if (sscanf(p + 1, " %c %d %d", &state, &ppid, &pgrp) != 3) return -1;
    const char *f = p + 1; /* the space before field 3 */
    for (int field = 3; field < 22 && f; field++)
        f = strchr(f + 1, ' ');
    if (!f || sscanf(f, " %llu", &out->start) != 1) return -1;
    out->state = state;
    out->pgrp = pgrp;
    return 0;
}

/* The process runs (or is a zombie not yet reaped) and started at `start`. */
static int same_process(pid_t pid, unsigned long long start, int zombie_ok)
{
    pstat ps;
    if (proc_stat(pid, &ps) != 0 || ps.start != start) return 0;
    return zombie_ok || (ps.state != 'Z' && ps.state != 'X');
}

/* Whether the environment of pid holds exactly the entry mark. */
static int environ_has(pid_t pid, const char *mark)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    size_t len = 0, cap = 64 * 1024;
    char *buf = dbld_xmalloc(cap + 1);
    while ((len += read_fd(fd, buf + len, cap - len)) == cap) {
        cap *= 2;
        buf = dbld_xrealloc(buf, cap + 1);
    }
    close(fd);
    buf[len] = 0;
    int found = 0;
    for (size_t i = 0; i < len && !found; i += strlen(buf + i) + 1)
        found = strcmp(buf + i, mark) == 0;
    free(buf);
    return found;
}

/* Some process of group pgid carries the mark. */
static int group_has_mark(pid_t pgid, const char *mark)
{
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)de->d_name[0])) continue;
        pid_t pid = (pid_t)atoi(de->d_name);
        pstat ps;
        found = proc_stat(pid, &ps) == 0 && ps.pgrp == pgid && ps.state != 'Z' &&
                environ_has(pid, mark);
    }
    closedir(d);
    return found;
}

static void read_id(const char *path, char *out)
{
    char buf[ID_MAX];
    ssize_t n = readlink(path, buf, sizeof buf - 1);
    if (n < 0) /* not a link: a file (the boot id) */
        n = read_small(AT_FDCWD, path, buf, sizeof buf);
    if (n < 0) n = 0;
    buf[n] = 0;
    size_t k = 0;
    for (ssize_t i = 0; i < n && k + 1 < ID_MAX; i++)
        if (isgraph((unsigned char)buf[i])) out[k++] = buf[i];
    out[k] = 0;
    if (!k) snprintf(out, ID_MAX, "-");
}

/* ---- the directory ---- */

static int open_dir(const char *dir, int *fd_out, dbld_status *st)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "state directory \"%s\": %s", dir,
                               strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "state directory \"%s\": %s", dir,
                               strerror(errno));
    struct stat sb;
    const char *why = NULL;
    if (fstat(fd, &sb) != 0)
        why = strerror(errno);
    else if (sb.st_uid != geteuid())
        why = "owned by another user";
    else if (sb.st_mode & 022)
        why = "writable by group or others";
    if (why) {
        close(fd);
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "state directory \"%s\": %s", dir, why);
    }
    *fd_out = fd;
    return 0;
}

int orphan_reg_open(const char *dir, orphan_reg **out, dbld_status *st)
{
    *out = NULL;
    char dflt[512];
    int given = dir && *dir;
    if (!given) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dflt, sizeof dflt, "%s/databuild-job-%u", tmp && *tmp ? tmp : "/tmp",
                 (unsigned)geteuid());
        dir = dflt;
    }
    int fd = -1;
    dbld_status dst;
    if (open_dir(dir, &fd, &dst) != 0) {
        if (given) return dbld_status_set(st, dst.code, "%s: %s", ENV_DIR, dst.msg);
        dbld_log(DBLD_LOG_WARN,
                 "job process groups are not recorded: a killed job service's leftovers will "
                 "not be cleaned up (set " ENV_DIR ")",
                 "error", dst.msg, NULL);
        return 0;
    }
    orphan_reg *r = dbld_xcalloc(1, sizeof *r);
    r->dir = dbld_xstrdup(dir);
    r->dirfd = fd;
    r->self = getpid();
    pstat ps;
    r->self_start = proc_stat(r->self, &ps) == 0 ? ps.start : 0;
    read_id("/proc/sys/kernel/random/boot_id", r->boot);
    read_id("/proc/self/ns/pid", r->pidns);
    *out = r;
    return 0;
}

void orphan_reg_close(orphan_reg *r)
{
    if (!r) return;
    close(r->dirfd);
    free(r->dir);
    free(r);
}

/* ---- entries ---- */

static void entry_name(const orphan_reg *r, uint64_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d.%llu.%" PRIu64, (int)r->self, r->self_start, id);
}

uint64_t orphan_reg_add(orphan_reg *r, pid_t pgid, const char *mark)
{
    if (!r) return 0;
    uint64_t id = atomic_fetch_add(&r->seq, 1) + 1;
    char name[96], text[ENTRY_MAX];
    entry_name(r, id, name, sizeof name);
    pstat ps;
    int n = -1;
    if (proc_stat(pgid, &ps) == 0)
        n = snprintf(text, sizeof text, "v1 %s %s %d %llu\n%.*s\n", r->boot, r->pidns, (int)pgid,
                     ps.start, (int)strcspn(mark, "\n"), mark);
    int fd = -1, ok = 0;
    if (n > 0 && (size_t)n < sizeof text) {
        fd = openat(r->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ok = fd >= 0 && write(fd, text, (size_t)n) == n;
    }
    int e = errno;
    if (fd >= 0) close(fd);
    if (ok) return id;
    if (fd >= 0) unlinkat(r->dirfd, name, 0);
    if (!atomic_exchange(&r->warned, 1))
        dbld_log(DBLD_LOG_WARN, "could not record a job's process group", "dir", r->dir, "error",
                 n > 0 ? strerror(e) : "the process is gone", NULL);
    return 0;
}

void orphan_reg_remove(orphan_reg *r, uint64_t id)
{
    if (!r || !id) return;
    char name[96];
    entry_name(r, id, name, sizeof name);
    unlinkat(r->dirfd, name, 0);
}

/* ---- the sweep ---- */

/* Kill the group of one dead owner's entry if it is still there; 1 if killed. */
static int sweep_entry(orphan_reg *r, const char *name)
{
    char text[ENTRY_MAX], boot[ID_MAX], pidns[ID_MAX];
    int pgid;
    unsigned long long start;
    int consumed = 0;
    if (read_small(r->dirfd, name, text, sizeof text) <= 0 ||
        sscanf(text, "v1 %63s %63s %d %llu\n%n", boot, pidns, &pgid, &start, &consumed) != 4 ||
        !consumed || pgid <= 1)
        return 0; /* half written when its owner died: its leader died with the owner */
    if (strcmp(boot, r->boot) != 0 || strcmp(pidns, r->pidns) != 0)
        return 0; /* another boot (long gone) or namespace (not ours to judge) */
    char *mark = text + consumed;
    mark[strcspn(mark, "\n")] = 0;
    int by_leader = same_process(pgid, start, 1);
    if (!by_leader && !(*mark && group_has_mark(pgid, mark)))
        return 0; /* the group is gone (its id may belong to someone else by now) */
    if (kill(-pgid, SIGKILL) != 0) return 0;
    if (by_leader) kill(pgid, SIGKILL); /* in case the leader left its group */
    char g[24];
    snprintf(g, sizeof g, "%d", pgid);
    dbld_log(DBLD_LOG_WARN, "killed the process group of a job left by a dead job service", "pgid",
             g, "matched_by", by_leader ? "leader" : "environment", "mark", mark, "entry", name,
             NULL);
    return 1;
}

int orphan_reg_sweep(orphan_reg *r)
{
    if (!r) return 0;
    int dfd = dup(r->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        dbld_log(DBLD_LOG_WARN, "could not read the state directory", "dir", r->dir, "error",
                 strerror(errno), NULL);
        return 0;
    }
    rewinddir(d); /* the offset is shared with r->dirfd */
    int killed = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int owner;
        unsigned long long owner_start;
        uint64_t seq;
        char end;
        if (sscanf(de->d_name, "%d.%llu.%" SCNu64 "%c", &owner, &owner_start, &seq, &end) != 3)
            continue;                                      /* ".", "..", or not ours */
        if (same_process(owner, owner_start, 0)) continue; /* a live job service's (or our own) */
        killed += sweep_entry(r, de->d_name);
        unlinkat(r->dirfd, de->d_name, 0);
    }
    closedir(d);
    return killed;
}
