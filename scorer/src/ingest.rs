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

pub use fitsched_proto::validate::{MAX_NODE_NAME, node_name, window as validate};

/// Checks the bearer token of a new ingest stream against the token file, when one is
/// configured. The file is read per stream (streams are long-lived), so rotation needs
/// no restart; an unreadable file refuses everyone rather than admitting everyone.
#[derive(Clone)]
pub struct TokenCheck(pub Option<std::path::PathBuf>);

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(path) = &self.0 else { return Ok(req) };
        let expected = fitsched_runtime::read_token(path).map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "cannot check ingest tokens");
            Status::unavailable("the scorer cannot check tokens right now")
        })?;
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                metrics::counter!("fitsched_scorer_ingest_unauthenticated_total").increment(1);
                Status::unauthenticated("ingest needs an `authorization: Bearer <token>` header")
            })?;
        if bool::from(subtle::ConstantTimeEq::ct_eq(presented.as_bytes(), expected.as_bytes())) {
            Ok(req)
        } else {
            metrics::counter!("fitsched_scorer_ingest_unauthenticated_total").increment(1);
            tracing::warn!(peer = ?req.remote_addr(), "ingest stream with a wrong token refused");
            Err(Status::unauthenticated("wrong ingest token"))
        }
    }
}

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
                    metrics::counter!("fitsched_scorer_windows_rejected_total").increment(1);
                    tracing::warn!(?peer, node = %window.node_name, sequence = window.sequence, %why, "window refused");
                    let _ = tx.send(Err(Status::invalid_argument(format!("window refused: {why}")))).await;
                    break;
                }
                let (node, agent_id) = (window.node_name.clone(), window.agent_id.clone());
                let acked_sequence = match store.insert(window) {
                    Stored::New { sequence } => {
                        metrics::counter!("fitsched_scorer_windows_total").increment(1);
                        tracing::debug!(%node, sequence, "window stored");
                        fitness.push(node.clone()).await;
                        sequence
                    }
                    Stored::Duplicate { acked } => {
                        metrics::counter!("fitsched_scorer_windows_duplicate_total").increment(1);
                        acked
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
