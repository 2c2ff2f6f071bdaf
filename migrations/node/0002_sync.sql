-- Sync with the hub (release 2).

-- Set when the hub finds another account already owns this email: the account cannot log in.
ALTER TABLE users ADD COLUMN conflicted INTEGER NOT NULL DEFAULT 0;
-- The email it registered with, kept for support while `email` is cleared.
ALTER TABLE users ADD COLUMN conflicted_email TEXT;

-- Net stock of every other actor, as last told by the hub (for `stock.global`).
CREATE TABLE stock_remote (
    product_id TEXT PRIMARY KEY,
    others_net INTEGER NOT NULL,
    version    TEXT NOT NULL
) STRICT;

-- Hub commands already applied (each is applied once, however often it is delivered).
CREATE TABLE sync_commands (
    id         TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT;

-- The highest hub change applied here.
ALTER TABLE sync_peers ADD COLUMN hub_cursor INTEGER NOT NULL DEFAULT 0;
INSERT INTO sync_peers (peer, acked_seq, last_sync_at, hub_cursor) VALUES ('hub', 0, NULL, 0)
    ON CONFLICT (peer) DO NOTHING;
