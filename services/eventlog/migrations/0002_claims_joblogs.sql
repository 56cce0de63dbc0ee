-- 0002: partition claims (exactly one job run per partition across build
-- requests and replicas) and the job wrapper's log entries.
CREATE TABLE claims (
    ref              text PRIMARY KEY,
    build_request_id text   NOT NULL,
    job_run_id       text   NOT NULL,
    claimed_ns       bigint NOT NULL
);
CREATE INDEX claims_job_run ON claims (job_run_id);
CREATE INDEX claims_build_request ON claims (build_request_id);

CREATE TABLE job_logs (
    job_run_id text     NOT NULL,
    seq        bigint   NOT NULL,  -- JobLogEntry.sequence_number (from 1)
    ts_ns      bigint   NOT NULL,
    content    smallint NOT NULL,  -- JobLogEntry oneof field number: 5 log, 6 metric, 7 job_event, 8 manifest
    level      int      NOT NULL,  -- LogMessage.level for logs; -1 otherwise
    entry      bytea    NOT NULL,  -- serialized databuild.v1.JobLogEntry
    PRIMARY KEY (job_run_id, seq)
);
CREATE INDEX job_logs_ts ON job_logs (job_run_id, ts_ns);
