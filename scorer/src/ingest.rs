//! `fitsched.v1.Ingest`: agents stream windows in, acknowledgements flow back.

use std::pin::Pin;
use std::sync::Arc;

use fitsched_proto::ingest_server::Ingest;
use fitsched_proto::{IngestAck, NodeWindow};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tonic::{Request, Response, Status, Streaming};

use crate::fitness::FitnessQueue;
use crate::store::{NodeStore, Stored};

pub use fitsched_proto::validate::{node_name, window as validate};

pub struct IngestService {
    store: Arc<NodeStore>,
    fitness: FitnessQueue,
}

impl IngestService {
    pub fn new(store: Arc<NodeStore>, fitness: FitnessQueue) -> Self {
        Self { store, fitness }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<IngestAck, Status>> + Send>>;

#[tonic::async_trait]
impl Ingest for IngestService {
    type StreamStream = AckStream;

    async fn stream(&self, request: Request<Streaming<NodeWindow>>) -> Result<Response<AckStream>, Status> {
        let peer = request.remote_addr();
        let caller = crate::auth::caller(&request).cloned();
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let (store, fitness) = (self.store.clone(), self.fitness.clone());
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                let window = match item {
                    Ok(w) => w,
                    Err(status) => {
                        tracing::debug!(?peer, %status, "agent stream ended");
                        break;
                    }
                };
                if let Err(why) = validate(&window) {
                    metrics::counter!(crate::telemetry::series::WINDOWS_REJECTED).increment(1);
                    tracing::warn!(?peer, node = %window.node_name, sequence = window.sequence, %why, "window refused");
                    let _ = tx.send(Err(Status::invalid_argument(format!("window refused: {why}")))).await;
                    break;
                }
                if let Some(Err(status)) = caller.as_ref().map(|c| c.check_node(&window.node_name)) {
                    tracing::warn!(?peer, node = %window.node_name, why = status.message(), "window refused");
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                let (node, agent_id) = (window.node_name.clone(), window.agent_id.clone());
                let acked_sequence = match store.insert(window) {
                    Stored::New { sequence, skipped } => {
                        metrics::counter!(crate::telemetry::series::WINDOWS).increment(1);
                        if skipped > 0 {
                            metrics::counter!(crate::telemetry::series::WINDOWS_SKIPPED).increment(skipped);
                            tracing::warn!(%node, sequence, skipped, "windows of this agent never arrived");
                        }
                        tracing::debug!(%node, sequence, "window stored");
                        fitness.push(node.clone()).await;
                        sequence
                    }
                    Stored::Duplicate { acked } => {
                        metrics::counter!(crate::telemetry::series::WINDOWS_DUPLICATE).increment(1);
                        acked
                    }
                    Stored::Full { max_nodes } => {
                        metrics::counter!(crate::telemetry::series::WINDOWS_REJECTED).increment(1);
                        tracing::warn!(?peer, %node, max_nodes, "window of a new node refused: the store is full");
                        let message = format!("the scorer tracks its limit of {max_nodes} nodes (--max-nodes)");
                        let _ = tx.send(Err(Status::resource_exhausted(message))).await;
                        break;
                    }
                };
                if tx.send(Ok(IngestAck { node_name: node, agent_id, acked_sequence })).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitsched_proto::MetricSummary;

    fn good() -> NodeWindow {
        let mut w = NodeWindow {
            node_name: "worker-1".into(),
            agent_id: "a".into(),
            sequence: 1,
            start_unix_ms: 0,
            end_unix_ms: 20_000,
            ..Default::default()
        };
        w.metrics
            .insert("cpu_utilization".into(), MetricSummary { mean: 0.5, max: 0.7, p95: 0.7, last: 0.6, samples: 20 });
        w
    }

    #[test]
    fn accepts_a_plain_window() {
        assert_eq!(validate(&good()), Ok(()));
    }

    #[test]
    fn refuses_nan_negative_and_malformed_windows() {
        type Spoil = fn(&mut NodeWindow);
        let cases: [(&str, Spoil); 9] = [
            ("NaN", |w| w.metrics.get_mut("cpu_utilization").unwrap().mean = f64::NAN),
            ("negative", |w| w.metrics.get_mut("cpu_utilization").unwrap().max = -1.0),
            ("infinite", |w| w.metrics.get_mut("cpu_utilization").unwrap().last = f64::INFINITY),
            ("empty name", |w| w.node_name.clear()),
            ("long name", |w| w.node_name = "n".repeat(300)),
            ("space in name", |w| w.node_name = "a b".into()),
            ("no agent", |w| w.agent_id.clear()),
            ("sequence 0", |w| w.sequence = 0),
            ("backwards", |w| w.end_unix_ms = -5),
        ];
        for (what, spoil) in cases {
            let mut w = good();
            spoil(&mut w);
            assert!(validate(&w).is_err(), "{what} was accepted");
        }
    }
}
