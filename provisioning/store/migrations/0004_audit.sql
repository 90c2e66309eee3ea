-- 0004: the REST API's audit log (provisioning/store/audit.py): one row per successful write
-- through the API: the caller's token and scope, the method, the route template and its path
-- parameters (JSON), the tenant, the time (ISO-8601 UTC text) and the answer's status. Never
-- a request body, never a secret. No foreign keys on purpose: an entry outlives the tenant
-- and the token it names. Rows older than the retention period are swept
-- (`AuditService.sweep`, `[provisioning] audit_retention_days`).
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    token_id TEXT,
    scope TEXT NOT NULL,
    tenant_id TEXT,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    params TEXT NOT NULL,
    status INTEGER NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_tenant_at ON audit_log (tenant_id, at, id);
CREATE INDEX audit_log_token_at ON audit_log (token_id, at, id);
