"""Helpers shared by several test modules: reference centroids, the small 2-D point set, a fake DistillResult.

Test modules import them as `from helpers import ...` (pytest puts tests/ on the path, see
pyproject.toml), so no test module imports another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from fatviz.settings import RunSettings

# -- centroids (tests/test_centroids.py, tests/test_losses.py)


def unit(v: torch.Tensor) -> torch.Tensor:
    """v / |v| (on the autograd graph), with the zero vector left at zero."""
    n = torch.norm(v)
    return v / n if n.item() > 0 else torch.zeros_like(v)


def reference_centroids(features: torch.Tensor, labels: list[int], option: str, num_classes: int,
                        weights: list[float] | None = None) -> dict[str, list]:
    """The docs/METHOD.md section 3 table written out per class with plain loops (float64)."""
    feats = [features[i].double() for i in range(features.shape[0])]
    w = [1.0] * len(feats) if weights is None else [float(v) for v in weights]
    anchors = feats if option == "mean" else [unit(f) for f in feats]
    out: dict[str, list] = {"centres": [], "counts": [], "present": [], "radius": [], "mean_distance": []}
    for k in range(num_classes):
        members = [i for i in range(len(feats)) if labels[i] == k and w[i] > 0]
        total = sum(w[i] for i in members)
        if not members:
            out["centres"].append(torch.zeros(features.shape[1], dtype=torch.float64))
            out["counts"].append(0.0)
            out["present"].append(False)
            out["radius"].append(0.0)
            out["mean_distance"].append(0.0)
            continue
        summed = feats if option in ("mean", "norm-mean") else [unit(f) for f in feats]
        centre = sum(w[i] * summed[i] for i in members) / total
        if option in ("norm-mean", "norm-mean-norm"):
            centre = unit(centre)
        dists = [float(torch.norm(anchors[i] - centre)) for i in members]
        out["centres"].append(centre)
        out["counts"].append(total)
        out["present"].append(True)
        out["radius"].append(max(dists))
        out["mean_distance"].append(sum(w[i] * d for i, d in zip(members, dists, strict=False)) / total)
    return out


# -- the bound's 2-D teaching set (tests/test_bound_view.py, tests/test_figures_bound.py)

# Three small classes in 2-D, chosen so that the hardest triplet has a positive loss.
POINTS = np.array([[2.0, 0.0], [3.0, 1.0], [1.0, -1.5],      # class 0
                   [0.0, 2.0], [-1.0, 3.0], [2.5, 0.5],      # class 1 (the last sits inside class 0)
                   [-2.0, -2.0], [-3.0, -1.0]])              # class 2
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])


# -- a DistillResult-shaped object (tests/test_figures_labels.py, tests/test_app_pages.py)


@dataclass(eq=False)
class FakeDistillResult:
    """The fields of fatviz.distill.DistillResult that pages and figures read."""

    settings: RunSettings
    table: pd.DataFrame
    rounds: list[dict]
    report: dict[str, float]
    per_class: pd.DataFrame
    confusion: pd.DataFrame
    baselines: pd.DataFrame
    student: SimpleNamespace
    notes: list[str] = field(default_factory=list)

    def to_csv(self) -> str:
        """The per-sample table as CSV."""
        return self.table.to_csv(index=False)


def fake_result(n: int = 60, k: int = 3, seed: int = 0, settings: RunSettings | None = None) -> FakeDistillResult:
    """A DistillResult-shaped object whose numbers follow from a seeded random table."""
    rng = np.random.default_rng(seed)
    true = np.arange(n) % k
    flipped = rng.random(n) < 0.3
    given = np.where(flipped, (true + 1) % k, true)
    # The teacher catches most flips and raises a few false alarms.
    flagged = (flipped & (rng.random(n) < 0.8)) | (~flipped & (rng.random(n) < 0.1))
    teacher = np.where(flagged & flipped, true, given)
    score = np.round(np.where(flagged, rng.uniform(0.0, 0.5, n), rng.uniform(0.5, 1.0, n)), 4)
    table = pd.DataFrame({
        "index": np.arange(n), "true_label": true, "given_label": given, "teacher_label": teacher, "score": score,
        "flagged": flagged, "round_discarded": np.where(flagged, 1, -1), "was_flipped": flipped,
        "cleanlab_flagged": flipped & (rng.random(n) < 0.5)})
    tp = int((flagged & flipped).sum())
    precision, recall = tp / flagged.sum(), tp / flipped.sum()
    kept_per_class = [int(((given == c) & ~flagged).sum()) for c in range(k)]
    first = [int((given == c).sum()) - 1 for c in range(k)]  # round 0 doubts one sample per class
    rounds = [{"round": 0, "trained_on": n, "kept": sum(first), "kept_per_class": first, "epochs": 2},
              {"round": 1, "trained_on": sum(first), "kept": sum(kept_per_class), "kept_per_class": kept_per_class,
               "epochs": 1}]
    report = {"flag_precision": precision, "flag_recall": recall, "flag_f1": 2 * precision * recall / (precision + recall),
              "kept_label_precision": float((given == true)[~flagged].mean()), "n_flagged": float(flagged.sum()),
              "n_flipped": float(flipped.sum()), "cleanlab_precision": 0.5, "cleanlab_recall": 0.4,
              "cleanlab_f1": 0.444, "cleanlab_n_flagged": 9.0, "student_precision_at_1": 0.9, "student_map": 0.8,
              "baseline_precision_at_1": 0.7, "baseline_map": 0.6, "seconds": 1.5}
    confusion = (pd.DataFrame({"given_label": given, "teacher_label": teacher, "true_label": true})
                 .value_counts(sort=False).rename("count").reset_index())
    per_class = pd.DataFrame({"class": range(k), "n": [int((given == c).sum()) for c in range(k)],
                              "n_flipped": 0, "n_flagged": 0, "precision": 1.0, "recall": 1.0, "f1": 1.0})
    baselines = pd.DataFrame({"precision_at_1": [0.9, 0.7, 0.6, 0.65], "map": [0.8, 0.6, 0.5, 0.55],
                              "nmi": [0.7, 0.5, 0.4, 0.45], "seconds": [1.0, 0.5, 0.5, 0.4]},
                             index=["student", "fat (noisy labels)", "batch-hard (noisy labels)",
                                    "cross-entropy (noisy labels)"])
    names = [str(c) for c in range(k)]
    return FakeDistillResult(settings or RunSettings(), table, rounds, report, per_class, confusion, baselines,
                             SimpleNamespace(class_names=names), ["a synthetic result"])
