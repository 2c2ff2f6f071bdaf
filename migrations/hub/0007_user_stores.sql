-- Least data per store (docs/security.md): a customer account reaches a store only where the
-- customer registered (the origin) or signed in. The hub sends an account's changes and
-- snapshots to these stores only.
CREATE TABLE user_stores (
    user_id TEXT NOT NULL REFERENCES users (id),
    node_id TEXT NOT NULL,
    PRIMARY KEY (user_id, node_id)
) WITHOUT ROWID;

INSERT OR IGNORE INTO user_stores (user_id, node_id)
SELECT id, origin_node FROM users WHERE origin_node IS NOT NULL;
