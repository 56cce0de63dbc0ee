/* bench_build.c - end-to-end build throughput versus raw process spawning.
 *
 * The graph is the one bench/noop_job.c describes: noop/TAG/top/WxH needs W
 * mid partitions, each of which needs H leaves, so 1 + W + W*H tasks.
 *
 *   bench_build raw --job PATH --tag T --shape WxH --parallel P
 *       For each of the graph's tasks, spawn `PATH config REF` and then
 *       `PATH exec run` (posix_spawn, own process group, stdin /dev/null,
 *       stdout+stderr read through a pipe until EOF, then waitpid), from P
 *       threads taking tasks in turn. Dependencies are ignored: this is the
 *       spawn ceiling of the machine for the same work.
 *   bench_build config --job PATH --tag T --shape WxH
 *       Spawn the configure calls a batched analysis makes, sequentially:
 *       one per level (top; all mids; all leaves), each with all its refs
 *       (a level of more than 1 MiB of refs in calls of up to 1 MiB each).
 *   bench_build build --graph ADDR --tag T --shape WxH
 *       GraphBuilder/Build of noop/T/top/WxH; waits for the outcome and counts
 *       the manifests (one per job run).
 *   bench_build analyze --graph ADDR --tag T --shape WxH
 *       GraphBuilder/Analyze of noop/T/top/WxH; counts the tasks.
 *
 * Each mode prints one line of key=value pairs, e.g.
 *   raw parallel=8 jobs=2021 spawns=4042 seconds=1.234 jobs_per_s=1637.8
 */
#define _GNU_SOURCE /* pipe2 */
#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

typedef struct opts {
    const char *mode, *job, *graph, *tag;
    int w, h, parallel;
} opts;

/* ---- the graph's refs ---- */

static char *top_ref(const opts *o)
{
    char buf[256];
    snprintf(buf, sizeof buf, "noop/%s/top/%dx%d", o->tag, o->w, o->h);
    return dbld_xstrdup(buf);
}

/* Every task's ref: top, mids, leaves. */
static char **all_refs(const opts *o, size_t *n)
{
    size_t total = 1 + (size_t)o->w + (size_t)o->w * (size_t)o->h, k = 0;
    char **refs = dbld_xcalloc(total, sizeof *refs);
    char buf[256];
    refs[k++] = top_ref(o);
    for (int i = 0; i < o->w; i++) {
        snprintf(buf, sizeof buf, "noop/%s/mid/%dx%d/%d", o->tag, o->w, o->h, i);
        refs[k++] = dbld_xstrdup(buf);
    }
    for (int i = 0; i < o->w; i++)
        for (int j = 0; j < o->h; j++) {
            snprintf(buf, sizeof buf, "noop/%s/leaf/%dx%d/%d/%d", o->tag, o->w, o->h, i, j);
            refs[k++] = dbld_xstrdup(buf);
        }
    *n = k;
    return refs;
}

/* ---- spawning ---- */

/* Run argv to completion: output drained through a pipe. Returns the exit
 * status (0..255), or -1 with a message on stderr. */
static int run_process(char *const argv[])
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        perror("pipe2");
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "bench_build: spawn %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(fds[0], buf, sizeof buf);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        break;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            perror("waitpid");
            return -1;
        }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

typedef struct raw_ctx {
    const opts *o;
    char **refs;
    size_t n;
    atomic_size_t next;
    atomic_long failures;
} raw_ctx;

static void *raw_worker(void *arg)
{
    raw_ctx *c = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n) return NULL;
        char *cfg[] = {(char *)c->o->job, "config", c->refs[i], NULL};
        char *ex[] = {(char *)c->o->job, "exec", "run", NULL};
        if (run_process(cfg) != 0 || run_process(ex) != 0) atomic_fetch_add(&c->failures, 1);
    }
}

/* CPU time of this process and its reaped children, in ms. */
static double cpu_ms(void)
{
    struct rusage s, c;
    getrusage(RUSAGE_SELF, &s);
    getrusage(RUSAGE_CHILDREN, &c);
    double us = 0;
    const struct rusage *r[2] = {&s, &c};
    for (int i = 0; i < 2; i++)
        us += (double)(r[i]->ru_utime.tv_sec + r[i]->ru_stime.tv_sec) * 1e6 +
              (double)(r[i]->ru_utime.tv_usec + r[i]->ru_stime.tv_usec);
    return us / 1000.0;
}

static int mode_raw(const opts *o)
{
    raw_ctx c = {.o = o};
    c.refs = all_refs(o, &c.n);
    atomic_init(&c.next, 0);
    atomic_init(&c.failures, 0);
    int p = o->parallel > 0 ? o->parallel : 1;
    pthread_t *th = dbld_xcalloc((size_t)p, sizeof *th);
    int64_t t0 = dbld_now_ns();
    double cpu0 = cpu_ms();
    for (int i = 0; i < p; i++)
        pthread_create(&th[i], NULL, raw_worker, &c);
    for (int i = 0; i < p; i++)
        pthread_join(th[i], NULL);
    double secs = (double)(dbld_now_ns() - t0) / 1e9;
    double cpu = cpu_ms() - cpu0;
    printf("raw parallel=%d jobs=%zu spawns=%zu failures=%ld seconds=%.3f jobs_per_s=%.1f "
           "cpu_ms_per_job=%.2f\n",
           p, c.n, 2 * c.n, (long)atomic_load(&c.failures), secs, (double)c.n / secs,
           cpu / (double)c.n);
    for (size_t i = 0; i < c.n; i++)
        free(c.refs[i]);
    free(c.refs);
    free(th);
    return atomic_load(&c.failures) ? 1 : 0;
}

/* The configure calls of a batched analysis: one per level, all refs at once
 * up to 1 MiB of arguments (the graph service's split, services/graph/analyze.c). */
#define CALL_ARG_BYTES ((size_t)1 << 20)

static int mode_config(const opts *o)
{
    size_t n;
    char **refs = all_refs(o, &n);
    size_t levels[3][2] = {{0, 1}, {1, 1 + (size_t)o->w}, {1 + (size_t)o->w, n}};
    int64_t t0 = dbld_now_ns();
    int bad = 0, spawns = 0;
    for (int l = 0; l < 3; l++) {
        size_t from = levels[l][0], to = levels[l][1];
        char **argv = dbld_xcalloc(to - from + 3, sizeof *argv);
        argv[0] = (char *)o->job;
        argv[1] = "config";
        while (from < to) {
            size_t k = 2, bytes = 0;
            for (; from < to; from++) {
                size_t b = strlen(refs[from]) + 1 + sizeof(char *);
                if (k > 2 && bytes + b > CALL_ARG_BYTES) break;
                bytes += b;
                argv[k++] = refs[from];
            }
            argv[k] = NULL;
            if (run_process(argv) != 0) bad = 1;
            spawns++;
        }
        free(argv);
    }
    double secs = (double)(dbld_now_ns() - t0) / 1e9;
    printf("config spawns=%d refs=%zu seconds=%.3f\n", spawns, n, secs);
    for (size_t i = 0; i < n; i++)
        free(refs[i]);
    free(refs);
    return bad;
}

/* ---- through the services ---- */

static int call_graph(const opts *o, int analyze)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionRef ref = DATABUILD__V1__PARTITION_REF__INIT;
    Databuild__V1__PartitionRef *refs[1] = {&ref};
    ref.str = top_ref(o);
    Databuild__V1__GraphBuildRequest breq = DATABUILD__V1__GRAPH_BUILD_REQUEST__INIT;
    Databuild__V1__GraphAnalyzeRequest areq = DATABUILD__V1__GRAPH_ANALYZE_REQUEST__INIT;
    breq.outputs = areq.outputs = refs;
    breq.n_outputs = areq.n_outputs = 1;
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    size_t expect = 1 + (size_t)o->w + (size_t)o->w * (size_t)o->h;
    int64_t t0 = dbld_now_ns();
    int rc =
        analyze ? dbld_client_unary(dbld_client_get(o->graph), "/databuild.v1.GraphBuilder/Analyze",
                                    &areq.base, &databuild__v1__graph_analyze_response__descriptor,
                                    dbld_arena_allocator(a), &resp, 3600000, 0, &st)
                : dbld_client_unary(dbld_client_get(o->graph), "/databuild.v1.GraphBuilder/Build",
                                    &breq.base, &databuild__v1__graph_build_response__descriptor,
                                    dbld_arena_allocator(a), &resp, 3600000, 0, &st);
    double secs = (double)(dbld_now_ns() - t0) / 1e9;
    if (rc != 0) {
        fprintf(stderr, "bench_build: %s %s: %s: %s\n", analyze ? "analyze" : "build", ref.str,
                dbld_code_name(rc), st.msg);
    } else if (analyze) {
        const Databuild__V1__GraphAnalyzeResponse *r =
            (const Databuild__V1__GraphAnalyzeResponse *)resp;
        size_t n = r && r->graph ? r->graph->n_nodes : 0;
        printf("analyze tasks=%zu expected=%zu seconds=%.3f\n", n, expect, secs);
        if (n != expect) rc = 1;
    } else {
        const Databuild__V1__GraphBuildResponse *r =
            (const Databuild__V1__GraphBuildResponse *)resp;
        size_t n = r ? r->n_manifests : 0;
        printf("service parallel=%d jobs=%zu expected=%zu seconds=%.3f jobs_per_s=%.1f\n",
               o->parallel, n, expect, secs, (double)n / secs);
        if (n != expect) rc = 1;
    }
    free(ref.str);
    dbld_arena_destroy(a);
    return rc ? 1 : 0;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr, "usage: bench_build raw|config --job PATH | build|analyze --graph ADDR\n"
                    "                   --tag T --shape WxH [--parallel P]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    opts o = {.tag = "t", .w = 20, .h = 100, .parallel = 1};
    if (argc < 2) usage();
    o.mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        i++;
        if (!strcmp(k, "--job"))
            o.job = v;
        else if (!strcmp(k, "--graph"))
            o.graph = v;
        else if (!strcmp(k, "--tag"))
            o.tag = v;
        else if (!strcmp(k, "--parallel"))
            o.parallel = atoi(v);
        else if (!strcmp(k, "--shape")) {
            if (sscanf(v, "%dx%d", &o.w, &o.h) != 2 || o.w < 1 || o.h < 1) usage();
        } else
            usage();
    }
    int rc;
    if (!strcmp(o.mode, "raw") && o.job)
        rc = mode_raw(&o);
    else if (!strcmp(o.mode, "config") && o.job)
        rc = mode_config(&o);
    else if (!strcmp(o.mode, "build") && o.graph)
        rc = call_graph(&o, 0);
    else if (!strcmp(o.mode, "analyze") && o.graph)
        rc = call_graph(&o, 1);
    else
        usage();
    dbld_client_shutdown_all();
    return rc;
}
