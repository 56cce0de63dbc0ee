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

void dbld_log_set_level(dbld_log_level min_level)
{
    g_min = min_level;
}

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

/* A record is at most LOG_MAX bytes: a value that would not fit is cut (at a
 * UTF-8 character boundary, never inside an escape) and ends in "...", the
 * fields after it are dropped, and the record stays one valid JSON object. */
#define LOG_MAX 8192
#define LOG_RESERVE 16 /* for the closing `"`, "...", "}}" and the newline */

typedef struct {
    char buf[LOG_MAX];
    size_t n;
    int full; /* a value was cut: write no more fields */
} sbuf;

static void put(sbuf *b, const char *s, size_t len)
{
    if (b->n + len > sizeof b->buf) len = sizeof b->buf - b->n;
    memcpy(b->buf + b->n, s, len);
    b->n += len;
}

static int room(const sbuf *b, size_t len)
{
    return b->n + len + LOG_RESERVE <= sizeof b->buf;
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
        const char *piece = esc;
        size_t len = 2;
        switch (*p) {
        case '"':
            piece = "\\\"";
            break;
        case '\\':
            piece = "\\\\";
            break;
        case '\n':
            piece = "\\n";
            break;
        case '\r':
            piece = "\\r";
            break;
        case '\t':
            piece = "\\t";
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", *p);
                len = 6;
            } else {
                esc[0] = (char)*p;
                len = 1;
            }
        }
        if (!room(b, len)) {
            if ((*p & 0xC0) == 0x80) /* inside a UTF-8 character: drop its first bytes */
                while (b->n > 0 && ((unsigned char)b->buf[b->n - 1] & 0xC0) == 0x80)
                    b->n--;
            if (b->n > 0 && ((unsigned char)b->buf[b->n - 1] & 0xC0) == 0xC0) b->n--;
            put(b, "...", 3);
            b->full = 1;
            break;
        }
        put(b, piece, len);
    }
    put(b, "\"", 1);
}

static void emit(dbld_log_level level, const char *msg, va_list fields)
{
    sbuf b;
    b.n = 0;
    b.full = 0;
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
    while (!b.full) {
        const char *k = va_arg(fields, const char *);
        if (!k) break;
        const char *v = va_arg(fields, const char *);
        put(&b, first ? ",\"fields\":{" : ",", first ? 11 : 1);
        first = 0;
        put_str(&b, k);
        put(&b, ":", 1);
        put_str(&b, v);
    }
    if (!first) put(&b, "}", 1);
    put(&b, "}\n", 2);
    ssize_t w = write(STDERR_FILENO, b.buf, b.n);
    (void)w;
}

void dbld_log(dbld_log_level level, const char *msg, ...)
{
    if ((int)level < g_min) return;
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
    if ((int)level < g_min) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit_none(level, msg, (const char *)NULL);
}
