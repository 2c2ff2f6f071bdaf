-- Release 6: the W3C trace context (`traceparent`, `tracestate`) of the span that wrote each
-- change-log entry, sent with it so the hub's work joins the store's trace. NULL when traces
-- are off (the default), so an untraced write stores and sends nothing more.
ALTER TABLE changes ADD COLUMN traceparent TEXT;
ALTER TABLE changes ADD COLUMN tracestate TEXT;
