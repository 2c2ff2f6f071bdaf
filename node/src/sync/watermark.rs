//! The node's own record of how far its change log got, kept beside the database
//! (`edgecart-node.seq`). If the database file is replaced by an older copy, its change log is
//! behind this record at the next start: the node knows it was restored before the hub tells
//! it, and does not sell what the old copy may count wrongly until the hub has re-synced it
//! (`catalog::inventory::gate`). The record is written about once a second without fsync: it
//! may lag after a crash (then a restore within that second goes unnoticed here, and the hub
//! still detects it), never run ahead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;
use crate::sync::changelog;

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("edgecart-node.seq")
}

/// Present while a restore the node noticed waits for the hub's re-sync (so that a restart in
/// between still knows).
pub fn marker(data_dir: &Path) -> PathBuf {
    data_dir.join("edgecart-node.restored")
}

/// Runs file I/O on the blocking pool: never on an async worker thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// At start-up: is this database older than what the node had written (restored from a copy),
/// or is an earlier-noticed restore still waiting for the hub's re-sync?
pub async fn restore_noticed(data_dir: &Path, last_seq: i64) -> bool {
    let (marker, record) = (marker(data_dir), path(data_dir));
    blocking(move || {
        Ok(marker.exists() || read_sync(&record).is_some_and(|recorded| recorded > last_seq))
    })
    .await
    .unwrap_or(false)
}

/// Records a restore noticed at start-up: the change log of the copy ended at `copy_seq`.
pub async fn set_marker(path: &Path, copy_seq: i64) -> std::io::Result<()> {
    let path = path.to_path_buf();
    blocking(move || {
        if path.exists() {
            // A restart before the re-sync: the first start knew where the copy ended.
            return Ok(());
        }
        std::fs::write(path, copy_seq.to_string())
    })
    .await
}

/// Where the restored copy's change log ended, while a restore waits for the hub's re-sync.
pub async fn marker_seq(path: &Path) -> Option<i64> {
    let path = path.to_path_buf();
    blocking(move || Ok(read_sync(&path))).await.ok().flatten()
}

/// The hub re-synced this node (or said it was not behind): the restore is dealt with. The
/// marker goes, and the record is brought down to the log as it now stands (a re-sync may have
/// renumbered it below the record), so the next start does not take it for a new restore.
pub async fn restore_dealt_with(state: &AppState) {
    state.sync.set_holding_for_restore(false);
    let marker = marker(&state.data_dir);
    let gone = marker.clone();
    match blocking(move || std::fs::remove_file(gone)).await {
        Ok(()) => tracing::info!("restore dealt with: selling everything again"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(error = %e, path = %marker.display(), "removing the restore marker")
        }
    }
    let record = path(&state.data_dir);
    let Ok((_, last_seq)) = state.db.read(changelog::cursors).await else {
        return;
    };
    let target = record.clone();
    let lowered = blocking(move || match read_sync(&target) {
        Some(recorded) if recorded > last_seq => write(&target, last_seq),
        _ => Ok(()),
    })
    .await;
    if let Err(e) = lowered {
        tracing::warn!(error = %e, path = %record.display(), "writing the change-log watermark");
    }
}

/// The recorded sequence, if there is a readable record.
pub async fn read(path: &Path) -> Option<i64> {
    let path = path.to_path_buf();
    blocking(move || Ok(read_sync(&path))).await.ok().flatten()
}

fn read_sync(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn write(path: &Path, seq: i64) -> std::io::Result<()> {
    let tmp = path.with_extension("seq.tmp");
    std::fs::write(&tmp, seq.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Keeps the record up to date until `stop`. It only moves up here (a restored node restarted
/// before the hub re-synced it must still know); `restore_dealt_with` brings it down.
pub async fn keep(state: AppState, path: PathBuf, stop: CancellationToken) {
    loop {
        if let Ok((_, last_seq)) = state.db.read(changelog::cursors).await {
            let p = path.clone();
            // Read each time: `restore_dealt_with` may have brought it down.
            let raised = blocking(move || match read_sync(&p) {
                Some(written) if written >= last_seq => Ok(()),
                _ => write(&p, last_seq),
            })
            .await;
            if let Err(e) = raised {
                tracing::warn!(error = %e, path = %path.display(), "writing the change-log watermark");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
