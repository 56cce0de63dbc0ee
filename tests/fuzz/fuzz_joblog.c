/* fuzz_joblog.c - a job's output through the job wrapper: the line splitter
 * of lib/proc.c (dbld_proc_lines_*) and the log protocol of
 * services/job/joblog.c (jl_line), as services/job/runner.c wires them.
 *
 * Input: a header byte (bits 0-2: how many chunk-size bytes follow, bit 3:
 * which stream comes first), the chunk-size bytes, then the output. The
 * output is fed in chunks cycling through those sizes (1..256, times 256 when
 * a size byte has its top bit), alternating stdout and stderr per chunk.
 * Properties:
 *  - the lines handed out, joined with '\n' (none after a piece of a long
 *    line), give back exactly the bytes of each stream;
 *  - entries are numbered 1, 2, 3... with no gap, each is a JobLogEntry of the
 *    run, and each passes the event log's wire check (dbld_wire_validate: the
 *    UTF-8 and size limits every JobLogs/Append request must meet), so no
 *    output of a job can produce an entry the event log refuses.
 */
#include "fuzz.h"

#include "databuild.pb-c.h"
#include "databuild_ext.pb-c.h"
#include "dbld/proc.h"
#include "dbld/rpc.h"
#include "joblog.h"

#define RUN_ID "0b0f5c3e-6a43-4b8e-9a55-4f2d1b6c7d8e"

typedef struct stream_copy {
    char *buf;
    size_t len, cap;
} stream_copy;

typedef struct ctx {
    jl_sink *sink;
    stream_copy seen[3]; /* by stream number: the bytes the lines give back */
    uint64_t entries;
} ctx;

static void append(stream_copy *c, const char *p, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        c->cap = (c->len + n + 1) * 2;
        c->buf = realloc(c->buf, c->cap);
        if (!c->buf) abort();
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
}

/* What runner.c's exec_line does with a line, plus the record for the check. */
static void on_line(void *user, int stream, const char *line, size_t len, int more)
{
    ctx *c = user;
    FUZZ_CHECK(line[len] == 0, "a line is not NUL-terminated");
    FUZZ_CHECK(len <= DBLD_PROC_LINE_MAX, "a line of %zu bytes", len);
    FUZZ_CHECK(!more || len == DBLD_PROC_LINE_MAX, "a piece of %zu bytes", len);
    append(&c->seen[stream], line, len);
    if (!more) append(&c->seen[stream], "\n", 1);
    jl_line(c->sink, stream, line, len);
}

static void on_entry(void *user, const uint8_t *buf, size_t len)
{
    ctx *c = user;
    dbld_status st;
    FUZZ_CHECK(dbld_wire_validate(&databuild__v1__job_log_entry__descriptor, buf, len, &st) == 0,
               "entry %llu would be refused by the event log: %s",
               (unsigned long long)c->entries + 1, st.msg);
    Databuild__V1__JobLogEntry *e = (Databuild__V1__JobLogEntry *)protobuf_c_message_unpack(
        &databuild__v1__job_log_entry__descriptor, NULL, len, buf);
    FUZZ_CHECK(e != NULL, "entry %llu does not unpack", (unsigned long long)c->entries + 1);
    FUZZ_CHECK(e->sequence_number == c->entries + 1, "entry %llu has sequence number %llu",
               (unsigned long long)c->entries + 1, (unsigned long long)e->sequence_number);
    FUZZ_CHECK(strcmp(e->job_id, RUN_ID) == 0, "entry of run \"%s\"", e->job_id);
    FUZZ_CHECK(e->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_LOG ||
                   e->content_case == DATABUILD__V1__JOB_LOG_ENTRY__CONTENT_METRIC,
               "a line became content %d", (int)e->content_case);
    c->entries++;
    protobuf_c_message_free_unpacked(&e->base, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t n_sizes = (data[0] & 7) + 1;
    int which = data[0] & 8 ? DBLD_PROC_STDERR : DBLD_PROC_STDOUT;
    if (size < 1 + n_sizes) return 0;
    const uint8_t *sizes = data + 1, *out = data + 1 + n_sizes;
    size_t left = size - 1 - n_sizes;

    ctx c = {0};
    const char *outputs[] = {"fuzz/ref=1"};
    jl_opts o = {.job_run_id = RUN_ID,
                 .job_label = "//fuzz:job",
                 .outputs = outputs,
                 .n_outputs = 1,
                 .observe = on_entry,
                 .observe_user = &c};
    c.sink = jl_open(&o);
    dbld_proc_lines *lines[3] = {NULL, dbld_proc_lines_new(DBLD_PROC_STDOUT),
                                 dbld_proc_lines_new(DBLD_PROC_STDERR)};
    stream_copy fed[3] = {{0}};
    for (size_t i = 0; left > 0; i++) {
        uint8_t b = sizes[i % n_sizes];
        size_t n = ((size_t)(b & 0x7f) + 1) * (b & 0x80 ? 256 : 1);
        if (n > left) n = left;
        append(&fed[which], (const char *)out, n);
        dbld_proc_lines_feed(lines[which], out, n, on_line, &c);
        out += n;
        left -= n;
        which = which == DBLD_PROC_STDOUT ? DBLD_PROC_STDERR : DBLD_PROC_STDOUT;
    }
    for (int s = 1; s <= 2; s++) {
        size_t before = c.seen[s].len;
        dbld_proc_lines_end(lines[s], on_line, &c);
        if (c.seen[s].len > before) c.seen[s].len--; /* a last line without '\n' */
        FUZZ_CHECK(c.seen[s].len == fed[s].len &&
                       (fed[s].len == 0 || memcmp(c.seen[s].buf, fed[s].buf, fed[s].len) == 0),
                   "stream %d: %zu bytes in, the lines give back %zu different ones", s, fed[s].len,
                   c.seen[s].len);
        dbld_proc_lines_free(lines[s]);
        free(fed[s].buf);
        free(c.seen[s].buf);
    }
    FUZZ_CHECK(jl_count(c.sink) == c.entries, "jl_count %llu, %llu entries",
               (unsigned long long)jl_count(c.sink), (unsigned long long)c.entries);
    jl_close(c.sink, 0);
    return 0;
}
