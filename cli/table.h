/* table.h - output helpers of the query subcommands (cmd_builds.c ... cmd_taints.c):
 * aligned text tables, "key: value" blocks, ISO-8601 times, human durations,
 * enum names without their prefix (and parsing them back), one-line proto3
 * JSON, and one call to the query service with a one-line error.
 *
 * Formatting functions write into a caller buffer and return it, so they can
 * be used as printf arguments: `cli_time(ns, buf, sizeof buf)`.
 */
#ifndef DBLD_CLI_TABLE_H
#define DBLD_CLI_TABLE_H

#include "cli.h"

#include "databuild.pb-c.h"
#include "dbld/arena.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- tables ----
 * Columns separated by two spaces, each as wide as its widest cell; the last
 * column is not padded. A header starting with '>' is right-aligned (the '>'
 * is not printed). Cells are copied; NULL or "" prints "-"; control
 * characters (newlines in messages) print as spaces. */
typedef struct cli_table cli_table;

cli_table *cli_table_new(size_t ncols, const char *const *headers);
/* One row of exactly ncols cells. */
void cli_table_add(cli_table *t, const char *const *cells);
size_t cli_table_rows(const cli_table *t);
void cli_table_print(const cli_table *t, FILE *f);
void cli_table_free(cli_table *t);

/* "key:" padded to a fixed width, then the value (NULL/"" -> "-"), newline. */
void cli_kv(FILE *f, const char *key, const char *value);
void cli_kvf(FILE *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- values ---- */

/* Unix ns -> "2026-01-01T00:00:01Z" (UTC; with_ms adds ".123"); 0 or less -> "-". */
const char *cli_time(int64_t ns, int with_ms, char *buf, size_t len);
/* Milliseconds -> "350ms", "12.3s", "4m05s", "2h03m", "3d04h". */
const char *cli_duration(int64_t ms, char *buf, size_t len);
/* Seconds -> the same style ("0" -> "-"). */
const char *cli_seconds(uint64_t secs, char *buf, size_t len);
/* Enum value name without prefix: PARTITION_AVAILABLE -> AVAILABLE; unknown
 * values print as their number. */
const char *cli_enum(const ProtobufCEnumDescriptor *d, int value, const char *prefix, char *tmp,
                     size_t len);
/* Parse "available", "AVAILABLE", "PARTITION_AVAILABLE" or "4" (a defined
 * value) into *value. Returns 0, or -1 when it names no value. */
int cli_enum_parse(const ProtobufCEnumDescriptor *d, const char *prefix, const char *text,
                   int *value);
/* Value names of d without prefix, lower case, ", "-separated (for messages). */
const char *cli_enum_names(const ProtobufCEnumDescriptor *d, const char *prefix, char *buf,
                           size_t len);
/* "a, b, c (+4 more)" of up to max refs; "-" when n == 0. */
const char *cli_refs(Databuild__V1__PartitionRef *const *refs, size_t n, size_t max, char *buf,
                     size_t len);
/* The same for plain strings. */
const char *cli_strs(char *const *strs, size_t n, size_t max, char *buf, size_t len);

/* ---- output and calls ---- */

/* Print msg as one line of compact proto3 JSON. */
void cli_json_line(const ProtobufCMessage *msg);

/* Unary call of `path` on the query service (the config's shared.peers.query,
 * or --server); the response is unpacked into arena a. On failure ctx->st is
 * "<what> (<addr>): <CODE>: <message>" on one line and CLI_FAIL returned. */
int cli_query_call(cli_ctx *ctx, const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc, dbld_arena *a, void *resp_out,
                   const char *what);

/* A `X show ID` command: one positional argument that goes into one string
 * field of a Get*Summary request. */
typedef struct cli_show {
    const char *cmd, *what; /* "runs show", "job run id" (usage errors) */
    const char *method;     /* CLI_SVC "GetJobRunSummary" */
    const char *call_what;  /* "job run summary" (call errors) */
    const ProtobufCMessageDescriptor *req, *resp;
    const char *id_field; /* "job_run_id": the request field the argument fills */
} cli_show;

/* Parse, load the config and call. With --json the response is printed here
 * and *resp_out is NULL; otherwise *resp_out is the response (in arena a)
 * for the caller to print. */
int cli_show_call(cli_ctx *ctx, int argc, char **argv, const cli_show *show, dbld_arena *a,
                  void *resp_out);

/* ---- command lines ---- */

/* A growing list of borrowed strings (repeatable options). */
typedef struct cli_strv {
    char **v;
    size_t n;
} cli_strv;
void cli_strv_add(cli_strv *l, const char *s);
void cli_strv_free(cli_strv *l);

/* ---- lists paged by a timestamp cursor (newest first) ---- */

typedef struct cli_paging {
    int64_t limit;   /* --limit: page size, 0 = the server's page */
    int all;         /* --all: every page */
    uint64_t cursor; /* --until: exclusive upper bound, 0 = none */
} cli_paging;

/* One page as fetched: items, their cursor keys, the server's cursor. */
typedef struct cli_page {
    void **items;
    size_t n;
    int has_more;  /* 1 / 0 from the RPC, -1 when it has none (an empty page ends) */
    uint64_t next; /* the RPC's cursor for the next page */
} cli_page;

typedef struct cli_lister {
    const char *what;       /* "build requests": for messages */
    const char *cursor_opt; /* "--until" */
    /* Fetch the page below cursor (0 = the newest) into *page (arena a). */
    int (*fetch)(cli_ctx *ctx, dbld_arena *a, uint64_t cursor, void *user, cli_page *page);
    uint64_t (*key)(const void *item);                        /* the item's cursor timestamp */
    void (*emit)(cli_ctx *ctx, const void *item, void *user); /* print / add a row */
    void *user;
} cli_lister;

/* Fetch, cut (cli_page_cut) and emit pages: one, or all with pg->all. When
 * more follow a single page, a hint with the next cursor goes to stderr.
 * Returns 0 or CLI_FAIL (ctx->st set). */
int cli_list_pages(cli_ctx *ctx, const cli_paging *pg, const cli_lister *l);

/* cli_list_pages() into a new table of ncols columns headed hdr, kept in
 * *t while the pages are emitted (the lister's emit adds its rows), printed
 * unless --json, then freed (*t NULL again). Returns cli_list_pages()'s. */
int cli_list_table(cli_ctx *ctx, const cli_paging *pg, const cli_lister *l, cli_table **t,
                   size_t ncols, const char *const *hdr);

/* "(more <what> follow: --all, or <opt> <cursor>)" on stderr. */
void cli_more_hint(const char *what, const char *opt, const char *cursor);

#define CLI_SVC "/databuild.v1.DataBuildService/"
#define CLI_OPS "/databuild.v1.QueryOps/"

/* Size of the page a list shows when a server page of n items (sorted by
 * keys[], non-increasing when desc, else non-decreasing) is cut to `limit`
 * items: limit, extended over items sharing the last kept key (the RPC
 * cursors are exclusive timestamps, so a page must not end inside a run of
 * equal keys). n when limit is 0 or not smaller than n, or when the keys are
 * not in page order (then the key does not mirror the server's cursor). */
size_t cli_page_cut(const uint64_t *keys, size_t n, int64_t limit, int desc);

#endif
