//! fitsched's scorer: keeps the latest window of every node, turns it into a fitness in
//! [0, 1] and answers scoring requests.
//!
//! Data flows `ingest` → `store` → `fitness` (batched `model` runs, cached) → `service`
//! (`strategy` arithmetic over cached fitness and `placements`, which `watch` feeds
//! from the cluster). `http` serves
//! `/health` and `/metrics`.
//!
//! The public API: [`run`] / [`serve`] the binary's servers from [`Args`]; the gRPC
//! service itself ([`ScorerService`] over a [`NodeStore`], [`Placements`] and a
//! [`fitness::ModelSlot`]) for embedding and benchmarks; the [`model`] trait with its
//! [`onnx`] and heuristic implementations and [`fitness::compute`] that batches them;
//! the Prometheus series names ([`series`]; `fitsched_proto::metric` names a window's metrics). Everything else is internal.

mod auth;
mod compact;
mod config;
mod decisions;
pub mod fitness;
mod http;
mod ingest;
mod limits;
pub mod model;
pub mod onnx;
mod placements;
mod reload;
mod service;
mod store;
mod strategy;
mod telemetry;
mod watch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fitsched_proto::ingest_server::IngestServer;
use fitsched_proto::scorer_server::ScorerServer;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

pub use config::Args;
pub use limits::Limits;
pub use placements::Placements;
pub use service::{FilterRules, ScorerService, Scoring};
pub use store::{NodeStore, NodeView, Stored};
pub use strategy::Strategy;
pub use telemetry::series;

use crate::fitness::{FitnessQueue, ModelSlot};
use crate::model::Heuristic;

/// Histogram buckets (seconds) for inference and request durations: 10 µs to 1 s.
pub const DURATION_BUCKETS: &[f64] =
    &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// Binds the configured addresses and serves until SIGINT or SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    let prometheus =
        fitsched_runtime::install_prometheus(&[(crate::telemetry::series::INFERENCE_DURATION, DURATION_BUCKETS)])?;
    telemetry::describe();
    // Everything is ready before the ports open: a client that connected while the model
    // loads would get a connection and no answer for as long, where a closed port is
    // refused at once (a restarting scorer costs the shim nothing then, not its deadline).
    let ready = Ready::prepare(args).await?;
    let grpc = TcpListener::bind(ready.args.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC {}", ready.args.grpc_listen))?;
    let http = TcpListener::bind(ready.args.http_listen)
        .await
        .with_context(|| format!("binding HTTP {}", ready.args.http_listen))?;
    ready.serve(grpc, http, Some(prometheus), fitsched_runtime::shutdown_signal()).await
}

/// Serves gRPC and HTTP on the given listeners until `shutdown` completes.
pub async fn serve(
    args: Args,
    grpc: TcpListener,
    http: TcpListener,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Ready::prepare(args).await?.serve(grpc, http, prometheus, shutdown).await
}

/// The scorer with its model loaded, its watch started and its callers' checks set up:
/// all that remains is to listen.
struct Ready {
    args: Args,
    store: Arc<NodeStore>,
    placements: Arc<Placements>,
    model: ModelSlot,
    scorer: ScorerService,
    ingest: ingest::IngestService,
    auth: auth::Authenticator,
    limits: Limits,
}

impl Ready {
    async fn prepare(args: Args) -> anyhow::Result<Ready> {
        let limits = Limits::from_args(&args);
        let store = Arc::new(NodeStore::with_max_nodes(args.stale_after(), limits.max_nodes));
        tokio::spawn(forget_silent_nodes(store.clone(), limits.forget_after));
        // A new pod counts against its node until a fitness from a window begun after it
        // lands (`View::recent_on`). The limit only matters for nodes without one: past
        // staleness their fitness is the median, which never showed the pod either.
        let placements = Arc::new(
            Placements::new(args.assume_ttl, args.bound_ttl, args.stale_after() + args.window).with_limits(&limits),
        );
        match args.cluster_client().await? {
            Some(client) => {
                watch::spawn(client, placements.clone(), store.clone());
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
        let scorer =
            ScorerService::new(store.clone(), placements.clone(), model.clone(), args.default_strategy, filter)
                .with_limits(&limits);
        let ingest = ingest::IngestService::new(store.clone(), queue);
        let auth = authenticator(&args, &limits).await?;
        Ok(Ready { args, store, placements, model, scorer, ingest, auth, limits })
    }

    /// Serves gRPC and HTTP on the given listeners until `shutdown` completes.
    async fn serve(
        self,
        grpc: TcpListener,
        http: TcpListener,
        prometheus: Option<PrometheusHandle>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Ready { args, store, placements, model, scorer, ingest, auth, limits } = self;
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<ScorerServer<ScorerService>>().await;
        health_reporter.set_serving::<IngestServer<ingest::IngestService>>().await;
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(fitsched_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };

        let stop = fitsched_runtime::Stop::on(shutdown);

        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        tracing::info!(grpc = %grpc_addr, http = %http_addr, stale_after = ?args.stale_after(), default_strategy = %args.default_strategy, "scorer listening");
        // Bounded work per connection: at most `limits.max_streams` calls open on one, and a
        // handler runs for at most `limits.max_concurrent_calls` of them at once; the rest
        // wait for a slot.
        let mut builder = tonic::transport::Server::builder()
            .initial_stream_window_size(fitsched_runtime::H2_STREAM_WINDOW)
            .initial_connection_window_size(fitsched_runtime::H2_CONNECTION_WINDOW)
            .max_concurrent_streams(limits.max_streams)
            .concurrency_limit_per_connection(limits.max_concurrent_calls);
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let identity = tonic::transport::Identity::from_pem(read(cert)?, read(key)?);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .context("TLS settings")?;
            tracing::info!(cert = %cert.display(), "gRPC over TLS");
        }
        let grpc_server = builder
            .layer(auth::AuthLayer(Arc::new(auth)))
            .add_service(health)
            .add_service(reflection().build_v1().context("reflection v1")?)
            .add_service(reflection().build_v1alpha().context("reflection v1alpha")?)
            .add_service(
                ScorerServer::new(scorer)
                    .max_decoding_message_size(limits.max_grpc_message)
                    .max_encoding_message_size(limits.max_grpc_message),
            )
            // A window is a few KB; MAX_METRICS bounds it far below the default 4 MiB.
            .add_service(IngestServer::new(ingest))
            .serve_with_incoming_shutdown(fitsched_runtime::http::nodelay_incoming(grpc), stop.stopped());
        let http_server = fitsched_runtime::http::serve(
            "http",
            http,
            http::router(http::HttpState { store, model, placements, prometheus }),
            None,
            limits.serve,
            stop.stopped(),
        );
        let (g, h) = tokio::join!(grpc_server, http_server);
        g.context("gRPC server")?;
        h.context("HTTP server")?;
        tracing::info!("scorer stopped");
        Ok(())
    }
}

/// Whom the scorer lets in (see [`auth`]).
async fn authenticator(args: &Args, limits: &Limits) -> anyhow::Result<auth::Authenticator> {
    let files = args.all_token_files();
    let token_files = files.len();
    let mut auth = auth::Authenticator::new(files);
    if args.token_review {
        let config = kube::Config::infer().await.context("--token-review: no Kubernetes configuration")?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client for TokenReview")?;
        auth = auth.with_review(client, args.token_audience.clone(), args.service_accounts.clone(), limits);
    }
    if auth.is_configured() {
        tracing::info!(
            token_files,
            token_review = args.token_review,
            service_accounts = ?args.service_accounts.iter().map(|a| format!("{}={}", a.role.as_str(), a.user)).collect::<Vec<_>>(),
            "every call but health needs a bearer token"
        );
    } else {
        tracing::warn!("--allow-unauthenticated: anyone who reaches the gRPC port may call every RPC");
    }
    Ok(auth)
}

/// Forgets nodes silent for `after`, checking a tenth as often.
async fn forget_silent_nodes(store: Arc<NodeStore>, after: Duration) {
    let mut tick = tokio::time::interval((after / 10).max(Duration::from_secs(1)));
    loop {
        tick.tick().await;
        let gone = store.forget_silent(after);
        if !gone.is_empty() {
            metrics::counter!(crate::telemetry::series::NODES_FORGOTTEN, "reason" => "silent")
                .increment(gone.len() as u64);
            tracing::info!(nodes = ?gone, silent_for = ?after, "nodes forgotten");
        }
    }
}
