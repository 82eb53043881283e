//! `cargo xtask collect`: measures how a self-contained nginx + wrk benchmark unit fares
//! under controlled interference, next to what the real fitsched-agent saw on the node
//! just before. One JSON line per sample in `onnx/data/samples.jsonl` (schema in
//! `onnx/DATASET.md`).
//!
//! Each sample spans two of the agent's windows, the horizon the scorer serves: the
//! interference starts shortly before a window boundary B, the agent records the window
//! [B, B+W] (the features), then wrk measures the benchmark over the next window while
//! the same interference goes on (the label). Interference is drawn at random: one to
//! three kinds (CPU at a swept load, cache, memory bandwidth, memory pressure, disk,
//! sockets, or other benchmark units), each at a random intensity. Every session measures
//! the no-interference baseline its labels are normalised to at its start and then every
//! `--baseline-every` samples, so a session's baseline is never a single run.
//! Collection resumes: each run is a new session appending to the file.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fitsched_e2e::stack::{Stack, StackConfig, block_on, free_addr};
use fitsched_e2e::tools::cargo;
use fitsched_e2e::{paths, progress};
use fitsched_proto::{ListNodesRequest, NodeWindow, features};
use serde_json::{Value, json};

use crate::interference::{Component, Interference, MAX_NEIGHBOURS};
use crate::plan::{self, Cell, Plan};

/// Version of the row format in `onnx/DATASET.md`.
pub const SCHEMA: u32 = 2;

/// The start of the interference before the features' window, so the window sees it
/// settled rather than starting.
const SETTLE_MS: i64 = 1_500;

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Stop when the dataset holds this many samples (of this schema).
    #[arg(long, default_value_t = 150)]
    samples: usize,
    /// The agent's window: the features' span and the label's (the production default).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// A baseline sample (no interference) every this many samples, the first included.
    #[arg(long, default_value_t = 6)]
    baseline_every: usize,
    /// The dataset file (appended to).
    #[arg(long, default_value = "onnx/data/samples.jsonl")]
    out: PathBuf,
    /// Seed of the interference draws (default: the session's start time).
    #[arg(long)]
    seed: Option<u64>,
    /// A collection plan (`onnx/data/plan.yaml`, see `fitsched_lab::plan`): samples go to
    /// the plan's cells the dataset still lacks, and the run ends when none lacks any
    /// (`--samples` then does not apply).
    #[arg(long)]
    plan: Option<PathBuf>,
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    ensure_debian_tools(&[("nginx", "nginx"), ("wrk", "wrk"), ("stress-ng", "stress-ng")])?;
    cargo(&["build", "-p", "fitsched-agent", "-p", "fitsched-scorer", "--bins"])?;
    if args.baseline_every < 2 {
        bail!("--baseline-every must be at least 2 (1 would measure nothing but baselines)");
    }
    let out = paths::workspace_root().join(&args.out);
    let cells = args.plan.as_ref().map(|p| Plan::read(&paths::workspace_root().join(p))?.cells()).transpose()?;
    let (done, mut per_cell) = existing_samples(&out)?;
    let lacking = |per_cell: &BTreeMap<String, usize>| cells.as_ref().map(|c| plan::deficits(c, per_cell));
    match lacking(&per_cell) {
        Some(left) if left.is_empty() => {
            progress(format!("{} already holds every sample of the plan", out.display()));
            return Ok(());
        }
        Some(left) => progress(format!(
            "plan: {} samples in {} cells still to measure",
            left.iter().map(|(_, n)| n).sum::<usize>(),
            left.len()
        )),
        None if done >= args.samples => {
            progress(format!("{} already holds {done} samples (target {})", out.display(), args.samples));
            return Ok(());
        }
        None => {}
    }
    let work = paths::state_dir().join("collect");
    std::fs::create_dir_all(&work)?;
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // The measured unit and the most benchmark neighbours a draw asks for.
    let units = (0..=MAX_NEIGHBOURS)
        .map(|i| Nginx::start(&work.join(format!("nginx-{i}"))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_owned();
    let mut stack = Stack::start(StackConfig {
        window: format!("{}s", args.window.as_secs()),
        tick: "1s".into(),
        real_agents: vec![Some(host.clone())],
        log_dir: work.join("logs"),
        ..StackConfig::default()
    })?;
    let session = fitsched_proto::now_unix_ms();
    let machine = machine_facts();
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&out)?;
    progress(format!(
        "session {session}: {done} samples so far, collecting {} (about {} s per sample; stop with Ctrl-C and run again to resume)",
        if cells.is_some() { "what the plan lacks".to_owned() } else { format!("up to {}", args.samples) },
        2 * args.window.as_secs()
    ));
    let mut rng = fastrand::Rng::with_seed(args.seed.unwrap_or(session as u64));
    // Ctrl-C (or SIGTERM) ends the run after the sample being measured, so every row in
    // the file is whole and the processes this run started are stopped.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    for (i, n) in (done..).enumerate() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            progress(format!("stopped after {n} samples; run again to resume"));
            break;
        }
        let left = lacking(&per_cell);
        match &left {
            Some(left) if left.is_empty() => {
                progress(format!("the plan is complete with {n} samples"));
                break;
            }
            None if n >= args.samples => break,
            _ => {}
        }
        let (cell, interference, label): (Option<&Cell>, Interference, Option<Interference>) =
            if i % args.baseline_every == 0 {
                (None, Interference::default(), None)
            } else if let Some(left) = &left {
                let cell = plan::draw(left, &mut rng).context("a plan cell to measure")?;
                let (total, available) = plan::meminfo()?;
                let on = |spec: &plan::Spec| spec.interference(cpus, total, available);
                (Some(cell), on(&cell.features), cell.label.as_ref().map(on))
            } else {
                (None, Interference::draw(&mut rng, cpus), None)
            };
        let started = Instant::now();
        let m = sample(&mut stack, &host, &units, &interference, label.as_ref(), args.window, &work)
            .with_context(|| format!("sample {} ({})", n + 1, interference.describe()))?;
        let mut row = json!({
            "schema": SCHEMA,
            "session": session,
            "sample": n + 1,
            "baseline": interference.is_baseline() && label.is_none(),
            "interference": interference_json(&interference),
            "machine": machine,
            "window": m.window,
            "features": m.features,
            "missing": m.missing,
            "benchmark": m.bench.to_json(m.bench_seconds),
            "neighbours": m.neighbours.iter().map(|(before, during)| json!({
                "features_window": before.as_ref().map(|b| b.to_json(m.neighbour_seconds)),
                "label_window": during.as_ref().map(|d| d.to_json(m.bench_seconds)),
            })).collect::<Vec<_>>(),
        });
        if let Some(cell) = cell {
            row["cell"] = json!(cell.key);
            *per_cell.entry(cell.key.clone()).or_default() += 1;
        }
        if let Some(label) = &label {
            row["label_interference"] = interference_json(label);
        }
        writeln!(file, "{row}")?;
        file.flush()?;
        progress(format!(
            "[{}] {:<34} {:>9.0} req/s  p99 {:>7.3} ms  ({:.0?})",
            n + 1,
            cell.map_or_else(|| interference.describe(), |c| c.key.clone()),
            m.bench.requests_per_second,
            m.bench.p99_ms,
            started.elapsed()
        ));
    }
    Ok(())
}

fn interference_json(i: &Interference) -> Value {
    json!({
        "group": i.group(),
        "components": i.0.iter().map(Component::to_json).collect::<Vec<_>>(),
        "stress_ng": i.stress_args(),
    })
}

struct Measured {
    window: Value,
    features: BTreeMap<String, f64>,
    missing: BTreeMap<String, String>,
    bench: WrkResult,
    bench_seconds: u64,
    /// Each benchmark neighbour over the features' window, then over the label's (where
    /// it ran there: the label's interference may have other neighbours).
    neighbours: Vec<(Option<WrkResult>, Option<WrkResult>)>,
    neighbour_seconds: u64,
}

fn sample(
    stack: &mut Stack,
    host: &str,
    units: &[Nginx],
    interference: &Interference,
    label: Option<&Interference>,
    window: Duration,
    work: &Path,
) -> anyhow::Result<Measured> {
    let w_ms = window.as_millis() as i64;
    let next_boundary = || (fitsched_proto::now_unix_ms() + SETTLE_MS + 200 + w_ms - 1).div_euclid(w_ms) * w_ms;
    // Memory pressure takes seconds to map its gigabytes: it starts first, and the
    // features' window is the first that begins once the memory is taken. Everything
    // else settles within SETTLE_MS before the boundary.
    let target = interference.0.iter().find_map(|c| c.target_available.map(|(t, _)| t));
    let (boundary, stress) = match target {
        Some(target) => {
            let stress = Stress::start(&interference.stress_args(), work)?;
            wait_for_memory(target)?;
            (next_boundary(), stress)
        }
        None => {
            let boundary = next_boundary();
            sleep_until_unix_ms(boundary - SETTLE_MS);
            (boundary, Stress::start(&interference.stress_args(), work)?)
        }
    };
    let units_of = |i: &Interference| &units[1..=i.benchmark_units().min(units.len() - 1)];
    let neighbours = units_of(interference);
    // Neighbours run through the features' window (from a second before it, to its end)
    // and, measured again, through the label's.
    let neighbour_seconds = (w_ms / 1000 + 1) as u64;
    sleep_until_unix_ms(boundary - 1_000);
    let before =
        neighbours.iter().map(|u| Wrk::start(&u.url, neighbour_seconds)).collect::<anyhow::Result<Vec<_>>>()?;
    sleep_until_unix_ms(boundary + w_ms);
    // Persistence: the label window runs under other interference from its boundary on,
    // as when a node's load changes between the window the scorer read and the next.
    let (_stress, label_neighbours) = match label {
        Some(l) => {
            drop(stress);
            (Stress::start(&l.stress_args(), work)?, units_of(l))
        }
        None => (stress, neighbours),
    };
    // The label ends early enough for the next sample's interference to settle before
    // the next boundary, so samples follow each other every two windows.
    let bench_seconds = ((w_ms - SETTLE_MS - 1_000) / 1000).max(1) as u64;
    let main = Wrk::start(&units[0].url, bench_seconds)?;
    let during =
        label_neighbours.iter().map(|u| Wrk::start(&u.url, bench_seconds)).collect::<anyhow::Result<Vec<_>>>()?;
    let window = wait_for_window(stack, host, boundary)?;
    let bench = main.finish()?;
    let before = before.into_iter().map(Wrk::finish).collect::<anyhow::Result<Vec<_>>>()?;
    let during = during.into_iter().map(Wrk::finish).collect::<anyhow::Result<Vec<_>>>()?;
    stack.check_alive()?;
    Ok(Measured {
        window: json!({
            "start_unix_ms": window.start_unix_ms,
            "end_unix_ms": window.end_unix_ms,
            "samples": window.samples,
            "samples_expected": window.samples_expected,
            "seconds": window.end_unix_ms.saturating_sub(window.start_unix_ms) / 1000,
            "label_start_unix_ms": boundary + w_ms,
        }),
        features: features::all(&window),
        missing: window.missing.iter().map(|m| (m.name.clone(), m.reason.clone())).collect(),
        bench,
        bench_seconds,
        neighbours: pair_up(before, during),
        neighbour_seconds,
    })
}

/// Waits until at most `target` (plus a margin for what else moves) of the machine's
/// memory is available.
fn wait_for_memory(target: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (total, available) = plan::meminfo()?;
        let share = available as f64 / total as f64;
        if share <= target + 0.03 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("memory pressure left {share:.2} of the memory available after 90 s (target {target})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Neighbour `i`'s figures over both windows, `None` where it did not run.
fn pair_up<T>(before: Vec<T>, during: Vec<T>) -> Vec<(Option<T>, Option<T>)> {
    let n = before.len().max(during.len());
    let (mut b, mut d) = (before.into_iter(), during.into_iter());
    (0..n).map(|_| (b.next(), d.next())).collect()
}

/// A wrk run against one benchmark unit (1 thread, 16 connections, as the chart's
/// benchmark pods), read when it ends.
struct Wrk(Child);

impl Wrk {
    fn start(url: &str, seconds: u64) -> anyhow::Result<Wrk> {
        let child = Command::new("wrk")
            .args(["-t1", "-c16", &format!("-d{seconds}s"), "--latency", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting wrk")?;
        Ok(Wrk(child))
    }

    fn finish(self) -> anyhow::Result<WrkResult> {
        let out = self.0.wait_with_output()?;
        if !out.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        parse_wrk(&String::from_utf8_lossy(&out.stdout))
    }
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

impl WrkResult {
    fn to_json(&self, seconds: u64) -> Value {
        json!({
            "tool": "wrk", "threads": 1, "connections": 16, "seconds": seconds,
            "requests_per_second": self.requests_per_second,
            "latency_p50_ms": self.p50_ms,
            "latency_p99_ms": self.p99_ms,
            "socket_errors": self.socket_errors,
        })
    }
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

/// The rows of this schema already in the dataset, and how many each plan cell holds
/// (earlier schemas may share the file only if moved aside first: they are refused, not
/// mixed in).
fn existing_samples(path: &Path) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok((0, BTreeMap::new())) };
    let (mut n, mut cells) = (0, BTreeMap::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))?;
        if row["schema"] != json!(SCHEMA) {
            bail!(
                "{} line {} has schema {}, not {SCHEMA}: collect into another --out",
                path.display(),
                i + 1,
                row["schema"]
            );
        }
        if let Some(cell) = row["cell"].as_str() {
            *cells.entry(cell.to_owned()).or_default() += 1;
        }
        n += 1;
    }
    Ok((n, cells))
}

/// A stress-ng process group, stopped when dropped.
struct Stress(Option<Child>);

impl Stress {
    fn start(args: &[String], work: &Path) -> anyhow::Result<Stress> {
        if args.is_empty() {
            return Ok(Stress(None));
        }
        let child = Command::new("stress-ng")
            .args(args)
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
    fn start(dir: &Path) -> anyhow::Result<Nginx> {
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
        let status = Command::new("nginx").arg("-c").arg(dir.join("nginx.conf")).arg("-p").arg(dir).status()?;
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
    json!({
        "cpu_model": field("model name"),
        "cpu_vendor": field("vendor_id"),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_bytes": plan::meminfo().ok().map(|(total, _)| total),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
        "virtualized": field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor")),
    })
}

fn sleep_until_unix_ms(t: i64) {
    let wait = t - fitsched_proto::now_unix_ms();
    if wait > 0 {
        std::thread::sleep(Duration::from_millis(wait as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_pair_up_across_a_change_of_interference() {
        assert_eq!(pair_up(vec![1, 2], vec![3]), vec![(Some(1), Some(3)), (Some(2), None)]);
        assert_eq!(pair_up(Vec::<u8>::new(), vec![4]), vec![(None, Some(4))]);
    }

    #[test]
    fn existing_rows_count_per_cell_and_other_schemas_are_refused() {
        let dir = std::env::temp_dir().join(format!("fitsched-collect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("samples.jsonl");
        std::fs::write(
            &file,
            "{\"schema\":2,\"cell\":\"a/none\"}\n\n{\"schema\":2}\n{\"schema\":2,\"cell\":\"a/none\"}\n",
        )
        .unwrap();
        let (n, cells) = existing_samples(&file).unwrap();
        assert_eq!((n, cells), (3, BTreeMap::from([("a/none".to_owned(), 2)])));
        std::fs::write(&file, "{\"schema\":1}\n").unwrap();
        assert!(existing_samples(&file).is_err());
        assert_eq!(existing_samples(&dir.join("absent")).unwrap().0, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
}
