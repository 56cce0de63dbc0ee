/* harness.c - the test runner, child processes, and PostgreSQL helpers.
 *
 * The runner (parent) never touches gRPC: it forks one child per test, and
 * everything with threads (gRPC clients, services) lives in that child. The
 * parent is a child subreaper, so services orphaned by a dead test are
 * reparented to it; after each test it kills the child's process group,
 * stops clusters left in the test directory and drops the databases whose
 * names carry the test's prefix. Nothing a test does can leak into the next.
 */
#define _GNU_SOURCE /* nftw, strsignal */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define H_DEFAULT_TIMEOUT_S 120

static struct {
    pid_t runner_pid;
    int in_child; /* 1 inside a forked test process */
    int no_fork;
    int keep;
    char root[256];   /* temporary directory of this run */
    char tdir[512];   /* current test's directory */
    const char *name; /* current test */
    int test_no;      /* index of the current test */
    char main_dsn[1024];
    h_pg *own_pg; /* cluster started by the runner when DBLD_TEST_PG is unset */
    int db_counter;
    int pg_counter;
} H;

static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

static void sweep_test(const char *tdir, int test_no);
static void runner_cleanup(void);

/* ---------------------------------------------------------------- output */

const char *h_test_name(void)
{
    return H.name ? H.name : "setup";
}
const char *h_test_dir(void)
{
    return H.tdir[0] ? H.tdir : H.root;
}

void h_note(const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "# %s: %s\n", h_test_name(), buf);
}

void h_fail(const char *file, int line, const char *fmt, ...)
{
    pthread_mutex_lock(&fail_mu); /* never unlocked: the first failure wins */
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    fprintf(stdout, "FAIL %s: %s:%d: %s\n", h_test_name(), base ? base + 1 : file, line, buf);
    fflush(stdout);
    fflush(stderr);
    if (H.in_child) _exit(1);
    exit(1); /* runner context: atexit cleanup runs */
}

/* ------------------------------------------------------------- processes */

/* Ports handed out by this process, so two calls never return the same one. */
static int given_ports[256];
static int n_given, next_slot;
static pthread_mutex_t port_mu = PTHREAD_MUTEX_INITIALIZER;

static int port_given(int port)
{
    for (int i = 0; i < n_given; i++)
        if (given_ports[i] == port) return 1;
    return 0;
}

/* The low end of the kernel's ephemeral port range (0 when unknown). */
static int ephemeral_low(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    int low = 0;
    if (f) {
        if (fscanf(f, "%d", &low) != 1) low = 0;
        fclose(f);
    }
    return low;
}

/* A port free now, taken below the ephemeral range when there is room: a
 * port bind(0) hands out is also where the kernel puts outgoing
 * connections, which can take it before the service binds it. 0 when the
 * candidate is in use. */
static int free_port_once(void)
{
    static unsigned seed;
    if (!seed) seed = (unsigned)getpid() ^ (unsigned)dbld_mono_ms();
    int low = ephemeral_low();
    int want = low > 11000 ? 10000 + (int)(rand_r(&seed) % (unsigned)(low - 10000)) : 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) H_FAIL("socket: %s", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)want)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        if (want && e == EADDRINUSE) return 0;
        H_FAIL("bind 127.0.0.1:%d: %s", want, strerror(e));
    }
    if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        H_FAIL("getsockname: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

int h_free_port(void)
{
    pthread_mutex_lock(&port_mu);
    int port = free_port_once();
    for (int i = 0; i < 1000 && (!port || port_given(port)); i++)
        port = free_port_once();
    if (!port) H_FAIL("no free port found");
    given_ports[next_slot] = port;
    next_slot = (next_slot + 1) % 256;
    if (n_given < 256) n_given++;
    pthread_mutex_unlock(&port_mu);
    return port;
}

static int pg_uid(uid_t *uid, gid_t *gid);

/* The unix user PostgreSQL runs as, or NULL when we are not root. */
static const char *pg_runas(void)
{
    if (geteuid() != 0) return NULL;
    const char *u = getenv("DBLD_TEST_PG_RUNAS");
    if (u && *u) return u;
    return "databuild";
}

int h_run(const char *const *argv, const char *log, int as_pg_user)
{
    const char *user = as_pg_user ? pg_runas() : NULL;
    if (user) {
        uid_t uid;
        gid_t gid;
        if (pg_uid(&uid, &gid) != 0) H_FAIL("no unix user %s for PostgreSQL", user);
    }
    pid_t pid = fork();
    if (pid < 0) H_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out =
            log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : open("/dev/null", O_WRONLY);
        if (in < 0 || out < 0) _exit(127);
        dup2(in, 0);
        dup2(out, 1);
        dup2(out, 2);
        if (chdir("/") != 0) _exit(127);
        const char *args[64];
        size_t n = 0;
        if (user) {
            args[n++] = "runuser";
            args[n++] = "-u";
            args[n++] = user;
            args[n++] = "--";
        }
        for (size_t i = 0; argv[i] && n < 63; i++)
            args[n++] = argv[i];
        args[n] = NULL;
        execvp(args[0], (char *const *)args);
        static const char msg[] = "harness: exec failed\n";
        if (write(2, msg, sizeof msg - 1) < 0) _exit(127);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) H_FAIL("waitpid: %s", strerror(errno));
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

char *h_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = dbld_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) buf = dbld_xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

void h_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) H_FAIL("write %s: %s", path, strerror(errno));
}

const char *h_bin_path(const char *kind, char *buf, size_t cap)
{
    const char *dir = getenv("DBLD_BIN_DIR");
    if (!dir || !*dir) dir = DBLD_BIN_DIR;
    snprintf(buf, cap, "%s/databuild-%s", dir, kind);
    return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS);
}

static void mkdir_or_fail(const char *path, mode_t mode)
{
    if (mkdir(path, mode) != 0 && errno != EEXIST) H_FAIL("mkdir %s: %s", path, strerror(errno));
    chmod(path, mode);
}

/* ------------------------------------------------------------ PostgreSQL */

static const char *pg_bin(void)
{
    static char dir[512];
    if (dir[0]) return dir;
    const char *env = getenv("DBLD_TEST_PGBIN");
    if (env && *env) {
        snprintf(dir, sizeof dir, "%s", env);
        return dir;
    }
    glob_t g;
    int best = -1;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
            if (v > best) {
                best = v;
                snprintf(dir, sizeof dir, "%s", g.gl_pathv[i]);
                *strrchr(dir, '/') = 0;
            }
        }
        globfree(&g);
    }
    if (best < 0) H_FAIL("no PostgreSQL found: set DBLD_TEST_PGBIN or install postgresql");
    return dir;
}

static int pg_uid(uid_t *uid, gid_t *gid)
{
    const char *user = pg_runas();
    if (!user) {
        *uid = geteuid();
        *gid = getegid();
        return 0;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw && strcmp(user, "databuild") == 0) {
        const char *argv[] = {"useradd", "-r", "-M", "-s", "/usr/sbin/nologin", "databuild", NULL};
        pid_t pid = fork();
        if (pid == 0) {
            execvp(argv[0], (char *const *)argv);
            _exit(127);
        }
        int status = 0;
        if (pid > 0) waitpid(pid, &status, 0);
        pw = getpwnam(user);
    }
    if (!pw) return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

static void pg_tool(char *buf, size_t cap, const char *tool)
{
    snprintf(buf, cap, "%s/%s", pg_bin(), tool);
}

static int pg_ctl(h_pg *c, const char *action, const char *mode)
{
    char tool[600];
    pg_tool(tool, sizeof tool, "pg_ctl");
    if (strcmp(action, "start") == 0) {
        const char *argv[] = {tool, "-D", c->data, "-l", c->log, "-w", "-t", "60", "start", NULL};
        return h_run(argv, c->log, 1);
    }
    const char *argv[] = {tool, "-D", c->data, "-m", mode, "-w", "-t", "60", action, NULL};
    return h_run(argv, c->log, 1);
}

static void pg_set_port(h_pg *c, int port)
{
    char conf[700];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", c->data);
    FILE *f = fopen(conf, "a");
    if (!f) H_FAIL("open %s: %s", conf, strerror(errno));
    fprintf(f, "port = %d\n", port);
    fclose(f);
    c->port = port;
    snprintf(c->dsn, sizeof c->dsn,
             "host=127.0.0.1 port=%d user=databuild dbname=postgres connect_timeout=5", port);
}

/* initdb into dir/data and start on a free port; dir must not exist. */
static h_pg *pg_cluster_create(const char *dir)
{
    h_pg *c = dbld_xcalloc(1, sizeof *c);
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->data, sizeof c->data, "%s/data", dir);
    snprintf(c->log, sizeof c->log, "%s/postgres.log", dir);
    uid_t uid;
    gid_t gid;
    if (pg_uid(&uid, &gid) != 0) H_FAIL("no unix user %s to run PostgreSQL as", pg_runas());
    mkdir_or_fail(dir, 0755);
    if (chown(dir, uid, gid) != 0) H_FAIL("chown %s: %s", dir, strerror(errno));
    /* the server appends to the log as the PostgreSQL user */
    int fd = open(c->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0 || fchown(fd, uid, gid) != 0) H_FAIL("create %s: %s", c->log, strerror(errno));
    close(fd);

    char initdb[600];
    pg_tool(initdb, sizeof initdb, "initdb");
    const char *argv[] = {initdb, "-A",         "trust", "-U", "databuild", "-E",
                          "UTF8", "--locale=C", "-N",    "-D", c->data,     NULL};
    int rc = h_run(argv, c->log, 1);
    if (rc != 0) H_FAIL("initdb -D %s exited with %d (see %s)", c->data, rc, c->log);

    char conf[700];
    snprintf(conf, sizeof conf, "%s/postgresql.conf", c->data);
    FILE *f = fopen(conf, "a");
    if (!f) H_FAIL("open %s: %s", conf, strerror(errno));
    fputs("\n# dbld test harness\n"
          "listen_addresses = '127.0.0.1'\n"
          "unix_socket_directories = ''\n"
          "max_connections = 300\n"
          "fsync = off\n"
          "full_page_writes = off\n"
          "log_min_messages = warning\n",
          f);
    fclose(f);
    for (int attempt = 0;; attempt++) {
        pg_set_port(c, h_free_port());
        if (pg_ctl(c, "start", NULL) == 0) break;
        if (attempt == 2) H_FAIL("pg_ctl start -D %s failed (see %s)", c->data, c->log);
    }
    c->running = 1;
    return c;
}

h_pg *h_pg_cluster_start(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/pg%d", h_test_dir(), ++H.pg_counter);
    return pg_cluster_create(dir);
}

void h_pg_stop(h_pg *c)
{
    int rc = pg_ctl(c, "stop", "fast");
    if (rc != 0) H_FAIL("pg_ctl stop -m fast -D %s exited with %d", c->data, rc);
    c->running = 0;
}

void h_pg_start(h_pg *c)
{
    int rc = pg_ctl(c, "start", NULL);
    if (rc != 0) H_FAIL("pg_ctl start -D %s (port %d) exited with %d", c->data, c->port, rc);
    c->running = 1;
}

void h_pg_destroy(h_pg *c)
{
    if (!c) return;
    if (c->running) pg_ctl(c, "stop", "immediate");
    rm_rf(c->dir);
    free(c);
}

const char *h_pg_dsn_main(void)
{
    return H.main_dsn;
}

static void conninfo_append(char *out, size_t cap, const char *key, const char *val)
{
    size_t n = strlen(out);
    if (n + strlen(key) + 2 * strlen(val) + 5 >= cap) H_FAIL("conninfo too long");
    n += (size_t)snprintf(out + n, cap - n, "%s%s='", n ? " " : "", key);
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\') out[n++] = '\\';
        out[n++] = *p;
    }
    out[n++] = '\'';
    out[n] = 0;
}

char *h_dsn_with_db(const char *dsn, const char *dbname)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    if (!opts) H_FAIL("bad conninfo \"%s\": %s", dsn, err ? err : "?");
    size_t cap = strlen(dsn) * 2 + strlen(dbname) * 2 + 256;
    char *out = dbld_xcalloc(1, cap);
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && *o->val && strcmp(o->keyword, "dbname") != 0)
            conninfo_append(out, cap, o->keyword, o->val);
    conninfo_append(out, cap, "dbname", dbname);
    PQconninfoFree(opts);
    return out;
}

static PGconn *pg_connect_or_fail(const char *file, int line, const char *dsn)
{
    PGconn *conn = PQconnectdb(dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(conn));
        PQfinish(conn);
        h_fail(file, line, "could not connect to \"%s\": %s", dsn, msg);
    }
    return conn;
}

static int valid_hint(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static void db_prefix(char *buf, size_t cap, int test_no)
{
    snprintf(buf, cap, "dbld_%d_t%d_", (int)H.runner_pid, test_no);
}

void h_db_create_at(const char *server_dsn, const char *hint, char *dsn_out, size_t cap)
{
    if (hint && (!valid_hint(hint) || strlen(hint) > 24))
        H_FAIL("database hint \"%s\" must be [a-z0-9_]{0,24}", hint);
    char prefix[64], name[96];
    db_prefix(prefix, sizeof prefix, H.test_no);
    snprintf(name, sizeof name, "%s%d%s%s", prefix, ++H.db_counter, hint ? "_" : "",
             hint ? hint : "");
    PGconn *conn = pg_connect_or_fail(__FILE__, __LINE__, server_dsn);
    char *ident = PQescapeIdentifier(conn, name, strlen(name));
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", ident);
    PQfreemem(ident);
    for (int attempt = 0;; attempt++) {
        PGresult *r = PQexec(conn, sql);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        if (ok) break;
        /* "source database template1 is being accessed by other users" is
         * transient when tests run in parallel */
        if (attempt < 20 && strstr(msg, "being accessed")) {
            dbld_sleep_ms(100);
            continue;
        }
        PQfinish(conn);
        H_FAIL("%s: %s", sql, msg);
    }
    PQfinish(conn);
    char *dsn = h_dsn_with_db(server_dsn, name);
    if (strlen(dsn) >= cap) H_FAIL("dsn buffer too small");
    snprintf(dsn_out, cap, "%s", dsn);
    free(dsn);
}

void h_db_create(const char *hint, char *dsn_out, size_t cap)
{
    h_db_create_at(H.main_dsn, hint, dsn_out, cap);
}

/* Drop every database whose name starts with prefix (runner side, best effort). */
static void drop_databases(const char *server_dsn, const char *prefix)
{
    PGconn *conn = PQconnectdb(server_dsn);
    if (PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        return;
    }
    const char *params[] = {prefix};
    PGresult *r =
        PQexecParams(conn, "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        for (int i = 0; i < PQntuples(r); i++) {
            const char *name = PQgetvalue(r, i, 0);
            char *ident = PQescapeIdentifier(conn, name, strlen(name));
            char sql[256];
            snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
            PQfreemem(ident);
            PQclear(PQexec(conn, sql));
        }
    }
    PQclear(r);
    PQfinish(conn);
}

/* ------------------------------------------------------------------ SQL */

struct h_rows {
    int n, cols;
    char **cells;
};

h_rows *h_sql_(const char *file, int line, const char *dsn, const char *sql,
               const char *const *params, int n)
{
    PGconn *conn = pg_connect_or_fail(file, line, dsn);
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType t = PQresultStatus(r);
    if (t != PGRES_TUPLES_OK && t != PGRES_COMMAND_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(conn);
        h_fail(file, line, "SQL failed: %s: %s", sql, msg);
    }
    h_rows *rows = dbld_xcalloc(1, sizeof *rows);
    rows->n = PQntuples(r);
    rows->cols = PQnfields(r);
    rows->cells = dbld_xcalloc((size_t)(rows->n * rows->cols) + 1, sizeof(char *));
    for (int i = 0; i < rows->n; i++)
        for (int j = 0; j < rows->cols; j++)
            if (!PQgetisnull(r, i, j))
                rows->cells[i * rows->cols + j] = dbld_xstrdup(PQgetvalue(r, i, j));
    PQclear(r);
    PQfinish(conn);
    return rows;
}

int h_rows_n(const h_rows *r)
{
    return r->n;
}

const char *h_rows_get(const h_rows *r, int row, int col)
{
    if (row < 0 || row >= r->n || col < 0 || col >= r->cols)
        H_FAIL("h_rows_get(%d, %d) outside %d x %d result", row, col, r->n, r->cols);
    return r->cells[row * r->cols + col];
}

long long h_rows_i64(const h_rows *r, int row, int col)
{
    const char *v = h_rows_get(r, row, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

void h_rows_free(h_rows *r)
{
    if (!r) return;
    for (int i = 0; i < r->n * r->cols; i++)
        free(r->cells[i]);
    free(r->cells);
    free(r);
}

long long h_pg_xact_commits(const char *dsn)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &err);
    if (!opts) H_FAIL("bad conninfo \"%s\": %s", dsn, err ? err : "?");
    char dbname[256] = "";
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (strcmp(o->keyword, "dbname") == 0 && o->val)
            snprintf(dbname, sizeof dbname, "%s", o->val);
    PQconninfoFree(opts);
    char *server = h_dsn_with_db(dsn, "postgres");
    h_rows *r =
        h_sql(server, "SELECT xact_commit FROM pg_stat_database WHERE datname = $1", dbname);
    free(server);
    if (h_rows_n(r) != 1) H_FAIL("no pg_stat_database row for database \"%s\"", dbname);
    long long n = h_rows_i64(r, 0, 0);
    h_rows_free(r);
    return n;
}

/* --------------------------------------------------------------- runner */

/* Print the tail (max_bytes) of every *.log file directly in dir. */
static void print_logs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_name[0] == '.') continue;
        struct stat sb;
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            print_logs(path); /* cluster directories hold postgres.log */
            continue;
        }
        if (l < 4 || strcmp(de->d_name + l - 4, ".log") != 0) continue;
        size_t len;
        char *text = h_read_file(path, &len);
        if (!text) continue;
        const size_t max_bytes = 12000;
        const char *start = text;
        if (len > max_bytes) {
            start = text + len - max_bytes;
            const char *nl = strchr(start, '\n');
            if (nl) start = nl + 1;
        }
        fprintf(stdout, "  --- %s%s ---\n", path, len > max_bytes ? " (tail)" : "");
        for (const char *p = start; *p;) {
            const char *nl = strchr(p, '\n');
            int n = nl ? (int)(nl - p) : (int)strlen(p);
            fprintf(stdout, "  | %.*s\n", n, p);
            p += n + (nl ? 1 : 0);
        }
        free(text);
    }
    closedir(d);
}

/* Stop every cluster under dir (dir/pgN/data/postmaster.pid). */
static void stop_clusters(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "pg", 2) != 0) continue;
        h_pg c = {0};
        snprintf(c.dir, sizeof c.dir, "%s/%s", dir, de->d_name);
        snprintf(c.data, sizeof c.data, "%s/data", c.dir);
        snprintf(c.log, sizeof c.log, "%s/postgres.log", c.dir);
        char pidfile[700];
        snprintf(pidfile, sizeof pidfile, "%s/postmaster.pid", c.data);
        if (access(pidfile, F_OK) == 0) pg_ctl(&c, "stop", "immediate");
        rm_rf(c.data);
    }
    closedir(d);
}

static void sweep_test(const char *tdir, int test_no)
{
    stop_clusters(tdir);
    char prefix[64];
    db_prefix(prefix, sizeof prefix, test_no);
    drop_databases(H.main_dsn, prefix);
    /* reap whatever was reparented to us */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static void runner_cleanup(void)
{
    if (getpid() != H.runner_pid || H.in_child) return;
    if (H.no_fork && H.name) sweep_test(H.tdir, H.test_no);
    if (H.own_pg) {
        h_pg_destroy(H.own_pg);
        H.own_pg = NULL;
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
    if (H.root[0] && !H.keep) rm_rf(H.root);
}

static void on_signal(int sig)
{
    signal(sig, SIG_DFL);
    runner_cleanup(); /* best effort; we are about to die anyway */
    raise(sig);
}

/* Sanitizer reports (ASan, UBSan, LSan in a `./dev test --asan` build) of
 * every process the test starts go to tdir/sanitizer.PID instead of their
 * stderr: set in the test process, inherited by what it spawns. */
static void sanitizer_logs_to(const char *tdir)
{
    static const char *const vars[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *old = getenv(vars[i]);
        char val[2048];
        snprintf(val, sizeof val, "%s%slog_path=%s/sanitizer", old && *old ? old : "",
                 old && *old ? ":" : "", tdir);
        setenv(vars[i], val, 1);
    }
}

/* After the test (its processes are gone): print each report in tdir and
 * return how many there were; any fails the test. */
static int sanitizer_reports(const char *name, const char *tdir)
{
    DIR *d = opendir(tdir);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "sanitizer.", 10) != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", tdir, de->d_name);
        char *text = h_read_file(path, NULL);
        fprintf(stdout, "FAIL %s: sanitizer report from pid %s:\n%s\n", name, de->d_name + 10,
                text ? text : "(unreadable)");
        free(text);
        n++;
    }
    closedir(d);
    return n;
}

static int run_child(const h_test *t, int timeout_s)
{
    pid_t pid = fork();
    if (pid < 0) H_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        H.in_child = 1;
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_IGN);
        alarm((unsigned)timeout_s);
        sanitizer_logs_to(H.tdir);
        t->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    setpgid(pid, pid);
    int status;
    int64_t deadline = dbld_mono_ms() + (int64_t)(timeout_s + 30) * 1000;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) H_FAIL("waitpid: %s", strerror(errno));
        if (dbld_mono_ms() > deadline) { /* alarm() did not end it */
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        dbld_sleep_ms(10);
    }
    kill(-pid, SIGKILL); /* the services it started */
    int rc;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else if (WIFEXITED(status))
        rc = 1; /* the child printed FAIL */
    else if (WTERMSIG(status) == SIGALRM || WTERMSIG(status) == SIGKILL) {
        fprintf(stdout, "FAIL %s: timed out after %d s\n", t->name, timeout_s);
        rc = 1;
    } else {
        fprintf(stdout, "FAIL %s: test process killed by signal %d (%s)\n", t->name,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
        rc = 1;
    }
    return rc;
}

static int selected(const char *name, int argc, char **argv, int first)
{
    if (first >= argc) return 1;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

static void setup_main_pg(void)
{
    const char *env = getenv("DBLD_TEST_PG");
    if (env && *env) {
        snprintf(H.main_dsn, sizeof H.main_dsn, "%s", env);
        PGconn *conn = PQconnectdb(env);
        if (PQstatus(conn) != CONNECTION_OK)
            H_FAIL("DBLD_TEST_PG=\"%s\": cannot connect: %s", env, PQerrorMessage(conn));
        PQfinish(conn);
        return;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/pg-main", H.root);
    int64_t t0 = dbld_mono_ms();
    H.own_pg = pg_cluster_create(dir);
    snprintf(H.main_dsn, sizeof H.main_dsn, "%s", H.own_pg->dsn);
    fprintf(stderr, "# started PostgreSQL on port %d in %lld ms (DBLD_TEST_PG unset)\n",
            H.own_pg->port, (long long)(dbld_mono_ms() - t0));
}

int h_main(int argc, char **argv, const h_test *tests, size_t n)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    H.runner_pid = getpid();
    int timeout_s = H_DEFAULT_TIMEOUT_S;
    const char *env_to = getenv("DBLD_TEST_TIMEOUT");
    if (env_to && atoi(env_to) > 0) timeout_s = atoi(env_to);
    int first = 1;
    for (; first < argc && argv[first][0] == '-'; first++) {
        if (strcmp(argv[first], "--list") == 0) {
            for (size_t i = 0; i < n; i++)
                printf("%s\n", tests[i].name);
            return 0;
        } else if (strcmp(argv[first], "--no-fork") == 0) {
            H.no_fork = 1;
        } else if (strcmp(argv[first], "--timeout") == 0 && first + 1 < argc) {
            timeout_s = atoi(argv[++first]);
        } else {
            fprintf(stderr, "usage: %s [--list] [--no-fork] [--timeout SECONDS] [TEST...]\n",
                    argv[0]);
            return 2;
        }
    }
    for (int i = first; i < argc; i++) {
        size_t j = 0;
        while (j < n && strcmp(tests[j].name, argv[i]) != 0)
            j++;
        if (j == n) {
            fprintf(stderr, "%s: no test named %s\n", argv[0], argv[i]);
            return 2;
        }
    }
    const char *keep = getenv("DBLD_TEST_KEEP");
    H.keep = keep && *keep && strcmp(keep, "0") != 0;

    const char *tmp = getenv("TMPDIR");
    snprintf(H.root, sizeof H.root, "%s/dbld-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(H.root)) H_FAIL("mkdtemp %s: %s", H.root, strerror(errno));
    chmod(H.root, 0755); /* the PostgreSQL user must reach its clusters */
    atexit(runner_cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1);

    setup_main_pg();

    int failed = 0, ran = 0;
    for (size_t i = 0; i < n; i++) {
        const h_test *t = &tests[i];
        if (!selected(t->name, argc, argv, first)) continue;
        H.name = t->name;
        H.test_no = (int)i;
        H.db_counter = 0;
        H.pg_counter = 0;
        snprintf(H.tdir, sizeof H.tdir, "%s/%s", H.root, t->name);
        mkdir_or_fail(H.tdir, 0755);
        int to = t->timeout_s > 0 ? t->timeout_s : timeout_s;
        int64_t t0 = dbld_mono_ms();
        int rc;
        if (H.no_fork) {
            sanitizer_logs_to(H.tdir);
            t->fn();
            rc = 0;
        } else {
            rc = run_child(t, to);
        }
        /* services still running were killed with the test: every report is written */
        if (sanitizer_reports(t->name, H.tdir) > 0) rc = 1;
        double secs = (double)(dbld_mono_ms() - t0) / 1000.0;
        ran++;
        if (rc == 0) {
            printf("ok %d - %s (%.1f s)\n", ran, t->name, secs);
        } else {
            failed++;
            printf("not ok %d - %s (%.1f s)\n", ran, t->name, secs);
            print_logs(H.tdir);
        }
        sweep_test(H.tdir, H.test_no);
        if (rc == 0 && !H.keep) rm_rf(H.tdir);
        H.name = NULL;
        H.tdir[0] = 0;
    }
    printf("# %d of %d tests passed\n", ran - failed, ran);
    if (H.keep) printf("# files kept in %s\n", H.root);
    fflush(stdout);
    return failed ? 1 : 0;
}
