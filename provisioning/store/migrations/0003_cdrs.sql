-- Call detail records (switch/cdr_writer.py writes them through Store.data(): operational
-- data, no routing version bump). One row per call, written once when the call ends; the
-- writer's replays are idempotent on cdr_id (INSERT ... ON CONFLICT (cdr_id) DO NOTHING).
-- No foreign key to tenants: a CDR is a financial record that must be writable whatever
-- happened to the tenant meanwhile (a call still up when its tenant is deleted), and one
-- batch must never fail for one row. Retention deletes old rows (Store: CallRecordRepo).
-- Money is in tenths of a yen; times are ISO-8601 UTC text like the rest of the schema.
CREATE TABLE cdrs (
    cdr_id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL,
    node TEXT NOT NULL,
    tenant_id TEXT,
    direction TEXT NOT NULL,
    outcome TEXT NOT NULL,
    dialled TEXT NOT NULL,
    number TEXT,
    caller TEXT,
    callee TEXT,
    caller_device TEXT,
    caller_device_kind TEXT,
    rang TEXT NOT NULL,
    answered_device TEXT,
    answered_device_kind TEXT,
    shown_to TEXT NOT NULL,
    presented_number TEXT,
    forwarded_to TEXT,
    started_at TEXT NOT NULL,
    answered_at TEXT,
    ended_at TEXT NOT NULL,
    billable_seconds BIGINT NOT NULL,
    sip_status INTEGER,
    end_reason TEXT,
    rule TEXT,
    recorded BOOLEAN NOT NULL,
    has_plan BOOLEAN NOT NULL,
    caller_category TEXT,
    billing_month TEXT,
    tariff_version TEXT,
    rated_as TEXT,
    call_class TEXT,
    caller_kind TEXT,
    units INTEGER,
    charge BIGINT,
    free_seconds INTEGER,
    plan_savings BIGINT,
    rate_price BIGINT,
    rate_unit_seconds INTEGER,
    rating_error TEXT,
    written_at TEXT NOT NULL
);
-- History paging (newest first, keyset on started_at, cdr_id), per tenant and across tenants.
CREATE INDEX cdrs_tenant_start ON cdrs (tenant_id, started_at, cdr_id);
CREATE INDEX cdrs_start ON cdrs (started_at, cdr_id);
CREATE INDEX cdrs_tenant_number_start ON cdrs (tenant_id, number, started_at, cdr_id);
-- Statements: one tenant's month, and every tenant's month for the operator.
CREATE INDEX cdrs_month_tenant ON cdrs (billing_month, tenant_id, started_at, cdr_id);

-- Every ID concerned by a call and its role (caller, answered, rang, shown): an ID's history
-- (the device-facing view) and the device filter. Written in the CDR's transaction.
CREATE TABLE cdr_devices (
    cdr_id TEXT NOT NULL REFERENCES cdrs (cdr_id) ON DELETE CASCADE,
    tenant_id TEXT,
    device_id TEXT NOT NULL,
    role TEXT NOT NULL,
    started_at TEXT NOT NULL,
    PRIMARY KEY (cdr_id, device_id)
);
CREATE INDEX cdr_devices_tenant_device_start ON cdr_devices (tenant_id, device_id, started_at, cdr_id);
