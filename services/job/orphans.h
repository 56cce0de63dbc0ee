/* orphans.h - the process groups of the job service's children, recorded on
 * disk while they run, so that a job service started later kills what a
 * killed one (SIGKILL, OOM killer, crash) left behind.
 *
 * A child itself dies with the job service (PR_SET_PDEATHSIG, lib/proc.c),
 * but its own children - a shell script's - stay in its process group and
 * get no such signal. So each child's group is written to a state directory
 * while it runs: a record holding the group id, the leader's start time
 * (from /proc/PID/stat) and a mark from the child's environment
 * ("DATABUILD_JOB_RUN_ID=..."), in a slot of the job service's slot file
 * (whose name holds the owning job service's pid and start time; no file is
 * created per run, see orphans.c for the format). The record is cleared once
 * the group is gone.
 *
 * Design decision: the sweep at start-up leaves the entries of any live job
 * service alone (owner pid running with the recorded start time) and kills
 * the groups of every dead one, so several job services may share a
 * directory. A group is killed only when it provably is the recorded one,
 * never a group that got a recycled id: either its leader still runs with
 * the recorded start time, or (the usual case: PR_SET_PDEATHSIG killed the
 * leader) one of its members still carries the mark in its environment.
 * Entries of another boot or another pid namespace are just removed.
 *
 * The directory is $DATABUILD_JOB_STATE_DIR, by default
 * ${TMPDIR:-/tmp}/databuild-job-<uid>. It must be local to the host, owned
 * by the service's user and not writable by others.
 */
#ifndef JOB_ORPHANS_H
#define JOB_ORPHANS_H

#include "dbld/status.h"

#include <stdint.h>
#include <sys/types.h>

typedef struct orphan_reg orphan_reg;

/* Open (create) the state directory: dir, or the default when dir is NULL
 * or empty. An unusable dir given explicitly is an error (INVALID_ARGUMENT,
 * or the errno's code); an unusable default only logs a warning and yields
 * *out == NULL (nothing is recorded). Caller frees with orphan_reg_close().
 * Every other function accepts a NULL registry and then does nothing. */
int orphan_reg_open(const char *dir, orphan_reg **out, dbld_status *st);
void orphan_reg_close(orphan_reg *r);

/* Kill the recorded groups of job services that are no longer running and
 * remove their files. Returns the number of groups killed. */
int orphan_reg_sweep(orphan_reg *r);

/* Record the running child pgid (its own group leader) with mark, an
 * environment entry it was started with. Returns the record's id, 0 when
 * nothing was recorded (a warning is logged once). Thread-safe. */
uint64_t orphan_reg_add(orphan_reg *r, pid_t pgid, const char *mark);

/* Clear a record once its group is gone (id 0: no-op). Thread-safe. */
void orphan_reg_remove(orphan_reg *r, uint64_t id);

#endif
