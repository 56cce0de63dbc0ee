/* fuzz_text_array.c - PostgreSQL text[] literals (lib/db.c) and bytea hex.
 *
 * The input (up to its first NUL) is a text[] value as the server might print
 * it. Whatever dbld_pg_parse_text_array() accepts must survive a round trip:
 * dbld_pg_text_array() of the items parses back to the same items. The same
 * bytes also go through the bytea decoder, and the raw input through
 * dbld_hex_encode() -> dbld_bytea_decode(), which must give them back.
 */
#include "fuzz.h"

#include "dbld/arena.h"
#include "dbld/db.h"

static void text_array_round_trip(dbld_arena *a, const char *lit)
{
    char **items = NULL;
    size_t n = 0;
    if (dbld_pg_parse_text_array(a, lit, &items, &n) != 0) {
        FUZZ_CHECK(items == NULL && n == 0, "a refused literal returned %zu items", n);
        return;
    }
    FUZZ_CHECK(n <= strlen(lit), "%zu items from %zu bytes", n, strlen(lit));
    const char *again = dbld_pg_text_array(a, (const char *const *)items, n);
    char **items2 = NULL;
    size_t n2 = 0;
    FUZZ_CHECK(dbld_pg_parse_text_array(a, again, &items2, &n2) == 0,
               "the formatted literal %s does not parse", again);
    FUZZ_CHECK(n2 == n, "%zu items became %zu through %s", n, n2, again);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(strcmp(items[i], items2[i]) == 0, "item %zu \"%s\" came back as \"%s\"", i,
                   items[i], items2[i]);
}

static void bytea_round_trip(dbld_arena *a, const uint8_t *data, size_t size, const char *text)
{
    uint8_t *out;
    size_t len;
    (void)dbld_bytea_decode(a, text, &out, &len); /* arbitrary text: must not crash */
    char *hex = dbld_hex_encode(a, data, size);
    char *lit = dbld_arena_printf(a, "\\x%s", hex);
    FUZZ_CHECK(dbld_bytea_decode(a, lit, &out, &len) == 0, "%s does not decode", lit);
    FUZZ_CHECK(len == size && (size == 0 || memcmp(out, data, size) == 0),
               "%zu bytes came back as %zu different ones", size, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    char *lit = fuzz_take(&in, 0, NULL);
    dbld_arena *a = dbld_arena_create();
    text_array_round_trip(a, lit);
    bytea_round_trip(a, data, size, lit);
    dbld_arena_destroy(a);
    free(lit);
    return 0;
}
