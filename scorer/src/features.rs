//! How a model's input features are read from a node window.
//!
//! A feature is named `<metric>_<stat>`, e.g. `cpu_utilization_mean` or
//! `psi_io_some_p95`: the metric as the agent names it (`fitsched_proto::metric`) and one
//! of the window statistics. This module is the one place that knows that mapping.

use fitsched_proto::NodeWindow;

/// The window statistics a feature can name.
pub const STATS: [&str; 4] = ["mean", "max", "p95", "last"];

/// Splits a feature name into its metric and statistic, or `None` when it names no
/// statistic the windows carry.
pub fn split(feature: &str) -> Option<(&str, &str)> {
    let (metric, stat) = feature.rsplit_once('_')?;
    (!metric.is_empty() && STATS.contains(&stat)).then_some((metric, stat))
}

/// The value of `feature` in `window`, or `None` when the window lacks it (the agent
/// reported it missing, or never measured it).
pub fn value(window: &NodeWindow, feature: &str) -> Option<f64> {
    let (metric, stat) = split(feature)?;
    let summary = window.metrics.get(metric)?;
    let v = match stat {
        "mean" => summary.mean,
        "max" => summary.max,
        "p95" => summary.p95,
        _ => summary.last,
    };
    v.is_finite().then_some(v)
}

/// Features a model declares that cannot be read from any window, for a clear refusal at
/// load time.
pub fn unmappable<'a>(features: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    features.into_iter().filter(|f| split(f).is_none()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitsched_proto::MetricSummary;

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
}
