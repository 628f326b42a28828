"""The zoo: specs/zoo.yaml names torchvision's 80 classification builders, and one cheap
member of every family verifies exactly against torchvision (parameters at 1000 and 2
classes, strict state_dict loading, outputs after randomising every norm's statistics).

AlexNet, VGG, GoogLeNet and the single-file ResNets are verified in tests/test_torchvision.py;
The transformer families (ViT, Swin, MaxViT) are checked at small dimensions in
tests/test_transformers.py; `archc verify --zoo` runs all 80 (docs/zoo.md holds its table).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from archc.tools.verify import TOLERANCE, describe, torchvision_names, verify
from archc.zoo import Entry, load_zoo

ROOT = Path(__file__).resolve().parent.parent
ZOO = load_zoo()

# One cheap member per family (the smallest, at 64×64 unless the entry says otherwise).
CHEAP = [
    "resnet18",
    "resnext50_32x4d",
    "squeezenet1_1",
    "densenet121",
    "mnasnet0_5",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "shufflenet_v2_x0_5",
    "regnet_y_400mf",
    "inception_v3",  # at 299×299: its auxiliary head needs 17×17 at Mixed_6e
]


def test_zoo_names_exactly_torchvisions_classification_builders():
    assert sorted(ZOO) == sorted(torchvision_names())
    assert len(ZOO) == 80  # the 68 CNNs, 5 ViTs, 6 Swins and MaxViT


def test_every_zoo_entry_points_at_a_spec_file():
    missing = sorted({e.spec.name for e in ZOO.values() if not e.spec.exists()})
    written = sorted({e.spec.name for e in ZOO.values() if e.spec.exists()})
    assert written, "no family spec exists"
    assert not missing, f"specs not written: {missing}"


@pytest.mark.parametrize("name", CHEAP)
def test_cheap_member_of_each_family_is_exact(name):
    report = verify(ZOO[name])
    assert report.exact, describe(report)
    assert report.relative <= TOLERANCE
    counts = report.params[1000]
    assert counts[0] == counts[1] == counts[2] and report.params[2][0] < counts[0]


def test_the_oracle_tells_a_swapped_branch_order_apart(tmp_path):
    """Same parameters, same keys, strict loading succeeds: only the outputs can tell that
    the fire module concatenates its expand branches in the wrong order."""
    text = (ROOT / "specs" / "squeezenet.arch").read_text(encoding="utf-8")
    one = "        expand1x1: conv1-{e1}  expand1x1_activation: relu\n"
    three = "        expand3x3: conv3-{e3}  expand3x3_activation: relu\n"
    assert one + three in text
    spec = tmp_path / "swapped.arch"
    spec.write_text(text.replace(one + three, three + one), encoding="utf-8")
    report = verify(Entry("squeezenet1_1", spec, sets={"version": "v1_1"}))
    assert report.params_ok and report.load_error is None
    assert report.relative > 1e-3 and not report.exact
    assert "MISMATCH" in describe(report)


def test_the_oracle_tells_relu_from_relu6(tmp_path):
    """With BN statistics randomised, activations exceed 6: relu6 and relu differ."""
    text = (ROOT / "specs" / "mobilenet.arch").read_text(encoding="utf-8")
    spec = tmp_path / "relu.arch"
    spec.write_text(text.replace("relu6", "relu"), encoding="utf-8")
    report = verify(Entry("mobilenet_v2", spec, network="mobilenet_v2"))
    assert report.params_ok and report.load_error is None and not report.exact


def run_verify(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "archc", "verify", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_verify_exact_and_mismatch():
    ok = run_verify("specs/squeezenet.arch", "--against", "torchvision:squeezenet1_1",
                    "--set", "version=v1_1")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "load_state_dict(strict=True): ok" in ok.stdout and "exact" in ok.stdout
    wrong = run_verify("specs/squeezenet.arch", "--against", "torchvision:squeezenet1_0",
                       "--set", "version=v1_1")
    assert wrong.returncode == 1 and "MISMATCH" in wrong.stdout


def test_cli_verify_usage_errors_are_one_line():
    missing = run_verify("specs/nope.arch", "--against", "torchvision:resnet18")
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bare = run_verify("specs/resnet.arch")
    assert bare.returncode == 2 and "--against torchvision:NAME" in bare.stderr


def test_standalone_python_of_a_zoo_spec_is_exact_too(tmp_path):
    """`archc compile -o` emits torch-only source: MobileNetV3-small's SE gates, optional
    residuals and per-row activations load torchvision's weights and give its outputs."""
    import importlib.util

    import torch

    import archc
    from archc.backends.pysource import python_source
    from archc.tools.verify import randomize_statistics, reference

    path = tmp_path / "mobilenet_v3_small.py"
    path.write_text(python_source(archc.load(ROOT / "specs" / "mobilenet.arch",
                                             network="mobilenet_v3_small")), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("emitted", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MobilenetV3Small().eval()
    tv = reference("mobilenet_v3_small").eval()
    randomize_statistics(tv)
    model.load_state_dict(tv.state_dict(), strict=True)
    x = 8 * torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, want = model(x), tv(x)
    assert float((got - want).abs().max()) <= TOLERANCE * float(want.abs().max())


# torchvision's model file(s) of each family spec (docs/zoo.md has the table)
FAMILY_SOURCES = {
    "alexnet.arch": ["alexnet.py"], "vgg.arch": ["vgg.py"], "googlenet.arch": ["googlenet.py"],
    "inception_v3.arch": ["inception.py"], "resnet.arch": ["resnet.py"],
    "squeezenet.arch": ["squeezenet.py"], "densenet.arch": ["densenet.py"],
    "mnasnet.arch": ["mnasnet.py"], "mobilenet.arch": ["mobilenetv2.py", "mobilenetv3.py"],
    "shufflenet.arch": ["shufflenetv2.py"], "efficientnet.arch": ["efficientnet.py"],
    "regnet.arch": ["regnet.py"], "convnext.arch": ["convnext.py"],
    "vit.arch": ["vision_transformer.py"], "swin.arch": ["swin_transformer.py"],
    "maxvit.arch": ["maxvit.py"],
}


def python_code_lines(path: Path) -> int:
    """Lines holding code: no blank lines, comments, docstrings, imports or weight enums."""
    import ast
    import io
    import tokenize

    source = path.read_text(encoding="utf-8")
    skipped: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        weights = isinstance(node, ast.ClassDef) and any(
            getattr(b, "id", "") == "WeightsEnum" for b in node.bases)
        docstring = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                     and isinstance(node.value.value, str))
        if weights or docstring or isinstance(node, ast.Import | ast.ImportFrom):
            skipped.update(range(node.lineno, node.end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
            lines.update(set(range(tok.start[0], tok.end[0] + 1)) - skipped)
    return len(lines)


def test_every_family_spec_is_shorter_than_torchvisions_python():
    import torchvision.models

    models = Path(torchvision.models.__file__).parent
    assert set(FAMILY_SOURCES) == {e.spec.name for e in ZOO.values()}
    for spec, sources in FAMILY_SOURCES.items():
        text = (ROOT / "specs" / spec).read_text(encoding="utf-8").splitlines()
        arch = sum(1 for line in text if line.strip() and not line.strip().startswith("#"))
        python = sum(python_code_lines(models / s) for s in sources)
        assert arch < python / 2, (spec, arch, python)
