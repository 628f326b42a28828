"""`archc train`: spec + image folder → a run folder with a trained model.

The steps read as a sentence: check the spec, load the images, split them, write the
run folder, fit, report. Everything a run needs to be rebuilt is in its folder.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import archc
from archc import Network, layers

from ..data.folders import ImageSet, load_images, stratified_split
from ..data.loader import BatchLoader
from .config import TrainConfig, merge_config
from .distributed import (
    World,
    barrier,
    broadcast_text,
    ddp_wrapper,
    from_env,
    init,
    shutdown,
)
from .loop import FitResult, fit, select_device
from .run import (
    check_resume,
    create_run,
    load_hparams,
    load_split,
    recorded_data,
)


class TrainError(Exception):
    """A problem the user can fix (bad spec, data, run folder); the message says how."""


class SpecCheckError(TrainError):
    """Spec diagnostics, already rendered (`error[E203]: ...` with location and caret)."""


@dataclass
class TrainRequest:
    """What the user asked for on the command line (or from Python)."""

    spec: Path
    data: Path | None = None
    params: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    network: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # train-section overrides
    run: Path | None = None
    resume: Path | None = None
    init: str | None = None
    sync_bn: bool = False
    console: Any = None


def cache_dir() -> Path:
    """Where decoded image caches live: images/ under archc's cache root ($ARCHC_CACHE,
    else $XDG_CACHE_HOME/archc, else ~/.cache/archc)."""
    return archc.cache_root() / "images"


def check_spec(req: TrainRequest, params: dict[str, Any], image_size: int | None):
    """The check result of a valid spec, or TrainError carrying the rendered diagnostics."""
    shape = (3, image_size, image_size) if image_size else None
    result = archc.check(
        req.spec, params, network=req.network, variant=req.variant, input_shape=shape
    )
    if not result.ok:
        errors = [d for d in result.diagnostics if d.is_error]
        raise SpecCheckError(archc.render(errors, result.program.sources))
    return result


def check_outputs(net: Network, classes: list[str], sources: dict[str, str]) -> None:
    """SpecCheckError, located at the network's last layer, unless it ends in one score per
    class: checked before the first step, so a mismatch never trains to 0% or crashes mid-run."""
    out = tuple(net.output_shape) if net.output_shape is not None else None
    if out is None or out == (len(classes),):
        return
    from archc import Diagnostic

    k = len(classes)
    names = ", ".join(classes[:5]) + (", ..." if k > 5 else "")
    if len(out) == 1:
        scores = f"{out[0]} score" + ("s" if out[0] != 1 else "")
        message = f"the network outputs {scores}, but the data has {k} classes ({names})"
        hint = f"end the network with FC-{k}, or FC-{{num_classes}} with a num_classes parameter"
    else:
        shape = "x".join(map(str, out))
        message = (f"the network ends in a {shape} tensor, not one score per class "
                   f"(the data has {k} classes: {names})")
        hint = f"end it with a classifier, such as `global-avgpool flatten FC-{k}`"
    last = [layer for layer in layers(net.root) if layer.out_shape == net.output_shape]
    span = last[-1].span if last else net.root.span
    raise SpecCheckError(archc.render([Diagnostic("E203", "error", span, message, hint)], sources))


def spec_params(req: TrainRequest, classes: list[str], saved: dict[str, Any] | None) -> dict:
    """Spec parameters: saved ones on resume, else --set, with num_classes from the data."""
    if saved is not None:
        return dict(saved)
    probe = check_spec(req, req.params, None).network
    params = dict(req.params)
    if req.variant is not None:  # check() treats --variant as this parameter; record it
        params["variant"] = req.variant
    if "num_classes" in probe.params and "num_classes" not in params:
        params["num_classes"] = len(classes)
    return params


def train(req: TrainRequest) -> FitResult:
    """Run (or resume) one training job; see the module docstring."""
    world = from_env()
    resume_dir = Path(req.resume) if req.resume else None
    saved_config, saved_params = _saved(resume_dir)
    record = _read_record(resume_dir) if resume_dir else {}
    spec_train = {} if saved_config else _spec_train(req)
    data_path = data_source(req, record, spec_train.pop("data", None))
    if resume_dir is not None:
        _same_data_path(resume_dir, record, data_path)
    base = dict(saved_config.model_dump()) if saved_config else spec_train
    config = _config(base, req.settings)
    try:
        device = select_device(config.device)
    except RuntimeError as exc:  # e.g. --device cuda on a machine without one
        raise TrainError(str(exc)) from exc
    init(world, device)
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, however train ends
            if resume_dir is not None:
                _lock(resume_dir, world, held)
            result = _train_locked(req, world, resume_dir, record, saved_params, data_path,
                                   config, device, held)
        # Every rank finishes before any leaves the group: a gloo peer torn down while rank 0
        # still writes its summary aborted rank 0 ("terminate called without an active
        # exception"). Only on success: after an error the other ranks may never arrive.
        barrier()
        return result
    finally:
        shutdown()


def _train_locked(req, world, resume_dir, record, saved_params, data_path, config, device,
                  held: contextlib.ExitStack) -> FitResult:
    """The steps of `train` that run while the run folder is locked."""
    images = _load(data_path, config, world)
    params = spec_params(req, images.classes, saved_params)
    checked = check_spec(req, params, config.image_size)
    net, spec_text = checked.network, archc.bundle(checked.program)
    check_outputs(net, images.classes, checked.program.sources)
    size = config.image_size or net.input_shape[1]
    if resume_dir is not None:
        _same_images(resume_dir, record, data_path, images)
    split = (
        load_split(resume_dir)
        if resume_dir
        else stratified_split(images.labels, config.val_fraction, config.seed)
    )
    run_dir = _run_dir(
        req, net, world, resume_dir, spec_text, params, config, split, data_path, images, held
    )
    train_loader, val_loader = _loaders(images, split, config, size, device, world)
    factory = _factory(net, req.init)
    return fit(
        factory,
        train_loader,
        val_loader,
        config,
        run_dir,
        resume=resume_dir is not None,
        console=req.console,
        wrap=ddp_wrapper(world, device, req.sync_bn),
    )


def data_identity(images: ImageSet) -> dict[str, Any]:
    """What a run records about its images, so a resume can tell they are still the same."""
    import hashlib

    import numpy as np

    labels = np.ascontiguousarray(np.asarray(images.labels, dtype="<i8"))
    return {"images": len(images), "classes": list(images.classes),
            "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest()}


#: the one line printed when nothing names the images (never the current folder by default)
NO_DATA = ("no images to train on: give --data PATH (an image folder, Kaggle's train/ or "
           "train.zip), or name them in the spec's train: section as data = \"PATH\"")


def data_source(req: TrainRequest, record: dict[str, Any], spec_data: Any = None) -> Path:
    """The images to train on: --data, else the resumed run's recorded data, else the spec's
    `train: data = "PATH"` (relative to the spec's folder). TrainError when none names them,
    or the path is not there: an unnamed dataset is never the current folder."""
    if req.data is not None:
        path = Path(req.data)
    elif record:
        path = recorded_data(record)
    elif spec_data is not None:
        if not isinstance(spec_data, str) or not spec_data:
            raise TrainError(f"the spec's train: data must be a path in quotes, got {spec_data!r}")
        path = Path(req.spec).parent / Path(spec_data).expanduser()
    else:
        path = None
    if path is None:
        raise TrainError(NO_DATA)
    if not path.exists():
        raise TrainError(f"dataset `{path}` not found")
    return path


def _same_data_path(run_dir: Path, record: dict[str, Any], data_path: Path) -> None:
    """TrainError when --data names another dataset than the one the run trained on: its
    split indices would pick other images, or run past the end of a smaller set."""
    trained_on = record.get("data_path")
    # the resolved path, when recorded, still holds when resuming from another folder
    resolved = (record.get("data") or {}).get("resolved_path") or trained_on
    if trained_on and Path(resolved).resolve() != data_path.resolve():
        raise TrainError(
            f"cannot resume {run_dir}: it trained on `{trained_on}`, not `{data_path}` "
            "(the run's split indices only fit its own images); leave out --data, "
            "or start a new run on the new data"
        )


def _same_images(run_dir: Path, record: dict[str, Any], data_path: Path,
                 images: ImageSet) -> None:
    """TrainError when the dataset at the run's path changed (images added, removed, relabelled)."""
    recorded = record.get("data") or {}
    counts = record.get("counts") or {}
    expected = recorded.get("images", counts.get("train", 0) + counts.get("val", 0))
    now = data_identity(images)
    changed = now["images"] != expected or (
        "labels_sha256" in recorded and recorded["labels_sha256"] != now["labels_sha256"]
    )
    if changed:
        raise TrainError(
            f"cannot resume {run_dir}: the images at `{data_path}` changed since the run began "
            f"({expected} then, {now['images']} now); restore them, or start a new run"
        )


def _saved(resume_dir: Path | None):
    """The run's hyper-parameters and spec parameters when resuming, else (None, None)."""
    if resume_dir is None:
        return None, None
    from .run import ResumeError

    try:
        return load_hparams(resume_dir)
    except ResumeError as exc:
        raise TrainError(str(exc)) from exc


def _spec_train(req: TrainRequest) -> dict[str, Any]:
    result = archc.check(req.spec, req.params, network=req.network, variant=req.variant)
    return dict(result.network.train) if result.network else {}


def _config(base: dict[str, Any], settings: dict[str, Any]) -> TrainConfig:
    from .config import ConfigError

    try:
        return merge_config(base, settings)
    except ConfigError as exc:
        raise TrainError(str(exc)) from exc


def _load(data_path: Path, config: TrainConfig, world: World) -> ImageSet:
    """Decode once into the cache (rank 0 first, so the others only read it)."""
    size = max(config.cache_size, config.image_size or 0)
    if not world.is_main:
        barrier()
    images = load_images(
        data_path, size=size, cache_dir=cache_dir(), workers=config.workers, progress=world.is_main
    )
    if world.is_main:
        barrier()
        if images.skipped:
            print(
                f"skipped {len(images.skipped)} unreadable file(s): "
                + ", ".join(f"{Path(p).name} ({why})" for p, why in images.skipped[:5])
                + (" ..." if len(images.skipped) > 5 else "")
                + " (full list in skipped.txt)"
            )
    return images


def _lock(run_dir: Path, world: World, held: contextlib.ExitStack) -> None:
    """Lock the run folder until `held` closes (rank 0 holds it for all ranks); a TrainError
    when another process trains in it."""
    if not world.is_main:
        return
    from .run import RunBusyError, lock_run

    try:
        release = lock_run(run_dir)
    except RunBusyError as exc:
        raise TrainError(str(exc)) from None
    except OSError as exc:
        raise TrainError(f"cannot lock the run folder {run_dir}: "
                         f"{_reason(exc, run_dir / '.lock')}") from None
    held.callback(release)


def _reason(exc: OSError, about: Path) -> str:
    """An OSError's reason without the `[Errno 13]` prefix, naming the path when it is not
    `about` itself (say, the missing parent of a run folder)."""
    where = f" ({exc.filename})" if exc.filename and Path(exc.filename) != about else ""
    return f"{exc.strerror or exc}{where}"


def _new_run_folder(run_dir: Path, held: contextlib.ExitStack) -> None:
    """Create the run folder (TrainError when it cannot be) and lock it before anything is
    written, so two runs started into one folder cannot interleave."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TrainError(f"cannot create the run folder {run_dir}: a file of that name "
                         "exists") from None
    except OSError as exc:
        raise TrainError(f"cannot create the run folder {run_dir}: "
                         f"{_reason(exc, run_dir)}") from None
    _lock(run_dir, World(), held)


def _run_dir(req, net, world, resume_dir, spec_text, params, config, split, data_path, images,
             held):
    if resume_dir is not None:
        from .run import ResumeError

        try:
            check_resume(resume_dir, spec_text, params)
        except ResumeError as exc:
            raise TrainError(str(exc)) from exc
        return resume_dir
    name = None
    if world.is_main:
        run_dir = Path(req.run or Path("runs") / f"{net.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        _new_run_folder(run_dir, held)
        try:
            create_run(
                run_dir,
                spec_text,
                str(req.spec),
                params,
                config,
                split,
                data_path,
                images.classes,
                images.skipped,
                network=net.name,
                data=data_identity(images),
            )
        except FileExistsError as exc:
            raise TrainError(f"{exc}; pass --resume {run_dir} to continue it") from exc
        except OSError as exc:
            raise TrainError(f"cannot write the run folder {run_dir}: "
                             f"{_reason(exc, run_dir)}") from None
        name = str(run_dir)
    return Path(broadcast_text(name, world))


def _loaders(images: ImageSet, split, config: TrainConfig, size: int, device, world: World):
    if config.batch_size % world.size:
        raise TrainError(
            f"batch size {config.batch_size} must divide by the {world.size} "
            "processes (it is the global batch)"
        )
    if len(split[0]) < config.batch_size:
        raise TrainError(
            f"{len(split[0])} training images make no full batch of {config.batch_size}; "
            "lower --batch-size or add images"
        )
    per_rank = config.batch_size // world.size
    aug = config.augment()
    train_idx, val_idx = split
    common = dict(
        out_size=size,
        device=device,
        aug=aug,
        seed=config.seed,
        rank=world.rank,
        world_size=world.size,
    )
    train_loader = BatchLoader(images, train_idx, per_rank, train=True, drop_last=True, **common)
    val_loader = BatchLoader(images, val_idx, per_rank, train=False, **common)
    return train_loader, val_loader


def _factory(net: Network, init_from: str | None):
    def make():
        model = archc.build(net)
        if init_from:
            for message in archc.init_weights(model, net, init_from):
                print(message)
        return model

    return make


def _read_record(run_dir: Path) -> dict[str, Any]:
    import json

    path = run_dir / "record.json"
    if not path.exists():
        raise TrainError(f"`{run_dir}` is not a run folder (no record.json)")
    return json.loads(path.read_text())
