/* metrics.c - the Prometheus registry and its HTTP endpoint.
 *
 * Families (name, help, type) hold series (a label set and a value). The
 * registry is a list guarded by one mutex, taken only to register a series
 * and to render; a series' value is a set of atomics that recording updates
 * with relaxed operations, so the hot path never locks and never allocates.
 * Histograms keep per-bucket counts (made cumulative when rendered) and the
 * sum as the bits of a double updated by compare-and-swap.
 */
#include "dbld/metrics.h"

#include "dbld/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

enum { M_COUNTER, M_GAUGE, M_GAUGE_FN, M_HISTOGRAM };

const double dbld_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t dbld_n_latency_buckets = sizeof dbld_latency_buckets / sizeof dbld_latency_buckets[0];

struct dbld_counter {
    atomic_uint_fast64_t v;
};
struct dbld_gauge {
    atomic_int_fast64_t v;
};
struct dbld_histogram {
    double *bounds;
    size_t n;
    atomic_uint_fast64_t *counts; /* n + 1 (the last is +Inf) */
    atomic_uint_fast64_t count;
    atomic_uint_fast64_t sum_bits; /* a double */
};

typedef struct series {
    char *labels; /* "" when none */
    union {
        struct dbld_counter c;
        struct dbld_gauge g;
        struct dbld_histogram h;
        struct {
            double (*fn)(void *);
            void *user;
        } f;
    } u;
    struct series *next;
} series;

typedef struct family {
    char *name, *help;
    int type;
    series *first, **tail;
    struct family *next;
} family;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static family *g_families, **g_tail = &g_families;

/* ---- registration (locked) ---- */

static family *family_get(const char *name, const char *help, int type)
{
    for (family *f = g_families; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    family *f = dbld_xcalloc(1, sizeof *f);
    f->name = dbld_xstrdup(name);
    f->help = dbld_xstrdup(help ? help : name);
    f->type = type;
    f->tail = &f->first;
    *g_tail = f;
    g_tail = &f->next;
    return f;
}

/* The series of name{labels}, made when new (*fresh = 1). Caller holds g_mu. */
static series *series_get(const char *name, const char *help, int type, const char *labels,
                          int *fresh)
{
    family *f = family_get(name, help, type);
    labels = labels ? labels : "";
    *fresh = 0;
    for (series *s = f->first; s; s = s->next)
        if (strcmp(s->labels, labels) == 0) return s;
    series *s = dbld_xcalloc(1, sizeof *s);
    s->labels = dbld_xstrdup(labels);
    *f->tail = s;
    f->tail = &s->next;
    *fresh = 1;
    return s;
}

dbld_counter *dbld_counter_get(const char *name, const char *help, const char *labels)
{
    int fresh;
    pthread_mutex_lock(&g_mu);
    series *s = series_get(name, help, M_COUNTER, labels, &fresh);
    pthread_mutex_unlock(&g_mu);
    return &s->u.c;
}

dbld_gauge *dbld_gauge_get(const char *name, const char *help, const char *labels)
{
    int fresh;
    pthread_mutex_lock(&g_mu);
    series *s = series_get(name, help, M_GAUGE, labels, &fresh);
    pthread_mutex_unlock(&g_mu);
    return &s->u.g;
}

void dbld_gauge_fn(const char *name, const char *help, const char *labels, double (*fn)(void *user),
                   void *user)
{
    int fresh;
    pthread_mutex_lock(&g_mu);
    series *s = series_get(name, help, M_GAUGE_FN, labels, &fresh);
    s->u.f.fn = fn;
    s->u.f.user = user;
    pthread_mutex_unlock(&g_mu);
}

dbld_histogram *dbld_histogram_get(const char *name, const char *help, const char *labels,
                                   const double *bounds, size_t n_bounds)
{
    int fresh;
    pthread_mutex_lock(&g_mu);
    series *s = series_get(name, help, M_HISTOGRAM, labels, &fresh);
    if (fresh) {
        s->u.h.n = n_bounds;
        s->u.h.bounds = dbld_xcalloc(n_bounds ? n_bounds : 1, sizeof *s->u.h.bounds);
        memcpy(s->u.h.bounds, bounds, n_bounds * sizeof *bounds);
        s->u.h.counts = dbld_xcalloc(n_bounds + 1, sizeof *s->u.h.counts);
    }
    pthread_mutex_unlock(&g_mu);
    return &s->u.h;
}

/* ---- recording (lock-free) ---- */

void dbld_counter_add(dbld_counter *c, uint64_t n)
{
    if (c) atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void dbld_gauge_set(dbld_gauge *g, int64_t v)
{
    if (g) atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void dbld_gauge_add(dbld_gauge *g, int64_t delta)
{
    if (g) atomic_fetch_add_explicit(&g->v, delta, memory_order_relaxed);
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

void dbld_histogram_observe(dbld_histogram *h, double v)
{
    if (!h) return;
    size_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- rendering ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        b->p = dbld_xrealloc(b->p, b->cap);
    }
}

/* name{labels[,extra]} */
static void put_name(buf *b, const char *name, const char *suffix, const char *labels,
                     const char *extra)
{
    int l = labels && *labels, e = extra && *extra;
    put(b, "%s%s%s%s%s%s%s", name, suffix, l || e ? "{" : "", l ? labels : "", l && e ? "," : "",
        e ? extra : "", l || e ? "}" : "");
}

static void put_histogram(buf *b, const family *f, const series *s)
{
    const struct dbld_histogram *h = &s->u.h;
    uint64_t cum = 0;
    char le[64];
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->n)
            snprintf(le, sizeof le, "le=\"%g\"", h->bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        put_name(b, f->name, "_bucket", s->labels, le);
        put(b, " %llu\n", (unsigned long long)cum);
    }
    put_name(b, f->name, "_sum", s->labels, NULL);
    put(b, " %.9g\n", bitsd(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
    put_name(b, f->name, "_count", s->labels, NULL);
    put(b, " %llu\n", (unsigned long long)cum);
}

static const char *type_name(int t)
{
    return t == M_COUNTER ? "counter" : t == M_HISTOGRAM ? "histogram" : "gauge";
}

static void put_family(buf *b, const family *f)
{
    if (!f->first) return;
    put(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, type_name(f->type));
    for (const series *s = f->first; s; s = s->next) {
        switch (f->type) {
        case M_COUNTER:
            put_name(b, f->name, "", s->labels, NULL);
            put(b, " %llu\n", (unsigned long long)atomic_load(&s->u.c.v));
            break;
        case M_GAUGE:
            put_name(b, f->name, "", s->labels, NULL);
            put(b, " %lld\n", (long long)atomic_load(&s->u.g.v));
            break;
        case M_GAUGE_FN:
            put_name(b, f->name, "", s->labels, NULL);
            put(b, " %.17g\n", s->u.f.fn(s->u.f.user));
            break;
        default:
            put_histogram(b, f, s);
        }
    }
}

/* process_* from /proc/self. */
static void put_process(buf *b)
{
    long page = sysconf(_SC_PAGESIZE), tick = sysconf(_SC_CLK_TCK);
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long rss = 0, threads = 0;
    char stat[1024] = {0};
    FILE *f = fopen("/proc/self/stat", "r");
    if (f) {
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        stat[n] = 0;
        fclose(f);
    }
    const char *p = strrchr(stat, ')');
    if (p) /* fields 3.. after "pid (comm)" */
        sscanf(p + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld %*d "
               "%llu %llu %ld",
               &utime, &stime, &threads, &start, &vsize, &rss);
    unsigned long long btime = 0;
    f = fopen("/proc/stat", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    if (f) fclose(f);
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    for (struct dirent *e; d && (e = readdir(d));)
        fds += e->d_name[0] != '.';
    if (d) closedir(d);
    struct rlimit rl = {0};
    getrlimit(RLIMIT_NOFILE, &rl);
    put(b,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n",
        (double)(utime + stime) / (double)tick);
    put(b,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %lld\n",
        (long long)rss * page);
    put(b,
        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %llu\n",
        vsize);
    put(b,
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
        fds > 0 ? fds - 1 : 0); /* not the directory's own fd */
    put(b,
        "# HELP process_max_fds Maximum number of open file descriptors.\n"
        "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n",
        (unsigned long long)rl.rlim_cur);
    put(b,
        "# HELP process_threads Number of OS threads in the process.\n"
        "# TYPE process_threads gauge\nprocess_threads %ld\n",
        threads);
    put(b,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
        (double)btime + (double)start / (double)tick);
}

char *dbld_metrics_render(void)
{
    buf b = {dbld_xcalloc(1, 4096), 0, 4096};
    pthread_mutex_lock(&g_mu);
    for (const family *f = g_families; f; f = f->next)
        put_family(&b, f);
    pthread_mutex_unlock(&g_mu);
    put_process(&b);
    return b.p;
}

/* ---- HTTP ---- */

static struct MHD_Daemon *g_httpd;
static int g_port;
static atomic_int g_serving; /* an endpoint serves the registry */

int dbld_metrics_enabled(void)
{
    return atomic_load_explicit(&g_serving, memory_order_relaxed);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **ctx)
{
    (void)cls, (void)version, (void)upload_data, (void)upload_size, (void)ctx;
    int ok = strcmp(method, "GET") == 0 && strcmp(url, "/metrics") == 0;
    char *text = ok ? dbld_metrics_render() : dbld_xstrdup("not found: GET /metrics\n");
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type",
                            ok ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain");
    enum MHD_Result rc = MHD_queue_response(conn, ok ? MHD_HTTP_OK : MHD_HTTP_NOT_FOUND, r);
    MHD_destroy_response(r);
    return rc;
}

int dbld_metrics_serve(const char *addr, dbld_status *st)
{
    if (!addr || !*addr || g_httpd) return 0;
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char host[64];
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (!colon || hl >= sizeof host)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "metrics_listen \"%s\": expected host:port", addr);
    memcpy(host, addr, hl);
    host[hl] = 0;
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "metrics_listen \"%s\": expected an IPv4 address and a port", addr);
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    g_httpd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                               on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                               MHD_OPTION_CONNECTION_LIMIT, 64U, MHD_OPTION_CONNECTION_TIMEOUT, 10U,
                               MHD_OPTION_END);
    if (!g_httpd)
        return dbld_status_set(st, DBLD_UNAVAILABLE, "could not serve metrics on %s", addr);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(g_httpd, MHD_DAEMON_INFO_BIND_PORT);
    g_port = info ? info->port : 0;
    atomic_store(&g_serving, 1);
    return 0;
}

int dbld_metrics_port(void)
{
    return g_port;
}

void dbld_metrics_stop(void)
{
    atomic_store(&g_serving, 0);
    if (g_httpd) MHD_stop_daemon(g_httpd);
    g_httpd = NULL;
    g_port = 0;
}
