-- Voicemail messages (media service). Operational data: written through Store.data(), which
-- does not bump meta.version (a message is not routing configuration).
-- The audio is the message itself: 8 kHz 16-bit mono PCM, stored in the same row so that a
-- message exists whole or not at all and every node sees it.
CREATE TABLE voicemail_messages (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    mailbox TEXT NOT NULL,
    caller TEXT,
    dialled TEXT NOT NULL,
    received_at TEXT NOT NULL,
    duration DOUBLE PRECISION NOT NULL,
    heard BOOLEAN NOT NULL DEFAULT FALSE,
    audio BYTEA NOT NULL
);
CREATE INDEX voicemail_mailbox ON voicemail_messages (tenant_id, mailbox, received_at);
CREATE INDEX voicemail_received ON voicemail_messages (received_at);
