/* jobenv.h - which environment variables a job's config step (and so a
 * JobRunner/Run or JobExecute request) may set for the job.
 *
 * A job's environment is the job service's own, then the job's `env` from
 * the YAML file (trusted: the operator wrote it), then the `env` its config
 * step returned (carried by the coordinator in task.config.env), then the
 * DATABUILD_* variables the job service sets. The third part arrives over
 * RPC, so it is checked here, by one pure function, both when the config
 * step returns it (JobConfigure) and when a run is requested with it
 * (JobRunner/Run, JobExecute). A name is refused when
 *   - it is not a portable variable name ([A-Za-z_][A-Za-z0-9_]*);
 *   - it is on the denylist: variables that make the dynamic loader, libc,
 *     an interpreter or a shell load or run code (LD_*, PYTHON*, PERL*,
 *     BASH_ENV, ENV, BROWSER, ...), or that say who and where the job is
 *     (PATH, HOME, TMPDIR, ...). Matched without regard to case;
 *   - it starts with DATABUILD_ (the job service sets those itself);
 *   - the job's YAML `env` sets it (the YAML wins, it is never overridden);
 *   - the job has an `env_allow` list and no entry matches it. The default
 *     list is ["*"] (any name the rules above let through); an allowlist
 *     never re-enables a denylisted name, and config loading refuses an entry
 *     that could only name denylisted or DATABUILD_ variables.
 */
#ifndef DBLD_JOBENV_H
#define DBLD_JOBENV_H

#include "dbld/config.h"
#include <stddef.h>

typedef enum dbld_jobenv_verdict {
    DBLD_JOBENV_OK = 0,
    DBLD_JOBENV_BAD_NAME,    /* not [A-Za-z_][A-Za-z0-9_]* */
    DBLD_JOBENV_DENIED,      /* on the denylist */
    DBLD_JOBENV_RESERVED,    /* DATABUILD_*: the job service sets it */
    DBLD_JOBENV_YAML,        /* the job's YAML env sets it */
    DBLD_JOBENV_NOT_ALLOWED, /* no entry of the job's env_allow matches */
} dbld_jobenv_verdict;

/* May a job's config step set variable `name` for job `job`? On a refusal,
 * why (cap bytes, may be NULL) gets the reason as a phrase that names the
 * variable, e.g. `"LD_PRELOAD" is denylisted (LD_*: read by the dynamic
 * loader, which loads code from it into every program)`. Pure: it reads
 * only its arguments. */
dbld_jobenv_verdict dbld_jobenv_check(const dbld_job_def *job, const char *name, char *why,
                                      size_t cap);

/* The denylist pattern that matches name ("LD_*" for "LD_PRELOAD", "PATH"),
 * or NULL. Static storage. */
const char *dbld_jobenv_denied(const char *name);

/* Check one env_allow entry ("NAME", "PREFIX*" or "*") as config loading
 * does: 0 if usable, else 1 with the problem in why. */
int dbld_jobenv_check_allow_entry(const char *entry, char *why, size_t cap);

/* 1 if name is [A-Za-z_][A-Za-z0-9_]*. */
int dbld_jobenv_valid_name(const char *name);

#endif
