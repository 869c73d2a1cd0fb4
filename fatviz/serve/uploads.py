"""The app's private store of uploaded data: what a visitor uploads lives only as long as a session holds it.

An upload is read and checked once (fatviz.data.user_data.read_upload), then kept as one numpy file named by
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
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from fatviz.data.user_data import UPLOAD_DIR_ENV, read_upload, save_table


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
