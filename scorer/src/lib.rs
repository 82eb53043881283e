//! fitsched's scorer: keeps the latest window of every node, turns it into a fitness in
//! [0, 1] and answers scoring requests.
//!
//! Data flows `ingest` → `store` → `fitness` (batched `model` runs, cached) → `service`
//! (`strategy` arithmetic over cached fitness and `placements`, which `watch` feeds
//! from the cluster). `http` serves
//! `/health` and `/metrics`.

pub mod config;
pub mod decisions;
pub mod fitness;
pub mod http;
pub mod ingest;
pub mod model;
pub mod onnx;
pub mod placements;
pub mod reload;
pub mod service;
pub mod store;
pub mod strategy;
pub mod watch;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use fitsched_proto::ingest_server::IngestServer;
use fitsched_proto::scorer_server::ScorerServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::Args;

use crate::fitness::{FitnessQueue, ModelSlot};
use crate::model::Heuristic;
use crate::placements::Placements;
use crate::service::{FilterRules, ScorerService};
use crate::store::NodeStore;

/// Histogram buckets (seconds) for inference and request durations: 10 µs to 1 s.
pub const DURATION_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// HTTP/2 flow-control windows of the gRPC server (bytes).
const H2_STREAM_WINDOW: u32 = 4 << 20;
const H2_CONNECTION_WINDOW: u32 = 16 << 20;

/// Binds the configured addresses and serves until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    let prometheus =
        fitsched_runtime::install_prometheus(&[("inference_prediction_duration_seconds", DURATION_BUCKETS)])?;
    let grpc =
        TcpListener::bind(args.grpc_listen).await.with_context(|| format!("binding gRPC {}", args.grpc_listen))?;
    let http =
        TcpListener::bind(args.http_listen).await.with_context(|| format!("binding HTTP {}", args.http_listen))?;
    serve(args, grpc, http, Some(prometheus), fitsched_runtime::shutdown_signal()).await
}

/// Serves gRPC and HTTP on the given listeners until `shutdown` completes.
pub async fn serve(
    args: Args,
    grpc: TcpListener,
    http: TcpListener,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = Arc::new(NodeStore::new(args.stale_after()));
    // A new pod's load shows in its node's windows after about two windows.
    let placements = Arc::new(Placements::new(args.assume_ttl, args.bound_ttl, args.window * 2));
    match args.cluster_client().await? {
        Some(client) => {
            watch::spawn(client, placements.clone());
            tracing::info!("watching pods and nodes for replica and zone awareness");
        }
        None => tracing::info!(
            "no cluster watch: replica and zone awareness from the scorer's own assumed and bound placements only"
        ),
    }
    let model = match &args.model {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading --model {}", path.display()))?;
            let loaded = onnx::OnnxModel::from_bytes(&bytes, path).context("loading --model")?;
            let slot = ModelSlot::new(Arc::new(loaded));
            reload::spawn(path.clone(), reload::fingerprint(&bytes), slot.clone(), store.clone(), args.model_poll);
            slot
        }
        None => ModelSlot::new(Arc::new(Heuristic::new())),
    };
    let described = model.get().describe();
    tracing::info!(kind = described.kind, version = %described.version, "{}", described.summary);
    let queue = FitnessQueue::spawn(store.clone(), model.clone(), args.batch_window);
    let filter =
        FilterRules { min_fitness: args.filter_min_fitness, max_psi_memory_full: args.filter_max_psi_memory_full };
    let scorer = ScorerService::new(store.clone(), placements.clone(), model.clone(), args.default_strategy, filter);
    let ingest = ingest::IngestService::new(store.clone(), queue);

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<ScorerServer<ScorerService>>().await;
    health_reporter.set_serving::<IngestServer<ingest::IngestService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fitsched_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
    tracing::info!(grpc = %grpc_addr, http = %http_addr, stale_after = ?args.stale_after(), default_strategy = %args.default_strategy, "scorer listening");
    // A 5 000-node Score request is ~80 KB, above HTTP/2's default 64 KiB window: without
    // larger windows every such request waits a round trip for a WINDOW_UPDATE.
    let mut builder = tonic::transport::Server::builder()
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity)).context("TLS settings")?;
        tracing::info!(cert = %cert.display(), "gRPC over TLS");
    }
    if args.ingest_token_file.is_none() {
        tracing::warn!("no --ingest-token-file: any client may stream windows");
    }
    let grpc_server = builder
        .add_service(health)
        .add_service(reflection().build_v1().context("reflection v1")?)
        .add_service(reflection().build_v1alpha().context("reflection v1alpha")?)
        .add_service(ScorerServer::new(scorer))
        .add_service(IngestServer::with_interceptor(ingest, ingest::TokenCheck(args.ingest_token_file.clone())))
        .serve_with_incoming_shutdown(nodelay(grpc), stopped(stop_rx.clone()));
    let http_server = axum::serve(http, http::router(http::HttpState { store, model, placements, prometheus }))
        .with_graceful_shutdown(stopped(stop_rx));
    let (g, h) = tokio::join!(grpc_server, http_server);
    g.context("gRPC server")?;
    h.context("HTTP server")?;
    tracing::info!("scorer stopped");
    Ok(())
}

/// Accepted connections with Nagle's algorithm off. A unary gRPC answer is several
/// HTTP/2 frames; with Nagle on, the later ones wait for the client's delayed ACK, which
/// added 40 ms to every shim call in `cargo xtask bench shim`.
fn nodelay(listener: TcpListener) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}
