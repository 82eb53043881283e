//! fitsched node agent.
//!
//! Every tick it samples the node (procfs/PSI, or simulated nodes with `--simulate`),
//! or at every window boundary replays the windows of a file (`--replay`),
//! folds the samples into wall-clock-aligned windows and streams each window to the
//! scorer over `fitsched.v1.Ingest/Stream`, buffering and resending whatever the scorer
//! has not acknowledged. `/health` and `/metrics` are served over HTTP.
//!
//! The public API: [`run`] (or [`run_with`]) the binary from [`Args`]; the stream client
//! to the scorer ([`StreamClient`], [`StreamConfig`], reporting into a [`NodeProgress`]);
//! the metrics a simulated node reports ([`SIMULATED_METRICS`]). Everything else is
//! internal.

mod collect;
mod config;
mod http;
mod limits;
mod replay;
mod rng;
mod simulate;
mod status;
mod stream;
mod telemetry;
mod window;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fitsched_proto::NodeWindow;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::{debug, error, info, warn};

pub use config::Args;
pub use limits::Limits;
pub use simulate::{
    METRICS as SIMULATED_METRICS, PREFIX as SIMULATED_PREFIX, Profile as SimulatedProfile,
    node_name as simulated_node_name,
};
pub use status::NodeProgress;
pub use stream::{StreamClient, StreamConfig};

use collect::{
    CgroupCollector, Collector, Composite, DiskCollector, NetCollector, PcmCollector, PerfCollector, ProcfsCollector,
};
use simulate::SimNode;
use telemetry::MissingGauge;
use window::WindowAggregator;

/// Perf counting opens about a dozen descriptors per CPU, more than the usual soft limit
/// of 1024 allows on a large node; the hard limit is the operator's decision, so take
/// all of it.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => debug!(limit, "open file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open file limit; perf counters may fail on large nodes"),
    }
}

/// Everything the agent reads on a real node, merged into one sample per tick.
fn node_collector(args: &Args, limits: &Limits) -> Composite {
    Composite::new(vec![
        Box::new(ProcfsCollector::new(&args.proc_root)),
        Box::new(NetCollector::new(&args.proc_root, &args.sys_root)),
        Box::new(DiskCollector::new(&args.proc_root, &args.sys_root)),
        Box::new(PerfCollector::system_wide()),
        Box::new(CgroupCollector::new(args.cgroup_root.clone())),
        Box::new(PcmCollector::spawn(args.pcm_url.clone(), args.tick, limits)),
    ])
}

/// Runs the agent until SIGINT or SIGTERM, with the process-wide Prometheus recorder.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let prometheus = match fitsched_runtime::install_prometheus(&[]) {
        Ok(handle) => Some(handle),
        Err(e) => {
            warn!(error = %e, "cannot install the Prometheus recorder; /metrics will answer 404");
            None
        }
    };
    run_with(args, prometheus, fitsched_runtime::shutdown_signal()).await
}

/// Runs the agent until `shutdown` completes. `prometheus` is the handle of an already
/// installed recorder, if any: a process can install only one, so tests and embedders
/// choose.
pub async fn run_with(
    args: Args,
    prometheus: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    args.validate()?;
    telemetry::describe();
    raise_open_file_limit();
    let host = args.resolve_node_name()?;
    let endpoint = fitsched_runtime::scorer_endpoint(&args.scorer, args.tls_ca.as_deref(), args.tls_domain.as_deref())?;
    let limits = Limits::from_args(&args);
    let mut stream_config = StreamConfig::with_endpoint(endpoint, limits.buffer_windows, args.window)?;
    stream_config.token_file = args.token_file.clone();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;

    info!(
        node = %host,
        scorer = %stream_config.endpoint.uri(),
        listen = %listener.local_addr()?,
        window = ?args.window,
        tick = ?args.tick,
        simulated = args.simulate,
        "fitsched agent started"
    );

    let replay = args.replay.as_deref().map(replay::ReplayFile::read).transpose()?;
    let collectors: Vec<(String, Option<Box<dyn Collector>>)> = if let Some(file) = &replay {
        file.nodes.keys().map(|name| (name.clone(), None)).collect()
    } else if args.simulate == 0 {
        vec![(host.clone(), Some(Box::new(node_collector(&args, &limits)) as Box<dyn Collector>))]
    } else {
        (0..args.simulate as usize)
            .map(|i| {
                let node = SimNode::new(&args.simulate_prefix, i, args.seed);
                (node.name().to_owned(), Some(Box::new(node) as Box<dyn Collector>))
            })
            .collect()
    };

    let mut nodes = Vec::with_capacity(collectors.len());
    let mut replayed = Vec::new();
    let mut clients = Vec::with_capacity(collectors.len());
    for (index, (name, collector)) in collectors.into_iter().enumerate() {
        let agent_id = window::new_agent_id(index as u64);
        let status = Arc::new(NodeProgress::new(&name, &agent_id));
        // The client drains this promptly into its own bounded buffer; the channel only
        // has to absorb a burst while it is busy connecting.
        let (tx, rx) = mpsc::channel(limits.buffer_windows.max(1));
        clients.push(tokio::spawn(StreamClient::new(stream_config.clone(), Arc::clone(&status), rx).run()));
        let out = NodeOut {
            aggregator: WindowAggregator::new(&name, &agent_id, args.window, args.tick),
            missing: MissingGauge::new(&name),
            windows: tx,
            status,
        };
        match collector {
            Some(collector) => nodes.push(NodeLoop { collector, out }),
            None => replayed.push(out),
        }
    }
    let statuses =
        Arc::new(nodes.iter().map(|n| &n.out).chain(&replayed).map(|o| Arc::clone(&o.status)).collect::<Vec<_>>());

    let (stop_tx, stop_rx) = watch::channel(false);
    let http_state = http::HttpState { node: host, nodes: statuses, prometheus: prometheus.clone() };
    let mut http_task = tokio::spawn(fitsched_runtime::http::serve(
        "http",
        listener,
        http::router(http_state),
        None,
        limits.serve,
        stopped(stop_rx.clone()),
    ));
    let ticker = match &args.replay {
        Some(path) => tokio::spawn(replay_loop(replayed, path.clone(), args.window, stop_rx)),
        None => tokio::spawn(tick_loop(nodes, args.tick, stop_rx)),
    };

    let mut result = Ok(());
    tokio::select! {
        () = shutdown => info!("shutting down"),
        res = &mut http_task => {
            result = match res {
                Ok(Ok(())) => Err(anyhow::anyhow!("HTTP server stopped unexpectedly")),
                Ok(Err(e)) => Err(e.context("HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("HTTP server task failed")),
            };
        }
    }
    let _ = stop_tx.send(true);
    // The tick loop owns the window senders; when it ends, the stream clients see their
    // input close and stop. Windows not yet acknowledged are lost with the process.
    if let Err(e) = ticker.await {
        error!(error = %e, "tick loop failed");
    }
    for client in clients {
        if tokio::time::timeout(Duration::from_secs(5), client).await.is_err() {
            warn!("a stream client did not stop within 5s");
        }
    }
    if !http_task.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(5), http_task).await;
    }
    result
}

/// One reported node's way out: its window aggregator and its stream client.
struct NodeOut {
    aggregator: WindowAggregator,
    windows: mpsc::Sender<NodeWindow>,
    status: Arc<NodeProgress>,
    missing: MissingGauge,
}

/// One measured or simulated node: its collector and its way out.
struct NodeLoop {
    collector: Box<dyn Collector>,
    out: NodeOut,
}

impl NodeLoop {
    fn tick(&mut self, now: std::time::Instant, now_unix_ms: i64) {
        let mut sample = self.collector.sample(now);
        match self.out.status.rtt() {
            Some(rtt) => sample.set(fitsched_proto::metric::STREAM_RTT_SECONDS, rtt.as_secs_f64()),
            None => sample
                .set_missing(fitsched_proto::metric::STREAM_RTT_SECONDS, "no acknowledged window on a live stream yet"),
        }
        if let Some(window) = self.out.aggregator.push(now_unix_ms, &sample) {
            self.out.emit(window);
        }
    }
}

impl NodeOut {
    fn emit(&mut self, window: NodeWindow) {
        let node = self.aggregator.node_name().to_owned();
        debug!(node = %node, sequence = window.sequence, samples = window.samples, "window closed");
        self.status.set_last_window_sequence(window.sequence);
        self.missing.update(&window);
        metrics::counter!(telemetry::WINDOWS, "node" => node.clone()).increment(1);
        match self.windows.try_send(window) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(w)) => {
                metrics::counter!(telemetry::WINDOWS_DROPPED, "node" => node.clone()).increment(1);
                warn!(node = %node, sequence = w.sequence, "stream client is not keeping up; dropped a window");
            }
            // The client only stops when the agent does.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// At every window boundary, reads the replay file and reports the window that just
/// ended for every node it names (once per `as_of_unix_ms`, when the file has one),
/// until `stop`.
async fn replay_loop(
    mut nodes: Vec<NodeOut>,
    path: std::path::PathBuf,
    window: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
    let samples = nodes.first().map_or(1, |n| n.aggregator.samples_expected());
    let mut last_reported = None;
    loop {
        let now = fitsched_proto::now_unix_ms();
        let end = now.div_euclid(window_ms) * window_ms + window_ms;
        let wait = Duration::from_millis(u64::try_from(end - now).unwrap_or(0));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => break,
        }
        let mut file = match replay::ReplayFile::read(&path) {
            Ok(f) => f,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "no replayed windows this time");
                continue;
            }
        };
        if !file.reported_in(end - window_ms, last_reported) {
            continue;
        }
        last_reported = file.as_of_unix_ms;
        for node in &mut nodes {
            if let Some(w) = file.nodes.remove(node.aggregator.node_name()) {
                let (metrics, missing) = w.into_parts(samples);
                match node.aggregator.replayed(end, metrics, missing) {
                    Ok(window) => node.emit(window),
                    Err(why) => warn!(node = %node.aggregator.node_name(), %why, "replayed window refused; none sent"),
                }
            }
        }
    }
}

/// Samples every node once per tick until `stop`.
async fn tick_loop(mut nodes: Vec<NodeLoop>, tick: Duration, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval_at(
        tokio::time::Instant::now() + first_tick_delay(tick, fitsched_proto::now_unix_ms()),
        tick,
    );
    // After a stall, sample once and carry on rather than firing a burst of catch-up
    // samples with the same content.
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        let now = std::time::Instant::now();
        let now_ms = fitsched_proto::now_unix_ms();
        for node in &mut nodes {
            node.tick(now, now_ms);
        }
    }
}

/// Delay until the next half-tick past a wall-clock multiple of the tick, so samples sit
/// mid-way between window boundaries and scheduling jitter cannot move one across.
pub fn first_tick_delay(tick: Duration, now_unix_ms: i64) -> Duration {
    let tick_ms = i64::try_from(tick.as_millis()).unwrap_or(i64::MAX).max(1);
    let delay = (tick_ms / 2 - now_unix_ms.rem_euclid(tick_ms)).rem_euclid(tick_ms);
    Duration::from_millis(delay.unsigned_abs())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_tick_lands_mid_tick() {
        let tick = Duration::from_secs(1);
        assert_eq!(first_tick_delay(tick, 1_700_000_000_000), Duration::from_millis(500));
        assert_eq!(first_tick_delay(tick, 1_700_000_000_200), Duration::from_millis(300));
        assert_eq!(first_tick_delay(tick, 1_700_000_000_500), Duration::ZERO);
        assert_eq!(first_tick_delay(tick, 1_700_000_000_900), Duration::from_millis(600));
    }
}
