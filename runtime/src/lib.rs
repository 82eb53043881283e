//! What every fitsched binary does at start and stop, in one place so the three behave
//! alike: structured logs on stderr, the process-wide Prometheus recorder, and a clean
//! stop on SIGINT or SIGTERM.
//!
//! This crate holds process plumbing only; no fitsched concept lives here.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Colours only on a terminal,
/// so log collectors store plain text.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Installs the process-wide Prometheus recorder, with explicit buckets for the named
/// histograms (so they render as Prometheus histograms, not summaries), and its upkeep
/// task. Call once per process, inside a Tokio runtime.
pub fn install_prometheus(histograms: &[(&str, &[f64])]) -> anyhow::Result<PrometheusHandle> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("histogram buckets of {name}"))?;
    }
    let handle = builder.install_recorder().context("cannot install the Prometheus recorder")?;
    let upkeep = handle.clone();
    // Without the exporter's own HTTP listener nothing else drains histogram samples.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Completes on SIGINT or SIGTERM (what Kubernetes sends on pod deletion). A signal that
/// cannot be listened for is logged and never fires.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}
