//! Estimates over seeds: a mean with its 95 % interval, and the per-seed values of a
//! metric, alone or paired between two schedulers on the same timelines. The report
//! writes them as text and the plots draw them.

use std::collections::BTreeMap;

use super::Run;
use super::world::Metrics;

/// Mean and the half-width of its 95 % confidence interval (Student's t over seeds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: f64,
    pub n: usize,
}

/// Two-sided 95 % Student t quantiles for 1..=30 degrees of freedom.
const T95: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120,
    2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
];

impl Estimate {
    pub fn of(values: &[f64]) -> Estimate {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        if n < 2 {
            return Estimate { mean, ci95: f64::NAN, n };
        }
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let t = T95[(n - 2).min(T95.len() - 1)];
        Estimate { mean, ci95: t * (var / n as f64).sqrt(), n }
    }

    /// The interval's low end, the mean and the high end.
    pub fn bounds(&self) -> (f64, f64, f64) {
        (self.mean - self.ci95, self.mean, self.mean + self.ci95)
    }

    pub fn show(&self, digits: usize) -> String {
        if !self.mean.is_finite() {
            // No benchmark pod in a run, or a ratio to a p10 of 0: said, not hidden.
            return format!("n/a ({})", self.mean);
        }
        if self.ci95.is_nan() {
            format!("{:.*}", digits, self.mean)
        } else {
            format!("{:.*} ± {:.*}", digits, self.mean, digits, self.ci95)
        }
    }
}

/// A ratio over seeds: the geometric mean of the per-seed ratios and its 95 % interval
/// (Student's t on their logarithms). The plain mean of ratios leans upwards when the
/// denominator is small and noisy, which would flatter a goal stated as a ratio.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RatioEstimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

impl RatioEstimate {
    pub fn of(ratios: &[f64]) -> RatioEstimate {
        let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
        let e = Estimate::of(&logs);
        RatioEstimate { mean: e.mean.exp(), low: (e.mean - e.ci95).exp(), high: (e.mean + e.ci95).exp(), n: e.n }
    }

    pub fn show(&self, digits: usize) -> String {
        if !self.mean.is_finite() || self.mean <= 0.0 {
            return format!("n/a ({})", self.mean);
        }
        if self.low.is_nan() {
            format!("{:.*}×", digits, self.mean)
        } else {
            format!("{:.*}× [{:.*}, {:.*}]", digits, self.mean, digits, self.low, digits, self.high)
        }
    }
}

/// Each seed's runs of one scheduler at one size, by seed.
fn by_seed(runs: &[Run], nodes: usize, scheduler: &str, f: impl Fn(&Metrics) -> f64) -> BTreeMap<u64, Vec<f64>> {
    let mut out: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.nodes == nodes && r.scheduler == scheduler) {
        out.entry(r.seed).or_default().push(f(&r.metrics));
    }
    out
}

/// The per-seed values of one metric of one scheduler at one size: the mean over the
/// seed's repeated runs, so the interval over seeds carries their run-to-run noise.
pub fn per_seed(runs: &[Run], nodes: usize, scheduler: &str, f: impl Fn(&Metrics) -> f64) -> Vec<f64> {
    by_seed(runs, nodes, scheduler, f).values().map(|v| v.iter().sum::<f64>() / v.len() as f64).collect()
}

/// Run-to-run noise: the standard deviation over a seed's repeated runs, averaged over
/// seeds (NaN without repeats).
pub fn run_to_run(runs: &[Run], nodes: usize, scheduler: &str, f: impl Fn(&Metrics) -> f64) -> f64 {
    let sds: Vec<f64> = by_seed(runs, nodes, scheduler, f)
        .values()
        .filter(|v| v.len() > 1)
        .map(|v| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
        })
        .collect();
    if sds.is_empty() { f64::NAN } else { sds.iter().sum::<f64>() / sds.len() as f64 }
}

/// Per seed, `f` of `a` divided by `f` of `b` (paired: the same timeline).
pub fn paired_ratio(runs: &[Run], nodes: usize, a: &str, b: &str, f: impl Fn(&Metrics) -> f64 + Copy) -> Vec<f64> {
    per_seed(runs, nodes, a, f).iter().zip(per_seed(runs, nodes, b, f)).map(|(x, y)| x / y).collect()
}

pub fn paired_diff(runs: &[Run], nodes: usize, a: &str, b: &str, f: impl Fn(&Metrics) -> f64 + Copy) -> Vec<f64> {
    per_seed(runs, nodes, a, f).iter().zip(per_seed(runs, nodes, b, f)).map(|(x, y)| x - y).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_intervals_follow_student() {
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(e.mean, 3.0);
        // sd 1.581, n 5, t(4) 2.776: 2.776 × 1.581 / √5 = 1.963.
        assert!((e.ci95 - 1.963).abs() < 1e-3, "{e:?}");
        assert!(Estimate::of(&[1.0]).ci95.is_nan());
    }

    #[test]
    fn ratios_average_geometrically() {
        // 2× and 0.5× are no gain at all, though their plain mean is 1.25.
        let r = RatioEstimate::of(&[2.0, 0.5]);
        assert!((r.mean - 1.0).abs() < 1e-12, "{r:?}");
        assert!(r.low < 1.0 && r.high > 1.0 && (r.low * r.high - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(RatioEstimate::of(&[1.5]).show(2), "1.50×");
        assert!(RatioEstimate::of(&[0.0, 1.0]).show(2).starts_with("n/a"));
    }
}
