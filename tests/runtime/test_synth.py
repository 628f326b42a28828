"""runtime.data.synth: deterministic, real-JPEG, varied-size synthetic Dogs-vs-Cats data."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from runtime.data.synth import DEFAULT_SIZE, write_synthetic

SMALL = ((60, 140), (40, 110))


def _bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_gives_identical_bytes_and_different_seed_differs(tmp_path):
    a = write_synthetic(tmp_path / "a", n=8, seed=3, test_n=3, size=SMALL)
    b = write_synthetic(tmp_path / "b", n=8, seed=3, test_n=3, size=SMALL)
    c = write_synthetic(tmp_path / "c", n=8, seed=4, test_n=3, size=SMALL)
    ba, bb, bc = _bytes(a), _bytes(b), _bytes(c)
    assert ba == bb
    assert ba.keys() == bc.keys()
    assert all(ba[k] != bc[k] for k in ba)


def test_image_does_not_depend_on_n(tmp_path):
    small = write_synthetic(tmp_path / "s", n=4, seed=1, size=SMALL)
    big = write_synthetic(tmp_path / "b", n=10, seed=1, size=SMALL)
    for name in ("cat.0.jpg", "cat.1.jpg", "dog.0.jpg", "dog.1.jpg"):
        assert (small / "train" / name).read_bytes() == (big / "train" / name).read_bytes()


def test_kaggle_layout(tmp_path):
    out = write_synthetic(tmp_path / "d", n=7, seed=0, test_n=4, size=SMALL)
    assert out == tmp_path / "d"
    train = sorted(p.name for p in (out / "train").iterdir())
    assert train == sorted([f"cat.{i}.jpg" for i in range(3)] + [f"dog.{i}.jpg" for i in range(4)])
    test = sorted((p.name for p in (out / "test1").iterdir()), key=lambda s: int(s.split(".")[0]))
    assert test == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert not (write_synthetic(tmp_path / "e", n=2, size=SMALL) / "test1").exists()


def test_real_jpegs_of_varied_sizes_within_range(tmp_path):
    out = write_synthetic(tmp_path / "d", n=24, seed=2, size=SMALL)
    sizes = []
    for p in (out / "train").iterdir():
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            im.load()
            sizes.append(im.size)
    ws, hs = zip(*sizes)
    assert 60 <= min(ws) and max(ws) <= 140 and 40 <= min(hs) and max(hs) <= 110
    assert len(set(sizes)) > 12
    aspects = {round(w / h, 2) for w, h in sizes}
    assert min(aspects) < 1.0 < max(aspects)  # portrait and landscape


def test_default_size_range(tmp_path):
    out = write_synthetic(tmp_path / "d", n=6, seed=0)
    (wl, wh), (hl, hh) = DEFAULT_SIZE
    for p in (out / "train").iterdir():
        with Image.open(p) as im:
            assert wl <= im.width <= wh and hl <= im.height <= hh


def test_class_signal_is_not_a_colour_difference(tmp_path):
    """Mean colour and contrast of the two classes overlap: a linear fit on (mean, std) of RGB
    does no better than chance-ish on held-out images."""
    out = write_synthetic(tmp_path / "d", n=160, seed=7, size=((48, 64), (40, 56)))
    feats, labels = [], []
    for p in sorted((out / "train").iterdir()):
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).reshape(-1, 3)
        feats.append(np.r_[a.mean(0), a.std(0), 1.0])
        labels.append(0 if p.name.startswith("cat") else 1)
    x, y = np.array(feats), np.array(labels)
    idx = np.random.default_rng(0).permutation(len(y))
    tr, va = idx[:110], idx[110:]
    w = np.linalg.lstsq(x[tr], 2.0 * y[tr] - 1, rcond=None)[0]
    acc = ((x[va] @ w > 0) == y[va]).mean()
    assert acc < 0.75


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, n=2, size=((100, 50), (10, 20)))
    with pytest.raises(ValueError):
        write_synthetic(tmp_path, n=-1)


def test_names_are_kaggle_pattern(tmp_path):
    out = write_synthetic(tmp_path / "d", n=6, size=SMALL)
    assert all(re.fullmatch(r"(cat|dog)\.\d+\.jpg", p.name) for p in (out / "train").iterdir())
