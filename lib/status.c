/* status.c - dbld_status helpers and the code-name table (from the X-macro in status.h). */
#include "dbld/status.h"

#include <stdio.h>
#include <string.h>

void dbld_status_clear(dbld_status *st)
{
    if (!st) return;
    st->code = DBLD_OK;
    st->msg[0] = '\0';
}

int dbld_status_vset(dbld_status *st, int code, const char *fmt, va_list ap)
{
    if (st) {
        st->code = code;
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
    }
    return code;
}

int dbld_status_set(dbld_status *st, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    dbld_status_vset(st, code, fmt, ap);
    va_end(ap);
    return code;
}

int dbld_status_prefix(dbld_status *st, const char *fmt, ...)
{
    if (!st) return DBLD_UNKNOWN;
    char prefix[DBLD_STATUS_MSG_MAX], old[DBLD_STATUS_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, st->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof st->msg - 3) n = sizeof st->msg - 3;
    memcpy(st->msg, prefix, n);
    memcpy(st->msg + n, ": ", 2);
    size_t rest = sizeof st->msg - n - 3;
    size_t ol = strnlen(old, rest);
    memcpy(st->msg + n + 2, old, ol);
    st->msg[n + 2 + ol] = '\0';
    return st->code;
}

const char *dbld_code_name(int code)
{
    switch (code) {
#define DBLD_STATUS_NAME(name, num)                                                                \
    case num:                                                                                      \
        return #name;
        DBLD_STATUS_MAP(DBLD_STATUS_NAME)
#undef DBLD_STATUS_NAME
    }
    return "UNKNOWN_CODE";
}
