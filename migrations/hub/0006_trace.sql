-- Release 6: the W3C trace context of the store's change that reported a payment, kept on its
-- ledger entry so the payment worker's provider call joins the store's checkout trace (the
-- call happens later, outside any request). NULL when the store does not export traces.
ALTER TABLE ledger ADD COLUMN traceparent TEXT;
ALTER TABLE ledger ADD COLUMN tracestate TEXT;
-- The same context on the outcome the hub sends back to the store (`changes`), so the store's
-- apply of a charge's outcome joins the checkout's trace too.
ALTER TABLE changes ADD COLUMN traceparent TEXT;
ALTER TABLE changes ADD COLUMN tracestate TEXT;
