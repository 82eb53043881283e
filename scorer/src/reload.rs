//! Hot reload of the ONNX model file (a mounted ConfigMap in the chart).
//!
//! The file is polled: a ConfigMap update swaps a symlink rather than writing the file,
//! which file-event watchers miss or see in pieces, while comparing the content from one
//! poll to the next sees exactly what matters. A changed file is loaded and checked on
//! its parity vectors before it replaces the current model in one swap; then every
//! node's fitness is recomputed. A file that fails any check keeps the old model.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::fitness::{self, ModelSlot};
use crate::model::Model;
use crate::onnx::OnnxModel;
use crate::store::NodeStore;

/// A cheap identity of the file's content.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Watches `path` every `poll`, starting from the content `loaded` was built from.
pub fn spawn(path: PathBuf, loaded: u64, slot: ModelSlot, store: Arc<NodeStore>, poll: Duration) {
    tokio::spawn(async move {
        let mut current = loaded;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let bytes = match tokio::fs::read(&path).await {
                Ok(b) => b,
                // Mid-swap or briefly absent: look again at the next poll.
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "model file not readable right now");
                    continue;
                }
            };
            let seen = fingerprint(&bytes);
            if seen == current {
                continue;
            }
            current = seen;
            let p = path.clone();
            let loaded = tokio::task::spawn_blocking(move || OnnxModel::from_bytes(&bytes, &p)).await;
            let old = slot.get().describe().version;
            match loaded {
                Ok(Ok(model)) => {
                    let version = model.describe().version;
                    slot.set(Arc::new(model));
                    let model = slot.get();
                    let store = store.clone();
                    let nodes = store.names();
                    let _ = tokio::task::spawn_blocking(move || fitness::compute(&store, model.as_ref(), nodes)).await;
                    metrics::counter!(crate::telemetry::series::MODEL_RELOADS, "outcome" => "loaded").increment(1);
                    tracing::info!(path = %path.display(), %old, new = %version, "model reloaded; fitness recomputed");
                }
                Ok(Err(e)) => {
                    metrics::counter!(crate::telemetry::series::MODEL_RELOADS, "outcome" => "refused").increment(1);
                    tracing::warn!(path = %path.display(), error = %e, keeping = %old, "new model file refused");
                }
                Err(e) => {
                    metrics::counter!(crate::telemetry::series::MODEL_RELOADS, "outcome" => "refused").increment(1);
                    tracing::error!(error = %e, keeping = %old, "loading the new model panicked");
                }
            }
        }
    });
}
