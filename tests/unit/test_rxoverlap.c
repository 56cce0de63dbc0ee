/* test_rxoverlap.c - output patterns as automata (lib/rxoverlap.c): shortest
 * common strings of overlapping patterns, disjoint pairs, the caps, the
 * constructs that are refused, and the automata checked against regexec() on
 * generated patterns and strings (matching and brute-force intersection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/rxoverlap.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dbld_rx *compile_ok(const char *pattern)
{
    dbld_rx *rx = NULL;
    dbld_status st;
    int rc = dbld_rx_compile(pattern, 0, &rx, &st);
    if (rc) print_error("%s: %s\n", pattern, st.msg);
    assert_int_equal(rc, 0);
    return rx;
}

/* NULL want: the patterns must be disjoint. Checked both ways round. */
static void expect_overlap(const char *a, const char *b, const char *want)
{
    dbld_rx *ra = compile_ok(a), *rb = compile_ok(b);
    for (int turn = 0; turn < 2; turn++) {
        char *w = NULL;
        dbld_status st;
        int rc = turn ? dbld_rx_overlap(rb, ra, 0, &w, &st) : dbld_rx_overlap(ra, rb, 0, &w, &st);
        if (rc) print_error("%s vs %s: %s\n", a, b, st.msg);
        assert_int_equal(rc, 0);
        if ((want == NULL) != (w == NULL) || (want && strcmp(w, want) != 0))
            print_error("%s vs %s: want %s, got %s\n", a, b, want ? want : "(disjoint)",
                        w ? w : "(disjoint)");
        if (want) {
            assert_non_null(w);
            assert_string_equal(w, want);
        } else {
            assert_null(w);
        }
        free(w);
    }
    dbld_rx_free(ra);
    dbld_rx_free(rb);
}

static void test_overlapping(void **state)
{
    (void)state;
    expect_overlap("amb/[0-9]+", "amb/1.*", "amb/1");
    expect_overlap("x/(foo|bar)", "x/ba.", "x/bar");
    expect_overlap("a/.*", "a/.*", "a/");
    expect_overlap("c/[[:digit:]]+", "c/[0-9a-f]{2}", "c/00");
    expect_overlap("c/[[:alpha:]_]+", "c/[[:punct:]]", "c/_");
    expect_overlap("n/[^0-9]", "n/[0-9a]", "n/a");
    expect_overlap("n/[^]a-]", "n/[]ab-]", "n/b");
    expect_overlap("r/[a-f]x", "r/[e-z]x", "r/ex");
    expect_overlap("r/[--/]", "r/[.]", "r/.");
    expect_overlap("m/a{2,4}", "m/a{4,6}", "m/aaaa");
    expect_overlap("m/a{3}", "m/a+", "m/aaa");
    expect_overlap("m/(ab){2,}", "m/a.*", "m/abab");
    expect_overlap("m/x{,2}", "m/", "m/");
    expect_overlap("^a/b$", "a/.", "a/b");
    expect_overlap("(^a|b$)", "a", "a");
    expect_overlap("d/.", "d/\\.", "d/.");
    expect_overlap("d/[\\]", "d/\\\\", "d/\\");
    expect_overlap("w/\\w+", "w/[^a-z0-9]", "w/A");
    expect_overlap("s/\\s", "s/[[:blank:]]", "s/\t");
    expect_overlap("e/(a|)b", "e/b", "e/b");
    expect_overlap("a*", "b*", "");
    expect_overlap("p/\\)+", "p/[)]{2}", "p/))");
    expect_overlap("q/[[:cntrl:]]", "q/[\x01-\x05]", "q/\x01");
    expect_overlap("date=[0-9]{4}-[0-9]{2}", "date=20.*", "date=2000-00");
}

static void test_disjoint(void **state)
{
    (void)state;
    expect_overlap("a/[0-9]+", "a/[a-z]+", NULL);
    expect_overlap("d/date=[0-9]{4}", "d/date=[0-9]{5}", NULL);
    expect_overlap("reviews/date=.*", "report/week=.*", NULL);
    expect_overlap("a/.*", "amb/.*", NULL);
    expect_overlap("a/(x|y)", "a/[^xy]", NULL);
    expect_overlap("m/a{2,3}", "m/a{4,}", NULL);
    expect_overlap("x^y", "x^y", NULL); /* matches nothing */
    expect_overlap("a$b", ".*", NULL);
    expect_overlap("w/\\w", "w/\\W", NULL);
    expect_overlap("s/\\s", "s/\\S", NULL);
    expect_overlap("raw/reviews/date=[0-9]{4}-[0-9]{2}-[0-9]{2}",
                   "agg/category=[a-z_]+/date=[0-9]{4}-[0-9]{2}-[0-9]{2}", NULL);
}

static void expect_compile_error(const char *pattern, size_t max_states, int code, const char *want)
{
    dbld_rx *rx = (dbld_rx *)1;
    dbld_status st;
    int rc = dbld_rx_compile(pattern, max_states, &rx, &st);
    if (rc != code || strcmp(st.msg, want) != 0)
        print_error("%s: want %d %s, got %d %s\n", pattern, code, want, rc, st.msg);
    assert_int_equal(rc, code);
    assert_string_equal(st.msg, want);
    assert_null(rx);
}

static void test_refused(void **state)
{
    (void)state;
    /* \1 is the anchoring group of "^(p)$": the pattern's own groups start at \2 */
    expect_compile_error("(a)\\1", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"(a)\\1\": Invalid back reference");
    expect_compile_error("(a)\\2", 0, DBLD_INVALID_ARGUMENT,
                         "the back-reference \\2 is not supported");
    /* glibc's GNU assertions: refused before regcomp, which took 6 GB and
     * 38 s on "(\\bx*){133}" (fuzz_rxoverlap) */
    expect_compile_error("a\\b", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"a\\b\": the assertion \\b at offset 1 "
                         "is not supported");
    expect_compile_error("\\<a", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"\\<a\": the assertion \\< at offset 0 "
                         "is not supported");
    expect_compile_error("x(\\bx*){133}", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"x(\\bx*){133}\": the assertion \\b at "
                         "offset 2 is not supported");
    dbld_rx_free(compile_ok("a[\\b]")); /* in brackets: a backslash or a b */
    expect_compile_error(
        "a)", 0, DBLD_INVALID_ARGUMENT,
        "invalid regular expression \"a)\": an unmatched ')' at offset 1 (write \\) "
        "for a literal parenthesis)");
    expect_compile_error("(^a)*", 0, DBLD_INVALID_ARGUMENT,
                         "'^' or '$' inside a repeated group is not supported");
    /* glibc lets `$` be followed by a newline, and `^` follow one */
    expect_compile_error("a$.", 0, DBLD_INVALID_ARGUMENT,
                         "'$' followed by more of the pattern is not supported");
    expect_compile_error(".^a", 0, DBLD_INVALID_ARGUMENT,
                         "'^' after the start of the pattern is not supported");
    expect_compile_error("[\xe0-\xef]", 0, DBLD_INVALID_ARGUMENT,
                         "a range with a non-ASCII end (\\xef) is not supported");
    /* where no newline can be involved, they are modelled */
    dbld_rx_free(compile_ok("a$b"));
    dbld_rx_free(compile_ok("a^b"));
    dbld_rx_free(compile_ok("(a|^b)c"));
}

static void test_caps(void **state)
{
    (void)state;
    expect_compile_error("a{100}{100}", 0, DBLD_RESOURCE_EXHAUSTED,
                         "the pattern needs more than 10000 automaton states");
    /* glibc's regcomp copies the operand of every + and {m,n}: stacked or
     * nested ones are refused before it runs (fuzz_rxoverlap found 2.5 GB) */
    expect_compile_error("d++++++++++++++++++++++++++", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"d++++++++++++++++++++++++++\": a "
                         "repetition operator follows *, + or ? at offset 2");
    /* copies of a group with two empty-matching alternatives: glibc's
     * epsilon closures take exponential time (fuzz_rxoverlap: a timeout) */
    expect_compile_error("(a*|b*){30}*", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"(a*|b*){30}*\": a group with two "
                         "alternatives that match the empty string is repeated at offset 7");
    expect_compile_error("((a||){133})*", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"((a||){133})*\": a group with two "
                         "alternatives that match the empty string is repeated at offset 6");
    /* an unmatched ) would close the anchoring group: "a)|(b" matched "ax" */
    expect_compile_error("a)|(b", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"a)|(b\": an unmatched ')' at offset 1 "
                         "(write \\) for a literal parenthesis)");
    regex_t ok;
    dbld_status ost;
    const char *fine[] = {"(|a|b){30}*", "((a|)|b){9}*", "e/(a|)b", "(a*|b*)*",
                          "(x*|y)+",     "a\\)",         "[)]"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        assert_int_equal(dbld_rx_regcomp(&ok, fine[i], &ost), 0);
        regfree(&ok);
    }
    expect_compile_error("(a|b)**{2,3}", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"(a|b)**{2,3}\": a repetition operator "
                         "follows *, + or ? at offset 6");
    expect_compile_error("((((((((((a{3}){3}){3}){3}){3}){3}){3}){3}){3}){3})", 0,
                         DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"((((((((((a{3}){3}){3}){3}){3}){3}){3}){3}"
                         "){3}){3})\": its repetitions expand to more than 20000 copies");
    /* copies that may match "" cost glibc quadratic time and memory (each
     * one's epsilon closure holds the rest): fuzz_rxoverlap ran out of 2.5 GB
     * on two "c{2,13107}" (1.36 GB and 5.5 s each) */
    const char *optional[] = {
        "c{2,13107}", "(a|b?){3000}",  "x(c{0,100}){0,100}",
        "(){13333}",  "x(|y){1001}",   "(()?){300}",
        "(){1,333}",  "(a?){1,333}",   "!{,13133}$",
        "(()*){300}", "((a|)|b){30}*", "((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+"};
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        char want[256];
        snprintf(want, sizeof want,
                 "invalid regular expression \"%s\": more than 1000 copies that may match the "
                 "empty string (from ?, *, + and {m,n}); write fewer or narrower repetitions",
                 optional[i]);
        expect_compile_error(optional[i], 0, DBLD_INVALID_ARGUMENT, want);
    }
    /* they add up along the pattern */
    expect_compile_error("c{0,500}d{0,501}", 0, DBLD_INVALID_ARGUMENT,
                         "invalid regular expression \"c{0,500}d{0,501}\": more than 1000 "
                         "copies that may match the empty string (from ?, *, + and {m,n}); write "
                         "fewer or narrower repetitions");
    const char *wide[] = {"c{0,1000}",  "c{0,500}d{0,500}",  "a{,1000}",   "(()?){60}",
                          "(^x*){133}", "[a-z0-9_-]{1,255}", "(ab?){999}", "(x+){400}"};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++) {
        assert_int_equal(dbld_rx_regcomp(&ok, wide[i], &ost), 0);
        regfree(&ok);
    }
    expect_compile_error("d/[0-9]{4}", 8, DBLD_RESOURCE_EXHAUSTED,
                         "the pattern needs more than 8 automaton states");
    dbld_rx_free(compile_ok("a{40}{100}"));
    /* the product search: many live pairs before the answer */
    dbld_rx *a = compile_ok("[ab]*a[ab]{6}"), *b = compile_ok("[ab]*b[ab]{5}");
    char *w = (char *)1;
    dbld_status st;
    assert_int_equal(dbld_rx_overlap(a, b, 20, &w, &st), DBLD_RESOURCE_EXHAUSTED);
    assert_string_equal(st.msg, "the search exceeded 20 state pairs");
    assert_null(w);
    assert_int_equal(dbld_rx_overlap(a, b, 0, &w, &st), 0);
    assert_string_equal(w, "abaaaaa");
    free(w);
    dbld_rx_free(a);
    dbld_rx_free(b);
}

static void test_quote(void **state)
{
    (void)state;
    char *q = dbld_rx_quote("a\"b\\c\n\xe9", 64);
    assert_string_equal(q, "\"a\\\"b\\\\c\\x0a\\xe9\"");
    free(q);
    q = dbld_rx_quote("abcdef", 3);
    assert_string_equal(q, "\"abc...\"");
    free(q);
}

/* ---- generated patterns against regexec() ---- */

static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 16) % n;
}

static const char *const atoms[] = {"a",    "b",           "/",         "1",       ".",    "[ab]",
                                    "[^a]", "[0-9]",       "\\.",       "\\w",     "\\s",  "^",
                                    "$",    "()",          "\\)",       "[\\]",    "[]a]", "[a-]",
                                    "(|a)", "[[:alpha:]]", "[[.a.]-b]", "[[=b=]]", "\\S",  "\n"};
static const char *const ops[] = {"", "", "", "*", "+", "?", "{2}", "{0,2}", "{1,}", "{,1}"};
static const char alphabet[] = "ab/1.\\)\n_ A";

static void gen(char *out, size_t cap, int depth)
{
    int n = 1 + (int)rnd(3);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(out);
        if (depth < 2 && rnd(5) == 0) {
            snprintf(out + len, cap - len, "(");
            gen(out, cap, depth + 1);
            if (rnd(2)) {
                strncat(out, "|", cap - strlen(out) - 1);
                gen(out, cap, depth + 1);
            }
            strncat(out, ")", cap - strlen(out) - 1);
        } else {
            strncat(out, atoms[rnd(sizeof atoms / sizeof atoms[0])], cap - len - 1);
        }
        strncat(out, ops[rnd(sizeof ops / sizeof ops[0])], cap - strlen(out) - 1);
    }
}

/* The first string of length <= max over alphabet that both match, in out; 0 if none. */
static int brute_common(const regex_t *a, const regex_t *b, int max, char *out)
{
    size_t k = sizeof alphabet - 1;
    for (int len = 0; len <= max; len++) {
        size_t total = 1;
        for (int i = 0; i < len; i++)
            total *= k;
        for (size_t c = 0; c < total; c++) {
            size_t v = c;
            for (int i = 0; i < len; i++, v /= k)
                out[i] = alphabet[v % k];
            out[len] = '\0';
            if (regexec(a, out, 0, NULL, 0) == 0 && regexec(b, out, 0, NULL, 0) == 0) return 1;
        }
    }
    return 0;
}

static void test_against_regexec(void **state)
{
    (void)state;
    int compiled = 0, overlaps = 0;
    dbld_rx *prev = NULL;
    regex_t prev_re;
    for (int it = 0; it < 600; it++) {
        char pat[256] = "";
        gen(pat, sizeof pat, 0);
        regex_t re;
        dbld_status st;
        dbld_rx *rx;
        if (dbld_rx_regcomp(&re, pat, &st) != 0) continue;
        if (dbld_rx_compile(pat, 0, &rx, &st) != 0) { /* refused: must say which construct */
            assert_int_equal(st.code, DBLD_INVALID_ARGUMENT);
            assert_non_null(strstr(st.msg, "not supported"));
            regfree(&re);
            continue;
        }
        compiled++;
        for (int k = 0; k < 100; k++) {
            char s[8];
            int len = (int)rnd(6);
            for (int i = 0; i < len; i++)
                s[i] = alphabet[rnd(sizeof alphabet - 1)];
            s[len] = '\0';
            int want = regexec(&re, s, 0, NULL, 0) == 0;
            if (dbld_rx_matches(rx, s) != want)
                print_error("pattern \"%s\" on \"%s\": regexec says %d\n", pat, s, want);
            assert_int_equal(dbld_rx_matches(rx, s), want);
        }
        if (prev) {
            char *w = NULL, common[8];
            assert_int_equal(dbld_rx_overlap(rx, prev, 0, &w, &st), 0);
            int found = brute_common(&re, &prev_re, 3, common);
            if (found) /* the witness is never longer than a common string */
                assert_true(w && strlen(w) <= strlen(common));
            if (w) overlaps++;
            free(w);
            dbld_rx_free(prev);
            regfree(&prev_re);
        }
        prev = rx;
        prev_re = re;
    }
    if (prev) {
        dbld_rx_free(prev);
        regfree(&prev_re);
    }
    assert_true(compiled > 400);
    assert_true(overlaps > 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlapping), cmocka_unit_test(test_disjoint),
        cmocka_unit_test(test_refused),     cmocka_unit_test(test_caps),
        cmocka_unit_test(test_quote),       cmocka_unit_test(test_against_regexec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
