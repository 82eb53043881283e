//! `/metrics` exposes the shim's series. Its own test binary, because it installs the
//! process-wide recorder, which the parallel tests in `it` must not share.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fitsched_shim::ShimConfig;
use tower::ServiceExt;

async fn call(app: &axum::Router, method: &str, path: &str, body: &'static str) -> (StatusCode, String) {
    let request = Request::builder().method(method).uri(path).body(Body::from(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn metrics_name_verbs_codes_and_fallback_reasons() {
    let handle = fitsched_shim::install_metrics().unwrap();
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = ShimConfig::new(url);
    config.client.deadline = Duration::from_millis(300);
    let app = fitsched_shim::router(&config, Some(handle)).unwrap();

    let filter = r#"{"Pod": {"metadata": {"name": "p", "namespace": "ns"}}, "NodeNames": ["a", "b"]}"#;
    assert_eq!(call(&app, "POST", "/filter", filter).await.0, StatusCode::OK);
    assert_eq!(call(&app, "POST", "/prioritize", "{").await.0, StatusCode::BAD_REQUEST);

    let (status, text) = call(&app, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        r#"fitsched_shim_requests_total{verb="filter",code="200"} 1"#,
        r#"fitsched_shim_requests_total{verb="prioritize",code="400"} 1"#,
        r#"fitsched_shim_fallbacks_total{verb="filter",reason="unavailable"} 1"#,
        r#"fitsched_shim_bad_requests_total{verb="prioritize"} 1"#,
        r#"fitsched_shim_request_duration_seconds_bucket{verb="filter",le="0.5"}"#,
        "# HELP fitsched_shim_fallbacks_total",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
