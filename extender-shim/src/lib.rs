//! fitsched's kube-scheduler extender shim.
//!
//! kube-scheduler POSTs extender v1 JSON ([`wire`]) to `/filter`, `/prioritize` and
//! `/bind` ([`api`]); the shim turns each call into one gRPC request to the scorer
//! ([`client`]) and maps the answer back. When the scorer cannot answer within the
//! deadline the shim answers neutrally, so scheduling never stops because of fitsched.

pub mod api;
pub mod binder;
pub mod client;
pub mod config;
pub mod quantity;
pub mod tls;
pub mod wire;

use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;

pub use api::router;
pub use config::{Args, ShimConfig};

// Extender answers should take milliseconds; the upper buckets show deadline-bound
// fallbacks and slow decoding of very large full-mode bodies.
const DURATION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Serves the extender until SIGINT or SIGTERM, then finishes in-flight requests.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let mut config = args.shim_config().map_err(anyhow::Error::msg)?;
    config.binder = binder::Binder::new(args.binder).await?;
    let app = router(&config, Some(metrics)).with_context(|| format!("invalid --scorer URL {:?}", args.scorer))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(
        listen = %listener.local_addr().unwrap_or(args.listen),
        scorer = %args.scorer,
        deadline = ?args.deadline,
        bind_deadline = ?args.bind_deadline,
        max_body_bytes = args.max_body_bytes,
        binder = ?config.binder,
        profiles = ?config.profiles,
        https = tls.is_some(),
        "fitsched-shim serving"
    );
    if let Some(acceptor) = tls {
        tls::serve(listener, app, acceptor, fitsched_runtime::shutdown_signal())
            .await
            .context("HTTPS server failed")?;
        info!("fitsched-shim stopped");
        return Ok(());
    }
    // kube-scheduler's client waits on every answer; Nagle would hold its tail back.
    let listener = axum::serve::ListenerExt::tap_io(listener, |conn: &mut tokio::net::TcpStream| {
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(fitsched_runtime::shutdown_signal())
        .await
        .context("HTTP server failed")?;
    info!("fitsched-shim stopped");
    Ok(())
}

/// Installs the global Prometheus recorder (once per process) and its upkeep task;
/// must be called inside a Tokio runtime.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = fitsched_runtime::install_prometheus(&[(api::metric::REQUEST_DURATION, DURATION_BUCKETS)])?;
    metrics::describe_counter!(api::metric::REQUESTS, "Extender requests answered, by verb and HTTP status code.");
    metrics::describe_histogram!(
        api::metric::REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving an extender request to answering it."
    );
    metrics::describe_counter!(
        api::metric::FALLBACKS,
        "Neutral answers given because the scorer was unreachable, too slow or refused the request."
    );
    metrics::describe_counter!(api::metric::BAD_REQUESTS, "Requests refused as malformed (400) or too large (413).");
    metrics::describe_counter!(api::metric::BIND_ERRORS, "Binds reported failed to kube-scheduler, by reason.");
    metrics::describe_counter!(
        api::metric::BIND_NOTICE_FAILURES,
        "Bindings created whose notice to the scorer failed (its pod watch catches up)."
    );
    metrics::describe_counter!(
        tls::HANDSHAKE_FAILURES,
        "HTTPS connections dropped because their TLS handshake failed or timed out."
    );
    Ok(handle)
}
