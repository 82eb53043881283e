//! The node store: the latest window of every node, its cached fitness, and staleness.
//!
//! Staleness is measured from when the scorer *received* a window, on the monotonic
//! clock, not from the window's own timestamps: an agent with a skewed clock must not
//! make its node look fresh or stale.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use fitsched_proto::{NodeStatus, NodeWindow, metric};

/// What happened to an incoming window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new latest window; acknowledge this sequence.
    New { sequence: u64 },
    /// Already seen (a resend after a reconnect); acknowledge the highest stored one.
    Duplicate { acked: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    /// Boxed: a 5 000-node request looks up 5 000 entries, and small buckets keep those
    /// lookups in cache; the window itself is read only when fitness is computed.
    window: Box<NodeWindow>,
    /// What scoring reads of the window, looked up once when it arrives, not per request.
    cpu_utilization: Option<f64>,
    psi_memory_full: Option<f64>,
    received: Instant,
    fitness: Option<f64>,
    fallback_features: Vec<String>,
}

/// What a scoring request needs of one node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeView {
    /// The scorer never received a window from this node.
    Unknown,
    /// The last window is older than the staleness limit.
    Stale { age: Duration },
    /// A fresh window whose fitness is not computed yet (or the model failed on it).
    NoFitness,
    Fresh {
        fitness: f64,
        /// Measured CPU utilisation, 0..1, when the window has it.
        cpu_utilization: Option<f64>,
        /// Mean PSI memory `full` share, when the window has it.
        psi_memory_full: Option<f64>,
    },
}

/// foldhash instead of SipHash: scoring hashes every candidate's name, and the keys come
/// from authenticated agents, so HashDoS resistance beyond a random seed buys nothing.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

pub struct NodeStore {
    nodes: RwLock<Map<Entry>>,
    stale_after: Duration,
}

impl NodeStore {
    pub fn new(stale_after: Duration) -> Self {
        Self { nodes: RwLock::new(Map::default()), stale_after }
    }

    /// Stores `window` as its node's latest unless it is a duplicate of (or older than)
    /// what this agent already sent. The window must have been validated.
    pub fn insert(&self, window: NodeWindow) -> Stored {
        self.insert_at(window, Instant::now())
    }

    fn insert_at(&self, window: NodeWindow, now: Instant) -> Stored {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = nodes.get(&window.node_name)
            && e.window.agent_id == window.agent_id
            && window.sequence <= e.window.sequence
        {
            return Stored::Duplicate { acked: e.window.sequence };
        }
        let sequence = window.sequence;
        let name = window.node_name.clone();
        let mean = |m: &str| window.metrics.get(m).map(|s| s.mean).filter(|v| v.is_finite());
        let (cpu_utilization, psi_memory_full) = (mean(metric::CPU_UTILIZATION), mean(metric::PSI_MEMORY_FULL));
        let entry = Entry {
            window: Box::new(window),
            cpu_utilization,
            psi_memory_full,
            received: now,
            fitness: None,
            fallback_features: Vec::new(),
        };
        nodes.insert(name, entry);
        Stored::New { sequence }
    }

    /// The latest window of `node`, for fitness computation.
    pub fn window(&self, node: &str) -> Option<NodeWindow> {
        self.read().get(node).map(|e| NodeWindow::clone(&e.window))
    }

    /// Records the fitness computed for `node`'s window `sequence` of agent `agent_id`;
    /// ignored when a newer window has replaced it meanwhile.
    pub fn set_fitness(&self, node: &str, agent_id: &str, sequence: u64, fitness: f64, fallbacks: Vec<String>) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = nodes.get_mut(node)
            && e.window.sequence == sequence
            && e.window.agent_id == agent_id
        {
            e.fitness = Some(fitness);
            e.fallback_features = fallbacks;
        }
    }

    /// Views of the named nodes, in order.
    pub fn view(&self, names: &[&str]) -> Vec<NodeView> {
        let now = Instant::now();
        let nodes = self.read();
        names.iter().map(|n| self.view_of(nodes.get(*n), now)).collect()
    }

    fn view_of(&self, entry: Option<&Entry>, now: Instant) -> NodeView {
        let Some(e) = entry else { return NodeView::Unknown };
        let age = now.saturating_duration_since(e.received);
        if age > self.stale_after {
            return NodeView::Stale { age };
        }
        let Some(fitness) = e.fitness else { return NodeView::NoFitness };
        NodeView::Fresh { fitness, cpu_utilization: e.cpu_utilization, psi_memory_full: e.psi_memory_full }
    }

    /// Every node's status, sorted by name, for `ListNodes`.
    pub fn list(&self) -> Vec<NodeStatus> {
        let now = Instant::now();
        let nodes = self.read();
        let mut out: Vec<NodeStatus> = nodes
            .iter()
            .map(|(name, e)| {
                let age = now.saturating_duration_since(e.received);
                NodeStatus {
                    name: name.clone(),
                    latest: Some(NodeWindow::clone(&e.window)),
                    fitness: e.fitness,
                    stale: age > self.stale_after,
                    age_ms: i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
                    fallback_features: e.fallback_features.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Every known node's name.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many nodes are known, and how many of them are stale.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let nodes = self.read();
        let stale = nodes.values().filter(|e| now.saturating_duration_since(e.received) > self.stale_after).count();
        (nodes.len(), stale)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map<Entry>> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(node: &str, agent: &str, seq: u64) -> NodeWindow {
        NodeWindow { node_name: node.into(), agent_id: agent.into(), sequence: seq, ..Default::default() }
    }

    #[test]
    fn duplicates_are_acknowledged_not_stored() {
        let s = NodeStore::new(Duration::from_secs(60));
        assert_eq!(s.insert(window("a", "x", 1)), Stored::New { sequence: 1 });
        assert_eq!(s.insert(window("a", "x", 2)), Stored::New { sequence: 2 });
        assert_eq!(s.insert(window("a", "x", 1)), Stored::Duplicate { acked: 2 });
        assert_eq!(s.insert(window("a", "x", 2)), Stored::Duplicate { acked: 2 });
        // A restarted agent starts counting again under a new id.
        assert_eq!(s.insert(window("a", "y", 1)), Stored::New { sequence: 1 });
    }

    #[test]
    fn fitness_lands_only_on_its_own_window() {
        let s = NodeStore::new(Duration::from_secs(60));
        s.insert(window("a", "x", 1));
        assert_eq!(s.view(&["a"]), vec![NodeView::NoFitness]);
        s.insert(window("a", "x", 2));
        s.set_fitness("a", "x", 1, 0.9, vec![]);
        assert_eq!(s.view(&["a"]), vec![NodeView::NoFitness]);
        s.set_fitness("a", "x", 2, 0.7, vec![]);
        assert!(matches!(s.view(&["a"])[0], NodeView::Fresh { fitness, .. } if fitness == 0.7));
    }

    #[test]
    fn old_windows_go_stale_and_unknown_nodes_stay_unknown() {
        let s = NodeStore::new(Duration::from_secs(60));
        let long_ago = Instant::now().checked_sub(Duration::from_secs(120)).expect("monotonic clock is past 120 s");
        s.insert_at(window("old", "x", 1), long_ago);
        s.set_fitness("old", "x", 1, 0.9, vec![]);
        let views = s.view(&["old", "never"]);
        assert!(matches!(views[0], NodeView::Stale { .. }));
        assert_eq!(views[1], NodeView::Unknown);
        assert_eq!(s.counts(), (1, 1));
        assert!(s.list()[0].stale);
    }
}
