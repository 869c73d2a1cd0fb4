"""Timings for the prepared GPU check (scripts/gpu_check.sh): a table, then one JSON line.

    python scripts/gpu_check.py [--budget 420]

Measures, on the device fatviz picks (cuda when present): the digits demo (four options x 30
epochs), 60,000 synthetic 28x28 images x 30 epochs, a distillation at 5,000 and 60,000
images, and the loss benchmark up to B = 65,536. Content does not change cost, so the images
are random. Each part is skipped (and says so) once the time budget is spent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from fatviz.data import Dataset
from fatviz.noise import add_label_noise
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, compare_centroids, train


def synthetic_images(n: int, n_test: int = 10_000, noise: str = "none", seed: int = 0) -> PreparedData:
    """Random 28x28 grey images with 10 labels: MNIST's shape and size, for timing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    xt = rng.normal(size=(n_test, 1, 28, 28)).astype(np.float32)
    yt = rng.integers(0, 10, size=n_test)
    ds = Dataset("synthetic-28x28", "image", x, y, xt, yt, [str(i) for i in range(10)])
    kind, _, rate = noise.partition(":")
    return PreparedData(ds, add_label_noise(y, kind, float(rate or 0), 10, seed), np.arange(300))


def main() -> int:
    """Run every timing that fits in the budget and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all timings together")
    args = parser.parse_args()
    start = time.perf_counter()
    out: dict[str, object] = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                              "torch": torch.__version__}
    rows: list[tuple[str, str]] = []

    def left() -> float:
        return args.budget - (time.perf_counter() - start)

    def timed(name: str, fn, need: float) -> None:
        if left() < need:
            rows.append((name, "skipped: out of time"))
            out[name] = None
            return
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        extra = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        out[name] = seconds
        rows.append((name, f"{seconds:8.2f} s" + (f"  {extra}" if extra else "")))

    def digits_demo() -> str:
        results = compare_centroids(RunSettings())
        return "P@1 " + " ".join(f"{o}={r.final_metrics['precision_at_1']:.3f}" for o, r in results.items())

    def images(n: int, epochs: int):
        def run() -> str:
            data = synthetic_images(n)
            s = RunSettings(dataset="mnist", data_root="-", epochs=epochs, batch_size=256, vis_points=300)
            r = train(s, data)
            return f"{r.model_kind}, {r.evaluated_on[0]} of {r.evaluated_on[1]} test images per epoch"
        return run

    def distill(n: int):
        def run() -> str:
            from fatviz.distill import run_distillation

            data = synthetic_images(n, n_test=2000, noise="symmetric:0.4")
            s = RunSettings(dataset="mnist", data_root="-", noise="symmetric:0.4", epochs=10, batch_size=256)
            r = run_distillation(s, data)
            return f"flag F1 {r.report['flag_f1']:.3f} (random images: a timing, not an accuracy)"
        return run

    def loss_bench() -> str:
        from fatviz.bench import loss_benchmark

        res = loss_benchmark(sizes=(1024, 4096, 16384, 65536), methods=("fat", "batch-hard", "triplet-all"),
                             repeats=3, max_step_seconds=2.0)
        out["loss_benchmark"] = res
        return "see loss_benchmark in the JSON line"

    timed("digits_demo_4x30_s", digits_demo, 5)
    timed("train_60k_x30_s", images(60_000, 30), 60)
    timed("distill_5k_s", distill(5_000), 30)
    timed("distill_60k_s", distill(60_000), 120)
    timed("loss_benchmark_s", loss_bench, 20)
    print(f"fatviz GPU check on {out['device']}")
    for name, text in rows:
        print(f"  {name:<24}{text}")
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
