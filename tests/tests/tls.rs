//! TLS on the hub's gRPC port, with real processes and certificates made by the `openssl` CLI:
//! a store that trusts the hub's CA syncs over TLS, one that trusts another CA never connects,
//! a plaintext client gets nothing; without TLS the hub refuses a non-loopback address unless
//! `--allow-plaintext`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgecart_e2e::{
    ADMIN_TOKEN, Proc, TestHub, TestNode, admin_login, bin, get_json_auth, wait_until,
};
use reqwest::Client;

const CONVERGE: Duration = Duration::from_secs(20);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` in `dir`: (`name`.pem, `name`.key).
fn ca(dir: &Path, name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    dir.join(format!("{name}.pem"))
}

/// A server certificate for 127.0.0.1 signed by CA `ca`: (hub.pem, hub.key).
fn server_cert(dir: &Path, ca: &str) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=edgecart-hub",
            "-keyout",
            "hub.key",
            "-out",
            "hub.csr",
        ],
    );
    std::fs::write(
        dir.join("hub.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "hub.csr",
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "hub.ext",
            "-out",
            "hub.pem",
        ],
    );
    (dir.join("hub.pem"), dir.join("hub.key"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `edgecart-admin` against `url`; (success, stdout, stderr).
fn admin(url: &str, ca: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin("edgecart-admin"));
    cmd.args(["--hub", url, "--token", ADMIN_TOKEN]);
    if let Some(ca) = ca {
        cmd.args(["--hub-ca", s(ca)]);
    }
    let out = cmd.args(args).output().expect("edgecart-admin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn hub_connected(client: &Client, node: &TestNode, admin: &str) -> bool {
    get_json_auth(client, node.url("/v1/sync/status"), admin).await["hub_connected"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_that_trust_the_hubs_ca_sync_over_tls_and_nothing_else_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let good_ca = ca(&certs, "shop-ca");
    let other_ca = ca(&certs, "other-ca");
    let (cert, key) = server_cert(&certs, "shop-ca");
    let hub = TestHub::start_with(
        &dir.path().join("hub"),
        0,
        &["--tls-cert", s(&cert), "--tls-key", s(&key)],
    );
    let url = format!("https://127.0.0.1:{}", hub.proc.addr.port());

    // The operator's CLI trusts the CA with --hub-ca; without it (system roots) it is refused.
    let (ok, cred_good, err) = admin(&url, Some(&good_ca), &["nodes", "enroll", "store-tls"]);
    assert!(ok && cred_good.starts_with("ecn_"), "{err}");
    let (ok, cred_other, err) = admin(&url, Some(&good_ca), &["nodes", "enroll", "store-other"]);
    assert!(ok, "{err}");
    let (ok, _, _) = admin(&url, None, &["nodes"]);
    assert!(!ok, "an untrusted certificate is refused");
    let (ok, _, _) = admin(&url, Some(&other_ca), &["nodes"]);
    assert!(!ok, "a certificate from another CA is refused");

    // A store trusting the CA syncs over TLS.
    let good = TestNode::start_with(
        "store-tls",
        &dir.path().join("store-tls"),
        Some(&url),
        &cred_good,
        &["--hub-ca", s(&good_ca)],
    );
    let client = Client::new();
    let good_admin = admin_login(&client, &good).await;
    wait_until(
        CONVERGE,
        "the TLS store to connect",
        || async {
            hub_connected(&client, &good, &good_admin)
                .await
                .then_some(())
        },
        || async { format!("hub:\n{}\nnode:\n{}", hub.proc.log(), good.proc.log()) },
    )
    .await;

    // A store trusting another CA never gets a stream: it fails the handshake, again and again.
    let other = TestNode::start_with(
        "store-other",
        &dir.path().join("store-other"),
        Some(&url),
        &cred_other,
        &["--hub-ca", s(&other_ca)],
    );
    let other_admin = admin_login(&client, &other).await;
    wait_until(
        CONVERGE,
        "the untrusting store to fail twice",
        || async { (other.proc.log().matches("sync stream failed").count() >= 2).then_some(()) },
        || async { format!("node:\n{}", other.proc.log()) },
    )
    .await;
    assert!(!hub_connected(&client, &other, &other_admin).await);
    let (ok, listed, err) = admin(&url, Some(&good_ca), &["nodes"]);
    assert!(ok, "{err}");
    assert!(
        listed.contains("store-tls") && !listed.contains("store-other"),
        "{listed}"
    );

    // A plaintext client gets nothing: no health answer, no sync.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.proc.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let answered = match plain.connect().await {
        Ok(ch) => tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!answered, "plaintext gRPC was answered on the TLS port");
    // The credential never appears in a log.
    assert!(!hub.proc.log().contains(&cred_good));
    assert!(!good.proc.log().contains(&cred_good));
}

fn hub_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--data-dir",
        s(dir),
        "--grpc-addr",
        "0.0.0.0:0",
        "--admin-token",
        ADMIN_TOKEN,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

#[test]
fn without_tls_the_hub_serves_loopback_only_unless_plaintext_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("edgecart-hub"))
        .args(hub_args(&dir.path().join("hub"), &[]))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CONVERGE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the hub kept running in plaintext on 0.0.0.0");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("configure TLS"), "{stderr}");
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    // Explicitly allowed: it serves (and says where).
    let hub = Proc::start(
        "edgecart-hub",
        &hub_args(&dir.path().join("hub"), &["--allow-plaintext"]),
        "listening on grpc://",
    );
    assert!(hub.addr.ip().is_unspecified(), "{}", hub.addr);
}
