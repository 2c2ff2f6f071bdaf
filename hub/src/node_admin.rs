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
use crate::error::{HubError, Result};
use crate::replication;
use crate::state::Hub;
use crate::store::{changes, nodes, now_ms, stock};

#[tonic::async_trait]
impl pb::node_admin_server::NodeAdmin for Admin {
    async fn list_nodes(
        &self,
        _req: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
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
            .map(|(n, pending)| node_info(&self.hub, n, pending))
            .collect();
        Ok(Response::new(pb::ListNodesResponse { nodes }))
    }

    async fn decommission_node(
        &self,
        req: Request<pb::DecommissionNodeRequest>,
    ) -> Result<Response<pb::DecommissionNodeResponse>, Status> {
        let r = req.into_inner();
        let node = ActorId::parse(r.node_id.trim())
            .map_err(|e| HubError::invalid("node_id", e.to_string()))?;
        if node == ActorId::hub() {
            return Err(HubError::invalid("node_id", "the hub is not a store").into());
        }
        let (clock, n, hub) = (self.hub.clock.clone(), node.clone(), self.hub.clone());
        let (returned, row, pending) = self
            .hub
            .db
            .write(move |tx| {
                let returned = decommission(tx, &clock, &n, r.force)?;
                let row = nodes::get(tx, n.as_str())?.ok_or(HubError::NotFound("node"))?;
                let (row, pending) = with_pending(tx, &hub, row)?;
                Ok((returned, row, pending))
            })
            .await?;
        tracing::info!(node = %node, rights_returned = returned, "node decommissioned");
        Ok(Response::new(pb::DecommissionNodeResponse {
            node: Some(node_info(&self.hub, row, pending)),
            rights_returned: i64::try_from(returned).unwrap_or(i64::MAX),
        }))
    }
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

fn with_pending(c: &Connection, hub: &Hub, n: nodes::NodeRow) -> Result<(nodes::NodeRow, i64)> {
    // Acknowledgements are persisted lazily; the live one is current.
    let cursor = hub.live_ack(&n.node_id).unwrap_or(0).max(n.hub_cursor);
    let pending = changes::pending_for(c, &n.node_id, cursor)?;
    Ok((n, pending))
}

fn node_info(hub: &Hub, n: nodes::NodeRow, hub_pending: i64) -> pb::NodeInfo {
    pb::NodeInfo {
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
