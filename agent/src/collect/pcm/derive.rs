//! From one `/persecond/N` answer to the PCM_* metrics: pure, tested on the committed
//! sample.

use fitsched_proto::metric;
use fitsched_runtime::exposition::Exposition;

use super::METRICS;
use crate::collect::Sample;

pub(super) const SYSTEM_CORE: [(&str, Option<&str>); 2] = [("aggregate", Some("system")), ("source", Some("core"))];
pub(super) const SOCKET_UNCORE: [(&str, Option<&str>); 2] = [("socket", None), ("source", Some("uncore"))];
pub(super) const THREAD_CORE: [(&str, Option<&str>); 4] =
    [("socket", None), ("core", None), ("thread", None), ("source", Some("core"))];
const SYSTEM_UPI: [(&str, Option<&str>); 3] =
    [("aggregate", Some("system")), ("source", Some("uncore")), ("socket", None)];
const UPI_UTILIZATION_PREFIXES: [&str; 2] =
    ["Utilization_Incoming_Data_Traffic_On_Link_", "Utilization_Outgoing_Data_And_Non_Data_Traffic_On_Link_"];
/// PCM prints `u64::MAX` KB for a thread whose cache-monitoring read was invalid; no real
/// occupancy comes near this.
const MAX_PLAUSIBLE_OCCUPANCY_KB: f64 = 1e15;

fn no(thing: &str) -> String {
    format!("pcm-sensor-server reports no {thing}")
}

fn system_cstate(index: &str) -> [(&str, Option<&str>); 3] {
    [("aggregate", Some("system")), ("source", Some("core")), ("index", Some(index))]
}

/// Derives every PCM_* metric from one `/persecond/N` answer; whatever the answer lacks,
/// or reports as a counter that never counted, becomes a missing entry.
///
/// PCM prints 0 rather than omitting a counter the CPU lacks (DRAM energy on many models,
/// cache monitoring without RDT), so an all-zero reading of something that never reads
/// zero on working hardware over a second (DRAM traffic, package energy, L3 lookups) is
/// reported missing.
pub fn derive(x: &Exposition) -> Sample {
    let mut sample = Sample::default();
    let seconds = x.one("Measurement_Interval_in_us", &[]).filter(|us| *us > 0.0).map(|us| us / 1e6);
    let per_second = |sample: &mut Sample, name: &str, total: f64| match seconds {
        Some(s) => sample.set(name, total / s),
        None => sample.set_missing(name, no("measurement interval")),
    };

    // DRAM traffic: bytes through the memory controllers of each socket.
    let reads = x.sum("DRAM_Reads", &SOCKET_UNCORE);
    let writes = x.sum("DRAM_Writes", &SOCKET_UNCORE);
    let dram = [(metric::PCM_MEMORY_READ_BYTES_PER_SECOND, reads), (metric::PCM_MEMORY_WRITE_BYTES_PER_SECOND, writes)];
    if reads.unwrap_or(0.0) == 0.0 && writes.unwrap_or(0.0) == 0.0 {
        let reason = if reads.is_none() && writes.is_none() {
            no("DRAM traffic")
        } else {
            no("DRAM traffic (memory controller counters read zero: unsupported on this CPU)")
        };
        for (name, _) in dram {
            sample.set_missing(name, reason.clone());
        }
    } else {
        for (name, bytes) in dram {
            match bytes {
                Some(bytes) => per_second(&mut sample, name, bytes),
                None => sample.set_missing(name, no("DRAM traffic")),
            }
        }
    }

    // L3 occupancy, in KB per thread; the aggregate lines are plain sums that wrap when
    // one thread is invalid, so the threads are summed here.
    let occupancy: Vec<f64> = x.select("L3_Cache_Occupancy", &THREAD_CORE).collect();
    let valid_kb: Vec<f64> = occupancy
        .iter()
        .copied()
        .filter(|kb| kb.is_finite() && (0.0..MAX_PLAUSIBLE_OCCUPANCY_KB).contains(kb))
        .collect();
    let occupancy_kb: f64 = valid_kb.iter().sum();
    if occupancy.is_empty() {
        sample.set_missing(metric::PCM_L3_OCCUPANCY_BYTES, no("L3 cache occupancy"));
    } else if valid_kb.is_empty() {
        sample.set_missing(metric::PCM_L3_OCCUPANCY_BYTES, no("L3 cache occupancy (cache monitoring data invalid)"));
    } else if occupancy_kb == 0.0 {
        sample.set_missing(
            metric::PCM_L3_OCCUPANCY_BYTES,
            no("L3 cache occupancy (reads zero: RDT cache monitoring unavailable)"),
        );
    } else {
        sample.set(metric::PCM_L3_OCCUPANCY_BYTES, occupancy_kb * 1024.0);
    }

    // L3 hit ratio over the whole machine.
    match (x.one("L3_Cache_Hits", &SYSTEM_CORE), x.one("L3_Cache_Misses", &SYSTEM_CORE)) {
        (Some(hits), Some(misses)) if hits >= 0.0 && misses >= 0.0 && hits + misses > 0.0 => {
            sample.set(metric::PCM_L3_HIT_RATIO, hits / (hits + misses));
        }
        (Some(_), Some(_)) => {
            sample.set_missing(metric::PCM_L3_HIT_RATIO, no("L3 cache hits or misses (both read zero: unsupported)"));
        }
        _ => sample.set_missing(metric::PCM_L3_HIT_RATIO, no("L3 cache hits or misses")),
    }

    // UPI/QPI: every link of every socket, each direction on its own lanes.
    let utilization: Vec<f64> = x
        .samples
        .iter()
        .filter(|s| UPI_UTILIZATION_PREFIXES.iter().any(|p| s.name.starts_with(p)) && s.has_labels(&SYSTEM_UPI))
        .map(|s| s.value)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .collect();
    if utilization.is_empty() {
        sample.set_missing(
            metric::PCM_UPI_UTILIZATION,
            no("UPI/QPI links (it lists them only on server CPUs with 2 or more sockets)"),
        );
    } else if utilization.iter().all(|u| *u == 0.0) {
        sample.set_missing(
            metric::PCM_UPI_UTILIZATION,
            no("UPI/QPI link utilisation (all links read zero: unsupported on this CPU)"),
        );
    } else {
        let mean = utilization.iter().map(|u| u.min(1.0)).sum::<f64>() / utilization.len() as f64;
        sample.set(metric::PCM_UPI_UTILIZATION, mean);
    }

    // Core C-states: the system aggregate is the TSC-weighted mean over all threads.
    match x.one("CStateResidency", &system_cstate("0")) {
        Some(c0) => sample.set(metric::PCM_CORE_C0_RESIDENCY, c0.clamp(0.0, 1.0)),
        None => sample.set_missing(metric::PCM_CORE_C0_RESIDENCY, no("core C0 residency")),
    }
    // The raw line is the residency counter itself, cumulative since boot: zero means the
    // CPU has no C6 counter or never entered C6 (disabled), which a one-interval share of
    // zero cannot tell apart from a busy second.
    let c6 = x.one("CStateResidency", &system_cstate("6"));
    let c6_counter = x.one("RawCStateResidency", &system_cstate("6"));
    match c6 {
        Some(share) if share > 0.0 || c6_counter.is_some_and(|raw| raw > 0.0) => {
            sample.set(metric::PCM_CORE_C6_RESIDENCY, share.clamp(0.0, 1.0));
        }
        Some(_) => sample.set_missing(
            metric::PCM_CORE_C6_RESIDENCY,
            no("core C6 residency (its counter reads zero since boot: C6 unsupported or disabled)"),
        ),
        None => sample.set_missing(metric::PCM_CORE_C6_RESIDENCY, no("core C6 residency")),
    }

    // RAPL energy per socket, joules over the interval. PCM prints -1 when it has no
    // instance, so negative readings count as absent.
    for (name, line, thing) in [
        (metric::PCM_PACKAGE_WATTS, "Package_Joules_Consumed", "package energy"),
        (metric::PCM_DRAM_WATTS, "DRAM_Joules_Consumed", "DRAM energy"),
    ] {
        let joules: Vec<f64> = x.select(line, &SOCKET_UNCORE).filter(|j| j.is_finite() && *j >= 0.0).collect();
        let total: f64 = joules.iter().sum();
        if joules.is_empty() {
            sample.set_missing(name, no(thing));
        } else if total == 0.0 {
            sample.set_missing(name, no(&format!("{thing} (reads zero: RAPL domain unsupported on this CPU)")));
        } else {
            per_second(&mut sample, name, total);
        }
    }
    sample
}

pub(super) fn all_missing(reason: &str) -> Sample {
    let mut sample = Sample::default();
    for name in METRICS {
        sample.set_missing(name, reason);
    }
    sample
}
