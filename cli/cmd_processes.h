/* cmd_processes.h - `databuild processes list|show|run|settings` and
 * `databuild operations show ID` (databuild.v1.Processes on the query
 * service; proto/databuild_process.proto). Conventions: cmd_query.h. */
#ifndef DBLD_CLI_CMD_PROCESSES_H
#define DBLD_CLI_CMD_PROCESSES_H

#include "cli.h"

#define CMD_PROCESSES_USAGE                                                                        \
    "list|show|run|settings ...\n"                                                                 \
    "\n"                                                                                           \
    "Background processes of the graph services (want_reconciler, ...):\n"                         \
    "  processes list      every process: holder, schedule, last run, items\n"                     \
    "  processes show      one process, its settings, errors and work items\n"                     \
    "  processes run       run a process now (prints the operation id)\n"                          \
    "  processes settings  change its schedule and settings\n"                                     \
    "Run `databuild processes <subcommand> --help` for its options.\n"

#define CMD_PROCESSES_LIST_USAGE                                                                   \
    "\n"                                                                                           \
    "Lists the processes (ListProcesses): NAME, STATE (of the last run), RUNS,\n"                  \
    "EVERY (schedule), LAST_START, ACTIVE/CLEANUP/DROPPED items, ERRORS, HOLDER\n"                 \
    "(the graph replica holding the lease; empty when none). With --json, one\n"                   \
    "Process (proto3 JSON) per line.\n"

#define CMD_PROCESSES_SHOW_USAGE                                                                   \
    "NAME [--list active|cleanup|dropped] [--after ITEM] [--limit N]\n"                            \
    "\n"                                                                                           \
    "Shows one process (GetProcess): lease, schedule, settings, the last run's\n"                  \
    "status, stats and errors, aggregate stats, then one page of its work items\n"                 \
    "(NAME, STATE, ATTEMPTS, BUILD, LAST ERROR). --json prints the response.\n"                    \
    "Unknown NAME: NOT_FOUND, exit 1.\n"

#define CMD_PROCESSES_RUN_USAGE                                                                    \
    "NAME\n"                                                                                       \
    "\n"                                                                                           \
    "Queues a run of NAME now (RunProcessNow) and prints the operation id;\n"                      \
    "follow it with `databuild operations show ID`.\n"

#define CMD_PROCESSES_SETTINGS_USAGE                                                               \
    "NAME [--every MS] [--set KEY=INT]... [--set-str KEY=TEXT]...\n"                               \
    "\n"                                                                                           \
    "Changes a process's schedule (--every, 100 .. 86400000 ms) and settings\n"                    \
    "(merged key by key; e.g. want_reconciler: max_item_errors,\n"                                 \
    "retry_backoff_ms). The holder picks them up on its next pass, without a\n"                    \
    "restart. Prints the process's new settings.\n"

#define CMD_OPERATIONS_USAGE                                                                       \
    "show ID\n"                                                                                    \
    "\n"                                                                                           \
    "Long-running operations (RunProcessNow):\n"                                                   \
    "  operations show ID  its state: queued, active, completed, incomplete,\n"                    \
    "                      aborted, or purged (unknown)\n"

#define CMD_OPERATIONS_SHOW_USAGE                                                                  \
    "ID\n"                                                                                         \
    "\n"                                                                                           \
    "Prints operation ID's state (GetOperation, the seed's WorkResponse).\n"

#define CMD_PARTITIONS_MARK_AVAILABLE_USAGE                                                        \
    "REF... [--message TEXT]\n"                                                                    \
    "\n"                                                                                           \
    "Records partitions made by an outside system as AVAILABLE (PartitionEvent\n"                  \
    "AVAILABLE appended to the event log): typically inputs matching\n"                            \
    "graph.external, which DataBuild never builds. Builds that need them go\n"                     \
    "ahead, and wants waiting for them (UPSTREAM_WAITING) are built.\n"                            \
    "Prints REF and the event's idx per partition.\n"

int cmd_partitions_mark_available(cli_ctx *ctx, int argc, char **argv);
int cmd_processes(cli_ctx *ctx, int argc, char **argv);
int cmd_processes_list(cli_ctx *ctx, int argc, char **argv);
int cmd_processes_show(cli_ctx *ctx, int argc, char **argv);
int cmd_processes_run(cli_ctx *ctx, int argc, char **argv);
int cmd_processes_settings(cli_ctx *ctx, int argc, char **argv);
int cmd_operations(cli_ctx *ctx, int argc, char **argv);
int cmd_operations_show(cli_ctx *ctx, int argc, char **argv);

#endif
