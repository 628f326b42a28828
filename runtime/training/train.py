"""`archc train`: spec + image folder → a run folder with a trained model.

The steps read as a sentence: check the spec, load the images, split them, write the
run folder, fit, report. Everything a run needs to be rebuilt is in its folder.
"""

from __future__ import annotations

import contextlib
import os
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
from .loop import FitOptions, FitResult, fit, select_device
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
    mlflow: str | None = None  # an MLflow tracking URI


def cache_dir() -> Path | None:
    """Where decoded image caches live: images/ under archc's cache root ($ARCHC_CACHE,
    else $XDG_CACHE_HOME/archc, else ~/.cache/archc), vetted as archc's parse cache is (see
    docs/security.md); None when the default folder is not safe to use: images are then
    decoded into memory, not cached. A folder the user named in ARCHC_CACHE that cannot be
    used is a DataError: they asked for it, and a silent fallback could fill the memory."""
    folder = archc.cache_folder("images")
    if folder is None and os.environ.get("ARCHC_CACHE"):
        from ..data.folders import DataError

        raise DataError(unusable_cache_message())
    return folder


def unusable_cache_message() -> str:
    """One line for a cache root that archc cannot use, naming it."""
    root = archc.cache_root()
    where = f" in {root}" if root is not None else ""
    return (f"cannot write the image cache{where}: the folder cannot be made, is not yours, or "
            "another user can write to it; set ARCHC_CACHE to a folder of your own (see "
            "docs/security.md)")


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
    elif req.run:
        _refuse_foreign_folder(Path(req.run))  # before any data is read or cached
    base = dict(saved_config.model_dump()) if saved_config else spec_train
    from .recipes import default_recipe

    # a resumed run's saved settings are complete: no recipe layer under them
    config = _config(base, req.settings, None if saved_config else default_recipe(req.init))
    cache_dir()  # after the settings are known good; before the run folder is made
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
    if resume_dir is not None:  # refuse a changed spec or dataset before decoding anything
        _resumable(req, resume_dir, record, saved_params, data_path, config)
        finished = _finished(resume_dir, config, world)
        if finished is not None:
            return finished
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
    new_tensors: list[str] = []
    factory = _factory(net, req.init if resume_dir is None else None, new_tensors)
    header = {
        "data": f"{data_path}: {len(split[0])} training and {len(split[1])} validation images "
                f"at {size}x{size}, {len(images.classes)} classes "
                f"({', '.join(images.classes[:6])}{', ...' if len(images.classes) > 6 else ''})",
        "network": f"{net.name}: {net.n_params:,} parameters, "
                   f"{net.inference_macs / 1e6:,.1f} M MACs"
                   + (f", initialised from {req.init}" if req.init else ""),
    }
    _record_model(run_dir, net, req.init, world)
    options = FitOptions(header=header, head=_head_paths(net), mlflow=req.mlflow)
    return fit(
        factory,
        train_loader,
        val_loader,
        config,
        run_dir,
        resume=resume_dir is not None,
        console=req.console,
        wrap=ddp_wrapper(world, device, req.sync_bn, partial=config.freeze_epochs > 0),
        options=options,
    )


def _resumable(req: TrainRequest, resume_dir: Path, record: dict[str, Any],
               saved_params: dict[str, Any] | None, data_path: Path,
               config: TrainConfig) -> None:
    """TrainError when the spec changed since the run began, or when the dataset's files no
    longer match the recorded count and classes: found from the spec and a directory
    listing, before a single image is decoded."""
    from ..data.folders import DataError, discover
    from .run import ResumeError

    checked = check_spec(req, dict(saved_params or {}), config.image_size)
    try:
        check_resume(resume_dir, archc.bundle(checked.program), dict(saved_params or {}))
    except ResumeError as exc:
        raise TrainError(str(exc)) from exc
    recorded, counts = record.get("data") or {}, record.get("counts") or {}
    if "images" not in recorded:
        return
    try:
        sources, _, classes = discover(data_path)
    except DataError:
        return  # the decode reports it in full
    expected = recorded["images"] + counts.get("skipped", 0)
    if len(sources) != expected or list(classes) != list(record.get("classes") or classes):
        raise TrainError(
            f"cannot resume {resume_dir}: the images at `{data_path}` changed since the run "
            f"began ({expected} files in classes {', '.join(record.get('classes') or [])} "
            f"then, {len(sources)} in {', '.join(classes)} now); restore them, or start a new run"
        )


def _finished(run_dir: Path, config: TrainConfig, world: World) -> FitResult | None:
    """The run's result, after saying so, when it already trained `config.epochs` epochs (no
    images decoded, no model built); None when there is more to train."""
    from .checkpoint import CheckpointError, latest, read_manifest

    name = latest(run_dir, "last")
    try:
        epoch = int(read_manifest(run_dir, name)["epoch"] or 0) if name else 0
    except CheckpointError:
        return None
    if epoch < config.epochs:
        return None
    best = read_manifest(run_dir, "best") if latest(run_dir, "best") == "best" else {}
    metrics = best.get("metrics") or {}
    if world.is_main:
        print(f"{run_dir} already finished its {epoch} epochs; to train it further, resume "
              f"with more epochs, e.g. --epochs {epoch * 2}")
    return FitResult(best_val_acc=metrics.get("val_acc", float("nan")),
                     best_val_logloss=metrics.get("val_logloss", float("nan")),
                     best_epoch=int(best.get("epoch") or 0), last_epoch=epoch,
                     stopped_reason="done", run_dir=run_dir)


def _head_paths(net: Network) -> tuple[str, ...]:
    """The classifier head's module paths: the layers that follow num_classes, else ()
    (the loop then takes the last Linear)."""
    return archc.classifier_heads(net)


def _record_model(run_dir: Path, net: Network, init_from: str | None, world: World) -> None:
    """Parameters, MACs and the initialisation in record.json, for `archc runs`."""
    import json

    from .checkpoint import atomic_write

    path = run_dir / "record.json"
    if not world.is_main or not path.exists():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("model", {"params": net.n_params, "macs": net.inference_macs,
                              "init": init_from or "random"})
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


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
    path: Path | None
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
    if trained_on and resolved and Path(resolved).resolve() != data_path.resolve():
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


def _config(base: dict[str, Any], settings: dict[str, Any],
            recipe: str | None = None) -> TrainConfig:
    from .config import ConfigError

    try:
        return merge_config(base, settings, recipe)
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
    _refuse_foreign_folder(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TrainError(f"cannot create the run folder {run_dir}: a file of that name "
                         "exists") from None
    except OSError as exc:
        raise TrainError(f"cannot create the run folder {run_dir}: "
                         f"{_reason(exc, run_dir)}") from None
    _lock(run_dir, World(), held)


def _refuse_foreign_folder(run_dir: Path) -> None:
    """TrainError when --run names a symlink or a folder holding files a run does not write:
    training would overwrite the user's own metrics.csv or spec.arch there."""
    from archc import foreign_entries

    if run_dir.is_symlink():
        raise TrainError(f"--run {run_dir} is a symbolic link; give a new folder (or the "
                         "folder it points to, if that is a run's)")
    if not run_dir.is_dir():
        return
    foreign = foreign_entries(run_dir)
    if foreign:
        shown = ", ".join(f"`{name}`" for name in foreign[:3])
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise TrainError(f"--run {run_dir} holds files that are not a run's ({shown}{more}); "
                         "train into a new or empty folder")


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


def _factory(net: Network, init_from: str | None, notes: list[str] | None = None):
    """The model builder for `fit`: archc.build, then the --init weights (printing and
    keeping in `notes` which tensors are new)."""
    def make():
        model = archc.build(net)
        if init_from:
            try:
                messages = init_weights(model, net, init_from)
            except archc.InitError as exc:
                raise TrainError(str(exc)) from None
            for message in messages:
                print(message)
            if notes is not None:
                notes[:] = messages
        return model

    return make


def init_weights(model, net: Network, init_from: str) -> list[str]:
    """Initialise `model` from "torchvision", a weights file, or another run folder (its best
    checkpoint, else its last); returns the notes on what was new."""
    folder = Path(init_from)
    if folder.is_dir():
        for name in ("best", "last"):
            weights = folder / f"{name}.safetensors"
            if weights.exists():
                return [f"initialised from {weights}",
                        *archc.init_weights(model, net, str(weights))]
        raise TrainError(f"--init {folder}: no best.safetensors or last.safetensors there; "
                         "give a run folder, a weights file or `torchvision`")
    return archc.init_weights(model, net, init_from)


def _read_record(run_dir: Path) -> dict[str, Any]:
    """The run's record.json, validated (TrainError in one line when edited or damaged)."""
    from runtime.training.records import RecordError, read_record

    if not (run_dir / "record.json").exists():
        raise TrainError(f"`{run_dir}` is not a run folder (no record.json)")
    try:
        return read_record(run_dir)
    except RecordError as exc:
        raise TrainError(str(exc)) from None


def lr_find(req: TrainRequest, out_dir: Path):
    """`archc lr-find`: the LR range test on the spec and data of `req`, without training;
    returns the LRFinding (lr_finder.png and .json go to `out_dir`)."""
    from .loop import range_test
    from .recipes import default_recipe

    spec_train = _spec_train(req)
    data_path = data_source(req, {}, spec_train.pop("data", None))
    config = _config(spec_train, {**req.settings, "lr": "auto"}, default_recipe(req.init))
    try:
        device = select_device(config.device)
    except RuntimeError as exc:
        raise TrainError(str(exc)) from exc
    images = _load(data_path, config, World())
    params = spec_params(req, images.classes, None)
    checked = check_spec(req, params, config.image_size)
    net = checked.network
    check_outputs(net, images.classes, checked.program.sources)
    size = config.image_size or net.input_shape[1]
    split = stratified_split(images.labels, config.val_fraction, config.seed)
    train_loader, _ = _loaders(images, split, config, size, device, World())
    options = FitOptions(head=_head_paths(net))
    return range_test(_factory(net, req.init), train_loader, config, out_dir,
                      console=req.console, options=options)
