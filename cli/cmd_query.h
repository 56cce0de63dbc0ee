/* cmd_query.h - the query subcommands of `databuild` (DataBuildService and
 * QueryOps on the query service): usage texts and handlers, one file per noun
 * (cmd_builds.c, cmd_partitions.c, cmd_jobs.c, cmd_runs.c, cmd_logs.c,
 * cmd_wants.c, cmd_taints.c), output helpers in table.h.
 *
 * Conventions shared by all of them:
 *  - the query service is shared.peers.query of --config (or --server);
 *  - tables by default: statuses without their enum prefix, times ISO-8601
 *    UTC, durations human; free text last;
 *  - --json: a list prints one JSON object per ITEM (the RPC's item message,
 *    proto3 JSON mapping), one per line, so pages concatenate; a show / put /
 *    cancel prints the RPC's whole response as one JSON object;
 *  - lists print one page; --limit N sets its size (cut on the client, never
 *    inside a run of equal cursor timestamps) and --all follows the RPC's
 *    cursor to the end. When more items follow a single page, a hint with the
 *    next cursor goes to stderr;
 *  - exit 0 on success, 1 with one line `databuild: <what> (<addr>): <CODE>:
 *    <message>` on an RPC error, 2 on a bad command line.
 */
#ifndef DBLD_CLI_CMD_QUERY_H
#define DBLD_CLI_CMD_QUERY_H

#include "cli.h"
#include "dbld/arena.h"

#include <protobuf-c/protobuf-c.h>

#define CMD_Q_PAGING(what, cursor)                                                                 \
    "  --limit N        page size (default: the server's page of 100); a page never\n"             \
    "                   ends between two " what " with the same " cursor ",\n"                     \
    "                   so it may hold a few more\n"                                               \
    "  --all            follow the paging cursor to the end (every page)\n"

#define CMD_Q_UNTIL(cursor)                                                                        \
    "  --until NS       start below this " cursor " (Unix ns, exclusive): the cursor\n"            \
    "                   printed on stderr when more follow\n"

/* ---- builds ---- */

#define CMD_BUILDS_USAGE                                                                           \
    "list|show|mermaid|cancel ...\n"                                                               \
    "\n"                                                                                           \
    "Build requests, from the query service:\n"                                                    \
    "  builds list      list build requests, newest first\n"                                       \
    "  builds show      a build's summary and the status of its partitions\n"                      \
    "  builds mermaid   a build's job graph as a mermaid flowchart\n"                              \
    "  builds cancel    cancel a running build\n"                                                  \
    "  builds execution a build's attempts, retry quotas and execution log\n"                      \
    "Run `databuild builds <subcommand> --help` for its options.\n"

#define CMD_BUILDS_LIST_USAGE                                                                      \
    "[--status S]... [--partition REF]... [--built REF]...\n"                                      \
    "                   [--job LABEL]... [--want ID]... [--comment TEXT]\n"                        \
    "                   [--limit N] [--all] [--until NS]\n"                                        \
    "\n"                                                                                           \
    "Lists build requests, newest first (ListBuildRequests): BUILD_REQUEST_ID,\n"                  \
    "STATUS, REQUESTED (UTC), DURATION, JOBS (done/failed/total), PARTITIONS\n"                    \
    "(requested), COMMENT. Filters of different kinds are ANDed, repeated values\n"                \
    "of one kind ORed. With --json, one BuildSummary (proto3 JSON) per line.\n"                    \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --status S       current status, e.g. completed, BUILD_REQUEST_COMPLETED or 4\n"            \
    "  --partition REF  builds that requested partition REF\n"                                     \
    "  --built REF      builds in which a job run built REF\n"                                     \
    "  --job LABEL      builds that ran job LABEL (skipped runs do not count)\n"                   \
    "  --want ID        builds triggered by want ID\n"                                             \
    "  --comment TEXT   builds whose comment contains TEXT (case-insensitive)\n" CMD_Q_PAGING(     \
        "builds", "requested time") CMD_Q_UNTIL("requested time")

#define CMD_BUILDS_SHOW_USAGE                                                                      \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Shows build request ID (GetBuildSummary): status, requested partitions,\n"                    \
    "comment, times, job counts, then every partition the build dealt with and\n"                  \
    "the status it reached in that build. --json prints the BuildSummaryResponse.\n"               \
    "Unknown ID: NOT_FOUND, exit 1.\n"

#define CMD_BUILDS_EXECUTION_USAGE                                                                 \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Shows build request ID's execution state (QueryOps/GetBuildExecution): one\n"                 \
    "row per attempt of every task (TASK, ATTEMPT, JOB_RUN_ID, STATUS, RESULT,\n"                  \
    "REUSED, QUOTA: the task's used retry quota), the build's used global quota\n"                 \
    "and failures, then the execution log in order (TIME, ENTRY, JOB_RUN_ID,\n"                    \
    "DETAIL: e.g. the RetryDenied reason). --json prints the BuildExecutionResponse.\n"            \
    "Unknown ID: NOT_FOUND, exit 1.\n"

#define CMD_BUILDS_MERMAID_USAGE                                                                   \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Prints build request ID's job graph as a mermaid flowchart (GetBuildMermaid):\n"              \
    "jobs and partitions as nodes, input -> job -> output edges, one style class\n"                \
    "per status. Paste it into any mermaid renderer. --json prints the\n"                          \
    "BuildMermaidResponse.\n"

#define CMD_BUILDS_CANCEL_USAGE                                                                    \
    "ID [--reason TEXT]\n"                                                                         \
    "\n"                                                                                           \
    "Asks the graph service, through the query service (QueryOps/CancelBuild), to\n"               \
    "cancel build request ID: its running jobs are stopped and it ends CANCELLED.\n"               \
    "--json prints the (empty) CancelBuildResponse.\n"                                             \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --reason TEXT    recorded with the cancellation (default \"cancelled from the CLI\")\n"

/* ---- partitions ---- */

#define CMD_PARTITIONS_USAGE                                                                       \
    "list|show ...\n"                                                                              \
    "\n"                                                                                           \
    "Partitions, from the query service:\n"                                                        \
    "  partitions list   list partitions, sorted by ref\n"                                         \
    "  partitions show   status and history of partitions\n"                                       \
    "Run `databuild partitions <subcommand> --help` for its options.\n"

#define CMD_PARTITIONS_LIST_USAGE                                                                  \
    "[--pattern RE] [--status S]... [--limit N] [--all] [--after REF]\n"                           \
    "\n"                                                                                           \
    "Lists partitions sorted by ref (ListPartitions): REF, STATUS, UPDATED,\n"                     \
    "INVALIDATED (last taint / invalidation), LAST_BUILD (the build request that\n"                \
    "last touched it). An invalid --pattern is INVALID_ARGUMENT, exit 1.\n"                        \
    "With --json, one PartitionSummaryV2 (proto3 JSON) per line.\n"                                \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --pattern RE     refs matching regular expression RE in full (PostgreSQL ARE)\n"            \
    "  --status S       status, e.g. available, PARTITION_AVAILABLE or 4 (repeat to OR)\n"         \
    "  --limit N        page size (default: the server's page of 100)\n"                           \
    "  --all            follow the paging cursor to the end (every page)\n"                        \
    "  --after REF      start after this ref (exclusive): the cursor printed on\n"                 \
    "                   stderr when more follow\n"

#define CMD_PARTITIONS_SHOW_USAGE                                                                  \
    "REF...\n"                                                                                     \
    "\n"                                                                                           \
    "Shows each partition REF (GetPartitionsSummary): status, last update, last\n"                 \
    "invalidation and the build requests that touched it, most recent first.\n"                    \
    "--json prints one PartitionSummaryResponse per ref, one per line. Every ref\n"                \
    "is tried; exit 1 (NOT_FOUND for an unknown one) if any failed.\n"

/* ---- jobs ---- */

#define CMD_JOBS_USAGE                                                                             \
    "list|show ...\n"                                                                              \
    "\n"                                                                                           \
    "Jobs of the graph, from the query service:\n"                                                 \
    "  jobs list   every job with its run counts\n"                                                \
    "  jobs show   one job's summary\n"                                                            \
    "Run `databuild jobs <subcommand> --help` for its options.\n"

#define CMD_JOBS_LIST_USAGE                                                                        \
    "\n"                                                                                           \
    "\n"                                                                                           \
    "Lists every job of the graph config, also never-run ones, then labels only\n"                 \
    "seen in job runs (ListJobs): JOB, RUNS, OK, FAILED, CANCELLED, PARTS/RUN,\n"                  \
    "LAST_RUN, LAST_STATUS. Skipped runs are not counted.\n"                                       \
    "With --json, one JobSummary (proto3 JSON) per line.\n"

#define CMD_JOBS_SHOW_USAGE                                                                        \
    "LABEL\n"                                                                                      \
    "\n"                                                                                           \
    "Shows job LABEL (GetJobSummary): run counts, average partitions per run, last\n"              \
    "run and its status, recent build requests. --json prints the\n"                               \
    "JobSummaryResponse. Unknown LABEL: NOT_FOUND, exit 1.\n"

/* ---- runs ---- */

#define CMD_RUNS_USAGE                                                                             \
    "list|show ...\n"                                                                              \
    "\n"                                                                                           \
    "Job runs, from the query service:\n"                                                          \
    "  runs list   list job runs, newest first\n"                                                  \
    "  runs show   one job run\n"                                                                  \
    "  runs cancel cancel one job run\n"                                                           \
    "Logs of a run: `databuild logs RUN_ID`.\n"                                                    \
    "Run `databuild runs <subcommand> --help` for its options.\n"

#define CMD_RUNS_LIST_USAGE                                                                        \
    "[--job LABEL]... [--build ID]... [--partition REF]... [--run ID]...\n"                        \
    "                 [--limit N] [--all] [--until NS]\n"                                          \
    "\n"                                                                                           \
    "Lists job runs, newest first by scheduled time (ListJobRuns): JOB_RUN_ID,\n"                  \
    "JOB, STATUS, BUILD_REQUEST_ID, SCHEDULED, DURATION, TARGETS. As in the API,\n"                \
    "every filter value is ORed (a run matching any of them is listed).\n"                         \
    "With --json, one JobRunSummary (proto3 JSON) per line.\n"                                     \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --job LABEL      runs of job LABEL\n"                                                       \
    "  --build ID       runs of build request ID\n"                                                \
    "  --partition REF  COMPLETED runs that built partition REF\n"                                 \
    "  --run ID         the run with id ID\n" CMD_Q_PAGING("runs", "scheduled time")               \
        CMD_Q_UNTIL("scheduled time")

#define CMD_RUNS_SHOW_USAGE                                                                        \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Shows job run ID (GetJobRunSummary): job, build request, status, target\n"                    \
    "partitions, times, duration, message, and its attempt number with the\n"                      \
    "previous and next attempts' job runs. --json prints the JobRunSummaryResponse.\n"             \
    "Unknown ID: NOT_FOUND, exit 1.\n"

#define CMD_RUNS_CANCEL_USAGE                                                                      \
    "ID [--reason TEXT]\n"                                                                         \
    "\n"                                                                                           \
    "Cancels job run ID (QueryOps/CancelJobRun): its build's graph service stops\n"                \
    "the run's process group and ends it CANCELLED; tasks downstream of it are\n"                  \
    "cancelled, independent ones go on. Unknown ID: NOT_FOUND; a run that already\n"               \
    "ended: FAILED_PRECONDITION (exit 1). --json prints the JobRunCancelResponse.\n"               \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --reason TEXT    recorded with the cancel (default \"cancelled from the CLI\")\n"

/* ---- logs ---- */

#define CMD_LOGS_USAGE                                                                             \
    "RUN_ID [--follow] [--level debug|info|warn|error] [--limit N] [--since NS]\n"                 \
    "\n"                                                                                           \
    "Prints the job wrapper's log of job run RUN_ID, oldest first, paging through\n"               \
    "QueryOps/GetJobLogs: one line per entry, time (UTC, ms), kind (DEBUG, INFO,\n"                \
    "WARN, ERROR for log lines; METRIC, EVENT, MANIFEST) and the text.\n"                          \
    "With --json, one JobLogEntry (proto3 JSON) per line.\n"                                       \
    "Unknown RUN_ID: NOT_FOUND, exit 1.\n"                                                         \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --follow         keep polling for new entries until the run has finished\n"                 \
    "                   (GetJobRunSummary status COMPLETED, FAILED, CANCELLED or\n"                \
    "                   SKIPPED), then print the rest and exit 0\n"                                \
    "  --level L        only log lines of level L and above (metrics, events and\n"                \
    "                   manifests always show)\n"                                                  \
    "  --limit N        stop after N entries (default: all)\n"                                     \
    "  --since NS       only entries after this time (Unix ns, exclusive)\n"

/* ---- wants ---- */

#define CMD_WANTS_USAGE                                                                            \
    "list|show|put ...\n"                                                                          \
    "\n"                                                                                           \
    "Wants (partitions to be built), from the query service:\n"                                    \
    "  wants list   list wants, newest first\n"                                                    \
    "  wants show   one want and the status of its partitions\n"                                   \
    "  wants put    register wants for partitions\n"                                               \
    "Run `databuild wants <subcommand> --help` for its options.\n"

#define CMD_WANTS_LIST_USAGE                                                                       \
    "[--live] [--limit N] [--all] [--until NS]\n"                                                  \
    "\n"                                                                                           \
    "Lists wants, newest first (ListWants): WANT_ID, CREATED, REF, STATUS (of the\n"               \
    "wanted partition now), TTL, SLA, COMMENT.\n"                                                  \
    "With --json, one PartitionWantSummary (proto3 JSON) per line.\n"                              \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --live           only wants whose TTL has not expired (or without TTL)\n" CMD_Q_PAGING(     \
        "wants", "creation time") CMD_Q_UNTIL("creation time")

#define CMD_WANTS_SHOW_USAGE                                                                       \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Shows want ID (GetWantSummary): its partition, terms (data time, TTL, SLA),\n"                \
    "comment, and the current status of its partitions. --json prints the\n"                       \
    "WantSummaryResponse. Unknown ID: NOT_FOUND, exit 1.\n"

#define CMD_WANTS_PUT_USAGE                                                                        \
    "REF... [--comment TEXT] [--ttl SECONDS] [--sla SECONDS] [--data-time NS]\n"                   \
    "\n"                                                                                           \
    "Registers one want per partition REF (PutWants, source CLI_MANUAL); each REF\n"               \
    "must be produced by a job of the graph or be an external dependency\n"                        \
    "(INVALID_ARGUMENT otherwise, nothing recorded). Prints REF and WANT_ID per\n"                 \
    "want; --json prints the PutWantsResponse.\n"                                                  \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --comment TEXT   attached to every want\n"                                                  \
    "  --ttl SECONDS    give up this long after the want is created\n"                             \
    "  --sla SECONDS    SLA violated this long after the data time\n"                              \
    "  --data-time NS   business time the partitions represent (Unix ns)\n"

/* ---- taints ---- */

#define CMD_TAINTS_USAGE                                                                           \
    "list|show|put ...\n"                                                                          \
    "\n"                                                                                           \
    "Taints (invalidated partitions, rebuilt when next needed), from the query\n"                  \
    "service:\n"                                                                                   \
    "  taints list   list taints, newest first\n"                                                  \
    "  taints show   one taint\n"                                                                  \
    "  taints put    taint partitions\n"                                                           \
    "Run `databuild taints <subcommand> --help` for its options.\n"

#define CMD_TAINTS_LIST_USAGE                                                                      \
    "[--limit N] [--all] [--until NS]\n"                                                           \
    "\n"                                                                                           \
    "Lists taints, newest first (ListTaints): TAINT_ID, TAINTED_AT, SOURCE, REFS,\n"               \
    "COMMENT. With --json, one PartitionTaintSummary (proto3 JSON) per line.\n"                    \
    "\n"                                                                                           \
    "options:\n" CMD_Q_PAGING("taints", "taint time") CMD_Q_UNTIL("taint time")

#define CMD_TAINTS_SHOW_USAGE                                                                      \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Shows taint ID (GetTaintSummary): refs, time, source, comment. --json prints\n"               \
    "the TaintSummaryResponse. Unknown ID: NOT_FOUND, exit 1.\n"

#define CMD_TAINTS_PUT_USAGE                                                                       \
    "REF... --comment TEXT\n"                                                                      \
    "\n"                                                                                           \
    "Taints partitions REF... (PutTaints, source CLI_MANUAL): from now on builds\n"                \
    "do not skip them (they are rebuilt when requested or depended upon). Prints\n"                \
    "the taint id; --json prints the PutTaintsResponse.\n"                                         \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --comment TEXT   why (required); also the invalidation reason\n"

/* A command taking exactly one id (and maybe --reason). */
typedef struct cli_one_id {
    const char *cmd;  /* "builds show" */
    const char *what; /* "build request id" */
    const char *id;
    const char *reason; /* --reason */
} cli_one_id;

enum { CLI_OPT_REASON = 1 };

/* Parse argv into o (opts: e.g. {"reason", 1, CLI_OPT_REASON}), then load the config. */
int cli_parse_one_id(cli_ctx *ctx, int argc, char **argv, cli_one_id *o, const cli_opt *opts,
                     size_t n_opts);

int cmd_builds(cli_ctx *ctx, int argc, char **argv);
int cmd_builds_execution(cli_ctx *ctx, int argc, char **argv);
/* runs show: the attempt links GetJobRunSummary carries in field 1001, if any. */
void cli_print_attempt_links(dbld_arena *a, const ProtobufCMessage *resp);
int cmd_runs_cancel(cli_ctx *ctx, int argc, char **argv);
int cmd_builds_list(cli_ctx *ctx, int argc, char **argv);
int cmd_builds_show(cli_ctx *ctx, int argc, char **argv);
int cmd_builds_mermaid(cli_ctx *ctx, int argc, char **argv);
int cmd_builds_cancel(cli_ctx *ctx, int argc, char **argv);
int cmd_partitions(cli_ctx *ctx, int argc, char **argv);
int cmd_partitions_list(cli_ctx *ctx, int argc, char **argv);
int cmd_partitions_show(cli_ctx *ctx, int argc, char **argv);
int cmd_jobs(cli_ctx *ctx, int argc, char **argv);
int cmd_jobs_list(cli_ctx *ctx, int argc, char **argv);
int cmd_jobs_show(cli_ctx *ctx, int argc, char **argv);
int cmd_runs(cli_ctx *ctx, int argc, char **argv);
int cmd_runs_list(cli_ctx *ctx, int argc, char **argv);
int cmd_runs_show(cli_ctx *ctx, int argc, char **argv);
int cmd_logs(cli_ctx *ctx, int argc, char **argv);
int cmd_wants(cli_ctx *ctx, int argc, char **argv);
int cmd_wants_list(cli_ctx *ctx, int argc, char **argv);
int cmd_wants_show(cli_ctx *ctx, int argc, char **argv);
int cmd_wants_put(cli_ctx *ctx, int argc, char **argv);
int cmd_taints(cli_ctx *ctx, int argc, char **argv);
int cmd_taints_list(cli_ctx *ctx, int argc, char **argv);
int cmd_taints_show(cli_ctx *ctx, int argc, char **argv);
int cmd_taints_put(cli_ctx *ctx, int argc, char **argv);

#endif
