"""Image datasets: discovery (Kaggle Dogs-vs-Cats, PetImages, class folders), split, uint8 cache.

The names and signatures below are the contract that runtime/training/loop.py and
runtime/cli.py build on.

Pipeline: `discover` finds (files, labels, classes); `load_images` decodes every file exactly once
(reduced-size JPEG decoding via ``Image.draft``, any mode -> RGB, short side resized to ``size``,
centre crop) into a uint8 array (N, size, size, 3), skipping and recording unusable files, and
optionally stores it as a memory-mapped ``.npy`` cache that later calls reuse.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

#: file extensions that count as images during discovery (case-insensitive), like torchvision.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: separator between a zip archive path and a member name in a source string.
ZIP_SEP = "::"
#: bump when the decoded pixels or the index format change, so old caches are not trusted.
CACHE_VERSION = 1

#: counters for tests and progress reports: "decoded" = number of files decoded (or attempted)
#: by this process's `load_images`/`load_unlabelled` calls, including those done by workers.
STATS = {"decoded": 0}

_KAGGLE_NAME = re.compile(r"^([A-Za-z][A-Za-z_\-]*)\.(\d+)\.[A-Za-z]+$")


class DataError(Exception):
    """A dataset path that cannot be used (missing, empty, unlabelled, a single class ...)."""


class DataWarning(UserWarning):
    """Something in a dataset was left out (an empty class folder, a looping link); the CLI
    prints it as one `warning: ...` line."""


@dataclass
class ImageSet:
    """Decoded images ready for batching.

    images: uint8 array (N, S, S, 3), RGB, usually a np.memmap of the on-disk cache.
    labels: int64 array (N,).
    classes: class names, index = label.
    skipped: (path, reason) for every file that could not be used.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


# ----------------------------------------------------------------------------------- discovery

def is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMG_EXTENSIONS)


def natural_key(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _kaggle_labelled(
    names: Sequence[str], where: str
) -> tuple[list[int], list[int], list[str]] | None:
    """If (most) base names look like ``cat.12.jpg``: (order, labels, classes); else None."""
    prefixes = []
    for n in names:
        m = _KAGGLE_NAME.match(n.rsplit("/", 1)[-1])
        prefixes.append(m.group(1).lower() if m else None)
    bad = [n for n, p in zip(names, prefixes) if p is None]
    if len(bad) == len(names):
        return None
    if bad:
        raise DataError(
            f"{where}: {len(bad)} image file(s) are not named like 'cat.0.jpg' (e.g. {bad[0]!r}), "
            "so their labels cannot be inferred; move or delete them, or use class sub-folders"
        )
    classes = sorted(set(prefixes))  # type: ignore[arg-type]
    if len(classes) < 2:
        raise DataError(
            f"{where}: every image has the label {classes[0]!r}; at least two classes are needed "
            "(Kaggle Dogs-vs-Cats train/ holds both cat.N.jpg and dog.N.jpg)"
        )
    cidx = {c: i for i, c in enumerate(classes)}
    labels = [cidx[p] for p in prefixes]  # type: ignore[index]
    order = sorted(range(len(names)), key=lambda i: (labels[i], natural_key(names[i])))
    return order, labels, classes


def _class_names(folders: Sequence[str]) -> list[str]:
    """Folder names -> class names: as-is (ImageFolder), except Cat/Dog (PetImages) -> cat/dog."""
    if sorted(f.lower() for f in folders) == ["cat", "dog"]:
        return [f.lower() for f in folders]
    return list(folders)


def _within_zip_caps(path: Path, members: list[zipfile.ZipInfo]) -> None:
    """DataError, before anything is inflated, when a member would inflate past the
    `zip_member_bytes` limit or all of them past `zip_total_bytes` (a zip bomb: 3.6 MB that
    inflates to 3 GiB). The sizes are the archive's own; `_read_member` never reads past
    them, so the check holds even for an archive that lies."""
    import archc

    most, total = archc.limit("zip_member_bytes"), 0
    for info in members:
        if info.file_size > most:
            raise DataError(f"{path}: member {info.filename!r} inflates to {info.file_size:,} "
                            f"bytes, over the limit of {most:,}; "
                            + archc.limit_hint("zip_member_bytes"))
        total += info.file_size
    if total > archc.limit("zip_total_bytes"):
        raise DataError(f"{path}: its images inflate to {total:,} bytes in all, over the limit "
                        f"of {archc.limit('zip_total_bytes'):,}; "
                        + archc.limit_hint("zip_total_bytes"))


def _one_class_error(where: str, name: str) -> DataError:
    return DataError(
        f"{where}: found a single class {name!r}; at least two classes are needed (expected "
        "Kaggle 'cat.N.jpg'/'dog.N.jpg' files, or one sub-folder per class such as Cat/ and Dog/)"
    )


def _discover_zip(path: Path) -> tuple[list[Path | str], list[int], list[str]]:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: cannot read the zip archive ({e})") from e
    nested = [i.filename for i in infos if i.filename.lower().endswith(".zip")]
    images = [i for i in infos if is_image_name(i.filename) and "__MACOSX/" not in i.filename]
    _within_zip_caps(path, images)
    members = [i.filename for i in images]
    if not members:
        hint = (f" (it holds nested archives such as {nested[0]!r}: extract it first)"
                if nested else "")
        raise DataError(f"{path}: the zip archive contains no image files{hint}")
    kag = _kaggle_labelled(members, str(path))
    if kag is not None:
        order, labels, classes = kag
        return [f"{path}{ZIP_SEP}{members[i]}" for i in order], [labels[i] for i in order], classes
    # class-per-folder inside the archive: the class is the member's parent folder name
    parents = sorted({m.rsplit("/", 2)[-2] if m.count("/") >= 1 else "" for m in members})
    if "" in parents:
        raise DataError(
            f"{path}: images at the top of the archive have no class folder or 'cat.N' name"
        )
    if len(parents) < 2:
        raise _one_class_error(str(path), parents[0])
    classes = _class_names(parents)
    cidx = {p: i for i, p in enumerate(parents)}
    items = sorted(((cidx[m.rsplit("/", 2)[-2]], m) for m in members),
                   key=lambda t: (t[0], natural_key(t[1])))
    return [f"{path}{ZIP_SEP}{m}" for _, m in items], [c for c, _ in items], classes


def _identity(path: Path | str) -> tuple[int, int]:
    """(device, inode) of what `path` points to: equal for every name of one real file."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _images_under(folder: Path) -> list[Path]:
    """Image files below a class folder, each real file once, links followed.

    A link to a folder already walked or to one above the class folder (`self -> .`,
    `up -> ..`) would loop or read the same images again (and leak them across the
    train/val split), so it is skipped with a warning; so is a second name of a file.
    """
    seen_dirs = {_identity(p) for p in (folder.resolve(), *folder.resolve().parents)}
    seen_files: set[tuple[int, int]] = set()
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".")
                   and _new_folder(Path(root) / d, seen_dirs)]
        for name in sorted(files):
            path = Path(root) / name
            if is_image_name(name) and _new_file(path, seen_files):
                out.append(path)
    return sorted(out)


def _new_folder(path: Path, seen: set[tuple[int, int]]) -> bool:
    """Whether os.walk should enter `path`: False (with a warning) for a folder seen before."""
    try:
        key = _identity(path)
    except OSError:  # a dangling link or a loop the kernel already refuses
        return False
    if key in seen:
        warnings.warn(f"ignoring {path}: it leads back to {os.path.realpath(path)}, which "
                      "holds this class folder or was read already", DataWarning, stacklevel=3)
        return False
    seen.add(key)
    return True


def _new_file(path: Path, seen: set[tuple[int, int]]) -> bool:
    """Whether `path` is a real file not listed under another name yet (broken links are kept,
    so `load_images` reports them as unreadable)."""
    try:
        key = _identity(path)
    except OSError:
        return True
    if key in seen:
        return False
    seen.add(key)
    return True


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _direct_images(folder: Path) -> list[Path]:
    """The image files directly in `folder`, each real file once (a link to another is left out)."""
    seen: set[tuple[int, int]] = set()
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p.name))
    # plain files claim their identity first, so the link is what is left out, not the image
    firsts = sorted(candidates, key=lambda p: p.is_symlink())
    kept = {p for p in firsts if _new_file(p, seen)}
    return [p for p in candidates if p in kept]


def discover(path: Path) -> tuple[list[Path | str], list[int], list[str]]:
    """Find the labelled images under ``path``: returns (files, labels, classes).

    Understands, in this order:
      (a) a Kaggle Dogs-vs-Cats ``train/`` folder of ``cat.N.jpg``/``dog.N.jpg`` (label = the
          lower-cased name prefix; also any other ``<class>.<N>.<ext>`` names), or a folder holding
          such a ``train/`` folder (e.g. the extracted competition data: ``train/``, ``test1/``);
      (b) a zip archive (Kaggle ``train.zip``: members ``train/cat.0.jpg``; or class folders inside
          the archive). Members are returned as strings ``"<zip path>::<member>"``;
      (c) Microsoft PetImages (``Cat/``, ``Dog/`` sub-folders -> classes ``["cat", "dog"]``),
          also when wrapped in a single folder such as ``PetImages/``;
      (d) any class-per-folder tree (classes = sorted sub-folder names, images found
          recursively, like torchvision ``ImageFolder``).
    Only files with an image extension are listed (a ``Thumbs.db`` is ignored; a broken
    ``.jpg`` is listed and later skipped by `load_images`). Order: by label, then by name
    (numeric parts compared as numbers), so it is deterministic.
    Raises `DataError` for a missing path, no images, unlabelled images, or a single class.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"dataset path {str(path)!r} does not exist")
    if path.is_file():
        if zipfile.is_zipfile(path):
            return _discover_zip(path)
        raise DataError(f"{path} is a file but not a zip archive; pass a folder or a .zip")
    flat = _direct_images(path)
    subs = _subdirs(path)
    if flat:
        kag = _kaggle_labelled([p.name for p in flat], str(path))
        if kag is None:
            if subs:
                raise DataError(
                    f"{path}: has both loose images (e.g. {flat[0].name!r}) without a 'cat.N.jpg' "
                    "style label and sub-folders; use one layout"
                )
            raise DataError(
                f"{path}: images such as {flat[0].name!r} carry no label; name them like "
                "'cat.0.jpg' or put them in one sub-folder per class"
            )
        order, labels, classes = kag
        return [flat[i] for i in order], [labels[i] for i in order], classes
    if not subs:
        raise DataError(f"{path}: the folder is empty (no images and no class sub-folders)")
    # the Kaggle competition root: train/ (labelled) next to test1/ (unlabelled)
    train = path / "train"
    train_imgs = _direct_images(train) if train.is_dir() else []
    try:
        kaggle_root = bool(train_imgs) and _kaggle_labelled(
            [p.name for p in train_imgs], str(train)) is not None
    except DataError:  # e.g. a class folder that happens to be called "train"
        kaggle_root = False
    if kaggle_root:
        return discover(train)
    # a single wrapper folder such as PetImages/ holding the class folders
    if len(subs) == 1 and not _direct_images(subs[0]) and len(_subdirs(subs[0])) >= 2:
        return discover(subs[0])
    per_class = [(d.name, _images_under(d)) for d in subs]
    per_class = [(n, f) for n, f in per_class if f]
    if not per_class:
        raise DataError(f"{path}: no image files ({', '.join(IMG_EXTENSIONS)}) in any sub-folder")
    if len(per_class) == 1:
        only = per_class[0][1]
        if len(subs) == 1 and _kaggle_labelled([p.name for p in only], str(subs[0])) is not None:
            return discover(subs[0])
        raise _one_class_error(str(path), per_class[0][0])
    empty = [d.name for d in subs if d.name not in {n for n, _ in per_class}]
    if empty:
        warnings.warn(f"{path}: ignoring sub-folder(s) without images: {empty}", DataWarning,
                      stacklevel=2)
    _one_label_each(path, per_class)
    classes = _class_names([n for n, _ in per_class])
    files: list[Path | str] = []
    labels: list[int] = []
    for label, (_, fs) in enumerate(per_class):
        files.extend(fs)
        labels.extend([label] * len(fs))
    return files, labels, classes


def _one_label_each(path: Path, per_class: list[tuple[str, list[Path]]]) -> None:
    """DataError when one real file is listed under two classes (through a link)."""
    owner: dict[tuple[int, int], tuple[str, Path]] = {}
    for name, files in per_class:
        for file in files:
            try:
                key = _identity(file)
            except OSError:
                continue
            if key in owner and owner[key][0] != name:
                first_class, first = owner[key]
                raise DataError(
                    f"{path}: {file} and {first} are the same file, in classes {first_class!r} "
                    f"and {name!r}; an image can have one label (remove the link)"
                )
            owner[key] = (name, file)


# ------------------------------------------------------------------------------------- split

def stratified_split(
    labels: Sequence[int], val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into (train, val), each sorted, int64, stratified per class.

    Each class contributes ``round(n_c * val_fraction)`` validation examples, clamped to
    [1, n_c - 1] when the class has >= 2 examples and ``val_fraction > 0`` (a one-example class
    stays in train). Deterministic for a given (labels, val_fraction, seed).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1]))
    train, val = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = round(len(idx) * val_fraction)
        if val_fraction > 0 and len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        elif len(idx) < 2:
            n_val = 0
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    if not train:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_hash(train_idx, val_idx) -> str:
    """sha256 hex digest identifying a split (for the run record)."""
    h = hashlib.sha256()
    for name, arr in (("train", train_idx), ("val", val_idx)):
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.int64))
        h.update(f"{name}:{a.size}:".encode())
        h.update(a.astype("<i8").tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ decode

_ZIPS: dict[tuple[int, str], zipfile.ZipFile] = {}


def _read_bytes(src: Path | str) -> bytes:
    s = str(src)
    if ZIP_SEP in s:
        archive, member = s.split(ZIP_SEP, 1)
        key = (os.getpid(), archive)  # one handle per process: never share a file offset
        zf = _ZIPS.get(key)
        if zf is None:
            zf = _ZIPS[key] = zipfile.ZipFile(archive)
        return _read_member(zf, member)
    with open(s, "rb") as f:
        return f.read()


def _read_member(zf: zipfile.ZipFile, member: str) -> bytes:
    """One member's bytes, streamed and capped at the `zip_member_bytes` limit: a member
    whose header lies about its size still never inflates past the cap in memory."""
    import archc

    most = archc.limit("zip_member_bytes")
    with zf.open(member) as stream:
        data = stream.read(most + 1)
    if len(data) > most:
        raise ValueError(f"zip member inflates past the limit of {most:,} bytes")
    return data


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")  # alpha is dropped (colour kept), like PIL's RGBA->RGB
    return im.convert("RGB")


def decode_image(src: Path | str, size: int) -> np.ndarray:
    """Decode one image (file path or ``zip::member``) to uint8 (size, size, 3): RGB, short side
    resized to ``size`` (bilinear, antialiased), centre-cropped. Raises on unusable files."""
    data = _read_bytes(src)
    if not data:
        raise ValueError("empty file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EXIF/ICC chatter; real problems raise
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ValueError("zero-sized image")
            if im.format == "JPEG":
                # ask libjpeg for a 1/2, 1/4 or 1/8 scale decode that still covers size x size
                s = size / min(w, h)
                im.draft("RGB", (math.ceil(w * s), math.ceil(h * s)))
            im.load()  # truncated data raises OSError here (LOAD_TRUNCATED_IMAGES stays False)
            im = _to_rgb(im)
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) / 2, (h - side) / 2
            im = im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side))
            arr = np.asarray(im, dtype=np.uint8)
    if arr.shape != (size, size, 3):
        raise ValueError(f"unexpected decoded shape {arr.shape}")
    return arr


def _short_reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "truncated" in msg.lower():
        return "truncated image"
    if "empty file" in msg:
        return "empty file"
    name = type(e).__name__
    if name == "UnidentifiedImageError":
        return "not an image (unidentified format)"
    return f"{name}: {msg[:120]}" if msg else name


def _decode_job(job: tuple[int, str, int]) -> tuple[int, np.ndarray | None, str]:
    i, src, size = job
    try:
        return i, decode_image(src, size), ""
    except Exception as e:  # noqa: BLE001 - every failure becomes a recorded skip
        return i, None, _short_reason(e)


def decode_many(
    sources: Sequence[Path | str], size: int, workers: int, progress: bool = False
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """Yield (index, array | None, reason) in source order, decoding in `workers` processes."""
    n = len(sources)
    jobs = [(i, str(s), size) for i, s in enumerate(sources)]
    t0 = time.perf_counter()
    # On a terminal the line is redrawn 20 times; in a log file only the last count is
    # written, as one line, instead of 20 joined by carriage returns.
    live = progress and sys.stderr.isatty()
    step = max(1, n // 20) if live else n

    def report(k: int) -> None:
        if progress and (k % step == 0 or k == n):
            rate = k / max(time.perf_counter() - t0, 1e-9)
            print(f"\rdecoding {k}/{n} images ({rate:.0f}/s)", end="" if k < n else "\n",
                  file=sys.stderr, flush=True)

    if workers <= 1 or n < 2 * max(workers, 1):
        for k, job in enumerate(jobs, 1):
            STATS["decoded"] += 1
            yield _decode_job(job)
            report(k)
        return
    import multiprocessing as mp

    # fork is cheap and safe here (workers touch only PIL/numpy); fall back to spawn elsewhere
    method = "fork" if "fork" in mp.get_all_start_methods() and sys.platform == "linux" else "spawn"
    ctx = mp.get_context(method)
    chunk = max(1, min(64, n // (workers * 8)))
    with ctx.Pool(workers) as pool:
        for k, res in enumerate(pool.imap(_decode_job, jobs, chunksize=chunk), 1):
            STATS["decoded"] += 1
            yield res
            report(k)


# ------------------------------------------------------------------------------------- cache

def _fingerprint(sources: Sequence[Path | str]) -> list[list]:
    """[source, byte size, mtime_ns] per source (zip members: member size and CRC, plus the
    archive's own size and mtime in the first entry of each archive)."""
    out: list[list] = []
    zips: dict[str, dict[str, zipfile.ZipInfo]] = {}
    for s in sources:
        s = str(s)
        if ZIP_SEP in s:
            archive, member = s.split(ZIP_SEP, 1)
            if archive not in zips:
                with zipfile.ZipFile(archive) as zf:
                    zips[archive] = {i.filename: i for i in zf.infolist()}
                st = os.stat(archive)
                out.append([archive, st.st_size, st.st_mtime_ns])
            info = zips[archive][member]
            out.append([s, info.file_size, info.CRC])
        else:
            try:
                st = os.stat(s)
                out.append([s, st.st_size, st.st_mtime_ns])
            except OSError:
                out.append([s, -1, -1])
    return out


def _cache_paths(cache_dir: Path, path: Path, size: int, key: str) -> tuple[Path, Path]:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name or "data")[:40]
    base = cache_dir / f"{stem}-{size}px-{key[:16]}"
    return base.with_suffix(".npy"), base.with_suffix(".json")


def _try_cache(npy: Path, idx: Path, key: str, size: int,
               source: tuple[list[list], list[int], list[str]]) -> ImageSet | None:
    """The cached set, or None (a miss: rebuilt) unless its index is the one this source
    gives: the same key and files, the same classes, and for every kept image the label the
    source gives it now. An index edited by hand (labels swapped, out of range, class names
    changed) is a miss, never used and never a crash."""
    fingerprint, labels, classes = source
    try:
        meta = json.loads(idx.read_text())
        if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
            return None
        kept = meta["kept"]
        if (meta["sources"] != fingerprint or meta["classes"] != classes
                or not _valid_rows(kept, len(labels))
                or meta["labels"] != [labels[i] for i in kept]):
            return None
        images = np.load(npy, mmap_mode="r")
        if images.shape != (len(kept), size, size, 3) or images.dtype != np.uint8:
            return None
        skipped = [(str(p), str(r)) for p, r in meta["skipped"]]
        return ImageSet(images=images, labels=np.asarray(meta["labels"], dtype=np.int64),
                        classes=list(classes), skipped=skipped)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def _valid_rows(kept, n: int) -> bool:
    """Whether `kept` is a strictly increasing list of row numbers below `n`."""
    return (isinstance(kept, list) and all(type(i) is int for i in kept)
            and all(a < b for a, b in zip(kept, kept[1:]))
            and (not kept or (kept[0] >= 0 and kept[-1] < n)))


def _shrink_npy(path: Path, n_total: int, n_kept: int, item_shape: tuple[int, ...]) -> None:
    """Rewrite the .npy header in place for n_kept rows and truncate the file.

    numpy reserves room in the header for the first axis to grow to 21 digits, so the new header
    has exactly the same length as the old one (checked)."""
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
        f.seek(0)
        hdr = {"descr": "|u1", "fortran_order": False, "shape": (n_kept, *item_shape)}
        if version == (1, 0):
            np.lib.format.write_array_header_1_0(f, hdr)
        else:
            np.lib.format.write_array_header_2_0(f, hdr)
        if f.tell() != offset:
            raise RuntimeError("npy header changed length; cannot shrink in place")
        f.truncate(offset + n_kept * int(np.prod(item_shape)))


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


#: a temporary cache file this old was left by a build that was killed: --clear removes it
STALE_BUILD_S = 3600


@dataclass
class CachedSet:
    """One decoded dataset in the image cache (its .npy array and .json index), or the
    temporary file of a build that has not finished (root None, `unfinished`)."""

    files: list[Path]
    root: str | None  # the dataset it was decoded from; None when the index is unreadable
    size: int | None  # the side of the square images, in pixels
    images: int | None
    bytes: int  # on disk, all its files together
    created: float | None  # time.time() when it was built (or last written, unfinished)
    unfinished: bool = False


def _on_disk(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files if f.exists())


def _finished_set(array: Path) -> CachedSet:
    """What a cached array and its index say about their dataset (None where unreadable)."""
    index = array.with_suffix(".json")
    files = [array, index]
    try:
        meta = json.loads(index.read_text())
        return CachedSet(files, str(meta["root"]), int(meta["size"]), len(meta["labels"]),
                         _on_disk(files), meta.get("created"))
    except (OSError, ValueError, KeyError, TypeError):
        return CachedSet(files, None, None, None, _on_disk(files), None)


def _unfinished_set(temp: Path) -> CachedSet:
    return CachedSet([temp], None, None, None, _on_disk([temp]), temp.stat().st_mtime,
                     unfinished=True)


def cached_sets(cache_dir: Path | str) -> list[CachedSet]:
    """Every dataset in the image cache `cache_dir`, newest first, and the temporary files of
    builds that have not finished (running now, or killed)."""
    folder = Path(cache_dir)
    if not folder.is_dir():
        return []
    found = [_finished_set(npy) for npy in folder.glob("[!.]*.npy")]
    found += [_unfinished_set(temp) for temp in folder.glob(".*.tmp-*")]
    return sorted(found, key=lambda entry: -(entry.created or 0))


def clear_cache(cache_dir: Path | str, dataset: Path | str | None = None) -> list[CachedSet]:
    """Remove the decoded images of `dataset` (every size it was cached at), or with None
    every dataset's, from the image cache; returns what was removed. A temporary file is
    removed only once it is STALE_BUILD_S old: a younger one may belong to a running build."""
    wanted = None if dataset is None else str(Path(dataset).resolve())
    removed = []
    for entry in cached_sets(cache_dir):
        if entry.unfinished:
            if wanted is not None or time.time() - (entry.created or 0) < STALE_BUILD_S:
                continue
        elif wanted is not None and entry.root != wanted:
            continue
        for file in entry.files:
            file.unlink(missing_ok=True)
        removed.append(entry)
    return removed


#: the largest short side `load_images` decodes to: far above any training resolution, and a
#: 4096 px cache already costs 48 MiB per image
MAX_SIZE = 4096


def check_size(size: int) -> None:
    """DataError unless 1 <= size <= MAX_SIZE (checked before anything is allocated)."""
    if not 1 <= size <= MAX_SIZE:
        raise DataError(f"the image size must be between 1 and {MAX_SIZE} pixels, got {size}")


def _cache_error(cache_dir: Path, exc: OSError) -> DataError:
    reason = exc.strerror or str(exc)
    return DataError(f"cannot write the image cache in {cache_dir}: {reason}; "
                     "set ARCHC_CACHE to a writable folder")


def _make_cache_dir(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_error(cache_dir, exc) from None


def _check_room(cache_dir: Path, needed: int) -> None:
    """DataError before a cache is allocated that the disk cannot hold."""
    import shutil

    free = shutil.disk_usage(cache_dir).free
    if needed > free:
        raise DataError(f"the image cache needs {needed / 2**30:.1f} GiB but {cache_dir} has "
                        f"{free / 2**30:.1f} GiB free; lower the size, or set ARCHC_CACHE to a "
                        "larger disk")


def load_images(
    path: Path,
    size: int = 256,
    cache_dir: Path | None = None,
    workers: int = 2,
    progress: bool = False,
) -> ImageSet:
    """Discover and decode a labelled dataset into uint8 (N, size, size, 3) RGB.

    Every file is decoded once (JPEGs at 1/2, 1/4 or 1/8 scale via ``Image.draft`` when that still
    covers ``size``), converted to RGB, short side resized to ``size``, centre-cropped. Files that
    cannot be decoded (corrupt, truncated, empty, not an image) are left out and listed in
    ``ImageSet.skipped`` as (path, reason); they never raise. Decoding uses ``workers`` processes.

    With ``cache_dir``, the result is written to ``<cache_dir>/<name>-<size>px-<key>.npy`` (a
    memory-mapped array) plus a ``.json`` index (labels, classes, skipped, the source files with
    their byte size and mtime). The key hashes (resolved path, size, source list with sizes and
    mtimes), so changing, adding or removing a file builds a new cache. Both files are written under
    temporary names and moved into place with ``os.replace`` (the index last), so an interrupted
    build is never trusted. A cache hit returns ``images`` as a read-only ``np.memmap`` and decodes
    nothing.
    """
    path = Path(path)
    check_size(size)
    files, labels, classes = discover(path)
    npy = idx = None
    key = ""
    fp: list[list] = []
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        _make_cache_dir(cache_dir)
        fp = _fingerprint(files)
        blob = json.dumps({"v": CACHE_VERSION, "root": str(path.resolve()), "size": size,
                           "files": fp, "labels": labels, "classes": classes})
        key = hashlib.sha256(blob.encode()).hexdigest()
        npy, idx = _cache_paths(cache_dir, path, size, key)
        hit = _try_cache(npy, idx, key, size, (fp, labels, classes))
        if hit is not None:
            return hit

    n = len(files)
    shape = (size, size, 3)
    tmp_npy = None
    if npy is not None:
        _check_room(cache_dir, n * size * size * 3)
        tmp_npy = npy.with_name(f".{npy.name}.tmp-{os.getpid()}")
        try:
            out = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.uint8,
                                            shape=(n, *shape))
        except OSError as exc:
            raise _cache_error(cache_dir, exc) from None
    else:
        out = np.empty((n, *shape), dtype=np.uint8)
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    try:
        for i, arr, reason in decode_many(files, size, workers, progress):
            if arr is None:
                skipped.append((str(files[i]), reason))
            else:
                out[len(kept)] = arr
                kept.append(i)
        if not kept:
            raise DataError(f"{path}: none of the {n} image files could be decoded "
                            f"(first problem: {skipped[0][0]}: {skipped[0][1]})")
        kept_labels = np.asarray([labels[i] for i in kept], dtype=np.int64)
        if tmp_npy is None:
            images = out[: len(kept)] if len(kept) < n else out
            return ImageSet(images=images, labels=kept_labels, classes=classes, skipped=skipped)
        out.flush()
        del out
        if len(kept) < n:
            _shrink_npy(tmp_npy, n, len(kept), shape)
        os.replace(tmp_npy, npy)
        tmp_npy = None
        _write_json_atomic(idx, {
            "version": CACHE_VERSION, "key": key, "root": str(path.resolve()), "size": size,
            "classes": classes, "labels": kept_labels.tolist(), "skipped": skipped,
            "sources": fp, "kept": kept, "created": time.time(),
        })
    finally:
        if tmp_npy is not None:
            try:
                os.unlink(tmp_npy)
            except OSError:
                pass
    hit = _try_cache(npy, idx, key, size, (fp, labels, classes))
    if hit is None:  # pragma: no cover - only if the file system lies
        raise DataError(f"failed to read back the cache just written at {npy}")
    return hit


def load_unlabelled(
    paths: Sequence[Path], size: int, workers: int = 1
) -> tuple[np.ndarray, list[Path], list[tuple[str, str]]]:
    """Decode ``paths`` (e.g. Kaggle ``test1/*.jpg``) exactly like `load_images`.

    Returns (uint8 array (M, size, size, 3), the M paths that loaded, skipped (path, reason)).
    """
    paths = list(paths)
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    loaded: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for i, arr, reason in decode_many(paths, size, workers):
        if arr is None:
            skipped.append((str(paths[i]), reason))
        else:
            out[len(loaded)] = arr
            loaded.append(paths[i])
    return out[: len(loaded)].copy() if len(loaded) < len(paths) else out, loaded, skipped
