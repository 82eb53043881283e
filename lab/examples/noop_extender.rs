//! The baseline of `cargo xtask bench scheduler`: the least an extender can do. It
//! speaks the same wire format as fitsched's shim (decodes `ExtenderArgs`, answers every
//! candidate: `/filter` passes them all, `/prioritize` scores them 0) and does nothing
//! else. Usage: `noop_extender <listen address>`.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Args<'a> {
    #[serde(rename = "NodeNames", borrow)]
    node_names: Option<Vec<Cow<'a, str>>>,
}

fn names(body: &[u8]) -> Result<Vec<Cow<'_, str>>, serde_json::Error> {
    serde_json::from_slice::<Args<'_>>(body).map(|a| a.node_names.unwrap_or_default())
}

fn bad_request(e: serde_json::Error) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn filter(body: Bytes) -> Response {
    match names(&body) {
        Ok(n) => axum::Json(json!({"NodeNames": n, "FailedNodes": {}, "Error": ""})).into_response(),
        Err(e) => bad_request(e),
    }
}

async fn prioritize(body: Bytes) -> Response {
    match names(&body) {
        Ok(n) => axum::Json(n.iter().map(|h| json!({"Host": h, "Score": 0})).collect::<Vec<_>>()).into_response(),
        Err(e) => bad_request(e),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8081".into());
    let app = Router::new().route("/filter", post(filter)).route("/prioritize", post(prioritize));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
