"""A deterministic, learnable, two-class synthetic image set in the Kaggle Dogs-vs-Cats layout.

`write_synthetic(out, n)` writes ``out/train/cat.0.jpg ... dog.K.jpg`` (and optionally an
unlabelled ``out/test1/1.jpg ...``) as real JPEG files of varied sizes and aspect ratios, so the
whole pipeline (discovery, JPEG decoding, resizing, caching, augmentation) runs for real.

The class signal is a *shape*, not a colour: "dog" images have 3-5 filled spots (ellipses),
"cat" images 3-5 stripes (long thin bars). Both use the same colour distribution, at random
positions inside the central square (which a centre crop keeps) and random angles, so crops,
flips and rotations keep the class, on a noisy low-frequency textured background. A small CNN
learns it at 32-64 px from a few hundred images; a colour histogram does not.

Determinism: every image has its own generator seeded by ``(seed, split, index)``, so the same
seed gives byte-identical files (same Pillow/libjpeg build), independent of ``n``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: default size distribution: (width range, height range), inclusive, in pixels.
DEFAULT_SIZE: tuple[tuple[int, int], tuple[int, int]] = ((160, 500), (120, 400))
#: a distribution that averages about 500x375 like the Kaggle photos (used by the benchmark).
KAGGLE_LIKE_SIZE: tuple[tuple[int, int], tuple[int, int]] = ((440, 560), (330, 420))

CLASSES = ("cat", "dog")
_TRAIN, _TEST = 0, 1


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A saturated-ish random colour; the same distribution is used for every shape kind."""
    c = rng.integers(0, 256, size=3)
    c[rng.integers(0, 3)] = rng.integers(170, 256)  # at least one bright channel
    return int(c[0]), int(c[1]), int(c[2])


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    base = rng.uniform(30, 200, size=3)
    gw, gh = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    grid = rng.uniform(0, 255, size=(gh, gw, 3)).astype(np.uint8)
    tex = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
    mix = float(rng.uniform(0.25, 0.6))
    img = (1 - mix) * base + mix * tex
    img += rng.normal(0.0, float(rng.uniform(6, 18)), size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _rotated(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    p = points @ rot.T + np.array([cx, cy])
    return [(float(x), float(y)) for x, y in p]


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, w: int, h: int) -> None:
    short = min(w, h)
    # class shapes stay inside the central square, which a centre crop keeps
    x0, y0 = (w - short) / 2, (h - short) / 2
    if kind == "spot":  # a filled ellipse
        r = float(rng.uniform(0.06, 0.12)) * short
        cx, cy = rng.uniform(x0 + r, x0 + short - r), rng.uniform(y0 + r, y0 + short - r)
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        pts = np.stack([r * np.cos(t), r * float(rng.uniform(0.7, 1.0)) * np.sin(t)], axis=1)
    else:  # a stripe: a long thin bar at any angle, so rotation keeps the class
        half, thick = (
            float(rng.uniform(0.14, 0.24)) * short,
            float(rng.uniform(0.025, 0.045)) * short,
        )
        cx = rng.uniform(x0 + half, x0 + short - half)
        cy = rng.uniform(y0 + half, y0 + short - half)
        pts = np.array([[-half, -thick], [half, -thick], [half, thick], [-half, thick]])
    angle = float(rng.uniform(0, 2 * math.pi))
    draw.polygon(_rotated(pts, angle, float(cx), float(cy)), fill=_colour(rng))


def _image(rng: np.random.Generator, label: int, size) -> Image.Image:
    (w_lo, w_hi), (h_lo, h_hi) = size
    w = int(rng.integers(w_lo, w_hi + 1))
    h = int(rng.integers(h_lo, h_hi + 1))
    img = _background(rng, w, h)
    draw = ImageDraw.Draw(img)
    kind = "spot" if label == 1 else "stripe"
    for _ in range(int(rng.integers(3, 6))):
        _shape(draw, rng, kind, w, h)
    return img


def synthetic_names(out: Path, n: int, test_n: int) -> list[Path]:
    """Every file `write_synthetic(out, n, test_n=test_n)` writes, in order."""
    n_cat = n // 2
    names = [out / "train" / f"{CLASSES[label]}.{i}.jpg"
             for label, count in ((0, n_cat), (1, n - n_cat)) for i in range(count)]
    return names + [out / "test1" / f"{i}.jpg" for i in range(1, test_n + 1)]


def _refuse_existing(paths: list[Path]) -> None:
    existing = [p for p in paths if p.exists() or p.is_symlink()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise FileExistsError(f"{existing[0]}{more} already exist")


def write_synthetic(
    out: Path,
    n: int = 400,
    seed: int = 0,
    test_n: int = 0,
    *,
    size: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_SIZE,
    quality: int = 90,
    overwrite: bool = True,
) -> Path:
    """Write ``n`` labelled images (half cats, half dogs) to ``out/train`` and ``test_n``
    unlabelled ones to ``out/test1``. Returns ``out``.

    ``size=((w_min, w_max), (h_min, h_max))`` sets the (uniform, inclusive) size distribution;
    use `KAGGLE_LIKE_SIZE` for images averaging about 500x375. Same arguments => identical bytes.
    Existing files with the same names are overwritten; other files are left alone. With
    ``overwrite=False`` nothing is written when any of them exists (FileExistsError naming it).
    """
    out = Path(out)
    (w_lo, w_hi), (h_lo, h_hi) = size
    if not (0 < w_lo <= w_hi and 0 < h_lo <= h_hi):
        raise ValueError(f"bad size distribution {size!r}")
    if n < 0 or test_n < 0:
        raise ValueError("n and test_n must be >= 0")
    train = out / "train"
    n_cat = n // 2
    if not overwrite:
        _refuse_existing(synthetic_names(out, n, test_n))
    train.mkdir(parents=True, exist_ok=True)
    for label, count in ((0, n_cat), (1, n - n_cat)):
        for i in range(count):
            rng = np.random.default_rng([seed, _TRAIN, label, i])
            img = _image(rng, label, size)
            img.save(train / f"{CLASSES[label]}.{i}.jpg", "JPEG", quality=quality)
    if test_n > 0:
        test = out / "test1"
        test.mkdir(parents=True, exist_ok=True)
        for i in range(1, test_n + 1):
            rng = np.random.default_rng([seed, _TEST, i])
            label = int(rng.integers(0, 2))
            _image(rng, label, size).save(test / f"{i}.jpg", "JPEG", quality=quality)
    return out
