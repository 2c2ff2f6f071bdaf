//! Enrollment with a bootstrap token (the model: Kubernetes' TLS bootstrap). A store started
//! with `--hub-bootstrap-token` and no `--hub-token` asks the hub for its own credential
//! (`NodeAdmin/EnrollNode`, which is all that token allows), keeps it in its data dir
//! (`hub-credential`, mode 0600) and presents it from then on. The hub enrolls an id once: a
//! stolen bootstrap token cannot take over a store enrolled already (docs/security.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use edgecart_proto::pb;
use tokio_util::sync::CancellationToken;

use super::client::HubLink;
use crate::state::AppState;

const RETRY: Duration = Duration::from_secs(2);

pub fn credential_path(data_dir: &Path) -> PathBuf {
    data_dir.join("hub-credential")
}

/// Obtains this store's credential (kept, or enrolled now, retrying while the hub is
/// unreachable), then runs the sync client with it until `shutdown`.
pub async fn run(state: AppState, hub: HubLink, bootstrap: String, shutdown: CancellationToken) {
    let file = credential_path(&state.data_dir);
    let credential = loop {
        if let Ok(kept) = tokio::fs::read_to_string(&file).await {
            break kept.trim().to_string();
        }
        match enroll(&hub, &bootstrap, state.node_id.as_str()).await {
            Ok(credential) => match keep(&file, &credential) {
                Ok(()) => {
                    tracing::info!("enrolled at the hub with the bootstrap token; credential kept");
                    break credential;
                }
                Err(e) => tracing::error!(error = %e, "could not keep the hub credential"),
            },
            Err(s) if s.code() == tonic::Code::AlreadyExists => tracing::error!(
                "this store id is enrolled at the hub already: give the store its credential \
                 (--hub-token, or `edgecart-admin nodes rotate ID`)"
            ),
            Err(s) => {
                tracing::warn!(code = ?s.code(), error = %s.message(), "enrollment failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.cancelled() => return,
        }
    };
    super::client::run(state, hub, credential, shutdown).await;
}

async fn enroll(hub: &HubLink, bootstrap: &str, node_id: &str) -> Result<String, tonic::Status> {
    let channel = hub
        .endpoint()
        .map_err(|e| tonic::Status::invalid_argument(format!("the hub URL: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connecting to the hub: {e}")))?;
    let mut request = tonic::Request::new(pb::EnrollNodeRequest {
        node_id: node_id.to_string(),
        catalog_edits: None,
    });
    let bearer = format!("Bearer {bootstrap}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("the bootstrap token is not header text"))?;
    request.metadata_mut().insert("authorization", bearer);
    Ok(pb::node_admin_client::NodeAdminClient::new(channel)
        .enroll_node(request)
        .await?
        .into_inner()
        .credential)
}

/// Writes the credential readable by this user only, atomically (a crash leaves no half file).
fn keep(path: &Path, credential: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(&tmp)?;
    f.write_all(credential.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
