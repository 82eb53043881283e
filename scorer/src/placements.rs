//! Replica awareness: where the siblings of a pod (pods with the same owner) are.
//!
//! kube-scheduler scores the next replica before the previous bind is visible anywhere,
//! so the scorer remembers its own recommendations: the top-scored node of each `Score`
//! call is an *assumed* placement with a short expiry; a `Bind` confirms it. Without a
//! pod watch the scorer cannot see pods leave, so confirmed placements also age out,
//! after a longer time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
struct Placement {
    owner_uid: String,
    node: String,
    zone: String,
    bound: bool,
    expires: Instant,
}

/// Where a pod's siblings are, and how many recorded placements each node has, as
/// counts: one pass over the placements serves a whole scoring request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Siblings {
    pub per_node: HashMap<String, u32>,
    pub per_zone: HashMap<String, u32>,
    /// Placements of any owner per node (for `pack`).
    pub all_per_node: HashMap<String, u32>,
}

impl Siblings {
    pub fn on_node(&self, node: &str) -> u32 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    pub fn placed_on(&self, node: &str) -> u32 {
        self.all_per_node.get(node).copied().unwrap_or(0)
    }

    pub fn in_zone(&self, zone: &str) -> u32 {
        if zone.is_empty() { 0 } else { self.per_zone.get(zone).copied().unwrap_or(0) }
    }
}

pub struct Placements {
    pods: Mutex<HashMap<String, Placement>>,
    /// Node -> zone, learnt from scoring requests that carried node labels.
    zones: std::sync::RwLock<HashMap<String, String>>,
    assume_ttl: Duration,
    bound_ttl: Duration,
}

impl Placements {
    pub fn new(assume_ttl: Duration, bound_ttl: Duration) -> Self {
        Self { pods: Mutex::new(HashMap::new()), zones: Default::default(), assume_ttl, bound_ttl }
    }

    /// Records that `pod` (of `owner_uid`) will probably land on `node`. A placement the
    /// pod already has that is bound is kept.
    pub fn assume(&self, pod: &str, owner_uid: &str, node: &str, zone: &str) {
        let now = Instant::now();
        let mut pods = self.lock(now);
        if pods.get(pod).is_some_and(|p| p.bound) {
            return;
        }
        pods.insert(
            pod.to_owned(),
            Placement {
                owner_uid: owner_uid.to_owned(),
                node: node.to_owned(),
                zone: zone.to_owned(),
                bound: false,
                expires: now + self.assume_ttl,
            },
        );
    }

    /// Records that `pod` is bound to `node`. The owner comes from the assumed placement
    /// when there is one (a bind names the pod, not its owner).
    pub fn bind(&self, pod: &str, node: &str) {
        let zone = self.zone_of(node).unwrap_or_default();
        let now = Instant::now();
        let mut pods = self.lock(now);
        let owner_uid = pods.get(pod).map(|p| p.owner_uid.clone()).unwrap_or_default();
        pods.insert(
            pod.to_owned(),
            Placement { owner_uid, node: node.to_owned(), zone, bound: true, expires: now + self.bound_ttl },
        );
    }

    /// Sibling counts for a pod of `owner_uid`, not counting `pod` itself (a pod being
    /// rescored must not repel itself).
    pub fn siblings(&self, owner_uid: &str, pod: &str) -> Siblings {
        let mut out = Siblings::default();
        let pods = self.lock(Instant::now());
        for (key, p) in pods.iter() {
            if key == pod {
                continue;
            }
            *out.all_per_node.entry(p.node.clone()).or_default() += 1;
            // A bare pod (no owner) has no siblings.
            if owner_uid.is_empty() || p.owner_uid != owner_uid {
                continue;
            }
            *out.per_node.entry(p.node.clone()).or_default() += 1;
            if !p.zone.is_empty() {
                *out.per_zone.entry(p.zone.clone()).or_default() += 1;
            }
        }
        out
    }

    /// Remembers the zone of `node` (an empty zone is ignored: unknown is not a zone).
    pub fn learn_zone(&self, node: &str, zone: &str) {
        if zone.is_empty() {
            return;
        }
        let mut zones = self.zones.write().unwrap_or_else(|e| e.into_inner());
        if zones.get(node).map(String::as_str) != Some(zone) {
            zones.insert(node.to_owned(), zone.to_owned());
        }
    }

    /// The zone last learnt for `node`.
    pub fn zone_of(&self, node: &str) -> Option<String> {
        self.zones.read().unwrap_or_else(|e| e.into_inner()).get(node).cloned()
    }

    /// Locks the map after dropping what expired, so every reader sees live entries only.
    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, HashMap<String, Placement>> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.retain(|_, p| p.expires > now);
        pods
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_count_per_node_and_zone_without_self() {
        let p = Placements::new(Duration::from_secs(30), Duration::from_secs(600));
        p.assume("pod-1", "rs-a", "n1", "z1");
        p.assume("pod-2", "rs-a", "n2", "z1");
        p.assume("pod-3", "rs-b", "n1", "z1");
        let s = p.siblings("rs-a", "pod-2");
        assert_eq!(s.on_node("n1"), 1);
        assert_eq!(s.on_node("n2"), 0, "a pod is not its own sibling");
        assert_eq!(s.in_zone("z1"), 1);
        let bare = p.siblings("", "x");
        assert!(bare.per_node.is_empty() && bare.per_zone.is_empty(), "bare pods have no siblings");
        assert_eq!(bare.placed_on("n1"), 2);
    }

    #[test]
    fn bind_confirms_and_moves_assumed_placements() {
        let p = Placements::new(Duration::from_secs(30), Duration::from_secs(600));
        p.learn_zone("n2", "z2");
        p.assume("pod-1", "rs-a", "n1", "z1");
        p.bind("pod-1", "n2");
        let s = p.siblings("rs-a", "other");
        assert_eq!((s.on_node("n1"), s.on_node("n2"), s.in_zone("z2")), (0, 1, 1));
        // A later Score for the same pod does not undo the bind.
        p.assume("pod-1", "rs-a", "n3", "z3");
        assert_eq!(p.siblings("rs-a", "other").on_node("n2"), 1);
    }

    #[test]
    fn assumed_placements_expire() {
        let p = Placements::new(Duration::ZERO, Duration::from_secs(600));
        p.assume("pod-1", "rs-a", "n1", "z1");
        assert_eq!(p.siblings("rs-a", "other"), Siblings::default());
    }
}
