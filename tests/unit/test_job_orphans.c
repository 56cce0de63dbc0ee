/* test_job_orphans.c - services/job/orphans.c: records are written to slots
 * and cleared, slots are reused and the slot file removed at close; records
 * that do not get a slot (too long, all slots taken, no slot file) are entry
 * files; the start-up sweep leaves a live job service's groups alone, kills
 * a dead one's group by its leader or (leader gone) by the mark in a
 * member's environment, from a slot file or an entry file (the previous
 * version's), ignores free, corrupt and half-written slots, spares a group
 * that carries no mark (a recycled id), and drops records of another boot;
 * the groups of a registry whose process was SIGKILLed are killed by the
 * next sweep; an unsafe directory is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../services/job/orphans.c"

#include <sys/wait.h>

/* ---- helpers ---- */

static char g_dir[] = "/tmp/dbld_test_orphans_XXXXXX";

static int setup(void **state)
{
    (void)state;
    memcpy(g_dir + sizeof g_dir - 7, "XXXXXX", 6);
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') unlinkat(dirfd(d), de->d_name, 0);
    if (d) closedir(d);
    rmdir(g_dir);
    return 0;
}

static orphan_reg *open_reg(void)
{
    orphan_reg *r = NULL;
    dbld_status st;
    assert_int_equal(orphan_reg_open(g_dir, &r, &st), 0);
    assert_non_null(r);
    return r;
}

static int n_entries(void)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Running and not a zombie. */
static int alive(pid_t pid)
{
    pstat ps;
    return proc_stat(pid, &ps) == 0 && ps.state != 'Z' && ps.state != 'X';
}

static int wait_dead(pid_t pid)
{
    int64_t end = dbld_mono_ms() + 5000;
    while (alive(pid) && dbld_mono_ms() < end)
        dbld_sleep_ms(10);
    return !alive(pid);
}

/* A process group: a leader (which stays our child and keeps running unless
 * leader_exits) and a `sleep` member with env_entry in its environment.
 * Returns the leader's pid (the pgid); *member = the member's pid. */
static pid_t make_group(const char *env_entry, int leader_exits, pid_t *member)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t leader = fork();
    assert_true(leader >= 0);
    if (leader == 0) {
        setpgid(0, 0);
        pid_t m = fork();
        if (m == 0) {
            char *const argv[] = {"sleep", "1000", NULL};
            char *const envp[] = {(char *)env_entry, "PATH=/bin:/usr/bin", NULL};
            execve("/bin/sleep", argv, envp);
            _exit(127);
        }
        if (write(fds[1], &m, sizeof m) != (ssize_t)sizeof m) _exit(2);
        if (leader_exits) _exit(0);
        execl("/bin/sleep", "sleep", "1000", (char *)NULL);
        _exit(127);
    }
    assert_int_equal(read(fds[0], member, sizeof *member), (ssize_t)sizeof *member);
    close(fds[0]);
    close(fds[1]);
    if (leader_exits) assert_int_equal(waitpid(leader, NULL, 0), leader);
    int64_t end = dbld_mono_ms() + 5000; /* until the member has exec'd */
    while (!environ_has(*member, env_entry) && dbld_mono_ms() < end)
        dbld_sleep_ms(5);
    return leader;
}

/* An entry as a job service that is no longer running would have left it. */
static void write_dead_entry(const orphan_reg *r, const char *boot, pid_t pgid,
                             unsigned long long start, const char *mark)
{
    char path[512], text[1024];
    snprintf(path, sizeof path, "%s/%d.%llu.7", g_dir, (int)r->self, r->self_start + 12345);
    snprintf(text, sizeof text, "v1 %s %s %d %llu\n%s\n", boot, r->pidns, (int)pgid, start, mark);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A dead owner's slot file: slot i holds texts[i] (NULL: zeros), whose
 * last cut[i] bytes are missing when cut is given (written halfway). */
static void write_dead_slots(const orphan_reg *r, const char *const *texts, const int *cut, int n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%d.%llu.slots", g_dir, (int)r->self, r->self_start + 12345);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    for (int i = 0; i < n; i++) {
        char slot[SLOT_SIZE] = {0};
        if (texts[i]) {
            size_t len = strlen(texts[i]);
            slot_head h = {.magic = SLOT_MAGIC, .len = len, .sum = dbld_hash_str(texts[i])};
            memcpy(slot, &h, sizeof h);
            memcpy(slot + sizeof h, texts[i], len - (cut ? (size_t)cut[i] : 0));
        }
        assert_int_equal(pwrite(fd, slot, sizeof slot, (off_t)i * SLOT_SIZE), SLOT_SIZE);
    }
    close(fd);
}

static char *record(const orphan_reg *r, const char *boot, pid_t pgid, unsigned long long start,
                    const char *mark)
{
    static char text[4][1024];
    static int k;
    char *t = text[k++ % 4];
    snprintf(t, sizeof text[0], "v1 %s %s %d %llu\n%s\n", boot, r->pidns, (int)pgid, start, mark);
    return t;
}

/* The record in slot i of our own slot file ("" when the slot is free). */
static const char *own_slot(const orphan_reg *r, uint32_t i)
{
    static char text[RECORD_MAX + 1];
    char slot[SLOT_SIZE];
    ssize_t n = pread(r->slots_fd, slot, sizeof slot, (off_t)i * SLOT_SIZE);
    if (n <= 0 || !slot_record(slot, (size_t)n, text)) text[0] = 0;
    return text;
}

static off_t slots_size(const orphan_reg *r)
{
    struct stat sb;
    assert_int_equal(fstat(r->slots_fd, &sb), 0);
    return sb.st_size;
}

static void kill_group(pid_t leader, pid_t member, int reap_leader)
{
    kill(-leader, SIGKILL);
    kill(member, SIGKILL);
    if (reap_leader) waitpid(leader, NULL, 0);
}

/* A dead owner's entry for a running group, with the leader's start time
 * off by start_delta or another boot: the sweep drops the entry and spares
 * the group. */
static void check_spared(orphan_reg *r, const char *boot, long long start_delta)
{
    pid_t member;
    pid_t leader = make_group("X=1", 0, &member);
    pstat ps;
    assert_int_equal(proc_stat(leader, &ps), 0);
    write_dead_entry(r, boot, leader, ps.start + (unsigned long long)start_delta,
                     "DATABUILD_JOB_RUN_ID=other");
    assert_int_equal(orphan_reg_sweep(r), 0);
    assert_int_equal(n_entries(), 0);
    assert_true(alive(leader) && alive(member));
    kill_group(leader, member, 1);
}

/* ---- tests ---- */

static void test_add_remove_and_live_owner(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    pid_t member;
    pid_t leader = make_group("DATABUILD_JOB_RUN_ID=live", 0, &member);
    uint64_t id = orphan_reg_add(r, leader, "DATABUILD_JOB_RUN_ID=live");
    assert_int_equal(id, SLOT_ID | 0);
    assert_int_equal(n_entries(), 1); /* the slot file */
    char name[96];
    slots_name(r, name, sizeof name);
    struct stat sb;
    assert_int_equal(fstatat(r->dirfd, name, &sb, 0), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    pstat ps;
    assert_int_equal(proc_stat(leader, &ps), 0);
    char want[256];
    snprintf(want, sizeof want, "v1 %s %s %d %llu\nDATABUILD_JOB_RUN_ID=live\n", r->boot, r->pidns,
             (int)leader, ps.start);
    assert_string_equal(own_slot(r, 0), want);

    /* Our own records (a live owner's) are left alone. */
    assert_int_equal(orphan_reg_sweep(r), 0);
    assert_int_equal(n_entries(), 1);
    assert_true(alive(leader) && alive(member));

    /* Removed: the slot is cleared (one write), the file stays until close. */
    orphan_reg_remove(r, id);
    assert_string_equal(own_slot(r, 0), "");
    char head[sizeof(slot_head)], zeros[sizeof head];
    memset(zeros, 0, sizeof zeros);
    assert_int_equal(pread(r->slots_fd, head, sizeof head, 0), (ssize_t)sizeof head);
    assert_memory_equal(head, zeros, sizeof head);
    assert_int_equal(n_entries(), 1);
    kill_group(leader, member, 1);
    orphan_reg_close(r);
    assert_int_equal(n_entries(), 0);
}

/* A slot is taken again once cleared (last freed first), the file grows
 * only to the most records held at once, and a record that does not get a
 * slot becomes an entry file. */
static void test_slots_reused(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    pid_t self = getpid();
    uint64_t a = orphan_reg_add(r, self, "M=a"), b = orphan_reg_add(r, self, "M=b");
    assert_int_equal(a, SLOT_ID | 0);
    assert_int_equal(b, SLOT_ID | 1);
    orphan_reg_remove(r, a);
    assert_string_equal(own_slot(r, 0), "");
    assert_non_null(strstr(own_slot(r, 1), "\nM=b\n"));
    uint64_t c = orphan_reg_add(r, self, "M=c");
    assert_int_equal(c, SLOT_ID | 0);
    assert_non_null(strstr(own_slot(r, 0), "\nM=c\n"));
    for (int i = 0; i < 200; i++) { /* many runs, two at a time at most */
        uint64_t id = orphan_reg_add(r, self, "M=d");
        assert_true(id == (SLOT_ID | 2) || id == (SLOT_ID | 0) || id == (SLOT_ID | 1));
        orphan_reg_remove(r, id);
    }
    assert_true(slots_size(r) <= 3 * SLOT_SIZE);
    assert_int_equal(r->n_slots, 3);
    assert_int_equal(n_entries(), 1);

    /* too long for a slot: an entry file, removed with its record */
    pstat ps;
    assert_int_equal(proc_stat(self, &ps), 0);
    char mark[ENTRY_MAX];
    int head =
        snprintf(mark, sizeof mark, "v1 %s %s %d %llu\n", r->boot, r->pidns, (int)self, ps.start);
    size_t mark_len = RECORD_MAX + 10 - (size_t)head - 1; /* the record: RECORD_MAX + 10 bytes */
    memset(mark, 'x', mark_len);
    mark[mark_len] = 0;
    memcpy(mark, "M=", 2);
    uint64_t e = orphan_reg_add(r, self, mark);
    assert_true(e > 0 && !(e & SLOT_ID));
    assert_int_equal(n_entries(), 2);
    char name[96], text[ENTRY_MAX];
    entry_name(r, e, name, sizeof name);
    assert_true(read_small(r->dirfd, name, text, sizeof text) > 0);
    assert_non_null(strstr(text, "\nM=xxx"));
    orphan_reg_remove(r, e);
    assert_int_equal(n_entries(), 1);

    /* every slot taken: an entry file too */
    uint32_t n_free = r->n_free;
    r->n_slots = SLOTS_MAX;
    r->n_free = 0;
    e = orphan_reg_add(r, self, "M=full");
    assert_true(e > 0 && !(e & SLOT_ID));
    assert_int_equal(n_entries(), 2);
    orphan_reg_remove(r, e);
    assert_int_equal(n_entries(), 1);
    r->n_slots = 3;
    r->n_free = n_free;
    orphan_reg_remove(r, b);
    orphan_reg_remove(r, c);
    orphan_reg_close(r);
    assert_int_equal(n_entries(), 0);
}

/* The slot file cannot be created (a file of another boot has its name):
 * records are entry files. */
static void test_no_slot_file(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    char name[96];
    slots_name(r, name, sizeof name);
    int fd = openat(r->dirfd, name, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    uint64_t id = orphan_reg_add(r, getpid(), "M=1");
    assert_true(id > 0 && !(id & SLOT_ID));
    assert_int_equal(n_entries(), 2);
    orphan_reg_remove(r, id);
    assert_int_equal(n_entries(), 1);
    orphan_reg_close(r);
    assert_int_equal(n_entries(), 1); /* not ours */
}

static void test_sweep_by_leader(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    pid_t member;
    pid_t leader = make_group("X=1", 0, &member);
    pstat ps;
    assert_int_equal(proc_stat(leader, &ps), 0);
    write_dead_entry(r, r->boot, leader, ps.start, "DATABUILD_JOB_RUN_ID=other");
    assert_int_equal(orphan_reg_sweep(r), 1);
    assert_int_equal(n_entries(), 0);
    assert_true(wait_dead(member));
    assert_int_equal(waitpid(leader, NULL, 0), leader);

    /* A leader with another start time is a recycled pid: not killed. */
    check_spared(r, r->boot, -1);
    orphan_reg_close(r);
}

static void test_sweep_by_mark(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    /* The leader died (parent-death signal) and was reaped; a member lives on. */
    pid_t member;
    pid_t pgid = make_group("DATABUILD_JOB_RUN_ID=r1", 1, &member);
    assert_false(alive(pgid));
    assert_true(alive(member));
    write_dead_entry(r, r->boot, pgid, 1, "DATABUILD_JOB_RUN_ID=r1");
    assert_int_equal(orphan_reg_sweep(r), 1);
    assert_true(wait_dead(member));

    /* No member carries the mark: the id may be someone else's by now. */
    pgid = make_group("DATABUILD_JOB_RUN_ID=r2", 1, &member);
    write_dead_entry(r, r->boot, pgid, 1, "DATABUILD_JOB_RUN_ID=r1");
    assert_int_equal(orphan_reg_sweep(r), 0);
    assert_int_equal(n_entries(), 0);
    assert_true(alive(member));
    kill(member, SIGKILL);
    orphan_reg_close(r);
}

/* A dead owner's slot file: valid slots are swept (by leader, by mark),
 * free, corrupt and half-written ones ignored, the file removed. */
static void test_sweep_slots(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    pid_t m1, m2, m3, m4;
    pid_t g1 = make_group("X=1", 0, &m1);                     /* by leader */
    pid_t g2 = make_group("DATABUILD_JOB_RUN_ID=s2", 1, &m2); /* by mark */
    pid_t g3 = make_group("DATABUILD_JOB_RUN_ID=s3", 0, &m3); /* half written */
    pid_t g4 = make_group("DATABUILD_JOB_RUN_ID=s4", 0, &m4); /* corrupt */
    pstat p1, p3, p4;
    assert_int_equal(proc_stat(g1, &p1), 0);
    assert_int_equal(proc_stat(g3, &p3), 0);
    assert_int_equal(proc_stat(g4, &p4), 0);
    const char *texts[] = {
        NULL,
        record(r, r->boot, g1, p1.start, "DATABUILD_JOB_RUN_ID=s1"),
        record(r, r->boot, g2, 1, "DATABUILD_JOB_RUN_ID=s2"),
        record(r, r->boot, g3, p3.start, "DATABUILD_JOB_RUN_ID=s3"),
    };
    int cut[] = {0, 0, 0, 5};
    write_dead_slots(r, texts, cut, 4);
    /* slot 4: g4's record with one byte changed after its sum was taken */
    char path[512];
    snprintf(path, sizeof path, "%s/%d.%llu.slots", g_dir, (int)r->self, r->self_start + 12345);
    char *t4 = record(r, r->boot, g4, p4.start, "DATABUILD_JOB_RUN_ID=s4");
    char slot[SLOT_SIZE] = {0};
    slot_head h = {.magic = SLOT_MAGIC, .len = strlen(t4), .sum = dbld_hash_str(t4)};
    memcpy(slot, &h, sizeof h);
    memcpy(slot + sizeof h, t4, h.len);
    slot[sizeof h + 3] ^= 1;
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, slot, sizeof slot, 4 * SLOT_SIZE), SLOT_SIZE);
    close(fd);

    assert_int_equal(orphan_reg_sweep(r), 2);
    assert_int_equal(n_entries(), 0);
    assert_true(wait_dead(m1) && wait_dead(m2));
    assert_int_equal(waitpid(g1, NULL, 0), g1);
    assert_true(alive(g3) && alive(m3) && alive(g4) && alive(m4));
    kill_group(g3, m3, 1);
    kill_group(g4, m4, 1);
    orphan_reg_close(r);
}

/* A registry in a process that is SIGKILLed while its job runs (and while
 * recording another): the next registry's sweep kills the job's group. */
static void test_killed_owner_swept(void **state)
{
    (void)state;
    pid_t member;
    pid_t leader = make_group("DATABUILD_JOB_RUN_ID=k", 0, &member);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t owner = fork();
    assert_true(owner >= 0);
    if (owner == 0) {
        orphan_reg *o = NULL;
        dbld_status st;
        if (orphan_reg_open(g_dir, &o, &st) != 0 || !o) _exit(2);
        uint64_t done = orphan_reg_add(o, getpid(), "M=done");
        orphan_reg_remove(o, done);
        if (orphan_reg_add(o, leader, "DATABUILD_JOB_RUN_ID=k") == 0) _exit(3);
        (void)!write(fds[1], "x", 1);
        for (;;) { /* recording and clearing until killed */
            uint64_t id = orphan_reg_add(o, getpid(), "M=busy");
            orphan_reg_remove(o, id);
        }
    }
    close(fds[1]);
    char c;
    assert_int_equal(read(fds[0], &c, 1), 1);
    close(fds[0]);
    orphan_reg *r = open_reg();
    assert_int_equal(orphan_reg_sweep(r), 0); /* the owner still runs */
    assert_true(alive(member));
    kill(owner, SIGKILL);
    assert_int_equal(waitpid(owner, NULL, 0), owner);
    assert_int_equal(orphan_reg_sweep(r), 1);
    assert_true(wait_dead(member));
    assert_int_equal(waitpid(leader, NULL, 0), leader);
    assert_int_equal(n_entries(), 0);
    orphan_reg_close(r);
}

static void test_other_boot_dropped(void **state)
{
    (void)state;
    orphan_reg *r = open_reg();
    check_spared(r, "another-boot", 0);
    orphan_reg_close(r);
}

static void test_unsafe_directory(void **state)
{
    (void)state;
    assert_int_equal(chmod(g_dir, 0777), 0);
    orphan_reg *r = (orphan_reg *)1;
    dbld_status st;
    assert_int_equal(orphan_reg_open(g_dir, &r, &st), DBLD_INVALID_ARGUMENT);
    assert_null(r);
    assert_non_null(strstr(st.msg, "writable by group or others"));
    assert_non_null(strstr(st.msg, "DATABUILD_JOB_STATE_DIR"));
    assert_int_equal(chmod(g_dir, 0700), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_remove_and_live_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_slot_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_slots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_owner_swept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_by_leader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_by_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_boot_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
