//! Fitness is computed when windows arrive, in batches on a blocking thread, and cached
//! in the store, so a scoring request never runs the model and never waits for it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::model::{self, Model};
use crate::store::{Landed, NodeStore};

/// Most windows one batch takes; a larger burst is split.
pub const MAX_BATCH: usize = 4096;

/// The model currently in use; swapped whole so a reader never sees half a model.
#[derive(Clone)]
pub struct ModelSlot(Arc<RwLock<Arc<dyn Model>>>);

impl ModelSlot {
    pub fn new(model: Arc<dyn Model>) -> Self {
        Self(Arc::new(RwLock::new(model)))
    }

    pub fn get(&self) -> Arc<dyn Model> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the model; requests already holding the old one finish with it.
    pub fn set(&self, model: Arc<dyn Model>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = model;
    }
}

/// Hands nodes whose window changed to the batching worker.
#[derive(Clone)]
pub struct FitnessQueue(mpsc::Sender<String>);

impl FitnessQueue {
    /// Starts the worker; it ends when every queue handle is dropped.
    pub fn spawn(store: Arc<NodeStore>, model: ModelSlot, batch_window: Duration) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH);
        tokio::spawn(worker(rx, store, model, batch_window));
        Self(tx)
    }

    /// Queues `node` for (re)computation. Waits when the worker is behind, which slows
    /// ingest rather than losing the update.
    pub async fn push(&self, node: String) {
        // Only fails when the worker is gone, i.e. during shutdown.
        let _ = self.0.send(node).await;
    }
}

async fn worker(mut rx: mpsc::Receiver<String>, store: Arc<NodeStore>, model: ModelSlot, batch_window: Duration) {
    while let Some(first) = rx.recv().await {
        let mut batch = BTreeSet::from([first]);
        let deadline = tokio::time::sleep(batch_window);
        tokio::pin!(deadline);
        while batch.len() < MAX_BATCH {
            tokio::select! {
                next = rx.recv() => match next {
                    Some(node) => { batch.insert(node); }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
        // Off the async runtime: a 4 096-row ONNX run takes milliseconds of CPU that
        // ingest and scoring must not wait behind. One batch at a time: the queue
        // (bounded at MAX_BATCH) holds the rest, and slows ingest when it is full.
        let (store, model) = (store.clone(), model.get());
        if let Err(e) = tokio::task::spawn_blocking(move || compute(&store, model.as_ref(), batch)).await {
            tracing::error!(error = %e, "fitness batch failed");
        }
    }
}

/// Runs the model on the latest windows of `nodes` and caches the results in one batch
/// (which also updates the store's median fitness).
pub fn compute(store: &NodeStore, model: &dyn Model, nodes: impl IntoIterator<Item = String>) {
    let mut keys = Vec::new();
    let mut rows = Vec::new();
    for node in nodes {
        let read = store.with_window(&node, |w| {
            let (row, fallbacks) = model::row_from(model, |m| w.metric(m));
            (row, fallbacks, w.agent_id().to_owned(), w.sequence())
        });
        let Some((row, fallbacks, agent_id, sequence)) = read else { continue };
        keys.push((node, agent_id, sequence, fallbacks));
        rows.push(row);
    }
    if rows.is_empty() {
        return;
    }
    let started = Instant::now();
    let result = model.predict(&rows);
    metrics::histogram!(crate::telemetry::series::INFERENCE_DURATION).record(started.elapsed().as_secs_f64());
    let landed =
        |(node, agent_id, sequence, fallbacks), fitness| Landed { node, agent_id, sequence, fitness, fallbacks };
    match result {
        Ok(fitness) => {
            metrics::counter!(crate::telemetry::series::INFERENCE_PREDICTIONS).increment(fitness.len() as u64);
            store.land(keys.into_iter().zip(fitness).map(|(k, f)| landed(k, Some(f))));
        }
        Err(e) => {
            metrics::counter!(crate::telemetry::series::MODEL_ERRORS).increment(1);
            tracing::warn!(error = %e, nodes = keys.len(), "model failed on a batch; those nodes get the median fitness");
            // The previous window's fitness no longer describes them.
            store.land(keys.into_iter().map(|k| landed(k, None)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Heuristic;
    use crate::store::NodeView;
    use fitsched_proto::NodeWindow;

    /// A model that blocks in `predict` until released, and says when it is inside.
    struct Gate {
        inside: std::sync::mpsc::SyncSender<()>,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
        inner: Heuristic,
    }

    impl Model for Gate {
        fn describe(&self) -> model::Description {
            self.inner.describe()
        }
        fn features(&self) -> &[String] {
            self.inner.features()
        }
        fn fallback(&self, i: usize) -> f64 {
            self.inner.fallback(i)
        }
        fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, model::ModelError> {
            let _ = self.inside.send(());
            let _ = self.release.lock().unwrap().recv();
            self.inner.predict(rows)
        }
    }

    /// On a single-threaded runtime, inference on the runtime would stop every other
    /// task until it ends: here the store is read, and the runtime's timer fires, while
    /// a batch is held inside the model.
    #[tokio::test(flavor = "current_thread")]
    async fn a_running_batch_does_not_hold_up_the_runtime() {
        let store = Arc::new(NodeStore::new(Duration::from_secs(60)));
        let (inside_tx, inside) = std::sync::mpsc::sync_channel(1);
        let (release, release_rx) = std::sync::mpsc::channel();
        let gate = Gate { inside: inside_tx, release: std::sync::Mutex::new(release_rx), inner: Heuristic::new() };
        let queue = FitnessQueue::spawn(store.clone(), ModelSlot::new(Arc::new(gate)), Duration::from_millis(1));
        // One full batch (the queue would make a larger burst wait for this one).
        for i in 0..MAX_BATCH {
            let n = format!("n{i}");
            store.insert(NodeWindow { node_name: n.clone(), agent_id: "x".into(), sequence: 1, ..Default::default() });
            queue.push(n).await;
        }
        // Wait (on the runtime, yielding) until the batch is inside the model.
        while inside.try_recv().is_err() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(matches!(store.view(&["n1"])[0], NodeView::NoFitness), "the batch is still running");
        release.send(()).unwrap();
    }

    #[tokio::test]
    async fn arriving_windows_get_a_cached_fitness() {
        let store = Arc::new(NodeStore::new(Duration::from_secs(60)));
        let queue =
            FitnessQueue::spawn(store.clone(), ModelSlot::new(Arc::new(Heuristic::new())), Duration::from_millis(5));
        for n in ["a", "b"] {
            store.insert(NodeWindow { node_name: n.into(), agent_id: "x".into(), sequence: 1, ..Default::default() });
            queue.push(n.into()).await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.view(&["a", "b"]).iter().any(|v| matches!(v, NodeView::NoFitness)) {
            assert!(Instant::now() < deadline, "fitness never computed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(matches!(store.view(&["a"])[0], NodeView::Fresh { fitness, .. } if (fitness - 0.5).abs() < 1e-9));
        assert_eq!(store.list()[0].fallback_features.len(), 5, "an empty window falls back on every feature");
    }
}
