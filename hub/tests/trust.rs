//! Fleet trust over real gRPC (issue 11): per-store credentials decide who a store is, one live
//! stream per store, revocation and rotation, and the store restriction on every change entry —
//! tried by a rogue store holding a valid credential of its own.

mod support;

use edgecart_proto::hlc::Clock;
use edgecart_proto::ids::ActorId;
use edgecart_proto::money::{Currency, Money};
use edgecart_proto::pb::{self, hub_message, node_message};
use edgecart_proto::stock::{Entry, EntryKey};
use edgecart_proto::sync::{
    OrderItemPayload, OrderPayload, PaymentPayload, ProductPayload, StockPayload, UserPayload,
    entity,
};
use support::{FakeNode, TestHub};
use tonic::Code;

fn actor(id: &str) -> ActorId {
    ActorId::parse(id).unwrap()
}

/// Numbers `changes` from 1 as the store's log would.
fn numbered(mut changes: Vec<pb::Change>) -> Vec<pb::Change> {
    for (i, c) in changes.iter_mut().enumerate() {
        c.seq = i as i64 + 1;
    }
    changes
}

fn change(clock: &Clock, kind: &str, id: &str, payload: &impl serde::Serialize) -> pb::Change {
    pb::Change {
        seq: 0,
        entity: kind.into(),
        entity_id: id.into(),
        version: clock.now().to_string(),
        payload_json: serde_json::to_string(payload).unwrap(),
        ..Default::default()
    }
}

fn stock(clock: &Clock, product: &str, key: EntryKey, value: u64) -> pb::Change {
    let payload = StockPayload {
        product_id: product.into(),
        entry: Entry { key, value },
    };
    change(clock, entity::STOCK, product, &payload)
}

fn user(clock: &Clock, id: &str, email: &str, role: &str, hash: &str) -> pb::Change {
    let payload = UserPayload {
        id: id.into(),
        email: Some(email.into()),
        name: "Someone".into(),
        password_hash: Some(hash.into()),
        role: role.into(),
        status: "active".into(),
        conflicted: false,
        created_at: 1,
        updated_at: 1,
    };
    change(clock, entity::USER, id, &payload)
}

fn order(clock: &Clock, id: &str, node: &str, status: &str, product: &str) -> pb::Change {
    let payload = OrderPayload {
        id: id.into(),
        user_id: "01900000-0000-7000-8000-0000000000c1".into(),
        node_id: node.into(),
        status: status.into(),
        total_amount: 100,
        currency: "USD".into(),
        items: vec![OrderItemPayload {
            product_id: product.into(),
            product_name: "Tea".into(),
            unit_price: Money::new(100, Currency::USD),
            quantity: 1,
        }],
        created_at: 1,
        updated_at: 1,
    };
    change(clock, entity::ORDER, id, &payload)
}

fn payment(clock: &Clock, id: &str, order: &str, status: &str) -> pb::Change {
    let payload = PaymentPayload {
        id: id.into(),
        order_id: order.into(),
        user_id: "01900000-0000-7000-8000-0000000000c1".into(),
        method: "cash".into(),
        status: status.into(),
        amount: 100,
        currency: "USD".into(),
        card_token: None,
        refunds: vec![],
        updated_at: 1,
    };
    change(clock, entity::PAYMENT, id, &payload)
}

fn product(clock: &Clock, id: &str, name: &str) -> pb::Change {
    let payload = ProductPayload {
        id: id.into(),
        name: name.into(),
        description: String::new(),
        price_amount: 1,
        currency: "USD".into(),
        category_id: None,
        status: "active".into(),
        created_at: 1,
        updated_at: 1,
    };
    change(clock, entity::PRODUCT, id, &payload)
}

/// Sends `changes` and waits for their acknowledgement; returns the acknowledged cursor.
async fn send_acked(node: &mut FakeNode, changes: Vec<pb::Change>) -> i64 {
    node.send(node_message::Msg::Changes(pb::ChangeBatch { changes }))
        .await;
    loop {
        match node.next().await {
            Ok(Some(hub_message::Msg::Ack(ack))) => return ack.seq,
            Ok(Some(_)) => continue,
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
}

/// Reads until the hub ends the stream; returns its status.
async fn ended(node: &mut FakeNode) -> tonic::Status {
    loop {
        match node.next().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

fn level_of(level: &pb::StockLevel, node: &str) -> (i64, i64, i64) {
    level
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .map(|n| (n.rights, n.sold, n.received))
        .unwrap_or_default()
}

fn one(hub: &TestHub, sql: &str, arg: &str) -> Option<String> {
    use rusqlite::OptionalExtension;
    hub.sql()
        .query_row(sql, [arg], |r| r.get(0))
        .optional()
        .unwrap()
}

#[tokio::test]
async fn the_credential_names_the_store_one_stream_per_store_and_revocation_cuts_it_off() {
    let hub = TestHub::start().await;
    let cred_a = hub.enroll("store-a").await;
    let cred_b = hub.enroll("store-b").await;
    assert_ne!(cred_a, cred_b);
    // Enrolled once: a second EnrollNode is refused, it does not mint a credential.
    let again = hub
        .nodes()
        .enroll_node(pb::EnrollNodeRequest {
            node_id: "store-a".into(),
            catalog_edits: None,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    // The hub keeps hashes only: the credential's text is nowhere in its database file.
    let file = std::fs::read(hub.dir.path().join("edgecart-hub.db")).unwrap();
    let secret = cred_a.rsplit('_').next().unwrap();
    assert!(!file.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let mut b = FakeNode::connect_as(&hub, "store-b", &cred_b, 0, 0)
        .await
        .unwrap();

    // A's credential naming store-b in Hello: refused, and b's stream is not disturbed.
    let forged = FakeNode::connect_as(&hub, "store-b", &cred_a, 0, 0)
        .await
        .err()
        .expect("refused");
    assert_eq!(forged.code(), Code::PermissionDenied, "{forged:?}");
    // Unknown, malformed and tampered credentials: UNAUTHENTICATED.
    let mut tampered = cred_b.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'x' { 'y' } else { 'x' });
    for bad in [
        "test-node-token-0123456789",
        "ecn_0123456789abcdef_abc",
        &tampered,
    ] {
        let refused = FakeNode::connect_as(&hub, "store-b", bad, 0, 0)
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{bad}: {refused:?}");
    }
    // b still streams: it hears of a product created now.
    let p = hub.product("Tea").await;
    b.read_until(|batches| {
        batches
            .iter()
            .flat_map(|x| &x.changes)
            .any(|c| c.entity == entity::PRODUCT && c.entity_id == p)
    })
    .await;
    let listed = hub
        .nodes()
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let info = listed.iter().find(|n| n.node_id == "store-b").unwrap();
    assert!(info.connected && info.enrolled && info.catalog_edits);
    assert_eq!(info.active_credentials, 1);
    assert!(
        !listed.iter().any(|n| n.node_id == "store-a"),
        "the refused Hello wrote nothing"
    );

    // A second stream of a store replaces the first, which ends with ABORTED.
    let mut a1 = FakeNode::connect_as(&hub, "store-a", &cred_a, 0, 0)
        .await
        .unwrap();
    let mut a2 = FakeNode::connect_as(&hub, "store-a", &cred_a, 0, 0)
        .await
        .unwrap();
    let replaced = ended(&mut a1).await;
    assert_eq!(replaced.code(), Code::Aborted, "{replaced:?}");
    assert!(replaced.message().contains("replaced"), "{replaced:?}");
    let clock = Clock::new(actor("store-a"));
    let sale = numbered(vec![stock(&clock, &p, EntryKey::Dec(actor("store-a")), 0)]);
    assert_eq!(send_acked(&mut a2, sale).await, 1, "the newer stream works");

    // Rotation: a second credential; both work until the old one is revoked.
    let rotated = hub
        .nodes()
        .rotate_node(pb::RotateNodeRequest {
            node_id: "store-a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let old_id = cred_a["ecn_".len()..]
        .split('_')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(rotated.credential_id, old_id);
    // a2 runs on the old credential: revoking that one ends it within seconds...
    let started = std::time::Instant::now();
    let revoked = hub
        .nodes()
        .revoke_node(pb::RevokeNodeRequest {
            node_id: "store-a".into(),
            credential_id: old_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((revoked.revoked, revoked.stream_ended), (1, true));
    let status = ended(&mut a2).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // ...the old one is refused from then on, the new one connects.
    let refused = FakeNode::connect_as(&hub, "store-a", &cred_a, 0, 1)
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains("revoked"), "{refused:?}");
    let mut a3 = FakeNode::connect_as(&hub, "store-a", &rotated.credential, 0, 1)
        .await
        .unwrap();

    // Revoking the store (every credential) cuts the live stream and every reconnect.
    let revoked = hub
        .nodes()
        .revoke_node(pb::RevokeNodeRequest {
            node_id: "store-a".into(),
            credential_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((revoked.revoked, revoked.stream_ended), (1, true));
    assert_eq!(ended(&mut a3).await.code(), Code::Unauthenticated);
    for c in [&cred_a, &rotated.credential] {
        let refused = FakeNode::connect_as(&hub, "store-a", c, 0, 1)
            .await
            .err()
            .expect("refused");
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    // b was never disturbed.
    assert!(
        hub.nodes()
            .list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes
            .iter()
            .any(|n| n.node_id == "store-b" && n.connected)
    );

    // The CLI: enroll prints the credential (only it, on stdout), revoke reports.
    let (ok, out, err) = hub.admin_cli(&["nodes", "enroll", "store-c"]).await;
    assert!(ok, "{err}");
    assert!(
        out.trim().starts_with("ecn_") && out.lines().count() == 1,
        "{out}"
    );
    let (ok, out, err) = hub.admin_cli(&["nodes", "rotate", "store-c"]).await;
    assert!(ok && out.trim().starts_with("ecn_"), "{err}");
    let (ok, out, err) = hub.admin_cli(&["nodes", "revoke", "store-c"]).await;
    assert!(ok && out.contains("2 credential(s) revoked"), "{out}{err}");
}

#[tokio::test]
async fn a_rogue_store_with_its_own_credential_can_change_only_what_it_owns() {
    let hub = TestHub::start().await;
    let p = hub.product("Tea").await;
    hub.receive(&p, 100).await;
    // The honest store b: a sale, a customer, an order and its payment.
    let mut b = FakeNode::connect(&hub, "store-b", 0, 0).await.unwrap();
    let clock_b = Clock::new(actor("store-b"));
    let (b_user, b_order, b_payment) = (
        "01900000-0000-7000-8000-0000000000b1",
        "01900000-0000-7000-8000-0000000000b2",
        "01900000-0000-7000-8000-0000000000b3",
    );
    let honest = numbered(vec![
        stock(&clock_b, &p, EntryKey::Dec(actor("store-b")), 1),
        user(
            &clock_b,
            b_user,
            "bee@example.com",
            "customer",
            "hash-of-bee",
        ),
        order(&clock_b, b_order, "store-b", "placed", &p),
        payment(&clock_b, b_payment, b_order, "captured"),
    ]);
    assert_eq!(send_acked(&mut b, honest).await, 4);

    let mut a = FakeNode::connect(&hub, "store-a", 0, 0).await.unwrap();
    let before = hub.stock(&p).await;
    let clock = Clock::new(actor("store-a"));
    let (a, hub_id) = (&mut a, ActorId::hub());
    let (sa, sb) = (actor("store-a"), actor("store-b"));
    let admin_id = "01900000-0000-7000-8000-0000000000a1";
    let (a_user, a_order) = (
        "01900000-0000-7000-8000-0000000000a2",
        "01900000-0000-7000-8000-0000000000a3",
    );
    let forgeries = vec![
        // Another store's cells, and transfers out of the hub and out of another store.
        stock(&clock, &p, EntryKey::Inc(sb.clone()), 1000),
        stock(&clock, &p, EntryKey::Dec(sb.clone()), 1000),
        stock(
            &clock,
            &p,
            EntryKey::Xfer {
                from: hub_id.clone(),
                to: sa.clone(),
            },
            1000,
        ),
        stock(
            &clock,
            &p,
            EntryKey::Xfer {
                from: sb.clone(),
                to: sa.clone(),
            },
            1000,
        ),
        // An admin account; another store's customer taken over (new password hash).
        user(
            &clock,
            admin_id,
            "evil@example.com",
            "admin",
            "hash-of-evil",
        ),
        user(
            &clock,
            b_user,
            "bee@example.com",
            "customer",
            "hash-of-evil",
        ),
        // Another store's order, reported as b's and as a's; another store's payment.
        order(&clock, b_order, "store-b", "cancelled", &p),
        order(&clock, b_order, "store-a", "cancelled", &p),
        payment(&clock, b_payment, b_order, "voided"),
        // Its own legitimate entries, in the same batch.
        stock(&clock, &p, EntryKey::Dec(sa.clone()), 2),
        user(&clock, a_user, "ann@example.com", "customer", "hash-of-ann"),
        order(&clock, a_order, "store-a", "placed", &p),
    ];
    let count = forgeries.len() as i64;
    // Every entry acknowledged: the refused ones do not wedge the stream.
    assert_eq!(send_acked(a, numbered(forgeries)).await, count);

    let after = hub.stock(&p).await;
    assert_eq!(level_of(&after, "store-b"), level_of(&before, "store-b"));
    assert_eq!(after.hub_rights, before.hub_rights);
    assert_eq!(
        after.global_stock,
        before.global_stock - 2,
        "only a's own sale"
    );
    let (rights_a, sold_a, _) = level_of(&after, "store-a");
    assert_eq!(sold_a, 2);
    assert_eq!(rights_a, level_of(&before, "store-a").0 - 2);
    let q = |sql: &str, arg: &str| one(&hub, sql, arg);
    assert_eq!(q("SELECT role FROM users WHERE id = ?1", admin_id), None);
    assert_eq!(
        q("SELECT password_hash FROM users WHERE id = ?1", b_user).as_deref(),
        Some("hash-of-bee")
    );
    assert_eq!(
        q(
            "SELECT status || ' ' || node_id FROM orders WHERE id = ?1",
            b_order
        )
        .as_deref(),
        Some("placed store-b")
    );
    assert!(
        q("SELECT payload FROM payments WHERE id = ?1", b_payment)
            .unwrap()
            .contains("captured")
    );
    assert_eq!(
        q("SELECT origin_node FROM users WHERE id = ?1", a_user).as_deref(),
        Some("store-a")
    );
    assert_eq!(
        q("SELECT node_id FROM orders WHERE id = ?1", a_order).as_deref(),
        Some("store-a")
    );

    // Catalog edits follow the store's policy: allowed by default, refused where disabled.
    let c_cred = hub
        .nodes()
        .enroll_node(pb::EnrollNodeRequest {
            node_id: "store-c".into(),
            catalog_edits: Some(false),
        })
        .await
        .unwrap()
        .into_inner()
        .credential;
    let mut c = FakeNode::connect_as(&hub, "store-c", &c_cred, 0, 0)
        .await
        .unwrap();
    let clock_c = Clock::new(actor("store-c"));
    let (p_c, p_a) = (
        "01900000-0000-7000-8000-0000000000c9",
        "01900000-0000-7000-8000-0000000000a9",
    );
    assert_eq!(
        send_acked(&mut c, numbered(vec![product(&clock_c, p_c, "From c")])).await,
        1
    );
    let next = vec![pb::Change {
        seq: count + 1,
        ..product(&clock, p_a, "From a")
    }];
    assert_eq!(send_acked(a, next).await, count + 1);
    assert_eq!(q("SELECT name FROM products WHERE id = ?1", p_c), None);
    assert_eq!(
        q("SELECT name FROM products WHERE id = ?1", p_a).as_deref(),
        Some("From a")
    );

    // The policy is switchable after enrollment: on for store-c, then its edit applies.
    let switched = hub
        .nodes()
        .set_catalog_edits(pb::SetCatalogEditsRequest {
            node_id: "store-c".into(),
            catalog_edits: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(switched.catalog_edits);
    let later = vec![pb::Change {
        seq: 2,
        ..product(&clock_c, p_c, "From c, allowed now")
    }];
    assert_eq!(send_acked(&mut c, later).await, 2);
    assert_eq!(
        q("SELECT name FROM products WHERE id = ?1", p_c).as_deref(),
        Some("From c, allowed now")
    );
    let unknown = hub
        .nodes()
        .set_catalog_edits(pb::SetCatalogEditsRequest {
            node_id: "store-zz".into(),
            catalog_edits: false,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn the_bootstrap_token_enrolls_new_stores_and_does_nothing_else() {
    const BOOTSTRAP: &str = "bootstrap-token-for-tests-1";
    let hub = TestHub::start_with(&["--bootstrap-token", BOOTSTRAP]).await;
    hub.enroll("store-a").await;
    let mut nodes = pb::node_admin_client::NodeAdminClient::with_interceptor(
        hub.channel.clone(),
        support::Token(BOOTSTRAP),
    );
    let enroll = |id: &str| pb::EnrollNodeRequest {
        node_id: id.into(),
        catalog_edits: Some(false),
    };
    // A new store enrolls itself (with the default policy, whatever it asks for) and connects.
    let new = nodes
        .enroll_node(enroll("store-n"))
        .await
        .unwrap()
        .into_inner();
    FakeNode::connect_as(&hub, "store-n", &new.credential, 0, 0)
        .await
        .unwrap();
    let listed = hub
        .nodes()
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(
        listed
            .iter()
            .any(|n| n.node_id == "store-n" && n.catalog_edits)
    );
    // An enrolled store cannot be taken over with it, and no other method is open to it.
    let taken = nodes.enroll_node(enroll("store-a")).await.unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let denied = [
        nodes
            .rotate_node(pb::RotateNodeRequest {
                node_id: "store-a".into(),
            })
            .await
            .unwrap_err(),
        nodes
            .revoke_node(pb::RevokeNodeRequest {
                node_id: "store-a".into(),
                credential_id: String::new(),
            })
            .await
            .unwrap_err(),
        nodes.list_nodes(pb::ListNodesRequest {}).await.unwrap_err(),
        nodes
            .decommission_node(pb::DecommissionNodeRequest {
                node_id: "store-a".into(),
                force: true,
            })
            .await
            .unwrap_err(),
    ];
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
    // Nor the other admin services.
    let mut catalog = pb::catalog_admin_client::CatalogAdminClient::with_interceptor(
        hub.channel.clone(),
        support::Token(BOOTSTRAP),
    );
    let refused = catalog
        .list_products(pb::ListProductsRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}
