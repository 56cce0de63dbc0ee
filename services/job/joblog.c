/* joblog.c - JobLogEntry stream of one job run, batched to the event log
 * (see joblog.h). Entries are packed on the run thread, so the queue holds
 * plain byte strings the flusher can send while the run thread keeps adding.
 *
 * One flusher thread serves every sink of the process (the shared flusher,
 * started with the first sink that needs it): a sink joins it once its run
 * has lasted flush_ms or batch_max entries wait, and leaves it at close,
 * where the closing thread sends what is left (a short run never joins). */
#include "joblog.h"
#include "databuild_ext.pb-c.h"
#include "dbld/arena.h"
#include "dbld/json.h"
#include "dbld/log.h"
#include "dbld/proc.h"
#include "dbld/rpc.h"
#include "dbld/util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define APPEND_PATH "/databuild.v1.JobLogs/Append"
#define SEND_TIMEOUT_MS 1000  /* one flush attempt while the job runs */
#define MAX_QUEUED 200000     /* entries kept while the event log is unreachable */
#define WARN_EVERY_MS 30000   /* repeat the "could not store" warning at most this often */
#define CLOSE_FAILING_MS 1000 /* final flush when the last send already failed */
#define BATCH_BYTES (1 << 20) /* packed entries per Append (the event log takes 16 MiB) */
#define ORPHAN_MAX_BYTES ((size_t)256 << 20) /* closed runs' log tails the flusher still holds */
#define ORPHAN_MAX_SINKS 4096                /* and at most this many of them */
#define ORPHAN_SINK_COST 512 /* bytes a kept tail costs besides its entries (struct, names) */
#define ORPHAN_RETRY_MS 1000 /* a closed run's tail is resent this often while sends fail */

typedef struct packed {
    uint8_t *buf;
    size_t len;
} packed;

struct jl_sink {
    char *target, *run_id, *label;
    dbld_arena *keep;    /* outputs, ids: live as long as the sink */
    dbld_arena *scratch; /* one entry at a time (run thread only) */
    Databuild__V1__PartitionRef **outputs;
    size_t n_outputs;
    int flush_ms, batch_max;
    uint64_t seq;
    void (*observe)(void *user, const uint8_t *entry, size_t len);
    void *observe_user;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* jl_close's last sends back off here */
    int failing;       /* the last send failed */
    packed *q;         /* queue: q[head..tail) */
    size_t head, tail, cap;
    size_t dropped;
    int closing;
    int64_t close_deadline; /* mono ms */
    int64_t opened_ms;      /* mono ms: jl_tick() joins the shared flusher flush_ms after */
    int64_t last_warn;      /* mono ms of the last "could not store" warning */
    /* the shared flusher's (under flusher.mu) */
    int shared;          /* joined it (run thread only writes) */
    int busy;            /* it is sending a batch of this sink */
    int orphan;          /* closed: the flusher sends the rest and frees it */
    size_t orphan_bytes; /* its queued bytes counted in flusher.orphan_bytes */
    int64_t next_ms;     /* mono ms: its next periodic send */
    struct jl_sink *fnext;
};

/* The shared flusher: the sinks that joined it. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the thread waits for work; jl_close for !busy */
    jl_sink *sinks;
    int started, stop;
    pthread_t thread;
    size_t orphans, orphan_bytes; /* closed sinks the flusher still sends for */
} flusher = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void sink_free(jl_sink *s);

/* ---- UTF-8 ---- */

static size_t utf8_seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    if (c >= 0x01 && c <= 0x7F) return 1;
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (left < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

const char *jl_utf8_clean(const char *s, size_t len, char **owned)
{
    *owned = NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k;
    while (i < len && (k = utf8_seq_len(p + i, len - i)) > 0)
        i += k;
    if (i == len) return s;
    char *out = dbld_xmalloc(len * 3 + 1), *o = out;
    memcpy(o, s, i);
    o += i;
    while (i < len) {
        k = utf8_seq_len(p + i, len - i);
        if (k) {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    *o = 0;
    *owned = out;
    return out;
}

/* The longest prefix of s (len bytes, valid UTF-8) within max bytes that
 * ends on a character boundary. */
static size_t utf8_cut(const char *s, size_t len, size_t max)
{
    if (len <= max) return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/* s (valid UTF-8) cut to what the event log accepts in a field of its kind
 * (dbld_string_limit), "..." marking a cut; in the arena. */
static char *fit(dbld_arena *a, const char *msg_name, const char *field, const char *s)
{
    size_t lim = dbld_string_limit(msg_name, field, NULL), len = strlen(s);
    if (len <= lim) return dbld_arena_strndup(a, s, len);
    return dbld_arena_printf(a, "%.*s...", (int)utf8_cut(s, len, lim - 3), s);
}

/* ---- queue and flusher ---- */

/* Take up to max entries from the head, and no more than BATCH_BYTES of them
 * but at least one (they stay queued until popped). */
static size_t peek_batch(jl_sink *s, packed *out, size_t max)
{
    size_t n = s->tail - s->head, bytes = 0, k;
    if (n > max) n = max;
    for (k = 0; k < n; k++) {
        bytes += s->q[s->head + k].len;
        if (k > 0 && bytes > BATCH_BYTES) break;
    }
    memcpy(out, s->q + s->head, k * sizeof *out);
    return k;
}

static void pop_batch(jl_sink *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s->q[s->head + i].buf);
    s->head += n;
    if (s->head == s->tail) s->head = s->tail = 0;
}

static int append_entries(const char *target, Databuild__V1__AppendJobLogsRequest *req,
                          ProtobufCAllocator *al, int64_t timeout_ms, dbld_status *st)
{
    ProtobufCMessage *resp = NULL;
    return dbld_client_unary(dbld_client_get(target), APPEND_PATH, &req->base,
                             &databuild__v1__append_job_logs_response__descriptor, al, &resp,
                             timeout_ms, DBLD_CALL_IDEMPOTENT, st);
}

static int send_batch(jl_sink *s, const packed *b, size_t n, int64_t timeout_ms, dbld_status *st)
{
    dbld_arena *a = dbld_arena_create();
    ProtobufCAllocator *al = dbld_arena_allocator(a);
    Databuild__V1__AppendJobLogsRequest *req =
        dbld_arena_msg(a, &databuild__v1__append_job_logs_request__descriptor);
    req->entries = dbld_arena_alloc(a, n * sizeof *req->entries);
    for (size_t i = 0; i < n; i++) {
        req->entries[i] = (Databuild__V1__JobLogEntry *)protobuf_c_message_unpack(
            &databuild__v1__job_log_entry__descriptor, al, b[i].len, b[i].buf);
        if (!req->entries[i]) { /* cannot happen: we packed it */
            dbld_arena_destroy(a);
            return dbld_status_set(st, DBLD_INTERNAL, "queued log entry does not decode");
        }
    }
    req->n_entries = n;
    int rc = append_entries(s->target, req, al, timeout_ms, st);
    dbld_arena_destroy(a);
    return rc;
}

/* After a send of n entries (under s->mu): pop them, or note the failure
 * (warning at most every WARN_EVERY_MS). */
static void sent(jl_sink *s, size_t n, int rc, const dbld_status *st)
{
    if (rc == 0) {
        pop_batch(s, n);
        if (s->failing)
            dbld_log(DBLD_LOG_INFO, "job logs stored again", "job_run_id", s->run_id, NULL);
        s->failing = 0;
        return;
    }
    int64_t now = dbld_mono_ms();
    if (!s->failing || now - s->last_warn >= WARN_EVERY_MS) {
        char queued[32];
        snprintf(queued, sizeof queued, "%zu", s->tail - s->head);
        dbld_log(DBLD_LOG_WARN, "could not store job logs; will retry", "job_run_id", s->run_id,
                 "eventlog", s->target, "error", st->msg, "queued", queued, NULL);
        s->last_warn = now;
    }
    s->failing = 1;
}

/* Send what s has queued until it is empty or the close deadline passes
 * (jl_close, on the closing thread). */
static void drain(jl_sink *s)
{
    packed *batch = dbld_xmalloc((size_t)s->batch_max * sizeof *batch);
    pthread_mutex_lock(&s->mu);
    while (s->head != s->tail) {
        int64_t timeout = s->close_deadline - dbld_mono_ms();
        if (timeout <= 0) break;
        size_t n = peek_batch(s, batch, (size_t)s->batch_max);
        pthread_mutex_unlock(&s->mu);
        dbld_status st;
        int rc = send_batch(s, batch, n, timeout, &st);
        pthread_mutex_lock(&s->mu);
        sent(s, n, rc, &st);
        if (rc == 0) continue;
        /* back off a little before the next attempt */
        int64_t now = dbld_mono_ms();
        if (s->close_deadline > now + CLOSE_FAILING_MS) s->close_deadline = now + CLOSE_FAILING_MS;
        int64_t left = s->close_deadline - now;
        if (left <= 0) break;
        struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, left < 100 ? left : 100);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    free(batch);
}

/* A sink of the shared flusher with a batch to send now (a full one, or its
 * period has passed; after a failed send only the period counts), marked
 * busy; NULL and *wait_ms (until the next period) when none. Under flusher.mu. */
static jl_sink *due_sink(int64_t now, int64_t *wait_ms)
{
    *wait_ms = 1000;
    for (jl_sink *s = flusher.sinks; s; s = s->fnext) {
        pthread_mutex_lock(&s->mu);
        size_t queued = s->tail - s->head;
        int full = !s->failing && queued >= (size_t)s->batch_max;
        pthread_mutex_unlock(&s->mu);
        if (queued && (full || now >= s->next_ms)) {
            s->busy = 1;
            return s;
        }
        if (queued && s->next_ms - now < *wait_ms) *wait_ms = s->next_ms - now;
    }
    return NULL;
}

/* A status that sending again will not change (a malformed batch, a missing
 * right), as opposed to an event log that is down or slow. */
static int refused_for_good(int code)
{
    return code == DBLD_INVALID_ARGUMENT || code == DBLD_PERMISSION_DENIED ||
           code == DBLD_UNAUTHENTICATED || code == DBLD_UNIMPLEMENTED;
}

/* Take s out of the flusher's list / put it at its end (under flusher.mu). */
static void unlink_sink_locked(jl_sink *s)
{
    for (jl_sink **pp = &flusher.sinks; *pp; pp = &(*pp)->fnext)
        if (*pp == s) {
            *pp = s->fnext;
            break;
        }
    s->fnext = NULL;
}

static void append_sink_locked(jl_sink *s)
{
    jl_sink **pp = &flusher.sinks;
    while (*pp)
        pp = &(*pp)->fnext;
    s->fnext = NULL;
    *pp = s;
}

/* The shared flusher: one batch of one due sink at a time (SEND_TIMEOUT_MS
 * each); a sink goes to the back of the list after its send. */
static void *flusher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&flusher.mu);
    while (!flusher.stop) {
        int64_t now = dbld_mono_ms(), wait_ms;
        jl_sink *s = due_sink(now, &wait_ms);
        if (!s) {
            struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, wait_ms);
            pthread_cond_timedwait(&flusher.cv, &flusher.mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&flusher.mu);
        packed *batch = dbld_xmalloc((size_t)s->batch_max * sizeof *batch);
        pthread_mutex_lock(&s->mu);
        size_t n = peek_batch(s, batch, (size_t)s->batch_max);
        pthread_mutex_unlock(&s->mu);
        dbld_status st;
        int rc = n ? send_batch(s, batch, n, SEND_TIMEOUT_MS, &st) : 0;
        pthread_mutex_lock(&s->mu);
        if (n) sent(s, n, rc, &st);
        int done = s->orphan && s->head == s->tail;
        /* a closed run's tail the event log refuses for good is not retried */
        int refused = s->orphan && rc != 0 && refused_for_good(rc);
        size_t left = s->tail - s->head;
        pthread_mutex_unlock(&s->mu);
        free(batch);
        pthread_mutex_lock(&flusher.mu);
        s->busy = 0;
        s->next_ms = dbld_mono_ms() + (s->orphan && rc != 0 ? ORPHAN_RETRY_MS : s->flush_ms);
        unlink_sink_locked(s);
        if (done || refused) { /* a closed run's tail is over: the sink is ours to free */
            flusher.orphans--;
            flusher.orphan_bytes -= s->orphan_bytes;
            pthread_mutex_unlock(&flusher.mu);
            if (done) {
                dbld_log(DBLD_LOG_INFO, "job log tail stored after the run ended", "job_run_id",
                         s->run_id, NULL);
            } else {
                char k[32];
                snprintf(k, sizeof k, "%zu", left);
                dbld_log(DBLD_LOG_WARN, "job log entries not stored", "job_run_id", s->run_id,
                         "entries", k, "error", st.msg, NULL);
            }
            sink_free(s);
            pthread_mutex_lock(&flusher.mu);
        } else { /* to the back: every sink gets its turn */
            append_sink_locked(s);
        }
        pthread_cond_broadcast(&flusher.cv); /* a jl_close may wait for !busy */
    }
    pthread_mutex_unlock(&flusher.mu);
    return NULL;
}

jl_sink *jl_open(const jl_opts *o)
{
    jl_sink *s = dbld_xcalloc(1, sizeof *s);
    s->keep = dbld_arena_create();
    s->scratch = dbld_arena_create();
    s->target = o->target && *o->target ? dbld_xstrdup(o->target) : NULL;
    s->run_id = dbld_xstrdup(o->job_run_id ? o->job_run_id : "");
    s->label = dbld_xstrdup(o->job_label ? o->job_label : "");
    s->flush_ms = o->flush_ms > 0 ? o->flush_ms : 200;
    s->batch_max = o->batch_max > 0 ? o->batch_max : 500;
    s->n_outputs = o->n_outputs;
    s->observe = o->observe;
    s->observe_user = o->observe_user;
    s->outputs = dbld_arena_alloc(s->keep, (o->n_outputs + 1) * sizeof *s->outputs);
    for (size_t i = 0; i < o->n_outputs; i++) {
        Databuild__V1__PartitionRef *r =
            dbld_arena_msg(s->keep, &databuild__v1__partition_ref__descriptor);
        r->str = dbld_arena_strdup(s->keep, o->outputs[i]);
        s->outputs[i] = r;
    }
    pthread_mutex_init(&s->mu, NULL);
    dbld_cond_init_mono(&s->cv);
    s->opened_ms = dbld_mono_ms();
    return s;
}

/* The shared flusher's thread, started the first time (under flusher.mu). */
static int flusher_started_locked(void)
{
    if (!flusher.started) {
        dbld_cond_init_mono(&flusher.cv);
        if (!flusher.stop && pthread_create(&flusher.thread, NULL, flusher_main, NULL) == 0) {
            flusher.started = 1;
        } else {
            pthread_cond_destroy(&flusher.cv);
        }
    }
    return flusher.started;
}

/* Link s into the shared flusher's sinks, due now (under flusher.mu). */
static void link_sink_locked(jl_sink *s)
{
    s->shared = 1;
    s->next_ms = dbld_mono_ms(); /* it is due now */
    s->fnext = flusher.sinks;
    flusher.sinks = s;
    pthread_cond_broadcast(&flusher.cv);
}

/* Join the shared flusher (run thread only), starting its thread the first
 * time; when that fails the queue is sent at close by the closing thread. */
static void start_flusher(jl_sink *s)
{
    if (s->shared || !s->target) return;
    pthread_mutex_lock(&flusher.mu);
    if (flusher_started_locked()) link_sink_locked(s);
    pthread_mutex_unlock(&flusher.mu);
}

/* Leave the shared flusher, once it is not sending for s. */
static void stop_flusher(jl_sink *s)
{
    if (!s->shared) return;
    pthread_mutex_lock(&flusher.mu);
    while (s->busy)
        pthread_cond_wait(&flusher.cv, &flusher.mu);
    unlink_sink_locked(s);
    pthread_mutex_unlock(&flusher.mu);
}

void jl_tick(jl_sink *s)
{
    if (s && !s->shared && s->tail > s->head && dbld_mono_ms() - s->opened_ms >= s->flush_ms)
        start_flusher(s);
}

/* Stamp, pack and queue e (allocated from scratch); resets scratch. */
static void enqueue(jl_sink *s, Databuild__V1__JobLogEntry *e)
{
    char ts[32];
    snprintf(ts, sizeof ts, "%" PRId64, dbld_now_ns());
    e->timestamp = ts;
    e->job_id = s->run_id;
    e->outputs = s->outputs;
    e->n_outputs = s->n_outputs;
    e->sequence_number = ++s->seq;
    packed p;
    p.len = protobuf_c_message_get_packed_size(&e->base);
    p.buf = dbld_xmalloc(p.len ? p.len : 1);
    protobuf_c_message_pack(&e->base, p.buf);
    dbld_status st;
    if (dbld_wire_validate(&databuild__v1__job_log_entry__descriptor, p.buf, p.len, &st) != 0) {
        /* the event log would refuse it (and with it its batch): say so instead */
        Databuild__V1__LogMessage *m =
            dbld_arena_msg(s->scratch, &databuild__v1__log_message__descriptor);
        m->level = DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR;
        m->message = dbld_arena_printf(s->scratch, "log entry dropped: %s", st.msg);
        e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
        e->log = m;
        free(p.buf);
        p.len = protobuf_c_message_get_packed_size(&e->base);
        p.buf = dbld_xmalloc(p.len ? p.len : 1);
        protobuf_c_message_pack(&e->base, p.buf);
    }
    dbld_arena_reset(s->scratch);
    if (s->observe) s->observe(s->observe_user, p.buf, p.len);
    if (!s->target) {
        free(p.buf);
        return;
    }
    pthread_mutex_lock(&s->mu);
    if (s->tail - s->head >= MAX_QUEUED) {
        s->dropped++;
        free(p.buf);
    } else {
        if (s->tail == s->cap) {
            if (s->head > 0) { /* compact before growing */
                memmove(s->q, s->q + s->head, (s->tail - s->head) * sizeof *s->q);
                s->tail -= s->head;
                s->head = 0;
            }
            if (s->tail == s->cap) {
                s->cap = s->cap ? s->cap * 2 : 256;
                s->q = dbld_xrealloc(s->q, s->cap * sizeof *s->q);
            }
        }
        s->q[s->tail++] = p;
    }
    int full = s->tail - s->head >= (size_t)s->batch_max;
    pthread_mutex_unlock(&s->mu);
    if (full && !s->shared) {
        start_flusher(s);
    } else if (full && s->tail - s->head == (size_t)s->batch_max) { /* just filled up */
        pthread_mutex_lock(&flusher.mu);
        pthread_cond_broadcast(&flusher.cv);
        pthread_mutex_unlock(&flusher.mu);
    }
}

static Databuild__V1__JobLogEntry *new_entry(jl_sink *s)
{
    return dbld_arena_msg(s->scratch, &databuild__v1__job_log_entry__descriptor);
}

/* ---- lines ---- */

static int parse_level(const char *v, Databuild__V1__LogMessage__LogLevel *out)
{
    static const struct {
        const char *name;
        Databuild__V1__LogMessage__LogLevel level;
    } map[] = {
        {"trace", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__DEBUG},
        {"debug", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__DEBUG},
        {"info", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__INFO},
        {"notice", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__INFO},
        {"warn", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__WARN},
        {"warning", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__WARN},
        {"error", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
        {"err", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
        {"fatal", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
        {"critical", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
        {"crit", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
        {"panic", DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__ERROR},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(v, map[i].name) == 0) {
            *out = map[i].level;
            return 1;
        }
    return 0;
}

static void add_field(dbld_arena *a, Databuild__V1__LogMessage *m, const char *k, const char *v)
{
    Databuild__V1__LogMessage__FieldsEntry **f =
        dbld_arena_push(a, &m->fields, &m->n_fields, sizeof *m->fields);
    *f = dbld_arena_msg(a, &databuild__v1__log_message__fields_entry__descriptor);
    (*f)->key = fit(a, "FieldsEntry", "key", k);
    (*f)->value = fit(a, "FieldsEntry", "value", v);
}

static int has_field(const Databuild__V1__LogMessage *m, const char *k)
{
    for (size_t i = 0; i < m->n_fields; i++)
        if (strcmp(m->fields[i]->key, k) == 0) return 1;
    return 0;
}

/* A stdout JSON object with "name" and "value" that is a MetricPoint. */
static int try_metric(jl_sink *s, json_t *obj)
{
    json_t *name = json_object_get(obj, "name"), *value = json_object_get(obj, "value");
    if (!json_is_string(name) || !(json_is_number(value) || json_is_string(value))) return 0;
    ProtobufCMessage *m = NULL;
    dbld_status st;
    if (dbld_json_to_message(obj, &databuild__v1__metric_point__descriptor,
                             dbld_arena_allocator(s->scratch), &m, &st) != 0)
        return 0;
    /* one the event log would refuse (a name over its limit) stays a log line */
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = dbld_arena_alloc(s->scratch, len + 1);
    protobuf_c_message_pack(m, buf);
    if (dbld_wire_validate(&databuild__v1__metric_point__descriptor, buf, len, &st) != 0) return 0;
    Databuild__V1__JobLogEntry *e = new_entry(s);
    e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC;
    e->metric = (Databuild__V1__MetricPoint *)m;
    enqueue(s, e);
    return 1;
}

/* A JSON object with a "level": a structured log line. */
static int try_structured(jl_sink *s, json_t *obj, const char *line, const char *stream_name,
                          Databuild__V1__LogMessage__LogLevel deflt)
{
    json_t *lv = json_object_get(obj, "level");
    if (!json_is_string(lv)) return 0;
    dbld_arena *a = s->scratch;
    Databuild__V1__LogMessage *m = dbld_arena_msg(a, &databuild__v1__log_message__descriptor);
    m->level = deflt;
    parse_level(json_string_value(lv), &m->level);
    const char *msg_key = json_is_string(json_object_get(obj, "msg"))       ? "msg"
                          : json_is_string(json_object_get(obj, "message")) ? "message"
                                                                            : NULL;
    m->message = fit(a, "LogMessage", "message",
                     msg_key ? json_string_value(json_object_get(obj, msg_key)) : line);
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (strcmp(k, "level") == 0 || (msg_key && strcmp(k, msg_key) == 0)) continue;
        if (json_is_string(v)) {
            add_field(a, m, k, json_string_value(v));
        } else {
            char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            add_field(a, m, k, text ? text : "");
            free(text);
        }
    }
    if (!has_field(m, "stream")) add_field(a, m, "stream", stream_name);
    Databuild__V1__JobLogEntry *e = new_entry(s);
    e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
    e->log = m;
    enqueue(s, e);
    return 1;
}

void jl_line(jl_sink *s, int stream, const char *raw, size_t len)
{
    char *owned;
    const char *line = jl_utf8_clean(raw, len, &owned);
    len = strlen(line);
    int out = stream == DBLD_PROC_STDOUT;
    const char *stream_name = out ? "stdout" : "stderr";
    Databuild__V1__LogMessage__LogLevel deflt = out ? DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__INFO
                                                    : DATABUILD__V1__LOG_MESSAGE__LOG_LEVEL__WARN;
    size_t sp = strspn(line, " \t");
    if (line[sp] == '{') {
        json_t *j = json_loadb(line, len, 0, NULL);
        int done = 0;
        if (json_is_object(j))
            done = (out && try_metric(s, j)) || try_structured(s, j, line, stream_name, deflt);
        json_decref(j);
        if (done) {
            free(owned);
            return;
        }
    }
    dbld_arena *a = s->scratch;
    Databuild__V1__LogMessage *m = dbld_arena_msg(a, &databuild__v1__log_message__descriptor);
    m->level = deflt;
    m->message = dbld_arena_strndup(a, line, len);
    add_field(a, m, "stream", stream_name);
    Databuild__V1__JobLogEntry *e = new_entry(s);
    e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG;
    e->log = m;
    enqueue(s, e);
    free(owned);
}

void jl_event(jl_sink *s, const char *event_type, const char *job_status, int exit_code,
              const char *const *meta)
{
    dbld_arena *a = s->scratch;
    Databuild__V1__WrapperJobEvent *ev =
        dbld_arena_msg(a, &databuild__v1__wrapper_job_event__descriptor);
    ev->event_type = dbld_arena_strdup(a, event_type);
    ev->job_status = dbld_arena_strdup(a, job_status ? job_status : "");
    ev->exit_code = exit_code;
    ev->job_label = s->label;
    for (size_t i = 0; meta && meta[i] && meta[i + 1]; i += 2) {
        Databuild__V1__WrapperJobEvent__MetadataEntry **m =
            dbld_arena_push(a, &ev->metadata, &ev->n_metadata, sizeof *ev->metadata);
        *m = dbld_arena_msg(a, &databuild__v1__wrapper_job_event__metadata_entry__descriptor);
        char *owned;
        (*m)->key = dbld_arena_strdup(a, meta[i]);
        (*m)->value = dbld_arena_strdup(a, jl_utf8_clean(meta[i + 1], strlen(meta[i + 1]), &owned));
        free(owned);
    }
    Databuild__V1__JobLogEntry *e = new_entry(s);
    e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_JOB_EVENT;
    e->job_event = ev;
    enqueue(s, e);
}

void jl_manifest(jl_sink *s, const Databuild__V1__PartitionManifest *m)
{
    Databuild__V1__JobLogEntry *e = new_entry(s);
    e->content_case = DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_MANIFEST;
    e->manifest = (Databuild__V1__PartitionManifest *)m;
    enqueue(s, e);
}

uint64_t jl_count(const jl_sink *s)
{
    return s->seq;
}

size_t jl_close_hand_back(jl_sink *s, int64_t timeout_ms, size_t max_bytes, dbld_arena *a,
                          Databuild__V1__JobLogEntry ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    if (!s || !s->target || s->shared) return jl_close(s, timeout_ms);
    pthread_mutex_lock(&s->mu); /* no flusher: only this thread uses the queue */
    size_t n = s->tail - s->head, bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += s->q[s->head + i].len;
    Databuild__V1__JobLogEntry **e = NULL;
    if (n && !s->dropped && bytes <= max_bytes) {
        e = dbld_arena_alloc(a, n * sizeof *e);
        for (size_t i = 0; e && i < n; i++) {
            const packed *p = &s->q[s->head + i];
            e[i] = (Databuild__V1__JobLogEntry *)protobuf_c_message_unpack(
                &databuild__v1__job_log_entry__descriptor, dbld_arena_allocator(a), p->len, p->buf);
            if (!e[i]) e = NULL; /* cannot happen (we packed it): send them instead */
        }
    }
    if (e) pop_batch(s, n);
    pthread_mutex_unlock(&s->mu);
    if (e) {
        *out = e;
        *n_out = n;
    }
    return jl_close(s, timeout_ms); /* sends what was not handed back */
}

int jl_store(const char *target, Databuild__V1__JobLogEntry *const *entries, size_t n,
             int64_t timeout_ms, dbld_status *st)
{
    if (!n || !target || !*target) return 0;
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__AppendJobLogsRequest req = DATABUILD__V1__APPEND_JOB_LOGS_REQUEST__INIT;
    req.entries = (Databuild__V1__JobLogEntry **)entries;
    req.n_entries = n;
    int rc = append_entries(target, &req, dbld_arena_allocator(a), timeout_ms, st);
    dbld_arena_destroy(a);
    return rc;
}

/* Give a closed sink whose queue could not be sent in time to the shared
 * flusher, which keeps sending it and frees it once stored (or once the
 * event log refuses it for good). 0 when it took it; -1 (the caller drops
 * the entries) when the flusher cannot be started or already holds
 * ORPHAN_MAX_SINKS tails or ORPHAN_MAX_BYTES of them (entries, queue and
 * ORPHAN_SINK_COST each). */
static int hand_to_flusher(jl_sink *s)
{
    /* what is no longer needed goes now: the arenas (outputs, scratch) and
     * the queue's unused room */
    dbld_arena_destroy(s->keep);
    dbld_arena_destroy(s->scratch);
    s->keep = s->scratch = NULL;
    size_t n = s->tail - s->head;
    memmove(s->q, s->q + s->head, n * sizeof *s->q);
    s->head = 0;
    s->tail = s->cap = n;
    s->q = dbld_xrealloc(s->q, (n ? n : 1) * sizeof *s->q);
    size_t bytes = ORPHAN_SINK_COST + n * sizeof *s->q;
    for (size_t i = 0; i < n; i++)
        bytes += s->q[i].len;
    pthread_mutex_lock(&flusher.mu);
    int ok = flusher.orphans < ORPHAN_MAX_SINKS &&
             flusher.orphan_bytes + bytes <= ORPHAN_MAX_BYTES && flusher_started_locked();
    if (ok) {
        s->orphan = 1;
        s->orphan_bytes = bytes;
        flusher.orphans++;
        flusher.orphan_bytes += bytes;
        link_sink_locked(s);
    }
    pthread_mutex_unlock(&flusher.mu);
    return ok ? 0 : -1;
}

size_t jl_close(jl_sink *s, int64_t timeout_ms)
{
    if (!s) return 0;
    size_t lost = 0;
    if (s->target) {
        int64_t start = dbld_mono_ms();
        stop_flusher(s); /* may wait for a send of this sink in progress */
        pthread_mutex_lock(&s->mu);
        s->closing = 1;
        /* An event log that is already failing gets one short last chance,
         * so a run does not wait out the whole timeout for it. */
        if (s->failing && timeout_ms > CLOSE_FAILING_MS) timeout_ms = CLOSE_FAILING_MS;
        s->close_deadline = start + (timeout_ms > 0 ? timeout_ms : 0);
        pthread_mutex_unlock(&s->mu);
        drain(s); /* what is left (a short run: its whole log) goes now, from this thread */
        lost = s->dropped;
        size_t left = s->tail - s->head;
        if (left && hand_to_flusher(s) == 0) {
            char n[32];
            snprintf(n, sizeof n, "%zu", left);
            dbld_log(DBLD_LOG_INFO, "job log tail left to the background flusher", "job_run_id",
                     s->run_id, "entries", n, NULL);
            if (lost) {
                snprintf(n, sizeof n, "%zu", lost);
                dbld_log(DBLD_LOG_WARN, "job log entries not stored", "job_run_id", s->run_id,
                         "entries", n, "reason", "queue full while the run lasted", NULL);
            }
            return lost; /* the flusher frees s */
        }
        lost += left;
        pop_batch(s, left);
        if (lost) {
            char n[32];
            snprintf(n, sizeof n, "%zu", lost);
            dbld_log(DBLD_LOG_WARN, "job log entries not stored", "job_run_id", s->run_id,
                     "entries", n, NULL);
        }
    }
    sink_free(s);
    return lost;
}

static void sink_free(jl_sink *s)
{
    pop_batch(s, s->tail - s->head);
    free(s->q);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    dbld_arena_destroy(s->keep);
    dbld_arena_destroy(s->scratch);
    free(s->target);
    free(s->run_id);
    free(s->label);
    free(s);
}

size_t jl_shutdown(int64_t timeout_ms)
{
    pthread_mutex_lock(&flusher.mu);
    if (!flusher.started) {
        flusher.stop = 1; /* no flusher from now on: a late close sends itself */
        pthread_mutex_unlock(&flusher.mu);
        return 0;
    }
    struct timespec ts = dbld_abs_time(CLOCK_MONOTONIC, timeout_ms > 0 ? timeout_ms : 0);
    while (flusher.orphans > 0 &&
           pthread_cond_timedwait(&flusher.cv, &flusher.mu, &ts) != ETIMEDOUT) {
    }
    flusher.stop = 1; /* its send in progress (SEND_TIMEOUT_MS at most) ends first */
    pthread_cond_broadcast(&flusher.cv);
    pthread_mutex_unlock(&flusher.mu);
    pthread_join(flusher.thread, NULL);

    pthread_mutex_lock(&flusher.mu);
    flusher.started = 0;
    pthread_cond_destroy(&flusher.cv);
    size_t left = 0;
    for (jl_sink **pp = &flusher.sinks; *pp;) {
        jl_sink *s = *pp;
        if (!s->orphan) { /* a run still open: its close sends from its own thread */
            s->shared = 0;
            *pp = s->fnext;
            continue;
        }
        *pp = s->fnext;
        left += s->tail - s->head;
        sink_free(s);
    }
    flusher.orphans = 0;
    flusher.orphan_bytes = 0;
    pthread_mutex_unlock(&flusher.mu);
    if (left) {
        char n[32];
        snprintf(n, sizeof n, "%zu", left);
        dbld_log(DBLD_LOG_WARN, "job log entries not stored", "entries", n, "reason",
                 "the job service is stopping", NULL);
    }
    return left;
}
