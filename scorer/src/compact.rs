//! How the store holds a window: the content of a `NodeWindow` in about a third of its
//! memory. Metric names and missing-metric reasons repeat on every node of a cluster, so
//! they are interned (one shared `Arc<str>` each); the metrics are a sorted slice rather
//! than a hash map. A `NodeWindow` is rebuilt from it for fitness and `ListNodes`.
//! Measured with `cargo xtask bench store` (README).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use fitsched_proto::{MetricSummary, Missing, NodeWindow};

/// Shares equal strings. Past `max` distinct strings (names and reasons an agent made
/// up, window after window) new ones are no longer kept: they are stored unshared, so
/// memory stays bounded by the store's own node limit.
pub struct Interner {
    // foldhash: every stored window interns some sixty strings, and only authenticated
    // agents send them (see the store's node map).
    set: Mutex<HashSet<Arc<str>, foldhash::fast::RandomState>>,
    max: usize,
}

impl Interner {
    pub fn new(max: usize) -> Self {
        Self { set: Mutex::new(HashSet::default()), max }
    }

    pub fn intern(&self, s: &str) -> Arc<str> {
        self.lock().intern(s)
    }

    /// Holds the set for a run of [`Interning::intern`] calls (a window's worth), taking
    /// the lock once.
    pub fn lock(&self) -> Interning<'_> {
        Interning { set: self.set.lock().unwrap_or_else(|e| e.into_inner()), max: self.max }
    }

    /// Distinct strings kept.
    pub fn len(&self) -> usize {
        self.lock().set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The [`Interner`], locked.
pub struct Interning<'a> {
    set: std::sync::MutexGuard<'a, HashSet<Arc<str>, foldhash::fast::RandomState>>,
    max: usize,
}

impl Interning<'_> {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        let new: Arc<str> = Arc::from(s);
        if self.set.len() < self.max {
            self.set.insert(new.clone());
        }
        new
    }
}

/// The order a window's metrics are kept in: by length, then bytes. Any total order
/// serves the lookups; this one settles most comparisons on the length, which matters
/// because every stored window is sorted (some 170 comparisons at 34 metrics).
fn name_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A stored window, without its node's name (the store's key).
#[derive(Debug, Clone)]
pub struct CompactWindow {
    agent_id: Box<str>,
    sequence: u64,
    start_unix_ms: i64,
    end_unix_ms: i64,
    samples: u32,
    samples_expected: u32,
    /// Sorted by [`name_order`].
    metrics: Box<[(Arc<str>, MetricSummary)]>,
    missing: Box<[(Arc<str>, Arc<str>)]>,
}

impl CompactWindow {
    pub fn new(w: &NodeWindow, strings: &Interner) -> Self {
        let mut strings = strings.lock();
        let mut metrics: Vec<(Arc<str>, MetricSummary)> =
            w.metrics.iter().map(|(name, s)| (strings.intern(name), *s)).collect();
        metrics.sort_unstable_by(|a, b| name_order(&a.0, &b.0));
        Self {
            agent_id: w.agent_id.as_str().into(),
            sequence: w.sequence,
            start_unix_ms: w.start_unix_ms,
            end_unix_ms: w.end_unix_ms,
            samples: w.samples,
            samples_expected: w.samples_expected,
            metrics: metrics.into(),
            missing: w.missing.iter().map(|m| (strings.intern(&m.name), strings.intern(&m.reason))).collect(),
        }
    }

    /// The window as it arrived (metrics in a map, missing in arrival order).
    pub fn to_window(&self, node: &str) -> NodeWindow {
        NodeWindow {
            node_name: node.to_owned(),
            sequence: self.sequence,
            agent_id: self.agent_id.to_string(),
            start_unix_ms: self.start_unix_ms,
            end_unix_ms: self.end_unix_ms,
            samples: self.samples,
            samples_expected: self.samples_expected,
            metrics: self.metrics.iter().map(|(name, s)| (name.to_string(), *s)).collect(),
            missing: self
                .missing
                .iter()
                .map(|(name, reason)| Missing { name: name.to_string(), reason: reason.to_string() })
                .collect(),
        }
    }

    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn start_unix_ms(&self) -> i64 {
        self.start_unix_ms
    }

    pub fn end_unix_ms(&self) -> i64 {
        self.end_unix_ms
    }

    /// A metric's summary, when the window has it.
    pub fn metric(&self, metric: &str) -> Option<&MetricSummary> {
        let i = self.metrics.binary_search_by(|(name, _)| name_order(name, metric)).ok()?;
        Some(&self.metrics[i].1)
    }

    /// A metric's window mean, when the window has it.
    pub fn mean(&self, metric: &str) -> Option<f64> {
        self.metric(metric).map(|s| s.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(node: &str) -> NodeWindow {
        let mut w = NodeWindow {
            node_name: node.into(),
            agent_id: "a".into(),
            sequence: 7,
            start_unix_ms: 1,
            end_unix_ms: 2,
            samples: 19,
            samples_expected: 20,
            ..Default::default()
        };
        for (i, m) in ["cpu_utilization", "memory_available_ratio", "psi_cpu_some"].into_iter().enumerate() {
            let v = i as f64 / 10.0;
            w.metrics.insert(m.into(), MetricSummary { mean: v, max: v + 0.1, p95: v, last: v, samples: 19 });
        }
        w.missing = vec![
            Missing { name: "perf_ipc".into(), reason: "no PMU".into() },
            Missing { name: "pcm_l3".into(), reason: "no MSR".into() },
        ];
        w
    }

    #[test]
    fn round_trips_and_shares_strings_across_nodes() {
        let strings = Interner::new(100);
        let (a, b) = (window("n1"), window("n2"));
        let (ca, cb) = (CompactWindow::new(&a, &strings), CompactWindow::new(&b, &strings));
        assert_eq!(ca.to_window("n1"), a);
        assert_eq!(cb.to_window("n2"), b);
        assert_eq!(strings.len(), 7, "three names, two missing names, two reasons, once each");
        assert!(Arc::ptr_eq(&ca.metrics[0].0, &cb.metrics[0].0));
        assert_eq!(ca.mean("memory_available_ratio"), Some(0.1));
        assert_eq!(ca.mean("absent"), None);
        assert_eq!((ca.agent_id(), ca.sequence()), ("a", 7));
    }

    #[test]
    fn made_up_strings_past_the_limit_are_not_kept() {
        let strings = Interner::new(2);
        for i in 0..10 {
            assert_eq!(&*strings.intern(&format!("s{i}")), format!("s{i}"));
        }
        assert_eq!(strings.len(), 2);
    }
}
