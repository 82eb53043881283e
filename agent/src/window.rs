//! Window aggregation: per-tick samples in, one `NodeWindow` per wall-clock-aligned
//! window out.
//!
//! Pure and deterministic given the timestamps it is fed, so it is tested without
//! clocks. A window closes when the first sample of a later window arrives, which with
//! a 1 s tick means about one tick after its end.

use std::collections::BTreeMap;
use std::time::Duration;

use fitsched_proto::{MetricSummary, Missing, NodeWindow};

use crate::collect::Sample;
use crate::telemetry;

/// An id for one agent process (and one simulated node within it), so the scorer can
/// tell a restarted agent, whose sequence starts again at 1, from a duplicate.
pub fn new_agent_id(salt: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let pid = u64::from(std::process::id());
    format!("{:016x}", crate::rng::mix(pid ^ nanos ^ crate::rng::mix(salt)))
}

#[derive(Debug, Default)]
struct OpenWindow {
    start_ms: i64,
    samples: u32,
    values: BTreeMap<String, Vec<f64>>,
    missing: BTreeMap<String, String>,
}

/// Turns the samples of one node into windows.
#[derive(Debug)]
pub struct WindowAggregator {
    node_name: String,
    agent_id: String,
    window_ms: i64,
    samples_expected: u32,
    next_sequence: u64,
    open: Option<OpenWindow>,
    invalid_values: u64,
}

impl WindowAggregator {
    /// `window` is clamped to at least 1 ms and `tick` to at least 1 ms; `Args::validate`
    /// rejects such values before they get here.
    pub fn new(node_name: impl Into<String>, agent_id: impl Into<String>, window: Duration, tick: Duration) -> Self {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let tick_ms = i64::try_from(tick.as_millis()).unwrap_or(i64::MAX).max(1);
        Self {
            node_name: node_name.into(),
            agent_id: agent_id.into(),
            window_ms,
            samples_expected: u32::try_from(window_ms / tick_ms).unwrap_or(u32::MAX),
            next_sequence: 1,
            open: None,
            invalid_values: 0,
        }
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Samples a full window holds.
    pub fn samples_expected(&self) -> u32 {
        self.samples_expected
    }

    /// Start of the window containing `at_ms`: the previous multiple of the window length.
    pub fn window_start(&self, at_ms: i64) -> i64 {
        at_ms.div_euclid(self.window_ms) * self.window_ms
    }

    /// Non-finite values dropped so far.
    #[cfg(test)]
    pub fn invalid_values(&self) -> u64 {
        self.invalid_values
    }

    /// Sequence of the last window handed out (0 before the first).
    #[cfg(test)]
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }

    /// Adds the sample taken at `at_unix_ms`; returns the previous window if this sample
    /// starts a new one.
    ///
    /// A sample from an earlier window than the open one (the wall clock was stepped
    /// back) also closes the open window rather than being dropped, so a clock
    /// correction costs one short window instead of silence until the clock catches up.
    pub fn push(&mut self, at_unix_ms: i64, sample: &Sample) -> Option<NodeWindow> {
        let start = self.window_start(at_unix_ms);
        let closed = match &self.open {
            Some(open) if open.start_ms != start => self.flush(),
            _ => None,
        };
        let open = self.open.get_or_insert_with(|| OpenWindow { start_ms: start, ..Default::default() });
        open.samples = open.samples.saturating_add(1);
        for (name, &value) in &sample.values {
            if value.is_finite() {
                open.values.entry(name.clone()).or_default().push(value);
            } else {
                self.invalid_values += 1;
                metrics::counter!(telemetry::SAMPLES_INVALID, "node" => self.node_name.clone(), "metric" => name.clone())
                    .increment(1);
            }
        }
        for m in &sample.missing {
            open.missing.entry(m.name.clone()).or_insert_with(|| m.reason.clone());
        }
        closed
    }

    /// A whole window given rather than folded from samples (replay): the window that
    /// ends at `end_unix_ms`, with the next sequence number, or why the scorer would
    /// refuse it (then no sequence number is used up).
    pub fn replayed(
        &mut self,
        end_unix_ms: i64,
        metrics: BTreeMap<String, MetricSummary>,
        missing: Vec<Missing>,
    ) -> Result<NodeWindow, String> {
        let window = NodeWindow {
            node_name: self.node_name.clone(),
            sequence: self.next_sequence,
            agent_id: self.agent_id.clone(),
            start_unix_ms: end_unix_ms.saturating_sub(self.window_ms),
            end_unix_ms,
            samples: self.samples_expected,
            samples_expected: self.samples_expected,
            metrics: metrics.into_iter().collect(),
            missing,
        };
        fitsched_proto::validate::window(&window)?;
        self.next_sequence += 1;
        Ok(window)
    }

    /// Closes the open window, if any, regardless of time (used on shutdown and by `push`).
    pub fn flush(&mut self) -> Option<NodeWindow> {
        let open = self.open.take()?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        Some(NodeWindow {
            node_name: self.node_name.clone(),
            sequence,
            agent_id: self.agent_id.clone(),
            start_unix_ms: open.start_ms,
            end_unix_ms: open.start_ms.saturating_add(self.window_ms),
            samples: open.samples,
            samples_expected: self.samples_expected,
            metrics: open.values.into_iter().filter_map(|(name, values)| Some((name, summarize(&values)?))).collect(),
            missing: open.missing.into_iter().map(|(name, reason)| Missing { name, reason }).collect(),
        })
    }
}

/// Mean, max, p95 and last of finite values; `None` for no values.
///
/// The p95 interpolates linearly between the two closest ranks (numpy's default): a
/// nearest-rank p95 of a window's 10 or 20 samples is the max or the second largest,
/// so it said nothing the max did not.
pub fn summarize(values: &[f64]) -> Option<MetricSummary> {
    let last = *values.last()?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let (min, max) = (sorted[0], sorted[n - 1]);
    let h = 0.95 * (n - 1) as f64;
    let (lo, hi) = (sorted[h.floor() as usize], sorted[h.ceil() as usize]);
    let p95 = (lo + (h - h.floor()) * (hi - lo)).clamp(lo, hi);
    // Summing can round outside [min, max] (e.g. n copies of the same value); the mean
    // of real numbers cannot.
    let mean = (values.iter().sum::<f64>() / n as f64).clamp(min, max);
    Some(MetricSummary { mean, max, p95, last, samples: u32::try_from(n).unwrap_or(u32::MAX) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::MissingMetric;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000; // a multiple of 20 s

    fn agg() -> WindowAggregator {
        WindowAggregator::new("n1", "a1", Duration::from_secs(20), Duration::from_secs(1))
    }

    fn sample(pairs: &[(&str, f64)]) -> Sample {
        Sample { values: pairs.iter().map(|&(k, v)| (k.to_owned(), v)).collect(), missing: vec![] }
    }

    #[test]
    fn windows_align_to_wall_clock_multiples() {
        let a = agg();
        assert_eq!(a.window_start(T0), T0);
        assert_eq!(a.window_start(T0 + 19_999), T0);
        assert_eq!(a.window_start(T0 + 20_000), T0 + 20_000);
        assert_eq!(a.window_start(T0 + 13_500), T0);
        assert_eq!(a.window_start(-1), -20_000);
    }

    #[test]
    fn twenty_ticks_make_one_window() {
        let mut a = agg();
        for i in 0..20 {
            assert!(a.push(T0 + 500 + i * 1000, &sample(&[("x", i as f64)])).is_none());
        }
        let w = a.push(T0 + 20_500, &sample(&[("x", 100.0)])).unwrap();
        assert_eq!((w.sequence, w.start_unix_ms, w.end_unix_ms), (1, T0, T0 + 20_000));
        assert_eq!((w.samples, w.samples_expected), (20, 20));
        assert_eq!((w.node_name.as_str(), w.agent_id.as_str()), ("n1", "a1"));
        let x = &w.metrics["x"];
        assert_eq!((x.mean, x.max, x.last, x.samples), (9.5, 19.0, 19.0, 20));
        // 95 % of the way from the first to the 20th value: rank 18.05 of 0..19.
        assert!((x.p95 - 18.05).abs() < 1e-9, "{}", x.p95);
        let w2 = a.flush().unwrap();
        assert_eq!((w2.sequence, w2.start_unix_ms, w2.samples), (2, T0 + 20_000, 1));
        assert!(a.flush().is_none());
        assert_eq!(a.last_sequence(), 2);
    }

    #[test]
    fn replayed_windows_take_sequences_only_when_the_scorer_would_take_them() {
        let mut a = agg();
        let s = |v| MetricSummary { mean: v, max: v, p95: v, last: v, samples: 20 };
        let w = a.replayed(T0 + 20_000, [("x".to_owned(), s(1.0))].into(), vec![]).unwrap();
        assert_eq!((w.sequence, w.start_unix_ms, w.end_unix_ms, w.samples), (1, T0, T0 + 20_000, 20));
        assert!(a.replayed(T0 + 40_000, [("x".to_owned(), s(-1.0))].into(), vec![]).is_err());
        assert!(a.replayed(T0 + 40_000, [("x".to_owned(), s(f64::NAN))].into(), vec![]).is_err());
        assert_eq!(a.replayed(T0 + 40_000, BTreeMap::new(), vec![]).unwrap().sequence, 2);
    }

    #[test]
    fn a_skipped_window_produces_no_empty_window() {
        let mut a = agg();
        a.push(T0 + 1_000, &sample(&[("x", 1.0)]));
        let w = a.push(T0 + 65_000, &sample(&[("x", 1.0)])).unwrap();
        assert_eq!(w.start_unix_ms, T0);
        let w = a.flush().unwrap();
        assert_eq!((w.sequence, w.start_unix_ms), (2, T0 + 60_000));
    }

    #[test]
    fn clock_stepping_back_closes_the_window_and_keeps_sequence_increasing() {
        let mut a = agg();
        a.push(T0 + 41_000, &sample(&[("x", 1.0)]));
        let w1 = a.push(T0 + 1_000, &sample(&[("x", 2.0)])).unwrap();
        let w2 = a.flush().unwrap();
        assert_eq!((w1.sequence, w1.start_unix_ms), (1, T0 + 40_000));
        assert_eq!((w2.sequence, w2.start_unix_ms), (2, T0));
    }

    #[test]
    fn non_finite_values_are_dropped_and_counted() {
        let mut a = agg();
        a.push(T0, &sample(&[("x", f64::NAN), ("y", 1.0)]));
        a.push(T0 + 1000, &sample(&[("x", f64::INFINITY), ("y", f64::NEG_INFINITY)]));
        a.push(T0 + 2000, &sample(&[("y", 3.0)]));
        let w = a.flush().unwrap();
        assert_eq!(a.invalid_values(), 3);
        assert!(!w.metrics.contains_key("x"), "a metric with only invalid values is absent");
        let y = &w.metrics["y"];
        assert_eq!((y.samples, y.mean, y.max, y.last), (2, 2.0, 3.0, 3.0));
        assert_eq!(w.samples, 3);
    }

    #[test]
    fn missing_is_a_deduplicated_union() {
        let mut a = agg();
        let with_missing = |names: &[&str]| Sample {
            values: BTreeMap::new(),
            missing: names.iter().map(|n| MissingMetric::new(*n, format!("{n} unavailable"))).collect(),
        };
        a.push(T0, &with_missing(&["psi_cpu_some", "psi_io_some"]));
        a.push(T0 + 1000, &with_missing(&["psi_io_some", "cpu_count"]));
        a.push(T0 + 2000, &with_missing(&[]));
        let w = a.flush().unwrap();
        let names: Vec<_> = w.missing.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["cpu_count", "psi_cpu_some", "psi_io_some"]);
        assert_eq!(w.missing[0].reason, "cpu_count unavailable");
        assert!(w.metrics.is_empty());
    }

    #[test]
    fn summary_of_identical_values_stays_within_bounds() {
        let s = summarize(&[0.1; 7]).unwrap();
        assert_eq!((s.mean, s.max, s.p95, s.last), (0.1, 0.1, 0.1, 0.1));
        assert!(summarize(&[]).is_none());
        assert!((summarize(&[3.0, 1.0, 2.0]).unwrap().p95 - 2.9).abs() < 1e-12);
    }

    #[test]
    fn samples_expected_follows_window_over_tick() {
        let a = WindowAggregator::new("n", "a", Duration::from_secs(20), Duration::from_millis(300));
        let mut a = a;
        a.push(0, &Sample::default());
        assert_eq!(a.flush().unwrap().samples_expected, 66);
    }

    fn value() -> impl Strategy<Value = Option<f64>> {
        prop_oneof![
            6 => (-1e6f64..1e6).prop_map(Some),
            1 => Just(None),
            1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)].prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn windows_are_consistent(
            start in -1_000_000i64..4_000_000_000_000,
            window_ms in 1u64..60_000,
            steps in prop::collection::vec((0i64..5_000, value(), value()), 1..200),
        ) {
            let mut a = WindowAggregator::new("n", "a", Duration::from_millis(window_ms), Duration::from_millis(1));
            let w = window_ms as i64;
            let mut windows = Vec::new();
            // Expected per window start: samples, and finite values per metric.
            let mut expected: BTreeMap<i64, (u32, BTreeMap<&str, Vec<f64>>)> = BTreeMap::new();
            let mut invalid = 0u64;
            let mut t = start;
            for (gap, x, y) in &steps {
                t += gap;
                let mut s = Sample::default();
                let entry = expected.entry(t.div_euclid(w) * w).or_default();
                entry.0 += 1;
                for (name, v) in [("x", x), ("y", y)] {
                    if let Some(v) = *v {
                        s.set(name, v);
                        if v.is_finite() { entry.1.entry(name).or_default().push(v) } else { invalid += 1 }
                    }
                }
                windows.extend(a.push(t, &s));
            }
            windows.extend(a.flush());

            prop_assert_eq!(a.invalid_values(), invalid);
            prop_assert_eq!(windows.len(), expected.len());
            prop_assert_eq!(windows.iter().map(|w| w.samples as usize).sum::<usize>(), steps.len());
            for (i, (win, (start, (samples, values)))) in windows.iter().zip(&expected).enumerate() {
                prop_assert_eq!(win.sequence, i as u64 + 1);
                prop_assert_eq!(win.start_unix_ms, *start);
                prop_assert_eq!(win.start_unix_ms.rem_euclid(w), 0);
                prop_assert_eq!(win.end_unix_ms - win.start_unix_ms, w);
                prop_assert_eq!(win.samples, *samples);
                prop_assert_eq!(win.metrics.len(), values.len());
                for (name, vals) in values {
                    let m = &win.metrics[*name];
                    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    prop_assert!(m.mean.is_finite() && m.p95.is_finite());
                    prop_assert!(min <= m.mean && m.mean <= m.max, "{} {} {}", min, m.mean, m.max);
                    prop_assert!(min <= m.p95 && m.p95 <= m.max);
                    prop_assert_eq!(m.max, max);
                    prop_assert_eq!(m.last, *vals.last().unwrap());
                    prop_assert_eq!(m.samples as usize, vals.len());
                    prop_assert!(m.samples <= win.samples);
                }
            }
        }
    }
}
