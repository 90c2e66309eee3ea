-- Call recordings (the number's recording option). Operational data: written through
-- Store.data() (no meta.version bump). The audio is NOT in the row: a recording is a
-- two-channel WAV of the whole call (8 kHz 16-bit stereo, ~115 MB an hour), kept as a file
-- under the recordings directory; `path` is relative to that directory, unique (a file is
-- registered once, whichever node sees it first).
CREATE TABLE recordings (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number TEXT NOT NULL,
    direction TEXT NOT NULL,
    other_party TEXT,
    device_id TEXT,
    call_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    answered_at TEXT,
    ended_at TEXT NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    size_bytes BIGINT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    relay TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX recordings_tenant_started ON recordings (tenant_id, started_at, id);
CREATE INDEX recordings_started ON recordings (started_at);
