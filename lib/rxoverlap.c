/* rxoverlap.c - output patterns as byte automata, and whether two intersect (see rxoverlap.h).
 *
 * Four steps. (1) A recursive-descent parser reads the pattern in the dialect
 * glibc's regcomp() takes with REG_EXTENDED in the C locale (`\` in a bracket
 * is a literal, `\d` is "d", `{,n}` is `{0,n}`, ...) into a small tree.
 * regcomp() of the anchored text has accepted it first, so the parser only
 * meets valid syntax; where it meets something it cannot model it says so
 * instead of guessing. The language is the pattern's full matches, which is
 * what "^(pattern)$" gives as long as the pattern's parentheses balance: an
 * unmatched `)` (a literal for glibc) would close the anchoring group early
 * and is refused. (2) The tree becomes a Thompson automaton with epsilon,
 * `^`, `$` and byte-set edges; {m,n} makes copies, counted against the state
 * cap. (3) Epsilon edges are removed: every state that a byte edge enters
 * (plus the start, the one place where `^` holds) gets the byte edges its
 * closure reaches and an accept flag; past a `$` no byte may follow. glibc
 * differs in one corner: its matcher lets a `$` be followed by a newline and a
 * `^` follow one; where that could change the answer (a byte set holding '\n'
 * right after `$`, or a `^` right after one) the pattern is refused. Each
 * state is entered by exactly one byte edge, so a transition is just a target
 * and its byte set is the target's label. States that cannot reach acceptance
 * are pruned. (4) Two automata intersect iff the product has a path from
 * (start, start) to (accept, accept); a breadth-first search finds the
 * shortest. Byte sets are 256-bit masks, so one product step intersects two
 * labels with four ANDs: the search never iterates over the alphabet, which
 * is what partitioning the bytes into classes would otherwise buy. Byte 0 is
 * never in a set (a ref cannot contain NUL).
 */
#include "dbld/rxoverlap.h"

#include "dbld/arena.h"
#include "dbld/util.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 100      /* group nesting (parser and builder recursion) */
#define RE_DUP_LIMIT 32767 /* glibc's RE_DUP_MAX */
#define TRANS_PER_STATE 64 /* epsilon-free transitions allowed per state cap */

/* ---- byte sets ---- */

typedef struct bset {
    uint64_t w[4];
} bset;

static void bs_add(bset *s, unsigned c)
{
    s->w[c >> 6] |= UINT64_C(1) << (c & 63);
}

static int bs_has(const bset *s, unsigned c)
{
    return (int)((s->w[c >> 6] >> (c & 63)) & 1);
}

static int bs_meet(const bset *a, const bset *b, bset *out)
{
    uint64_t any = 0;
    for (int i = 0; i < 4; i++)
        any |= out->w[i] = a->w[i] & b->w[i];
    return any != 0;
}

static void bs_invert(bset *s)
{
    for (int i = 0; i < 4; i++)
        s->w[i] = ~s->w[i];
    s->w[0] &= ~UINT64_C(1); /* never NUL */
}

static bset bs_any(void)
{
    bset s = {{0}};
    bs_invert(&s);
    return s;
}

/* The byte a witness shows for a set: letters, digits, then other printables. */
static unsigned bs_pick(const bset *s)
{
    static const char pref[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (const char *p = pref; *p; p++)
        if (bs_has(s, (unsigned char)*p)) return (unsigned char)*p;
    for (unsigned c = 0x21; c < 0x7f; c++)
        if (bs_has(s, c)) return c;
    for (unsigned c = 1; c < 256; c++)
        if (bs_has(s, c)) return c;
    return 0;
}

/* ---- (1) the parser ---- */

typedef enum { A_SET, A_CAT, A_ALT, A_REP, A_BOL, A_EOL } akind;

typedef struct ast {
    akind kind;
    int min, max;      /* A_REP; max < 0: unbounded */
    bset set;          /* A_SET */
    struct ast **kids; /* A_CAT, A_ALT: n kids (a CAT of none is the empty string); A_REP: 1 */
    size_t n;
} ast;

typedef struct parser {
    const char *s;
    size_t i, len;
    int depth;
    int anchors; /* `^` and `$` read so far */
    dbld_arena *a;
    dbld_status *st;
} parser;

/* A growable list of nodes, copied into the arena once complete. */
typedef struct nodelist {
    ast **v;
    size_t n, cap;
} nodelist;

static void nl_push(nodelist *l, ast *x)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 8;
        l->v = dbld_xrealloc(l->v, l->cap * sizeof *l->v);
    }
    l->v[l->n++] = x;
}

static ast *mk(parser *p, akind k)
{
    ast *x = dbld_arena_alloc(p->a, sizeof *x);
    x->kind = k;
    return x;
}

static ast *mk_list(parser *p, akind k, nodelist *l)
{
    ast *x = mk(p, k);
    x->n = l->n;
    x->kids = dbld_arena_alloc(p->a, (l->n + 1) * sizeof *x->kids);
    if (l->n) memcpy(x->kids, l->v, l->n * sizeof *x->kids);
    free(l->v);
    return x;
}

static ast *mk_rep(parser *p, ast *kid, int min, int max)
{
    ast *x = mk(p, A_REP);
    x->kids = dbld_arena_alloc(p->a, sizeof *x->kids);
    x->kids[0] = kid;
    x->n = 1;
    x->min = min;
    x->max = max;
    return x;
}

static ast *mk_set(parser *p, bset set)
{
    ast *x = mk(p, A_SET);
    x->set = set;
    return x;
}

static int perr(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(parser *p, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dbld_status_vset(p->st, code, fmt, ap);
    va_end(ap);
    return -1;
}

static int peek(const parser *p)
{
    return p->i < p->len ? (unsigned char)p->s[p->i] : -1;
}

static int class_set(const char *name, size_t n, bset *out)
{
    static const struct {
        const char *name;
        int (*fn)(int);
    } classes[] = {{"alpha", isalpha}, {"upper", isupper},   {"lower", islower},
                   {"digit", isdigit}, {"xdigit", isxdigit}, {"alnum", isalnum},
                   {"punct", ispunct}, {"space", isspace},   {"blank", isblank},
                   {"cntrl", iscntrl}, {"graph", isgraph},   {"print", isprint}};
    for (size_t k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        if (strlen(classes[k].name) != n || memcmp(classes[k].name, name, n) != 0) continue;
        for (unsigned c = 1; c < 256; c++)
            if (classes[k].fn((int)c)) bs_add(out, c);
        return 0;
    }
    return -1;
}

/* One bracket element that can end a range: a byte, [.x.] or [=x=] (single characters). */
static int bracket_char(parser *p, unsigned *out)
{
    const char *s = p->s;
    if (peek(p) == '[' && p->i + 1 < p->len && (s[p->i + 1] == '.' || s[p->i + 1] == '=')) {
        char kind = s[p->i + 1];
        size_t start = p->i + 2, end = start;
        while (end + 1 < p->len && !(s[end] == kind && s[end + 1] == ']'))
            end++;
        if (end + 1 >= p->len) return perr(p, DBLD_INVALID_ARGUMENT, "unterminated [%c", kind);
        if (end - start != 1)
            return perr(p, DBLD_INVALID_ARGUMENT,
                        "the collating element [%c%.*s%c] is not supported", kind,
                        (int)(end - start), s + start, kind);
        *out = (unsigned char)s[start];
        p->i = end + 2;
        return 0;
    }
    if (p->i >= p->len) return perr(p, DBLD_INVALID_ARGUMENT, "unterminated bracket expression");
    *out = (unsigned char)s[p->i++];
    return 0;
}

/* After the '[': elements up to the closing ']' (first position may hold a literal ']'). */
static int parse_bracket(parser *p, ast **out)
{
    bset set = {{0}};
    int neg = peek(p) == '^';
    if (neg) p->i++;
    for (int first = 1;; first = 0) {
        int c = peek(p);
        if (c < 0) return perr(p, DBLD_INVALID_ARGUMENT, "unterminated bracket expression");
        if (c == ']' && !first) {
            p->i++;
            break;
        }
        if (c == '[' && p->i + 1 < p->len && p->s[p->i + 1] == ':') {
            const char *name = p->s + p->i + 2, *end = strstr(name, ":]");
            if (!end || class_set(name, (size_t)(end - name), &set))
                return perr(p, DBLD_INVALID_ARGUMENT, "invalid character class");
            p->i = (size_t)(end + 2 - p->s);
            continue;
        }
        unsigned lo, hi;
        if (bracket_char(p, &lo)) return -1;
        hi = lo;
        if (peek(p) == '-' && p->i + 1 < p->len && p->s[p->i + 1] != ']') {
            p->i++;
            if (bracket_char(p, &hi)) return -1;
            if (hi < lo) return perr(p, DBLD_INVALID_ARGUMENT, "invalid range end");
            if (hi >= 0x80)
                return perr(p, DBLD_INVALID_ARGUMENT,
                            "a range with a non-ASCII end (\\x%02x) is not supported", hi);
        }
        for (unsigned b = lo; b <= hi; b++)
            if (b) bs_add(&set, b);
    }
    if (neg) bs_invert(&set);
    set.w[0] &= ~UINT64_C(1);
    *out = mk_set(p, set);
    return 0;
}

static int parse_escape(parser *p, ast **out)
{
    int c = peek(p);
    if (c < 0) return perr(p, DBLD_INVALID_ARGUMENT, "trailing backslash");
    p->i++;
    bset set = {{0}};
    switch (c) {
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return perr(p, DBLD_INVALID_ARGUMENT, "the back-reference \\%c is not supported", c);
    case 'b':
    case 'B':
    case '<':
    case '>':
    case '`':
    case '\'':
        return perr(p, DBLD_INVALID_ARGUMENT, "the assertion \\%c is not supported", c);
    case 'w':
    case 'W':
        class_set("alnum", 5, &set);
        bs_add(&set, '_');
        if (c == 'W') bs_invert(&set);
        break;
    case 's':
    case 'S':
        class_set("space", 5, &set);
        if (c == 'S') bs_invert(&set);
        break;
    default:
        bs_add(&set, (unsigned)c);
    }
    *out = mk_set(p, set);
    return 0;
}

static int parse_alt(parser *p, ast **out);

static int parse_atom(parser *p, ast **out)
{
    int c = peek(p);
    p->i++;
    switch (c) {
    case '(':
        if (++p->depth > MAX_DEPTH)
            return perr(p, DBLD_INVALID_ARGUMENT, "groups nested deeper than %d", MAX_DEPTH);
        if (parse_alt(p, out)) return -1;
        if (peek(p) != ')') return perr(p, DBLD_INVALID_ARGUMENT, "unmatched (");
        p->i++;
        p->depth--;
        return 0;
    case '[':
        return parse_bracket(p, out);
    case '.':
        *out = mk_set(p, bs_any());
        return 0;
    case '^':
    case '$':
        p->anchors++;
        *out = mk(p, c == '^' ? A_BOL : A_EOL);
        return 0;
    case '\\':
        return parse_escape(p, out);
    case '*':
    case '+':
    case '?':
    case '{':
        return perr(p, DBLD_INVALID_ARGUMENT, "'%c' repeats nothing", c);
    case ')': /* only reached with no '(' open: a literal for glibc, but see the top */
        return perr(p, DBLD_INVALID_ARGUMENT,
                    "an unmatched ')' is not supported (write \\) for a literal parenthesis)");
    default: {
        bset set = {{0}};
        bs_add(&set, (unsigned)c);
        *out = mk_set(p, set);
        return 0;
    }
    }
}

/* Digits of an interval bound; -1 when there are none. */
static int bound(parser *p)
{
    int v = -1;
    while (peek(p) >= '0' && peek(p) <= '9') {
        v = (v < 0 ? 0 : v) * 10 + (peek(p) - '0');
        if (v > RE_DUP_LIMIT) v = RE_DUP_LIMIT + 1;
        p->i++;
    }
    return v;
}

/* After the '{': m}, m,}, m,n}, ,n} (glibc: 0..n) or ,} (0..). */
static int parse_interval(parser *p, int *min, int *max)
{
    *min = bound(p);
    *max = *min;
    if (peek(p) == ',') {
        p->i++;
        *max = bound(p);
        if (*min < 0) *min = 0;
    }
    if (peek(p) != '}' || *min < 0 || *min > RE_DUP_LIMIT || *max > RE_DUP_LIMIT ||
        (*max >= 0 && *max < *min))
        return perr(p, DBLD_INVALID_ARGUMENT, "invalid interval");
    p->i++;
    return 0;
}

static int parse_piece(parser *p, ast **out)
{
    int anchors = p->anchors;
    if (parse_atom(p, out)) return -1;
    for (int ops = 0;; ops++) {
        int c = peek(p), min, max;
        if (c == '*')
            min = 0, max = -1;
        else if (c == '+')
            min = 1, max = -1;
        else if (c == '?')
            min = 0, max = 1;
        else if (c != '{')
            return 0;
        p->i++;
        if (p->anchors != anchors) /* glibc loses them in some repeated copies */
            return perr(p, DBLD_INVALID_ARGUMENT,
                        "'^' or '$' inside a repeated group is not supported");
        if (ops == MAX_DEPTH)
            return perr(p, DBLD_INVALID_ARGUMENT, "more than %d repetitions in a row", MAX_DEPTH);
        if (c == '{' && parse_interval(p, &min, &max)) return -1;
        *out = mk_rep(p, *out, min, max);
    }
}

static int parse_branch(parser *p, ast **out)
{
    nodelist l = {0};
    for (int c; (c = peek(p)) >= 0 && c != '|' && !(c == ')' && p->depth > 0);) {
        ast *x;
        if (parse_piece(p, &x)) {
            free(l.v);
            return -1;
        }
        nl_push(&l, x);
    }
    *out = mk_list(p, A_CAT, &l);
    return 0;
}

static int parse_alt(parser *p, ast **out)
{
    nodelist l = {0};
    for (;;) {
        ast *x;
        if (parse_branch(p, &x)) {
            free(l.v);
            return -1;
        }
        nl_push(&l, x);
        if (peek(p) != '|') break;
        p->i++;
    }
    if (l.n == 1) {
        *out = l.v[0];
        free(l.v);
        return 0;
    }
    *out = mk_list(p, A_ALT, &l);
    return 0;
}

/* ---- (2) Thompson automaton ---- */

typedef enum { E_EPS, E_BOL, E_EOL, E_SET } ekind;

typedef struct nedge {
    uint32_t from, to;
    ekind kind;
    uint32_t label; /* E_SET: index into sets */
} nedge;

typedef struct nfa {
    nedge *e;
    size_t n_e, cap_e;
    bset *sets;
    size_t n_sets, cap_sets;
    size_t n_states, max_states;
    dbld_status *st;
} nfa;

typedef struct frag {
    uint32_t in, out;
} frag;

static int new_state(nfa *m, uint32_t *s)
{
    if (m->n_states >= m->max_states)
        return dbld_status_set(m->st, DBLD_RESOURCE_EXHAUSTED,
                               "the pattern needs more than %zu automaton states", m->max_states);
    *s = (uint32_t)m->n_states++;
    return 0;
}

static void add_edge(nfa *m, uint32_t from, ekind kind, uint32_t to, const bset *set)
{
    if (m->n_e == m->cap_e) {
        m->cap_e = m->cap_e ? m->cap_e * 2 : 64;
        m->e = dbld_xrealloc(m->e, m->cap_e * sizeof *m->e);
    }
    nedge *e = &m->e[m->n_e++];
    *e = (nedge){.from = from, .to = to, .kind = kind};
    if (kind != E_SET) return;
    if (m->n_sets == m->cap_sets) {
        m->cap_sets = m->cap_sets ? m->cap_sets * 2 : 32;
        m->sets = dbld_xrealloc(m->sets, m->cap_sets * sizeof *m->sets);
    }
    e->label = (uint32_t)m->n_sets;
    m->sets[m->n_sets++] = *set;
}

static int build(nfa *m, const ast *x, frag *f);

/* x{min,max}: min copies, then a loop (max unbounded) or max-min nested optional copies. */
static int build_rep(nfa *m, const ast *x, frag *f)
{
    uint32_t cur = 0, stop = 0;
    frag g;
    if (new_state(m, &cur)) return -1;
    f->in = cur;
    for (int i = 0; i < x->min; i++) {
        if (build(m, x->kids[0], &g)) return -1;
        add_edge(m, cur, E_EPS, g.in, NULL);
        cur = g.out;
    }
    if (x->max < 0) {
        if (build(m, x->kids[0], &g) || new_state(m, &stop)) return -1;
        add_edge(m, cur, E_EPS, stop, NULL);
        add_edge(m, stop, E_EPS, g.in, NULL);
        add_edge(m, g.out, E_EPS, stop, NULL);
        cur = stop;
    } else if (x->max > x->min) {
        if (new_state(m, &stop)) return -1;
        for (int i = x->min; i < x->max; i++) {
            if (build(m, x->kids[0], &g)) return -1;
            add_edge(m, cur, E_EPS, stop, NULL);
            add_edge(m, cur, E_EPS, g.in, NULL);
            cur = g.out;
        }
        add_edge(m, cur, E_EPS, stop, NULL);
        cur = stop;
    }
    f->out = cur;
    return 0;
}

static int build(nfa *m, const ast *x, frag *f)
{
    frag g;
    switch (x->kind) {
    case A_SET:
    case A_BOL:
    case A_EOL:
        if (new_state(m, &f->in) || new_state(m, &f->out)) return -1;
        add_edge(m, f->in,
                 x->kind == A_SET   ? E_SET
                 : x->kind == A_BOL ? E_BOL
                                    : E_EOL,
                 f->out, &x->set);
        return 0;
    case A_CAT:
        if (new_state(m, &f->in)) return -1;
        f->out = f->in;
        for (size_t i = 0; i < x->n; i++) {
            if (build(m, x->kids[i], &g)) return -1;
            add_edge(m, f->out, E_EPS, g.in, NULL);
            f->out = g.out;
        }
        return 0;
    case A_ALT:
        if (new_state(m, &f->in) || new_state(m, &f->out)) return -1;
        for (size_t i = 0; i < x->n; i++) {
            if (build(m, x->kids[i], &g)) return -1;
            add_edge(m, f->in, E_EPS, g.in, NULL);
            add_edge(m, g.out, E_EPS, f->out, NULL);
        }
        return 0;
    case A_REP:
        return build_rep(m, x, f);
    }
    return dbld_status_set(m->st, DBLD_INTERNAL, "unknown node kind %d", (int)x->kind);
}

/* ---- (3) epsilon-free automaton ---- */

struct dbld_rx {
    char *pattern;
    regex_t re;
    size_t n;        /* states; 0 is the start */
    uint8_t *accept; /* per state */
    bset *label;     /* per state: the bytes that enter it */
    size_t *first;   /* n + 1 offsets into tr */
    uint32_t *tr;    /* targets */
    char *prefix;    /* the literal bytes every match starts with (a quick disjointness test) */
};

typedef struct closure_ctx {
    const nfa *m;
    const size_t *adj_first; /* CSR adjacency of m's edges by from */
    const uint32_t *adj;     /* edge indices */
    uint32_t *seen[2];       /* per NFA state and "after $": stamp of the last visit */
    uint32_t *stack;         /* (state << 1 | ended) */
} closure_ctx;

/* Byte edges and acceptance reachable from NFA state s. label: the bytes that
 * enter s (NULL for the start, where `^` holds). Fails where glibc's newline
 * handling of `^` and `$` could differ (see the top of the file). */
static int closure(closure_ctx *c, uint32_t s, const bset *label, uint32_t stamp, uint32_t final,
                   const int32_t *pos_of, uint32_t **tr, size_t *n_tr, size_t *cap_tr,
                   uint8_t *accept, dbld_status *st)
{
    size_t sp = 0;
    c->stack[sp++] = s << 1;
    c->seen[0][s] = stamp;
    while (sp) {
        uint32_t top = c->stack[--sp], q = top >> 1, ended = top & 1;
        if (q == final) *accept = 1;
        for (size_t k = c->adj_first[q]; k < c->adj_first[q + 1]; k++) {
            const nedge *e = &c->m->e[c->adj[k]];
            uint32_t nend = ended;
            if (e->kind == E_SET && ended && bs_has(&c->m->sets[e->label], '\n'))
                return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                       "'$' followed by more of the pattern is not supported");
            if (e->kind == E_BOL && label && bs_has(label, '\n'))
                return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                       "'^' after the start of the pattern is not supported");
            if (e->kind == E_SET) {
                if (ended) continue;
                if (*n_tr == *cap_tr) {
                    *cap_tr = *cap_tr ? *cap_tr * 2 : 64;
                    *tr = dbld_xrealloc(*tr, *cap_tr * sizeof **tr);
                }
                (*tr)[(*n_tr)++] = (uint32_t)pos_of[e->to];
                continue;
            }
            if (e->kind == E_BOL && label) continue;
            if (e->kind == E_EOL) nend = 1;
            if (c->seen[nend][e->to] == stamp) continue;
            c->seen[nend][e->to] = stamp;
            c->stack[sp++] = e->to << 1 | nend;
        }
    }
    return 0;
}

/* Keep the states from which acceptance is reachable; renumber them (0 stays 0). */
static void prune(dbld_rx *rx)
{
    size_t n = rx->n, n_tr = rx->first[n];
    size_t *rfirst = dbld_xcalloc(n + 1, sizeof *rfirst);
    uint32_t *rsrc = dbld_xmalloc((n_tr + 1) * sizeof *rsrc),
             *queue = dbld_xmalloc(n * sizeof *queue);
    uint8_t *alive = dbld_xcalloc(n, 1);
    for (size_t k = 0; k < n_tr; k++)
        rfirst[rx->tr[k] + 1]++;
    for (size_t i = 0; i < n; i++)
        rfirst[i + 1] += rfirst[i];
    size_t *fill = dbld_xmalloc((n + 1) * sizeof *fill);
    memcpy(fill, rfirst, (n + 1) * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        for (size_t k = rx->first[i]; k < rx->first[i + 1]; k++)
            rsrc[fill[rx->tr[k]]++] = (uint32_t)i;
    size_t qn = 0;
    for (size_t i = 0; i < n; i++)
        if (rx->accept[i]) alive[i] = 1, queue[qn++] = (uint32_t)i;
    for (size_t h = 0; h < qn; h++)
        for (size_t k = rfirst[queue[h]]; k < rfirst[queue[h] + 1]; k++)
            if (!alive[rsrc[k]]) alive[rsrc[k]] = 1, queue[qn++] = rsrc[k];
    /* renumber in place: new index of old state i in queue[] reused as a map */
    uint32_t *map = queue;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        map[i] = (i == 0 || alive[i]) ? (uint32_t)m++ : UINT32_MAX;
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (map[i] == UINT32_MAX) continue;
        size_t from = rx->first[i], to = rx->first[i + 1];
        rx->first[map[i]] = t;
        for (size_t k = from; k < to; k++)
            if (map[rx->tr[k]] != UINT32_MAX) rx->tr[t++] = map[rx->tr[k]];
        rx->accept[map[i]] = rx->accept[i];
        rx->label[map[i]] = rx->label[i];
    }
    rx->first[m] = t;
    rx->n = m;
    free(rfirst);
    free(rsrc);
    free(queue);
    free(alive);
    free(fill);
}

static int eps_free(const nfa *m, frag whole, dbld_rx *rx, dbld_status *st)
{
    size_t ns = m->n_states, max_tr = m->max_states * TRANS_PER_STATE;
    /* state 0: the start (where ^ holds); then one state per byte edge's target */
    int32_t *pos_of = dbld_xmalloc((ns + 1) * sizeof *pos_of);
    for (size_t i = 0; i < ns; i++)
        pos_of[i] = -1;
    uint32_t *nfa_of = dbld_xmalloc((m->n_e + 2) * sizeof *nfa_of);
    rx->label = dbld_xcalloc(m->n_e + 2, sizeof *rx->label);
    size_t n = 1;
    nfa_of[0] = whole.in;
    for (size_t k = 0; k < m->n_e; k++) {
        if (m->e[k].kind != E_SET) continue;
        pos_of[m->e[k].to] =
            (int32_t)n; /* each Thompson state is entered by at most one byte edge */
        rx->label[n] = m->sets[m->e[k].label];
        nfa_of[n++] = m->e[k].to;
    }
    closure_ctx c = {.m = m};
    size_t *adj_first = dbld_xcalloc(ns + 2, sizeof *adj_first);
    uint32_t *adj = dbld_xmalloc((m->n_e + 1) * sizeof *adj);
    for (size_t k = 0; k < m->n_e; k++)
        adj_first[m->e[k].from + 1]++;
    for (size_t i = 0; i < ns; i++)
        adj_first[i + 1] += adj_first[i];
    size_t *fill = dbld_xmalloc((ns + 1) * sizeof *fill);
    memcpy(fill, adj_first, (ns + 1) * sizeof *fill);
    for (size_t k = 0; k < m->n_e; k++)
        adj[fill[m->e[k].from]++] = (uint32_t)k;
    free(fill);
    c.adj_first = adj_first;
    c.adj = adj;
    c.seen[0] = dbld_xcalloc(ns + 1, sizeof *c.seen[0]);
    c.seen[1] = dbld_xcalloc(ns + 1, sizeof *c.seen[1]);
    c.stack = dbld_xmalloc((2 * ns + 1) * sizeof *c.stack);
    rx->n = n;
    rx->accept = dbld_xcalloc(n, 1);
    rx->first = dbld_xcalloc(n + 1, sizeof *rx->first);
    size_t n_tr = 0, cap_tr = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rx->first[i] = n_tr;
        rc = closure(&c, nfa_of[i], i ? &rx->label[i] : NULL, (uint32_t)i + 1, whole.out, pos_of,
                     &rx->tr, &n_tr, &cap_tr, &rx->accept[i], st);
        if (!rc && n_tr > max_tr)
            rc = dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                                 "the pattern needs more than %zu automaton transitions", max_tr);
    }
    rx->first[n] = n_tr;
    free(pos_of);
    free(nfa_of);
    free(adj_first);
    free(adj);
    free(c.seen[0]);
    free(c.seen[1]);
    free(c.stack);
    if (!rc) prune(rx);
    return rc;
}

/* While the state is not accepting and has one way on, over one byte, that byte is forced. */
static char *literal_prefix(const dbld_rx *rx)
{
    size_t len = 0, cap = 16;
    char *out = dbld_xmalloc(cap);
    for (size_t q = 0, steps = 0; steps < rx->n && !rx->accept[q]; steps++) {
        if (rx->first[q + 1] - rx->first[q] != 1) break;
        uint32_t t = rx->tr[rx->first[q]];
        const bset *l = &rx->label[t];
        int bits = 0;
        for (int i = 0; i < 4; i++)
            bits += __builtin_popcountll(l->w[i]);
        if (bits != 1) break;
        if (len + 2 > cap) out = dbld_xrealloc(out, cap *= 2);
        out[len++] = (char)bs_pick(l);
        q = t;
    }
    out[len] = '\0';
    return out;
}

/* ---- compile, free, match ---- */

static char *anchored(const char *pattern)
{
    size_t len = strlen(pattern);
    char *s = dbld_xmalloc(len + 5);
    memcpy(s, "^(", 2);
    memcpy(s + 2, pattern, len);
    memcpy(s + 2 + len, ")$", 3);
    return s;
}

/* glibc's regcomp copies the operand of `+` and `{m,n}` (n copies), so
 * stacked or nested repetitions grow exponentially ("d+++++++++++++++++++"
 * took 2.5 GB, found by tests/fuzz/fuzz_rxoverlap). The product of the
 * copies along any nesting is limited; `*` and `?` copy nothing. */
#define MAX_COPIES 20000
#define MAX_GROUP_DEPTH 64
/* Copies that may match the empty string cost glibc quadratic time and
 * memory: each one's epsilon closure holds the ones after it
 * ("c{2,13107}" took 1.36 GB and 5.5 s, "(a|b?){3000}" 569 MB; found by
 * tests/fuzz/fuzz_rxoverlap). At most this many in a pattern ("c{0,1000}"
 * takes 10 MB and 26 ms). Optional copies of what can match the empty
 * string already cost more than that ("(()?){300}": 3 GB and 23 s,
 * "(){1,333}": 411 MB and 6 s): each counts NULLABLE_WEIGHT times. */
#define MAX_OPTIONAL 1000
#define NULLABLE_WEIGHT 10

/* The index just past a bracket expression starting at s[i] == '['. */
static size_t skip_bracket(const char *s, size_t i)
{
    size_t j = i + 1;
    if (s[j] == '^') j++;
    if (s[j] == ']') j++;
    while (s[j] && s[j] != ']') {
        if (s[j] == '[' && (s[j + 1] == ':' || s[j + 1] == '.' || s[j + 1] == '=')) {
            char t = s[j + 1];
            j += 2;
            while (s[j] && !(s[j] == t && s[j + 1] == ']'))
                j++;
            if (s[j]) j += 2;
            continue;
        }
        j++;
    }
    return s[j] ? j + 1 : j;
}

/* A `{m}`, `{m,}`, `{m,n}` or `{,n}` (glibc: {0,n}) at s[i]: its weight
 * (the copies glibc makes) and *end past it; 0 when it is not one. */
static long brace_weight(const char *s, size_t i, size_t *end)
{
    char *e;
    long m = strtol(s + i + 1, &e, 10), n = m;
    if (e == s + i + 1 && s[i + 1] != ',') return 0;
    if (*e == ',') {
        char *e2;
        n = strtol(e + 1, &e2, 10);
        if (e2 == e + 1) n = m; /* {m,}: m copies and a star */
        e = e2;
    }
    if (*e != '}') return 0;
    *end = (size_t)(e - s) + 1;
    return n > 1 ? n : 1;
}

/* 0 when the repetitions of pattern expand to at most MAX_COPIES copies, no
 * repetition operator follows another, and no group with two alternatives
 * that match the empty string is repeated by + or {m,n}: glibc's regcomp
 * computes epsilon closures through such copies in exponential time
 * ("(a||){30}*", "(a*|b*){30}*" did not finish in 10 s; found by
 * tests/fuzz/fuzz_rxoverlap). An unmatched `)` is refused: it would close
 * the group of anchored() and let the rest of the pattern match unanchored
 * ("a)|(b" would match every ref starting with "a").
 * Alongside, per depth, the copies of the group so far (size: every
 * alternative counts) and how many of them may match the empty string
 * (optional): `x?` and `x*` make all of x's copies optional, `x+` adds one
 * optional copy of x, `x{m,n}` makes n-m of its n copies optional. */
/* The last element at depth d is finished: its copies join its group's. */
static void el_done(double *size_sum, double *size_last, double *opt_sum, double *opt_last, int d)
{
    size_sum[d] += size_last[d], opt_sum[d] += opt_last[d];
    size_last[d] = opt_last[d] = 0;
}

static int check_copies(const char *s, dbld_status *st)
{
    double inner[MAX_GROUP_DEPTH + 1], last[MAX_GROUP_DEPTH + 1];
    /* per depth: the current branch can match "" so far / how many
     * finished branches of the group can */
    int br_null[MAX_GROUP_DEPTH + 1], n_null[MAX_GROUP_DEPTH + 1];
    int d = 0, after_simple = 0; /* the previous token was *, + or ? */
    int br_before = 1,
        el_multi = 0; /* the last element: its branch before it; a group of 2+ nullable branches */
    inner[0] = 1, last[0] = 0, br_null[0] = 1, n_null[0] = 0;
    /* per depth: the group's finished elements and its last element */
    double size_sum[MAX_GROUP_DEPTH + 1], size_last[MAX_GROUP_DEPTH + 1];
    double opt_sum[MAX_GROUP_DEPTH + 1], opt_last[MAX_GROUP_DEPTH + 1];
    size_sum[0] = size_last[0] = opt_sum[0] = opt_last[0] = 0;
    int el_null[MAX_GROUP_DEPTH + 1]; /* the last element can match "" */
    el_null[0] = 0;
    for (size_t i = 0; s[i];) {
        char c = s[i];
        double w = 0;
        size_t next = i + 1;
        size_t brace_end = 0;
        long bw = c == '{' ? brace_weight(s, i, &brace_end) : 0;
        int quant = c == '*' || c == '+' || c == '?' || bw > 0;
        if (quant && after_simple) /* glibc's regcomp takes seconds and megabytes of stack */
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": a repetition operator "
                                   "follows *, + or ? at offset %zu",
                                   s, i);
        if ((c == '+' || bw > 0) && el_multi)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": a group with two "
                                   "alternatives that match the empty string is repeated at "
                                   "offset %zu",
                                   s, i);
        after_simple = c == '*' || c == '+' || c == '?';
        long bm = bw > 0 ? strtol(s + i + 1, NULL, 10) : 0; /* a brace's m */
        /* what an optional copy of the last element counts */
        double opt_w = el_null[d] ? NULLABLE_WEIGHT : 1;
        if (c == '*' || c == '?' || (bw > 0 && bm == 0))
            br_null[d] = br_before; /* the last element may now match "" */
        if (!quant) el_multi = 0;
        if (c == '\\' && s[i + 1] && strchr("bB<>`'", s[i + 1]))
            /* glibc's GNU word assertions: "(\bx*){133}" took regcomp 6 GB
             * and 38 s (tests/fuzz/fuzz_rxoverlap); the automaton refuses
             * them too, and PostgreSQL reads "\<" as a literal "<" */
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": the assertion \\%c at "
                                   "offset %zu is not supported",
                                   s, s[i + 1], i);
        if (c == ')' && d == 0) /* it would close the ^( ... )$ that anchors the pattern */
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": an unmatched ')' at offset "
                                   "%zu (write \\) for a literal parenthesis)",
                                   s, i);
        if (c == '(') {
            if (d == MAX_GROUP_DEPTH)
                return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                       "invalid regular expression \"%s\": groups nested deeper "
                                       "than %d",
                                       s, MAX_GROUP_DEPTH);
            el_done(size_sum, size_last, opt_sum, opt_last, d);
            d++;
            inner[d] = 1, last[d] = 0, br_null[d] = 1, n_null[d] = 0;
            size_sum[d] = size_last[d] = opt_sum[d] = opt_last[d] = 0;
            el_null[d] = 0;
        } else if (c == ')' && d > 0) {
            n_null[d] += br_null[d];
            int group_null = n_null[d] > 0;
            el_multi = n_null[d] >= 2;
            d--;
            last[d] = inner[d + 1];
            /* the group's own nodes count: "(){13333}" took 5.5 GB */
            size_last[d] = size_sum[d + 1] + size_last[d + 1] + 1;
            opt_last[d] = opt_sum[d + 1] + opt_last[d + 1] + group_null;
            el_null[d] = group_null;
            br_before = br_null[d];
            br_null[d] = br_null[d] && group_null;
        } else if (c == '|') {
            last[d] = 0;
            n_null[d] += br_null[d];
            br_null[d] = 1;
            el_done(size_sum, size_last, opt_sum, opt_last, d);
            el_null[d] = 0;
        } else if (c == '+') {
            w = 2;
            opt_last[d] += size_last[d] * opt_w;
            size_last[d] *= 2;
        } else if (c == '*' || c == '?') {
            w = 1;
            opt_last[d] = size_last[d] * opt_w;
            el_null[d] = 1;
        } else if (bw > 0) {
            w = (double)bw;
            next = brace_end;
            double m = (double)bm;
            /* {m,}: m copies and a starred one; {m}: m copies, {m,n}: n */
            double n = s[brace_end - 2] == ',' ? m + 1 : (double)bw;
            double n_opt = s[brace_end - 2] == ',' ? 1 : n - m;
            if (n_opt < 0) n_opt = 0;
            opt_last[d] = m * opt_last[d] + n_opt * size_last[d] * opt_w;
            size_last[d] *= n;
            if (m == 0) el_null[d] = 1;
        } else {
            if (c == '[') next = skip_bracket(s, i);
            if (c == '\\' && s[i + 1]) next = i + 2;
            last[d] = 1;
            br_before = br_null[d];
            br_null[d] = 0;
            el_done(size_sum, size_last, opt_sum, opt_last, d);
            size_last[d] = 1;
            el_null[d] = c == '^' || c == '$'; /* zero-width */
        }
        if (w > 0) last[d] *= w;
        if (last[d] > inner[d]) inner[d] = last[d];
        if (inner[d] > MAX_COPIES)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": its repetitions expand to "
                                   "more than %d copies",
                                   s, MAX_COPIES);
        double optional = 0;
        for (int k = 0; k <= d; k++)
            optional += opt_sum[k] + opt_last[k];
        if (optional > MAX_OPTIONAL)
            return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                                   "invalid regular expression \"%s\": more than %d copies that "
                                   "may match the empty string (from ?, *, + and {m,n}); write "
                                   "fewer or narrower repetitions",
                                   s, MAX_OPTIONAL);
        i = next;
    }
    return 0;
}

int dbld_rx_regcomp(regex_t *re, const char *pattern, dbld_status *st)
{
    if (check_copies(pattern, st)) return st->code;
    char *text = anchored(pattern);
    int rc = regcomp(re, text, REG_EXTENDED | REG_NOSUB);
    free(text);
    if (rc == 0) return 0;
    char err[128];
    regerror(rc, re, err, sizeof err);
    return dbld_status_set(st, DBLD_INVALID_ARGUMENT, "invalid regular expression \"%s\": %s",
                           pattern, err);
}

void dbld_rx_free(dbld_rx *rx)
{
    if (!rx) return;
    regfree(&rx->re);
    free(rx->pattern);
    free(rx->accept);
    free(rx->label);
    free(rx->first);
    free(rx->tr);
    free(rx->prefix);
    free(rx);
}

const char *dbld_rx_pattern(const dbld_rx *rx)
{
    return rx->pattern;
}

int dbld_rx_compile(const char *pattern, size_t max_states, dbld_rx **out, dbld_status *st)
{
    dbld_status local;
    if (!st) st = &local;
    *out = NULL;
    if (MB_CUR_MAX > 1)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "patterns cannot be checked in a multibyte locale");
    dbld_rx *rx = dbld_xcalloc(1, sizeof *rx);
    if (dbld_rx_regcomp(&rx->re, pattern, st)) {
        free(rx);
        return st->code;
    }
    rx->pattern = dbld_xstrdup(pattern);
    parser p = {.s = pattern, .len = strlen(pattern), .a = dbld_arena_create(), .st = st};
    nfa m = {.max_states = max_states ? max_states : DBLD_RX_MAX_STATES, .st = st};
    ast *body = NULL;
    int rc = parse_alt(&p, &body);
    frag whole;
    if (!rc) rc = build(&m, body, &whole);
    if (!rc) rc = eps_free(&m, whole, rx, st);
    if (!rc) rx->prefix = literal_prefix(rx);
    dbld_arena_destroy(p.a);
    free(m.e);
    free(m.sets);
    if (rc) {
        dbld_rx_free(rx);
        return st->code;
    }
    *out = rx;
    return 0;
}

int dbld_rx_matches(const dbld_rx *rx, const char *s)
{
    uint8_t *cur = dbld_xcalloc(rx->n, 1), *next = dbld_xcalloc(rx->n, 1);
    cur[0] = 1;
    for (; *s; s++) {
        memset(next, 0, rx->n);
        for (size_t i = 0; i < rx->n; i++)
            for (size_t k = rx->first[i]; cur[i] && k < rx->first[i + 1]; k++)
                if (bs_has(&rx->label[rx->tr[k]], (unsigned char)*s)) next[rx->tr[k]] = 1;
        uint8_t *t = cur;
        cur = next;
        next = t;
    }
    int ok = 0;
    for (size_t i = 0; i < rx->n && !ok; i++)
        ok = cur[i] && rx->accept[i];
    free(cur);
    free(next);
    return ok;
}

/* The k-th byte (mod its size) of a non-empty set. */
static unsigned bs_nth(const bset *s, unsigned k)
{
    unsigned size = 0;
    for (int i = 0; i < 4; i++)
        size += (unsigned)__builtin_popcountll(s->w[i]);
    k %= size;
    for (unsigned c = 1;; c++)
        if (bs_has(s, c) && k-- == 0) return c;
}

/* The i-th choice: the bytes again, varied, once they run out. */
static unsigned choice(const unsigned char *choices, size_t n, size_t *i)
{
    unsigned c = choices[*i % n] ^ (unsigned)(*i / n);
    ++*i;
    return c;
}

char *dbld_rx_sample(const dbld_rx *rx, const unsigned char *choices, size_t n, size_t max_len)
{
    if (n == 0) return NULL;
    char *out = dbld_xmalloc(max_len + 1);
    size_t len = 0, i = 0, q = 0;
    for (;;) {
        size_t count = rx->first[q + 1] - rx->first[q];
        if (rx->accept[q] && (count == 0 || choice(choices, n, &i) % 2 == 0)) break;
        if (count == 0 || len == max_len) {
            free(out);
            return NULL;
        }
        uint32_t t = rx->tr[rx->first[q] + choice(choices, n, &i) % count];
        out[len++] = (char)bs_nth(&rx->label[t], choice(choices, n, &i));
        q = t;
    }
    out[len] = '\0';
    return out;
}

/* ---- (4) the product search ---- */

/* A product state (the byte that entered it is any of label a & label b). */
typedef struct qent {
    uint32_t a, b, parent;
} qent;

#define SMALL_Q 32

/* Starts in its own arrays, so that the many short searches of a config load allocate nothing. */
typedef struct search {
    qent *q;
    size_t n, cap;
    uint64_t *keys; /* open addressing, key + 1; 0 = empty */
    size_t mask;
    qent q_small[SMALL_Q];
    uint64_t keys_small[2 * SMALL_Q];
} search;

static size_t slot(uint64_t k, size_t mask)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    return (size_t)k & mask;
}

/* Insert key; 1 if it was new. */
static int seen_add(search *s, uint64_t key)
{
    if ((s->n + 1) * 2 > s->mask + 1) {
        size_t old = s->mask + 1;
        uint64_t *keys = s->keys;
        s->mask = old * 2 - 1;
        s->keys = dbld_xcalloc(old * 2, sizeof *s->keys);
        for (size_t i = 0; i < old; i++) {
            if (!keys[i]) continue;
            size_t h = slot(keys[i], s->mask);
            while (s->keys[h])
                h = (h + 1) & s->mask;
            s->keys[h] = keys[i];
        }
        if (keys != s->keys_small) free(keys);
    }
    size_t h = slot(key + 1, s->mask);
    for (; s->keys[h]; h = (h + 1) & s->mask)
        if (s->keys[h] == key + 1) return 0;
    s->keys[h] = key + 1;
    return 1;
}

static void push(search *s, uint32_t a, uint32_t b, uint32_t parent)
{
    if (s->n == s->cap) {
        qent *q = dbld_xmalloc(s->cap * 2 * sizeof *q);
        memcpy(q, s->q, s->n * sizeof *q);
        if (s->q != s->q_small) free(s->q);
        s->q = q;
        s->cap *= 2;
    }
    s->q[s->n++] = (qent){a, b, parent};
}

static char *witness_of(const search *s, size_t at, const dbld_rx *a, const dbld_rx *b)
{
    size_t len = 0;
    for (size_t i = at; i != 0; i = s->q[i].parent)
        len++;
    char *w = dbld_xmalloc(len + 1);
    w[len] = '\0';
    for (size_t i = at; i != 0; i = s->q[i].parent) {
        bset both;
        bs_meet(&a->label[s->q[i].a], &b->label[s->q[i].b], &both);
        w[--len] = (char)bs_pick(&both);
    }
    return w;
}

/* BFS over (state of a, state of b); the first accepting pair pushed is at the least depth. */
static int product(const dbld_rx *a, const dbld_rx *b, size_t max_pairs, char **witness,
                   dbld_status *st)
{
    search s;
    s.n = 0;
    s.cap = SMALL_Q;
    s.q = s.q_small;
    s.mask = 2 * SMALL_Q - 1;
    s.keys = s.keys_small;
    memset(s.keys_small, 0, sizeof s.keys_small);
    seen_add(&s, 0);
    push(&s, 0, 0, 0);
    int rc = 0;
    if (a->accept[0] && b->accept[0]) *witness = dbld_xstrdup("");
    for (size_t h = 0; h < s.n && !*witness && !rc; h++) {
        uint32_t pa = s.q[h].a, pb = s.q[h].b;
        for (size_t i = a->first[pa]; i < a->first[pa + 1] && !*witness && !rc; i++) {
            uint32_t ta = a->tr[i];
            for (size_t k = b->first[pb]; k < b->first[pb + 1]; k++) {
                uint32_t tb = b->tr[k];
                bset both;
                if (!bs_meet(&a->label[ta], &b->label[tb], &both) ||
                    !seen_add(&s, (uint64_t)ta * b->n + tb))
                    continue;
                if (s.n >= max_pairs) {
                    rc = dbld_status_set(st, DBLD_RESOURCE_EXHAUSTED,
                                         "the search exceeded %zu state pairs", max_pairs);
                    break;
                }
                push(&s, ta, tb, (uint32_t)h);
                if (a->accept[ta] && b->accept[tb]) {
                    *witness = witness_of(&s, s.n - 1, a, b);
                    break;
                }
            }
        }
    }
    if (s.q != s.q_small) free(s.q);
    if (s.keys != s.keys_small) free(s.keys);
    return rc;
}

int dbld_rx_overlap(const dbld_rx *a, const dbld_rx *b, size_t max_pairs, char **witness,
                    dbld_status *st)
{
    *witness = NULL;
    size_t la = strlen(a->prefix), lb = strlen(b->prefix);
    if (memcmp(a->prefix, b->prefix, la < lb ? la : lb) != 0) return 0;
    int rc = product(a, b, max_pairs ? max_pairs : DBLD_RX_MAX_PAIRS, witness, st);
    if (rc || !*witness) return rc;
    if (regexec(&a->re, *witness, 0, NULL, 0) == 0 && regexec(&b->re, *witness, 0, NULL, 0) == 0)
        return 0;
    char *q = dbld_rx_quote(*witness, 64);
    rc = dbld_status_set(st, DBLD_INTERNAL,
                         "internal error: regexec() does not confirm that \"%s\" and \"%s\" "
                         "both match %s",
                         a->pattern, b->pattern, q);
    free(q);
    free(*witness);
    *witness = NULL;
    return rc;
}

char *dbld_rx_quote(const char *s, size_t max_len)
{
    size_t len = strlen(s), shown = len < max_len ? len : max_len;
    char *out = dbld_xmalloc(shown * 4 + 8), *o = out;
    *o++ = '"';
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            o += sprintf(o, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            o += sprintf(o, "\\x%02x", c);
        else
            *o++ = (char)c;
    }
    if (shown < len) o += sprintf(o, "...");
    *o++ = '"';
    *o = '\0';
    return out;
}
