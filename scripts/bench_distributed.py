"""Distributed FAT: what the centres cost on the wire, and 1 against 2 CPU processes on a small run.

    python scripts/bench_distributed.py [--world 2] [--epochs 10] [--skip-timing]

Bytes per epoch: whole-set centres by all-reduce send one K x (D+1) float32 payload (sums and
weights) plus 2K (radii by MAX, distance sums by SUM), whatever N is; gathering every rank's
embeddings each step instead sends B*D*4*world bytes per step (B the per-rank batch), that is
about N*D*4 per epoch. The gradients' all-reduce is the same either way and left out. Prints a
table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (name, N training samples, K classes, D embedding dimension, B per-rank batch)
SIZES = (
    ("digits", 1_347, 10, 32, 64),
    ("mnist", 60_000, 10, 128, 128),
    ("market1501", 12_936, 751, 2048, 64),
    ("large reid", 1_000_000, 10_000, 512, 256),
)
TIMING = {"dataset": "digits", "batch_size": 128, "embedding_dim": 32, "vis_points": 100, "device": "cpu"}


def wire_bytes(n: int, k: int, d: int, b: int, world: int) -> dict[str, float]:
    """Bytes per epoch: the centres' all-reduce payloads against an all-gather of embeddings every step."""
    centres = (k * (d + 1) + 2 * k) * 4
    steps = n // (b * world)
    gather = b * d * 4 * world * steps
    return {"centres_bytes": centres, "gather_bytes": gather, "steps": steps, "ratio": gather / centres}


def human(n: float) -> str:
    """Bytes with a binary unit."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def worker(out: Path, epochs: int) -> None:
    """One rank of the timed run (under torchrun): rank 0 writes its training seconds."""
    from fatviz.distributed import run_distributed_train
    from fatviz.settings import RunSettings

    result, path = run_distributed_train(RunSettings(epochs=epochs, **TIMING), out / "run")
    if path is not None:
        (out / "seconds.json").write_text(json.dumps({"train_s": result.seconds,
                                                      "precision_at_1": result.final_metrics["precision_at_1"]}))


def timing(world: int, epochs: int) -> dict[str, float]:
    """Training seconds (no start-up) of one process in-process, and of `world` processes under torchrun."""
    from fatviz.settings import RunSettings
    from fatviz.train import train

    single = train(RunSettings(epochs=epochs, **TIMING))
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH")) if p)}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(world),
                        __file__, "--worker", tmp, "--epochs", str(epochs)], env=env, check=True, capture_output=True)
        launch = time.perf_counter() - start
        multi = json.loads((Path(tmp) / "seconds.json").read_text())
    return {"single_train_s": single.seconds, "single_precision_at_1": single.final_metrics["precision_at_1"],
            "multi_train_s": multi["train_s"], "multi_precision_at_1": multi["precision_at_1"],
            "multi_launch_s": launch, "speedup": single.seconds / multi["train_s"], "cpus": os.cpu_count()}


def main() -> int:
    """Print the bytes table, the timing and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--world", type=int, default=2, help="processes")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the timed digits run")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), args.epochs)
        return 0

    rows = {}
    print(f"bytes per epoch, world size {args.world} (gradients' all-reduce not counted)")
    print(f"{'set':<12}{'N':>10}{'K':>7}{'D':>6}{'B':>5}{'steps':>7}{'centres':>12}{'all-gather':>13}{'ratio':>11}")
    for name, n, k, d, b in SIZES:
        r = wire_bytes(n, k, d, b, args.world)
        rows[name] = {"N": n, "K": k, "D": d, "B": b, **r}
        print(f"{name:<12}{n:>10}{k:>7}{d:>6}{b:>5}{r['steps']:>7}{human(r['centres_bytes']):>12}"
              f"{human(r['gather_bytes']):>13}{r['ratio']:>10.0f}x")
    out: dict = {"world_size": args.world, "bytes": rows}
    if not args.skip_timing:
        t = timing(args.world, args.epochs)
        out["timing"] = t
        print(f"\ndigits, {args.epochs} epochs, global batch {TIMING['batch_size']}, on {t['cpus']} CPU cores:")
        print(f"  1 process:   {t['single_train_s']:6.1f} s training   precision@1 {t['single_precision_at_1']:.3f}")
        print(f"  {args.world} processes: {t['multi_train_s']:6.1f} s training   precision@1 "
              f"{t['multi_precision_at_1']:.3f}   ({t['multi_launch_s']:.1f} s with torchrun and imports)")
        print(f"  speedup {t['speedup']:.2f}x: each process repeats the snapshots (whole-set embedding, test "
              "metrics), the MLP is too small to split well, and on a machine of few shared cores the "
              "processes take turns; expect little speedup here.")
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
