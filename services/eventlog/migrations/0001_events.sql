-- 0001: the build event log and its projections.
--
-- events is append-only. idx is assigned under a transaction-scoped advisory
-- lock held by every writer (see store.c), so idx order is commit order and a
-- reader that has seen idx N has seen every committed idx < N.
CREATE TABLE events (
    idx              bigserial PRIMARY KEY,
    event_id         text      NOT NULL UNIQUE,
    ts_ns            bigint    NOT NULL,
    build_request_id text      NOT NULL DEFAULT '',
    kind             smallint  NOT NULL,  -- BuildEvent oneof field number (10..19)
    partition_refs   text[]    NOT NULL DEFAULT '{}',
    job_labels       text[]    NOT NULL DEFAULT '{}',
    job_run_ids      text[]    NOT NULL DEFAULT '{}',
    payload          bytea     NOT NULL   -- serialized databuild.v1.BuildEvent
);
CREATE INDEX events_refs_gin   ON events USING gin (partition_refs);
CREATE INDEX events_labels_gin ON events USING gin (job_labels);
CREATE INDEX events_runs_gin   ON events USING gin (job_run_ids);
CREATE INDEX events_build_request ON events (build_request_id, idx);
CREATE INDEX events_ts ON events (ts_ns);

-- Current state of every partition ever mentioned.
CREATE TABLE partitions (
    ref                 text PRIMARY KEY,
    status              int    NOT NULL DEFAULT 0,   -- databuild.v1.PartitionStatus
    build_request_id    text   NOT NULL DEFAULT '',
    job_run_id          text   NOT NULL DEFAULT '',
    message             text   NOT NULL DEFAULT '',
    updated_ns          bigint NOT NULL DEFAULT 0,
    last_invalidated_ns bigint NOT NULL DEFAULT 0,
    tainted             boolean NOT NULL DEFAULT false,
    last_idx            bigint NOT NULL DEFAULT 0
);
CREATE INDEX partitions_status ON partitions (status, ref);

CREATE TABLE build_requests (
    build_request_id     text PRIMARY KEY,
    status               int    NOT NULL DEFAULT 0,  -- databuild.v1.BuildRequestStatusCode
    requested_partitions text[] NOT NULL DEFAULT '{}',
    comment              text   NOT NULL DEFAULT '',
    want_id              text   NOT NULL DEFAULT '',
    message              text   NOT NULL DEFAULT '',
    created_ns           bigint NOT NULL DEFAULT 0,
    updated_ns           bigint NOT NULL DEFAULT 0,
    last_idx             bigint NOT NULL DEFAULT 0
);
CREATE INDEX build_requests_created ON build_requests (created_ns DESC);
CREATE INDEX build_requests_partitions_gin ON build_requests USING gin (requested_partitions);

CREATE TABLE job_runs (
    job_run_id        text PRIMARY KEY,
    build_request_id  text   NOT NULL DEFAULT '',
    job_label         text   NOT NULL DEFAULT '',
    status            int    NOT NULL DEFAULT 0,     -- databuild.v1.JobStatus
    target_partitions text[] NOT NULL DEFAULT '{}',
    message           text   NOT NULL DEFAULT '',
    created_ns        bigint NOT NULL DEFAULT 0,
    updated_ns        bigint NOT NULL DEFAULT 0,
    last_idx          bigint NOT NULL DEFAULT 0
);
CREATE INDEX job_runs_label ON job_runs (job_label, created_ns DESC);
CREATE INDEX job_runs_build_request ON job_runs (build_request_id);
CREATE INDEX job_runs_created ON job_runs (created_ns DESC);

CREATE TABLE wants (
    want_id          text PRIMARY KEY,
    refs             text[] NOT NULL DEFAULT '{}',
    source_code      int    NOT NULL DEFAULT 0,      -- databuild.v1.SourceTypeCode
    comment          text   NOT NULL DEFAULT '',
    created_ns       bigint NOT NULL DEFAULT 0,
    build_request_id text   NOT NULL DEFAULT '',
    last_idx         bigint NOT NULL DEFAULT 0
);
CREATE INDEX wants_refs_gin ON wants USING gin (refs);

CREATE TABLE taints (
    event_id         text PRIMARY KEY,
    refs             text[] NOT NULL DEFAULT '{}',
    source_code      int    NOT NULL DEFAULT 0,
    comment          text   NOT NULL DEFAULT '',
    created_ns       bigint NOT NULL DEFAULT 0,
    build_request_id text   NOT NULL DEFAULT '',
    idx              bigint NOT NULL DEFAULT 0
);
CREATE INDEX taints_refs_gin ON taints USING gin (refs);
