//! `cargo xtask bench <what>`: performance figures, always next to a baseline measured
//! in the same run, because the machines are shared and noisy.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fitsched_e2e::cluster::{sum_metric, sum_samples};
use fitsched_e2e::process::{Processes, status_kib};
use fitsched_e2e::stack::free_addr;
use fitsched_e2e::tools::cargo;
use fitsched_e2e::{paths, progress};

mod scheduler;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The agent's CPU and memory at a 1-s tick, next to a loop that only reads the
    /// same procfs files.
    Agent {
        /// How long to measure (after a warm-up of one window).
        #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// `/prioritize` latency through the shim and the scorer over real sockets, in both
    /// extender modes, next to serde_json's parse of the same bodies. Each request carries
    /// what kube-scheduler sends pod after pod: the feasible nodes its filters found
    /// before it stopped looking, from a start that rotates. Cases: 500 nodes and 5 000
    /// nodes at the default (adaptive) percentageOfNodesToScore, 230 and 500 names a
    /// request; 5 000 nodes at percentageOfNodesToScore 100, all 5 000 names every time.
    Shim {
        /// Requests measured per case (after 10 warm-up requests).
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Only this extender mode (`names` or `full`), e.g. to profile one.
        #[arg(long)]
        mode: Option<String>,
    },
    /// Fitness for 10 000 node rows: the scorer's ort code next to sklearn's predict
    /// and Python onnxruntime on the same rows.
    Model {
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// Best of this many runs each.
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Rows per call in the arrival-shaped run. Windows are wall-clock aligned, so
        /// 10 000 agents' windows arrive in a burst of about a second after each boundary;
        /// coalesced every 20 ms that is about 200 rows per call.
        #[arg(long, default_value_t = 200)]
        batch: usize,
    },
    /// Pods per second through the real kube-scheduler with the chart's configuration,
    /// next to kube-scheduler alone and with a no-op extender, on 500 and 5 000 nodes;
    /// and the CPU each process spends per scheduled pod.
    Scheduler(scheduler::SchedulerArgs),
    /// The scorer's memory per tracked node and its ingest rate: one real window (from
    /// the dataset) for each of `--nodes` nodes streamed into a release scorer over real
    /// gRPC, next to protobuf's encode + decode of the same windows and their size.
    Store {
        #[arg(long, default_value_t = 50_000)]
        nodes: usize,
        /// Concurrent ingest streams.
        #[arg(long, default_value_t = 4)]
        streams: usize,
    },
    /// Score latency (500 candidates, one call after another) alone and while the
    /// scorer recomputes every node's fitness with the committed ONNX model, batch after
    /// batch (the model file replaced every 200 ms), on `--nodes` nodes.
    Batch {
        #[arg(long, default_value_t = 10_000)]
        nodes: usize,
        /// Seconds of scoring in each phase.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Where ReplicaSets of 100 small pods go through the real kube-scheduler: each
    /// strategy's profile, kube-scheduler alone, and the pack choices the chart did not
    /// make, on 500 nodes with known simulated profiles and 20 without telemetry.
    Placement(scheduler::PlacementArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        What::Agent { duration } => agent(duration),
        What::Model { rows, repeat, batch } => model(rows, repeat, batch),
        What::Shim { requests, mode } => shim(requests, mode.as_deref()),
        What::Scheduler(args) => scheduler::run(args),
        What::Placement(args) => scheduler::placement(args),
        What::Store { nodes, streams } => store(nodes, streams),
        What::Batch { nodes, seconds } => batch(nodes, seconds),
    }
}

/// The first dataset sample's window, as a replay window (metrics by name, missing).
fn template_window() -> anyhow::Result<serde_json::Value> {
    let data = paths::workspace_root().join("onnx/data/samples.jsonl");
    let first = std::fs::read_to_string(&data)?.lines().next().context("empty dataset")?.to_owned();
    let sample: serde_json::Value = serde_json::from_str(&first)?;
    let mut metrics = serde_json::Map::new();
    for (key, value) in sample["features"].as_object().context("sample without features")? {
        // Derived per-core features are computed by the scorer, not sent.
        if key.contains("_per_core_") {
            continue;
        }
        let Some((metric, stat)) = key.rsplit_once('_') else { continue };
        if matches!(stat, "mean" | "max" | "p95" | "last") {
            let entry = metrics.entry(metric.to_owned()).or_insert_with(|| serde_json::json!({}));
            entry[stat] = value.clone();
        }
    }
    metrics.retain(|_, v| ["mean", "max", "p95", "last"].iter().all(|k| v.get(k).is_some()));
    Ok(serde_json::json!({"metrics": metrics, "missing": sample["missing"]}))
}

/// A release scorer on loopback (no authentication: only the benchmark calls it).
struct BenchScorer {
    process: Spawned,
    grpc: std::net::SocketAddr,
    http: std::net::SocketAddr,
}

impl BenchScorer {
    fn start(nodes: usize, extra: &[String], env: &[(&str, &OsStr)], log: &str) -> anyhow::Result<BenchScorer> {
        let logs = paths::state_dir().join("bench-logs");
        std::fs::create_dir_all(&logs)?;
        let (grpc, http) = (free_addr()?, free_addr()?);
        let mut args = vec![
            "--grpc-listen".into(),
            grpc.to_string(),
            "--http-listen".into(),
            http.to_string(),
            "--max-nodes".into(),
            (nodes + 1000).to_string(),
            "--allow-unauthenticated".into(),
        ];
        args.extend_from_slice(extra);
        let process = spawn(&paths::target_dir().join("release/fitsched-scorer"), &args, env, log)?;
        wait_listening(grpc, "the scorer", Duration::from_secs(30))?;
        Ok(BenchScorer { process, grpc, http })
    }

    fn pid(&self) -> u32 {
        self.process.pid
    }

    /// One real window for each of `nodes` nodes over `streams` streams
    /// (examples/ingest_load); its JSON line.
    fn load(&self, nodes: usize, streams: usize) -> anyhow::Result<serde_json::Value> {
        let logs = paths::state_dir().join("bench-logs");
        let template = logs.join("window.json");
        std::fs::write(&template, serde_json::to_vec(&template_window()?)?)?;
        progress(format!("streaming a window for each of {nodes} nodes over {streams} streams"));
        let out = Command::new(paths::target_dir().join("release/examples/ingest_load"))
            .args([
                format!("http://{}", self.grpc),
                template.display().to_string(),
                nodes.to_string(),
                streams.to_string(),
            ])
            .output()?;
        anyhow::ensure!(out.status.success(), "ingest_load failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn metrics(&self) -> anyhow::Result<String> {
        fitsched_e2e::process::scrape(self.http)
    }
}

fn store(nodes: usize, streams: usize) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "fitsched-scorer", "--bins"])?;
    cargo(&["build", "--release", "-p", "fitsched-lab", "--example", "ingest_load"])?;
    let scorer = BenchScorer::start(nodes, &[], &[], "store-scorer")?;
    let pid = scorer.pid();
    let before = status_kib(pid, "VmRSS")?;
    let load = scorer.load(nodes, streams)?;
    // Fitness batches land shortly after the last ack.
    std::thread::sleep(Duration::from_secs(2));
    let after = status_kib(pid, "VmRSS")?;
    let per_node = (after.saturating_sub(before) * 1024) as f64 / nodes as f64;
    let rate = load["per_second"].as_f64().unwrap_or(0.0);
    let codec = load["codec_per_second"].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nscorer store, {nodes} nodes, windows of {} metrics and {} missing ({} bytes encoded), release build:",
        load["metrics"], load["missing"], load["encoded_bytes"]
    );
    println!(
        "  memory: {:.0} bytes per node ({:.1} KiB; RSS {} -> {} KiB), {:.1}x the encoded window (goal: <= 4 KiB)",
        per_node,
        per_node / 1024.0,
        before,
        after,
        per_node / load["encoded_bytes"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "  ingest: {rate:.0} windows/s over real gRPC ({:.2}x protobuf encode+decode alone, {codec:.0}/s) (goal: >= 50 000/s)",
        rate / codec
    );
    Ok(())
}

fn batch(nodes: usize, seconds: f64) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "fitsched-scorer", "--bins"])?;
    cargo(&[
        "build",
        "--release",
        "-p",
        "fitsched-lab",
        "--example",
        "ingest_load",
        "--example",
        "score_during_batch",
    ])?;
    let venv = fitsched_e2e::tools::ensure_venv()?;
    let model = paths::state_dir().join("bench-logs/batch-model.onnx");
    std::fs::create_dir_all(model.parent().context("no parent")?)?;
    std::fs::copy(paths::workspace_root().join("onnx/fitness.onnx"), &model)?;
    let ort = venv.onnxruntime_library()?;
    let extra = ["--model".into(), model.display().to_string(), "--model-poll".into(), "100ms".into()];
    let scorer = BenchScorer::start(nodes, &extra, &[("ORT_DYLIB_PATH", ort.as_os_str())], "batch-scorer")?;
    scorer.load(nodes, 2)?;
    let predictions = || scorer.metrics().map(|m| sum_metric(&m, "inference_predictions_total", ""));
    let deadline = Instant::now() + Duration::from_secs(60);
    while predictions()? < nodes as u64 {
        anyhow::ensure!(Instant::now() < deadline, "the scorer computed no fitness for {nodes} nodes within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = scorer.metrics()?;
    progress(format!("scoring {seconds} s alone, then {seconds} s while every node's fitness is recomputed"));
    let out = Command::new(paths::target_dir().join("release/examples/score_during_batch"))
        .args([format!("http://{}", scorer.grpc), model.display().to_string(), nodes.to_string(), seconds.to_string()])
        .output()?;
    anyhow::ensure!(out.status.success(), "score_during_batch failed: {}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let after = scorer.metrics()?;
    let delta = |name: &str, label: &str| sum_samples(&after, name, label) - sum_samples(&before, name, label);
    let batches = delta("fitsched_scorer_model_reloads_total", "outcome=\"loaded\"");
    let rows = delta("inference_predictions_total", "");
    let inference = delta("inference_prediction_duration_seconds_sum", "");
    let phase = |p: &str| {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls",
            r[p]["p50_ms"].as_f64().unwrap_or(f64::NAN),
            r[p]["p99_ms"].as_f64().unwrap_or(f64::NAN),
            r[p]["max_ms"].as_f64().unwrap_or(f64::NAN),
            r[p]["calls"]
        )
    };
    let ratio = |q: &str| r["during"][q].as_f64().unwrap_or(f64::NAN) / r["idle"][q].as_f64().unwrap_or(f64::NAN);
    println!("\nScore of {} candidates among {nodes} nodes, release scorer with the committed model:", r["candidates"]);
    println!("  alone:                 {}", phase("idle"));
    println!(
        "  during fitness batches: {} ({batches:.0} batches of every node, {rows:.0} rows, {:.0} ms of inference)",
        phase("during"),
        inference * 1e3
    );
    println!("  ratio during / alone: p50 {:.2}x, p99 {:.2}x", ratio("p50_ms"), ratio("p99_ms"));
    Ok(())
}

/// CPU time and peak memory of a process, from procfs. CPU time is read two ways:
/// schedstat gives nanoseconds but per live thread; utime + stime also counts exited
/// threads but in 10 ms ticks.
#[derive(Debug, Clone, Copy)]
struct Usage {
    threads_cpu: Duration,
    ticks_cpu: Duration,
    peak_rss_kib: u64,
}

impl Usage {
    /// A process not started yet.
    const ZERO: Usage = Usage { threads_cpu: Duration::ZERO, ticks_cpu: Duration::ZERO, peak_rss_kib: 0 };

    /// CPU used between `self` and `later`: the larger of the two readings' deltas, each
    /// compared with itself only.
    fn cpu_since(&self, later: &Usage) -> Duration {
        later.threads_cpu.saturating_sub(self.threads_cpu).max(later.ticks_cpu.saturating_sub(self.ticks_cpu))
    }
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let peak_rss_kib = status_kib(pid, "VmHWM")?;
    // The main thread of an async process is mostly asleep: sum every thread's.
    let mut threads_ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        if let Some(ns) = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        {
            threads_ns += ns;
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the `(comm)`, which may itself contain spaces.
    let after = stat.rsplit_once(')').context("malformed /proc/pid/stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    let ticks: u64 = f.get(11).context("no utime")?.parse::<u64>()? + f.get(12).context("no stime")?.parse::<u64>()?;
    Ok(Usage {
        threads_cpu: Duration::from_nanos(threads_ns),
        ticks_cpu: Duration::from_secs_f64(ticks as f64 / clock_ticks()),
        peak_rss_kib,
    })
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture fitsched runs on.
fn clock_ticks() -> f64 {
    100.0
}

/// A benchmarked process, killed when dropped (the harness's process guard).
struct Spawned {
    _guard: Processes,
    pid: u32,
}

/// Starts `path` with its output in `<bench logs>/<name>.log`.
fn spawn(path: &Path, args: &[String], env: &[(&str, &OsStr)], name: &str) -> anyhow::Result<Spawned> {
    let mut guard = Processes::new(paths::state_dir().join("bench-logs"))?;
    let mut cmd = Command::new(path);
    cmd.args(args).envs(env.iter().copied());
    guard.spawn(name, cmd)?;
    let pid = guard.pid(name).context("a started process without a pid")?;
    Ok(Spawned { _guard: guard, pid })
}

fn agent(duration: Duration) -> anyhow::Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "fitsched-agent",
        "-p",
        "fitsched-scorer",
        "--bins",
        "--example",
        "procfs_floor",
    ])?;
    let release = paths::target_dir().join("release");
    let logs = paths::state_dir().join("bench-logs");
    std::fs::create_dir_all(&logs)?;
    let agent_http = free_addr()?;
    let scorer = BenchScorer::start(1, &[], &[], "scorer")?;
    let agent = spawn(
        &release.join("fitsched-agent"),
        &[
            "--scorer".into(),
            format!("http://{}", scorer.grpc),
            "--listen".into(),
            agent_http.to_string(),
            "--tick".into(),
            "1s".into(),
            "--window".into(),
            "20s".into(),
        ],
        &[],
        "agent",
    )?;
    let floor = spawn(&release.join("examples/procfs_floor"), &["1000".into()], &[], "floor")?;

    // Start-up (connecting, first reads) is not the steady state being measured.
    let warmup = Duration::from_secs(20);
    progress(format!("warming up for {warmup:?}"));
    std::thread::sleep(warmup);
    let (a0, f0, t0) = (usage(agent.pid)?, usage(floor.pid)?, Instant::now());
    let mut last = Instant::now();
    while t0.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        if last.elapsed() >= Duration::from_secs(30) {
            progress(format!("{:.0?} of {duration:?}", t0.elapsed()));
            last = Instant::now();
        }
    }
    let (a1, f1, wall) = (usage(agent.pid)?, usage(floor.pid)?, t0.elapsed());
    let share = |u0: Usage, u1: Usage| u0.cpu_since(&u1).as_secs_f64() / wall.as_secs_f64() * 100.0;
    let (agent_cpu, floor_cpu) = (share(a0, a1), share(f0, f1));
    let mib = |u: Usage| u.peak_rss_kib as f64 / 1024.0;
    let acked = metric_value(&format!("http://{agent_http}/metrics"), "fitsched_agent_windows_acked_total");

    println!("\nagent overhead over {wall:.0?} at a 1 s tick, 20 s windows (release builds, same run):");
    println!("{:<34} {:>14} {:>14}", "", "CPU % of a core", "peak RSS MiB");
    println!("{:<34} {:>14.3} {:>14.1}", "fitsched-agent", agent_cpu, mib(a1));
    println!("{:<34} {:>14.3} {:>14.1}", "floor: read the same procfs files", floor_cpu, mib(f1));
    println!(
        "ratio agent / floor: CPU {:.1}x, RSS {:.1}x; windows acknowledged by the scorer: {}",
        agent_cpu / floor_cpu.max(1e-9),
        mib(a1) / mib(f1).max(1e-9),
        acked.map_or("unknown".into(), |v| v.to_string())
    );
    println!(
        "goals: <= 0.5 % of a core: {}; <= 15 MiB: {}",
        if agent_cpu <= 0.5 { "met" } else { "NOT met" },
        if mib(a1) <= 15.0 { "met" } else { "NOT met" }
    );
    if acked.is_none_or(|v| v < 1.0) {
        bail!("the agent delivered no window during the benchmark; see {}", logs.display());
    }
    Ok(())
}

/// The sum of a counter's series in a Prometheus text exposition.
fn metric_value(url: &str, name: &str) -> Option<f64> {
    let mut r = fitsched_e2e::stack::http_agent(Duration::from_secs(5)).get(url).call().ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    let exposition = fitsched_runtime::exposition::parse(&text).ok()?;
    let values: Vec<f64> = exposition.samples.iter().filter(|s| s.name == name).map(|s| s.value).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn model(rows: usize, repeat: usize, batch: usize) -> anyhow::Result<()> {
    let venv = fitsched_e2e::tools::ensure_venv()?;
    cargo(&["build", "--release", "-p", "fitsched-scorer", "--example", "bench_model"])?;
    let root = paths::workspace_root();
    let rows_file = paths::state_dir().join("bench-rows.f32");
    progress("sklearn and Python onnxruntime");
    let py = Command::new(venv.python())
        .arg(root.join("onnx/bench.py"))
        .args(["--rows", &rows.to_string(), "--repeat", &repeat.to_string(), "--batch", &batch.to_string(), "--out"])
        .arg(&rows_file)
        .output()?;
    if !py.status.success() {
        bail!("onnx/bench.py failed: {}", String::from_utf8_lossy(&py.stderr));
    }
    let py: serde_json::Value = serde_json::from_slice(&py.stdout).context("onnx/bench.py output")?;
    progress("the scorer's ort");
    let rust = Command::new(paths::target_dir().join("release/examples/bench_model"))
        .arg(root.join("onnx/fitness.onnx"))
        .arg(&rows_file)
        .arg(repeat.to_string())
        .arg(batch.to_string())
        .env("ORT_DYLIB_PATH", venv.onnxruntime_library()?)
        .output()?;
    if !rust.status.success() {
        bail!("bench_model failed: {}", String::from_utf8_lossy(&rust.stderr));
    }
    let rust: serde_json::Value = serde_json::from_slice(&rust.stdout).context("bench_model output")?;
    let secs = |v: &serde_json::Value, k: &str| v[k].as_f64().with_context(|| format!("no {k}"));
    println!(
        "\nfitness for {rows} node rows, {} features, model {} (best of {repeat}, same run):",
        py["features"], py["model"]
    );
    println!("{:<34} {:>16} {:>16}", "", "one batch, ms", format!("{batch} per call, ms"));
    let line = |name: &str, big: f64, small: f64| println!("{name:<34} {:>16.2} {:>16.2}", big * 1e3, small * 1e3);
    let (ours, ours_b) = (secs(&rust, "scorer_ort_s")?, secs(&rust, "scorer_ort_batched_s")?);
    let (sk, sk_b) = (secs(&py, "sklearn_s")?, secs(&py, "sklearn_batched_s")?);
    let (po, po_b) = (secs(&py, "python_onnxruntime_s")?, secs(&py, "python_onnxruntime_batched_s")?);
    line("scorer (Rust, ort)", ours, ours_b);
    line("sklearn predict", sk, sk_b);
    line("Python onnxruntime", po, po_b);
    for (shape, o, s, p) in [("one batch".to_owned(), ours, sk, po), (format!("{batch} per call"), ours_b, sk_b, po_b)]
    {
        println!(
            "{shape}: scorer {:.1}x faster than sklearn (goal >= 5x: {}), {:.2}x Python onnxruntime",
            s / o,
            if s / o >= 5.0 { "met" } else { "NOT met" },
            p / o
        );
    }
    println!(
        "|sklearn - onnxruntime| <= {:.1e}",
        py["max_abs_diff_sklearn_vs_onnxruntime"].as_f64().unwrap_or(f64::NAN)
    );
    Ok(())
}

fn shim(requests: usize, only: Option<&str>) -> anyhow::Result<()> {
    use fitsched_e2e::extender::{ExtenderNode, ExtenderPod, Mode, extender_args, node_json};
    use fitsched_e2e::stack::{Stack, StackConfig, block_on};
    use fitsched_proto::ingest_client::IngestClient;
    use fitsched_proto::{MetricSummary, NodeWindow, metric};

    cargo(&["build", "--release", "-p", "fitsched-scorer", "-p", "fitsched-shim", "--bins"])?;
    cargo(&["build", "--release", "-p", "fitsched-lab", "--example", "shim_client"])?;
    // (cluster size, percentageOfNodesToScore; 0 is kube-scheduler's adaptive default).
    let cases = [(500usize, 0u32), (5_000, 0), (5_000, 100)];
    // The scorer knows the largest cluster's nodes; a smaller cluster is its first nodes.
    let max = cases.iter().map(|&(n, _)| n).max().unwrap_or(0);
    let mut stack = Stack::start(StackConfig {
        real_agents: Vec::new(),
        window: "20s".into(),
        bin_dir: Some(paths::target_dir().join("release")),
        log_dir: paths::state_dir().join("bench-logs/shim"),
        log_filter: "warn".into(),
        ..StackConfig::default()
    })?;

    // Every candidate has a fresh window, so each answer is strategy arithmetic over
    // cached fitness, as in a busy cluster.
    progress(format!("streaming windows for {max} nodes"));
    let endpoint = stack.scorer_endpoint()?;
    block_on(async move {
        let windows: Vec<NodeWindow> = (0..max)
            .map(|i| {
                let mut w = NodeWindow {
                    node_name: format!("node-{i:05}"),
                    agent_id: format!("bench-{i}"),
                    sequence: 1,
                    samples: 20,
                    samples_expected: 20,
                    ..Default::default()
                };
                let load = (i % 10) as f64 / 10.0;
                for (m, v) in [(metric::CPU_UTILIZATION, load), (metric::MEMORY_AVAILABLE_RATIO, 1.0 - load / 2.0)] {
                    w.metrics.insert(m.into(), MetricSummary { mean: v, max: v, p95: v, last: v, samples: 20 });
                }
                w
            })
            .collect();
        let mut client = IngestClient::new(endpoint.connect().await?);
        let mut acks = client.stream(tonic::codegen::tokio_stream::iter(windows)).await?.into_inner();
        let mut acked = 0;
        while acked < max {
            if acks.message().await?.is_none() {
                bail!("the scorer closed the ingest stream after {acked} acknowledgements");
            }
            acked += 1;
        }
        anyhow::Ok(())
    })?;
    stack.wait_for_nodes(&[], max, Duration::from_secs(60))?;

    let url = format!("{}/prioritize", stack.shim_url());
    let client = paths::target_dir().join("release/examples/shim_client");
    let body_file = paths::state_dir().join("bench-shim-bodies.jsonl");
    println!(
        "\n/prioritize through the shim and the scorer (release builds, loopback, {requests} requests per case,\n\
         each carrying the next of kube-scheduler's rotating candidate lists; `lists`: distinct lists before they repeat):"
    );
    println!(
        "{:<7} {:>6} {:>8} {:>6} {:>6} {:>9} {:>9} {:>9} {:>13} {:>13} {:>8}",
        "mode",
        "nodes",
        "pct",
        "names",
        "lists",
        "body KiB",
        "p50 ms",
        "p99 ms",
        "parse p50 ms",
        "parse p99 ms",
        "p50/parse"
    );
    let modes = match only {
        None => vec![Mode::Names, Mode::Full],
        Some("names") => vec![Mode::Names],
        Some("full") => vec![Mode::Full],
        Some(other) => bail!("--mode {other:?}: expected names or full"),
    };
    for mode in modes {
        for &(n, percentage) in &cases {
            let nodes: Vec<ExtenderNode> = (0..n)
                .map(|i| ExtenderNode::new(format!("node-{i:05}"), format!("zone-{}", i % 3), 16_000, 64 << 30))
                .collect();
            let pod = ExtenderPod::replica("bench", 1, Some("spread"));
            let lists = FeasibleLists::new(n, percentage);
            let (names, period) = (lists.len(), lists.period());
            // One body per request (shim_client's 10 warm-ups included), but no more than
            // the rotation's period: shim_client sends body `i % count` as request `i`.
            let count = period.min(requests + SHIM_CLIENT_WARMUPS);
            let mut file = Vec::new();
            for candidates in lists.take(count) {
                let chosen: Vec<&ExtenderNode> = candidates.iter().map(|&i| &nodes[i]).collect();
                let mut body = extender_args(mode, &pod, &chosen);
                // Real Node objects carry more than the simulator's; add what a kubelet reports.
                if mode == Mode::Full
                    && let Some(items) = body["Nodes"]["items"].as_array_mut()
                {
                    for (item, &i) in items.iter_mut().zip(&candidates) {
                        *item = node_json(&nodes[i]);
                        item["metadata"]["annotations"] = serde_json::json!({"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"});
                        item["status"]["nodeInfo"] = serde_json::json!({"kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "containerRuntimeVersion": "containerd://1.7.24", "kubeletVersion": "v1.36.0", "architecture": "amd64", "operatingSystem": "linux"});
                    }
                }
                // Compact JSON has no raw newline: one body a line.
                serde_json::to_writer(&mut file, &body)?;
                file.push(b'\n');
            }
            std::fs::write(&body_file, &file)?;
            let out = Command::new(&client).arg(&url).arg(&body_file).arg(requests.to_string()).output()?;
            if !out.status.success() {
                bail!("{n} nodes: shim_client failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let r: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
            println!(
                "{:<7} {:>6} {:>8} {:>6} {:>6} {:>9.0} {:>9.3} {:>9.3} {:>13.3} {:>13.3} {:>8.2}",
                if mode == Mode::Names { "names" } else { "full" },
                n,
                if percentage == 0 { "adaptive".to_owned() } else { percentage.to_string() },
                names,
                period,
                (file.len() - count) as f64 / count as f64 / 1024.0,
                f("p50_ms"),
                f("p99_ms"),
                f("parse_p50_ms"),
                f("parse_p99_ms"),
                f("p50_ms") / f("parse_p50_ms")
            );
        }
    }
    println!("goals: names p99 <= 2 ms at 5 000 nodes; full within 2x of the bare parse");
    Ok(())
}

/// The warm-up requests `shim_client` sends before it measures.
const SHIM_CLIENT_WARMUPS: usize = 10;

/// kube-scheduler's `numFeasibleNodesToFind` (pkg/scheduler/schedule_one.go): how many
/// feasible nodes its filters look for before they stop, out of `all`, at a
/// percentageOfNodesToScore of `percentage` (0: adaptive, 50 − all/125 and at least 5).
/// Clusters under 100 nodes are searched whole, and never fewer than 100 are found.
fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
    const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage = match percentage as usize {
        0 => 50usize.saturating_sub(all / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
        p => p.min(100),
    };
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// The candidate lists kube-scheduler sends an extender, pod after pod, when every node
/// passes its own filters (pkg/scheduler/schedule_one.go): `findNodesThatPassFilters`
/// checks nodes from `nextStartNodeIndex` on, wrapping around, and stops once it has
/// found `numFeasibleNodesToFind`; `findNodesThatFitPod` then moves
/// `nextStartNodeIndex = (nextStartNodeIndex + processedNodes) % all`, where
/// processedNodes (feasible + failed) is that count, and hands the list to the extenders.
/// (Its 16 filter workers may interleave neighbours; the set is this one.) Yields node
/// indices; never ends.
#[derive(Debug, Clone)]
struct FeasibleLists {
    all: usize,
    len: usize,
    next_start: usize,
}

impl FeasibleLists {
    fn new(all: usize, percentage: u32) -> Self {
        Self { all, len: num_feasible_nodes_to_find(percentage, all), next_start: 0 }
    }

    /// Names in each list.
    fn len(&self) -> usize {
        self.len
    }

    /// Lists before they repeat: all / gcd(all, len).
    fn period(&self) -> usize {
        let (mut a, mut b) = (self.all, self.len);
        while b != 0 {
            (a, b) = (b, a % b);
        }
        self.all.checked_div(a).unwrap_or(1)
    }
}

impl Iterator for FeasibleLists {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.all == 0 {
            return None;
        }
        let list = (0..self.len).map(|i| (self.next_start + i) % self.all).collect();
        self.next_start = (self.next_start + self.len) % self.all;
        Some(list)
    }
}

/// Waits until something accepts connections on `addr`.
pub(crate) fn wait_listening(addr: std::net::SocketAddr, what: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(addr).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not listen on {addr} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_sizes_follow_num_feasible_nodes_to_find() {
        for (all, percentage, want) in [
            (50, 0, 50),
            (50, 100, 50),
            (50, 10, 50),
            (100, 0, 100),
            (150, 10, 100),
            (500, 0, 230),
            (500, 100, 500),
            (1_000, 0, 420),
            (5_000, 0, 500),
            (5_000, 100, 5_000),
            (5_000, 30, 1_500),
            (10_000, 0, 500),
            (20_000, 0, 1_000),
        ] {
            let lists = FeasibleLists::new(all, percentage);
            assert_eq!(lists.len(), want, "{all} nodes at {percentage}%");
            assert_eq!(lists.clone().next().unwrap().len(), want, "{all} nodes at {percentage}%");
        }
    }

    #[test]
    fn lists_rotate_and_wrap_around() {
        let lists: Vec<Vec<usize>> = FeasibleLists::new(500, 0).take(3).collect();
        assert_eq!(lists[0], (0..230).collect::<Vec<_>>());
        assert_eq!(lists[1], (230..460).collect::<Vec<_>>());
        assert_eq!(lists[2], (460..500).chain(0..190).collect::<Vec<_>>(), "the third list wraps around");

        let big: Vec<Vec<usize>> = FeasibleLists::new(5_000, 0).take(11).collect();
        for (k, list) in big.iter().enumerate() {
            assert_eq!(list[0], k * 500 % 5_000, "list {k} starts where the previous one stopped");
        }
        assert_eq!(big[10], big[0], "5 000 nodes, 500 a list: the rotation repeats after 10");
    }

    #[test]
    fn all_nodes_and_small_clusters_give_the_same_list_every_time() {
        for (all, percentage) in [(5_000, 100), (50, 0), (50, 100)] {
            let lists = FeasibleLists::new(all, percentage);
            assert_eq!(lists.period(), 1);
            for list in lists.take(3) {
                assert_eq!(list, (0..all).collect::<Vec<_>>(), "{all} nodes at {percentage}%");
            }
        }
    }

    #[test]
    fn every_node_is_offered_equally_often_over_a_period() {
        let lists = FeasibleLists::new(500, 0);
        assert_eq!(lists.period(), 50);
        let mut seen = vec![0usize; 500];
        for list in lists.take(50) {
            for i in list {
                seen[i] += 1;
            }
        }
        assert!(seen.iter().all(|&c| c == 23), "230 × 50 / 500 = 23 each");
    }
}
