//! fitsched's kube-scheduler extender shim.
//!
//! kube-scheduler POSTs extender v1 JSON ([`wire`]) to `/filter`, `/prioritize` and
//! `/bind` ([`api`]); the shim turns each call into one gRPC request to the scorer
//! ([`client`]) and maps the answer back. When the scorer cannot answer within the
//! deadline the shim answers neutrally, so scheduling never stops because of fitsched.
//!
//! The public API: [`run`] the binary from [`Args`], or build its HTTP service with
//! [`router`] and [`metrics_router`] from a [`ShimConfig`] (with a [`Binder`] and
//! [`BodyLimits`]); the extender wire types in [`wire`]. Everything else is internal.

mod api;
mod binder;
mod client;
mod config;
mod fallback;
mod limits;
mod observe;
pub mod wire;

use anyhow::Context;
use fitsched_runtime::http;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;

pub use api::{metrics_router, router};
pub use binder::{Binder, BinderKind};
pub use config::{Args, BodyLimits, ProfileStrategies, ProfileStrategy, ShimConfig};
pub use fallback::Deadlines;
pub use limits::Limits;

// Extender answers should take milliseconds; the upper buckets show deadline-bound
// fallbacks and slow decoding of very large full-mode bodies.
const DURATION_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Serves the extender until SIGINT or SIGTERM, then finishes in-flight requests.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    let mut config = args.shim_config().map_err(anyhow::Error::msg)?;
    config.binder = binder::Binder::new(args.binder).await?;
    let app = router(&config).with_context(|| format!("invalid --scorer URL {:?}", args.scorer))?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(http::tls_acceptor(cert, key)?),
        _ => None,
    };
    let bind = |addr, flag| async move {
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} ({flag})"))
    };
    let listener = bind(args.listen, "--listen").await?;
    let metrics_listener = bind(args.metrics_listen, "--metrics-listen").await?;
    info!(
        listen = %listener.local_addr().unwrap_or(args.listen),
        metrics_listen = %metrics_listener.local_addr().unwrap_or(args.metrics_listen),
        scorer = %args.scorer,
        deadline = ?args.deadline,
        bind_deadline = ?args.bind_deadline,
        limits = ?config.limits,
        binder = ?config.binder,
        profiles = ?config.profiles,
        https = tls.is_some(),
        "fitsched-shim serving"
    );
    if !args.listen.ip().is_loopback() && tls.is_none() {
        tracing::warn!(
            listen = %args.listen,
            "the extender verbs are reachable beyond loopback over plain HTTP: whoever reaches them can bind pods"
        );
    }
    let stop = fitsched_runtime::Stop::on(fitsched_runtime::shutdown_signal());
    let limits = Limits::from_args(&args).map_err(anyhow::Error::msg)?.serve;
    let (served, metrics_served) = tokio::join!(
        http::serve("extender", listener, app, tls, limits, stop.stopped()),
        http::serve("metrics", metrics_listener, metrics_router(Some(metrics)), None, limits, stop.stopped()),
    );
    served.context("extender HTTP server failed")?;
    metrics_served.context("metrics HTTP server failed")?;
    info!("fitsched-shim stopped");
    Ok(())
}

pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = fitsched_runtime::install_prometheus(&[(observe::series::REQUEST_DURATION, DURATION_BUCKETS)])?;
    metrics::describe_counter!(observe::series::REQUESTS, "Extender requests answered, by verb and HTTP status code.");
    metrics::describe_histogram!(
        observe::series::REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving an extender request to answering it."
    );
    metrics::describe_counter!(
        observe::series::FALLBACKS,
        "Neutral answers given because the scorer was unreachable, too slow or refused the request."
    );
    metrics::describe_counter!(
        observe::series::BAD_REQUESTS,
        "Requests refused: malformed (400), body too slow (408), too large (413), no room for the body (503)."
    );
    metrics::describe_counter!(observe::series::BIND_ERRORS, "Binds reported failed to kube-scheduler, by reason.");
    metrics::describe_counter!(
        observe::series::LATE_ANSWERS,
        "Answers (200) that left more than 50 ms after their verb's deadline, counted from the request's arrival."
    );
    metrics::describe_counter!(
        observe::series::BINDS_FOUND_BOUND,
        "Binds refused (409) or unanswered whose pod was already on the requested node: reported bound."
    );
    metrics::describe_counter!(
        observe::series::BIND_NOTICE_FAILURES,
        "Bindings created whose notice to the scorer failed (its pod watch catches up)."
    );
    http::describe_metrics();
    Ok(handle)
}
