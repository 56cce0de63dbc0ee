/* cmd_build.h - `databuild build` and `databuild analyze` (cmd_build.c). */
#ifndef DBLD_CLI_CMD_BUILD_H
#define DBLD_CLI_CMD_BUILD_H

#include "cli.h"

#define CMD_BUILD_USAGE                                                                            \
    "REF... [--comment TEXT] [--force] [--detach] [--quiet] [--eventlog ADDR]\n"                   \
    "\n"                                                                                           \
    "Submits a build of the partitions REF... to the graph service, then follows it\n"             \
    "live through the event log (EventLog/Subscribe on the build request id): a\n"                 \
    "progress line [done/running/failed of total tasks], updated in place on a\n"                  \
    "terminal, one line per finished job otherwise. Ends with every requested\n"                   \
    "partition and its status and the elapsed time. Exits 0 only if every\n"                       \
    "requested partition is AVAILABLE, 1 otherwise, 130 after Ctrl-C (which asks\n"                \
    "the graph service to cancel the build first).\n"                                              \
    "With --json, prints each event as {\"idx\":N,\"event\":{...}} and ends with\n"                \
    "{\"result\":{...}}.\n"                                                                        \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --comment TEXT   attach a comment to the build request\n"                                   \
    "  --force          rebuild REF... even when AVAILABLE (their upstream is reused)\n"           \
    "  --detach         print the build request id and exit without following\n"                   \
    "  --quiet          no per-job lines (progress and result only)\n"                             \
    "  --eventlog ADDR  event log to follow (default: the config's peer; --server\n"               \
    "                   names the graph service)\n"

#define CMD_ANALYZE_USAGE                                                                          \
    "REF... [--tree]\n"                                                                            \
    "\n"                                                                                           \
    "Asks the graph service to analyze REF... (recursively configuring the jobs that\n"            \
    "produce them and their inputs) and prints the job graph: one row per task with\n"             \
    "its level (0 = no inputs inside the graph), job label, outputs and inputs\n"                  \
    "(external inputs marked *). --tree prints it as a dependency tree from the\n"                 \
    "requested partitions instead; --json prints the GraphAnalyzeResponse. Nothing\n"              \
    "is built or written to the event log. The call waits up to 5 minutes unless\n"                \
    "--timeout is given.\n"                                                                        \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --tree           print a dependency tree\n"

int cmd_build(cli_ctx *ctx, int argc, char **argv);
int cmd_analyze(cli_ctx *ctx, int argc, char **argv);

#endif
