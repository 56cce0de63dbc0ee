-- 0004: indexes for the query service's read paths (indexes only, no schema
-- changes; see services/query/README.md for the queries they serve).

-- Job runs by target partition: ListJobRuns built_partition_refs,
-- ListBuildRequests built_partition, want summaries' last successful build.
CREATE INDEX IF NOT EXISTS job_runs_targets_gin ON job_runs USING gin (target_partitions);

-- A build's lifecycle events (BuildRequestEvent, BuildCancelEvent) without
-- reading its partition and job events: build summaries' times.
CREATE INDEX IF NOT EXISTS events_build_lifecycle ON events (build_request_id, idx)
    WHERE kind IN (10, 17);

-- Newest-first keyset paging of wants and taints.
CREATE INDEX IF NOT EXISTS wants_created ON wants (created_ns, want_id);
CREATE INDEX IF NOT EXISTS taints_created ON taints (created_ns, event_id);

-- Builds triggered by a want (ListBuildRequests triggering_want_ids).
CREATE INDEX IF NOT EXISTS build_requests_want ON build_requests (want_id) WHERE want_id <> '';
