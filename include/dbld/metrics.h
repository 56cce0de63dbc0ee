/* metrics.h - Prometheus metrics: a process-wide registry of counters,
 * gauges and histograms, served as text exposition over HTTP.
 *
 * Registering a series (name + fixed label set) takes a mutex and returns a
 * handle; recording through a handle is a few relaxed atomic operations and
 * never locks, so handles are made once (at start-up, or when a new label
 * value first appears) and kept. Values are rendered only when scraped.
 * Names follow Prometheus conventions (units in the name, _total for
 * counters); the RPC runtime adds the grpc-ecosystem series
 * (grpc_server_handled_total, ...) and dbld_metrics_serve() the process_*
 * ones.
 */
#ifndef DBLD_METRICS_H
#define DBLD_METRICS_H

#include "dbld/status.h"
#include <stddef.h>
#include <stdint.h>

typedef struct dbld_counter dbld_counter;
typedef struct dbld_gauge dbld_gauge;
typedef struct dbld_histogram dbld_histogram;

/* labels: the label set in exposition syntax, e.g. `status="COMPLETED"`, or
 * NULL. Registering the same name and labels again returns the same handle.
 * Handles live until the process exits. */
dbld_counter *dbld_counter_get(const char *name, const char *help, const char *labels);
void dbld_counter_add(dbld_counter *c, uint64_t n);

dbld_gauge *dbld_gauge_get(const char *name, const char *help, const char *labels);
void dbld_gauge_set(dbld_gauge *g, int64_t v);
void dbld_gauge_add(dbld_gauge *g, int64_t delta);
/* A gauge read at scrape time from fn(user). */
void dbld_gauge_fn(const char *name, const char *help, const char *labels, double (*fn)(void *user),
                   void *user);

/* bounds: ascending upper bounds (the +Inf bucket is implicit), copied. */
dbld_histogram *dbld_histogram_get(const char *name, const char *help, const char *labels,
                                   const double *bounds, size_t n_bounds);
void dbld_histogram_observe(dbld_histogram *h, double v);

/* Bucket bounds in seconds for RPC and commit latencies (0.5 ms .. 10 s). */
extern const double dbld_latency_buckets[];
extern const size_t dbld_n_latency_buckets;

/* The whole registry in Prometheus text format 0.0.4 (malloc'd). */
char *dbld_metrics_render(void);

/* Serve GET /metrics on addr ("host:port") from a thread of libmicrohttpd;
 * NULL or "" does nothing. Errors name the address. */
int dbld_metrics_serve(const char *addr, dbld_status *st);
/* The bound port (after dbld_metrics_serve; 0 when not serving). */
int dbld_metrics_port(void);
void dbld_metrics_stop(void);
/* 1 while an endpoint serves the registry. The RPC runtime records its
 * per-call series only then (a service without metrics_listen pays
 * nothing per call). */
int dbld_metrics_enabled(void);

#endif
