"""reid-synth: a person re-identification set drawn from a seed, no files and no download.

Every identity is a stick-like person (head, torso with arms, two legs, shoes) wearing its own
clothes: an upper and a lower colour and a pattern on the torso (solid, horizontal stripes, or
two-tone: the lower half of the torso in a second colour). Every camera sees the scene its own
way: illumination (gain), colour balance (per-channel gains), background and floor colours,
and a typical scale and viewpoint (a side view looks narrower); each image adds jitter in
position, scale, width and pixel noise. So the same clothes under two cameras differ in
colour, while two people may wear similar colours: retrieval across cameras is the task, as
in Market-1501.

The split follows the ReID conventions of `fatviz.data`'s Market-1501 loader: training
identities get classes 0..K-1; test identities are disjoint from them and get ids K, K+1, ...
The test split holds, per test identity and camera, one query image (`is_query_test`) and
the rest as gallery; `cam_test` records the camera, and the evaluation removes gallery
entries of the query's identity AND camera (`fatviz.metrics`).

`subsample=N` sets the training size in whole identities: ceil(N / images per identity)
(at least two). `test_fraction` is the share of all identities held out for test.
Generation is vectorised numpy: the defaults take a fraction of a second.
"""

from __future__ import annotations

import math

import numpy as np

from fatviz.data import DATASETS, Dataset, DatasetSpec, _check_image_size, _image_dataset
from fatviz.errors import FatvizError

NAME = "reid-synth"
DESCRIPTION = "synthetic people seen by 4 cameras, drawn from the seed (person re-identification, no files)"
TRAIN_IDENTITIES = 60  # default training identities
CAMERAS = 4
IMAGES_PER_CAMERA = 4  # per identity and camera: the first of a test identity's is its query
DEFAULT_SIZE = (64, 32)  # (height, width), Market-1501's aspect ratio
_CANVAS = (64.0, 32.0)  # shapes are laid out in these canonical units, then sampled at image_size

# Clothing hues (HSV hue in [0, 1)): few enough that identities share colours and must be told
# apart by the combination of upper colour, lower colour and pattern.
_HUES = np.array([0.0, 0.08, 0.15, 0.33, 0.5, 0.6, 0.75, 0.9])
PATTERNS = ("solid", "stripes", "two-tone")


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB in [0, 1]; the inputs broadcast, the output gains a last axis of 3."""
    h6 = (h % 1.0) * 6.0
    i = np.floor(h6).astype(np.int64) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in (
        (v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))], 0)
    return np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]


def _identities(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Clothing and body of n identities."""
    def colour(dark_share: float) -> np.ndarray:
        hue = rng.choice(_HUES, n) + rng.normal(0, 0.015, n)
        sat = rng.uniform(0.45, 0.95, n)
        val = rng.uniform(0.45, 0.95, n)
        grey = rng.random(n) < dark_share  # black, grey and white clothes, as in the street
        sat = np.where(grey, rng.uniform(0.0, 0.08, n), sat)
        val = np.where(grey, rng.choice([0.15, 0.5, 0.9], n), val)
        return _hsv_to_rgb(hue, sat, val)

    return {
        "upper": colour(0.2),
        "upper2": colour(0.3),  # stripes' and two-tone's second colour
        "lower": colour(0.45),  # trousers are more often dark
        "pattern": rng.integers(0, len(PATTERNS), n),
        "stripe": rng.uniform(2.5, 4.5, n),  # stripe period, canonical pixels
        "skin": _hsv_to_rgb(rng.uniform(0.03, 0.1, n), rng.uniform(0.3, 0.6, n), rng.uniform(0.35, 0.95, n)),
        "hair": _hsv_to_rgb(np.full(n, 0.08), rng.uniform(0.2, 0.7, n), rng.uniform(0.05, 0.55, n)),
        "build": rng.uniform(0.85, 1.2, n),  # torso width
        "height": rng.uniform(0.92, 1.05, n),
        "bag": rng.random(n) < 0.3,  # a dark bag on one side
    }


def _cameras(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """How each of n cameras sees: light, colour balance, background, scale and viewpoint."""
    return {
        "gain": rng.uniform(0.6, 1.25, n),
        "balance": rng.uniform(0.75, 1.25, (n, 3)),
        "offset": rng.uniform(-0.05, 0.08, (n, 3)),
        "wall": rng.uniform(0.15, 0.75, (n, 3)),
        "floor": rng.uniform(0.1, 0.6, (n, 3)),
        "horizon": rng.uniform(42.0, 54.0, n),  # where the floor starts, canonical rows
        "scale": rng.uniform(0.82, 1.0, n),
        "squeeze": rng.uniform(0.65, 1.0, n),  # 1 = frontal view, smaller = side view (narrower)
    }


def _render(people: dict[str, np.ndarray], cams: dict[str, np.ndarray], who: np.ndarray, cam: np.ndarray,
            rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """uint8 (N, H, W, 3) images of identities `who` under cameras `cam`, all at once."""
    n = len(who)
    height, width = size
    # float32 throughout: the masks cost (N, H, W) each, and float64 would double the time.
    ys = ((np.arange(height) + 0.5) * (_CANVAS[0] / height)).astype(np.float32)
    xs = ((np.arange(width) + 0.5) * (_CANVAS[1] / width)).astype(np.float32)
    y = ys[None, :, None]
    x = xs[None, None, :]

    def per(a: np.ndarray) -> np.ndarray:
        return a[:, None, None].astype(np.float32) if a.dtype.kind == "f" else a[:, None, None]

    scale = per(cams["scale"][cam] * people["height"][who] * rng.uniform(0.92, 1.06, n))
    squeeze = per(cams["squeeze"][cam] * rng.uniform(0.92, 1.08, n))
    cx = per(16.0 + rng.normal(0, 1.2, n))
    top = per(_CANVAS[0] * (1 - cams["scale"][cam]) * 0.6 + rng.normal(0, 1.0, n) + 1.5)
    # Body coordinates: v down the figure (0 = top of the head, 60 = soles), u across from its axis.
    v = (y - top) / scale
    u = (x - cx) / (scale * squeeze)
    build = per(people["build"][who])

    head = ((u / 3.6) ** 2 + ((v - 6.5) / 4.6) ** 2) <= 1.0
    hair = head & (v < 4.5 - 0.6 * np.abs(u))
    torso_w = 6.0 * build
    torso = (np.abs(u) <= torso_w) & (v >= 11.5) & (v <= 33.0)
    arms = (np.abs(u) > torso_w) & (np.abs(u) <= torso_w + 2.3) & (v >= 12.5) & (v <= 31.0)
    hands = (np.abs(u) > torso_w) & (np.abs(u) <= torso_w + 2.3) & (v > 31.0) & (v <= 33.5)
    legs = (np.abs(u) >= 0.7) & (np.abs(u) <= 0.7 + 4.6 * build) & (v > 33.0) & (v <= 57.5)
    hips = (np.abs(u) <= 5.3 * build) & (v > 33.0) & (v <= 37.0)
    shoes = (np.abs(u) >= 0.4) & (np.abs(u) <= 1.2 + 4.8 * build) & (v > 57.5) & (v <= 60.5)
    bag = per(people["bag"][who]) & (u > torso_w + 1.0) & (u <= torso_w + 4.5) & (v >= 24.0) & (v <= 33.0)

    period = per(people["stripe"][who])
    pattern = per(people["pattern"][who])
    second = np.where(pattern == 1, np.floor((v - 11.5) / period) % 2 == 1,
                      np.where(pattern == 2, v > 22.5, False))

    # The scene: a wall, a floor below the camera's horizon, a soft vertical shading and noise.
    shade = 1.0 - 0.25 * (y / _CANVAS[0])
    floor = y >= per(cams["horizon"][cam])
    img = np.where(floor[..., None], cams["floor"][cam][:, None, None, :].astype(np.float32),
                   cams["wall"][cam][:, None, None, :].astype(np.float32) * shade[..., None].astype(np.float32))
    img = img + rng.normal(0, 0.03, (n, 1, width, 3)).astype(np.float32)  # per-column texture of the background

    # One part index per pixel (0 = scene; later parts are drawn over earlier ones), then one
    # gather from each image's palette: a single pass instead of one full-image copy per part.
    parts = [legs | hips, shoes, hands, arms, torso & ~second, torso & second, head, hair, bag]
    dark = np.full((n, 3), 0.12)
    palette = np.stack([np.zeros((n, 3)), people["lower"][who], dark, people["skin"][who], people["upper"][who],
                        people["upper"][who], people["upper2"][who], people["skin"][who], people["hair"][who],
                        dark + 0.08], 1).astype(np.float32)
    label = np.zeros((n, height, width), np.int64)
    for k, mask in enumerate(parts, start=1):
        label[mask] = k
    figure = np.take_along_axis(palette, label.reshape(n, -1, 1), 1).reshape(n, height, width, 3)
    img = np.where((label > 0)[..., None], figure, img)

    light = cams["gain"][cam][:, None] * cams["balance"][cam] * rng.uniform(0.9, 1.1, (n, 1))
    img = img * light[:, None, None, :].astype(np.float32) + cams["offset"][cam][:, None, None, :].astype(np.float32)
    img = img * np.float32(255.0) + rng.standard_normal(img.shape, np.float32) * np.float32(0.025 * 255.0)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def load_reid_synth(*, data_root: object = None, subsample: int | None = None, seed: int = 0,
                    test_fraction: float = 0.25, blobs: object = None,
                    image_size: tuple[int, int] | None = None) -> Dataset:
    """The reid-synth Dataset: train identities, and disjoint test identities as query + gallery."""

    del data_root, blobs  # the loader interface passes them; this set needs neither
    size = _check_image_size(image_size or DEFAULT_SIZE)
    if not 0.0 < test_fraction < 1.0:
        raise FatvizError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    per_identity = CAMERAS * IMAGES_PER_CAMERA
    n_train = TRAIN_IDENTITIES if not subsample else max(2, math.ceil(subsample / per_identity))
    n_test = max(2, round(n_train * test_fraction / (1.0 - test_fraction)))
    rng = np.random.default_rng(seed)
    people = _identities(rng, n_train + n_test)
    cams = _cameras(rng, CAMERAS)
    # Images in identity, camera, shot order; identities 0..n_train-1 train, the rest test.
    who = np.repeat(np.arange(n_train + n_test), per_identity)
    cam = np.tile(np.repeat(np.arange(CAMERAS), IMAGES_PER_CAMERA), n_train + n_test)
    shot = np.tile(np.arange(IMAGES_PER_CAMERA), (n_train + n_test) * CAMERAS)
    images = _render(people, cams, who, cam, rng, size)
    train = who < n_train
    notes: tuple[str, ...] = ()
    if subsample:
        notes = (f"reid-synth sized to {n_train} train identities ({n_train * per_identity} images) for "
                 f"subsample={subsample}, and {n_test} test identities",)
    return _image_dataset(
        NAME, images[train], who[train], images[~train], who[~train], [f"{i:04d}" for i in range(n_train)],
        notes, cam_test=cam[~train].astype(np.int64), is_query_test=shot[~train] == 0,
    )


# Registered here, not in fatviz.data: this module builds on fatviz.data, and fatviz/__init__.py
# imports it, so the dataset is in the registry wherever fatviz is used.
DATASETS.register("reid-synth", DatasetSpec("reid-synth", DESCRIPTION, load_reid_synth, False, ""))
