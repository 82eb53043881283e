//! The scorer's HTTP side: `/health` for probes, `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Value, json};

use crate::fitness::ModelSlot;
use crate::placements::Placements;
use crate::store::NodeStore;

#[derive(Clone)]
pub struct HttpState {
    pub store: Arc<NodeStore>,
    pub model: ModelSlot,
    pub placements: Arc<Placements>,
    /// Absent in tests that do not install the global recorder.
    pub prometheus: Option<PrometheusHandle>,
}

pub fn router(state: HttpState) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(state)
}

async fn health(State(s): State<HttpState>) -> Json<Value> {
    let (nodes, stale) = s.store.counts();
    let (placed, records) = s.placements.counts();
    Json(json!({
        "status": "ok",
        "nodes": nodes,
        "stale_nodes": stale,
        "model": s.model.get().describe().kind,
        "watched_pods": placed,
        "placement_records": records,
    }))
}

async fn metrics(State(s): State<HttpState>) -> String {
    // Gauges are sampled at scrape time so they are never older than the scrape.
    let (nodes, stale) = s.store.counts();
    metrics::gauge!(crate::telemetry::series::NODES).set(nodes as f64);
    metrics::gauge!(crate::telemetry::series::STALE_NODES).set(stale as f64);
    let (placed, records) = s.placements.counts();
    metrics::gauge!(crate::telemetry::series::WATCHED_PODS).set(placed as f64);
    metrics::gauge!(crate::telemetry::series::PLACEMENT_RECORDS).set(records as f64);
    s.prometheus.map(|h| h.render()).unwrap_or_default()
}
