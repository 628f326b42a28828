"""Writing the files a command produces: atomically, and never over a file it should not
replace.

A command's output appears whole or not at all: every verb that writes a file the user
names does it through `staged_outputs` (or `write_output`, its one-file form), which writes
into a hidden folder beside the destination, fsyncs, and renames over it (`os.replace`,
atomic on one filesystem) only when the command succeeded, so an interrupted or failed
command leaves the user's existing file as it was.

An output never replaces a run folder's own files or a file archc did not write, unless
the user passes --force (`check_output`). archc recognises its own files by an extended
attribute it sets when it writes them (`mark`); a file without it (the user's, or one
copied elsewhere) is the user's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """A new, empty temporary file in `path`'s folder (same filesystem: the rename is
    atomic), named after it so a leftover one is recognisable."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def commit(temporary: Path, path: Path) -> None:
    """Move a finished temporary file into place, with the mode a plain `open` would give,
    flushed to disk and marked as archc's (see `mark`)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    fsync_path(temporary)
    mark(temporary)
    os.replace(temporary, path)


def discard(*temporaries: Path) -> None:
    """Remove temporary files of a failed command (those already gone are fine)."""
    for temporary in temporaries:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass


def rewrite_in_place(path: Path, data: str | bytes) -> None:
    """Replace the user's own file `path` (a link is followed) with `data` atomically,
    keeping its mode and leaving it unmarked: still the user's (`archc fmt`)."""
    path = Path(path).resolve()
    temporary = temporary_beside(path)
    try:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        shutil.copymode(path, temporary)
        fsync_path(temporary)
        os.replace(temporary, path)
    except BaseException:
        discard(temporary)
        raise
    fsync_path(path.parent)


class Staged:
    """The temporary twins of a command's outputs (`staged_outputs`): a writer writes
    `temporary(path)`; only the files it wrote are moved into place, and only when it
    finished without an error."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.folders: dict[Path, Path] = {}  # destination folder -> its staging folder
        self.written: list[Path] = []  # filled once committed

    def temporary(self, path: Path | str) -> Path:
        """Where to write the output `path` (one of the staged paths): a file of the same
        name in a hidden folder beside it, so writers that derive other names from it (the
        weights beside a module, an ONNX model's external data) keep the names consistent."""
        path = Path(path)
        if path not in self.paths:
            raise ValueError(f"bug: `{path}` is not one of the staged outputs")
        return self.folders[path.parent] / path.name


@contextlib.contextmanager
def staged_outputs(paths, *, force: bool = False) -> Iterator[Staged]:
    """Write a command's outputs atomically and only over what they may replace.

    Checks every path first (`check_outputs`: `OutputRefused` before anything is written),
    makes the folders, and yields a `Staged` whose `temporary(path)` the writer fills. When
    the block ends without an error each written file is flushed, marked as archc's and
    renamed over its destination (the later paths first, so the first, the one that names
    the others, appears last); on an error nothing is moved and the old files stay as they
    were, byte for byte."""
    staged = Staged([Path(p) for p in paths])
    check_outputs(staged.paths, force=force)
    try:
        for folder in dict.fromkeys(p.parent for p in staged.paths):
            folder.mkdir(parents=True, exist_ok=True)
            staged.folders[folder] = Path(tempfile.mkdtemp(
                dir=folder, prefix=f".{staged.paths[0].name}.", suffix=".tmp"))
        yield staged
        for path in reversed(staged.paths):
            temporary = staged.temporary(path)
            if temporary.is_file() and not temporary.is_symlink():
                commit(temporary, path)
                staged.written.insert(0, path)
        for folder in staged.folders:
            fsync_path(folder)
    finally:
        for staging in staged.folders.values():
            shutil.rmtree(staging, ignore_errors=True)


def write_output(path: Path | str, data: str | bytes | Callable[[Path], object], *,
                 force: bool = False) -> Path:
    """Write one output the user named: `data` (text is UTF-8), or what `data(temporary)`
    writes to the path it is given. Refused (`OutputRefused`) where `check_output` refuses;
    atomic, so a failed write (an error, a full disk, a writer that raises) leaves an
    existing file as it was. Returns `path`."""
    path = Path(path)
    with staged_outputs([path], force=force) as staged:
        temporary = staged.temporary(path)
        if callable(data):
            data(temporary)
        else:
            temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk: POSIX persists a rename only
    once its folder is synced. A filesystem (or a system) that cannot is no reason to fail."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- what not to replace

#: the extended attribute archc sets on every file it writes: a file without it is the
#: user's own, and is replaced only with --force
MARK = "user.archc.output"
#: a folder holding one of these is a training run's folder
RUN_MARKERS = ("record.json", "hparams.json")
#: a run's own files (runtime/run.py and the training loop write them)
RUN_FILES = {"spec.arch", "hparams.json", "split.json", "record.json", "skipped.txt", ".lock",
             "metrics.jsonl", "metrics.csv", "curves.png", "engines.json", "confusion.png"}
RUN_PREFIXES = ("best", "last")


class OutputRefused(Exception):
    """An output path archc will not write to without --force; `str()` is one line naming
    the file and the option."""


def check_output(path: Path | str, *, force: bool = False) -> None:
    """Raise `OutputRefused` when writing `path` would replace a file archc should not:
    a run folder's own file (checkpoints, spec.arch, record.json, metrics, ...), or any
    existing file (a symlink included) that archc did not write. `force` allows both; a
    folder is refused always."""
    path = Path(path)
    if path.is_dir():
        raise OutputRefused(f"`{path}` is a directory; give a file name for the output")
    if force:
        return
    run = run_folder_of(path)
    if run is not None and (os.path.lexists(path) or _is_run_file(path.name)):
        raise OutputRefused(f"`{path}` is a file of the run folder `{run}`; write the output "
                            "elsewhere, or pass --force to replace it")
    if os.path.lexists(path) and not written_by_archc(path):
        raise OutputRefused(f"`{path}` exists and archc did not write it; pass --force to "
                            "replace it")


def check_outputs(paths, *, force: bool = False) -> None:
    """`check_output` for every file a command may write, before it writes any."""
    for path in paths:
        check_output(path, force=force)


def run_folder_of(path: Path) -> Path | None:
    """The run folder `path` would be written into, or None when its folder is no run's."""
    folder = path.parent
    return folder if any((folder / marker).is_file() for marker in RUN_MARKERS) else None


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES or name.startswith(RUN_PREFIXES)


def foreign_entries(folder: Path) -> list[str]:
    """The names in `folder` that no training run writes: anything but a run's own regular
    files (its fixed names, best*/last* checkpoints, dot-files such as .lock and temporaries);
    a symlink or a sub-folder is foreign whatever its name."""
    foreign = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        ours = _is_run_file(entry.name) or entry.name.startswith(".")
        if not ours or not entry.is_file(follow_symlinks=False):
            foreign.append(entry.name)
    return foreign


def written_by_archc(path: Path) -> bool:
    """True when `path` (not a symlink) carries the mark archc sets on what it writes."""
    try:
        return os.getxattr(path, MARK, follow_symlinks=False) == b"1"
    except OSError:  # no mark, a symlink, or a filesystem without extended attributes
        return False


def mark(path: Path | str) -> None:
    """Mark `path` as written by archc, so archc may replace it next time without --force.
    Where the filesystem keeps no extended attributes the file stays unmarked: replacing
    it then needs --force, the safe side."""
    try:
        os.setxattr(path, MARK, b"1", follow_symlinks=False)
    except OSError:
        pass
