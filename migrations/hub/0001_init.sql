-- edgecart hub schema, release 1. Never edit once released: add a new numbered file instead.
-- Times are unix milliseconds; `version` columns hold HLC timestamps (LWW rows).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Every node that ever connected, with both sync cursors.
CREATE TABLE nodes (
    node_id          TEXT PRIMARY KEY,
    node_cursor      INTEGER NOT NULL DEFAULT 0,  -- highest node change applied here
    hub_cursor       INTEGER NOT NULL DEFAULT 0,  -- highest hub change the node acknowledged
    node_last_seq    INTEGER NOT NULL DEFAULT 0,  -- the node's newest change, as last reported
    release          TEXT NOT NULL DEFAULT '',
    protocol_version INTEGER NOT NULL DEFAULT 0,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT COLLATE NOCASE,
    name          TEXT NOT NULL,
    password_hash TEXT,
    role          TEXT NOT NULL,
    status        TEXT NOT NULL,
    conflicted    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    version       TEXT NOT NULL
) STRICT;
-- The hub arbitrates email uniqueness across stores: the first account it sees keeps the email.
CREATE UNIQUE INDEX users_email ON users (email) WHERE conflicted = 0 AND email IS NOT NULL;

CREATE TABLE categories (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    version     TEXT NOT NULL
) STRICT;

CREATE TABLE products (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    price_amount INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    category_id  TEXT,
    status       TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      TEXT NOT NULL
) STRICT;

-- Every cell of every product's bounded counter (the hub holds them all).
CREATE TABLE stock_entries (
    product_id TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('inc', 'dec', 'xfer')),
    actor      TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    value      INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (product_id, kind, actor, target)
) STRICT, WITHOUT ROWID;

-- Units sold per node over time, for the allocation policy's "share by recent sales".
CREATE TABLE sales (
    product_id TEXT NOT NULL,
    node_id    TEXT NOT NULL,
    at         INTEGER NOT NULL,
    quantity   INTEGER NOT NULL
) STRICT;
CREATE INDEX sales_by_product ON sales (product_id, at);

CREATE TABLE allocation_policy (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    floor_per_node  INTEGER NOT NULL,
    reserve_percent INTEGER NOT NULL
) STRICT;
INSERT INTO allocation_policy (id, floor_per_node, reserve_percent) VALUES (1, 5, 10);

-- Read copies of the orders the nodes own.
CREATE TABLE orders (
    id           TEXT PRIMARY KEY,
    node_id      TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    status       TEXT NOT NULL,
    total_amount INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    items        TEXT NOT NULL,   -- JSON array of OrderItemPayload
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      TEXT NOT NULL
) STRICT;
CREATE INDEX orders_by_node ON orders (node_id, id);

-- Payments as the nodes report them (charged by the hub in a later release).
CREATE TABLE payments (
    id       TEXT PRIMARY KEY,
    node_id  TEXT NOT NULL,
    payload  TEXT NOT NULL,
    version  TEXT NOT NULL
) STRICT;

-- The hub's outbox. audience NULL = every node; otherwise the one node it is for.
CREATE TABLE changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    audience   TEXT,
    entity     TEXT NOT NULL,
    entity_id  TEXT NOT NULL,
    version    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX changes_by_audience ON changes (audience, seq);
