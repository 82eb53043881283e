//! The Intel PCM collector: DRAM bandwidth, L3 occupancy and hit ratio, UPI utilisation,
//! core C-state residency and RAPL power, read from a `pcm-sensor-server` next to the
//! agent (in production a privileged sidecar on localhost, default port 9738).
//!
//! What the server prints was learnt from intel/pcm's own sources (`PrometheusPrinter` in
//! `src/pcm-sensor-server.cpp`); `testdata/pcm/README.md` has the details. Two endpoints
//! speak Prometheus text:
//!
//! - `/metrics`: counters accumulated since the server started, and ratios (C-state
//!   shares, link utilisation) averaged over that whole time. Per-tick link utilisation
//!   cannot be recovered from it, because the link speed it divides by is not printed.
//! - `/persecond/N` with `Accept: text/plain; version=0.0.4`: the difference between the
//!   server's own one-second samples N seconds apart, with shares and utilisations that
//!   PCM computed over exactly that interval, served from memory without a fresh sweep
//!   of the MSRs.
//!
//! The collector polls `/persecond/N`, so every answer stands on its own: no deltas
//! between polls, no counter resets to detect, values from the first answer on.
//!
//! By concern: the text is parsed by the one exposition parser
//! (`fitsched_runtime::exposition`), [`client`] asks the server, [`derive`] turns an
//! answer into the metrics (pure, tested on a committed sample), and this module polls in
//! a background task that keeps the latest parsed answer in a shared slot;
//! [`PcmCollector::sample`] only reads that slot.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use fitsched_proto::metric;
use fitsched_runtime::exposition::{self, Exposition};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{Collector, Sample};

mod client;
mod derive;

use client::{Target, fetch, parse_target};
use derive::all_missing;
pub use derive::derive;

/// Every metric this collector produces.
pub const METRICS: [&str; 9] = [
    metric::PCM_MEMORY_READ_BYTES_PER_SECOND,
    metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND,
    metric::PCM_L3_OCCUPANCY_BYTES,
    metric::PCM_L3_HIT_RATIO,
    metric::PCM_UPI_UTILIZATION,
    metric::PCM_CORE_C0_RESIDENCY,
    metric::PCM_CORE_C6_RESIDENCY,
    metric::PCM_PACKAGE_WATTS,
    metric::PCM_DRAM_WATTS,
];

/// pcm-sensor-server's default port (`-p`).
pub const DEFAULT_PORT: u16 = 9738;
pub const DISABLED_REASON: &str = "PCM disabled (no --pcm-url)";
pub const NO_MSR_REASON: &str = "no MSR access (/dev/cpu/*/msr absent; PCM needs the msr module and privileges)";
pub const STOPPED_REASON: &str = "pcm-sensor-server stopped answering";
/// An answer older than this many poll intervals no longer describes the node.
pub const STALE_AFTER_INTERVALS: u32 = 3;

const WAITING_PREFIX: &str = "waiting for the first answer from pcm-sensor-server";
/// The media type the server matches (after removing spaces) to answer in Prometheus text.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";
/// The server keeps 30 one-second samples, so `/persecond/N` accepts N in 1..=30.
const MAX_PERSECOND_SPAN: u64 = 30;
/// The poller's period has a floor so a zero or tiny interval cannot turn it into a busy loop.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

// ---------------------------------------------------------------------------------------
// The host: checked once at start.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuVendor {
    Intel,
    /// The `vendor_id` of another vendor, or a note that the CPU reports none (not x86).
    Other(String),
    /// `/proc/cpuinfo` could not be read; the sidecar may still know better.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub vendor: CpuVendor,
    /// Whether `/dev/cpu/0/msr` exists, i.e. the msr module is loaded and visible here.
    pub msr_device: bool,
}

impl HostInfo {
    /// Reads `/proc/cpuinfo` and looks for `/dev/cpu/0/msr`. Blocking, but both are
    /// served from kernel memory, and this runs once at start.
    pub fn detect() -> Self {
        let vendor = match std::fs::read_to_string("/proc/cpuinfo") {
            Ok(text) => match parse_cpu_vendor(&text) {
                Some("GenuineIntel") => CpuVendor::Intel,
                Some(other) => CpuVendor::Other(other.to_owned()),
                None => CpuVendor::Other("no vendor_id in /proc/cpuinfo".to_owned()),
            },
            Err(_) => CpuVendor::Unknown,
        };
        Self { vendor, msr_device: Path::new("/dev/cpu/0/msr").exists() }
    }
}

/// The `vendor_id` of the first CPU in `/proc/cpuinfo` text.
pub fn parse_cpu_vendor(cpuinfo: &str) -> Option<&str> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "vendor_id").then(|| value.trim()).filter(|v| !v.is_empty())
    })
}

// ---------------------------------------------------------------------------------------
// Polling.

/// What the poller leaves for `sample()`.
#[derive(Debug, Default)]
struct Slot {
    /// The latest good answer and when it arrived.
    answer: Option<(Instant, Arc<Exposition>)>,
    /// Why the latest poll failed; cleared by a good answer.
    error: Option<String>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // The slot holds plain data that every writer replaces whole, so a panic elsewhere
    // cannot leave it half-written.
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn poll_forever(target: Target, url: String, interval: Duration, slot: Arc<Mutex<Slot>>) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = match tokio::time::timeout(target.fetch_timeout, fetch(&target)).await {
            Ok(Ok(text)) => {
                exposition::parse(&text).map_err(|e| format!("not a pcm-sensor-server answer from {url}: {e}"))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {} ms", target.fetch_timeout.as_millis())),
        };
        let mut slot = lock(&slot);
        match outcome {
            Ok(exposition) => {
                slot.answer = Some((Instant::now(), Arc::new(exposition)));
                slot.error = None;
            }
            Err(e) => slot.error = Some(e),
        }
    }
}

/// The fresh answer to derive metrics from, or the reason every metric is missing.
fn assess(
    answer: Option<(Instant, Arc<Exposition>)>,
    error: Option<String>,
    now: Instant,
    stale_after: Duration,
    msr_device: bool,
    url: &str,
) -> Result<Arc<Exposition>, String> {
    match (answer, error) {
        (Some((at, exposition)), _) if now.saturating_duration_since(at) <= stale_after => Ok(exposition),
        // It answered before, so the sidecar had whatever access it needs; the agent's
        // own lack of MSRs is beside the point.
        (Some(_), Some(e)) => Err(format!("{STOPPED_REASON} ({url}: {e})")),
        (Some(_), None) => Err(STOPPED_REASON.to_owned()),
        (None, None) => Err(format!("{WAITING_PREFIX} at {url}")),
        (None, Some(_)) if !msr_device => Err(NO_MSR_REASON.to_owned()),
        (None, Some(e)) => Err(format!("no pcm-sensor-server at {url}: {e}")),
    }
}

struct Poller {
    url: String,
    slot: Arc<Mutex<Slot>>,
    stale_after: Duration,
    msr_device: bool,
    task: JoinHandle<()>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Mode {
    /// Nothing is polled; every metric is missing for this reason.
    Off(String),
    Polling(Poller),
}

/// Reads PCM through `pcm-sensor-server`. Construct with [`PcmCollector::spawn`] from
/// inside the agent's tokio runtime.
pub struct PcmCollector {
    mode: Mode,
    /// Reasons already logged, so each distinct one is logged once, not every tick.
    logged: HashSet<String>,
}

impl PcmCollector {
    /// Checks the host, then, when `url` (the server's base URL, e.g.
    /// `http://127.0.0.1:9738`) is given and the CPU may be Intel, starts polling it once
    /// per `interval` on the current tokio runtime. Never fails: whatever is wrong shows
    /// up as missing metrics.
    pub fn spawn(url: Option<String>, interval: Duration, limits: &crate::Limits) -> Self {
        Self::spawn_on(url, interval, HostInfo::detect(), limits)
    }

    /// [`spawn`](Self::spawn) with the host's properties given rather than detected.
    pub fn spawn_on(url: Option<String>, interval: Duration, host: HostInfo, limits: &crate::Limits) -> Self {
        let off = |reason: String| Self { mode: Mode::Off(reason), logged: HashSet::new() };
        let Some(url) = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) else {
            return off(DISABLED_REASON.to_owned());
        };
        if let CpuVendor::Other(vendor) = &host.vendor {
            return off(format!("not an Intel CPU ({vendor})"));
        }
        let interval = interval.max(MIN_POLL_INTERVAL);
        let target = match parse_target(&url, interval, limits) {
            Ok(target) => target,
            Err(e) => return off(format!("invalid --pcm-url {url}: {e}")),
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return off("cannot poll pcm-sensor-server: the agent started it outside a tokio runtime".to_owned());
        };
        let slot = Arc::new(Mutex::new(Slot::default()));
        let task = runtime.spawn(poll_forever(target, url.clone(), interval, Arc::clone(&slot)));
        Self {
            mode: Mode::Polling(Poller {
                url,
                slot,
                stale_after: interval * STALE_AFTER_INTERVALS,
                msr_device: host.msr_device,
                task,
            }),
            logged: HashSet::new(),
        }
    }

    /// Logs each reason the first time it appears.
    fn log_new_reasons(&mut self, sample: &Sample) {
        // Error texts come from the network; the cap keeps a flapping server from growing
        // the set without bound, at the price of an occasional repeated line.
        if self.logged.len() > 256 {
            self.logged.clear();
        }
        for missing in &sample.missing {
            if self.logged.contains(&missing.reason) {
                continue;
            }
            self.logged.insert(missing.reason.clone());
            let metrics: Vec<&str> =
                sample.missing.iter().filter(|m| m.reason == missing.reason).map(|m| m.name.as_str()).collect();
            if missing.reason.starts_with(WAITING_PREFIX) {
                tracing::debug!(reason = %missing.reason, ?metrics, "PCM metrics not available yet");
            } else {
                tracing::warn!(reason = %missing.reason, ?metrics, "PCM metrics missing");
            }
        }
    }
}

impl Collector for PcmCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let sample = match &self.mode {
            Mode::Off(reason) => all_missing(reason),
            Mode::Polling(poller) => {
                let (answer, error) = {
                    let slot = lock(&poller.slot);
                    (slot.answer.clone(), slot.error.clone())
                };
                match assess(answer, error, now, poller.stale_after, poller.msr_device, &poller.url) {
                    Ok(exposition) => derive(&exposition),
                    Err(reason) => all_missing(&reason),
                }
            }
        };
        self.log_new_reasons(&sample);
        sample
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::derive::{SOCKET_UNCORE, SYSTEM_CORE, THREAD_CORE};
    use super::*;

    /// A collector of the default limits on the given host.
    fn spawn_on(url: Option<String>, interval: Duration, host: HostInfo) -> PcmCollector {
        PcmCollector::spawn_on(url, interval, host, &crate::Limits::default())
    }

    // Built from intel/pcm's printing code for a 2-socket Skylake-SP; see
    // testdata/pcm/README.md. Not captured from a running server.
    const PERSECOND: &str = include_str!("../testdata/pcm/persecond-skx-2s.prom");
    const INTERVAL_S: f64 = 1.000127;

    const INTEL_WITH_MSR: HostInfo = HostInfo { vendor: CpuVendor::Intel, msr_device: true };
    const INTEL_WITHOUT_MSR: HostInfo = HostInfo { vendor: CpuVendor::Intel, msr_device: false };

    fn fixture() -> Exposition {
        exposition::parse(PERSECOND).unwrap()
    }

    /// The fixture without the lines `drop` picks.
    fn fixture_without(drop: impl Fn(&str) -> bool) -> Exposition {
        let text: String = PERSECOND.lines().filter(|l| !drop(l)).map(|l| format!("{l}\n")).collect();
        exposition::parse(&text).unwrap()
    }

    /// The fixture with the value of every line `pick` picks replaced.
    fn fixture_with(pick: impl Fn(&str) -> bool, value: &str) -> Exposition {
        let text: String = PERSECOND
            .lines()
            .map(|l| match l.rsplit_once(' ') {
                Some((head, _)) if pick(l) => format!("{head} {value}\n"),
                _ => format!("{l}\n"),
            })
            .collect();
        exposition::parse(&text).unwrap()
    }

    fn reasons(sample: &Sample) -> BTreeMap<&str, &str> {
        sample.missing.iter().map(|m| (m.name.as_str(), m.reason.as_str())).collect()
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() <= want.abs() * 1e-12 + 1e-12, "{got} != {want}");
    }

    #[test]
    fn parses_the_committed_sample() {
        let x = fixture();
        let comments = PERSECOND.lines().filter(|l| l.starts_with('#')).count();
        assert_eq!(comments, 10);
        assert_eq!(x.samples.len(), PERSECOND.lines().count() - comments);
        assert_eq!(x.skipped_lines, 0);
        assert_eq!(
            x.samples[0],
            exposition::Sample { name: "Measurement_Interval_in_us".into(), labels: vec![], value: 1000127.0 }
        );
        let thread = x.samples.iter().find(|s| s.name == "CStateResidency" && s.label("thread") == Some("1")).unwrap();
        assert_eq!(
            thread.labels,
            [("socket", "0"), ("core", "0"), ("thread", "1"), ("source", "core"), ("index", "0")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(thread.value, 0.35);
        assert_eq!(x.one("Thermal_Headroom", &SYSTEM_CORE), Some(-2147483648.0));
        assert_eq!(x.sum("DRAM_Reads", &SOCKET_UNCORE), Some(4218893120.0 + 5933276800.0));
        // The per-socket sum equals PCM's own system aggregate.
        let system_uncore = [("aggregate", Some("system")), ("source", Some("uncore"))];
        assert_eq!(x.sum("DRAM_Reads", &SOCKET_UNCORE), x.one("DRAM_Reads", &system_uncore));
        assert_eq!(x.select("L3_Cache_Occupancy", &THREAD_CORE).count(), 8);
    }

    #[test]
    fn parser_never_panics_on_prefixes_of_real_lines() {
        for line in PERSECOND.lines().take(40) {
            for (cut, _) in line.char_indices() {
                let _ = exposition::parse(&line[..cut]);
            }
        }
        for junk in ["{", "}", "a{", "a{b", "a{b=", "a{b=\"", "a{b=\"\\", "a{}", "a{} ", "\"", "a{b=\"c\"}"] {
            let _ = exposition::parse(junk);
        }
    }

    #[test]
    fn derives_every_metric_from_the_sample() {
        let s = derive(&fixture());
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(s.values.len(), METRICS.len());
        let v = |name: &str| s.values[name];
        assert_close(v(metric::PCM_MEMORY_READ_BYTES_PER_SECOND), (4218893120.0 + 5933276800.0) / INTERVAL_S);
        assert_close(v(metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND), (1512336448.0 + 2104117056.0) / INTERVAL_S);
        assert_close(v(metric::PCM_L3_OCCUPANCY_BYTES), 4960.0 * 1024.0);
        assert_close(v(metric::PCM_L3_HIT_RATIO), 47909788.0 / (47909788.0 + 15773369.0));
        let links = [0.063, 0.071, 0.062, 0.070, 0.057, 0.082, 0.057, 0.083];
        assert_close(v(metric::PCM_UPI_UTILIZATION), links.iter().sum::<f64>() / 8.0);
        assert_close(v(metric::PCM_CORE_C0_RESIDENCY), 0.335);
        assert_close(v(metric::PCM_CORE_C6_RESIDENCY), 0.443);
        assert_close(v(metric::PCM_PACKAGE_WATTS), (71.384 + 86.911) / INTERVAL_S);
        assert_close(v(metric::PCM_DRAM_WATTS), (8.127 + 9.472) / INTERVAL_S);
    }

    #[test]
    fn single_socket_machine_has_no_upi() {
        // PCM prints the UPI block only for server CPUs with 2 or more sockets.
        let s = derive(&fixture_without(|l| l.contains("On_Link_") || l.starts_with("CXL_")));
        assert_eq!(s.values.len(), METRICS.len() - 1);
        let r = reasons(&s);
        assert_eq!(r.len(), 1);
        assert!(r[metric::PCM_UPI_UTILIZATION].starts_with("pcm-sensor-server reports no UPI/QPI links"));
    }

    #[test]
    fn zero_readings_of_unsupported_counters_are_missing_not_zero() {
        let s = derive(&fixture_with(|l| l.starts_with("DRAM_Joules_Consumed"), "0.000"));
        assert_eq!(reasons(&s).keys().copied().collect::<Vec<_>>(), [metric::PCM_DRAM_WATTS]);
        assert!(s.missing[0].reason.starts_with("pcm-sensor-server reports no DRAM energy"));
        assert!(s.values.contains_key(metric::PCM_PACKAGE_WATTS));

        let s = derive(&fixture_with(|l| l.starts_with("DRAM_Reads") || l.starts_with("DRAM_Writes"), "0"));
        let r = reasons(&s);
        assert_eq!(r.len(), 2);
        assert!(r[metric::PCM_MEMORY_READ_BYTES_PER_SECOND].starts_with("pcm-sensor-server reports no DRAM traffic"));
        assert!(r[metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND].starts_with("pcm-sensor-server reports no DRAM traffic"));

        // Writes alone at zero is a real reading.
        let s = derive(&fixture_with(|l| l.starts_with("DRAM_Writes"), "0"));
        assert!(s.missing.is_empty());
        assert_eq!(s.values[metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND], 0.0);

        let s = derive(&fixture_with(|l| l.starts_with("L3_Cache_Occupancy"), "0"));
        assert!(reasons(&s)[metric::PCM_L3_OCCUPANCY_BYTES].contains("RDT cache monitoring unavailable"));

        let s = derive(&fixture_with(|l| l.starts_with("L3_Cache_Hits") || l.starts_with("L3_Cache_Misses"), "0"));
        assert!(reasons(&s)[metric::PCM_L3_HIT_RATIO].starts_with("pcm-sensor-server reports no L3 cache hits"));

        let s = derive(&fixture_with(|l| l.starts_with("Utilization_"), "0.000"));
        assert!(reasons(&s)[metric::PCM_UPI_UTILIZATION].starts_with("pcm-sensor-server reports no UPI/QPI link"));

        let s = derive(&fixture_with(|l| l.starts_with("Package_Joules"), "-1.000"));
        assert_eq!(reasons(&s)[metric::PCM_PACKAGE_WATTS], "pcm-sensor-server reports no package energy");
    }

    #[test]
    fn c6_without_a_counter_is_missing_but_a_zero_second_is_zero() {
        let index6 = |l: &str| l.contains("index=\"6\"") && l.contains("source=\"core\"");
        let s = derive(&fixture_with(index6, "0"));
        assert!(
            reasons(&s)[metric::PCM_CORE_C6_RESIDENCY].starts_with("pcm-sensor-server reports no core C6 residency")
        );
        assert!(s.values.contains_key(metric::PCM_CORE_C0_RESIDENCY));

        // A busy second: no C6 this interval, but the counter exists.
        let s = derive(&fixture_with(|l| index6(l) && l.starts_with("CStateResidency"), "0.000"));
        assert_eq!(s.values[metric::PCM_CORE_C6_RESIDENCY], 0.0);
        assert!(s.missing.is_empty());
    }

    #[test]
    fn interval_and_thread_level_odds() {
        let s = derive(&fixture_without(|l| l.starts_with("Measurement_Interval_in_us")));
        let r = reasons(&s);
        for name in [
            metric::PCM_MEMORY_READ_BYTES_PER_SECOND,
            metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND,
            metric::PCM_PACKAGE_WATTS,
            metric::PCM_DRAM_WATTS,
        ] {
            assert_eq!(r[name], "pcm-sensor-server reports no measurement interval");
        }
        assert_eq!(s.values.len(), 5, "ratios and gauges need no interval");

        // One thread's invalid cache-monitoring read (u64::MAX KB) is left out, not summed.
        let s = derive(&fixture_with(
            |l| l.starts_with("L3_Cache_Occupancy{socket=\"0\",core=\"0\",thread=\"0\""),
            "18446744073709551615",
        ));
        assert_close(s.values[metric::PCM_L3_OCCUPANCY_BYTES], (4960.0 - 1184.0) * 1024.0);

        // nan in a joules line of one socket leaves the other socket.
        let s = derive(&fixture_with(|l| l.starts_with("Package_Joules_Consumed{socket=\"0\""), "-nan"));
        assert_close(s.values[metric::PCM_PACKAGE_WATTS], 86.911 / INTERVAL_S);

        let everything_missing = derive(&exposition::parse("unrelated 1\n").unwrap());
        assert!(everything_missing.values.is_empty());
        assert_eq!(everything_missing.missing.len(), METRICS.len());
    }

    #[test]
    fn reads_the_cpu_vendor() {
        let intel =
            "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n";
        assert_eq!(parse_cpu_vendor(intel), Some("GenuineIntel"));
        assert_eq!(parse_cpu_vendor("vendor_id\t: AuthenticAMD\n"), Some("AuthenticAMD"));
        assert_eq!(parse_cpu_vendor("processor\t: 0\nCPU implementer\t: 0x41\n"), None);
        assert_eq!(parse_cpu_vendor("vendor_id\t:\n"), None);
    }

    #[test]
    fn parses_urls() {
        let t = parse_target("http://127.0.0.1:9738", Duration::from_secs(1), &crate::Limits::default()).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("127.0.0.1", 9738, "/persecond/1"));
        assert_eq!(t.authority, "127.0.0.1:9738");
        let t = parse_target("http://[::1]:9000/pcm/", Duration::from_secs(5), &crate::Limits::default()).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.path.as_str()), ("::1", 9000, "/pcm/persecond/5"));
        assert_eq!(
            parse_target("http://pcm", Duration::from_secs(100), &crate::Limits::default()).unwrap().path,
            "/persecond/30"
        );
        assert_eq!(parse_target("http://pcm", Duration::from_millis(10), &crate::Limits::default()).unwrap().port, 80);
        assert_eq!(
            parse_target("localhost:1234", Duration::from_secs(1), &crate::Limits::default()).unwrap().port,
            1234
        );
        assert!(
            parse_target("https://localhost:9738", Duration::from_secs(1), &crate::Limits::default())
                .unwrap_err()
                .contains("https")
        );
        assert!(parse_target("http://", Duration::from_secs(1), &crate::Limits::default()).is_err());
        assert!(parse_target("not a url", Duration::from_secs(1), &crate::Limits::default()).is_err());
    }

    #[test]
    fn assess_covers_every_state() {
        let t0 = Instant::now();
        let stale_after = Duration::from_secs(3);
        let x = Arc::new(fixture());
        let url = "http://127.0.0.1:9738";
        let fresh = Some((t0, Arc::clone(&x)));
        let refused = || Some("Connection refused (os error 111)".to_owned());

        assert!(assess(fresh.clone(), None, t0 + stale_after, stale_after, true, url).is_ok());
        assert!(assess(fresh.clone(), refused(), t0, stale_after, false, url).is_ok(), "one failed poll is tolerated");
        let late = t0 + stale_after + Duration::from_millis(1);
        assert_eq!(
            assess(fresh.clone(), refused(), late, stale_after, false, url).unwrap_err(),
            "pcm-sensor-server stopped answering (http://127.0.0.1:9738: Connection refused (os error 111))"
        );
        assert_eq!(assess(fresh, None, late, stale_after, true, url).unwrap_err(), STOPPED_REASON);
        assert!(assess(None, None, t0, stale_after, false, url).unwrap_err().starts_with(WAITING_PREFIX));
        assert_eq!(assess(None, refused(), t0, stale_after, false, url).unwrap_err(), NO_MSR_REASON);
        assert_eq!(
            assess(None, refused(), t0, stale_after, true, url).unwrap_err(),
            "no pcm-sensor-server at http://127.0.0.1:9738: Connection refused (os error 111)"
        );
    }

    fn assert_all_missing(sample: &Sample, reason: impl Fn(&str) -> bool) {
        assert!(sample.values.is_empty(), "{:?}", sample.values);
        assert_eq!(sample.missing.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), METRICS);
        for m in &sample.missing {
            assert!(reason(&m.reason), "{}: {}", m.name, m.reason);
        }
    }

    #[test]
    fn no_url_means_disabled_and_needs_no_runtime() {
        for url in [None, Some(String::new()), Some("  ".to_owned())] {
            let mut c = spawn_on(url, Duration::from_secs(1), INTEL_WITH_MSR);
            assert!(matches!(c.mode, Mode::Off(_)));
            assert_all_missing(&c.sample(Instant::now()), |r| r == DISABLED_REASON);
        }
    }

    #[test]
    fn outside_a_runtime_or_with_a_bad_url_nothing_is_polled() {
        let mut c = spawn_on(Some("http://127.0.0.1:1".into()), Duration::from_secs(1), INTEL_WITH_MSR);
        assert_all_missing(&c.sample(Instant::now()), |r| r.contains("outside a tokio runtime"));
        let mut c = spawn_on(Some("https://localhost".into()), Duration::from_secs(1), INTEL_WITH_MSR);
        assert_all_missing(&c.sample(Instant::now()), |r| r.starts_with("invalid --pcm-url https://localhost"));
    }

    /// A stand-in for pcm-sensor-server: it answers `/persecond/N` with `body`, and, like
    /// the real server, only when the request carries a header named exactly `Accept`
    /// (case-sensitive) asking for Prometheus text; otherwise 406.
    struct FakeServer {
        addr: SocketAddr,
        requests: Arc<AtomicUsize>,
        task: JoinHandle<()>,
    }

    impl FakeServer {
        async fn start(body: &'static str, answer_delay: Duration) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&requests);
            let task = tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let counter = Arc::clone(&counter);
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(answer_delay).await;
                        let head = String::from_utf8_lossy(&head);
                        let prometheus = head.lines().any(|l| {
                            l.split_once(':').is_some_and(|(name, value)| {
                                name == "Accept" && value.replace(' ', "") == "text/plain;version=0.0.4"
                            })
                        });
                        let (status, content_type, body) = if !head.starts_with("GET /persecond/") {
                            ("404 Not Found", "text/plain", "404 Unknown path.")
                        } else if prometheus {
                            ("200 OK", "text/plain; version=0.0.4", body)
                        } else {
                            ("406 Not Acceptable", "text/plain", "406 Not Acceptable.")
                        };
                        let response = format!(
                            "HTTP/1.1 {status}\r\nServer: PCMWebServer\r\nContent-Type: {content_type}\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    });
                }
            });
            Self { addr, requests, task }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }
    }

    /// Samples until `done` holds, for at most 5 s.
    async fn sample_until(c: &mut PcmCollector, done: impl Fn(&Sample) -> bool) -> Sample {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = c.sample(Instant::now());
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// True once the first poll has finished, whatever its outcome.
    fn settled(s: &Sample) -> bool {
        s.missing.first().is_none_or(|m| !m.reason.starts_with(WAITING_PREFIX))
    }

    async fn closed_port() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn polls_a_local_server_and_notices_when_it_stops() {
        let server = FakeServer::start(PERSECOND, Duration::ZERO).await;
        let interval = Duration::from_millis(50);
        let mut c = spawn_on(Some(server.url()), interval, INTEL_WITH_MSR);

        let s = sample_until(&mut c, |s| !s.values.is_empty()).await;
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(s.values, derive(&fixture()).values);
        assert!(server.requests.load(Ordering::SeqCst) >= 1);

        server.task.abort();
        let s = sample_until(&mut c, |s| s.values.is_empty()).await;
        assert_all_missing(&s, |r| r.starts_with(STOPPED_REASON));
    }

    #[tokio::test]
    async fn without_msr_access_a_reachable_server_still_counts() {
        let server = FakeServer::start(PERSECOND, Duration::ZERO).await;
        let mut c = spawn_on(Some(server.url()), Duration::from_millis(50), INTEL_WITHOUT_MSR);
        let s = sample_until(&mut c, |s| !s.values.is_empty()).await;
        assert_eq!(s.values.len(), METRICS.len());
    }

    #[tokio::test]
    async fn unreachable_server_is_missing_with_the_error_or_the_msr_reason() {
        let url = closed_port().await;
        let mut c = spawn_on(Some(url.clone()), Duration::from_millis(50), INTEL_WITH_MSR);
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| {
            r.starts_with(&format!("no pcm-sensor-server at {url}: ")) && r.len() > url.len() + 30
        });

        let mut c = spawn_on(Some(url), Duration::from_millis(50), INTEL_WITHOUT_MSR);
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| r == NO_MSR_REASON);
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_in_time_is_a_timeout() {
        let server = FakeServer::start(PERSECOND, Duration::from_secs(30)).await;
        let mut c = spawn_on(Some(server.url()), Duration::from_millis(50), INTEL_WITH_MSR);
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| r.ends_with("no answer within 500 ms"));
    }

    #[tokio::test]
    async fn a_server_that_answers_something_else_is_reported() {
        let server = FakeServer::start("<!DOCTYPE html>\n<html lang=\"en\">\n", Duration::ZERO).await;
        let mut c = spawn_on(Some(server.url()), Duration::from_millis(50), INTEL_WITH_MSR);
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| r.contains("not a pcm-sensor-server answer"));

        // A path the server does not know.
        let server = FakeServer::start(PERSECOND, Duration::ZERO).await;
        let url = format!("{}/elsewhere", server.url());
        let mut c = spawn_on(Some(url), Duration::from_millis(50), INTEL_WITH_MSR);
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| r.ends_with("answered HTTP 404 Not Found"));
    }

    #[tokio::test]
    async fn a_non_intel_cpu_is_never_polled() {
        let server = FakeServer::start(PERSECOND, Duration::ZERO).await;
        let amd = HostInfo { vendor: CpuVendor::Other("AuthenticAMD".into()), msr_device: true };
        let mut c = spawn_on(Some(server.url()), Duration::from_millis(20), amd);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_all_missing(&c.sample(Instant::now()), |r| r == "not an Intel CPU (AuthenticAMD)");
        assert_eq!(server.requests.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn this_machine_with_a_closed_port_reports_every_metric_missing() {
        let mut c =
            PcmCollector::spawn(Some(closed_port().await), Duration::from_millis(50), &crate::Limits::default());
        let s = sample_until(&mut c, settled).await;
        assert_all_missing(&s, |r| !r.is_empty());
    }

    #[tokio::test]
    async fn each_reason_is_logged_once() {
        let mut c = spawn_on(None, Duration::from_secs(1), INTEL_WITH_MSR);
        for _ in 0..5 {
            c.sample(Instant::now());
        }
        assert_eq!(c.logged.len(), 1);

        let url = closed_port().await;
        let unknown = HostInfo { vendor: CpuVendor::Unknown, msr_device: true };
        let mut c = spawn_on(Some(url.clone()), Duration::from_millis(50), unknown);
        sample_until(&mut c, settled).await;
        let logged = c.logged.len();
        for _ in 0..5 {
            c.sample(Instant::now());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(c.logged.len(), logged, "{:?}", c.logged);
        assert!(c.logged.iter().any(|r| r.starts_with(&format!("no pcm-sensor-server at {url}"))), "{:?}", c.logged);
    }
}
