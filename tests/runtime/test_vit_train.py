"""`archc train specs/vit.arch --network vit_b_16 --init torchvision` on synthetic Dogs-vs-Cats,
then the run's predictions through ONNX Runtime (exact) and int8 (within its tolerance).

Nothing downloads: TORCH_HOME points at a folder holding, under the file name torchvision's
ViT_B_16 weights are cached as, the state dict of torchvision's own builder with random weights.
`--init torchvision` reads it as it would read the downloaded file. The fine-tuning recipe
freezes the backbone for the first epoch, so after one epoch every tensor but the new 2-class
head must still be the file's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from safetensors.torch import load_file

from runtime.data.synth import write_synthetic

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGES = 3

pytestmark = pytest.mark.slow  # ViT-B/16 on the CPU: minutes, most of them ONNX export


def archc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict:
    """Data, a torch hub cache holding torchvision's randomly initialised ViT-B/16, and the env."""
    root = tmp_path_factory.mktemp("vit")
    data = write_synthetic(root / "data", n=8, seed=0, test_n=TEST_IMAGES)
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    url = torchvision.models.ViT_B_16_Weights.DEFAULT.url
    weights = hub / Path(urlparse(url).path).name
    torch.manual_seed(0)
    torch.save(torchvision.models.vit_b_16(weights=None).state_dict(), weights)
    env = {"TORCH_HOME": str(root / "torch"), "ARCHC_CACHE": str(root / "cache")}
    return {"data": data, "weights": weights, "env": env, "run": root / "run"}


@pytest.fixture(scope="module")
def run(workspace) -> Path:
    done = archc("train", "specs/vit.arch", "--network", "vit_b_16", "--init", "torchvision",
                 "--data", workspace["data"] / "train", "--run", workspace["run"],
                 "--epochs", 1, "--batch-size", 2, "--lr", 0.001, env=workspace["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "initialised from torchvision" in done.stdout
    assert "re-initialised heads.head (num_classes 1000 → 2)" in done.stdout
    return workspace["run"]


def test_vit_b_16_fine_tunes_from_torchvisions_weights(run, workspace):
    record = json.loads((run / "record.json").read_text())
    assert record["counts"]["train"] + record["counts"]["val"] == 8
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    trained = load_file(str(run / "best.safetensors"))
    source = torch.load(workspace["weights"], weights_only=True)
    assert trained.keys() == source.keys()
    head = {"heads.head.weight", "heads.head.bias"}
    assert trained["heads.head.weight"].shape == (2, 768)
    # the backbone, frozen for the first epoch, is the file's to the bit
    assert all(torch.equal(trained[k], source[k]) for k in trained.keys() - head)


def _predict(run: Path, workspace: dict, *options: str) -> dict:
    done = archc("predict", run, workspace["data"] / "test1", "--json", *options,
                 env=workspace["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "out-of-range" not in done.stderr  # ONNX Runtime's quantizer has nothing to warn of
    return json.loads(done.stdout)


def _probabilities(result: dict) -> torch.Tensor:
    return torch.tensor([[p["probabilities"][c] for c in ("cat", "dog")]
                         for p in result["predictions"]])


# exporting ViT-B/16 to ONNX takes minutes of the 2-core machine: opt-in, as the fuzz is
# (`pytest -m large`); tests/runtime/test_vit_engines.py holds the same on a small vit_b_16
@pytest.mark.large
def test_onnxruntime_and_int8_predict_what_the_trained_vit_does(run, workspace):
    eager = _predict(run, workspace, "--engine", "eager")
    onnx = _predict(run, workspace, "--engine", "onnxruntime")
    int8 = _predict(run, workspace, "--quantize", "int8")
    files = [p["file"] for p in eager["predictions"]]
    assert len(files) == TEST_IMAGES
    for other in (onnx, int8):
        assert [p["file"] for p in other["predictions"]] == files
    want = _probabilities(eager)
    assert float((_probabilities(onnx) - want).abs().max()) < 1e-5  # exact
    # int8, as test_infer_int8 holds it: no probability moves by 0.1 or more
    assert float((_probabilities(int8) - want).abs().max()) < 0.1


# exporting ViT-B/16 to ONNX takes minutes of the 2-core machine: opt-in, as the fuzz is
# (`pytest -m large`); tests/runtime/test_vit_engines.py holds the same on a small vit_b_16
@pytest.mark.large
def test_eval_through_onnxruntime_scores_what_eager_scores(run, workspace):
    scores = {}
    for engine in ("eager", "onnxruntime"):
        done = archc("eval", run, "--json", "--engine", engine, env=workspace["env"])
        assert done.returncode == 0, done.stdout + done.stderr
        scores[engine] = json.loads(done.stdout)
    assert scores["onnxruntime"]["accuracy"] == scores["eager"]["accuracy"]
    assert scores["onnxruntime"]["log_loss"] == pytest.approx(scores["eager"]["log_loss"],
                                                              abs=1e-6)
