/* harness_svc.c - real service processes and EventLog calls for tests.
 *
 * A service is started exactly as an operator would: a YAML config file and
 * `databuild-<kind> --config FILE`, its stderr appended to <test dir>/<name>.log
 * (printed by the runner when the test fails). Readiness is polled, never
 * slept for: first a plain TCP connect to the port (so no gRPC channel sits
 * in reconnect backoff while the process boots), then grpc.health.v1 Check.
 * Services inherit the test process group, so the runner's kill of that group
 * ends them even when a test dies. A job service gets one environment
 * variable, DATABUILD_JOB_STATE_DIR=<test dir>/<name>.state.
 */
#define _GNU_SOURCE /* environ */
#include "harness.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define H_START_TIMEOUT_MS 20000

extern char **environ;

static int svc_counter;

/* "..." YAML double-quoted scalar of s into buf. */
static void yaml_quote(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    buf[n++] = '"';
    for (; *s && n + 4 < cap; s++) {
        if (*s == '"' || *s == '\\') buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n++] = '"';
    buf[n] = 0;
}

static void write_config(h_service *s, const h_service_opts *o)
{
    char dsn[1200], addr[128], peer[128];
    yaml_quote(dsn, sizeof dsn, s->dsn);
    yaml_quote(addr, sizeof addr, s->addr);
    const char *peer_addr = strcmp(s->kind, "eventlog") == 0 ? s->addr : o->eventlog_addr;
    char text[8192];
    int n = snprintf(text, sizeof text,
                     "# written by the integration test harness (%s)\n"
                     "shared:\n"
                     "  postgres_dsn: %s\n"
                     "  log_level: %s\n",
                     h_test_name(), dsn, o->log_level ? o->log_level : "debug");
    if (peer_addr) {
        yaml_quote(peer, sizeof peer, peer_addr);
        n += snprintf(text + n, sizeof text - (size_t)n, "  peers:\n    eventlog: %s\n", peer);
    }
    n += snprintf(text + n, sizeof text - (size_t)n, "%s:\n  listen: %s\n  workers: %d\n", s->kind,
                  addr, o->workers > 0 ? o->workers : 4);
    if (strcmp(s->kind, "eventlog") == 0)
        n += snprintf(text + n, sizeof text - (size_t)n,
                      "  group_commit_max_events: %d\n  db_pool_size: %d\n",
                      o->group_commit_max_events > 0 ? o->group_commit_max_events : 5000,
                      o->db_pool_size > 0 ? o->db_pool_size : 4);
    if (o->extra_section)
        n += snprintf(text + n, sizeof text - (size_t)n, "%s\n", o->extra_section);
    if ((size_t)n >= sizeof text) H_FAIL("config for %s too long", s->name);
    h_write_file(s->config_path, text);
}

static void spawn(h_service *s)
{
    char bin[600];
    h_bin_path(s->kind, bin, sizeof bin);
    if (access(bin, X_OK) != 0)
        H_FAIL("service binary %s: %s (build it first)", bin, strerror(errno));
    int log = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log < 0) H_FAIL("open %s: %s", s->log_path, strerror(errno));
    dprintf(log, "### harness: starting %s --config %s\n", bin, s->config_path);
    /* The config file is the whole truth: drop DATABUILD_* overrides the
     * caller's environment may carry. Built before fork: the child of a
     * threaded process may only make async-signal-safe calls. */
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **envp = dbld_xcalloc(n_env + 2, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "DATABUILD_", 10) != 0) envp[k++] = environ[i];
    /* A job service records its children's process groups in a directory of
     * its own, kept across restarts (so a restart after SIGKILL sweeps them). */
    char state_env[700];
    snprintf(state_env, sizeof state_env, "DATABUILD_JOB_STATE_DIR=%s/%s.state", h_test_dir(),
             s->name);
    if (strcmp(s->kind, "job") == 0) envp[k++] = state_env;
    char *argv[] = {bin, "--config", s->config_path, NULL};
    static const char exec_failed[] = "harness: exec of the service binary failed\n";
    pid_t pid = fork();
    if (pid < 0) H_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in < 0) _exit(127);
        dup2(in, 0);
        dup2(log, 1);
        dup2(log, 2);
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(bin, argv, envp);
        if (write(2, exec_failed, sizeof exec_failed - 1) < 0) _exit(127);
        _exit(127);
    }
    free(envp);
    close(log);
    s->pid = pid;
    s->exit_status = -1;
}

static int tcp_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* Whether the socket listening on 127.0.0.1:port (or any address) belongs
 * to process pid. Tests run in parallel and each picks free ports on its
 * own: another test's service may bind the port this one was given first,
 * and its health check would then answer for ours (a job service that
 * could not listen was taken for started, and its graph sent JobConfigure
 * to another test's event log). 1 when /proc cannot tell. */
static int listener_is(pid_t pid, int port)
{
    /* gRPC listens on an IPv6 socket (v4-mapped) where it can: both tables */
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    char suffix[16];
    snprintf(suffix, sizeof suffix, ":%04X", port);
    unsigned long inode = 0;
    int readable = 0;
    for (size_t t = 0; t < 2 && !inode; t++) {
        FILE *f = fopen(tables[t], "r");
        if (!f) continue;
        readable = 1;
        char line[512];
        while (!inode && fgets(line, sizeof line, f)) {
            char local[64], st[8];
            unsigned long ino;
            if (sscanf(line, " %*s %63s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &ino) != 3)
                continue;
            size_t ll = strlen(local);
            if (strcmp(st, "0A") == 0 && ll > 5 && strcmp(local + ll - 5, suffix) == 0) inode = ino;
        }
        fclose(f);
    }
    if (!readable) return 1;
    if (!inode) return 0; /* nobody listens (any more) */
    char dir[64], want[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    snprintf(want, sizeof want, "socket:[%lu]", inode);
    DIR *d = opendir(dir);
    if (!d) return 0; /* the process is gone */
    int mine = 0;
    for (struct dirent *e; !mine && (e = readdir(d));) {
        char path[384], link[64];
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n <= 0) continue;
        link[n] = 0;
        mine = strcmp(link, want) == 0;
    }
    closedir(d);
    return mine;
}

int h_service_alive(h_service *s)
{
    if (s->pid <= 0) return 0;
    int status;
    pid_t r = waitpid(s->pid, &status, WNOHANG);
    if (r == 0) return 1;
    if (r == s->pid)
        s->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    s->pid = 0;
    return 0;
}

int h_service_health(h_service *s, const char *service, int *serving, dbld_status *st)
{
    *serving = 0;
    return dbld_health_check(s->client, service, serving, 2000, st);
}

/* 1: the wanted state; 0: timeout; -1: the process exited. */
static int wait_health(h_service *s, const char *service, int serving, int64_t timeout_ms)
{
    int64_t deadline = dbld_mono_ms() + timeout_ms;
    int listening = 0;
    for (;;) {
        if (!h_service_alive(s)) return -1;
        /* the port answers, and it is this process that listens there */
        if (!listening) listening = tcp_open(s->port) && listener_is(s->pid, s->port);
        if (listening) {
            int is = 0;
            dbld_status st;
            if (h_service_health(s, service, &is, &st) == DBLD_OK && is == serving) return 1;
        }
        if (dbld_mono_ms() >= deadline) return 0;
        dbld_sleep_ms(20);
    }
}

int h_service_wait_health(h_service *s, const char *service, int serving, int64_t timeout_ms)
{
    int rc = wait_health(s, service, serving, timeout_ms);
    if (rc < 0)
        H_FAIL("%s exited with status %d (waiting for health %s=%s)", s->name, s->exit_status,
               service, serving ? "SERVING" : "NOT_SERVING");
    return rc;
}

static void pick_port(h_service *s)
{
    s->port = h_free_port();
    snprintf(s->addr, sizeof s->addr, "127.0.0.1:%d", s->port);
    s->client = dbld_client_get(s->addr);
}

h_service *h_service_spawn(const char *kind, const char *dsn, const h_service_opts *opts)
{
    h_service_opts dflt = {0};
    const h_service_opts *o = opts ? opts : &dflt;
    h_service *s = dbld_xcalloc(1, sizeof *s);
    snprintf(s->kind, sizeof s->kind, "%s", kind);
    snprintf(s->name, sizeof s->name, "%s-%d", kind, ++svc_counter);
    snprintf(s->dsn, sizeof s->dsn, "%s", dsn ? dsn : "");
    pick_port(s);
    snprintf(s->config_path, sizeof s->config_path, "%s/%s.yaml", h_test_dir(), s->name);
    snprintf(s->log_path, sizeof s->log_path, "%s/%s.log", h_test_dir(), s->name);
    write_config(s, o);
    spawn(s);
    return s;
}

char *h_service_refused(const char *kind, const char *dsn, const h_service_opts *opts)
{
    h_service *s = h_service_spawn(kind, dsn, opts);
    if (!H_POLL_UNTIL(10000, !h_service_alive(s))) {
        h_service_kill(s);
        H_FAIL("%s started with a config it should refuse (log: %s)", s->name, s->log_path);
    }
    if (s->exit_status != 2)
        H_FAIL("%s exited with status %d, want 2 (log: %s)", s->name, s->exit_status, s->log_path);
    /* every line is a JSON log record; the error is in one at level error */
    char *log = h_read_file(s->log_path, NULL);
    size_t cap = strlen(log ? log : "") + 64, len = 0;
    char *text = dbld_xcalloc(1, cap);
    char *save = NULL;
    for (char *line = strtok_r(log, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "### harness:", 12) == 0) continue; /* the harness's own lines */
        json_error_t jerr;
        json_t *j = json_loads(line, 0, &jerr);
        if (!j || !json_is_object(j))
            H_FAIL("%s: stderr line is not a JSON object (%s): %s", s->name, jerr.text, line);
        const char *level = json_string_value(json_object_get(j, "level"));
        const char *msg = json_string_value(json_object_get(j, "msg"));
        const char *err = json_string_value(json_object_get(json_object_get(j, "fields"), "error"));
        if (level && strcmp(level, "error") == 0)
            len +=
                (size_t)snprintf(text + len, cap - len, "%s: %s\n", msg ? msg : "", err ? err : "");
        json_decref(j);
    }
    free(log);
    if (len == 0) H_FAIL("%s exited 2 without logging an error (log: %s)", s->name, s->log_path);
    return text;
}

h_service *h_service_start(const char *kind, const char *dsn, const h_service_opts *opts)
{
    h_service *s = h_service_spawn(kind, dsn, opts);
    for (int attempt = 1;; attempt++) {
        int rc = wait_health(s, "", 1, H_START_TIMEOUT_MS);
        if (rc > 0) return s;
        if (rc == 0)
            H_FAIL("%s (%s) not SERVING within %d ms", s->name, s->addr, H_START_TIMEOUT_MS);
        /* exited: retry on another port only if this one was taken meanwhile */
        char *log = h_read_file(s->log_path, NULL);
        int port_taken = log && (strstr(log, "could not listen") || strstr(log, "in use"));
        free(log);
        if (!port_taken || attempt == 3)
            H_FAIL("%s exited with status %d before becoming SERVING", s->name, s->exit_status);
        h_note("%s: port %d was taken, retrying on another", s->name, s->port);
        pick_port(s);
        write_config(s, opts ? opts : &(h_service_opts){0});
        spawn(s);
    }
}

void h_service_respawn(h_service *s)
{
    if (h_service_alive(s)) H_FAIL("%s is still running (pid %d)", s->name, (int)s->pid);
    spawn(s);
}

void h_service_restart(h_service *s)
{
    h_service_respawn(s);
    if (!h_service_wait_health(s, "", 1, H_START_TIMEOUT_MS))
        H_FAIL("%s (%s) not SERVING within %d ms after restart", s->name, s->addr,
               H_START_TIMEOUT_MS);
}

int h_service_signal_wait(h_service *s, int sig, int64_t timeout_ms)
{
    if (s->pid <= 0) H_FAIL("%s is not running", s->name);
    pid_t pid = s->pid;
    if (kill(pid, sig) != 0) H_FAIL("kill(%d, %d): %s", (int)pid, sig, strerror(errno));
    if (timeout_ms <= 0) timeout_ms = 30000;
    if (!H_POLL_UNTIL(timeout_ms, !h_service_alive(s))) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        H_FAIL("%s did not exit within %lld ms of signal %d", s->name, (long long)timeout_ms, sig);
    }
    return s->exit_status;
}

void h_service_kill(h_service *s)
{
    h_service_signal_wait(s, SIGKILL, 10000);
}

void h_service_stop(h_service *s)
{
    int rc = h_service_signal_wait(s, SIGTERM, 30000);
    if (rc != 0) H_FAIL("%s exited with status %d after SIGTERM, want 0", s->name, rc);
}

/* -------------------------------------------------------------- EventLog */

int h_append(h_service *s, dbld_arena *a, Databuild__V1__BuildEvent **evs, size_t n,
             Databuild__V1__AppendResponse **resp, int64_t timeout_ms, dbld_status *st)
{
    Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
    req.n_events = n;
    req.events = evs;
    *resp = NULL;
    return dbld_client_unary(s->client, H_APPEND_PATH, &req.base,
                             &databuild__v1__append_response__descriptor, dbld_arena_allocator(a),
                             (ProtobufCMessage **)resp, timeout_ms, 0, st);
}

int h_list(h_service *s, dbld_arena *a, const Databuild__V1__EventFilter *filter, int64_t start_idx,
           uint32_t limit, Databuild__V1__EventPage **page, int64_t timeout_ms, dbld_status *st)
{
    Databuild__V1__ListEventsRequest req = DATABUILD__V1__LIST_EVENTS_REQUEST__INIT;
    req.filter = (Databuild__V1__EventFilter *)filter;
    req.start_idx = start_idx;
    req.limit = limit;
    *page = NULL;
    return dbld_client_unary(s->client, H_LIST_PATH, &req.base,
                             &databuild__v1__event_page__descriptor, dbld_arena_allocator(a),
                             (ProtobufCMessage **)page, timeout_ms, 0, st);
}

Databuild__V1__AppendResponse *h_append_ok_(const char *file, int line, h_service *s, dbld_arena *a,
                                            Databuild__V1__BuildEvent **evs, size_t n)
{
    Databuild__V1__AppendResponse *resp;
    dbld_status st = {0};
    int rc = h_append(s, a, evs, n, &resp, 30000, &st);
    if (rc != DBLD_OK)
        h_fail(file, line, "Append of %zu events: %s: %s", n, dbld_code_name(rc), st.msg);
    if (!resp || resp->n_events != n)
        h_fail(file, line, "Append of %zu events: response has %zu entries", n,
               resp ? resp->n_events : 0);
    return resp;
}

h_event_list h_list_all_(const char *file, int line, h_service *s, dbld_arena *a,
                         const Databuild__V1__EventFilter *filter, uint32_t limit)
{
    h_event_list out = {0};
    size_t cap = 0;
    int64_t start = 0;
    for (;;) {
        Databuild__V1__EventPage *page;
        dbld_status st = {0};
        int rc = h_list(s, a, filter, start, limit, &page, 30000, &st);
        if (rc != DBLD_OK)
            h_fail(file, line, "List(start_idx=%lld, limit=%u): %s: %s", (long long)start, limit,
                   dbld_code_name(rc), st.msg);
        out.pages++;
        if (limit && page->n_events > limit)
            h_fail(file, line, "List(limit=%u) returned %zu events", limit, page->n_events);
        if (page->n_events > 0 && page->next_idx <= start)
            h_fail(file, line, "List(start_idx=%lld) returned %zu events but next_idx %lld",
                   (long long)start, page->n_events, (long long)page->next_idx);
        if (page->n_events == 0 && page->has_more)
            h_fail(file, line, "List(start_idx=%lld) returned no events but has_more",
                   (long long)start);
        for (size_t i = 0; i < page->n_events; i++) {
            if (out.n == cap) {
                cap = cap ? cap * 2 : 256;
                Databuild__V1__BuildEvent **grown = dbld_arena_alloc(a, cap * sizeof *grown);
                if (out.n) memcpy(grown, out.events, out.n * sizeof *grown);
                out.events = grown;
            }
            out.events[out.n++] = page->events[i];
        }
        if (!page->has_more) break;
        start = page->next_idx;
        if (out.pages > 1000000) h_fail(file, line, "List paging does not end");
    }
    return out;
}

dbld_stream *h_subscribe(h_service *s, const Databuild__V1__EventFilter *filter, int64_t start_idx)
{
    Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
    req.filter = (Databuild__V1__EventFilter *)filter;
    req.start_idx = start_idx;
    dbld_stream *stream = NULL;
    dbld_status st = {0};
    int rc = dbld_client_stream_open(s->client, H_SUBSCRIBE_PATH, &req.base, 0, &stream, &st);
    if (rc != DBLD_OK)
        H_FAIL("Subscribe(start_idx=%lld): %s: %s", (long long)start_idx, dbld_code_name(rc),
               st.msg);
    return stream;
}

int h_stream_next(dbld_stream *stream, dbld_arena *a, Databuild__V1__IndexedEvent **out,
                  int64_t wait_ms, dbld_status *status)
{
    *out = NULL;
    return dbld_stream_next(stream, &databuild__v1__indexed_event__descriptor,
                            dbld_arena_allocator(a), (ProtobufCMessage **)out, wait_ms, status);
}
