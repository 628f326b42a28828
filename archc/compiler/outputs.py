"""Writing the files a command produces: atomically, and never over a file it should not
replace.

A command's output appears whole or not at all: it is written to a temporary file beside
its destination and renamed over it (`os.replace`, atomic on one filesystem), so an
interrupted or failed command leaves the user's existing file as it was.

An output never replaces a run folder's own files or a file archc did not write, unless
the user passes --force (`check_output`). archc recognises its own files by an extended
attribute it sets when it writes them (`mark`); a file without it (the user's, or one
copied elsewhere) is the user's.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temporary_beside(path: Path) -> Path:
    """A new, empty temporary file in `path`'s folder (same filesystem: the rename is
    atomic), named after it so a leftover one is recognisable."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def commit(temporary: Path, path: Path) -> None:
    """Move a finished temporary file into place, with the mode a plain `open` would give,
    marked as archc's (see `mark`)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(temporary, 0o666 & ~mask)
    mark(temporary)
    os.replace(temporary, path)


def discard(*temporaries: Path) -> None:
    """Remove temporary files of a failed command (those already gone are fine)."""
    for temporary in temporaries:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass


def write_atomically(path: Path, data: str | bytes) -> None:
    """Replace `path` with `data`: readers see the old file or the new one, never a part."""
    temporary = temporary_beside(path)
    try:
        temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        commit(temporary, path)
    except BaseException:
        discard(temporary)
        raise


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
