"""`archc check` as a user runs it: a subprocess, its output and its exit status."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch"))

# Parameter counts of the matching torchvision models (googlenet with its aux heads).
TORCHVISION_PARAMS = {
    "alexnet.arch": 61_100_840,
    "vgg.arch": 138_357_544,
    "vgg_d.arch": 138_357_544,
    "googlenet.arch": 13_004_888,
    "resnet18.arch": 11_689_512,
    "resnet34.arch": 21_797_672,
    "resnet50.arch": 25_557_032,
    "resnet101.arch": 44_549_160,
    "resnet152.arch": 60_192_808,
}


def archc(*args: str, cwd: Path = ROOT, python_flags: tuple[str, ...] = ()
          ) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, *python_flags, "-m", "archc", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, encoding="utf-8",
                          timeout=120)


def write(tmp_path: Path, text: str, name: str = "spec.arch") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


BROKEN = """network tiny:
    input 3x32x32
    conv3-16(strid=2) relu
    flatten
    FC-10
"""


@pytest.mark.parametrize("spec", SPECS, ids=[p.name for p in SPECS])
def test_check_every_reference_spec(spec):
    proc = archc("check", f"specs/{spec.name}")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr == ""  # the reference specs check without warnings
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"OK \w+: \d+×\d+×\d+ → \d+( \(\+\d auxiliary outputs in training\))?",
                        lines[0]), lines[0]
    params = re.search(r"parameters: ([\d,]+)", proc.stdout)
    assert params and re.search(r"compute: [\d.]+ [KMG]?MACs", proc.stdout)
    assert re.search(r"valid input sizes: \S", proc.stdout)
    if spec.name in TORCHVISION_PARAMS:
        assert int(params.group(1).replace(",", "")) == TORCHVISION_PARAMS[spec.name]


def test_check_output_in_full():
    proc = archc("check", "specs/vgg.arch")
    assert proc.stdout == ("OK vgg: 3×224×224 → 1000\n"
                           "   parameters: 138,357,544   compute: 15.47 GMACs\n"
                           "   valid input sizes: any H×W ≥ 32×32\n")


def test_check_reports_auxiliary_outputs_and_input_bands():
    googlenet = archc("check", "specs/googlenet.arch")
    assert "(+2 auxiliary outputs in training)" in googlenet.stdout
    alexnet = archc("check", "specs/alexnet2012.arch")  # flatten + fc, no adaptive pool
    assert "valid input sizes: from 227×227 to 258×258" in alexnet.stdout


def test_broken_spec_exits_1_with_located_errors(tmp_path):
    spec = write(tmp_path, BROKEN)
    proc = archc("check", spec.name, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith("error[E102]: `conv` has no parameter `strid`\n"
                                  " --> spec.arch:3:14\n")
    assert "= hint: did you mean `stride`?" in proc.stderr
    assert proc.stderr.rstrip().endswith("1 error")
    assert "Traceback" not in proc.stderr


def test_warnings_only_exit_0(tmp_path):
    spec = write(tmp_path, "network n(unused=1):\n    input 3x8x8\n    conv3-8\n")
    proc = archc("check", spec.name, cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stderr.startswith("warning[W303]: parameter `unused` is never used")
    assert proc.stdout.startswith("OK n: 3×8×8 → 8×8×8")


def test_json_output_ok():
    proc = archc("check", "specs/resnet18.arch", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["diagnostics"] == []
    assert data["network"] == "resnet18"
    assert data["input"] == [3, 224, 224] and data["output"] == [1000]
    assert data["parameters"] == 11_689_512 and data["macs"] > 1_000_000_000
    assert data["input_sizes"] == {"smallest": 1, "step": 1, "largest": None}


def test_several_specs_in_one_run_like_a_linter(tmp_path):
    """A pre-commit hook passes every changed file: each is reported, the status is 1 if any
    has errors, and --json gives one object per spec, in order."""
    broken = write(tmp_path, BROKEN)
    good = write(tmp_path, "network n:\n    input 3x8x8\n    conv3-8\n", "good.arch")
    proc = archc("check", good.name, broken.name, good.name, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.count("OK n: 3×8×8 → 8×8×8") == 2
    assert proc.stderr.count("error[E102]") == 1 and "spec.arch:3:14" in proc.stderr
    both = archc("check", good.name, broken.name, "--json", cwd=tmp_path)
    assert both.returncode == 1
    data = json.loads(both.stdout)
    assert [(d["spec"], d["ok"]) for d in data] == [("good.arch", True), ("spec.arch", False)]
    ok = archc("check", "specs/resnet18.arch", "specs/vgg_d.arch")
    assert ok.returncode == 0 and ok.stdout.count("OK ") == 2
    missing = archc("check", "specs/resnet18.arch", "specs/nothere.arch")
    assert missing.returncode == 2 and "`specs/nothere.arch` not found" in missing.stderr
    assert missing.stdout == ""  # nothing is checked until every path exists


def test_json_output_with_errors(tmp_path):
    spec = write(tmp_path, BROKEN)
    proc = archc("check", spec.name, "--json", cwd=tmp_path)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)  # nothing but JSON on stdout
    assert data["ok"] is False and "network" not in data
    [diag] = data["diagnostics"]
    assert diag == {"code": "E102", "severity": "error",
                    "message": "`conv` has no parameter `strid`",
                    "hint": "did you mean `stride`?", "notes": [], "file": "spec.arch",
                    "line": 3, "column": 14}


def test_explain_lists_what_was_inferred():
    proc = archc("check", "specs/resnet18.arch", "--explain")
    assert proc.returncode == 0
    out = proc.stdout
    assert "   inferred:\n" in out
    assert "specs/resnet18.arch:6:12: conv1: in_channels = 3" in out
    assert "layer1.0.downsample: identity (64×56×56)" in out
    assert ("layer2.0.downsample: projection conv1×1/2 64→128 + bn (64×56×56 → 128×28×28)"
            in out)
    assert "specs/resnet18.arch:12:9: fc: in_features = 512" in out
    assert "inferred" not in archc("check", "specs/resnet18.arch").stdout


def test_missing_file_is_a_clear_error(tmp_path):
    proc = archc("check", "no/such/spec.arch", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == ("error: spec file `no/such/spec.arch` not found\n"
                           "  = hint: give the path of a .arch or .yaml file\n")


def test_set_variant_network_and_input_options(tmp_path):
    two = archc("check", "specs/resnet18.arch", "--set", "num_classes=2")
    assert two.returncode == 0 and "→ 2\n" in two.stdout
    a = archc("check", "specs/vgg.arch", "--variant", "A")
    assert a.returncode == 0 and "parameters: 132,863,336" in a.stdout  # torchvision vgg11
    bn = archc("check", "specs/vgg.arch", "--network", "vgg_bn", "--variant", "E")
    assert bn.returncode == 0 and bn.stdout.startswith("OK vgg_bn:")
    assert "parameters: 143,678,248" in bn.stdout  # torchvision vgg19_bn
    small = archc("check", "specs/resnet18.arch", "--input", "3x64x64")
    assert small.returncode == 0 and small.stdout.startswith("OK resnet18: 3×64×64 → 1000")


def test_bad_options(tmp_path):
    unknown = archc("check", "specs/vgg.arch", "--set", "num_class=2")
    assert unknown.returncode == 1
    assert "error[E102]: network `vgg` has no parameter `num_class`" in unknown.stderr
    assert "did you mean `num_classes`?" in unknown.stderr
    variant = archc("check", "specs/vgg.arch", "--variant", "F")
    assert variant.returncode == 1 and "error[E110]" in variant.stderr
    network = archc("check", "specs/vgg.arch", "--network", "vgg_bm")
    assert network.returncode == 1 and "did you mean `vgg_bn`" in network.stderr
    shape = archc("check", "specs/vgg.arch", "--input", "3x0x4")
    assert shape.returncode == 2 and "--input expects C×H×W" in shape.stderr
    no_value = archc("check", "specs/vgg.arch", "--set", "num_classes")
    assert no_value.returncode == 2 and "--set expects NAME=VALUE" in no_value.stderr
    small = archc("check", "specs/vgg.arch", "--input", "3x16x16")
    assert small.returncode == 1 and "error[E202]" in small.stderr
    for proc in (unknown, variant, network, shape, no_value, small):
        assert "Traceback" not in proc.stdout + proc.stderr


def test_unknown_network_option_does_not_blame_line_1():
    proc = archc("check", "specs/vgg.arch", "--network", "vgg_bm")
    assert proc.returncode == 1 and "no network called `vgg_bm`" in proc.stderr
    assert "1 | # VGG" not in proc.stderr


def test_yaml_spec(tmp_path):
    spec = write(tmp_path, "- network: n\n  input: [3, 8, 8]\n  body: [conv3-8, relu]\n",
                 "n.yaml")
    proc = archc("check", spec.name, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("OK n: 3×8×8 → 8×8×8")


def test_check_never_imports_torch_or_the_runtime():
    proc = archc("check", "specs/resnet34.arch", python_flags=("-X", "importtime"))
    assert proc.returncode == 0 and proc.stdout.startswith("OK resnet34")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert len(lines) > 50  # -X importtime really reported
    assert not [line for line in lines if "torch" in line]
    modules = [line.rsplit("|", 1)[-1].strip() for line in lines]
    assert not [m for m in modules if m == "runtime" or m.startswith("runtime.")]


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`archc check ... | head -1`: when the reader has gone, archc stops without a traceback.

    The reader end of a real pipe is closed first, so every write fails with EPIPE.
    """
    import io

    from archc.cli.main import main

    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = io.TextIOWrapper(os.fdopen(write_end, "wb", buffering=0), write_through=True)
    monkeypatch.setattr(sys, "stdout", closed)
    with pytest.raises(SystemExit) as stop:
        main(["check", str(ROOT / "specs/resnet18.arch")])
    assert stop.value.code == 141
    assert "Traceback" not in capsys.readouterr().err


def test_version_is_the_installed_distributions():
    """`archc --version` (the fast path) and the typer app's option print the same line, and
    it names the version pip installed."""
    from importlib.metadata import version

    from typer.testing import CliRunner

    from archc.cli.app import app

    proc = archc("--version")
    expected = f"archc {version('archc')} (Python {sys.version.split()[0]})"
    assert proc.returncode == 0 and proc.stdout.strip() == expected
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == expected
    assert "--version" in CliRunner().invoke(app, ["--help"]).output


def test_the_console_script_ends_a_check_without_teardown_and_loses_no_output(tmp_path):
    """The real command line exits straight after a plain check (no interpreter teardown):
    the output must be whole, written to a file, and the exit status the check's."""
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    spec = tmp_path / "bad.arch"
    spec.write_text("network n:\n    input 3x8x8\n    conv3-4 relux\n")
    with open(good, "w") as out:
        done = subprocess.run([sys.executable, "-m", "archc", "check", "--json",
                               str(ROOT / "specs/resnet18.arch")], stdout=out)
    assert done.returncode == 0
    assert json.loads(good.read_text())["parameters"] == 11_689_512
    with open(bad, "w") as out:
        done = subprocess.run([sys.executable, "-m", "archc", "check", str(spec)],
                              stdout=out, stderr=subprocess.STDOUT)
    assert done.returncode == 1
    assert bad.read_text().rstrip().endswith("1 error")
