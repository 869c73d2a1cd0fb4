"""The settings sidebar: the only place that turns widgets into a RunSettings. Its settings are
mirrored into the URL, so the address bar is always a shareable link, and read back from it.

Every widget takes its choices (from the registries) and its range (the app range) from the
settings table, `fatviz.settings.setting_fields()`. A link is read leniently: a value a widget
cannot show is moved to the nearest one it can, and one warning names each such value and
its limit, so no link, however odd, breaks a page.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from fatviz.centroids import CENTRE_SOURCES, CENTROIDS, DEFAULT_EMA_BETA
from fatviz.data import DATASETS
from fatviz.data.download import DOWNLOADS, download, missing
from fatviz.data.reid_synth import REID_SIZES
from fatviz.errors import FatvizError
from fatviz.losses import LOSSES
from fatviz.noise import NOISE_TERMS, label_terms, parse_noise
from fatviz.presets import PRESETS
from fatviz.registry import Registry
from fatviz.serve.paths import allowed_roots, resolve_under
from fatviz.settings import RunSettings, SettingField, setting_fields
from pages.ui.look import show_error
from pages.ui.uploads import held_upload, upload_widget

# The embedding sizes the slider offers; a link asking for another gets the nearest.
EMBEDDING_DIMS: tuple[int, ...] = (2, 3, 8, 16, 32, 64, 128)
SIDEBAR_SECTIONS: tuple[str, ...] = ("data", "noise", "loss", "training")


def setting(name: str) -> SettingField:
    """One row of the settings table."""
    return next(f for f in setting_fields() if f.name == name)


def choices(name: str) -> tuple[str, ...]:
    """The values a text setting may take, read from its registry."""
    return setting(name).choices()


def limits(name: str) -> tuple[Any, Any]:
    """The range a visitor may ask for, in the field's type: the min and max of its widget."""
    f = setting(name)
    return f.kind(f.app[0]), f.kind(f.app[1])


def _fit_noise(text: str) -> tuple[str, str]:
    """A link's noise with each rate moved into its slider's range: (noise, the note, or "")."""
    fitted, changed = [], False
    for term in text.strip().lower().split("+"):
        kind, _, rate_text = term.strip().partition(":")
        try:
            rate = float(rate_text)
        except ValueError:
            return text, ""  # RunSettings.read_query says what it cannot read
        if kind not in NOISE_TERMS or not math.isfinite(rate):
            return text, ""
        low, high = NOISE_TERMS.get(kind).rates
        changed |= not low <= rate <= high
        fitted.append(f"{kind}:{min(max(rate, low), high):g}")
    if not changed:
        return text, ""
    spec = "+".join(fitted)
    ranges = ", ".join(f"{n} {t.rates[0]:g} to {t.rates[1]:g}" for n, t in NOISE_TERMS.items())
    return spec, f"noise = {text} has a rate outside what this app trains ({ranges}): using {spec}."


def data_terms() -> tuple[str, ...]:
    """The noise terms that change the data, one slider each."""
    return tuple(n for n in NOISE_TERMS if n not in label_terms())


def noise_widgets(spec: str) -> dict[str, Any]:
    """Widget state for a noise spec: the wrong-identity kind and rate, and each data kind's rate."""
    terms = dict(parse_noise(spec))
    label_kind = next((k for k in terms if k in label_terms()), "none")
    state = {"w_noise_kind": label_kind, "w_noise_rate": float(terms.get(label_kind, 0.2))}
    state.update({f"w_noise_{k}": float(terms.get(k, 0.0)) for k in data_terms()})
    return state


def noise_spec(state: Any) -> str:
    """The noise spec the widgets describe (kinds joined by +)."""
    terms = [] if state["w_noise_kind"] == "none" else [f"{state['w_noise_kind']}:{state['w_noise_rate']:g}"]
    terms += [f"{k}:{state[f'w_noise_{k}']:g}" for k in data_terms() if state.get(f"w_noise_{k}", 0.0) > 0]
    return "+".join(terms) or "none"


def centre_widgets(text: str) -> dict[str, Any]:
    """Widget state for a centre source: its kind and, kept for when ema is picked again, its beta."""
    source = RunSettings(centres=text).centre_source
    return {"w_centres": source.kind, "w_centres_beta": DEFAULT_EMA_BETA if source.beta is None else source.beta}


def centre_text(state: Any) -> str:
    """The centres setting the widgets describe (ema:BETA with the beta box's value)."""
    return f"ema:{float(state['w_centres_beta']):g}" if state["w_centres"] == "ema" else state["w_centres"]


def link_settings() -> tuple[RunSettings, list[str]]:
    """The settings the URL asks for, fitted to what the widgets offer, with one note per value changed."""
    params = {k: st.query_params.get_all(k) for k in st.query_params}
    notes: list[str] = []
    if params.get("noise"):
        noise, note = _fit_noise(params["noise"][-1])
        params["noise"] = [noise]
        notes += [note] if note else []
    settings, problems = RunSettings.read_query(params)
    notes += problems
    settings, note = _own_data(settings)
    notes += [note] if note else []
    if settings.embedding_dim not in EMBEDDING_DIMS:
        nearest = min(EMBEDDING_DIMS, key=lambda d: (abs(d - settings.embedding_dim), d))
        notes.append(f"embedding_dim = {settings.embedding_dim} is not one of the sizes this app offers "
                     f"({', '.join(map(str, EMBEDDING_DIMS))}): using {nearest}.")
        settings = settings.replace(embedding_dim=nearest)
    return settings, notes


def _own_data(settings: RunSettings) -> tuple[RunSettings, str]:
    """A link's dataset as this session can have it: an upload only if this session holds one (its id is
    never in a link), and no dataset the sidebar does not offer (one that reads a server file)."""
    spec = DATASETS.get(settings.dataset)
    if spec.in_sidebar:
        return settings, ""
    upload = held_upload()
    if spec.private and upload is not None:
        return settings.replace(data_root=upload.id), ""
    default = RunSettings()
    why = ("uploaded data, which is never part of a link: upload your own file under Data › Your data"
           if spec.private else "a file on the server, which this app does not read")
    return settings.replace(dataset=default.dataset, data_root=default.data_root), \
        f"dataset = {settings.dataset} names {why}. Using {default.dataset}."


def sidebar_datasets() -> list[str]:
    """The datasets the sidebar offers: the registry's, and this session's upload once there is one."""
    names = [n for n, spec in DATASETS.items() if spec.in_sidebar]
    return names + (["upload"] if held_upload() is not None else [])


def _dataset_words(name: str) -> str:
    upload = held_upload()
    return upload.describe() if name == "upload" and upload is not None else name


def _init_state(settings: RunSettings, notes: list[str]) -> None:
    """Seed widget state once per session, from the link, and keep the notes on what it changed.
    (Pages keep it alive where the sidebar is not drawn: pages.ui.look.start_page.)"""
    if st.session_state.get("_seeded"):
        return
    _write_state(settings)
    st.session_state.update({"_seeded": True, "_link_notes": notes})
    st.session_state.pop("_link_built", None)


def _write_state(s: RunSettings) -> None:
    """Every sidebar widget's value for the settings `s`."""
    st.session_state.update({**noise_widgets(s.noise), **{
        "w_dataset": s.dataset, "w_data_root": s.data_root, "w_subsample": s.subsample, "w_loss": s.loss,
        "w_centroid": s.centroid, "w_negatives": s.negatives, "w_hardest_k": s.hardest_k,
        "w_radius": s.radius, "w_margin": s.margin if s.margin is not None else 0.0,
        "w_margin_auto": s.margin is None,
        "w_cw": s.compactness_weight if s.compactness_weight is not None else 0.0,
        "w_cw_auto": s.compactness_weight is None, "w_epochs": s.epochs,
        "w_embedding_dim": s.embedding_dim, "w_seed": s.seed, **centre_widgets(s.centres),
        "w_blob_outliers": s.blob_outliers, "w_blob_spread": s.blob_spread, "w_reid_size": s.reid_size,
    }})


def _apply_preset() -> None:
    name = st.session_state.get("w_preset")
    if name in PRESETS:
        _write_state(PRESETS[name][1])


def use_preset(name: str) -> None:
    """Load a named preset into the settings widgets (a button callback, like the sidebar's Preset box)."""
    st.session_state["w_preset"] = name
    _apply_preset()


def data_folder(dataset: str, typed: str) -> str:
    """The folder a dataset reads, resolved under the data roots ("" for a dataset that reads none;
    an upload's id for this session's upload)."""
    spec = DATASETS.get(dataset)
    if spec.private:
        upload = held_upload()
        if upload is None:
            raise FatvizError("Your uploaded data is gone from this session: upload the file again.")
        return upload.id
    if not spec.needs_folder or not typed.strip():
        return ""
    return str(resolve_under(typed, allowed_roots("data"), "data folder"))


def _described(registry: Registry) -> str:
    """Each entry of a registry with its description, for a widget's help."""
    return "  \n".join(f"**{name}**: {entry.description}" for name, entry in registry.items())


def _draw(show: tuple[str, ...]) -> None:
    """The sidebar's widgets, each with its registry's choices and its field's app range."""
    sb, ss = st.sidebar, st.session_state
    sb.selectbox("Preset", list(PRESETS), index=None, key="w_preset", on_change=_apply_preset,
                 placeholder="Choose a classroom preset…", help="Load a ready-made setting.")
    if "data" in show:
        sb.subheader("Data")
        offered = sidebar_datasets()
        if ss.get("w_dataset") not in offered:  # an upload this session no longer holds
            ss["w_dataset"] = RunSettings().dataset
        sb.selectbox("Dataset", offered, key="w_dataset", format_func=_dataset_words,
                     help=_described(DATASETS))
        upload_widget(sb)
        spec = DATASETS.get(ss["w_dataset"])
        if spec.needs_folder and not spec.private:
            roots = allowed_roots("data")
            fetchable = ss["w_dataset"] in DOWNLOADS
            sb.text_input("Data folder", key="w_data_root",
                          help=f"A folder under {', '.join(r.name for r in roots)} (a relative name is taken "
                               f"under {roots[0].name}) holding {spec.layout}. "
                               + ("Tick Download if missing to fetch it there." if fetchable else
                                  "fatviz cannot download this one: copy it there."))
            if fetchable:
                sb.checkbox("Download if missing", key="w_download",
                            help="Fetch the dataset from torchvision's mirrors into the data folder, in "
                                 "torchvision's layout, if it is not there yet (needs internet access).")
        sb.number_input("Subsample (0 = all)", *limits("subsample"), step=100, key="w_subsample")
        if ss["w_dataset"] == "blobs":
            sb.slider("Blob spread", *limits("blob_spread"), step=0.1, key="w_blob_spread")
            sb.slider("Outlier fraction", *limits("blob_outliers"), step=0.01, key="w_blob_outliers")
        if ss["w_dataset"] == "reid-synth":
            sb.radio("Size", choices("reid_size"), key="w_reid_size", horizontal=True, help=_described(REID_SIZES))
    if "noise" in show:
        sb.subheader("Label noise")
        sb.radio("Wrong identity", ("none", *label_terms()), key="w_noise_kind", horizontal=True,
                 format_func=lambda n: n if n == "none" else NOISE_TERMS.get(n).label,
                 help="; ".join(f"{n}: {NOISE_TERMS.get(n).help}" for n in label_terms()))
        if ss["w_noise_kind"] != "none":
            sb.slider("Wrong-identity rate", *NOISE_TERMS.get(ss["w_noise_kind"]).rates, step=0.05,
                      key="w_noise_rate")
        for kind in data_terms():
            term = NOISE_TERMS.get(kind)
            sb.slider(term.label, *term.rates, step=0.01, key=f"w_noise_{kind}", help=term.help)
    if "loss" in show:
        sb.subheader("Loss")
        sb.selectbox("Loss", choices("loss"), key="w_loss", help=_described(LOSSES))
        sb.selectbox("Centroid option", choices("centroid"), key="w_centroid",
                     help="The explorer trains every option side by side; this one is used elsewhere.  \n"
                          + _described(CENTROIDS))
        sb.selectbox("Negatives", choices("negatives"), key="w_negatives")
        if ss["w_negatives"] == "hardest":
            sb.number_input("Hardest k", *limits("hardest_k"), key="w_hardest_k")
        sb.selectbox("Compactness (radius)", choices("radius"), key="w_radius",
                     help="mean: mean distance to own centre (public code); max: largest radius (the bound)")
        sb.checkbox("Default margin", key="w_margin_auto")
        if not ss["w_margin_auto"]:
            sb.number_input("Margin", *limits("margin"), step=0.05, key="w_margin")
        sb.checkbox("Default compactness weight", key="w_cw_auto")
        if not ss["w_cw_auto"]:
            sb.number_input("Compactness weight", *limits("compactness_weight"), step=0.1, key="w_cw")
    if "training" in show:
        sb.subheader("Training")
        sb.slider("Epochs", *limits("epochs"), key="w_epochs")
        sb.select_slider("Embedding dimension", EMBEDDING_DIMS, key="w_embedding_dim")
        centre_source_widgets(sb)
        sb.number_input("Seed", *limits("seed"), key="w_seed")


def centre_source_widgets(where: Any) -> None:
    """How fresh the training centres are: the source, and the moving average's beta when it is ema."""
    where.radio("Centres from", CENTRE_SOURCES, key="w_centres", horizontal=True,
                help="epoch: the whole training set at each epoch's start (the paper); batch: each batch's own "
                     "members (no pass over the set); ema: a moving average over the batches, started from "
                     "the untrained network's whole-set centres")
    if st.session_state["w_centres"] == "ema":
        where.number_input("Moving-average beta", 0.0, 1.0, step=0.05, format="%.3f", key="w_centres_beta",
                           help="The weight the history keeps at each batch: centre = beta x centre + "
                                "(1 - beta) x the batch's mean. Strictly between 0 and 1.")


def _from_widgets(base: RunSettings) -> RunSettings:
    """`base` with every sidebar widget's value; a FatvizError if the combination is impossible."""
    ss = st.session_state
    noise = noise_spec(ss)
    return base.replace(
        dataset=ss["w_dataset"], data_root=data_folder(ss["w_dataset"], ss["w_data_root"]),
        subsample=int(ss["w_subsample"]), noise=noise, loss=ss["w_loss"], centroid=ss["w_centroid"],
        negatives=ss["w_negatives"], hardest_k=int(ss["w_hardest_k"]), radius=ss["w_radius"],
        margin=None if ss["w_margin_auto"] else float(ss["w_margin"]),
        compactness_weight=None if ss["w_cw_auto"] else float(ss["w_cw"]),
        epochs=int(ss["w_epochs"]), embedding_dim=int(ss["w_embedding_dim"]), seed=int(ss["w_seed"]),
        centres=centre_text(ss), blob_outliers=float(ss["w_blob_outliers"]),
        blob_spread=float(ss["w_blob_spread"]), reid_size=ss["w_reid_size"],
    )


def _show_link_notes(settings: RunSettings | None) -> None:
    """One warning naming the link's changed values, for as long as the settings are still the link's."""
    ss = st.session_state
    notes = ss.get("_link_notes")
    if not notes:
        return
    first = ss.setdefault("_link_built", settings)
    if settings is not None and settings != first:
        ss["_link_notes"] = []  # the visitor has changed the settings since
        return
    st.warning("This link asked for settings this app does not offer; they were changed:\n\n"
               + "\n".join(f"- {note}" for note in notes), icon=":material/tune:")


def sidebar_settings(show: tuple[str, ...] = SIDEBAR_SECTIONS, base: RunSettings | None = None) -> RunSettings | None:
    """Draw the settings sidebar and return its settings (None, with one error shown, if impossible).

    `base` holds the fields the sidebar does not set (default: the link's). The settings are
    mirrored into the URL, so the address bar is always a shareable link.
    """
    url, notes = link_settings()
    _init_state(url, notes)
    _draw(show)
    try:
        settings = _from_widgets(base or url)
        _download_if_asked(settings)
    except FatvizError as exc:
        _show_link_notes(None)
        show_error(exc)
        return None
    _show_link_notes(settings)
    _sync_url(settings)
    return settings


def _download_if_asked(settings: RunSettings) -> None:
    """Fetch the dataset into its data folder if the Download box is ticked and files are missing."""
    ticked = st.session_state.get("w_download") and settings.dataset in DOWNLOADS
    if ticked and missing(settings.dataset, settings.data_root):
        with st.spinner(f"Downloading {settings.dataset} into the data folder…"):
            download(settings.dataset, settings.data_root)


def _sync_url(settings: RunSettings) -> None:
    """Write the settings into the address bar, keeping the page's own parameters."""
    keep = {k: st.query_params[k] for k in ("present",) if k in st.query_params}
    wanted = {**settings.to_query(), **keep}
    current = {k: st.query_params[k] for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
