"""The runtime's verbs for the `archc` command: train and data (synth, cache), plus those of
runtime/after/verbs.py (eval, predict, submit, export). `archc` finds `register` through the
`archc.commands` entry point.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn, Optional

import typer

data_app = typer.Typer(no_args_is_help=True, help="Make or prepare image datasets.")


def register(app: typer.Typer) -> None:
    """Add the runtime verbs to the `archc` app."""
    _show_data_warnings_as_lines()
    app.command(name="train")(train_command)
    app.command(name="lr-find")(lr_find_command)
    app.command(name="runs")(runs_command)
    app.add_typer(data_app, name="data")
    try:
        from .after import verbs as after
    except ImportError:  # pragma: no cover - only while the module is being written
        return
    after.register(app)


def _show_data_warnings_as_lines() -> None:
    """Print a dataset's DataWarning as one `warning: ...` line, not Python's two-line form
    naming runtime/data/folders.py; other warnings keep the default display."""
    import warnings

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        from .data.folders import DataWarning

        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _parse_sets(values: list[str] | None) -> dict:
    """`--set NAME=VALUE` options as typed values; a malformed one is a usage error."""
    import archc

    try:
        return archc.parse_assignments(values)
    except ValueError as exc:
        _fail(str(exc), code=2)
        raise


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def train_command(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d", help="Image folder, Kaggle train/ or train.zip [required, "
        "unless the spec's train: section has data = \"PATH\" or --resume names a run]"
    ),
    epochs: Optional[int] = typer.Option(None, help="Epochs"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Global batch size"),
    lr: Optional[str] = typer.Option(
        None, help="Peak learning rate, or auto (an LR range test; the default recipes' choice)"
    ),
    optimizer: Optional[str] = typer.Option(
        None, help="sgd (Nesterov), adamw, or auto (as the LR range test finds)"
    ),
    schedule: Optional[str] = typer.Option(None, help="cosine, onecycle or constant"),
    warmup: Optional[float] = typer.Option(None, "--warmup", help="Warm-up epochs"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing"),
    grad_clip: Optional[float] = typer.Option(None, "--grad-clip", help="Clip the gradient norm"),
    accumulate: Optional[int] = typer.Option(None, help="Gradient accumulation steps"),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", help="Training resolution (default: the spec's input)"
    ),
    workers: Optional[int] = typer.Option(None, help="Decoding processes"),
    seed: Optional[int] = typer.Option(None, help="Random seed"),
    deterministic: Optional[bool] = typer.Option(
        None, "--deterministic", help="Bit-identical runs on the CPU"
    ),
    compile: Optional[bool] = typer.Option(None, "--compile", help="torch.compile the model"),
    compile_mode: Optional[str] = typer.Option(
        None, "--compile-mode", help="default, reduce-overhead (CUDA graphs) or max-autotune"
    ),
    device: Optional[str] = typer.Option(None, help="auto, cuda, mps or cpu"),
    amp: Optional[str] = typer.Option(
        None, "--amp", help="bf16 autocast: auto (on CUDA), bf16 or off"
    ),
    channels_last: Optional[bool] = typer.Option(
        None, "--channels-last/--no-channels-last", help="NHWC memory format (default: on CUDA)"
    ),
    val_fraction: Optional[float] = typer.Option(None, "--val-fraction"),
    scale: Optional[str] = typer.Option(None, help="Random-resized-crop area range MIN,MAX"),
    ratio: Optional[str] = typer.Option(None, help="Random-resized-crop aspect range MIN,MAX"),
    rotation: Optional[float] = typer.Option(None, help="Random rotation, ± degrees"),
    hflip: Optional[float] = typer.Option(None, help="Horizontal flip probability"),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Spec parameter k=v"),
    variant: Optional[str] = typer.Option(None, "--variant", "-V"),
    network: Optional[str] = typer.Option(None, "--network", "-n"),
    run: Optional[Path] = typer.Option(None, "--run", help="Run folder (default runs/NAME-TIME)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder"),
    init: Optional[str] = typer.Option(None, "--init", help="torchvision, or a weights file"),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", help="Processes per node: launches torchrun"
    ),
    sync_bn: bool = typer.Option(False, "--sync-bn", help="SyncBatchNorm under DDP"),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", help="from-scratch (default), finetune (default with --init) or lecture"
    ),
    ema: Optional[float] = typer.Option(None, "--ema", help="Weight EMA decay, e.g. 0.999"),
    mixup: Optional[float] = typer.Option(None, "--mixup", help="mixup Beta alpha, e.g. 0.2"),
    cutmix: Optional[float] = typer.Option(None, "--cutmix", help="CutMix Beta alpha, e.g. 1.0"),
    randaugment: Optional[str] = typer.Option(
        None, "--randaugment", help="RandAugment N,M (ops per image, magnitude 0-30)"
    ),
    trivialaugment: Optional[bool] = typer.Option(
        None, "--trivialaugment", help="TrivialAugment (wide) on every training image"
    ),
    freeze_epochs: Optional[int] = typer.Option(
        None, "--freeze-epochs", help="Epochs the backbone stays frozen (finetune)"
    ),
    backbone_lr_scale: Optional[float] = typer.Option(
        None, "--backbone-lr-scale", help="Backbone lr as a fraction of the head's (finetune)"
    ),
    mlflow: Optional[str] = typer.Option(
        None, "--mlflow", help="Also log to this MLflow tracking URI (needs mlflow)"
    ),
) -> None:
    """Train a spec on an image folder; checkpoints, metrics and plots go to a run folder.

    Without --lr an LR range test picks the rate (lr_finder.png in the run folder); the
    settings each recipe starts from are in docs/training.md, and the start header prints
    the ones in effect."""
    if nproc and nproc > 1:
        from .training.distributed import launch

        args = _without_nproc(sys.argv[1:])
        raise typer.Exit(launch(nproc, args))
    from .training.train import SpecCheckError, TrainError, TrainRequest
    from .training.train import train as run_train

    settings = dict(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        schedule=schedule,
        warmup_epochs=warmup,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        grad_clip=grad_clip,
        accumulate=accumulate,
        image_size=image_size,
        workers=workers,
        seed=seed,
        deterministic=deterministic,
        compile=compile,
        compile_mode=compile_mode,
        device=device,
        amp=amp,
        channels_last=channels_last,
        val_fraction=val_fraction,
        scale=_pair("--scale", scale),
        ratio=_pair("--ratio", ratio),
        rotation=rotation,
        hflip=hflip,
        recipe=recipe,
        ema=ema,
        mixup=mixup,
        cutmix=cutmix,
        randaugment=_ints("--randaugment", randaugment),
        trivialaugment=trivialaugment,
        freeze_epochs=freeze_epochs,
        backbone_lr_scale=backbone_lr_scale,
    )
    settings["lr"] = _lr(lr)
    if mlflow:
        from .training.tblog import MlflowMissing, check_mlflow

        try:
            check_mlflow()
        except MlflowMissing as exc:
            _fail(str(exc))
    if not spec.exists():
        _fail(f"spec file `{spec}` not found")
    req = TrainRequest(
        spec=spec,
        data=data,
        params=_parse_sets(sets),
        variant=variant,
        network=network,
        settings={k: v for k, v in settings.items() if v is not None},
        run=run,
        resume=resume,
        init=init,
        sync_bn=sync_bn,
        mlflow=mlflow,
    )
    try:
        result = run_train(req)
    except SpecCheckError as exc:  # rendered diagnostics carry their own `error[E...]` heads
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except TrainError as exc:
        _fail(str(exc))
    except Exception as exc:  # data and checkpoint errors carry their own clear messages
        from .data.folders import DataError
        from .training.checkpoint import CheckpointError

        if isinstance(exc, (DataError, CheckpointError, FileNotFoundError)):
            _fail(str(exc))
        raise
    codes = {"done": 0, "paused": 0, "interrupted": 130, "nan": 1}
    raise typer.Exit(codes.get(result.stopped_reason, 0))


def _lr(text: str | None) -> float | str | None:
    """--lr: `auto` or a positive number."""
    if text is None or text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        _fail(f"--lr expects a number such as 0.1, or auto (got `{text}`)")
    if not value > 0:
        _fail(f"--lr must be greater than 0 (got {text})")
    return value


def _ints(option: str, text: str | None) -> tuple[int, int] | None:
    """`2,9` as (2, 9)."""
    if text is None:
        return None
    try:
        n, m = (int(part) for part in text.split(","))
    except ValueError:
        _fail(f"{option} expects N,M such as 2,9 (got `{text}`)")
    return n, m


def _run_user_errors(job):
    """Run `job()`, turning the runtime's expected errors into one `error:` line."""
    from .training.train import SpecCheckError, TrainError

    try:
        return job()
    except SpecCheckError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except TrainError as exc:
        _fail(str(exc))
    except Exception as exc:
        from .data.folders import DataError
        from .training.checkpoint import CheckpointError

        if isinstance(exc, (DataError, CheckpointError, FileNotFoundError)):
            _fail(str(exc))
        raise


def lr_find_command(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    data: Optional[Path] = typer.Option(
        None, "--data", "-d",
        help="Image folder, Kaggle train/ or train.zip (required unless the spec names it)"
    ),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Folder for lr_finder.png/.json"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b"),
    optimizer: Optional[str] = typer.Option(None, help="sgd, adamw or auto"),
    recipe: Optional[str] = typer.Option(None, "--recipe"),
    image_size: Optional[int] = typer.Option(None, "--image-size"),
    seed: Optional[int] = typer.Option(None, help="Random seed"),
    device: Optional[str] = typer.Option(None, help="auto, cuda, mps or cpu"),
    workers: Optional[int] = typer.Option(None, help="Decoding processes"),
    init: Optional[str] = typer.Option(None, "--init", help="torchvision, a weights file or run"),
    sets: Optional[list[str]] = typer.Option(None, "--set", "-s", help="Spec parameter k=v"),
    variant: Optional[str] = typer.Option(None, "--variant", "-V"),
    network: Optional[str] = typer.Option(None, "--network", "-n"),
    force: bool = typer.Option(False, "--force", help="Replace lr_finder.png/.json in OUT even "
                               "if archc did not write them or a run owns them"),
) -> None:
    """Run the LR range test alone and print the learning rate `--lr auto` would use."""
    import archc

    from .training.train import TrainRequest, lr_find

    if not spec.exists():
        _fail(f"spec file `{spec}` not found")
    outputs = [out / "lr_finder.png", out / "lr_finder.json"]
    try:  # before any work: the finder writes these atomically, then they are marked as archc's
        archc.check_outputs(outputs, force=force)
    except archc.OutputRefused as exc:
        _fail(str(exc))
    settings = dict(batch_size=batch_size, optimizer=optimizer, recipe=recipe,
                    image_size=image_size, seed=seed, device=device, workers=workers)
    req = TrainRequest(spec=spec, data=data, params=_parse_sets(sets), variant=variant,
                       network=network, init=init,
                       settings={k: v for k, v in settings.items() if v is not None})
    finding = _run_user_errors(lambda: lr_find(req, out))
    for path in outputs:
        if path.is_file():
            archc.mark(path)
    summary = finding.summary()
    typer.echo(f"suggested: --optimizer {finding.optimizer} --lr {finding.lr:.3g}  "
               f"(edge of the loss minimum at {summary['minimum_lr']:.3g}, "
               f"÷ {summary['divisor']}; "
               f"{finding.steps} steps; curve in {out / 'lr_finder.png'})")


def runs_command(
    folder: Path = typer.Argument(Path("runs"), help="A run folder or a folder of runs"),
    md: Optional[Path] = typer.Option(None, "--md", help="Also write the table as Markdown"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Also write it as CSV"),
    plot_out: Optional[Path] = typer.Option(
        None, "--plot", help="Draw best val accuracy against MACs (PNG or SVG)"
    ),
    force: bool = typer.Option(False, "--force", help="Replace the --md, --csv and --plot "
                               "files even if archc did not write them or a run owns them"),
) -> None:
    """A table of training runs: network, size, best val accuracy and log loss, time, recipe."""
    from rich.console import Console
    from rich.table import Table

    import archc

    from .after import runs as runs_mod

    if not folder.exists():
        _fail(f"`{folder}` not found; give a run folder or a folder of runs")
    try:  # before any work: an output the user did not mean to replace is refused first
        archc.check_outputs([p for p in (md, csv_out, plot_out) if p is not None], force=force)
    except archc.OutputRefused as exc:
        _fail(str(exc))
    rows = runs_mod.table(folder)
    if not rows:
        _fail(f"no runs under `{folder}` (a run folder holds record.json)")
    table = Table(title=f"runs in {folder}")
    for heading in runs_mod.COLUMNS.values():
        table.add_column(heading, justify="right" if heading in (
            "params", "MACs", "best val acc", "val log loss", "epochs", "wall time", "img/s")
            else "left")
    for row in rows:
        table.add_row(*runs_mod.cells(row))
    Console(soft_wrap=False, width=max(160, Console().width)).print(table)
    path = None
    try:
        for path, text in ((md, runs_mod.markdown), (csv_out, runs_mod.csv_text)):
            if path is not None:
                archc.write_output(path, text(rows), force=force)
                typer.echo(f"wrote {path}")
        if plot_out is not None:
            path = plot_out
            runs_mod.plot(rows, plot_out, force=force)
            typer.echo(f"wrote {plot_out}")
    except archc.OutputRefused as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot write `{path}`: {exc.strerror or exc}")


def _pair(option: str, text: str | None) -> tuple[float, float] | None:
    """`0.35,1` as (0.35, 1.0) for the augmentation ranges."""
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        _fail(f"{option} expects MIN,MAX such as 0.35,1 (got `{text}`)")
    return low, high


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


@data_app.command("synth")
def synth_command(
    out: Path = typer.Argument(..., help="Folder to write"),
    n: int = typer.Option(400, "--n", help="Labelled images (half cats, half dogs)"),
    test: int = typer.Option(0, "--test", help="Unlabelled images in test1/"),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Overwrite images already there"),
) -> None:
    """Write a deterministic synthetic Dogs-vs-Cats dataset in Kaggle's layout."""
    from .data.synth import write_synthetic

    if n < 2:
        _fail("--n must be at least 2 (one image per class)", 2)
    if test < 0:
        _fail(f"--test must be 0 or more, got {test}", 2)
    try:
        write_synthetic(out, n=n, seed=seed, test_n=test, overwrite=force)
    except FileExistsError as exc:
        _fail(f"{exc}: {out} holds a dataset; pass --force to overwrite its images, "
              "or choose another folder")
    except OSError as exc:
        where = exc.filename or out
        _fail(f"cannot write the dataset to {where}: {exc.strerror or exc}")
    typer.echo(
        f"wrote {n} images to {out / 'train'}" + (f" and {test} to {out / 'test1'}" if test else "")
    )


@data_app.command("cache")
def cache_command(
    path: Optional[Path] = typer.Argument(
        None, help="Image folder, train/ or train.zip to decode (with --list or --clear: only "
        "this dataset's cache)"),
    size: int = typer.Option(256, "--size", help="Short side of the cached images"),
    workers: int = typer.Option(2, "--workers"),
    list_: bool = typer.Option(False, "--list", help="List the decoded datasets in the cache: "
                               "path, images, pixels and size on disk"),
    clear: bool = typer.Option(False, "--clear", help="Remove PATH's decoded images from the "
                               "cache, or without PATH every dataset's"),
) -> None:
    """Decode a dataset once into the memory-mapped uint8 cache that `train` reads (about
    196 KB an image at 256 px); --list and --clear show and free the cache's disk space."""
    if list_ and clear:
        _fail("give --list or --clear, not both", 2)
    if list_ or clear:
        (_clear_cache if clear else _list_cache)(_usable_cache(), path)
        return
    if path is None:
        _fail("give the dataset to decode (PATH), or --list / --clear", 2)
    _build_cache(path, size, workers)


def _usable_cache() -> Path:
    """The image cache folder, or one error line naming the folder that cannot be used."""
    from .data.folders import DataError
    from .training.train import cache_dir, unusable_cache_message

    try:
        folder = cache_dir()
    except DataError as exc:
        _fail(str(exc))
    if folder is None:
        _fail(unusable_cache_message())
    return folder


def _build_cache(path: Path, size: int, workers: int) -> None:
    from .data.folders import DataError, check_size, load_images

    try:
        check_size(size)
    except DataError as exc:
        _fail(f"--size: {exc}", 2)
    folder = _usable_cache()  # imports torch: after the options are known to be good
    try:
        images = load_images(path, size=size, cache_dir=folder, workers=workers, progress=True)
    except DataError as exc:
        _fail(str(exc))
    typer.echo(
        f"cached {len(images)} images of {size}×{size} in {folder} "
        f"({len(images.classes)} classes; skipped {len(images.skipped)}; "
        f"{_bytes(images.images.nbytes)} on disk)"
    )
    for p, why in images.skipped:
        typer.echo(f"  skipped {p}: {why}")


def _bytes(n: float) -> str:
    """1,234,567 → `1.2 MB` (decimal units, as disk sizes are sold)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _list_cache(folder: Path, dataset: Optional[Path]) -> None:
    """One line per cached dataset (newest first) and the total."""
    from .data.folders import cached_sets

    wanted = None if dataset is None else str(dataset.resolve())
    entries = [e for e in cached_sets(folder) if wanted is None or e.root == wanted]
    if not entries:
        typer.echo(f"no decoded images in {folder}" + (f" for {dataset}" if dataset else ""))
        return
    typer.echo(f"image cache {folder}:")
    for entry in entries:
        typer.echo("  " + _describe_cached(entry))
    total = sum(e.bytes for e in entries)
    typer.echo(f"{_bytes(total)} in {len(entries)} cached dataset(s); free it with "
               "`archc data cache --clear [PATH]`")


def _describe_cached(entry) -> str:
    size = _bytes(entry.bytes).rjust(8)
    if entry.unfinished:
        return f"{size}  unfinished build (running, or killed): {entry.files[0].name}"
    if entry.root is None:
        return f"{size}  unreadable index: {entry.files[0].name}"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.created or 0))
    per_image = _bytes(entry.bytes / max(entry.images, 1))
    return (f"{size}  {entry.images:,} images of {entry.size}×{entry.size} ({per_image} each), "
            f"{when}  {entry.root}")


def _clear_cache(folder: Path, dataset: Optional[Path]) -> None:
    from .data.folders import clear_cache

    removed = clear_cache(folder, dataset)
    what = f"of {dataset} " if dataset is not None else ""
    typer.echo(f"removed the decoded images {what}from {folder}: {len(removed)} cached "
               f"dataset(s), {_bytes(sum(e.bytes for e in removed))}")
