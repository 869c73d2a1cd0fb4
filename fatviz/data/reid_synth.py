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

Two sizes (`REID_SIZES`, the `reid_size` setting): "small" is 60 training identities of 16
images (4 cameras x 4), every identity in every camera, the app's classroom size; "market"
(the default) is ReID-like: 300 training identities of 4 to 12 images each, each seen by 2 to 6
of 6 cameras whose light and colour balance differ more, with wider crop jitter, mirrored
poses and occluders (a pole, a bag or a passer-by's coat in front of the person) over part of
the images. docs/METHOD.md says what either does not model.

`subsample=N` sets the training size in whole identities: ceil(N / mean images per identity)
(at least two). `test_fraction` is the share of all identities held out for test.
Generation is vectorised numpy: small takes a fraction of a second, market about two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fatviz.data.loaders import DATASETS, Dataset, DatasetSpec, _check_image_size, _image_dataset
from fatviz.errors import FatvizError
from fatviz.registry import Registry

NAME = "reid-synth"
DESCRIPTION = "synthetic people seen by several cameras, drawn from the seed (person re-identification, no files)"
DEFAULT_SIZE = (64, 32)  # (height, width), Market-1501's aspect ratio


@dataclass(frozen=True)
class ReidSize:
    """How big and how hard a reid-synth set is: its identities, their images, and the cameras' spread."""

    description: str
    identities: int  # training identities (test identities come on top, see test_fraction)
    images: tuple[int, int]  # images per identity, lowest and highest (uniform in between)
    cameras: int
    cameras_per_identity: tuple[int, int]  # how many of the cameras see an identity, lowest and highest
    camera_spread: float  # 1: the small set's spread of camera light and colour balance; larger differs more
    jitter: float  # 1: the small set's crop jitter (position and scale); larger moves the person more
    occluders: float  # share of images with an occluder in front of the person
    mirror: bool  # half the images see the person mirrored (the bag on the other side)
    most: tuple[int, int]  # the most training and test images it makes, at any seed (what the budget plans for)


REID_SIZES: Registry[ReidSize] = Registry("reid-synth size")
REID_SIZES.register("market", ReidSize(
    "ReID-like: 300 training identities of 4-12 images, 6 cameras (2-6 per identity) with strong light and colour "
    "shifts, crop jitter, mirrored poses and occluders", 300, (4, 12), 6, (2, 6), 1.6, 2.0, 0.35, True, (2700, 900)))
REID_SIZES.register("small", ReidSize(
    "60 training identities of 16 images, 4 images in each of 4 cameras: the classroom size", 60, (16, 16), 4,
    (4, 4), 1.0, 1.0, 0.0, False, (960, 320)))
DEFAULT_REID_SIZE = "market"
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


def _around(rng: np.random.Generator, low: float, high: float, spread: float, shape) -> np.ndarray:
    """Uniform draws in [low, high] widened about its middle by `spread` (1: the range itself)."""
    mid, half = (low + high) / 2, (high - low) / 2 * spread
    return rng.uniform(mid - half, mid + half, shape)


def _cameras(rng: np.random.Generator, n: int, spread: float) -> dict[str, np.ndarray]:
    """How each of n cameras sees: light, colour balance, background, scale and viewpoint."""
    return {
        "gain": _around(rng, 0.6, 1.25, spread, n),
        "balance": _around(rng, 0.75, 1.25, spread, (n, 3)),
        "offset": _around(rng, -0.05, 0.08, spread, (n, 3)),
        "wall": rng.uniform(0.15, 0.75, (n, 3)),
        "floor": rng.uniform(0.1, 0.6, (n, 3)),
        "horizon": rng.uniform(42.0, 54.0, n),  # where the floor starts, canonical rows
        "scale": rng.uniform(0.82, 1.0, n),
        "squeeze": rng.uniform(0.65, 1.0, n),  # 1 = frontal view, smaller = side view (narrower)
    }


def _occlude(img: np.ndarray, y: np.ndarray, x: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """`share` of the images get one occluder in front: a pole, something low (a bench, a car's bonnet)
    over the legs, or a passer-by's coat from one side; a flat colour, lit by the camera later."""
    n = len(img)
    kind = rng.integers(0, 3, n)
    side = rng.random(n) < 0.5
    pole_w, coat_w = rng.uniform(2.5, 6.0, n), rng.uniform(7.0, 12.0, n)
    pole_x = rng.uniform(0.0, _CANVAS[1] - pole_w)
    x0 = np.select([kind == 0, kind == 1], [pole_x, np.zeros(n)], np.where(side, 0.0, _CANVAS[1] - coat_w))
    x1 = np.select([kind == 0, kind == 1], [pole_x + pole_w, np.full(n, _CANVAS[1])],
                   np.where(side, coat_w, _CANVAS[1]))
    y0 = np.select([kind == 0, kind == 1], [np.zeros(n), rng.uniform(38.0, 52.0, n)], rng.uniform(8.0, 20.0, n))
    on = rng.random(n) < share
    r = [a[:, None, None].astype(np.float32) for a in (x0, x1, y0)]
    mask = on[:, None, None] & (x >= r[0]) & (x < r[1]) & (y >= r[2])
    colour = rng.uniform(0.1, 0.8, (n, 3)).astype(np.float32)
    return np.where(mask[..., None], colour[:, None, None, :], img)


def _render(people: dict[str, np.ndarray], cams: dict[str, np.ndarray], who: np.ndarray, cam: np.ndarray,
            rng: np.random.Generator, size: tuple[int, int], spec: ReidSize) -> np.ndarray:
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

    scale = per(cams["scale"][cam] * people["height"][who] * _around(rng, 0.92, 1.06, spec.jitter, n))
    squeeze = per(cams["squeeze"][cam] * rng.uniform(0.92, 1.08, n))
    cx = per(16.0 + rng.normal(0, 1.2 * spec.jitter, n))
    top = per(_CANVAS[0] * (1 - cams["scale"][cam]) * 0.6 + rng.normal(0, 1.0 * spec.jitter, n) + 1.5)
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
    if spec.mirror:
        img = np.where((rng.random(n) < 0.5)[:, None, None, None], img[:, :, ::-1], img)
    if spec.occluders:
        img = _occlude(img, y, x, spec.occluders, rng)

    light = cams["gain"][cam][:, None] * cams["balance"][cam] * rng.uniform(0.9, 1.1, (n, 1))
    img = img * light[:, None, None, :].astype(np.float32) + cams["offset"][cam][:, None, None, :].astype(np.float32)
    img = img * np.float32(255.0) + rng.standard_normal(img.shape, np.float32) * np.float32(0.025 * 255.0)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _shots(rng: np.random.Generator, spec: ReidSize, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identity, camera, shot) of every image of n identities, in identity, camera, shot order.

    Each identity has its own count of images, spread as evenly as they go over its own cameras; every
    camera of an identity sees it at least twice (when the counts allow), so a query always has a
    gallery image of its identity in another camera.
    """
    count = rng.integers(spec.images[0], spec.images[1] + 1, n)
    low, high = spec.cameras_per_identity
    most = np.clip(count // 2, low, min(high, spec.cameras))
    seen = np.minimum(rng.integers(low, high + 1, n), most)
    who, cam, shot = [], [], []
    for i in range(n):
        cams = np.sort(rng.permutation(spec.cameras)[:seen[i]])
        per_cam = np.full(seen[i], count[i] // seen[i])
        per_cam[rng.permutation(seen[i])[:count[i] % seen[i]]] += 1
        for c, k in zip(cams, per_cam, strict=True):
            who += [i] * k
            cam += [c] * k
            shot += list(range(k))
    return np.array(who, np.int64), np.array(cam, np.int64), np.array(shot, np.int64)


def load_reid_synth(*, data_root: object = None, subsample: int | None = None, seed: int = 0,
                    test_fraction: float = 0.25, blobs: object = None,
                    image_size: tuple[int, int] | None = None, reid_size: str | None = None, **_: object) -> Dataset:
    """The reid-synth Dataset: train identities, and disjoint test identities as query + gallery."""

    del data_root, blobs  # the loader interface passes them; this set needs neither
    size = _check_image_size(image_size or DEFAULT_SIZE)
    spec = REID_SIZES.get(reid_size or DEFAULT_REID_SIZE)
    if not 0.0 < test_fraction < 1.0:
        raise FatvizError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    per_identity = sum(spec.images) / 2
    n_train = spec.identities if not subsample else max(2, math.ceil(subsample / per_identity))
    n_test = max(2, round(n_train * test_fraction / (1.0 - test_fraction)))
    rng = np.random.default_rng(seed)
    people = _identities(rng, n_train + n_test)
    cams = _cameras(rng, spec.cameras, spec.camera_spread)
    # Identities 0..n_train-1 train, the rest test.
    who, cam, shot = _shots(rng, spec, n_train + n_test)
    images = _render(people, cams, who, cam, rng, size, spec)
    train = who < n_train
    notes: tuple[str, ...] = ()
    if subsample:
        notes = (f"reid-synth sized to {n_train} train identities ({int(train.sum())} images) for "
                 f"subsample={subsample}, and {n_test} test identities",)
    return _image_dataset(
        NAME, images[train], who[train], images[~train], who[~train], [f"{i:04d}" for i in range(n_train)],
        notes, cam_test=cam[~train], is_query_test=shot[~train] == 0,
    )


# Registered here, not in fatviz.data: this module builds on fatviz.data, and fatviz/__init__.py
# imports it, so the dataset is in the registry wherever fatviz is used.
DATASETS.register("reid-synth", DatasetSpec(
    "reid-synth", DESCRIPTION, load_reid_synth, False, "",
    size=lambda s: (*REID_SIZES.get(s.reid_size).most, (3, 64, 32))))
