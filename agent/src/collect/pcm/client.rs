//! Asking pcm-sensor-server: the target parsed once from `--pcm-url`, and one bounded
//! `GET` of its Prometheus text over plain HTTP/1.1.

use std::pin::pin;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{DEFAULT_PORT, MAX_PERSECOND_SPAN, PROMETHEUS_TEXT};

/// Where to send `GET`: parsed once from `--pcm-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) host: String,
    pub(super) port: u16,
    /// `host:port` as written, for the `Host` header.
    pub(super) authority: String,
    pub(super) path: String,
    /// [`crate::Limits::pcm_fetch_timeout`] and [`crate::Limits::pcm_max_answer_bytes`].
    pub(super) fetch_timeout: Duration,
    pub(super) max_answer_bytes: usize,
}

pub(super) fn parse_target(url: &str, interval: Duration, limits: &crate::Limits) -> Result<Target, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{e}"))?;
    match uri.scheme_str() {
        None | Some("http") => {}
        Some(other) => return Err(format!("scheme {other}:// is not supported, only http://")),
    }
    let authority = uri.authority().ok_or("no host")?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let port = match (authority.port_u16(), uri.scheme_str()) {
        (Some(port), _) => port,
        (None, Some("http")) => 80,
        // A bare host:port-less name has no scheme to imply a port; the server's own
        // default is the likely intent.
        (None, _) => DEFAULT_PORT,
    };
    // The server keeps 30 one-second samples; asking for the tick's span keeps every
    // second of the tick covered without overlap.
    let span = interval.as_secs_f64().round().clamp(1.0, MAX_PERSECOND_SPAN as f64) as u64;
    let base = uri.path().trim_end_matches('/');
    Ok(Target {
        host: host.to_owned(),
        port,
        authority: authority.as_str().to_owned(),
        path: format!("{base}/persecond/{span}"),
        fetch_timeout: limits.pcm_fetch_timeout,
        max_answer_bytes: limits.pcm_max_answer_bytes,
    })
}

/// One GET of the target: the body of a 2xx Prometheus answer, or why not.
pub(super) async fn fetch(target: &Target) -> Result<String, String> {
    let stream = TcpStream::connect((target.host.as_str(), target.port)).await.map_err(|e| e.to_string())?;
    // pcm-sensor-server looks headers up by exact name ("Accept"), so the request must
    // keep their title case; hyper writes lower case unless told otherwise.
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    let request = Request::get(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, PROMETHEUS_TEXT)
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| format!("HTTP request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("answered HTTP {status}"));
        }
        if let Some(content_type) = response.headers().get(header::CONTENT_TYPE) {
            let content_type = String::from_utf8_lossy(content_type.as_bytes()).into_owned();
            if !content_type.trim_start().to_ascii_lowercase().starts_with("text/plain") {
                return Err(format!("answered {content_type}, not Prometheus text"));
            }
        }
        let body = Limited::new(response.into_body(), target.max_answer_bytes)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| "the answer is not UTF-8".to_owned())
    };
    let mut exchange = pin!(exchange);
    let mut connection = pin!(connection);
    tokio::select! {
        result = &mut exchange => result,
        // The connection finishes only after the body has been handed over, so on a clean
        // end the exchange completes from what is already buffered.
        ended = &mut connection => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(format!("connection failed: {e}")),
        },
    }
}
