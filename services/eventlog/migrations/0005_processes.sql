-- 0005: background processes (the HFAS seed; proto/databuild_process.proto).
--
-- One row per process. The lease (instance, lease_expires_ns) says which
-- graph-service replica runs it; lease_token is the fencing token, bumped on
-- every change of holder, and every state write is checked against it with
-- the row locked (SELECT ... FOR UPDATE) in the writing transaction.
-- settings, status and aggregate_stats are serialized ProcessParams,
-- ProcessStatus and ProcessStatus (its stats map), so that the bounded error
-- lists and stat maps of the seed need no schema of their own.
CREATE TABLE processes (
    name             text PRIMARY KEY,
    instance         text   NOT NULL DEFAULT '',
    lease_token      bigint NOT NULL DEFAULT 0,
    lease_expires_ns bigint NOT NULL DEFAULT 0,
    frequency_ms     bigint NOT NULL,
    settings         bytea  NOT NULL DEFAULT '',  -- databuild.v1.ProcessParams
    settings_ns      bigint NOT NULL DEFAULT 0,
    state            int    NOT NULL DEFAULT 1,   -- databuild.v1.ProcessState of the last run
    status           bytea  NOT NULL DEFAULT '',  -- databuild.v1.ProcessStatus of the last run
    aggregate        bytea  NOT NULL DEFAULT '',  -- databuild.v1.ProcessStatus: running sums in stats
    runs             bigint NOT NULL DEFAULT 0,
    total_errors     bigint NOT NULL DEFAULT 0,
    last_error_ns    bigint NOT NULL DEFAULT 0,
    last_start_ns    bigint NOT NULL DEFAULT 0,
    wake_seq         bigint NOT NULL DEFAULT 0    -- bumped by writes that create work
);

INSERT INTO processes (name, frequency_ms) VALUES
    ('want_reconciler', 10000),
    ('taint_propagator', 10000),
    ('retention', 3600000),
    ('run_reaper', 60000);

-- Work items: on exactly one of the three lists (1 active, 2 cleanup,
-- 3 dropped). params and status are serialized ProcessParams / ProcessStatus.
CREATE TABLE process_work (
    process          text     NOT NULL,
    name             text     NOT NULL,
    list             smallint NOT NULL DEFAULT 1,
    state            int      NOT NULL DEFAULT 1,
    modified_ns      bigint   NOT NULL DEFAULT 0,
    params           bytea    NOT NULL DEFAULT '',
    status           bytea    NOT NULL DEFAULT '',
    attempts         bigint   NOT NULL DEFAULT 0,
    next_attempt_ns  bigint   NOT NULL DEFAULT 0,
    build_request_id text     NOT NULL DEFAULT '',
    PRIMARY KEY (process, name)
);
CREATE INDEX process_work_list ON process_work (process, list, name);

-- RunProcessNow operations (the seed's WorkResponse by id).
CREATE TABLE process_operations (
    op_id      text PRIMARY KEY,
    process    text   NOT NULL,
    state      int    NOT NULL DEFAULT 1,  -- databuild.v1.ProcessState
    created_ns bigint NOT NULL,
    updated_ns bigint NOT NULL
);
CREATE INDEX process_operations_pending ON process_operations (process) WHERE state IN (1, 2);

-- Lineage for taint propagation: the inputs each partition was last
-- scheduled to be built from (JobEvent config of its latest job run),
-- written by the event log's projection in the JobEvent's transaction.
CREATE TABLE partition_inputs (
    ref        text NOT NULL,
    input      text NOT NULL,
    job_run_id text NOT NULL DEFAULT '',
    PRIMARY KEY (ref, input)
);
CREATE INDEX partition_inputs_input ON partition_inputs (input);
