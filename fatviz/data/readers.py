"""Bounded readers for untrusted dataset files: IDX (plain or gzip), CIFAR-10 pickles, image folders.

Every reader checks a file's header before reading its data and stops at what the header
promises, so a small file cannot claim gigabytes (a gzip bomb stays small); pickles may only
build numpy arrays; oversized or damaged images are skipped with a note. A bad file gives
one FatvizError, never a traceback. fatviz.data's loaders turn what these read into datasets.
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import reprlib
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from fatviz.errors import FatvizError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_IDX_MAX_BYTES = 2**31  # MNIST's largest file holds 47 MB; a header promising more is not one
MIN_SIDE = 8  # the small CNN halves an image three times
MAX_SIDE = 1024
_READ_CHUNK = 2**20


def _idx_size_error(path: Path, dims: tuple[int, ...], found: str) -> FatvizError:
    return FatvizError(
        f"{path} does not match its header: the header promises {' x '.join(map(str, dims))} "
        f"= {math.prod(dims)} bytes of data but the file holds {found}; it is truncated or "
        "not an original IDX file, copy it again."
    )


def _idx_header(
    stream: BinaryIO, path: Path, ndim: int, count: int | None
) -> tuple[int, ...]:
    """Read and check the IDX header: magic number, dimensions, size and the expected count."""
    magic = bytes([0, 0, 0x08, ndim])
    size = 4 + 4 * ndim
    header = stream.read(size)
    if not magic.startswith(header[:4]):
        raise FatvizError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes (it starts with bytes "
            f"{header[:4].hex(' ')}, expected magic number {magic.hex(' ')}); replace it "
            "with the original file."
        )
    if len(header) < size:
        raise FatvizError(
            f"{path} is truncated: it ends after {len(header)} bytes, inside its {size}-byte "
            "IDX header; copy it again."
        )
    dims = tuple(int.from_bytes(header[i:i + 4], "big") for i in range(4, size, 4))
    shown = " x ".join(map(str, dims))
    if 0 in dims:
        raise FatvizError(f"{path} declares an empty array ({shown}); replace it with the original file.")
    if math.prod(dims) > _IDX_MAX_BYTES:
        raise FatvizError(
            f"{path} declares {shown} = {math.prod(dims)} bytes, more than the "
            f"{_IDX_MAX_BYTES // 2**30} GiB fatviz reads from one IDX file: it is not an "
            "MNIST-style file, replace it with the original."
        )
    if ndim == 3 and min(dims[1:]) < MIN_SIDE:
        raise FatvizError(
            f"{path} holds {dims[1]} x {dims[2]}-pixel images: fatviz needs at least "
            f"{MIN_SIDE} x {MIN_SIDE}, replace it with the original file."
        )
    if count is not None and dims[0] != count:
        raise FatvizError(
            f"{path} holds {dims[0]} images but its label file holds {count} labels; the "
            "files come from different releases, copy them again."
        )
    return dims


def _idx_data(stream: BinaryIO, path: Path, dims: tuple[int, ...]) -> np.ndarray:
    """Read exactly the bytes the header promises, then make sure nothing follows."""
    expected = math.prod(dims)
    out = np.empty(expected, np.uint8)  # pages are only touched as data arrives
    view = memoryview(out)
    got = 0
    while got < expected:
        n = stream.readinto(view[got:got + _READ_CHUNK])
        if not n:
            raise _idx_size_error(path, dims, f"only {got} bytes")
        got += n
    if stream.read(1):
        raise _idx_size_error(path, dims, "more")
    return out.reshape(dims)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array in the IDX format of torchvision's MNIST files (read_idx reads it back);
    `gz` writes PATH.gz instead. Returns the path written."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    data = header + np.asarray(array).astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_idx(path: Path, ndim: int, count: int | None = None) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (plain or gzip) with `ndim` dimensions.

    `count`, when given, is the number of entries the first dimension must have (the label
    file's length, checked before the image data is read).
    """
    try:
        with path.open("rb") as handle:
            compressed = handle.read(2) == b"\x1f\x8b"
            handle.seek(0)
            stream: BinaryIO = gzip.GzipFile(fileobj=handle) if compressed else handle
            dims = _idx_header(stream, path, ndim, count)
            if not compressed:
                data_bytes = path.stat().st_size - (4 + 4 * ndim)
                if data_bytes != math.prod(dims):
                    raise _idx_size_error(path, dims, f"{data_bytes} bytes")
            return _idx_data(stream, path, dims)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise FatvizError(f"{path} is a damaged gzip file ({err}); copy it again.") from None
    except OSError as err:
        raise FatvizError(f"{path} could not be read ({err}).") from None


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """`_codecs.encode` as protocol 2 uses it for bytes; other codecs (some slow) are refused."""
    if encoding != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with {encoding!r}")
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    """`bytes()` as protocol 2 uses it for b""; `bytes(n)` would allocate n bytes."""
    return b""


_PICKLE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,  # how Python 3 writes bytes in protocol 2
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}
_PICKLE_NUMPY_MODULES = (
    "numpy.core.multiarray", "numpy._core.multiarray",
    "numpy.core.numeric", "numpy._core.numeric",
)
_PICKLE_MAX_BYTES = 2**26  # a CIFAR-10 python batch holds 31 MB


# The pure-Python unpickler, not the C one: the C unpickler grows its memo list to the largest
# index a PUT opcode names, so an 8-byte file can make it allocate and clear 32 GB.
class _ArrayUnpickler(pickle._Unpickler):
    """Unpickle only what CIFAR files hold (dicts, lists, numpy arrays): no code runs."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PICKLE_GLOBALS:
            return _PICKLE_GLOBALS[module, name]
        if module in _PICKLE_NUMPY_MODULES and name in ("_reconstruct", "scalar", "_frombuffer"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def load_build(self) -> None:
        # BUILD sets the state of the object below it: numpy arrays and dtypes need it; on
        # anything else (the allowed functions themselves) it would set attributes.
        if not isinstance(self.stack[-2], np.ndarray | np.dtype):
            raise pickle.UnpicklingError("refusing to set the state of a non-numpy object")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build


def read_pickle(path: Path) -> dict[str, object]:
    """The dictionary in a CIFAR-10 python batch, keys decoded to str."""
    not_cifar = f"{path} is not a CIFAR-10 python batch"
    try:
        size = path.stat().st_size
        if size > _PICKLE_MAX_BYTES:
            raise FatvizError(
                f"{not_cifar} (it holds {size} bytes, a batch about 31 MB); copy it again from "
                "cifar-10-python.tar.gz."
            )
        # From memory, so a length field promising gigabytes reads only what is there.
        content = _ArrayUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except FatvizError:
        raise
    except Exception as err:  # only allow-listed numpy calls run: any failure means a damaged file
        raise FatvizError(
            f"{not_cifar} ({type(err).__name__}: {err}); copy it again from cifar-10-python.tar.gz."
        ) from None
    if not isinstance(content, dict):
        raise FatvizError(f"{not_cifar} (no dictionary inside).")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in content.items()}


def _shown(value: object) -> str:
    """A short repr for a message (reprlib's), also for values Python refuses to print."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an int of more than 4300 digits
        return f"<{type(value).__name__} too large to print>"


def describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return "nothing" if value is None else f"{type(value).__name__} {_shown(value)}"


def _cifar_labels(path: Path, value: object, num_classes: int) -> np.ndarray:
    """A batch's 'labels' as int64, or one FatvizError naming what is wrong with them."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu":
        items = value.tolist()
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise FatvizError(
            f"{path} lacks CIFAR-10 'labels' (a list of integers 0..{num_classes - 1}; found "
            f"{describe(value)}); copy it again."
        )
    for i, v in enumerate(items):
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= v < num_classes:
            raise FatvizError(
                f"{path} holds label {_shown(v)} at position {i}: CIFAR-10 labels are "
                f"integers 0..{num_classes - 1}; copy it again."
            )
    return np.array(items, np.int64)


def cifar_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = read_pickle(path)
    data = batch.get("data")
    # A real batch's pixels are stored in the file: an array larger than the file was
    # conjured by a constructor call and would only fill memory.
    if not (
        isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
        and len(data) and data.shape[1] == 3072 and data.nbytes <= path.stat().st_size
    ):
        raise FatvizError(
            f"{path} lacks CIFAR-10 'data' (a uint8 array of N x 3072 pixel values; found "
            f"{describe(data)}); copy it again."
        )
    labels = _cifar_labels(path, batch.get("labels"), num_classes)
    if len(data) != len(labels):
        raise FatvizError(f"{path} has {len(labels)} labels for {len(data)} images.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


# Larger images are skipped before decoding (a small PNG can claim gigapixels). The check is
# ours rather than a changed Image.MAX_IMAGE_PIXELS: that is process-wide, and pages load
# datasets from several threads.
MAX_IMAGE_PIXELS = 2**26  # 67 megapixels: above camera photos, below PIL's bomb warning


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )


def decode_image(source: Path | BinaryIO, size: tuple[int, int]) -> np.ndarray | None:
    """One image file (a path or an open binary stream) as uint8 RGB (H, W, 3) resized to `size`;
    None when it is damaged, not an image, or over MAX_IMAGE_PIXELS (checked on the header, before decoding)."""
    height, width = size
    try:
        with Image.open(source) as image:  # reads the header only
            if image.width * image.height > MAX_IMAGE_PIXELS:
                return None
            image.draft("RGB", (width, height))  # JPEG: decode at reduced scale, faster
            return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))
    except Exception:  # PIL raises OSError, SyntaxError, struct.error, DecompressionBombError, ...
        return None


def _read_images(paths: list[Path], size: tuple[int, int]) -> tuple[np.ndarray, list[Path]]:
    """Decode, convert to RGB and resize to (H, W); returns uint8 images and unreadable paths."""
    out = np.zeros((len(paths), *size, 3), np.uint8)
    bad = []
    for i, path in enumerate(paths):
        image = decode_image(path, size)
        if image is None:
            bad.append(path)
        else:
            out[i] = image
    return out, bad


def read_kept(
    paths: list[Path], size: tuple[int, int], skipped: list[Path]
) -> tuple[np.ndarray, np.ndarray]:
    """Read images, appending unreadable ones to `skipped`; returns images and a keep mask."""
    images, bad = _read_images(paths, size)
    skipped.extend(bad)
    bad_set = set(bad)
    keep = np.array([p not in bad_set for p in paths], bool)
    return images[keep], keep


def skip_note(skipped: list[Path], attempted: int) -> tuple[str, ...]:
    if not skipped:
        return ()
    why = f"damaged, or over {MAX_IMAGE_PIXELS // 10**6} megapixels"
    if len(skipped) * 2 > attempted:
        raise FatvizError(
            f"{len(skipped)} of {attempted} images could not be read (e.g. {skipped[0]}; {why}): "
            "check that the folder holds real image files."
        )
    return (f"skipped {len(skipped)} unreadable image(s) ({why}), e.g. {skipped[0]}",)
