/* config_jobenv.c - the environment policy for what a job's config step may
 * set (see jobenv.h).
 *
 * The denylist is one table of names and prefixes ("LD_*"), each with the
 * reason it is there. It cannot be complete - any program may read any
 * variable - so it covers what makes common programs load or run code, or
 * changes who and where the job is; a job that needs a closed set of
 * variables says so with `env_allow`. Names are compared without regard to
 * case (on Linux "ld_preload" is harmless, but refusing it costs nothing and
 * keeps the rule simple).
 */
#include "dbld/jobenv.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define RESERVED_PREFIX "DATABUILD_"

#define LOADER "read by the dynamic loader or libc, which load code or data from it"
#define INTERP "read by an interpreter, which runs code or loads modules from it"
#define SHELL "read by shells, which run code from it"
#define HELPER "names a program that other programs start"
#define IDENT "says who the job is or where it looks for programs and files"

typedef struct deny_rule {
    const char *pattern; /* a name, or a prefix ending in '*' */
    const char *reason;
} deny_rule;

static const deny_rule deny[] = {
    /* dynamic loader and libc */
    {"LD_*", LOADER},
    {"DYLD_*", LOADER},
    {"GLIBC_TUNABLES", LOADER},
    {"GCONV_PATH", LOADER},
    {"LOCPATH", LOADER},
    {"NLSPATH", LOADER},
    {"HOSTALIASES", LOADER},
    {"LOCALDOMAIN", LOADER},
    {"RES_OPTIONS", LOADER},
    {"MALLOC_TRACE", LOADER},
    {"OPENSSL_CONF", LOADER},
    {"OPENSSL_ENGINES", LOADER},
    {"OPENSSL_MODULES", LOADER},
    /* interpreters and runtimes */
    {"PYTHON*", INTERP},
    {"PERL*", INTERP}, /* PERL5LIB, PERL5OPT, PERLLIB, PERL5DB, PERLIO, PERL_* */
    {"RUBY*", INTERP},
    {"GEM_*", INTERP},
    {"NODE_*", INTERP},
    {"JAVA_TOOL_OPTIONS", INTERP},
    {"_JAVA_OPTIONS", INTERP},
    {"JDK_JAVA_OPTIONS", INTERP},
    {"CLASSPATH", INTERP},
    {"LUA_*", INTERP},
    {"TCLLIBPATH", INTERP},
    {"TCL_LIBRARY", INTERP},
    {"PHPRC", INTERP},
    {"PHP_INI_SCAN_DIR", INTERP},
    {"R_PROFILE*", INTERP},
    {"R_ENVIRON*", INTERP},
    {"R_LIBS*", INTERP},
    /* shells */
    {"BASH_ENV", SHELL},
    {"ENV", SHELL},
    {"BASH_FUNC_*", SHELL},
    {"SHELLOPTS", SHELL},
    {"BASHOPTS", SHELL},
    {"PS4", SHELL},
    {"PROMPT_COMMAND", SHELL},
    {"IFS", SHELL},
    {"CDPATH", SHELL},
    {"GLOBIGNORE", SHELL},
    {"ZDOTDIR", SHELL},
    /* programs that programs start */
    {"BROWSER", HELPER},
    {"EDITOR", HELPER},
    {"VISUAL", HELPER},
    {"PAGER", HELPER},
    {"MANPAGER", HELPER},
    {"LESSOPEN", HELPER},
    {"LESSCLOSE", HELPER},
    {"GIT_*", HELPER}, /* GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_* */
    {"SSH_ASKPASS", HELPER},
    {"SUDO_ASKPASS", HELPER},
    {"SHELL", HELPER},
    /* identity and places */
    {"PATH", IDENT},
    {"HOME", IDENT},
    {"USER", IDENT},
    {"LOGNAME", IDENT},
    {"TMPDIR", IDENT},
    {"TMP", IDENT},
    {"TEMP", IDENT},
    {"PWD", IDENT},
    {"XDG_*", IDENT},
};

static int is_prefix_pattern(const char *p, size_t *plen)
{
    size_t n = strlen(p);
    *plen = n && p[n - 1] == '*' ? n - 1 : n;
    return *plen != n;
}

/* Does pattern (a name or "PREFIX*") match name, case-insensitively? */
static int rule_matches(const char *pattern, const char *name)
{
    size_t plen;
    if (is_prefix_pattern(pattern, &plen)) return strncasecmp(pattern, name, plen) == 0;
    return strcasecmp(pattern, name) == 0;
}

int dbld_jobenv_valid_name(const char *name)
{
    if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_')) return 0;
    for (const char *p = name + 1; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) return 0;
    return 1;
}

static const deny_rule *deny_rule_for(const char *name)
{
    for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++)
        if (rule_matches(deny[i].pattern, name)) return &deny[i];
    return NULL;
}

const char *dbld_jobenv_denied(const char *name)
{
    const deny_rule *r = deny_rule_for(name);
    return r ? r->pattern : NULL;
}

static int reserved(const char *name)
{
    return strncasecmp(name, RESERVED_PREFIX, strlen(RESERVED_PREFIX)) == 0;
}

/* Does the job's YAML env ("KEY=VALUE" entries) set name? */
static int yaml_sets(const dbld_job_def *job, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < job->n_env; i++)
        if (strncmp(job->env[i], name, n) == 0 && job->env[i][n] == '=') return 1;
    return 0;
}

/* Does an env_allow entry ("NAME", "PREFIX*", "*") match name? Case matters. */
static int allow_matches(const char *entry, const char *name)
{
    size_t plen;
    if (is_prefix_pattern(entry, &plen)) return strncmp(entry, name, plen) == 0;
    return strcmp(entry, name) == 0;
}

static int allowed(const dbld_job_def *job, const char *name)
{
    for (size_t i = 0; i < job->n_env_allow; i++)
        if (allow_matches(job->env_allow[i], name)) return 1;
    return 0;
}

static void say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t cap, const char *fmt, ...)
{
    if (!why || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

dbld_jobenv_verdict dbld_jobenv_check(const dbld_job_def *job, const char *name, char *why,
                                      size_t cap)
{
    const deny_rule *r;
    if (!dbld_jobenv_valid_name(name)) {
        say(why, cap,
            "\"%s\" is not a valid variable name (letters, digits and _, not starting with a "
            "digit)",
            name ? name : "");
        return DBLD_JOBENV_BAD_NAME;
    }
    if ((r = deny_rule_for(name))) {
        say(why, cap, "\"%s\" is denylisted (%s: %s)", name, r->pattern, r->reason);
        return DBLD_JOBENV_DENIED;
    }
    if (reserved(name)) {
        say(why, cap, "\"%s\" is reserved (the job service sets " RESERVED_PREFIX "* itself)",
            name);
        return DBLD_JOBENV_RESERVED;
    }
    if (yaml_sets(job, name)) {
        say(why, cap,
            "\"%s\" is set by the job's env in the configuration file, which a config step "
            "cannot override",
            name);
        return DBLD_JOBENV_YAML;
    }
    if (!allowed(job, name)) {
        say(why, cap, "\"%s\" is not in the job's env_allow list", name);
        return DBLD_JOBENV_NOT_ALLOWED;
    }
    return DBLD_JOBENV_OK;
}

int dbld_jobenv_check_allow_entry(const char *entry, char *why, size_t cap)
{
    size_t plen;
    int prefix = is_prefix_pattern(entry, &plen);
    char stem[256];
    int too_long = plen >= sizeof stem;
    if (too_long) plen = sizeof stem - 1;
    memcpy(stem, entry, plen);
    stem[plen] = 0;
    if (prefix && plen == 0) return 0; /* "*": any name the other rules let through */
    if (too_long || !dbld_jobenv_valid_name(stem)) {
        say(why, cap,
            "invalid env_allow entry \"%s\" (expected NAME, PREFIX* or *, with letters, digits "
            "and _)",
            entry);
        return 1;
    }
    const deny_rule *r = deny_rule_for(stem);
    /* "LD_*" or "LD_X*" only names denied variables; "L*" also others. */
    if (r && (!prefix || is_prefix_pattern(r->pattern, &(size_t){0}))) {
        say(why, cap, "env_allow entry \"%s\" can never allow anything: it is denylisted (%s: %s)",
            entry, r->pattern, r->reason);
        return 1;
    }
    if (strlen(stem) >= strlen(RESERVED_PREFIX) && reserved(stem)) {
        say(why, cap,
            "env_allow entry \"%s\" can never allow anything: the job service sets " RESERVED_PREFIX
            "* itself",
            entry);
        return 1;
    }
    return 0;
}
