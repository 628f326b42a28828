"""Inference engines for a trained run: the registry of ways to run one network (KINDS).

    engine = engine_for(trained, "auto", n_images=12_500)   # or "eager", "compiled", ...
    logits = engine(x)                                      # x: float32 (B, 3, H, W)

``eager`` is the reference: the trained module in eval mode, exactly what the Python API
(`runtime.after.inference.predict_images`) computes. The other two run the *folded* network
(archc.passes: batch norms folded into the convs, dropout and auxiliary heads gone):

* ``compiled``: ``torch.compile`` of the folded module with its weights frozen into the graph
  (inductor's ``freezing``), at one fixed batch size (a smaller last batch is padded, so the
  graph compiles once).
* ``onnxruntime``: the folded graph exported to ONNX (cached in ``RUN/inference/``), run by
  ONNX Runtime on the CPU with one intra-op thread per core.

``auto`` picks the fastest exact engine for the job. The engines are measured once per run
folder and machine (setup seconds and milliseconds per image, on a probe batch whose outputs
must equal the eval-mode module's within TOLERANCE) and the figures go to
``RUN/inference/engines.json``; each call then takes the engine with the least
setup + n_images × per-image time. A job so small that eager finishes it within MEASURE_ABOVE_S
runs eagerly without measuring anything: the measurement would cost more than it saves; and an
engine whose estimated set-up (SETUP_GUESS_S, until measured) exceeds eager's time for the
whole job, the most it could save, is never tried. The chosen engine's `reason` says why.
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .runners import (  # noqa: F401  (re-exported: the engines' building blocks)
    Engine,
    EngineError,
    compiled_for,
    compiled_runner,
    fingerprint,
    folded_module,
    inference_dir,
    max_error,
    no_grad_runner,
    onnx_file,
    onnx_runner,
    time_per_image,
)


@dataclass(frozen=True)
class EngineKind:
    """One way to run a trained network: a row of the registry below.

    `build(trained, batch_size)` returns the runner (float32 (B, C, H, W) → logits);
    `unavailable(trained)` says why it cannot run here, or None; `exact` engines compute the
    eval-mode module's logits within TOLERANCE and are the ones `auto` chooses among;
    `setup_guess_s` is the set-up assumed until measured; `versions()` names the libraries
    whose versions key the measurements.
    """

    name: str
    describe: str
    build: Callable[[Any, int], Callable[[torch.Tensor], torch.Tensor]]
    exact: bool = True
    precision: str = "fp32"
    setup_guess_s: float = 0.0
    prepare: Callable[[Any], object] | None = None  # once per checkpoint, not timed as set-up
    unavailable: Callable[[Any], str | None] = lambda trained: None
    versions: Callable[[], dict[str, str]] = lambda: {"torch": torch.__version__}


def _cpu_only(what: str) -> Callable[[Any], str | None]:
    def check(trained) -> str | None:
        if trained.device.type != "cpu":
            return f"{what} runs on ONNX Runtime on the CPU; use --device cpu"
        return None
    return check


def _onnxruntime_versions() -> dict[str, str]:
    import onnxruntime

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def _int8(trained, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    from .quantize import CALIBRATION_IMAGES, quantized

    path, _ = quantized(trained, CALIBRATION_IMAGES)
    return onnx_runner(path)


#: The engines, by name. A new engine is a runner in runtime/after/runners.py (or its own
#: module) plus one row here; `--engine`, `auto`, the measurements and bench read the rows.
KINDS: dict[str, EngineKind] = {kind.name: kind for kind in (
    EngineKind("eager", "the trained module in eval mode (the reference)",
               lambda trained, batch: no_grad_runner(trained.model.eval())),
    EngineKind("compiled", "torch.compile of the folded module, weights frozen",
               compiled_for, setup_guess_s=60.0),
    EngineKind("onnxruntime", "the folded graph in ONNX Runtime on the CPU",
               lambda trained, batch: onnx_runner(onnx_file(trained)), setup_guess_s=5.0,
               prepare=onnx_file, unavailable=_cpu_only("the onnxruntime engine"),
               versions=_onnxruntime_versions),
    EngineKind("int8", "ONNX Runtime's static int8 graph (--quantize int8; never `auto`)",
               _int8, exact=False, precision="int8", setup_guess_s=30.0,
               unavailable=_cpu_only("int8"), versions=_onnxruntime_versions),
)}
ENGINES = tuple(name for name, kind in KINDS.items() if kind.exact)  # what `auto` may choose
CHOICES = ("auto", *ENGINES)
#: largest difference from the eval-mode module, relative to max(1, |logits|): "exact"
TOLERANCE = 1e-4
#: measure the engines only for jobs that eager needs longer than this for
MEASURE_ABOVE_S = 20.0
#: set-up seconds assumed for an engine not yet measured for a run on this machine; it is
#: measured only for a job that eager needs longer than this for (torch.compile of a small CNN
#: takes tens of seconds on a CPU, a ResNet minutes; an ONNX export and session, seconds)
SETUP_GUESS_S = {name: kind.setup_guess_s for name, kind in KINDS.items()}
PROBE_BATCH = 8  # images per timed forward pass when measuring
RECORD = "engines.json"
RECORD_VERSION = 2  # how engines are built and timed: a record made otherwise is measured anew


# --------------------------------------------------------------------------- building


def build_engine(trained, name: str, batch_size: int = 64) -> Engine:
    """The exact engine called `name` for `trained` (`batch_size`: a compiled graph's batch)."""
    kind = KINDS.get(name)
    if kind is None or not kind.exact:
        raise EngineError(f"--engine must be one of {', '.join(CHOICES)}, got `{name}`")
    why_not = kind.unavailable(trained)
    if why_not is not None:
        raise EngineError(why_not)
    start = time.perf_counter()
    run = kind.build(trained, batch_size)
    return Engine(name, run, time.perf_counter() - start, precision=kind.precision)


# --------------------------------------------------------------------------- measuring


def _probe(trained, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch, *trained.network.input_shape), generator=generator)


def reference_logits(trained, x: torch.Tensor) -> torch.Tensor:
    """The eval-mode training module's logits: what every engine must reproduce."""
    with torch.no_grad():
        out = trained.model.eval()(x.to(trained.device))
    return (out[0] if isinstance(out, (tuple, list)) else out).cpu()


def measure(trained, names: tuple[str, ...] = ENGINES, batch: int = PROBE_BATCH,
            rounds: int = 3) -> dict:
    """Build each engine, check it against the eval-mode module, time it: the engines record.

    The engines are timed in interleaved rounds (each once per round, best round kept), so a
    burst of other load on the machine does not fall on one engine only.
    """
    x = _probe(trained, batch).to(trained.device)
    want = reference_logits(trained, x)
    figures: dict[str, dict[str, Any]] = {}
    built: dict[str, Engine] = {}
    for name in names:
        try:
            kind = KINDS[name]
            if kind.prepare is not None and kind.unavailable(trained) is None:
                kind.prepare(trained)  # e.g. the ONNX export: once per checkpoint, not set-up
            engine = build_engine(trained, name, batch_size=batch)
            error = max_error(engine(x), want)
        except EngineError as exc:
            figures[name] = {"unavailable": str(exc)}
            continue
        built[name] = engine
        figures[name] = {"setup_s": engine.setup_s, "error": error, "exact": error <= TOLERANCE}
    best = {name: float("inf") for name in built}
    for _ in range(rounds):
        for name, engine in built.items():
            best[name] = min(best[name], time_per_image(engine, x, repeats=1))
    for name, seconds in best.items():
        figures[name]["per_image_ms"] = 1e3 * seconds
    return {"machine": machine_key(trained), "batch": batch, "tolerance": TOLERANCE,
            "checkpoint": trained.checkpoint, "weights": fingerprint(trained),
            "engines": figures}


def machine_key(trained) -> dict[str, Any]:
    """What the timings depend on: a record from another machine or library is measured anew."""
    versions = {lib: v for kind in KINDS.values() for lib, v in kind.versions().items()}
    return {"record": RECORD_VERSION, "device": str(trained.device), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), **versions}


def load_record(trained) -> dict | None:
    """The engines record of this run, if it was measured on this machine with these weights."""
    path = inference_dir(trained) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (record.get("machine") != machine_key(trained)
            or record.get("weights") != fingerprint(trained)):
        return None
    return record


def save_record(trained, record: dict) -> Path:
    """Write the engines record into the run folder (atomically)."""
    from ..training.checkpoint import atomic_write

    path = inference_dir(trained) / RECORD
    atomic_write(path, json.dumps(record, indent=2) + "\n")
    return path


def job_seconds(figures: dict[str, Any], n_images: int) -> float:
    """An engine's set-up plus `n_images` × its time per image, from its measured figures."""
    return figures["setup_s"] + n_images * figures["per_image_ms"] / 1e3


def fastest(record: dict, n_images: int) -> str:
    """The exact engine with the least setup + n_images × per-image time."""
    costs = {name: job_seconds(f, n_images)
             for name, f in record["engines"].items() if f.get("exact")}
    return min(costs, key=costs.get) if costs else "eager"


@dataclass
class Choice:
    """The engine `auto` picked for a job, and why, in words."""

    name: str
    reason: str


def eager_seconds(trained, n_images: int, figures: dict[str, Any]) -> float:
    """Eager's estimated time for the job: from the measured figures, else timed on a probe."""
    if "per_image_ms" in figures.get("eager", {}):
        return job_seconds(figures["eager"], n_images)
    eager = build_engine(trained, "eager")
    x = _probe(trained, min(PROBE_BATCH, max(n_images, 1))).to(trained.device)
    return n_images * time_per_image(eager, x, repeats=1)


def worth_measuring(figures: dict[str, Any], eager_s: float) -> list[str]:
    """The engines not yet measured whose set-up could pay off. An engine saves at most eager's
    whole time, so one whose estimated set-up alone exceeds that is never tried: trying it
    would cost more than it could save (torch.compile: minutes, for a job eager does in
    seconds)."""
    if eager_s < MEASURE_ABOVE_S:
        return []
    return [name for name in ENGINES
            if name != "eager" and name not in figures and SETUP_GUESS_S[name] < eager_s]


def choose(trained, n_images: int, note: Callable[[str], None] | None = None) -> Choice:
    """The engine `auto` means for a job of `n_images`, and why: the least estimated set-up +
    n_images × time per image, among eager and the exact engines measured for this run on
    this machine. An engine is measured (once; the figures go to RUN/inference/engines.json)
    only when its estimated set-up is below eager's time for the whole job."""
    record = load_record(trained) or {}
    figures = dict(record.get("engines") or {})
    eager_s = eager_seconds(trained, n_images, figures)
    todo = worth_measuring(figures, eager_s)
    if todo:
        if note is not None:
            note(f"measuring the inference engines once for this run (eager, {', '.join(todo)})"
                 "; the figures go to RUN/inference/engines.json")
        fresh = measure(trained, ("eager", *todo))
        fresh["engines"] = {**figures, **fresh["engines"]}
        save_record(trained, fresh)
        figures = fresh["engines"]
        eager_s = eager_seconds(trained, n_images, figures)
    costs = {"eager": eager_s} | {name: job_seconds(f, n_images) for name, f in figures.items()
                                  if name != "eager" and f.get("exact")}
    name = min(costs, key=costs.get)
    return Choice(name, _auto_reason(figures, costs, n_images))


def _images(n: int) -> str:
    return f"{n:,} image" + ("" if n == 1 else "s")


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:,.0f} s"


def _auto_reason(figures: dict[str, Any], costs: dict[str, float], n_images: int) -> str:
    """`auto, for N images: eager about T; compiled ...; onnxruntime ...`: what each engine
    would cost, or why it was not a candidate."""
    eager_s = costs["eager"]
    head = f"auto, for {_images(n_images)}: eager about {_seconds(eager_s)}"
    if not figures and eager_s < MEASURE_ABOVE_S:
        return f"{head}, too short a job for another engine's set-up to pay off"
    parts = [head]
    for name in ENGINES[1:]:
        f = figures.get(name)
        if f is None and eager_s < MEASURE_ABOVE_S:
            parts.append(f"{name} not measured (too short a job to repay measuring it)")
        elif f is None:
            parts.append(f"{name} not tried (its set-up, about {_seconds(SETUP_GUESS_S[name])},"
                         " exceeds the most it could save)")
        elif "unavailable" in f:
            parts.append(f"{name} unavailable here")
        elif not f.get("exact"):
            parts.append(f"{name} not exact")
        else:
            parts.append(f"{name} about {_seconds(costs[name])} with "
                         f"{_seconds(f['setup_s'])} set-up")
    return "; ".join(parts)


def _asked_reason(trained, engine: Engine, n_images: int) -> str:
    """Why an engine named by --engine runs, and what its set-up cost against eager's job."""
    if engine.name == "eager":
        return "as asked"
    eager_s = eager_seconds(trained, n_images, (load_record(trained) or {}).get("engines", {}))
    reason = f"as asked; it paid {_seconds(engine.setup_s)} of set-up before the first image"
    if engine.setup_s > eager_s:
        reason += (f", while eager needs about {_seconds(eager_s)} for all {_images(n_images)}"
                   " (--engine auto weighs this)")
    return reason


def engine_for(trained, requested: str = "auto", n_images: int = 1, batch_size: int = 64,
               note: Callable[[str], None] | None = None) -> Engine:
    """The engine to run: `requested`, or for `auto` the fastest exact one for the job; its
    `reason` says why, in one line."""
    if requested not in CHOICES:
        raise EngineError(f"--engine must be one of {', '.join(CHOICES)}, got `{requested}`")
    choice = choose(trained, n_images, note) if requested == "auto" else None
    name = choice.name if choice else requested
    engine = build_engine(trained, name, batch_size=min(batch_size, max(n_images, 1)))
    engine.reason = choice.reason if choice else _asked_reason(trained, engine, n_images)
    return engine


def check_options(engine: str, quantize: str) -> None:
    """EngineError unless --engine and --quantize name a combination that exists (checked
    before a run is loaded, so a typo costs nothing)."""
    if engine not in CHOICES:
        raise EngineError(f"--engine must be one of {', '.join(CHOICES)}, got `{engine}`")
    if quantize not in ("none", "int8"):
        raise EngineError(f"--quantize must be none or int8, got `{quantize}`")
    if quantize == "int8" and engine not in ("auto", "onnxruntime"):
        raise EngineError(f"int8 runs on the onnxruntime engine, not `{engine}`; leave out "
                          "--engine or give --engine onnxruntime")


def attach(trained, engine: str = "auto", quantize: str = "none", n_images: int = 1,
           batch_size: int = 64, calibration_images: int | None = None,
           note: Callable[[str], None] | None = None) -> Engine:
    """Set `trained.engine` for a job of `n_images`, as the verbs' --engine and --quantize ask.

    int8 is never chosen by `auto`; `--quantize int8` runs ONNX Runtime's int8 graph and
    `note` receives its accuracy/log-loss change and speed-up.
    """
    check_options(engine, quantize)
    if quantize == "int8":
        from .quantize import CALIBRATION_IMAGES, int8_engine

        chosen = int8_engine(trained, calibration_images or CALIBRATION_IMAGES, note)
        chosen.reason = "--quantize int8"
    else:
        chosen = engine_for(trained, engine, n_images, batch_size, note)
    if note is not None:
        precision = " int8" if chosen.precision == "int8" else ""
        note(f"engine: {chosen.name}{precision} ({chosen.reason})")
    trained.engine = chosen
    return chosen
