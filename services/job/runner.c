/* runner.c - configure and exec of job binaries (see runner.h).
 *
 * Every child is watched by one loop, supervise(): it reads output lines,
 * sends heartbeats, and turns a timeout, a Cancel, shutdown or a vanished
 * caller into SIGTERM of the process group and SIGKILL after the grace
 * period. Other threads never touch a child directly: they set a flag under
 * the engine lock and wake the loop through dbld_proc_wake().
 *
 * A child is spawned, supervised and reaped on the thread of the call that
 * needs it (an RPC worker, which lives as long as the process): the child's
 * parent-death signal fires when that thread exits (lib/proc.h), so it must
 * outlive the child. While it runs, its process group is recorded on disk
 * (orphans.h) for the sweep of a job service started after we die.
 */
#include "runner.h"
#include "joblog.h"
#include "orphans.h"
#include "dbld/metrics.h"
#include "dbld/jobenv.h"
#include "dbld/json.h"
#include "dbld/log.h"
#include "dbld/proc.h"
#include "dbld/strmap.h"
#include "dbld/util.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 100       /* longest wait between looks at the caller and the flags */
#define LINGER_MS 200     /* after the leader exits, how long its pipes may stay open */
#define DRAIN_MS 1000     /* reading what is left after the final SIGKILL */
#define LOG_CLOSE_MS 5000 /* final job log flush */
#define LOG_CLOSE_SHUTDOWN_MS 1000
#define LOG_HAND_BACK_BYTES ((size_t)1 << 20) /* the most of a job log a result carries */
#define CONFIG_STDOUT_MAX ((size_t)64 << 20)
#define TAIL_LINES 20
#define TAIL_BYTES 4096
#define TAIL_SEP "; stderr tail:\n" /* between a failure message and the stderr tail */
#define REFS_IN_MESSAGE 10

/* ---- the engine ---- */

/* A child that configure or exec is running, or a run waiting for a slot. */
typedef struct active {
    const char *id;       /* job_run_id; NULL for configure (not cancellable by id) */
    struct active *next;  /* e->active */
    struct active *qnext; /* e->qhead: waiting for a slot */
    pthread_cond_t cv;    /* signalled on grant, cancel, shutdown */
    int queued, granted;
    int cancel;
    char reason[256];
    dbld_proc *proc; /* while the child exists */
} active;

struct jr_engine {
    const dbld_config *cfg;
    job_table jobs;
    int kill_grace_ms, heartbeat_ms;
    const char *eventlog;
    orphan_reg *orphans;        /* borrowed; NULL: groups are not recorded */
    const dbld_proc_user *user; /* borrowed; NULL: children keep our credentials */

    pthread_mutex_t mu;
    int free_slots;
    active *active;
    active *qhead, *qtail;
    int shutdown;
    int shutdown_kill_ms;
};

/* Read at scrape time, under the engine's lock (not on any RPC path). */
static double metric_free_slots(void *arg)
{
    jr_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    int n = e->free_slots;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static double metric_running(void *arg)
{
    jr_engine *e = arg;
    return e->cfg->job.max_concurrent_runs - metric_free_slots(arg);
}

jr_engine *jr_engine_create(const dbld_config *cfg, orphan_reg *orphans,
                            const dbld_proc_user *run_as, dbld_status *st)
{
    jr_engine *e = dbld_xcalloc(1, sizeof *e);
    if (job_table_init(&e->jobs, cfg, st)) {
        free(e);
        return NULL;
    }
    e->cfg = cfg;
    e->free_slots = cfg->job.max_concurrent_runs > 0 ? cfg->job.max_concurrent_runs : 1;
    e->kill_grace_ms = cfg->job.kill_grace_ms;
    e->heartbeat_ms = cfg->job.heartbeat_ms;
    e->eventlog = cfg->shared.peers.eventlog;
    e->orphans = orphans;
    e->user = run_as;
    pthread_mutex_init(&e->mu, NULL);
    dbld_gauge_fn("databuild_job_free_slots", "Run slots free (job.max_concurrent_runs).", NULL,
                  metric_free_slots, e);
    dbld_gauge_fn("databuild_job_running_jobs", "Job runs holding a slot (running).", NULL,
                  metric_running, e);
    return e;
}

const job_table *jr_jobs(const jr_engine *e)
{
    return &e->jobs;
}

static void wake_locked(active *a)
{
    if (a->proc) dbld_proc_wake(a->proc);
    if (a->queued) pthread_cond_signal(&a->cv);
}

void jr_engine_shutdown(jr_engine *e, int kill_ms)
{
    pthread_mutex_lock(&e->mu);
    e->shutdown = 1;
    e->shutdown_kill_ms = kill_ms;
    for (active *a = e->active; a; a = a->next)
        wake_locked(a);
    pthread_mutex_unlock(&e->mu);
}

void jr_engine_destroy(jr_engine *e)
{
    if (!e) return;
    job_table_free(&e->jobs);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static int shutting_down(jr_engine *e)
{
    pthread_mutex_lock(&e->mu);
    int sd = e->shutdown;
    pthread_mutex_unlock(&e->mu);
    return sd;
}

static active *find_locked(jr_engine *e, const char *id)
{
    for (active *a = e->active; a; a = a->next)
        if (a->id && strcmp(a->id, id) == 0) return a;
    return NULL;
}

/* Register a; ALREADY_EXISTS when its id is active, UNAVAILABLE when shutting down. */
static int add_active(jr_engine *e, active *a, dbld_status *st)
{
    dbld_cond_init_mono(&a->cv);
    int rc = 0;
    pthread_mutex_lock(&e->mu);
    if (e->shutdown)
        rc = dbld_status_set(st, DBLD_UNAVAILABLE, "the job service is shutting down");
    else if (a->id && find_locked(e, a->id))
        rc = dbld_status_set(st, DBLD_ALREADY_EXISTS, "job run \"%s\" is already active", a->id);
    else {
        a->next = e->active;
        e->active = a;
    }
    pthread_mutex_unlock(&e->mu);
    if (rc) pthread_cond_destroy(&a->cv);
    return rc;
}

static void remove_active(jr_engine *e, active *a)
{
    pthread_mutex_lock(&e->mu);
    for (active **pp = &e->active; *pp; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    pthread_mutex_unlock(&e->mu);
    pthread_cond_destroy(&a->cv);
}

static void set_proc(jr_engine *e, active *a, dbld_proc *p)
{
    pthread_mutex_lock(&e->mu);
    a->proc = p;
    pthread_mutex_unlock(&e->mu);
}

/* Spawn a child and record its process group (mark: an entry of its
 * environment) until unspawn(). */
static int spawn(jr_engine *e, const dbld_proc_opts *po, const char *mark, dbld_proc **p,
                 uint64_t *entry, dbld_status *st)
{
    *entry = 0;
    int rc = dbld_proc_spawn(po, p, st);
    if (rc == 0) *entry = orphan_reg_add(e->orphans, dbld_proc_pid(*p), mark);
    return rc;
}

/* Kill what is left of the child's group, reap it, drop its record. */
static void unspawn(jr_engine *e, dbld_proc *p, uint64_t entry)
{
    dbld_proc_destroy(p);
    orphan_reg_remove(e->orphans, entry);
}

int jr_cancel(jr_engine *e, const char *job_run_id, const char *reason)
{
    pthread_mutex_lock(&e->mu);
    active *a = find_locked(e, job_run_id);
    if (a) {
        a->cancel = 1;
        snprintf(a->reason, sizeof a->reason, "%s", reason && *reason ? reason : "cancelled");
        wake_locked(a);
    }
    pthread_mutex_unlock(&e->mu);
    return a != NULL;
}

int jr_known(jr_engine *e, const char *job_run_id)
{
    pthread_mutex_lock(&e->mu);
    int found = find_locked(e, job_run_id) != NULL;
    pthread_mutex_unlock(&e->mu);
    return found;
}

/* ---- slots ---- */

static int64_t remaining(const jr_ctx *ctx)
{
    return ctx && ctx->remaining_ms ? ctx->remaining_ms(ctx->arg) : INT64_MAX;
}

static int caller_gone(const jr_ctx *ctx)
{
    return ctx && ctx->cancelled ? ctx->cancelled(ctx->arg) : 0;
}

#define SLOT_CANCELLED (-1) /* Cancel arrived while waiting */

static void dequeue_locked(jr_engine *e, active *a)
{
    active *prev = NULL;
    for (active *q = e->qhead; q; prev = q, q = q->qnext)
        if (q == a) {
            if (prev)
                prev->qnext = a->qnext;
            else
                e->qhead = a->qnext;
            if (e->qtail == a) e->qtail = prev;
            break;
        }
    a->qnext = NULL;
    a->queued = 0;
}

/* Wait (FIFO) for an exec slot. 0 when granted. */
static int acquire_slot(jr_engine *e, const jr_ctx *ctx, active *a, dbld_status *st)
{
    pthread_mutex_lock(&e->mu);
    if (e->free_slots > 0 && !e->qhead) {
        e->free_slots--;
        pthread_mutex_unlock(&e->mu);
        return 0;
    }
    a->queued = 1;
    a->qnext = NULL;
    if (e->qtail)
        e->qtail->qnext = a;
    else
        e->qhead = a;
    e->qtail = a;
    int rc = 0;
    while (!a->granted && !rc) {
        if (a->cancel)
            rc = SLOT_CANCELLED;
        else if (e->shutdown)
            rc = dbld_status_set(st, DBLD_UNAVAILABLE, "the job service is shutting down");
        if (rc) break;
        pthread_mutex_unlock(&e->mu);
        int gone = caller_gone(ctx);
        int64_t left = remaining(ctx);
        pthread_mutex_lock(&e->mu);
        if (a->granted) break;
        if (left <= 0) /* before `gone`: a passed deadline also counts as cancelled */
            rc = dbld_status_set(st, DBLD_DEADLINE_EXCEEDED,
                                 "deadline passed while waiting for one of %d run slots",
                                 e->cfg->job.max_concurrent_runs);
        else if (gone)
            rc = dbld_status_set(st, DBLD_CANCELLED,
                                 "the caller went away while waiting for a slot");
        else {
            struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, left < TICK_MS ? left : TICK_MS);
            pthread_cond_timedwait(&a->cv, &e->mu, &ts);
        }
    }
    if (a->granted)
        rc = 0;
    else
        dequeue_locked(e, a);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static void release_slot(jr_engine *e)
{
    pthread_mutex_lock(&e->mu);
    active *next = e->qhead;
    if (next) {
        e->qhead = next->qnext;
        if (!e->qhead) e->qtail = NULL;
        next->qnext = NULL;
        next->queued = 0;
        next->granted = 1;
        pthread_cond_signal(&next->cv);
    } else {
        e->free_slots++;
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- stderr tail ---- */

/* The last TAIL_LINES lines of stderr, each cut to its last TAIL_BYTES.
 * Whatever shortens a tail (here, status_with_tail()) cuts
 * it from the front: the last lines say why a job failed. */
typedef struct err_tail {
    char *line[TAIL_LINES];
    size_t next, n;
    int open; /* the newest line came in pieces and is not complete yet */
} err_tail;

/* s + len - keep, moved forward to a UTF-8 character boundary (s when short). */
static const char *last_bytes(const char *s, size_t len, size_t keep)
{
    if (len <= keep) return s;
    const char *p = s + len - keep;
    while (((unsigned char)*p & 0xC0) == 0x80)
        p++;
    return p;
}

/* One line of stderr, or a piece of a longer one (more: the next call
 * continues it, see dbld_proc_line_fn): pieces are joined into one line. */
static void tail_push(err_tail *t, const char *line, size_t len, int more)
{
    char *prev = NULL;
    size_t plen = 0;
    if (t->open) { /* continue the newest line */
        t->next = (t->next + TAIL_LINES - 1) % TAIL_LINES;
        t->n--;
        prev = t->line[t->next];
        t->line[t->next] = NULL;
        plen = strlen(prev);
    }
    const char *keep = last_bytes(line, len, TAIL_BYTES);
    len -= (size_t)(keep - line);
    if (plen + len > TAIL_BYTES) {
        const char *pk = last_bytes(prev, plen, TAIL_BYTES - len);
        plen -= (size_t)(pk - prev);
        memmove(prev, pk, plen);
    }
    char *l = dbld_xmalloc(plen + len + 1);
    if (plen) memcpy(l, prev, plen);
    memcpy(l + plen, keep, len);
    l[plen + len] = 0;
    free(prev);
    free(t->line[t->next]);
    t->line[t->next] = l;
    t->next = (t->next + 1) % TAIL_LINES;
    if (t->n < TAIL_LINES) t->n++;
    t->open = more;
}

/* The last lines (at most TAIL_BYTES of valid UTF-8, cut from the front at a
 * character boundary), in arena a. */
static char *tail_str(const err_tail *t, dbld_arena *a)
{
    size_t total = 0;
    for (size_t i = 0; i < t->n; i++)
        total += strlen(t->line[i]) + 1;
    char *s = dbld_xmalloc(total + 1), *o = s;
    size_t first = (t->next + TAIL_LINES - t->n) % TAIL_LINES;
    for (size_t i = 0; i < t->n; i++) {
        const char *l = t->line[(first + i) % TAIL_LINES];
        size_t len = strlen(l);
        memcpy(o, l, len);
        o += len;
        if (i + 1 < t->n) *o++ = '\n';
    }
    *o = 0;
    char *owned;
    const char *clean = jl_utf8_clean(s, (size_t)(o - s), &owned);
    char *out = dbld_arena_strdup(a, last_bytes(clean, strlen(clean), TAIL_BYTES));
    free(owned);
    free(s);
    return out;
}

static void tail_free(err_tail *t)
{
    for (size_t i = 0; i < TAIL_LINES; i++)
        free(t->line[i]);
    memset(t, 0, sizeof *t);
}

/* ---- supervising a child ---- */

typedef enum { T_NONE, T_TIMEOUT, T_CANCEL, T_SHUTDOWN, T_CALLER } term_kind;

typedef struct sup {
    /* in */
    jr_engine *e;
    const jr_ctx *ctx;
    active *a;
    dbld_proc *p;
    int timeout_ms; /* 0: none */
    dbld_proc_line_fn on_line;
    void *user;
    void (*heartbeat)(void *user, int64_t elapsed_ms); /* NULL: none */
    void (*tick)(void *user);                          /* every loop turn; NULL: none */
    /* out */
    term_kind term;
    dbld_proc_exit ex;
    char reason[256];
} sup;

static term_kind check_stop(sup *s, int64_t now, int64_t timeout_at)
{
    jr_engine *e = s->e;
    term_kind t = T_NONE;
    pthread_mutex_lock(&e->mu);
    if (s->a->cancel) {
        t = T_CANCEL;
        snprintf(s->reason, sizeof s->reason, "%s", s->a->reason);
    } else if (e->shutdown) {
        t = T_SHUTDOWN;
    }
    pthread_mutex_unlock(&e->mu);
    if (t == T_NONE && now >= timeout_at) t = T_TIMEOUT;
    if (t == T_NONE && caller_gone(s->ctx)) t = T_CALLER;
    return t;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Run the loop until the leader has exited and its output is read; leaves
 * nothing of the process group behind (the caller destroys s->p). */
static void supervise(sup *s)
{
    int64_t start = dbld_mono_ms();
    int64_t timeout_at = s->timeout_ms > 0 ? start + s->timeout_ms : INT64_MAX;
    int64_t hb_every = s->heartbeat && s->e->heartbeat_ms > 0 ? s->e->heartbeat_ms : 0;
    int64_t next_hb = hb_every ? start + hb_every : INT64_MAX;
    int64_t kill_at = INT64_MAX, exit_seen = 0;
    int killed = 0, open = 2;
    for (;;) {
        int64_t now = dbld_mono_ms();
        int exited = dbld_proc_exited(s->p, &s->ex);
        if (!exited && s->term == T_NONE) {
            s->term = check_stop(s, now, timeout_at);
            if (s->term != T_NONE) {
                dbld_proc_kill(s->p, SIGTERM);
                kill_at = now + s->e->kill_grace_ms;
            }
        }
        /* Shutdown (also during the grace period of a cancel or timeout)
         * allows only the shorter shutdown grace. */
        if (!killed && s->term != T_NONE) {
            pthread_mutex_lock(&s->e->mu);
            if (s->e->shutdown) kill_at = min64(kill_at, now + s->e->shutdown_kill_ms);
            pthread_mutex_unlock(&s->e->mu);
        }
        if (!killed && now >= kill_at) {
            dbld_proc_kill(s->p, SIGKILL);
            killed = 1;
        }
        if (exited) {
            if (open == 0) break;
            if (!exit_seen)
                exit_seen = now;
            else if (now - exit_seen >= LINGER_MS)
                break; /* a grandchild holds the pipes: it is killed below */
        }
        if (!exited && now >= next_hb) {
            s->heartbeat(s->user, now - start);
            next_hb = now + hb_every;
        }
        if (s->tick) s->tick(s->user);
        int64_t wait = TICK_MS;
        if (!exited) {
            wait = min64(wait, next_hb - now);
            if (s->term == T_NONE) /* once stopping, the timeout no longer matters */
                wait = min64(wait, timeout_at - now);
            if (!killed) wait = min64(wait, kill_at - now);
        } else {
            wait = min64(wait, LINGER_MS);
        }
        if (wait < 0) wait = 0;
        open = dbld_proc_read(s->p, (int)wait, s->on_line, s->user);
        if (open < 0) { /* a read error on our own pipe: stop the child rather than spin */
            dbld_log(DBLD_LOG_ERROR, "reading job output failed; killing the job", NULL);
            dbld_proc_kill(s->p, SIGKILL);
            killed = 1;
            dbld_proc_wait(s->p, -1, &s->ex);
            break;
        }
    }
    /* Whatever is left of the group goes, then read the last of the output. */
    dbld_proc_kill(s->p, SIGKILL);
    int64_t drain_until = dbld_mono_ms() + DRAIN_MS;
    while (open > 0 && dbld_mono_ms() < drain_until)
        open = dbld_proc_read(s->p, 50, s->on_line, s->user);
    dbld_proc_exited(s->p, &s->ex);
}

/* ---- messages ---- */

static const char **task_refs(dbld_arena *a, const Databuild__V1__JobConfig *c, size_t *n)
{
    *n = c ? c->n_outputs : 0;
    const char **refs = dbld_arena_alloc(a, (*n + 1) * sizeof *refs);
    for (size_t i = 0; i < *n; i++)
        refs[i] = c->outputs[i] && c->outputs[i]->str ? c->outputs[i]->str : "";
    return refs;
}

/* "head (refs: ...)" plus "; stderr tail:\n..." fitted into a status: the
 * tail is cut from the front (its last lines stay); a head longer than half
 * the status is cut at its end first, so the tail always has room. */
static int status_with_tail(dbld_status *st, int code, const char *head, const char *tail)
{
    if (!tail || !*tail) return dbld_status_set(st, code, "%s", head);
    size_t hl = strlen(head);
    const char *dots = "";
    if (hl > DBLD_STATUS_MSG_MAX / 2) {
        hl = DBLD_STATUS_MSG_MAX / 2 - 3;
        while (hl > 0 && ((unsigned char)head[hl] & 0xC0) == 0x80)
            hl--;
        dots = "...";
    }
    size_t used = hl + strlen(dots) + strlen(TAIL_SEP);
    const char *t = last_bytes(tail, strlen(tail), DBLD_STATUS_MSG_MAX - 1 - used);
    return dbld_status_set(st, code, "%.*s%s%s%s", (int)hl, head, dots, TAIL_SEP, t);
}

static char *with_tail(dbld_arena *a, const char *head, const char *tail)
{
    return tail && *tail ? dbld_arena_printf(a, "%s" TAIL_SEP "%s", head, tail)
                         : dbld_arena_strdup(a, head);
}

static const char *job_status_name(Databuild__V1__JobStatus s)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&databuild__v1__job_status__descriptor, (int)s);
    return v ? v->name : "JOB_UNKNOWN";
}

static const char *failure_kind_name(Databuild__V1__FailureKind k)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&databuild__v1__failure_kind__descriptor, (int)k);
    return v ? v->name : "FAILURE_KIND_UNSPECIFIED";
}

/* ---- configure ---- */

typedef struct cfg_out {
    char *buf;
    size_t len, cap;
    int too_big;
    err_tail err;
} cfg_out;

static void cfg_line(void *user, int stream, const char *line, size_t len, int more)
{
    cfg_out *c = user;
    if (stream == DBLD_PROC_STDERR) {
        tail_push(&c->err, line, len, more);
        return;
    }
    if (c->too_big || c->len + len + 1 > CONFIG_STDOUT_MAX) {
        c->too_big = 1;
        return;
    }
    if (c->len + len + 2 > c->cap) {
        c->cap = (c->len + len + 2) * 2;
        c->buf = dbld_xrealloc(c->buf, c->cap);
    }
    memcpy(c->buf + c->len, line, len);
    c->len += len;
    if (!more) c->buf[c->len++] = '\n';
    c->buf[c->len] = 0;
}

/* The environment entries of a child of job (before the DATABUILD_* ones),
 * with room for `extra` more: the run_as user's HOME, USER and LOGNAME when
 * we switch users, then the job's env from the YAML file (later entries win,
 * see lib/proc.h). */
static const char **job_env(const jr_engine *e, dbld_arena *a, const job_entry *job, size_t extra,
                            size_t *n)
{
    const char **env = dbld_arena_alloc(a, (3 + job->def->n_env + extra + 1) * sizeof *env);
    *n = 0;
    if (e->user) {
        env[(*n)++] = dbld_arena_printf(a, "HOME=%s", e->user->home);
        env[(*n)++] = dbld_arena_printf(a, "USER=%s", e->user->name);
        env[(*n)++] = dbld_arena_printf(a, "LOGNAME=%s", e->user->name);
    }
    for (size_t i = 0; i < job->def->n_env; i++)
        env[(*n)++] = job->def->env[i];
    return env;
}

/* The first env entry of a config that the policy (dbld/jobenv.h) refuses:
 * its reason in why; NULL if every entry may be set. */
static const char *refused_env(const job_entry *job, const Databuild__V1__JobConfig *c, char *why,
                               size_t cap)
{
    for (size_t i = 0; c && i < c->n_env; i++) {
        const char *k = c->env[i] && c->env[i]->key ? c->env[i]->key : "";
        if (dbld_jobenv_check(job->def, k, why, cap) != DBLD_JOBENV_OK) return k;
    }
    return NULL;
}

/* A config's env is checked when the config step returns it: a job whose
 * config step sets what it may not fails at configure, not later at run. */
static int check_config_env(const job_entry *job, const Databuild__V1__JobConfigureResponse *r,
                            dbld_arena *a, const char *rs, dbld_status *st)
{
    char why[512];
    for (size_t i = 0; i < r->n_configs; i++) {
        if (!refused_env(job, r->configs[i], why, sizeof why)) continue;
        size_t n;
        const char **refs = task_refs(a, r->configs[i], &n);
        return dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                               "job %s config returned an env the job service refuses: %s "
                               "(config for %s; refs: %s)",
                               job->def->label, why, job_refs_str(a, refs, n, REFS_IN_MESSAGE), rs);
    }
    return 0;
}

static void fill_dep_names(Databuild__V1__JobConfigureResponse *r)
{
    for (size_t i = 0; i < r->n_configs; i++)
        for (size_t k = 0; r->configs[i] && k < r->configs[i]->n_inputs; k++) {
            Databuild__V1__DataDep *d = r->configs[i]->inputs[k];
            if (d && (!d->dep_type_name || !*d->dep_type_name))
                d->dep_type_name = d->dep_type_code == DATABUILD__V1__DEP_TYPE__MATERIALIZE
                                       ? "materialize"
                                       : "query";
        }
}

/* The first requested ref no config produces, or NULL. One map of the
 * outputs: a batched configure has tens of thousands of refs. */
static const char *uncovered_ref(const Databuild__V1__JobConfigureResponse *r,
                                 const char *const *refs, size_t n)
{
    dbld_strmap outs = {0};
    for (size_t c = 0; c < r->n_configs; c++)
        for (size_t k = 0; r->configs[c] && k < r->configs[c]->n_outputs; k++)
            if (r->configs[c]->outputs[k] && r->configs[c]->outputs[k]->str)
                dbld_strmap_put(&outs, r->configs[c]->outputs[k]->str, 0);
    const char *missing = NULL;
    for (size_t i = 0; i < n && !missing; i++)
        if (!dbld_strmap_get(&outs, refs[i], NULL)) missing = refs[i];
    dbld_strmap_free(&outs);
    return missing;
}

int jr_configure(jr_engine *e, const jr_ctx *ctx, const job_entry *job, const char *const *refs,
                 size_t n, dbld_arena *a, Databuild__V1__JobConfigureResponse **out,
                 dbld_status *st)
{
    *out = NULL;
    const char *label = job->def->label;
    const char *rs = job_refs_str(a, refs, n, REFS_IN_MESSAGE);
    size_t nc = job->def->n_command;
    const char **argv = dbld_arena_alloc(a, (nc + 1 + n + 1) * sizeof *argv);
    for (size_t i = 0; i < nc; i++)
        argv[i] = job->def->command[i];
    argv[nc] = "config";
    for (size_t i = 0; i < n; i++)
        argv[nc + 1 + i] = refs[i];
    size_t n_env;
    const char **env = job_env(e, a, job, 1, &n_env);
    const char *mark = env[n_env++] = dbld_arena_printf(a, "DATABUILD_JOB_LABEL=%s", label);

    active act = {.id = NULL};
    int rc = add_active(e, &act, st);
    if (rc) return rc;
    dbld_proc_opts po = {
        .argv = argv, .env = env, .n_env = n_env, .cwd = job->def->working_dir, .user = e->user};
    dbld_proc *p = NULL;
    uint64_t entry;
    dbld_status sst;
    if (spawn(e, &po, mark, &p, &entry, &sst) != 0) {
        remove_active(e, &act);
        return dbld_status_set(st, DBLD_INTERNAL,
                               "job %s config could not be started: %s (refs: %s)", label, sst.msg,
                               rs);
    }
    set_proc(e, &act, p);
    cfg_out co = {0};
    sup s = {.e = e,
             .ctx = ctx,
             .a = &act,
             .p = p,
             .timeout_ms = job->def->timeout_ms,
             .on_line = cfg_line,
             .user = &co};
    supervise(&s);
    set_proc(e, &act, NULL);
    unspawn(e, p, entry);
    remove_active(e, &act);

    char *tl = tail_str(&co.err, a);
    tail_free(&co.err);
    char exs[96];
    dbld_proc_exit_str(&s.ex, exs, sizeof exs);
    rc = 0;
    if (s.term == T_TIMEOUT) {
        rc = status_with_tail(st, DBLD_DEADLINE_EXCEEDED,
                              dbld_arena_printf(a, "job %s config timed out after %d ms (refs: %s)",
                                                label, job->def->timeout_ms, rs),
                              tl);
    } else if (s.term == T_CALLER) {
        rc = dbld_status_set(st, DBLD_CANCELLED,
                             "job %s config stopped: the caller went away (refs: %s)", label, rs);
    } else if (s.term == T_SHUTDOWN) {
        rc = dbld_status_set(st, DBLD_UNAVAILABLE,
                             "job %s config stopped: the job service is shutting down (refs: %s)",
                             label, rs);
    } else if (!s.ex.exited || s.ex.code != 0) {
        rc = status_with_tail(
            st, DBLD_FAILED_PRECONDITION,
            dbld_arena_printf(a, "job %s config failed with %s (refs: %s)", label, exs, rs), tl);
    } else if (co.too_big) {
        rc = dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                             "job %s config printed more than %zu MiB on stdout (refs: %s)", label,
                             CONFIG_STDOUT_MAX >> 20, rs);
    } else {
        ProtobufCMessage *m = NULL;
        dbld_status jst;
        if (dbld_json_decode(co.buf ? co.buf : "", co.len,
                             &databuild__v1__job_configure_response__descriptor,
                             dbld_arena_allocator(a), &m, &jst) != 0) {
            char *owned;
            char snippet[81];
            snprintf(snippet, sizeof snippet, "%s", co.buf ? co.buf : "");
            for (char *c = snippet; *c; c++)
                if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
            const char *clean = jl_utf8_clean(snippet, strlen(snippet), &owned);
            rc = status_with_tail(
                st, DBLD_FAILED_PRECONDITION,
                dbld_arena_printf(a,
                                  "job %s config printed an invalid JobConfigureResponse: %s "
                                  "(refs: %s; stdout began \"%s\")",
                                  label, jst.msg, rs, clean),
                tl);
            free(owned);
        } else {
            Databuild__V1__JobConfigureResponse *r = (Databuild__V1__JobConfigureResponse *)m;
            const char *missing = uncovered_ref(r, refs, n);
            if (missing) {
                rc = dbld_status_set(st, DBLD_FAILED_PRECONDITION,
                                     "job %s config produced no config for ref \"%s\" (refs: %s)",
                                     label, missing, rs);
            } else if ((rc = check_config_env(job, r, a, rs, st)) == 0) {
                fill_dep_names(r);
                *out = r;
            }
        }
    }
    free(co.buf);
    return rc;
}

/* ---- exec ---- */

typedef struct exec_out {
    jl_sink *sink;
    err_tail err;
    const char *job_status;
} exec_out;

static void exec_line(void *user, int stream, const char *line, size_t len, int more)
{
    exec_out *x = user;
    jl_line(x->sink, stream, line, len);
    if (stream == DBLD_PROC_STDERR) tail_push(&x->err, line, len, more);
}

static void exec_tick(void *user)
{
    exec_out *x = user;
    jl_tick(x->sink);
}

static void exec_heartbeat(void *user, int64_t elapsed_ms)
{
    exec_out *x = user;
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRId64, elapsed_ms);
    jl_event(x->sink, "heartbeat", "JOB_RUNNING", 0, (const char *const[]){"elapsed_ms", ms, NULL});
}

static Databuild__V1__PartitionManifest *
make_manifest(dbld_arena *a, const Databuild__V1__Task *task, int64_t start_ns, int64_t end_ns)
{
    const Databuild__V1__JobConfig *c = task->config;
    Databuild__V1__PartitionManifest *m =
        dbld_arena_msg(a, &databuild__v1__partition_manifest__descriptor);
    m->outputs = c->outputs;
    m->n_outputs = c->n_outputs;
    m->inputs = dbld_arena_alloc(a, (c->n_inputs + 1) * sizeof *m->inputs);
    for (size_t i = 0; i < c->n_inputs; i++) {
        if (!c->inputs[i] || !c->inputs[i]->partition_ref) continue;
        Databuild__V1__PartitionManifest *in =
            dbld_arena_msg(a, &databuild__v1__partition_manifest__descriptor);
        in->outputs = dbld_arena_alloc(a, sizeof *in->outputs);
        in->outputs[0] = c->inputs[i]->partition_ref;
        in->n_outputs = 1;
        m->inputs[m->n_inputs++] = in;
    }
    m->start_time = start_ns / 1000000000;
    m->end_time = end_ns / 1000000000;
    m->task = (Databuild__V1__Task *)task;
    return m;
}

/* argv of `<command> exec <args...>` (in a). */
static const char **exec_argv(dbld_arena *a, const job_entry *job,
                              const Databuild__V1__JobConfig *c)
{
    size_t nc = job->def->n_command;
    const char **argv = dbld_arena_alloc(a, (nc + 1 + c->n_args + 1) * sizeof *argv);
    for (size_t i = 0; i < nc; i++)
        argv[i] = job->def->command[i];
    argv[nc] = "exec";
    for (size_t i = 0; i < c->n_args; i++)
        argv[nc + 1 + i] = c->args[i];
    return argv;
}

/* The job's environment plus the config's and the DATABUILD_* variables (in
 * a); *mark is the DATABUILD_JOB_RUN_ID entry that finds the process again. */
static const char **exec_env(jr_engine *e, dbld_arena *a, const job_entry *job,
                             const Databuild__V1__JobConfig *c, const char *run_id,
                             const char *br_id, size_t *n_env, const char **mark)
{
    const char **env = job_env(e, a, job, c->n_env + 3, n_env);
    for (size_t i = 0; i < c->n_env; i++)
        env[(*n_env)++] = dbld_arena_printf(a, "%s=%s", c->env[i]->key, c->env[i]->value);
    env[(*n_env)++] = dbld_arena_printf(a, "DATABUILD_JOB_LABEL=%s", job->def->label);
    *mark = env[(*n_env)++] = dbld_arena_printf(a, "DATABUILD_JOB_RUN_ID=%s", run_id);
    env[(*n_env)++] = dbld_arena_printf(a, "DATABUILD_BUILD_REQUEST_ID=%s", br_id ? br_id : "");
    return env;
}

/* The process could not be spawned: a transient failure. */
static void exec_launch_failed(jr_engine *e, exec_out *x, dbld_arena *a, const char *run_id,
                               const char *label, const char *rs, const dbld_status *sst,
                               Databuild__V1__RunJobResponse *r)
{
    jl_event(x->sink, "task_launch_failed", job_status_name(DATABUILD__V1__JOB_STATUS__JOB_FAILED),
             -1, (const char *const[]){"error", sst->msg, NULL});
    r->status = DATABUILD__V1__JOB_STATUS__JOB_FAILED;
    r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT;
    r->exit_code = -1;
    r->message =
        dbld_arena_printf(a, "job %s could not be started: %s (refs: %s)", label, sst->msg, rs);
    dbld_log(DBLD_LOG_WARN, "job run could not be started", "job_run_id", run_id, "job", label,
             "error", sst->msg, NULL);
    jl_close(x->sink, shutting_down(e) ? LOG_CLOSE_SHUTDOWN_MS : LOG_CLOSE_MS);
}

/* How a supervised run ended: r's status and failure kind, and the head of
 * its message (in a). exs names the exit ("exit 3", "signal 9"). */
static const char *exec_classify(dbld_arena *a, const job_entry *job, const sup *s, const char *exs,
                                 const char *rs, Databuild__V1__RunJobResponse *r)
{
    const char *label = job->def->label;
    switch (s->term) {
    case T_TIMEOUT:
        r->status = DATABUILD__V1__JOB_STATUS__JOB_FAILED;
        r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_TIMEOUT;
        return dbld_arena_printf(a, "job %s timed out after %d ms (refs: %s)", label,
                                 job->def->timeout_ms, rs);
    case T_CANCEL:
        r->status = DATABUILD__V1__JOB_STATUS__JOB_CANCELLED;
        return dbld_arena_printf(a, "job %s was cancelled: %s (refs: %s)", label, s->reason, rs);
    case T_CALLER:
        r->status = DATABUILD__V1__JOB_STATUS__JOB_CANCELLED;
        return dbld_arena_printf(a, "job %s was cancelled: the caller went away (refs: %s)", label,
                                 rs);
    case T_SHUTDOWN:
        r->status = DATABUILD__V1__JOB_STATUS__JOB_FAILED;
        r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT;
        return dbld_arena_printf(
            a, "job %s was stopped: the job service is shutting down (refs: %s)", label, rs);
    default:
        break;
    }
    if (s->ex.exited && s->ex.code == 0) {
        r->status = DATABUILD__V1__JOB_STATUS__JOB_COMPLETED;
        return dbld_arena_printf(a, "job %s completed (refs: %s)", label, rs);
    }
    r->status = DATABUILD__V1__JOB_STATUS__JOB_FAILED;
    if (s->ex.exited && job_exit_denies_retry(job, s->ex.code)) {
        r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_PERMANENT;
        r->retry_denied = 1;
        return dbld_arena_printf(a,
                                 "job %s failed with %s, an exit code that denies retry "
                                 "(refs: %s)",
                                 label, exs, rs);
    }
    if (s->ex.exited && job_exit_is_transient(job, s->ex.code)) {
        r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_TRANSIENT;
        return dbld_arena_printf(a, "job %s failed with %s, a transient exit code (refs: %s)",
                                 label, exs, rs);
    }
    r->failure_kind = DATABUILD__V1__FAILURE_KIND__FAILURE_PERMANENT;
    return dbld_arena_printf(a, "job %s failed with %s (refs: %s)", label, exs, rs);
}

/* The wrapper's task_exit event (and the manifest of a completed run), the
 * log line, and the end of the job log. */
static void exec_record_end(jr_engine *e, const jr_ctx *ctx, exec_out *x, dbld_arena *a,
                            const char *run_id, const char *label, const Databuild__V1__Task *task,
                            const char *head, const char *exs, int64_t start_ns, int64_t end_ns,
                            Databuild__V1__RunJobResponse *r)
{
    int ok = r->status == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED;
    char dur[32];
    snprintf(dur, sizeof dur, "%" PRId64, (end_ns - start_ns) / 1000000);
    const char *meta[12] = {"duration_ms", dur, "exit", exs};
    size_t k = 4;
    if (!ok) {
        meta[k++] = "failure_kind";
        meta[k++] = failure_kind_name(r->failure_kind);
        meta[k++] = "message";
        meta[k++] = head;
    }
    jl_event(x->sink, "task_exit", job_status_name(r->status), r->exit_code, meta);
    if (ok) {
        r->manifest = make_manifest(a, task, start_ns, end_ns);
        jl_manifest(x->sink, r->manifest);
    }
    char entries[32];
    snprintf(entries, sizeof entries, "%" PRIu64, jl_count(x->sink));
    dbld_log(ok ? DBLD_LOG_DEBUG : DBLD_LOG_INFO, "job run ended", "job_run_id", run_id, "job",
             label, "status", job_status_name(r->status), "exit", exs, "duration_ms", dur,
             "log_entries", entries, NULL);
    int64_t close_ms = shutting_down(e) ? LOG_CLOSE_SHUTDOWN_MS : LOG_CLOSE_MS;
    if (ctx && ctx->return_logs && !caller_gone(ctx))
        jl_close_hand_back(x->sink, close_ms, LOG_HAND_BACK_BYTES, a, &r->log_entries,
                           &r->n_log_entries);
    else
        jl_close(x->sink, close_ms);
}

void jr_store_logs(jr_engine *e, const Databuild__V1__RunJobResponse *r)
{
    dbld_status st;
    if (r->n_log_entries &&
        jl_store(e->eventlog, r->log_entries, r->n_log_entries, LOG_CLOSE_MS, &st) != 0)
        dbld_log(DBLD_LOG_WARN, "job log entries not stored", "job_run_id",
                 r->log_entries[0]->job_id, "error", st.msg, NULL);
}

/* Spawn, supervise and classify; fills r. */
static void exec_task(jr_engine *e, const jr_ctx *ctx, active *act, const job_entry *job,
                      const char *run_id, const char *br_id, const Databuild__V1__Task *task,
                      int64_t waited_ms, dbld_arena *a, Databuild__V1__RunJobResponse *r)
{
    const Databuild__V1__JobConfig *c = task->config;
    const char *label = job->def->label;
    size_t n_refs, n_env;
    const char **refs = task_refs(a, c, &n_refs);
    const char *rs = job_refs_str(a, refs, n_refs, REFS_IN_MESSAGE);
    const char **argv = exec_argv(a, job, c);
    const char *mark;
    const char **env = exec_env(e, a, job, c, run_id, br_id, &n_env, &mark);

    jl_opts lo = {.target = e->eventlog,
                  .job_run_id = run_id,
                  .job_label = label,
                  .outputs = refs,
                  .n_outputs = n_refs};
    exec_out x = {.sink = jl_open(&lo)};
    int64_t start_ns = dbld_now_ns();
    dbld_proc_opts po = {
        .argv = argv, .env = env, .n_env = n_env, .cwd = job->def->working_dir, .user = e->user};
    dbld_proc *p = NULL;
    uint64_t entry;
    dbld_status sst;
    if (spawn(e, &po, mark, &p, &entry, &sst) != 0) {
        exec_launch_failed(e, &x, a, run_id, label, rs, &sst, r);
        return;
    }
    set_proc(e, act, p);
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)dbld_proc_pid(p));
    jl_event(x.sink, "task_launch_success", "JOB_RUNNING", 0,
             (const char *const[]){"pid", pid, "command", argv[0], NULL});
    dbld_log(DBLD_LOG_DEBUG, "job run started", "job_run_id", run_id, "job", label, "pid", pid,
             NULL);
    /* the spawn is reported at once: a job service lost right after it
     * must not leave the run looking as if it never started */
    if (ctx && ctx->started)
        ctx->started(ctx->arg, (int)dbld_proc_pid(p), dbld_now_ns(), waited_ms);
    sup s = {.e = e,
             .ctx = ctx,
             .a = act,
             .p = p,
             .timeout_ms = job->def->timeout_ms,
             .on_line = exec_line,
             .user = &x,
             .heartbeat = exec_heartbeat,
             .tick = exec_tick};
    supervise(&s);
    set_proc(e, act, NULL);
    unspawn(e, p, entry);
    int64_t end_ns = dbld_now_ns();

    char exs[96];
    dbld_proc_exit_str(&s.ex, exs, sizeof exs);
    r->exit_code = s.ex.exited ? s.ex.code : 128 + s.ex.signal;
    r->stderr_tail = tail_str(&x.err, a);
    tail_free(&x.err);
    const char *head = exec_classify(a, job, &s, exs, rs, r);
    int ok = r->status == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED;
    r->message = ok ? (char *)head : with_tail(a, head, r->stderr_tail);
    exec_record_end(e, ctx, &x, a, run_id, label, task, head, exs, start_ns, end_ns, r);
}

int jr_run(jr_engine *e, const jr_ctx *ctx, const job_entry *job, const char *job_run_id,
           const char *build_request_id, const Databuild__V1__Task *task, dbld_arena *a,
           Databuild__V1__RunJobResponse **out, dbld_status *st)
{
    *out = NULL;
    const Databuild__V1__JobConfig *c = task->config;
    char why[512];
    if (refused_env(job, c, why, sizeof why))
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "task.config.env refused for job %s: %s (a job's environment is its "
                               "env from the configuration file plus what its config step may set)",
                               job->def->label, why);
    active act = {.id = job_run_id};
    int rc = add_active(e, &act, st);
    if (rc) return rc;
    Databuild__V1__RunJobResponse *r =
        dbld_arena_msg(a, &databuild__v1__run_job_response__descriptor);
    int64_t wait_from = dbld_mono_ms();
    rc = acquire_slot(e, ctx, &act, st);
    if (rc == SLOT_CANCELLED) {
        size_t n_refs;
        const char **refs = task_refs(a, c, &n_refs);
        r->status = DATABUILD__V1__JOB_STATUS__JOB_CANCELLED;
        r->exit_code = -1;
        r->message = dbld_arena_printf(a, "job %s was cancelled before it started: %s (refs: %s)",
                                       job->def->label, act.reason,
                                       job_refs_str(a, refs, n_refs, REFS_IN_MESSAGE));
        rc = 0;
    } else if (rc == 0) {
        exec_task(e, ctx, &act, job, job_run_id, build_request_id, task, dbld_mono_ms() - wait_from,
                  a, r);
        release_slot(e);
    }
    remove_active(e, &act);
    if (rc == 0) *out = r;
    return rc;
}
