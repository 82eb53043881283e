//! The agent's HTTP endpoints: `/health` for probes, `/metrics` for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::status::NodeProgress;

#[derive(Clone)]
pub struct HttpState {
    /// The node this agent runs on (for a simulation, the host running it).
    pub node: String,
    /// One entry per reported node: the real one, or every simulated one.
    pub nodes: Arc<Vec<Arc<NodeProgress>>>,
    /// `None` when no recorder was installed (tests, or a second agent in one process).
    pub prometheus: Option<PrometheusHandle>,
}

#[derive(Debug, Serialize)]
struct Health<'a> {
    status: &'static str,
    node: &'a str,
    /// Highest window sequence produced across reported nodes; 0 before the first window.
    last_window_sequence: u64,
    nodes: Vec<NodeHealth<'a>>,
}

#[derive(Debug, Serialize)]
struct NodeHealth<'a> {
    node: &'a str,
    agent_id: &'a str,
    last_window_sequence: u64,
    last_acked_sequence: u64,
    buffered_windows: u64,
    connected: bool,
}

pub fn router(state: HttpState) -> Router {
    Router::new().route("/health", get(health)).route("/metrics", get(metrics)).with_state(state)
}

/// Always 200 while the process runs: the scorer being away is not a reason for the
/// kubelet to restart the agent, which would lose the buffered windows.
async fn health(State(state): State<HttpState>) -> Response {
    let nodes: Vec<NodeHealth<'_>> = state
        .nodes
        .iter()
        .map(|n| NodeHealth {
            node: &n.node_name,
            agent_id: &n.agent_id,
            last_window_sequence: n.last_window_sequence(),
            last_acked_sequence: n.last_acked_sequence(),
            buffered_windows: n.buffered(),
            connected: n.connected(),
        })
        .collect();
    let last_window_sequence = nodes.iter().map(|n| n.last_window_sequence).max().unwrap_or(0);
    Json(Health { status: "ok", node: &state.node, last_window_sequence, nodes }).into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match &state.prometheus {
        Some(handle) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no metrics recorder installed in this process\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tower::ServiceExt;

    use super::*;

    async fn get_path(router: Router, path: &str) -> (StatusCode, String) {
        let response = router.oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    fn state(prometheus: Option<PrometheusHandle>) -> HttpState {
        let a = Arc::new(NodeProgress::new("n1", "a1"));
        a.set_last_window_sequence(7);
        a.set_last_acked_sequence(5);
        a.set_buffered(2);
        HttpState { node: "n1".into(), nodes: Arc::new(vec![a]), prometheus }
    }

    #[tokio::test]
    async fn health_reports_node_and_last_sequence() {
        let (status, body) = get_path(router(state(None)), "/health").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["node"], "n1");
        assert_eq!(v["last_window_sequence"], 7);
        assert_eq!(v["nodes"][0]["last_acked_sequence"], 5);
        assert_eq!(v["nodes"][0]["buffered_windows"], 2);
    }

    #[tokio::test]
    async fn metrics_renders_the_injected_recorder() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(crate::telemetry::WINDOWS, "node" => "n1").increment(3);
        });
        let (status, body) = get_path(router(state(Some(handle))), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("fitsched_agent_windows_total{node=\"n1\"} 3"), "{body}");

        let (status, _) = get_path(router(state(None)), "/metrics").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
