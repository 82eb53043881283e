//! A fitness model exported to ONNX (by `onnx/train.py`), run by ONNX Runtime through
//! `ort`. The runtime library is loaded at start from `ORT_DYLIB_PATH` (the onnxruntime
//! wheel's `libonnxruntime.so`); nothing is downloaded at build time.
//!
//! The model carries what the scorer needs in its `metadata_props`: the ordered feature
//! names (`fitsched.features`), the value a feature takes when a node lacks it
//! (`fitsched.fallbacks`; older models: `fitsched.fallback_medians`), its version, its held-out validation
//! (`fitsched.validation`, reported by `ModelInfo`), and parity vectors
//! (`fitsched.parity`: inputs and sklearn's outputs) that every load checks, so a model
//! the runtime computes differently from its training is never swapped in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use fitsched_proto::Validation;
use ndarray::Array2;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::TensorRef;
use serde_json::Value;

use crate::model::{self, Description, Model, ModelError};
use fitsched_proto::features;

/// The metadata key of the value each feature takes when a node's window lacks it.
const FALLBACKS: &str = "fitsched.fallbacks";

/// How far ONNX Runtime may stray from sklearn on the parity vectors.
pub const PARITY_TOLERANCE: f64 = 1e-5;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("ONNX Runtime is not available: {0}")]
    Runtime(String),
    #[error("cannot read the model {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a usable ONNX model: {why}")]
    Invalid { path: PathBuf, why: String },
    #[error(
        "{path}: the scorer cannot build these features from windows: {features:?} (a feature is `<metric>[_per_core]_<mean|max|p95|last>`, see `fitsched_proto::features`)"
    )]
    Unmappable { path: PathBuf, features: Vec<String> },
    #[error(
        "{path}: ONNX Runtime differs from the training outputs by {worst:e} on the parity vectors (tolerance {PARITY_TOLERANCE:e})"
    )]
    Parity { path: PathBuf, worst: f64 },
}

static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime from `library` unless it is loaded already (one per process), for
/// embedders and tests that know where the library is without `ORT_DYLIB_PATH`.
pub fn init_runtime(library: &Path) -> Result<(), LoadError> {
    ENV.get_or_init(|| create_environment(library.as_os_str().to_owned()))
        .as_ref()
        .map(|_| ())
        .map_err(|e| LoadError::Runtime(e.clone()))
}

/// The process's ONNX Runtime environment, created on first use from `ORT_DYLIB_PATH`.
fn environment() -> Result<&'static Environment, LoadError> {
    ENV.get_or_init(|| {
        let path = std::env::var_os("ORT_DYLIB_PATH").ok_or_else(|| {
            "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so from the onnxruntime wheel \
             (`cargo xtask demo` and the chart's scorer image set it)"
                .to_owned()
        })?;
        create_environment(path)
    })
    .as_ref()
    .map_err(|e| LoadError::Runtime(e.clone()))
}

fn create_environment(path: std::ffi::OsString) -> Result<Environment, String> {
    let shown = Path::new(&path).display();
    if !Path::new(&path).is_file() {
        return Err(format!("the ONNX Runtime library {shown} (ORT_DYLIB_PATH) is not a file"));
    }
    ort::init_from(&path)
        .map_err(|e| format!("loading {shown} (ORT_DYLIB_PATH): {e}"))?
        .with_name("fitsched-scorer")
        .build()
        .map_err(|e| format!("creating the ONNX Runtime environment: {e}"))
}

pub struct OnnxModel {
    session: Mutex<Session>,
    features: Vec<String>,
    fallbacks: Vec<f64>,
    input: String,
    description: Description,
}

impl OnnxModel {
    /// Loads and checks a model file: features mappable, a median for each, parity.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, LoadError> {
        let invalid = |why: String| LoadError::Invalid { path: path.to_owned(), why };
        let env = environment()?;
        // ORT's default intra-op pool (one thread per core): fitness batches come in a
        // burst right after each window boundary, when the cores are otherwise idle.
        let session = Session::builder(env)
            .map_err(|e| invalid(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| invalid(e.to_string()))?;
        let meta = session.metadata().map_err(|e| invalid(e.to_string()))?;
        let json = |key: &str| -> Result<Value, LoadError> {
            let text = meta.custom(key).ok_or_else(|| invalid(format!("no `{key}` in its metadata")))?;
            serde_json::from_str(&text).map_err(|e| invalid(format!("`{key}` is not JSON: {e}")))
        };
        let features: Vec<String> = serde_json::from_value(json("fitsched.features")?)
            .map_err(|e| invalid(format!("`fitsched.features` is not a list of names: {e}")))?;
        if features.is_empty() {
            return Err(invalid("it declares no features".into()));
        }
        let bad: Vec<String> =
            features::unmappable(features.iter().map(String::as_str)).into_iter().map(str::to_owned).collect();
        if !bad.is_empty() {
            return Err(LoadError::Unmappable { path: path.to_owned(), features: bad });
        }
        // `fitsched.fallbacks` (the middle of each feature's training range); models
        // exported before it carry their training medians instead.
        let key = if meta.custom(FALLBACKS).is_some() { FALLBACKS } else { "fitsched.fallback_medians" };
        let values: HashMap<String, f64> =
            serde_json::from_value(json(key)?).map_err(|e| invalid(format!("`{key}` is not a map of numbers: {e}")))?;
        let fallbacks = features
            .iter()
            .map(|f| {
                values
                    .get(f)
                    .copied()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| invalid(format!("no fallback value for {f} in `{key}`")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let [input] = session.inputs() else {
            return Err(invalid(format!("{} inputs, expected one feature matrix", session.inputs().len())));
        };
        let input = input.name().to_owned();
        let version = meta.custom("fitsched.model_version").unwrap_or_else(|| "unversioned".into());
        let summary = meta.custom("fitsched.summary").unwrap_or_else(|| "fitness model (ONNX Runtime via ort)".into());
        let validation = match (json("fitsched.validation"), meta.custom("fitsched.model_kind")) {
            (Ok(v), Some(kind)) => validation(&v, &kind)
                .ok_or_else(|| invalid("`fitsched.validation` is not a validation report".into()))?,
            _ => Vec::new(),
        };
        let parity = json("fitsched.parity").ok();
        drop(meta);
        let model = Self {
            session: Mutex::new(session),
            description: Description {
                kind: "onnx",
                version,
                source: path.display().to_string(),
                loaded_at: SystemTime::now(),
                summary,
                validation,
            },
            features,
            fallbacks,
            input,
        };
        match parity {
            Some(p) => model.check_parity(&p, path)?,
            None => return Err(invalid("no `fitsched.parity` vectors to check it against".into())),
        }
        Ok(model)
    }

    /// Runs the parity rows and compares with the training outputs.
    fn check_parity(&self, parity: &Value, path: &Path) -> Result<(), LoadError> {
        let invalid = |why: &str| LoadError::Invalid { path: path.to_owned(), why: why.to_owned() };
        let rows: Vec<Vec<f64>> =
            serde_json::from_value(parity["rows"].clone()).map_err(|_| invalid("parity rows are not numbers"))?;
        let expected: Vec<f64> = serde_json::from_value(parity["expected"].clone())
            .map_err(|_| invalid("parity outputs are not numbers"))?;
        if rows.is_empty() || rows.len() != expected.len() {
            return Err(invalid("parity rows and outputs do not match up"));
        }
        let got = self.predict(&rows).map_err(|e| invalid(&e.to_string()))?;
        let worst = got.iter().zip(&expected).map(|(g, e)| (g - e).abs()).fold(0.0, f64::max);
        if worst > PARITY_TOLERANCE {
            return Err(LoadError::Parity { path: path.to_owned(), worst });
        }
        Ok(())
    }
}

/// The validation schemes in the order `ModelInfo` lists them: the selection rule scored
/// on outer folds (nested) first, then each model held out by group, then shuffled.
const SCHEMES: [&str; 5] = [
    "nested_leave_one_group_out",
    "nested_leave_one_session_out",
    "leave_one_group_out",
    "leave_one_session_out",
    "shuffled_5fold",
];

/// The nested schemes' one model: the rule that chose the shipped model, which their
/// figures estimate.
const SELECTION_RULE: &str = "selection_rule";

/// `fitsched.validation` (written by `onnx/train.py`) as `ModelInfo` reports it: each
/// scheme's models, the shipped one (`kind`) first. `None` when it has another shape.
fn validation(report: &Value, kind: &str) -> Option<Vec<Validation>> {
    let schemes = report.get("schemes")?.as_object()?;
    let mut out = Vec::new();
    let known = SCHEMES.iter().copied();
    let others = schemes.keys().map(String::as_str).filter(|s| !SCHEMES.contains(s));
    for scheme in known.chain(others.collect::<Vec<_>>()) {
        // A scheme the data could not support (one session) is null.
        let Some(res) = schemes.get(scheme).filter(|r| !r.is_null()) else { continue };
        let folds = u32::try_from(res.get("folds")?.as_u64()?).ok()?;
        let mut models: Vec<(&String, &Value)> = res.get("models")?.as_object()?.iter().collect();
        models.sort_by_key(|(name, _)| name.as_str() != kind);
        for (name, m) in models {
            out.push(Validation {
                scheme: scheme.to_owned(),
                model: name.clone(),
                shipped: name == kind || name == SELECTION_RULE,
                folds,
                r2: m.get("r2")?.as_f64()?,
                mae: m.get("mae")?.as_f64()?,
                spearman: m.get("spearman")?.as_f64(),
            });
        }
    }
    Some(out)
}

impl Model for OnnxModel {
    fn describe(&self) -> Description {
        self.description.clone()
    }

    fn features(&self) -> &[String] {
        &self.features
    }

    fn fallback(&self, feature: usize) -> f64 {
        self.fallbacks[feature]
    }

    fn predict(&self, rows: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        model::check_rows(self, rows)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let width = self.features.len();
        // The model was trained on float32 (as sklearn's trees compare), so this is exact.
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let input =
            Array2::from_shape_vec((rows.len(), width), flat).map_err(|e| ModelError::Runtime(e.to_string()))?;
        let tensor = TensorRef::from_array_view(&input).map_err(|e| ModelError::Runtime(e.to_string()))?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs =
            session.run(ort::inputs![self.input.as_str() => tensor]).map_err(|e| ModelError::Runtime(e.to_string()))?;
        let (_, values) = outputs[0].try_extract_tensor::<f32>().map_err(|e| ModelError::Runtime(e.to_string()))?;
        if values.len() != rows.len() {
            return Err(ModelError::Runtime(format!("{} outputs for {} rows", values.len(), rows.len())));
        }
        Ok(values.iter().map(|&v| f64::from(v).clamp(0.0, 1.0)).collect())
    }
}
