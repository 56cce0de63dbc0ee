/* cmd_events_append.c - `databuild events append`: BuildEvents from proto3
 * JSON into the event log.
 *
 * Input is one JSON object, an array of objects, or a sequence of objects
 * (JSON lines); an object {"idx":..,"event":{..}} as printed by `databuild
 * events --json` stands for its event. Event ids are generated here when
 * missing, so each Append is idempotent and the runtime may retry it on
 * UNAVAILABLE without duplicating anything.
 */
#include "cli.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/json.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_APPEND "/databuild.v1.EventLog/Append"
#define BATCH 500 /* events per Append call */

enum { OPT_JSON_FILE };

typedef struct append_args {
    const char *file; /* --json-file F or "-" */
    const char *text; /* inline JSON */
} append_args;

static int on_opt(cli_ctx *ctx, int id, const char *v, void *user)
{
    append_args *a = user;
    if (a->file || a->text)
        return cli_fail(ctx, CLI_USAGE, "events append: give one input (--json-file F, JSON or -)");
    if (id == OPT_JSON_FILE || !strcmp(v, "-"))
        a->file = v;
    else
        a->text = v;
    return 0;
}

/* Whole file (or stdin for "-") into a malloc'd buffer. */
static char *read_input(cli_ctx *ctx, const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        cli_fail(ctx, CLI_FAIL, "could not open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = dbld_xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = dbld_xrealloc(buf, cap *= 2);
    }
    int err = ferror(f);
    if (f != stdin) fclose(f);
    if (err) {
        free(buf);
        cli_fail(ctx, CLI_FAIL, "could not read %s", path);
        return NULL;
    }
    *len = n;
    return buf;
}

typedef struct batch {
    Databuild__V1__BuildEvent **events;
    size_t n, cap;
} batch;

/* Decode one JSON object (event or {"idx","event"} wrapper) and queue it. */
static int add_event(cli_ctx *ctx, dbld_arena *arena, batch *b, json_t *obj, size_t index)
{
    json_t *inner = json_object_get(obj, "event");
    if (json_is_object(obj) && json_is_object(inner)) obj = inner;
    if (!json_is_object(obj))
        return cli_fail(ctx, CLI_USAGE, "event %zu: expected a JSON object", index);
    ProtobufCMessage *msg = NULL;
    dbld_status st;
    if (dbld_json_to_message(obj, &databuild__v1__build_event__descriptor,
                             dbld_arena_allocator(arena), &msg, &st) != 0)
        return cli_fail(ctx, CLI_USAGE, "event %zu: %s", index, st.msg);
    Databuild__V1__BuildEvent *ev = (Databuild__V1__BuildEvent *)msg;
    if (!ev->event_id || !ev->event_id[0]) {
        char id[37];
        dbld_uuid_v4(id);
        ev->event_id = dbld_arena_strdup(arena, id);
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->events = dbld_xrealloc(b->events, b->cap * sizeof *b->events);
    }
    b->events[b->n++] = ev;
    return 0;
}

/* Parse a sequence of JSON values; arrays are flattened one level. */
static int parse_events(cli_ctx *ctx, dbld_arena *arena, const char *text, size_t len, batch *b)
{
    size_t off = 0;
    while (off < len) {
        while (off < len && strchr(" \t\r\n", text[off]))
            off++;
        if (off == len) break;
        json_error_t err;
        json_t *v =
            json_loadb(text + off, len - off, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
        if (!v)
            return cli_fail(ctx, CLI_USAGE, "invalid JSON at byte %zu: %s",
                            off + (size_t)(err.position > 0 ? err.position : 0), err.text);
        off += (size_t)err.position;
        int rc = 0;
        if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                if ((rc = add_event(ctx, arena, b, item, b->n)) != 0) break;
            }
        } else {
            rc = add_event(ctx, arena, b, v, b->n);
        }
        json_decref(v);
        if (rc != 0) return rc;
    }
    if (b->n == 0) return cli_fail(ctx, CLI_USAGE, "events append: no events in the input");
    return 0;
}

static void print_appended(const cli_ctx *ctx, const Databuild__V1__AppendedEvent *e)
{
    if (ctx->json) { /* idx as a number, as in `databuild events --json` */
        json_t *o = json_pack("{s:I,s:s,s:b}", "idx", (json_int_t)e->idx, "eventId", e->event_id,
                              "duplicate", (int)e->duplicate);
        char *text = json_dumps(o, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(o);
    } else {
        printf("%" PRId64 " %s%s\n", e->idx, e->event_id, e->duplicate ? " duplicate" : "");
    }
}

static int send_batches(cli_ctx *ctx, const batch *b)
{
    const char *addr = cli_peer(ctx, "eventlog");
    dbld_client *c = dbld_client_get(addr);
    dbld_arena *arena = dbld_arena_create();
    int rc = CLI_OK;
    for (size_t start = 0; start < b->n && rc == CLI_OK; start += BATCH) {
        Databuild__V1__AppendRequest req = DATABUILD__V1__APPEND_REQUEST__INIT;
        req.events = b->events + start;
        req.n_events = b->n - start < BATCH ? b->n - start : BATCH;
        ProtobufCMessage *resp = NULL;
        dbld_status st;
        dbld_arena_reset(arena);
        if (dbld_client_unary(c, PATH_APPEND, &req.base,
                              &databuild__v1__append_response__descriptor,
                              dbld_arena_allocator(arena), &resp, ctx->timeout_ms,
                              DBLD_CALL_IDEMPOTENT, &st) != 0) {
            rc = cli_rpc_fail(ctx, "append", addr, &st);
            break;
        }
        const Databuild__V1__AppendResponse *r = (const Databuild__V1__AppendResponse *)resp;
        if (!r || r->n_events != req.n_events) {
            rc = cli_fail(ctx, CLI_FAIL, "append (%s): expected %zu results, got %zu", addr,
                          req.n_events, r ? r->n_events : 0);
            break;
        }
        for (size_t i = 0; i < r->n_events; i++)
            print_appended(ctx, r->events[i]);
    }
    dbld_arena_destroy(arena);
    return rc;
}

int cmd_events_append(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {{"json-file", 1, OPT_JSON_FILE}};
    append_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, 1, on_opt, &a);
    if (rc == 0 && !a.file && !a.text)
        rc = cli_fail(ctx, CLI_USAGE, "events append: no input (give JSON, --json-file F or -)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc != 0) return rc;

    size_t len = 0;
    char *owned = NULL;
    const char *text = a.text;
    if (a.file) {
        if (!(owned = read_input(ctx, a.file, &len))) return CLI_FAIL;
        text = owned;
    } else {
        len = strlen(text);
    }
    dbld_arena *arena = dbld_arena_create();
    batch b = {0};
    rc = parse_events(ctx, arena, text, len, &b);
    if (rc == 0) rc = send_batches(ctx, &b);
    free(b.events);
    dbld_arena_destroy(arena);
    free(owned);
    return rc;
}
