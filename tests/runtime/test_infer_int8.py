"""int8 and the engines through the verbs, on a run trained on `archc data synth` images.

One tiny run (tests/fixtures/tiny.arch, a few epochs on 200 synthetic JPEGs in Kaggle's layout)
is trained once for the module.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import typer
from rich.console import Console
from typer.testing import CliRunner

from runtime.after import engines
from runtime.after import verbs as after
from runtime.after.inference import images_in, load_trained
from runtime.after.quantize import int8_engine, quantized
from runtime.data.augment import eval_batch
from runtime.data.folders import load_unlabelled
from runtime.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "fixtures" / "tiny.arch"
CALIBRATION = 48


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("ARCHC_CACHE", str(path))
        yield path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n=200, seed=0, test_n=24)
    return root


@pytest.fixture(scope="module")
def run(cache, data, tmp_path_factory) -> Path:
    from runtime.training.train import TrainRequest, train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    result = train(TrainRequest(spec=SPEC, data=data / "train", run=run_dir,
                                # the settings this test was sized with, before the
                                # from-scratch recipe's warm-up and label smoothing
                                settings={"epochs": 4, "seed": 0, "lr": 0.1,
                                          "warmup_epochs": 0.0, "label_smoothing": 0.0},
                                console=Console(quiet=True)))
    assert result.stopped_reason == "done"
    return run_dir


@pytest.fixture
def cli(cache):
    app = typer.Typer()
    after.register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def _all_images(trained, data: Path) -> np.ndarray:
    """Every training and test image, decoded as the run decodes them."""
    paths = images_in(data / "train") + images_in(data / "test1")
    u8, loaded, skipped = load_unlabelled(paths, trained.decode_size)
    assert not skipped and len(loaded) == 224
    return u8


def test_int8_agrees_with_fp32_on_the_synthetic_set(run, data):
    trained = load_trained(run)
    path, report = quantized(trained, CALIBRATION)
    kinds = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds  # QDQ, not a copy of fp32
    assert report.calibration_images == CALIBRATION and report.n_val == 40
    x = eval_batch(torch.from_numpy(_all_images(trained, data)), trained.image_size, trained.aug)
    fp32 = torch.as_tensor(engines.build_engine(trained, "onnxruntime")(x))
    int8 = torch.as_tensor(int8_engine(trained, CALIBRATION)(x))
    # This run is tiny (4 epochs on 160 images): many of its answers are near-ties, where
    # any rounding flips the top class, and which ones are depends on the seed. So the top
    # classes must agree on the images fp32 decides with a margin (10 points of probability),
    # and the logits must stay close on all of them.
    probs = fp32.softmax(1)
    decided = (probs.max(1).values - probs.min(1).values) >= 0.1
    assert decided.sum() >= 50
    agree = fp32.argmax(1) == int8.argmax(1)
    assert float(agree[decided].float().mean()) >= 0.99
    assert float(agree.float().mean()) >= 0.9
    assert float((int8 - fp32).abs().mean()) <= 0.1 * float(fp32.abs().mean()) + 0.01
    # the report's fp32 column is the exact model scored on the validation split
    assert report.agreement >= 0.9
    assert 0.0 <= report.accuracy_int8 <= 1.0 and report.speedup > 0


def test_predict_int8_reports_the_change_every_time(cli, run, data):
    results = [cli("predict", run, data / "test1", "--json", "--quantize", "int8",
                   "--calibration-images", CALIBRATION) for _ in range(2)]
    for result in results:
        assert result.exit_code == 0, result.output
        assert "int8 (calibrated on 48 training images)" in result.stderr
        assert "log loss" in result.stderr and "accuracy" in result.stderr
    eager = json.loads(cli("predict", run, data / "test1", "--json").stdout)
    int8 = json.loads(results[0].stdout)
    pairs = list(zip(eager["predictions"], int8["predictions"]))
    assert [a["file"] for a, _ in pairs] == [b["file"] for _, b in pairs]
    # the labels agree wherever fp32 decides with a margin (near-ties may flip: see above)
    decided = [(a, b) for a, b in pairs if _margin(a["probabilities"]) >= 0.1]
    assert len(decided) >= len(pairs) // 3
    assert all(a["label"] == b["label"] for a, b in decided)
    for a, b in pairs:
        shift = max(abs(a["probabilities"][c] - b["probabilities"][c]) for c in a["probabilities"])
        assert shift < 0.1


def _margin(probabilities: dict[str, float]) -> float:
    return max(probabilities.values()) - min(probabilities.values())


def test_eval_and_submit_engines_agree_with_eager(cli, run, data, tmp_path):
    scores = {}
    for engine in ("eager", "onnxruntime"):
        result = cli("eval", run, "--json", "--engine", engine)
        assert result.exit_code == 0, result.output
        scores[engine] = json.loads(result.stdout)
    assert scores["onnxruntime"]["accuracy"] == scores["eager"]["accuracy"]
    assert scores["onnxruntime"]["log_loss"] == pytest.approx(scores["eager"]["log_loss"],
                                                              abs=1e-6)
    tables = {}
    for engine in ("eager", "onnxruntime"):
        out = tmp_path / f"{engine}.csv"
        result = cli("submit", run, "--test", data / "test1", "-o", out, "--engine", engine)
        assert result.exit_code == 0, result.output
        tables[engine] = np.loadtxt(out, delimiter=",", skiprows=1)
    assert tables["eager"][:, 0].tolist() == tables["onnxruntime"][:, 0].tolist()
    assert np.abs(tables["eager"][:, 1] - tables["onnxruntime"][:, 1]).max() < 1e-5


def test_engine_and_quantize_errors_are_one_line(cli, run, data):
    for args, message in ((("--engine", "tensorrt"), "--engine must be one of"),
                          (("--quantize", "int8", "--engine", "compiled"),
                           "int8 runs on the onnxruntime engine"),
                          (("--quantize", "int4"), "--quantize must be none or int8")):
        result = cli("predict", run, data / "test1", *args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert f"error: {message}" in result.stderr.splitlines()[0]


def test_int8_without_the_training_data_fails_cleanly(cli, run, data, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "inference", ignore_errors=True)
    record = json.loads((copy / "record.json").read_text())
    record["data_path"] = record["data"]["resolved_path"] = str(tmp_path / "moved")
    (copy / "record.json").write_text(json.dumps(record))
    result = cli("predict", copy, data / "test1", "--quantize", "int8")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "int8 calibration reads the run's training split" in result.stderr


def test_export_onnx_writes_the_folded_graph(cli, run, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = cli("export", run, "--to", "onnx", "-o", out)
    assert result.exit_code == 0, result.output
    kinds = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "Conv" in kinds and "BatchNormalization" not in kinds
