//! The allocation policy: how the hub hands its selling rights to the nodes.
//!
//! A floor per node first (so every store can sell something; floors may use the reserve), then
//! what remains above the reserve is shared in proportion to each node's recent sales (equally
//! when nobody sold yet). The reserve — a percentage of the global stock — stays at the hub for
//! top-ups. Pure
//! arithmetic: the caller applies the plan as `xfer[hub→node]` cells.

use edgecart_proto::ids::ActorId;
use edgecart_proto::stock::BoundedCounter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub floor_per_node: i64,
    pub reserve_percent: u32,
}

/// Rights to transfer from the hub to each node.
pub fn plan(
    policy: Policy,
    counter: &BoundedCounter,
    hub: &ActorId,
    nodes: &[ActorId],
    recent_sales: &[(ActorId, i64)],
) -> Vec<(ActorId, u64)> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let reserve = counter.global().max(0) * i64::from(policy.reserve_percent.min(100)) / 100;
    let mut held = counter.rights(hub).max(0);
    let mut grants: Vec<(ActorId, i64)> = nodes.iter().map(|n| (n.clone(), 0)).collect();

    // 1. Floors, in node order, from everything the hub holds.
    for (node, grant) in grants.iter_mut() {
        let need = (policy.floor_per_node - counter.rights(node)).max(0);
        let give = need.min(held);
        *grant += give;
        held -= give;
    }
    let mut available = (held - reserve).max(0);
    // 2. The rest by share of recent sales (equal shares when there are none).
    if available > 0 {
        let sales_of = |n: &ActorId| {
            recent_sales
                .iter()
                .find(|(a, _)| a == n)
                .map_or(0, |(_, s)| (*s).max(0))
        };
        let total: i64 = nodes.iter().map(sales_of).sum();
        let weights: Vec<i64> = nodes
            .iter()
            .map(|n| if total == 0 { 1 } else { sales_of(n) })
            .collect();
        let weight_sum: i64 = weights.iter().sum();
        let pool = available;
        for ((_, grant), w) in grants.iter_mut().zip(&weights) {
            let give = pool * w / weight_sum.max(1);
            *grant += give;
            available -= give;
        }
        // Rounding leftovers go to the best seller (first by node order on ties) — never lost,
        // never more than the pool.
        if available > 0
            && let Some(best) = (0..nodes.len()).max_by_key(|&i| (weights[i], std::cmp::Reverse(i)))
        {
            grants[best].1 += available;
        }
    }
    grants
        .into_iter()
        .filter(|(_, g)| *g > 0)
        .map(|(n, g)| (n, g as u64))
        .collect()
}

/// What a store joining the fleet gets of a product: up to its floor, from what the hub holds
/// (`hub_rights`), given the rights it has (`own_rights`). No other store is looked at: a join
/// costs the same with ten stores or a thousand. Floors may use the reserve, as in [`plan`].
pub fn floor_for(policy: Policy, hub_rights: i64, own_rights: i64) -> u64 {
    let need = (policy.floor_per_node - own_rights).max(0);
    u64::try_from(need.min(hub_rights.max(0))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joining_store_gets_its_floor_from_what_the_hub_holds() {
        let policy = Policy {
            floor_per_node: 5,
            reserve_percent: 100,
        };
        assert_eq!(floor_for(policy, 100, 0), 5);
        assert_eq!(floor_for(policy, 3, 0), 3, "no more than the hub holds");
        assert_eq!(floor_for(policy, 100, 4), 1, "up to the floor");
        assert_eq!(floor_for(policy, 100, 9), 0);
        assert_eq!(floor_for(policy, -2, 0), 0);
    }

    fn actor(s: &str) -> ActorId {
        ActorId::parse(s).unwrap()
    }

    fn counter_with_hub_stock(units: u64) -> BoundedCounter {
        let mut c = BoundedCounter::new();
        c.add(&ActorId::hub(), units).unwrap();
        c
    }

    #[test]
    fn floors_then_shares_keeping_the_reserve() {
        let policy = Policy {
            floor_per_node: 5,
            reserve_percent: 10,
        };
        let c = counter_with_hub_stock(100);
        let nodes = [actor("a"), actor("b"), actor("c")];
        let plan = plan(
            policy,
            &c,
            &ActorId::hub(),
            &nodes,
            &[(actor("a"), 30), (actor("b"), 10)],
        );
        let total: u64 = plan.iter().map(|(_, q)| q).sum();
        assert_eq!(total, 90, "10% of 100 stays in reserve");
        let get = |n: &str| {
            plan.iter()
                .find(|(a, _)| a.as_str() == n)
                .map_or(0, |(_, q)| *q)
        };
        // 15 to floors, 75 shared 3:1:0.
        assert_eq!(get("c"), 5);
        assert_eq!(get("b"), 5 + 18);
        assert_eq!(get("a"), 5 + 56 + 1);
    }

    #[test]
    fn never_gives_more_than_the_hub_holds_and_respects_existing_rights() {
        let policy = Policy {
            floor_per_node: 10,
            reserve_percent: 0,
        };
        let mut c = counter_with_hub_stock(12);
        c.transfer(&ActorId::hub(), &actor("a"), 10).unwrap(); // a already at its floor
        let nodes = [actor("a"), actor("b")];
        let plan = plan(policy, &c, &ActorId::hub(), &nodes, &[]);
        let total: u64 = plan.iter().map(|(_, q)| q).sum();
        assert_eq!(total, 2);
        assert_eq!(
            plan[0].0.as_str(),
            "b",
            "the floor goes to the node below it"
        );
    }

    #[test]
    fn floors_may_use_the_reserve_but_shares_may_not() {
        let policy = Policy {
            floor_per_node: 5,
            reserve_percent: 50,
        };
        let mut c = counter_with_hub_stock(20);
        c.transfer(&ActorId::hub(), &actor("a"), 12).unwrap(); // hub holds 8, reserve is 10
        let plan = plan(policy, &c, &ActorId::hub(), &[actor("a"), actor("b")], &[]);
        assert_eq!(plan, vec![(actor("b"), 5)]);
    }

    #[test]
    fn nothing_to_give_without_rights_or_nodes() {
        let policy = Policy {
            floor_per_node: 5,
            reserve_percent: 10,
        };
        assert!(
            plan(
                policy,
                &BoundedCounter::new(),
                &ActorId::hub(),
                &[actor("a")],
                &[]
            )
            .is_empty()
        );
        assert!(
            plan(
                policy,
                &counter_with_hub_stock(50),
                &ActorId::hub(),
                &[],
                &[]
            )
            .is_empty()
        );
    }
}
