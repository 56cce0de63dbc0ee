/* rxoverlap.h - output patterns as automata: do two of them match a common ref?
 *
 * A job's output pattern is a POSIX extended regex that must match a whole
 * ref. Every service compiles it the same way, with dbld_rx_regcomp(): glibc
 * regcomp() of "^(pattern)$" with REG_EXTENDED | REG_NOSUB, in the C locale.
 * dbld_rx_compile() reads that same anchored text into a byte automaton, and
 * dbld_rx_overlap() decides whether two patterns' languages intersect and, if
 * so, returns the shortest common string (a witness, double-checked with
 * regexec() of both patterns). config.c uses it to refuse graphs in which two
 * jobs could produce the same ref.
 *
 * Supported: literals and escapes, `.`, bracket expressions (ranges,
 * negation, [:class:], single-character [.x.] and [=x=]), groups, `|`, `*`,
 * `+`, `?`, `{m}`, `{m,}`, `{m,n}` (and glibc's `{,n}`), `^`, `$`, and glibc's
 * \w \W \s \S. Refused with an error that names the construct, rather than
 * answered wrongly: back-references, word-boundary assertions (\b \B \< \> \`
 * \'), multi-character collating elements, ranges with a non-ASCII end, an
 * unmatched `)` (it would close the anchoring group), and `^`/`$` where glibc's
 * matcher treats them differently from "start/end of the ref" (inside a
 * repeated group; `$` before, or `^` after, a part that can match a newline).
 */
#ifndef DBLD_RXOVERLAP_H
#define DBLD_RXOVERLAP_H

#include "dbld/status.h"

#include <regex.h>
#include <stddef.h>

/* Default caps (0 passed as a cap means the default). States of one pattern's
 * automaton count the copies that {m,n} makes; pairs are the product states
 * one dbld_rx_overlap() may visit. Exceeding a cap is RESOURCE_EXHAUSTED. */
#define DBLD_RX_MAX_STATES 10000
#define DBLD_RX_MAX_PAIRS 500000

typedef struct dbld_rx dbld_rx;

/* Compile pattern the way the services match it: regcomp() of "^(pattern)$",
 * REG_EXTENDED | REG_NOSUB (so `\1` names the anchoring group: the pattern's
 * own groups are \2 and up). Returns 0, or INVALID_ARGUMENT with
 * `invalid regular expression "p": <regerror>`. re is the caller's (regfree()). */
int dbld_rx_regcomp(regex_t *re, const char *pattern, dbld_status *st);

/* Read pattern into an automaton of at most max_states states (0: the
 * default). Returns 0 with *out set (free with dbld_rx_free()), or
 * INVALID_ARGUMENT (regcomp refuses the pattern, or a construct that cannot be
 * modelled: the message names it, e.g. "back-reference \1 is not supported"),
 * or RESOURCE_EXHAUSTED (more than max_states states). */
int dbld_rx_compile(const char *pattern, size_t max_states, dbld_rx **out, dbld_status *st);
void dbld_rx_free(dbld_rx *rx);

/* The pattern text rx was compiled from (borrowed from rx). */
const char *dbld_rx_pattern(const dbld_rx *rx);

/* 1 if the automaton accepts s (the same answer as regexec() of the
 * compiled pattern; for tests and cross-checks), else 0. */
int dbld_rx_matches(const dbld_rx *rx, const char *s);

/* A string rx accepts, picked by the bytes of choices (tests and fuzzing):
 * a walk from the start state that, at an accepting state, stops when the
 * next choice is even, else follows transition (choice % count) over the
 * (choice % size)-th byte of its set; the choices are reused (varied) when
 * they run out. Returns a malloc'd string, or NULL when the walk has not
 * stopped after max_len bytes (or n is 0). */
char *dbld_rx_sample(const dbld_rx *rx, const unsigned char *choices, size_t n, size_t max_len);

/* Do a and b match a common string? Visits at most max_pairs product states
 * (0: the default). Returns 0 with *witness NULL when they are disjoint, or
 * with *witness set to the shortest common string (ties broken towards
 * letters and digits; caller frees), which regexec() of both patterns has
 * confirmed. RESOURCE_EXHAUSTED when the search exceeds max_pairs; INTERNAL
 * if regexec() disagrees with the automata. */
int dbld_rx_overlap(const dbld_rx *a, const dbld_rx *b, size_t max_pairs, char **witness,
                    dbld_status *st);

/* s quoted for a message: "a\"b\x01" style, at most max_len input bytes
 * (then "..."). Caller frees. */
char *dbld_rx_quote(const char *s, size_t max_len);

#endif
