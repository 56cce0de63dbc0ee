/* log.h - structured logging: one JSON object per line on stderr.
 *
 * {"time":"2026-11-25T16:00:00.123Z","level":"info","service":"eventlog",
 *  "msg":"listening","fields":{"addr":"127.0.0.1:7101"}}
 * Thread-safe; each line is written with a single write(2).
 */
#ifndef DBLD_LOG_H
#define DBLD_LOG_H

typedef enum { DBLD_LOG_DEBUG = 0, DBLD_LOG_INFO, DBLD_LOG_WARN, DBLD_LOG_ERROR } dbld_log_level;

void dbld_log_init(const char *service, dbld_log_level min_level);
void dbld_log_set_level(dbld_log_level min_level);
/* "debug" | "info" | "warn" | "error" -> 0, else -1. */
int dbld_log_level_parse(const char *s, dbld_log_level *out);

/* msg is literal text; the variadic part is NULL-terminated pairs of
 * (const char *key, const char *value); values may be NULL (written as null). */
void dbld_log(dbld_log_level level, const char *msg, ...);

/* Convenience for a formatted message without fields. */
void dbld_logf(dbld_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
