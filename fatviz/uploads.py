"""The app's private store of uploaded data: what a visitor uploads lives only as long as a session holds it.

An upload is read and checked once (fatviz.user_data.read_upload), then kept as one numpy file named by
the hash of the uploaded bytes in a folder of its own, readable by this user only, outside the runs
folder: the training workers (other processes) read it from there by that id. Two visitors uploading
the same file get the same id, so they share one training. Each session holds a `Lease` on the ids
it uploaded; when the last lease on an id is dropped (its sessions ended) the file is deleted, and
the whole folder goes when the app exits. Nothing else names the id: it is never put in a link.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fatviz.errors import FatvizError
from fatviz.user_data import UserTable, read_upload

UPLOAD_DIR_ENV = "FATVIZ_UPLOAD_DIR"  # set by the store for the workers it spawns
_ID = re.compile(r"^[0-9a-f]{24}$")
GONE = ("This uploaded data is no longer on the server (the session that uploaded it ended, or the app "
        "restarted): upload the file again. Uploaded data is never part of a link.")


@dataclass(frozen=True)
class Upload:
    """What the page needs to know of one upload: its id (the settings' data_root) and how it reads."""

    id: str
    name: str
    samples: int
    classes: int
    kind: str  # "images" or "features"
    truth_known: bool
    notes: tuple[str, ...]

    def describe(self) -> str:
        """'your data (NAME, N samples, K classes)', as the dataset choice shows it."""
        return f"your data ({self.name}, {self.samples:,} samples, {self.classes} classes)"


class Lease:
    """A session's hold on an upload: the store keeps the file while any lease on it lives."""

    def __init__(self, store: UploadStore, upload: Upload) -> None:
        self.upload = upload
        weakref.finalize(self, store.release, upload.id)


class UploadStore:
    """Uploads by content hash, in a private folder; `add` returns a Lease the session keeps."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="fatviz-uploads-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        os.environ[UPLOAD_DIR_ENV] = str(self.root)  # workers spawned from now on find it
        self._held: dict[str, int] = {}
        self._known: dict[str, Upload] = {}
        self._lock = threading.Lock()
        atexit.register(shutil.rmtree, self.root, True)

    def add(self, data: bytes, name: str) -> Lease:
        """Check and keep an uploaded file; a FatvizError (saying what is wrong) keeps nothing."""
        uid = hashlib.sha256(data).hexdigest()[:24]
        with self._lock:
            upload = self._known.get(uid)
        if upload is None or not self.path(uid).is_file():
            table = read_upload(data, name)
            save_table(table, self.path(uid))
            upload = Upload(uid, table.name, table.num_samples, table.num_classes,
                            "images" if table.images is not None else "features", table.true_labels is not None,
                            table.notes)
        with self._lock:
            self._known[uid] = upload
            self._held[uid] = self._held.get(uid, 0) + 1
        return Lease(self, upload)

    def path(self, uid: str) -> Path:
        """Where an upload's file lives."""
        return self.root / f"{uid}.npz"

    def held(self) -> dict[str, int]:
        """How many leases hold each upload."""
        with self._lock:
            return dict(self._held)

    def release(self, uid: str) -> None:
        """One lease fewer on `uid`; the file goes with the last one."""
        with self._lock:
            count = self._held.get(uid, 0) - 1
            if count > 0:
                self._held[uid] = count
                return
            self._held.pop(uid, None)
            self._known.pop(uid, None)
        self.path(uid).unlink(missing_ok=True)


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
