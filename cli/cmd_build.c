/* cmd_build.c - `databuild build` (submit, follow live, result) and
 * `databuild analyze` (print the job graph).
 *
 * build: GraphBuilder/Submit returns the build request id at once; the
 * progress then comes from the event log, EventLog/Subscribe filtered on that
 * id from idx 0 (so nothing between Submit and Subscribe is missed). The job
 * graph event gives the tasks; each JobEvent moves its task (found by its
 * first target partition) between pending, running, done and failed. The
 * build request's terminal event (COMPLETED, FAILED, CANCELLED,
 * PRECONDITION_FAILED) ends the loop; the requested partitions' final status
 * comes from PartitionClaims/Status (the event log's partitions projection),
 * so a partition that was already AVAILABLE (its job SKIPPED, no partition
 * event of this build) is reported as it is. If the stream breaks, it is
 * re-opened from the last idx seen. Ctrl-C asks GraphBuilder/Cancel to stop
 * the build, waits briefly for the CANCELLED event, prints the result and
 * exits 130 (a second Ctrl-C exits at once).
 */
#include "cmd_build.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/strmap.h"
#include "dbld/arena.h"
#include "dbld/json.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define PATH_SUBMIT "/databuild.v1.GraphBuilder/Submit"
#define PATH_CANCEL "/databuild.v1.GraphBuilder/Cancel"
#define PATH_ANALYZE "/databuild.v1.GraphBuilder/Analyze"
#define PATH_SUBSCRIBE "/databuild.v1.EventLog/Subscribe"
#define PATH_STATUS "/databuild.v1.PartitionClaims/Status"

#define POLL_MS 200               /* stream wait between checks of Ctrl-C / redraws */
#define REDRAW_MS 100             /* TTY progress line at most this often */
#define RESUBSCRIBE_FOR_MS 30000  /* keep re-opening a broken stream this long */
#define CANCEL_TIMEOUT_MS 40000   /* the graph waits up to 30 s for the cancel to land */
#define AFTER_CANCEL_WAIT_MS 5000 /* then wait this long for the CANCELLED event */
#define ANALYZE_DEFAULT_MS 300000 /* analyze's deadline unless --timeout is given */

#define BR(x) DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_##x
#define PS(x) DATABUILD__V1__PARTITION_STATUS__PARTITION_##x
#define JS(x) DATABUILD__V1__JOB_STATUS__JOB_##x

/* ------------------------------------------------------------ helpers */

typedef struct strvec {
    const char **items;
    size_t n;
} strvec;

static void strvec_add(strvec *v, const char *s)
{
    v->items = dbld_xrealloc(v->items, (v->n + 1) * sizeof *v->items);
    v->items[v->n++] = s;
}

/* string -> index (lib's map, malloc-backed; zeroed is empty); keys are
 * borrowed. -1: absent. */
typedef dbld_strmap smap;

/* Keeps the first value put for a key. */
static void smap_put(smap *m, const char *key, int val)
{
    size_t next = (size_t)val;
    dbld_strmap_index(m, key, &next, NULL);
}

static int smap_get(const smap *m, const char *key)
{
    size_t v = dbld_strmap_find(m, key);
    return v == DBLD_STRMAP_NONE ? -1 : (int)v;
}

static void smap_free(smap *m)
{
    dbld_strmap_free(m);
}

/* Enum value name, optionally without its prefix (PARTITION_AVAILABLE -> AVAILABLE). */
static const char *enum_str(const ProtobufCEnumDescriptor *d, int value, const char *prefix)
{
    static char tmp[4][24];
    static int k;
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v) {
        char *t = tmp[k++ & 3];
        snprintf(t, sizeof tmp[0], "%d", value);
        return t;
    }
    size_t n = prefix ? strlen(prefix) : 0;
    return n && strncmp(v->name, prefix, n) == 0 ? v->name + n : v->name;
}

static const char *br_name(int code)
{
    return enum_str(&databuild__v1__build_request_status_code__descriptor, code, "BUILD_REQUEST_");
}

static const char *ps_name(int code)
{
    return enum_str(&databuild__v1__partition_status__descriptor, code, "PARTITION_");
}

static const char *ref_str(const Databuild__V1__PartitionRef *r)
{
    return r && r->str ? r->str : "";
}

static const char *label_of(const Databuild__V1__Task *t)
{
    return t && t->job && t->job->label && t->job->label[0] ? t->job->label : "?";
}

/* Copy a message into arena a (pack + unpack). NULL on failure. */
static void *copy_msg(dbld_arena *a, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = dbld_xmalloc(len + 1);
    protobuf_c_message_pack(m, buf);
    void *out = protobuf_c_message_unpack(m->descriptor, dbld_arena_allocator(a), len, buf);
    free(buf);
    return out;
}

static void print_json_line(json_t *o)
{
    char *text = json_dumps(o, JSON_COMPACT);
    printf("%s\n", text ? text : "{}");
    free(text);
    json_decref(o);
}

/* cli_rpc_fail with the message on one line (job stderr tails hold newlines). */
static int rpc_fail(cli_ctx *ctx, const char *what, const char *addr, dbld_status *st)
{
    for (char *p = st->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = (p[1] && p[1] != '\n') ? '|' : ' ';
    return cli_rpc_fail(ctx, what, addr, st);
}

static int64_t default_timeout(const cli_ctx *ctx, int64_t fallback)
{
    /* --timeout given (anything but the 10 s default) wins */
    return ctx->timeout_ms != 10000 ? ctx->timeout_ms : fallback;
}

/* The configured event log address, ignoring --server (which names the graph). */
static const char *eventlog_peer(cli_ctx *ctx)
{
    size_t n = ctx->n_servers;
    ctx->n_servers = 0;
    const char *addr = cli_peer(ctx, "eventlog");
    ctx->n_servers = n;
    return addr;
}

/* ------------------------------------------------------------ signals */

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    if (g_signal) _exit(128 + g_signal); /* second Ctrl-C: leave now */
    g_signal = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ------------------------------------------------------------ build: state */

typedef enum {
    T_PENDING,
    T_RUNNING,
    T_RETRYING,
    T_DELEGATED,
    T_DONE,
    T_SKIPPED,
    T_FAILED,
    T_CANCELLED
} tstate;

typedef struct btask {
    const Databuild__V1__Task *task; /* in f->ga */
    tstate st;
    int attempts;
    int64_t run_ns; /* timestamp of the last RUNNING event */
} btask;

typedef struct req_part {
    const char *ref;
    int ev_status; /* last PartitionEvent status of this build (0: none) */
    char *ev_msg;  /* malloc'd */
    int status;    /* final, from PartitionClaims/Status (-1: unknown) */
} req_part;

typedef struct follow {
    cli_ctx *ctx;
    const char *graph_addr, *el_addr;
    char id[64];
    int tty, quiet, width;
    strvec refs;
    req_part *parts;
    smap part_idx;

    dbld_arena *ga; /* the job graph */
    btask *tasks;
    size_t n_tasks;
    smap by_ref; /* output ref -> task */
    size_t n[T_CANCELLED + 1];
    size_t runs, retries, delegations;
    char graph_msg[512];

    int status; /* last BuildRequestStatusCode seen */
    char *message;
    int64_t last_idx;
    int64_t t0_ms;
    int64_t last_draw_ms;
    int line_shown;    /* a progress line is on screen (TTY) */
    char current[512]; /* most recently started task, for the TTY line */
} follow;

static int terminal(int code)
{
    return code == BR(COMPLETED) || code == BR(FAILED) || code == BR(CANCELLED) ||
           code == BR(PRECONDITION_FAILED);
}

static size_t n_running(const follow *f)
{
    return f->n[T_RUNNING] + f->n[T_RETRYING] + f->n[T_DELEGATED];
}

static void set_state(follow *f, btask *t, tstate s)
{
    f->n[t->st]--;
    t->st = s;
    f->n[s]++;
}

/* ------------------------------------------------------------ build: output */

static void clear_line(follow *f)
{
    if (f->tty && f->line_shown) {
        fputs("\r\033[K", stdout);
        f->line_shown = 0;
    }
}

static void progress_prefix(const follow *f, char *buf, size_t len)
{
    if (!f->n_tasks && !terminal(f->status)) {
        snprintf(buf, len, "[%s]", f->status ? br_name(f->status) : "SUBMITTED");
        return;
    }
    int w = snprintf(NULL, 0, "%zu", f->n_tasks);
    snprintf(buf, len, "[%*zu/%*zu/%*zu of %zu]", w, f->n[T_DONE] + f->n[T_SKIPPED], w,
             n_running(f), w, f->n[T_FAILED], f->n_tasks);
}

static void draw(follow *f, int force)
{
    if (!f->tty || f->ctx->json) return;
    int64_t now = dbld_mono_ms();
    if (!force && now - f->last_draw_ms < REDRAW_MS) return;
    f->last_draw_ms = now;
    char pre[96], line[1024];
    progress_prefix(f, pre, sizeof pre);
    int n = snprintf(line, sizeof line, "%s %5.1fs", pre, (double)(now - f->t0_ms) / 1000.0);
    if (f->n[T_CANCELLED])
        n += snprintf(line + n, sizeof line - (size_t)n, " (%zu cancelled)", f->n[T_CANCELLED]);
    if (f->current[0] && n_running(f))
        snprintf(line + n, sizeof line - (size_t)n, "  %s", f->current);
    else if (!f->n_tasks && f->status == BR(PLANNING))
        snprintf(line + n, sizeof line - (size_t)n, "  analyzing...");
    int w = f->width > 10 ? f->width - 1 : 79;
    if ((int)strlen(line) > w) line[w] = 0;
    fprintf(stdout, "\r\033[K%s", line);
    fflush(stdout);
    f->line_shown = 1;
}

/* A line that stays (above the progress line on a TTY). */
static void __attribute__((format(printf, 2, 3))) say(follow *f, const char *fmt, ...)
{
    if (f->ctx->json) return;
    clear_line(f);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    if (!f->tty) fflush(stdout);
    draw(f, 1);
}

/* A job's message under its line: each line indented (stderr tails span lines). */
static void say_message(follow *f, const char *msg)
{
    if (f->ctx->json || !msg || !msg[0]) return;
    clear_line(f);
    for (const char *p = msg; *p;) {
        size_t n = strcspn(p, "\n");
        printf("      %.*s\n", (int)n, p);
        p += n;
        if (*p) p++;
    }
    if (!f->tty) fflush(stdout);
    draw(f, 1);
}

static void outputs_text(const Databuild__V1__JobEvent *e, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < e->n_target_partitions && i < 2 && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
                              ref_str(e->target_partitions[i]));
    if (e->n_target_partitions > 2 && n < len)
        snprintf(buf + n, len - n, " (+%zu more)", e->n_target_partitions - 2);
}

/* ------------------------------------------------------------ build: events */

static void on_graph(follow *f, const Databuild__V1__JobGraphEvent *e)
{
    if (e->message) snprintf(f->graph_msg, sizeof f->graph_msg, "%s", e->message);
    if (!e->job_graph) return;
    if (f->tasks) { /* a resumed build re-plans: keep what we know, add new tasks */
        const Databuild__V1__JobGraph *g = copy_msg(f->ga, &e->job_graph->base);
        if (!g) return;
        for (size_t i = 0; i < g->n_nodes; i++) {
            const Databuild__V1__JobConfig *c = g->nodes[i]->config;
            if (!c || !c->n_outputs || smap_get(&f->by_ref, ref_str(c->outputs[0])) >= 0) continue;
            f->tasks = dbld_xrealloc(f->tasks, (f->n_tasks + 1) * sizeof *f->tasks);
            f->tasks[f->n_tasks] = (btask){.task = g->nodes[i], .st = T_PENDING};
            f->n[T_PENDING]++;
            for (size_t k = 0; k < c->n_outputs; k++)
                smap_put(&f->by_ref, ref_str(c->outputs[k]), (int)f->n_tasks);
            f->n_tasks++;
        }
        return;
    }
    const Databuild__V1__JobGraph *g = copy_msg(f->ga, &e->job_graph->base);
    if (!g) return;
    f->tasks = dbld_xcalloc(g->n_nodes + 1, sizeof *f->tasks);
    for (size_t i = 0; i < g->n_nodes; i++) {
        const Databuild__V1__JobConfig *c = g->nodes[i]->config;
        f->tasks[f->n_tasks] = (btask){.task = g->nodes[i], .st = T_PENDING};
        f->n[T_PENDING]++;
        for (size_t k = 0; c && k < c->n_outputs; k++)
            smap_put(&f->by_ref, ref_str(c->outputs[k]), (int)f->n_tasks);
        f->n_tasks++;
    }
}

static btask *task_for(follow *f, Databuild__V1__PartitionRef **refs, size_t n)
{
    if (!n) return NULL;
    int i = smap_get(&f->by_ref, ref_str(refs[0]));
    return i >= 0 ? &f->tasks[i] : NULL;
}

static void on_job(follow *f, const Databuild__V1__BuildEvent *ev)
{
    const Databuild__V1__JobEvent *e = ev->job_event;
    btask *t = task_for(f, e->target_partitions, e->n_target_partitions);
    const char *label = e->job_label && e->job_label->label[0] ? e->job_label->label : "?";
    char outs[300];
    outputs_text(e, outs, sizeof outs);
    char pre[96];
    const char *msg = e->message && e->message[0] ? e->message : NULL;
    switch (e->status_code) {
    case JS(SCHEDULED):
        if (t && t->st != T_RUNNING) set_state(f, t, T_RUNNING);
        break;
    case JS(RUNNING):
        if (t) {
            if (t->st != T_RUNNING) set_state(f, t, T_RUNNING);
            t->attempts++;
            t->run_ns = ev->timestamp;
        }
        f->runs++;
        snprintf(f->current, sizeof f->current, "%s %s", label, outs);
        break;
    case JS(COMPLETED): {
        double secs = t && t->run_ns && ev->timestamp > t->run_ns
                          ? (double)(ev->timestamp - t->run_ns) / 1e9
                          : 0;
        if (t) set_state(f, t, T_DONE);
        progress_prefix(f, pre, sizeof pre);
        if (!f->quiet && !f->tty) say(f, "%s built   %s  (%s, %.2fs)", pre, outs, label, secs);
        break;
    }
    case JS(SKIPPED):
        if (t) set_state(f, t, T_SKIPPED);
        progress_prefix(f, pre, sizeof pre);
        if (!f->quiet && !f->tty)
            say(f, "%s skipped %s  (%s: %s)", pre, outs, label, msg ? msg : "available");
        break;
    case JS(FAILED):
        if (msg && strstr(msg, "; retrying as ")) {
            f->retries++;
            if (t) set_state(f, t, T_RETRYING);
            progress_prefix(f, pre, sizeof pre);
            say(f, "%s retry   %s  (%s)", pre, outs, label);
            say_message(f, msg);
        } else {
            if (t) set_state(f, t, T_FAILED);
            progress_prefix(f, pre, sizeof pre);
            say(f, "%s FAILED  %s  (%s)", pre, outs, label);
            say_message(f, msg);
        }
        break;
    case JS(CANCELLED):
        if (t) set_state(f, t, T_CANCELLED);
        progress_prefix(f, pre, sizeof pre);
        if (!f->quiet && !f->tty)
            say(f, "%s cancelled %s  (%s: %s)", pre, outs, label, msg ? msg : "cancelled");
        break;
    default:
        break;
    }
}

static void on_partition(follow *f, const Databuild__V1__PartitionEvent *e)
{
    const char *ref = ref_str(e->partition_ref);
    int i = smap_get(&f->part_idx, ref);
    if (i >= 0 && e->status_code != PS(REQUESTED) && e->status_code != PS(ANALYZED)) {
        f->parts[i].ev_status = (int)e->status_code;
        free(f->parts[i].ev_msg);
        f->parts[i].ev_msg = e->message && e->message[0] ? dbld_xstrdup(e->message) : NULL;
    }
    if (e->status_code == PS(DELEGATED)) {
        int k = smap_get(&f->by_ref, ref);
        if (k >= 0 && f->tasks[k].st != T_DELEGATED) {
            set_state(f, &f->tasks[k], T_DELEGATED);
            f->delegations++;
        }
    }
}

/* Another build is producing this partition: ours waits for its outcome. */
static void on_delegation(follow *f, const Databuild__V1__DelegationEvent *e)
{
    const char *ref = ref_str(e->partition_ref);
    int k = smap_get(&f->by_ref, ref);
    if (k >= 0 && f->tasks[k].st != T_DELEGATED) {
        set_state(f, &f->tasks[k], T_DELEGATED);
        f->delegations++;
    }
    if (k >= 0) {
        const Databuild__V1__JobConfig *c = f->tasks[k].task->config;
        if (c && c->n_outputs && strcmp(ref_str(c->outputs[0]), ref) != 0)
            return; /* once per task */
    }
    char pre[96];
    progress_prefix(f, pre, sizeof pre);
    if (!f->quiet && !f->tty)
        say(f, "%s waiting %s  (being built by build %s)", pre, ref,
            e->delegated_to_build_request_id && e->delegated_to_build_request_id[0]
                ? e->delegated_to_build_request_id
                : "?");
}

static void on_build_request(follow *f, const Databuild__V1__BuildRequestEvent *e)
{
    int code = e->status ? (int)e->status->code : 0;
    f->status = code;
    if (code == BR(ANALYSIS_COMPLETED)) {
        say(f, "planned: %s", f->graph_msg[0] ? f->graph_msg : (e->message ? e->message : ""));
    } else if (code == BR(PLANNING) && e->message && strncmp(e->message, "resumed", 7) == 0) {
        say(f, "build %s", e->message);
    }
    if (terminal(code)) {
        free(f->message);
        f->message = dbld_xstrdup(e->message ? e->message : "");
    }
}

static void on_event(follow *f, int64_t idx, const Databuild__V1__BuildEvent *ev)
{
    if (idx > f->last_idx) f->last_idx = idx;
    if (f->ctx->json) {
        json_t *o = json_object();
        json_object_set_new(o, "idx", json_integer(idx));
        json_object_set_new(o, "event", dbld_json_from_message(&ev->base, 0));
        print_json_line(o);
        fflush(stdout);
    }
    switch (ev->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT:
        on_graph(f, ev->job_graph_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT:
        on_job(f, ev);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT:
        on_partition(f, ev->partition_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT:
        on_build_request(f, ev->build_request_event);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT:
        on_delegation(f, ev->delegation_event);
        break;
    default:
        break;
    }
    draw(f, 0);
}

/* ------------------------------------------------------------ build: RPCs */

static int submit(follow *f, const char *comment, int force)
{
    cli_ctx *ctx = f->ctx;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__SubmitBuildRequest req = DATABUILD__V1__SUBMIT_BUILD_REQUEST__INIT;
    req.n_outputs = f->refs.n;
    req.outputs = dbld_arena_alloc(a, f->refs.n * sizeof *req.outputs);
    for (size_t i = 0; i < f->refs.n; i++) {
        req.outputs[i] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        req.outputs[i]->str = (char *)f->refs.items[i];
    }
    req.comment = (char *)(comment ? comment : "");
    req.force = force;
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    int rc = CLI_OK;
    if (dbld_client_unary(dbld_client_get(f->graph_addr), PATH_SUBMIT, &req.base,
                          &databuild__v1__submit_build_response__descriptor,
                          dbld_arena_allocator(a), &resp, ctx->timeout_ms, 0, &st) != 0) {
        rc = rpc_fail(ctx, "submit build", f->graph_addr, &st);
    } else {
        const Databuild__V1__SubmitBuildResponse *r =
            (const Databuild__V1__SubmitBuildResponse *)resp;
        if (!r || !r->build_request_id || !r->build_request_id[0])
            rc = cli_fail(ctx, CLI_FAIL, "submit build (%s): no build_request_id in the reply",
                          f->graph_addr);
        else
            snprintf(f->id, sizeof f->id, "%s", r->build_request_id);
    }
    dbld_arena_destroy(a);
    return rc;
}

static void cancel_build(follow *f)
{
    Databuild__V1__CancelBuildRequest req = DATABUILD__V1__CANCEL_BUILD_REQUEST__INIT;
    req.build_request_id = f->id;
    req.reason = "interrupted (Ctrl-C) in databuild build";
    say(f, "interrupted: cancelling build %s ...", f->id);
    dbld_arena *a = dbld_arena_create();
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    if (dbld_client_unary(dbld_client_get(f->graph_addr), PATH_CANCEL, &req.base,
                          &databuild__v1__cancel_build_response__descriptor,
                          dbld_arena_allocator(a), &resp, CANCEL_TIMEOUT_MS, DBLD_CALL_IDEMPOTENT,
                          &st) != 0)
        say(f, "cancel (%s): %s: %s", f->graph_addr, dbld_code_name(st.code), st.msg);
    dbld_arena_destroy(a);
}

/* Final status of the requested partitions (f->parts[].status); 0 or -1. */
static int fetch_status(follow *f)
{
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionStatusRequest req = DATABUILD__V1__PARTITION_STATUS_REQUEST__INIT;
    req.refs = (char **)f->refs.items;
    req.n_refs = f->refs.n;
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    int rc = -1;
    if (dbld_client_unary(dbld_client_get(f->el_addr), PATH_STATUS, &req.base,
                          &databuild__v1__partition_status_response__descriptor,
                          dbld_arena_allocator(a), &resp, f->ctx->timeout_ms, DBLD_CALL_IDEMPOTENT,
                          &st) == 0 &&
        resp) {
        const Databuild__V1__PartitionStatusResponse *r =
            (const Databuild__V1__PartitionStatusResponse *)resp;
        for (size_t i = 0; i < r->n_partitions; i++) {
            int k = smap_get(&f->part_idx, r->partitions[i]->ref);
            if (k >= 0) f->parts[k].status = (int)r->partitions[i]->status;
        }
        rc = 0;
    }
    dbld_arena_destroy(a);
    return rc;
}

/* Follow the build until its terminal event (or Ctrl-C handling is over). */
static int follow_build(follow *f)
{
    cli_ctx *ctx = f->ctx;
    dbld_client *c = dbld_client_get(f->el_addr);
    char *ids[1] = {f->id};
    Databuild__V1__EventFilter filter = DATABUILD__V1__EVENT_FILTER__INIT;
    filter.build_request_ids = ids;
    filter.n_build_request_ids = 1;
    dbld_arena *a = dbld_arena_create();
    dbld_stream *s = NULL;
    dbld_status st;
    int rc = CLI_OK;
    int64_t broken_since = 0, cancel_deadline = 0;
    int cancelled = 0;
    while (!terminal(f->status)) {
        if (g_signal && !cancelled) {
            cancelled = 1;
            cancel_build(f);
            cancel_deadline = dbld_mono_ms() + AFTER_CANCEL_WAIT_MS;
        }
        if (cancelled && dbld_mono_ms() > cancel_deadline) break;
        if (!s) {
            Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
            req.filter = &filter;
            req.start_idx = f->last_idx + 1;
            if (dbld_client_stream_open(c, PATH_SUBSCRIBE, &req.base, 0, &s, &st) != 0) {
                s = NULL;
                if (!broken_since) broken_since = dbld_mono_ms();
                if (dbld_mono_ms() - broken_since > RESUBSCRIBE_FOR_MS) {
                    rc = rpc_fail(ctx, "subscribe", f->el_addr, &st);
                    break;
                }
                dbld_sleep_ms(500);
                continue;
            }
        }
        ProtobufCMessage *msg = NULL;
        dbld_arena_reset(a);
        int code = dbld_stream_next(s, &databuild__v1__indexed_event__descriptor,
                                    dbld_arena_allocator(a), &msg, POLL_MS, &st);
        if (code == DBLD_DEADLINE_EXCEEDED && !msg) {
            draw(f, 0);
            continue;
        }
        if (code == DBLD_INTERNAL && !msg) continue; /* one undecodable message */
        if (!msg) { /* the stream ended: re-open from the last idx */
            dbld_stream_close(s);
            s = NULL;
            if (!broken_since) broken_since = dbld_mono_ms();
            if (dbld_mono_ms() - broken_since > RESUBSCRIBE_FOR_MS) {
                if (code == 0) dbld_status_set(&st, DBLD_UNAVAILABLE, "stream ended by the server");
                rc = rpc_fail(ctx, "subscribe", f->el_addr, &st);
                break;
            }
            dbld_sleep_ms(500);
            continue;
        }
        broken_since = 0;
        const Databuild__V1__IndexedEvent *ie = (const Databuild__V1__IndexedEvent *)msg;
        if (ie->event) on_event(f, ie->idx, ie->event);
    }
    if (s) dbld_stream_close(s);
    dbld_arena_destroy(a);
    clear_line(f);
    if (rc != CLI_OK && !ctx->json)
        fprintf(stderr,
                "databuild: the build continues; follow it with: databuild events --follow "
                "--build-request-id %s\n",
                f->id);
    return rc;
}

/* ------------------------------------------------------------ build: result */

static int print_result(follow *f, int64_t elapsed_ms, int have_status)
{
    int all_ok = 1;
    for (size_t i = 0; i < f->refs.n; i++) {
        req_part *p = &f->parts[i];
        int s = have_status && p->status >= 0 ? p->status : p->ev_status;
        if (!have_status && !s) { /* a skipped task leaves no partition event */
            int k = smap_get(&f->by_ref, p->ref);
            if (k >= 0 && (f->tasks[k].st == T_SKIPPED || f->tasks[k].st == T_DONE))
                s = PS(AVAILABLE);
        }
        p->status = s;
        if (s != PS(AVAILABLE)) all_ok = 0;
    }
    if (f->ctx->json) {
        json_t *parts = json_array();
        for (size_t i = 0; i < f->refs.n; i++) {
            json_t *o = json_pack(
                "{s:s,s:s}", "ref", f->parts[i].ref, "status",
                enum_str(&databuild__v1__partition_status__descriptor, f->parts[i].status, NULL));
            if (f->parts[i].status != PS(AVAILABLE) && f->parts[i].ev_msg)
                json_object_set_new(o, "message", json_string(f->parts[i].ev_msg));
            json_array_append_new(parts, o);
        }
        json_t *r = json_pack(
            "{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:o}", "buildRequestId", f->id, "status",
            f->status
                ? enum_str(&databuild__v1__build_request_status_code__descriptor, f->status, NULL)
                : "UNKNOWN",
            "message", f->message ? f->message : "", "elapsedMs", (json_int_t)elapsed_ms, "tasks",
            (json_int_t)f->n_tasks, "built", (json_int_t)f->n[T_DONE], "skipped",
            (json_int_t)f->n[T_SKIPPED], "failed", (json_int_t)f->n[T_FAILED], "cancelled",
            (json_int_t)f->n[T_CANCELLED], "retries", (json_int_t)f->retries, "partitions", parts);
        json_t *o = json_object();
        json_object_set_new(o, "result", r);
        print_json_line(o);
        return all_ok;
    }
    printf("\nbuild %s %s in %.1fs", f->id, f->status ? br_name(f->status) : "(no outcome seen)",
           (double)elapsed_ms / 1000.0);
    if (f->n_tasks)
        printf(": %zu task%s, %zu built, %zu skipped, %zu failed, %zu cancelled", f->n_tasks,
               f->n_tasks == 1 ? "" : "s", f->n[T_DONE], f->n[T_SKIPPED], f->n[T_FAILED],
               f->n[T_CANCELLED]);
    if (f->retries) printf(", %zu retr%s", f->retries, f->retries == 1 ? "y" : "ies");
    if (f->delegations) printf(", %zu delegated", f->delegations);
    printf("\n");
    if (f->message && f->message[0] && f->status != BR(COMPLETED)) {
        for (const char *m = f->message; *m;) {
            size_t n = strcspn(m, "\n");
            printf("  %.*s\n", (int)n, m);
            m += n;
            if (*m) m++;
        }
    }
    int w = 9;
    for (size_t i = 0; i < f->refs.n; i++)
        if ((int)strlen(f->refs.items[i]) > w) w = (int)strlen(f->refs.items[i]);
    printf("  %-*s  %s\n", w, "PARTITION", "STATUS");
    for (size_t i = 0; i < f->refs.n; i++) {
        req_part *p = &f->parts[i];
        printf("  %-*s  %s", w, p->ref, p->status ? ps_name(p->status) : "UNKNOWN");
        if (p->status != PS(AVAILABLE) && p->ev_msg) {
            printf("  (");
            for (const char *m = p->ev_msg; *m; m++)
                fputs(*m == '\n' ? " | " : (char[2]){*m, 0}, stdout);
            printf(")");
        }
        printf("\n");
    }
    return all_ok;
}

/* ------------------------------------------------------------ build: command */

enum { OPT_COMMENT, OPT_DETACH, OPT_QUIET, OPT_EVENTLOG, OPT_TREE, OPT_FORCE };

typedef struct build_args {
    strvec refs;
    const char *comment, *eventlog;
    int detach, quiet, tree, force;
} build_args;

static int on_opt(cli_ctx *ctx, int id, const char *v, void *user)
{
    build_args *a = user;
    switch (id) {
    case -1:
        if (!v[0]) return cli_fail(ctx, CLI_USAGE, "empty partition ref");
        strvec_add(&a->refs, v);
        return 0;
    case OPT_COMMENT:
        a->comment = v;
        return 0;
    case OPT_DETACH:
        a->detach = 1;
        return 0;
    case OPT_QUIET:
        a->quiet = 1;
        return 0;
    case OPT_EVENTLOG:
        a->eventlog = v;
        return 0;
    case OPT_TREE:
        a->tree = 1;
        return 0;
    case OPT_FORCE:
        a->force = 1;
        return 0;
    default:
        return cli_fail(ctx, CLI_USAGE, "unexpected argument \"%s\" (see --help)", v);
    }
}

int cmd_build(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"comment", 1, OPT_COMMENT},   {"detach", 0, OPT_DETACH}, {"quiet", 0, OPT_QUIET},
        {"eventlog", 1, OPT_EVENTLOG}, {"force", 0, OPT_FORCE},
    };
    build_args args = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_opt, &args);
    if (rc == 0 && args.refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE, "build: no partition refs given (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc != 0) {
        free(args.refs.items);
        return rc;
    }

    follow f = {.ctx = ctx, .quiet = args.quiet, .last_idx = -1, .status = 0};
    f.graph_addr = cli_peer(ctx, "graph");
    f.el_addr = args.eventlog ? args.eventlog : eventlog_peer(ctx);
    f.refs = args.refs;
    f.tty = !ctx->json && isatty(STDOUT_FILENO);
    struct winsize ws;
    f.width = f.tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 80;
    f.parts = dbld_xcalloc(f.refs.n + 1, sizeof *f.parts);
    for (size_t i = 0; i < f.refs.n; i++) {
        f.parts[i] = (req_part){.ref = f.refs.items[i], .status = -1};
        smap_put(&f.part_idx, f.refs.items[i], (int)i);
    }
    f.ga = dbld_arena_create();

    install_signals();
    f.t0_ms = dbld_mono_ms();
    rc = submit(&f, args.comment, args.force);
    if (rc == 0 && args.detach) {
        if (ctx->json) {
            json_t *o = json_pack("{s:s}", "buildRequestId", f.id);
            print_json_line(o);
        } else {
            printf("%s\n", f.id);
        }
    } else if (rc == 0) {
        if (!ctx->json)
            say(&f, "build %s: %zu partition%s requested (graph %s, events from %s)", f.id,
                f.refs.n, f.refs.n == 1 ? "" : "s", f.graph_addr, f.el_addr);
        if (!ctx->json && f.tty) say(&f, "progress: [done/running/failed of total tasks]");
        rc = follow_build(&f);
        int64_t elapsed = dbld_mono_ms() - f.t0_ms;
        if (rc == 0) {
            int have = fetch_status(&f) == 0;
            int ok = print_result(&f, elapsed, have);
            if (g_signal) {
                rc = 128 + g_signal;
                if (!terminal(f.status))
                    cli_fail(ctx, rc, "interrupted; build %s did not confirm the cancel yet", f.id);
            } else if (!ok) {
                size_t bad = 0;
                for (size_t i = 0; i < f.refs.n; i++)
                    bad += f.parts[i].status != PS(AVAILABLE);
                rc = cli_fail(ctx, CLI_FAIL,
                              "build %s %s: %zu of %zu requested partition%s not available", f.id,
                              f.status ? br_name(f.status) : "ended", bad, f.refs.n,
                              f.refs.n == 1 ? "" : "s");
            }
        } else if (g_signal) {
            rc = 128 + g_signal;
        }
    }
    fflush(stdout);
    for (size_t i = 0; i < f.refs.n; i++)
        free(f.parts[i].ev_msg);
    free(f.parts);
    free(f.tasks);
    free(f.message);
    smap_free(&f.by_ref);
    smap_free(&f.part_idx);
    dbld_arena_destroy(f.ga);
    free(args.refs.items);
    return rc;
}

/* ------------------------------------------------------------ analyze */

typedef struct agraph {
    const Databuild__V1__JobGraph *g;
    smap by_ref;          /* output ref -> node */
    int *level;           /* per node */
    int *order;           /* nodes sorted by level, label, first output */
    unsigned char *shown; /* tree: node printed already */
} agraph;

static int node_level(agraph *ag, int i, int depth)
{
    if (ag->level[i] >= 0) return ag->level[i];
    if (depth > 100000) return 0;
    ag->level[i] = 0; /* cycle guard (the service rejects cycles anyway) */
    int lv = 0;
    const Databuild__V1__JobConfig *c = ag->g->nodes[i]->config;
    for (size_t k = 0; c && k < c->n_inputs; k++) {
        int j = smap_get(&ag->by_ref, ref_str(c->inputs[k]->partition_ref));
        if (j >= 0 && j != i) {
            int l = node_level(ag, j, depth + 1) + 1;
            if (l > lv) lv = l;
        }
    }
    return ag->level[i] = lv;
}

static const agraph *g_sort_ctx;

static const char *first_output(const Databuild__V1__Task *t)
{
    return t->config && t->config->n_outputs ? ref_str(t->config->outputs[0]) : "";
}

static int cmp_nodes(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    const agraph *ag = g_sort_ctx;
    if (ag->level[a] != ag->level[b]) return ag->level[a] - ag->level[b];
    int c = strcmp(label_of(ag->g->nodes[a]), label_of(ag->g->nodes[b]));
    if (c) return c;
    return strcmp(first_output(ag->g->nodes[a]), first_output(ag->g->nodes[b]));
}

static void print_table(agraph *ag)
{
    const Databuild__V1__JobGraph *g = ag->g;
    int wl = 3, wo = 7;
    for (size_t i = 0; i < g->n_nodes; i++) {
        int l = (int)strlen(label_of(g->nodes[i]));
        if (l > wl) wl = l;
        const Databuild__V1__JobConfig *c = g->nodes[i]->config;
        for (size_t k = 0; c && k < c->n_outputs; k++)
            if ((int)strlen(ref_str(c->outputs[k])) > wo) wo = (int)strlen(ref_str(c->outputs[k]));
    }
    printf("%-5s  %-*s  %-*s  %s\n", "LEVEL", wl, "JOB", wo, "OUTPUTS", "INPUTS");
    for (size_t n = 0; n < g->n_nodes; n++) {
        int i = ag->order[n];
        const Databuild__V1__JobConfig *c = g->nodes[i]->config;
        size_t n_out = c ? c->n_outputs : 0, n_in = c ? c->n_inputs : 0;
        size_t rows = n_out > n_in ? n_out : n_in;
        if (rows == 0) rows = 1;
        for (size_t r = 0; r < rows; r++) {
            char lv[16] = "";
            if (r == 0) snprintf(lv, sizeof lv, "%d", ag->level[i]);
            const char *out = r < n_out ? ref_str(c->outputs[r]) : "";
            const char *in = r < n_in ? ref_str(c->inputs[r]->partition_ref) : (r == 0 ? "-" : "");
            int ext = r < n_in && smap_get(&ag->by_ref, in) < 0;
            printf("%-5s  %-*s  %-*s  %s%s\n", lv, wl, r == 0 ? label_of(g->nodes[i]) : "", wo, out,
                   in, ext ? " *" : "");
        }
    }
}

static void print_tree_ref(agraph *ag, const char *ref, char *prefix, size_t plen, int last,
                           int root)
{
    int i = smap_get(&ag->by_ref, ref);
    printf("%s%s%s", prefix, root ? "" : (last ? "`-- " : "|-- "), ref);
    if (i < 0) {
        printf("  * external\n");
        return;
    }
    const Databuild__V1__JobConfig *c = ag->g->nodes[i]->config;
    printf("  [%s]", label_of(ag->g->nodes[i]));
    if (ag->shown[i]) {
        printf(c && c->n_inputs ? "  (inputs shown above)\n" : "\n");
        return;
    }
    printf("\n");
    ag->shown[i] = 1;
    size_t n = strlen(prefix);
    if (!root && n + 4 < plen) {
        memcpy(prefix + n, last ? "    " : "|   ", 5);
    }
    for (size_t k = 0; c && k < c->n_inputs; k++)
        print_tree_ref(ag, ref_str(c->inputs[k]->partition_ref), prefix, plen, k + 1 == c->n_inputs,
                       0);
    prefix[n] = 0;
}

int cmd_analyze(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"tree", 0, OPT_TREE}};
    build_args args = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_opt, &args);
    if (rc == 0 && args.refs.n == 0)
        rc = cli_fail(ctx, CLI_USAGE, "analyze: no partition refs given (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc != 0) {
        free(args.refs.items);
        return rc;
    }
    const char *addr = cli_peer(ctx, "graph");
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__GraphAnalyzeRequest req = DATABUILD__V1__GRAPH_ANALYZE_REQUEST__INIT;
    req.n_outputs = args.refs.n;
    req.outputs = dbld_arena_alloc(a, args.refs.n * sizeof *req.outputs);
    for (size_t i = 0; i < args.refs.n; i++) {
        req.outputs[i] = dbld_arena_msg(a, &databuild__v1__partition_ref__descriptor);
        req.outputs[i]->str = (char *)args.refs.items[i];
    }
    ProtobufCMessage *resp = NULL;
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    if (dbld_client_unary(dbld_client_get(addr), PATH_ANALYZE, &req.base,
                          &databuild__v1__graph_analyze_response__descriptor,
                          dbld_arena_allocator(a), &resp, default_timeout(ctx, ANALYZE_DEFAULT_MS),
                          0, &st) != 0) {
        rc = rpc_fail(ctx, "analyze", addr, &st);
    } else if (ctx->json) {
        char *text = dbld_json_encode(resp, 0);
        printf("%s\n", text);
        free(text);
    } else {
        int64_t ms = dbld_mono_ms() - t0;
        const Databuild__V1__GraphAnalyzeResponse *r =
            (const Databuild__V1__GraphAnalyzeResponse *)resp;
        static const Databuild__V1__JobGraph empty = DATABUILD__V1__JOB_GRAPH__INIT;
        agraph ag = {.g = r->graph ? r->graph : &empty};
        const Databuild__V1__JobGraph *g = ag.g;
        size_t n = g->n_nodes, n_ext = 0;
        ag.level = dbld_xcalloc(n + 1, sizeof *ag.level);
        ag.order = dbld_xcalloc(n + 1, sizeof *ag.order);
        ag.shown = dbld_xcalloc(n + 1, 1);
        for (size_t i = 0; i < n; i++) {
            ag.level[i] = -1;
            ag.order[i] = (int)i;
            const Databuild__V1__JobConfig *c = g->nodes[i]->config;
            for (size_t k = 0; c && k < c->n_outputs; k++)
                smap_put(&ag.by_ref, ref_str(c->outputs[k]), (int)i);
        }
        smap ext = {0};
        for (size_t i = 0; i < n; i++) {
            node_level(&ag, (int)i, 0);
            const Databuild__V1__JobConfig *c = g->nodes[i]->config;
            for (size_t k = 0; c && k < c->n_inputs; k++) {
                const char *in = ref_str(c->inputs[k]->partition_ref);
                if (smap_get(&ag.by_ref, in) < 0 && smap_get(&ext, in) < 0) {
                    smap_put(&ext, in, 1);
                    n_ext++;
                }
            }
        }
        int max_level = 0;
        for (size_t i = 0; i < n; i++)
            if (ag.level[i] > max_level) max_level = ag.level[i];
        printf("graph %s: %zu task%s in %d level%s",
               g->label && g->label->label[0] ? g->label->label : "-", n, n == 1 ? "" : "s",
               n ? max_level + 1 : 0, max_level == 0 ? "" : "s");
        if (n_ext) printf(", %zu external input%s (*)", n_ext, n_ext == 1 ? "" : "s");
        printf(" (analyzed in %.2fs)\n\n", (double)ms / 1000.0);
        if (args.tree) {
            char prefix[4096] = "";
            for (size_t i = 0; i < args.refs.n; i++)
                print_tree_ref(&ag, args.refs.items[i], prefix, sizeof prefix, 1, 1);
        } else {
            g_sort_ctx = &ag;
            qsort(ag.order, n, sizeof *ag.order, cmp_nodes);
            print_table(&ag);
        }
        smap_free(&ext);
        smap_free(&ag.by_ref);
        free(ag.level);
        free(ag.order);
        free(ag.shown);
    }
    dbld_arena_destroy(a);
    free(args.refs.items);
    return rc;
}
