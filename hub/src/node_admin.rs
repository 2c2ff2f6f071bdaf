//! The `NodeAdmin` service: the registry of stores, and decommissioning one.
//!
//! Decommissioning (docs/decisions.md, "Decommissioning a store"): the store's id is retired for
//! good. From that transaction on the hub refuses the store's Sync streams, so nobody else will
//! ever write the store's stock cells — and the hub takes them over: it writes
//! `xfer[store→hub]` for the rights the store still holds, which keeps `Σ rights = stock` and
//! the single-writer rule of every cell, then re-allocates those rights to the active stores.

use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::pb;
use rusqlite::Connection;
use tonic::{Request, Response, Status};

use crate::admin::Admin;
use crate::auth;
use crate::error::{HubError, Result};
use crate::replication;
use crate::state::Hub;
use crate::store::{changes, credentials, nodes, now_ms, stock};

#[tonic::async_trait]
impl pb::node_admin_server::NodeAdmin for Admin {
    async fn list_nodes(
        &self,
        req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        auth::require_admin(&req)?;
        let hub = self.hub.clone();
        let rows = self
            .hub
            .db
            .read(move |c| {
                nodes::list(c)?
                    .into_iter()
                    .map(|n| with_pending(c, &hub, n))
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
        let nodes = rows
            .into_iter()
            .map(|listed| node_info(&self.hub, listed))
            .collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn decommission_node(
        &self,
        req: Request<pb::DecommissionNodeRequest>,
    ) -> Result<Response<pb::DecommissionNodeResponse>, Status> {
        auth::require_admin(&req)?;
        let r = req.into_inner();
        let node = store_id(&r.node_id)?;
        let (clock, n, hub) = (self.hub.clock.clone(), node.clone(), self.hub.clone());
        let (returned, listed) = self
            .hub
            .db
            .write(move |tx| {
                let returned = decommission(tx, &clock, &n, r.force)?;
                let row = nodes::get(tx, n.as_str())?.ok_or(HubError::NotFound("node"))?;
                Ok((returned, with_pending(tx, &hub, row)?))
            })
            .await?;
        // Its open stream (if any) reads that it was decommissioned and ends.
        self.hub.db.wake(node.as_str());
        tracing::info!(node = %node, rights_returned = returned, "node decommissioned");
        Ok(Response::new(pb::DecommissionNodeResponse {
            node: Some(node_info(&self.hub, listed)),
            rights_returned: i64::try_from(returned).unwrap_or(i64::MAX),
        }))
    }

    async fn enroll_node(
        &self,
        req: Request<pb::EnrollNodeRequest>,
    ) -> Result<Response<pb::EnrollNodeResponse>, Status> {
        let bootstrap = req.extensions().get::<auth::Caller>() == Some(&auth::Caller::Bootstrap);
        let r = req.into_inner();
        let node = store_id(&r.node_id)?;
        // A store enrolling itself does not choose its own policy.
        let catalog_edits = if bootstrap {
            true
        } else {
            r.catalog_edits.unwrap_or(true)
        };
        let n = node.to_string();
        let issued = self
            .hub
            .db
            .write(move |tx| enroll(tx, &n, catalog_edits))
            .await?;
        // The credential itself is never logged: only its id.
        tracing::info!(node = %node, credential_id = %issued.id, catalog_edits, bootstrap, "node enrolled");
        Ok(Response::new(pb::EnrollNodeResponse {
            node_id: node.to_string(),
            credential: issued.text,
            credential_id: issued.id,
        }))
    }

    async fn rotate_node(
        &self,
        req: Request<pb::RotateNodeRequest>,
    ) -> Result<Response<pb::RotateNodeResponse>, Status> {
        auth::require_admin(&req)?;
        let node = store_id(&req.into_inner().node_id)?;
        let n = node.to_string();
        let issued = self.hub.db.write(move |tx| rotate(tx, &n)).await?;
        tracing::info!(node = %node, credential_id = %issued.id, "node credential issued (rotation)");
        Ok(Response::new(pb::RotateNodeResponse {
            node_id: node.to_string(),
            credential: issued.text,
            credential_id: issued.id,
        }))
    }

    async fn revoke_node(
        &self,
        req: Request<pb::RevokeNodeRequest>,
    ) -> Result<Response<pb::RevokeNodeResponse>, Status> {
        auth::require_admin(&req)?;
        let r = req.into_inner();
        let node = store_id(&r.node_id)?;
        let only = Some(r.credential_id.trim().to_string()).filter(|c| !c.is_empty());
        let (n, one) = (node.to_string(), only.clone());
        let revoked = self
            .hub
            .db
            .write(move |tx| {
                if credentials::enrollment(tx, &n)?.is_none() {
                    return Err(HubError::NotFound("enrolled node"));
                }
                if let Some(id) = &one
                    && !credentials::belongs_to(tx, &n, id)?
                {
                    return Err(HubError::NotFound("credential of this node"));
                }
                credentials::revoke(tx, &n, one.as_deref(), now_ms())
            })
            .await?;
        // Committed: the stream's next write would be refused anyway; end it now.
        let stream_ended = self.hub.end_revoked(node.as_str(), &revoked);
        tracing::info!(node = %node, revoked = revoked.len(), stream_ended, "node credentials revoked");
        Ok(Response::new(pb::RevokeNodeResponse {
            node_id: node.to_string(),
            revoked: revoked.len() as u32,
            stream_ended,
        }))
    }

    async fn set_catalog_edits(
        &self,
        req: Request<pb::SetCatalogEditsRequest>,
    ) -> Result<Response<pb::SetCatalogEditsResponse>, Status> {
        auth::require_admin(&req)?;
        let r = req.into_inner();
        let node = store_id(&r.node_id)?;
        let (n, allowed) = (node.to_string(), r.catalog_edits);
        let found = self
            .hub
            .db
            .write(move |tx| credentials::set_catalog_edits(tx, &n, allowed))
            .await?;
        if !found {
            return Err(HubError::NotFound("enrolled node").into());
        }
        tracing::info!(node = %node, catalog_edits = allowed, "node catalog edits switched");
        Ok(Response::new(pb::SetCatalogEditsResponse {
            node_id: node.to_string(),
            catalog_edits: allowed,
        }))
    }
}

/// Enrolls store `node` and issues its first credential, in the caller's transaction.
pub fn enroll(conn: &Connection, node: &str, catalog_edits: bool) -> Result<auth::Issued> {
    if nodes::is_decommissioned(conn, node)? {
        return Err(HubError::Precondition(format!(
            "node {node} was decommissioned: its id is retired"
        )));
    }
    if !credentials::enroll(conn, node, catalog_edits, now_ms())? {
        return Err(HubError::Exists(format!(
            "node {node} is enrolled already: RotateNode issues it another credential"
        )));
    }
    let issued = auth::issue();
    credentials::add(conn, node, &issued.id, &issued.hash, now_ms())?;
    Ok(issued)
}

/// Issues another credential for enrolled store `node`, in the caller's transaction.
pub fn rotate(conn: &Connection, node: &str) -> Result<auth::Issued> {
    if nodes::is_decommissioned(conn, node)? {
        return Err(HubError::Precondition(format!(
            "node {node} was decommissioned: its id is retired"
        )));
    }
    if credentials::enrollment(conn, node)?.is_none() {
        return Err(HubError::NotFound("enrolled node"));
    }
    let issued = auth::issue();
    credentials::add(conn, node, &issued.id, &issued.hash, now_ms())?;
    Ok(issued)
}

/// A store id from a request: a valid actor id, not the hub's.
fn store_id(raw: &str) -> Result<ActorId, Status> {
    let node =
        ActorId::parse(raw.trim()).map_err(|e| HubError::invalid("node_id", e.to_string()))?;
    if node == ActorId::hub() {
        return Err(HubError::invalid("node_id", "the hub is not a store").into());
    }
    Ok(node)
}

/// Retires `node` inside the caller's transaction; returns the rights (units over all products)
/// it handed back to the hub. Nothing happens for a node already decommissioned.
pub fn decommission(conn: &Connection, clock: &Clock, node: &ActorId, force: bool) -> Result<u64> {
    let row = nodes::get(conn, node.as_str())?.ok_or(HubError::NotFound("node"))?;
    if row.decommissioned_at.is_some() {
        return Ok(0);
    }
    let unapplied = row.node_last_seq - row.node_cursor;
    if unapplied > 0 && !force {
        // Those may be sales: taking the store's rights back without them could sell its last
        // units twice. Let it sync first, or accept the loss explicitly.
        return Err(HubError::Precondition(format!(
            "node {node} reported {unapplied} changes the hub has not applied yet; let it sync \
             first, or decommission with force (they are then lost)"
        )));
    }
    nodes::decommission(conn, node.as_str(), now_ms())?;
    let hub = ActorId::hub();
    let mut returned = 0u64;
    for product in stock::products(conn)? {
        let mut counter = stock::load(conn, &product)?;
        let Ok(rights) = u64::try_from(counter.rights(node)) else {
            continue;
        };
        if rights == 0 {
            continue;
        }
        // Written by the hub on the retired node's behalf: the node can no longer write it.
        let entry = counter
            .transfer(node, &hub, rights)
            .map_err(|e| HubError::Internal(format!("decommission: {e}")))?;
        stock::merge_cell(conn, &product, &entry)?;
        returned += rights;
        // A transfer leaves the global stock (and every node's view of the others) unchanged;
        // the rights now at the hub go to the active stores by the policy.
        replication::allocate(conn, clock, &product)?;
    }
    Ok(returned)
}

type Listed = (nodes::NodeRow, i64, Option<credentials::Enrollment>);

fn with_pending(c: &Connection, hub: &Hub, n: nodes::NodeRow) -> Result<Listed> {
    // Acknowledgements are persisted lazily; the live one is current.
    let cursor = hub.live_ack(&n.node_id).unwrap_or(0).max(n.hub_cursor);
    let pending = changes::pending_for(c, &n.node_id, cursor)?;
    let enrollment = credentials::enrollment(c, &n.node_id)?;
    Ok((n, pending, enrollment))
}

fn node_info(hub: &Hub, (n, hub_pending, enrollment): Listed) -> pb::NodeInfo {
    pb::NodeInfo {
        enrolled: enrollment.is_some(),
        active_credentials: enrollment.as_ref().map_or(0, |e| e.active_credentials),
        catalog_edits: enrollment.as_ref().is_none_or(|e| e.catalog_edits),
        connected: hub.is_connected(&n.node_id),
        last_seen_unix_ms: n.last_seen,
        pending_changes: (n.node_last_seq - n.node_cursor).max(0),
        release: n.release,
        protocol_version: n.protocol_version,
        hub_changes_pending: hub_pending,
        decommissioned_at_unix_ms: n.decommissioned_at.unwrap_or(0),
        node_id: n.node_id,
    }
}
