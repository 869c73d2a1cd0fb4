"""Training-engine benchmark: digits accuracy, compare-centroids wall time, MNIST-size epoch time.

    python scripts/bench_train.py [--skip-mnist] [--mnist-n 60000]

Prints a table and, last, one JSON line. Targets (issue 3): clean digits, hybrid loss,
norm-mean-norm, 30 epochs: test precision@1 >= 0.95; compare-centroids on digits with 30
epochs each: <= 10 s in total on 2 CPU cores; MNIST-size (60k 28x28) small-CNN seconds per
epoch reported.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fatviz.data import Dataset
from fatviz.noise import add_label_noise
from fatviz.serve.jobs import JobManager
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Trainer, train


def mnist_sized(n: int, seed: int = 0) -> PreparedData:
    """Random 28x28 images with 10 labels: the shape and size of MNIST (timing only)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    xt = rng.normal(size=(1000, 1, 28, 28)).astype(np.float32)
    yt = rng.integers(0, 10, size=1000)
    ds = Dataset("mnist-sized", "image", x, y, xt, yt, [str(i) for i in range(10)])
    return PreparedData(ds, add_label_noise(y, "none", 0.0, 10, seed), np.arange(500))


def main() -> int:
    """Run the three measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-mnist", action="store_true")
    parser.add_argument("--mnist-n", type=int, default=60000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    out: dict[str, float | str] = {"device": "cuda" if torch.cuda.is_available() else "cpu",
                                   "threads": torch.get_num_threads()}

    settings = RunSettings()  # clean digits, hybrid, norm-mean-norm, 30 epochs
    t = time.perf_counter()
    result = train(settings)
    out["digits_hybrid_p_at_1"] = result.final_metrics["precision_at_1"]
    out["digits_hybrid_map"] = result.final_metrics["map"]
    out["digits_single_run_s"] = time.perf_counter() - t

    # Cold: the CLI's case, worker processes started (and warmed) inside the timing.
    t = time.perf_counter()
    manager = JobManager(workers=args.workers, runs_dir=None, warm_up=False)
    try:
        job = manager.submit("compare", settings)
        job.wait()
        out["compare_cold_s"] = time.perf_counter() - t
    finally:
        manager.shutdown()
    # Warm: the app's case, workers started when the page opened, before the click.
    manager = JobManager(workers=args.workers, runs_dir=None)
    try:
        manager.pool.ready()
        t = time.perf_counter()
        job = manager.submit("compare", settings)
        job.wait()
        out["compare_centroids_s"] = time.perf_counter() - t
        out["compare_first_frame_s"] = job.first_frame_seconds or float("nan")
        for option, res in job.results.items():
            out[f"compare_{option}_p_at_1"] = res.final_metrics["precision_at_1"]
        t = time.perf_counter()
        again = manager.submit("compare", settings)
        out["compare_cached_s"] = time.perf_counter() - t if again is job else float("nan")
    finally:
        manager.shutdown()

    if not args.skip_mnist:
        data = mnist_sized(args.mnist_n)
        s = RunSettings(dataset="mnist", data_root="-", model="cnn", epochs=1, batch_size=256,
                        embedding_dim=64)
        trainer = Trainer(s, data, snapshots=False)
        t = time.perf_counter()
        trainer.fit()
        out["mnist_sized_cnn_s_per_epoch"] = time.perf_counter() - t
        out["mnist_sized_n"] = args.mnist_n

    rows = [
        ("digits, hybrid, norm-mean-norm, 30 epochs: test precision@1", "digits_hybrid_p_at_1", ">= 0.95"),
        ("  one run, wall seconds", "digits_single_run_s", ""),
        ("compare-centroids (4 options x 30 epochs), warm workers, s", "compare_centroids_s", "<= 10"),
        ("  first frame of all four panels, s", "compare_first_frame_s", "<= 2"),
        ("  same settings again (shared job), s", "compare_cached_s", "<= 1"),
        ("  cold: worker processes started inside the timing, s", "compare_cold_s", ""),
        ("MNIST-size (60k 28x28) small CNN, seconds per epoch", "mnist_sized_cnn_s_per_epoch", "report"),
    ]
    print(f"{'measurement':<62}{'value':>10}  target")
    for label, key, target in rows:
        if key in out:
            print(f"{label:<62}{float(out[key]):>10.3f}  {target}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
