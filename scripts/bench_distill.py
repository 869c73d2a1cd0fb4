"""Benchmark label distillation on digits: teacher vs confident learning, student vs noisy-label baselines.

    python scripts/bench_distill.py [--dataset digits] [--seeds 0 1 2] [--noises symmetric:0.2 ...]
                                    [--cv-epochs 3 5] [--baselines all] [--images 5000] [--clean]

The study of docs/DISTILL_STUDY.md (each noise kind alone and the three together, 3 seeds):

    python scripts/bench_distill.py --dataset reid-synth --seeds 0 1 2 --baselines fat --clean \
        --noises symmetric:0.2+outlier:0.1+multi:0.05 symmetric:0.2 outlier:0.1 multi:0.05

`--clean` also trains the student's settings on the clean labels (noise none) once per row, the
ceiling the noisy runs are read against. Each row gives the flag F1 on composites (2p-F1), the
share of composites whose soft label's top two are both their people (top2) and, on ReID data,
rank-1 and mAP of the student and of FAT on the noisy labels (NaN elsewhere).

`--images N` runs on N synthetic 28x28 stroke images (scripts/bench_real.py's, 1,000 test
images) instead of --dataset, and for each row also times one 10-epoch `fatviz train` on the
same noisy data, so the row shows what the distillation costs in trainings (target: at most
6x, issue "Real images at the speed of a hand-written loop").

Each setting runs `fatviz.distill.run_distillation` with default settings (only noise,
seed, and the comparisons' cv_epochs and baselines change) and prints one table row, with
the seconds of each phase; the last stdout line is one JSON object with every row and
whether the targets hold: the teacher's flag F1 at least confident learning's in every
row, and the student's precision@1 above FAT trained on the noisy labels at 40 % noise.
Several --cv-epochs values compare confident learning's F1 across them on the same
noise and seeds (the teacher and the student do not read cv_epochs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_real, beside this script

from fatviz.catalogue import BASELINE_SETS
from fatviz.distill import BASELINES, json_ready, run_distillation
from fatviz.settings import RunSettings

NOISES = ("symmetric:0.2", "symmetric:0.4", "pairflip:0.2", "pairflip:0.4")
COLUMNS = (  # (header, report or baselines key, width)
    ("noise", "noise", 14), ("seed", "seed", 5), ("cv-ep", "cv_epochs", 5),
    ("T-P", "flag_precision", 6), ("T-R", "flag_recall", 6), ("T-F1", "flag_f1", 6),
    ("CL-P", "cleanlab_precision", 6), ("CL-R", "cleanlab_recall", 6), ("CL-F1", "cleanlab_f1", 6),
    ("student", "student", 8), ("fat-noisy", "fat (noisy labels)", 10),
    ("bh-noisy", "batch-hard (noisy labels)", 9), ("ce-noisy", "cross-entropy (noisy labels)", 9),
    ("t-s", "teacher_seconds", 6), ("st-s", "student_seconds", 6), ("cl-s", "cleanlab_seconds", 6),
    ("bl-s", "baselines_seconds", 6), ("s", "seconds", 6),
    ("2p-F1", "flag_f1_multi", 6), ("top2", "multi_top2_both", 6),
    ("S-r1", "student_cmc_1", 6), ("B-r1", "baseline_cmc_1", 6), ("S-mAP", "student_map", 6),
    ("B-mAP", "baseline_map", 6),
)
CLEAN_COLUMNS = (("C-P@1", "clean_precision_at_1", 6), ("C-r1", "clean_cmc_1", 6), ("C-mAP", "clean_map", 6))
IMAGE_COLUMNS = (("train-s", "train_seconds", 8), ("x train", "trainings", 8))


def image_data(settings: RunSettings, n: int):
    """N synthetic 28x28 stroke images with the settings' label noise (as prepare_data adds it)."""
    from bench_real import stroke_images

    from fatviz.train import prepare

    return prepare(stroke_images(n, 1000, seed=settings.seed).dataset, settings)


def train_seconds(settings: RunSettings, data) -> float:
    """One 10-epoch `fatviz train` of these settings on this data (snapshots every epoch, as the CLI)."""
    from fatviz.train import Trainer

    t = time.perf_counter()
    Trainer(replace(settings, epochs=10), data).fit()
    return time.perf_counter() - t


def clean_scores(settings: RunSettings, images: int = 0) -> dict[str, float]:
    """Test precision@1, rank-1 (NaN off ReID data) and mAP of the student's settings trained on the clean labels."""
    from fatviz.train import Trainer

    clean = settings.replace(noise="none")
    trainer = Trainer(clean, image_data(clean, images) if images else None, snapshots=False)
    trainer.fit()
    m = trainer.evaluator.evaluate()
    return {"clean_precision_at_1": m["precision_at_1"], "clean_cmc_1": m.get("cmc_1", math.nan),
            "clean_map": m["map"]}


def bench_row(settings: RunSettings, images: int = 0, clean: bool = False) -> dict[str, float | str]:
    """One distillation: its report plus every model's test precision@1 (and, on images, its cost
    in 10-epoch trainings of the same data; with `clean`, the scores of the same training on clean labels)."""
    data = image_data(settings, images) if images else None
    result = run_distillation(settings, data)
    row: dict[str, float | str] = {"noise": settings.noise, "seed": settings.seed, "cv_epochs": settings.cv_epochs,
                                   **dict.fromkeys(BASELINES, math.nan), **result.report}
    row.update({name: float(p) for name, p in result.baselines["precision_at_1"].items()})
    if images:
        row["train_seconds"] = train_seconds(settings, data)
        row["trainings"] = row["seconds"] / row["train_seconds"]
    if clean:
        row.update(clean_scores(settings, images))
    return row


def format_row(row: dict) -> str:
    """One table line."""
    cells = []
    for _, key, width in COLUMNS + (IMAGE_COLUMNS if "trainings" in row else ()) + (
            CLEAN_COLUMNS if "clean_map" in row else ()):
        value = row[key]
        cells.append(f"{value:>{width}}" if isinstance(value, (str, int)) else
                     f"{value:>{width}.1f}" if key.endswith("seconds") else f"{value:>{width}.3f}")
    return " ".join(cells)


def main(argv: list[str] | None = None) -> int:
    """Run the grid, print the table and a final JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--noises", nargs="+", default=list(NOISES))
    parser.add_argument("--cv-epochs", type=int, nargs="+", default=[RunSettings().cv_epochs],
                        help="epochs per cross-validation fold for confident learning (several: compared)")
    parser.add_argument("--baselines", default="all", choices=BASELINE_SETS.names(),
                        help="models trained on the noisy labels (all: the table's three columns)")
    parser.add_argument("--model", default="auto", help="embedding network (auto: the default for the data)")
    parser.add_argument("--images", type=int, default=0,
                        help="N synthetic 28x28 images instead of --dataset, with the cost in 10-epoch trainings")
    parser.add_argument("--clean", action="store_true", help="also train on the clean labels, once per row")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    columns = COLUMNS + (IMAGE_COLUMNS if args.images else ()) + (CLEAN_COLUMNS if args.clean else ())
    print(" ".join(f"{h:>{w}}" for h, _, w in columns), flush=True)
    rows = []
    for noise in args.noises:
        for cv_epochs in args.cv_epochs:
            for seed in args.seeds:
                dataset = ("mnist", "-") if args.images else (args.dataset, "")
                rows.append(bench_row(RunSettings(dataset=dataset[0], data_root=dataset[1], noise=noise, seed=seed,
                                                  cv_epochs=cv_epochs, baselines=args.baselines, model=args.model),
                                      args.images, args.clean))
                print(format_row(rows[-1]), flush=True)
    if len(args.seeds) > 1:
        print("mean over seeds")
        for noise in args.noises:
            for cv_epochs in args.cv_epochs:
                same = [r for r in rows if r["noise"] == noise and r["cv_epochs"] == cv_epochs]
                print(format_row({**{k: sum(r[k] for r in same) / len(same) for _, k, _ in columns[3:]},
                                  "noise": noise, "seed": "all", "cv_epochs": cv_epochs}))
    flag_wins = [r["flag_f1"] >= r["cleanlab_f1"] for r in rows]
    high = [r for r in rows if str(r["noise"]).endswith(":0.4")]
    student_wins = [r["student"] > r["fat (noisy labels)"] for r in high]
    # The student minus FAT on the noisy labels: rank-1 on ReID data (precision@1 elsewhere) and mAP.
    margins = [(r["student_cmc_1"] - r["baseline_cmc_1"] if math.isfinite(r["student_cmc_1"]) else
                r["student"] - r["fat (noisy labels)"], r["student_map"] - r["baseline_map"]) for r in rows]
    print(f"teacher F1 >= cleanlab F1 in {sum(flag_wins)}/{len(rows)} runs; "
          f"student P@1 > FAT-noisy P@1 in {sum(student_wins)}/{len(high)} runs at 40 % noise; "
          f"student - FAT-noisy, rank-1 (P@1 off ReID) / mAP, worst: {min(m[0] for m in margins):+.3f} / "
          f"{min(m[1] for m in margins):+.3f}; {time.perf_counter() - start:.0f} s in all", file=sys.stderr)
    print(json.dumps(json_ready({"rows": rows, "teacher_beats_cleanlab": all(flag_wins),
                                 "student_beats_fat_noisy_at_40": all(student_wins),
                                 "student_minus_fat_noisy": margins, "seconds": time.perf_counter() - start})))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
