"""Your own table at size: 20,000 x 512 float32 features (any backbone's embeddings), the four centroid options,
10 epochs, as `fatviz compare-centroids --dataset table` runs it (import, read, train, evaluate, save).

    python scripts/bench_upload.py [--rows 20000] [--dim 512] [--classes 100] [--epochs 10]

Speed does not depend on the numbers themselves, so the features are synthetic: class centres plus
noise. Prints a table and, last, one JSON line. Target (issue 22): under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_table(path: Path, rows: int, dim: int, classes: int, seed: int = 0) -> None:
    """An .npz of `rows` features around `classes` centres, as a user would save embeddings."""
    rng = np.random.default_rng(seed)
    labels = np.arange(rows) % classes
    features = rng.normal(size=(classes, dim))[labels] + rng.normal(scale=1.5, size=(rows, dim))
    np.savez(path, features=features.astype(np.float32), labels=labels)


def main() -> int:
    """Write the table, time the command, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "features.npz"
        write_table(table, args.rows, args.dim, args.classes)
        command = [sys.executable, "-m", "fatviz", "compare-centroids", "--dataset", "table", "--data-root", str(table),
                   "--epochs", str(args.epochs), "--out", str(Path(tmp) / "runs"), "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode:
        print(done.stderr[-2000:], file=sys.stderr)
        return done.returncode
    options = json.loads(done.stdout.strip().splitlines()[-1])["options"]
    print(f"{args.rows:,} x {args.dim} features, {args.classes} classes, four options x {args.epochs} epochs")
    print(f"{'option':<16}{'P@1':>8}{'mAP':>8}{'train s':>10}")
    for name, row in options.items():
        print(f"{name:<16}{row['precision_at_1']:>8.3f}{row['map']:>8.3f}{row['seconds']:>10.1f}")
    print(f"whole command (import, read, train, evaluate, save): {wall:.1f} s (target < 60 s)")
    print(json.dumps({"rows": args.rows, "dim": args.dim, "epochs": args.epochs, "wall_s": round(wall, 2),
                      "train_s": {k: round(v["seconds"], 2) for k, v in options.items()},
                      "precision_at_1": {k: round(v["precision_at_1"], 4) for k, v in options.items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
