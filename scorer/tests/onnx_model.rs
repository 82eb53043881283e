//! The committed ONNX model in the scorer: parity with sklearn, refusal of broken or
//! unmappable files, and hot reload through the real gRPC server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fitsched_proto::ModelInfoRequest;
use fitsched_proto::scorer_client::ScorerClient;
use fitsched_scorer::model::Model;
use fitsched_scorer::onnx::{self, LoadError, OnnxModel};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// ONNX Runtime from the project's venv (the same wheel the demo and the image use).
fn runtime() -> fitsched_e2e::tools::Venv {
    let venv = fitsched_e2e::tools::ensure_venv().expect("tool venv");
    onnx::init_runtime(&venv.onnxruntime_library().expect("onnxruntime library in the venv"))
        .expect("ONNX Runtime loads");
    venv
}

#[test]
#[ignore = "loads ONNX Runtime and scikit-learn from the PyPI venv: cargo xtask test"]
fn ort_matches_sklearn_on_the_parity_vectors() {
    runtime();
    let model = OnnxModel::load(&repo().join("onnx/fitness.onnx")).expect("the committed model loads");
    let parity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("onnx/parity.json")).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(parity["features"].clone()).unwrap();
    assert_eq!(model.features(), names.as_slice(), "parity.json and the model agree on the features");
    let rows: Vec<Vec<f64>> = serde_json::from_value(parity["rows"].clone()).unwrap();
    let expected: Vec<f64> = serde_json::from_value(parity["expected"].clone()).unwrap();
    let got = model.predict(&rows).unwrap();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!((g - e).abs() <= 1e-5, "row {i}: ort {g} vs sklearn {e}");
    }
    assert_eq!(model.describe().kind, "onnx");
}

/// `ModelInfo` leads with the held-out figures: the nested selection rule, then the grouped
/// schemes with the shipped model
/// first within each, baselines scored on the same folds.
#[test]
#[ignore = "loads ONNX Runtime and scikit-learn from the PyPI venv: cargo xtask test"]
fn the_committed_model_reports_its_grouped_validation_first() {
    runtime();
    let d = OnnxModel::load(&repo().join("onnx/fitness.onnx")).expect("the committed model loads").describe();
    let v = &d.validation;
    assert!(!v.is_empty(), "no validation in the committed model");
    // The selection rule scored on outer folds leads: it estimates what the shipped
    // model's choice is worth, which its own figures on the same folds flatter.
    assert_eq!(
        (v[0].scheme.as_str(), v[0].model.as_str(), v[0].shipped),
        ("nested_leave_one_group_out", "selection_rule", true),
        "{v:?}"
    );
    let logo = v.iter().position(|x| x.scheme == "leave_one_group_out").expect("per-model figures");
    assert!(v[logo].shipped, "the shipped model leads its scheme: {v:?}");
    assert_eq!(
        v.iter().filter(|x| x.shipped).count(),
        v.iter().map(|x| &x.scheme).collect::<std::collections::BTreeSet<_>>().len()
    );
    for baseline in ["mean", "cpu_linear", "heuristic"] {
        assert!(
            v.iter().any(|x| x.model == baseline && x.scheme == "leave_one_group_out"),
            "{baseline} missing: {v:?}"
        );
    }
    assert!(v.iter().all(|x| x.r2.is_finite() && x.folds >= 2 && (x.model == "mean") == x.spearman.is_none()), "{v:?}");
    let grouped = v.iter().position(|x| x.scheme == "shuffled_5fold").unwrap_or(v.len());
    assert!(v[..grouped].iter().all(|x| x.scheme != "shuffled_5fold"), "shuffled folds come after the grouped ones");
    assert!(
        d.summary.contains("selection included") && d.summary.contains("leave one interference group out"),
        "{}",
        d.summary
    );
}

/// One metadata value of the committed model, read with the venv's `onnx` package.
fn onnx_metadata(venv: &fitsched_e2e::tools::Venv, key: &str) -> String {
    let script =
        "import onnx, sys\nm = onnx.load(sys.argv[1])\nprint({p.key: p.value for p in m.metadata_props}[sys.argv[2]])";
    let out = Command::new(venv.python())
        .args(["-c", script])
        .arg(repo().join("onnx/fitness.onnx"))
        .arg(key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Rewrites the committed model's metadata with the venv's `onnx` package.
fn variant(venv: &fitsched_e2e::tools::Venv, out: &Path, python_edit: &str) {
    let script = format!(
        "import json, onnx, sys\nm = onnx.load(sys.argv[1])\nmeta = {{p.key: p.value for p in m.metadata_props}}\n{python_edit}\n\
         del m.metadata_props[:]\nfor k, v in meta.items():\n    p = m.metadata_props.add(); p.key, p.value = k, v\nonnx.save(m, sys.argv[2])\n"
    );
    let status = Command::new(venv.python())
        .args(["-c", &script])
        .arg(repo().join("onnx/fitness.onnx"))
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[ignore = "loads ONNX Runtime and scikit-learn from the PyPI venv: cargo xtask test"]
fn broken_models_are_refused_with_a_reason() {
    let venv = runtime();
    let dir = std::env::temp_dir().join(format!("fitsched-onnx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    std::fs::write(dir.join("garbage.onnx"), b"not a model").unwrap();
    assert!(matches!(OnnxModel::load(&dir.join("garbage.onnx")), Err(LoadError::Invalid { .. })));

    variant(
        &venv,
        &dir.join("unmappable.onnx"),
        "f = json.loads(meta['fitsched.features']); f[0] = 'gpu_temperature'; meta['fitsched.features'] = json.dumps(f)",
    );
    match OnnxModel::load(&dir.join("unmappable.onnx")) {
        Err(LoadError::Unmappable { features, .. }) => assert_eq!(features, vec!["gpu_temperature"]),
        other => panic!("expected Unmappable, got {:?}", other.err()),
    }

    variant(
        &venv,
        &dir.join("drifted.onnx"),
        "p = json.loads(meta['fitsched.parity']); p['expected'][0] += 0.01; meta['fitsched.parity'] = json.dumps(p)",
    );
    assert!(matches!(OnnxModel::load(&dir.join("drifted.onnx")), Err(LoadError::Parity { .. })));

    let err = OnnxModel::load(&dir.join("absent.onnx")).err().unwrap();
    assert!(err.to_string().contains("absent.onnx"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "loads ONNX Runtime and scikit-learn from the PyPI venv: cargo xtask test"]
async fn a_new_model_file_is_swapped_in_and_a_broken_one_is_not() {
    let venv = runtime();
    let dir = std::env::temp_dir().join(format!("fitsched-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let live = dir.join("fitness.onnx");
    std::fs::copy(repo().join("onnx/fitness.onnx"), &live).unwrap();
    variant(&venv, &dir.join("v2.onnx"), "meta['fitsched.model_version'] = 'reload-test-v2'");
    variant(
        &venv,
        &dir.join("unmappable.onnx"),
        "meta['fitsched.features'] = json.dumps(['nope'] + json.loads(meta['fitsched.features'])[1:])",
    );

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", grpc.local_addr().unwrap());
    let args = <fitsched_scorer::Args as clap::Parser>::parse_from([
        "fitsched-scorer",
        "--model",
        live.to_str().unwrap(),
        "--model-poll",
        "50ms",
    ]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fitsched_scorer::serve(args, grpc, http, None, async {
        let _ = stopped.await;
    }));
    let version = || {
        let url = url.clone();
        async move {
            for _ in 0..50 {
                if let Ok(mut c) = ScorerClient::connect(url.clone()).await {
                    return c.model_info(ModelInfoRequest {}).await.unwrap().into_inner().version;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("scorer never answered")
        }
    };
    let first = version().await;
    let kind = onnx_metadata(&venv, "fitsched.model_kind");
    assert!(first.starts_with(&format!("{kind}-")), "{first} is not a {kind} version");

    // Broken files keep the old model...
    std::fs::copy(dir.join("unmappable.onnx"), &live).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(version().await, first, "an unmappable model was swapped in");
    std::fs::write(&live, b"truncated").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(version().await, first, "a corrupt file was swapped in");

    // ...a good one replaces it.
    std::fs::copy(dir.join("v2.onnx"), &live).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while version().await != "reload-test-v2" {
        assert!(Instant::now() < deadline, "the new model was never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}
