"""archc's on-disk caches: the compiled grammar, and parsed spec files keyed by content.

Parsing is most of the time `archc.build` spends before it reaches torch (lark takes about
20 ms for a 75-line family spec; reading back the parsed IR takes a few ms), so a parsed
file is kept the way Python keeps a module's bytecode in a .pyc: under a key that changes
whenever anything the result depends on changes. The key covers

- the file's path (spans name it) and its exact text,
- the limits in force (the parser refuses nesting deeper than `depth`),
- archc itself: its version, the size and modification time of every file of the package,
  and the versions of Python and pydantic.

Entries are data, never code: JSON with a one-line header naming the format, the key the
entry was written for, and the sha256 of the payload. An entry whose header names another
format or another key (another spec's entry filed under this name), whose payload does not
match its digest (a flipped byte), or that does not decode into IR nodes (an older schema)
is a miss, and is replaced. Only a parse that produced no diagnostics is stored, so a cached
spec can never hide a warning.

Where: `$ARCHC_CACHE`, else `$XDG_CACHE_HOME/archc`, else `~/.cache/archc` (`~` from the
password database when `$HOME` is not absolute; the image cache of the runtime lives there
too, under images/). Folders are opened one by one from `/` with `O_NOFOLLOW` and checked on
the opened descriptor: every folder on the way belongs to the user or root and no other user
can write it (unless it is sticky, like /tmp); archc's own folders are created 0700 and must
belong to the user. Entries are then opened relative to that descriptor, so a symlink
flipped after the check leads nowhere. If any of this fails, nothing is cached.
`ARCHC_NO_CACHE=1` turns the parse cache off. docs/security.md has the threat model.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

PACKAGE = Path(__file__).resolve().parent.parent  # all of archc, not just the compiler
# Bounds of the spec cache: when either is passed, the oldest entries go until it is half
# full. A family spec's entry is 20-80 KB; a 1 MB spec's about 15 MB.
MAX_ENTRIES = 2000
MAX_BYTES = 256 * 2**20
# The format of an entry's header line; a change of the layout below changes it.
FORMAT = "archc-cache/2"
SUFFIX = ".json"

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO planted as an entry must not block
# An ancestor we may not list (a 0711 home) can still be walked through with O_PATH.
_O_WALK = getattr(os, "O_PATH", os.O_RDONLY)


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def root() -> Path | None:
    """The cache root: $ARCHC_CACHE, else $XDG_CACHE_HOME/archc, else ~/.cache/archc, with
    `~` from $HOME when it is absolute, else from the password database. None when there is
    no absolute home at all: a relative HOME must never lead into a shared folder."""
    configured = os.environ.get("ARCHC_CACHE")
    if configured:
        return Path(os.path.abspath(configured))
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is to be ignored
        return Path(xdg) / "archc"
    home = _home()
    return None if home is None else home / ".cache" / "archc"


def _home() -> Path | None:
    """The user's absolute home folder, or None."""
    home = os.environ.get("HOME", "")
    if os.path.isabs(home):
        return Path(home)
    try:
        import pwd

        home = pwd.getpwuid(_uid()).pw_dir
    except (ImportError, KeyError):
        return None
    return Path(home) if os.path.isabs(home) else None


def enabled() -> bool:
    """Whether parsed specs are cached: False when ARCHC_NO_CACHE is set to anything but 0
    or the empty string (the compiled grammar is cached regardless: it is archc's own)."""
    return os.environ.get("ARCHC_NO_CACHE", "") in ("", "0")


class CacheDir:
    """One of archc's private cache folders, held open: entries are opened relative to its
    descriptor, never by a path that could be re-pointed."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path = fd, path

    def read(self, name: str, most: int) -> bytes | None:
        """The bytes of entry `name`, or None: missing, not a plain file of ours (a link, a
        FIFO, someone else's), over `most` bytes, or unreadable."""
        try:
            fd = os.open(name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK,
                         dir_fd=self.fd)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if (not stat.S_ISREG(info.st_mode) or info.st_uid != _uid()
                    or info.st_size > most):
                return None
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(most + 1)
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes) -> bool:
        """Store `data` as entry `name` atomically (a reader sees all of it or none)."""
        import secrets

        temporary = f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW
                         | _O_CLOEXEC, 0o600, dir_fd=self.fd)
        except OSError:
            return False
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            return True
        except OSError:
            self.remove(temporary)
            return False

    def remove(self, name: str) -> None:
        """Remove entry `name` if it is there."""
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass


_OPEN: dict[Path, CacheDir] = {}


def private_dir(name: str) -> CacheDir | None:
    """`root()/name`, created 0700 where missing, held open; None when it is not safe (a
    folder on the way that another user can write or owns, a link where archc's own folder
    should be) or cannot be made. A folder already open is reused while the path still
    names it (a long-lived language server whose cache was removed opens the new one)."""
    base = root()
    if base is None:
        return None
    path = base / name
    held = _OPEN.get(path)
    if held is not None:
        try:
            now, then = os.stat(held.path, follow_symlinks=False), os.fstat(held.fd)
            if (now.st_dev, now.st_ino) == (then.st_dev, then.st_ino):
                return held
        except OSError:
            pass
        del _OPEN[path]
        os.close(held.fd)
    opened = _open_private(path)
    if opened is not None:
        _OPEN[path] = opened
    return opened


def _open_private(path: Path) -> CacheDir | None:
    """Walk from `/` to `path` one folder at a time with O_NOFOLLOW, checking each on its
    open descriptor; create what is missing (0700). Links in the part that exists are
    resolved first, as the user set them up; a link appearing later makes the walk fail."""
    if not hasattr(os, "getuid") or os.open not in os.supports_dir_fd:
        return None  # no descriptor-relative calls: no safe cache
    try:
        existing = Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None
    parts = existing.parts
    fd = -1
    try:
        fd = os.open(parts[0], _O_WALK | _O_DIRECTORY | _O_CLOEXEC)
        for depth, part in enumerate(parts[1:], start=2):
            leaf = depth == len(parts)
            created = _make(part, fd)
            flags = (os.O_RDONLY if leaf else _O_WALK) | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC
            child = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = child
            if not _trusted(fd, own=leaf or created):
                os.close(fd)
                return None
        if len(parts) == 1:  # `/` itself is nobody's cache
            os.close(fd)
            return None
        return CacheDir(fd, existing)
    except (OSError, ValueError):
        if fd >= 0:
            os.close(fd)
        return None


def _make(name: str, parent: int) -> bool:
    """Create folder `name` in `parent` (0700); True if this call created it."""
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
        return True
    except FileExistsError:
        return False


def _trusted(fd: int, own: bool) -> bool:
    """Whether the open folder `fd` is safe to keep archc's caches in or under: no other
    user can write it (sticky folders such as /tmp excepted, where nobody may rename what
    is ours), and it belongs to us or root; with `own`, it is archc's: ours, and no other
    user can write it, sticky or not."""
    info = os.fstat(fd)
    if not stat.S_ISDIR(info.st_mode):
        return False
    others_write = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if own:
        return info.st_uid == _uid() and not others_write
    if info.st_uid not in (0, _uid()):
        return False
    return not others_write or bool(info.st_mode & stat.S_ISVTX)


@lru_cache(maxsize=None)
def archc_fingerprint() -> str:
    """A digest of archc's files and the versions the IR depends on: editing the grammar,
    the parser or a layer kind invalidates every entry, and so does a new archc version
    (it is written in archc/__init__.py, one of the files)."""
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


def data_key(*parts: str) -> str:
    """A cache key of some strings (the grammar's text, lark's version, ...)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


# --------------------------------------------------------------------------- entries


def seal(key: str, payload: bytes) -> bytes:
    """An entry: the header line (format, key, sha256 of the payload), then the payload."""
    digest = hashlib.sha256(payload).hexdigest()
    return f"{FORMAT} {key} {digest}\n".encode() + payload


def unseal(key: str, data: bytes) -> bytes | None:
    """The payload of entry `data` if its header names this format and `key` and the
    payload matches its digest; else None."""
    header, newline, payload = data.partition(b"\n")
    if not newline or header != f"{FORMAT} {key} {hashlib.sha256(payload).hexdigest()}".encode():
        return None
    return payload


def load_entry(directory: CacheDir, key: str, decode: Callable[[bytes], Any]) -> Any | None:
    """`decode(payload)` of the entry stored under `key`, or None when there is none or it
    is damaged, foreign or of an older schema (a miss, not an error: it is removed)."""
    data = directory.read(key + SUFFIX, MAX_BYTES // 8)
    if data is None:
        return None
    payload = unseal(key, data)
    try:
        if payload is not None:
            return decode(payload)
    except Exception:  # noqa: BLE001 - whatever an old or damaged entry holds is a miss
        pass
    directory.remove(key + SUFFIX)
    return None


def store_entry(directory: CacheDir, key: str, payload: bytes) -> None:
    """Store `payload` under `key`; a cache that cannot be written is skipped silently, as
    Python skips a .pyc."""
    if len(payload) > MAX_BYTES // 8:  # one huge spec must not push out everything else
        return
    if directory.write(key + SUFFIX, seal(key, payload)):
        _prune(directory)


def load(directory: CacheDir, key: str) -> Any | None:
    """The parsed spec (`ir.SpecFile`) stored under `key`, or None (see `load_entry`)."""
    return load_entry(directory, key, decode_ir)


def store(directory: CacheDir, key: str, spec: Any) -> None:
    """Store the parsed spec `spec` under `key` (skipped if it cannot be encoded)."""
    try:
        payload = encode_ir(spec)
    except (RecursionError, TypeError, ValueError):
        return
    store_entry(directory, key, payload)


def _prune(directory: CacheDir) -> None:
    """Every edit of a spec adds an entry: past MAX_ENTRIES entries or MAX_BYTES in all,
    remove the oldest until both are at half. A temporary file an hour old was left by a
    writer killed before its rename, and an entry of the pickle format (archc before 0.2)
    is dead weight: they go too."""
    import time

    try:
        entries = []
        with os.scandir(directory.fd) as listing:
            for e in listing:
                info = e.stat(follow_symlinks=False)
                if e.name.endswith(SUFFIX):
                    entries.append((info.st_mtime_ns, info.st_size, e.name))
                elif e.name.endswith(".pickle") or (
                        e.name.endswith(".tmp") and time.time() - info.st_mtime > 3600):
                    directory.remove(e.name)
        total = sum(size for _, size, _ in entries)
        if len(entries) <= MAX_ENTRIES and total <= MAX_BYTES:
            return
        entries.sort()
        count = len(entries)
        for _, size, name in entries:
            if count <= MAX_ENTRIES // 2 and total <= MAX_BYTES // 2:
                break
            directory.remove(name)
            count, total = count - 1, total - size
    except OSError:
        return


# --------------------------------------------------------------------------- IR as JSON
# pydantic's own `model_validate_json` builds the IR's validators on first use (35 ms, a
# third of a cold `archc check`), so the IR is written as tagged JSON and read back with
# `model_construct`, checking every node's class and field names. Each node is a dict with
# "@" naming its class; a span is {"@s": [line, column, end_line, end_column]} (plus the file
# when it is not the spec's own). The payload's digest has already ruled out damage; a name
# that is no IR class or field (an older schema) raises, which is a miss. The spec's own path
# comes first, on a line of its own, so that spans can leave it out.


def encode_ir(spec: Any) -> bytes:
    """The parsed spec `spec` (an `ir.SpecFile`) as JSON bytes."""
    from archc.compiler import ir

    own = spec.path

    def encode(value: Any) -> Any:
        if isinstance(value, ir.Span):
            where = [value.line, value.column, value.end_line, value.end_column]
            return {"@s": where if value.file == own else [*where, value.file]}
        if isinstance(value, ir.Node):
            out = {"@": type(value).__name__}
            for name, item in value.__dict__.items():
                out[name] = encode(item)
            return out
        if isinstance(value, list):
            return [encode(item) for item in value]
        if value is None or type(value) in (str, int, float, bool):
            return value
        raise TypeError(f"no JSON form for {type(value).__name__}")

    tree = json.dumps(encode(spec), separators=(",", ":"), allow_nan=True)
    return f"{json.dumps(own)}\n{tree}".encode()


@lru_cache(maxsize=1)
def _ir_classes() -> dict[str, tuple[type, frozenset[str], frozenset[str]]]:
    """Every IR node class by name, with its field names and its required field names."""
    from archc.compiler import ir

    classes = {}
    for cls in vars(ir).values():
        if isinstance(cls, type) and issubclass(cls, ir.Node) and cls is not ir.Node:
            fields = cls.model_fields
            classes[cls.__name__] = (
                cls, frozenset(fields), frozenset(n for n, f in fields.items() if f.is_required()))
    return classes


def decode_ir(payload: bytes) -> Any:
    """The `ir.SpecFile` that `encode_ir` wrote; raises on anything else."""
    from archc.compiler import ir

    classes = _ir_classes()
    span_at = ir.Span.at
    own = ""

    def node(data: dict) -> Any:
        if "@s" in data:
            where = data["@s"]
            if len(where) == 4:
                return span_at(own, *where)
            line, column, end_line, end_column, file = where
            return span_at(file, line, column, end_line, end_column)
        cls, names, required = classes[data.pop("@")]
        if not data.keys() <= names or not required <= data.keys():
            raise ValueError(f"{cls.__name__} does not have these fields")
        return cls.model_construct(**data)

    first, _, tree = payload.partition(b"\n")
    own = json.loads(first)
    if not isinstance(own, str):
        raise ValueError("not a parsed spec")
    spec = json.loads(tree, object_hook=node)
    if type(spec) is not ir.SpecFile or spec.path != own:
        raise ValueError("not a parsed spec")
    return spec


# --------------------------------------------------------------------------- plain data
# lark's serialised tables are dicts, lists and tuples of strings and numbers, with int keys
# in places: JSON keeps them exactly with a tuple written as {"#t": [...]} and a dict that
# has a key other than a string as {"#d": [[key, value], ...]}.


def encode_data(value: Any) -> bytes:
    """`value` (dicts, lists, tuples, str, int, float, bool, None) as JSON bytes that
    `decode_data` turns back into an equal value; TypeError for anything else."""

    def encode(item: Any) -> Any:
        if isinstance(item, tuple):
            return {"#t": [encode(v) for v in item]}
        if isinstance(item, list):
            return [encode(v) for v in item]
        if isinstance(item, dict):
            if all(type(k) is str for k in item) and not item.keys() & {"#t", "#d"}:
                return {k: encode(v) for k, v in item.items()}
            return {"#d": [[encode(k), encode(v)] for k, v in item.items()]}
        if item is None or type(item) in (str, int, float, bool):
            return item
        raise TypeError(f"no JSON form for {type(item).__name__}")

    return json.dumps(encode(value), separators=(",", ":")).encode()


def decode_data(payload: bytes) -> Any:
    """The value `encode_data` wrote."""

    def hook(item: dict) -> Any:
        if "#t" in item:
            return tuple(item["#t"])
        if "#d" in item:
            return {_hashable(k): v for k, v in item["#d"]}
        return item

    return json.loads(payload, object_hook=hook)


def _hashable(key: Any) -> Any:
    """A dict key read back: a list cannot be one (a tuple key is already a tuple)."""
    if isinstance(key, list):
        raise ValueError("a list as a key")
    return key
