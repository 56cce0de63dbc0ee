/* db_regex.c - dbld_regex_check(): structural limits on a caller's regular
 * expression before PostgreSQL matches it (see db_regex.h for why).
 *
 * A recursive-descent reader of ARE syntax that computes, for each piece of
 * the pattern, the shortest and longest text it can match and its expansion
 * cost. Recursion depth is bounded by DBLD_REGEX_MAX_DEPTH. It never decides
 * whether a pattern is valid ARE: what it does not read as special (an
 * unknown escape, a stray '{') it reads as one character, and PostgreSQL
 * reports the real syntax errors.
 */
#include "dbld/db_regex.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define LEN_INF UINT32_MAX
#define COST_CAP ((uint64_t)1 << 40) /* saturate: anything above the budget is refused */

typedef struct piece {
    uint64_t cost;
    uint32_t min, max; /* length of the texts it matches; max LEN_INF: unbounded */
} piece;

typedef struct parser {
    const char *p, *end;
    int expanded; /* (?x): white space and #-comments outside brackets are ignored */
    int depth;
    const char *what, *pattern;
    dbld_status *st;
} parser;

static int refuse(parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int refuse(parser *ps, const char *fmt, ...)
{
    char reason[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return dbld_status_set(ps->st, DBLD_INVALID_ARGUMENT, "invalid %s \"%.200s\": %s", ps->what,
                           ps->pattern, reason);
}

static uint64_t cap(uint64_t v)
{
    return v > COST_CAP ? COST_CAP : v;
}

static uint32_t len_add(uint32_t a, uint32_t b)
{
    return a == LEN_INF || b == LEN_INF || (uint64_t)a + b >= LEN_INF ? LEN_INF : a + b;
}

static uint32_t len_mul(uint32_t a, uint32_t k)
{
    if (a == 0 || k == 0) return 0;
    return a == LEN_INF || k == LEN_INF || (uint64_t)a * k >= LEN_INF ? LEN_INF : a * k;
}

static void skip_space(parser *ps)
{
    while (ps->expanded && ps->p < ps->end) {
        if (isspace((unsigned char)*ps->p)) {
            ps->p++;
        } else if (*ps->p == '#') {
            while (ps->p < ps->end && *ps->p != '\n')
                ps->p++;
        } else {
            break;
        }
    }
}

static int parse_alt(parser *ps, piece *out);

/* [...]: one character. */
static int parse_bracket(parser *ps, piece *out)
{
    const char *p = ps->p + 1;
    if (p < ps->end && *p == '^') p++;
    if (p < ps->end && *p == ']') p++; /* a leading ] is literal */
    while (p < ps->end && *p != ']') {
        if (*p == '[' && p + 1 < ps->end && strchr(":.=", p[1])) {
            char close = p[1];
            p += 2;
            while (p + 1 < ps->end && !(p[0] == close && p[1] == ']'))
                p++;
            if (p + 1 >= ps->end) break;
            p += 2;
        } else {
            p += *p == '\\' && p + 1 < ps->end ? 2 : 1;
        }
    }
    if (p >= ps->end || *p != ']') return refuse(ps, "brackets [] not balanced");
    ps->p = p + 1;
    *out = (piece){.min = 1, .max = 1};
    return 0;
}

/* (...), (?:...), (?=...), (?!...), (?<=...), (?<!...) */
static int parse_group(parser *ps, piece *out)
{
    int lookaround = 0;
    ps->p++;
    if (ps->p < ps->end && *ps->p == '?') {
        const char *q = ps->p + 1;
        if (q < ps->end && (*q == ':' || *q == '=' || *q == '!')) {
            lookaround = *q != ':';
            ps->p = q + 1;
        } else if (q + 1 < ps->end && *q == '<' && (q[1] == '=' || q[1] == '!')) {
            lookaround = 1;
            ps->p = q + 2;
        } else {
            return refuse(ps, "unknown group syntax \"(?%.1s\"", q < ps->end ? q : "");
        }
    }
    if (++ps->depth > DBLD_REGEX_MAX_DEPTH)
        return refuse(ps, "groups nested more than %d deep", DBLD_REGEX_MAX_DEPTH);
    piece in = {0};
    int rc = parse_alt(ps, &in);
    if (rc) return rc;
    if (ps->p >= ps->end || *ps->p != ')') return refuse(ps, "parentheses () not balanced");
    ps->p++;
    ps->depth--;
    *out = in;
    if (lookaround) out->min = out->max = 0; /* a constraint: matches no text */
    return 0;
}

/* One atom at ps->p (not '|' or ')'). */
static int parse_atom(parser *ps, piece *out)
{
    char c = *ps->p;
    if (c == '(') return parse_group(ps, out);
    if (c == '[') return parse_bracket(ps, out);
    *out = (piece){.min = 1, .max = 1};
    if (c == '^' || c == '$') {
        out->min = out->max = 0;
    } else if (c == '\\' && ps->p + 1 < ps->end) {
        char e = *++ps->p;
        if (e >= '1' && e <= '9') /* a back reference */
            return refuse(ps,
                          "back references (\\%c) are not accepted: PostgreSQL matches them"
                          " by backtracking, which can take seconds per ref",
                          e);
        if (strchr("mMyYAZ", e)) /* constraint escapes */
            out->min = out->max = 0;
    }
    ps->p++;
    return 0;
}

/* A number of a bound; -1 when there is none at ps->p. */
static long parse_count(parser *ps)
{
    long v = -1;
    while (ps->p < ps->end && isdigit((unsigned char)*ps->p)) {
        v = (v < 0 ? 0 : v) * 10 + (*ps->p++ - '0');
        if (v > 100000) v = 100000; /* only compared with the limit */
    }
    return v;
}

/* {m}, {m,}, {m,n} at ps->p: 1 with lo/hi set (hi -1: unbounded), 0 when
 * what follows is no bound ('{' is then an ordinary character). */
static int parse_bound(parser *ps, long *lo, long *hi)
{
    const char *save = ps->p++;
    *lo = parse_count(ps);
    *hi = *lo;
    if (*lo >= 0 && ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        *hi = parse_count(ps);
    }
    if (*lo < 0 || ps->p >= ps->end || *ps->p != '}') {
        ps->p = save;
        return 0;
    }
    ps->p++;
    return 1;
}

/* Quantifiers after an atom: its cost and lengths as repeated. */
static int parse_quant(parser *ps, piece *a)
{
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end) return 0;
        long lo, hi;
        char c = *ps->p;
        if (c == '*' || c == '+' || c == '?') {
            lo = c == '+';
            hi = c == '?' ? 1 : -1;
            ps->p++;
        } else if (c != '{' || !parse_bound(ps, &lo, &hi)) {
            return 0;
        }
        if (lo > DBLD_REGEX_MAX_REPEAT || hi > DBLD_REGEX_MAX_REPEAT)
            return refuse(ps, "repetition count %ld is above %d", hi > lo ? hi : lo,
                          DBLD_REGEX_MAX_REPEAT);
        if (ps->p < ps->end && *ps->p == '?') ps->p++; /* non-greedy */
        long copies = hi >= 0 ? hi : lo;
        if (copies >= 2) {
            uint64_t each = a->min != a->max ? DBLD_REGEX_VAR_WEIGHT : 1;
            if (a->cost > each) each = a->cost;
            a->cost = cap(each * (uint64_t)copies);
        }
        a->min = len_mul(a->min, (uint32_t)lo);
        a->max = hi < 0 ? (a->max ? LEN_INF : 0) : len_mul(a->max, (uint32_t)hi);
    }
}

/* Atoms and their quantifiers up to '|', ')' or the end. */
static int parse_seq(parser *ps, piece *out)
{
    *out = (piece){0};
    for (;;) {
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p == '|' || *ps->p == ')') return 0;
        piece a = {0};
        int rc = parse_atom(ps, &a);
        if (!rc) rc = parse_quant(ps, &a);
        if (rc) return rc;
        out->cost = cap(out->cost + a.cost);
        out->min = len_add(out->min, a.min);
        out->max = len_add(out->max, a.max);
    }
}

static int parse_alt(parser *ps, piece *out)
{
    int rc = parse_seq(ps, out);
    while (!rc && ps->p < ps->end && *ps->p == '|') {
        ps->p++;
        piece b = {0};
        rc = parse_seq(ps, &b);
        out->cost = cap(out->cost + b.cost);
        if (b.min < out->min) out->min = b.min;
        if (b.max > out->max) out->max = b.max;
    }
    return rc;
}

/* A leading ***= (the rest is literal), ***: (ARE) or (?opts). 1: literal. */
static int parse_director(parser *ps)
{
    if (ps->end - ps->p >= 4 && strncmp(ps->p, "***=", 4) == 0) return 1;
    if (ps->end - ps->p >= 4 && strncmp(ps->p, "***:", 4) == 0) ps->p += 4;
    if (ps->end - ps->p < 3 || ps->p[0] != '(' || ps->p[1] != '?') return 0;
    const char *q = ps->p + 2;
    while (q < ps->end && isalpha((unsigned char)*q))
        q++;
    if (q == ps->p + 2 || q >= ps->end || *q != ')') return 0; /* a group, not options */
    int literal = 0;
    for (const char *o = ps->p + 2; o < q; o++) {
        if (*o == 'q') literal = 1;
        if (*o == 'x') ps->expanded = 1;
        if (*o == 't') ps->expanded = 0;
        if (*o == 'b') return -1;
    }
    ps->p = q + 1;
    return literal;
}

int dbld_regex_check(const char *pattern, const char *what, dbld_status *st)
{
    size_t len = strlen(pattern);
    if (len > DBLD_REGEX_MAX_BYTES)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "invalid %s \"%.40s...\": %zu bytes long, at most %d", what, pattern,
                               len, DBLD_REGEX_MAX_BYTES);
    parser ps = {.p = pattern, .end = pattern + len, .what = what, .pattern = pattern, .st = st};
    int director = parse_director(&ps);
    if (director < 0) return refuse(&ps, "basic regular expressions ((?b)) are not accepted");
    if (director) return 0;
    piece all = {0};
    int rc = parse_alt(&ps, &all);
    if (rc) return rc;
    if (ps.p < ps.end) return refuse(&ps, "parentheses () not balanced");
    if (all.cost > DBLD_REGEX_MAX_COST)
        return refuse(&ps,
                      "too costly to match: its bounded repetitions {m,n} expand to a cost of"
                      " %llu, at most %d (a repeated part that can match texts of different"
                      " lengths counts %d per copy)",
                      (unsigned long long)all.cost, DBLD_REGEX_MAX_COST, DBLD_REGEX_VAR_WEIGHT);
    return 0;
}
