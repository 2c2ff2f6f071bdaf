-- Bounded growth (issue 10).

-- A decommissioned store: set once, never cleared. Its Sync connections are refused, it gets
-- no allocations and no longer holds back change-log compaction; the hub writes its stock cells
-- from then on (docs/decisions.md, "Decommissioning a store").
ALTER TABLE nodes ADD COLUMN decommissioned_at INTEGER;

-- Pruning sales older than the allocation window deletes by time across products.
CREATE INDEX sales_by_time ON sales (at);

-- A restored node's own payments are re-sent page by page.
CREATE INDEX payments_by_node ON payments (node_id, id);
