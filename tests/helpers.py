"""Helpers shared by several test modules: reference centroids, the small 2-D point set, a fake DistillResult,
and builders of dataset files in the layouts users have (tests/test_data.py, tests/test_data_fuzz.py).

Test modules import them as `from helpers import ...` (pytest puts tests/ on the path, see
pyproject.toml), so no test module imports another.
"""

from __future__ import annotations

import pickle
import tracemalloc
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fatviz.data import load_dataset
from fatviz.data.readers import write_idx  # noqa: F401  (tests import it from here)
from fatviz.errors import FatvizError
from fatviz.settings import RunSettings

# -- centroids (tests/test_centroids.py, tests/test_losses.py)


# The smallest run that trains every part of the engine in well under a second: 4 Gaussian
# blobs in 6-D, 3 epochs. Tests that need other sizes say how they differ (dataclasses.replace).
TINY = RunSettings(dataset="blobs", blob_classes=4, blob_dim=6, epochs=3, batch_size=64, embedding_dim=8,
                   vis_points=80)


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


# -- dataset files (tests/test_data.py, tests/test_data_fuzz.py)


def make_idx_root(root: Path, folder: str = "MNIST", gz: bool = False, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(60, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(20, dtype=np.uint8) % 10,
    }
    for name, array in arrays.items():
        write_idx(root / folder / "raw" / name, array, gz=gz)
    return arrays


def make_cifar_root(root: Path, protocol: int = 2) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer",
             b"dog", b"frog", b"horse", b"ship", b"truck"]
    batches = {}
    for name, n in [(f"data_batch_{i}", 10) for i in range(1, 6)] + [("test_batch", 20)]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    meta = {b"label_names": names, b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return batches


def save_image(path: Path, seed: int, size: tuple[int, int] = (20, 14)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def make_folder_root(root: Path, per_class: int = 8) -> None:
    for k, name in enumerate(["cat", "ant", "bee"]):
        for i in range(per_class):
            ext = (".png", ".jpg", ".bmp")[i % 3]
            save_image(root / name / f"{i}{ext}", seed=10 * k + i, size=(20 + i, 14 + k))
    (root / "ant" / "readme.txt").write_text("not an image")
    (root / ".hidden").mkdir()


MARKET_TRAIN = [
    "0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0002_c3s1_000101_01.jpg",
    "0007_c1s1_000001_01.jpg", "0007_c4s1_000002_01.jpg",
    "0010_c2s1_000003_01.jpg", "0010_c5s1_000004_01.jpg", "0010_c6s1_000005_01.jpg",
    "-1_c1s1_000006_01.jpg",
]
MARKET_QUERY = ["0001_c1s1_001051_00.jpg", "0003_c2s1_000151_00.jpg"]
MARKET_GALLERY = [
    "0001_c2s1_000001_01.jpg", "0001_c1s1_000002_01.jpg", "0003_c3s1_000003_01.jpg",
    "0000_c1s1_000004_01.jpg", "0000_c6s1_000005_01.jpg",
    "-1_c1s1_000006_01.jpg", "-1_c3s1_000007_01.jpg",
]


def make_market_root(root: Path) -> None:
    for folder, names in (
        ("bounding_box_train", MARKET_TRAIN),
        ("query", MARKET_QUERY),
        ("bounding_box_test", MARKET_GALLERY),
    ):
        for i, name in enumerate(names):
            save_image(root / folder / name, seed=i, size=(64, 128))
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\0\1")  # ignored: not an image


def idx_header(*dims: int, ndim: int | None = None) -> bytes:
    """An IDX header for unsigned bytes of shape `dims` (`ndim` overrides the magic's count)."""
    count = len(dims) if ndim is None else ndim
    return bytes([0, 0, 0x08, count]) + b"".join(d.to_bytes(4, "big") for d in dims)


def write_gzip_bomb(path: Path, header: bytes, zeros: int) -> None:
    """One gzip stream: `header`, then `zeros` zero bytes (200 MB compress to under 1 MB)."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = bytes(2**20)
    with path.open("wb") as handle:
        handle.write(packer.compress(header))
        for _ in range(zeros // len(chunk)):
            handle.write(packer.compress(chunk))
        handle.write(packer.flush())


def refused_with_peak_memory(name: str, root: Path, match: str) -> tuple[str, int]:
    """load_dataset's FatvizError message, and the peak bytes Python and numpy allocated on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(FatvizError, match=match) as err:
            load_dataset(name, data_root=str(root))
        return str(err.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with none of them inside."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- built-in data


# -- a download mirror (tests/test_download.py)


def make_download_mirror(mirror: Path) -> dict[str, dict[str, str]]:
    """Fake mnist, fashion-mnist and cifar10 archives as a mirror serves them (MIRROR/DATASET/ARCHIVE),
    built with the dataset file builders above; each archive's MD5, by dataset and archive name."""
    import hashlib
    import shutil
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as staging:
        for dataset, folder, seed in (("mnist", "MNIST", 0), ("fashion-mnist", "FashionMNIST", 1)):
            make_idx_root(Path(staging), folder, gz=True, seed=seed)
            shutil.copytree(Path(staging) / folder / "raw", mirror / dataset)
        make_cifar_root(Path(staging))
        (Path(staging) / "cifar-10-batches-py" / "readme.html").write_text("<p>not read</p>")
        (mirror / "cifar10").mkdir(parents=True)
        with tarfile.open(mirror / "cifar10" / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(Path(staging) / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return {d.name: {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in d.iterdir()} for d in mirror.iterdir()}


# -- the live embedding chart as the browser holds it (tests/test_app_explorer.py, tests/test_app_pages.py)

_LIVE_SENT = "_live_chart_sent"  # pages/ui/live_chart.py's record of what this session sent each chart


def chart_payloads(at) -> list[dict]:
    """The data each live chart on the page (fatviz/web/live_chart.js) was sent in the last run."""
    import json

    return [json.loads(el.proto.json) for el in at.get("bidi_component")]


def chart_figures(at) -> list[dict]:
    """Every live chart's figure as the browser holds it after the last run: the figure it was sent
    once, and every frame sent since, as {"data", "layout", "frames", "epochs", "live", "show", ...}.

    Mirrors the browser's side of the protocol: frames append where the chart's count ends; a
    payload that starts past that count (the chart would ask again) makes this forget what the
    session sent and rerun, as the chart's "need" trigger does. Call it after every run whose
    charts matter (the mirror lives on the AppTest object)."""
    mirror = at.__dict__.setdefault("_chart_mirror", {})
    out = []
    for payload in chart_payloads(at):
        held = mirror.get(payload["sig"])
        if payload["figure"] is not None and payload["first"] == 0:
            held = {"data": payload["figure"]["data"], "layout": payload["figure"]["layout"], "frames": [],
                    "epochs": []}
        elif held is None or payload["first"] > len(held["frames"]):
            at.session_state[_LIVE_SENT] = {}
            at.run()
            return chart_figures(at)
        skip = len(held["frames"]) - payload["first"]
        held["frames"] += payload["frames"][skip:]
        held["epochs"] += payload["epochs"][skip:]
        held.update({k: payload[k] for k in ("live", "show", "sig", "ranges", "selectable") if k in payload})
        mirror[payload["sig"]] = held
        out.append(held)
    return out


# -- your own data (tests/test_user_data.py, tests/test_browser_upload.py)


def class_zip(classes: int = 3, per_class: int = 12, top: str = "mine", seed: int = 0) -> bytes:
    """A zip of `classes` folders of small PNGs under one top folder, each class its own colour (so it trains)."""
    import io
    import zipfile

    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for k in range(classes):
            colour = rng.integers(0, 256, 3)
            for i in range(per_class):
                pixels = np.clip(colour + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="PNG")
                archive.writestr(f"{top}/class_{k}/img_{i}.png", buffer.getvalue())
        archive.writestr(f"{top}/notes.txt", "not in a class folder")
    return out.getvalue()


def feature_table(n: int = 240, k: int = 4, d: int = 12, seed: int = 0, flip: float = 0.0):
    """Separable features (n x d), their class ids, and given labels with a share `flip` moved to the next class."""
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % k
    x = (rng.normal(size=(k, d)) * 4)[truth] + rng.normal(size=(n, d))
    given = truth.copy()
    moved = rng.random(n) < flip
    given[moved] = (truth[moved] + 1) % k
    return x.astype(np.float32), given, truth


def feature_npz(n: int = 240, k: int = 4, d: int = 12, seed: int = 0, flip: float = 0.0, truth: bool = False) -> bytes:
    """feature_table as .npz bytes (with true_label when `truth`)."""
    import io

    x, given, true = feature_table(n, k, d, seed, flip)
    out = io.BytesIO()
    extra = {"true_label": true} if truth else {}
    np.savez(out, features=x, labels=given, names=np.array([f"row-{i}" for i in range(n)]), **extra)
    return out.getvalue()
