-- 0006: every want a build request serves. A build submitted by
-- want_reconciler for several wants carries all their ids in its
-- BuildRequestEvent (BuildRequestWants, field 1001; the seed's want_id keeps
-- the first); the projection (processes_proj.c) stores them here, and with
-- them any single want_id, so ListBuildRequests' triggering_want_ids filter
-- reads this one column.
ALTER TABLE build_requests ADD COLUMN want_ids text[] NOT NULL DEFAULT '{}';
UPDATE build_requests SET want_ids = ARRAY[want_id] WHERE want_id <> '';
CREATE INDEX build_requests_want_ids_gin ON build_requests USING gin (want_ids);

-- The job runs still in flight (SCHEDULED, RUNNING): few at any time, looked
-- up by taint_propagator's stale cancellation (ProcessStore.Downstream).
CREATE INDEX job_runs_in_flight ON job_runs (job_run_id) WHERE status IN (1, 2);
