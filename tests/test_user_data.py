"""Your own data: tables and zips read as untrusted, turned into datasets, kept per session, trained, never saved."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib
from helpers import class_zip, feature_npz, feature_table, png_claiming

from fatviz.data import load_dataset, user_data
from fatviz.data.user_data import GONE, load_upload, read_upload, user_dataset
from fatviz.errors import FatvizError
from fatviz.figures.labels import nearest_rows_text
from fatviz.serve.uploads import UploadStore
from fatviz.settings import RunSettings

ROOT = Path(__file__).resolve().parents[1]
PEAK_LIMIT = 1.5 * 2**30


def refused(data: bytes, name: str, match: str) -> tuple[str, int]:
    """read_upload's one message for a bad file, and the peak bytes allocated while reading it."""
    tracemalloc.start()
    try:
        with pytest.raises(FatvizError, match=match) as err:
            read_upload(data, name)
        return str(err.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def zipped(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def zip_bomb(unpacked: int) -> bytes:
    """A small zip whose one entry unpacks to `unpacked` bytes of zeros (written in a stream)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("a/big.png", "w", force_zip64=True) as f:
        block = bytes(2**20)
        for _ in range(unpacked // len(block)):
            f.write(block)
    return out.getvalue()


def many_entries(n: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for i in range(n):
            archive.writestr(f"c{i % 2}/{i}.png", b"")
    return out.getvalue()


def npz(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def good_frame() -> pd.DataFrame:
    x, given, _ = feature_table(n=40, k=2, d=3)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["label"] = given
    return frame


def _hostile() -> list[tuple[str, bytes, str]]:
    frame_text = good_frame().astype({"b": object})
    frame_text.loc[7, "b"] = "tall"
    frame_nan = good_frame()
    frame_nan.loc[3, "a"] = np.inf
    one_class = good_frame().assign(label=1)
    text_labels = good_frame().assign(label=["cat", "dog"] * 20)
    x, given, _ = feature_table(n=40, k=2, d=3)
    return [
        ("climb.zip", zipped({"../../etc/a.png": b"x", "ok/b.png": b"y", "ok/c.png": b"z"}), "leaves the archive"),
        ("abs.zip", zipped({"/abs/a.png": b"x"}), "leaves the archive"),
        ("bomb.zip", zip_bomb(80 * 2**20), "would unpack"),
        ("many.zip", many_entries(100_000), "100,000 entries"),
        ("cut.zip", class_zip()[: len(class_zip()) // 2], "not a readable zip"),
        ("huge-png.zip", zipped({"a/1.png": png_claiming(50_000, 50_000), "b/1.png": png_claiming(50_000, 50_000)}),
         "could not be read"),
        ("objects.npz", npz(features=np.array([[1.0, 2.0]] * 8, dtype=object), labels=np.arange(8) % 2),
         "Python objects"),
        ("nofeatures.npz", npz(labels=np.arange(8) % 2), "lacks the array"),
        ("cut.npz", feature_npz()[:500], "not a readable .npz|cannot be read"),
        ("text.csv", csv(frame_text), "feature column 'b' holds text, e.g. 'tall' in row 7"),
        ("inf.csv", csv(frame_nan), "NaN or infinite value.*row 3"),
        ("nan.npz", npz(features=np.where(np.arange(120).reshape(40, 3) == 5, np.nan, x), labels=given), "row 1"),
        ("one.csv", csv(one_class), "one class only"),
        ("words.csv", csv(text_labels), "whole numbers .* not text such as 'cat'"),
        ("halves.npz", npz(features=x, labels=given + 0.5), "whole numbers .* found 0.5"),
        ("nolabel.csv", csv(good_frame().drop(columns="label")), "no `label` column"),
        ("empty.csv", b"", "is empty"),
        ("photo.png", b"\x89PNG", "not a file fatviz reads"),
    ]


@pytest.mark.parametrize("name,data,match", _hostile(), ids=[h[0] for h in _hostile()])
def test_hostile_uploads_get_one_message_and_stay_small(name: str, data: bytes, match: str) -> None:
    message, peak = refused(data, name, match)
    assert name in message or "is empty" in message or "not a file" in message
    assert "\n" not in message and "Traceback" not in message
    assert peak < PEAK_LIMIT, f"{name}: {peak / 2**20:.0f} MB"


def test_over_the_upload_limit(monkeypatch) -> None:
    monkeypatch.setattr(user_data, "MAX_UPLOAD_MB", 1)
    message, _ = refused(bytes(2**20 + 1), "big.npz", "up to 1 MB")
    assert "big.npz is 1 MB" in message


def test_streamlit_upload_limit_is_the_documented_one() -> None:
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == user_data.MAX_UPLOAD_MB


def test_zip_of_class_folders_reads_images_labels_and_skips() -> None:
    data = zipped({"top/cat/1.png": _png(1), "top/cat/2.png": _png(2), "top/dog/1.png": _png(3),
                   "top/dog/2.png": _png(4), "top/dog/3.png": png_claiming(50_000, 50_000),
                   "top/readme.txt": b"hi", "__MACOSX/top/._x": b"", "top/dog/.DS_Store": b""})
    table = read_upload(data, "pets.zip")
    assert table.class_names == ["cat", "dog"]
    assert table.labels.tolist() == [0, 0, 1, 1]
    assert table.images.shape == (4, *user_data.IMAGE_SIZE, 3) and table.images.dtype == np.uint8
    assert table.row_ids.tolist() == ["cat/1.png", "cat/2.png", "dog/1.png", "dog/2.png"]
    assert any("1 unreadable" in n for n in table.notes) and any("not images" in n for n in table.notes)
    assert table.describe() == "your data (pets.zip, 4 samples, 2 classes)"


def _png(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["npz", "csv", "parquet"])
def test_tables_read_the_same_features_labels_and_ids(fmt: str) -> None:
    x, given, truth = feature_table(n=60, k=3, d=4, flip=0.2)
    labels = given * 10 + 5  # any whole numbers: mapped to 0..K-1, named by their values
    frame = pd.DataFrame(x, columns=list("abcd")).assign(label=labels, true_label=truth * 10 + 5,
                                                         id=[f"r{i}" for i in range(60)])
    if fmt == "npz":
        data = npz(features=x, labels=labels, true_label=truth * 10 + 5, names=frame["id"].to_numpy().astype(str))
    elif fmt == "csv":
        data = csv(frame)
    else:
        out = io.BytesIO()
        frame.to_parquet(out)
        data = out.getvalue()
    table = read_upload(data, f"t.{fmt}")
    assert table.class_names == ["5", "15", "25"]
    assert np.array_equal(table.labels, given) and np.array_equal(table.true_labels, truth)
    assert np.allclose(table.features, x) and table.row_ids[3] == "r3"


def test_dataset_from_a_table_with_truth_scores_against_it() -> None:
    x, given, truth = feature_table(n=200, k=4, d=6, flip=0.2)
    table = read_upload(npz(features=x, labels=given, true_label=truth), "t.npz")
    ds = user_dataset(table, seed=0, test_fraction=0.25, subsample=None)
    assert ds.truth_known and len(ds.y_train) + len(ds.y_test) == 200
    ids = ds.ids_train.astype(int)
    assert np.array_equal(ds.y_train, truth[ids]) and np.array_equal(ds.given_train, given[ids])
    assert np.array_equal(ds.y_test, truth[ds.ids_test.astype(int)])  # test metrics use the truth
    assert np.allclose(ds.x_train.mean(0), 0, atol=1e-5)  # standardised with train statistics
    from fatviz.train import prepare

    data = prepare(ds, RunSettings(dataset="table"))
    assert np.array_equal(data.given_labels, given[ids])
    assert np.array_equal(data.noisy.flipped, given[ids] != truth[ids]) and data.noisy.flipped.any()
    with pytest.raises(FatvizError, match="brings its own labels"):
        prepare(ds, RunSettings(dataset="table", noise="symmetric:0.2"))


def test_dataset_without_truth_knows_it_does_not() -> None:
    table = read_upload(feature_npz(), "t.npz")
    ds = user_dataset(table, seed=0, test_fraction=0.25, subsample=None)
    assert not ds.truth_known and ds.given_train is None


def test_a_class_given_once_is_named() -> None:
    x, given, _ = feature_table(n=40, k=2, d=3)
    given[0] = 7
    with pytest.raises(FatvizError, match="class '7' is given to one row only"):
        user_dataset(read_upload(npz(features=x, labels=given), "t.npz"), seed=0, test_fraction=0.25, subsample=None)


def test_store_shares_by_hash_and_forgets_with_the_last_session(tmp_path, monkeypatch) -> None:
    store = UploadStore(tmp_path / "store")
    data = feature_npz()
    first, second = store.add(data, "a.npz"), store.add(data, "b.npz")
    assert first.upload.id == second.upload.id and store.held() == {first.upload.id: 2}
    assert (tmp_path / "store").stat().st_mode & 0o077 == 0  # this user's alone
    loaded = load_dataset("upload", data_root=first.upload.id)
    assert loaded.num_classes == 4 and loaded.ids_train is not None
    uid = first.upload.id
    del first
    gc.collect()
    assert store.path(uid).is_file()  # the other session still holds it
    del second
    gc.collect()
    assert not store.path(uid).exists() and store.held() == {}
    with pytest.raises(FatvizError, match="no longer on the server"):
        load_upload(uid)
    assert "never part of a link" in GONE
    with pytest.raises(FatvizError, match="no longer"):
        load_upload("../../etc/passwd")


def test_an_upload_is_never_in_a_link_nor_saved(tmp_path) -> None:
    store = UploadStore(tmp_path / "store")
    lease = store.add(feature_npz(), "a.npz")
    settings = RunSettings(dataset="upload", data_root=lease.upload.id, epochs=1, vis_points=20, eval_points=100)
    assert settings.to_query()["dataset"] == "upload" and "data_root" not in settings.to_query()
    from fatviz.serve.jobs import JobManager

    manager = JobManager(workers=0, runs_dir=tmp_path / "runs", warm_up=False)
    try:
        job = manager.submit("compare", settings)
        assert job.wait(120) and job.status == "done", job.error
        assert len(job.results) == 4
        assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
        again = manager.submit("compare", settings)
        assert again is job  # a second visitor with the same file shares the training
    finally:
        manager.shutdown()


def test_nearest_rows_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5))
    given = rng.integers(0, 3, 30)
    ids = np.array([f"id{i}" for i in range(30)])
    text = nearest_rows_text(x, np.array([4, 9]), ids, given, ["a", "b", "c"], k=3)
    for row, i in zip(text, (4, 9), strict=True):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        expected = ", ".join(f"id{j} ({'abc'[given[j]]})" for j in np.argsort(d)[:3])
        assert row == expected


def test_rank_lists_on_own_images_leave_the_query_out(tmp_path) -> None:
    from fatviz.retrieval import run_rank_lists
    from fatviz.train import prepare, train

    table = read_upload(class_zip(classes=3, per_class=8), "mine.zip")
    ds = user_dataset(table, seed=0, test_fraction=0.5, subsample=None)
    settings = RunSettings(dataset="table", epochs=1, vis_points=12, eval_points=100)
    data = prepare(ds, settings)
    result = train(settings, data)
    ranked = run_rank_lists(result, data, k=5)
    n = len(ds.y_test)
    assert len(ranked.lists.query) == n
    for q in range(n):
        assert q not in ranked.lists.top[q].tolist()  # never its own match


def test_cli_trains_a_table_and_refuses_a_bad_one(tmp_path) -> None:
    good, bad = tmp_path / "t.csv", tmp_path / "bad.csv"
    x, given, _ = feature_table(n=120, k=3, d=5)
    pd.DataFrame(x, columns=list("abcde")).assign(label=given).to_csv(good, index=False)
    bad.write_text("a,b,label\n" + "".join(f"{i},{'x' if i == 2 else i},{i % 2}\n" for i in range(8)))
    run = [sys.executable, "-m", "fatviz", "train", "--dataset", "table", "--epochs", "2", "--json"]
    ok = subprocess.run([*run, "--data-root", str(good), "--out", str(tmp_path / "r")], capture_output=True,
                        text=True, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout.strip().splitlines()[-1])["settings"]["dataset"] == "table"
    no = subprocess.run([*run, "--data-root", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert no.returncode == 2 and "Traceback" not in no.stderr
    lines = [line for line in no.stderr.splitlines() if line.startswith("fatviz:")]
    assert len(lines) == 1 and "feature column 'b' holds text" in lines[0]
