"""fatviz.data.download: fake archives served from local files or a local HTTP server land in torchvision's layout and
load; no network, a wrong checksum and an interrupted or killed download each leave nothing that looks complete.
No test touches the internet: the mirrors are file:// URLs, 127.0.0.1 servers, or 127.0.0.1:9 (nothing listens)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from helpers import make_download_mirror
from streamlit.testing.v1 import AppTest

import fatviz.data.download as dl
from fatviz.cli import build_parser, main, settings_from_args
from fatviz.data import DATASETS, load_dataset
from fatviz.data.download import DOWNLOADS, MIRROR_ENV, download, missing
from fatviz.errors import FatvizError

ROOT = Path(__file__).resolve().parents[1]
NOWHERE = "http://127.0.0.1:9/"  # the discard port: nothing listens, so a connection is refused at once
SIZES = {"mnist": (60, 20), "fashion-mnist": (60, 20), "cifar10": (50, 20)}  # what helpers' builders write
LAYOUT = {
    "mnist": ["MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-images-idx3-ubyte",
              "MNIST/raw/t10k-labels-idx1-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte"],
    "fashion-mnist": ["FashionMNIST/raw/train-labels-idx1-ubyte.gz", "FashionMNIST/raw/train-labels-idx1-ubyte"],
    "cifar10": ["cifar-10-python.tar.gz", "cifar-10-batches-py/data_batch_5", "cifar-10-batches-py/batches.meta"],
}


@pytest.fixture(autouse=True)
def _quick_timeout(monkeypatch) -> None:
    monkeypatch.setattr(dl, "TIMEOUT_SECONDS", 10.0)  # a test that would hang fails instead


@pytest.fixture()
def mirror(tmp_path, monkeypatch) -> Path:
    """Fake archives under tmp_path/mirror, their MD5s in DOWNLOADS, FATVIZ_DOWNLOAD_MIRROR pointing at them."""
    folder = tmp_path / "mirror"
    for dataset, md5s in make_download_mirror(folder).items():
        source = DOWNLOADS[dataset]
        monkeypatch.setitem(DOWNLOADS, dataset, replace(source, archives=tuple(
            replace(a, md5=md5s[a.name]) for a in source.archives)))
    monkeypatch.setenv(MIRROR_ENV, folder.as_uri())
    return folder


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def leftovers(folder: Path) -> list[Path]:
    return list(folder.rglob(".*.part"))


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist", "cifar10"])
def test_a_download_lands_in_torchvisions_layout_and_loads(mirror, tmp_path, monkeypatch, dataset):
    root = tmp_path / "data" / "new"  # created by the download
    reports: list[tuple[float, str]] = []
    fetched = download(dataset, root, on_progress=lambda f, m: reports.append((f, m)))
    assert fetched == [a.name for a in DOWNLOADS[dataset].archives]
    assert set(LAYOUT[dataset]) <= set(files_under(root)) and not leftovers(root)
    ds = load_dataset(dataset, data_root=str(root))
    assert (len(ds.y_train), len(ds.y_test)) == SIZES[dataset]
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0]
    # Everything is there: a second call uses no network at all.
    monkeypatch.setenv(MIRROR_ENV, NOWHERE)
    assert missing(dataset, root) == [] and download(dataset, root) == []


def test_a_cifar_archive_writes_only_the_batches_the_reader_reads(mirror, tmp_path):
    download("cifar10", tmp_path)
    assert files_under(tmp_path / "cifar-10-batches-py") == sorted(
        ["batches.meta", "test_batch"] + [f"data_batch_{i}" for i in range(1, 6)])  # not readme.html


def test_an_archive_already_there_is_checked_then_only_unpacked(mirror, tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in (mirror / "mnist").iterdir():
        (raw / archive.name).write_bytes(archive.read_bytes())
    monkeypatch.setenv(MIRROR_ENV, NOWHERE)
    assert download("mnist", tmp_path) == []  # unpacked from the archives, no network
    assert load_dataset("mnist", data_root=str(tmp_path)).num_classes == 10
    # An archive that is not the official one is fetched again, and only that one.
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))  # a plain folder works as a mirror too
    assert download("mnist", tmp_path) == ["t10k-labels-idx1-ubyte.gz"]
    assert load_dataset("mnist", data_root=str(tmp_path)).num_classes == 10


class Server:
    """A 127.0.0.1 HTTP server in a thread: serves `folder`, or with `cut` only that share of each file."""

    def __init__(self, folder: Path, cut: float | None = None, hang: threading.Event | None = None) -> None:
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if cut is None:
                    return super().do_GET()
                data = (folder / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))  # promises the whole file
                self.end_headers()
                self.wfile.write(data[:int(len(data) * cut)])
                self.wfile.flush()
                outer.sent.set()
                if hang is not None:
                    hang.wait(60)
                self.close_connection = True

        self.sent = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_over_http_the_next_mirror_is_tried_when_one_is_down(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV)
    with Server(mirror) as server:
        monkeypatch.setitem(DOWNLOADS, "mnist", replace(DOWNLOADS["mnist"], mirrors=(NOWHERE, server.url + "mnist/")))
        assert len(download("mnist", tmp_path)) == 4
    assert load_dataset("mnist", data_root=str(tmp_path), subsample=20).num_classes == 10


def test_without_network_one_message_says_what_to_do(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, NOWHERE)
    for dataset in ("mnist", "cifar10"):
        root = tmp_path / dataset
        with pytest.raises(FatvizError) as err:
            download(dataset, root)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"Could not download {dataset} ")
        assert "Connection refused" in message and "internet access" in message and "--download" in message
        assert f"copy DIR's contents to {root}," in message and DATASETS.get(dataset).layout in message
        assert files_under(root) == []  # empty folders at most: nothing that looks like data


def test_a_checksum_mismatch_deletes_the_file_and_says_so(mirror, tmp_path, monkeypatch):
    source = DOWNLOADS["mnist"]
    wrong = replace(source.archives[1], md5="0" * 32)
    monkeypatch.setitem(DOWNLOADS, "mnist", replace(source, archives=(source.archives[0], wrong, *source.archives[2:])))
    with pytest.raises(FatvizError, match=f"sent a file whose MD5 is [0-9a-f]{{32}}, not the official {'0' * 32}, "
                                          "so it was deleted") as err:
        download("mnist", tmp_path)
    assert "\n" not in str(err.value)
    raw = tmp_path / "MNIST" / "raw"
    assert files_under(raw) == ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"]  # the first one was right
    assert not leftovers(tmp_path)


def test_a_connection_that_closes_early_leaves_no_file(mirror, tmp_path, monkeypatch):
    with Server(mirror, cut=0.5) as server:
        monkeypatch.setenv(MIRROR_ENV, server.url)
        with pytest.raises(FatvizError, match=r"the connection closed after \d+ of \d+ bytes"):
            download("fashion-mnist", tmp_path / "data")
    assert files_under(tmp_path / "data") == []


def test_an_interrupted_download_leaves_no_file(mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "_CHUNK", 4096)  # several chunks, so the interruption falls mid-file

    def interrupt(fraction: float, message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download("cifar10", tmp_path / "data", on_progress=interrupt)
    assert files_under(tmp_path / "data") == []


def test_a_killed_download_leaves_nothing_that_looks_complete(mirror, tmp_path):
    hang = threading.Event()
    root = tmp_path / "data"
    try:
        with Server(mirror, cut=0.5, hang=hang) as server:
            env = {**os.environ, "PYTHONPATH": str(ROOT), MIRROR_ENV: server.url}
            code = f"import fatviz.data.download as dl; dl._CHUNK = 4096; dl.download('mnist', {str(root)!r})"
            proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
            try:
                assert server.sent.wait(60), "the download never started"
                deadline = time.monotonic() + 60
                while not any(p.stat().st_size for p in leftovers(root)) and time.monotonic() < deadline:
                    time.sleep(0.05)
                proc.kill()  # SIGKILL: no handler runs, no cleanup
                proc.wait(30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.stderr.close()
    finally:
        hang.set()
    (part,) = leftovers(root)
    assert part.stat().st_size > 0 and part.name.startswith(".train-images-idx3-ubyte.gz.")
    assert files_under(root) == [str(part.relative_to(root))]
    with pytest.raises(FatvizError, match="MNIST not found"):
        load_dataset("mnist", data_root=str(root))
    download("mnist", root)  # from the file mirror: the leftover is ignored
    assert load_dataset("mnist", data_root=str(root)).num_classes == 10


def test_an_archive_never_chooses_where_its_files_go(tmp_path, monkeypatch):
    archive = tmp_path / "mirror" / "cifar10" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, body in (("cifar-10-batches-py/../../escaped", b"x"), ("/tmp/absolute", b"y")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    source = DOWNLOADS["cifar10"]
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(DOWNLOADS, "cifar10", replace(source, archives=(replace(source.archives[0], md5=md5),)))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    root = tmp_path / "data"
    with pytest.raises(FatvizError, match="cifar-10-python.tar.gz lacks cifar-10-batches-py/batches.meta, "):
        download("cifar10", root)
    assert files_under(tmp_path / "data") == ["cifar-10-python.tar.gz"]
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute").exists()


def test_what_cannot_be_downloaded_says_so(tmp_path):
    assert missing("digits", "") == [] and download("digits", "") == []  # nothing to fetch
    with pytest.raises(FatvizError, match="fatviz downloads only mnist, fashion-mnist, cifar10: copy market1501"):
        download("market1501", tmp_path)
    with pytest.raises(FatvizError, match="Downloading mnist needs a folder to save it in"):
        download("mnist", " ")
    with pytest.raises(FatvizError, match="Unknown dataset 'nope'"):
        download("nope", tmp_path)


# --------------------------------------------------------------------------- the command line


def test_every_training_command_has_download_and_it_is_not_a_setting(mirror, tmp_path):
    commands = ("train", "compare-centroids", "distill", "compare-losses")
    base = ["--dataset", "mnist", "--data-root", str(tmp_path)]
    for command in commands:
        assert build_parser().parse_args([command, *base]).download is False
    fetched = settings_from_args(build_parser().parse_args(["train", *base, "--download"]))
    assert not missing("mnist", tmp_path)
    plain = settings_from_args(build_parser().parse_args(["train", *base]))
    assert fetched == plain and fetched.key("train") == plain.key("train") and "download" not in plain.to_dict()


def test_train_with_download_fetches_then_trains(mirror, tmp_path, capsys):
    root = tmp_path / "data"
    code = main(["train", "--dataset", "mnist", "--data-root", str(root), "--download", "--epochs", "1",
                 "--embedding-dim", "4", "--vis-points", "30", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert (root / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file() and (tmp_path / "run" / "run.pt").is_file()


def test_train_with_download_and_no_network_is_one_error_line(mirror, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, NOWHERE)
    assert main(["train", "--dataset", "cifar10", "--data-root", str(tmp_path), "--download"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n")
    last = err.strip().splitlines()[-1]
    assert last.startswith("fatviz: Could not download cifar10 (http://127.0.0.1:9/cifar10/cifar-10-python.tar.gz: ")


# --------------------------------------------------------------------------- the app


def noisy_labels_page(dataset: str) -> AppTest:
    """The Noisy labels page (it trains only on a button) with the sidebar's data folder set."""
    at = AppTest.from_file("../pages/noisy_labels.py", default_timeout=120)
    at.run()
    at.selectbox(key="w_dataset").set_value(dataset).run()
    at.text_input(key="w_data_root").input("here").run()
    return at


def test_the_sidebar_box_downloads_into_the_data_folder(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("FATVIZ_DATA_DIRS", str(tmp_path / "roots"))
    at = noisy_labels_page("mnist")
    assert not at.exception and at.checkbox(key="w_download").value is False
    assert not (tmp_path / "roots").exists()  # opt-in: nothing fetched until the box is ticked
    at.checkbox(key="w_download").check().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert load_dataset("mnist", data_root=str(tmp_path / "roots" / "here")).num_classes == 10
    at.selectbox(key="w_dataset").set_value("folder").run()
    assert "w_download" not in [c.key for c in at.checkbox]  # only for the sets fatviz can fetch


def test_the_sidebar_box_without_network_shows_one_error(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("FATVIZ_DATA_DIRS", str(tmp_path / "roots"))
    monkeypatch.setenv(MIRROR_ENV, NOWHERE)
    at = noisy_labels_page("fashion-mnist")
    at.checkbox(key="w_download").check().run()
    assert not at.exception
    (error,) = at.error
    assert error.value.startswith("Could not download fashion-mnist") and "FashionMNIST/raw/" in error.value


def test_the_data_messages_offer_download_for_exactly_the_sets_it_fetches() -> None:
    from fatviz.data import DOWNLOADABLE
    from fatviz.data.download import DOWNLOADS

    assert set(DOWNLOADABLE) == set(DOWNLOADS)
