"""Datasets fatviz trains on, read from local files only (fatviz never downloads).

Every loader returns a `Dataset` with float32 model inputs (vectors standardised, images
scaled to [0, 1] then normalised per channel, all with train statistics), int64 labels
0..K-1, and uint8 copies of the images for display.

Subsampling (`subsample=N`) keeps N train samples, stratified by class (at least two per
class, since a triplet needs a positive), and min(test size, max(N // 3, 100)) test
samples, stratified too: N // 3 matches the default 25 % test fraction, and the floor of
100 keeps retrieval metrics from resting on a handful of queries. Market-1501 is
subsampled by identity instead (whole identities kept, see `_identity_subsample`), because
a few images of every identity would leave almost no positives per anchor.
"""

from __future__ import annotations

import gzip
import pickle
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fatviz.errors import FatvizError

DATASETS = ("digits", "blobs", "mnist", "fashion-mnist", "cifar10", "folder", "market1501")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_TEST_FLOOR = 100  # smallest test set a subsample keeps (see module docstring)

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
_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")
_MARKET_FOLDERS = ("bounding_box_train", "query", "bounding_box_test")


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


def _load_digits(seed: int, test_fraction: float, subsample: int | None) -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    y = digits.target.astype(np.int64)
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    names = [str(k) for k in range(10)]
    return _vector_dataset(
        "digits", digits.data, y, names, images, seed, test_fraction, subsample
    )


def _load_blobs(
    spec: BlobSpec, seed: int, test_fraction: float, subsample: int | None
) -> Dataset:
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


def _require_root(name: str, data_root: str | None, layout: str) -> Path:
    if data_root is None:
        raise FatvizError(
            f"{name} needs data_root: the folder holding {layout}. "
            "fatviz never downloads data."
        )
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise FatvizError(f"data_root {root} is not a folder: expected {layout} inside it.")
    return root


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise FatvizError(f"{path} is a damaged gzip file ({err}); copy it again.") from None
    return raw


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (plain or gzip) with `ndim` dimensions."""
    raw = _read_bytes(path)
    if len(raw) < 4 + 4 * ndim or raw[:4] != bytes([0, 0, 0x08, ndim]):
        raise FatvizError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes "
            f"(magic number {raw[:4].hex() or 'missing'}, expected 000008{ndim:02x}); "
            "replace it with the original file."
        )
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    header = 4 + 4 * ndim
    if len(raw) - header != int(np.prod(dims)):
        raise FatvizError(
            f"{path} is truncated: its header promises {dims} but it holds "
            f"{len(raw) - header} bytes of data; copy it again."
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(
    name: str, folder_name: str, class_names: list[str], data_root: str | None,
    seed: int, subsample: int | None,
) -> Dataset:
    layout = f"{folder_name}/raw/{_IDX_FILES[0]} (or .gz)"
    root = _require_root(name, data_root, layout)
    # Accept the parent of torchvision's folder, the folder itself, or its raw/ folder.
    candidates = (root / folder_name / "raw", root / "raw", root, root / folder_name)
    raw_dir = next((c for c in candidates if _find_file(c, _IDX_FILES[0])), None)
    if raw_dir is None:
        raise FatvizError(
            f"{folder_name} not found under {root}: expected "
            f"{root / folder_name / 'raw' / _IDX_FILES[0]} (or .gz), with "
            f"{', '.join(_IDX_FILES[1:])} beside it. fatviz never downloads data; copy "
            f"torchvision's {folder_name} folder there."
        )
    arrays = []
    for stem, ndim in zip(_IDX_FILES, (3, 1, 3, 1), strict=False):
        path = _find_file(raw_dir, stem)
        if path is None:
            raise FatvizError(f"{raw_dir / stem} (or .gz) is missing: copy it from {folder_name}.")
        arrays.append((_read_idx(path, ndim), path))
    (img_tr, _), (y_tr, _), (img_te, _), (y_te, _) = arrays
    for (images, _), (labels, label_path) in ((arrays[0], arrays[1]), (arrays[2], arrays[3])):
        if len(images) != len(labels):
            raise FatvizError(
                f"{label_path} has {len(labels)} labels for {len(images)} images; "
                "the files come from different releases, copy them again."
            )
        if labels.size and labels.max() >= len(class_names):
            raise FatvizError(
                f"{label_path} holds label {labels.max()}, expected 0..{len(class_names) - 1}."
            )
    keep_tr, keep_te, notes = _subsample(y_tr, y_te, subsample, seed)
    return _image_dataset(
        name, img_tr[keep_tr], y_tr[keep_tr], img_te[keep_te], y_te[keep_te],
        class_names, notes,
    )


_PICKLE_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2
})
_PICKLE_NUMPY_MODULES = (
    "numpy.core.multiarray", "numpy._core.multiarray",
    "numpy.core.numeric", "numpy._core.numeric",
)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickle only what CIFAR files hold (dicts, lists, numpy arrays): no code runs."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS or (
            module in _PICKLE_NUMPY_MODULES and name in ("_reconstruct", "scalar", "_frombuffer")
        ):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as handle:
            content = _ArrayUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise FatvizError(
            f"{path} is not a CIFAR-10 python batch ({err}); copy it again from "
            "cifar-10-python.tar.gz."
        ) from None
    if not isinstance(content, dict):
        raise FatvizError(f"{path} is not a CIFAR-10 python batch (no dictionary inside).")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_pickle(path)
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (KeyError, ValueError) as err:
        raise FatvizError(
            f"{path} lacks CIFAR-10 'data' (N x 3072 bytes) or 'labels' ({err}); copy it again."
        ) from None
    if len(data) != len(labels):
        raise FatvizError(f"{path} has {len(labels)} labels for {len(data)} images.")
    return np.ascontiguousarray(data.transpose(0, 2, 3, 1)), labels


def _load_cifar10(data_root: str | None, seed: int, subsample: int | None) -> Dataset:
    layout = "cifar-10-batches-py/data_batch_1..5, test_batch and batches.meta"
    root = _require_root("cifar10", data_root, layout)
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (root / "data_batch_1").is_file():
        folder = root
    needed = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise FatvizError(
            f"CIFAR-10 not found under {root}: expected {folder}/ with {', '.join(missing)}. "
            "fatviz never downloads data; unpack cifar-10-python.tar.gz there."
        )
    meta = _read_pickle(folder / "batches.meta")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get("label_names", [])]
    _check_classes(names, f"{folder / 'batches.meta'} label_names")
    parts = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    img_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    img_te, y_te = _cifar_batch(folder / "test_batch")
    for labels in (y_tr, y_te):
        if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
            raise FatvizError(
                f"CIFAR-10 labels under {folder} go beyond the {len(names)} label_names."
            )
    keep_tr, keep_te, notes = _subsample(y_tr, y_te, subsample, seed)
    return _image_dataset(
        "cifar10", img_tr[keep_tr], y_tr[keep_tr], img_te[keep_te], y_te[keep_te],
        names, notes,
    )


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def _read_images(paths: list[Path], size: tuple[int, int]) -> tuple[np.ndarray, list[Path]]:
    """Decode, convert to RGB and resize to (H, W); returns uint8 images and unreadable paths."""
    height, width = size
    out = np.zeros((len(paths), height, width, 3), np.uint8)
    bad = []
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image.draft("RGB", (width, height))  # JPEG: decode at reduced scale, faster
                out[i] = np.asarray(
                    image.convert("RGB").resize((width, height), Image.BILINEAR)
                )
        except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
            bad.append(path)
    return out, bad


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    if len(image_size) != 2 or min(image_size) < 1:
        raise FatvizError(f"image_size must be (height, width) in pixels, got {image_size}.")
    return int(image_size[0]), int(image_size[1])


def _read_kept(
    paths: list[Path], size: tuple[int, int], skipped: list[Path]
) -> tuple[np.ndarray, np.ndarray]:
    """Read images, appending unreadable ones to `skipped`; returns images and a keep mask."""
    images, bad = _read_images(paths, size)
    skipped.extend(bad)
    bad_set = set(bad)
    keep = np.array([p not in bad_set for p in paths], bool)
    return images[keep], keep


def _skip_note(skipped: list[Path], attempted: int) -> tuple[str, ...]:
    if not skipped:
        return ()
    if len(skipped) * 2 > attempted:
        raise FatvizError(
            f"{len(skipped)} of {attempted} images could not be read (e.g. {skipped[0]}): "
            "check that the folder holds real image files."
        )
    return (f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}",)


def _load_folder(
    data_root: str | None, seed: int, test_fraction: float, subsample: int | None,
    image_size: tuple[int, int],
) -> Dataset:
    layout = "one sub-folder per class with images inside (DATA_ROOT/CLASS/IMAGE.png)"
    root = _require_root("folder", data_root, layout)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    class_names = [d.name for d in class_dirs]
    _check_classes(class_names, f"{root} (expected {layout})")
    paths, labels = [], []
    for k, folder in enumerate(class_dirs):
        files = _image_files(folder)
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
    img_tr, ok_tr = _read_kept([paths[i] for i in train], image_size, skipped)
    img_te, ok_te = _read_kept([paths[i] for i in test], image_size, skipped)
    notes += _skip_note(skipped, len(train) + len(test))
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
    for path in _image_files(folder):
        match = _MARKET_NAME.match(path.name)
        if match is None:
            raise FatvizError(
                f"{path} does not follow Market-1501 naming IDENTITY_cCAMERA..., e.g. "
                "0002_c1s1_000451_03.jpg: rename or remove it."
            )
        identity = int(match.group(1))
        if identity == -1:
            continue  # junk boxes: the benchmark ignores them
        paths.append(path)
        ids.append(identity)
        cams.append(int(match.group(2)))
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
    data_root: str | None, seed: int, subsample: int | None, image_size: tuple[int, int]
) -> Dataset:
    layout = "bounding_box_train/, query/ and bounding_box_test/"
    root = _require_root("market1501", data_root, layout)
    missing = [f for f in _MARKET_FOLDERS if not (root / f).is_dir()]
    if missing:
        raise FatvizError(
            f"Market-1501 not found under {root}: expected {layout} there (missing "
            f"{', '.join(missing)}). fatviz never downloads data; unpack Market-1501 there."
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
    img_tr, ok_tr = _read_kept([tr_paths[i] for i in keep_tr], image_size, skipped)
    img_te, ok_te = _read_kept([te_paths[i] for i in keep_te], image_size, skipped)
    notes += _skip_note(skipped, len(keep_tr) + len(keep_te))
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


def load_dataset(
    name: str,
    *,
    data_root: str | None = None,
    subsample: int | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
    blobs: BlobSpec | None = None,
    image_size: tuple[int, int] | None = None,
) -> Dataset:
    """Load a dataset by name from local files (or sklearn/synthetic), split and normalised.

    `test_fraction` applies to digits, blobs and folder (the others ship a split);
    `image_size` (height, width) to folder (default 32x32) and market1501 (default 64x32).
    """
    if name not in DATASETS:
        raise FatvizError(f"Unknown dataset {name!r}: choose one of {', '.join(DATASETS)}.")
    if not 0.0 < test_fraction < 1.0:
        raise FatvizError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    if subsample is not None and subsample < 1:
        raise FatvizError(f"subsample must be a positive number of samples, got {subsample}.")
    if name == "digits":
        return _load_digits(seed, test_fraction, subsample)
    if name == "blobs":
        return _load_blobs(blobs or BlobSpec(), seed, test_fraction, subsample)
    if name == "mnist":
        names = [str(k) for k in range(10)]
        return _load_idx_dataset("mnist", "MNIST", names, data_root, seed, subsample)
    if name == "fashion-mnist":
        return _load_idx_dataset(
            "fashion-mnist", "FashionMNIST", list(_FASHION_NAMES), data_root, seed, subsample
        )
    if name == "cifar10":
        return _load_cifar10(data_root, seed, subsample)
    if name == "folder":
        size = _check_image_size(image_size or (32, 32))
        return _load_folder(data_root, seed, test_fraction, subsample, size)
    return _load_market(data_root, seed, subsample, _check_image_size(image_size or (64, 32)))
