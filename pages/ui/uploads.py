"""Your own data in the browser: the upload widget, the server's private store, and this session's hold on it.

The store (fatviz.serve.uploads) is one per server; each session keeps a Lease on what it uploaded, in its
own session state, so the data goes when the session does and no other session can name it.
"""

from __future__ import annotations

import streamlit as st

from fatviz.data.user_data import MAX_ROWS, MAX_UPLOAD_MB, MAX_ZIP_ENTRIES, UPLOAD_SUFFIXES
from fatviz.errors import FatvizError
from fatviz.serve.uploads import Upload, UploadStore
from fatviz.settings import RunSettings

LEASE = "_upload_lease"
ERROR = "_upload_error"
FORMATS_HELP = (f"A **.zip** of images, one folder per class (CLASS/IMAGE.png; PNG or JPEG, any size, resized to "
                f"32×32; at most {MAX_ZIP_ENTRIES:,} files), or a table of features and labels: **.npz** with "
                "arrays `features` (N×D) and `labels` (N class ids), optional `names` and `true_label`; **.csv** "
                f"or **.parquet** with a `label` column, numeric feature columns, optional `id` and `true_label` "
                f"(at most {MAX_ROWS:,} rows). Up to {MAX_UPLOAD_MB} MB. With `true_label`, flagging is scored "
                "against it. Your data stays in this browser session: it is never in a link, never shown to "
                "another visitor, and runs trained on it are not saved on the server.")


@st.cache_resource(show_spinner=False)
def upload_store() -> UploadStore:
    """The server's one private store of uploads (created before the training workers, which read from it)."""
    return UploadStore()


def held_upload() -> Upload | None:
    """What this session uploaded, if it holds anything."""
    lease = st.session_state.get(LEASE)
    return None if lease is None else lease.upload


def _take_upload() -> None:
    """The uploader's callback: check and keep the file, or remember the one message saying why not."""
    ss = st.session_state
    file = ss.get("upload_file")
    if file is None:  # the visitor removed the file: let go of it
        if ss.pop(LEASE, None) is not None and ss.get("w_dataset") == "upload":
            ss["w_dataset"] = RunSettings().dataset
        ss.pop(ERROR, None)
        return
    try:
        lease = upload_store().add(file.getvalue(), file.name)
    except FatvizError as exc:
        ss[ERROR] = str(exc)
        return
    ss.pop(ERROR, None)
    ss[LEASE] = lease
    ss["w_dataset"] = "upload"


def upload_widget(where) -> None:
    """The sidebar's uploader, its one error message, and what the session holds."""
    where.file_uploader("Your data", type=[s.lstrip(".") for s in UPLOAD_SUFFIXES], key="upload_file",
                        on_change=_take_upload, help=FORMATS_HELP)
    error = st.session_state.get(ERROR)
    if error:
        where.error(error, icon=":material/block:")
    upload = held_upload()
    if upload is not None:
        notes = "; ".join(upload.notes)
        where.caption(f"**{upload.describe()}**: {upload.kind}, "
                      + ("with its true labels" if upload.truth_known else "no true labels")
                      + (f" ({notes})" if notes else "") + ". In this session only: not in the link, not saved.")
