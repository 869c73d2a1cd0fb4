"""Datasets fatviz trains on, read from local files (mnist, fashion-mnist and cifar10 are fetched into
the data folder only on request: `--download` or the sidebar's checkbox, see fatviz.data.download).

Every loader returns a `Dataset` with float32 model inputs (vectors standardised, images
scaled to [0, 1] then normalised per channel, all with train statistics), int64 labels
0..K-1, and uint8 copies of the images for display.

Subsampling (`subsample=N`) keeps N train samples, stratified by class (at least two per
class, since a triplet needs a positive), and min(test size, max(N // 3, 100)) test
samples, stratified too: N // 3 matches the default 25 % test fraction, and the floor of
100 keeps retrieval metrics from resting on a handful of queries. Market-1501 is
subsampled by identity instead (whole identities kept, see `_identity_subsample`), because
a few images of every identity would leave almost no positives per anchor.

`DATASETS` is the registry of loaders: each entry says what it loads, whether it needs a
local folder and what that folder holds. Files are treated as untrusted: headers are
checked before data is read, reads stop at what the header promises (a small gzip bomb
stays small), pickles may only build numpy arrays, and oversized images are skipped; a bad
file gives one FatvizError or a note, never a traceback (the readers are in fatviz.data.readers).

One module for one concept, "a dataset as a split ready for a model": one small loader per
layout (digits, blobs, IDX, CIFAR-10, ImageFolder, Market-1501), all sharing the sampling,
splitting and normalising above them; the file reading lives in fatviz.data.readers and the
generated ReID set in fatviz.data.reid_synth.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from fatviz.data.readers import (
    IMAGE_EXTENSIONS,
    MAX_SIDE,
    MIN_SIDE,
    cifar_batch,
    describe,
    image_files,
    read_idx,
    read_kept,
    read_pickle,
    skip_note,
)
from fatviz.errors import FatvizError
from fatviz.registry import Registry

_TEST_FLOOR = 100  # smallest test set a subsample keeps (see module docstring)

# The sets fatviz.data.download fetches on request, and what a missing one's message suggests.
DOWNLOADABLE = ("mnist", "fashion-mnist", "cifar10")
FETCH_HINT = "Pass --download (in the app: tick Download if missing) to fetch it"
_DIGIT_NAMES = [str(k) for k in range(10)]
_FASHION_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_LAYOUT = (  # .format(folder=...)
    "{folder}/raw/ with " + ", ".join(_IDX_FILES[:-1]) + f" and {_IDX_FILES[-1]} (or .gz), as torchvision saves them"
)
_FOLDER_LAYOUT = "one sub-folder per class with images inside (DATA_ROOT/CLASS/IMAGE.png)"
_MARKET_LAYOUT = (
    "bounding_box_train/, query/ and bounding_box_test/ with images named "
    "IDENTITY_cCAMERA..., e.g. 0002_c1s1_000451_03.jpg"
)

_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_MARKET_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")
_MARKET_MAX_ID = 10**6  # Market-1501 numbers 1501 identities, DukeMTMC-reID about 7000
_MARKET_MAX_CAMERA = 100  # 6 in Market-1501, 8 in DukeMTMC-reID


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split ready for a model, plus display images and ReID metadata."""

    name: str
    kind: str  # "vector" or "image"
    x_train: np.ndarray  # float32 (N, D) or (N, C, H, W)
    y_train: np.ndarray  # int64, 0..K-1 contiguous
    x_test: np.ndarray
    y_test: np.ndarray  # int64; for market1501 unseen identities get ids >= K
    class_names: list[str]
    images_train: np.ndarray | None = None  # uint8 (N, H, W) or (N, H, W, 3) for display
    images_test: np.ndarray | None = None
    cam_test: np.ndarray | None = None  # market1501: camera id per test sample
    is_query_test: np.ndarray | None = None  # market1501: True for query, False for gallery
    notes: tuple[str, ...] = field(default=())  # what loading changed (skips, subsampling)
    # A user's own table (fatviz.data.user_data): the labels it came with when it also says the truth
    # (y_train is then the truth), its row ids for exports, and whether any truth is known at all.
    given_train: np.ndarray | None = None
    ids_train: np.ndarray | None = None
    ids_test: np.ndarray | None = None
    truth_known: bool = True

    @property
    def num_classes(self) -> int:
        """Number of train classes K."""
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input."""
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True)
class BlobSpec:
    """Gaussian clusters in `dim` dimensions, optionally with far-away outliers."""

    n_classes: int = 6
    n_per_class: int = 100
    dim: int = 2
    spread: float = 1.0  # cluster standard deviation
    separation: float = 5.0  # scale of the cluster centres
    outlier_fraction: float = 0.0  # share of points moved far away, keeping their label


# --------------------------------------------------------------------------- sampling


def _allocate(counts: np.ndarray, n: int, floor: int) -> np.ndarray:
    """Per-class sample counts summing to n, proportional to counts, at least `floor` each."""
    quota = n * counts / counts.sum()
    take = np.minimum(np.maximum(np.floor(quota).astype(np.int64), floor), counts)
    # Largest-remainder rounding; ties go to the lower class index, so it is deterministic.
    while take.sum() < n:
        gap = np.where(take < counts, quota - take, -np.inf)
        take[np.argmax(gap)] += 1
    while take.sum() > n:
        excess = np.where(take > np.minimum(floor, counts), take - quota, -np.inf)
        take[np.argmax(excess)] -= 1
    return take


def _stratified_pick(y: np.ndarray, n: int, seed: int, floor: int = 0) -> np.ndarray:
    """Sorted indices of n samples, stratified by label, deterministic given the seed."""
    if n >= len(y):
        return np.arange(len(y))
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    if n >= len(classes):
        floor = max(floor, 1)
    take = _allocate(counts, n, floor)
    rng = np.random.default_rng(seed)
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picked = [
        rng.choice(order[s:s + c], size=t, replace=False)
        for s, c, t in zip(starts, counts, take, strict=False)
        if t
    ]
    return np.sort(np.concatenate(picked))


def visualisation_indices(y: np.ndarray, max_points: int = 2000, seed: int = 0) -> np.ndarray:
    """A fixed, stratified, sorted subset of at most max_points indices for every snapshot."""
    if max_points < 1:
        raise FatvizError(f"max_points must be at least 1, got {max_points}.")
    return _stratified_pick(np.asarray(y), max_points, seed)


def _subsample(
    y_train: np.ndarray, y_test: np.ndarray, subsample: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Train and test indices after stratified subsampling, and a note saying what was cut."""
    if subsample is None or subsample >= len(y_train):
        return np.arange(len(y_train)), np.arange(len(y_test)), ()
    num_classes = len(np.unique(y_train))
    if subsample < 2 * num_classes:
        raise FatvizError(
            f"subsample={subsample} is too small for {num_classes} classes: a triplet needs "
            f"at least two samples per class, so use at least {2 * num_classes}."
        )
    idx_train = _stratified_pick(y_train, subsample, seed, floor=2)
    idx_test = _stratified_pick(y_test, max(subsample // 3, _TEST_FLOOR), seed + 1)
    note = (
        f"subsampled to {len(idx_train)} of {len(y_train)} train and "
        f"{len(idx_test)} of {len(y_test)} test samples (stratified, seed {seed})"
    )
    return idx_train, idx_test, (note,)


def _split(
    y: np.ndarray, test_fraction: float, seed: int, class_names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices via sklearn, with user-readable errors."""
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(class_names))
    if counts.min() < 2:
        raise FatvizError(
            f"Class {class_names[int(counts.argmin())]!r} has {counts.min()} sample(s): "
            "every class needs at least two to be split into train and test."
        )
    n_test = int(np.ceil(test_fraction * len(y)))
    if n_test < len(class_names) or len(y) - n_test < len(class_names):
        raise FatvizError(
            f"test_fraction={test_fraction} gives {n_test} test and {len(y) - n_test} train "
            f"samples for {len(class_names)} classes: both sides need at least one per "
            "class, so add samples or change test_fraction."
        )
    return train_test_split(
        np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=seed
    )


def _check_classes(class_names: list[str], what: str) -> None:
    if len(class_names) < 2:
        raise FatvizError(
            f"{what} has {len(class_names)} class(es): a triplet needs at least two classes."
        )


# --------------------------------------------------------------------------- normalising


def _standardise(x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise both splits with train statistics; constant features map to 0."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0  # constant pixels (digits' borders) would divide by zero
    return (
        ((x_train - mean) / std).astype(np.float32),
        ((x_test - mean) / std).astype(np.float32),
    )


def _to_nchw(images: np.ndarray) -> np.ndarray:
    return images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


def _normalise_images(
    train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 display images -> float32 (N, C, H, W): scaled to [0, 1], normalised per channel."""
    train_c, test_c = _to_nchw(train), _to_nchw(test)
    values = np.arange(256) / 255.0
    scale, shift = [], []
    channels = train_c.shape[1]
    # Exact per-channel statistics from 256-bin histograms, without a float copy; chunks
    # keep bincount's index copy small (on all of CIFAR it costs seconds).
    hist = np.zeros((channels, 256))
    step = max(1, 2**19 // int(np.prod(train_c.shape[2:])))
    for start in range(0, len(train_c), step):
        chunk = train_c[start:start + step]
        for c in range(channels):
            hist[c] += np.bincount(chunk[:, c].ravel(), minlength=256)
    for c in range(channels):
        count = max(hist[c].sum(), 1.0)
        mean = (hist[c] * values).sum() / count
        std = np.sqrt((hist[c] * (values - mean) ** 2).sum() / count) or 1.0
        scale.append(1.0 / (255.0 * std))
        shift.append(-mean / std)
    scale_b = np.array(scale, np.float32)[None, :, None, None]
    shift_b = np.array(shift, np.float32)[None, :, None, None]
    out = []
    for images in (train_c, test_c):
        x = np.ascontiguousarray(images, dtype=np.float32)
        x *= scale_b  # in place: CIFAR's float copy alone is 600 MB
        x += shift_b
        out.append(x)
    return out[0], out[1]


def _image_dataset(
    name: str,
    images_train: np.ndarray,
    y_train: np.ndarray,
    images_test: np.ndarray,
    y_test: np.ndarray,
    class_names: list[str],
    notes: tuple[str, ...] = (),
    **extra: np.ndarray,
) -> Dataset:
    x_train, x_test = _normalise_images(images_train, images_test)
    return Dataset(
        name=name,
        kind="image",
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_test=x_test,
        y_test=y_test.astype(np.int64),
        class_names=class_names,
        images_train=images_train,
        images_test=images_test,
        notes=notes,
        **extra,
    )


def _vector_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    images: np.ndarray | None,
    seed: int,
    test_fraction: float,
    subsample: int | None,
) -> Dataset:
    train, test = _split(y, test_fraction, seed, class_names)
    keep_train, keep_test, notes = _subsample(y[train], y[test], subsample, seed)
    train, test = train[keep_train], test[keep_test]
    x_train, x_test = _standardise(x[train].astype(np.float64), x[test].astype(np.float64))
    return Dataset(
        name=name,
        kind="vector",
        x_train=x_train,
        y_train=y[train].astype(np.int64),
        x_test=x_test,
        y_test=y[test].astype(np.int64),
        class_names=class_names,
        images_train=None if images is None else images[train],
        images_test=None if images is None else images[test],
        notes=notes,
    )


# --------------------------------------------------------------------------- loaders


def _load_digits(*, seed: int, test_fraction: float, subsample: int | None, **_: object) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    y = digits.target.astype(np.int64)
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    names = [str(k) for k in range(10)]
    return _vector_dataset(
        "digits", digits.data, y, names, images, seed, test_fraction, subsample
    )


def _load_blobs(
    *, blobs: BlobSpec | None, seed: int, test_fraction: float, subsample: int | None, **_: object
) -> Dataset:
    spec = blobs or BlobSpec()
    if spec.n_classes < 2:
        raise FatvizError("Blobs need n_classes >= 2: a triplet needs at least two classes.")
    if spec.n_per_class < 2 or spec.dim < 1:
        raise FatvizError("Blobs need n_per_class >= 2 and dim >= 1.")
    if spec.spread <= 0 or spec.separation < 0:
        raise FatvizError("Blobs need spread > 0 and separation >= 0.")
    if not 0.0 <= spec.outlier_fraction < 1.0:
        raise FatvizError(
            f"Blob outlier_fraction {spec.outlier_fraction} is outside [0, 1)."
        )
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=spec.separation, size=(spec.n_classes, spec.dim))
    y = np.repeat(np.arange(spec.n_classes, dtype=np.int64), spec.n_per_class)
    x = centres[y] + rng.normal(scale=spec.spread, size=(len(y), spec.dim))
    outlier = rng.random(len(y)) < spec.outlier_fraction
    if outlier.any():
        # Outliers sit 2-3 centre scales from their own centre, in a random direction.
        direction = rng.normal(size=(int(outlier.sum()), spec.dim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        distance = rng.uniform(2.0, 3.0, size=(len(direction), 1)) * max(
            spec.separation, 3.0 * spec.spread
        )
        x[outlier] = centres[y[outlier]] + direction * distance
    names = [f"blob {k}" for k in range(spec.n_classes)]
    return _vector_dataset("blobs", x, y, names, None, seed, test_fraction, subsample)


# IDX files are read without trusting their header: the header is parsed and checked first,
# then exactly the promised bytes are read (decompressed in a stream for .gz), so a small
# file that claims or inflates to gigabytes is refused before it can fill memory.
def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(
    name: str, folder_name: str, class_names: list[str], *,
    data_root: Path, seed: int, subsample: int | None, **_: object,
) -> Dataset:
    root = data_root
    # Accept the parent of torchvision's folder, the folder itself, or its raw/ folder.
    candidates = (root / folder_name / "raw", root / "raw", root, root / folder_name)
    raw_dir = next((c for c in candidates if _find_file(c, _IDX_FILES[0])), None)
    if raw_dir is None:
        raise FatvizError(
            f"{folder_name} not found under {root}: expected "
            f"{root / folder_name / 'raw' / _IDX_FILES[0]} (or .gz), with "
            f"{', '.join(_IDX_FILES[1:])} beside it. {FETCH_HINT} (or copy "
            f"torchvision's {folder_name} folder there)."
        )
    paths = []
    for stem in _IDX_FILES:
        path = _find_file(raw_dir, stem)
        if path is None:
            raise FatvizError(f"{raw_dir / stem} (or .gz) is missing: copy it from {folder_name}.")
        paths.append(path)
    splits = []
    for image_path, label_path in (paths[:2], paths[2:]):
        # Labels first: their count bounds how much of the image file is read.
        labels = read_idx(label_path, 1)
        if labels.max() >= len(class_names):
            raise FatvizError(
                f"{label_path} holds label {labels.max()}, expected 0..{len(class_names) - 1}."
            )
        splits.append((read_idx(image_path, 3, count=len(labels)), labels))
    (img_tr, y_tr), (img_te, y_te) = splits
    keep_tr, keep_te, notes = _subsample(y_tr, y_te, subsample, seed)
    return _image_dataset(
        name, img_tr[keep_tr], y_tr[keep_tr], img_te[keep_te], y_te[keep_te],
        list(class_names), notes,  # a copy: the names are a module constant
    )


def _load_cifar10(*, data_root: Path, seed: int, subsample: int | None, **_: object) -> Dataset:
    root = data_root
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (root / "data_batch_1").is_file():
        folder = root
    needed = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FatvizError(
            f"CIFAR-10 not found under {root}: expected {folder}/ with {', '.join(missing)}. "
            f"{FETCH_HINT} (or unpack cifar-10-python.tar.gz there)."
        )
    meta_path = folder / "batches.meta"
    raw_names = read_pickle(meta_path).get("label_names")
    if not isinstance(raw_names, list | tuple) or not all(isinstance(n, bytes | str) for n in raw_names):
        raise FatvizError(
            f"{meta_path} lacks 'label_names' (a list of class names; found "
            f"{describe(raw_names)}); copy it again."
        )
    names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in raw_names]
    _check_classes(names, f"{meta_path} label_names")
    parts = [cifar_batch(folder / f"data_batch_{i}", len(names)) for i in range(1, 6)]
    img_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    img_te, y_te = cifar_batch(folder / "test_batch", len(names))
    keep_tr, keep_te, notes = _subsample(y_tr, y_te, subsample, seed)
    return _image_dataset(
        "cifar10", img_tr[keep_tr], y_tr[keep_tr], img_te[keep_te], y_te[keep_te],
        names, notes,
    )


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        height = width = 0
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise FatvizError(
            f"image_size must be (height, width) in pixels, each {MIN_SIDE}..{MAX_SIDE} "
            f"(the small CNN halves an image three times), got {image_size}."
        )
    return height, width


def _load_folder(
    *, data_root: Path, seed: int, test_fraction: float, subsample: int | None,
    image_size: tuple[int, int] | None, **_: object,
) -> Dataset:
    root = data_root
    size = _check_image_size(image_size or (32, 32))
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = [d.name for d in class_dirs]
    _check_classes(class_names, f"{root} (expected {_FOLDER_LAYOUT})")
    paths, labels = [], []
    for k, folder in enumerate(class_dirs):
        files = image_files(folder)
        if not files:
            raise FatvizError(
                f"Class folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
                "add some or remove the folder."
            )
        paths += files
        labels += [k] * len(files)
    y = np.array(labels, np.int64)
    train, test = _split(y, test_fraction, seed, class_names)
    keep_train, keep_test, notes = _subsample(y[train], y[test], subsample, seed)
    train, test = train[keep_train], test[keep_test]
    skipped: list[Path] = []
    img_tr, ok_tr = read_kept([paths[i] for i in train], size, skipped)
    img_te, ok_te = read_kept([paths[i] for i in test], size, skipped)
    notes += skip_note(skipped, len(train) + len(test))
    y_tr, y_te = y[train][ok_tr], y[test][ok_te]
    empty = np.flatnonzero(np.bincount(y_tr, minlength=len(class_names)) == 0)
    if len(empty):
        folder = class_dirs[empty[0]]
        example = next((p for p in skipped if folder in p.parents), folder)
        raise FatvizError(
            f"Class {folder.name!r} has no readable train image after skipping unreadable "
            f"files (e.g. {example}): add images to that folder."
        )
    return _image_dataset("folder", img_tr, y_tr, img_te, y_te, class_names, notes)


def _market_files(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Image paths, identities and cameras of one Market-1501 folder, junk (-1) dropped."""
    paths, ids, cams = [], [], []
    for path in image_files(folder):
        match = _MARKET_NAME.match(path.name)
        if match is None:
            raise FatvizError(
                f"{path} does not follow Market-1501 naming IDENTITY_cCAMERA..., e.g. "
                "0002_c1s1_000451_03.jpg: rename or remove it."
            )
        identity, camera = int(match.group(1)), int(match.group(2))
        if identity == -1:
            continue  # junk boxes: the benchmark ignores them
        if not (0 <= identity < _MARKET_MAX_ID and 0 <= camera < _MARKET_MAX_CAMERA):
            raise FatvizError(
                f"{path} names identity {match.group(1)} and camera {match.group(2)}: Market-1501 "
                f"identities are -1 (junk) or 0..{_MARKET_MAX_ID - 1} and cameras "
                f"0..{_MARKET_MAX_CAMERA - 1}, as in 0002_c1s1_000451_03.jpg; rename or remove it."
            )
        paths.append(path)
        ids.append(identity)
        cams.append(camera)
    return paths, np.array(ids, np.int64), np.array(cams, np.int64)


def _identity_subsample(
    ids: np.ndarray, n: int, seed: int, always: np.ndarray | None = None
) -> np.ndarray:
    """Sorted indices of whole identities drawn at random until about n samples are kept.

    The last identity drawn is trimmed so exactly n remain (but never below two images).
    `always` marks samples (distractors) kept in proportion to the identities kept.
    """
    rng = np.random.default_rng(seed)
    pool = np.ones(len(ids), bool) if always is None else ~always
    if n >= len(ids):
        return np.arange(len(ids))
    order = rng.permutation(np.unique(ids[pool]))
    kept: list[np.ndarray] = []
    total = 0
    for identity in order:
        members = np.flatnonzero(pool & (ids == identity))
        room = n - total
        if len(members) > room:
            if room >= 2:
                kept.append(rng.choice(members, size=room, replace=False))
                total += room
            break
        kept.append(members)
        total += len(members)
        if total >= n:
            break
    picked = np.concatenate(kept) if kept else np.array([], np.int64)
    if always is not None and always.any():
        share = total / max(int(pool.sum()), 1)
        extra = np.flatnonzero(always)
        picked = np.concatenate(
            [picked, rng.choice(extra, size=round(share * len(extra)), replace=False)]
        )
    return np.sort(picked)


def _load_market(
    *, data_root: Path, seed: int, subsample: int | None, image_size: tuple[int, int] | None,
    **_: object,
) -> Dataset:
    root = data_root
    size = _check_image_size(image_size or (64, 32))
    missing = [f for f in _MARKET_FOLDERS if not (root / f).is_dir()]
    if missing:
        raise FatvizError(
            f"Market-1501 not found under {root}: expected {_MARKET_LAYOUT} there (missing "
            f"{', '.join(missing)}). fatviz has no download for Market-1501: unpack it there."
        )
    tr_paths, tr_ids, _ = _market_files(root / "bounding_box_train")
    # Distractors (0) are nobody in particular: a class of them would teach nothing.
    tr_paths = [p for p, i in zip(tr_paths, tr_ids, strict=False) if i != 0]
    tr_ids = tr_ids[tr_ids != 0]
    q_paths, q_ids, q_cams = _market_files(root / "query")
    g_paths, g_ids, g_cams = _market_files(root / "bounding_box_test")
    if not len(q_ids) or not len(g_ids):
        raise FatvizError(f"Market-1501 under {root} has an empty query/ or bounding_box_test/.")
    te_paths = q_paths + g_paths
    te_ids = np.concatenate([q_ids, g_ids])
    te_cams = np.concatenate([q_cams, g_cams])
    is_query = np.arange(len(te_ids)) < len(q_ids)
    notes: tuple[str, ...] = ()
    if subsample is not None and subsample < len(tr_ids):
        if subsample < 4:
            raise FatvizError(
                f"subsample={subsample} is too small: keep at least two identities with two "
                "images each (4)."
            )
        keep_tr = _identity_subsample(tr_ids, subsample, seed)
        n_test = max(subsample // 3, _TEST_FLOOR)
        keep_te = _identity_subsample(te_ids, n_test, seed + 1, always=te_ids == 0)
        note = (
            f"subsampled by identity to {len(keep_tr)} of {len(tr_ids)} train and "
            f"{len(keep_te)} of {len(te_ids)} test images (seed {seed})"
        )
        notes = (note,)
    else:
        keep_tr, keep_te = np.arange(len(tr_ids)), np.arange(len(te_ids))
    skipped: list[Path] = []
    img_tr, ok_tr = read_kept([tr_paths[i] for i in keep_tr], size, skipped)
    img_te, ok_te = read_kept([te_paths[i] for i in keep_te], size, skipped)
    notes += skip_note(skipped, len(keep_tr) + len(keep_te))
    tr_ids = tr_ids[keep_tr][ok_tr]
    keep_te = keep_te[ok_te]
    train_identities = np.unique(tr_ids)
    class_names = [f"{i:04d}" for i in train_identities]
    _check_classes(class_names, f"{root / 'bounding_box_train'}")
    y_tr = np.searchsorted(train_identities, tr_ids)
    # Test identities seen in training keep their class index; the others (Market's test
    # identities are disjoint from train) and the distractors (0) get ids K, K+1, ...
    te_kept = te_ids[keep_te]
    unseen = np.setdiff1d(np.unique(te_kept), train_identities)
    y_te = np.where(
        np.isin(te_kept, train_identities),
        np.searchsorted(train_identities, te_kept),
        len(train_identities) + np.searchsorted(unseen, te_kept),
    )
    return _image_dataset(
        "market1501", img_tr, y_tr, img_te, y_te, class_names, notes,
        cam_test=te_cams[keep_te], is_query_test=is_query[keep_te],
    )


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset fatviz can load: how to load it, and what a user must provide."""

    name: str
    description: str
    # Called with keyword arguments data_root (a Path, or None unless needs_folder), subsample,
    # seed, test_fraction, blobs, image_size and reid_size (and ignores those it does not read); returns a Dataset.
    load: Callable[..., Dataset]
    needs_folder: bool  # True: data_root must name a local folder holding `layout` (or a file, see `root`)
    layout: str  # what that folder holds, for error messages and the docs
    root: str = "folder"  # what data_root names: a "folder", a "file", or an "upload" held by the app's session
    in_sidebar: bool = True  # offered in the app's dataset choice (an upload appears there once uploaded)
    # (training samples, test samples, input shape) at most, from the settings: what the budget plans
    # for before loading anything. None: unknown until loaded, planned as UNKNOWN_SIZE.
    size: Callable[[Any], tuple[int, int, tuple[int, ...]]] | None = None

    def most(self, settings: Any) -> tuple[int, int, tuple[int, ...]]:
        """(training samples, test samples, input shape) the budget plans for, before `subsample`."""
        return self.size(settings) if self.size is not None else UNKNOWN_SIZE

    @property
    def private(self) -> bool:
        """Data one app session holds (an upload): its runs are never saved on the server, its id never linked."""
        return self.root == "upload"


UNKNOWN_SIZE: tuple[int, int, tuple[int, ...]] = (20000, 5000, (3, 32, 32))
DATASETS: Registry[DatasetSpec] = Registry("dataset")
for _spec in (
    DatasetSpec("digits", "sklearn's 8x8 handwritten digits, as 64-D vectors (1797 samples)",
                _load_digits, False, "", size=lambda s: (1347, 450, (64,))),
    DatasetSpec("blobs", "Gaussian clusters in any dimension, optionally with far outliers",
                _load_blobs, False, "", size=lambda s: (150 * s.blob_classes, 50 * s.blob_classes, (s.blob_dim,))),
    DatasetSpec("mnist", "MNIST handwritten digits, 28x28 grey images",
                partial(_load_idx_dataset, "mnist", "MNIST", _DIGIT_NAMES), True,
                _IDX_LAYOUT.format(folder="MNIST"), size=lambda s: (60000, 10000, (1, 28, 28))),
    DatasetSpec("fashion-mnist", "Fashion-MNIST clothing, 28x28 grey images",
                partial(_load_idx_dataset, "fashion-mnist", "FashionMNIST", _FASHION_NAMES), True,
                _IDX_LAYOUT.format(folder="FashionMNIST"), size=lambda s: (60000, 10000, (1, 28, 28))),
    DatasetSpec("cifar10", "CIFAR-10 objects, 32x32 colour images", _load_cifar10, True,
                "cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta "
                "(the CIFAR-10 python version)", size=lambda s: (50000, 10000, (3, 32, 32))),
    DatasetSpec("folder", "your own images, one sub-folder per class (like torchvision's ImageFolder)",
                _load_folder, True, _FOLDER_LAYOUT),
    DatasetSpec("market1501", "Market-1501 person re-identification crops (query/gallery retrieval)",
                _load_market, True, _MARKET_LAYOUT, size=lambda s: (12936, 19732, (3, 64, 32))),
):
    DATASETS.register(_spec.name, _spec)


def _require_root(spec: DatasetSpec, data_root: str | None) -> Path:
    if data_root is None:
        raise FatvizError(
            f"{spec.name} needs data_root: the folder holding {spec.layout}."
            + (f" {FETCH_HINT}." if spec.name in DOWNLOADABLE else "")
        )
    if spec.root == "upload":
        return Path(data_root)  # an upload's id: fatviz.serve.uploads resolves it
    root = Path(data_root).expanduser()
    if spec.root == "file":
        if not root.is_file():
            raise FatvizError(f"data_root {root} is not a file: expected {spec.layout}.")
        return root
    if not root.is_dir():
        raise FatvizError(f"data_root {root} is not a folder: expected {spec.layout} inside it.")
    return root


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    subsample: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    blobs: BlobSpec | None = None,
    image_size: tuple[int, int] | None = None,
    reid_size: str | None = None,
) -> Dataset:
    """Load a dataset by name from local files (or sklearn/synthetic), split and normalised.

    `test_fraction` applies to digits, blobs and folder (the others ship a split);
    `image_size` (height, width) to folder (default 32x32) and market1501 (default 64x32);
    `reid_size` (a fatviz.data.reid_synth.REID_SIZES name) to reid-synth.
    """
    spec = DATASETS.get(name)
    if not 0.0 < test_fraction < 1.0:
        raise FatvizError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    if subsample is not None and subsample < 1:
        raise FatvizError(f"subsample must be a positive number of samples, got {subsample}.")
    return spec.load(
        data_root=_require_root(spec, data_root) if spec.needs_folder else None,
        subsample=subsample, seed=seed, test_fraction=test_fraction, blobs=blobs,
        image_size=image_size, reid_size=reid_size,
    )
