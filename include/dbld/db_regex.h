/* db_regex.h - limits on a caller's regular expression before PostgreSQL
 * runs it.
 *
 * Services match user patterns (EventFilter.partition_patterns,
 * ListPartitionsRequest.ref_pattern) with PostgreSQL's `~` (Advanced Regular
 * Expressions). Its engine expands a bounded repetition {m,n} into n copies
 * of what it repeats, and copies of a group that can match text of
 * different lengths multiply the work of every match: one
 * "(.*){1,200}(.*){1,200}x" costs about a second per ref, so a List over a
 * few thousand events holds a connection for minutes. dbld_regex_check()
 * refuses such patterns without running them; it reads the syntax PostgreSQL
 * accepts (groups, (?:...) and lookarounds, brackets, escapes, quantifiers
 * including lazy ones, a leading (?opts) or ***= / ***: director), and leaves
 * every other syntax question to PostgreSQL (callers still validate there:
 * SQLSTATE 2201B). Statement timeouts stay the backstop for what is cheap to
 * write and slow anyway.
 */
#ifndef DBLD_DB_REGEX_H
#define DBLD_DB_REGEX_H

#include "dbld/status.h"

#define DBLD_REGEX_MAX_BYTES 256  /* length of a pattern */
#define DBLD_REGEX_MAX_DEPTH 8    /* groups nested in groups */
#define DBLD_REGEX_MAX_REPEAT 255 /* m and n of {m,n} (PostgreSQL's own limit too) */
/* The expansion budget: a repetition {m,n} with n >= 2 (or {m,} with m >= 2)
 * costs n copies of what it repeats, each copy weighing the cost of its
 * contents, at least 1 - or at least DBLD_REGEX_VAR_WEIGHT when the repeated
 * part can match texts of different lengths. Costs of a sequence or of
 * alternatives add up; *, + and ? cost nothing more. [0-9]{4} costs 4,
 * (.*){1,40}(.*){1,40} 800, (.*){1,200} 2000. */
#define DBLD_REGEX_MAX_COST 1000
#define DBLD_REGEX_VAR_WEIGHT 10

/* 0 when pattern is within the limits above; else INVALID_ARGUMENT with
 * "invalid <what> \"<pattern>\": <which limit, the value and the limit>"
 * (e.g. what = "partition pattern"). Also refuses back references (\1..\9:
 * "(.*)(.*)(.*)(.*)\1" takes seconds per ref), unbalanced parentheses or
 * brackets, and basic-RE mode ((?b)), whose syntax this check does not read. */
int dbld_regex_check(const char *pattern, const char *what, dbld_status *st);

#endif
