//! The node store: the latest window of every node, its cached fitness, and staleness.
//!
//! Staleness is measured from when the scorer *received* a window, on the monotonic
//! clock, not from the window's own timestamps: an agent with a skewed clock must not
//! make its node look fresh or stale.
//!
//! A new window keeps the previous window's fitness until its own is computed: windows
//! are wall-clock aligned, so every node's arrives in the same second, and blanking
//! fitness on arrival would score the whole cluster on the stand-in for the length of a batch.
//!
//! The store also keeps the median fitness of the fresh nodes, the *stand-in fitness* a
//! node without a usable one is scored with (not to be confused with the shim's neutral
//! answer, which scores every node alike when the scorer cannot answer). It is recomputed once per landed batch (one
//! selection over the store's nodes, so a batch of k nodes costs one O(n) pass, not k)
//! and read in O(1) by every scoring request; it is 0.5 when no node is fresh.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use fitsched_proto::{NodeStatus, NodeWindow, metric};

use crate::compact::{CompactWindow, Interner};

/// What happened to an incoming window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new latest window; acknowledge this sequence. `skipped`: the sequence numbers of
    /// the same agent between the node's previous stored window and this one (windows lost
    /// on the way, or dropped from a full agent buffer).
    New { sequence: u64, skipped: u64 },
    /// Already seen (a resend after a reconnect); acknowledge the highest stored one.
    Duplicate { acked: u64 },
    /// A new node while the store holds its limit of nodes: not stored.
    Full { max_nodes: usize },
}

#[derive(Debug, Clone)]
struct Entry {
    /// Boxed: a 5 000-node request looks up 5 000 entries, and small buckets keep those
    /// lookups in cache; the window itself is read only when fitness is computed.
    window: Box<CompactWindow>,
    /// What scoring reads of the window, looked up once when it arrives, not per request.
    psi_memory_full: Option<f64>,
    cpu_count: Option<f64>,
    received: Instant,
    /// `received` by the scorer's clock, unix ms.
    received_ms: i64,
    fitness: Option<f64>,
    /// Where the window `fitness` was computed from began (unix ms; see [`shown_since`]):
    /// kept with the fitness, which outlives its window until the next one's lands.
    fitness_since_ms: i64,
    fallback_features: Vec<String>,
}

/// What a scoring request needs of one node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeView {
    /// The scorer never received a window from this node.
    Unknown,
    /// The last window is older than the staleness limit.
    Stale { age: Duration },
    /// A node's first window, whose fitness is not computed yet, or a window the model
    /// failed on.
    NoFitness,
    Fresh {
        fitness: f64,
        /// Mean PSI memory `full` share, when the window has it.
        psi_memory_full: Option<f64>,
        /// The node's CPUs, when the window has them.
        cpu_count: Option<f64>,
        /// When the window the fitness comes from began (unix ms, the agent's clock): pods
        /// placed before then are in it, pods placed since are not.
        since_ms: i64,
    },
}

/// foldhash instead of SipHash: scoring hashes every candidate's name, and the keys come
/// from authenticated agents, so HashDoS resistance beyond a random seed buys nothing.
type Map<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// Nodes in slots. A node keeps its slot while it is known; removing one (deleted from
/// the cluster, or silent past `forget_after`) moves the last slot into its place and
/// bumps `generation`, which invalidates resolved candidate lists.
#[derive(Default)]
struct Nodes {
    index: Map<u32>,
    slots: Vec<(String, Entry)>,
    median: Median,
    /// Bumped whenever a name's slot changes: a node added or removed.
    generation: u64,
}

/// The median fitness of the nodes that were fresh when the last batch landed.
#[derive(Debug, Clone, Copy, Default)]
struct Median {
    /// `None`: no node was fresh.
    fitness: Option<f64>,
    /// When the freshest of those nodes goes stale: from then on no node that counted
    /// is fresh, and the stand-in is [`STAND_IN_WITHOUT_FRESH_NODES`] until a batch lands.
    /// `None`: not within the clock's range.
    until: Option<Instant>,
}

/// When the pods a window shows whole were placed by: its start, by the agent's clock,
/// but never later than its arrival less its length, by the scorer's (which stamps the
/// pods' placements). An agent whose clock runs ahead must not make the pods placed
/// since look measured, which would switch off the discount for them.
fn shown_since(window: &CompactWindow, received_ms: i64) -> i64 {
    let length = window.end_unix_ms().saturating_sub(window.start_unix_ms()).max(0);
    window.start_unix_ms().min(received_ms.saturating_sub(length))
}

/// The stand-in fitness when no node is fresh.
pub const STAND_IN_WITHOUT_FRESH_NODES: f64 = 0.5;

/// One node's fitness as a batch computed it (see [`NodeStore::land`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Landed {
    pub node: String,
    pub agent_id: String,
    pub sequence: u64,
    /// `None`: the model failed on the window, the node has no fitness.
    pub fitness: Option<f64>,
    pub fallbacks: Vec<String>,
}

impl Nodes {
    fn get(&self, name: &str) -> Option<&Entry> {
        self.index.get(name).map(|&i| &self.slots[i as usize].1)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.index.get(name).map(|&i| &mut self.slots[i as usize].1)
    }

    fn put(&mut self, name: String, entry: Entry) {
        match self.index.get(&name) {
            Some(&i) => self.slots[i as usize].1 = entry,
            None => {
                self.index.insert(name.clone(), u32::try_from(self.slots.len()).unwrap_or(u32::MAX));
                self.slots.push((name, entry));
                self.generation += 1;
            }
        }
    }

    fn remove(&mut self, name: &str) -> bool {
        let Some(i) = self.index.remove(name) else { return false };
        let i = i as usize;
        self.slots.swap_remove(i);
        if let Some((moved, _)) = self.slots.get(i) {
            self.index.insert(moved.clone(), i as u32);
        }
        self.generation += 1;
        true
    }
}

/// The slots of the last candidate list. kube-scheduler sends the same list pod after
/// pod; comparing it byte for byte with the last one is a sequential scan, where looking
/// 5 000 names up is 5 000 cache misses in a hash table the other processes evicted.
#[derive(Default)]
struct Resolved {
    /// The names, each followed by a NUL (which node names cannot contain).
    key: Vec<u8>,
    /// The store's generation when resolved: a node added may be one that was unknown,
    /// a node removed moves another's slot.
    generation: u64,
    slots: Vec<Option<u32>>,
}

pub struct NodeStore {
    nodes: RwLock<Nodes>,
    resolved: std::sync::Mutex<Resolved>,
    stale_after: Duration,
    max_nodes: usize,
    /// Metric names and missing-metric reasons, shared by every node's window.
    strings: Interner,
}

/// Distinct metric names and missing reasons the store shares; a cluster has a few
/// hundred.
const MAX_SHARED_STRINGS: usize = 65_536;

impl NodeStore {
    pub fn new(stale_after: Duration) -> Self {
        Self::with_max_nodes(stale_after, crate::Limits::DEFAULT_MAX_NODES)
    }

    /// A store that refuses windows of new nodes once it holds `max_nodes`.
    pub fn with_max_nodes(stale_after: Duration, max_nodes: usize) -> Self {
        Self {
            nodes: RwLock::default(),
            resolved: Default::default(),
            stale_after,
            max_nodes,
            strings: Interner::new(MAX_SHARED_STRINGS),
        }
    }

    /// Forgets `node` (deleted from the cluster); whether it was known.
    pub fn remove(&self, node: &str) -> bool {
        self.nodes.write().unwrap_or_else(|e| e.into_inner()).remove(node)
    }

    /// Forgets every node not heard from for `silent` (agents gone, nodes renamed or
    /// invented); their names, for the log.
    pub fn forget_silent(&self, silent: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = nodes
            .slots
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.received) > silent)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &gone {
            nodes.remove(name);
        }
        gone
    }

    /// Stores `window` as its node's latest unless it is a duplicate of (or older than)
    /// what this agent already sent. The window must have been validated.
    pub fn insert(&self, window: NodeWindow) -> Stored {
        self.insert_at(window, Instant::now())
    }

    fn insert_at(&self, window: NodeWindow, now: Instant) -> Stored {
        // Built before the lock: interning takes a lock of its own, and what scoring
        // reads of the window needs no lock at all.
        let compact = CompactWindow::new(&window, &self.strings);
        let mean = |m: &str| compact.mean(m).filter(|v| v.is_finite());
        let psi_memory_full = mean(metric::PSI_MEMORY_FULL);
        let cpu_count = mean(metric::CPU_COUNT).filter(|&c| c >= 1.0);
        let sequence = window.sequence;
        let received_ms = fitsched_proto::now_unix_ms();
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        let mut skipped = 0;
        let (fitness, fitness_since_ms, fallback_features) = match nodes.get(&window.node_name) {
            Some(e) if e.window.agent_id() == window.agent_id && sequence <= e.window.sequence() => {
                return Stored::Duplicate { acked: e.window.sequence() };
            }
            Some(e) => {
                if e.window.agent_id() == window.agent_id {
                    skipped = sequence - e.window.sequence() - 1;
                }
                (e.fitness, e.fitness_since_ms, e.fallback_features.clone())
            }
            None if nodes.slots.len() >= self.max_nodes => return Stored::Full { max_nodes: self.max_nodes },
            None => Default::default(),
        };
        let entry = Entry {
            window: Box::new(compact),
            psi_memory_full,
            cpu_count,
            received: now,
            received_ms,
            fitness,
            fitness_since_ms,
            fallback_features,
        };
        nodes.put(window.node_name, entry);
        Stored::New { sequence, skipped }
    }

    /// `f` of the latest window of `node`, read in place (fitness computation reads a
    /// few metrics of every window; rebuilding each as a `NodeWindow` cost more than the
    /// model).
    pub fn with_window<T>(&self, node: &str, f: impl FnOnce(&CompactWindow) -> T) -> Option<T> {
        self.read().get(node).map(|e| f(&e.window))
    }

    /// Records the fitness computed for `node`'s window `sequence` of agent `agent_id`;
    /// see [`NodeStore::land`].
    pub fn set_fitness(&self, node: &str, agent_id: &str, sequence: u64, fitness: Option<f64>, fallbacks: Vec<String>) {
        self.land([Landed { node: node.to_owned(), agent_id: agent_id.to_owned(), sequence, fitness, fallbacks }]);
    }

    /// Records a batch of computed fitness (`None`: the model failed on that window, the
    /// node has none until its next window's lands), each ignored when a newer window has
    /// replaced the one it was computed for, then recomputes the median fitness once.
    pub fn land(&self, batch: impl IntoIterator<Item = Landed>) {
        let now = Instant::now();
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        for l in batch {
            if let Some(e) = nodes.get_mut(&l.node)
                && e.window.sequence() == l.sequence
                && e.window.agent_id() == l.agent_id
            {
                e.fitness = l.fitness;
                e.fitness_since_ms = shown_since(&e.window, e.received_ms);
                e.fallback_features = l.fallbacks;
            }
        }
        nodes.median = self.median_of(&nodes, now);
    }

    /// The median fitness of the nodes fresh at `now` (the mean of the two middle ones
    /// for an even count).
    fn median_of(&self, nodes: &Nodes, now: Instant) -> Median {
        let mut freshest: Option<Instant> = None;
        let mut values: Vec<f64> = nodes
            .slots
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.received) <= self.stale_after)
            .filter_map(|(_, e)| {
                let f = e.fitness.filter(|f| f.is_finite())?;
                freshest = Some(freshest.map_or(e.received, |t| t.max(e.received)));
                Some(f.clamp(0.0, 1.0))
            })
            .collect();
        let n = values.len();
        let Some(freshest) = freshest else { return Median::default() };
        let (below, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
        let fitness = if n % 2 == 1 {
            upper
        } else {
            // The lower middle is the largest of the lower half.
            let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lower + upper) / 2.0
        };
        Median { fitness: Some(fitness), until: freshest.checked_add(self.stale_after) }
    }

    /// The stand-in fitness: the median fitness of the fresh nodes as of the last landed
    /// batch, or [`STAND_IN_WITHOUT_FRESH_NODES`] when none is fresh. O(1).
    pub fn median_fitness(&self) -> f64 {
        let m = self.read().median;
        match (m.fitness, m.until) {
            (Some(f), Some(until)) if Instant::now() <= until => f,
            (Some(f), None) => f,
            _ => STAND_IN_WITHOUT_FRESH_NODES,
        }
    }

    /// Views of the named nodes, in order.
    pub fn view(&self, names: &[&str]) -> Vec<NodeView> {
        let now = Instant::now();
        let nodes = self.read();
        let view = |slot: Option<u32>| self.view_of(slot.map(|i| &nodes.slots[i as usize].1), now);
        // A concurrent request holds the last resolution: look up directly rather than wait.
        let Ok(mut resolved) = self.resolved.try_lock() else {
            return names.iter().map(|n| view(nodes.index.get(*n).copied())).collect();
        };
        let mut key = Vec::with_capacity(names.iter().map(|n| n.len() + 1).sum());
        for n in names {
            key.extend_from_slice(n.as_bytes());
            key.push(0);
        }
        if resolved.key != key || resolved.generation != nodes.generation {
            resolved.slots = names.iter().map(|n| nodes.index.get(*n).copied()).collect();
            resolved.key = key;
            resolved.generation = nodes.generation;
        }
        resolved.slots.iter().map(|&slot| view(slot)).collect()
    }

    fn view_of(&self, entry: Option<&Entry>, now: Instant) -> NodeView {
        let Some(e) = entry else { return NodeView::Unknown };
        let age = now.saturating_duration_since(e.received);
        if age > self.stale_after {
            return NodeView::Stale { age };
        }
        let Some(fitness) = e.fitness else { return NodeView::NoFitness };
        NodeView::Fresh {
            fitness,
            psi_memory_full: e.psi_memory_full,
            cpu_count: e.cpu_count,
            since_ms: e.fitness_since_ms,
        }
    }

    /// Every node's status, sorted by name, for `ListNodes`.
    pub fn list(&self) -> Vec<NodeStatus> {
        let now = Instant::now();
        let nodes = self.read();
        let mut out: Vec<NodeStatus> = nodes
            .slots
            .iter()
            .map(|(name, e)| {
                let age = now.saturating_duration_since(e.received);
                NodeStatus {
                    name: name.clone(),
                    latest: Some(e.window.to_window(name)),
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
        self.read().slots.iter().map(|(name, _)| name.clone()).collect()
    }

    /// How many nodes are known, and how many of them are stale.
    pub fn counts(&self) -> (usize, usize) {
        let now = Instant::now();
        let nodes = self.read();
        let stale =
            nodes.slots.iter().filter(|(_, e)| now.saturating_duration_since(e.received) > self.stale_after).count();
        (nodes.slots.len(), stale)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Nodes> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_and_silent_nodes_leave_and_resolved_lists_follow() {
        let store = NodeStore::with_max_nodes(Duration::from_secs(60), 3);
        // n1, n2, n3 last heard from 10, 9 and 8 s ago.
        let t0 = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        for (i, n) in ["n1", "n2", "n3"].into_iter().enumerate() {
            assert!(matches!(
                store.insert_at(window(n, "a", 1), t0 + Duration::from_secs(i as u64)),
                Stored::New { .. }
            ));
        }
        assert_eq!(store.insert(window("n4", "a", 1)), Stored::Full { max_nodes: 3 }, "a new node past the limit");
        assert!(matches!(store.insert(window("n1", "a", 2)), Stored::New { .. }), "known nodes still report");
        store.set_fitness("n3", "a", 1, Some(0.9), vec![]);
        assert!(matches!(store.view(&["n1", "n3"])[1], NodeView::Fresh { fitness: 0.9, .. }));
        // n1's removal moves n3 into its slot: the same candidate list resolves again.
        assert!(store.remove("n1"));
        assert!(!store.remove("n1"));
        let view = store.view(&["n1", "n3"]);
        assert_eq!(view[0], NodeView::Unknown);
        assert!(matches!(view[1], NodeView::Fresh { fitness: 0.9, .. }), "{view:?}");
        assert!(matches!(store.insert(window("n4", "a", 1)), Stored::New { .. }), "room again");
        // Silent for longer than 8.5 s: n2, not n3 or the n1 and n4 just heard from.
        let gone = store.forget_silent(Duration::from_millis(8500));
        assert_eq!(gone, vec!["n2".to_owned()]);
        assert_eq!(store.names().len(), 2);
    }

    fn window(node: &str, agent: &str, seq: u64) -> NodeWindow {
        let start_unix_ms = 1_000 * seq as i64;
        NodeWindow {
            node_name: node.into(),
            agent_id: agent.into(),
            sequence: seq,
            start_unix_ms,
            ..Default::default()
        }
    }

    #[test]
    fn duplicates_are_acknowledged_not_stored() {
        let s = NodeStore::new(Duration::from_secs(60));
        assert_eq!(s.insert(window("a", "x", 1)), Stored::New { sequence: 1, skipped: 0 });
        assert_eq!(s.insert(window("a", "x", 2)), Stored::New { sequence: 2, skipped: 0 });
        assert_eq!(s.insert(window("a", "x", 1)), Stored::Duplicate { acked: 2 });
        assert_eq!(s.insert(window("a", "x", 2)), Stored::Duplicate { acked: 2 });
        // Windows 3 and 4 never arrived.
        assert_eq!(s.insert(window("a", "x", 5)), Stored::New { sequence: 5, skipped: 2 });
        // A restarted agent starts counting again under a new id: nothing skipped.
        assert_eq!(s.insert(window("a", "y", 1)), Stored::New { sequence: 1, skipped: 0 });
    }

    #[test]
    fn a_repeated_candidate_list_resolves_like_a_new_one() {
        let s = NodeStore::new(Duration::from_secs(60));
        s.insert(window("a", "x", 1));
        s.set_fitness("a", "x", 1, Some(0.5), vec![]);
        let fresh = |f: f64, since_ms| NodeView::Fresh { fitness: f, psi_memory_full: None, cpu_count: None, since_ms };
        assert_eq!(s.view(&["a", "b"]), vec![fresh(0.5, 1_000), NodeView::Unknown]);
        // Same list again, after b appeared and a's fitness changed: both are seen.
        s.insert(window("b", "y", 1));
        s.insert(window("a", "x", 2));
        // Until the new window's fitness lands, the old one's fitness and start hold.
        assert_eq!(s.view(&["a"]), vec![fresh(0.5, 1_000)]);
        s.set_fitness("a", "x", 2, Some(0.7), vec![]);
        assert_eq!(s.view(&["a", "b"]), vec![fresh(0.7, 2_000), NodeView::NoFitness]);
        // Another order, a list that is a prefix, and names that join to the same bytes.
        assert_eq!(s.view(&["b", "a"]), vec![NodeView::NoFitness, fresh(0.7, 2_000)]);
        assert_eq!(s.view(&["a"]), vec![fresh(0.7, 2_000)]);
        assert_eq!(s.view(&["ab"]), vec![NodeView::Unknown]);
        assert_eq!(s.view(&[]), vec![]);
    }

    #[test]
    fn a_window_from_an_agent_clock_ahead_shows_no_pod_placed_after_its_arrival_less_its_length() {
        let s = NodeStore::new(Duration::from_secs(60));
        let now = fitsched_proto::now_unix_ms();
        let ahead = NodeWindow { start_unix_ms: now + 3_600_000, end_unix_ms: now + 3_620_000, ..window("a", "x", 1) };
        s.insert(ahead);
        s.set_fitness("a", "x", 1, Some(0.8), vec![]);
        let NodeView::Fresh { since_ms, .. } = s.view(&["a"])[0] else { panic!("fresh") };
        assert!((now - 20_000..=fitsched_proto::now_unix_ms() - 20_000).contains(&since_ms), "{since_ms} vs {now}");
    }

    #[test]
    fn fitness_lands_only_on_its_own_window() {
        let s = NodeStore::new(Duration::from_secs(60));
        s.insert(window("a", "x", 1));
        assert_eq!(s.view(&["a"]), vec![NodeView::NoFitness]);
        s.insert(window("a", "x", 2));
        s.set_fitness("a", "x", 1, Some(0.9), vec![]);
        assert_eq!(s.view(&["a"]), vec![NodeView::NoFitness]);
        s.set_fitness("a", "x", 2, Some(0.7), vec![]);
        assert!(matches!(s.view(&["a"])[0], NodeView::Fresh { fitness, .. } if fitness == 0.7));
        // A new window serves with the last fitness until its own lands; a model failure
        // on it leaves the node without one.
        s.insert(window("a", "x", 3));
        assert!(matches!(s.view(&["a"])[0], NodeView::Fresh { fitness, .. } if fitness == 0.7));
        s.set_fitness("a", "x", 3, None, vec![]);
        assert_eq!(s.view(&["a"]), vec![NodeView::NoFitness]);
    }

    #[test]
    fn old_windows_go_stale_and_unknown_nodes_stay_unknown() {
        let s = NodeStore::new(Duration::from_secs(60));
        let long_ago = Instant::now().checked_sub(Duration::from_secs(120)).expect("monotonic clock is past 120 s");
        s.insert_at(window("old", "x", 1), long_ago);
        s.set_fitness("old", "x", 1, Some(0.9), vec![]);
        let views = s.view(&["old", "never"]);
        assert!(matches!(views[0], NodeView::Stale { .. }));
        assert_eq!(views[1], NodeView::Unknown);
        assert_eq!(s.counts(), (1, 1));
        assert!(s.list()[0].stale);
    }

    #[test]
    fn the_median_follows_landed_fitness_and_counts_fresh_nodes_only() {
        let s = NodeStore::new(Duration::from_secs(60));
        assert_eq!(s.median_fitness(), STAND_IN_WITHOUT_FRESH_NODES, "no node at all");
        s.insert(window("a", "x", 1));
        assert_eq!(s.median_fitness(), STAND_IN_WITHOUT_FRESH_NODES, "a window without fitness does not count");
        let land = |node: &str, seq: u64, fitness: Option<f64>| Landed {
            node: node.into(),
            agent_id: "x".into(),
            sequence: seq,
            fitness,
            fallbacks: vec![],
        };
        s.land([land("a", 1, Some(0.9))]);
        assert_eq!(s.median_fitness(), 0.9);
        for n in ["b", "c", "d"] {
            s.insert(window(n, "x", 1));
        }
        // One batch, one recomputation: odd count takes the middle, even the mean of both.
        s.land([land("b", 1, Some(0.2)), land("c", 1, Some(0.6))]);
        assert_eq!(s.median_fitness(), 0.6);
        s.land([land("d", 1, Some(0.3))]);
        assert!((s.median_fitness() - 0.45).abs() < 1e-12, "{}", s.median_fitness());
        // A fitness for a window that was replaced meanwhile does not land.
        s.insert(window("d", "x", 2));
        s.land([land("d", 1, Some(1.0))]);
        assert!((s.median_fitness() - 0.45).abs() < 1e-12);
        // A model failure takes the node out; a stale node never counts.
        s.land([land("a", 1, None)]);
        assert_eq!(s.median_fitness(), 0.3);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(120)).expect("monotonic clock is past 120 s");
        s.insert_at(window("old", "x", 1), long_ago);
        s.land([land("old", 1, Some(0.0))]);
        assert_eq!(s.median_fitness(), 0.3, "{:?}", s.view(&["old"]));
    }

    #[test]
    fn the_stand_in_is_the_default_once_every_counted_node_is_stale() {
        let s = NodeStore::new(Duration::from_millis(50));
        s.insert(window("a", "x", 1));
        s.set_fitness("a", "x", 1, Some(0.8), vec![]);
        assert_eq!(s.median_fitness(), 0.8);
        std::thread::sleep(Duration::from_millis(80));
        assert!(matches!(s.view(&["a"])[0], NodeView::Stale { .. }));
        assert_eq!(s.median_fitness(), STAND_IN_WITHOUT_FRESH_NODES, "no batch landed, yet nothing is fresh any more");
    }
}
