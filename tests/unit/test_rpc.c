/* test_rpc.c - the RPC runtime end to end: a real in-process server on
 * 127.0.0.1 and the real client, with a small test.Echo service whose
 * request and response are databuild.v1.PartitionRef. Each test starts its
 * own server; channels are torn down once at the end. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbld/log.h"
#include "dbld/rpc.h"
#include "dbld/util.h"
#include "databuild.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define REF_DESC (&databuild__v1__partition_ref__descriptor)
#define HC_RESP_DESC (&grpc__health__v1__health_check_response__descriptor)

/* ---- what handlers observed ---- */

static atomic_int g_entered;        /* a slow handler started */
static atomic_int g_done;           /* a slow/stream handler finished */
static atomic_int g_saw_cancel;     /* ... and saw its call cancelled */
static atomic_llong g_remaining_ms; /* remaining_ms when it noticed */
static atomic_llong g_noticed_ms;   /* dbld_mono_ms() when it noticed */

/* How long the slow handler waits to be cancelled. Far longer than any
 * bound the tests put on a cancellation reaching it, so that a cancellation
 * that never comes fails them even with the bounds generous enough for a
 * loaded machine. */
#define SLOW_WAIT_MS 30000
/* How long a test waits for something that happens at once unless broken. */
#define WAIT_MS 30000

static void reset_observed(void)
{
    atomic_store(&g_entered, 0);
    atomic_store(&g_done, 0);
    atomic_store(&g_saw_cancel, 0);
    atomic_store(&g_remaining_ms, 0);
    atomic_store(&g_noticed_ms, 0);
}

/* Poll until flag is set or timeout_ms passed; returns the flag. */
static int wait_flag(atomic_int *flag, int64_t timeout_ms)
{
    int64_t end = dbld_mono_ms() + timeout_ms;
    while (!atomic_load(flag) && dbld_mono_ms() < end)
        dbld_sleep_ms(5);
    return atomic_load(flag);
}

static Databuild__V1__PartitionRef *new_ref(dbld_call *call, const char *s)
{
    Databuild__V1__PartitionRef *r = dbld_arena_msg(dbld_call_arena(call), REF_DESC);
    r->str = dbld_arena_strdup(dbld_call_arena(call), s);
    return r;
}

/* ---- test.Echo handlers ---- */

static int echo(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                dbld_status *st)
{
    (void)st;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    *resp = &new_ref(call, in->str)->base;
    return 0;
}

static int failing(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                   dbld_status *st)
{
    (void)call;
    (void)resp;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    return dbld_status_set(st, DBLD_NOT_FOUND, "no partition %s", in->str);
}

static int bad_code(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    dbld_status *st)
{
    (void)call;
    (void)req;
    (void)resp;
    dbld_status_set(st, 99, "weird");
    return 99;
}

static int bad_resp(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                    dbld_status *st)
{
    (void)req;
    (void)st;
    *resp = dbld_arena_msg(dbld_call_arena(call), HC_RESP_DESC); /* wrong type */
    return 0;
}

static int empty(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 dbld_status *st)
{
    (void)call;
    (void)req;
    (void)resp;
    (void)st;
    return 0;
}

/* Waits for cancellation (up to SLOW_WAIT_MS) and records what it saw. */
static int slow(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                dbld_status *st)
{
    (void)req;
    (void)resp;
    atomic_store(&g_entered, 1);
    int cancelled = dbld_call_wait_cancel(call, SLOW_WAIT_MS);
    atomic_store(&g_noticed_ms, dbld_mono_ms());
    atomic_store(&g_remaining_ms, dbld_call_remaining_ms(call));
    atomic_store(&g_saw_cancel, cancelled);
    atomic_store(&g_done, 1);
    return cancelled ? dbld_status_set(st, DBLD_CANCELLED, "gave up") : 0;
}

/* Sleeps str milliseconds, ignoring cancellation, then echoes. */
static atomic_int g_sleeping, g_most_sleeping; /* Sleep handlers running now / at most */

static int sleepy(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  dbld_status *st)
{
    atomic_store(&g_entered, 1);
    int now = atomic_fetch_add(&g_sleeping, 1) + 1;
    for (int most = atomic_load(&g_most_sleeping);
         now > most && !atomic_compare_exchange_weak(&g_most_sleeping, &most, now);)
        ;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    dbld_sleep_ms(atoll(in->str));
    atomic_fetch_sub(&g_sleeping, 1);
    atomic_store(&g_done, 1);
    return echo(call, req, resp, st);
}

static atomic_int g_ran; /* handlers of /test.Echo/Counted that ran */

/* Counts that it ran, then echoes. */
static int counted(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                   dbld_status *st)
{
    atomic_fetch_add(&g_ran, 1);
    return echo(call, req, resp, st);
}

/* Streams str (a count) messages "0".."n-1". */
/* Streams "0".."n-1" for str "n"; "nL" then gives "end" as the last message
 * (dbld_call_send_last), "nF" gives it and then fails (ABORTED). */
static int count(dbld_call *call, const ProtobufCMessage *req, dbld_status *st)
{
    const Databuild__V1__PartitionRef *in = (const void *)req;
    int n = atoi(in->str);
    for (int i = 0; i < n; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        int rc = dbld_call_send(call, &new_ref(call, buf)->base, st);
        if (rc) return rc;
    }
    const char *how = in->str + strspn(in->str, "0123456789");
    if (*how == 'L' || *how == 'F') {
        int rc = dbld_call_send_last(call, &new_ref(call, "end")->base, st);
        if (rc) return rc;
        if (dbld_call_send_last(call, &new_ref(call, "again")->base, st) !=
            DBLD_FAILED_PRECONDITION)
            return dbld_status_set(st, DBLD_INTERNAL, "a second last message was taken");
        if (*how == 'F') return dbld_status_set(st, DBLD_ABORTED, "failed after the last message");
    }
    return 0;
}

/* Streams a message every str ms until the call is cancelled. */
static int forever(dbld_call *call, const ProtobufCMessage *req, dbld_status *st)
{
    const Databuild__V1__PartitionRef *in = (const void *)req;
    int interval = atoi(in->str);
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        if (dbld_call_wait_cancel(call, interval)) {
            rc = dbld_status_set(st, DBLD_CANCELLED, "cancelled");
            break;
        }
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        rc = dbld_call_send(call, &new_ref(call, buf)->base, st);
    }
    atomic_store(&g_saw_cancel, 1);
    atomic_store(&g_done, 1);
    return rc;
}

/* ---- asynchronous completion: a completer thread answers later ---- */

typedef struct later_item {
    dbld_call *call;
    int held;               /* answer with what the call holds (dbld_call_complete_held) */
    ProtobufCMessage *resp; /* NULL: answer NOT_FOUND */
    int64_t due_ms;
    struct later_item *next;
} later_item;

static pthread_mutex_t g_later_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_later_cv = PTHREAD_COND_INITIALIZER;
static later_item *g_later;
static int g_later_stop;
static atomic_int g_completed; /* answers handed back by the completer */

static void *completer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_later_mu);
    for (;;) {
        while (!g_later && !g_later_stop)
            pthread_cond_wait(&g_later_cv, &g_later_mu);
        if (!g_later) break;
        later_item *it = g_later;
        g_later = it->next;
        pthread_mutex_unlock(&g_later_mu);
        int64_t wait = it->due_ms - dbld_mono_ms();
        if (wait > 0) dbld_sleep_ms(wait);
        if (it->held) {
            dbld_call_complete_held(it->call);
        } else if (it->resp) {
            dbld_call_complete(it->call, 0, NULL, it->resp);
        } else {
            dbld_call_complete(it->call, DBLD_NOT_FOUND, "nothing later", NULL);
        }
        atomic_fetch_add(&g_completed, 1);
        free(it);
        pthread_mutex_lock(&g_later_mu);
    }
    pthread_mutex_unlock(&g_later_mu);
    return NULL;
}

/* Nonblocking: hands the call to the completer, which answers after str ms
 * (str "fail" answers NOT_FOUND at once). The arena stays the call's. */
static int later(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                 dbld_status *st)
{
    (void)resp;
    (void)st;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    later_item *it = calloc(1, sizeof *it);
    it->call = call;
    int fail = strcmp(in->str, "fail") == 0;
    it->resp = fail ? NULL : &new_ref(call, in->str)->base;
    it->due_ms = dbld_mono_ms() + (fail ? 0 : atoll(in->str));
    pthread_mutex_lock(&g_later_mu);
    later_item **tail = &g_later;
    while (*tail)
        tail = &(*tail)->next;
    *tail = it;
    pthread_cond_signal(&g_later_cv);
    pthread_mutex_unlock(&g_later_mu);
    return DBLD_ASYNC;
}

/* Nonblocking: the answer ("held:" + str) is built in a scratch arena that
 * goes at once, held packed by the call, and sent by the completer with
 * dbld_call_complete_held(); str "other" makes the completer answer another
 * response ("instead") with dbld_call_complete(), which replaces it. */
static int held(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                dbld_status *st)
{
    (void)resp;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    dbld_arena *scratch = dbld_arena_create();
    Databuild__V1__PartitionRef *r = dbld_arena_msg(scratch, REF_DESC);
    r->str = dbld_arena_printf(scratch, "held:%s", in->str);
    int rc = dbld_call_hold_answer(call, &r->base, st);
    memset(r->str, 'x', strlen(r->str)); /* the call holds bytes, not the message */
    dbld_arena_destroy(scratch);
    if (rc) return rc;
    later_item *it = calloc(1, sizeof *it);
    it->call = call;
    if (strcmp(in->str, "other") == 0)
        it->resp = &new_ref(call, "instead")->base;
    else
        it->held = 1;
    it->due_ms = dbld_mono_ms() + 20;
    pthread_mutex_lock(&g_later_mu);
    it->next = g_later;
    g_later = it;
    pthread_cond_signal(&g_later_cv);
    pthread_mutex_unlock(&g_later_mu);
    return DBLD_ASYNC;
}

/* A packed answer shared by the calls (g_packed): returned as "no response";
 * str "free" frees it once held (before the answer goes out). */
static dbld_packed *g_packed;

static int shared(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                  dbld_status *st)
{
    const Databuild__V1__PartitionRef *in = (const void *)req;
    *resp = NULL;
    int rc = dbld_call_hold_packed(call, g_packed, st);
    if (strcmp(in->str, "free") == 0) {
        dbld_packed_free(g_packed);
        g_packed = NULL;
    }
    return rc;
}

/* dbld_call_to_workers(): the poller hands the call on; the worker answers
 * "w:" + str and notes it ran on another thread than the handler. */
static pthread_t g_handoff_poller;
static atomic_int g_handoff_other_thread;

static int echo_on_worker(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                          dbld_status *st)
{
    (void)st;
    const Databuild__V1__PartitionRef *in = (const void *)req;
    atomic_store(&g_handoff_other_thread, !pthread_equal(pthread_self(), g_handoff_poller));
    *resp = &new_ref(call, dbld_arena_printf(dbld_call_arena(call), "w:%s", in->str))->base;
    return 0;
}

static int to_worker(dbld_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
                     dbld_status *st)
{
    (void)req;
    (void)resp;
    (void)st;
    g_handoff_poller = pthread_self();
    dbld_call_to_workers(call, echo_on_worker);
    return DBLD_ASYNC;
}

static const dbld_method echo_methods[] = {
    {"/test.Echo/Echo", REF_DESC, REF_DESC, echo, NULL},
    {"/test.Echo/Fail", REF_DESC, REF_DESC, failing, NULL},
    {"/test.Echo/BadCode", REF_DESC, REF_DESC, bad_code, NULL},
    {"/test.Echo/BadResp", REF_DESC, REF_DESC, bad_resp, NULL},
    {"/test.Echo/Empty", REF_DESC, REF_DESC, empty, NULL},
    {"/test.Echo/Slow", REF_DESC, REF_DESC, slow, NULL},
    {"/test.Echo/Sleep", REF_DESC, REF_DESC, sleepy, NULL},
    {"/test.Echo/Counted", REF_DESC, REF_DESC, counted, NULL},
    {"/test.Echo/Count", REF_DESC, REF_DESC, NULL, count},
    {"/test.Echo/Forever", REF_DESC, REF_DESC, NULL, forever},
    {"/test.Echo/Later", REF_DESC, REF_DESC, later, NULL, DBLD_METHOD_NONBLOCKING},
    {"/test.Echo/Quick", REF_DESC, REF_DESC, echo, NULL, DBLD_METHOD_NONBLOCKING},
    {"/test.Echo/ToWorker", REF_DESC, REF_DESC, to_worker, NULL, DBLD_METHOD_NONBLOCKING},
    {"/test.Echo/Held", REF_DESC, REF_DESC, held, NULL, DBLD_METHOD_NONBLOCKING},
    {"/test.Echo/Shared", REF_DESC, REF_DESC, shared, NULL},
};
static const dbld_service echo_service = {"test.Echo", echo_methods,
                                          sizeof echo_methods / sizeof echo_methods[0]};

/* ---- helpers ---- */

typedef struct fixture {
    dbld_server *srv;
    dbld_client *client;
    char target[64];
} fixture;

static dbld_server *start_server_opts(const dbld_server_opts *o)
{
    dbld_server_opts opts = *o;
    dbld_server *srv = NULL;
    dbld_status st;
    assert_int_equal(dbld_server_create(&opts, &srv, &st), 0);
    assert_int_equal(dbld_server_add(srv, &echo_service, NULL), 0);
    int rc = dbld_server_start(srv, &st);
    if (rc) fail_msg("start: %s", st.msg);
    return srv;
}

static dbld_server *start_server(const char *listen, int max_msg, int grace_ms)
{
    dbld_server_opts opts = {.service_name = "test",
                             .listen = listen,
                             .workers = 4,
                             .max_message_bytes = max_msg,
                             .shutdown_grace_ms = grace_ms};
    return start_server_opts(&opts);
}

static void fixture_attach(fixture *f)
{
    assert_true(dbld_server_port(f->srv) > 0);
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", dbld_server_port(f->srv));
    f->client = dbld_client_get(f->target);
    assert_non_null(f->client);
}

static void fixture_start(fixture *f, int max_msg, int grace_ms)
{
    reset_observed();
    f->srv = start_server("127.0.0.1:0", max_msg, grace_ms);
    fixture_attach(f);
}

/* One worker and a queue of two: easy to fill. */
static void fixture_start_small(fixture *f)
{
    reset_observed();
    atomic_store(&g_ran, 0);
    dbld_server_opts opts = {
        .service_name = "test", .listen = "127.0.0.1:0", .workers = 1, .max_queue = 2};
    f->srv = start_server_opts(&opts);
    fixture_attach(f);
}

static void fixture_stop(fixture *f)
{
    dbld_server_shutdown(f->srv);
    dbld_server_shutdown(f->srv); /* idempotent */
    dbld_server_destroy(f->srv);
}

static int call_ref(dbld_client *c, const char *path, const char *s, int64_t timeout_ms, int flags,
                    char *out, size_t out_len, dbld_status *st)
{
    Databuild__V1__PartitionRef req = DATABUILD__V1__PARTITION_REF__INIT;
    req.str = (char *)s;
    ProtobufCMessage *resp = NULL;
    int rc = dbld_client_unary(c, path, &req.base, REF_DESC, NULL, &resp, timeout_ms, flags, st);
    if (rc == 0) {
        assert_non_null(resp);
        if (out) snprintf(out, out_len, "%s", ((Databuild__V1__PartitionRef *)resp)->str);
        protobuf_c_message_free_unpacked(resp, NULL);
    } else {
        assert_null(resp);
    }
    return rc;
}

static dbld_stream *open_ref_stream(fixture *f, const char *path, const char *s)
{
    Databuild__V1__PartitionRef req = DATABUILD__V1__PARTITION_REF__INIT;
    req.str = (char *)s;
    dbld_stream *stream = NULL;
    dbld_status st;
    assert_int_equal(dbld_client_stream_open(f->client, path, &req.base, 0, &stream, &st), 0);
    return stream;
}

/* Next PartitionRef of a stream into out; returns dbld_stream_next's code. */
static int next_ref(dbld_stream *s, char *out, size_t out_len, int64_t wait_ms, dbld_status *st)
{
    ProtobufCMessage *m = NULL;
    int rc = dbld_stream_next(s, REF_DESC, NULL, &m, wait_ms, st);
    if (m) {
        snprintf(out, out_len, "%s", ((Databuild__V1__PartitionRef *)m)->str);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- unary ---- */

static void test_unary_echo(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    char out[64];
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", "p/a=1", 2000, 0, out, sizeof out, &st),
                     0);
    assert_string_equal(out, "p/a=1");
    assert_int_equal(st.code, DBLD_OK);
    /* same target, same channel */
    assert_ptr_equal(dbld_client_get(f.target), f.client);
    /* NULL response -> empty message */
    assert_int_equal(call_ref(f.client, "/test.Echo/Empty", "x", 2000, 0, out, sizeof out, &st), 0);
    assert_string_equal(out, "");
    fixture_stop(&f);
}

static void test_handler_errors(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    assert_int_equal(call_ref(f.client, "/test.Echo/Fail", "p/b", 2000, 0, NULL, 0, &st),
                     DBLD_NOT_FOUND);
    assert_int_equal(st.code, DBLD_NOT_FOUND);
    assert_string_equal(st.msg, "no partition p/b");
    assert_int_equal(call_ref(f.client, "/test.Echo/BadCode", "", 2000, 0, NULL, 0, &st),
                     DBLD_UNKNOWN);
    assert_int_equal(call_ref(f.client, "/test.Echo/BadResp", "", 2000, 0, NULL, 0, &st),
                     DBLD_INTERNAL);
    fixture_stop(&f);
}

static void test_unknown_method(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    assert_int_equal(call_ref(f.client, "/test.Echo/Nope", "", 2000, 0, NULL, 0, &st),
                     DBLD_UNIMPLEMENTED);
    assert_string_equal(st.msg, "unknown method /test.Echo/Nope");
    fixture_stop(&f);
}

static void test_garbage_request(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    static const unsigned char garbage[] = {0x0a, 0x64, 'a', 'b'}; /* field 1, len 100, 2 bytes */
    void *out = (void *)1;
    size_t out_len = 7;
    int rc = dbld_client_unary_raw(f.client, "/test.Echo/Echo", garbage, sizeof garbage, &out,
                                   &out_len, 2000, &st);
    assert_int_equal(rc, DBLD_INVALID_ARGUMENT);
    assert_string_equal(st.msg,
                        "could not decode databuild.v1.PartitionRef request for /test.Echo/Echo");
    assert_null(out);
    assert_int_equal(out_len, 0);
    /* raw bytes that do decode come back as they went */
    static const unsigned char good[] = {0x0a, 0x02, 'h', 'i'};
    rc = dbld_client_unary_raw(f.client, "/test.Echo/Echo", good, sizeof good, &out, &out_len, 2000,
                               &st);
    assert_int_equal(rc, 0);
    assert_int_equal(out_len, sizeof good);
    assert_memory_equal(out, good, sizeof good);
    free(out);
    fixture_stop(&f);
}

static void test_message_too_large(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 1024, 0);
    dbld_status st;
    char *big = malloc(4096);
    memset(big, 'x', 4095);
    big[4095] = '\0';
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", big, 2000, 0, NULL, 0, &st),
                     DBLD_RESOURCE_EXHAUSTED);
    free(big);
    fixture_stop(&f);
}

/* ---- streams ---- */

static void test_stream_all_in_order(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_stream *s = open_ref_stream(&f, "/test.Echo/Count", "50");
    dbld_status st;
    char out[32], want[32];
    for (int i = 0; i < 50; i++) {
        assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
        snprintf(want, sizeof want, "%d", i);
        assert_string_equal(out, want);
    }
    ProtobufCMessage *m = (void *)1;
    assert_int_equal(dbld_stream_next(s, REF_DESC, NULL, &m, 2000, &st), DBLD_OK);
    assert_null(m);
    /* the end is sticky */
    assert_int_equal(dbld_stream_next(s, REF_DESC, NULL, &m, 2000, &st), DBLD_OK);
    assert_null(m);
    dbld_stream_close(s);
    /* a last message goes out with the OK status; not with an error */
    s = open_ref_stream(&f, "/test.Echo/Count", "2L");
    assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
    assert_string_equal(out, "0");
    assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
    assert_string_equal(out, "1");
    assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
    assert_string_equal(out, "end");
    assert_int_equal(dbld_stream_next(s, REF_DESC, NULL, &m, 2000, &st), DBLD_OK);
    assert_null(m);
    dbld_stream_close(s);
    s = open_ref_stream(&f, "/test.Echo/Count", "1F");
    assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
    assert_string_equal(out, "0");
    assert_int_equal(dbld_stream_next(s, REF_DESC, NULL, &m, 2000, &st), DBLD_ABORTED);
    assert_null(m);
    assert_non_null(strstr(st.msg, "failed after the last message"));
    dbld_stream_close(s);
    /* streaming an unknown method ends with UNIMPLEMENTED */
    s = open_ref_stream(&f, "/test.Echo/Nope", "1");
    assert_int_equal(dbld_stream_next(s, REF_DESC, NULL, &m, 2000, &st), DBLD_UNIMPLEMENTED);
    assert_null(m);
    dbld_stream_close(s);
    fixture_stop(&f);
}

static void test_stream_cancel(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_stream *s = open_ref_stream(&f, "/test.Echo/Forever", "10");
    dbld_status st;
    char out[32];
    for (int i = 0; i < 3; i++)
        assert_int_equal(next_ref(s, out, sizeof out, 2000, &st), 0);
    assert_string_equal(out, "2");
    dbld_stream_close(s);
    assert_true(wait_flag(&g_done, 3000));
    assert_true(atomic_load(&g_saw_cancel));
    fixture_stop(&f);
}

static void test_stream_wait_expiry(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_stream *s = open_ref_stream(&f, "/test.Echo/Forever", "400");
    dbld_status st;
    char out[32] = "";
    assert_int_equal(next_ref(s, out, sizeof out, 50, &st), DBLD_DEADLINE_EXCEEDED);
    /* the receive stays pending: the stream is still usable */
    assert_int_equal(next_ref(s, out, sizeof out, 3000, &st), 0);
    assert_string_equal(out, "0");
    dbld_stream_close(s);
    fixture_stop(&f);
}

/* At most max_streams streams at once: one more is refused with
 * RESOURCE_EXHAUSTED naming the config key, unary calls still answer, and
 * a closed stream's place is free again. */
static void test_stream_cap(void **state)
{
    (void)state;
    reset_observed();
    dbld_server_opts opts = {
        .service_name = "capped", .listen = "127.0.0.1:0", .workers = 2, .max_streams = 2};
    dbld_server *srv = NULL;
    dbld_status st;
    assert_int_equal(dbld_server_create(&opts, &srv, &st), 0);
    assert_int_equal(dbld_server_add(srv, &echo_service, NULL), 0);
    assert_int_equal(dbld_server_start(srv, &st), 0);
    fixture f = {.srv = srv};
    snprintf(f.target, sizeof f.target, "127.0.0.1:%d", dbld_server_port(srv));
    f.client = dbld_client_get(f.target);
    char out[32];
    dbld_stream *open[2];
    for (int i = 0; i < 2; i++) {
        open[i] = open_ref_stream(&f, "/test.Echo/Forever", "10");
        assert_int_equal(next_ref(open[i], out, sizeof out, 3000, &st), 0);
    }
    dbld_stream *over = open_ref_stream(&f, "/test.Echo/Forever", "10");
    assert_int_equal(next_ref(over, out, sizeof out, 3000, &st), DBLD_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(st.msg, "capped.max_streams"));
    assert_non_null(strstr(st.msg, "is 2"));
    dbld_stream_close(over);
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", "x", 3000, 0, out, sizeof out, &st), 0);
    dbld_stream_close(open[0]);
    /* the closed stream's thread ends (cancellation is noticed within its
     * 10 ms wait) and a new stream takes its place */
    int rc = DBLD_RESOURCE_EXHAUSTED;
    for (int tries = 0; rc == DBLD_RESOURCE_EXHAUSTED && tries < 100; tries++) {
        open[0] = open_ref_stream(&f, "/test.Echo/Forever", "10");
        rc = next_ref(open[0], out, sizeof out, 3000, &st);
        if (rc) {
            dbld_stream_close(open[0]);
            dbld_sleep_ms(20);
        }
    }
    assert_int_equal(rc, 0);
    dbld_stream_close(open[0]);
    dbld_stream_close(open[1]);
    fixture_stop(&f);
}

/* ---- deadlines ---- */

/* A call's deadline ends it on both sides. The checks are orderings, not
 * latencies: the handler notices the cancellation no earlier than the
 * client's deadline (the server's is later: it counts the same timeout from
 * when it read the call), the client returns and the handler notices long
 * before the handler's own SLOW_WAIT_MS, and the handler's deadline is the
 * one the client sent (at most DEADLINE_MS away, not none). The deadline is
 * 1 s, not 200 ms: a server that reads the call after its deadline passed
 * rightly never runs it (test_expired_call_never_runs), which a loaded
 * machine did to a 200 ms one. */
#define DEADLINE_MS 1000
static void test_deadline(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(call_ref(f.client, "/test.Echo/Slow", "", DEADLINE_MS, 0, NULL, 0, &st),
                     DBLD_DEADLINE_EXCEEDED);
    int64_t took = dbld_mono_ms() - t0;
    assert_true(took >= DEADLINE_MS - 10 && took < SLOW_WAIT_MS / 3);
    assert_true(wait_flag(&g_entered, WAIT_MS));
    assert_true(wait_flag(&g_done, SLOW_WAIT_MS + WAIT_MS));
    assert_true(atomic_load(&g_saw_cancel));
    int64_t noticed = atomic_load(&g_noticed_ms) - t0;
    print_message("deadline %d ms: the client returned after %lld ms, the handler noticed after "
                  "%lld ms with %lld ms left\n",
                  DEADLINE_MS, (long long)took, (long long)noticed,
                  (long long)atomic_load(&g_remaining_ms));
    assert_true(noticed >= DEADLINE_MS - 10 && noticed < SLOW_WAIT_MS / 3);
    assert_true(atomic_load(&g_remaining_ms) <= DEADLINE_MS);
    fixture_stop(&f);
}

/* ---- the worker queue ---- */

typedef struct bg_call {
    dbld_client *client;
    const char *path, *arg;
    int rc;
    pthread_t tid;
    dbld_status st;
} bg_call;

static void *run_bg_call(void *arg)
{
    bg_call *b = arg;
    b->rc = call_ref(b->client, b->path, b->arg, 20000, 0, NULL, 0, &b->st);
    return NULL;
}

static void bg_start(bg_call *b, fixture *f, const char *path, const char *arg)
{
    *b = (bg_call){.client = f->client, .path = path, .arg = arg};
    assert_int_equal(pthread_create(&b->tid, NULL, run_bg_call, b), 0);
}

/* max_concurrent_streams: calls of one connection over it wait in the
 * client (they succeed, one after the other); without it, as many run as
 * there are workers. */
static void test_max_concurrent_streams(void **state)
{
    (void)state;
    for (int limit = 1; limit >= 0; limit--) {
        reset_observed();
        atomic_store(&g_most_sleeping, 0);
        dbld_server_opts opts = {.service_name = "test",
                                 .listen = "127.0.0.1:0",
                                 .workers = 4,
                                 .max_concurrent_streams = limit};
        fixture f;
        f.srv = start_server_opts(&opts);
        fixture_attach(&f);
        bg_call b[3];
        for (int i = 0; i < 3; i++)
            bg_start(&b[i], &f, "/test.Echo/Sleep", "1500");
        for (int i = 0; i < 3; i++) {
            pthread_join(b[i].tid, NULL);
            assert_int_equal(b[i].rc, 0);
        }
        if (limit)
            assert_int_equal(atomic_load(&g_most_sleeping), 1);
        else /* started together, each sleeping 1.5 s: they overlap */
            assert_true(atomic_load(&g_most_sleeping) >= 2);
        fixture_stop(&f);
    }
}

/* 1 once n unary calls wait for a worker (polled up to timeout_ms). */
static int wait_queued(fixture *f, int n, int64_t timeout_ms)
{
    int64_t end = dbld_mono_ms() + timeout_ms;
    while (dbld_server_queued(f->srv) < n) {
        if (dbld_mono_ms() > end) return 0;
        dbld_sleep_ms(10);
    }
    return 1;
}

/* The one worker sleeps; two calls wait; the next one is refused at once. */
static void test_queue_cap(void **state)
{
    (void)state;
    fixture f;
    fixture_start_small(&f);
    bg_call busy, q[2];
    bg_start(&busy, &f, "/test.Echo/Sleep", "5000");
    assert_true(wait_flag(&g_entered, 20000));
    bg_start(&q[0], &f, "/test.Echo/Counted", "a");
    bg_start(&q[1], &f, "/test.Echo/Counted", "b");
    assert_true(wait_queued(&f, 2, 20000)); /* both wait (the worker sleeps for 5 s) */
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(call_ref(f.client, "/test.Echo/Counted", "c", 10000, 0, NULL, 0, &st),
                     DBLD_RESOURCE_EXHAUSTED);
    assert_true(dbld_mono_ms() - t0 < 4000); /* refused, not queued behind the sleeper */
    assert_non_null(strstr(st.msg, "max_queue 2"));
    /* methods that never block do not queue */
    assert_int_equal(call_ref(f.client, "/test.Echo/Quick", "q", 5000, 0, NULL, 0, &st), 0);
    pthread_join(busy.tid, NULL);
    pthread_join(q[0].tid, NULL);
    pthread_join(q[1].tid, NULL);
    assert_int_equal(busy.rc, 0);
    assert_int_equal(q[0].rc, 0);
    assert_int_equal(q[1].rc, 0);
    assert_int_equal(atomic_load(&g_ran), 2);
    fixture_stop(&f);
}

/* A nonblocking handler hands its call to the workers: a worker answers it,
 * and over max_queue it is refused like any queued call. */
static void test_call_to_workers(void **state)
{
    (void)state;
    fixture f;
    fixture_start_small(&f); /* 1 worker, max_queue 2 */
    dbld_status st;
    char out[32];
    atomic_store(&g_handoff_other_thread, 0);
    assert_int_equal(call_ref(f.client, "/test.Echo/ToWorker", "x", 5000, 0, out, sizeof out, &st),
                     0);
    assert_string_equal(out, "w:x");
    assert_int_equal(atomic_load(&g_handoff_other_thread), 1);
    bg_call busy, q[2];
    bg_start(&busy, &f, "/test.Echo/Sleep", "5000");
    assert_true(wait_flag(&g_entered, 20000));
    bg_start(&q[0], &f, "/test.Echo/Counted", "a");
    bg_start(&q[1], &f, "/test.Echo/Counted", "b");
    assert_true(wait_queued(&f, 2, 20000)); /* both wait (the worker sleeps for 5 s) */
    assert_int_equal(call_ref(f.client, "/test.Echo/ToWorker", "y", 10000, 0, NULL, 0, &st),
                     DBLD_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(st.msg, "max_queue 2"));
    pthread_join(busy.tid, NULL);
    pthread_join(q[0].tid, NULL);
    pthread_join(q[1].tid, NULL);
    assert_int_equal(call_ref(f.client, "/test.Echo/ToWorker", "z", 5000, 0, out, sizeof out, &st),
                     0);
    assert_string_equal(out, "w:z");
    fixture_stop(&f);
}

/* A call whose deadline passes while it waits for a worker never runs. */
static void test_expired_call_never_runs(void **state)
{
    (void)state;
    fixture f;
    fixture_start_small(&f);
    bg_call busy;
    bg_start(&busy, &f, "/test.Echo/Sleep", "800");
    assert_true(wait_flag(&g_entered, 20000));
    dbld_status st;
    assert_int_equal(call_ref(f.client, "/test.Echo/Counted", "late", 200, 0, NULL, 0, &st),
                     DBLD_DEADLINE_EXCEEDED);
    pthread_join(busy.tid, NULL);
    /* the worker is free again: a call with time left runs, the expired one did not */
    assert_int_equal(call_ref(f.client, "/test.Echo/Counted", "ok", 5000, 0, NULL, 0, &st), 0);
    assert_int_equal(atomic_load(&g_ran), 1);
    fixture_stop(&f);
}

/* ---- health ---- */

static void test_health_check(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    int serving = -1;
    assert_int_equal(dbld_health_check(f.client, "", &serving, 2000, &st), 0);
    assert_int_equal(serving, 0);
    assert_int_equal(dbld_health_check(f.client, "test.Echo", &serving, 2000, &st), 0);
    assert_int_equal(serving, 0);
    dbld_server_set_health_all(f.srv, 1);
    assert_int_equal(dbld_health_check(f.client, "", &serving, 2000, &st), 0);
    assert_int_equal(serving, 1);
    assert_int_equal(dbld_health_check(f.client, "test.Echo", &serving, 2000, &st), 0);
    assert_int_equal(serving, 1);
    dbld_server_set_health(f.srv, "test.Echo", 0);
    assert_int_equal(dbld_health_check(f.client, "test.Echo", &serving, 2000, &st), 0);
    assert_int_equal(serving, 0);
    assert_int_equal(dbld_health_check(f.client, "no.Such", &serving, 2000, &st), DBLD_NOT_FOUND);
    fixture_stop(&f);
}

static int next_health(dbld_stream *s, int *status, dbld_status *st)
{
    ProtobufCMessage *m = NULL;
    int rc = dbld_stream_next(s, HC_RESP_DESC, NULL, &m, 3000, st);
    if (m) {
        *status = ((Grpc__Health__V1__HealthCheckResponse *)m)->status;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return rc;
}

static dbld_stream *open_watch(fixture *f, const char *service)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    dbld_stream *s = NULL;
    dbld_status st;
    assert_int_equal(
        dbld_client_stream_open(f->client, "/grpc.health.v1.Health/Watch", &req.base, 0, &s, &st),
        0);
    return s;
}

static void test_health_watch(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_status st;
    int status = -1;
    dbld_stream *w = open_watch(&f, "test.Echo");
    assert_int_equal(next_health(w, &status, &st), 0);
    assert_int_equal(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    dbld_server_set_health(f.srv, "test.Echo", 1);
    assert_int_equal(next_health(w, &status, &st), 0);
    assert_int_equal(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    dbld_stream_close(w);

    /* unknown names are watched too; shutdown sends NOT_SERVING, then ends the stream */
    dbld_stream *u = open_watch(&f, "later.Service");
    assert_int_equal(next_health(u, &status, &st), 0);
    assert_int_equal(status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
    dbld_server_set_health(f.srv, "later.Service", 1);
    assert_int_equal(next_health(u, &status, &st), 0);
    assert_int_equal(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    int64_t t0 = dbld_mono_ms();
    dbld_server_shutdown(f.srv);
    assert_true(dbld_mono_ms() - t0 < 3000);
    assert_int_equal(next_health(u, &status, &st), 0);
    assert_int_equal(status, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
    assert_int_equal(next_health(u, &status, &st), DBLD_UNAVAILABLE);
    dbld_stream_close(u);
    fixture_stop(&f);
}

/* ---- availability and retries ---- */

typedef struct late_start {
    int port;
    int delay_ms;
    dbld_server *srv;
} late_start;

static void *start_late(void *arg)
{
    late_start *ls = arg;
    dbld_sleep_ms(ls->delay_ms);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", ls->port);
    ls->srv = start_server(listen, 0, 0);
    return NULL;
}

static void test_idempotent_retry(void **state)
{
    (void)state;
    late_start ls = {.port = free_port(), .delay_ms = 700};
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", ls.port);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, start_late, &ls), 0);
    dbld_status st;
    char out[32];
    int64_t t0 = dbld_mono_ms();
    int rc = call_ref(dbld_client_get(target), "/test.Echo/Echo", "again", 10000,
                      DBLD_CALL_IDEMPOTENT, out, sizeof out, &st);
    int64_t took = dbld_mono_ms() - t0;
    pthread_join(t, NULL);
    if (rc) fail_msg("retry failed: %s", st.msg);
    assert_string_equal(out, "again");
    assert_true(took >= 500 && took < 6000);
    dbld_server_destroy(ls.srv);
}

static void test_dead_port_unavailable(void **state)
{
    (void)state;
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", free_port());
    dbld_status st;
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(
        call_ref(dbld_client_get(target), "/test.Echo/Echo", "x", 5000, 0, NULL, 0, &st),
        DBLD_UNAVAILABLE);
    assert_true(dbld_mono_ms() - t0 < 2000);
    assert_true(strlen(st.msg) > 0);
}

/* ---- shutdown ---- */

static void test_shutdown_grace(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 30000);
    /* an open stream does not hold shutdown for the grace period (30 s);
     * the unary call in flight is waited for (it answers OK, not cancelled) */
    dbld_stream *s = open_ref_stream(&f, "/test.Echo/Forever", "20");
    char out[32];
    dbld_status st;
    assert_int_equal(next_ref(s, out, sizeof out, 10000, &st), 0);
    bg_call b = {.client = f.client, .path = "/test.Echo/Sleep", .arg = "800"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_bg_call, &b), 0);
    assert_true(wait_flag(&g_entered, 20000));
    int64_t t0 = dbld_mono_ms();
    dbld_server_shutdown(f.srv);
    int64_t took = dbld_mono_ms() - t0;
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    assert_true(took < 20000); /* not the 30 s grace: the stream did not hold it */
    int rc;
    while ((rc = next_ref(s, out, sizeof out, 2000, &st)) == 0)
        ;
    assert_int_equal(rc, DBLD_CANCELLED);
    dbld_stream_close(s);
    /* after shutdown nothing answers */
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", "x", 2000, 0, NULL, 0, &st),
                     DBLD_UNAVAILABLE);
    fixture_stop(&f);
}

/* A unary call still running when the grace period (300 ms) ends is
 * cancelled: the handler notices no earlier than the grace's end, and it and
 * the shutdown end long before the handler's own SLOW_WAIT_MS (30 s; it
 * was 5 s, with a 4 s bound that a loaded machine exceeded). */
static void test_shutdown_cancels_after_grace(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 300);
    bg_call b = {.client = f.client, .path = "/test.Echo/Slow", .arg = ""};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_bg_call, &b), 0);
    assert_true(wait_flag(&g_entered, WAIT_MS));
    int64_t t0 = dbld_mono_ms();
    dbld_server_shutdown(f.srv);
    int64_t took = dbld_mono_ms() - t0;
    pthread_join(t, NULL);
    print_message("shutdown took %lld ms, the handler noticed after %lld ms\n", (long long)took,
                  (long long)(atomic_load(&g_noticed_ms) - t0));
    assert_true(took >= 300 && took < SLOW_WAIT_MS / 3);
    assert_true(atomic_load(&g_noticed_ms) - t0 >= 300);
    assert_true(atomic_load(&g_saw_cancel));
    assert_int_not_equal(b.rc, 0);
    fixture_stop(&f);
}

/* ---- asynchronous completion and inline handlers ---- */

typedef struct load_arg {
    dbld_client *client;
    int id, ok;
} load_arg;

static pthread_t start_completer(void)
{
    g_later_stop = 0;
    atomic_store(&g_completed, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, completer_main, NULL), 0);
    return t;
}

static void stop_completer(pthread_t t)
{
    pthread_mutex_lock(&g_later_mu);
    g_later_stop = 1;
    pthread_cond_broadcast(&g_later_cv);
    pthread_mutex_unlock(&g_later_mu);
    pthread_join(t, NULL);
}

static void test_async_completion(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    pthread_t comp = start_completer();
    dbld_status st;
    char out[64];
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(call_ref(f.client, "/test.Echo/Later", "150", 5000, 0, out, sizeof out, &st),
                     0);
    assert_string_equal(out, "150"); /* built in the call's arena by the handler */
    assert_true(dbld_mono_ms() - t0 >= 140);
    /* an error answer */
    assert_int_equal(call_ref(f.client, "/test.Echo/Later", "fail", 5000, 0, NULL, 0, &st),
                     DBLD_NOT_FOUND);
    assert_string_equal(st.msg, "nothing later");
    /* the server is fine afterwards */
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", "x", 2000, 0, out, sizeof out, &st), 0);
    fixture_stop(&f);
    stop_completer(comp);
}

/* An answer held packed before the call is answered (dbld_call_hold_answer:
 * the message's memory is gone by then) is what the client gets; another
 * response given instead replaces it. */
static void test_held_answer(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    pthread_t comp = start_completer();
    dbld_status st;
    char out[64];
    for (int i = 0; i < 20; i++) {
        char arg[16];
        snprintf(arg, sizeof arg, "%d", i);
        assert_int_equal(call_ref(f.client, "/test.Echo/Held", arg, 5000, 0, out, sizeof out, &st),
                         0);
        char want[32];
        snprintf(want, sizeof want, "held:%d", i);
        assert_string_equal(out, want);
    }
    assert_int_equal(call_ref(f.client, "/test.Echo/Held", "other", 5000, 0, out, sizeof out, &st),
                     0);
    assert_string_equal(out, "instead");
    fixture_stop(&f);
    stop_completer(comp);
}

/* A dbld_packed answer goes to every call holding it, also after the
 * packed response itself was freed (the calls keep its bytes); one of
 * another message type is refused (INTERNAL). */
static void test_packed_shared(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    dbld_arena *a = dbld_arena_create();
    Databuild__V1__PartitionRef *r = dbld_arena_msg(a, REF_DESC);
    r->str = "shared page";
    g_packed = dbld_packed_new(&r->base);
    dbld_arena_destroy(a);
    assert_non_null(g_packed);
    dbld_status st;
    char out[64];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(call_ref(f.client, "/test.Echo/Shared", i == 2 ? "free" : "x", 5000, 0,
                                  out, sizeof out, &st),
                         0);
        assert_string_equal(out, "shared page");
    }
    assert_null(g_packed);
    a = dbld_arena_create();
    Grpc__Health__V1__HealthCheckResponse *h =
        dbld_arena_msg(a, &grpc__health__v1__health_check_response__descriptor);
    g_packed = dbld_packed_new(&h->base);
    dbld_arena_destroy(a);
    assert_int_equal(call_ref(f.client, "/test.Echo/Shared", "x", 5000, 0, NULL, 0, &st),
                     DBLD_INTERNAL);
    dbld_packed_free(g_packed);
    g_packed = NULL;
    fixture_stop(&f);
}

/* With every worker busy, a DBLD_METHOD_NONBLOCKING method still answers at
 * once (it runs on the poller) while a blocking one waits for a worker. */
static void test_nonblocking_runs_inline(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0); /* 4 workers */
    bg_call b[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (bg_call){.client = f.client, .path = "/test.Echo/Sleep", .arg = "1500"};
        assert_int_equal(pthread_create(&t[i], NULL, run_bg_call, &b[i]), 0);
    }
    assert_true(wait_flag(&g_entered, 20000));
    dbld_sleep_ms(100); /* let all four reach their workers */
    dbld_status st;
    char out[32];
    int64_t t0 = dbld_mono_ms();
    assert_int_equal(call_ref(f.client, "/test.Echo/Quick", "q", 5000, 0, out, sizeof out, &st), 0);
    int64_t quick = dbld_mono_ms() - t0;
    assert_string_equal(out, "q");
    t0 = dbld_mono_ms();
    assert_int_equal(call_ref(f.client, "/test.Echo/Echo", "e", 5000, 0, out, sizeof out, &st), 0);
    int64_t queued = dbld_mono_ms() - t0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(b[i].rc, 0);
    }
    assert_true(quick < 700);   /* not behind the 1.5 s sleepers */
    assert_true(queued >= 500); /* behind them */
    fixture_stop(&f);
}

/* Shutdown waits for calls still to be answered asynchronously. */
static void test_shutdown_waits_for_async(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 5000);
    pthread_t comp = start_completer();
    bg_call b = {.client = f.client, .path = "/test.Echo/Later", .arg = "400"};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_bg_call, &b), 0);
    int64_t end = dbld_mono_ms() + 3000;
    for (;;) { /* wait until the call is with the completer */
        pthread_mutex_lock(&g_later_mu);
        int queued = g_later != NULL;
        pthread_mutex_unlock(&g_later_mu);
        if (queued || dbld_mono_ms() > end) break;
        dbld_sleep_ms(2);
    }
    dbld_server_shutdown(f.srv);
    assert_int_equal(atomic_load(&g_completed), 1); /* answered before shutdown returned */
    pthread_join(t, NULL);
    assert_int_equal(b.rc, 0);
    fixture_stop(&f);
    stop_completer(comp);
}

#define ASYNC_THREADS 8
#define ASYNC_CALLS 150

static void *async_load_main(void *arg)
{
    load_arg *a = arg;
    for (int i = 0; i < ASYNC_CALLS; i++) {
        char out[32] = "";
        dbld_status st;
        if (call_ref(a->client, "/test.Echo/Later", "0", 10000, 0, out, sizeof out, &st) == 0 &&
            strcmp(out, "0") == 0)
            a->ok++;
    }
    return NULL;
}

/* ---- load ---- */

#define LOAD_THREADS 16
#define LOAD_CALLS 200

static void *load_main(void *arg)
{
    load_arg *a = arg;
    for (int i = 0; i < LOAD_CALLS; i++) {
        char want[32], out[32] = "";
        dbld_status st;
        snprintf(want, sizeof want, "%d/%d", a->id, i);
        if (call_ref(a->client, "/test.Echo/Echo", want, 10000, 0, out, sizeof out, &st) == 0 &&
            strcmp(out, want) == 0)
            a->ok++;
    }
    return NULL;
}

/* n threads each running fn; returns the sum of their ok counts. */
static int run_load(dbld_client *c, void *(*fn)(void *), int n)
{
    pthread_t t[LOAD_THREADS];
    load_arg a[LOAD_THREADS];
    assert_true(n <= LOAD_THREADS);
    for (int i = 0; i < n; i++) {
        a[i] = (load_arg){c, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, fn, &a[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
    }
    return ok;
}

static void test_concurrent_unary(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    assert_int_equal(run_load(f.client, load_main, LOAD_THREADS), LOAD_THREADS * LOAD_CALLS);
    fixture_stop(&f);
}

static void test_concurrent_async(void **state)
{
    (void)state;
    fixture f;
    fixture_start(&f, 0, 0);
    pthread_t comp = start_completer();
    assert_int_equal(run_load(f.client, async_load_main, ASYNC_THREADS),
                     ASYNC_THREADS * ASYNC_CALLS);
    fixture_stop(&f);
    stop_completer(comp);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    dbld_status st;
    dbld_server *srv = NULL;
    assert_int_equal(dbld_server_create(NULL, &srv, &st), DBLD_INVALID_ARGUMENT);
    dbld_server_opts opts = {.listen = "127.0.0.1:0"};
    assert_int_equal(dbld_server_create(&opts, &srv, &st), 0);
    static const dbld_method both[] = {{"/x.Y/Z", REF_DESC, REF_DESC, echo, count}};
    static const dbld_service bad = {"x.Y", both, 1};
    assert_int_equal(dbld_server_add(srv, &bad, NULL), DBLD_INVALID_ARGUMENT);
    assert_int_equal(dbld_server_add(srv, NULL, NULL), DBLD_INVALID_ARGUMENT);
    dbld_server_destroy(srv); /* never started */
    assert_int_equal(dbld_client_unary(NULL, "/a/b", NULL, REF_DESC, NULL, NULL, 0, 0, &st),
                     DBLD_INVALID_ARGUMENT);
}

static void test_signals(void **state)
{
    (void)state;
    kill(getpid(), SIGTERM); /* blocked in main(): stays pending for sigwait */
    assert_int_equal(dbld_signals_wait(), SIGTERM);
}

static int teardown_all(void **state)
{
    (void)state;
    dbld_client_shutdown_all();
    return 0;
}

int main(void)
{
    dbld_log_init("test_rpc", DBLD_LOG_ERROR);
    dbld_signals_block();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_echo),
        cmocka_unit_test(test_held_answer),
        cmocka_unit_test(test_packed_shared),
        cmocka_unit_test(test_max_concurrent_streams),
        cmocka_unit_test(test_handler_errors),
        cmocka_unit_test(test_unknown_method),
        cmocka_unit_test(test_garbage_request),
        cmocka_unit_test(test_message_too_large),
        cmocka_unit_test(test_stream_all_in_order),
        cmocka_unit_test(test_stream_cancel),
        cmocka_unit_test(test_stream_wait_expiry),
        cmocka_unit_test(test_stream_cap),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_queue_cap),
        cmocka_unit_test(test_call_to_workers),
        cmocka_unit_test(test_expired_call_never_runs),
        cmocka_unit_test(test_health_check),
        cmocka_unit_test(test_health_watch),
        cmocka_unit_test(test_idempotent_retry),
        cmocka_unit_test(test_dead_port_unavailable),
        cmocka_unit_test(test_shutdown_grace),
        cmocka_unit_test(test_shutdown_cancels_after_grace),
        cmocka_unit_test(test_concurrent_unary),
        cmocka_unit_test(test_async_completion),
        cmocka_unit_test(test_nonblocking_runs_inline),
        cmocka_unit_test(test_shutdown_waits_for_async),
        cmocka_unit_test(test_concurrent_async),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_signals),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
