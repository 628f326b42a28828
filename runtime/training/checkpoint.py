"""Crash-safe checkpoints: safetensors weights, a weights_only-loadable state file, a manifest.

A checkpoint called NAME in DIR is three files:

    NAME.safetensors   model weights (loadable by anything that reads safetensors)
    NAME.state.pt      optimizer, scheduler, RNG states, counters, config (torch.save)
    NAME.json          manifest: epoch, metrics, size and sha256 of the two files above

Every file is written atomically (temp file in the same directory, fsync, os.replace) and the
manifest is written last, so a checkpoint counts only once it is complete. Because the names are
fixed, overwriting NAME briefly leaves its three files out of step; to survive a crash in that
window the previous complete set is first hard-linked to `NAME.prev.*` and removed only after the
new manifest is in place. `latest()` falls back to `NAME.prev` when NAME does not verify.

Loading never unpickles arbitrary objects: the state file is read with `weights_only=True`, and
saving refuses (up front) anything that would not load that way.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from archc import fsync_path

FORMAT_VERSION = 1
_CHUNK = 1 << 20  # write in 1 MiB chunks so huge buffers never need one giant syscall
_PARTS = ("safetensors", "state.pt")  # the data files, in write order; the manifest follows


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete, corrupt, or holds objects that are not allowed."""


# --------------------------------------------------------------------------- atomic writes


def _write_chunks(fh, data: bytes) -> None:
    """Write `data` to an open binary file in chunks (tests patch this to simulate a crash)."""
    view = memoryview(data)
    for start in range(0, len(view), _CHUNK):
        fh.write(view[start:start + _CHUNK])


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, data: bytes | str) -> None:
    """Replace `path` with `data` so that readers see either the old or the new file, never a mix.

    The data goes to a temp file in the same directory (same filesystem, so os.replace is atomic),
    is flushed and fsynced, and only then renamed over `path`. On failure the temp file is removed.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; the finished file gets the mode open() would have given it
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            _write_chunks(fh, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        # BaseException too: a KeyboardInterrupt mid-write must not leave temp files behind.
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_path(path.parent)


# --------------------------------------------------------------------------- file layout


def _files(directory: Path, name: str) -> dict[str, Path]:
    """The paths of checkpoint `name`: each data part plus the manifest."""
    paths = {part: directory / f"{name}.{part}" for part in _PARTS}
    paths["json"] = directory / f"{name}.json"
    return paths


def _sha256(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temp files a killed writer left behind for checkpoint `name`."""
    for part in (*_PARTS, "json"):
        for tmp in directory.glob(f".{name}.{part}.*.tmp"):
            try:
                tmp.unlink()
            except OSError:
                pass


def _remove(paths) -> None:
    """Unlink the given paths, ignoring ones that do not exist."""
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def _backup_previous(directory: Path, name: str) -> None:
    """Hard-link the current `name` set to `name.prev.*` before it is overwritten.

    Only a set that verifies is backed up: if a crash left `name` inconsistent, `name.prev` is
    the only good copy and must survive. The manifest is linked last, so the backup itself only
    counts once it is complete. Falls back to copying where the filesystem has no hard links.
    """
    try:
        verify_checkpoint(directory, name)
    except CheckpointError:
        return
    current, backup = _files(directory, name), _files(directory, f"{name}.prev")
    _remove([backup["json"], *(backup[p] for p in _PARTS)])  # manifest first: invalidates it
    for key in (*_PARTS, "json"):
        try:
            os.link(current[key], backup[key])
        except OSError:
            atomic_write(backup[key], current[key].read_bytes())
    fsync_path(directory)


# --------------------------------------------------------------------------- serialisation


def _to_safe(obj: Any) -> Any:
    """Convert numpy values (from loader or RNG state) into types `weights_only` loads."""
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _to_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_safe(v) for v in obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _weights_bytes(model_state: dict[str, torch.Tensor]) -> bytes:
    """Serialise weights to safetensors; tensors are copied so shared storage is allowed."""
    tensors = {}
    for key, value in model_state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"model_state['{key}'] is a {type(value).__name__}, not a tensor")
        value = value.detach()
        # GPU tensors are copied by .cpu() anyway; CPU ones are cloned so that tied weights
        # (shared storage, which safetensors refuses) save as independent tensors.
        if value.device.type != "cpu":
            tensors[key] = value.cpu().contiguous()
        else:
            tensors[key] = value.clone(memory_format=torch.contiguous_format)
    return st_save(tensors, metadata={"format": "pt"})


def _state_bytes(extra: dict[str, Any]) -> bytes:
    """torch.save `extra`, then prove it loads with weights_only=True before anything is written.

    Failing here, at save time, is much better than discovering at resume time that the
    checkpoint can only be loaded by unpickling arbitrary code.
    """
    buffer = io.BytesIO()
    torch.save(_to_safe(extra), buffer)
    data = buffer.getvalue()
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            "checkpoint state holds objects that cannot be loaded with weights_only=True "
            f"(use tensors, numbers, strings, lists and dicts only): {exc}"
        ) from exc
    return data


def _json_safe(value: Any) -> Any:
    """Best-effort conversion of metrics to JSON (tensors and numpy scalars become numbers)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    dir: Path | str, name: str, model_state: dict[str, torch.Tensor], extra: dict[str, Any]
) -> Path:
    """Write checkpoint `name` in `dir` crash-safely and return the manifest path.

    `model_state` goes to `{name}.safetensors`; `extra` (optimizer, scheduler, RNG, counters,
    config ...) to `{name}.state.pt`; `extra["epoch"]` and `extra["metrics"]` (if present) are
    copied into the `{name}.json` manifest together with each file's size and sha256.
    """
    directory = Path(dir)
    directory.mkdir(parents=True, exist_ok=True)
    # Serialise everything before touching the disk so a bad object cannot leave half a set.
    payload = {"safetensors": _weights_bytes(model_state), "state.pt": _state_bytes(extra)}
    paths = _files(directory, name)
    _remove_stale_temps(directory, name)
    _backup_previous(directory, name)
    for part in _PARTS:
        atomic_write(paths[part], payload[part])
    manifest = {
        "format": FORMAT_VERSION,
        "name": name,
        "epoch": extra.get("epoch"),
        "step": extra.get("step"),
        "metrics": _json_safe(extra.get("metrics", {})),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {
            part: {"file": paths[part].name, "bytes": len(data), "sha256": _sha256(data)}
            for part, data in payload.items()
        },
    }
    atomic_write(paths["json"], json.dumps(manifest, indent=2) + "\n")  # the commit point
    # The new set is complete, so the safety copy is no longer needed (manifest first).
    backup = _files(directory, f"{name}.prev")
    _remove([backup["json"], *(backup[p] for p in _PARTS)])
    return paths["json"]


def read_manifest(dir: Path | str, name: str) -> dict[str, Any]:
    """The parsed manifest of checkpoint `name`; CheckpointError when missing or unreadable."""
    path = _files(Path(dir), name)["json"]
    if not path.exists():
        raise CheckpointError(f"no checkpoint '{name}' in {dir} ({path.name} is missing)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["files"]["safetensors"]["sha256"], manifest["files"]["state.pt"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint manifest {path} is corrupt: {exc}") from exc
    return manifest


def _verified_bytes(directory: Path, name: str, manifest: dict[str, Any]) -> dict[str, bytes]:
    """Read each data file and check its size and sha256 against the manifest."""
    paths, out = _files(directory, name), {}
    for part in _PARTS:
        expected = manifest["files"][part]
        if not paths[part].exists():
            raise CheckpointError(f"checkpoint '{name}' is incomplete: {paths[part]} is missing")
        data = paths[part].read_bytes()
        digest = _sha256(data)
        if digest != expected["sha256"]:
            raise CheckpointError(
                f"checkpoint file {paths[part]} is corrupt or from a different save: "
                f"sha256 {digest[:12]}... does not match the manifest's "
                f"{expected['sha256'][:12]}... "
                f"({len(data)} bytes on disk, {expected.get('bytes')} expected)"
            )
        out[part] = data
    return out


def verify_checkpoint(dir: Path | str, name: str) -> dict[str, Any]:
    """Check that checkpoint `name` is complete and uncorrupted; return its manifest."""
    manifest = read_manifest(dir, name)
    _verified_bytes(Path(dir), name, manifest)
    return manifest


def load_checkpoint(
    dir: Path | str, name: str, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load and verify checkpoint `name`: returns (model_state, extra).

    Raises CheckpointError when a file is missing, fails its hash, or the state file holds
    anything other than tensors and plain containers (it is loaded with weights_only=True).
    """
    directory = Path(dir)
    manifest = read_manifest(directory, name)
    data = _verified_bytes(directory, name, manifest)
    try:
        weights = st_load(data["safetensors"])
    except Exception as exc:
        raise CheckpointError(f"cannot read weights of checkpoint '{name}': {exc}") from exc
    if str(map_location) != "cpu":
        weights = {k: v.to(map_location) for k, v in weights.items()}
    try:
        extra = torch.load(
            io.BytesIO(data["state.pt"]), map_location=map_location, weights_only=True
        )
    except Exception as exc:
        raise CheckpointError(
            f"refusing to load {name}.state.pt: it cannot be loaded with weights_only=True, "
            f"so it may contain arbitrary pickled objects ({exc})"
        ) from exc
    return weights, extra


def remove_checkpoint(dir: Path | str, name: str) -> None:
    """Delete checkpoint `name` and its `.prev` backup (manifests first, so nothing half-counts)."""
    directory = Path(dir)
    for which in (name, f"{name}.prev"):
        paths = _files(directory, which)
        _remove([paths["json"], *(paths[p] for p in _PARTS)])


def latest(dir: Path | str, kind: str = "last") -> str | None:
    """Name of the newest complete, verified checkpoint of `kind` ("last" or "best"), or None.

    Prefers `kind` itself and falls back to `{kind}.prev`, the copy kept while `kind` is being
    overwritten, when a crash left `kind` incomplete.
    """
    for name in (kind, f"{kind}.prev"):
        try:
            verify_checkpoint(dir, name)
        except CheckpointError:
            continue
        return name
    return None


# --------------------------------------------------------------------------- RNG state


def capture_rng() -> dict[str, Any]:
    """Snapshot the python, numpy (global) and torch CPU/CUDA generators (weights_only-safe)."""
    version, internal, gauss = random.getstate()
    legacy = np.random.get_state()
    assert isinstance(legacy, tuple)  # get_state() gives the legacy tuple unless asked not to
    kind, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),  # uint32 widened: lossless
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Restore generator states captured by `capture_rng` (CUDA only when present on both sides)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else npy["keys"])
    np.random.set_state(
        (npy["kind"], keys.astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
