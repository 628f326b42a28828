"""runtime.data.folders: discovery, split, decoding of good and bad files, the uint8 cache."""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.data import folders as D
from runtime.data.folders import (
    DataError,
    ImageSet,
    decode_image,
    discover,
    load_images,
    load_unlabelled,
    split_hash,
    stratified_split,
)
from runtime.data.synth import write_synthetic

SMALL = ((60, 140), (40, 110))
SIZE = 24


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory) -> Path:
    """24 labelled (cat.0..11, dog.0..11) + 3 unlabelled synthetic JPEGs."""
    return write_synthetic(tmp_path_factory.mktemp("kaggle"), n=24, seed=1, test_n=3, size=SMALL)


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------- discovery

def test_discover_kaggle_train_folder(kaggle):
    files, labels, classes = discover(kaggle / "train")
    assert classes == ["cat", "dog"]
    assert len(files) == len(labels) == 24
    names = [Path(f).name for f in files]
    # label follows the filename prefix; order is label, then numeric (cat.2 before cat.10)
    assert names[:12] == [f"cat.{i}.jpg" for i in range(12)]
    assert names[12:] == [f"dog.{i}.jpg" for i in range(12)]
    assert labels == [0] * 12 + [1] * 12
    assert discover(kaggle / "train") == (files, labels, classes)  # deterministic


def test_discover_lists_each_real_file_once(kaggle, tmp_path):
    """A link to an image (a second name) would put one image in train and val both."""
    train = _copy_tree(kaggle / "train", tmp_path / "train")
    (train / "cat.100.jpg").symlink_to("cat.3.jpg")
    (train / "dog.0.jpg").rename(train / "dog.0.real.jpg.bak")
    (train / "dog.0.jpg").symlink_to(train / "dog.1.jpg")
    files, _, _ = discover(train)
    names = [Path(f).name for f in files]
    assert len(files) == 23 and "cat.100.jpg" not in names and "dog.0.jpg" not in names


def test_discover_kaggle_root_uses_train_and_ignores_test1(kaggle):
    assert discover(kaggle) == discover(kaggle / "train")


def test_discover_and_load_train_zip(kaggle, tmp_path):
    zpath = tmp_path / "train.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((kaggle / "train").iterdir(), reverse=True):  # archive order scrambled
            zf.write(p, f"train/{p.name}")
        zf.writestr("train/", "")
    files, labels, classes = discover(zpath)
    f_dir, l_dir, c_dir = discover(kaggle / "train")
    assert classes == c_dir and labels == l_dir
    assert all(isinstance(f, str) for f in files)
    assert files[0] == f"{zpath}::train/cat.0.jpg"
    assert [f.split("::")[1].split("/")[1] for f in files] == [Path(f).name for f in f_dir]
    from_zip = load_images(zpath, size=SIZE, workers=1)
    from_dir = load_images(kaggle / "train", size=SIZE, workers=1)
    np.testing.assert_array_equal(from_zip.images, from_dir.images)
    np.testing.assert_array_equal(from_zip.labels, from_dir.labels)


def test_discover_petimages_layout(kaggle, tmp_path):
    root = tmp_path / "kagglecatsanddogs" / "PetImages"
    for cls in ("Cat", "Dog"):
        (root / cls).mkdir(parents=True)
        (root / cls / "Thumbs.db").write_bytes(b"\x00" * 10)  # real PetImages has these
    for i, p in enumerate(sorted((kaggle / "train").glob("cat.*.jpg"))[:3]):
        shutil.copy(p, root / "Cat" / f"{i}.jpg")
    for i, p in enumerate(sorted((kaggle / "train").glob("dog.*.jpg"))[:4]):
        shutil.copy(p, root / "Dog" / f"{i}.jpg")
    files, labels, classes = discover(root)
    assert classes == ["cat", "dog"]
    assert labels == [0, 0, 0, 1, 1, 1, 1]
    assert [Path(f).parent.name for f in files] == ["Cat"] * 3 + ["Dog"] * 4
    assert not any(Path(f).name == "Thumbs.db" for f in files)
    # the wrapper folder (one sub-folder holding the class folders) works too
    assert discover(root.parent) == (files, labels, classes)


def test_discover_three_class_tree(kaggle, tmp_path):
    src = sorted((kaggle / "train").iterdir())
    root = tmp_path / "tree"
    layout = {"zebra": 2, "Apple": 3, "mango": 1}
    k = 0
    for cls, count in layout.items():
        for j in range(count):
            sub = root / cls / ("nested" if j == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            shutil.copy(src[k], sub / f"img{j}.jpeg")
            k += 1
    (root / ".hidden").mkdir()
    shutil.copy(src[k], root / ".hidden" / "x.jpg")
    files, labels, classes = discover(root)
    assert classes == ["Apple", "mango", "zebra"]  # sorted folder names, like ImageFolder
    assert labels == [0, 0, 0, 1, 2, 2]
    assert all(Path(f).relative_to(root).parts[0] == classes[k] for f, k in zip(files, labels))
    ims = load_images(root, size=SIZE, workers=1)
    assert ims.images.shape == (6, SIZE, SIZE, 3) and ims.classes == classes


def test_class_folder_named_train_is_just_a_class(kaggle, tmp_path):
    src = sorted((kaggle / "train").iterdir())
    for k, cls in enumerate(("train", "valid")):
        (tmp_path / cls).mkdir()
        for i in range(2):  # 'img.N.jpg' looks Kaggle-ish but is a single prefix
            shutil.copy(src[2 * k + i], tmp_path / cls / f"img.{i}.jpg")
    files, labels, classes = discover(tmp_path)
    assert classes == ["train", "valid"] and labels == [0, 0, 1, 1]


def test_discover_errors(kaggle, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        discover(tmp_path / "empty")
    one = tmp_path / "one" / "Cat"
    one.mkdir(parents=True)
    shutil.copy(kaggle / "train" / "cat.0.jpg", one / "a.jpg")
    (tmp_path / "one" / "Dog").mkdir()  # an empty class folder does not count as a class
    with pytest.raises(DataError, match="single class 'Cat'"):
        discover(tmp_path / "one")
    cats = tmp_path / "cats"
    cats.mkdir()
    for i in range(3):
        shutil.copy(kaggle / "train" / f"cat.{i}.jpg", cats / f"cat.{i}.jpg")
    with pytest.raises(DataError, match="at least two classes"):
        discover(cats)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(kaggle / "train" / "cat.0.jpg", flat / "photo.jpg")
    with pytest.raises(DataError, match="no label"):
        discover(flat)
    with pytest.raises(DataError, match="zip"):
        discover(kaggle / "train" / "cat.0.jpg")
    with pytest.raises(DataError, match="does not exist"):
        load_images(tmp_path / "nope")


# ----------------------------------------------------------------------------------- split

def test_stratified_split_properties():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 7 + [3] * 2 + [4] * 1)
    labels = labels[np.random.default_rng(0).permutation(len(labels))]
    tr, va = stratified_split(labels, 0.2, seed=5)
    tr2, va2 = stratified_split(labels, 0.2, seed=5)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    assert len(np.intersect1d(tr, va)) == 0
    np.testing.assert_array_equal(np.sort(np.r_[tr, va]), np.arange(len(labels)))
    counts = {c: int((labels[va] == c).sum()) for c in range(5)}
    assert counts == {0: 10, 1: 6, 2: 1, 3: 1, 4: 0}
    assert tr.dtype == va.dtype == np.int64
    other = stratified_split(labels, 0.2, seed=6)
    assert not np.array_equal(other[1], va)
    assert len(stratified_split(labels, 0.0)[1]) == 0
    with pytest.raises(ValueError):
        stratified_split(labels, 1.0)


def test_validation_count_rounds_to_nearest():
    """8 images at 0.2 is 1.6 validation images: round gives 2 (int() would give 1); 7 at 0.2
    is 1.4: 1 (ceil would give 2)."""
    for per_class, want in ((8, 2), (7, 1), (12, 2), (13, 3)):
        labels = [0] * per_class + [1] * per_class
        _, val = stratified_split(labels, 0.2, seed=0)
        counts = np.bincount(np.asarray(labels)[val], minlength=2)
        assert counts.tolist() == [want, want], (per_class, counts)


def test_split_hash():
    # Pinned: a run folder's split.json is checked against this digest on resume, so a
    # change of the hashing would make every existing run refuse to resume.
    assert split_hash([0, 2, 3], [1]) == (
        "df5828c62dcf9ef094de403b5028fed4af380399deaaecb1edeecbc2e6a3ec1c")
    tr, va = stratified_split([0, 1] * 20, 0.25, seed=0)
    h = split_hash(tr, va)
    assert split_hash(list(tr), list(va)) == h
    assert split_hash(va, tr) != h
    assert split_hash(*stratified_split([0, 1] * 20, 0.25, seed=1)) != h
    # moving the boundary between the arrays changes the hash
    assert split_hash(tr[:-1], np.r_[tr[-1:], va]) != h


# --------------------------------------------------------------------------------- decoding

@pytest.fixture(scope="module")
def messy(kaggle, tmp_path_factory) -> tuple[Path, dict]:
    """A Kaggle-style folder with good, convertible and broken files."""
    root = tmp_path_factory.mktemp("messy") / "train"
    root.mkdir()
    for i in range(4):
        for cls in ("cat", "dog"):
            shutil.copy(kaggle / "train" / f"{cls}.{i}.jpg", root / f"{cls}.{i}.jpg")
    good = (kaggle / "train" / "cat.5.jpg").read_bytes()
    src = Image.open(kaggle / "train" / "dog.5.jpg").convert("RGB")
    bad = {
        "cat.20.jpg": np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "cat.21.jpg": good[: len(good) // 2],
        "cat.22.jpg": b"",
        "cat.23.jpg": b"this is a text file, not a JPEG\n",
    }
    for name, blob in bad.items():
        (root / name).write_bytes(blob)
    src.convert("CMYK").save(root / "dog.20.jpg", "JPEG", quality=95)
    src.convert("L").save(root / "dog.21.jpg", "JPEG", quality=95)
    rgba = src.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "dog.22.png")
    src.save(root / "dog.23.jpg", format="PNG")  # a PNG named .jpg: readable, must load
    src.convert("P").save(root / "dog.24.gif")
    return root, bad


def _row_of(ims: ImageSet, root: Path, name: str) -> np.ndarray:
    files, _, _ = discover(root)
    skipped = {p for p, _ in ims.skipped}
    kept = [Path(f).name for f in files if str(f) not in skipped]
    return np.asarray(ims.images[kept.index(name)])


def test_bad_files_skipped_exactly_and_odd_modes_converted(messy, kaggle):
    root, bad = messy
    ims = load_images(root, size=SIZE, workers=1)
    assert sorted(Path(p).name for p, _ in ims.skipped) == sorted(bad)
    reasons = {Path(p).name: r for p, r in ims.skipped}
    assert reasons["cat.21.jpg"] == "truncated image"
    assert reasons["cat.22.jpg"] == "empty file"
    assert "not an image" in reasons["cat.23.jpg"]
    assert all(isinstance(r, str) and 0 < len(r) <= 140 for r in reasons.values())
    n_good = 8 + 5
    assert ims.images.shape == (n_good, SIZE, SIZE, 3) and ims.images.dtype == np.uint8
    assert ims.labels.tolist() == [0] * 4 + [1] * 9
    assert ims.classes == ["cat", "dog"]

    ref = decode_image(kaggle / "train" / "dog.5.jpg", SIZE).astype(np.int16)
    grey = _row_of(ims, root, "dog.21.jpg")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    for name in ("dog.20.jpg", "dog.22.png", "dog.23.jpg", "dog.24.gif"):
        row = _row_of(ims, root, name).astype(np.int16)
        assert np.abs(row - ref).mean() < 12, name  # same picture, converted to RGB
    # the PNG-named-.jpg is lossless, so it is almost exactly the reference
    assert np.abs(_row_of(ims, root, "dog.23.jpg").astype(np.int16) - ref).mean() < 4


def test_parallel_decoding_matches_serial(messy):
    root, _ = messy
    a = load_images(root, size=SIZE, workers=1)
    b = load_images(root, size=SIZE, workers=2)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.skipped == b.skipped


def test_decoding_progress_in_a_log_is_one_line(tmp_path, capsys):
    """Not on a terminal (a log, CI): one final count, not 20 counts joined by carriage
    returns."""
    root = write_synthetic(tmp_path / "d", n=40, seed=0, size=((40, 60), (30, 50)))
    sources = sorted((root / "train").glob("*.jpg"))
    assert len(sources) == 40
    assert len(list(D.decode_many(sources, 16, workers=1, progress=True))) == len(sources)
    err = capsys.readouterr().err
    assert err.strip("\r\n").count("decoding") == 1
    assert err.strip().startswith(f"decoding {len(sources)}/{len(sources)} images")


def test_decode_resizes_short_side_and_centre_crops(tmp_path):
    # left third red, middle third green, right third blue: a centre crop keeps only green
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, :100, 0] = 255
    arr[:, 100:200, 1] = 255
    arr[:, 200:, 2] = 255
    Image.fromarray(arr).save(tmp_path / "wide.png")
    out = decode_image(tmp_path / "wide.png", 50)
    assert out.shape == (50, 50, 3)
    assert (out[:, 2:-2, 1] > 240).all() and (out[:, 2:-2, [0, 2]] < 15).all()


def test_reduced_jpeg_decoding_matches_full_resolution(tmp_path):
    """draft() decodes at 1/2..1/8 scale; the result must still look like a full decode."""
    out = write_synthetic(tmp_path / "d", n=2, seed=0, size=((480, 500), (360, 375)))
    p = out / "train" / "dog.0.jpg"
    fast = decode_image(p, 40).astype(np.float64)
    with Image.open(p) as im:
        full = im.convert("RGB")
    w, h = full.size
    s = min(w, h)
    box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
    ref = np.asarray(full.resize((40, 40), Image.BILINEAR, box=box), dtype=np.float64)
    assert np.abs(fast - ref).mean() < 4


def test_load_unlabelled(kaggle, tmp_path):
    paths = sorted((kaggle / "test1").iterdir())
    broken = tmp_path / "4.jpg"
    broken.write_bytes(b"nope")
    arr, loaded, skipped = load_unlabelled(paths + [broken], SIZE)
    assert arr.shape == (3, SIZE, SIZE, 3) and arr.dtype == np.uint8
    assert loaded == paths
    assert [p for p, _ in skipped] == [str(broken)]
    np.testing.assert_array_equal(arr[1], decode_image(paths[1], SIZE))
    empty, none, sk = load_unlabelled([broken], SIZE)
    assert empty.shape == (0, SIZE, SIZE, 3) and none == [] and len(sk) == 1


def test_all_files_broken_raises(tmp_path):
    root = tmp_path / "train"
    root.mkdir()
    (root / "cat.0.jpg").write_bytes(b"x")
    (root / "dog.0.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 2"):
        load_images(root, size=SIZE, workers=1)


# ------------------------------------------------------------------------------------ cache

def test_cache_is_reused_without_decoding(messy, tmp_path):
    root, bad = messy
    cache = tmp_path / "cache"
    before = D.STATS["decoded"]
    first = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    n_files = 8 + 5 + len(bad)
    assert D.STATS["decoded"] - before == n_files
    assert isinstance(first.images, np.memmap)
    npys, jsons = list(cache.glob("*.npy")), list(cache.glob("*.json"))
    assert len(npys) == 1 and len(jsons) == 1
    assert not [p for p in cache.iterdir() if ".tmp" in p.name]  # no leftovers
    meta = json.loads(jsons[0].read_text())
    assert meta["labels"] == first.labels.tolist() and meta["classes"] == ["cat", "dog"]
    assert {Path(p).name for p, _, _ in meta["sources"]} == {p.name for p in root.iterdir()}
    assert len(meta["skipped"]) == len(bad)
    # the npy on disk holds exactly the kept rows (shrunk in place after skipping)
    assert np.load(npys[0], mmap_mode="r").shape == (13, SIZE, SIZE, 3)

    mid = D.STATS["decoded"]
    second = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert D.STATS["decoded"] == mid  # nothing decoded: speed is bench/'s business, not a test's
    assert isinstance(second.images, np.memmap) and not second.images.flags.writeable
    np.testing.assert_array_equal(second.images, load_images(root, size=SIZE, workers=1).images)
    np.testing.assert_array_equal(second.labels, first.labels)
    assert second.skipped == first.skipped and second.classes == first.classes
    # another size is another cache entry
    load_images(root, size=SIZE + 8, cache_dir=cache, workers=1)
    assert len(list(cache.glob("*.npy"))) == 2


def test_cache_invalidated_when_a_file_changes(kaggle, tmp_path):
    root = _copy_tree(kaggle / "train", tmp_path / "train")
    cache = tmp_path / "cache"
    a = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    # replace dog.3 by another picture (different bytes and mtime)
    target = root / "dog.3.jpg"
    shutil.copy(kaggle / "train" / "cat.3.jpg", target)
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    before = D.STATS["decoded"]
    b = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert D.STATS["decoded"] - before == 24
    row = 12 + 3
    assert not np.array_equal(a.images[row], b.images[row])
    np.testing.assert_array_equal(b.images[row], b.images[3])  # now the same picture as cat.3
    # adding a file also rebuilds
    shutil.copy(kaggle / "train" / "cat.0.jpg", root / "cat.99.jpg")
    c = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert len(c) == 25 and D.STATS["decoded"] - before == 24 + 25


def test_half_written_cache_is_not_trusted(kaggle, tmp_path):
    root = _copy_tree(kaggle / "train", tmp_path / "train")
    cache = tmp_path / "cache"
    good = np.array(load_images(root, size=SIZE, cache_dir=cache, workers=1).images)  # in RAM
    npy = next(cache.glob("*.npy"))
    # a build killed half-way: the array file is cut short (its index says it is complete)
    with open(npy, "r+b") as f:
        f.truncate(npy.stat().st_size // 2)
    before = D.STATS["decoded"]
    again = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert D.STATS["decoded"] - before == 24
    np.testing.assert_array_equal(again.images, good)
    # an index missing altogether (killed before it was written) also means: rebuild
    next(cache.glob("*.json")).unlink()
    load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert D.STATS["decoded"] - before == 48


@pytest.mark.parametrize("edit", [
    lambda meta: meta["labels"].reverse(),  # labels swapped: in range, but not the source's
    lambda meta: meta.update(labels=[7] * len(meta["labels"])),  # out of range
    lambda meta: meta.update(classes=["dog", "cat"]),  # class names swapped
    lambda meta: meta.update(kept=meta["kept"][::-1]),
    lambda meta: meta.update(kept=[10**6] * len(meta["kept"])),
    lambda meta: meta.update(labels="cat"),
], ids=["swapped-labels", "out-of-range", "swapped-classes", "kept-reversed", "kept-out-of-range",
        "wrong-type"])
def test_an_index_edited_by_hand_is_a_miss(kaggle, tmp_path, edit):
    """The index is checked against the source it was built from: an edit is never used (a
    wrong label would train silently) and never a crash; the cache is rebuilt."""
    root = _copy_tree(kaggle / "train", tmp_path / "train")
    cache = tmp_path / "cache"
    good = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    index = next(cache.glob("*.json"))
    meta = json.loads(index.read_text())
    edit(meta)
    index.write_text(json.dumps(meta))
    before = D.STATS["decoded"]
    again = load_images(root, size=SIZE, cache_dir=cache, workers=1)
    assert D.STATS["decoded"] - before == 24  # rebuilt from the source
    np.testing.assert_array_equal(again.labels, good.labels)
    assert again.classes == good.classes


def test_cache_build_with_workers(kaggle, tmp_path):
    ims = load_images(kaggle / "train", size=SIZE, cache_dir=tmp_path / "c", workers=2)
    ref = load_images(kaggle / "train", size=SIZE, workers=1)
    np.testing.assert_array_equal(ims.images, ref.images)
