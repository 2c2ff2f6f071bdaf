-- Per-store credentials (issue 11).

-- A store the hub issued credentials to (NodeAdmin/EnrollNode). Kept apart from `nodes`, which
-- is the store's sync state and is created at its first Hello: an enrolled store that never
-- connected must not get allocations.
CREATE TABLE enrollments (
    node_id       TEXT PRIMARY KEY,
    -- Whether the hub applies the store's product and category changes (1: today's behaviour).
    catalog_edits INTEGER NOT NULL DEFAULT 1,
    enrolled_at   INTEGER NOT NULL
);

-- One row per credential: only the SHA-256 of its 32-byte random secret is kept (a fast hash is
-- enough for a high-entropy secret: there is nothing to guess). Revoked rows stay, for audit.
CREATE TABLE node_credentials (
    id            TEXT PRIMARY KEY,
    node_id       TEXT NOT NULL REFERENCES enrollments (node_id),
    secret_sha256 BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX node_credentials_by_node ON node_credentials (node_id);

-- Card tokens are kept only until the charge is settled (captured, failed, voided): refunds use
-- the provider's charge id. Triggers, so that every path to a final state forgets the token.
UPDATE ledger SET card_token = NULL WHERE status IN ('captured', 'failed', 'voided');
CREATE TRIGGER ledger_forget_card_token_on_update AFTER UPDATE OF status ON ledger
WHEN NEW.status IN ('captured', 'failed', 'voided') AND NEW.card_token IS NOT NULL
BEGIN
    UPDATE ledger SET card_token = NULL WHERE payment_id = NEW.payment_id;
END;
CREATE TRIGGER ledger_forget_card_token_on_insert AFTER INSERT ON ledger
WHEN NEW.status IN ('captured', 'failed', 'voided') AND NEW.card_token IS NOT NULL
BEGIN
    UPDATE ledger SET card_token = NULL WHERE payment_id = NEW.payment_id;
END;
-- The stores' payment reports are kept for restores without their card tokens (the ledger has
-- what a charge needs).
UPDATE payments SET payload = json_remove(payload, '$.card_token')
WHERE json_extract(payload, '$.card_token') IS NOT NULL;

-- The store an account was registered at: only that store may report changes of it. NULL for
-- accounts from before this migration (any store may still report those: docs/security.md).
ALTER TABLE users ADD COLUMN origin_node TEXT;
