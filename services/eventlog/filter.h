/* filter.h - an EventFilter matched in memory, for Subscribe (List matches
 * in SQL). As there, the fields are ANDed and the values of one field ORed;
 * an empty field does not constrain. partition_patterns are POSIX extended
 * regular expressions (glibc regcomp, REG_EXTENDED, anchored as graph output
 * patterns are: dbld_rx_regcomp()) matched against a whole ref, compiled
 * once per stream.
 */
#ifndef EL_FILTER_H
#define EL_FILTER_H

#include "databuild.pb-c.h"
#include "dbld/status.h"
#include "event_meta.h"

/* Longest partition pattern, in bytes. (A minimal guard: the regex engines'
 * cost grows with the pattern; a shared length/nesting validator in lib/
 * would replace it.) */
#define EL_PATTERN_MAX 1024

typedef struct el_filter el_filter;

/* Compile f (NULL matches everything) and the event kinds (BuildEvent
 * event_type field numbers; none: every kind). 0 with *out (the filter owns
 * copies of every value; free with el_filter_free()), or INVALID_ARGUMENT
 * naming the pattern and the problem: too long, does not compile, an
 * unmatched `)`, or a backslash escape whose meaning differs between POSIX
 * and PostgreSQL regexes (\d and friends; \w \W \s \S are accepted); or
 * naming a kind that is none (el_kinds_check()). */
int el_filter_compile(const Databuild__V1__EventFilter *f, const int32_t *kinds, size_t n_kinds,
                      el_filter **out, dbld_status *st);

/* INVALID_ARGUMENT naming the first of kinds that is no BuildEvent kind
 * (field is the request field's name, for the message), else 0. */
int el_kinds_check(const int32_t *kinds, size_t n_kinds, const char *field, dbld_status *st);
void el_filter_free(el_filter *f);

/* 1 if an event with these fields passes the filter. Thread-safe (regexec
 * on a compiled pattern is). */
int el_filter_match(const el_filter *f, const el_fields *e);

/* Patterns are checked in memory only: the filter to give List's SQL is f
 * without them (a shallow copy into *out). */
void el_filter_without_patterns(const Databuild__V1__EventFilter *f,
                                Databuild__V1__EventFilter *out);

#endif
