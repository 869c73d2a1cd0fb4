"""Real-image runs as the user waits for them: `fatviz train` against a hand-written PyTorch loop.

    python scripts/bench_real.py [--n 6000] [--n-test 10000] [--epochs 10] [--model auto] [--repeats 2]
                                 [--models cnn cnn-fast lenet lenet-bn] [--big-n 60000 --big-test 10000]

Synthetic but learnable 28x28 images (each class a few strokes of its own, jittered, shifted,
with a random distractor stroke and pixel noise: content does not change the cost, but
precision@1 then means something), written once as an MNIST folder (torchvision's IDX files).

The main table runs each side as its own process, so what it times is what the user waits
for: Python and its imports, reading the folder, training, evaluating and saving.

- fatviz: `python -m fatviz train --dataset mnist --data-root FOLDER` with the defaults (hybrid
  loss, a snapshot after every epoch with the metrics on `eval_points` test images, every
  metric on the whole test split at the end, the run saved).
- hand loop: this script with `--hand-process FOLDER`: numpy reads the IDX files, the same model
  (`fatviz.models`) and loss (`fatviz.losses.FATLoss` + cross-entropy, whole-set centres per
  epoch), precision@1 by nearest neighbour on the test split, the weights saved.

Each side's row gives its whole wall time, its epochs' time (fatviz: from the saved run's
snapshots), its final evaluation and the rest (start-up, reading, saving). The sides alternate,
`--repeats` times; the medians are compared. Last, `python -m fatviz train --help`'s time.

`--models` adds the older in-process table (one fatviz run and one hand loop per model in this
process, after a warm-up), `--big-n` the per-epoch snapshot overhead at MNIST size.

Prints the tables and, last, one JSON line. Targets (issue "The whole run as the user waits
for it"): fatviz's whole process at most 1.3x the hand loop's at the same precision@1, the
final evaluation of a 10,000-image split at most 3 s, `--help` under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _segments(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random strokes (x0, y0, x1, y1) inside the 20x20 centre of a 28x28 image."""
    return rng.uniform(4, 24, size=(count, 4))


def _render(seg: np.ndarray, width: np.ndarray, size: int) -> np.ndarray:
    """Draw strokes (n, s, 4) of widths (n, s) as soft lines: (n, size, size) float32."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    p = np.stack([xx.ravel(), yy.ravel()], axis=1)  # (P, 2)
    a, b = seg[..., None, :2], seg[..., None, 2:]  # (n, s, 1, 2)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-6), 0.0, 1.0)
    d2 = ((p - (a + t[..., None] * ab)) ** 2).sum(-1)  # (n, s, P)
    ink = np.exp(-d2 / (2 * width[..., None] ** 2)).max(axis=1)
    return ink.reshape(-1, size, size).astype(np.float32)


def stroke_ink(total: int, seed: int = 0, classes: int = 10, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """(total, 1, size, size) float32 ink with pixel noise, and labels: class-specific strokes, jittered."""
    rng = np.random.default_rng(seed)
    templates = np.stack([_segments(rng, 3) for _ in range(classes)])  # (K, 3, 4)
    y = np.arange(total) % classes
    rng.shuffle(y)
    x = np.empty((total, 1, size, size), dtype=np.float32)
    for start in range(0, total, 4000):
        yc = y[start:start + 4000]
        m = len(yc)
        seg = templates[yc] + rng.normal(0, 1.5, size=(m, 3, 4))  # endpoints jitter
        seg += np.repeat(rng.integers(-3, 4, size=(m, 1, 2)), 2, axis=1).reshape(m, 1, 4)  # shift
        seg = np.concatenate([seg, _segments(rng, m)[:, None]], axis=1)  # one distractor stroke
        width = rng.uniform(0.8, 1.6, size=(m, 4))
        img = _render(seg, width, size) + rng.normal(0, 0.4, size=(m, size, size)).astype(np.float32)
        x[start:start + m, 0] = img
    return x, y


def stroke_images(n: int, n_test: int, seed: int = 0, classes: int = 10, size: int = 28):
    """Learnable synthetic 28x28 images as PreparedData, normalised by the training split's statistics."""
    from fatviz.data import Dataset
    from fatviz.noise import add_label_noise
    from fatviz.train import PreparedData

    x, y = stroke_ink(n + n_test, seed, classes, size)
    x = (x - x[:n].mean()) / x[:n].std()
    ds = Dataset("strokes", "image", x[:n], y[:n], x[n:], y[n:], [str(i) for i in range(classes)])
    return PreparedData(ds, add_label_noise(y[:n], "none", 0.0, classes, seed), np.arange(min(n, 300)))


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def write_stroke_folder(folder: Path, n: int, n_test: int, seed: int = 0) -> Path:
    """The stroke images as an MNIST folder (FOLDER/raw/ with torchvision's four IDX files), uint8."""
    from fatviz.data.readers import write_idx

    x, y = stroke_ink(n + n_test, seed)
    pixels = (np.clip(x[:, 0], 0.0, 1.0) * 255).round().astype(np.uint8)
    for (images, labels), (image_file, label_file) in zip(((pixels[:n], y[:n]), (pixels[n:], y[n:])),
                                                           (IDX_FILES[:2], IDX_FILES[2:]), strict=True):
        write_idx(folder / "raw" / image_file, images)
        write_idx(folder / "raw" / label_file, labels.astype(np.uint8))
    return folder


def bench_settings(model: str, epochs: int, batch_size: int):
    """The run both sides train: hybrid loss, norm-mean-norm, whole-set centres once per epoch."""
    from fatviz.settings import RunSettings

    return RunSettings(dataset="mnist", data_root="-", model=model, epochs=epochs, batch_size=batch_size)


# -- the hand-written loop ---------------------------------------------------------------------


def hand_train(s, x, y, num_classes: int, epoch_ends: list[float] | None = None):
    """The settings' run as a plain PyTorch loop on tensors x, y: the trained model (in eval mode).
    `epoch_ends` gets the time the first epoch starts and the last one ends."""
    import torch
    import torch.nn.functional as F

    from fatviz.centroids import compute_centroids
    from fatviz.losses import FATLoss
    from fatviz.models import build_model, choose_model

    torch.manual_seed(s.seed)
    shape = tuple(x.shape[1:])
    model = build_model(choose_model(s.model, shape), shape, s.embedding_dim, num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    fat = FATLoss(s.centroid, margin=s.effective_margin, compactness_weight=s.effective_compactness_weight)
    g = torch.Generator().manual_seed(s.seed)
    ends = epoch_ends if epoch_ends is not None else []
    ends.append(time.perf_counter())  # the optimizer made: E epochs, each with its whole-set centres, from here
    for _ in range(s.epochs):
        centroids = compute_centroids(hand_embed(model, x), y, s.centroid, num_classes)
        model.train()
        perm = torch.randperm(len(y), generator=g)
        for start in range(0, len(perm), s.batch_size):
            idx = perm[start:start + s.batch_size]
            if len(idx) < 2:
                continue
            emb, logits = model(x[idx])
            loss = fat(emb, y[idx], centroids) + s.ce_weight * F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    ends.append(time.perf_counter())
    return model.eval()


def hand_embed(model, x):
    """Embeddings of x in eval mode, 256 at a time (as fatviz embeds: faster on a CPU than 1,024)."""
    import torch

    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + 256])[0] for i in range(0, len(x), 256)])


def hand_precision_at_1(s, model, x, y) -> float:
    """Leave-one-out precision@1 of the test split: each image's nearest other image, by torch.cdist."""
    import torch

    from fatviz.centroids import anchor_space

    emb = anchor_space(hand_embed(model, x), s.centroid)
    hits = 0
    for start in range(0, len(emb), 1024):
        d = torch.cdist(emb[start:start + 1024], emb)
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = torch.inf
        hits += int((y[d.argmin(1)] == y[start:start + 1024]).sum())
    return hits / len(emb)


def hand_process(folder: Path, model: str, epochs: int, batch_size: int, out: Path) -> dict[str, float]:
    """The hand side's whole process after Python's start: import, read, train, evaluate, save."""
    t0 = time.perf_counter()
    import torch

    s = bench_settings(model, epochs, batch_size)
    t1 = time.perf_counter()

    def read(name: str, offset: int) -> np.ndarray:
        return np.frombuffer((folder / "raw" / name).read_bytes(), np.uint8, offset=offset)

    x_tr, x_te = (read(IDX_FILES[i], 16).reshape(-1, 1, 28, 28) / np.float32(255) for i in (0, 2))
    y_tr, y_te = (torch.as_tensor(read(IDX_FILES[i], 8).astype(np.int64)) for i in (1, 3))
    mean, std = x_tr.mean(), x_tr.std()
    x_tr, x_te = (torch.as_tensor((x - mean) / std) for x in (x_tr, x_te))
    t2 = time.perf_counter()
    epoch_ends: list[float] = []
    trained = hand_train(s, x_tr, y_tr, 10, epoch_ends)
    t3 = time.perf_counter()
    p1 = hand_precision_at_1(s, trained, x_te, y_te)
    t4 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(trained.state_dict(), out / "model.pt")
    t5 = time.perf_counter()
    return {"import_s": t1 - t0, "read_s": t2 - t1, "train_s": t3 - t2, "eval_s": t4 - t3, "save_s": t5 - t4,
            "epochs_s": epoch_ends[-1] - epoch_ends[0], "p_at_1": p1}


# -- each side as its own process -------------------------------------------------------------


def _env() -> dict[str, str]:
    """This checkout's fatviz first on the path, whatever is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return wall, done.stdout


def run_fatviz(folder: Path, model: str, epochs: int, batch_size: int, out: Path) -> dict[str, float]:
    """`python -m fatviz train` on the folder: wall time; epochs and final evaluation from the saved run."""
    from fatviz.runs import load_run

    wall, stdout = _timed([sys.executable, "-m", "fatviz", "train", "--dataset", "mnist", "--data-root", str(folder),
                           "--model", model, "--epochs", str(epochs), "--batch-size", str(batch_size),
                           "--out", str(out), "--overwrite", "--json"])
    reported = json.loads(stdout.strip().splitlines()[-1])
    run = load_run(out)
    first, last = run.snapshots[0], run.snapshots[-1]
    # Training as the hand loop's clock counts it: the network, the optimizer (whose first use imports
    # torch._dynamo), the first whole-set centres (fatviz: the epoch-0 snapshot) and every epoch.
    train = float(run.extras.get("setup_seconds", 0.0)) + last.seconds
    final = run.seconds - last.seconds  # the whole test split, after the last snapshot
    return {"wall_s": wall, "train_s": train, "epochs_s": last.seconds - first.seconds, "eval_s": final,
            "rest_s": wall - train - final, "p_at_1": reported["precision_at_1"],
            "nmi_points": reported.get("nmi_points", float("nan"))}


def run_hand(folder: Path, model: str, epochs: int, batch_size: int, out: Path) -> dict[str, float]:
    """This script's hand loop as its own process."""
    wall, stdout = _timed([sys.executable, str(Path(__file__).resolve()), "--hand-process", str(folder),
                           "--model", model, "--epochs", str(epochs), "--batch-size", str(batch_size),
                           "--out", str(out)])
    got = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "train_s": got["train_s"], "epochs_s": got["epochs_s"], "eval_s": got["eval_s"],
            "rest_s": wall - got["train_s"] - got["eval_s"], "p_at_1": got["p_at_1"]}


def help_seconds(repeats: int = 3) -> float:
    """Median wall time of `python -m fatviz train --help`."""
    return statistics.median(_timed([sys.executable, "-m", "fatviz", "train", "--help"])[0] for _ in range(repeats))


def whole_processes(args: argparse.Namespace, model: str) -> dict[str, float]:
    """Both sides `args.repeats` times, alternating; per side the median of each figure."""
    runs: dict[str, list[dict[str, float]]] = {"hand": [], "fatviz": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_stroke_folder(Path(tmp) / "strokes", args.n, args.n_test)
        for rep in range(args.repeats):
            for side, run in (("hand", run_hand), ("fatviz", run_fatviz)):
                got = run(folder, model, args.epochs, args.batch_size, Path(tmp) / f"{side}-out")
                runs[side].append(got)
                print(f"  {side} run {rep + 1}: {got['wall_s']:.1f} s in all, training {got['train_s']:.1f} s, "
                      f"final evaluation {got['eval_s']:.2f} s, P@1 {got['p_at_1']:.4f}", flush=True)
    out: dict[str, float] = {}
    for side, got in runs.items():
        for key in got[0]:
            out[f"{side}_{key}"] = statistics.median(g[key] for g in got)
        out[f"{side}_wall_all_s"] = [g["wall_s"] for g in got]
    out["ratio_wall"] = out["fatviz_wall_s"] / out["hand_wall_s"]
    out["ratio_train"] = out["fatviz_train_s"] / out["hand_train_s"]
    out["p_at_1_diff"] = out["fatviz_p_at_1"] - out["hand_p_at_1"]
    return out


# -- the older in-process comparisons ---------------------------------------------------------


def fatviz_run(s, data) -> tuple[float, float]:
    """(wall seconds, test precision@1) of a fatviz run without per-epoch snapshots, evaluated once."""
    from fatviz.train import Trainer

    t = time.perf_counter()
    trainer = Trainer(s, data, snapshots=False)
    trainer.fit()
    p1 = trainer.evaluator.final()["precision_at_1"]
    return time.perf_counter() - t, p1


def hand_loop(s, data) -> tuple[float, float]:
    """(wall seconds, test precision@1) of the same run as a plain PyTorch loop, in this process."""
    import torch

    t = time.perf_counter()
    ds = data.dataset
    model = hand_train(s, torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train), ds.num_classes)
    p1 = hand_precision_at_1(s, model, torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test))
    return time.perf_counter() - t, p1


def warm_up(models: list[str], data) -> None:
    """One short epoch per model first: the first run in a process pays for kernel and pool start-up."""
    from fatviz.data import Dataset
    from fatviz.noise import add_label_noise
    from fatviz.train import PreparedData

    sub = np.arange(min(512, len(data.given_labels)))
    ds = data.dataset
    small = PreparedData(Dataset("warm-up", "image", ds.x_train[sub], ds.y_train[sub], ds.x_test[:256],
                                 ds.y_test[:256], ds.class_names),
                         add_label_noise(ds.y_train[sub], "none", 0.0, ds.num_classes, 0), np.arange(min(100, len(sub))))
    for model in models:
        fatviz_run(bench_settings(model, 1, 128), small)
        hand_loop(bench_settings(model, 1, 128), small)


def in_process(args: argparse.Namespace, default: str) -> tuple[dict[str, float], list[tuple]]:
    """One fatviz run (no snapshots) and, for cnn, lenet and the default, one hand loop per model."""
    hand = sorted({"cnn", "lenet", default} & set(args.models) | {default})
    out: dict[str, float] = {}
    data = stroke_images(args.n, args.n_test)
    models = list(dict.fromkeys([*args.models, *hand]))
    warm_up(models, data)
    rows = []
    for model in models:
        s = bench_settings(model, args.epochs, args.batch_size)
        for side, run in [("fatviz", fatviz_run)] + ([("hand", hand_loop)] if model in hand else []):
            seconds, p1 = run(s, data)
            out[f"inproc_{side}_{model}_s"], out[f"inproc_{side}_{model}_p_at_1"] = seconds, p1
            rows.append((model, side, seconds, p1))
    return out, rows


def eval_overhead(model: str, n: int, n_test: int, batch_size: int, epochs: int = 4) -> dict[str, float]:
    """At MNIST size, an epoch's wall time without and with the per-epoch snapshot (the median over
    epochs 2..`epochs`), what the snapshot's evaluation alone costs, and the whole test split once.

    Without snapshots an epoch is a whole-set pass for the centres plus the training; with them,
    the training plus the snapshot, whose whole-set pass also gives the next epoch's centres. An
    epoch is timed from the end of the one before (on_progress without snapshots, a snapshot's
    arrival with them); the first epoch and the epoch-0 snapshot are left out of both."""
    from fatviz.train import Trainer

    data = stroke_images(n, n_test, seed=1)
    ends: list[float] = []
    Trainer(bench_settings(model, epochs, batch_size), data, snapshots=False).fit(
        on_progress=lambda *_: ends.append(time.perf_counter()))
    out = {"big_epoch_plain_s": statistics.median(np.diff(ends))}
    trainer = Trainer(bench_settings(model, epochs + 1, batch_size), data, snapshots=True)
    arrived: list[float] = []
    for snap in trainer.snapshots():
        if snap.epoch >= 1:
            arrived.append(time.perf_counter())
        if snap.epoch == epochs:
            break  # before the last epoch: its snapshot would include the final evaluation
    out["big_epoch_snapshots_s"] = statistics.median(np.diff(arrived))
    out["big_snapshot_overhead"] = out["big_epoch_snapshots_s"] / out["big_epoch_plain_s"] - 1
    out["big_epochs_timed"] = epochs - 1
    t = time.perf_counter()
    trainer.evaluator.evaluate(subset=True)
    out["big_subset_eval_s"] = time.perf_counter() - t
    t = time.perf_counter()
    trainer.evaluator.evaluate()
    out["big_full_test_eval_s"] = time.perf_counter() - t
    out["eval_points"] = trainer.evaluator.evaluated_on[0]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="training images")
    parser.add_argument("--n-test", type=int, default=10000, help="test images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="auto", help="the model both sides train in the main table")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating (medians compared)")
    parser.add_argument("--models", nargs="*", default=[], help="also the in-process table for these models")
    parser.add_argument("--big-n", type=int, default=0, help="also the per-epoch overhead at this size (0: skip)")
    parser.add_argument("--big-test", type=int, default=10000)
    parser.add_argument("--big-epochs", type=int, default=4, help="epochs per side at --big-n (>= 2)")
    parser.add_argument("--hand-process", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hand_process is not None:  # the hand side, started by run_hand
        print(json.dumps(hand_process(args.hand_process, args.model, args.epochs, args.batch_size, args.out)))
        return 0

    import torch

    from fatviz.models import choose_model

    default = choose_model("auto", (1, 28, 28))
    model = default if args.model == "auto" else args.model
    out: dict = {"threads": torch.get_num_threads(), "model": model, "n": args.n, "n_test": args.n_test,
                 "epochs": args.epochs, "repeats": args.repeats}
    start = time.perf_counter()
    out.update(whole_processes(args, model))
    out["help_s"] = help_seconds()
    rows = []
    if args.models:
        got, rows = in_process(args, default)
        out.update(got)
    if args.big_n:
        out.update(eval_overhead(default, args.big_n, args.big_test, args.batch_size, max(2, args.big_epochs)))
    out["seconds"] = time.perf_counter() - start

    print(f"\n{args.n} synthetic 28x28 training images, {args.n_test} test images, {args.epochs} epochs, {model}, "
          f"hybrid, batch {args.batch_size}, {out['threads']} threads; each side its own process, median of "
          f"{args.repeats}")
    print(f"{'side':<10}{'whole s':>9}{'training s':>12}{'(epochs s)':>12}{'final eval s':>14}{'rest s':>8}{'P@1':>8}")
    for side in ("hand", "fatviz"):
        print(f"{side:<10}{out[f'{side}_wall_s']:>9.1f}{out[f'{side}_train_s']:>12.1f}{out[f'{side}_epochs_s']:>12.1f}"
              f"{out[f'{side}_eval_s']:>14.2f}{out[f'{side}_rest_s']:>8.1f}{out[f'{side}_p_at_1']:>8.4f}")
    print("training: from the network's making to the last epoch's end; epochs: the E epochs alone, each with its "
          "whole-set centres (and fatviz's snapshot); rest: the whole process less training and the final evaluation "
          "(Python, imports, reading, saving, exit)")
    print(f"fatviz / hand: {out['ratio_wall']:.2f}x the whole process, {out['ratio_train']:.2f}x the training, "
          f"P@1 {out['p_at_1_diff']:+.4f}; final evaluation of {args.n_test} test images (every metric, k-means on "
          f"{out['fatviz_nmi_points']:.0f}) {out['fatviz_eval_s']:.2f} s; `fatviz train --help` {out['help_s']:.2f} s")
    if rows:
        print(f"\nin one process (no per-epoch snapshot for fatviz), {args.n} x {args.epochs}")
        print(f"{'model':<10}{'side':<8}{'seconds':>9}{'P@1':>8}")
        for m, side, seconds, p1 in rows:
            print(f"{m:<10}{side:<8}{seconds:>9.1f}{p1:>8.3f}")
    if "big_epoch_plain_s" in out:
        print(f"one epoch of {args.big_n} ({default}, median of {out['big_epochs_timed']}): "
              f"{out['big_epoch_plain_s']:.1f} s without the per-epoch snapshot, {out['big_epoch_snapshots_s']:.1f} s "
              f"with it ({100 * out['big_snapshot_overhead']:+.0f}%; its metrics on {out['eval_points']:.0f} of "
              f"{args.big_test} test images alone {out['big_subset_eval_s']:.1f} s); the whole test split once: "
              f"{out['big_full_test_eval_s']:.1f} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
