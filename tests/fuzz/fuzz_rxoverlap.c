/* fuzz_rxoverlap.c - the regex automata of lib/rxoverlap.c against glibc's
 * regexec(), the matcher every service uses.
 *
 * Input: pattern A, NUL, pattern B, NUL, then bytes that serve both as a
 * probe string (up to the next NUL) and as the choices of dbld_rx_sample().
 * Properties, for each pattern that compiles:
 *  - the automaton accepts the probe and every sample exactly when
 *    regexec() matches them (a differential check of the automaton);
 *  - an overlap's witness matches both patterns under regexec();
 *  - when no overlap is reported, strings sampled from one pattern (which
 *    regexec() confirms) never match the other.
 * The caps are small (500 states, 20,000 pairs) to keep executions fast;
 * exceeding them is a refusal, not a failure.
 */
#include "fuzz.h"

#include "dbld/rxoverlap.h"

#include <regex.h>

#define MAX_STATES 500
#define MAX_PAIRS 20000
#define SAMPLES 4
#define SAMPLE_LEN 64

typedef struct pat {
    char *text;
    dbld_rx *rx;
    regex_t re;
} pat;

static int compile(pat *p)
{
    dbld_status st;
    if (dbld_rx_compile(p->text, MAX_STATES, &p->rx, &st) != 0) {
        FUZZ_CHECK(st.code == DBLD_INVALID_ARGUMENT || st.code == DBLD_RESOURCE_EXHAUSTED,
                   "compile of \"%s\": %s %s", p->text, dbld_code_name(st.code), st.msg);
        FUZZ_CHECK(st.msg[0], "a refusal without a message");
        return -1;
    }
    FUZZ_CHECK(dbld_rx_regcomp(&p->re, p->text, &st) == 0, "regcomp refuses \"%s\": %s", p->text,
               st.msg);
    return 0;
}

static int regex_matches(const pat *p, const char *s)
{
    return regexec(&p->re, s, 0, NULL, 0) == 0;
}

static void same_answer(const pat *p, const char *s)
{
    int ours = dbld_rx_matches(p->rx, s), libc = regex_matches(p, s);
    FUZZ_CHECK(ours == libc, "pattern \"%s\" on \"%s\": automaton %d, regexec %d", p->text, s, ours,
               libc);
}

/* Strings of `from` must not match `other` when the two are disjoint. */
static void samples_disjoint(const pat *from, const pat *other, const uint8_t *choices, size_t n,
                             int disjoint)
{
    for (size_t k = 0; k < SAMPLES && n > 0; k++) {
        size_t off = k * n / SAMPLES;
        char *s = dbld_rx_sample(from->rx, choices + off, n - off, SAMPLE_LEN);
        if (!s) continue;
        FUZZ_CHECK(regex_matches(from, s), "sample \"%s\" of \"%s\" does not match it", s,
                   from->text);
        same_answer(other, s);
        if (disjoint)
            FUZZ_CHECK(!regex_matches(other, s),
                       "\"%s\" and \"%s\" reported disjoint, but \"%s\" matches both", from->text,
                       other->text, s);
        free(s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    pat a = {fuzz_take(&in, 0, NULL)}, b = {fuzz_take(&in, 0, NULL)};
    const uint8_t *choices = in.p;
    size_t n_choices = in.left;
    char *probe = fuzz_take(&in, 0, NULL);
    int ok_a = compile(&a) == 0, ok_b = compile(&b) == 0;
    if (ok_a) same_answer(&a, probe);
    if (ok_b) same_answer(&b, probe);
    if (ok_a && ok_b) {
        char *w = NULL;
        dbld_status st;
        int rc = dbld_rx_overlap(a.rx, b.rx, MAX_PAIRS, &w, &st);
        FUZZ_CHECK(rc == 0 || rc == DBLD_RESOURCE_EXHAUSTED, "overlap of \"%s\" and \"%s\": %s %s",
                   a.text, b.text, dbld_code_name(rc), st.msg);
        if (rc == 0 && w) {
            FUZZ_CHECK(regex_matches(&a, w) && regex_matches(&b, w),
                       "witness \"%s\" of \"%s\" and \"%s\" does not match both", w, a.text,
                       b.text);
            same_answer(&a, w);
            same_answer(&b, w);
        }
        samples_disjoint(&a, &b, choices, n_choices, rc == 0 && !w);
        samples_disjoint(&b, &a, choices, n_choices, rc == 0 && !w);
        free(w);
    } else if (ok_a) {
        samples_disjoint(&a, &a, choices, n_choices, 0);
    }
    if (ok_a) regfree(&a.re), dbld_rx_free(a.rx);
    if (ok_b) regfree(&b.re), dbld_rx_free(b.rx);
    free(a.text);
    free(b.text);
    free(probe);
    return 0;
}
