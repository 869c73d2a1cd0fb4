"""Whatever bytes a dataset folder holds, load_dataset returns a Dataset or raises FatvizError.

Each test builds a small valid folder, then replaces one file (or adds a few) with generated
content: IDX headers and sizes, CIFAR pickle fields, Market-1501 names, image bytes. Any other
exception, a traceback a user would see, fails the property.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import random
from pathlib import Path

import numpy as np
from helpers import idx_header, make_cifar_root, make_folder_root, make_idx_root, make_market_root, save_image
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from fatviz.data import Dataset, load_dataset
from fatviz.errors import FatvizError

FUZZ = settings(max_examples=60, deadline=None)


def loads_or_refuses(name: str, root: Path, **kwargs: object) -> Dataset | None:
    """The property: a Dataset comes back, or one FatvizError; nothing else escapes."""
    try:
        ds = load_dataset(name, data_root=str(root), **kwargs)
    except FatvizError:
        event("refused")
        return None
    event("loaded")
    assert len(ds.x_train) == len(ds.y_train) and len(ds.x_test) == len(ds.y_test)
    return ds


def mangle(blob: bytes, data: st.DataObject) -> bytes:
    """Maybe cut `blob` short and maybe flip a few of its bytes."""
    cut = data.draw(st.none() | st.integers(0, len(blob)), label="cut")
    out = bytearray(blob if cut is None else blob[:cut])
    for _ in range(data.draw(st.integers(0, 3), label="flips") if out else 0):
        out[data.draw(st.integers(0, len(out) - 1))] ^= data.draw(st.integers(1, 255))
    return bytes(out)


# --------------------------------------------------------------------------- IDX

_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_DIM = st.one_of(
    st.integers(0, 40), st.sampled_from([20, 28, 60]), st.sampled_from([2**16, 2**31 - 1, 2**31, 2**32 - 1])
)


@FUZZ
@given(data=st.data())
def test_fuzz_idx_files(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("idx")
    make_idx_root(root)
    which = data.draw(st.integers(0, 3), label="file")
    ndim = 3 if which % 2 == 0 else 1
    dims = data.draw(st.lists(_DIM, min_size=0, max_size=4) | st.lists(_DIM, min_size=ndim, max_size=ndim))
    header = idx_header(*dims, ndim=data.draw(st.sampled_from([ndim, len(dims), 0, 2, 255]), label="ndim"))
    if data.draw(st.booleans(), label="other magic"):
        header = data.draw(st.binary(min_size=4, max_size=4)) + header[4:]
    promised = math.prod(dims) if math.prod(dims) <= 60 * 40 * 40 else 0
    size = data.draw(st.sampled_from([promised, promised - 1, promised + 1]) | st.integers(0, 2000), label="size")
    rng = random.Random(data.draw(st.integers(0, 2**16), label="seed"))
    values = 10 if which % 2 else 256  # label files: values that are valid labels, mostly
    blob = mangle(header + bytes(rng.randrange(values) for _ in range(max(size, 0))), data)
    path = root / "MNIST" / "raw" / _IDX_STEMS[which]
    if data.draw(st.booleans(), label="gzip"):
        path.unlink()
        path = path.with_name(path.name + ".gz")
        blob = mangle(gzip.compress(blob), data)
    path.write_bytes(blob)
    loads_or_refuses("mnist", root)


# --------------------------------------------------------------------------- CIFAR-10

_ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.binary(max_size=5),
    st.sampled_from([-1, 1]).map(lambda sign: sign * 2**20_000),  # too many digits for repr()
)
_ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.int64, np.float32, np.bool_]),
    shape=st.one_of(
        st.just((20, 3072)), st.just((20,)), st.just((0, 3072)), hnp.array_shapes(min_dims=1, max_dims=3, max_side=8)
    ),
)
_LABELS = st.one_of(
    st.lists(st.integers(-2, 11), min_size=18, max_size=21),
    st.lists(st.integers(0, 9), min_size=20, max_size=20),
    st.lists(_ANY, max_size=20),
    _ARRAYS,
    _ANY,
)
_PIXELS = st.one_of(
    st.just(np.zeros((20, 3072), np.uint8)),
    _ARRAYS,
    st.lists(st.integers(0, 255), max_size=10),
    _ANY,
)


@FUZZ
@given(
    pixels=_PIXELS,
    labels=_LABELS,
    keys=st.sets(st.sampled_from(["data", "labels"])),
    as_str=st.booleans(),
    protocol=st.integers(2, pickle.HIGHEST_PROTOCOL),
    label_names=st.one_of(st.just([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"]), _LABELS),
    data=st.data(),
)
def test_fuzz_cifar_batches(tmp_path_factory, pixels, labels, keys, as_str, protocol, label_names, data):
    root = tmp_path_factory.mktemp("cifar")
    make_cifar_root(root)
    folder = root / "cifar-10-batches-py"
    fields = {"data": pixels, "labels": labels}
    batch = {(k if as_str else k.encode()): fields[k] for k in keys}
    (folder / "test_batch").write_bytes(mangle(pickle.dumps(batch, protocol=protocol), data))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": label_names}, protocol=protocol))
    loads_or_refuses("cifar10", root)


# --------------------------------------------------------------------------- Market-1501

_NUMBERS = st.one_of(st.integers(-3, 2000), st.integers(10**5, 10**7), st.integers(2**63 - 2, 10**25))
_MARKET_NAMES = st.one_of(
    st.builds("{:04d}_c{}s1_{:06d}_01.jpg".format, _NUMBERS, _NUMBERS, st.integers(0, 10**6)),
    st.from_regex(r"\A-?[0-9]{1,25}_c[0-9]{1,22}s[0-9]_[0-9]{6}_[0-9]{2}\.jpg\Z"),
    st.from_regex(r"\A[0-9a-z_-]{1,30}\.(jpg|png)\Z"),
)


@settings(max_examples=50, deadline=None)
@given(names=st.lists(_MARKET_NAMES, min_size=1, max_size=3, unique=True),
       folder=st.sampled_from(["bounding_box_train", "query", "bounding_box_test"]))
def test_fuzz_market_names(tmp_path_factory, names, folder):
    root = tmp_path_factory.mktemp("market")
    make_market_root(root)
    for i, name in enumerate(names):
        save_image(root / folder / name, seed=i, size=(8, 16))
    loads_or_refuses("market1501", root, image_size=(16, 8))


# --------------------------------------------------------------------------- image folders


def _encoded(fmt: str, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


_IMAGE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff" + b),
    st.tuples(st.sampled_from(["PNG", "JPEG", "BMP", "WEBP"]), st.integers(0, 9)).map(lambda t: _encoded(*t)),
)


@settings(max_examples=60, deadline=None)
@given(images=st.lists(st.tuples(_IMAGE_BYTES, st.sampled_from([".png", ".jpg", ".bmp", ".webp"])), min_size=1,
                       max_size=4),
       data=st.data())
def test_fuzz_folder_images(tmp_path_factory, images, data):
    root = tmp_path_factory.mktemp("folder")
    make_folder_root(root, per_class=3)
    for i, (blob, ext) in enumerate(images):
        (root / "bee" / f"fuzz{i}{ext}").write_bytes(mangle(blob, data))
    ds = loads_or_refuses("folder", root, image_size=(8, 8), test_fraction=0.4)
    if ds is not None:
        assert ds.images_train.shape[1:] == (8, 8, 3)
