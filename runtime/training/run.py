"""The run folder: everything needed to understand, reproduce and resume one training run.

    spec.arch      the resolved spec text the model was built from
    hparams.json   {"train": TrainConfig, "params": spec parameters}
    split.json     train/val indices and their hash
    record.json    provenance: hashes, seeds, library versions, device, host, time, command,
                   and the data (path, resolved path, image count, classes, labels' sha256)
    skipped.txt    images that could not be used, one "path<TAB>reason" per line
    .lock          flock'ed by the one `archc train` working in the folder (holds its pid)

The training loop adds checkpoints, metrics.jsonl/csv and curves.png next to these.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import platform
import shlex
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoint import atomic_write
from .config import TrainConfig

SPEC, HPARAMS, SPLIT, RECORD, SKIPPED = (
    "spec.arch", "hparams.json", "split.json", "record.json", "skipped.txt",
)


LOCK = ".lock"


class ResumeError(Exception):
    """The run folder cannot be resumed as asked (missing, or the spec/params changed)."""


class RunBusyError(Exception):
    """Another process is training in this run folder."""


def lock_run(run_dir: Path | str) -> Callable[[], None]:
    """Take an exclusive lock on an existing run folder; returns the function that releases it.

    Two trainers in one folder would both append epochs to metrics.csv and overwrite each
    other's checkpoints, so the second is refused with RunBusyError naming the first's pid.
    The lock is an flock on RUN/.lock: the kernel drops it when the holder dies, even by
    kill -9, so a crashed run never stays locked.
    """
    import fcntl

    path = Path(run_dir) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunBusyError(
            f"{run_dir} is in use by another `archc train` (pid {holder}); wait for it to "
            "finish, or train into another --run folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())

    def release() -> None:
        os.ftruncate(fd, 0)  # a folder nobody trains in names no pid
        os.close(fd)  # closing the descriptor releases the lock

    return release


def _json(value: Any) -> str:
    """Stable, readable JSON (sorted keys so diffs and hashes do not depend on dict order)."""
    return json.dumps(value, indent=2, sort_keys=True, default=_json_default) + "\n"


def _json_default(value: Any) -> Any:
    """Serialise numpy values, paths and tuples-like objects that json does not know."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _normalise_params(params: dict[str, Any]) -> Any:
    """Params as they look after a JSON round trip (tuples -> lists), for fair comparison."""
    return json.loads(json.dumps(params, sort_keys=True, default=_json_default))


def _versions() -> dict[str, str]:
    """Versions of python and the numerical libraries that decide the results."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    out = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__}
    try:  # metadata, not an import: importing torchvision costs seconds at every start
        out["torchvision"] = version("torchvision")
    except PackageNotFoundError:
        out["torchvision"] = "not installed"
    try:
        import archc

        out["archc"] = getattr(archc, "__version__", "unknown")
    except ImportError:
        pass
    return out


def _device_name(device: str) -> str:
    """A human-readable name of the device training will most likely use."""
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if device in ("auto", "mps") and mps is not None and mps.is_available():
        return "Apple MPS"
    return f"cpu ({platform.processor() or platform.machine()})"


def create_run(
    run_dir: Path | str,
    spec_text: str,
    spec_path: str,
    params: dict[str, Any],
    config: TrainConfig,
    split: tuple[Sequence[int], Sequence[int]],
    data_path: Path | str,
    classes: Sequence[str],
    skipped: Sequence[tuple[str, str]] = (),
    overwrite: bool = False,
    network: str | None = None,
    data: dict[str, Any] | None = None,
) -> Path:
    """Create the run folder and write spec, hyper-parameters, split, provenance and skip list.

    Refuses to reuse a folder that already holds a run (record.json) unless `overwrite`;
    continuing a run is `check_resume` + `fit(resume=True)` instead. Returns the folder.
    """
    from ..data.folders import split_hash

    run_dir = Path(run_dir)
    if (run_dir / RECORD).exists() and not overwrite:
        raise FileExistsError(f"{run_dir} already holds a run; resume it or choose another folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_idx, val_idx = (np.asarray(part, dtype=np.int64) for part in split)
    digest = split_hash(train_idx, val_idx)
    atomic_write(run_dir / SPEC, spec_text)
    hparams = {"train": config.model_dump(mode="json"), "params": params}
    atomic_write(run_dir / HPARAMS, _json(hparams))
    atomic_write(run_dir / SPLIT, _json({
        "hash": digest, "val_fraction": config.val_fraction,
        "train": train_idx.tolist(), "val": val_idx.tolist(),
    }))
    atomic_write(run_dir / SKIPPED, "".join(f"{path}\t{reason}\n" for path, reason in skipped))
    atomic_write(run_dir / RECORD, _json({
        "spec_path": str(spec_path),
        "network": network,  # spec.arch may hold several networks: this is the one trained
        "spec_sha256": hashlib.sha256(spec_text.encode("utf-8")).hexdigest(),
        "split_hash": digest,
        "seeds": {"seed": config.seed},
        "versions": _versions(),
        "device": _device_name(config.device),
        "hostname": socket.gethostname(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join(sys.argv),
        "data_path": str(data_path),
        "data": {"resolved_path": str(Path(data_path).resolve()), **(data or {})},
        "classes": list(classes),
        "counts": {"train": len(train_idx), "val": len(val_idx), "skipped": len(skipped)},
    }))
    return run_dir


def recorded_data(record: dict[str, Any]) -> Path | None:
    """The data a run trained on, from its record.json: the path resolved when the run began
    (so a relative --data still holds from another working folder), else the path as given
    (records written before the resolved path was kept). None when the record names none."""
    resolved = (record.get("data") or {}).get("resolved_path")
    given = record.get("data_path")
    return Path(resolved or given) if resolved or given else None


def _read_json(path: Path) -> Any:
    """Parse a run-folder JSON file, as a ResumeError when missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResumeError(f"{path.parent} is not a run folder ({path.name} is missing)") from None
    except ValueError as exc:
        raise ResumeError(f"{path} is corrupt: {exc}") from exc


def _diff(old: str, new: str, what: str) -> str:
    """A unified diff of `what`, run folder version first."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True),
        fromfile=f"{what} (run)", tofile=f"{what} (now)",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def check_resume(run_dir: Path | str, spec_text: str, params: dict[str, Any]) -> None:
    """Raise ResumeError, showing a unified diff, if the spec text or params have changed."""
    run_dir = Path(run_dir)
    spec_path = run_dir / SPEC
    if not spec_path.exists():
        raise ResumeError(f"{run_dir} is not a run folder ({SPEC} is missing)")
    problems = []
    old_spec = spec_path.read_text(encoding="utf-8")
    if old_spec != spec_text:
        problems.append(_diff(old_spec, spec_text, SPEC))
    old_params = _read_json(run_dir / HPARAMS).get("params", {})
    new_params = _normalise_params(params)
    if old_params != new_params:
        problems.append(_diff(_json(old_params), _json(new_params), "params"))
    if problems:
        raise ResumeError(
            f"cannot resume {run_dir}: the model changed since the run began "
            "(start a new run, or restore the original):\n" + "".join(problems)
        )


def load_hparams(run_dir: Path | str) -> tuple[TrainConfig, dict[str, Any]]:
    """The (TrainConfig, params) a run was started with, from hparams.json (validated: an
    edited or damaged file is a ResumeError in one line)."""
    from runtime.training.records import RecordError, read_hparams

    try:
        return read_hparams(run_dir)
    except RecordError as exc:
        raise ResumeError(str(exc)) from None


def load_split(run_dir: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """The run's (train_idx, val_idx); ResumeError if split.json fails its own hash."""
    from ..data.folders import split_hash

    data = _read_json(Path(run_dir) / SPLIT)
    train_idx = np.asarray(data["train"], dtype=np.int64)
    val_idx = np.asarray(data["val"], dtype=np.int64)
    if split_hash(train_idx, val_idx) != data["hash"]:
        raise ResumeError(f"{Path(run_dir) / SPLIT} does not match its recorded hash")
    return train_idx, val_idx
