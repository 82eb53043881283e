"""Trains fitsched's fitness model from onnx/data/samples.jsonl and exports it to ONNX.

Run through `cargo xtask train`, which provides the venv (scikit-learn, skl2onnx,
onnxruntime from PyPI). Writes, all from the same run:

- onnx/fitness.onnx: RandomForestRegressor exported with skl2onnx; metadata_props carry
  the ordered feature names, the training medians (the fallback for a feature a node
  lacks), the model version, the dataset's SHA-256, the CV metrics and parity vectors.
- onnx/parity.json: inputs and sklearn's outputs, for the scorer's parity test.
- onnx/MODEL_CARD.md: written from the numbers of this run.
"""

import argparse
import hashlib
import json
import os
import statistics
import sys
import time

import numpy as np
from scipy.stats import spearmanr
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_absolute_error, r2_score
from sklearn.model_selection import KFold

HERE = os.path.dirname(os.path.abspath(__file__))
SIZE_BUDGET = 2 * 1024 * 1024
SEED = 20261123
# Facts of the machine, not of its state: constant on one node, meaningless across nodes.
EXCLUDED_METRICS = {"cpu_count", "memory_total_bytes"}
PARITY_ROWS = 32


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                if row.get("schema") != 1:
                    sys.exit(f"{path}:{n}: unknown schema {row.get('schema')}")
                rows.append(row)
    return rows


def labels(rows):
    """Throughput and p99 ratios against the median `none` sample of each session."""
    base = {}
    for session in {r["session"] for r in rows}:
        none = [r["benchmark"] for r in rows if r["session"] == session and r["recipe"]["name"] == "none"]
        if none:
            base[session] = (
                statistics.median(b["requests_per_second"] for b in none),
                statistics.median(b["latency_p99_ms"] for b in none),
            )
    kept, thr, lat, dropped = [], [], [], 0
    for r in rows:
        if r["session"] not in base:
            dropped += 1  # a session without a baseline cannot be normalised
            continue
        rps, p99 = base[r["session"]]
        kept.append(r)
        thr.append(min(1.0, max(0.0, r["benchmark"]["requests_per_second"] / rps)))
        lat.append(r["benchmark"]["latency_p99_ms"] / p99)
    return kept, np.array(thr), np.array(lat), dropped, base


def feature_names(rows):
    """Features present in every row (never filled in) that vary at all."""
    common = set(rows[0]["features"])
    for r in rows[1:]:
        common &= set(r["features"])
    names = []
    for name in sorted(common):
        metric = name.rsplit("_", 1)[0]
        if metric in EXCLUDED_METRICS:
            continue
        values = {r["features"][name] for r in rows}
        if len(values) > 1:
            names.append(name)
    return names


def cross_validate(x, y, make, folds=5):
    pred = np.zeros_like(y)
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=SEED).split(x):
        pred[test] = make().fit(x[train], y[train]).predict(x[test])
    rho = spearmanr(pred, y).statistic
    return {"r2": float(r2_score(y, pred)), "mae": float(mean_absolute_error(y, pred)), "spearman": float(rho)}


def export(model, names, meta, path):
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, len(names)]))], target_opset=17)
    del onx.metadata_props[:]
    for k, v in meta.items():
        p = onx.metadata_props.add()
        p.key, p.value = k, v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    data = onx.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(HERE, "data", "samples.jsonl"))
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--max-depth", type=int, default=8)
    args = ap.parse_args()

    with open(args.data, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    rows, thr, lat, dropped, base = labels(load(args.data))
    if len(rows) < 20:
        sys.exit(f"only {len(rows)} labelled samples in {args.data}; collect more first (cargo xtask collect)")
    names = feature_names(rows)
    x = np.array([[r["features"][n] for n in names] for r in rows], dtype=np.float32)
    medians = {n: float(np.median(x[:, i])) for i, n in enumerate(names)}
    missing_everywhere = sorted({m for r in rows for m in r["missing"]})
    reasons = {m: sorted({r["missing"][m] for r in rows if m in r["missing"]}) for m in missing_everywhere}

    make = lambda: RandomForestRegressor(  # noqa: E731
        n_estimators=args.trees, max_depth=args.max_depth, min_samples_leaf=2, random_state=SEED, n_jobs=1
    )
    cv_thr = cross_validate(x, thr, make)
    cv_lat = cross_validate(x, np.log(lat), make)
    model = make().fit(x, thr)
    importances = sorted(zip(names, model.feature_importances_), key=lambda p: -p[1])

    version = f"rf-{digest[:12]}-{args.trees}x{args.max_depth}"
    rng = np.random.default_rng(SEED)
    parity_x = x[rng.choice(len(x), size=min(PARITY_ROWS, len(x)), replace=False)]
    parity_y = model.predict(parity_x)
    parity = {"features": names, "rows": parity_x.astype(float).tolist(), "expected": parity_y.astype(float).tolist()}
    meta = {
        "fitsched.features": names,
        "fitsched.fallback_medians": medians,
        "fitsched.model_version": version,
        "fitsched.dataset_sha256": digest,
        "fitsched.cv": {"throughput_ratio": cv_thr, "log_latency_ratio": cv_lat, "folds": 5, "samples": len(rows)},
        "fitsched.target": "throughput_ratio: nginx requests/s under the node's conditions / the session's no-interference baseline, clipped to [0, 1]",
        "fitsched.window_seconds": sorted({r["window"]["seconds"] for r in rows}),
        "fitsched.parity": parity,
    }
    onnx_path = os.path.join(args.out, "fitness.onnx")
    size = export(model, names, meta, onnx_path)
    if size > SIZE_BUDGET:
        os.remove(onnx_path)
        sys.exit(f"model is {size} bytes, over the {SIZE_BUDGET} budget: lower --trees or --max-depth")

    # The exported model must agree with sklearn before anything else sees it.
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"features": parity_x})[0].ravel()
    worst = float(np.max(np.abs(got - parity_y)))
    if worst > 1e-5:
        sys.exit(f"onnxruntime disagrees with sklearn by {worst} on the parity rows")
    with open(os.path.join(args.out, "parity.json"), "w") as f:
        json.dump(parity, f)

    recipes = {}
    for r, t in zip(rows, thr):
        recipes.setdefault(r["recipe"]["name"], []).append(t)
    write_card(args.out, locals())
    print(f"{version}: {len(rows)} samples, {len(names)} features, {size} bytes; "
          f"CV R2 {cv_thr['r2']:.3f}, MAE {cv_thr['mae']:.3f}, Spearman {cv_thr['spearman']:.3f}; parity {worst:.2e}")


def write_card(out, v):
    machine = v["rows"][0]["machine"]
    lines = [
        "# Model card: fitsched fitness model",
        "",
        f"Written by `onnx/train.py` from the run that produced `fitness.onnx` (version `{v['version']}`).",
        "",
        "## What it predicts",
        "",
        "The throughput a self-contained nginx + wrk benchmark pod keeps on a node, as a share of what it",
        "gets on the same node without interference (`throughput_ratio`, clipped to [0, 1]), from the node's",
        "window of OS-level measurements taken just before. The scorer uses the prediction as the node's",
        "fitness (higher is better).",
        "",
        "## Data",
        "",
        f"- {len(v['rows'])} samples from `onnx/data/samples.jsonl` (SHA-256 `{v['digest'][:16]}…`; schema in",
        "  `DATASET.md`), " + (f"{v['dropped']} dropped for lack of a session baseline." if v["dropped"] else "none dropped."),
        f"- Collected on {machine['cpus']} vCPUs ({machine['cpu_model']}, {machine['cpu_vendor']}), "
        f"{machine['memory_bytes'] / 2**30:.0f} GiB, kernel {machine['kernel']}, virtualized: {machine['virtualized']}.",
        f"- Sessions and their no-interference baselines (req/s, p99 ms): "
        + ", ".join(f"{s}: {b[0]:.0f}, {b[1]:.3f}" for s, b in sorted(v["base"].items())) + ".",
        f"- Window length during collection: {v['meta']['fitsched.window_seconds']} s (the agent's production default is 20 s).",
        "",
        "Samples and mean throughput ratio per interference recipe:",
        "",
        "| recipe | samples | mean throughput ratio |",
        "|---|---|---|",
    ]
    for name, ts in sorted(v["recipes"].items()):
        lines.append(f"| {name} | {len(ts)} | {statistics.mean(ts):.3f} |")
    lines += [
        "",
        "## Features",
        "",
        f"{len(v['names'])} features, present in every sample and not constant (machine facts such as",
        "`cpu_count` are excluded). A node whose window lacks one gets the training median below (and",
        "`ListNodes` names it as a fallback).",
        "",
        "Not present in this data, so not used (never filled with made-up values):",
        "",
    ]
    for m, rs in v["reasons"].items():
        lines.append(f"- `{m}`: {'; '.join(rs)}")
    lines += ["", "Importance (impurity-based) of the top 15 features:", "", "| feature | importance |", "|---|---|"]
    for n, imp in v["importances"][:15]:
        lines.append(f"| `{n}` | {imp:.3f} |")
    cv, lat = v["cv_thr"], v["cv_lat"]
    lines += [
        "",
        "## Quality (5-fold cross-validation, shuffled, seed fixed)",
        "",
        "| target | R² | MAE | Spearman ρ |",
        "|---|---|---|---|",
        f"| throughput ratio (the fitness) | {cv['r2']:.3f} | {cv['mae']:.3f} | {cv['spearman']:.3f} |",
        f"| log p99-latency ratio (second target, not exported) | {lat['r2']:.3f} | {lat['mae']:.3f} | {lat['spearman']:.3f} |",
        "",
        "## Model",
        "",
        f"RandomForestRegressor, {v['args'].trees} trees, max depth {v['args'].max_depth}, min 2 samples per leaf,",
        f"exported with skl2onnx (opset 17): {v['size']} bytes (budget {SIZE_BUDGET}). onnxruntime reproduces",
        f"sklearn on {len(v['parity_y'])} parity rows within {v['worst']:.1e}.",
        "",
        "## Limits",
        "",
        "- One machine, one VM, two cores: the interference and the benchmark share the same CPUs, and",
        "  the model has never seen another node size, a hardware counter or a Kubernetes pod's cgroup.",
        "  On bare-metal nodes its hardware features would be absent from the model, not wrong.",
        "- Collected with 10-s windows; production windows are 20 s, whose means are steadier.",
        "- Retrain on data from the target cluster (`cargo xtask collect` on a node, then `cargo xtask train`).",
        "",
    ]
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
