"""Real-image training speed: fatviz's Trainer against a hand-written PyTorch loop, side by side.

    python scripts/bench_real.py [--n 6000] [--epochs 10] [--models cnn cnn-fast lenet]
                                 [--big-n 60000] [--big-test 10000] [--skip-big]

Synthetic but learnable 28x28 images (each class a few strokes of its own, jittered, shifted,
with a random distractor stroke and pixel noise: content does not change the cost, but
precision@1 then means something). For every model, one `fatviz` run (hybrid loss, batch 128,
whole-set centres once per epoch, no per-epoch snapshot, one final evaluation of the whole
test split) and, for `cnn` and the `auto` default, the same run as a hand-written loop
(`fatviz.losses.FATLoss` + cross-entropy, whole-set centres per epoch, one evaluation at the
end). Last, the per-epoch evaluation overhead at MNIST size: an epoch's wall time with and
without the per-epoch snapshot (embeddings, bound, metrics on the `eval_points` test subset).

Prints a table and, last, one JSON line. Targets (issue "Real images at the speed of a
hand-written loop"): the default model through fatviz <= 1.5x the LeNet hand loop's time,
its precision@1 >= the LeNet loop's and >= cnn's - 0.01.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from fatviz.centroids import anchor_space, compute_centroids
from fatviz.data import Dataset
from fatviz.losses import FATLoss
from fatviz.metrics import evaluate_embeddings
from fatviz.models import build_model, choose_model
from fatviz.noise import add_label_noise
from fatviz.settings import RunSettings
from fatviz.train import PreparedData, Trainer


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


def stroke_images(n: int, n_test: int, seed: int = 0, classes: int = 10, size: int = 28) -> PreparedData:
    """Learnable synthetic 28x28 images: class-specific strokes, jittered and shifted, plus noise."""
    rng = np.random.default_rng(seed)
    templates = np.stack([_segments(rng, 3) for _ in range(classes)])  # (K, 3, 4)
    total = n + n_test
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
    x = (x - x[:n].mean()) / x[:n].std()
    ds = Dataset("strokes", "image", x[:n], y[:n], x[n:], y[n:], [str(i) for i in range(classes)])
    return PreparedData(ds, add_label_noise(y[:n], "none", 0.0, classes, seed), np.arange(min(n, 300)))


def bench_settings(model: str, epochs: int, batch_size: int) -> RunSettings:
    """The run both sides train: hybrid loss, norm-mean-norm, whole-set centres once per epoch."""
    return RunSettings(dataset="mnist", data_root="-", model=model, epochs=epochs, batch_size=batch_size)


def fatviz_run(s: RunSettings, data: PreparedData) -> tuple[float, float]:
    """(wall seconds, test precision@1) of a fatviz run without per-epoch snapshots, evaluated once."""
    t = time.perf_counter()
    trainer = Trainer(s, data, snapshots=False)
    trainer.fit()
    p1 = trainer.final_evaluation()["precision_at_1"]
    return time.perf_counter() - t, p1


def hand_loop(s: RunSettings, data: PreparedData) -> tuple[float, float]:
    """(wall seconds, test precision@1) of the same run as a plain PyTorch loop."""
    t = time.perf_counter()
    ds = data.dataset
    torch.manual_seed(s.seed)
    model = build_model(choose_model(s.model, ds.input_shape), ds.input_shape, s.embedding_dim, ds.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    fat = FATLoss(s.centroid, margin=s.effective_margin, compactness_weight=s.effective_compactness_weight)
    x, y = torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train)
    g = torch.Generator().manual_seed(s.seed)

    def embed(xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model.eval()
        with torch.no_grad():
            out = [model(xs[i:i + 1024]) for i in range(0, len(xs), 1024)]
        return torch.cat([e for e, _ in out]), torch.cat([lg for _, lg in out])

    for _ in range(s.epochs):
        centroids = compute_centroids(embed(x)[0], y, s.centroid, ds.num_classes)
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
    emb, logits = embed(torch.as_tensor(ds.x_test))
    metrics = evaluate_embeddings(anchor_space(emb, s.centroid).numpy(), ds.y_test, logits=logits.numpy(),
                                  seed=s.seed)
    return time.perf_counter() - t, float(metrics["precision_at_1"])


def warm_up(models: list[str], data: PreparedData) -> None:
    """One short epoch per model first: the first run in a process pays for kernel and pool start-up."""
    sub = np.arange(min(512, len(data.given_labels)))
    ds = data.dataset
    small = PreparedData(Dataset("warm-up", "image", ds.x_train[sub], ds.y_train[sub], ds.x_test[:256],
                                 ds.y_test[:256], ds.class_names),
                         add_label_noise(ds.y_train[sub], "none", 0.0, ds.num_classes, 0), np.arange(min(100, len(sub))))
    for model in models:
        fatviz_run(bench_settings(model, 1, 128), small)
        hand_loop(bench_settings(model, 1, 128), small)


def eval_overhead(model: str, n: int, n_test: int, batch_size: int, epochs: int = 4) -> dict[str, float]:
    """At MNIST size, an epoch's wall time without and with the per-epoch snapshot (the median over
    epochs 2..`epochs`), what the snapshot's evaluation alone costs, and the whole test split once.

    Without snapshots an epoch is a whole-set pass for the centres plus the training; with them,
    the training plus the snapshot, whose whole-set pass also gives the next epoch's centres. An
    epoch is timed from the end of the one before (on_progress without snapshots, a snapshot's
    arrival with them); the first epoch and the epoch-0 snapshot are left out of both."""
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
    trainer.evaluate(subset=True)
    out["big_subset_eval_s"] = time.perf_counter() - t
    t = time.perf_counter()
    trainer.evaluate()
    out["big_full_test_eval_s"] = time.perf_counter() - t
    out["eval_points"] = trainer.evaluated_on[0]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the side-by-side measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="training images")
    parser.add_argument("--n-test", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--models", nargs="+", default=["cnn", "cnn-fast", "lenet", "lenet-bn"])
    parser.add_argument("--hand", nargs="+", default=None, help="models also run as a hand loop "
                        "(default: cnn, lenet and the auto default)")
    parser.add_argument("--big-n", type=int, default=60000)
    parser.add_argument("--big-test", type=int, default=10000)
    parser.add_argument("--big-epochs", type=int, default=4, help="epochs per side at MNIST size (>= 2)")
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args(argv)
    default = choose_model("auto", (1, 28, 28))
    hand = args.hand if args.hand is not None else sorted({"cnn", "lenet", default})
    out: dict[str, float | str] = {"threads": torch.get_num_threads(), "default": default, "n": args.n,
                                   "epochs": args.epochs}
    start = time.perf_counter()
    data = stroke_images(args.n, args.n_test)
    warm_up(list(dict.fromkeys([*args.models, *hand])), data)
    rows = []
    for model in dict.fromkeys([*args.models, *hand]):
        s = bench_settings(model, args.epochs, args.batch_size)
        sides = [("fatviz", fatviz_run)] + ([("hand", hand_loop)] if model in hand else [])
        for side, run in sides:
            seconds, p1 = run(s, data)
            out[f"{side}_{model}_s"], out[f"{side}_{model}_p_at_1"] = seconds, p1
            rows.append((model, side, seconds, p1))
            print(f"  {side} {model}: {seconds:.1f} s, P@1 {p1:.3f}", flush=True)
    for model in hand:
        out[f"ratio_{model}"] = out[f"fatviz_{model}_s"] / out[f"hand_{model}_s"]
        out[f"p_at_1_diff_{model}"] = out[f"fatviz_{model}_p_at_1"] - out[f"hand_{model}_p_at_1"]
    if "lenet" in hand:
        out["default_vs_lenet_hand"] = out[f"fatviz_{default}_s"] / out["hand_lenet_s"]
    if not args.skip_big:
        out.update(eval_overhead(default, args.big_n, args.big_test, args.batch_size, max(2, args.big_epochs)))
    out["seconds"] = time.perf_counter() - start

    print(f"\n{args.n} synthetic 28x28 images x {args.epochs} epochs, hybrid, batch {args.batch_size}, "
          f"{out['threads']} threads; auto picks {default}")
    print(f"{'model':<10}{'side':<8}{'seconds':>9}{'x lenet hand':>14}{'P@1':>8}")
    ref = out.get("hand_lenet_s")
    for model, side, seconds, p1 in rows:
        rel = f"{seconds / ref:.2f}" if ref else "-"
        print(f"{model:<10}{side:<8}{seconds:>9.1f}{rel:>14}{p1:>8.3f}")
    for model in hand:
        print(f"fatviz / hand, {model}: {out[f'ratio_{model}']:.2f}x time, P@1 {out[f'p_at_1_diff_{model}']:+.3f}")
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
