-- 0003: build leases (which graph-service instance coordinates which build).
CREATE TABLE build_leases (
    build_request_id text PRIMARY KEY,
    owner            text   NOT NULL,
    expires_ns       bigint NOT NULL
);
