"""onnx/train.py on synthetic datasets whose answer is known: labels, features that
transfer, held-out validation, the choice of the shipped model, the export and the
evaluation split. Run by `cargo xtask test` (pytest in the project venv)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import train  # noqa: E402

GROUPS = ["cpu", "cache", "membw", "hdd", "cpu+cache", "membw+hdd", "udp", "sock", "bench", "cpu+bench"]
BASELINES = 4


def row(session, n, group, cpu, rps, noise_feature, baseline=False):
    comps = [] if baseline else [{"kind": k, "workers": 1} for k in group.split("+")]
    feats = {
        "cpu_utilization_mean": cpu, "cpu_utilization_max": min(1.0, cpu + 0.05),
        "cpu_utilization_p95": cpu, "cpu_utilization_last": cpu,
        "memory_available_ratio_mean": 0.8, "psi_cpu_some_mean": cpu / 4, "psi_memory_some_mean": 0.0,
        "psi_io_some_mean": 0.01, "noise_mean": noise_feature,
        # Absolute rates and machine facts must not be trained on; their per-core form may.
        "net_rx_bytes_per_second_mean": 1e6 * cpu, "net_rx_bytes_per_second_per_core_mean": 5e5 * cpu,
        "cpu_count_mean": 2.0, "memory_total_bytes_mean": 2.0 ** 34,
    }
    return {
        "schema": 2, "session": session, "sample": n, "baseline": baseline,
        "interference": {"group": "none" if baseline else group, "components": comps, "stress_ng": []},
        "machine": {"cpu_model": "test", "cpu_vendor": "test", "cpus": 2, "memory_bytes": 2 ** 34, "kernel": "6", "virtualized": True},
        "window": {"seconds": 20},
        "features": feats, "missing": {"perf_ipc": "no PMU"},
        "benchmark": {"requests_per_second": rps, "latency_p99_ms": 1.0 / max(rps / 1000.0, 0.01)},
        "neighbours": [],
    }


def dataset(path, sessions=3, per_group=3, seed=0):
    """Throughput falls with CPU utilisation, plus noise; `noise_mean` is unrelated."""
    rng = np.random.default_rng(seed)
    rows, n = [], 0
    for s in range(sessions):
        for b in range(BASELINES):
            n += 1
            rows.append(row(1000 + s, n, "none", 0.01, 1000 * (1 + rng.normal(0, 0.01)), rng.random(), baseline=True))
        for g in GROUPS:
            for _ in range(per_group):
                n += 1
                cpu = rng.uniform(0.05, 0.95)
                rows.append(row(1000 + s, n, g, cpu, 1000 * (1 - 0.8 * cpu) * (1 + rng.normal(0, 0.02)), rng.random()))
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return rows


def run(*args):
    return subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "train.py"), *args],
                          capture_output=True, text=True, check=False)


def test_labels_normalise_to_the_median_baseline_and_drop_thin_sessions(tmp_path):
    rows = train.load(str(_write(tmp_path, dataset(tmp_path / "d.jsonl", sessions=2))))
    # A session with one baseline run is dropped, not normalised to a single draw.
    thin = [r for r in rows if r["session"] == 1001 and (not r["is_baseline"] or r["sample"] == min(
        x["sample"] for x in rows if x["session"] == 1001))]
    kept, thr, lat, base, dropped = train.labels([r for r in rows if r["session"] == 1000] + thin, 3)
    assert set(base) == {1000} and dropped == {1001: 1}
    assert all(0.0 <= t <= 1.0 for t in thr)
    assert base[1000]["runs"] == BASELINES


def _write(tmp_path, rows):
    p = tmp_path / "d.jsonl"
    with open(p, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return p


def test_only_transferable_features_are_trained_on(tmp_path):
    rows = dataset(tmp_path / "d.jsonl")
    for r in rows:
        r["is_baseline"], r["group"] = r["baseline"], r["interference"]["group"]
    names = train.feature_names(rows, only_transferable=True)
    assert "net_rx_bytes_per_second_per_core_mean" in names
    assert "net_rx_bytes_per_second_mean" not in names
    assert not any(n.startswith(("cpu_count", "memory_total_bytes")) for n in names)


def test_grouped_validation_ships_the_model_that_holds_out_and_says_so(tmp_path):
    data = tmp_path / "d.jsonl"
    dataset(data)
    out = tmp_path / "out"
    out.mkdir()
    r = run("--data", str(data), "--out", str(out), "--trees", "20", "--max-depth", "4")
    assert r.returncode == 0, r.stderr
    import onnx
    import onnxruntime as ort

    meta = {p.key: p.value for p in onnx.load(str(out / "fitness.onnx")).metadata_props}
    v = json.loads(meta["fitsched.validation"])
    kind = meta["fitsched.model_kind"]
    logo = v["schemes"]["leave_one_group_out"]["models"]
    # Each session's idle baselines are a group of their own.
    assert v["schemes"]["leave_one_group_out"]["folds"] == len(GROUPS) + 3
    assert v["schemes"]["leave_one_session_out"]["folds"] == 3
    # Throughput is linear in CPU here: the CPU-only model explains it, the mean does not.
    assert logo["cpu_linear"]["r2"] > 0.8 and logo["mean"]["r2"] < 0.1
    assert logo["mean"]["spearman"] is None
    # The shipped model is what the rule chose on all the data: the best by inner
    # Spearman, or the forest when the bootstrap cannot tell the two apart.
    sel = v["selection"]
    best = max(sel["spearman"], key=sel["spearman"].get)
    tied = sel["tie_interval"] is not None and sel["tie_interval"][0] <= 0.0
    assert kind == ("random_forest" if tied else best)
    # The nested figures lead: the rule itself, scored on outer folds it never saw.
    assert list(v["headline"]) == ["nested_leave_one_group_out", "nested_leave_one_session_out"]
    nested = v["schemes"]["nested_leave_one_group_out"]
    assert nested["folds"] == len(GROUPS) + 3 and sum(nested["chosen"].values()) == nested["folds"]
    assert nested["models"]["selection_rule"]["spearman"] > 0.5
    assert 0 <= nested["overridden"] <= nested["folds"]
    # The stress test the old single idle group was: never trained on idle, scored on it.
    assert set(v["idle_unseen_mae"]) >= {"random_forest", "cpu_linear", "mean"}
    assert "Stress test" in (out / "MODEL_CARD.md").read_text()
    assert set(v["shipped_minus_candidate_spearman_95"]) == set(sel["spearman"]) - {kind}
    assert meta["fitsched.summary"].startswith(kind) and "selection included" in meta["fitsched.summary"]
    # A node without a reading gets the middle of the range, not a loaded node's median.
    fallbacks = json.loads(meta["fitsched.fallbacks"])
    if "cpu_utilization_mean" in fallbacks:
        assert 0.3 < fallbacks["cpu_utilization_mean"] < 0.7
    card = (out / "MODEL_CARD.md").read_text()
    assert card.index("## Held-out quality first") < card.index("### The selection rule, nested")
    assert card.index("### The selection rule, nested") < card.index("### Each candidate and baseline")
    assert card.index("### Each candidate and baseline") < card.index("## What it predicts")
    assert "Shuffled 5-fold, for comparison only" in card
    # The file the scorer loads reproduces sklearn on its parity rows.
    parity = json.loads((out / "parity.json").read_text())
    sess = ort.InferenceSession(str(out / "fitness.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: np.array(parity["rows"], dtype=np.float32)})[0].ravel()
    assert np.max(np.abs(got - np.array(parity["expected"]))) < 1e-5
    assert json.loads(meta["fitsched.features"]) == parity["features"]


def test_groups_keep_idle_baselines_per_session_and_persistence_apart():
    base = {"schema": 2, "session": 7, "baseline": True, "interference": {"group": "none"}}
    assert train.group_of({**base, "is_baseline": True}) == "none@7"
    loaded = {**base, "baseline": False, "is_baseline": False, "interference": {"group": "cpu"}}
    assert train.group_of(loaded) == "cpu"
    starts = {**base, "baseline": False, "is_baseline": False, "label_interference": {"group": "udp"}}
    assert train.group_of(starts) == "none->udp", "not one of the idle baselines"


def test_a_tie_is_an_interval_over_groups_that_holds_zero():
    rng = np.random.default_rng(1)
    y = rng.random(60)
    groups = [f"g{i % 12}" for i in range(60)]
    same = y + rng.normal(0, 0.05, 60)
    lo, hi = train.group_bootstrap(y, same, same, groups)
    assert lo == hi == 0.0
    lo, hi = train.group_bootstrap(y, y, rng.random(60), groups)
    assert lo > 0.5, "a real predictor beats noise on every resample"


def test_an_evaluation_split_holds_out_whole_groups(tmp_path):
    data = tmp_path / "d.jsonl"
    dataset(data)
    out = tmp_path / "split"
    r = run("--data", str(data), "--eval-split", "3", "--eval-out", str(out), "--kind", "cpu_linear")
    assert r.returncode == 0, r.stderr
    held = json.loads((out / "heldout.json").read_text())
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(out / "fitness.onnx")).metadata_props}
    assert held["version"] == meta["fitsched.model_version"] == "cpu_linear-evaluation-split-3"
    units = set(held["held_out_groups"])
    # Stratified by benchmark neighbours: a third of the one-neighbour groups (bench,
    # cpu+bench: at least one) and a third of the eight without.
    assert len(units) == 1 + 8 // 3 and sum(u.endswith("#1") for u in units) == 1, units
    samples = held["samples"]
    held_units = [f"{s['group']}#{1 if 'bench' in s['group'] else 0}" for s in samples if not s["baseline"]]
    # Whole units held out, and a third of the samples of every other (3 per group and
    # session here, 9 per group): every group is in the pool.
    assert set(held_units) == {f"{g}#{1 if 'bench' in g else 0}" for g in GROUPS}
    for u in set(held_units):
        assert held_units.count(u) == (9 if u in units else 3), u
    # A third of each session's baselines, leaving the 3 a session needs in training.
    assert sum(s["baseline"] for s in samples) == 3
    assert held["trained_on"] + len(samples) == 3 * (BASELINES + len(GROUPS) * 3)
    assert all(0.0 <= s["throughput_ratio"] <= 1.0 for s in samples)
    w = samples[0]["window"]
    assert w["metrics"]["cpu_utilization"].keys() == {"mean", "max", "p95", "last"}
    assert not any(m.endswith("_per_core") for m in w["metrics"]), "derived features are not replayed"
    assert w["missing"] == {"perf_ipc": "no PMU"}
    # Another seed, another split; the same seed, the same split.
    again = tmp_path / "again"
    assert run("--data", str(data), "--eval-split", "3", "--eval-out", str(again), "--kind", "cpu_linear").returncode == 0
    assert json.loads((again / "heldout.json").read_text())["held_out_groups"] == held["held_out_groups"]


def test_too_little_data_is_refused(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = dataset(data, sessions=1, per_group=1)[:10]
    _write(tmp_path, rows)
    r = run("--data", str(data), "--report-only")
    assert r.returncode != 0 and "collect more first" in r.stderr
