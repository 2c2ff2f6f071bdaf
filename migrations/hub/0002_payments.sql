-- Payments at the hub (release 2): the ledger of every payment the nodes report, charged at the
-- provider exactly once (the payment id is the provider's idempotency key), and refunds.

CREATE TABLE ledger (
    payment_id         TEXT PRIMARY KEY,
    node_id            TEXT NOT NULL,
    order_id           TEXT NOT NULL,
    method             TEXT NOT NULL CHECK (method IN ('card', 'cash')),
    amount             INTEGER NOT NULL,
    currency           TEXT NOT NULL,
    card_token         TEXT,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'captured', 'failed', 'voided')),
    offline            INTEGER NOT NULL DEFAULT 0,
    provider_charge_id TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_due ON ledger (status, next_attempt_at);
CREATE INDEX ledger_by_node ON ledger (node_id, payment_id);

CREATE TABLE ledger_refunds (
    refund_id          TEXT PRIMARY KEY,
    payment_id         TEXT NOT NULL REFERENCES ledger (payment_id),
    amount             INTEGER NOT NULL CHECK (amount > 0),
    status             TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason             TEXT,
    provider_refund_id TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_refunds_due ON ledger_refunds (status, next_attempt_at);
