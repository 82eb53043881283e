"""Times sklearn's predict and Python onnxruntime on the same rows the scorer's bench
uses (`cargo xtask bench model`). Writes the rows for the Rust side and prints JSON.

The sklearn model is retrained exactly as train.py trains the committed model's kind
(same data, same candidate definition, same seed), so both sides score the same model.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train  # noqa: E402


def best_of(n, f):
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--out", required=True, help="file for the rows (u32 rows, u32 cols, f32 row-major)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10, help="rows per call in the arrival-shaped run")
    args = ap.parse_args()

    import onnxruntime as ort

    rows, thr, _, _, _ = train.labels(train.load(os.path.join(train.HERE, "data", "samples.jsonl")), 3)
    sess = ort.InferenceSession(os.path.join(train.HERE, "fitness.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    names = json.loads(meta["fitsched.features"])
    x = np.array([[r["features"][n] for n in names] for r in rows], dtype=np.float32)
    # The committed kind's candidate over exactly the committed features (train.py's
    # defaults for the forests' size).
    defaults = argparse.Namespace(trees=100, max_depth=8)
    _, make = train.candidates(names, defaults)[meta["fitsched.model_kind"]]
    model = make().fit(x, thr)

    # 10 000 node rows: dataset rows resampled with 5 % noise, so the trees take varied paths.
    rng = np.random.default_rng(7)
    big = x[rng.integers(0, len(x), size=args.rows)]
    big = (big * rng.normal(1.0, 0.05, size=big.shape)).astype(np.float32)
    with open(args.out, "wb") as f:
        np.array(big.shape, dtype="<u4").tofile(f)
        big.astype("<f4").tofile(f)

    sk = model.predict(big)
    onx = sess.run(None, {"features": big})[0].ravel()
    batches = [big[i : i + args.batch] for i in range(0, len(big), args.batch)]

    def sklearn_batched():
        for b in batches:
            model.predict(b)

    def onnxruntime_batched():
        for b in batches:
            sess.run(None, {"features": b})

    result = {
        "batch": args.batch,
        "sklearn_batched_s": best_of(max(1, args.repeat // 2), sklearn_batched),
        "python_onnxruntime_batched_s": best_of(args.repeat, onnxruntime_batched),
        "rows": args.rows,
        "features": len(names),
        "model": meta["fitsched.model_version"],
        "sklearn_s": best_of(args.repeat, lambda: model.predict(big)),
        "python_onnxruntime_s": best_of(args.repeat, lambda: sess.run(None, {"features": big})),
        "max_abs_diff_sklearn_vs_onnxruntime": float(np.max(np.abs(sk - onx))),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
