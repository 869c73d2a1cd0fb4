"""A new job kind, noise term or model is one register call: each fake entry works end to end, then leaves."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fatviz.catalogue import MODELS
from fatviz.cli import COMMANDS, build_parser, settings_from_args
from fatviz.errors import FatvizError
from fatviz.job_kinds import JOB_KINDS, JobKind, saved_kind
from fatviz.noise import NOISE_TERMS, WRONG_IDENTITY, NoiseTerm, apply_noise
from fatviz.registry import lazy
from fatviz.runs import list_groups, load_run
from fatviz.serve.budget import Budget, estimate
from fatviz.serve.jobs import JobManager
from fatviz.settings import RunSettings, settings_markdown

ROOT = Path(__file__).resolve().parents[1]
SMALL = RunSettings(dataset="blobs", blob_classes=3, blob_dim=4, epochs=2, batch_size=32, embedding_dim=4,
                    vis_points=30, eval_points=100)
MARK = "fake.json"


def _fake_run(settings, options, emit, should_stop):
    emit(options[0], ("progress", 0.5, "halfway"))
    return {options[0]: {"seed": settings.seed, "classes": settings.blob_classes}}


def _fake_save(results, folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text(json.dumps(next(iter(results.values()))))


def _fake_load(folder, options):
    try:
        return {options[0]: json.loads((folder / MARK).read_text())}
    except (OSError, ValueError):
        raise FatvizError(f"{folder} holds no fake result.") from None


FAKE_KIND = JobKind(
    "fake", "counts the classes (a test's job kind)", lambda s: ("count",), _fake_run, _fake_save, _fake_load,
    snapshots=False, splits=False, reads=("data",), ignores=("seed",), epochs=lambda s: 3 * s.epochs,
    saved_as="fake count", marker=lambda folder: folder / MARK if (folder / MARK).is_file() else None, animation=None)


@pytest.fixture
def fake_kind():
    JOB_KINDS.register(FAKE_KIND.name, FAKE_KIND)
    yield FAKE_KIND
    JOB_KINDS.unregister(FAKE_KIND.name)


@pytest.fixture
def fake_term():
    term = NoiseTerm("shuffle", WRONG_IDENTITY, (0.0, 0.4), "shuffled", "a label moved two classes on (a test's term)",
                     flip=lambda rng, shape, k: np.full(shape, 2, np.int64))
    NOISE_TERMS.register(term.name, term)
    yield term
    NOISE_TERMS.unregister(term.name)


@pytest.fixture
def fake_model():
    spec = replace(MODELS.get("mlp"), name="wide-mlp", description="the MLP, costed a thousand times (a test's model)",
                   build=lazy("fatviz.models", "mlp_backbone"),
                   seconds_per_input=1000 * MODELS.get("mlp").seconds_per_input)
    MODELS.register(spec.name, spec)
    yield spec
    MODELS.unregister(spec.name)


def test_a_fake_job_kind_is_keyed_costed_trained_saved_listed_and_loaded(fake_kind, tmp_path):
    # Its key reads what it declares: the data, less the seed it ignores; never the model.
    assert SMALL.key("fake") == SMALL.replace(seed=3, model="mlp", epochs=9).key("fake")
    assert SMALL.key("fake") != SMALL.replace(blob_classes=4).key("fake")
    assert SMALL.key("fake") != SMALL.key("train")
    # Its cost is what its entry says it trains: three runs' epochs fit where two would not.
    limit = Budget(max_active=4, memory=1e12, seconds=estimate("fake", SMALL).seconds * 1.001)
    limit.check("fake", SMALL, active=0)
    limit.check("train", SMALL.replace(epochs=3 * SMALL.epochs), active=0)
    with pytest.raises(FatvizError, match="minutes"):
        limit.check("fake", SMALL.replace(epochs=SMALL.epochs + 1), active=0)

    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("fake", SMALL)
    assert job.wait(30) and job.status == "done", job.error
    assert job.result == {"seed": 0, "classes": 3}
    folder = mgr.store.folder(job)
    assert saved_kind(folder) == "fake" and (folder, "fake") in list_groups(tmp_path)

    again = JobManager(workers=0, runs_dir=tmp_path).submit("fake", SMALL.replace(seed=7))  # same key
    assert again.done and again.from_cache and again.result == {"seed": 0, "classes": 3}

    args = build_parser("train").parse_args(["train", "--out", str(folder)])
    from fatviz.cli import _destination

    with pytest.raises(FatvizError, match="holds a saved fake count"):
        _destination(args, SMALL, "train")


def test_a_fake_job_kind_leaves_no_trace_once_unregistered(tmp_path):
    (tmp_path / MARK).write_text("{}")
    assert "fake" not in JOB_KINDS and saved_kind(tmp_path) is None
    with pytest.raises(FatvizError, match="Unknown job kind 'fake'"):
        SMALL.key("fake")


def test_a_fake_noise_term_is_validated_keyed_limited_on_the_cli_and_offered_in_the_sidebar(fake_term):
    from pages.ui.sidebar import _fit_noise, data_terms, noise_spec, noise_widgets

    s = SMALL.replace(noise="shuffle:0.2+outlier:0.1")
    assert s.key("train") != SMALL.replace(noise="symmetric:0.2+outlier:0.1").key("train")
    with pytest.raises(FatvizError, match="both symmetric and shuffle"):
        SMALL.replace(noise="symmetric:0.1+shuffle:0.1")  # both file samples under another label
    # The CLI keeps to the term's range unless --no-limits.
    parser = build_parser("train")
    assert settings_from_args(parser.parse_args(["train", "--noise", "shuffle:0.3"])).noise == "shuffle:0.3"
    with pytest.raises(FatvizError, match=r"shuffle:0.5 is outside 0 to 0.4.*--no-limits"):
        settings_from_args(parser.parse_args(["train", "--noise", "shuffle:0.5"]))
    assert settings_from_args(parser.parse_args(["train", "--noise", "shuffle:0.5", "--no-limits"])).noise == "shuffle:0.5"
    # The sidebar offers it among the wrong-identity kinds, round-trips it and clamps a link to its range.
    assert "shuffle" not in data_terms()
    state = noise_widgets("shuffle:0.25+multi:0.05")
    assert state["w_noise_kind"] == "shuffle" and noise_spec(state) == "shuffle:0.25+multi:0.05"
    assert _fit_noise("shuffle:0.9")[0] == "shuffle:0.4"
    assert "`shuffle:RATE` | 0 to 0.4 | wrong identity" in settings_markdown()


def test_a_fake_noise_term_moves_labels_by_its_rule_and_trains(fake_term, tmp_path):
    from fatviz.data import load_dataset

    data = load_dataset("blobs", seed=0)
    _, noisy = apply_noise(data, "shuffle:0.3", seed=0)
    moved = noisy.flipped
    assert 0.2 < moved.mean() < 0.4 and set(noisy.sample_kind[moved]) == {WRONG_IDENTITY}
    assert (noisy.labels[moved] == (data.y_train[moved] + 2) % data.num_classes).all()
    job = JobManager(workers=0, runs_dir=tmp_path).submit("train", SMALL.replace(noise="shuffle:0.3"))
    assert job.wait(120) and job.status == "done", job.error


def test_a_data_noise_term_nobody_applies_fails_with_one_message():
    from fatviz.data import load_dataset

    NOISE_TERMS.register("smudge", NoiseTerm("smudge", "multi", (0.0, 0.2), "smudged", "a test's data term"))
    try:
        with pytest.raises(FatvizError, match="smudge has no way to apply it"):
            apply_noise(load_dataset("blobs", seed=0), "smudge:0.1", seed=0)
    finally:
        NOISE_TERMS.unregister("smudge")


def test_a_fake_model_is_a_choice_everywhere_costs_what_it_says_and_trains_saves_and_loads(fake_model, tmp_path):
    from pages.ui.sidebar import choices

    s = SMALL.replace(model="wide-mlp")
    assert "wide-mlp" in choices("model")
    assert settings_from_args(build_parser("train").parse_args(["train", "--model", "wide-mlp"])).model == "wide-mlp"
    assert s.key("train") != SMALL.replace(model="mlp").key("train")
    # A thousand times the MLP's cost per input: a limit the MLP fits refuses it.
    limit = Budget(max_active=4, memory=1e12, seconds=3 * estimate("train", SMALL.replace(model="mlp")).seconds)
    limit.check("train", SMALL.replace(model="mlp"), active=0)
    with pytest.raises(FatvizError, match="minutes"):
        limit.check("train", s, active=0)

    mgr = JobManager(workers=0, runs_dir=tmp_path)
    job = mgr.submit("train", s)
    assert job.wait(120) and job.status == "done", job.error
    assert load_run(mgr.store.folder(job) / s.centroid).settings.model == "wide-mlp"
    again = JobManager(workers=0, runs_dir=tmp_path).submit("train", s)
    assert again.from_cache and again.result.settings.model == "wide-mlp"


def test_help_and_the_settings_doc_name_every_command_and_noise_kind():
    out = subprocess.run([sys.executable, "-m", "fatviz", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    description = out.split("\n\n")[1]
    for command in COMMANDS:
        assert command in description
    doc = (ROOT / "docs" / "SETTINGS.md").read_text()
    for name in NOISE_TERMS:
        assert f"`{name}:RATE`" in doc
