//! Models turn a row of named features into a fitness in [0, 1].
//!
//! The scorer holds one [`Model`] at a time. Without an ONNX model it runs the
//! [`Heuristic`], documented below and reported as such by `ModelInfo`.

use std::time::SystemTime;

use fitsched_proto::{NodeWindow, metric};

use fitsched_proto::features;

/// What `ModelInfo` reports about a model.
#[derive(Debug, Clone)]
pub struct Description {
    pub kind: &'static str,
    pub version: String,
    pub source: String,
    pub loaded_at: SystemTime,
    pub summary: String,
    /// Held-out scores from training, grouped schemes first (empty when unknown).
    pub validation: Vec<fitsched_proto::Validation>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("row {row} has {got} values, the model reads {want} features")]
    RowWidth { row: usize, got: usize, want: usize },
    #[error("row {row}, feature {feature}: value {value} is not a finite number")]
    NotFinite { row: usize, feature: String, value: f64 },
    #[error("model runtime: {0}")]
    Runtime(String),
}

/// A fitness model: ordered input features and a batch prediction.
pub trait Model: Send + Sync {
    fn describe(&self) -> Description;
    /// The ordered feature names the model reads; each row passed to [`Model::predict`]
    /// holds one value per feature in this order.
    fn features(&self) -> &[String];
    /// The value used for a feature a node's window lacks (the documented fallback).
    fn fallback(&self, feature: usize) -> f64;
    /// Fitness in [0, 1] for each row.
    fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError>;
}

/// A model's input row for one window, and the features that fell back because the
/// window lacked them.
pub fn row_for(model: &dyn Model, window: &NodeWindow) -> (Vec<f64>, Vec<String>) {
    row_from(model, |m| window.metrics.get(m))
}

/// [`row_for`] over a window's metrics by name, in whatever form they are kept.
pub fn row_from<'a>(
    model: &dyn Model,
    metrics: impl Fn(&str) -> Option<&'a fitsched_proto::MetricSummary>,
) -> (Vec<f64>, Vec<String>) {
    let mut fallbacks = Vec::new();
    let row = model
        .features()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            features::value_in(&metrics, f).unwrap_or_else(|| {
                fallbacks.push(f.clone());
                model.fallback(i)
            })
        })
        .collect();
    (row, fallbacks)
}

/// Checks every row has the model's width and only finite values.
pub fn check_rows(model: &dyn Model, rows: &[Vec<f64>]) -> Result<(), ModelError> {
    let want = model.features().len();
    for (i, row) in rows.iter().enumerate() {
        if row.len() != want {
            return Err(ModelError::RowWidth { row: i, got: row.len(), want });
        }
        if let Some((j, v)) = row.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ModelError::NotFinite { row: i, feature: model.features()[j].clone(), value: *v });
        }
    }
    Ok(())
}

/// The model used when no ONNX model is loaded: a weighted sum of three "goodness"
/// terms, each in [0, 1]:
///
/// - CPU headroom: `1 - cpu_utilization_mean` (weight 0.35)
/// - memory headroom: `memory_available_ratio_mean` (weight 0.35)
/// - calm: `1 - min(1, 4 × max(psi_cpu_some_mean, psi_memory_some_mean, psi_io_some_mean))`
///   (weight 0.30): a node whose tasks stall 25 % of the time or more gets no credit.
///
/// A feature a window lacks falls back to the value that puts its term at 0.5, neither
/// good nor bad: 0.5 for CPU utilisation and available memory, 0.125 for a PSI share.
///
/// ```
/// use fitsched_scorer::model::{Heuristic, Model};
/// let idle = vec![0.0, 1.0, 0.0, 0.0, 0.0];
/// let swamped = vec![1.0, 0.0, 0.5, 0.5, 0.5];
/// assert_eq!(Heuristic::new().predict(&[idle, swamped]).unwrap(), vec![1.0, 0.0]);
/// ```
pub struct Heuristic {
    features: Vec<String>,
    loaded_at: SystemTime,
}

const HEURISTIC_FEATURES: [(&str, f64); 5] = [
    (metric::CPU_UTILIZATION, 0.5),
    (metric::MEMORY_AVAILABLE_RATIO, 0.5),
    (metric::PSI_CPU_SOME, 0.125),
    (metric::PSI_MEMORY_SOME, 0.125),
    (metric::PSI_IO_SOME, 0.125),
];

impl Heuristic {
    pub fn new() -> Self {
        Self {
            features: HEURISTIC_FEATURES.iter().map(|(m, _)| format!("{m}_mean")).collect(),
            loaded_at: SystemTime::now(),
        }
    }
}

impl Default for Heuristic {
    fn default() -> Self {
        Self::new()
    }
}

impl Model for Heuristic {
    fn describe(&self) -> Description {
        Description {
            kind: "heuristic",
            version: "heuristic-v1".into(),
            source: "builtin".into(),
            loaded_at: self.loaded_at,
            summary: "no ONNX model loaded: fitness = 0.35 x CPU headroom + 0.35 x memory headroom + \
                      0.30 x calm (1 - 4 x worst PSI some share), each clamped to [0, 1]"
                .into(),
            validation: Vec::new(),
        }
    }

    fn features(&self) -> &[String] {
        &self.features
    }

    fn fallback(&self, feature: usize) -> f64 {
        HEURISTIC_FEATURES[feature].1
    }

    fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        check_rows(self, rows)?;
        Ok(rows
            .iter()
            .map(|r| {
                let cpu_headroom = (1.0 - r[0]).clamp(0.0, 1.0);
                let mem_headroom = r[1].clamp(0.0, 1.0);
                let worst_psi = r[2].max(r[3]).max(r[4]);
                let calm = (1.0 - 4.0 * worst_psi).clamp(0.0, 1.0);
                (0.35 * cpu_headroom + 0.35 * mem_headroom + 0.30 * calm).clamp(0.0, 1.0)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitsched_proto::MetricSummary;
    use proptest::prelude::*;

    #[test]
    fn missing_features_fall_back_to_neutral_terms() {
        let h = Heuristic::new();
        let (row, fallbacks) = row_for(&h, &NodeWindow::default());
        assert_eq!(fallbacks.len(), 5);
        let f = h.predict(&[row]).unwrap()[0];
        assert!((f - 0.5).abs() < 1e-12, "all-neutral row gives 0.5, got {f}");
    }

    #[test]
    fn reads_present_features_by_name() {
        let h = Heuristic::new();
        let mut w = NodeWindow::default();
        w.metrics.insert(metric::CPU_UTILIZATION.into(), MetricSummary { mean: 0.8, ..Default::default() });
        let (row, fallbacks) = row_for(&h, &w);
        assert_eq!(row[0], 0.8);
        assert!(!fallbacks.contains(&"cpu_utilization_mean".to_string()));
    }

    #[test]
    fn refuses_bad_rows() {
        let h = Heuristic::new();
        assert!(matches!(h.predict(&[vec![0.1]]), Err(ModelError::RowWidth { .. })));
        assert!(matches!(h.predict(&[vec![f64::NAN, 0.0, 0.0, 0.0, 0.0]]), Err(ModelError::NotFinite { .. })));
    }

    proptest! {
        #[test]
        fn fitness_stays_in_unit_range(row in proptest::collection::vec(-10.0f64..10.0, 5)) {
            let f = Heuristic::new().predict(&[row]).unwrap()[0];
            prop_assert!((0.0..=1.0).contains(&f));
        }

        #[test]
        fn more_cpu_load_never_helps(a in 0.0f64..1.0, b in 0.0f64..1.0, mem in 0.0f64..1.0) {
            let h = Heuristic::new();
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            let f = h.predict(&[vec![lo, mem, 0.0, 0.0, 0.0], vec![hi, mem, 0.0, 0.0, 0.0]]).unwrap();
            prop_assert!(f[0] >= f[1]);
        }
    }
}
