"""`--quantize int8`: post-training static quantization of the folded graph with ONNX Runtime.

The fp32 ONNX file of runtime/after/engines.py is quantized to QDQ int8 (weights per channel,
signed;
activations unsigned), its activation ranges calibrated on N images of the run's own training
split (split.json, data_path in record.json), prepared exactly as validation prepares them.
Each quantized file comes with a report, measured once and kept next to it in RUN/inference/:
accuracy and log loss on the validation split in fp32 and int8, top-1 agreement, and the
speed-up over fp32 ONNX Runtime. The report is printed every time int8 is used, because int8 is
never exact: `auto` never picks it, only `--quantize int8` does.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .runners import (
    Engine,
    EngineError,
    fingerprint,
    inference_dir,
    onnx_file,
    onnx_runner,
    time_per_image,
)

QUANTIZE = ("none", "int8")
CALIBRATION_IMAGES = 128
_BATCH = 32


@dataclass
class Int8Report:
    """What int8 costs and buys on the run's validation split."""

    n_val: int
    accuracy_fp32: float
    accuracy_int8: float
    log_loss_fp32: float
    log_loss_int8: float
    agreement: float  # share of validation images with the same top-1 class
    speedup: float  # fp32 onnxruntime time / int8 onnxruntime time, per image
    calibration_images: int

    def line(self) -> str:
        """The one-line summary printed whenever int8 runs."""
        return (f"int8 (calibrated on {self.calibration_images} training images): "
                f"{self.speedup:.2f}× the fp32 onnxruntime speed; on {self.n_val} validation "
                f"images accuracy {self.accuracy_fp32:.2%} → {self.accuracy_int8:.2%} "
                f"({100 * (self.accuracy_int8 - self.accuracy_fp32):+.2f} points), log loss "
                f"{self.log_loss_fp32:.4f} → {self.log_loss_int8:.4f} "
                f"({self.log_loss_int8 - self.log_loss_fp32:+.4f}), top-1 agreement "
                f"{self.agreement:.2%}")


def int8_engine(trained, calibration_images: int = CALIBRATION_IMAGES,
                note: Callable[[str], None] | None = None) -> Engine:
    """The int8 engine of `trained` (quantized and reported once per checkpoint); its report
    goes to `note` every time."""
    if trained.device.type != "cpu":
        raise EngineError("int8 runs on ONNX Runtime on the CPU; use --device cpu")
    start = time.perf_counter()
    path, report = quantized(trained, calibration_images)
    run = onnx_runner(path)
    if note is not None:
        note(report.line())
    return Engine("onnxruntime", run, time.perf_counter() - start, precision="int8")


def quantized(trained, calibration_images: int = CALIBRATION_IMAGES) -> tuple[Path, Int8Report]:
    """(int8 ONNX file, its report): made once per checkpoint and calibration size."""
    if calibration_images < 1:
        raise EngineError(f"--calibration-images must be at least 1, got {calibration_images}")
    stem = f"{trained.checkpoint}-{fingerprint(trained)}-int8-c{calibration_images}"
    folder = inference_dir(trained)
    path, report_path = folder / f"{stem}.onnx", folder / f"{stem}.json"
    if path.exists() and report_path.exists():
        return path, Int8Report(**json.loads(report_path.read_text(encoding="utf-8")))
    images, train_rows, val_rows = _run_images(trained)
    rng = np.random.default_rng(0)
    chosen = rng.choice(train_rows, size=min(calibration_images, len(train_rows)), replace=False)
    fp32 = onnx_file(trained)
    partial = path.with_suffix(".partial.onnx")
    quantize_file(fp32, partial, _batches(trained, images, np.sort(chosen)))
    os.replace(partial, path)
    report = _report(trained, fp32, path, images, val_rows, len(chosen))
    from ..training.checkpoint import atomic_write

    atomic_write(report_path, json.dumps(report.__dict__, indent=2) + "\n")
    return path, report


def quantize_file(fp32: Path, out: Path, batches) -> None:
    """Static QDQ quantization of `fp32` to `out`, calibrated on float32 NCHW `batches`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from archc import ONNX_INPUT as INPUT

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {INPUT: batch}

    prepared = out.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        source = prepared
    except Exception:  # noqa: BLE001 - the pre-pass only helps; quantize the file as it is
        source = fp32
    try:
        quantize_static(str(source), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax,
                        # a LayerNorm's scale is a vector (C,): its channels lie on axis 0,
                        # not ONNX Runtime's default axis 1 (which logs a warning per norm
                        # of a transformer and falls back to one scale for all of them)
                        extra_options={"QDQOpTypePerChannelSupportToAxis":
                                       {"LayerNormalization": 0}})
    finally:
        prepared.unlink(missing_ok=True)


def _run_images(trained):
    """(decoded uint8 images, training rows, validation rows) of the data the run trained on."""
    from ..data.folders import load_images
    from ..training.run import load_split, recorded_data
    from ..training.train import cache_dir

    data = recorded_data(trained.record)  # resolved when the run began: any working folder
    if data is None or not data.exists():
        raise EngineError(f"int8 calibration reads the run's training split, but its data "
                          f"`{data}` is not there; put the dataset back at that path")
    images = load_images(data, size=trained.decode_size, cache_dir=cache_dir(),
                         workers=trained.config.workers, progress=False)
    train_rows, val_rows = load_split(trained.run_dir)
    if len(train_rows) == 0 or max(train_rows.max(initial=0), val_rows.max(initial=0)) >= len(
            images):
        raise EngineError(f"the dataset at {data} no longer matches the run's split.json")
    return images, train_rows, val_rows


def _batches(trained, images, rows: np.ndarray, batch: int = _BATCH):
    """float32 NCHW numpy batches of `rows`, preprocessed as validation preprocesses them."""
    from ..data.augment import eval_batch

    for start in range(0, len(rows), batch):
        u8 = torch.from_numpy(np.array(images.images[rows[start: start + batch]]))
        yield eval_batch(u8, trained.image_size, trained.aug).numpy()


def _report(trained, fp32: Path, int8: Path, images, val_rows: np.ndarray,
            n_calibration: int) -> Int8Report:
    """Score fp32 and int8 on the validation split and time both."""
    from .inference import map_labels, score

    labels = map_labels(trained, images.classes, images.labels)[val_rows]
    runs = {"fp32": onnx_runner(fp32), "int8": onnx_runner(int8)}
    probs = {name: _probabilities(run, trained, images, val_rows) for name, run in runs.items()}
    scores = {name: score(p, labels, trained.classes) for name, p in probs.items()}
    x = torch.from_numpy(next(_batches(trained, images, val_rows[:_BATCH])))
    per_image = {name: time_per_image(Engine(name, run, 0.0), x) for name, run in runs.items()}
    return Int8Report(
        n_val=len(val_rows),
        accuracy_fp32=scores["fp32"].accuracy, accuracy_int8=scores["int8"].accuracy,
        log_loss_fp32=scores["fp32"].log_loss, log_loss_int8=scores["int8"].log_loss,
        agreement=float((probs["fp32"].argmax(1) == probs["int8"].argmax(1)).mean()),
        speedup=per_image["fp32"] / per_image["int8"], calibration_images=n_calibration)


def _probabilities(run, trained, images, rows: np.ndarray) -> np.ndarray:
    out = [torch.softmax(run(torch.from_numpy(b)).double(), 1).numpy()
           for b in _batches(trained, images, rows)]
    return np.concatenate(out) if out else np.zeros((0, len(trained.classes)))
