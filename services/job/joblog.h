/* joblog.h - the job wrapper's log protocol: one job run's JobLogEntry
 * stream, shipped to the event log's databuild.v1.JobLogs/Append.
 *
 * The run thread turns output lines and wrapper events into entries
 * (sequence numbers from 1, unix-ns timestamps); each entry is packed at once
 * and queued. One flusher thread, shared by every sink of the process, sends
 * the queues in batches (every flush_ms, or as soon as batch_max entries
 * wait); a sink joins it only once its run has lasted flush_ms (jl_tick) or
 * batch_max entries wait, and jl_close sends what is left from the closing
 * thread, so a short run never involves the flusher. A failed send
 * never blocks or fails the job run: it logs a warning and the same entries
 * are sent again on the next flush (the event log stores (job_run_id,
 * sequence_number) once, so a resend after a lost reply is harmless).
 *
 * Line classification:
 *  - a stdout line that is a JSON object with "name" and "value" that decodes
 *    as a MetricPoint becomes a `metric` entry;
 *  - a JSON object with a string "level" (debug/info/warn/warning/error/...)
 *    becomes a LogMessage at that level, its "msg"/"message" the message and
 *    its other members the fields;
 *  - anything else is a LogMessage with the line as message, level INFO for
 *    stdout and WARN for stderr, and field stream=stdout|stderr.
 * Invalid UTF-8 and NUL bytes are replaced with U+FFFD (protobuf strings
 * must be UTF-8).
 */
#ifndef JOB_JOBLOG_H
#define JOB_JOBLOG_H

#include "databuild.pb-c.h"
#include "dbld/arena.h"
#include "dbld/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct jl_sink jl_sink;

typedef struct jl_opts {
    const char *target;     /* eventlog host:port; NULL or "" keeps nothing */
    const char *job_run_id; /* JobLogEntry.job_id */
    const char *job_label;  /* WrapperJobEvent.job_label */
    const char *const *outputs;
    size_t n_outputs;
    int flush_ms;  /* default 200 */
    int batch_max; /* default 500 */
    /* Tests and fuzzing: called on the run thread with every entry as packed
     * (borrowed for the call); NULL: none. */
    void (*observe)(void *user, const uint8_t *entry, size_t len);
    void *observe_user;
} jl_opts;

/* Caller closes with jl_close(). Strings are copied. */
jl_sink *jl_open(const jl_opts *o);

/* One output line (stream: DBLD_PROC_STDOUT/STDERR). */
void jl_line(jl_sink *s, int stream, const char *line, size_t len);
/* A WrapperJobEvent; meta is NULL-terminated key/value pairs (may be NULL). */
void jl_event(jl_sink *s, const char *event_type, const char *job_status, int exit_code,
              const char *const *meta);
void jl_manifest(jl_sink *s, const Databuild__V1__PartitionManifest *m);

/* Call from the run loop at least every flush_ms: joins the shared flusher
 * once the run has lasted flush_ms with entries queued. */
void jl_tick(jl_sink *s);

/* Entries created so far (the last sequence number). */
uint64_t jl_count(const jl_sink *s);

/* Leave the shared flusher (after its send for this sink, if one is in
 * progress), send what is still queued from this thread, retrying until
 * timeout_ms has passed, and free. What is still queued then (a slow or
 * unreachable event log) goes back to the shared flusher, which keeps sending
 * it after the run has ended (up to 256 MiB of such tails in the process;
 * past that they are dropped). Returns the number of entries known lost
 * (dropped while the run lasted, or past that cap). */
size_t jl_close(jl_sink *s, int64_t timeout_ms);

/* At shutdown, once no run is open: wait up to timeout_ms for the shared
 * flusher to store the tails of closed runs, stop its thread, and free what
 * is left. Returns (and logs) how many entries were not stored. */
size_t jl_shutdown(int64_t timeout_ms);

/* Close as jl_close(), but a short run's log (it never joined the flusher,
 * nothing dropped, at most max_bytes packed) is not sent: its entries are
 * unpacked into a and returned in *out (n_out of them, in sequence order) for
 * the caller to store (RunJobRequest.return_logs). Otherwise *n_out is 0 and
 * the entries go to the event log as jl_close() sends them. */
size_t jl_close_hand_back(jl_sink *s, int64_t timeout_ms, size_t max_bytes, dbld_arena *a,
                          Databuild__V1__JobLogEntry ***out, size_t *n_out);

/* Store entries with JobLogs/Append at target (handed-back entries whose
 * caller could not take them). 0 or the call's status. */
int jl_store(const char *target, Databuild__V1__JobLogEntry *const *entries, size_t n,
             int64_t timeout_ms, dbld_status *st);

/* Replace invalid UTF-8 and NUL bytes with U+FFFD. Returns s itself when it
 * is clean, else a malloc'd copy stored in *owned (caller frees). */
const char *jl_utf8_clean(const char *s, size_t len, char **owned);

#endif
