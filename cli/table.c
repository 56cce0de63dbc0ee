/* table.c - output helpers of the query subcommands (see table.h). */
#include "table.h"

#include "dbld/json.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- tables ---- */

struct cli_table {
    size_t ncols;
    char **headers;
    int *right;
    char **cells; /* rows * ncols */
    size_t rows, cap;
};

/* A copy with control characters as spaces; NULL / "" -> "-". */
static char *cell_dup(const char *s)
{
    if (!s || !*s) return dbld_xstrdup("-");
    char *c = dbld_xstrdup(s);
    for (char *p = c; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = ' ';
    return c;
}

cli_table *cli_table_new(size_t ncols, const char *const *headers)
{
    cli_table *t = dbld_xcalloc(1, sizeof *t);
    t->ncols = ncols;
    t->headers = dbld_xcalloc(ncols, sizeof *t->headers);
    t->right = dbld_xcalloc(ncols, sizeof *t->right);
    for (size_t i = 0; i < ncols; i++) {
        const char *h = headers[i];
        t->right[i] = h[0] == '>';
        t->headers[i] = dbld_xstrdup(h + t->right[i]);
    }
    return t;
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 16;
        t->cells = dbld_xrealloc(t->cells, t->cap * t->ncols * sizeof *t->cells);
    }
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->rows * t->ncols + i] = cell_dup(cells[i]);
    t->rows++;
}

size_t cli_table_rows(const cli_table *t)
{
    return t->rows;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80) w++;
    return w;
}

static void print_row(const cli_table *t, FILE *f, char *const *row, const size_t *w)
{
    for (size_t i = 0; i < t->ncols; i++) {
        size_t pad = w[i] - width(row[i]);
        int last = i + 1 == t->ncols;
        if (t->right[i]) fprintf(f, "%*s", (int)pad, "");
        fputs(row[i], f);
        if (!last && !t->right[i]) fprintf(f, "%*s", (int)pad, "");
        fputs(last ? "\n" : "  ", f);
    }
}

void cli_table_print(const cli_table *t, FILE *f)
{
    size_t *w = dbld_xcalloc(t->ncols, sizeof *w);
    for (size_t i = 0; i < t->ncols; i++)
        w[i] = width(t->headers[i]);
    for (size_t r = 0; r < t->rows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t cw = width(t->cells[r * t->ncols + i]);
            if (cw > w[i]) w[i] = cw;
        }
    print_row(t, f, t->headers, w);
    for (size_t r = 0; r < t->rows; r++)
        print_row(t, f, t->cells + r * t->ncols, w);
    free(w);
}

void cli_table_free(cli_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->ncols; i++)
        free(t->headers[i]);
    for (size_t i = 0; i < t->rows * t->ncols; i++)
        free(t->cells[i]);
    free(t->headers);
    free(t->right);
    free(t->cells);
    free(t);
}

#define KV_WIDTH 18

void cli_kv(FILE *f, const char *key, const char *value)
{
    char *v = cell_dup(value);
    size_t used = strlen(key) + 1;
    int pad = used < KV_WIDTH ? (int)(KV_WIDTH - used) : 1;
    fprintf(f, "%s:%*s%s\n", key, pad, "", v);
    free(v);
}

void cli_kvf(FILE *f, const char *key, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cli_kv(f, key, buf);
}

/* ---- values ---- */

const char *cli_time(int64_t ns, int with_ms, char *buf, size_t len)
{
    if (ns <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    time_t secs = (time_t)(ns / 1000000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    size_t w = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_ms)
        snprintf(buf + w, len - w, ".%03dZ", (int)(ns % 1000000000 / 1000000));
    else
        snprintf(buf + w, len - w, "Z");
    return buf;
}

const char *cli_duration(int64_t ms, char *buf, size_t len)
{
    if (ms < 0) ms = 0;
    int64_t s = ms / 1000;
    if (ms < 1000)
        snprintf(buf, len, "%" PRId64 "ms", ms);
    else if (ms < 60000)
        snprintf(buf, len, "%" PRId64 ".%" PRId64 "s", s, ms % 1000 / 100);
    else if (s < 3600)
        snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, len, "%" PRId64 "d%02" PRId64 "h", s / 86400, s % 86400 / 3600);
    return buf;
}

const char *cli_seconds(uint64_t secs, char *buf, size_t len)
{
    if (secs == 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    if (secs > (uint64_t)INT64_MAX / 1000) secs = (uint64_t)INT64_MAX / 1000;
    return cli_duration((int64_t)secs * 1000, buf, len);
}

const char *cli_enum(const ProtobufCEnumDescriptor *d, int value, const char *prefix, char *tmp,
                     size_t len)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
    if (!v) {
        snprintf(tmp, len, "%d", value);
        return tmp;
    }
    size_t plen = strlen(prefix);
    return strncmp(v->name, prefix, plen) == 0 ? v->name + plen : v->name;
}

int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *text,
                   int *value)
{
    if (!text || !*text) return -1;
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (end && !*end) {
        if (v < INT32_MIN || v > INT32_MAX || !protobuf_c_enum_descriptor_get_value(d, (int)v))
            return -1;
        *value = (int)v;
        return 0;
    }
    size_t plen = strlen(prefix);
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *name = d->values[i].name;
        const char *shortn = strncmp(name, prefix, plen) == 0 ? name + plen : name;
        if (strcasecmp(name, text) == 0 || strcasecmp(shortn, text) == 0) {
            *value = d->values[i].value;
            return 0;
        }
    }
    return -1;
}

const char *cli_enum_names(const ProtobufCEnumDescriptor *d, const char *prefix, char *buf,
                           size_t len)
{
    size_t n = 0, plen = strlen(prefix);
    buf[0] = '\0';
    for (unsigned i = 0; i < d->n_values && n + 1 < len; i++) {
        const char *name = d->values[i].name;
        if (strncmp(name, prefix, plen) == 0) name += plen;
        n += (size_t)snprintf(buf + n, len - n, "%s", i ? ", " : "");
        for (; *name && n + 1 < len; name++)
            buf[n++] = (char)tolower((unsigned char)*name);
        buf[n] = '\0';
    }
    return buf;
}

static void join(const char *(*get)(const void *, size_t), const void *items, size_t n, size_t max,
                 char *buf, size_t len)
{
    size_t w = 0;
    buf[0] = '\0';
    if (n == 0) {
        snprintf(buf, len, "-");
        return;
    }
    for (size_t i = 0; i < n && i < max && w < len; i++)
        w += (size_t)snprintf(buf + w, len - w, "%s%s", i ? ", " : "", get(items, i));
    if (n > max && w < len) snprintf(buf + w, len - w, " (+%zu more)", n - max);
}

static const char *ref_at(const void *items, size_t i)
{
    Databuild__V1__PartitionRef *const *refs = items;
    return refs[i] && refs[i]->str && refs[i]->str[0] ? refs[i]->str : "?";
}

static const char *str_at(const void *items, size_t i)
{
    char *const *s = items;
    return s[i] && s[i][0] ? s[i] : "?";
}

const char *cli_refs(Databuild__V1__PartitionRef *const *refs, size_t n, size_t max, char *buf,
                     size_t len)
{
    join(ref_at, refs, n, max, buf, len);
    return buf;
}

const char *cli_strs(char *const *strs, size_t n, size_t max, char *buf, size_t len)
{
    join(str_at, strs, n, max, buf, len);
    return buf;
}

/* ---- output and calls ---- */

void cli_json_line(const ProtobufCMessage *msg)
{
    char *text = dbld_json_encode(msg, 0);
    printf("%s\n", text ? text : "{}");
    free(text);
}

int cli_query_call(cli_ctx *ctx, const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, dbld_arena *a, void *resp_out,
                   const char *what)
{
    const char *addr = cli_peer(ctx, "query");
    dbld_status st;
    dbld_status_clear(&st);
    ProtobufCMessage **out = resp_out;
    *out = NULL;
    int rc = dbld_client_unary(dbld_client_get(addr), path, req, resp_desc, dbld_arena_allocator(a),
                               out, ctx->timeout_ms, 0, &st);
    if (rc == 0) return 0;
    /* one line: PostgreSQL's messages may carry newlines */
    for (char *p = st.msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    st.code = rc;
    return cli_rpc_fail(ctx, what, addr, &st);
}

size_t cli_page_cut(const uint64_t *keys, size_t n, int64_t limit, int desc)
{
    if (limit <= 0 || (uint64_t)limit >= n) return n;
    for (size_t i = 1; i < n; i++)
        if (desc ? keys[i] > keys[i - 1] : keys[i] < keys[i - 1]) return n;
    size_t k = (size_t)limit;
    while (k < n && keys[k] == keys[k - 1])
        k++;
    return k;
}

/* ---- command lines ---- */

void cli_strv_add(cli_strv *l, const char *s)
{
    l->v = dbld_xrealloc(l->v, (l->n + 1) * sizeof *l->v);
    l->v[l->n++] = (char *)s;
}

void cli_strv_free(cli_strv *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* ---- lists paged by a timestamp cursor ---- */

void cli_more_hint(const char *what, const char *opt, const char *cursor)
{
    fflush(stdout);
    fprintf(stderr, "(more %s follow: --all, or %s %s)\n", what, opt, cursor);
}

int cli_list_pages(cli_ctx *ctx, const cli_paging *pg, const cli_lister *l)
{
    dbld_arena *a = dbld_arena_create();
    uint64_t cursor = pg->cursor;
    uint64_t *keys = NULL;
    int rc = 0;
    for (;;) {
        dbld_arena_reset(a);
        cli_page page = {.has_more = -1};
        if ((rc = l->fetch(ctx, a, cursor, l->user, &page)) != 0) break;
        keys = dbld_xrealloc(keys, (page.n + 1) * sizeof *keys);
        for (size_t i = 0; i < page.n; i++)
            keys[i] = l->key(page.items[i]);
        size_t k = cli_page_cut(keys, page.n, pg->limit, 1);
        for (size_t i = 0; i < k; i++)
            l->emit(ctx, page.items[i], l->user);
        int cut = k < page.n;
        int more = cut || page.has_more > 0 || (page.has_more < 0 && page.n > 0);
        uint64_t next = cut ? keys[k - 1] : page.next;
        if (!more) break;
        if (!pg->all) {
            /* without has_more, a page shorter than the server's (100) was the last */
            if (cut || page.has_more > 0 || page.n >= 100) {
                char buf[32];
                snprintf(buf, sizeof buf, "%" PRIu64, next);
                cli_more_hint(l->what, l->cursor_opt, buf);
            }
            break;
        }
        if (next == 0 || (cursor != 0 && next >= cursor)) {
            rc = cli_fail(ctx, CLI_FAIL,
                          "list %s (%s): the server's cursor %" PRIu64
                          " does not advance past %" PRIu64,
                          l->what, cli_peer(ctx, "query"), next, cursor);
            break;
        }
        cursor = next;
    }
    free(keys);
    dbld_arena_destroy(a);
    return rc;
}

typedef struct one_arg {
    const char *cmd, *what, *value;
} one_arg;

static int on_one_arg(cli_ctx *ctx, int id, const char *v, void *user)
{
    (void)id;
    one_arg *o = user;
    if (o->value)
        return cli_fail(ctx, CLI_USAGE, "%s: unexpected argument \"%s\" (one %s; see --help)",
                        o->cmd, v, o->what);
    o->value = v;
    return 0;
}

/* Parse a command taking exactly one positional argument and no options of
 * its own, then load the config. */
static int parse_one(cli_ctx *ctx, int argc, char **argv, const char *cmd, const char *what,
                     const char **out)
{
    one_arg o = {.cmd = cmd, .what = what};
    int rc = cli_parse(ctx, argc, argv, NULL, 0, on_one_arg, &o);
    if (rc) return rc;
    if (!o.value || !*o.value)
        return cli_fail(ctx, CLI_USAGE, "%s: missing %s (see --help)", cmd, what);
    *out = o.value;
    return cli_config(ctx);
}

int cli_show_call(cli_ctx *ctx, int argc, char **argv, const cli_show *show, dbld_arena *a,
                  void *resp_out)
{
    *(ProtobufCMessage **)resp_out = NULL;
    const char *id = NULL;
    int rc = parse_one(ctx, argc, argv, show->cmd, show->what, &id);
    if (rc) return rc;
    ProtobufCMessage *req = dbld_arena_msg(a, show->req);
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(show->req, show->id_field);
    if (!f || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
        return cli_fail(ctx, CLI_FAIL, "%s: %s has no string field %s", show->cmd, show->req->name,
                        show->id_field);
    *(const char **)((char *)req + f->offset) = id;
    ProtobufCMessage *resp = NULL;
    rc = cli_query_call(ctx, show->method, req, show->resp, a, &resp, show->call_what);
    if (rc == 0 && ctx->json) {
        cli_json_line(resp);
        resp = NULL;
    }
    *(ProtobufCMessage **)resp_out = resp;
    return rc;
}

int cli_list_table(cli_ctx *ctx, const cli_paging *pg, const cli_lister *l, cli_table **t,
                   size_t ncols, const char *const *hdr)
{
    *t = cli_table_new(ncols, hdr);
    int rc = cli_list_pages(ctx, pg, l);
    if (rc == 0 && !ctx->json) cli_table_print(*t, stdout);
    cli_table_free(*t);
    *t = NULL;
    return rc;
}
