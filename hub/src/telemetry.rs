//! Logging and tracing set-up: `RUST_LOG`-style filtering, human-readable or JSON lines on
//! stderr, and spans exported over OTLP when the standard OpenTelemetry variables ask for it
//! (the same rules as the node's: see `edgecart_node::telemetry`; `OTEL_SERVICE_NAME` defaults
//! to `edgecart-hub`).
//!
//! Request ids: every gRPC call runs inside a `grpc` span carrying its method and `request_id`
//! (see `observability::GrpcLayer`), and both formats print the spans of a line. The tokens
//! never reach a log line: the configuration's `Debug` leaves them out.
//!
//! One trace across store and hub: a store's change-log entry carries the W3C trace context of
//! the request that wrote it; applying it runs in an `apply_change` span continuing that trace
//! ([`continue_from`]), and a card payment's context is kept on its ledger entry so the
//! worker's `provider.charge` span, much later, joins the same trace.

pub use edgecart_proto::telemetry::{
    LogFormat, Telemetry, continue_from, exporting, record_trace_id,
};

pub fn init(format: LogFormat) -> Telemetry {
    edgecart_proto::telemetry::init(format, "edgecart-hub", "info")
}
