/* cmd_processes.c - `databuild processes list|show|run|settings` and
 * `databuild operations show ID`: databuild.v1.Processes on the query
 * service (usage in cmd_processes.h; conventions in cmd_query.h). */
#include "cmd_processes.h"
#include "table.h"

#include "databuild_process.pb-c.h"
#include "dbld/process.h"
#include "dbld/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PSVC "/databuild.v1.Processes/"

static int no_sub(cli_ctx *ctx, const char *noun, const char *subs, int argc, char **argv)
{
    if (argc > 0)
        return cli_fail(ctx, CLI_USAGE,
                        "%s: unknown subcommand \"%s\" (expected %s; see databuild %s --help)",
                        noun, argv[0], subs, noun);
    return cli_fail(ctx, CLI_USAGE, "%s: expected a subcommand: %s (see --help)", noun, subs);
}

int cmd_processes(cli_ctx *ctx, int argc, char **argv)
{
    return no_sub(ctx, "processes", "list, show, run or settings", argc, argv);
}

int cmd_operations(cli_ctx *ctx, int argc, char **argv)
{
    return no_sub(ctx, "operations", "show", argc, argv);
}

/* One positional argument (NAME or ID) and no options but the global ones. */
static int on_positional(cli_ctx *ctx, int id, const char *v, void *user)
{
    (void)id;
    const char **out = user;
    if (*out) return cli_fail(ctx, CLI_USAGE, "unexpected argument \"%s\" (see --help)", v);
    *out = v;
    return 0;
}

static int one_arg(cli_ctx *ctx, int argc, char **argv, const char *cmd, const char *what,
                   const char **out)
{
    *out = NULL;
    int rc = cli_parse(ctx, argc, argv, NULL, 0, on_positional, out);
    if (rc == 0 && (!*out || !**out))
        rc = cli_fail(ctx, CLI_USAGE, "%s: missing %s (see --help)", cmd, what);
    if (rc == 0) rc = cli_config(ctx);
    return rc;
}

static const char *i64_text(int64_t v, char *buf, size_t len)
{
    snprintf(buf, len, "%lld", (long long)v);
    return buf;
}

/* ---- list ---- */

int cmd_processes_list(cli_ctx *ctx, int argc, char **argv)
{
    const char *extra = NULL;
    int rc = cli_parse(ctx, argc, argv, NULL, 0, on_positional, &extra);
    if (rc == 0 && extra)
        rc = cli_fail(ctx, CLI_USAGE, "processes list: unexpected argument \"%s\"", extra);
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__ListProcessesRequest req = DATABUILD__V1__LIST_PROCESSES_REQUEST__INIT;
    Databuild__V1__ListProcessesResponse *resp;
    rc = cli_query_call(ctx, PSVC "ListProcesses", &req.base,
                        &databuild__v1__list_processes_response__descriptor, ar, &resp,
                        "list processes");
    if (rc == 0) {
        static const char *const hdr[] = {"NAME",   "STATE",   "RUNS",    "EVERY",  "LAST_START",
                                          "ACTIVE", "CLEANUP", "DROPPED", "ERRORS", "HOLDER"};
        cli_table *t = cli_table_new(10, hdr);
        for (size_t i = 0; i < resp->n_processes; i++) {
            const Databuild__V1__Process *p = resp->processes[i];
            if (ctx->json) {
                cli_json_line(&p->base);
                continue;
            }
            char runs[24], every[32], start[40], act[24], cln[24], drp[24], errs[24];
            const Databuild__V1__ProcessStatus *s = p->process_status;
            const char *row[] = {p->process_name,
                                 dbld_process_state_name(s ? (int)s->state : 0),
                                 i64_text(p->runs, runs, sizeof runs),
                                 cli_duration(p->schedule_frequency_ms, every, sizeof every),
                                 s && s->start_ns ? cli_time(s->start_ns, 0, start, sizeof start)
                                                  : "",
                                 i64_text(p->active_items, act, sizeof act),
                                 i64_text(p->cleanup_items, cln, sizeof cln),
                                 i64_text(p->dropped_items, drp, sizeof drp),
                                 i64_text(p->total_errors, errs, sizeof errs),
                                 p->instance};
            cli_table_add(t, row);
        }
        if (!ctx->json) cli_table_print(t, stdout);
        cli_table_free(t);
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- show ---- */

enum { S_LIST, S_AFTER, S_LIMIT };

typedef struct show_args {
    const char *name, *after;
    int list;
    int64_t limit;
} show_args;

static int on_show(cli_ctx *ctx, int id, const char *v, void *user)
{
    show_args *a = user;
    switch (id) {
    case S_LIST:
        if (strcmp(v, "active") == 0)
            a->list = DATABUILD__V1__WORK_LIST__WORK_ACTIVE;
        else if (strcmp(v, "cleanup") == 0)
            a->list = DATABUILD__V1__WORK_LIST__WORK_CLEANUP;
        else if (strcmp(v, "dropped") == 0)
            a->list = DATABUILD__V1__WORK_LIST__WORK_DROPPED;
        else
            return cli_fail(ctx, CLI_USAGE,
                            "processes show: --list must be active, cleanup or dropped, got \"%s\"",
                            v);
        return 0;
    case S_AFTER:
        a->after = v;
        return 0;
    case S_LIMIT:
        return cli_parse_i64(ctx, "limit", v, &a->limit);
    default:
        if (a->name)
            return cli_fail(ctx, CLI_USAGE, "processes show: unexpected argument \"%s\"", v);
        a->name = v;
        return 0;
    }
}

static void print_status(const char *title, const Databuild__V1__ProcessStatus *s)
{
    char buf[64];
    cli_kv(stdout, title, dbld_process_state_name((int)s->state));
    if (s->start_ns) cli_kv(stdout, "  started", cli_time(s->start_ns, 1, buf, sizeof buf));
    if (s->finish_ns) cli_kv(stdout, "  finished", cli_time(s->finish_ns, 1, buf, sizeof buf));
    for (size_t i = 0; i < s->n_stats; i++)
        cli_kvf(stdout, "  stat", "%s = %g", s->stats[i]->key, s->stats[i]->value);
    cli_kvf(stdout, "  errors", "%lld", (long long)s->total_errors);
    for (size_t i = 0; i < s->n_errors; i++)
        cli_kvf(stdout, "  error", "%s %s", cli_time(s->errors[i]->time_ns, 1, buf, sizeof buf),
                s->errors[i]->text);
}

static void print_process(const Databuild__V1__Process *p)
{
    char buf[64];
    cli_kv(stdout, "process", p->process_name);
    cli_kv(stdout, "holder", p->instance[0] ? p->instance : "(none)");
    cli_kvf(stdout, "lease token", "%lld", (long long)p->lease_token);
    cli_kv(stdout, "every", cli_duration(p->schedule_frequency_ms, buf, sizeof buf));
    const Databuild__V1__ProcessParams *pp = p->settings;
    for (size_t i = 0; pp && i < pp->n_int_params; i++)
        cli_kvf(stdout, "setting", "%s = %lld", pp->int_params[i]->key,
                (long long)pp->int_params[i]->value);
    for (size_t i = 0; pp && i < pp->n_string_params; i++)
        cli_kvf(stdout, "setting", "%s = %s", pp->string_params[i]->key,
                pp->string_params[i]->value);
    cli_kvf(stdout, "runs", "%lld (errors %lld)", (long long)p->runs, (long long)p->total_errors);
    cli_kvf(stdout, "items", "%lld active, %lld cleanup, %lld dropped", (long long)p->active_items,
            (long long)p->cleanup_items, (long long)p->dropped_items);
    if (p->process_status) print_status("last run", p->process_status);
    for (size_t i = 0; i < p->n_aggregate_stats; i++)
        cli_kvf(stdout, "total", "%s = %g", p->aggregate_stats[i]->key,
                p->aggregate_stats[i]->value);
}

int cmd_processes_show(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"list", 1, S_LIST}, {"after", 1, S_AFTER}, {"limit", 1, S_LIMIT}};
    show_args a = {0};
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_show, &a);
    if (rc == 0 && !a.name)
        rc = cli_fail(ctx, CLI_USAGE, "processes show: missing process name (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__GetProcessRequest req = DATABUILD__V1__GET_PROCESS_REQUEST__INIT;
    req.name = (char *)a.name;
    req.list = (Databuild__V1__WorkList)a.list;
    req.after = (char *)(a.after ? a.after : "");
    req.limit = (uint32_t)a.limit;
    Databuild__V1__GetProcessResponse *resp;
    rc = cli_query_call(ctx, PSVC "GetProcess", &req.base,
                        &databuild__v1__get_process_response__descriptor, ar, &resp, "get process");
    if (rc == 0 && ctx->json) {
        cli_json_line(&resp->base);
    } else if (rc == 0) {
        print_process(resp->process);
        printf("\n");
        static const char *const hdr[] = {"ITEM", "STATE", "ATTEMPTS", "BUILD", "LAST_ERROR"};
        cli_table *t = cli_table_new(5, hdr);
        for (size_t i = 0; i < resp->n_items; i++) {
            const Databuild__V1__ProcessWork *w = resp->items[i];
            char att[24];
            const Databuild__V1__ProcessStatus *s = w->status;
            const char *row[] = {w->name, dbld_process_state_name(s ? (int)s->state : 0),
                                 i64_text(w->attempts, att, sizeof att), w->build_request_id,
                                 s && s->n_errors ? s->errors[s->n_errors - 1]->text : ""};
            cli_table_add(t, row);
        }
        cli_table_print(t, stdout);
        cli_table_free(t);
        if (resp->next_after[0]) cli_more_hint("items", "--after", resp->next_after);
    }
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- run, operations show ---- */

static void print_work_response(cli_ctx *ctx, const Databuild__V1__WorkResponse *w)
{
    if (ctx->json)
        cli_json_line(&w->base);
    else
        printf("%s\t%s\n", w->id, w->state);
}

int cmd_processes_run(cli_ctx *ctx, int argc, char **argv)
{
    const char *name;
    int rc = one_arg(ctx, argc, argv, "processes run", "process name", &name);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__RunProcessNowRequest req = DATABUILD__V1__RUN_PROCESS_NOW_REQUEST__INIT;
    req.name = (char *)name;
    Databuild__V1__WorkResponse *resp;
    rc = cli_query_call(ctx, PSVC "RunProcessNow", &req.base,
                        &databuild__v1__work_response__descriptor, ar, &resp, "run process");
    if (rc == 0) print_work_response(ctx, resp);
    dbld_arena_destroy(ar);
    return rc;
}

int cmd_operations_show(cli_ctx *ctx, int argc, char **argv)
{
    const char *id;
    int rc = one_arg(ctx, argc, argv, "operations show", "operation id", &id);
    if (rc) return rc;
    dbld_arena *ar = dbld_arena_create();
    Databuild__V1__GetOperationRequest req = DATABUILD__V1__GET_OPERATION_REQUEST__INIT;
    req.id = (char *)id;
    Databuild__V1__WorkResponse *resp;
    rc = cli_query_call(ctx, PSVC "GetOperation", &req.base,
                        &databuild__v1__work_response__descriptor, ar, &resp, "get operation");
    if (rc == 0) print_work_response(ctx, resp);
    dbld_arena_destroy(ar);
    return rc;
}

/* ---- settings ---- */

enum { T_EVERY, T_SET, T_SET_STR };

typedef struct settings_args {
    dbld_arena *ar;
    const char *name;
    int64_t every;
    Databuild__V1__ProcessParams *params;
} settings_args;

static int on_settings(cli_ctx *ctx, int id, const char *v, void *user)
{
    settings_args *a = user;
    const char *eq = strchr(v, '=');
    switch (id) {
    case T_EVERY:
        return cli_parse_i64(ctx, "every", v, &a->every);
    case T_SET:
    case T_SET_STR: {
        if (!eq || eq == v)
            return cli_fail(ctx, CLI_USAGE, "processes settings: expected KEY=VALUE, got \"%s\"",
                            v);
        char *key = dbld_arena_strdup(a->ar, v);
        key[eq - v] = 0;
        if (id == T_SET_STR) {
            dbld_params_set_str(a->ar, a->params, key, eq + 1);
            return 0;
        }
        char *end;
        long long n = strtoll(eq + 1, &end, 10);
        if (!eq[1] || *end)
            return cli_fail(ctx, CLI_USAGE, "processes settings: %s is not an integer: \"%s\"", key,
                            eq + 1);
        dbld_params_set_int(a->ar, a->params, key, n);
        return 0;
    }
    default:
        if (a->name)
            return cli_fail(ctx, CLI_USAGE, "processes settings: unexpected argument \"%s\"", v);
        a->name = v;
        return 0;
    }
}

int cmd_processes_settings(cli_ctx *ctx, int argc, char **argv)
{
    static const cli_opt opts[] = {
        {"every", 1, T_EVERY}, {"set", 1, T_SET}, {"set-str", 1, T_SET_STR}};
    dbld_arena *ar = dbld_arena_create();
    settings_args a = {.ar = ar};
    a.params = dbld_arena_msg(ar, &databuild__v1__process_params__descriptor);
    int rc = cli_parse(ctx, argc, argv, opts, sizeof opts / sizeof opts[0], on_settings, &a);
    if (rc == 0 && !a.name)
        rc = cli_fail(ctx, CLI_USAGE, "processes settings: missing process name (see --help)");
    if (rc == 0) rc = cli_config(ctx);
    if (rc == 0) {
        Databuild__V1__UpdateProcessSettingsRequest req =
            DATABUILD__V1__UPDATE_PROCESS_SETTINGS_REQUEST__INIT;
        req.name = (char *)a.name;
        req.schedule_frequency_ms = a.every;
        req.settings = a.params;
        Databuild__V1__Process *resp;
        rc = cli_query_call(ctx, PSVC "UpdateProcessSettings", &req.base,
                            &databuild__v1__process__descriptor, ar, &resp, "update settings");
        if (rc == 0 && ctx->json)
            cli_json_line(&resp->base);
        else if (rc == 0)
            print_process(resp);
    }
    dbld_arena_destroy(ar);
    return rc;
}
