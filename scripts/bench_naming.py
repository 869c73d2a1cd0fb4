"""Who names the two people of a composite best: the teacher's embedding or the student's, and how.

    python scripts/bench_naming.py --seeds 0 1 2 [--noise symmetric:0.2+outlier:0.1+multi:0.05]

Per seed, on market reid-synth with the default settings: the teacher (its rounds and its two-people
detector) and the student train once; then the images the detector called two people are named
several ways, and each way is scored as the share of all composites whose two people were both named
(a composite the detector missed counts as a failure). `name_two_people` is the library's way, run
with either network's embedding; the other rows vary its last step (docs/DISTILL_STUDY.md, 4b).

Prints one row per seed, the mean, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fatviz.distill import student_trainer  # noqa: E402
from fatviz.distill import teacher as teacher_module  # noqa: E402
from fatviz.distill.two_people import _halves, name_two_people  # noqa: E402
from fatviz.noise import _squeeze_width  # noqa: E402
from fatviz.settings import RunSettings  # noqa: E402
from fatviz.train import prepare_data  # noqa: E402

WAYS = ("teacher, nearest centre", "student, nearest kept sample", "student, nearest centre (default)",
        "student, nearest centre of squeezed-and-stretched kept samples")


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def degraded(x: torch.Tensor, width: int) -> torch.Tensor:
    """Images squeezed to `width` columns (as a composite's half is) and stretched back, as _halves does."""
    squeezed = torch.as_tensor(_squeeze_width(x.cpu().numpy(), width), dtype=torch.float32)
    return torch.nn.functional.interpolate(squeezed, size=tuple(x.shape[-2:]), mode="nearest").to(x.device)


def variants(embed, x: torch.Tensor, given: np.ndarray, two: np.ndarray, keep: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """The second person by the nearest kept sample, and by centres of degraded kept samples (given half as the
    library finds it)."""
    n = len(given)
    rows = np.flatnonzero(two)
    emb = unit(embed(x[:n]).double().cpu().numpy())
    sums = np.zeros((k, emb.shape[1]))
    np.add.at(sums, given[keep], emb[keep])
    centres = unit(sums)
    left, right = (unit(embed(h).double().cpu().numpy()) for h in _halves(x[torch.as_tensor(rows)]))
    g, at = given[rows], np.arange(len(rows))
    given_left = (left @ centres.T)[at, g] >= (right @ centres.T)[at, g]
    other = np.where(given_left[:, None], right, left)
    kept = np.flatnonzero(keep)
    sim = other @ emb[kept].T
    sim[given[kept][None, :] == g[:, None]] = -np.inf
    nearest = given[kept][sim.argmax(axis=1)]
    w = x.shape[-1]
    deg = {}
    for side, width in (("left", w // 2), ("right", w - w // 2)):
        e = unit(embed(degraded(x[torch.as_tensor(kept)], width)).double().cpu().numpy())
        s = np.zeros((k, e.shape[1]))
        np.add.at(s, given[kept], e)
        deg[side] = unit(s)
    csim = np.where(given_left[:, None], other @ deg["right"].T, other @ deg["left"].T)
    csim[:, np.bincount(given[keep], minlength=k) == 0] = -np.inf
    csim[at, g] = -np.inf
    out = {}
    for name, second in (("student, nearest kept sample", nearest),
                         ("student, nearest centre of squeezed-and-stretched kept samples", csim.argmax(axis=1))):
        pair = np.full((n, 2), -1, np.int64)
        pair[rows, 0], pair[rows, 1] = g, second
        out[name] = pair
    return out


def both_named(pair: np.ndarray, true: np.ndarray, second: np.ndarray, multi: np.ndarray) -> float:
    ok = np.sort(pair, axis=1) == np.sort(np.stack([true, second], axis=1), axis=1)
    return float((ok.all(axis=1) & (pair[:, 0] >= 0))[multi].mean())


def one_seed(seed: int, noise: str, size: str) -> dict[str, float]:
    s = RunSettings(dataset="reid-synth", noise=noise, seed=seed, reid_size=size)
    data = prepare_data(s)
    seen = {}
    library_naming = teacher_module.name_two_people

    def keep_teacher(embed, x, given, two, keep, k):  # what train_teacher names with: record its network
        seen.update(embed=embed, two=two)
        return library_naming(embed, x, given, two, keep, k)

    teacher_module.name_two_people = keep_teacher
    try:
        teacher = teacher_module.train_teacher(s, data)
    finally:
        teacher_module.name_two_people = library_naming
    trainer = student_trainer(s, data, teacher.soft_labels(s.temperature), teacher.kept)
    trainer.fit()
    ds, given, k = data.dataset, data.given_labels, data.dataset.num_classes
    multi = data.noisy.sample_kind == "multi"
    truth = (ds.y_train, data.noisy.second, multi)
    x = trainer.x_train
    two, keep = seen["two"], teacher.kept

    def student_embed(t: torch.Tensor) -> torch.Tensor:
        return trainer.embed(t)[0]

    pairs = {"teacher, nearest centre": name_two_people(seen["embed"], x, given, two, keep, k),
             "student, nearest centre (default)": name_two_people(student_embed, x, given, two, keep, k),
             **variants(student_embed, x, given, two, keep, k)}
    return {name: both_named(pairs[name], *truth) for name in WAYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--noise", default="symmetric:0.2+outlier:0.1+multi:0.05")
    parser.add_argument("--reid-size", default=RunSettings().reid_size, help="small: a quick check")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = {}
    print("seed  " + "  ".join(f"{w[:28]:>28}" for w in WAYS), flush=True)
    for seed in args.seeds:
        rows[seed] = one_seed(seed, args.noise, args.reid_size)
        print(f"{seed:>4}  " + "  ".join(f"{rows[seed][w]:>28.3f}" for w in WAYS), flush=True)
    mean = {w: float(np.mean([r[w] for r in rows.values()])) for w in WAYS}
    print("mean  " + "  ".join(f"{mean[w]:>28.3f}" for w in WAYS))
    print(json.dumps({"noise": args.noise, "rows": {str(k): v for k, v in rows.items()}, "mean": mean,
                      "seconds": time.perf_counter() - start}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
