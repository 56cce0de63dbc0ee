/* test_job_orphans.c - services/job/orphans.c: entries are written and
 * removed; the start-up sweep leaves a live job service's groups alone,
 * kills a dead one's group by its leader or (leader gone) by the mark in a
 * member's environment, spares a group that carries no mark (a recycled
 * id), and drops entries of another boot; an unsafe directory is refused. */
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
    assert_true(id > 0);
    assert_int_equal(n_entries(), 1);
    char name[96], text[ENTRY_MAX];
    entry_name(r, id, name, sizeof name);
    assert_true(read_small(r->dirfd, name, text, sizeof text) > 0);
    pstat ps;
    assert_int_equal(proc_stat(leader, &ps), 0);
    char want[256];
    snprintf(want, sizeof want, "v1 %s %s %d %llu\nDATABUILD_JOB_RUN_ID=live\n", r->boot, r->pidns,
             (int)leader, ps.start);
    assert_string_equal(text, want);

    /* Our own entries (a live owner's) are left alone. */
    assert_int_equal(orphan_reg_sweep(r), 0);
    assert_int_equal(n_entries(), 1);
    assert_true(alive(leader) && alive(member));

    orphan_reg_remove(r, id);
    assert_int_equal(n_entries(), 0);
    kill_group(leader, member, 1);
    orphan_reg_close(r);
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
        cmocka_unit_test_setup_teardown(test_sweep_by_leader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_by_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_boot_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsafe_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
