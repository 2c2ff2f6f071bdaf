-- edgecart node schema, release 1. Never edit once released: add a new numbered file instead.
-- Times are unix milliseconds (INTEGER). Ids are UUIDv7 text. Money is integer minor units + currency.
-- `version` columns hold the hybrid-logical-clock timestamp of the last write (LWW rows).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- users ------------------------------------------------------------------------------------------
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT UNIQUE COLLATE NOCASE,          -- NULL once the account is erased
    name          TEXT NOT NULL,
    password_hash TEXT,                                -- NULL once the account is erased
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    status        TEXT NOT NULL CHECK (status IN ('active', 'deleted')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    version       TEXT NOT NULL
) STRICT;

-- catalog ----------------------------------------------------------------------------------------
CREATE TABLE categories (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     TEXT NOT NULL
) STRICT;

CREATE TABLE products (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    price_amount INTEGER NOT NULL CHECK (price_amount >= 0),
    currency     TEXT NOT NULL,
    category_id  TEXT REFERENCES categories (id),
    status       TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      TEXT NOT NULL
) STRICT;
CREATE INDEX products_by_category ON products (category_id, id);

-- Cells of the bounded stock counter (edgecart_proto::stock). Each cell only grows; merge = max.
-- kind 'inc'/'dec': target = ''. kind 'xfer': actor = from, target = to.
CREATE TABLE stock_entries (
    product_id TEXT NOT NULL REFERENCES products (id),
    kind       TEXT NOT NULL CHECK (kind IN ('inc', 'dec', 'xfer')),
    actor      TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    value      INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (product_id, kind, actor, target)
) STRICT, WITHOUT ROWID;

-- Derived from stock_entries in the same transaction as every change to them, so listing and
-- filtering by stock is one indexed join instead of a counter evaluation per row.
CREATE TABLE stock_levels (
    product_id     TEXT PRIMARY KEY REFERENCES products (id),
    available_here INTEGER NOT NULL,
    global         INTEGER NOT NULL
) STRICT;

-- orders -----------------------------------------------------------------------------------------
CREATE TABLE orders (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id),
    node_id      TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending_payment', 'paid', 'shipped', 'delivered', 'cancelled')),
    total_amount INTEGER NOT NULL CHECK (total_amount >= 0),
    currency     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX orders_by_user ON orders (user_id, id);

CREATE TABLE order_items (
    order_id     TEXT NOT NULL REFERENCES orders (id),
    line         INTEGER NOT NULL,
    product_id   TEXT NOT NULL REFERENCES products (id),
    product_name TEXT NOT NULL,
    unit_price   INTEGER NOT NULL,
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line)
) STRICT;

CREATE TABLE order_status_history (
    order_id TEXT NOT NULL REFERENCES orders (id),
    seq      INTEGER NOT NULL,
    status   TEXT NOT NULL,
    at       INTEGER NOT NULL,
    actor    TEXT NOT NULL,
    reason   TEXT,
    PRIMARY KEY (order_id, seq)
) STRICT;

-- The first response to a POST carrying an Idempotency-Key, replayed for retries of that key.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status       INTEGER NOT NULL,
    body         TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (user_id, scope, key)
) STRICT;

-- payments ---------------------------------------------------------------------------------------
CREATE TABLE payments (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    user_id        TEXT NOT NULL REFERENCES users (id),
    method         TEXT NOT NULL CHECK (method IN ('card', 'cash')),
    status         TEXT NOT NULL CHECK (status IN ('pending', 'authorized_offline', 'captured', 'failed', 'voided', 'partially_refunded', 'refunded')),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    currency       TEXT NOT NULL,
    card_token     TEXT,
    failure_reason TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;
CREATE INDEX payments_by_order ON payments (order_id);

CREATE TABLE refunds (
    id         TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    status     TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason     TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX refunds_by_payment ON refunds (payment_id);

-- notifications ----------------------------------------------------------------------------------
CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users (id),
    channel         TEXT NOT NULL CHECK (channel IN ('in_app', 'email', 'push')),
    event           TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX notifications_by_user ON notifications (user_id, id);

-- sync -------------------------------------------------------------------------------------------
-- The outbox: every write to replicated data appends here in the same transaction.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    entity     TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    version    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- How far each peer (the hub) has durably applied our change log.
CREATE TABLE sync_peers (
    peer         TEXT PRIMARY KEY,
    acked_seq    INTEGER NOT NULL,
    last_sync_at INTEGER
) STRICT;
