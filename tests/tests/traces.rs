//! Traces over OTLP/HTTP (protobuf), configured by the standard OpenTelemetry variables: an
//! OTLP receiver inside this test (a tiny axum server decoding `ExportTraceServiceRequest`)
//! gets the spans of both services, named by their default `service.name`, and the last ones
//! arrive because a graceful shutdown flushes them (the batch delay is set far beyond the test).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgecart_e2e::{ADMIN_TOKEN, JWT_SECRET, bin, enroll_at, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use reqwest::Client;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// (service.name, span name, span attributes as `key=value`, trace id in hex)
type Received = Arc<Mutex<Vec<(String, String, Vec<String>, String)>>>;

async fn otlp_receiver() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                for rs in req.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                            AnyValue::StringValue(s) => Some(s.clone()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                        let attrs = span
                            .attributes
                            .iter()
                            .map(|kv| {
                                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                    Some(AnyValue::StringValue(s)) => s.clone(),
                                    other => format!("{other:?}"),
                                };
                                format!("{}={v}", kv.key)
                            })
                            .collect();
                        let trace_id: String =
                            span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                        sink.lock()
                            .unwrap()
                            .push((service.clone(), span.name, attrs, trace_id));
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// A binary with OTEL_* set; stderr collected; killed on drop if still running.
struct Traced {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Traced {
    fn start(binary: &str, args: &[&str], otlp: SocketAddr, marker: &str) -> Traced {
        let mut child = Command::new(bin(binary))
            .args(args)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env_remove("OTEL_SERVICE_NAME")
            // No scheduled export during the test: what arrives was flushed at shutdown.
            .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let found = log.lock().unwrap().iter().find_map(|l| {
                let rest = l.split(marker).nth(1)?;
                rest.chars()
                    .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | ':'))
                    .collect::<String>()
                    .parse()
                    .ok()
            });
            if let Some(a) = found {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "{binary}: {:?}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Traced { child, addr, log }
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}: {:?}", self.log.lock().unwrap());
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Traced {
    fn hub(dir: &std::path::Path, otlp: SocketAddr) -> Traced {
        let dir = dir.to_str().unwrap();
        let args = [
            "--data-dir",
            dir,
            "--grpc-addr",
            "127.0.0.1:0",
            "--admin-token",
            ADMIN_TOKEN,
        ];
        Traced::start("edgecart-hub", &args, otlp, "listening on grpc://")
    }

    fn node(
        id: &str,
        dir: &std::path::Path,
        hub_url: &str,
        credential: &str,
        extra: &[&str],
        otlp: SocketAddr,
    ) -> Traced {
        let mut args = vec![
            "--node-id",
            id,
            "--data-dir",
            dir.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--jwt-secret",
            JWT_SECRET,
            "--hub-url",
            hub_url,
            "--hub-token",
            credential,
        ];
        args.extend_from_slice(extra);
        Traced::start("edgecart-node", &args, otlp, "listening on http://")
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_export_spans_over_otlp_and_flush_them_on_shutdown() {
    let (otlp, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let node_dir = dir.path().join("node");
    let mut hub = Traced::hub(&hub_dir, otlp);
    let hub_url = format!("http://{}", hub.addr);
    let credential = enroll_at(&hub_url, "store-otel");
    let mut node = Traced::node(
        "store-otel",
        &node_dir,
        &hub_url,
        &credential,
        &["--log-format", "json"],
        otlp,
    );
    let client = Client::new();
    let base = format!("http://{}", node.addr);
    let r = client
        .post(format!("{base}/v1/users"))
        .header("x-request-id", "otel-signup-1")
        .json(&json!({"email": "otel@shop.test", "name": "Otel", "password": "otel-pass-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The node's stream is open at the hub before both are stopped.
    wait_until(
        WAIT,
        "the hub to log the node's connection",
        || async {
            hub.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("node connected"))
                .then_some(())
        },
        || async { format!("{:?}", hub.log.lock().unwrap()) },
    )
    .await;
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing is exported before the batch delay or a shutdown"
    );

    node.stop();
    hub.stop();
    let spans = received.lock().unwrap().clone();
    let node_request = spans.iter().find(|(service, name, attrs, _)| {
        service == "edgecart-node"
            && name == "http"
            && attrs.iter().any(|a| a == "request_id=otel-signup-1")
            && attrs.iter().any(|a| a == "path=/v1/users")
    });
    let (_, _, _, trace_id) =
        node_request.unwrap_or_else(|| panic!("no span of the sign-up: {spans:?}"));
    // The sign-up's log line names the trace its span was exported in.
    let signup: serde_json::Value = node
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["message"] == "account created" && l["role"] == "customer")
        .expect("the sign-up's log line");
    assert_eq!(signup["span"]["trace_id"], trace_id.as_str(), "{signup}");
    assert_eq!(signup["span"]["request_id"], "otel-signup-1", "{signup}");
    let hub_stream = spans.iter().find(|(service, name, attrs, _)| {
        service == "edgecart-hub"
            && name == "grpc"
            && attrs.iter().any(|a| a == "method=edgecart.v1.Sync/Stream")
    });
    assert!(
        hub_stream.is_some(),
        "no span of the sync stream: {spans:?}"
    );
    // No secret travels in span attributes either.
    let all = format!("{spans:?}");
    for secret in [credential.as_str(), JWT_SECRET, "otel-pass-123"] {
        assert!(!all.contains(secret), "a span carries a secret: {all}");
    }
}

/// One card checkout is one trace across both services: the shopper's client sends a W3C
/// `traceparent` with both requests, the node's change-log entries carry the context to the hub,
/// the hub applies them in spans of that trace, the payment worker's provider call — later,
/// outside any request — continues it from the context kept on the ledger entry, and the
/// outcome's entry carries it back to the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_checkout_is_one_trace_across_node_stream_and_hub() {
    use edgecart_e2e::AdminToken;
    use edgecart_proto::pb;

    let (otlp, received) = otlp_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let hub_dir = dir.path().join("hub");
    let node_dir = dir.path().join("node");
    let mut hub = Traced::hub(&hub_dir, otlp);
    let hub_url = format!("http://{}", hub.addr);
    let channel = tonic::transport::Channel::from_shared(hub_url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let product = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
        channel.clone(),
        AdminToken(ADMIN_TOKEN),
    )
    .create_product(pb::CreateProductRequest {
        name: "Traced kettle".into(),
        description: "a kettle".into(),
        price: Some(pb::Money {
            amount: 2400,
            currency: "USD".into(),
        }),
        category_id: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
    .id;
    pb::inventory_admin_client::InventoryAdminClient::with_interceptor(
        channel,
        AdminToken(ADMIN_TOKEN),
    )
    .receive_stock(pb::ReceiveStockRequest {
        product_id: product.clone(),
        quantity: 10,
    })
    .await
    .unwrap();
    let credential = enroll_at(&hub_url, "store-trace");
    let mut node = Traced::node("store-trace", &node_dir, &hub_url, &credential, &[], otlp);
    let client = Client::new();
    let base = format!("http://{}", node.addr);
    let node_log = || async { format!("{:?}", node.log.lock().unwrap()) };
    wait_until(
        WAIT,
        "selling rights at the node",
        || async {
            let p: serde_json::Value = client
                .get(format!("{base}/v1/products/{product}"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (p["stock"]["available_here"].as_i64()? > 0).then_some(())
        },
        node_log,
    )
    .await;
    let r = client
        .post(format!("{base}/v1/users"))
        .json(&json!({"email": "trace@shop.test", "name": "Trace", "password": "trace-pass-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let token = r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();

    // The shopper's client traces the checkout: both requests carry its context.
    let trace_id: String = uuid_like_hex();
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let r = client
        .post(format!("{base}/v1/orders"))
        .bearer_auth(&token)
        .header("traceparent", &traceparent)
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let order = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .post(format!("{base}/v1/orders/{order}/payments"))
        .bearer_auth(&token)
        .header("traceparent", &traceparent)
        .json(&json!({"method": "card", "card_token": "tok_visa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let payment = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The hub charged the card (the sim provider) and the outcome came back to the store.
    wait_until(
        WAIT,
        "the card capture to reach the node",
        || async {
            let p: serde_json::Value = client
                .get(format!("{base}/v1/payments/{payment}"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (p["status"] == "captured").then_some(())
        },
        || async { format!("{:?}", hub.log.lock().unwrap()) },
    )
    .await;

    node.stop();
    hub.stop();
    let spans = received.lock().unwrap().clone();
    let in_trace = |service: &str, name: &str, attr: &str| {
        spans.iter().any(|(s, n, attrs, t)| {
            s == service && n == name && t == &trace_id && attrs.iter().any(|a| a == attr)
        })
    };
    assert!(
        in_trace("edgecart-node", "http", "path=/v1/orders"),
        "the order request is not in the checkout's trace: {spans:?}"
    );
    assert!(
        in_trace(
            "edgecart-node",
            "http",
            &format!("path=/v1/orders/{order}/payments")
        ),
        "the payment request is not in the checkout's trace: {spans:?}"
    );
    assert!(
        in_trace("edgecart-hub", "apply_change", "entity=order"),
        "the hub's apply of the order is not in the checkout's trace: {spans:?}"
    );
    assert!(
        in_trace("edgecart-hub", "apply_change", "entity=payment"),
        "the hub's apply of the payment is not in the checkout's trace: {spans:?}"
    );
    assert!(
        in_trace(
            "edgecart-hub",
            "provider.charge",
            &format!("payment_id={payment}")
        ),
        "the provider call is not in the checkout's trace: {spans:?}"
    );
    assert!(
        in_trace(
            "edgecart-node",
            "apply_hub_change",
            "entity=payment_outcome"
        ),
        "the node's apply of the charge's outcome is not in the checkout's trace: {spans:?}"
    );
    // The sign-up (no client context) is a trace of its own, not the checkout's.
    let signup = spans
        .iter()
        .find(|(s, n, attrs, _)| {
            s == "edgecart-node" && n == "http" && attrs.iter().any(|a| a == "path=/v1/users")
        })
        .unwrap_or_else(|| panic!("no span of the sign-up: {spans:?}"));
    assert_ne!(signup.3, trace_id);
}

/// A fresh random 128-bit trace id in lower-case hex.
fn uuid_like_hex() -> String {
    (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}
