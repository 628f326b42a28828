"""After training: `archc eval`, `predict`, `submit` and `export` on a run folder.

Every verb takes a run folder (its best checkpoint, else its last) or a checkpoint in one
(`RUN/last.safetensors`, or `--checkpoint last`), and rebuilds the model from the folder alone
(runtime/after/inference.py). Problems with the user's input (a missing run, a corrupt checkpoint,
a spec that no longer fits the weights, unreadable images, an empty folder) print
`error: ...` and exit 1, never a traceback.
"""
from __future__ import annotations

import contextlib
import json
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer

import archc

RunArgument = typer.Argument(...,
                             help="A run folder, or a checkpoint in one (RUN/best.safetensors)")
CheckpointOption = typer.Option(None, "--checkpoint", "-c",
                                help="Checkpoint name in the run folder (default best, else last)")
DeviceOption = typer.Option("auto", "--device", help="auto, cpu, cuda or mps")
BatchOption = typer.Option(64, "--batch-size", "-b", min=1, max=4096,
                           help="Images per forward pass (at most 4096)")
WorkersOption = typer.Option(None, "--workers",
                             help="Decoding processes (default: the run's setting)")
TtaOption = typer.Option(False, "--tta", help="Average with the horizontally flipped image")
JsonOption = typer.Option(False, "--json", help="Print the same data as JSON")
EngineOption = typer.Option(
    "auto", "--engine", help="auto (the fastest exact engine, measured once per run), eager "
    "(the module as trained), compiled or onnxruntime (both run it with batch norms folded)")
QuantizeOption = typer.Option(
    "none", "--quantize", help="int8: ONNX Runtime static quantization, calibrated on the run's "
    "training split; not exact, so its accuracy and log-loss change are printed")
CalibrationOption = typer.Option(None, "--calibration-images", min=1,
                                 help="Training images that calibrate int8 (default 128)")
ForceOption = typer.Option(False, "--force",
                           help="Replace OUTPUT even if archc did not write it or a run owns it")
UntrainedOption = typer.Option(
    False, "--allow-untrained", help="Use a checkpoint written before the first epoch finished "
    "(its weights are the random initialisation)")
_SHOWN = 5  # unreadable files listed by name in an error
_DEVICES = ("auto", "cpu", "cuda", "mps")


class AfterError(Exception):
    """A problem with what the user asked for; printed as `error: ...`."""


def register(app: typer.Typer) -> None:
    """Add eval, predict, submit and export to the `archc` app."""
    app.command(name="eval")(eval_command)
    app.command(name="predict")(predict_command)
    app.command(name="submit")(submit_command)
    app.command(name="export")(export_command)


# --------------------------------------------------------------------------- shared helpers


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the errors that describe bad input into `error: ...` and exit code 1."""
    from ..data.folders import DataError
    from ..training.checkpoint import CheckpointError
    from ..training.run import ResumeError
    from .engines import EngineError
    from .inference import InferenceError

    try:
        yield
    except (AfterError, InferenceError, CheckpointError, DataError, ResumeError, EngineError,
            OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _load(run: Path, checkpoint: str | None, device: str = "cpu"):
    """The trained model of a run (InferenceError for anything wrong with it)."""
    from ..training.loop import select_device
    from .inference import InferenceError, load_trained

    if device not in _DEVICES:
        raise InferenceError(f"--device must be one of {', '.join(_DEVICES)}, got `{device}`")
    try:
        chosen = select_device(device)
    except RuntimeError as exc:  # asked for a device this machine does not have
        raise InferenceError(str(exc)) from exc
    return load_trained(run, checkpoint, chosen)


def _use_engine(trained, engine: str, quantize: str, calibration: int | None, n_images: int,
                batch_size: int) -> None:
    """Set what computes the logits for a job of `n_images` (runtime/after/engines.py)."""
    from .engines import attach

    attach(trained, engine, quantize, n_images, batch_size, calibration, note=_note)


def _announce_checkpoint(trained, allow_untrained: bool) -> None:
    """Say on stderr which checkpoint and epoch answer; AfterError for one written before the
    first epoch finished (epoch 0: `last` is saved at the start so a run can resume, but its
    weights are the random initialisation) unless `allow_untrained`."""
    if trained.epoch == 0 and not allow_untrained:
        raise AfterError(f"checkpoint `{trained.checkpoint}` of {trained.run_dir} is from before "
                         "the first finished epoch (untrained weights); wait for an epoch to "
                         "finish, or pass --allow-untrained")
    of = f" of {trained.config.epochs}" if trained.epoch is not None else ""
    epoch = "epoch unknown" if trained.epoch is None else f"epoch {trained.epoch}{of}"
    untrained = ", untrained" if trained.epoch == 0 else ""
    typer.echo(f"using checkpoint {trained.checkpoint} of {trained.run_dir} "
               f"({epoch}{untrained})", err=True)


def _check_engine_options(engine: str, quantize: str) -> None:
    from .engines import check_options

    check_options(engine, quantize)


def _workers(trained, workers: int | None) -> int:
    return trained.config.workers if workers is None else max(workers, 0)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def _progress(total: int, what: str):
    """A rich progress bar on stderr (drawn only on a terminal); yields `advance(n)`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = _stderr_console()
    with Progress("[bold]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True,
                  disable=not console.is_terminal) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _report_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, why in skipped:
        typer.echo(f"skipped {path}: {why}", err=True)


def _describe(trained) -> str:
    epoch = f", epoch {trained.epoch}" if trained.epoch is not None else ""
    return f"{trained.run_dir} (checkpoint {trained.checkpoint}{epoch})"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- eval


def eval_command(
    run: Path = RunArgument,
    data: Path | None = typer.Option(
        None, "--data", "-d",
        help="Labelled images (default: the run's own validation split)"),
    as_json: bool = JsonOption,
    plot: Path | None = typer.Option(None, "--plot", help="Confusion-matrix PNG (default: a "
                                     "new RUN/eval/TIME-DATA.png for every eval)"),
    tta: bool = TtaOption,
    checkpoint: str | None = CheckpointOption,
    device: str = DeviceOption,
    batch_size: int = BatchOption,
    workers: int | None = WorkersOption,
    engine: str = EngineOption,
    quantize: str = QuantizeOption,
    calibration: int | None = CalibrationOption,
    force: bool = typer.Option(False, "--force", help="Replace the --plot file even if archc "
                               "did not write it or a run owns it"),
) -> None:
    """Accuracy, log loss, per-class precision/recall and the confusion matrix on labelled data."""
    from .inference import predict_images, score

    with _user_errors():
        if plot is not None:
            _refuse_clobber([plot], force)
        trained = _load(run, checkpoint, device)
        images, rows, labels, path, split = _eval_set(trained, data, _workers(trained, workers))
        _use_engine(trained, engine, quantize, calibration, len(rows) * (1 + tta), batch_size)
        where = f"{path} ({split})"
        with _progress(len(rows), "evaluating") as advance:
            probs = predict_images(trained, images, tta=tta, batch_size=batch_size, rows=rows,
                                   progress=advance)
        scores = score(probs, labels, trained.classes)
        plot_path = plot or _new_plot_path(trained, data)
        # the default is a new name in RUN/eval/: nothing there to guard
        with _writing([plot_path], force or plot is None) as staged:
            plot_confusion(scores, staged.temporary(plot_path),
                           f"{trained.network.name}: {where}")
    report = {"run": str(trained.run_dir), "checkpoint": trained.checkpoint,
              "epoch": trained.epoch, "data": str(path), "split": split, "tta": tta,
              **scores.as_dict(),
              "plot": str(plot_path)}
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_scores(trained, scores, where, plot_path)


def _eval_set(trained, data: Path | None, workers: int):
    """(uint8 images, rows to use, their labels in the model's classes, path, split name)."""
    from ..data.folders import load_images
    from ..training.train import cache_dir
    from .inference import map_labels

    trained_on = _trained_on(trained)
    path = data or trained_on
    if path is None:
        raise AfterError("the run records no dataset; give labelled images with --data PATH")
    if not path.exists():
        raise AfterError(f"dataset `{path}` not found")
    images = load_images(path, size=trained.decode_size, cache_dir=cache_dir(),
                         workers=workers, progress=False)
    _report_skipped(images.skipped)
    labels = map_labels(trained, images.classes, images.labels)
    if data is not None:
        if trained_on and Path(data).resolve() == trained_on.resolve():
            typer.echo("note: this is the data the run trained on, so the numbers include "
                       "training images; leave out --data for its validation split", err=True)
        return images.images, np.arange(len(images)), labels, path, "all images"
    rows = _validation_rows(trained.run_dir, len(images))
    return images.images, rows, labels[rows], path, "the run's validation split"


def _new_plot_path(trained, data: Path | None) -> Path:
    """RUN/eval/TIME-WHAT.png, a new file for every eval, so an eval on other data never
    overwrites an earlier one's matrix (WHAT: `val` for the run's validation split, else the
    data folder's name)."""
    name = "val" if data is None else Path(data).resolve().name or "data"
    what = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40]
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{what}"
    folder = trained.run_dir / "eval"
    path, n = folder / f"{stem}.png", 2
    while path.exists():  # two evals within one second
        path, n = folder / f"{stem}-{n}.png", n + 1
    return path


def _trained_on(trained) -> Path | None:
    """The data the run trained on, as record.json resolved it when the run began: a relative
    --data still holds from another working folder."""
    from ..training.run import recorded_data

    return recorded_data(trained.record)


def _validation_rows(run_dir: Path, n_images: int) -> np.ndarray:
    """The run's validation indices, checked against the dataset as it is now."""
    from ..training.run import load_split

    _, val = load_split(run_dir)
    if len(val) == 0:
        raise AfterError(f"{run_dir} has an empty validation split; give --data PATH")
    if val.max() >= n_images:
        raise AfterError(f"the dataset the run trained on now has {n_images} images, fewer than "
                         "its validation split expects; give the evaluation images with --data")
    return val


def _print_scores(trained, scores, where: str, plot_path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"eval of {_describe(trained)} on {where}: {scores.n} images")
    console.print(f"accuracy {scores.accuracy:.2%}  log loss {scores.log_loss:.4f}")
    per_class = Table("class", "precision", "recall", "support", title="per class")
    for name, p, r, s in zip(scores.classes, scores.precision, scores.recall, scores.support):
        per_class.add_row(name, _fmt(p), _fmt(r), str(s))
    console.print(per_class)
    matrix = Table("true \\ predicted", *scores.classes, title="confusion matrix")
    for name, row in zip(scores.classes, scores.confusion):
        matrix.add_row(name, *(str(v) for v in row))
    console.print(matrix)
    console.print(f"wrote {plot_path}")


def plot_confusion(scores, path: Path, title: str) -> Path:
    """Draw the confusion matrix (counts, shaded by row share) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = scores.confusion
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)  # colour by recall per row
    k = len(scores.classes)
    fig = Figure(figsize=(2.5 + 0.7 * k, 2 + 0.7 * k))
    FigureCanvasAgg(fig)  # a canvas without pyplot: no global backend state
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), scores.classes, rotation=45 if k > 4 else 0)
    ax.set_yticks(range(k), scores.classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {scores.accuracy:.2%}, log loss {scores.log_loss:.4f}",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------- predict


def predict_command(
    run: Path = RunArgument,
    images: list[Path] = typer.Argument(..., help="Image files, or folders of images"),
    tta: bool = TtaOption,
    as_json: bool = JsonOption,
    checkpoint: str | None = CheckpointOption,
    device: str = DeviceOption,
    batch_size: int = BatchOption,
    workers: int | None = WorkersOption,
    engine: str = EngineOption,
    quantize: str = QuantizeOption,
    calibration: int | None = CalibrationOption,
    allow_untrained: bool = UntrainedOption,
) -> None:
    """Class probabilities per image. Unreadable files are reported and skipped (exit code 1)."""
    from .inference import predict_files

    with _user_errors():
        _check_engine_options(engine, quantize)
        trained = _load(run, checkpoint, device)
        _announce_checkpoint(trained, allow_untrained)
        paths, skipped = _expand(images)
        _use_engine(trained, engine, quantize, calibration, len(paths) * (1 + tta), batch_size)
        with _progress(len(paths), "predicting") as advance:
            result = predict_files(trained, paths, tta=tta, batch_size=batch_size,
                                   workers=_workers(trained, workers), progress=advance)
        skipped += result.skipped
        _report_skipped(skipped)
        if not len(result.paths):
            raise AfterError("no image could be read" + (f" ({len(skipped)} skipped)"
                                                         if skipped else ""))
    if as_json:
        typer.echo(json.dumps(_predictions_json(trained, result, skipped), indent=2))
    else:
        _print_predictions(trained, result)
    if skipped:
        raise typer.Exit(1)


def _expand(arguments: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given, folders as the images directly in them; missing paths are skipped."""
    from .inference import images_in

    paths, skipped = [], []
    for arg in arguments:
        if arg.is_dir():
            found = images_in(arg)
            paths += found
            if not found:
                skipped.append((str(arg), "no images in this folder"))
        elif arg.exists():
            paths.append(arg)
        else:
            skipped.append((str(arg), "no such file"))
    return paths, skipped


def _predictions_json(trained, result, skipped) -> dict:
    classes = trained.classes
    return {
        "run": str(trained.run_dir), "checkpoint": trained.checkpoint, "classes": classes,
        "predictions": [{"file": str(path), "label": classes[int(np.argmax(row))],
                         "probabilities": dict(zip(classes, map(float, row)))}
                        for path, row in zip(result.paths, result.probs)],
        "skipped": [{"file": path, "reason": why} for path, why in skipped],
    }


def _print_predictions(trained, result) -> None:
    from rich.console import Console
    from rich.table import Column, Table

    table = Table(Column("image", overflow="fold"), "prediction",  # full paths, never "…"
                  *(f"p({c})" for c in trained.classes))
    for path, row in zip(result.paths, result.probs):
        table.add_row(str(path), trained.classes[int(np.argmax(row))],
                      *(f"{p:.4f}" for p in row))
    Console(highlight=False).print(table)


# --------------------------------------------------------------------------- submit

_TEST_ID = re.compile(r"^(\d+)$")


def submit_command(
    run: Path = RunArgument,
    test: Path = typer.Option(..., "--test", help="Kaggle's test1/ folder: 1.jpg, 2.jpg, ..."),
    output: Path = typer.Option(Path("submission.csv"), "--output", "-o", help="CSV to write"),
    tta: bool = TtaOption,
    positive: str = typer.Option("dog", "--positive",
                                 help="The class whose probability is the label column"),
    clip: float = typer.Option(0.005, "--clip",
                               help="Clip to [clip, 1 - clip]: caps log loss per image; 0: off"),
    fill: float | None = typer.Option(None, "--fill",
                                      help="Probability for unreadable test images "
                                           "(default: refuse to write a submission)"),
    checkpoint: str | None = CheckpointOption,
    device: str = DeviceOption,
    batch_size: int = BatchOption,
    workers: int | None = WorkersOption,
    engine: str = EngineOption,
    quantize: str = QuantizeOption,
    calibration: int | None = CalibrationOption,
    allow_untrained: bool = UntrainedOption,
    force: bool = ForceOption,
) -> None:
    """Write a Kaggle Dogs-vs-Cats submission: `id,label` with label = p(dog), sorted by id."""
    from .inference import predict_files

    with _user_errors():
        _check_probability_options(clip, fill)
        ids = _test_ids(test)
        _check_engine_options(engine, quantize)
        _refuse_clobber([output], force)
        trained = _load(run, checkpoint, device)
        _announce_checkpoint(trained, allow_untrained)
        column = _positive_index(trained, positive)
        _use_engine(trained, engine, quantize, calibration, len(ids) * (1 + tta), batch_size)
        with _progress(len(ids), "predicting") as advance:
            result = predict_files(trained, list(ids.values()), tta=tta, batch_size=batch_size,
                                   workers=_workers(trained, workers), progress=advance)
        values = _submission_values(ids, result, column, fill)
        rows = sorted(values.items())
        lo, hi = clip, 1 - clip
        text = "id,label\n" + "".join(f"{i},{float(np.clip(p, lo, hi)):.6g}\n" for i, p in rows)
        with _writing([output], force) as staged:
            staged.temporary(output).write_text(text, encoding="utf-8")
    typer.echo(f"wrote {len(rows)} predictions to {output}: p({trained.classes[column]})"
               + (f" clipped to [{lo:g}, {hi:g}]" if clip else "")
               + (f", {len(result.skipped)} unreadable image(s) filled with {fill:g}"
                  if result.skipped else ""))


def _check_probability_options(clip: float, fill: float | None) -> None:
    if not 0 <= clip < 0.5:
        raise AfterError(f"--clip must be in [0, 0.5), got {clip:g}")
    if fill is not None and not 0 <= fill <= 1:
        raise AfterError(f"--fill must be a probability in [0, 1], got {fill:g}")


def _test_ids(test: Path) -> dict[int, Path]:
    """Kaggle test images by numeric id; errors for a missing folder, no images, bad names."""
    from .inference import images_in

    if not test.is_dir():
        raise AfterError(f"test folder `{test}` not found" if not test.exists()
                         else f"`{test}` is not a folder; give Kaggle's test1/ folder")
    files = images_in(test)
    if not files:
        raise AfterError(f"no test images in {test} (expected Kaggle's test1/: 1.jpg, 2.jpg, ...)")
    ids: dict[int, Path] = {}
    bad = [f.name for f in files if not _TEST_ID.match(f.stem)]
    if bad:
        raise AfterError(f"{len(bad)} file(s) in {test} are not named by a numeric id like "
                         f"1.jpg: {', '.join(bad[:_SHOWN])}")
    for f in files:
        number = int(f.stem)
        if number in ids:
            raise AfterError(f"two test images have id {number}: {ids[number].name}, {f.name}")
        ids[number] = f
    return ids


def _positive_index(trained, positive: str) -> int:
    from .inference import InferenceError

    try:
        return trained.class_index(positive)
    except InferenceError as exc:
        raise AfterError(f"{exc}; choose the class whose probability Kaggle scores with "
                         "--positive CLASS") from None


def _submission_values(ids: dict[int, Path], result, column: int,
                       fill: float | None) -> dict[int, float]:
    """id → probability of the positive class; unreadable images get `fill` or an error."""
    _report_skipped(result.skipped)
    if result.skipped and fill is None:
        names = ", ".join(Path(p).name for p, _ in result.skipped[:_SHOWN])
        raise AfterError(f"{len(result.skipped)} test image(s) could not be read ({names}); a "
                         "submission needs a row for every id: fix them, or pass --fill 0.5")
    by_path = {path: float(row[column]) for path, row in zip(result.paths, result.probs)}
    values: dict[int, float] = {}
    for number, path in ids.items():
        value = by_path.get(path, fill)
        assert value is not None  # an image is missing only when skipped, and then has a fill
        values[number] = value
    return values


# --------------------------------------------------------------------------- export

_FORMATS = ("onnx", "exported-program", "torchscript", "python")
#: largest |difference| between the exported model and the trained one (times max(1, |y|)).
EXPORT_TOLERANCE = 1e-4


def export_command(
    run: Path = RunArgument,
    to: str = typer.Option(..., "--to", help="onnx, exported-program (torch.export, .pt2), "
                           "torchscript (deprecated torch.jit) or python"),
    output: Path = typer.Option(..., "--output", "-o", help="File to write"),
    checkpoint: str | None = CheckpointOption,
    force: bool = ForceOption,
) -> None:
    """Export the trained model: ONNX, a torch.export program (.pt2), TorchScript, or
    standalone PyTorch source + weights."""
    with _user_errors():
        if to not in _FORMATS:
            raise AfterError(f"--to must be one of {', '.join(_FORMATS)}, got `{to}`")
        targets = _export_targets(to, output)
        _refuse_clobber(targets, force)
        trained = _load(run, checkpoint, "cpu")
        exporter = {"onnx": _export_onnx, "exported-program": _export_program,
                    "torchscript": _export_torchscript, "python": _export_python}[to]
        with _writing(targets, force) as staged:
            exporter(trained, staged.temporary(output))
    for path in staged.written:
        typer.echo(f"wrote {path}")
    typer.echo(_input_contract(trained))


def _input_contract(trained) -> str:
    """What a user of the exported file must feed it, which the file itself does not say."""
    c, h, w = trained.network.input_shape
    mean = ", ".join(f"{v:.3f}" for v in trained.mean)
    std = ", ".join(f"{v:.3f}" for v in trained.std)
    return (f"input: float32 N×{c}×{h}×{w} RGB, pixels / 255 then normalised with mean ({mean}) "
            f"and std ({std}); output: logits for {', '.join(trained.classes)}")


@contextlib.contextmanager
def _weights_file(trained) -> Iterator[str]:
    """The trained weights as a temporary .safetensors file (what the backends' `init` reads)."""
    with tempfile.TemporaryDirectory(prefix="archc-export-") as tmp:
        yield str(archc.save_weights(trained.model, Path(tmp) / "weights.safetensors",
                               trained.network))


@contextlib.contextmanager
def _backend(what: str) -> Iterator[None]:
    """A failure inside an export backend becomes one `error:` line naming the step."""
    try:
        yield
    except AfterError:
        raise
    except ImportError as exc:
        raise AfterError(f"{what} is not available: {exc}") from exc
    except Exception as exc:  # the exporters raise many kinds; the user needs the message
        raise AfterError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


def _export_onnx(trained, output: Path) -> list[Path]:
    """The folded graph (no batch norm, dropout or aux head), checked against the model."""
    with _backend("ONNX export"):
        return archc.emit_onnx(trained.network, output, model=trained.model)


def _export_python(trained, output: Path) -> list[Path]:
    with _backend("Python export"):
        with _weights_file(trained) as weights:
            return list(archc.emit_python(trained.network, output, init=weights, note=_note))


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _export_program(trained, output: Path) -> list[Path]:
    """torch.export of the eval-mode model with a dynamic batch dimension, saved with
    torch.export.save (.pt2), loaded back and compared with the model at another batch size."""
    import torch

    model = trained.model.eval()
    with _backend("torch.export"), torch.no_grad():
        batch = torch.export.Dim("batch")
        program = torch.export.export(model, (_example_input(trained, 2, seed=0),),
                                      dynamic_shapes=({0: batch},))
        torch.export.save(program, str(output))
        reloaded = torch.export.load(str(output)).module()
        probe = _example_input(trained, 3, seed=1)  # another batch size than the export saw
        _compare(model(probe), reloaded(probe), "the reloaded exported program")
    return [output]


def _export_torchscript(trained, output: Path) -> list[Path]:
    """torch.jit.trace in eval mode (the Block modules run closures, which script cannot
    compile), save, load the file back and compare it with the model. torch.jit is deprecated:
    the user is told so, and pointed at --to exported-program."""
    import torch

    _note("note: TorchScript (torch.jit) is deprecated in PyTorch; --to exported-program "
          "writes torch.export's .pt2 format, which replaces it")
    model = trained.model.eval()
    with _backend("TorchScript export"), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notices
        traced = torch.jit.trace(model, _example_input(trained, 2, seed=0))
        torch.jit.save(traced, str(output))
        reloaded = torch.jit.load(str(output), map_location="cpu")
        # another batch size and other values than the trace saw
        probe = _example_input(trained, 3, seed=1)
        _compare(model(probe), reloaded(probe), "the reloaded TorchScript file")
    return [output]


def _example_input(trained, batch: int, seed: int):
    import torch

    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *trained.network.input_shape)
    return torch.randn(shape, generator=generator)


def _compare(expected, got, what: str) -> None:
    """AfterError unless `got` equals `expected` within EXPORT_TOLERANCE."""
    scale = max(1.0, float(expected.abs().max()))
    diff = float((expected - got).abs().max())
    if diff > EXPORT_TOLERANCE * scale:
        raise AfterError(f"{what} differs from the trained model by up to {diff:.3g}")


# --------------------------------------------------------------------------- what not to replace


def _export_targets(to: str, output: Path) -> list[Path]:
    """Every file `export --to TO -o OUTPUT` may write (python writes its weights beside)."""
    if to == "python":
        return [output, output.with_suffix(".safetensors")]
    if to == "onnx":
        return [output, Path(f"{output}.data")]
    return [output]


def _refuse_clobber(paths: list[Path], force: bool) -> None:
    """AfterError, before any work, when an output would replace a run folder's own file or
    a file archc did not write (unless --force)."""
    from archc import OutputRefused, check_outputs

    try:
        check_outputs(paths, force=force)
    except OutputRefused as exc:
        raise AfterError(str(exc)) from None


@contextlib.contextmanager
def _writing(paths: list[Path], force: bool) -> Iterator:
    """`archc.staged_outputs` for a verb: the outputs appear whole, over nothing they may
    not replace, or not at all; a refusal or a failed write is an AfterError (one line) and
    leaves the old files as they were."""
    from archc import OutputRefused

    try:
        with archc.staged_outputs(paths, force=force) as staged:
            yield staged
    except OutputRefused as exc:
        raise AfterError(str(exc)) from None
    except OSError as exc:
        raise AfterError(f"cannot write `{paths[0]}`: {exc.strerror or exc}") from None
