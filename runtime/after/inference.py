"""A trained run, ready to predict: the model rebuilt from its run folder, plus what it needs.

    trained = load_trained("runs/tiny-20250101-120000")          # best checkpoint, else last
    probs = predict_images(trained, images_u8, tta=True)         # (N, classes), rows sum to 1

A run folder is self-contained (see runtime/training/run.py): `spec.arch` is the bundled spec text,
`hparams.json` its parameters and the training configuration (image size, normalisation,
decode size), `record.json` the class names. Nothing outside the folder is read, so a run
keeps working after the original spec file moved or changed.

Images are prepared exactly as validation saw them during training: decoded at the cache size
(short side resized, centre crop), then `augment.eval_batch` to the input size and normalised.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import archc

from ..data.augment import AugmentConfig, eval_batch
from ..data.folders import is_image_name, natural_key
from ..training.checkpoint import CheckpointError, latest, load_checkpoint
from ..training.config import TrainConfig

#: checkpoint file suffixes a path may name (`best.safetensors`, `best.json`, `best.state.pt`).
_CHECKPOINT_SUFFIXES = (".safetensors", ".state.pt", ".json")
_SHOWN = 5  # keys of each kind that a weights-mismatch message lists


class InferenceError(Exception):
    """A run, checkpoint or input that cannot be used for inference; the message says why."""


@dataclass
class Trained:
    """A trained model in eval mode with everything needed to feed it images."""

    model: nn.Module
    network: Any  # archc.compiler.graph.Network
    classes: list[str]
    image_size: int  # the network's input resolution
    decode_size: int  # images are decoded at this size first, as the training cache was
    aug: AugmentConfig  # normalisation (mean/std) for eval_batch
    device: torch.device
    run_dir: Path
    checkpoint: str  # checkpoint name in run_dir, e.g. "best"
    epoch: int | None  # completed epochs when the checkpoint was written
    config: TrainConfig
    record: dict[str, Any]  # the run's record.json (classes, data_path, provenance)
    #: what computes the logits (runtime.after.engines.Engine); None: the eval-mode module itself
    engine: Callable[[torch.Tensor], Any] | None = None

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.aug.mean)

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.aug.std)

    def class_index(self, name: str) -> int:
        """Index of class `name` (case-insensitive); InferenceError naming the classes."""
        lowered = [c.lower() for c in self.classes]
        if name.lower() not in lowered:
            raise InferenceError(f"the model has no class {name!r}; its classes are "
                                 f"{', '.join(self.classes)}")
        return lowered.index(name.lower())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The loaded weights (CPU copies)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}


# --------------------------------------------------------------------------- locating


def resolve_checkpoint(path: Path | str, name: str | None = None) -> tuple[Path, str]:
    """(run folder, checkpoint name) for a run folder or a checkpoint path.

    Accepted: a run folder (its "best" checkpoint when there is one, else "last"), a run
    folder plus `name`, or a checkpoint file such as `RUN/best.safetensors`, `RUN/best.json`
    or just `RUN/best`.
    """
    path = Path(path)
    if path.is_dir():
        _require_run(path)
        return path, name or _default_checkpoint(path)
    stem = path.name
    for suffix in _CHECKPOINT_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    run_dir = path.parent
    if not (run_dir / "spec.arch").exists():
        if not path.exists():
            raise InferenceError(f"`{path}` not found: give a run folder, or a checkpoint in "
                                 "one such as RUN/best.safetensors")
        raise InferenceError(f"`{path}` is neither a run folder nor a checkpoint in one "
                             "(expected RUN or RUN/best.safetensors)")
    if not any((run_dir / f"{stem}{s}").exists() for s in _CHECKPOINT_SUFFIXES):
        raise InferenceError(f"no checkpoint `{stem}` in {run_dir}"
                             + _available(run_dir))
    return run_dir, stem


def _require_run(run_dir: Path) -> None:
    """InferenceError unless `run_dir` holds the files a rebuild needs."""
    missing = [f for f in ("spec.arch", "hparams.json", "record.json")
               if not (run_dir / f).exists()]
    if missing:
        raise InferenceError(f"`{run_dir}` is not a run folder ({', '.join(missing)} missing); "
                             "give the folder `archc train` wrote, or a checkpoint in it")


def _default_checkpoint(run_dir: Path) -> str:
    """"best" when it exists, else "last". A best that exists but does not verify is still
    returned, so loading reports the corruption instead of quietly using another model."""
    for kind in ("best", "last"):
        name = latest(run_dir, kind)
        if name is not None:
            return name
        if any((run_dir / f"{kind}{s}").exists() for s in _CHECKPOINT_SUFFIXES):
            return kind
    raise InferenceError(f"no checkpoint in {run_dir} (no best.* or last.*); "
                         "has the run finished an epoch?")


def _available(run_dir: Path) -> str:
    names = sorted({p.name.split(".")[0] for p in run_dir.glob("*.safetensors")})
    return f"; available: {', '.join(names)}" if names else ""


# --------------------------------------------------------------------------- loading


def load_trained(path: Path | str, name: str | None = None,
                 device: str | torch.device = "cpu") -> Trained:
    """Rebuild the network of a run folder and load a checkpoint's weights strictly.

    `path` is a run folder or a checkpoint path (see `resolve_checkpoint`). The model is in
    eval mode on `device`. Raises InferenceError for a missing run or checkpoint, a corrupt
    checkpoint, or a spec.arch that no longer matches the weights (keys and shapes named).
    """
    run_dir, name = resolve_checkpoint(path, name)
    _require_run(run_dir)
    config, params, record = _records(run_dir)
    network = _rebuild(run_dir, params, config, record)
    weights, epoch = _weights(run_dir, name)
    model = _module(network)
    _load_strict(model, weights, run_dir, name)
    device = torch.device(device)
    model.to(device).eval()
    classes = list(record.get("classes") or [])
    _check_classes(classes, network, run_dir)
    return Trained(
        model=model, network=network, classes=classes,
        image_size=config.image_size or network.input_shape[1],
        decode_size=max(config.cache_size, config.image_size or 0),  # as training.train._load
        aug=config.augment(), device=device, run_dir=run_dir, checkpoint=name, epoch=epoch,
        config=config, record=record)


def _records(run_dir: Path) -> tuple[TrainConfig, dict[str, Any], dict[str, Any]]:
    """(config, spec parameters, record) of the run, validated: an edited or damaged
    hparams.json or record.json is an InferenceError in one line."""
    from runtime.training.records import RecordError, read_hparams, read_record

    try:
        config, params = read_hparams(run_dir)
        return config, params, read_record(run_dir)
    except RecordError as exc:
        raise InferenceError(str(exc)) from None


def _rebuild(run_dir: Path, params: dict[str, Any], config: TrainConfig,
             record: dict[str, Any]):
    """The checked network of the run's own spec.arch, at the resolution it was trained at."""
    size = config.image_size
    result = archc.check(run_dir / "spec.arch", params,
                         network=record.get("network"), variant=record.get("variant"),
                         input_shape=(3, size, size) if size else None)
    if not result.ok:
        errors = [d for d in result.diagnostics if d.is_error]
        raise InferenceError(f"{run_dir / 'spec.arch'} no longer checks:\n"
                             + archc.render(errors, result.program.sources))
    return result.network


def _module(network) -> nn.Module:
    """The torch module, built without paying for an initialisation the weights replace."""
    return archc.to_module(network, init="none")


def _weights(run_dir: Path, name: str) -> tuple[dict[str, torch.Tensor], int | None]:
    """A checkpoint's weights (verified against its manifest) and its epoch.

    A bare `NAME.safetensors` without a manifest (copied out of a run) is read as it is.
    """
    if (run_dir / f"{name}.json").exists():
        try:
            weights, extra = load_checkpoint(run_dir, name)
        except CheckpointError as exc:
            raise InferenceError(f"checkpoint `{name}` in {run_dir} is unusable: {exc}"
                                 + _intact_others(run_dir, name)) from exc
        _require_finite(weights, run_dir, name)
        return weights, extra.get("epoch")
    file = run_dir / f"{name}.safetensors"
    if not file.exists():
        raise InferenceError(f"no checkpoint `{name}` in {run_dir}" + _available(run_dir))
    from safetensors.torch import load_file

    try:
        weights = load_file(str(file))
    except Exception as exc:  # safetensors raises several kinds for a damaged file
        raise InferenceError(f"{file} is not a readable safetensors file: {exc}") from exc
    _require_finite(weights, run_dir, name)
    return weights, None


def _require_finite(weights: dict[str, torch.Tensor], run_dir: Path, name: str) -> None:
    """InferenceError when a checkpoint holds NaN/inf weights: its every answer would be NaN."""
    bad = [k for k, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise InferenceError(f"checkpoint `{name}` in {run_dir} holds non-finite weights "
                             f"({bad[0]}{' and more' if len(bad) > 1 else ''}): the run diverged; "
                             "retrain with a lower lr" + _intact_others(run_dir, name))


def _intact_others(run_dir: Path, broken: str) -> str:
    """A hint naming the run's other checkpoints that still verify."""
    others = [n for n in ("best", "last") if n != broken and latest(run_dir, n) == n]
    return f"; still intact: {', '.join(others)}" if others else ""


def _load_strict(model: nn.Module, weights: dict[str, torch.Tensor], run_dir: Path,
                 name: str) -> None:
    """load_state_dict(strict) with a message that names every kind of mismatch."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    conflicts = [f"{k} (checkpoint {tuple(weights[k].shape)}, spec {tuple(expected[k].shape)})"
                 for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if missing or unexpected or conflicts:
        lines = [(f"the weights of checkpoint `{name}` do not fit the network that "
                  f"{run_dir / 'spec.arch'} builds (was the spec edited after training?)")]
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("shape conflicts", conflicts)):
            if keys:
                more = f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
                lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:_SHOWN])}{more}")
        raise InferenceError("\n".join(lines))
    model.load_state_dict(weights, strict=True)


def _check_classes(classes: list[str], network, run_dir: Path) -> None:
    outputs = network.output_shape[0] if network.output_shape else None
    if not classes:
        raise InferenceError(f"{run_dir / 'record.json'} lists no classes")
    if outputs is not None and outputs != len(classes):
        raise InferenceError(f"the network has {outputs} outputs but the run recorded "
                             f"{len(classes)} classes ({', '.join(classes)})")


# --------------------------------------------------------------------------- predicting


def _check_images(images_u8: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(N, H, W, 3) uint8 as given (a memmap stays on disk); one (H, W, 3) image becomes N=1."""
    if images_u8.ndim == 3:
        images_u8 = images_u8[None]
    dtype_ok = images_u8.dtype in (np.uint8, torch.uint8)
    if images_u8.ndim != 4 or images_u8.shape[-1] != 3 or not dtype_ok:
        raise InferenceError(f"expected uint8 images shaped (N, H, W, 3), got {images_u8.dtype} "
                             f"{tuple(images_u8.shape)}")
    return images_u8


def _tensor(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """One batch as a tensor (numpy slices, memmaps included, are copied only here)."""
    return batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.array(batch))


def _probabilities(trained: Trained, x_u8: torch.Tensor) -> torch.Tensor:
    """Softmax (float64) of the model on one uint8 batch."""
    x = eval_batch(x_u8.to(trained.device), trained.image_size, trained.aug)
    out = (trained.engine or trained.model)(x)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    if not bool(torch.isfinite(logits).all()):  # never report NaN as a probability
        raise InferenceError("the model's output is not finite (NaN or inf) for these images: "
                             f"the weights of {trained.run_dir} overflow on them")
    return torch.softmax(logits.double(), dim=1)


@torch.no_grad()
def predict_images(trained: Trained, images_u8: np.ndarray | torch.Tensor, tta: bool = False,
                   batch_size: int = 64, *, rows: np.ndarray | None = None,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Class probabilities (N, len(classes)) float64 for uint8 images (N, H, W, 3).

    With `tta` each row is the mean of the image's and its horizontal mirror's probabilities
    (the uint8 image is flipped before preprocessing, so it is literally the flipped image).
    `rows` selects images by index without copying the whole array (a large memmap stays on
    disk); `progress(n)` is called after each batch of n images.
    """
    x = _check_images(images_u8)
    if batch_size < 1:
        raise InferenceError(f"batch size must be at least 1, got {batch_size}")
    order = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = []
    for start in range(0, len(order), batch_size):
        batch = _tensor(x[order[start: start + batch_size]])
        probs = _probabilities(trained, batch)
        if tta:
            probs = (probs + _probabilities(trained, batch.flip(2))) / 2
        out.append(probs.cpu().numpy())
        if progress is not None:
            progress(len(batch))
    return np.concatenate(out) if out else np.zeros((0, len(trained.classes)))


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder`, in natural order (2.jpg before 10.jpg)."""
    return sorted((p for p in Path(folder).iterdir() if p.is_file() and is_image_name(p.name)),
                  key=lambda p: natural_key(p.name))


@dataclass
class FilePredictions:
    """Probabilities for the files that could be read, and why the others could not."""

    probs: np.ndarray  # (len(paths), classes)
    paths: list[Path]
    skipped: list[tuple[str, str]]


def predict_files(trained: Trained, paths: Sequence[Path], tta: bool = False,
                  batch_size: int = 64, workers: int = 1,
                  progress: Callable[[int], None] | None = None) -> FilePredictions:
    """Decode and predict image files batch by batch; unreadable files are skipped and listed.

    Decoding (training's uint8 pipeline, in `workers` processes) runs ahead of the model in a
    background thread (runtime/data/streaming.py), so the next batch decodes while this one is
    computed. `progress(n)` is called after each batch with the number of files it handled.
    """
    from ..data.streaming import decoded_batches

    probs, loaded = [], []
    paths = [Path(p) for p in paths]
    present = [p for p in paths if p.is_file()]
    skipped = [(str(p), "no such file") for p in paths if not p.is_file()]
    if skipped and progress is not None:
        progress(len(skipped))
    for ok, u8, bad in decoded_batches(present, trained.decode_size, batch_size, workers):
        skipped += bad
        if ok:
            probs.append(predict_images(trained, u8, tta=tta, batch_size=batch_size))
            loaded += ok
        if progress is not None:
            progress(len(ok) + len(bad))
    table = np.concatenate(probs) if probs else np.zeros((0, len(trained.classes)))
    return FilePredictions(table, loaded, skipped)


# --------------------------------------------------------------------------- scoring

#: Kaggle clips probabilities to [eps, 1 - eps] before taking logs.
LOGLOSS_EPS = 1e-15


@dataclass
class Scores:
    """Classification quality of probabilities against true labels."""

    classes: list[str]
    n: int
    accuracy: float
    log_loss: float
    precision: list[float | None]  # None where nothing was predicted as that class
    recall: list[float | None]  # None where the class has no examples
    support: list[int]
    confusion: np.ndarray  # [true, predicted] counts

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "n": self.n, "accuracy": self.accuracy, "log_loss": self.log_loss,
            "classes": list(self.classes),
            "per_class": {c: {"precision": p, "recall": r, "support": s} for c, p, r, s in
                          zip(self.classes, self.precision, self.recall, self.support)},
            "confusion": self.confusion.tolist(),
        }


def score(probs: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Scores:
    """Accuracy, log loss (-log p_true, p clipped to [1e-15, 1 - 1e-15]; for two classes this
    is Kaggle's binary score), per-class precision and recall, and the confusion matrix."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    k = len(classes)
    if len(probs) == 0:
        raise InferenceError("nothing to score: no images")
    predicted = probs.argmax(1)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    p_true = np.clip(probs[np.arange(len(labels)), labels], LOGLOSS_EPS, 1 - LOGLOSS_EPS)
    diagonal = np.diag(confusion)
    return Scores(
        classes=list(classes), n=len(labels),
        accuracy=float(diagonal.sum() / len(labels)),
        log_loss=float(-np.log(p_true).mean()),
        precision=_ratios(diagonal, confusion.sum(0)),
        recall=_ratios(diagonal, confusion.sum(1)),
        support=confusion.sum(1).tolist(), confusion=confusion)


def _ratios(numerators: np.ndarray, denominators: np.ndarray) -> list[float | None]:
    return [float(a / b) if b else None for a, b in zip(numerators, denominators)]


def map_labels(trained: Trained, data_classes: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Labels of a dataset (indices into its own classes) as indices into the model's classes.

    Classes are matched by name (case-insensitive), so a dataset that holds only some of the
    classes, or lists them in another order, is still scored correctly.
    """
    lookup = {c.lower(): i for i, c in enumerate(trained.classes)}
    unknown = [c for c in data_classes if c.lower() not in lookup]
    if unknown:
        raise InferenceError(f"the data has class(es) {', '.join(unknown)} that the model was "
                             f"not trained on (its classes: {', '.join(trained.classes)})")
    table = np.array([lookup[c.lower()] for c in data_classes], dtype=np.int64)
    return table[np.asarray(labels, dtype=np.int64)]


__all__ = [
    "InferenceError",
    "Scores",
    "Trained",
    "images_in",
    "load_trained",
    "map_labels",
    "predict_files",
    "predict_images",
    "resolve_checkpoint",
    "score",
]
