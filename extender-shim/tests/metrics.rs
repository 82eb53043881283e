//! `/metrics` exposes the shim's series. Its own test binary, because it installs the
//! process-wide recorder, which the parallel tests in `it` must not share.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fitsched_shim::Binder;
use fitsched_shim::ShimConfig;
use kube::client::Body as KubeBody;
use tower::ServiceExt;
use tower_test::mock;

async fn call(app: &axum::Router, method: &str, path: &str, body: &'static str) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(path).body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

/// A mock API server answering every request with a `Status` of `code`.
fn api(code: u16) -> Binder {
    let (service, handle) = mock::pair::<http::Request<KubeBody>, http::Response<KubeBody>>();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((_, send)) = handle.next_request().await {
            let status = serde_json::json!({"apiVersion": "v1", "kind": "Status", "code": code,
                "status": if code < 300 { "Success" } else { "Failure" },
                "reason": if code == 409 { "Conflict" } else { "" }, "message": "pod is already assigned to a node"});
            let mut response = http::Response::new(KubeBody::from(serde_json::to_vec(&status).unwrap()));
            *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
            send.send_response(response);
        }
    });
    Binder::Kubernetes(kube::Client::new(service, "default"))
}

#[tokio::test]
async fn metrics_name_verbs_codes_and_fallback_reasons() {
    let handle = fitsched_shim::install_metrics().unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = ShimConfig::new(url);
    config.deadlines.verb = Duration::from_millis(300);
    let app = fitsched_shim::router(&config).unwrap();
    let metrics = fitsched_shim::metrics_router(Some(handle));

    let filter = r#"{"Pod": {"metadata": {"name": "p", "namespace": "ns"}}, "NodeNames": ["a", "b"]}"#;
    assert_eq!(call(&app, "POST", "/filter", filter).await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", "/prioritize", "{").await.0, StatusCode::BAD_REQUEST);

    // Binds with no scorer behind: a refused Binding is an error, a created one whose
    // notice fails is not.
    let bind = r#"{"PodName": "p", "PodNamespace": "ns", "PodUID": "u", "Node": "a"}"#;
    for code in [409, 201] {
        let mut config = config.clone();
        config.binder = api(code);
        let (status, answer) = call(&fitsched_shim::router(&config).unwrap(), "POST", "/bind", bind).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer.contains("409"), code == 409, "{answer}");
    }

    // Not on the extender's port, where whoever may scrape could also bind.
    assert_eq!(call(&app, "GET", "/metrics", "").await.0, StatusCode::NOT_FOUND);
    let (status, text) = call(&metrics, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"fitsched_shim_requests_total{verb="filter",code="200"} 1"#,
        r#"fitsched_shim_requests_total{verb="prioritize",code="400"} 1"#,
        r#"fitsched_shim_fallbacks_total{verb="filter",reason="unavailable"} 1"#,
        r#"fitsched_shim_bad_requests_total{verb="prioritize",code="400"} 1"#,
        r#"fitsched_shim_bind_errors_total{reason="conflict"} 1"#,
        "fitsched_shim_bind_notice_failures_total 1",
        r#"fitsched_shim_requests_total{verb="bind",code="200"} 2"#,
        r#"fitsched_shim_request_duration_seconds_bucket{verb="filter",le="0.5"}"#,
        "# HELP fitsched_shim_fallbacks_total",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
