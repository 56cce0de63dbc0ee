/* fuzz.h - what every libFuzzer target in tests/fuzz shares.
 *
 * A target defines LLVMFuzzerTestOneInput() and checks properties with
 * FUZZ_CHECK(): a property that does not hold prints what was expected and
 * aborts, which libFuzzer reports as a crash and saves the input (see
 * tests/fuzz/README.md). Inputs are split into parts with fuzz_take().
 */
#ifndef DBLD_FUZZ_H
#define DBLD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: property failed: %s: ", __FILE__, __LINE__, #cond);            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a cursor. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t left;
} fuzz_in;

/* One byte (0 once the input is used up). */
static inline uint8_t fuzz_byte(fuzz_in *in)
{
    if (!in->left) return 0;
    in->left--;
    return *in->p++;
}

/* The bytes up to the next `sep` (or the end), as a malloc'd NUL-terminated
 * string of *len bytes (it may hold NULs when sep is not 0); the separator
 * is consumed. Caller frees. */
static inline char *fuzz_take(fuzz_in *in, uint8_t sep, size_t *len)
{
    const uint8_t *end = memchr(in->p, sep, in->left);
    size_t n = end ? (size_t)(end - in->p) : in->left;
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, in->p, n);
    s[n] = 0;
    in->p += n;
    in->left -= n;
    if (end) in->p++, in->left--;
    if (len) *len = n;
    return s;
}

#endif
