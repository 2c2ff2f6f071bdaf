-- Release 5: the `/metrics` gauges of offline card payments waiting (count, amount, oldest age)
-- are read at every scrape; this partial index holds only those rows, so the read never scans
-- the whole payments table.
CREATE INDEX payments_offline ON payments (created_at) WHERE status = 'authorized_offline';
