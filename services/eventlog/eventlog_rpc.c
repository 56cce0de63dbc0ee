/* eventlog_rpc.c - the databuild.v1.EventLog service table and its handlers.
 * Handlers validate and translate; el_store does the database work. */
#include "eventlog_rpc.h"
#include "databuild_ext.pb-c.h"
#include "dbld/log.h"
#include "filter.h"
#include "hub.h"

#include <inttypes.h>
#include <string.h>

#define LIST_DEFAULT 500
#define LIST_MAX 5000
#define SUBSCRIBE_PAGE 500
#define SUBSCRIBE_WAIT_MS 250  /* an idle stream looks for cancellation this often */
#define SUBSCRIBE_RETRY_MS 500 /* while the database is down */

void el_async_done(void *arg, const dbld_status *st)
{
    el_async *as = arg;
    if (st->code)
        dbld_call_complete(as->call, st->code, st->msg, NULL);
    else
        dbld_call_complete(as->call, 0, NULL, as->respond(as, dbld_call_arena(as->call)));
}

typedef struct append_ctx {
    el_async as; /* first */
    el_event *evs;
    size_t n;
} append_ctx;

/* The batch holding this call's events committed. */
static ProtobufCMessage *append_respond(el_async *as, dbld_arena *a)
{
    append_ctx *ctx = (append_ctx *)as;
    Databuild__V1__AppendResponse *resp =
        dbld_arena_msg(a, &databuild__v1__append_response__descriptor);
    resp->n_events = ctx->n;
    resp->events = dbld_arena_alloc(a, ctx->n * sizeof *resp->events);
    for (size_t i = 0; i < ctx->n; i++) {
        Databuild__V1__AppendedEvent *e =
            dbld_arena_msg(a, &databuild__v1__appended_event__descriptor);
        e->idx = ctx->evs[i].idx;
        e->event_id = ctx->evs[i].ev->event_id;
        e->duplicate = ctx->evs[i].duplicate;
        resp->events[i] = e;
    }
    return &resp->base;
}

/* Runs on a poller thread (DBLD_METHOD_NONBLOCKING): validate, queue for the
 * group-commit writer and answer from append_respond, holding no thread while
 * the batch commits. */
static int append(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                  dbld_status *st)
{
    (void)resp_msg;
    el_store *store = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__AppendRequest *req = (const Databuild__V1__AppendRequest *)req_msg;
    if (req->n_events == 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "append request has no events");
    el_event *evs = dbld_arena_alloc(a, req->n_events * sizeof *evs);
    for (size_t i = 0; i < req->n_events; i++) {
        int rc = el_event_prepare(a, req->events[i], i, &evs[i], st);
        if (rc) return rc;
    }
    el_fence fence = {0};
    if (req->fence) {
        if (!*req->fence->build_request_id || !*req->fence->owner)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "append: fence needs both build_request_id and owner");
        fence = (el_fence){req->fence->build_request_id, req->fence->owner};
    }
    el_joblogs *logs = NULL;
    if (req->n_job_logs) {
        logs = dbld_arena_alloc(a, sizeof *logs);
        int rc = el_joblogs_prepare(a, req->job_logs, req->n_job_logs, logs, st);
        if (rc) {
            dbld_status_prefix(st, "append: job_logs");
            return rc;
        }
    }
    append_ctx *ctx = dbld_arena_alloc(a, sizeof *ctx);
    *ctx = (append_ctx){{call, append_respond}, evs, req->n_events};
    /* After a successful queueing the call belongs to the writer: touch nothing. */
    int rc = el_store_append_async(store, evs, req->n_events, req->fence ? &fence : NULL, logs, a,
                                   el_async_done, ctx, st);
    return rc ? rc : DBLD_ASYNC;
}

static int list(dbld_call *call, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                dbld_status *st)
{
    el_store *store = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    const Databuild__V1__ListEventsRequest *req = (const Databuild__V1__ListEventsRequest *)req_msg;
    if (req->start_idx < 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "start_idx must be >= 0, got %" PRId64,
                               req->start_idx);
    int limit = req->limit == 0 ? LIST_DEFAULT : req->limit > LIST_MAX ? LIST_MAX : (int)req->limit;
    int rc = el_kinds_check(req->kinds, req->n_kinds, "kinds", st);
    if (rc) return rc;
    rc = el_store_check_patterns(store, call, req->filter, st);
    if (rc) return rc;
    el_row *rows;
    size_t n;
    int has_more;
    rc = el_store_list(store, call, req->filter, req->kinds, req->n_kinds, req->start_idx, limit, a,
                       &rows, &n, &has_more, st);
    if (rc) return rc;
    Databuild__V1__EventPage *page = dbld_arena_msg(a, &databuild__v1__event_page__descriptor);
    page->n_events = n;
    page->events = dbld_arena_alloc(a, (n + 1) * sizeof *page->events);
    for (size_t i = 0; i < n; i++)
        page->events[i] = rows[i].ev;
    page->next_idx = n ? rows[n - 1].idx + 1 : req->start_idx;
    page->has_more = has_more;
    *resp_msg = &page->base;
    return 0;
}

/* ---- Subscribe ----
 *
 * A stream reads the commit feed (hub.h) while its position is inside the
 * ring, and PostgreSQL by pages (List's query, patterns applied in memory)
 * while it is below: when it starts in the past, or fell behind what the
 * ring keeps. Either way it moves in idx order and loses nothing, so
 * switching between them leaves no gap and sends nothing twice. An idle
 * stream costs no query: it waits for the feed's high to grow. */

typedef struct sub {
    dbld_call *call;
    el_store *store;
    el_hub *hub;
    el_filter *filter;                     /* compiled once per stream */
    Databuild__V1__EventFilter sql_filter; /* the request's, without the patterns */
    const int32_t *kinds;                  /* the request's */
    size_t n_kinds;
    int64_t cursor; /* next idx to look at */
    dbld_arena *a;  /* one page's messages */
} sub;

static int sub_send(sub *s, int64_t idx, Databuild__V1__BuildEvent *ev, dbld_status *st)
{
    Databuild__V1__IndexedEvent ie = DATABUILD__V1__INDEXED_EVENT__INIT;
    ie.idx = idx;
    ie.event = ev;
    return dbld_call_send(s->call, &ie.base, st);
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* IndexedEvent{idx, event} on the wire around a BuildEvent's stored
 * encoding (the commit feed keeps the bytes the writer stored, which it
 * encoded itself): field 1 varint, field 2 length-delimited. Nothing is
 * decoded or encoded again per stream. */
static uint8_t *indexed_event_wire(dbld_arena *a, int64_t idx, const uint8_t *ev, size_t ev_len,
                                   size_t *len)
{
    uint8_t *w = dbld_arena_alloc(a, ev_len + 24), *p = w;
    if (idx != 0) {
        *p++ = 0x08; /* field 1, varint */
        p += put_varint(p, (uint64_t)idx);
    }
    *p++ = 0x12; /* field 2, length-delimited */
    p += put_varint(p, ev_len);
    memcpy(p, ev, ev_len);
    *len = (size_t)(p - w) + ev_len;
    return w;
}

/* One page from the ring; *behind when the ring does not reach the cursor. */
static int sub_from_hub(sub *s, int *behind, dbld_status *st)
{
    el_hub_row *rows;
    size_t n;
    int64_t next;
    *behind = el_hub_read(s->hub, s->filter, s->cursor, SUBSCRIBE_PAGE, s->a, &rows, &n, &next) ==
              EL_HUB_BEHIND;
    if (*behind) return 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        uint8_t *wire = indexed_event_wire(s->a, rows[i].idx, rows[i].payload, rows[i].len, &len);
        int rc = dbld_call_send_encoded(s->call, wire, len, st);
        if (rc) return rc;
    }
    if (n == 0 && next == s->cursor) /* nothing committed past the cursor yet */
        el_hub_wait(s->hub, s->cursor - 1, SUBSCRIBE_WAIT_MS);
    s->cursor = next;
    return 0;
}

/* One page from PostgreSQL. */
static int sub_from_db(sub *s, dbld_status *st)
{
    int64_t high = el_hub_high(s->hub); /* before the query, which then sees all up to it */
    el_row *rows;
    size_t n;
    int has_more;
    int rc = el_store_list(s->store, s->call, &s->sql_filter, s->kinds, s->n_kinds, s->cursor,
                           SUBSCRIBE_PAGE, s->a, &rows, &n, &has_more, st);
    if (rc == DBLD_UNAVAILABLE) { /* keep the stream; the database comes back */
        dbld_call_wait_cancel(s->call, SUBSCRIBE_RETRY_MS);
        return 0;
    }
    for (size_t i = 0; !rc && i < n; i++) {
        el_fields f;
        el_event_fields(s->a, rows[i].ev, &f);
        if (el_filter_match(s->filter, &f)) rc = sub_send(s, rows[i].idx, rows[i].ev, st);
        s->cursor = rows[i].idx + 1;
    }
    if (rc || has_more) return rc;
    /* The query saw every event up to `high`, matching or not: go on from
     * there (in the ring, unless it moved on meanwhile). */
    if (high >= s->cursor)
        s->cursor = high + 1;
    else if (high < 0) /* the feed does not know the log's end yet */
        el_hub_wait(s->hub, -1, SUBSCRIBE_RETRY_MS);
    return 0;
}

static int subscribe(dbld_call *call, const ProtobufCMessage *req_msg, dbld_status *st)
{
    const Databuild__V1__SubscribeRequest *req = (const Databuild__V1__SubscribeRequest *)req_msg;
    if (req->start_idx < 0)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "start_idx must be >= 0, got %" PRId64,
                               req->start_idx);
    sub s = {.call = call,
             .store = dbld_call_user(call),
             .cursor = req->start_idx,
             .kinds = req->kinds,
             .n_kinds = req->n_kinds};
    /* the same pattern limits as List (dbld_regex_check), then POSIX for the
     * in-memory filter */
    int rc = el_store_check_patterns(s.store, call, req->filter, st);
    if (rc) return rc;
    rc = el_filter_compile(req->filter, req->kinds, req->n_kinds, &s.filter, st);
    if (rc) return rc;
    el_filter_without_patterns(req->filter, &s.sql_filter);
    s.hub = el_store_hub(s.store);
    s.a = dbld_arena_create(); /* per page, so a long stream does not grow */
    el_hub_join(s.hub);
    while (!rc && !dbld_call_cancelled(call)) {
        dbld_arena_reset(s.a);
        int behind;
        rc = sub_from_hub(&s, &behind, st);
        if (!rc && behind) rc = sub_from_db(&s, st);
    }
    el_hub_leave(s.hub);
    dbld_arena_destroy(s.a);
    el_filter_free(s.filter);
    if (!rc && dbld_call_cancelled(call))
        rc = dbld_status_set(st, DBLD_CANCELLED, "subscription cancelled");
    return rc;
}

static const dbld_method methods[] = {
    {"/databuild.v1.EventLog/Append", &databuild__v1__append_request__descriptor,
     &databuild__v1__append_response__descriptor, append, NULL, DBLD_METHOD_NONBLOCKING},
    {"/databuild.v1.EventLog/List", &databuild__v1__list_events_request__descriptor,
     &databuild__v1__event_page__descriptor, list, NULL},
    {"/databuild.v1.EventLog/Subscribe", &databuild__v1__subscribe_request__descriptor,
     &databuild__v1__indexed_event__descriptor, NULL, subscribe},
};

const dbld_service el_eventlog_service = {
    .name = "databuild.v1.EventLog",
    .methods = methods,
    .n_methods = sizeof methods / sizeof methods[0],
};
