/* status.h - the one error type that crosses every layer of DataBuild.
 *
 * Codes are the gRPC status codes (same numbers), so the RPC edge maps them
 * one to one. Functions that can fail return 0 or a code and, when given a
 * dbld_status, fill in a short lower-case message without a trailing period
 * ("could not connect to database: ..."). Library code never prints.
 */
#ifndef DBLD_STATUS_H
#define DBLD_STATUS_H

#include <stdarg.h>

#define DBLD_STATUS_MAP(X)                                                                         \
    X(OK, 0)                                                                                       \
    X(CANCELLED, 1)                                                                                \
    X(UNKNOWN, 2)                                                                                  \
    X(INVALID_ARGUMENT, 3)                                                                         \
    X(DEADLINE_EXCEEDED, 4)                                                                        \
    X(NOT_FOUND, 5)                                                                                \
    X(ALREADY_EXISTS, 6)                                                                           \
    X(PERMISSION_DENIED, 7)                                                                        \
    X(RESOURCE_EXHAUSTED, 8)                                                                       \
    X(FAILED_PRECONDITION, 9)                                                                      \
    X(ABORTED, 10)                                                                                 \
    X(OUT_OF_RANGE, 11)                                                                            \
    X(UNIMPLEMENTED, 12)                                                                           \
    X(INTERNAL, 13)                                                                                \
    X(UNAVAILABLE, 14)                                                                             \
    X(DATA_LOSS, 15)                                                                               \
    X(UNAUTHENTICATED, 16)

typedef enum {
#define DBLD_STATUS_ENUM(name, num) DBLD_##name = num,
    DBLD_STATUS_MAP(DBLD_STATUS_ENUM)
#undef DBLD_STATUS_ENUM
} dbld_code;

#define DBLD_STATUS_MSG_MAX 1024

typedef struct dbld_status {
    int code;
    char msg[DBLD_STATUS_MSG_MAX];
} dbld_status;

/* Reset to OK with an empty message. st may be NULL. */
void dbld_status_clear(dbld_status *st);

/* Set code and a printf-formatted message; returns code so callers can write
 * `return dbld_status_set(st, DBLD_NOT_FOUND, "no build %s", id);`. st may be NULL. */
int dbld_status_set(dbld_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int dbld_status_vset(dbld_status *st, int code, const char *fmt, va_list ap);

/* Prepend context: "ctx: old message". Keeps the code. Returns the code. */
int dbld_status_prefix(dbld_status *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "INVALID_ARGUMENT" etc.; "UNKNOWN_CODE" for numbers outside the table. */
const char *dbld_code_name(int code);

#endif
