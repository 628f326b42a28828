"""`archc verify --against timm:NAME`: timm as a second oracle, with the same randomised
comparison as torchvision's (parameters at 1000 and 2 classes, strict state_dict loading,
outputs after every norm's statistics and every layer scale are randomised)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archc.tools.verify import ORACLES, describe, oracle_for, randomize_statistics, verify
from archc.zoo import Entry

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "specs" / "resnet.arch"


def test_the_oracles_are_a_registry_of_torchvision_and_timm():
    assert set(ORACLES) >= {"torchvision", "timm"}
    for name, oracle in ORACLES.items():
        assert oracle.name == name and callable(oracle.build) and callable(oracle.names)
        assert oracle.index.suffix == ".yaml"
    with pytest.raises(ValueError, match="known: torchvision, timm"):
        oracle_for("keras")


def test_torchvisions_resnet_spec_is_exact_against_timms_resnet18():
    """timm's resnet18 keeps torchvision's names (conv1, layer1.0.bn1, downsample.0, fc)."""
    report = verify(Entry("resnet18", RESNET, network="resnet18", oracle="timm"))
    assert report.exact, describe(report)
    assert report.params[1000] == (11_689_512,) * 3 and report.params[2][2] == 11_177_538
    assert "against timm:resnet18" in describe(report) and "timm 11,689,512" in describe(report)


def test_the_timm_oracle_tells_relu_from_relu6(tmp_path):
    """Same parameters and keys, so strict loading succeeds: only the randomised outputs can
    tell the stem's relu6 from timm's relu."""
    text = RESNET.read_text(encoding="utf-8")
    assert "relu: relu  maxpool" in text
    spec = tmp_path / "relu6.arch"
    spec.write_text(text.replace("relu: relu  maxpool", "relu: relu6  maxpool"), encoding="utf-8")
    report = verify(Entry("resnet18", spec, network="resnet18", oracle="timm"))
    assert report.params_ok and report.load_error is None
    assert report.relative > 1e-3 and not report.exact and "MISMATCH" in describe(report)


def test_an_unknown_timm_model_is_a_reported_problem():
    report = verify(Entry("no_such_net", RESNET, network="resnet18", oracle="timm"))
    assert not report.exact and "timm has no model `no_such_net`" in report.problem


def test_timms_layer_scales_and_zero_gains_are_randomised():
    """timm names its layer scales `gamma` (ConvNeXt), and NF-ResNet starts its skip-init
    gains at zero: left alone, a spec missing either could not be told apart."""
    import timm
    import torch

    model = timm.create_model("convnext_atto", pretrained=False, num_classes=2)
    with torch.no_grad():
        model.stages[0].blocks[0].gamma.fill_(1e-6)
    randomize_statistics(model)
    gamma = model.stages[0].blocks[0].gamma.detach()
    assert bool((gamma >= 0.5).all()) and float(gamma.std()) > 0.05
    gain = torch.nn.Parameter(torch.zeros(()))
    holder = torch.nn.Module()
    holder.skipinit_gain = gain
    randomize_statistics(holder)
    assert float(gain.detach()) != 0.0


def run_verify(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "archc", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_verify_against_timm_exact_and_mismatch():
    ok = run_verify("specs/resnet.arch", "-n", "resnet18", "--against", "timm:resnet18")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "against timm:resnet18" in ok.stdout and "load_state_dict(strict=True): ok" in ok.stdout
    wrong = run_verify("specs/resnet.arch", "-n", "resnet34", "--against", "timm:resnet18")
    assert wrong.returncode == 1 and "MISMATCH" in wrong.stdout


def test_cli_verify_unknown_library_is_one_line():
    bad = run_verify("specs/resnet.arch", "--against", "keras:resnet18")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "`keras` is not a library" in bad.stderr and "torchvision, timm" in bad.stderr


def test_timm_is_imported_only_when_verify_runs():
    code = ("import sys, archc.tools.verify, archc.cli.verify, archc.zoo; "
            "print('timm' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ}, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_cli_verify_zoo_against_timm_runs_the_timm_index():
    """`--zoo --against timm` runs specs/timm/index.yaml (here one entry), not zoo.yaml."""
    done = run_verify("--zoo", "--against", "timm", "--only", "dpn48b")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| timm model |" in done.stdout and "| dpn48b | specs/timm/dpn.arch |" in done.stdout
    assert "1/1 exact" in done.stdout
    bad = run_verify("--zoo", "--against", "keras")
    assert bad.returncode == 2 and "`keras` is not a library" in bad.stderr
