//! How a model's input features are read from a node window: the one place that knows
//! the naming, shared by the scorer (serving) and `cargo xtask collect` (training data).
//!
//! A feature is named `<metric>_<stat>`, e.g. `cpu_utilization_mean` or
//! `psi_io_some_p95`: the metric as the agent names it ([`crate::metric`]) and one of
//! the window statistics.
//!
//! A model trained on one node size must score another, so absolute rates also exist per
//! core: `<metric>_per_core_<stat>` is the metric divided by the window's mean
//! [`metric::CPU_COUNT`], for every metric that counts events or bytes per second and for
//! [`metric::PROCS_BLOCKED`]. Shares and ratios (`cpu_utilization`, PSI,
//! `memory_available_ratio`, `load1_per_cpu`) transfer as they are.
//!
//! ```
//! use fitsched_proto::{features, MetricSummary, NodeWindow};
//! let mut w = NodeWindow::default();
//! let s = |v| MetricSummary { mean: v, max: v, p95: v, last: v, samples: 1 };
//! w.metrics.insert("cpu_count".into(), s(4.0));
//! w.metrics.insert("net_rx_bytes_per_second".into(), s(1000.0));
//! assert_eq!(features::value(&w, "net_rx_bytes_per_second_per_core_mean"), Some(250.0));
//! assert_eq!(features::value(&w, "net_rx_bytes_per_second_p95"), Some(1000.0));
//! ```

use std::collections::BTreeMap;

use crate::{MetricSummary, NodeWindow, metric};

/// The window statistics a feature can name.
pub const STATS: [&str; 4] = ["mean", "max", "p95", "last"];

/// The suffix of a metric divided by the node's CPU count.
pub const PER_CORE: &str = "_per_core";

/// Splits a feature name into its metric and statistic, or `None` when it names no
/// statistic the windows carry.
pub fn split(feature: &str) -> Option<(&str, &str)> {
    let (metric, stat) = feature.rsplit_once('_')?;
    (!metric.is_empty() && STATS.contains(&stat)).then_some((metric, stat))
}

/// Whether a metric is an absolute amount that grows with the node, so it also exists
/// per core.
pub fn scales_with_node(metric: &str) -> bool {
    !metric.contains(':')
        && !metric.ends_with(PER_CORE)
        && (metric.ends_with("_per_second") || metric == metric::PROCS_BLOCKED)
}

/// The value of `feature` in `window`, or `None` when the window lacks it (the agent
/// reported it missing, never measured it, or a per-core feature lacks the CPU count).
pub fn value(window: &NodeWindow, feature: &str) -> Option<f64> {
    value_in(|m| window.metrics.get(m), feature)
}

/// [`value`] over any store of a window's metrics, by name (the scorer keeps them in a
/// compact form of its own).
pub fn value_in<'a>(metrics: impl Fn(&str) -> Option<&'a MetricSummary>, feature: &str) -> Option<f64> {
    let (name, stat) = split(feature)?;
    let v = match name.strip_suffix(PER_CORE) {
        Some(base) if scales_with_node(base) => {
            let cores = metrics(metric::CPU_COUNT)?.mean;
            if cores.is_nan() || cores < 1.0 {
                return None;
            }
            stat_of(metrics(base)?, stat) / cores
        }
        _ => stat_of(metrics(name)?, stat),
    };
    v.is_finite().then_some(v)
}

fn stat_of(summary: &MetricSummary, stat: &str) -> f64 {
    match stat {
        "mean" => summary.mean,
        "max" => summary.max,
        "p95" => summary.p95,
        _ => summary.last,
    }
}

/// Every node-level feature `window` holds, by name: each metric's statistics, and the
/// per-core ones where they exist. Per-device metrics (`metric:instance`) are left out,
/// since devices differ between nodes.
pub fn all(window: &NodeWindow) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for name in window.metrics.keys().filter(|n| !n.contains(':')) {
        let mut metrics = vec![name.clone()];
        if scales_with_node(name) {
            metrics.push(format!("{name}{PER_CORE}"));
        }
        for m in metrics {
            for stat in STATS {
                let feature = format!("{m}_{stat}");
                if let Some(v) = value(window, &feature) {
                    out.insert(feature, v);
                }
            }
        }
    }
    out
}

/// Features a model declares that cannot be read from any window, for a clear refusal at
/// load time.
pub fn unmappable<'a>(features: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    features
        .into_iter()
        .filter(|f| match split(f) {
            None => true,
            Some((m, _)) => m.strip_suffix(PER_CORE).is_some_and(|base| !scales_with_node(base)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricSummary;

    #[test]
    fn splits_metric_and_stat() {
        assert_eq!(split("cpu_utilization_mean"), Some(("cpu_utilization", "mean")));
        assert_eq!(split("psi_io_some_p95"), Some(("psi_io_some", "p95")));
        assert_eq!(split("cpu_utilization"), None);
        assert_eq!(split("_mean"), None);
    }

    #[test]
    fn reads_values_and_reports_absent_ones() {
        let mut w = NodeWindow::default();
        w.metrics
            .insert("cpu_utilization".into(), MetricSummary { mean: 0.25, max: 0.5, p95: 0.4, last: 0.3, samples: 5 });
        assert_eq!(value(&w, "cpu_utilization_max"), Some(0.5));
        assert_eq!(value(&w, "cpu_utilization_last"), Some(0.3));
        assert_eq!(value(&w, "memory_available_ratio_mean"), None);
        assert_eq!(unmappable(["cpu_utilization_mean", "bogus"]), vec!["bogus"]);
    }

    #[test]
    fn per_core_features_divide_rates_by_the_cpu_count() {
        let mut w = NodeWindow::default();
        let s = |mean, last| MetricSummary { mean, max: mean, p95: mean, last, samples: 20 };
        w.metrics.insert(metric::PERF_CONTEXT_SWITCHES_PER_SECOND.into(), s(8000.0, 4000.0));
        w.metrics.insert(metric::PROCS_BLOCKED.into(), s(2.0, 0.0));
        w.metrics.insert(metric::CPU_UTILIZATION.into(), s(0.5, 0.5));
        w.metrics.insert("net_rx_bytes_per_second:eth0".into(), s(1.0, 1.0));
        // Without the CPU count there is no per-core value, never a made-up one.
        assert_eq!(value(&w, "perf_context_switches_per_second_per_core_mean"), None);
        w.metrics.insert(metric::CPU_COUNT.into(), s(16.0, 16.0));
        assert_eq!(value(&w, "perf_context_switches_per_second_per_core_mean"), Some(500.0));
        assert_eq!(value(&w, "perf_context_switches_per_second_per_core_last"), Some(250.0));
        assert_eq!(value(&w, "procs_blocked_per_core_mean"), Some(0.125));
        // Shares are not divided: a share of a node is already independent of its size.
        assert_eq!(value(&w, "cpu_utilization_per_core_mean"), None);
        let names: Vec<String> = all(&w).into_keys().collect();
        assert!(names.contains(&"procs_blocked_per_core_p95".to_owned()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("cpu_utilization_per_core") || n.contains(':')), "{names:?}");
        assert_eq!(names.len(), 4 * 4 + 2 * 4, "four metrics, two of them per core too: {names:?}");
        assert_eq!(
            unmappable(["cpu_utilization_per_core_mean", "procs_blocked_per_core_max"]),
            vec!["cpu_utilization_per_core_mean"]
        );
    }
}
