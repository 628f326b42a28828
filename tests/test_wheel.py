"""The wheel works away from the repository, as timm's and torchvision's do: built from this
checkout, installed into a fresh environment in another folder, it carries the zoo, builds
and checks networks by name, finds the runtime's verbs, and installs no top-level name but
`archc`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of what it packages (setuptools keeps a build/ folder in
    the tree it builds, and a stale one would put deleted files in the wheel)."""
    source = tmp_path_factory.mktemp("source")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("archc", "runtime", "specs"):
        shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(source)], check=True)
    (found,) = out.glob("archc-*.whl")
    return found


@pytest.fixture(scope="module")
def env(wheel, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed; the pinned dependencies come from this
    interpreter's site-packages through a folder of links that leaves the checkout's own
    editable archc out."""
    where = tmp_path_factory.mktemp("env")
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    deps = where / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("archc", "__editable__")) and \
                entry.suffix != ".pth":
            (deps / entry.name).symlink_to(entry)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(f"{deps}\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True)
    return {"python": str(venv / "bin" / "python"), "archc": str(venv / "bin" / "archc"),
            "cwd": str(where)}


def _run(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    return subprocess.run(list(args), cwd=env["cwd"], env=clean, capture_output=True,
                          text=True, timeout=600)


def test_the_wheel_installs_only_archc(wheel):
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"archc"}


def test_the_wheel_carries_the_zoo_and_builds_by_name(env):
    code = ("import archc, pathlib; names = archc.list_models(); print(len(names)); "
            "m = archc.build('resnet50', num_classes=2); "
            "print(sum(p.numel() for p in m.parameters())); print(archc.__file__)")
    done = _run(env, env["python"], "-c", code)
    assert done.returncode == 0, done.stderr
    count, params, where = done.stdout.split()
    assert int(count) >= 68
    assert int(params) == 23_512_130  # torchvision's resnet50 with a 2-class head
    assert str(ROOT) not in where


def test_the_installed_command_checks_and_verifies_by_name(env):
    check = _run(env, env["archc"], "check", "resnet34")
    assert check.returncode == 0, check.stderr
    assert "OK resnet34" in check.stdout and "21,797,672" in check.stdout
    listed = _run(env, env["archc"], "verify", "--help")
    assert listed.returncode == 0 and "--zoo" in listed.stdout


def test_the_runtime_verbs_come_with_the_wheel(env):
    done = _run(env, env["archc"], "train", "--help")
    assert done.returncode == 0, done.stderr
    assert "--data" in done.stdout
    assert _run(env, env["python"], "-c", "import runtime").returncode != 0
