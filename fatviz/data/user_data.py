"""Your own data: a table of features and labels, or a zip of images in one folder per class, read
as untrusted input and turned into a `Dataset`.

Formats (docs in README.md, "Your own data"):

- `.npz`: arrays `features` (N x D numbers) and `labels` (N whole numbers); optional `names` (N row
  ids, used in exports) and `true_label` (N whole numbers: the truth, when the user knows it).
- `.csv` / `.parquet`: a `label` column of whole numbers, numeric feature columns, and optionally
  `true_label` and an `id` column (row ids); any other text column is refused.
- `.zip` of images: `CLASS/IMAGE.png` (or one top folder above the class folders), PNG/JPEG/BMP/WebP,
  resized to 32 x 32 as the `folder` dataset does.

Nothing is trusted: sizes are checked before anything is read or decompressed (a zip's entry count
and total unpacked size, a `.npy` header's shape, a parquet file's row count), names that climb out
of the archive (`..`, absolute paths) refuse the whole zip, images are decoded under a pixel limit,
pickled arrays are never loaded, and every refusal is one FatvizError naming what was wrong.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from fatviz.data.loaders import DATASETS, Dataset, DatasetSpec, _image_dataset, _split, _standardise, _subsample
from fatviz.data.readers import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, decode_image
from fatviz.errors import FatvizError

TABLE_SUFFIXES = (".npz", ".csv", ".parquet")
UPLOAD_SUFFIXES = (".zip", *TABLE_SUFFIXES)
MAX_UPLOAD_MB = 200  # .streamlit/config.toml's server.maxUploadSize says the same
MAX_ROWS = 200_000
MAX_FEATURES = 4096
MAX_CELLS = 50_000_000  # rows x features: 200 MB as float32
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_UNPACKED = 2**30  # the whole archive, unpacked (entries are read one at a time)
MAX_ZIP_ENTRY = 64 * 2**20  # one entry, unpacked
IMAGE_SIZE = (32, 32)  # what a zip's images are resized to (the `folder` dataset's default)
_TABLE_COLUMNS = ("label", "true_label", "id")
# Where the app's private store (fatviz.serve.uploads) keeps uploads, for the training workers to read by id.
UPLOAD_DIR_ENV = "FATVIZ_UPLOAD_DIR"  # set by the store for the workers it spawns
_ID = re.compile(r"^[0-9a-f]{24}$")
GONE = ("This uploaded data is no longer on the server (the session that uploaded it ended, or the app "
        "restarted): upload the file again. Uploaded data is never part of a link.")


@dataclass(frozen=True, eq=False)
class UserTable:
    """Samples a user brought: features or images, the labels they were given, and what else came along."""

    name: str  # the file's name, for the page
    labels: np.ndarray  # int64 (N,) class index of each given label
    class_names: list[str]  # the user's class ids (or folder names), one per class index
    row_ids: np.ndarray  # str (N,): the user's id of each row (a zip: the image's path in it)
    features: np.ndarray | None = None  # float32 (N, D)
    images: np.ndarray | None = None  # uint8 (N, H, W, 3)
    true_labels: np.ndarray | None = None  # int64 (N,), when the user knows the truth
    notes: tuple[str, ...] = ()

    @property
    def num_samples(self) -> int:
        """N."""
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        """K, the classes of the given labels and the truth together."""
        return len(self.class_names)

    def describe(self) -> str:
        """'your data (NAME, N samples, K classes)', as the dataset choice shows it."""
        return f"your data ({self.name}, {self.num_samples:,} samples, {self.num_classes} classes)"


# --------------------------------------------------------------------------- checks shared by every format


def _check_rows(n: int, d: int, what: str) -> None:
    if n > MAX_ROWS or d > MAX_FEATURES or n * d > MAX_CELLS:
        raise FatvizError(f"{what} holds {n:,} rows x {d:,} features: fatviz takes at most {MAX_ROWS:,} rows, "
                          f"{MAX_FEATURES:,} features and {MAX_CELLS:,} numbers in all. Subsample it first.")
    if n < 4 or d < 1:
        raise FatvizError(f"{what} holds {n} rows x {d} features: a triplet needs at least two classes of two "
                          "samples each, and at least one feature.")


def _whole_numbers(values: np.ndarray, what: str) -> np.ndarray:
    """Labels as int64; one FatvizError when they are not whole numbers."""
    values = np.asarray(values)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if finite.all() and (values == np.round(values)).all() and np.abs(values).max(initial=0) < 2**53:
            return values.astype(np.int64)
        bad = values[~finite | (values != np.round(values))][0].item()
        raise FatvizError(f"{what} must be whole numbers (class ids); found {bad:g}. Number the classes 0, 1, 2, …")
    sample = next(iter(values.ravel()), "")
    raise FatvizError(f"{what} must be whole numbers (class ids), not text such as {str(sample)[:40]!r}: "
                      "number the classes 0, 1, 2, … (keep their names in a separate file).")


def _finite_features(x: np.ndarray, what: str) -> np.ndarray:
    """Features as float32; one FatvizError naming the first row with a NaN or an infinity."""
    if x.dtype.kind not in "iuf":
        raise FatvizError(f"{what} must be numbers, not {x.dtype} values.")
    x = np.asarray(x, np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise FatvizError(f"{what} hold {int(bad.sum()):,} NaN or infinite value(s), in {len(rows):,} row(s), the "
                          f"first in row {int(rows[0])}: fill or drop those rows.")
    return x


def _classes(given: np.ndarray, truth: np.ndarray | None, name: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Given labels (and truth) as indices 0..K-1 over the classes both use; at least two given classes."""
    values = np.unique(given if truth is None else np.concatenate([given, truth]))
    if len(np.unique(given)) < 2:
        raise FatvizError(f"{name} has one class only ({given[0]}): a triplet needs at least two classes.")
    index = np.searchsorted(values, given)
    truth_index = None if truth is None else np.searchsorted(values, truth)
    return index, truth_index, [str(v) for v in values]


def _table(name: str, features: np.ndarray, labels: np.ndarray, truth: np.ndarray | None,
           ids: np.ndarray | None) -> UserTable:
    n = len(features)
    for what, column in (("labels", labels), ("true_label", truth), ("names", ids)):
        if column is not None and len(column) != n:
            raise FatvizError(f"{name}: {what} has {len(column):,} entries but features has {n:,} rows.")
    given = _whole_numbers(labels, f"{name}: the labels")
    true = None if truth is None else _whole_numbers(truth, f"{name}: true_label")
    given, true, class_names = _classes(given, true, name)
    row_ids = np.arange(n).astype(str) if ids is None else np.asarray([str(v)[:100] for v in ids])
    return UserTable(name, given, class_names, row_ids, features=_finite_features(features, f"{name}: the features"),
                     true_labels=true)


# --------------------------------------------------------------------------- tables


def _npz_arrays(data: bytes, name: str) -> dict[str, np.ndarray]:
    """The arrays of an npz, each header checked (shape, no objects) before its data is read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FatvizError(f"{name} is not a readable .npz file (a zip of .npy arrays): it is damaged or truncated, "
                          "save it again with numpy.savez.") from None
    if len(entries) > 16 or sum(e.file_size for e in entries) > 4 * MAX_CELLS + 2**26:
        raise FatvizError(f"{name} holds {len(entries)} arrays unpacking to "
                          f"{sum(e.file_size for e in entries) / 2**20:,.0f} MB: more than a table of at most "
                          f"{MAX_CELLS:,} numbers; keep only features, labels, names and true_label.")
    out = {}
    for entry in entries:
        key = entry.filename.removesuffix(".npy")
        if key not in ("features", "labels", "names", "true_label"):
            continue
        try:
            with archive.open(entry) as stream:
                version = np.lib.format.read_magic(stream)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read_header(stream)  # the header only: shape and type before any data
                if dtype.hasobject:
                    raise FatvizError(f"{name}: {key} is an array of Python objects, which fatviz never unpickles; "
                                      "save numbers (and names as fixed-width text, e.g. names.astype(str)).")
                if math.prod(shape) * max(dtype.itemsize, 1) > 4 * MAX_CELLS + 2**26:
                    raise FatvizError(f"{name}: {key} declares shape {shape}, more than fatviz reads from a table.")
            with archive.open(entry) as stream:
                out[key] = np.lib.format.read_array(stream, allow_pickle=False)
        except FatvizError:
            raise
        except Exception as exc:  # a damaged header or truncated data: numpy raises ValueError, EOFError, ...
            raise FatvizError(f"{name}: the array {key} cannot be read ({type(exc).__name__}): save the file again.") \
                from None
    return out


def _read_npz(data: bytes, name: str) -> UserTable:
    arrays = _npz_arrays(data, name)
    missing = [k for k in ("features", "labels") if k not in arrays]
    if missing:
        raise FatvizError(f"{name} lacks the array(s) {', '.join(missing)}: save it as "
                          "numpy.savez(FILE, features=X, labels=y) with X of shape (N, D) and y of N class ids.")
    features = arrays["features"]
    if features.ndim != 2:
        raise FatvizError(f"{name}: features has shape {features.shape}; it must be a table, N rows x D features.")
    _check_rows(*features.shape, name)
    labels = arrays["labels"].ravel() if arrays["labels"].ndim <= 2 and 1 in arrays["labels"].shape[1:] \
        else arrays["labels"]
    if labels.ndim != 1:
        raise FatvizError(f"{name}: labels has shape {labels.shape}; it must hold one class id per row.")
    return _table(name, features, labels, arrays.get("true_label"), arrays.get("names"))


def _frame_table(frame, name: str) -> UserTable:
    """A pandas frame with a label column and numeric feature columns."""
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if "label" not in columns:
        raise FatvizError(f"{name} has no `label` column (it has {', '.join(columns[:8])}"
                          f"{'…' if len(columns) > 8 else ''}): name the column of class ids `label`.")
    feature_columns = [c for c in columns if c not in _TABLE_COLUMNS]
    _check_rows(len(frame), len(feature_columns), name)
    for column in feature_columns:
        values = frame[column]
        if values.dtype.kind not in "iufb":
            import pandas as pd

            numbers = pd.to_numeric(values, errors="coerce")
            bad = numbers.isna() & values.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise FatvizError(f"{name}: feature column {column!r} holds text, e.g. {str(values.iloc[row])[:40]!r} "
                                  f"in row {row}: features must be numbers (name an id column `id`).")
            frame[column] = numbers
    features = frame[feature_columns].to_numpy(np.float64, na_value=np.nan)
    return _table(name, features, frame["label"].to_numpy(),
                  frame["true_label"].to_numpy() if "true_label" in columns else None,
                  frame["id"].to_numpy() if "id" in columns else None)


def _read_csv(data: bytes, name: str) -> UserTable:
    import pandas as pd

    try:
        header = pd.read_csv(io.BytesIO(data), nrows=0)
        if len(header.columns) > MAX_FEATURES + len(_TABLE_COLUMNS):
            raise FatvizError(f"{name} has {len(header.columns):,} columns: fatviz takes at most {MAX_FEATURES:,} features.")
        frame = pd.read_csv(io.BytesIO(data), nrows=MAX_ROWS + 1, low_memory=False)
    except FatvizError:
        raise
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise FatvizError(f"{name} is not a readable CSV table ({str(exc).splitlines()[0][:120]}): save it as "
                          "comma-separated text with a header row.") from None
    return _frame_table(frame, name)


def _read_parquet(data: bytes, name: str) -> UserTable:
    try:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(io.BytesIO(data))
        rows, cols = file.metadata.num_rows, file.metadata.num_columns
        _check_rows(rows, max(cols - 1, 1), name)
        frame = file.read().to_pandas()
    except FatvizError:
        raise
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on a damaged file
        raise FatvizError(f"{name} is not a readable parquet file ({type(exc).__name__}): save it again.") from None
    return _frame_table(frame, name)


# --------------------------------------------------------------------------- zips of class folders


def _safe_parts(filename: str) -> tuple[str, ...] | None:
    """The path parts of a zip entry, or None when it could land outside the archive."""
    if "\\" in filename or filename.startswith("/") or (len(filename) > 1 and filename[1] == ":"):
        return None
    parts = PurePosixPath(filename).parts
    return None if any(p in ("..", "") for p in parts) else parts


def _read_image_zip(data: bytes, name: str) -> UserTable:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise FatvizError(f"{name} is not a readable zip file: it is damaged or truncated, zip the folder again.") \
            from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise FatvizError(f"{name} holds {len(entries):,} entries: fatviz reads at most {MAX_ZIP_ENTRIES:,} from a zip.")
    unsafe = next((e.filename for e in entries if _safe_parts(e.filename) is None), None)
    if unsafe is not None:
        raise FatvizError(f"{name} holds an entry whose path leaves the archive ({unsafe[:80]!r}): fatviz refuses "
                          "such zips; zip the class folders themselves.")
    files = [e for e in entries if not e.is_dir() and not e.filename.startswith("__MACOSX/")
             and not PurePosixPath(e.filename).name.startswith(".")]
    unpacked = sum(e.file_size for e in files)
    big = next((e for e in files if e.file_size > MAX_ZIP_ENTRY), None)
    if unpacked > MAX_ZIP_UNPACKED or big is not None:
        what = f"its entry {big.filename[:60]!r} alone to {big.file_size / 2**20:,.0f} MB" if big is not None \
            else f"to {unpacked / 2**20:,.0f} MB"
        raise FatvizError(f"{name} would unpack {what}: fatviz unpacks at most {MAX_ZIP_UNPACKED // 2**20:,} MB, "
                          f"{MAX_ZIP_ENTRY // 2**20} MB per image. Resize the images, or zip fewer.")
    parts = [PurePosixPath(e.filename).parts for e in files]
    # Folders around the class folders (zipping "mydata/") are peeled off: while every entry sits in one
    # folder and some image lies deeper than a class folder inside it.
    def is_image(p: tuple[str, ...]) -> bool:
        return PurePosixPath(p[-1]).suffix.lower() in IMAGE_EXTENSIONS

    while (parts and len({p[0] for p in parts}) == 1 and all(len(p) > 1 for p in parts)
           and any(len(p) > 2 and is_image(p) for p in parts)):
        parts = [p[1:] for p in parts]
    images = [(e, p) for e, p in zip(files, parts, strict=True)
              if len(p) >= 2 and is_image(p)]
    skipped_other = len(files) - len(images)
    class_names = sorted({p[0] for _, p in images})
    if len(class_names) < 2:
        raise FatvizError(f"{name} holds {len(class_names)} class folder(s) with images: put the images in one folder "
                          "per class (CLASS/IMAGE.png), at least two classes, and zip those folders.")
    index = {c: k for k, c in enumerate(class_names)}
    out = np.zeros((len(images), *IMAGE_SIZE, 3), np.uint8)
    keep = np.zeros(len(images), bool)
    for i, (entry, _) in enumerate(images):
        with archive.open(entry) as stream:
            try:
                picture = decode_image(io.BytesIO(stream.read(MAX_ZIP_ENTRY)), IMAGE_SIZE)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError):  # a damaged entry (bad CRC, truncated)
                picture = None
        if picture is not None:
            out[i], keep[i] = picture, True
    bad = int((~keep).sum())
    if keep.sum() * 2 < len(images) or not keep.any():
        raise FatvizError(f"{bad:,} of {len(images):,} images in {name} could not be read (damaged, not images, or "
                          f"over {MAX_IMAGE_PIXELS // 10**6} megapixels): check that the zip holds real image files.")
    labels = np.array([index[p[0]] for (_, p), k in zip(images, keep, strict=True) if k], np.int64)
    if len(np.unique(labels)) < 2:
        raise FatvizError(f"{name} has one class with readable images only: a triplet needs at least two classes.")
    notes = []
    if skipped_other:
        notes.append(f"skipped {skipped_other:,} file(s) that are not images in a class folder")
    if bad:
        notes.append(f"skipped {bad:,} unreadable image(s) (damaged, or over {MAX_IMAGE_PIXELS // 10**6} megapixels)")
    ids = np.array(["/".join(p) for (_, p), k in zip(images, keep, strict=True) if k])
    return UserTable(name, labels, class_names, ids, images=out[keep], notes=tuple(notes))


# --------------------------------------------------------------------------- entry points


def read_upload(data: bytes, name: str) -> UserTable:
    """An uploaded file's bytes as a UserTable, by its suffix; one FatvizError saying what is wrong."""
    suffix = Path(name).suffix.lower()
    if len(data) > MAX_UPLOAD_MB * 2**20:
        raise FatvizError(f"{name} is {len(data) / 2**20:,.0f} MB: fatviz takes files up to {MAX_UPLOAD_MB} MB.")
    readers = {".zip": _read_image_zip, ".npz": _read_npz, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix not in readers:
        raise FatvizError(f"{name} is not a file fatviz reads: upload a .zip of class folders of images, or a table "
                          f"({', '.join(TABLE_SUFFIXES)}).")
    if not data:
        raise FatvizError(f"{name} is empty.")
    return readers[suffix](data, name)


def read_table_file(path: str | Path) -> UserTable:
    """A table file on disk (the CLI's --dataset table --data-root FILE), read like an upload."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise FatvizError(f"--data-root {path.name} is not a table: give a {', '.join(TABLE_SUFFIXES)} file.")
    if not path.is_file():
        raise FatvizError(f"{path} is not a file: give a {', '.join(TABLE_SUFFIXES)} table of features and labels.")
    if path.stat().st_size > MAX_UPLOAD_MB * 2**20:
        raise FatvizError(f"{path.name} is {path.stat().st_size / 2**20:,.0f} MB: fatviz reads tables up to "
                          f"{MAX_UPLOAD_MB} MB.")
    return read_upload(path.read_bytes(), path.name)


# --------------------------------------------------------------------------- as a dataset


def user_dataset(table: UserTable, *, seed: int, test_fraction: float, subsample: int | None) -> Dataset:
    """The table split into train and test (stratified by the given labels), normalised like fatviz's own sets.

    With a `true_label`, y_train and y_test hold the truth and `given_train` the labels the table came
    with, so flagging is scored against the truth and the test metrics use it; without one, the given
    labels are all there is (`truth_known` False).
    """
    given = table.labels
    truth = table.true_labels
    train, test = _split_given(given, test_fraction, seed, table)
    keep_train, keep_test, notes = _subsample(given[train], given[test], subsample, seed)
    train, test = train[keep_train], test[keep_test]
    labels = given if truth is None else truth
    extra = {"given_train": None if truth is None else given[train], "ids_train": table.row_ids[train],
             "ids_test": table.row_ids[test], "truth_known": truth is not None}
    notes = (*table.notes, *notes)
    if table.images is not None:
        ds = _image_dataset("upload", table.images[train], labels[train], table.images[test], labels[test],
                            list(table.class_names), notes)
        return dataclasses.replace(ds, **extra)
    x_train, x_test = _standardise(table.features[train].astype(np.float64), table.features[test].astype(np.float64))
    return Dataset(name="table", kind="vector", x_train=x_train, y_train=labels[train], x_test=x_test,
                   y_test=labels[test], class_names=list(table.class_names), notes=notes, **extra)


def _split_given(given: np.ndarray, test_fraction: float, seed: int, table: UserTable) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test indices; a class given to fewer than two rows is named in the message."""
    counts = np.bincount(given, minlength=table.num_classes)
    present = counts > 0
    if (counts[present] < 2).any():
        lonely = table.class_names[int(np.flatnonzero(present & (counts < 2))[0])]
        raise FatvizError(f"{table.name}: class {lonely!r} is given to one row only; every class needs at least two "
                          "(one to train on, one to test with). Drop it or add rows.")
    names = [table.class_names[c] for c in np.flatnonzero(present)]
    _, dense = np.unique(given, return_inverse=True)
    return _split(dense, test_fraction, seed, names)


def _load_table(*, data_root: Path, seed: int, test_fraction: float, subsample: int | None, **_: object) -> Dataset:
    return user_dataset(read_table_file(data_root), seed=seed, test_fraction=test_fraction, subsample=subsample)


def _load_upload(*, data_root: Path, seed: int, test_fraction: float, subsample: int | None, **_: object) -> Dataset:
    return user_dataset(load_upload(str(data_root)), seed=seed, test_fraction=test_fraction, subsample=subsample)


def save_table(table: UserTable, path: Path) -> None:
    """A checked table as one .npz (no pickles), written atomically."""
    arrays = {"labels": table.labels, "class_names": np.asarray(table.class_names, dtype=str),
              "row_ids": np.asarray(table.row_ids, dtype=str), "name": np.asarray(table.name),
              "notes": np.asarray(table.notes, dtype=str)}
    for key in ("features", "images", "true_labels"):
        if getattr(table, key) is not None:
            arrays[key] = getattr(table, key)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def load_upload(uid: str) -> UserTable:
    """The table the app's store keeps under `uid` (read in the training workers)."""
    folder = os.environ.get(UPLOAD_DIR_ENV, "")
    if not _ID.match(uid) or not folder:
        raise FatvizError(GONE if folder else "Uploaded data lives in the app: on the command line use "
                          "--dataset table --data-root FILE.npz|FILE.csv|FILE.parquet.")
    path = Path(folder) / f"{uid}.npz"
    if not path.is_file():
        raise FatvizError(GONE)
    with np.load(path, allow_pickle=False) as npz:
        get = {k: npz[k] for k in npz.files}
    return UserTable(str(get["name"]), get["labels"], [str(c) for c in get["class_names"]], get["row_ids"],
                     features=get.get("features"), images=get.get("images"), true_labels=get.get("true_labels"),
                     notes=tuple(str(n) for n in get["notes"]))


DATASETS.register("table", DatasetSpec(
    "table", "your own features and labels: a .npz (features, labels), .csv or .parquet (a label column)",
    _load_table, True, "a .npz with arrays features (N x D) and labels (N), or a .csv/.parquet with a label column "
    "and numeric feature columns", root="file", in_sidebar=False))
DATASETS.register("upload", DatasetSpec(
    "upload", "what you uploaded in this browser session (a zip of class folders, or a table)",
    _load_upload, True, "a file uploaded in the app", root="upload", in_sidebar=False))
