/* qasync.c - q_job: an RPC that is one pipeline, answered without a thread
 * waiting for PostgreSQL (see query.h).
 *
 * The reactor keeps its own few connections (read-only sessions, made on
 * demand by the reactor thread). A call's statements are sent by the thread
 * that submits it (the RPC runtime's poller: the handler is nonblocking) on
 * an idle connection, or queued when none is; the connection's socket is
 * then armed (EPOLLONESHOT) in the reactor's epoll set. The reactor thread
 * reads the results as they arrive, finishes the call (dbld_call_complete)
 * and sends the next queued call on the same connection. So a call costs no
 * thread hand-off on the way in and one wake-up on the way out, and under
 * load one wake-up finishes many calls.
 *
 * A connection is owned by exactly one party at a time: the idle list (under
 * mu), or the call it carries (the submitter until the socket is armed, then
 * the reactor). A read that finds its connection lost is queued again (at
 * most once per connection, as q_pipeline() retries) and the connection is
 * remade by the reactor.
 *
 * Cancellation: while calls are in flight the reactor wakes every
 * DBLD_DB_POLL_MS and, for each connection whose call was cancelled or
 * passed its deadline, asks PostgreSQL to cancel the statement (PQcancel);
 * the call then ends with CANCELLED / DEADLINE_EXCEEDED and the connection,
 * which a late cancel could still hit, is replaced. The flag `inflight` (under
 * mu) says that a connection's call may be looked at: set before the
 * statements are sent, cleared by the owner before it finishes the call.
 */
#include "query.h"

#include "dbld/fifo.h"
#include "dbld/log.h"
#include "dbld/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 64

typedef struct q_conn {
    dbld_db *db;  /* NULL: not (or no longer) connected */
    q_job *cur;   /* the call it carries */
    int inflight; /* under mu: cur's call may be checked for cancellation */
    struct q_conn *next_idle;
} q_conn;

struct q_reactor {
    q_ctx *q;
    int ep, wake; /* epoll set, eventfd */
    q_conn *conns;
    int n;
    pthread_mutex_t mu;
    q_conn *idle;      /* connected, carrying nothing */
    dbld_fifo waiting; /* q_job.link: waiting for a connection */
    int stop;
    pthread_t th;
    int started;
};

static void wake(q_reactor *rx)
{
    uint64_t one = 1;
    ssize_t w = write(rx->wake, &one, sizeof one);
    (void)w;
}

static void finish_job(q_job *j, int rc, dbld_status *st)
{
    if (j->done) { /* the index gate's probe */
        j->done(j, rc, st);
        return;
    }
    ProtobufCMessage *resp = NULL;
    j->r.db_failed = rc != 0; /* finish clears it when it named the problem itself */
    rc = j->finish(&j->r, j, rc, &resp, st);
    if (rc && j->r.db_failed) dbld_status_prefix(st, "could not %s", j->op);
    if (rc == DBLD_UNAVAILABLE) q_ctx_db_down(j->r.q, st->msg);
    dbld_call_complete(j->call, rc, rc ? st->msg : "", rc ? NULL : resp);
}

/* Close a connection found lost (its owner calls this). */
static void drop_conn(q_reactor *rx, q_conn *c)
{
    epoll_ctl(rx->ep, EPOLL_CTL_DEL, dbld_db_socket(c->db), NULL);
    dbld_db_close(c->db);
    pthread_mutex_lock(&rx->mu); /* connect_some() looks for such slots */
    c->db = NULL;
    c->cur = NULL;
    pthread_mutex_unlock(&rx->mu);
}

static void enqueue(q_reactor *rx, q_job *j, int front)
{
    pthread_mutex_lock(&rx->mu);
    if (front)
        dbld_fifo_push_front(&rx->waiting, &j->link);
    else
        dbld_fifo_push(&rx->waiting, &j->link);
    pthread_mutex_unlock(&rx->mu);
}

/* A job's connection was lost: try again on another (queued first) or give up. */
static void retry_or_fail(q_reactor *rx, q_job *j, int rc, dbld_status *st)
{
    int stop = dbld_call_interrupt(j->call); /* nobody waits for it any more */
    if (stop) {
        dbld_status_set(st, stop, "%s",
                        stop == DBLD_CANCELLED ? "call cancelled" : "deadline exceeded");
        finish_job(j, stop, st);
    } else if (++j->attempts <= rx->n) {
        enqueue(rx, j, 1);
        wake(rx);
    } else {
        finish_job(j, rc, st);
    }
}

/* Send j on c (owned by the caller); on success the reactor owns both. */
static void send_on(q_reactor *rx, q_conn *c, q_job *j)
{
    dbld_status st;
    dbld_status_clear(&st);
    pthread_mutex_lock(&rx->mu);
    c->cur = j;
    c->inflight = 1;
    pthread_mutex_unlock(&rx->mu);
    int rc = dbld_db_pipeline_send(c->db, j->stmts, j->n, &st);
    if (rc == 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
        if (epoll_ctl(rx->ep, EPOLL_CTL_MOD, dbld_db_socket(c->db), &ev) == 0) return;
        rc = dbld_status_set(&st, DBLD_INTERNAL, "epoll_ctl failed");
    }
    pthread_mutex_lock(&rx->mu);
    c->inflight = 0;
    pthread_mutex_unlock(&rx->mu);
    if (!dbld_db_alive(c->db)) {
        drop_conn(rx, c);
        retry_or_fail(rx, j, rc, &st);
        return;
    }
    /* the connection is fine but the statements could not be sent */
    c->cur = NULL;
    pthread_mutex_lock(&rx->mu);
    c->next_idle = rx->idle;
    rx->idle = c;
    pthread_mutex_unlock(&rx->mu);
    finish_job(j, rc, &st);
}

/* c (owned by the caller, connected) is free: send the first waiting call on
 * it, or make it idle. */
static void next_on(q_reactor *rx, q_conn *c)
{
    pthread_mutex_lock(&rx->mu);
    q_job *j = DBLD_FIFO_ENTRY(dbld_fifo_pop(&rx->waiting), q_job, link);
    if (!j) {
        c->next_idle = rx->idle;
        rx->idle = c;
    }
    pthread_mutex_unlock(&rx->mu);
    if (j) send_on(rx, c, j);
}

/* Send j's statements on an idle connection, or queue it: DBLD_ASYNC, or an
 * error when the database is known to be down. */
static int submit_sql(q_reactor *rx, q_job *j, dbld_status *st)
{
    if (!q_ctx_db_up(j->r.q))
        return dbld_status_set(st, DBLD_UNAVAILABLE,
                               "database unavailable (query service is not serving)");
    pthread_mutex_lock(&rx->mu);
    q_conn *c = rx->waiting.n ? NULL : rx->idle; /* keep the order when calls wait */
    if (c) {
        rx->idle = c->next_idle;
        pthread_mutex_unlock(&rx->mu);
        send_on(rx, c, j);
        return DBLD_ASYNC;
    }
    pthread_mutex_unlock(&rx->mu);
    enqueue(rx, j, 0);
    wake(rx); /* it may have to connect */
    return DBLD_ASYNC;
}

int q_job_submit(dbld_call *call, const char *op, q_job_start_fn start, const ProtobufCMessage *req,
                 ProtobufCMessage **resp, dbld_status *st)
{
    q_ctx *q = dbld_call_user(call);
    dbld_arena *a = dbld_call_arena(call);
    q_job *j = dbld_arena_alloc(a, sizeof *j);
    memset(j, 0, sizeof *j);
    j->call = call;
    j->op = op;
    j->r = (q_req){.q = q, .a = a, .timeout_ms = 30000};
    int rc = start(&j->r, req, j, st);
    if (rc) return rc;
    if (j->answer) {
        *resp = j->answer;
        return 0;
    }
    if ((j->index_fn || j->fresh_worker) && q_index_gate(q->index, j)) return DBLD_ASYNC;
    if (j->worker) {
        dbld_call_to_workers(call, j->worker);
        return DBLD_ASYNC;
    }
    return submit_sql(q->rx, j, st);
}

void q_job_run_sql(q_job *j)
{
    if (j->worker) {
        dbld_call_to_workers(j->call, j->worker);
        return;
    }
    dbld_status st;
    dbld_status_clear(&st);
    int rc = submit_sql(j->r.q->rx, j, &st);
    if (rc != DBLD_ASYNC && j->done)
        j->done(j, rc, &st);
    else if (rc != DBLD_ASYNC)
        dbld_call_complete(j->call, rc, st.msg, NULL);
}

/* Reactor thread: connect when calls wait and a connection is missing. */
static void connect_some(q_reactor *rx)
{
    for (int i = 0; i < rx->n; i++) {
        q_conn *c = &rx->conns[i];
        pthread_mutex_lock(&rx->mu);
        int waiting = rx->waiting.n > 0, taken = c->db || c->cur;
        pthread_mutex_unlock(&rx->mu);
        if (!waiting) return;
        if (taken) continue;
        dbld_status st;
        dbld_status_clear(&st);
        const char *dsn = rx->q->cfg->query.postgres_dsn ? rx->q->cfg->query.postgres_dsn : "";
        dbld_db_opts so = q_session_opts(rx->q->cfg);
        int rc = dbld_db_connect_opts(dsn, &so, &c->db, &st);
        struct epoll_event ev = {.events = EPOLLONESHOT, .data.ptr = c}; /* disarmed */
        if (rc == 0 && epoll_ctl(rx->ep, EPOLL_CTL_ADD, dbld_db_socket(c->db), &ev) != 0)
            rc = dbld_status_set(&st, DBLD_INTERNAL, "epoll_ctl failed");
        if (rc) {
            dbld_db_close(c->db);
            c->db = NULL;
            if (rc == DBLD_UNAVAILABLE) q_ctx_db_down(rx->q, st.msg);
            /* fail what waits: the database does not answer */
            dbld_fifo all;
            pthread_mutex_lock(&rx->mu);
            dbld_fifo_take(&rx->waiting, &all);
            pthread_mutex_unlock(&rx->mu);
            q_job *j;
            while ((j = DBLD_FIFO_ENTRY(dbld_fifo_pop(&all), q_job, link))) {
                dbld_status jst = st;
                finish_job(j, rc, &jst);
            }
            return;
        }
        next_on(rx, c);
    }
}

/* Reactor thread: c's socket is readable. */
static void readable(q_reactor *rx, q_conn *c)
{
    q_job *j = c->cur;
    dbld_status st;
    dbld_status_clear(&st);
    int rc = 0;
    if (!dbld_db_pipeline_recv(c->db, j->stmts, j->n, &rc, &st)) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLONESHOT, .data.ptr = c};
        if (epoll_ctl(rx->ep, EPOLL_CTL_MOD, dbld_db_socket(c->db), &ev) == 0) return;
        rc = dbld_status_set(&st, DBLD_INTERNAL, "epoll_ctl failed");
    }
    pthread_mutex_lock(&rx->mu);
    c->inflight = 0;
    pthread_mutex_unlock(&rx->mu);
    if (rc == DBLD_UNAVAILABLE && !dbld_db_alive(c->db)) {
        for (size_t i = 0; i < j->n; i++) { /* results of the lost attempt */
            if (!j->stmts[i].out) continue;
            dbld_res_free(*j->stmts[i].out);
            *j->stmts[i].out = NULL;
        }
        drop_conn(rx, c);
        retry_or_fail(rx, j, rc, &st);
        return;
    }
    c->cur = NULL;
    finish_job(j, rc, &st);
    if (dbld_db_alive(c->db)) {
        next_on(rx, c);
    } else { /* cancelled: a late cancel could hit its next statement */
        drop_conn(rx, c);
        wake(rx); /* connect_some() remakes it when calls wait */
    }
}

/* Reactor thread: cancel the statements of calls that were cancelled or
 * passed their deadline. Returns how many calls are in flight. */
static int cancel_abandoned(q_reactor *rx)
{
    int n = 0;
    pthread_mutex_lock(&rx->mu);
    for (int i = 0; i < rx->n; i++) {
        q_conn *c = &rx->conns[i];
        if (!c->inflight) continue;
        n++;
        int code = dbld_call_interrupt(c->cur->call);
        if (code) dbld_db_cancel(c->db, code); /* once: later calls do nothing */
    }
    pthread_mutex_unlock(&rx->mu);
    return n;
}

static void *reactor_main(void *arg)
{
    q_reactor *rx = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int busy = cancel_abandoned(rx);
        int n = epoll_wait(rx->ep, evs, MAX_EVENTS, busy ? DBLD_DB_POLL_MS : -1);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t v;
                ssize_t r = read(rx->wake, &v, sizeof v);
                (void)r;
            } else {
                readable(rx, evs[i].data.ptr);
            }
        }
        pthread_mutex_lock(&rx->mu);
        int stop = rx->stop;
        pthread_mutex_unlock(&rx->mu);
        if (stop) break;
        connect_some(rx);
    }
    return NULL;
}

q_reactor *q_reactor_create(q_ctx *q, int n)
{
    q_reactor *rx = dbld_xcalloc(1, sizeof *rx);
    rx->q = q;
    rx->n = n < 1 ? 1 : n;
    rx->conns = dbld_xcalloc((size_t)rx->n, sizeof *rx->conns);
    pthread_mutex_init(&rx->mu, NULL);
    dbld_fifo_init(&rx->waiting);
    rx->ep = epoll_create1(EPOLL_CLOEXEC);
    rx->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (rx->ep < 0 || rx->wake < 0 || epoll_ctl(rx->ep, EPOLL_CTL_ADD, rx->wake, &ev) != 0 ||
        pthread_create(&rx->th, NULL, reactor_main, rx) != 0) {
        q_reactor_destroy(rx);
        return NULL;
    }
    rx->started = 1;
    return rx;
}

/* After the server's shutdown: no call is in flight any more. */
void q_reactor_destroy(q_reactor *rx)
{
    if (!rx) return;
    if (rx->started) {
        pthread_mutex_lock(&rx->mu);
        rx->stop = 1;
        pthread_mutex_unlock(&rx->mu);
        wake(rx);
        pthread_join(rx->th, NULL);
    }
    for (int i = 0; i < rx->n; i++)
        dbld_db_close(rx->conns[i].db);
    if (rx->ep >= 0) close(rx->ep);
    if (rx->wake >= 0) close(rx->wake);
    pthread_mutex_destroy(&rx->mu);
    free(rx->conns);
    free(rx);
}
