"""Named classroom presets: a few settings worth showing, one click (or one link) away."""

from __future__ import annotations

from fatviz.settings import RunSettings

PRESETS: dict[str, tuple[str, RunSettings]] = {
    "clean digits": (
        "scikit-learn's 8x8 digits, no label noise, hybrid loss, 30 epochs: the default demo.",
        RunSettings(),
    ),
    "40% pairflip noise": (
        "Digits where 40% of each class is relabelled as the next class: watch centres get dragged.",
        RunSettings(noise="pairflip:0.4"),
    ),
    "20% symmetric noise": (
        "Digits with 20% of labels moved to a random other class.",
        RunSettings(noise="symmetric:0.2"),
    ),
    "2-D embedding": (
        "The network embeds straight into 2-D, so you see the real space with no projection "
        "(on the unit circle for the normalised options).",
        RunSettings(embedding_dim=2, epochs=40),
    ),
    "2-D blobs": (
        "Six Gaussian blobs in 2-D with 5% outliers: the bound's geometry at a glance.",
        RunSettings(dataset="blobs", embedding_dim=2, blob_outliers=0.05, epochs=30),
    ),
    "ReID: clean": (
        "reid-synth (small): people seen by four cameras (64x32 colour images), retrieval of unseen identities "
        "across cameras, as ReID is evaluated; 10 epochs.",
        RunSettings(dataset="reid-synth", reid_size="small", epochs=10),
    ),
    "ReID: 20% wrong identity + 10% nobody + 5% two people": (
        "The three label-noise kinds of person ReID at once: images filed under the wrong person, images of "
        "nobody in the set, and images showing two people.",
        RunSettings(dataset="reid-synth", reid_size="small", epochs=10, noise="symmetric:0.2+outlier:0.1+multi:0.05"),
    ),
}

DEFAULT_PRESET = "clean digits"


def preset_name(settings: RunSettings) -> str | None:
    """The preset whose settings equal these, if any."""
    for name, (_, s) in PRESETS.items():
        if s == settings:
            return name
    return None
