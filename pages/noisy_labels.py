"""Noisy labels: a teacher flags the samples it doubts, a student trains with FAT on the rest."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from fatviz.catalogue import BASELINE_SETS
from fatviz.data import DATASETS
from fatviz.distill import verdict_of
from fatviz.distill.report import phase_times
from fatviz.errors import FatvizError
from fatviz.figures.labels import (
    OUTCOMES,
    SORT_ORDERS,
    baselines_figure,
    confusion_figure,
    flag_outcomes,
    flagging_comparison,
    gallery_rows,
    kept_per_round_figure,
    kind_table,
    noise_kinds,
    sample_indices,
    score_figure,
)
from fatviz.noise import SAMPLE_KINDS
from fatviz.settings import RunSettings
from pages.ui.gallery import gallery, truth_known
from pages.ui.live import finished_job, prepared_data
from pages.ui.look import crisp_images, presentation, show_error, start_page
from pages.ui.sidebar import choices, limits, link_settings, sidebar_settings

# Distillation controls on this page: widget key -> RunSettings field.
DISTILL_FIELDS = {"nl_teacher_epochs": "teacher_epochs", "nl_rounds": "teacher_rounds",
                  "nl_round_epochs": "round_epochs", "nl_rule": "confidence_rule",
                  "nl_threshold": "confidence_threshold", "nl_keep": "keep_fraction", "nl_temperature": "temperature",
                  "nl_verdict": "teacher_verdict", "nl_two_people": "two_people", "nl_student_verdict": "student_verdict",
                  "nl_cv_epochs": "cv_epochs", "nl_baseline_set": "baselines"}
VERDICT_WORDS = {"auto": "auto (centres on ReID data)", "softmax": "its softmax",
                 "centre": "its embedding's class centres"}
TWO_PEOPLE_WORDS = {"auto": "auto (on ReID images)", "on": "on", "off": "off"}
STUDENT_VERDICT_WORDS = {"auto": "auto (after the centre verdict)", "on": "on", "off": "off"}
GALLERY_MAX = 48


def _use_pairflip() -> None:
    st.session_state.update({"w_noise_kind": "pairflip", "w_noise_rate": 0.4})


def distill_controls(base: RunSettings) -> dict:
    """The distillation widgets (seeded once from the link); returns the RunSettings fields they set."""
    if not st.session_state.get("nl_seeded"):
        st.session_state.update({key: getattr(base, name) for key, name in DISTILL_FIELDS.items()})
        st.session_state["nl_seeded"] = True
    with st.expander("Teacher and student", expanded=True):
        c1, c2, c3, c4 = st.columns(4)
        c1.slider("Teacher epochs", *limits("teacher_epochs"), key="nl_teacher_epochs",
                  help="Cross-entropy on all (noisy) labels first; a briefly trained network is sure of clean samples.")
        c2.slider("Rounds", *limits("teacher_rounds"), key="nl_rounds",
                  help="Each round retrains on the samples kept so far.")
        c3.slider("Epochs per round", *limits("round_epochs"), key="nl_round_epochs")
        c4.slider("Temperature", *limits("temperature"), step=0.1, key="nl_temperature",
                  help="Softens the teacher's softmax before it becomes the student's soft labels.")
        c5, c6 = st.columns(2)
        c5.radio("Keep a sample when", choices("confidence_rule"), key="nl_rule", horizontal=True,
                 format_func={"agree": "the teacher agrees, above a threshold",
                              "small-loss": "its loss is among the smallest"}.get)
        if st.session_state["nl_rule"] == "agree":
            c6.slider("Confidence threshold", *limits("confidence_threshold"), step=0.05, key="nl_threshold",
                      help="Keep a sample when the teacher predicts its given label with at least this probability.")
        else:
            c6.slider("Keep fraction", *limits("keep_fraction"), step=0.05, key="nl_keep",
                      help="Keep this share of each round's samples: those with the smallest loss.")
        c7, c8 = st.columns(2)
        c7.radio("Final verdict from", choices("teacher_verdict"), key="nl_verdict", horizontal=True,
                 format_func=VERDICT_WORDS.get,
                 help="Softmax: the rule above on the teacher's last round. Centres: a sample is kept when it lies "
                      "close to the other members of its given class in the teacher's embedding (the cut is found "
                      "in the data). Auto takes the centres on ReID data, where a briefly trained classifier of "
                      "hundreds of identities is too unsure; there the student then trains on the kept samples only.")
        c8.radio("Look for two people in one image", choices("two_people"), key="nl_two_people", horizontal=True,
                 format_func=TWO_PEOPLE_WORDS.get,
                 help="Image data: a detector trained on side-by-side pairs of kept samples says which images show "
                      "two people; those are flagged, and the student names both from the image's halves.")
        c7.radio("Then the student judges again", choices("student_verdict"), key="nl_student_verdict",
                 horizontal=True, format_func=STUDENT_VERDICT_WORDS.get,
                 help="Once trained, the student knows the classes far better than the briefly trained teacher: "
                      "judged by its embedding's class centres, a clean sample the teacher flagged is kept again. "
                      "The flags shown are then the student's. Auto: when the teacher's verdict is the centres.")
    with st.expander("Comparisons (trained after the student)"):
        d1, d2 = st.columns(2)
        d1.slider("Epochs per cross-validation fold", *limits("cv_epochs"), key="nl_cv_epochs",
                  help="Confident learning (cleanlab) needs out-of-sample probabilities: five networks of the "
                       "teacher's kind, each trained with cross-entropy this many epochs on four fifths of the labels.")
        d2.radio("Baselines on the noisy labels", choices("baselines"), key="nl_baseline_set", horizontal=True,
                 format_func=lambda name: BASELINE_SETS.get(name).words,
                 help="Models trained on the given labels without a teacher, to compare the student with. "
                      "FAT only (the student's own loss) is what the headline comparison needs.")
    return {name: st.session_state[key] for key, name in DISTILL_FIELDS.items()}


def show_gallery(result, settings: RunSettings, names: list[str]) -> None:
    """Flagged, wrongly flagged and missed samples as images (a table for vector data)."""
    table = result.table.assign(outcome=flag_outcomes(result.table))
    data = prepared_data(settings)
    images = None if data is None else data.dataset.images_train
    if data is not None and data.dataset.ids_train is not None:  # the user's own rows: their ids first
        table.insert(0, "row_id", data.dataset.ids_train[sample_indices(table)])
    if not truth_known(data):  # nothing is known to be flipped: every flag is a question, not a score
        table = table.assign(outcome=np.where(table["flagged"], "correctly flagged", "kept"))
    f1, f2 = st.columns([2, 1])
    classes = f1.multiselect("Given label", list(range(len(names))), format_func=lambda k: names[k],
                             key="nl_classes", placeholder="every class")
    order = f2.radio("Order", SORT_ORDERS, key="nl_order", horizontal=True,
                     help="Score: the teacher's probability of the given label.")
    shown = OUTCOMES[:3]
    counts = table["outcome"].value_counts()
    kinds = noise_kinds(result.table)
    noisy_kinds = [k for k in SAMPLE_KINDS.names()[1:] if (kinds == k).any()]
    soft = getattr(result, "soft_labels", None)
    if not truth_known(data):
        shown = OUTCOMES[:1]
    tabs = st.tabs([f"{o.capitalize() if truth_known(data) else 'Flagged'} ({int(counts.get(o, 0))})" for o in shown])
    for tab, outcome in zip(tabs, shown, strict=False):
        rows = gallery_rows(table, outcome, classes, order)
        with tab:
            # Flagged and missed samples split by noise kind once the run mixes kinds (clean ones have one).
            split = noisy_kinds if outcome != "wrongly flagged" and len(noisy_kinds) > 1 else [None]
            places = [st.container()] if split == [None] else st.tabs(
                [f"{SAMPLE_KINDS.get(k).label} ({int((kinds[rows.index] == k).sum())})" for k in split])
            for place, kind in zip(places, split, strict=False):
                with place:
                    part = rows if kind is None else rows[kinds[rows.index] == kind]
                    gallery(part.head(GALLERY_MAX), len(part), images, names, soft, kinds, data)


def student_words(settings: RunSettings, data) -> str:
    """What the student trained on, in words: the kept samples alone on the centre verdict, else all with soft labels."""
    if data is not None and verdict_of(settings, data) == "centre":
        return "the samples the teacher kept, with their given labels"
    return "every sample, its class centres from the kept ones and its cross-entropy on the teacher's soft labels"


def _number(value: float) -> str:
    """Three decimals, or a dash for a part that was not measured (NaN)."""
    return "–" if math.isnan(value) else f"{value:.3f}"


def _downloads(result, settings: RunSettings, data) -> None:
    """Every sample as CSV, and the flagged ones alone; with the user's row ids when the data is theirs."""
    table = result.table
    if data is not None and data.dataset.ids_train is not None:
        table = table.assign(row_id=data.dataset.ids_train[sample_indices(table)])
        table = table[["row_id", *result.table.columns]]
    name = f"distill-{settings.key('distill')}"
    st.download_button("Download every sample as CSV", table.to_csv(index=False), file_name=f"{name}.csv",
                       mime="text/csv", icon=":material/download:")
    st.download_button("Download the flagged samples as CSV", table[table["flagged"]].to_csv(index=False),
                       file_name=f"{name}-flagged.csv", mime="text/csv", icon=":material/download:")


def show_result(result, settings: RunSettings) -> None:
    """Everything the distillation measured."""
    big = presentation()
    names = list(result.student.class_names)
    rep = result.report
    data = prepared_data(settings)
    if not truth_known(data):
        st.subheader("What the teacher flags in your labels")
        m = st.columns(3)
        m[0].metric("Flagged", f"{int(rep['n_flagged'])} of {len(result.table)}",
                    help="Samples whose given label the teacher doubts, and drops from the student's training.")
        m[1].metric("Confident learning flags", "–" if math.isnan(rep["cleanlab_n_flagged"])
                    else f"{int(rep['cleanlab_n_flagged'])}")
        m[2].metric("Student P@1", _number(rep["student_precision_at_1"]),
                    help="Retrieval on the test split, against the given labels (no truth is known).")
        st.info("Your data came without true labels, so flag precision, recall and F1 need the truth and are not "
                "shown: add a `true_label` column (or array) to score them. Below: what the teacher flagged, and "
                "the CSV with your row ids.", icon=":material/help:")
        _downloads(result, settings, data)
        show_gallery(result, settings, names)
        return
    st.subheader("How well the teacher finds the flipped labels")
    m = st.columns(5)
    m[0].metric("Precision", _number(rep["flag_precision"]), help="Of the flagged samples, the share really flipped.")
    m[1].metric("Recall", _number(rep["flag_recall"]), help="Of the flipped samples, the share flagged.")
    m[2].metric("F1", _number(rep["flag_f1"]))
    m[3].metric("Flagged / flipped", f"{int(rep['n_flagged'])} / {int(rep['n_flipped'])}")
    m[4].metric("Kept labels correct", _number(rep["kept_label_precision"]),
                help="Among the samples the teacher kept, the share whose given label is the true one.")
    per_kind = kind_table(rep)
    if len(per_kind) > 1 or (len(per_kind) == 1 and per_kind.index[0] != SAMPLE_KINDS.get("wrong_identity").label):
        st.markdown("**Per noise kind** (each scored as if it were the only noise: other noisy kinds left out)")
        colours = {e.label: e.colour for _, e in SAMPLE_KINDS.items()}  # the noise kind's colour, as in the bars
        st.dataframe(per_kind.style.format("{:.3f}", na_rep="–").format("{:.0f}", subset=["samples"]).apply_index(
            lambda idx: [f"color: {colours[name]}; font-weight: bold" for name in idx]))
        extra = [f"composites whose soft label's top two are both their classes: {_number(rep['multi_top2_both'])}"
                 if rep.get("n_multi", 0) else "",
                 f"soft-label entropy (1 = flat): outliers {_number(rep['outlier_soft_entropy'])}, clean "
                 f"{_number(rep['clean_soft_entropy'])}" if rep.get("n_outlier", 0) else "",
                 f"centre shift with all noisy samples {_number(rep['centre_shift_noisy'])}, kept only "
                 f"{_number(rep['centre_shift_kept'])} (clean centres {_number(rep['centre_spacing'])} apart)"]
        st.caption(" · ".join(e for e in extra if e))
    with st.expander("How these numbers were made"):
        st.markdown("\n".join(f"- {note}" for note in result.notes))
    c1, c2 = st.columns([3, 2], gap="large")
    c1.markdown("**The teacher side by side with confident learning** (cleanlab, out-of-sample probabilities)")
    c1.dataframe(flagging_comparison(rep).style.format("{:.3f}", na_rep="–").format(
        "{:.0f}", subset=(["flagged"], slice(None)), na_rep="–"), width="stretch")
    with c2:
        _downloads(result, settings, data)
        times = phase_times(rep)
        st.caption(f"One row per training sample: given, teacher's and true label, score, flagged, round "
                   f"discarded. Took {rep['seconds']:.1f} s" + (f": {times}." if times else "."))
    gallery, rounds, confusion, student, per_class = st.tabs(
        ["Flagged samples", "Rounds", "Where labels moved", "Student vs baselines", "Per class"])
    with gallery:
        show_gallery(result, settings, names)
    with rounds:
        r1, r2 = st.columns(2, gap="large")
        r1.plotly_chart(kept_per_round_figure(result.rounds, names, presentation=big), theme=None, key="nl_rounds_fig")
        threshold = settings.confidence_threshold if settings.confidence_rule == "agree" else None
        r2.plotly_chart(score_figure(result.table, threshold, presentation=big), theme=None, key="nl_score_fig")
    with confusion:
        h1, h2 = st.columns(2, gap="large")
        h1.plotly_chart(confusion_figure(result.confusion, "given_label", "teacher_label", names, presentation=big),
                        theme=None, key="nl_conf_teacher")
        h2.plotly_chart(confusion_figure(result.confusion, "given_label", "true_label", names, presentation=big),
                        theme=None, key="nl_conf_true")
        st.caption("Left: what the teacher predicts for each given label. Right: the truth. With pairflip noise "
                   "the off-diagonal band on the right is the noise; the teacher's matrix shows how much it undoes.")
    with student:
        s1, s2 = st.columns(2, gap="large")
        s1.plotly_chart(baselines_figure(result.baselines, presentation=big), theme=None, key="nl_baselines")
        shown = result.baselines.rename(columns={"precision_at_1": "P@1", "map": "mAP", "nmi": "NMI", "seconds": "s"})
        s2.dataframe(shown.style.format("{:.3f}", na_rep="–").format("{:.1f}", subset=["s"], na_rep="–"))
        s2.caption("Retrieval and clustering on the test split with true labels. The baselines train on the noisy "
                   "labels as given; the student trains with FAT on " + student_words(settings, data) + ".")
    with per_class:
        st.dataframe(result.per_class.assign(**{"class": result.per_class["class"].map(
            lambda c: names[int(c)] if 0 <= int(c) < len(names) else c)}), hide_index=True)


start_page()
crisp_images()
st.title("Noisy labels")
st.markdown(
    "A **teacher** trained briefly with cross-entropy is sure of clean samples first. Samples whose given label "
    "it doubts are **flagged** and dropped, round by round. A **student** then trains with FAT, its class "
    "centres made of the kept samples only: on small sets its cross-entropy learns the teacher's softmax "
    "(**soft labels**); on ReID data, where the teacher judges by its embedding's class centres, it trains on "
    "the kept samples with their given labels, then judges every sample again. Images showing **two people** "
    "are flagged and both are named. "
    "With synthetic noise the truth is known, so flagging is scored.")
base, _ = link_settings()  # a shared link keeps its distillation controls (the sidebar warns once)
fields = distill_controls(base)
settings = sidebar_settings(base=base.replace(**fields))
if settings is None:
    st.stop()
if settings.noise == "none" and DATASETS.get(settings.dataset).in_sidebar:  # a user's own labels bring their noise
    st.info("There is no label noise, so every flag is a false alarm. Choose noise in the sidebar, or:",
            icon=":material/lightbulb:")
    st.button("Use 40% pairflip noise", on_click=_use_pairflip)

job = finished_job("distill", settings, "Run the teacher and the student")
try:
    show_result(job.result, settings)
except FatvizError as exc:
    show_error(exc)
