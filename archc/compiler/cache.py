"""archc's on-disk caches: the compiled grammar, and parsed spec files keyed by content.

Parsing is most of the time `archc.build` spends before it reaches torch (lark takes about
20 ms for a 75-line family spec; reading back the parsed IR takes under 2 ms), so a parsed
file is kept the way Python keeps a module's bytecode in a .pyc: under a key that changes
whenever anything the result depends on changes. The key covers

- the file's path (spans name it) and its exact text,
- the limits in force (the parser refuses nesting deeper than `depth`),
- archc itself: the size and modification time of every file of the package, and the
  versions of Python and pydantic (the IR's classes are pickled).

Only a parse that produced no diagnostics is stored, so a cached spec can never hide a
warning. A cache entry that cannot be read back for any reason is a miss, and is replaced.

Where: `$ARCHC_CACHE`, else `$XDG_CACHE_HOME/archc`, else `~/.cache/archc` (the image
cache of the runtime lives there too, under images/). Entries are pickles, so the
directory must belong to the user and be writable by nobody else; if it is not, or
cannot be made, nothing is cached. `ARCHC_NO_CACHE=1` turns the parse cache off.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent.parent  # all of archc, not just the compiler
# Bounds of the spec cache: when either is passed, the oldest entries go until it is half
# full. A family spec's entry is 15-60 KB; a 1 MB spec's about 12 MB.
MAX_ENTRIES = 2000
MAX_BYTES = 256 * 2**20


def root() -> Path:
    """The cache root: $ARCHC_CACHE, else $XDG_CACHE_HOME/archc, else ~/.cache/archc (and
    with no home directory at all, archc-cache-UID in the temporary directory)."""
    configured = os.environ.get("ARCHC_CACHE")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "archc"
    home = Path(os.path.expanduser("~"))
    if home.is_absolute():
        return home / ".cache" / "archc"
    # not a `~` folder in the working directory: a per-user one that `private_dir` vets
    import tempfile

    return Path(tempfile.gettempdir()) / f"archc-cache-{getattr(os, 'getuid', lambda: 0)()}"


def enabled() -> bool:
    """Whether parsed specs are cached: False when ARCHC_NO_CACHE is set to anything but 0
    or the empty string (the compiled grammar is cached regardless: it is archc's own)."""
    return os.environ.get("ARCHC_NO_CACHE", "") in ("", "0")


def private_dir(name: str) -> Path | None:
    """`root()/name`, created if needed, or None when it is not safe to load pickles from
    (not ours, or writable by others) or cannot be made."""
    path = root() / name
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return None
    return path


@lru_cache(maxsize=None)
def archc_fingerprint() -> str:
    """A digest of archc's own files and the versions the pickles depend on: editing the
    grammar, the parser or a layer kind invalidates every entry."""
    import pydantic

    h = hashlib.sha256(f"{sys.version}\0{pydantic.VERSION}\0".encode())
    for folder, subfolders, files in os.walk(PACKAGE):
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith((".py", ".lark"))):
            info = os.stat(os.path.join(folder, name))
            where = os.path.relpath(os.path.join(folder, name), PACKAGE)
            h.update(f"{where}\0{info.st_size}\0{info.st_mtime_ns}\0".encode())
    return h.hexdigest()


def spec_key(path: str, text: str) -> str:
    """The cache key of one spec file's parse."""
    from archc.compiler import limits

    h = hashlib.sha256(archc_fingerprint().encode())
    for name in sorted(limits.LIMITS):
        h.update(f"{name}={limits.get(name)}\0".encode())
    h.update(path.encode("utf-8", "surrogateescape") + b"\0")
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def load(directory: Path, key: str, expected: type) -> Any | None:
    """The object stored under `key`, or None when there is none or it cannot be read back
    as an `expected` (truncated by a crash, written by another archc: a miss, not an error)."""
    import pickle  # here, not at the top: `archc check` imports this module on every run

    entry = directory / f"{key}.pickle"
    try:
        with open(entry, "rb") as handle:
            value = pickle.load(handle)
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - any damage to an entry is a miss
        _remove(entry)
        return None
    return value if type(value) is expected else None


def store(directory: Path, key: str, value: Any) -> None:
    """Store `value` under `key`, atomically (a reader sees the whole entry or none); a
    cache that cannot be written is skipped silently, as Python skips a .pyc."""
    import pickle
    import tempfile

    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_BYTES // 8:  # one huge spec must not push out everything else
            return
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".tmp", delete=False) as out:
            out.write(data)
        os.replace(out.name, directory / f"{key}.pickle")
    except (OSError, pickle.PicklingError, RecursionError):
        return
    _prune(directory)


def _prune(directory: Path) -> None:
    """Every edit of a spec adds an entry: past MAX_ENTRIES entries or MAX_BYTES in all,
    remove the oldest until both are at half. A temporary file an hour old was left by a
    writer killed before its rename: it goes too."""
    import time

    try:
        entries = []
        for e in os.scandir(directory):
            info = e.stat()
            if e.name.endswith(".pickle"):
                entries.append((info.st_mtime_ns, info.st_size, e.path))
            elif e.name.endswith(".tmp") and time.time() - info.st_mtime > 3600:
                _remove(Path(e.path))
        total = sum(size for _, size, _ in entries)
        if len(entries) <= MAX_ENTRIES and total <= MAX_BYTES:
            return
        entries.sort()
        count = len(entries)
        for _, size, path in entries:
            if count <= MAX_ENTRIES // 2 and total <= MAX_BYTES // 2:
                break
            _remove(Path(path))
            count, total = count - 1, total - size
    except OSError:
        return


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
