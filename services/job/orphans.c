/* orphans.c - process groups of running children on disk, and the start-up
 * sweep that kills those a dead job service left behind (see orphans.h).
 *
 * A record is the text
 *   "v1 <boot id> <pid namespace> <pgid> <leader start>\n<mark>\n"
 * Start times are field 22 of /proc/PID/stat (clock ticks since boot), so
 * they are compared only within one boot (the boot id) and one pid
 * namespace.
 *
 * Records live in slots of one file per job service, "<owner pid>.<owner
 * start>.slots", created (O_EXCL) at the first record and removed at a clean
 * close: a run costs one pwrite() to record and one to clear, no inode. A
 * slot is SLOT_SIZE bytes at index * SLOT_SIZE: a slot_head, then the
 * record. A valid slot has the magic, a length that fits, and the FNV-1a
 * hash of exactly that many record bytes (which hold no NUL); anything else
 * - zeros (cleared, or never written), a record half written when its owner
 * died, the tail of an older, longer record - is a free slot. Free slots are
 * kept in memory (last freed, first taken, so the file stays as long as the
 * most runs ever recorded at once, at most SLOTS_MAX).
 *
 * A record that does not fit a slot, one made while all SLOTS_MAX slots are
 * taken, and every record when the slot file cannot be created is an entry
 * file "<owner pid>.<owner start>.<seq>" instead (created with O_EXCL), the
 * format of the previous version, which the sweep reads too (so an upgrade
 * leaks nothing). The owner is in both names so that the sweep can skip a
 * live owner's records without reading them (one may be half written).
 */
#define _GNU_SOURCE /* O_DIRECTORY, O_NOFOLLOW */
#include "orphans.h"

#include "dbld/log.h"
#include "dbld/strmap.h"
#include "dbld/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENV_DIR "DATABUILD_JOB_STATE_DIR"
#define ID_MAX 64      /* boot id / pid namespace text */
#define ENTRY_MAX 4096 /* a record (an entry file), mark included */
#define SLOT_SIZE 4096 /* one page: a slot's pwrite() never spans two */
#define SLOTS_MAX 1024 /* slots in a file (4 MiB); more runs at once get entry files */
#define SLOTS_SUFFIX "slots"
#define SLOT_MAGIC "DBLDOS1"        /* 8 bytes with its NUL */
#define SLOT_ID ((uint64_t)1 << 63) /* ids of slots: SLOT_ID | index */

/* The head of a slot; host byte order (the directory is local to the host). */
typedef struct slot_head {
    char magic[8]; /* SLOT_MAGIC; zeros: free */
    uint64_t len;  /* record bytes after the head */
    uint64_t sum;  /* dbld_hash_str() of the record */
} slot_head;

#define RECORD_MAX (SLOT_SIZE - sizeof(slot_head)) /* a record in a slot, NUL excluded */

struct orphan_reg {
    char *dir;
    int dirfd;
    pid_t self;
    unsigned long long self_start;
    char boot[ID_MAX], pidns[ID_MAX];
    atomic_uint_fast64_t seq;
    atomic_int warned;

    pthread_mutex_t mu; /* the slots */
    int slots_fd;       /* -1: not created yet (or could not be: slots_failed) */
    int slots_failed;
    uint32_t n_slots;    /* slots ever taken: the file is n_slots * SLOT_SIZE at most */
    uint32_t *free_list; /* free slot indexes below n_slots, last freed at the end */
    uint32_t n_free;
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
    pthread_mutex_init(&r->mu, NULL);
    r->slots_fd = -1;
    *out = r;
    return 0;
}

static void slots_name(const orphan_reg *r, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d.%llu." SLOTS_SUFFIX, (int)r->self, r->self_start);
}

void orphan_reg_close(orphan_reg *r)
{
    if (!r) return;
    if (r->slots_fd >= 0) {
        close(r->slots_fd);
        if (r->n_free == r->n_slots) { /* nothing recorded any more */
            char name[96];
            slots_name(r, name, sizeof name);
            unlinkat(r->dirfd, name, 0);
        }
    }
    pthread_mutex_destroy(&r->mu);
    close(r->dirfd);
    free(r->free_list);
    free(r->dir);
    free(r);
}

/* ---- records ---- */

static void warn_once(orphan_reg *r, const char *error)
{
    if (!atomic_exchange(&r->warned, 1))
        dbld_log(DBLD_LOG_WARN, "could not record a job's process group", "dir", r->dir, "error",
                 error, NULL);
}

static void entry_name(const orphan_reg *r, uint64_t id, char *buf, size_t cap)
{
    snprintf(buf, cap, "%d.%llu.%" PRIu64, (int)r->self, r->self_start, id);
}

/* The record as an entry file of its own; its id, or 0. */
static uint64_t add_entry_file(orphan_reg *r, const char *text, size_t n)
{
    uint64_t id = (atomic_fetch_add(&r->seq, 1) + 1) & ~SLOT_ID;
    char name[96];
    entry_name(r, id, name, sizeof name);
    int fd = openat(r->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write(fd, text, n) == (ssize_t)n;
    int e = errno;
    if (fd >= 0) close(fd);
    if (ok) return id;
    if (fd >= 0) unlinkat(r->dirfd, name, 0);
    warn_once(r, strerror(e));
    return 0;
}

/* A free slot's index, or -1 (none left, or no slot file: use an entry
 * file). Creates the slot file at the first call. */
static int64_t take_slot(orphan_reg *r)
{
    int64_t slot = -1;
    pthread_mutex_lock(&r->mu);
    if (r->slots_fd < 0 && !r->slots_failed) {
        char name[96];
        slots_name(r, name, sizeof name);
        r->slots_fd = openat(r->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (r->slots_fd < 0) { /* EEXIST: another boot's, or another namespace's live one */
            r->slots_failed = 1;
            dbld_log(DBLD_LOG_WARN, "job process groups are recorded one file each", "dir", r->dir,
                     "file", name, "error", strerror(errno), NULL);
        } else
            r->free_list = dbld_xcalloc(SLOTS_MAX, sizeof *r->free_list);
    }
    if (r->slots_fd >= 0) {
        if (r->n_free > 0)
            slot = r->free_list[--r->n_free];
        else if (r->n_slots < SLOTS_MAX)
            slot = r->n_slots++;
    }
    pthread_mutex_unlock(&r->mu);
    return slot;
}

static void give_slot(orphan_reg *r, uint32_t slot)
{
    pthread_mutex_lock(&r->mu);
    r->free_list[r->n_free++] = slot;
    pthread_mutex_unlock(&r->mu);
}

static int pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    ssize_t w;
    do
        w = pwrite(fd, buf, n, off);
    while (w < 0 && errno == EINTR);
    if (w >= 0 && (size_t)w != n) errno = ENOSPC; /* a short write: the disk is full */
    return w >= 0 && (size_t)w == n ? 0 : -1;
}

uint64_t orphan_reg_add(orphan_reg *r, pid_t pgid, const char *mark)
{
    if (!r) return 0;
    char buf[sizeof(slot_head) + ENTRY_MAX]; /* a slot's head, then the record */
    char *text = buf + sizeof(slot_head);
    pstat ps;
    if (proc_stat(pgid, &ps) != 0) {
        warn_once(r, "the process is gone");
        return 0;
    }
    int n = snprintf(text, ENTRY_MAX, "v1 %s %s %d %llu\n%.*s\n", r->boot, r->pidns, (int)pgid,
                     ps.start, (int)strcspn(mark, "\n"), mark);
    if (n <= 0 || n >= ENTRY_MAX) {
        warn_once(r, "the record is too long");
        return 0;
    }
    int64_t slot = (size_t)n <= RECORD_MAX ? take_slot(r) : -1;
    if (slot < 0) return add_entry_file(r, text, (size_t)n);
    slot_head h = {.magic = SLOT_MAGIC, .len = (uint64_t)n, .sum = dbld_hash_str(text)};
    memcpy(buf, &h, sizeof h);
    if (pwrite_all(r->slots_fd, buf, sizeof h + (size_t)n, (off_t)slot * SLOT_SIZE) == 0)
        return SLOT_ID | (uint64_t)slot;
    int e = errno;
    /* The slot may hold part of the record: cleared before it is taken again. */
    static const slot_head zero;
    if (pwrite_all(r->slots_fd, &zero, sizeof zero, (off_t)slot * SLOT_SIZE) == 0)
        give_slot(r, (uint32_t)slot);
    warn_once(r, strerror(e));
    return 0;
}

void orphan_reg_remove(orphan_reg *r, uint64_t id)
{
    if (!r || !id) return;
    if (id & SLOT_ID) {
        uint32_t slot = (uint32_t)(id & ~SLOT_ID);
        static const slot_head zero;
        /* One that could not be cleared stays taken (its group is gone: the
         * sweep would find nothing to kill). */
        if (pwrite_all(r->slots_fd, &zero, sizeof zero, (off_t)slot * SLOT_SIZE) == 0)
            give_slot(r, slot);
        return;
    }
    char name[96];
    entry_name(r, id, name, sizeof name);
    unlinkat(r->dirfd, name, 0);
}

/* ---- the sweep ---- */

/* Kill the group of one dead owner's record (text, NUL-terminated) if it is
 * still there; 1 if killed. where names the record in the log. */
static int sweep_record(orphan_reg *r, char *text, const char *where)
{
    char boot[ID_MAX], pidns[ID_MAX];
    int pgid;
    unsigned long long start;
    int consumed = 0;
    if (sscanf(text, "v1 %63s %63s %d %llu\n%n", boot, pidns, &pgid, &start, &consumed) != 4 ||
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
             g, "matched_by", by_leader ? "leader" : "environment", "mark", mark, "entry", where,
             NULL);
    return 1;
}

/* An entry file (the previous version's format, or a record that did not
 * get a slot). */
static int sweep_entry(orphan_reg *r, const char *name)
{
    char text[ENTRY_MAX];
    if (read_small(r->dirfd, name, text, sizeof text) <= 0) return 0;
    return sweep_record(r, text, name);
}

/* A slot's record: 1 and text (NUL-terminated) when the slot is valid. */
static int slot_record(const char *slot, size_t n, char text[RECORD_MAX + 1])
{
    slot_head h;
    if (n < sizeof h) return 0;
    memcpy(&h, slot, sizeof h);
    if (memcmp(h.magic, SLOT_MAGIC, sizeof h.magic) != 0 || h.len == 0 || h.len > RECORD_MAX ||
        h.len > n - sizeof h)
        return 0;
    memcpy(text, slot + sizeof h, h.len);
    text[h.len] = 0;
    return strlen(text) == h.len && dbld_hash_str(text) == h.sum;
}

/* Every valid slot of a slot file. */
static int sweep_slots(orphan_reg *r, const char *name)
{
    int fd = openat(r->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    char *slot = dbld_xmalloc(SLOT_SIZE), text[RECORD_MAX + 1], where[160];
    int killed = 0;
    for (uint64_t i = 0;; i++) {
        ssize_t n;
        do
            n = pread(fd, slot, SLOT_SIZE, (off_t)(i * SLOT_SIZE));
        while (n < 0 && errno == EINTR);
        if (n <= 0) break;
        if (!slot_record(slot, (size_t)n, text)) continue; /* free, or half written */
        snprintf(where, sizeof where, "%s[%" PRIu64 "]", name, i);
        killed += sweep_record(r, text, where);
    }
    free(slot);
    close(fd);
    return killed;
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
        int owner, at = 0;
        unsigned long long owner_start;
        if (sscanf(de->d_name, "%d.%llu.%n", &owner, &owner_start, &at) != 2 || !at) continue;
        const char *rest = de->d_name + at;
        int slots = strcmp(rest, SLOTS_SUFFIX) == 0;
        if (!slots && !(*rest && strspn(rest, "0123456789") == strlen(rest)))
            continue;                                      /* ".", "..", or not ours */
        if (same_process(owner, owner_start, 0)) continue; /* a live job service's (or our own) */
        killed += slots ? sweep_slots(r, de->d_name) : sweep_entry(r, de->d_name);
        unlinkat(r->dirfd, de->d_name, 0);
    }
    closedir(d);
    return killed;
}
