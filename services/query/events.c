/* events.c - GetBuildEvents (raw events of the build event log, filtered
 * and paged by timestamp) and Batched.
 *
 * GetBuildEvents: EventFilter fields are ANDed, values within a field ORed;
 * partition_patterns are PostgreSQL regular expressions matched in full
 * (anchored at both ends), like the event log's own List. Paging:
 *   - min_timestamp_ns set: events with timestamp > min, oldest first
 *     (scroll forward: pass the last event's timestamp as the next min);
 *   - else: the newest events with timestamp < max_timestamp_ns (0: up to
 *     now), i.e. scroll backward: pass the first event's timestamp as the
 *     next max;
 *   - both set: the window (min, max), scrolled forward from min.
 * The seed says one of the two "must be provided"; neither is read as
 * max_timestamp_ns = now rather than refused (proto comment): Batched's
 * template reading below and the first page of a backward scroll use it.
 * Bounds are exclusive and a page never splits a run of equal timestamps,
 * so paging loses and repeats nothing. Events come back in ascending
 * (timestamp, idx) order in every mode; has_more says whether more events
 * lie beyond the page in the scroll direction.
 *
 * Batched: each key is answered on its own; a failure goes to `errors`
 * under its key with "CODE: message" and the other keys still answer. The
 * seed types RequestContainer.list_build_events as a ListBuildEventsResponse
 * (a response, not a request). We read it as a filter template: the
 * build_request_ids of its events become the build_request_ids filter (when
 * none is given, the build_request_status's build_id when that is set too),
 * and the answer is the newest page of matching events, as GetBuildEvents
 * with max_timestamp_ns = 0 returns it. Its has_more is ignored.
 */
#include "query.h"

#include <inttypes.h>
#include <string.h>

#define EVENTS_SQL                                                                                 \
    "SELECT idx, ts_ns, payload FROM events WHERE"                                                 \
    " ($1::text[] IS NULL OR partition_refs && $1::text[])"                                        \
    " AND ($2::text[] IS NULL OR (array_to_string(partition_refs, E'\\n') ~ ANY($6::text[])"       \
    "      AND EXISTS (SELECT 1 FROM unnest(partition_refs) ref,"                                  \
    "      unnest($2::text[]) pat WHERE ref ~ ('^(?:' || pat || ')$'))))"                          \
    " AND ($3::text[] IS NULL OR job_labels && $3::text[])"                                        \
    " AND ($4::text[] IS NULL OR job_run_ids && $4::text[])"                                       \
    " AND ($5::text[] IS NULL OR build_request_id = ANY($5::text[]))"                              \
    " AND %s"

/* Pattern prefilter: a ref matching `pat` in full is a whole line of the
 * event's refs joined with newlines, so "(?w)^(?:pat)$" (^ and $ at line
 * ends, `.` still matching newlines) matches the joined string whenever the
 * exact per-ref test can. One regex run per event instead of one per ref
 * (events of a build carry up to hundreds of refs) makes pattern scans of a
 * large log several times cheaper; the exact test then weeds out matches
 * that span refs. */
static const char *prefilters(dbld_arena *a, char *const *pats, size_t n)
{
    if (!n) return NULL;
    char **out = dbld_arena_alloc(a, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = dbld_arena_printf(a, "(?w)^(?:%s)$", pats[i]);
    return q_text_array(a, out, n);
}

static int64_t clamp_u64(uint64_t v)
{
    return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

int q_get_build_events(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
                       dbld_status *st)
{
    const Databuild__V1__ListBuildEventsRequest *req =
        (const Databuild__V1__ListBuildEventsRequest *)req_msg;
    Databuild__V1__EventFilter empty = DATABUILD__V1__EVENT_FILTER__INIT;
    const Databuild__V1__EventFilter *f = req->filters ? req->filters : &empty;
    int64_t min = clamp_u64(req->min_timestamp_ns), max = clamp_u64(req->max_timestamp_ns);
    if (min && max && min >= max)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "min_timestamp_ns (%" PRId64
                               ") must be below max_timestamp_ns (%" PRId64 ")",
                               min, max);
    for (size_t i = 0; i < f->n_partition_patterns; i++) {
        int rc = q_check_regex(r, f->partition_patterns[i], "partition pattern", st);
        if (rc) return rc;
    }
    dbld_arena *a = r->a;
    const char *p[] = {
        q_text_array(a, f->partition_refs, f->n_partition_refs),
        q_text_array(a, f->partition_patterns, f->n_partition_patterns),
        q_text_array(a, f->job_labels, f->n_job_labels),
        q_text_array(a, f->job_run_ids, f->n_job_run_ids),
        q_text_array(a, f->build_request_ids, f->n_build_request_ids),
        prefilters(a, f->partition_patterns, f->n_partition_patterns),
    };
    q_pager pg = {.sql = EVENTS_SQL,
                  .n = 6,
                  .params = p,
                  .ts_col = "ts_ns",
                  .key_col = "idx",
                  .ts_field = 1,
                  .limit = Q_PAGE};
    if (min) {
        pg.desc = 0;
        pg.cursor = min;
        pg.other = max;
    } else {
        pg.desc = 1;
        pg.cursor = max;
    }
    dbld_res *res;
    int n, more;
    int rc = q_page(r, &pg, &res, &n, &more, st);
    if (rc == DBLD_INVALID_ARGUMENT && f->n_partition_patterns &&
        strncmp(st->msg, "invalid regular expression", 26) == 0) /* valid alone, not anchored */
        dbld_status_prefix(st, "invalid partition pattern in %s", p[1]);
    if (rc) return rc;
    Databuild__V1__ListBuildEventsResponse *resp =
        dbld_arena_msg(a, &databuild__v1__list_build_events_response__descriptor);
    resp->events = dbld_arena_alloc(a, ((size_t)n + 1) * sizeof *resp->events);
    for (int i = 0; i < n && !rc; i++) {
        int row = pg.desc ? n - 1 - i : i; /* ascending either way */
        Databuild__V1__BuildEvent *ev = q_decode_event(a, dbld_res_get(res, row, 2));
        if (!ev)
            rc = dbld_status_set(st, DBLD_DATA_LOSS, "stored event %s does not decode",
                                 dbld_res_get(res, row, 0));
        resp->events[resp->n_events++] = ev;
    }
    dbld_res_free(res);
    if (rc) return rc;
    resp->has_more = more;
    *resp_msg = &resp->base;
    return 0;
}

/* ---- Batched ---- */

/* The filter template reading of RequestContainer.list_build_events (see top). */
static Databuild__V1__ListBuildEventsRequest *
template_request(dbld_arena *a, const Databuild__V1__ListBuildEventsResponse *tmpl,
                 const Databuild__V1__BuildSummaryRequest *also)
{
    Databuild__V1__ListBuildEventsRequest *req =
        dbld_arena_msg(a, &databuild__v1__list_build_events_request__descriptor);
    Databuild__V1__EventFilter *f = dbld_arena_msg(a, &databuild__v1__event_filter__descriptor);
    f->build_request_ids = dbld_arena_alloc(a, (tmpl->n_events + 2) * sizeof *f->build_request_ids);
    for (size_t i = 0; i < tmpl->n_events; i++) {
        const char *id = tmpl->events[i] ? tmpl->events[i]->build_request_id : NULL;
        if (!id || !*id) continue;
        int dup = 0;
        for (size_t k = 0; k < f->n_build_request_ids && !dup; k++)
            dup = strcmp(f->build_request_ids[k], id) == 0;
        if (!dup) f->build_request_ids[f->n_build_request_ids++] = (char *)id;
    }
    if (!f->n_build_request_ids && also && *also->build_id)
        f->build_request_ids[f->n_build_request_ids++] = also->build_id;
    req->filters = f;
    return req;
}

static int answer_one(q_req *r, const Databuild__V1__RequestContainer *c,
                      Databuild__V1__ResponseContainer **out, dbld_status *st)
{
    if (!c || (!c->list_build_events && !c->build_request_status))
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "request container is empty (set list_build_events or "
                               "build_request_status)");
    Databuild__V1__ResponseContainer *rc_msg =
        dbld_arena_msg(r->a, &databuild__v1__response_container__descriptor);
    ProtobufCMessage *m = NULL;
    int rc;
    if (c->build_request_status) {
        rc = q_get_build_summary(r, &c->build_request_status->base, &m, st);
        if (rc) return rc;
        rc_msg->build_request_status = (Databuild__V1__BuildSummaryResponse *)m;
    }
    if (c->list_build_events) {
        m = NULL;
        Databuild__V1__ListBuildEventsRequest *req =
            template_request(r->a, c->list_build_events, c->build_request_status);
        rc = q_get_build_events(r, &req->base, &m, st);
        if (rc) return rc;
        rc_msg->list_build_events = (Databuild__V1__ListBuildEventsResponse *)m;
    }
    *out = rc_msg;
    return 0;
}

int q_batched(q_req *r, const ProtobufCMessage *req_msg, ProtobufCMessage **resp_msg,
              dbld_status *st)
{
    const Databuild__V1__BatchedRequest *req = (const Databuild__V1__BatchedRequest *)req_msg;
    if (req->n_requests > Q_BATCH_MAX)
        return dbld_status_set(st, DBLD_INVALID_ARGUMENT,
                               "too many requests in one batch: %zu (at most %d)", req->n_requests,
                               Q_BATCH_MAX);
    dbld_arena *a = r->a;
    Databuild__V1__BatchedResponse *resp =
        dbld_arena_msg(a, &databuild__v1__batched_response__descriptor);
    size_t n = req->n_requests;
    resp->responses = dbld_arena_alloc(a, (n + 1) * sizeof *resp->responses);
    resp->errors = dbld_arena_alloc(a, (n + 1) * sizeof *resp->errors);
    for (size_t i = 0; i < n; i++) {
        const Databuild__V1__BatchedRequest__RequestsEntry *e = req->requests[i];
        Databuild__V1__ResponseContainer *out = NULL;
        dbld_status one;
        dbld_status_clear(&one);
        int rc = answer_one(r, e->value, &out, &one);
        if (rc == DBLD_UNAVAILABLE) /* the whole batch is moot: say so once */
            return dbld_status_set(st, rc, "%s", one.msg);
        if (rc) {
            Databuild__V1__BatchedResponse__ErrorsEntry *ee =
                dbld_arena_msg(a, &databuild__v1__batched_response__errors_entry__descriptor);
            Databuild__V1__ErrorContainer *ec =
                dbld_arena_msg(a, &databuild__v1__error_container__descriptor);
            ec->error_message = dbld_arena_printf(a, "%s: %s", dbld_code_name(rc), one.msg);
            ee->key = e->key;
            ee->value = ec;
            resp->errors[resp->n_errors++] = ee;
            continue;
        }
        Databuild__V1__BatchedResponse__ResponsesEntry *re =
            dbld_arena_msg(a, &databuild__v1__batched_response__responses_entry__descriptor);
        re->key = e->key;
        re->value = out;
        resp->responses[resp->n_responses++] = re;
    }
    *resp_msg = &resp->base;
    return 0;
}
