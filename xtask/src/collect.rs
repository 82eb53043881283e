//! `cargo xtask collect`: measures how a self-contained nginx + wrk benchmark unit fares
//! under controlled interference, next to what the real fitsched-agent saw on the node
//! just before. One JSON line per sample in `onnx/data/samples.jsonl` (schema in
//! `onnx/DATASET.md`).
//!
//! Each sample: start a stress-ng recipe shortly before a window boundary B, let the
//! agent record the full window [B, B+W], then run wrk against nginx under the same
//! interference, stop the interference, append the row. Collection resumes: every run
//! is a new session that first measures the no-interference baseline, then picks the
//! recipes that have the fewest samples so far.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use fitsched_e2e::stack::{Stack, StackConfig, block_on, free_addr};
use fitsched_e2e::{paths, progress};
use fitsched_proto::{ListNodesRequest, NodeWindow};
use serde_json::{Value, json};

use crate::cargo;

/// Version of the row format in `onnx/DATASET.md`.
pub const SCHEMA: u32 = 1;

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Stop when the dataset holds this many samples.
    #[arg(long, default_value_t = 150)]
    samples: usize,
    /// The agent's window during collection.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// How long wrk runs per sample (with the settle time it must fit in one window, so
    /// a sample takes two windows).
    #[arg(long, default_value = "7s", value_parser = humantime::parse_duration)]
    bench: Duration,
    /// The dataset file (appended to).
    #[arg(long, default_value = "onnx/data/samples.jsonl")]
    out: PathBuf,
}

/// An interference recipe: stress-ng arguments on this machine's scale (2 cores, 24 GiB
/// here; the arguments are per worker, so they scale with the machine).
struct Recipe {
    name: &'static str,
    stress: &'static [&'static str],
}

const RECIPES: &[Recipe] = &[
    Recipe { name: "none", stress: &[] },
    Recipe { name: "cpu-1x50", stress: &["--cpu", "1", "--cpu-load", "50"] },
    Recipe { name: "cpu-1x100", stress: &["--cpu", "1"] },
    Recipe { name: "cpu-2x100", stress: &["--cpu", "2"] },
    Recipe { name: "cache-1", stress: &["--cache", "1"] },
    Recipe { name: "cache-2", stress: &["--cache", "2"] },
    Recipe { name: "membw-1", stress: &["--stream", "1"] },
    Recipe { name: "membw-2", stress: &["--stream", "2"] },
    Recipe { name: "vm-1", stress: &["--vm", "1", "--vm-bytes", "1G"] },
    Recipe { name: "io-hdd-1", stress: &["--hdd", "1", "--hdd-bytes", "128M"] },
    Recipe { name: "io-mix-1", stress: &["--iomix", "1"] },
    Recipe { name: "net-sock-1", stress: &["--sock", "1"] },
    Recipe { name: "net-udp-1", stress: &["--udp", "1"] },
    Recipe { name: "mix-cpu-io", stress: &["--cpu", "1", "--cpu-load", "50", "--hdd", "1", "--hdd-bytes", "128M"] },
    Recipe { name: "mix-cache-net", stress: &["--cache", "1", "--sock", "1"] },
    Recipe { name: "mix-membw-cpu", stress: &["--stream", "1", "--cpu", "1", "--cpu-load", "50"] },
];

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    ensure_debian_tools(&[("nginx", "nginx"), ("wrk", "wrk"), ("stress-ng", "stress-ng")])?;
    cargo(&["build", "-p", "fitsched-agent", "-p", "fitsched-scorer", "--bins"])?;
    let out = paths::workspace_root().join(&args.out);
    let mut counts = existing_counts(&out)?;
    let done: usize = counts.values().sum();
    if done >= args.samples {
        progress(format!("{} already holds {done} samples (target {})", out.display(), args.samples));
        return Ok(());
    }
    let work = paths::state_dir().join("collect");
    std::fs::create_dir_all(&work)?;
    let nginx = Nginx::start(&work)?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_owned();
    let window_arg = format!("{}s", args.window.as_secs());
    let mut stack = Stack::start(StackConfig {
        window: window_arg,
        tick: "1s".into(),
        real_agents: vec![Some(host.clone())],
        log_dir: work.join("logs"),
        ..StackConfig::default()
    })?;
    let session = now_unix_ms();
    let machine = machine_facts();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
    progress(format!(
        "session {session}: {done} samples so far, collecting up to {} ({} s per sample)",
        args.samples,
        2 * args.window.as_secs()
    ));
    let mut rng = fastrand::Rng::with_seed(session as u64);
    let mut first = true;
    for n in done..args.samples {
        // Every session starts with the baseline its labels are normalised to.
        let recipe = if first { &RECIPES[0] } else { least_sampled(&counts, &mut rng) };
        first = false;
        let started = Instant::now();
        let row = sample(&mut stack, &host, &nginx, recipe, &args, &work)
            .with_context(|| format!("sample {} ({})", n + 1, recipe.name))?;
        let row = json!({
            "schema": SCHEMA,
            "session": session,
            "sample": n + 1,
            "recipe": {"name": recipe.name, "stress_ng": recipe.stress},
            "machine": machine,
            "window": row.window,
            "features": row.features,
            "missing": row.missing,
            "benchmark": row.bench,
        });
        writeln!(file, "{row}")?;
        file.flush()?;
        *counts.entry(recipe.name.to_owned()).or_default() += 1;
        progress(format!(
            "[{}/{}] {:<14} {:>9.0} req/s  p99 {:>7.3} ms  ({:.0?})",
            n + 1,
            args.samples,
            recipe.name,
            row["benchmark"]["requests_per_second"].as_f64().unwrap_or(f64::NAN),
            row["benchmark"]["latency_p99_ms"].as_f64().unwrap_or(f64::NAN),
            started.elapsed()
        ));
    }
    Ok(())
}

struct Row {
    window: Value,
    features: BTreeMap<String, f64>,
    missing: BTreeMap<String, String>,
    bench: Value,
}

fn sample(
    stack: &mut Stack,
    host: &str,
    nginx: &Nginx,
    recipe: &Recipe,
    args: &CollectArgs,
    work: &Path,
) -> anyhow::Result<Row> {
    let w_ms = args.window.as_millis() as i64;
    let settle_ms = 1_500;
    // The first window boundary that leaves time to start the interference and let it settle.
    let boundary = (now_unix_ms() + settle_ms + 500).div_euclid(w_ms) * w_ms + w_ms;
    sleep_until_unix_ms(boundary - settle_ms);
    let _stress = Stress::start(recipe, work)?;
    sleep_until_unix_ms(boundary + w_ms);
    let wrk = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{}s", args.bench.as_secs()), "--latency", &nginx.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wrk")?;
    let window = wait_for_window(stack, host, boundary)?;
    let out = wrk.wait_with_output()?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let bench = parse_wrk(&String::from_utf8_lossy(&out.stdout))?;
    stack.check_alive()?;
    let (features, missing) = features(&window);
    Ok(Row {
        window: json!({
            "start_unix_ms": window.start_unix_ms,
            "end_unix_ms": window.end_unix_ms,
            "samples": window.samples,
            "samples_expected": window.samples_expected,
            "seconds": args.window.as_secs(),
        }),
        features,
        missing,
        bench: json!({
            "tool": "wrk", "threads": 1, "connections": 16, "seconds": args.bench.as_secs(),
            "requests_per_second": bench.requests_per_second,
            "latency_p50_ms": bench.p50_ms,
            "latency_p99_ms": bench.p99_ms,
            "socket_errors": bench.socket_errors,
        }),
    })
}

/// The node-level features of a window by name (`<metric>_<stat>`, the scorer's
/// naming), and the metrics it lacked with the agent's reasons. Per-device metrics
/// (`metric:instance`) are left out: devices differ between nodes.
pub fn features(w: &NodeWindow) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let mut features = BTreeMap::new();
    for (name, s) in w.metrics.iter().filter(|(n, _)| !n.contains(':')) {
        for (stat, v) in [("mean", s.mean), ("max", s.max), ("p95", s.p95), ("last", s.last)] {
            features.insert(format!("{name}_{stat}"), v);
        }
    }
    let missing = w.missing.iter().map(|m| (m.name.clone(), m.reason.clone())).collect();
    (features, missing)
}

/// Waits until the scorer holds `host`'s window that starts at `start_unix_ms`.
fn wait_for_window(stack: &Stack, host: &str, start_unix_ms: i64) -> anyhow::Result<NodeWindow> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let nodes = block_on(async {
            anyhow::Ok(stack.scorer_client().await?.list_nodes(ListNodesRequest {}).await?.into_inner().nodes)
        })?;
        if let Some(w) = nodes.into_iter().find(|n| n.name == host).and_then(|n| n.latest) {
            if w.start_unix_ms == start_unix_ms {
                return Ok(w);
            }
            if w.start_unix_ms > start_unix_ms {
                bail!("the window starting at {start_unix_ms} was overtaken before it was read");
            }
        }
        if Instant::now() > deadline {
            bail!("no window starting at {start_unix_ms} reached the scorer");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What wrk measured.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkResult {
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub socket_errors: u64,
}

/// Parses wrk's `--latency` report.
pub fn parse_wrk(out: &str) -> anyhow::Result<WrkResult> {
    let field = |prefix: &str| out.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()));
    let rps: f64 = field("Requests/sec:").context("no Requests/sec in wrk output")?.parse()?;
    let p = |pct: &str| -> anyhow::Result<f64> {
        parse_duration_ms(&field(pct).with_context(|| format!("no {pct} latency in wrk output (needs --latency)"))?)
    };
    let socket_errors = field("Socket errors:")
        .map_or(0, |e| e.split(',').filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok()).sum());
    Ok(WrkResult { requests_per_second: rps, p50_ms: p("50%")?, p99_ms: p("99%")?, socket_errors })
}

/// wrk prints durations as `251.00us`, `1.23ms` or `2.00s`.
fn parse_duration_ms(v: &str) -> anyhow::Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1_000.0)
    } else {
        bail!("unknown duration {v:?} in wrk output")
    };
    Ok(num.parse::<f64>().with_context(|| format!("duration {v:?}"))? * scale)
}

/// The recipe with the fewest samples so far (ties at random, so no recipe is always
/// measured at the same point of a session).
fn least_sampled(counts: &BTreeMap<String, usize>, rng: &mut fastrand::Rng) -> &'static Recipe {
    let count = |r: &Recipe| counts.get(r.name).copied().unwrap_or(0);
    let fewest = RECIPES.iter().map(count).min().unwrap_or(0);
    let candidates: Vec<&'static Recipe> = RECIPES.iter().filter(|r| count(r) == fewest).collect();
    candidates[rng.usize(..candidates.len())]
}

fn existing_counts(path: &Path) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(counts) };
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        let name = row["recipe"]["name"].as_str().context("row without recipe.name")?;
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    Ok(counts)
}

/// A stress-ng process group, stopped when dropped.
struct Stress(Option<Child>);

impl Stress {
    fn start(recipe: &Recipe, work: &Path) -> anyhow::Result<Stress> {
        if recipe.stress.is_empty() {
            return Ok(Stress(None));
        }
        let child = Command::new("stress-ng")
            .args(recipe.stress)
            // A safety net: interference never outlives a crashed collector by much.
            .args(["--timeout", "120s", "--temp-path"])
            .arg(work)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting stress-ng")?;
        Ok(Stress(Some(child)))
    }
}

impl Drop for Stress {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // The whole group: stress-ng's workers are its children.
            let _ = Command::new("kill").args(["-s", "TERM", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
        }
    }
}

/// nginx serving a small static page on a loopback port, like the chart's benchmark pod.
struct Nginx {
    url: String,
    pid_file: PathBuf,
}

impl Nginx {
    fn start(work: &Path) -> anyhow::Result<Nginx> {
        let dir = work.join("nginx");
        std::fs::create_dir_all(dir.join("html"))?;
        std::fs::write(dir.join("html/index.html"), "<html><body>fitsched benchmark page</body></html>\n")?;
        let addr = free_addr()?;
        let pid_file = dir.join("nginx.pid");
        std::fs::write(
            dir.join("nginx.conf"),
            format!(
                "worker_processes 1;\npid {pid};\nerror_log {err};\nevents {{ worker_connections 1024; }}\n\
                 http {{ access_log off; server {{ listen {addr}; root {root}; }} }}\n",
                pid = pid_file.display(),
                err = dir.join("error.log").display(),
                root = dir.join("html").display(),
            ),
        )?;
        let status = Command::new("nginx").arg("-c").arg(dir.join("nginx.conf")).arg("-p").arg(&dir).status()?;
        if !status.success() {
            bail!("nginx failed to start; see {}", dir.join("error.log").display());
        }
        Ok(Nginx { url: format!("http://{addr}/"), pid_file })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// Installs the Debian packages whose commands are missing, and stops the nginx Debian
/// starts when it installs it: the collector runs its own.
fn ensure_debian_tools(tools: &[(&str, &str)]) -> anyhow::Result<()> {
    if fitsched_e2e::tools::ensure_debian_tools(tools)?.contains(&"nginx") {
        let _ = Command::new("sh")
            .args(["-c", "systemctl stop nginx 2>/dev/null || service nginx stop 2>/dev/null || true"])
            .status();
    }
    Ok(())
}

fn machine_facts() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo.lines().find_map(|l| l.strip_prefix(key)?.split_once(':').map(|(_, v)| v.trim().to_owned()))
    };
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok());
    json!({
        "cpu_model": field("model name"),
        "cpu_vendor": field("vendor_id"),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_bytes": mem_kib.map(|k| k * 1024),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
        "virtualized": field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")),
    })
}

fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn sleep_until_unix_ms(t: i64) {
    let wait = t - now_unix_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_wrk_output() {
        let r = parse_wrk(include_str!("testdata/wrk-latency.txt")).unwrap();
        assert_eq!(r.requests_per_second, 60287.16);
        assert!((r.p50_ms - 0.251).abs() < 1e-12 && (r.p99_ms - 0.472).abs() < 1e-12, "{r:?}");
        assert_eq!(r.socket_errors, 0);
        let with_errors = "Latency Distribution\n 50% 1.00ms\n 99% 2.50s\nSocket errors: connect 0, read 3, write 0, timeout 2\nRequests/sec: 10.5\n";
        let r = parse_wrk(with_errors).unwrap();
        assert_eq!((r.p99_ms, r.socket_errors), (2500.0, 5));
        assert!(parse_wrk("Requests/sec: 10\n").is_err(), "without --latency there are no percentiles");
    }

    #[test]
    fn features_are_named_like_the_scorer_reads_them() {
        let mut w = NodeWindow::default();
        w.metrics.insert(
            "cpu_utilization".into(),
            fitsched_proto::MetricSummary { mean: 0.5, max: 0.9, p95: 0.8, last: 0.4, samples: 10 },
        );
        w.metrics.insert("net_rx_bytes_per_second:eth0".into(), fitsched_proto::MetricSummary::default());
        w.missing.push(fitsched_proto::Missing { name: "perf_ipc".into(), reason: "no PMU".into() });
        let (f, m) = features(&w);
        assert_eq!(
            f.keys().collect::<Vec<_>>(),
            ["cpu_utilization_last", "cpu_utilization_max", "cpu_utilization_mean", "cpu_utilization_p95"]
        );
        assert_eq!(m["perf_ipc"], "no PMU");
    }

    #[test]
    fn recipes_are_balanced() {
        let mut counts = BTreeMap::new();
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..RECIPES.len() * 3 {
            let r = least_sampled(&counts, &mut rng);
            *counts.entry(r.name.to_owned()).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&c| c == 3), "{counts:?}");
    }
}
