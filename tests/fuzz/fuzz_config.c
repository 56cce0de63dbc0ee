/* fuzz_config.c - the YAML configuration loader (lib/config.c,
 * lib/config_schema.c, and through graph.jobs[].outputs lib/rxoverlap.c).
 *
 * Input: YAML text (fuzz_config.dict holds the real keys, so mutations stay
 * close to real files). Properties: a refused file comes with
 * "fuzz.yaml:LINE:COLUMN: " (both 1-based, within the text) and a zeroed
 * config; an accepted one has every section filled and frees cleanly.
 */
#include "fuzz.h"

#include "dbld/config.h"

#include <ctype.h>

/* Line breaks as libyaml counts them: \r\n, \r, \n, NEL, LS, PS. */
static size_t count_lines(const uint8_t *p, size_t n)
{
    size_t lines = 1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' || p[i] == '\n' || (p[i] == 0xc2 && i + 1 < n && p[i + 1] == 0x85) ||
            (p[i] == 0xe2 && i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] & 0xfe) == 0xa8))
            lines++;
    }
    return lines;
}

static void check_error(const dbld_status *st, const dbld_config *cfg, size_t lines)
{
    const char *prefix = "fuzz.yaml:";
    FUZZ_CHECK(st->code == DBLD_INVALID_ARGUMENT, "refused with %s: %s", dbld_code_name(st->code),
               st->msg);
    FUZZ_CHECK(strncmp(st->msg, prefix, strlen(prefix)) == 0, "no file name: %s", st->msg);
    const char *p = st->msg + strlen(prefix);
    char *end;
    unsigned long line = strtoul(p, &end, 10);
    FUZZ_CHECK(end > p && isdigit((unsigned char)*p) && *end == ':', "no line: %s", st->msg);
    p = end + 1;
    unsigned long col = strtoul(p, &end, 10);
    FUZZ_CHECK(end > p && isdigit((unsigned char)*p) && end[0] == ':' && end[1] == ' ' && end[2],
               "no column or problem: %s", st->msg);
    FUZZ_CHECK(line >= 1 && line <= lines + 1, "line %lu of %zu: %s", line, lines, st->msg);
    FUZZ_CHECK(col >= 1, "column %lu: %s", col, st->msg);
    static const dbld_config zero;
    FUZZ_CHECK(memcmp(cfg, &zero, sizeof zero) == 0, "a refused config is not zeroed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dbld_config cfg;
    dbld_status st;
    if (dbld_config_parse((const char *)data, size, "fuzz.yaml", &cfg, &st) != 0) {
        check_error(&st, &cfg, count_lines(data, size));
        dbld_config_free(&cfg);
        return 0;
    }
    FUZZ_CHECK(cfg.source && strcmp(cfg.source, "fuzz.yaml") == 0, "source not kept");
    FUZZ_CHECK(cfg.eventlog.server.listen && cfg.job.server.listen && cfg.graph.server.listen &&
                   cfg.query.server.listen && cfg.shared.peers.eventlog && cfg.shared.log_level,
               "an accepted config lacks a default");
    for (size_t i = 0; i < cfg.graph.n_jobs; i++)
        FUZZ_CHECK(cfg.graph.jobs[i].label && cfg.graph.jobs[i].n_command > 0,
                   "job %zu without label or command", i);
    dbld_config_free(&cfg);
    return 0;
}
