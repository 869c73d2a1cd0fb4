"""Opt-in download of MNIST, Fashion-MNIST and CIFAR-10 into a data folder, in torchvision's layout.

fatviz reads datasets from local files (fatviz.data). `download` fetches the three public
sets torchvision can fetch, into the folders torchvision's MNIST, FashionMNIST and CIFAR10
write and fatviz.data reads:

- DIR/MNIST/raw/ and DIR/FashionMNIST/raw/: the four .gz archives and the IDX files unpacked from them;
- DIR/cifar-10-python.tar.gz and DIR/cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta).

Nothing half-done ever sits under a final name: every file is written to a hidden
`.NAME.*.part` file beside it and renamed once complete, an archive only once its MD5 is the
official one, so a killed process leaves nothing that fatviz or torchvision would read. A file
already in place is kept: an unpacked file is used as it is (fatviz's readers check it when
they load it), an archive is checked against its MD5 and fetched again if it differs.

The mirrors are torchvision's. `FATVIZ_DOWNLOAD_MIRROR` replaces them with one base URL, or a
local folder, holding one folder per dataset named as fatviz names it
(BASE/mnist/train-images-idx3-ubyte.gz, BASE/cifar10/cifar-10-python.tar.gz): a copy on a
machine without internet access, or the fake files of the tests.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fatviz.data.loaders import DATASETS
from fatviz.errors import FatvizError
from fatviz.progress import Progress

MIRROR_ENV = "FATVIZ_DOWNLOAD_MIRROR"
TIMEOUT_SECONDS = 30.0  # per connection attempt and per read: a silent server fails, it does not hang
_CHUNK = 2**20


@dataclass(frozen=True)
class Archive:
    """One file on a mirror: its name there and under `Source.folder`, its MD5, and what it unpacks to."""

    name: str
    md5: str
    files: tuple[str, ...]  # paths under the data folder; for a tar, also its members' names


@dataclass(frozen=True)
class Source:
    """Where a dataset's archives come from and where they go, as torchvision lays them out."""

    mirrors: tuple[str, ...]  # base URLs tried in order; an archive's URL is a base + its name
    folder: str  # where the archives are kept, relative to the data folder
    archives: tuple[Archive, ...]


def _idx_source(folder: str, mirrors: tuple[str, ...], md5s: dict[str, str]) -> Source:
    """The four gzipped IDX files of an MNIST-style set, unpacked beside themselves in FOLDER/raw/."""
    raw = f"{folder}/raw"
    return Source(mirrors, raw, tuple(Archive(f"{stem}.gz", md5, (f"{raw}/{stem}",)) for stem, md5 in md5s.items()))


_CIFAR_FILES = tuple(f"cifar-10-batches-py/{n}" for n in
                     [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"])

# URLs and MD5s as torchvision 0.2x lists them (torchvision.datasets.MNIST, FashionMNIST, CIFAR10).
DOWNLOADS: dict[str, Source] = {
    "mnist": _idx_source("MNIST", ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"), {
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
    "fashion-mnist": _idx_source("FashionMNIST", ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",), {
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "cifar10": Source(("https://www.cs.toronto.edu/~kriz/",), "", (
        Archive("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", _CIFAR_FILES),
    )),
}


def mirrors(dataset: str) -> tuple[str, ...]:
    """The base URLs `dataset`'s archives are fetched from, in order: FATVIZ_DOWNLOAD_MIRROR's, else torchvision's."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    if not base:
        return DOWNLOADS[dataset].mirrors
    if "://" not in base:  # a local folder
        base = Path(base).expanduser().resolve().as_uri()
    return (f"{base.rstrip('/')}/{dataset}/",)


def missing(dataset: str, data_root: str | os.PathLike) -> list[Archive]:
    """The archives of `dataset` whose files are not all under `data_root` (none for a set that needs no folder)."""
    spec = DATASETS.get(dataset)
    if not spec.needs_folder:
        return []
    if dataset not in DOWNLOADS:
        raise FatvizError(f"fatviz downloads only {', '.join(DOWNLOADS)}: copy {dataset} into the data folder "
                          f"yourself ({spec.layout}).")
    if not str(data_root).strip():
        raise FatvizError(f"Downloading {dataset} needs a folder to save it in: give the data folder "
                          "(--data-root DIR on the command line, Data folder in the app).")
    root = Path(data_root).expanduser()
    return [a for a in DOWNLOADS[dataset].archives if not all((root / f).is_file() for f in a.files)]


def download(dataset: str, data_root: str | os.PathLike, on_progress: Progress | None = None) -> list[str]:
    """Fetch and unpack what `dataset` lacks under `data_root` (created if need be); the names of the archives fetched.

    No network is used when every file is already there. A failure raises one FatvizError
    saying how to get the files onto this machine another way.
    """
    todo = missing(dataset, data_root)
    if not todo:
        return []
    root = Path(data_root).expanduser()
    folder = root / DOWNLOADS[dataset].folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FatvizError(f"Cannot create {folder} to download {dataset} into ({err.strerror or err}): "
                          "choose a data folder this user can write to.") from None
    if not os.access(folder, os.W_OK):  # else the mirror loop would report it as each mirror's failure
        raise FatvizError(f"{folder} is not writable: choose a data folder this user can write to.")
    fetched = []
    for i, archive in enumerate(todo):
        path = folder / archive.name
        if not (path.is_file() and _md5(path) == archive.md5):
            def report(fraction: float, i: int = i, name: str = archive.name) -> None:
                if on_progress is not None:
                    on_progress((i + fraction) / len(todo), f"{dataset}: {name}")
            _fetch_from_mirrors(dataset, archive, path, root, report)
            fetched.append(archive.name)
        _unpack(archive, path, root)
    if on_progress is not None:
        on_progress(1.0, f"{dataset}: done")
    return fetched


def _fetch_from_mirrors(dataset: str, archive: Archive, path: Path, root: Path,
                        report: Callable[[float], None]) -> None:
    """Try each mirror in turn; if none delivers the official file, one FatvizError naming what each did."""
    failures = []
    for base in mirrors(dataset):
        url = base + archive.name
        try:
            _fetch(url, path, archive.md5, report)
            return
        except _ChecksumMismatch as err:
            failures.append(f"{url} sent a file whose MD5 is {err}, not the official {archive.md5}, so it was deleted")
        except (OSError, http.client.HTTPException, ValueError) as err:
            failures.append(f"{url}: {_reason(err)}")
    raise FatvizError(
        f"Could not download {dataset} ({'; '.join(failures)}). Download it on a machine with internet access "
        f"(`python -m fatviz train --dataset {dataset} --data-root DIR --download --epochs 1`, or torchvision "
        f"with download=True) and copy DIR's contents to {root}, so that it holds {DATASETS.get(dataset).layout}; "
        f"or set {MIRROR_ENV} to a folder or URL holding {dataset}/{archive.name}."
    )


class _ChecksumMismatch(Exception):
    """What a mirror sent is not the official file; the message is the MD5 it had."""


def _reason(err: BaseException) -> str:
    """Why a URL could not be fetched, in a few words."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        err = err.reason if isinstance(err.reason, BaseException) else OSError(str(err.reason))
    if isinstance(err, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    return (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or type(err).__name__


def _fetch(url: str, path: Path, md5: str, report: Callable[[float], None]) -> None:
    """Download `url` to `path` through a temporary file; `path` appears only if the MD5 is `md5`."""
    digest = hashlib.md5(usedforsecurity=False)  # a checksum against damage, not a signature
    with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, _written(path) as out:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        got = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            got += len(chunk)
            if expected:
                report(min(got / expected, 1.0))
        if expected is not None and got != expected:  # http.client returns what came, without an error
            raise ConnectionError(f"the connection closed after {got} of {expected} bytes")
        if digest.hexdigest() != md5:
            raise _ChecksumMismatch(digest.hexdigest())


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _written(target: Path) -> Iterator[BinaryIO]:
    """A temporary file beside `target`, renamed to it if the block ends normally and deleted otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the bytes are on disk before the name says the file is whole
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def _unpack(archive: Archive, path: Path, root: Path) -> None:
    """Write each file of `archive` that is not under `root` yet, each through a temporary file."""
    wanted = {name for name in archive.files if not (root / name).is_file()}
    try:
        if archive.name.endswith(".tar.gz"):
            with tarfile.open(path, "r:gz") as tar:
                for member in tar:  # one pass: a gzip stream is slow to seek back in
                    if member.name in wanted and member.isfile():
                        # The path written is one of ours: the archive's own names never choose where.
                        with tar.extractfile(member) as stream, _written(root / member.name) as out:
                            shutil.copyfileobj(stream, out, _CHUNK)
                        wanted.discard(member.name)
        elif wanted:
            with gzip.open(path, "rb") as stream, _written(root / archive.files[0]) as out:
                shutil.copyfileobj(stream, out, _CHUNK)
            wanted.clear()
    except (OSError, EOFError, zlib.error, tarfile.TarError) as err:
        raise FatvizError(f"{path} could not be unpacked ({err}): delete it and download again.") from None
    if wanted:
        raise FatvizError(f"{path} lacks {', '.join(sorted(wanted))}: delete it and download again.")
