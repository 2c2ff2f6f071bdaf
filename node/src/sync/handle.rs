//! What the rest of the node sees of the sync client: connection state and top-up requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edgecart_proto::pb::{self, node_message};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

#[derive(Default)]
pub struct SyncHandle {
    connected: AtomicBool,
    // std Mutexes: held only to swap a sender or insert/remove a waiter, never across an await.
    outbound: Mutex<Option<mpsc::Sender<pb::NodeMessage>>>,
    top_ups: Mutex<HashMap<String, oneshot::Sender<i64>>>,
    /// Restored from an older copy (noticed at start-up) and not yet re-synced by the hub.
    restore_hold: AtomicBool,
    /// The connection of the current session and the credential it presented, for the unary
    /// calls beside the stream (sign-in verification, `super::accounts`).
    hub: Mutex<Option<(tonic::transport::Channel, String)>>,
}

impl SyncHandle {
    pub fn holding_for_restore(&self) -> bool {
        self.restore_hold.load(Ordering::Relaxed)
    }

    pub fn set_holding_for_restore(&self, hold: bool) {
        self.restore_hold.store(hold, Ordering::Relaxed);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The hub connection and credential while connected; `None` offline.
    pub fn hub(&self) -> Option<(tonic::transport::Channel, String)> {
        if !self.is_connected() {
            return None;
        }
        self.hub.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_hub(&self, channel: tonic::transport::Channel, credential: &str) {
        *self.hub.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((channel, credential.to_string()));
    }

    pub(super) fn set_connected(&self, outbound: Option<mpsc::Sender<pb::NodeMessage>>) {
        self.connected.store(outbound.is_some(), Ordering::Relaxed);
        crate::observability::sync_connected(outbound.is_some());
        *self.outbound.lock().unwrap_or_else(|p| p.into_inner()) = outbound;
        if !self.is_connected() {
            // Waiters fail fast instead of waiting out their timeout.
            self.top_ups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// Asks the hub for `quantity` more selling rights and waits at most `wait`. Returns the
    /// granted units (already applied locally), or `None` when offline or on timeout.
    pub async fn top_up(&self, product_id: Uuid, quantity: u64, wait: Duration) -> Option<i64> {
        let start = std::time::Instant::now();
        let sender = self
            .outbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(sender) = sender else {
            crate::observability::top_up(start, true, quantity, None);
            return None;
        };
        let request_id = edgecart_proto::ids::new_id().to_string();
        let (tx, rx) = oneshot::channel();
        self.top_ups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(request_id.clone(), tx);
        // Removes the waiter however this ends: answered, timed out, or cancelled (the HTTP
        // client went away and the handler's future was dropped in the middle of the wait).
        let _waiter = Waiter {
            top_ups: &self.top_ups,
            request_id: request_id.clone(),
        };
        let message = pb::NodeMessage {
            msg: Some(node_message::Msg::TopUp(pb::TopUpRequest {
                request_id: request_id.clone(),
                product_id: product_id.to_string(),
                quantity: i64::try_from(quantity).unwrap_or(i64::MAX),
            })),
        };
        // Removes the waiter however this future ends: answered, timed out, or dropped because
        // the HTTP request was cancelled (the map would otherwise keep it for good).
        let _waiter = Waiter {
            top_ups: &self.top_ups,
            request_id,
        };
        let outcome = async {
            sender.send(message).await.ok()?;
            rx.await.ok()
        };
        let granted = tokio::time::timeout(wait, outcome).await.ok().flatten();
        crate::observability::top_up(start, false, quantity, granted);
        granted
    }

    /// Waiting top-ups (for tests and metrics).
    pub fn top_ups_waiting(&self) -> usize {
        self.top_ups.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Completes a waiting top-up (called once the granted rights are committed locally).
    pub(super) fn top_up_done(&self, request_id: &str, granted: i64) {
        if let Some(waiter) = self
            .top_ups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(request_id)
        {
            let _ = waiter.send(granted);
        }
    }
}

/// A top-up request's entry in the waiters' map, removed when dropped.
struct Waiter<'a> {
    top_ups: &'a Mutex<HashMap<String, oneshot::Sender<i64>>>,
    request_id: String,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.top_ups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_cancelled_top_up_leaves_no_waiter_behind() {
        let handle = Arc::new(SyncHandle::default());
        let (out, mut hub) = mpsc::channel(4);
        handle.set_connected(Some(out));
        let product = Uuid::now_v7();

        // The request is sent and waits for an answer that never comes; the caller goes away.
        let h = handle.clone();
        let request =
            tokio::spawn(async move { h.top_up(product, 3, Duration::from_secs(600)).await });
        let sent = hub.recv().await.expect("the top-up reaches the hub");
        assert!(matches!(sent.msg, Some(node_message::Msg::TopUp(_))));
        assert_eq!(handle.top_ups_waiting(), 1);
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        assert_eq!(
            handle.top_ups_waiting(),
            0,
            "the cancelled request's waiter is gone"
        );

        // A timed-out one and an answered one leave nothing either.
        assert_eq!(
            handle.top_up(product, 3, Duration::from_millis(1)).await,
            None
        );
        assert_eq!(handle.top_ups_waiting(), 0);
        while hub.try_recv().is_ok() {} // the timed-out request's message
        let h = handle.clone();
        let request =
            tokio::spawn(async move { h.top_up(product, 3, Duration::from_secs(600)).await });
        let Some(node_message::Msg::TopUp(sent)) = hub.recv().await.unwrap().msg else {
            panic!("expected a top-up request");
        };
        handle.top_up_done(&sent.request_id, 2);
        assert_eq!(request.await.unwrap(), Some(2));
        assert_eq!(handle.top_ups_waiting(), 0);
    }
}
