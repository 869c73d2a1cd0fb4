import gzip
import os
import pickle
import re

import numpy as np
import pytest
from helpers import (
    idx_header,
    make_cifar_root,
    make_folder_root,
    make_idx_root,
    make_market_root,
    png_claiming,
    refused_with_peak_memory,
    save_image,
    write_gzip_bomb,
    write_idx,
)

from fatviz.data import DATASETS, DOWNLOADABLE, BlobSpec, Dataset, DatasetSpec, load_dataset, readers, visualisation_indices
from fatviz.errors import FatvizError


def test_dataset_names():
    assert DATASETS.names() == (
        "digits", "blobs", "mnist", "fashion-mnist", "cifar10", "folder", "market1501", "reid-synth", "table", "upload"
    )  # reid-synth, table and upload register themselves from their modules, which fatviz/__init__.py imports
    # Modules that read DATASETS as a tuple of names keep working.
    assert "mnist" in DATASETS and tuple(DATASETS) == DATASETS.names() and len(DATASETS) == 10
    folders = [name for name, spec in DATASETS.items() if spec.needs_folder and spec.root == "folder"]
    assert folders == ["mnist", "fashion-mnist", "cifar10", "folder", "market1501"]
    # The sidebar offers every set but the two that name a file or an upload; only an upload is private.
    assert [n for n, spec in DATASETS.items() if not spec.in_sidebar] == ["table", "upload"]
    assert [n for n, spec in DATASETS.items() if spec.private] == ["upload"]
    assert all(spec.layout and spec.description for _, spec in DATASETS.items() if spec.needs_folder)


def test_a_registered_dataset_loads_through_load_dataset(tmp_path):
    calls = []
    before = len(DATASETS)

    def load_tiny(**kwargs):
        calls.append(kwargs)
        x = np.random.default_rng(kwargs["seed"]).normal(size=(8, 3)).astype(np.float32)
        y = np.arange(8) % 2
        return Dataset("tiny", "vector", x[:6], y[:6], x[6:], y[6:], ["even", "odd"])

    DATASETS.register("tiny", DatasetSpec("tiny", "eight random 3-D vectors", load_tiny, False, ""))
    DATASETS.register("tiny-files", DatasetSpec("tiny-files", "the same, from a folder", load_tiny, True,
                                                "TINY/vectors.npy"))
    try:
        assert DATASETS.names()[-2:] == ("tiny", "tiny-files") and "tiny" in DATASETS
        ds = load_dataset("tiny", seed=4, subsample=6, test_fraction=0.5)
        assert ds.name == "tiny" and ds.x_train.shape == (6, 3) and ds.num_classes == 2
        assert calls == [dict(data_root=None, subsample=6, seed=4, test_fraction=0.5, blobs=None, image_size=None,
                              reid_size=None)]
        with pytest.raises(FatvizError, match=re.escape("tiny-files needs data_root: the folder holding TINY/vectors.npy")):
            load_dataset("tiny-files")
        with pytest.raises(FatvizError, match="is not a folder: expected TINY/vectors.npy"):
            load_dataset("tiny-files", data_root=str(tmp_path / "nope"))
        load_dataset("tiny-files", data_root=str(tmp_path))
        assert calls[-1]["data_root"] == tmp_path and len(calls) == 2
    finally:
        DATASETS.unregister("tiny")
        DATASETS.unregister("tiny-files")
    assert "tiny" not in DATASETS and len(DATASETS) == before


@pytest.mark.parametrize("name", [name for name, spec in DATASETS.items() if spec.needs_folder])
def test_a_folder_dataset_without_data_root_names_its_layout(name):
    spec = DATASETS.get(name)
    with pytest.raises(FatvizError, match="needs data_root") as err:
        load_dataset(name)
    assert spec.layout in str(err.value)
    assert ("--download" in str(err.value)) == (name in DOWNLOADABLE)
    assert {"mnist": "MNIST/raw/", "cifar10": "data_batch_1..5", "folder": "sub-folder per class",
            "market1501": "0002_c1s1_000451_03.jpg", "table": "features (N x D) and labels (N)",
            "upload": "uploaded in the app"}.get(name, "FashionMNIST/raw/") in spec.layout


def test_digits_shapes_labels_and_standardisation():
    ds = load_dataset("digits", seed=3)
    assert isinstance(ds, Dataset)
    assert ds.kind == "vector" and ds.name == "digits"
    assert ds.x_train.dtype == np.float32 and ds.x_train.shape == (1347, 64)
    assert ds.x_test.shape == (450, 64) and ds.input_shape == (64,)
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) == set(range(10))
    assert ds.num_classes == 10 and ds.class_names[3] == "3"
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    std = ds.x_train.std(axis=0)
    # Constant pixels stay 0 instead of dividing by zero; the others have unit variance.
    assert np.all((np.abs(std - 1) < 1e-4) | (std == 0)) and (std == 0).any()
    assert ds.images_train.dtype == np.uint8 and ds.images_train.shape == (1347, 8, 8)
    assert ds.images_train.max() == 255
    # The display image and the model input describe the same sample.
    bright = ds.images_train.reshape(len(ds.y_train), 64).astype(float)
    corr = np.corrcoef(bright[:, 30], ds.x_train[:, 30])[0, 1]
    assert corr > 0.999
    assert ds.cam_test is None and ds.is_query_test is None


def test_digits_split_is_stratified_and_deterministic():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=0)
    c = load_dataset("digits", seed=1)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.images_test, c.images_test)
    test_share = np.bincount(a.y_test) / np.bincount(np.concatenate([a.y_train, a.y_test]))
    assert np.all(np.abs(test_share - 0.25) < 0.02)


def test_blobs_follow_spec_and_seed():
    spec = BlobSpec(n_classes=4, n_per_class=40, dim=3, spread=0.5, separation=8.0)
    ds = load_dataset("blobs", blobs=spec, seed=5, test_fraction=0.5)
    assert ds.kind == "vector" and ds.images_train is None
    assert ds.x_train.shape == (80, 3) and ds.x_test.shape == (80, 3)
    assert ds.num_classes == 4
    assert np.bincount(ds.y_train).tolist() == [20] * 4
    same = load_dataset("blobs", blobs=spec, seed=5, test_fraction=0.5)
    np.testing.assert_array_equal(ds.x_train, same.x_train)
    other = load_dataset("blobs", blobs=spec, seed=6, test_fraction=0.5)
    assert not np.allclose(ds.x_train, other.x_train)
    # Tight, well separated clusters: each point's nearest class mean is its own.
    means = np.stack([ds.x_train[ds.y_train == k].mean(0) for k in range(4)])
    nearest = np.linalg.norm(ds.x_test[:, None] - means[None], axis=2).argmin(1)
    assert (nearest == ds.y_test).mean() > 0.95


def test_blob_outliers_are_far_but_keep_their_label():
    spec = BlobSpec(n_classes=3, n_per_class=200, dim=2, outlier_fraction=0.1)
    ds = load_dataset("blobs", blobs=spec, seed=0)
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    dist = np.empty(len(y))
    for k in range(3):
        members = x[y == k]
        dist[y == k] = np.linalg.norm(members - np.median(members, axis=0), axis=1)
    typical = np.median(dist)
    far = (dist > 4 * typical).mean()
    assert 0.05 < far < 0.15
    clean = load_dataset("blobs", blobs=BlobSpec(n_classes=3, n_per_class=200), seed=0)
    xc = np.concatenate([clean.x_train, clean.x_test])
    assert np.abs(x).max() > np.abs(xc).max()


@pytest.mark.parametrize(
    "spec",
    [BlobSpec(n_classes=1), BlobSpec(outlier_fraction=1.0), BlobSpec(spread=0.0)],
)
def test_bad_blob_spec(spec):
    with pytest.raises(FatvizError):
        load_dataset("blobs", blobs=spec)


# --------------------------------------------------------------------------- MNIST (IDX)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("where", ["parent", "mnist_folder", "raw_folder"])
def test_mnist_layouts(tmp_path, gz, where):
    arrays = make_idx_root(tmp_path, gz=gz)
    root = {"parent": tmp_path, "mnist_folder": tmp_path / "MNIST",
            "raw_folder": tmp_path / "MNIST" / "raw"}[where]
    ds = load_dataset("mnist", data_root=str(root))
    assert ds.kind == "image" and ds.x_train.shape == (60, 1, 28, 28)
    assert ds.x_test.shape == (20, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.input_shape == (1, 28, 28)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.images_test, arrays["t10k-images-idx3-ubyte"])
    assert ds.images_train.dtype == np.uint8 and ds.images_train.shape == (60, 28, 28)
    assert abs(ds.x_train.mean()) < 1e-4 and abs(ds.x_train.std() - 1) < 1e-3
    # Normalisation is monotone in brightness and uses train statistics for test too.
    flat = ds.images_test.ravel()
    order = np.argsort(flat, kind="stable")
    assert np.all(np.diff(ds.x_test.ravel()[order]) >= 0)
    assert ds.class_names == [str(k) for k in range(10)]


def test_fashion_mnist_class_names(tmp_path):
    make_idx_root(tmp_path, folder="FashionMNIST", gz=True)
    ds = load_dataset("fashion-mnist", data_root=str(tmp_path))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.num_classes == 10


def test_mnist_missing_folder_names_the_layout(tmp_path):
    with pytest.raises(FatvizError) as err:
        load_dataset("mnist", data_root=str(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert "Pass --download" in message


def test_mnist_missing_one_file(tmp_path):
    make_idx_root(tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FatvizError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_corrupt_idx_magic(tmp_path):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[2] = 0x0D  # claims float data
    path.write_bytes(bytes(data))
    with pytest.raises(FatvizError, match="magic number") as err:
        load_dataset("mnist", data_root=str(tmp_path))
    assert str(path) in str(err.value)


def test_truncated_idx_and_label_mismatch(tmp_path):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(FatvizError, match="truncated"):
        load_dataset("mnist", data_root=str(tmp_path))
    write_idx(path, np.zeros((19, 28, 28), np.uint8))
    with pytest.raises(FatvizError, match="19 images"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_broken_gzip(tmp_path):
    make_idx_root(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:12])
    with pytest.raises(FatvizError, match="gzip"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_gzip_bomb_is_refused_reading_only_what_the_header_promises(tmp_path):
    make_idx_root(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    write_gzip_bomb(path, idx_header(60, 28, 28), 200 * 2**20)  # promises 47 kB, inflates to 200 MB
    message, peak = refused_with_peak_memory("mnist", tmp_path, r"does not match its header.* holds more")
    assert str(path) in message
    assert peak < 20 * 2**20


def test_gzip_header_promising_gigabytes_is_refused_before_reading(tmp_path):
    make_idx_root(tmp_path, gz=True)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    write_gzip_bomb(path, idx_header(3 * 2**30), 8 * 2**20)
    _, peak = refused_with_peak_memory("mnist", tmp_path, "more than the 2 GiB fatviz reads")
    assert peak < 20 * 2**20


def test_plain_idx_size_is_checked_before_reading(tmp_path):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    with path.open("r+b") as handle:
        handle.truncate(2**30)  # a sparse gigabyte after the real data
    _, peak = refused_with_peak_memory("mnist", tmp_path, f"{2**30 - 16} bytes")
    assert peak < 20 * 2**20


@pytest.mark.parametrize("gz, size, found", [
    (False, 59, "59 bytes"), (False, 61, "61 bytes"),  # known from the file size, before reading
    (True, 59, "only 59 bytes"), (True, 61, "more"),  # a stream stops one byte past the promise
])
def test_idx_data_shorter_or_longer_than_its_header(tmp_path, gz, size, found):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    blob = idx_header(60) + bytes(size)
    path.unlink()
    (path.with_name(path.name + ".gz") if gz else path).write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(FatvizError, match=f"promises 60 = 60 bytes of data but the file holds {found}"):
        load_dataset("mnist", data_root=str(tmp_path))


@pytest.mark.parametrize("gz", [False, True])
def test_label_file_cut_inside_its_header_says_truncated(tmp_path, gz):
    make_idx_root(tmp_path, gz=gz)
    path = tmp_path / "MNIST" / "raw" / ("train-labels-idx1-ubyte" + ".gz" * gz)
    head = bytes([0, 0, 0x08, 0x01])  # the right magic number, then nothing
    path.write_bytes(gzip.compress(head) if gz else head)
    with pytest.raises(FatvizError, match="truncated: it ends after 4 bytes, inside its 8-byte IDX header") as err:
        load_dataset("mnist", data_root=str(tmp_path))
    assert "magic" not in str(err.value)


def test_wrong_magic_number_reports_the_bytes_found(tmp_path):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_header(20, 1, 1) + bytes(20))  # an image header where labels belong
    with pytest.raises(FatvizError, match="starts with bytes 00 00 08 03, expected magic number 00 00 08 01"):
        load_dataset("mnist", data_root=str(tmp_path))
    path.write_bytes(b"\x00\x01")
    with pytest.raises(FatvizError, match="starts with bytes 00 01,"):
        load_dataset("mnist", data_root=str(tmp_path))


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims, message", [
    ((0, 28, 28), "empty array"),
    ((60, 28, 0), "empty array"),
    ((60, 1, 1), "at least 8 x 8"),
    ((60, 0, 0), "empty array"),
    ((65536, 65536, 1), "more than the 2 GiB"),  # 2**32 bytes: 0 in 32-bit arithmetic
    ((2**22, 2**22, 2**22), "more than the 2 GiB"),  # 2**66: wraps 64-bit arithmetic too
    ((2**32 - 1,) * 3, "more than the 2 GiB"),
    ((61, 28, 28), "holds 61 images but its label file holds 60 labels"),
])
def test_idx_headers_with_degenerate_dims(tmp_path, gz, dims, message):
    make_idx_root(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    blob = idx_header(*dims) + bytes(1000)
    path.unlink()
    (path.with_name(path.name + ".gz") if gz else path).write_bytes(gzip.compress(blob) if gz else blob)
    with pytest.raises(FatvizError, match=message):
        load_dataset("mnist", data_root=str(tmp_path))


def test_subsample_is_stratified_and_deterministic(tmp_path):
    make_idx_root(tmp_path)
    ds = load_dataset("mnist", data_root=str(tmp_path), subsample=30, seed=4)
    assert np.bincount(ds.y_train).tolist() == [3] * 10
    assert len(ds.y_test) == 20  # the floor of 100 test samples keeps the whole small test set
    assert ds.notes and "30 of 60" in ds.notes[0]
    again = load_dataset("mnist", data_root=str(tmp_path), subsample=30, seed=4)
    np.testing.assert_array_equal(ds.images_train, again.images_train)
    other = load_dataset("mnist", data_root=str(tmp_path), subsample=30, seed=5)
    assert not np.array_equal(ds.images_train, other.images_train)
    with pytest.raises(FatvizError, match="at least 20"):
        load_dataset("mnist", data_root=str(tmp_path), subsample=15)


def test_digits_subsample_shrinks_test_too():
    ds = load_dataset("digits", subsample=600)
    assert len(ds.y_train) == 600 and len(ds.y_test) == 200
    counts = np.bincount(ds.y_train)
    assert counts.min() >= 58 and counts.max() <= 62
    assert set(ds.y_test) == set(range(10))


# --------------------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10(tmp_path, protocol):
    batches = make_cifar_root(tmp_path, protocol)
    ds = load_dataset("cifar10", data_root=str(tmp_path))
    assert ds.x_train.shape == (50, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    labels = [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    assert ds.y_train.tolist() == labels
    first = batches["data_batch_1"][b"data"][0]
    # Rows hold 1024 red, then green, then blue values; display images are H x W x 3.
    np.testing.assert_array_equal(ds.images_train[0][..., 1].ravel(), first[1024:2048])
    assert ds.images_train.shape == (50, 32, 32, 3)
    for c in range(3):
        assert abs(ds.x_train[:, c].mean()) < 1e-4 and abs(ds.x_train[:, c].std() - 1) < 1e-3
    assert ds.x_train.flags.c_contiguous and ds.images_test.flags.c_contiguous


def test_cifar10_missing_files(tmp_path):
    make_cifar_root(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FatvizError, match="data_batch_3"):
        load_dataset("cifar10", data_root=str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo hacked",))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    make_cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(FatvizError, match="not a CIFAR-10 python batch") as err:
        load_dataset("cifar10", data_root=str(tmp_path))
    assert "test_batch" in str(err.value)


class _Conjured:
    """Pickles as a call to numpy.ndarray: 600 MB of uninitialised pixels from a 100-byte file."""

    def __reduce__(self):
        return (np.ndarray, ((200_000, 3072), np.dtype("u1")))


_PIXELS = np.zeros((20, 3072), np.uint8)
_LABELS = [k % 10 for k in range(20)]


@pytest.mark.parametrize("batch, message", [
    ({b"labels": _LABELS}, "lacks CIFAR-10 'data' (a uint8 array of N x 3072 pixel values; found nothing)"),
    ({b"data": _PIXELS.tolist(), b"labels": _LABELS}, "found list [[0, 0, 0, 0, 0, 0, ...], [0, 0"),
    ({b"data": _PIXELS.astype(np.float32), b"labels": _LABELS}, "found a float32 array of shape (20, 3072)"),
    ({b"data": np.zeros((20, 3071), np.uint8), b"labels": _LABELS}, "shape (20, 3071)"),
    ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "shape (0, 3072)"),
    ({b"data": _Conjured(), b"labels": [0] * 200_000}, "shape (200000, 3072)"),
    ({b"data": _PIXELS}, "lacks CIFAR-10 'labels' (a list of integers 0..9; found nothing"),
    ({b"data": _PIXELS, b"labels": [str(v) for v in _LABELS]}, "holds label '0' at position 0"),
    ({b"data": _PIXELS, b"labels": _LABELS[:5] + [10] * 15}, "holds label 10 at position 5"),
    ({b"data": _PIXELS, b"labels": [-1] * 20}, "holds label -1 at position 0"),
    ({b"data": _PIXELS, b"labels": [2**70] * 20}, f"holds label {2**70} at"),  # past int64
    ({b"data": _PIXELS, b"labels": [2**20_000] * 20}, "holds label <int too large to print>"),
    ({b"data": _PIXELS, b"labels": 2**20_000}, "found int <int too large to print>"),
    ({b"data": _PIXELS, b"labels": [True] * 20}, "holds label True"),
    ({b"data": _PIXELS, b"labels": np.zeros(20)}, "found a float64 array"),
    ({b"data": _PIXELS, b"labels": np.full(20, 12, np.uint8)}, "holds label 12"),
    ({b"data": _PIXELS, b"labels": np.zeros((20, 1), np.int64)}, "found a int64 array of shape (20, 1)"),
    ({b"data": _PIXELS, b"labels": 7}, "found int 7"),
    ({b"data": _PIXELS, b"labels": _LABELS[:19]}, "has 19 labels for 20 images"),
    ([_PIXELS, _LABELS], "no dictionary inside"),
])
def test_cifar10_batch_with_wrong_fields(tmp_path, batch, message):
    make_cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(FatvizError, match=re.escape(message)) as err:
        load_dataset("cifar10", data_root=str(tmp_path))
    assert str(path) in str(err.value)


def test_cifar10_labels_as_an_integer_array_load(tmp_path):
    batches = make_cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch = {**batches["test_batch"], b"labels": np.array(batches["test_batch"][b"labels"], np.uint8)}
    path.write_bytes(pickle.dumps(batch))
    ds = load_dataset("cifar10", data_root=str(tmp_path))
    assert ds.y_test.tolist() == batches["test_batch"][b"labels"]


@pytest.mark.parametrize("names, message", [
    (None, "found nothing"), (b"airplane", "found bytes b'airplane'"), ([b"cat", 3], "found list [b'cat', 3]"),
    ([b"cat"], "1 class(es)"),
])
def test_cifar10_meta_with_wrong_label_names(tmp_path, names, message):
    make_cifar_root(tmp_path)
    meta = {} if names is None else {b"label_names": names}
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with pytest.raises(FatvizError, match=re.escape(message)):
        load_dataset("cifar10", data_root=str(tmp_path))


def test_cifar10_pickle_memo_bomb_stays_small(tmp_path):
    make_cifar_root(tmp_path)
    # PROTO 2, NONE, LONG_BINPUT 2**24, STOP: the C unpickler would clear a 256 MB memo for it.
    bomb = b"\x80\x02Nr" + (2**24).to_bytes(4, "little") + b"."
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(bomb)
    _, peak = refused_with_peak_memory("cifar10", tmp_path, "no dictionary inside")
    assert peak < 64 * 2**20


def test_cifar10_pickles_may_not_set_attributes_or_use_other_codecs(tmp_path):
    make_cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    # GLOBAL _codecs.encode, EMPTY_DICT, BUILD: would set attributes on the allowed function.
    path.write_bytes(b"\x80\x02c_codecs\nencode\n}b.")
    with pytest.raises(FatvizError, match="non-numpy object"):
        load_dataset("cifar10", data_root=str(tmp_path))
    # _codecs.encode("x", "punycode"): protocol 2 only ever asks for latin1.
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x08\x00\x00\x00punycode\x86R.")
    with pytest.raises(FatvizError, match="refusing _codecs.encode with 'punycode'"):
        load_dataset("cifar10", data_root=str(tmp_path))


def test_cifar10_refuses_a_batch_far_larger_than_cifar(tmp_path):
    make_cifar_root(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    with path.open("r+b") as handle:
        handle.truncate(2**27)  # sparse
    with pytest.raises(FatvizError, match=f"it holds {2**27} bytes"):
        load_dataset("cifar10", data_root=str(tmp_path))


# --------------------------------------------------------------------------- ImageFolder


def test_folder(tmp_path):
    make_folder_root(tmp_path)
    ds = load_dataset("folder", data_root=str(tmp_path), image_size=(16, 12), seed=2)
    assert ds.class_names == ["ant", "bee", "cat"]
    assert ds.x_train.shape == (18, 3, 16, 12) and ds.x_test.shape == (6, 3, 16, 12)
    assert ds.images_train.shape == (18, 16, 12, 3) and ds.images_train.dtype == np.uint8
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    assert ds.notes == ()
    again = load_dataset("folder", data_root=str(tmp_path), image_size=(16, 12), seed=2)
    np.testing.assert_array_equal(ds.images_test, again.images_test)
    default = load_dataset("folder", data_root=str(tmp_path))
    assert default.input_shape == (3, 32, 32)


def test_folder_skips_a_corrupt_image(tmp_path):
    make_folder_root(tmp_path)
    bad = tmp_path / "bee" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = load_dataset("folder", data_root=str(tmp_path))
    assert len(ds.y_train) + len(ds.y_test) == 24
    assert len(ds.notes) == 1 and "skipped 1" in ds.notes[0] and str(bad) in ds.notes[0]


def test_folder_mostly_corrupt_raises_naming_a_file(tmp_path):
    for name in ("a", "b"):
        save_image(tmp_path / name / "ok.png", seed=0)
        for i in range(5):
            (tmp_path / name / f"bad{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FatvizError, match=r"could not be read \(e\.g\. .*bad\d\.jpg"):
        load_dataset("folder", data_root=str(tmp_path), test_fraction=0.5)


def test_folder_class_left_empty_by_corrupt_files(tmp_path):
    make_folder_root(tmp_path)
    for i in range(2):
        save_image(tmp_path / "dog" / f"{i}.png", seed=i)
    for i in range(2):
        (tmp_path / "dog" / f"{i}.png").write_bytes(b"broken")
    with pytest.raises(FatvizError, match=r"'dog' has no readable train image .*dog"):
        load_dataset("folder", data_root=str(tmp_path))


def test_folder_one_class(tmp_path):
    for i in range(4):
        save_image(tmp_path / "only" / f"{i}.png", seed=i)
    with pytest.raises(FatvizError, match="at least two classes"):
        load_dataset("folder", data_root=str(tmp_path))


def test_folder_layout_errors(tmp_path):
    with pytest.raises(FatvizError, match="one sub-folder per class"):
        load_dataset("folder", data_root=str(tmp_path))
    with pytest.raises(FatvizError, match="is not a folder"):
        load_dataset("folder", data_root=str(tmp_path / "nope"))
    with pytest.raises(FatvizError, match="needs data_root"):
        load_dataset("folder")
    make_folder_root(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FatvizError, match="empty has no images"):
        load_dataset("folder", data_root=str(tmp_path))
    (tmp_path / "empty").rmdir()
    save_image(tmp_path / "single" / "0.png", seed=0)
    with pytest.raises(FatvizError, match="'single' has 1 sample"):
        load_dataset("folder", data_root=str(tmp_path))


def test_folder_skips_images_with_too_many_pixels(tmp_path, monkeypatch):
    make_folder_root(tmp_path)
    (tmp_path / "bee" / "bomb.png").write_bytes(png_claiming(100_000, 100_000))  # PIL refuses it too
    (tmp_path / "cat" / "huge.png").write_bytes(png_claiming(9_000, 8_000))  # 72 MP: only fatviz's limit
    ds = load_dataset("folder", data_root=str(tmp_path))
    assert len(ds.y_train) + len(ds.y_test) == 24
    assert len(ds.notes) == 1 and "skipped 2" in ds.notes[0] and "67 megapixels" in ds.notes[0]
    # The limit applies to real images too, before they are decoded.
    (tmp_path / "bee" / "bomb.png").unlink()
    (tmp_path / "cat" / "huge.png").unlink()
    save_image(tmp_path / "ant" / "big.png", seed=0, size=(60, 40))
    monkeypatch.setattr(readers, "MAX_IMAGE_PIXELS", 1000)  # fixture images hold at most 27 x 16
    ds = load_dataset("folder", data_root=str(tmp_path))
    assert len(ds.notes) == 1 and "skipped 1" in ds.notes[0] and "big.png" in ds.notes[0]


@pytest.mark.parametrize("size", [(0, 0), (1, 1), (7, 32), (32, 2000), (32,), (16, "x"), 16])
def test_image_size_out_of_range(tmp_path, size):
    make_folder_root(tmp_path)
    with pytest.raises(FatvizError, match="image_size must be"):
        load_dataset("folder", data_root=str(tmp_path), image_size=size)
    with pytest.raises(FatvizError, match="image_size must be"):
        load_dataset("market1501", data_root=str(tmp_path), image_size=size)


# --------------------------------------------------------------------------- Market-1501


def test_market1501(tmp_path):
    make_market_root(tmp_path)
    ds = load_dataset("market1501", data_root=str(tmp_path))
    assert ds.class_names == ["0002", "0007", "0010"]
    assert ds.y_train.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # the junk (-1) image dropped
    assert ds.x_train.shape == (8, 3, 64, 32) and ds.images_test.shape == (7, 64, 32, 3)
    # Test = 2 queries then 5 gallery images (2 junk dropped), each sorted by file name:
    # 0001 0003 | 0000 0000 0001 0001 0003.
    assert ds.is_query_test.tolist() == [True, True, False, False, False, False, False]
    assert ds.cam_test.tolist() == [1, 2, 1, 6, 1, 2, 3]
    y = ds.y_test
    assert y[0] == y[4] == y[5]  # identity 0001: query and both gallery images
    assert y[1] == y[6]  # identity 0003
    assert y[2] == y[3] and len({y[0], y[1], y[2]}) == 3  # distractors share their own id
    # Market's test identities are not train classes, so no test label is a train class.
    assert y.min() >= ds.num_classes


def test_market1501_test_identity_seen_in_training_keeps_its_class(tmp_path):
    make_market_root(tmp_path)
    save_image(tmp_path / "query" / "0007_c2s1_000009_00.jpg", seed=3, size=(64, 128))
    ds = load_dataset("market1501", data_root=str(tmp_path), image_size=(32, 16))
    assert ds.input_shape == (3, 32, 16)
    assert ds.y_test[ds.is_query_test].tolist()[-1] == ds.class_names.index("0007")


def test_market1501_subsample_keeps_whole_identities(tmp_path):
    names = [f"{i:04d}_c{c}s1_{j:06d}_01.jpg" for i in range(1, 9) for c, j in
             ((1, 1), (2, 2), (3, 3))]
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        for name in names:
            save_image(tmp_path / folder / name, seed=0, size=(8, 16))
    ds = load_dataset("market1501", data_root=str(tmp_path), subsample=9, seed=1)
    assert len(ds.y_train) == 9 and np.bincount(ds.y_train).tolist() == [3, 3, 3]
    assert ds.notes and "by identity" in ds.notes[0]


def test_market1501_errors(tmp_path):
    (tmp_path / "bounding_box_train").mkdir()
    with pytest.raises(FatvizError, match="missing query, bounding_box_test"):
        load_dataset("market1501", data_root=str(tmp_path))
    make_market_root(tmp_path)
    save_image(tmp_path / "query" / "person.jpg", seed=0)
    with pytest.raises(FatvizError, match=re.escape("0002_c1s1_000451_03.jpg")):
        load_dataset("market1501", data_root=str(tmp_path))


@pytest.mark.parametrize("name", [
    "12345678901234567890123_c1s1_000451_03.jpg",  # past int64
    "0002_c99999999999999999999s1_000451_03.jpg",
    "0002_c100s1_000451_03.jpg",
    "-5_c1s1_000451_03.jpg",
    "1000000_c1s1_000451_03.jpg",
])
def test_market1501_absurd_identity_or_camera(tmp_path, name):
    make_market_root(tmp_path)
    path = tmp_path / "bounding_box_test" / name
    save_image(path, seed=0)
    with pytest.raises(FatvizError, match="rename or remove it") as err:
        load_dataset("market1501", data_root=str(tmp_path))
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- misc


def test_visualisation_indices_are_fixed_stratified_and_sorted():
    y = np.repeat(np.arange(4), [1000, 500, 300, 200])
    idx = visualisation_indices(y, max_points=200, seed=3)
    assert len(idx) == 200 and np.all(np.diff(idx) > 0)
    assert np.bincount(y[idx]).tolist() == [100, 50, 30, 20]
    np.testing.assert_array_equal(idx, visualisation_indices(y, max_points=200, seed=3))
    assert not np.array_equal(idx, visualisation_indices(y, max_points=200, seed=4))
    np.testing.assert_array_equal(visualisation_indices(y[:50], 2000), np.arange(50))
    rare = np.repeat(np.arange(3), [997, 2, 1])
    assert set(rare[visualisation_indices(rare, 10)]) == {0, 1, 2}  # every class shows


def test_bad_arguments():
    with pytest.raises(FatvizError, match="choose one of digits"):
        load_dataset("imagenet")
    with pytest.raises(FatvizError, match="test_fraction"):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(FatvizError, match="subsample"):
        load_dataset("digits", subsample=0)
    with pytest.raises(FatvizError, match="needs data_root"):
        load_dataset("cifar10")
