/* util.h - small helpers shared by every module: time, UUIDs, strings. */
#ifndef DBLD_UTIL_H
#define DBLD_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Wall-clock time in nanoseconds since the Unix epoch. */
int64_t dbld_now_ns(void);
/* Monotonic clock in milliseconds (for timeouts and backoff). */
int64_t dbld_mono_ms(void);
void dbld_sleep_ms(int64_t ms);
/* Absolute time ms from now on clock clk (CLOCK_REALTIME for default
 * condition variables, CLOCK_MONOTONIC for ones set up with that clock). */
struct timespec dbld_abs_time(clockid_t clk, int64_t ms);
/* Initialize a condition variable whose timed waits use CLOCK_MONOTONIC
 * (deadline: dbld_abs_time(CLOCK_MONOTONIC, ms)), so a wall-clock step
 * neither stretches nor cuts a wait. Every timed wait uses one. */
void dbld_cond_init_mono(pthread_cond_t *cv);

/* Random version-4 UUID in canonical lower-case form into out[37]. */
void dbld_uuid_v4(char out[37]);
/* 1 if s is a canonical 8-4-4-4-12 hex UUID (any case), else 0. */
int dbld_uuid_valid(const char *s);

/* malloc-or-abort helpers. */
void *dbld_xmalloc(size_t n);
void *dbld_xcalloc(size_t n, size_t size);
void *dbld_xrealloc(void *p, size_t n);
char *dbld_xstrdup(const char *s);

#endif
