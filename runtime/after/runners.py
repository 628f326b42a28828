"""The building blocks of the inference engines: the Engine type, and runners for an eager
module, a compiled one and an ONNX file, plus the folded ONNX file a run keeps. The engine
registry (runtime/after/engines.py) and int8 (runtime/after/quantize.py) build on these.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import archc


class EngineError(Exception):
    """An engine that cannot run here, or does not compute what the model computes."""


@dataclass
class Engine:
    """A callable float32 (B, C, H, W) → logits (B, classes), with what it cost to set up."""

    name: str
    run: Callable[[torch.Tensor], torch.Tensor]
    setup_s: float
    precision: str = "fp32"
    reason: str = ""  # why this engine runs, in words (`auto`'s estimate, or "as asked")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)



def folded_module(trained) -> nn.Module:
    """The trained model's folded eval-mode module (archc.passes)."""
    return archc.inference_module(trained.network, trained.model.eval())


def no_grad_runner(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(x)

    return run


def compiled_for(trained, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return compiled_runner(folded_module(trained), trained.network.input_shape, batch_size,
                           trained.device)


def compiled_runner(module: nn.Module, input_shape: tuple[int, ...], batch_size: int,
                    device: torch.device | str = "cpu") -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.compile of `module` with frozen weights, compiled here for `batch_size` images of
    `input_shape` (not at the first real batch); other batch sizes are split or padded."""
    _quiet_cuda_home()
    # freezing folds the weights into the graph as constants (torch.compile's public options
    # reach inductor's settings); it applies without grad only
    compiled = torch.compile(module, dynamic=False, options={"freezing": True})

    def run_fixed(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return compiled(x)

    try:
        run_fixed(torch.zeros((batch_size, *input_shape), device=device))
    except Exception as exc:  # no C++ compiler, an unsupported op: say so, keep the reason
        raise EngineError(f"torch.compile failed: {type(exc).__name__}: {exc}") from exc
    return _in_fixed_batches(run_fixed, batch_size)


def _quiet_cuda_home() -> None:
    """Drop torch's `No CUDA runtime is found, using CUDA_HOME=...` log line. Inductor imports
    torch.utils.cpp_extension, which logs it on a machine with a CUDA toolkit but no usable
    GPU; it says nothing about the compiled engine, which then runs on the CPU."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if _not_cuda_home not in logger.filters:
        logger.addFilter(_not_cuda_home)


def _not_cuda_home(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("No CUDA runtime is found")


def _in_fixed_batches(run: Callable[[torch.Tensor], torch.Tensor],
                      batch: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Feed `run` exactly `batch` images at a time: split larger inputs, zero-pad a short one
    (a new batch size would compile the graph again)."""

    def fixed(x: torch.Tensor) -> torch.Tensor:
        outs = []
        for start in range(0, len(x), batch):
            piece = x[start: start + batch]
            n = len(piece)
            if n < batch:
                pad = piece.new_zeros((batch - n, *piece.shape[1:]))
                piece = torch.cat([piece, pad])
            outs.append(run(piece)[:n])
        return torch.cat(outs)

    return fixed


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Run an ONNX file with ONNX Runtime on the CPU, `threads` intra-op threads (all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle threads sleep instead of spinning: between batches the CPU decodes and preprocesses
    # images (and a spinning pool slows every other computation in the process)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        array = x.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(session.run(None, {name: array})[0])

    return run


# --------------------------------------------------------------------------- files in the run


def inference_dir(trained) -> Path:
    """RUN/inference (created), or a temporary folder when the run folder is read-only."""
    folder = Path(trained.run_dir) / "inference"
    try:
        folder.mkdir(exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-")
        probe.close()
        return folder
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"archc-inference-{fingerprint(trained)}"
        fallback.mkdir(exist_ok=True)
        return fallback


def fingerprint(trained) -> str:
    """A short hash of the weights and the network: names files derived from them."""
    known = _FINGERPRINTS.get(trained.model)
    if known is not None:
        return known
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(trained.network.input_shape).encode())
    for key, value in trained.model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    _FINGERPRINTS[trained.model] = digest.hexdigest()
    return digest.hexdigest()


# hashing ResNet-50's weights takes a noticeable fraction of a second: once per loaded model
_FINGERPRINTS: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def onnx_file(trained) -> Path:
    """The folded graph as ONNX, exported once per checkpoint and verified by onnxruntime."""
    path = inference_dir(trained) / f"{trained.checkpoint}-{fingerprint(trained)}.onnx"
    if not path.exists():
        partial = path.with_suffix(".partial.onnx")
        archc.emit_onnx(trained.network, partial, model=_cpu_copy(trained.model))
        os.replace(partial, path)
    return path


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).cpu().eval()


def max_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest difference, relative to max(1, |want|)."""
    scale = max(1.0, float(want.abs().max()))
    return float((got.float().cpu() - want.float().cpu()).abs().max()) / scale


def time_per_image(engine: Engine, x: torch.Tensor, repeats: int = 3) -> float:
    """Seconds per image: the best of `repeats` timed passes after one warm-up."""
    engine(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        engine(x)
        best = min(best, time.perf_counter() - start)
    return best / len(x)


