-- 0001: the initial provisioning schema. Common SQL subset of SQLite and PostgreSQL (see
-- provisioning/store/base.py). Timestamps: ISO-8601 UTC text. Statements end with ";" at
-- the end of a line (the runner splits on that).

CREATE TABLE meta (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL,
    realm TEXT NOT NULL
);
INSERT INTO meta (id, version, realm) VALUES (1, 0, 'softswitch.local');

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    timezone TEXT NOT NULL,
    identity_verified BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX tenants_name_id ON tenants (name, id);

CREATE TABLE tenant_holidays (
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    username TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    ha1_md5 TEXT NOT NULL,
    ha1_sha256 TEXT NOT NULL,
    presented_number TEXT NOT NULL,
    display_name TEXT,
    free_calls_10min BOOLEAN NOT NULL,
    web_phonebook BOOLEAN NOT NULL,
    release_seq BIGINT NOT NULL DEFAULT 0,
    release_requested_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX devices_tenant_id ON devices (tenant_id, id);

CREATE TABLE numbers (
    e164 TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    label TEXT,
    label_in_display_name BOOLEAN NOT NULL,
    app_ring_delay DOUBLE PRECISION NOT NULL,
    max_ring_time DOUBLE PRECISION NOT NULL,
    opt_after_hours BOOLEAN NOT NULL,
    opt_voicemail BOOLEAN NOT NULL,
    opt_forwarding BOOLEAN NOT NULL,
    opt_recording BOOLEAN NOT NULL,
    ah_enabled BOOLEAN NOT NULL,
    ah_weekday TEXT NOT NULL,
    ah_saturday TEXT NOT NULL,
    ah_sunday TEXT NOT NULL,
    ah_holiday TEXT NOT NULL,
    ah_announcement TEXT NOT NULL,
    fwd_enabled BOOLEAN NOT NULL,
    fwd_target TEXT,
    voicemail_ring_time INTEGER NOT NULL,
    recording_notice BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX numbers_tenant_e164 ON numbers (tenant_id, e164);
CREATE UNIQUE INDEX numbers_one_contract ON numbers (tenant_id) WHERE kind = 'contract';

CREATE TABLE ring_group_members (
    number TEXT NOT NULL REFERENCES numbers (e164) ON DELETE CASCADE,
    device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    PRIMARY KEY (number, device_id)
);
CREATE INDEX ring_group_members_device ON ring_group_members (device_id);

CREATE TABLE prompts (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    audio BYTEA NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX prompts_tenant ON prompts (tenant_id, id);

CREATE TABLE phonebook_entries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    number TEXT NOT NULL,
    company TEXT,
    note TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX phonebook_tenant_name_id ON phonebook_entries (tenant_id, name, id);

CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    transport TEXT NOT NULL,
    allowed_sources TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    secret_sha256 TEXT NOT NULL,
    scope TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    label TEXT,
    created_at TEXT NOT NULL
);
