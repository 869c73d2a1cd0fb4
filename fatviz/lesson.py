"""The Lesson: a class's walk through FAT in a few steps, each one screen with one live instrument.

What each step says (in the paper's words), what the class should try, the presenter's notes,
and the settings of what it trains live here; the Lesson page (pages/lesson.py) draws them with
the other pages' instruments. `step_from_query` reads a deep link's `?step=K`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fatviz import catalogue
from fatviz.presets import PRESETS
from fatviz.settings import RunSettings


@dataclass(frozen=True)
class Step:
    """One screen of the lesson: its instrument (a key the page draws), text, what to try, notes."""

    key: str
    title: str
    text: str
    try_this: str
    notes: str


STEPS: tuple[Step, ...] = (
    Step("demo", "One network, four ways to place the centre",
         "A triplet loss pulls an **anchor** towards a positive (same class) and pushes it away from a "
         "negative (another class). **FAT** replaces every positive and negative by its class **centre** "
         "and the class **radius**. The same network is trained four times on handwritten digits, once per "
         "way of computing the centre.",
         "Watch the classes pull apart epoch by epoch, then press **▶ Play** in the chart to see it again. "
         "Which panel separates first?",
         "Home's demo: digits, 30 epochs, seed 0, trained once for the whole server (a second visit loads "
         "the saved run). The four panels differ only in where the centre sits and whether distances are "
         "measured on the unit circle. Let the class describe what they see before you name anything."),
    Step("bound", "One triplet and its bound",
         "For anchor **a**, positive **p** and negative **n**, two triangle inequalities bound the triplet "
         "loss [d(a,p) − d(a,n) + m]₊ by the **point-to-set** term [d(a,c_a) − d(a,c_n) + m]₊ plus the two "
         "**radii** R_a + R_n. The bound needs only distances to centres.",
         "**Drag the negative inside the anchor's radius**: the triplet loss rises, and the bound stays "
         "above it. Then drag the positive far out: the radius grows with it.",
         "Option mean on raw 2-D features, so a drag moves the point where the pointer is. The numbers under "
         "the drawing are computed in the browser with fatviz's own definitions (tests/test_bound_drag.py). "
         "Ask: can the loss ever exceed the bound? (No: the triangle inequality.) The Bound page has every "
         "option, the margin and other blobs."),
    Step("whole_set", "All triplets at once: the radii are the price",
         "Over **all** triplets of a set, the exact mean loss is O(N³) work; the bound is O(N·K): each anchor "
         "against K centres. The gap between them is the **radius term**. FAT's **compactness** term "
         "shrinks the radii, and with them the gap.",
         "Slide the **outlier fraction** from 0 to 0.1: the radius term jumps for every centroid option, "
         "the exact loss grows far less. The gap between them is the price of O(N·K).",
         "Exact mean over every triplet of 160 points, computed here, beside the bound per option. An "
         "outlier keeps its label, so its class's radius reaches out to it. This is why FAT minimises a "
         "compactness term and not only the point-to-set term."),
    Step("options", "Four centroid options on a harder set",
         "Where should the centre sit, and where are distances measured? The plain mean of raw features, "
         "or the mean of unit vectors, or either projected onto the unit circle. Here: six 2-D blobs with "
         "outliers, embedded straight into 2-D.",
         "Read P@1 above each panel. In 2-D a normalised option has only the circle's angle to keep six "
         "blobs apart: where do its centres crowd? Press **▶ Play** to watch them find their places.",
         "The 2-D blobs preset of the Classroom (5% outliers, 2-D embedding, 30 epochs): the network's "
         "output is drawn as it is, no projection. On the 32-D digits of step 1 the options end close "
         "together; squeezed into 2-D they differ, which is the point: where the centre sits changes what "
         "the loss can do. The Centroid explorer shows the same runs with metrics and single samples."),
    Step("noisy", "A teacher flags the labels it doubts",
         "With 40% of each digit relabelled as the next digit, a **teacher** trained briefly with "
         "cross-entropy is sure of the clean samples first. The samples it doubts are **flagged** and "
         "dropped; its softmax becomes **soft labels** for a **student** trained with FAT on the rest.",
         "Read a flagged digit: its given label, the teacher's label, the truth. The bars under it are its "
         "soft label, one per digit: the tall bar is the teacher's, the underline marks the truth.",
         "A small distillation (10 student epochs, one epoch per cross-validation fold, no baselines) built "
         "at first use and saved. Precision: of the flagged, the share really flipped; recall: of the "
         "flipped, the share flagged. The Noisy labels page has the rounds, the confusion matrices and the "
         "baselines."),
    Step("speed", "Why it is fast: N·K instead of N³",
         "All-triplet losses compare every anchor with every positive and every negative: **N³** work for "
         "a batch of N. FAT compares each anchor with the K class **centres**: **N·K**. The chart times one "
         "training step of each on random 128-D embeddings.",
         "Press **Time the losses**, then read the slopes in the legend against the faint N, N², N³ lines.",
         "A few seconds on a laptop, then cached for every visitor (rehearse it once before class). Small "
         "batches are dominated by fixed overheads, so slopes are lower there than the operation counts "
         "say. The Speed page times larger batches and more methods."),
    Step("centres", "How fresh must the class centres be?",
         "FAT's centres come from a **whole-set pass** each epoch. A batch's **own centres** cost nothing "
         "extra but are noisy; a **moving average** over batches sits between. One FAT run per choice of "
         "`centres`, same data and seed.",
         "Ask the class to vote first: which keeps precision@1? Then press **Train one run per choice**.",
         "The choices are read from the settings registry (`centres` in docs/SETTINGS.md), so a new one "
         "appears here by itself. FAT loss alone (no cross-entropy) on digits, 10 epochs: about a second "
         "a run. The answer is on the chart and may differ on another dataset: try it in the sidebar of "
         "the Centroid explorer."),
)

# What the steps train: Home's demo, the Classroom's 2-D blobs preset, a small noisy distillation.
DEMO = RunSettings()
HARDER = PRESETS["2-D blobs"][1]
NOISY = RunSettings(noise="pairflip:0.4", epochs=10, cv_epochs=1, baselines="none")
CENTRES_BASE = RunSettings(loss="fat", epochs=10)
# The draggable triplet and the whole-set view: teaching blobs (classes, spread, outliers, seed).
BOUND_BLOBS = (4, 1.0, 0.0, 0)
BOUND_OPTION = "mean"
WHOLE_SET_OUTLIERS = 0.0  # the class sees the radii grow from clean blobs
# The speed chart: (sizes, methods, repeats, max seconds per step, threads), a few seconds on two cores.
SPEED = ((32, 64, 128, 256, 512), ("fat", "triplet-all", "batch-hard"), 1, 0.25, 1)


def centres_runs(base: RunSettings = CENTRES_BASE) -> dict[str, RunSettings]:
    """One run's settings per centre source (`catalogue.centre_settings()`, read when called)."""
    return {scope: base.replace(centres=scope) for scope in catalogue.centre_settings()}


def step_from_query(value: str | None, count: int = len(STEPS)) -> tuple[int, str | None]:
    """The 1-based step a `?step=` value asks for, and a message when it was fitted (no value: step 1)."""
    if value is None or not str(value).strip():
        return 1, None
    try:
        asked = int(str(value).strip())
    except ValueError:
        return 1, f"?step={value} is not a step number: the lesson has steps 1 to {count}. Showing step 1."
    if asked < 1 or asked > count:
        shown = min(max(asked, 1), count)
        return shown, f"There is no step {asked}: the lesson has steps 1 to {count}. Showing step {shown}."
    return asked, None

