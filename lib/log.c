/* log.c - JSON-lines logger. Each record is built in a local buffer and
 * written with one write(2) so lines from different threads never interleave. */
#include "dbld/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char g_service[64] = "databuild";
static volatile int g_min = DBLD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void dbld_log_init(const char *service, dbld_log_level min_level)
{
    snprintf(g_service, sizeof g_service, "%s", service ? service : "databuild");
    g_min = min_level;
}

void dbld_log_set_level(dbld_log_level min_level) { g_min = min_level; }

int dbld_log_level_parse(const char *s, dbld_log_level *out)
{
    for (int i = 0; s && i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (dbld_log_level)i;
            return 0;
        }
    }
    if (s && strcmp(s, "warning") == 0) {
        *out = DBLD_LOG_WARN;
        return 0;
    }
    return -1;
}

typedef struct {
    char buf[8192];
    size_t n;
} sbuf;

static void put(sbuf *b, const char *s, size_t len)
{
    if (b->n + len >= sizeof b->buf - 8)
        len = sizeof b->buf - 8 - b->n;
    memcpy(b->buf + b->n, s, len);
    b->n += len;
}

static void put_str(sbuf *b, const char *s)
{
    if (!s) {
        put(b, "null", 4);
        return;
    }
    put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                put(b, esc, 6);
            } else {
                put(b, (const char *)p, 1);
            }
        }
    }
    put(b, "\"", 1);
}

static void emit(dbld_log_level level, const char *msg, va_list fields)
{
    sbuf b;
    b.n = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[160];
    snprintf(t, sizeof t, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000, level_names[level]);
    put(&b, t, strlen(t));
    put(&b, "\"service\":", 10);
    put_str(&b, g_service);
    put(&b, ",\"msg\":", 7);
    put_str(&b, msg);
    int first = 1;
    for (;;) {
        const char *k = va_arg(fields, const char *);
        if (!k)
            break;
        const char *v = va_arg(fields, const char *);
        put(&b, first ? ",\"fields\":{" : ",", first ? 11 : 1);
        first = 0;
        put_str(&b, k);
        put(&b, ":", 1);
        put_str(&b, v);
    }
    if (!first)
        put(&b, "}", 1);
    put(&b, "}\n", 2);
    ssize_t w = write(STDERR_FILENO, b.buf, b.n);
    (void)w;
}

void dbld_log(dbld_log_level level, const char *msg, ...)
{
    if ((int)level < g_min)
        return;
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

static void emit_none(dbld_log_level level, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    emit(level, msg, ap);
    va_end(ap);
}

void dbld_logf(dbld_log_level level, const char *fmt, ...)
{
    if ((int)level < g_min)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit_none(level, msg, (const char *)NULL);
}
