/* cmd_events.c - `databuild events`: list (or --follow) the build event log.
 *
 * The seed's EventPage carries no per-event idx, but the output shows it. So a
 * listing is two passes: List pages through the filter to count the matching
 * events up to now (N), then Subscribe with the same filter and start delivers
 * them again as IndexedEvents, of which the first N are printed. idx order is
 * commit order, so events committed in between can only come after those N.
 * --follow is Subscribe alone, printed as it arrives.
 */
#include "cli.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/json.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PATH_LIST "/databuild.v1.EventLog/List"
#define PATH_SUBSCRIBE "/databuild.v1.EventLog/Subscribe"
#define PAGE_SIZE 1000
#define CATCH_UP_WAIT_MS 30000 /* max wait for one already-stored event on the second pass */

enum {
    OPT_FOLLOW,
    OPT_REF,
    OPT_PATTERN,
    OPT_JOB_LABEL,
    OPT_JOB_RUN_ID,
    OPT_BUILD_REQUEST_ID,
    OPT_FROM,
    OPT_LIMIT
};

typedef struct strlist {
    char **items;
    size_t n;
} strlist;

typedef struct events_args {
    int follow;
    strlist refs, patterns, labels, runs, builds;
    int64_t from;
    int64_t limit; /* 0 = no limit */
} events_args;

static void strlist_add(strlist *l, const char *s)
{
    l->items = dbld_xrealloc(l->items, (l->n + 1) * sizeof *l->items);
    l->items[l->n++] = (char *)s; /* borrowed from argv */
}

static int on_opt(cli_ctx *ctx, int id, const char *v, void *user)
{
    events_args *a = user;
    switch (id) {
    case OPT_FOLLOW:
        a->follow = 1;
        return 0;
    case OPT_REF:
        strlist_add(&a->refs, v);
        return 0;
    case OPT_PATTERN:
        strlist_add(&a->patterns, v);
        return 0;
    case OPT_JOB_LABEL:
        strlist_add(&a->labels, v);
        return 0;
    case OPT_JOB_RUN_ID:
        strlist_add(&a->runs, v);
        return 0;
    case OPT_BUILD_REQUEST_ID:
        strlist_add(&a->builds, v);
        return 0;
    case OPT_FROM:
        return cli_parse_i64(ctx, "from", v, &a->from);
    case OPT_LIMIT:
        return cli_parse_i64(ctx, "limit", v, &a->limit);
    default:
        return cli_fail(ctx, CLI_USAGE, "events: unexpected argument \"%s\" (see --help)", v);
    }
}

/* ---- human-readable lines ---- */

typedef struct sbuf {
    char buf[1024];
    size_t n;
} sbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *b, const char *fmt, ...)
{
    if (b->n >= sizeof b->buf - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->buf + b->n, sizeof b->buf - b->n, fmt, ap);
    va_end(ap);
    if (w > 0) b->n += (size_t)w < sizeof b->buf - b->n ? (size_t)w : sizeof b->buf - 1 - b->n;
}

/* Enum value name without its prefix: PARTITION_AVAILABLE -> AVAILABLE. */
static const char *enum_name(const ProtobufCEnumDescriptor *d, int value, const char *prefix,
                             char *tmp, size_t tmp_len)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v) {
        snprintf(tmp, tmp_len, "%d", value);
        return tmp;
    }
    size_t plen = strlen(prefix);
    return strncmp(v->name, prefix, plen) == 0 ? v->name + plen : v->name;
}

static void sb_refs(sbuf *b, Databuild__V1__PartitionRef **refs, size_t n)
{
    for (size_t i = 0; i < n && i < 3; i++)
        sb_printf(b, "%s%s", i ? ", " : "", refs[i] && refs[i]->str ? refs[i]->str : "?");
    if (n > 3) sb_printf(b, " (+%zu more)", n - 3);
    if (n == 0) sb_printf(b, "(no partitions)");
}

static const char *ref_str(const Databuild__V1__PartitionRef *r)
{
    return r && r->str && r->str[0] ? r->str : "?";
}

static void sb_message(sbuf *b, const char *label, const char *msg)
{
    if (msg && msg[0]) sb_printf(b, "%s%s", label, msg);
}

/* One line of text saying what the event is about. */
static void summarize(sbuf *b, const Databuild__V1__BuildEvent *ev)
{
    char tmp[16];
    switch (ev->event_type_case) {
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_REQUEST_EVENT: {
        const Databuild__V1__BuildRequestEvent *e = ev->build_request_event;
        int code = e->status ? (int)e->status->code : 0;
        sb_printf(b, "%s ",
                  enum_name(&databuild__v1__build_request_status_code__descriptor, code,
                            "BUILD_REQUEST_", tmp, sizeof tmp));
        sb_refs(b, e->requested_partitions, e->n_requested_partitions);
        sb_message(b, ": ", e->message);
        sb_message(b, " want ", e->want_id);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_EVENT: {
        const Databuild__V1__PartitionEvent *e = ev->partition_event;
        sb_printf(b, "%s -> %s", ref_str(e->partition_ref),
                  enum_name(&databuild__v1__partition_status__descriptor, (int)e->status_code,
                            "PARTITION_", tmp, sizeof tmp));
        sb_message(b, " run ", e->job_run_id);
        sb_message(b, ": ", e->message);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_EVENT: {
        const Databuild__V1__JobEvent *e = ev->job_event;
        sb_printf(b, "%s run %s -> %s [",
                  e->job_label && e->job_label->label[0] ? e->job_label->label : "?",
                  e->job_run_id[0] ? e->job_run_id : "?",
                  enum_name(&databuild__v1__job_status__descriptor, (int)e->status_code, "JOB_",
                            tmp, sizeof tmp));
        sb_refs(b, e->target_partitions, e->n_target_partitions);
        sb_printf(b, "]");
        sb_message(b, ": ", e->message);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_DELEGATION_EVENT: {
        const Databuild__V1__DelegationEvent *e = ev->delegation_event;
        sb_printf(b, "%s delegated to build %s", ref_str(e->partition_ref),
                  e->delegated_to_build_request_id[0] ? e->delegated_to_build_request_id : "?");
        sb_message(b, ": ", e->message);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_GRAPH_EVENT: {
        const Databuild__V1__JobGraphEvent *e = ev->job_graph_event;
        const Databuild__V1__JobGraph *g = e->job_graph;
        sb_printf(b, "graph %s: %zu task%s for ",
                  g && g->label && g->label->label[0] ? g->label->label : "-", g ? g->n_nodes : 0,
                  g && g->n_nodes == 1 ? "" : "s");
        sb_refs(b, g ? g->outputs : NULL, g ? g->n_outputs : 0);
        sb_message(b, ": ", e->message);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_PARTITION_INVALIDATION_EVENT: {
        const Databuild__V1__PartitionInvalidationEvent *e = ev->partition_invalidation_event;
        sb_printf(b, "%s invalidated", ref_str(e->partition_ref));
        sb_message(b, ": ", e->reason);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_JOB_RUN_CANCEL_EVENT: {
        const Databuild__V1__JobRunCancelEvent *e = ev->job_run_cancel_event;
        sb_printf(b, "run %s cancelled", e->job_run_id[0] ? e->job_run_id : "?");
        sb_message(b, ": ", e->reason);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_BUILD_CANCEL_EVENT:
        sb_printf(b, "build cancelled");
        sb_message(b, ": ", ev->build_cancel_event->reason);
        break;
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_WANT_EVENT: {
        const Databuild__V1__WantEvent *e = ev->want_event;
        sb_printf(b, "want %s for ", e->want_id[0] ? e->want_id : "?");
        sb_refs(b, e->requested_partitions, e->n_requested_partitions);
        if (e->source && e->source->source_type)
            sb_printf(b, " (%s)",
                      enum_name(&databuild__v1__source_type_code__descriptor,
                                (int)e->source->source_type->code, "", tmp, sizeof tmp));
        sb_message(b, ": ", e->comment);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_TAINT_EVENT: {
        const Databuild__V1__TaintEvent *e = ev->taint_event;
        sb_refs(b, e->refs, e->n_refs);
        sb_message(b, ": ", e->comment);
        break;
    }
    case DATABUILD__V1__BUILD_EVENT__EVENT_TYPE_EXECUTION_EVENT: {
        const Databuild__V1__ExecutionEvent *e = ev->execution_event;
        const ProtobufCFieldDescriptor *f =
            e->entry ? protobuf_c_message_descriptor_get_field(
                           &databuild__v1__execution_log_entry__descriptor,
                           (unsigned)e->entry->kind_case)
                     : NULL;
        sb_printf(b, "%s", f ? f->name : "state");
        if (e->execution) {
            sb_printf(b, " %s [%s%s", e->execution->job_label,
                      e->execution->n_outputs ? e->execution->outputs[0] : "",
                      e->execution->n_outputs > 1 ? ", ..." : "");
            sb_printf(b, "] attempts %zu, quota %d (build %d)", e->execution->n_attempts,
                      e->execution->used_quota, e->used_global_quota);
        }
        if (f && e->entry->kind_case == DATABUILD__V1__EXECUTION_LOG_ENTRY__KIND_RETRY_DENIED)
            sb_message(b, ": ", e->entry->retry_denied->reason);
        break;
    }
    default:
        sb_printf(b, "(no event type)");
    }
}

/* "partition" for the partition_event case, from the descriptor. */
static const char *kind_name(const Databuild__V1__BuildEvent *ev, char *out, size_t len)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(
        &databuild__v1__build_event__descriptor, (unsigned)ev->event_type_case);
    if (!f) return "-";
    size_t n = strlen(f->name);
    if (n > 6 && strcmp(f->name + n - 6, "_event") == 0) n -= 6;
    snprintf(out, len, "%.*s", (int)n, f->name);
    return out;
}

static void format_time(int64_t ns, char *out, size_t len)
{
    if (ns <= 0) {
        snprintf(out, len, "-");
        return;
    }
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t w = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + w, len - w, ".%03dZ", (int)(ns % 1000000000 / 1000000));
}

static void print_event(const cli_ctx *ctx, int64_t idx, const Databuild__V1__BuildEvent *ev)
{
    if (ctx->json) {
        json_t *o = json_object();
        json_object_set_new(o, "idx", json_integer(idx));
        json_object_set_new(o, "event", dbld_json_from_message(&ev->base, 0));
        char *text = json_dumps(o, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(o);
        return;
    }
    char when[40], kind[40];
    sbuf sum = {.n = 0};
    format_time(ev->timestamp, when, sizeof when);
    summarize(&sum, ev);
    printf("%-6" PRId64 "  %-24s  %-36s  %-22s  %s\n", idx, when,
           ev->build_request_id && ev->build_request_id[0] ? ev->build_request_id : "-",
           kind_name(ev, kind, sizeof kind), sum.buf);
}

/* ---- RPCs ---- */

/* Pass one: how many events match (up to a->limit), paging through List. */
static int count_matching(cli_ctx *ctx, dbld_client *c, const char *addr,
                          Databuild__V1__EventFilter *filter, const events_args *a, int64_t *count)
{
    Databuild__V1__ListEventsRequest req = DATABUILD__V1__LIST_EVENTS_REQUEST__INIT;
    req.filter = filter;
    req.start_idx = a->from;
    dbld_arena *arena = dbld_arena_create();
    int rc = CLI_OK;
    *count = 0;
    for (;;) {
        int64_t want = a->limit ? a->limit - *count : PAGE_SIZE;
        req.limit = (uint32_t)(want < PAGE_SIZE ? want : PAGE_SIZE);
        dbld_status st;
        ProtobufCMessage *resp = NULL;
        dbld_arena_reset(arena);
        if (dbld_client_unary(c, PATH_LIST, &req.base, &databuild__v1__event_page__descriptor,
                              dbld_arena_allocator(arena), &resp, ctx->timeout_ms, 0, &st) != 0) {
            rc = cli_rpc_fail(ctx, "list events", addr, &st);
            break;
        }
        const Databuild__V1__EventPage *page = (const Databuild__V1__EventPage *)resp;
        *count += page ? (int64_t)page->n_events : 0;
        if (!page || !page->has_more || (a->limit && *count >= a->limit)) break;
        if (page->next_idx <= req.start_idx) {
            rc = cli_fail(ctx, CLI_FAIL,
                          "list events (%s): server returned next_idx %" PRId64
                          " after start %" PRId64,
                          addr, page->next_idx, req.start_idx);
            break;
        }
        req.start_idx = page->next_idx;
    }
    dbld_arena_destroy(arena);
    return rc;
}

/* Subscribe and print events; stops after max events (0 = never). */
static int stream_events(cli_ctx *ctx, dbld_client *c, const char *addr,
                         Databuild__V1__EventFilter *filter, int64_t from, int64_t max,
                         int64_t wait_ms)
{
    Databuild__V1__SubscribeRequest req = DATABUILD__V1__SUBSCRIBE_REQUEST__INIT;
    req.filter = filter;
    req.start_idx = from;
    dbld_status st;
    dbld_stream *s = NULL;
    if (dbld_client_stream_open(c, PATH_SUBSCRIBE, &req.base, 0, &s, &st) != 0)
        return cli_rpc_fail(ctx, "subscribe", addr, &st);

    dbld_arena *arena = dbld_arena_create();
    int rc = CLI_OK;
    for (int64_t seen = 0; max == 0 || seen < max; seen++) {
        ProtobufCMessage *msg = NULL;
        dbld_arena_reset(arena);
        int code = dbld_stream_next(s, &databuild__v1__indexed_event__descriptor,
                                    dbld_arena_allocator(arena), &msg, wait_ms, &st);
        if (code != 0) {
            rc = cli_rpc_fail(ctx, "subscribe", addr, &st);
            break;
        }
        if (!msg) {
            rc = cli_fail(ctx, CLI_FAIL, "subscribe (%s): stream ended by the server", addr);
            break;
        }
        const Databuild__V1__IndexedEvent *ie = (const Databuild__V1__IndexedEvent *)msg;
        if (ie->event) print_event(ctx, ie->idx, ie->event);
        if (max == 0) fflush(stdout); /* following: show each event as it arrives */
    }
    dbld_arena_destroy(arena);
    dbld_stream_close(s);
    return rc;
}

int cmd_events(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"follow", 0, OPT_FOLLOW},
        {"ref", 1, OPT_REF},
        {"pattern", 1, OPT_PATTERN},
        {"job-label", 1, OPT_JOB_LABEL},
        {"job-run-id", 1, OPT_JOB_RUN_ID},
        {"build-request-id", 1, OPT_BUILD_REQUEST_ID},
        {"from", 1, OPT_FROM},
        {"limit", 1, OPT_LIMIT},
    };
    events_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_opt, &a);
    if (rc == 0) rc = cli_config(ctx);
    if (rc == 0) {
        Databuild__V1__EventFilter filter = DATABUILD__V1__EVENT_FILTER__INIT;
        filter.partition_refs = a.refs.items, filter.n_partition_refs = a.refs.n;
        filter.partition_patterns = a.patterns.items, filter.n_partition_patterns = a.patterns.n;
        filter.job_labels = a.labels.items, filter.n_job_labels = a.labels.n;
        filter.job_run_ids = a.runs.items, filter.n_job_run_ids = a.runs.n;
        filter.build_request_ids = a.builds.items, filter.n_build_request_ids = a.builds.n;

        const char *addr = cli_peer(ctx, "eventlog");
        dbld_client *c = dbld_client_get(addr);
        if (a.follow) {
            rc = stream_events(ctx, c, addr, &filter, a.from, a.limit, 0);
        } else {
            int64_t n = 0;
            rc = count_matching(ctx, c, addr, &filter, &a, &n);
            if (rc == 0 && n > 0)
                rc = stream_events(ctx, c, addr, &filter, a.from, n, CATCH_UP_WAIT_MS);
        }
    }
    free(a.refs.items);
    free(a.patterns.items);
    free(a.labels.items);
    free(a.runs.items);
    free(a.builds.items);
    return rc;
}
