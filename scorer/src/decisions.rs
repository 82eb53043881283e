//! The most recent decision per pod, so an operator (or the demo) can ask why a pod got
//! the scores it got: kube-scheduler's extender answer carries numbers, not reasons.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use fitsched_proto::Decision;

/// Decisions kept; the oldest pod's is forgotten first.
pub const CAPACITY: usize = 4096;
/// Nodes kept per decision.
pub const TOP: usize = 16;

/// A pod by namespace and name.
type PodKey = (String, String);

#[derive(Default)]
pub struct Decisions {
    /// The decisions, and their pods oldest first (for eviction).
    inner: Mutex<(HashMap<PodKey, Decision>, VecDeque<PodKey>)>,
}

impl Decisions {
    pub fn record(&self, d: Decision) {
        let key = (d.pod_namespace.clone(), d.pod_name.clone());
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        if map.insert(key.clone(), d).is_none() {
            order.push_back(key);
            if order.len() > CAPACITY
                && let Some(old) = order.pop_front()
            {
                map.remove(&old);
            }
        }
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Decision> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(i: usize) -> Decision {
        Decision { pod_namespace: "ns".into(), pod_name: format!("p{i}"), ..Default::default() }
    }

    #[test]
    fn keeps_the_latest_and_forgets_the_oldest() {
        let d = Decisions::default();
        for i in 0..=CAPACITY {
            d.record(decision(i));
        }
        assert!(d.get("ns", "p0").is_none());
        assert!(d.get("ns", &format!("p{CAPACITY}")).is_some());
        d.record(Decision { strategy: "pack".into(), ..decision(CAPACITY) });
        assert_eq!(d.get("ns", &format!("p{CAPACITY}")).unwrap().strategy, "pack");
    }
}
