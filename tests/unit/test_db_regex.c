/* test_db_regex.c - dbld_regex_check(): the limits on a caller's regular
 * expression before PostgreSQL runs it. Patterns the suite and its users
 * write pass; patterns whose match cost explodes in PostgreSQL's engine
 * (bounded repetitions of variable-length groups, nested or many) are
 * refused with INVALID_ARGUMENT naming the pattern and the limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dbld/db_regex.h"
#include "dbld/status.h"

#include <stdio.h>
#include <string.h>

static void accepts(const char *pattern)
{
    dbld_status st = {0};
    int rc = dbld_regex_check(pattern, "partition pattern", &st);
    if (rc) fail_msg("\"%s\" refused: %s", pattern, st.msg);
}

/* Refused with INVALID_ARGUMENT and a message holding `what`. */
static void refuses(const char *pattern, const char *what)
{
    dbld_status st = {0};
    int rc = dbld_regex_check(pattern, "partition pattern", &st);
    if (rc != DBLD_INVALID_ARGUMENT) fail_msg("\"%s\" accepted (rc %d)", pattern, rc);
    if (!strstr(st.msg, "invalid partition pattern"))
        fail_msg("\"%s\": message does not name the field: %s", pattern, st.msg);
    if (!strstr(st.msg, what)) fail_msg("\"%s\": message lacks \"%s\": %s", pattern, what, st.msg);
}

static void test_everyday_patterns_pass(void **state)
{
    (void)state;
    /* what the tests, the CLI examples and the README use */
    accepts("reviews/.*");
    accepts("reviews/date=2025-01-0[1-3]");
    accepts("report/week=[0-9]{4}-W[0-9]{2}");
    accepts("(reviews|agg)/date=.*");
    accepts("multi.line/x");
    accepts("(?i)agg/.*");
    accepts("(?:a|b)+/c?");
    accepts("[]a]*[^]x]+[[:alpha:]]{2}[[.hyphen.]]");
    accepts("\\d{4}-\\d{2}\\y\\m(a)\\w\\.");
    accepts("x(?=y)(?!z)(?<=x)(?<!q)");
    accepts("a*?b+?c??d{2,3}?");
    accepts("");
    accepts("***=((((((((((((( literal {9999}");
    accepts("***:a.*");
    accepts("(?q)((((((((((((( literal");
    accepts("(?x) a   b # a comment with ( and {999}\n c");
    /* bounded repetitions within budget */
    accepts("(.){1,200}(.){1,200}x");     /* fixed-width groups: 400 */
    accepts("(.*){1,40}(.*){1,40}x");     /* 2 x 40 x 10 = 800 */
    accepts("(.*){1,100}x");              /* 1000: the limit */
    accepts("(a{1,10}){1,10}x");          /* 10 x max(10, 10) = 100 */
    accepts("(.*)*x((a*)*)*b(.*)+(.*)+"); /* stars cost nothing more */
    /* eight levels of groups */
    accepts("((((((((a))))))))");
    accepts("a{255}");
}

static void test_explosive_repetitions_refused(void **state)
{
    (void)state;
    refuses("(.*){1,200}(.*){1,200}x", "expand to a cost of 4000, at most 1000");
    refuses("(.*){1,200}x", "cost of 2000");
    refuses("(?:.*){1,101}", "cost of 1010");
    refuses("(.?){1,200}x", "cost of 2000");
    refuses("((.*){1,15}){1,15}x", "cost of 2250"); /* nested: products */
    refuses("(.*){200,}x", "cost of 2000");         /* {m,} expands m copies */
    refuses("(a|bb){1,255}", "cost of 2550");       /* alternatives of different lengths */
    refuses("[a-y]{0,255}[a-y]{0,255}[a-y]{0,255}[a-y]{0,255}x", "cost of 1020");
    refuses("(?x) ( . * ) {1,200}", "cost of 2000"); /* expanded syntax read too */
}

static void test_structure_limits(void **state)
{
    (void)state;
    char long_pat[DBLD_REGEX_MAX_BYTES + 2];
    memset(long_pat, 'a', sizeof long_pat - 1);
    long_pat[sizeof long_pat - 1] = '\0';
    refuses(long_pat, "257 bytes long, at most 256");
    long_pat[DBLD_REGEX_MAX_BYTES] = '\0';
    accepts(long_pat);
    refuses("(((((((((a)))))))))", "groups nested more than 8 deep");
    refuses("a{256}", "repetition count 256 is above 255");
    refuses("a{1,1000}", "repetition count 1000 is above 255");
    refuses("a)(b", "parentheses () not balanced");
    refuses("(a", "parentheses () not balanced");
    refuses("[a-", "brackets [] not balanced");
    refuses("[[:alpha:", "brackets [] not balanced");
    refuses("(?b)\\(.*\\)\\{1,200\\}", "basic regular expressions");
    refuses("(?#comment)", "unknown group syntax");
    refuses("(.*)(.*)(.*)(.*)\\1", "back references (\\1) are not accepted");
}

static void test_message_quotes_pattern(void **state)
{
    (void)state;
    dbld_status st = {0};
    assert_int_equal(dbld_regex_check("(.*){1,200}", "ref_pattern", &st), DBLD_INVALID_ARGUMENT);
    assert_non_null(strstr(st.msg, "invalid ref_pattern \"(.*){1,200}\": too costly"));
    /* NULL status is allowed */
    assert_int_equal(dbld_regex_check("(.*){1,200}", "x", NULL), DBLD_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_everyday_patterns_pass),
        cmocka_unit_test(test_explosive_repetitions_refused),
        cmocka_unit_test(test_structure_limits),
        cmocka_unit_test(test_message_quotes_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
