"""A newcomer's first hour with the runtime (issue 23): no footguns, honest output.

Real `archc` subprocesses on tiny synthetic data (runtime/synth.py): one run of
tests/fixtures/tiny.arch, one epoch on 40 images, trained once for the module and copied by
tests that change it. Each test names the item of the issue it holds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.data.synth import write_synthetic

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "fixtures" / "tiny.arch"
TINY = ("--epochs", "1", "--batch-size", "8", "--workers", "0")


def archc(*args, cwd: Path, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in `cwd`, as a user would (PYTHONPATH is inherited)."""
    environment = {**os.environ, "ARCHC_CACHE": str(cache), "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=300)


def ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return done


def one_error_line(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit 1 with a single `error: ...` line on stderr that holds every fragment."""
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Kaggle's layout, tiny: data/train/{cat,dog}.N.jpg and data/test1/1.jpg ... 4.jpg."""
    return write_synthetic(tmp_path_factory.mktemp("data") / "data", n=40, seed=0, test_n=4)


@pytest.fixture(scope="module")
def run(tmp_path_factory, data, cache) -> Path:
    """A run trained for one epoch from the data's parent folder with a RELATIVE --data."""
    home = data.parent
    ok(archc("train", SPEC, "--data", "data/train", "--run", "runs/tiny", *TINY,
             cwd=home, cache=cache))
    return home / "runs" / "tiny"


def copy_of(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


# --------------------------------------------------------------------------- 1: --data


def test_train_without_data_never_trains_on_the_current_folder(tmp_path, cache):
    """Run from inside an image folder: today that folder became the dataset."""
    train = write_synthetic(tmp_path / "d", n=40, seed=0) / "train"
    done = archc("train", SPEC, *TINY, cwd=train, cache=cache)
    one_error_line(done, "--data", "train:")
    assert not (train / "runs").exists()


def test_the_spec_train_section_may_name_the_data(tmp_path, cache):
    """`data = "PATH"` in train:, relative to the spec's folder, not the working one."""
    write_synthetic(tmp_path / "specs" / "d", n=40, seed=0)
    spec = tmp_path / "specs" / "tiny.arch"
    spec.write_text(SPEC.read_text().replace('device = "cpu"', 'device = "cpu"\n'
                                             '    data = "d/train"'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(archc("train", spec, "--run", "r", *TINY, cwd=elsewhere, cache=cache))
    record = json.loads((elsewhere / "r" / "record.json").read_text())
    assert record["data"]["resolved_path"] == str(tmp_path / "specs" / "d" / "train")
    hparams = json.loads((elsewhere / "r" / "hparams.json").read_text())
    assert "data" not in hparams["train"]  # a place, not a training setting


def test_help_marks_data_as_required(tmp_path, cache):
    done = ok(archc("train", "--help", cwd=tmp_path, cache=cache))
    block = done.stdout[done.stdout.index("--data"):][:300]
    assert "required" in block and "train:" in block


# --------------------------------------------------------------------------- 3: relative data


def test_eval_finds_relative_data_from_another_folder(run, tmp_path, cache):
    """The run trained on `data/train` relative to its home; eval runs from elsewhere."""
    record = json.loads((run / "record.json").read_text())
    assert record["data_path"] == "data/train"  # relative, as given
    done = ok(archc("eval", run, "--json", "--plot", tmp_path / "c.png", cwd=tmp_path,
                    cache=cache))
    report = json.loads(done.stdout)
    assert report["data"] == record["data"]["resolved_path"]
    assert report["split"] == "the run's validation split" and report["n"] == 8


def test_int8_calibration_finds_relative_data_from_another_folder(run, data, tmp_path, cache):
    done = ok(archc("predict", run, data / "test1" / "1.jpg", "--quantize", "int8",
                    "--calibration-images", "8", cwd=tmp_path, cache=cache))
    assert "calibrated on 8 training images" in done.stderr


# --------------------------------------------------------------------------- 5: which checkpoint


def test_predict_and_submit_name_the_checkpoint_and_epoch(run, data, tmp_path, cache):
    predicted = ok(archc("predict", run, data / "test1" / "1.jpg", cwd=tmp_path, cache=cache))
    submitted = ok(archc("submit", run, "--test", data / "test1", "-o", tmp_path / "s.csv",
                         cwd=tmp_path, cache=cache))
    for done in (predicted, submitted):
        assert f"using checkpoint best of {run} (epoch 1 of 1)" in done.stderr.splitlines()


def untrained_run(run: Path, tmp_path: Path) -> Path:
    """A copy of `run` as it looks during its first epoch: only `last`, written at epoch 0."""
    from runtime.training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint

    copy = copy_of(run, tmp_path)
    weights, _ = load_checkpoint(copy, "last")
    remove_checkpoint(copy, "best")
    remove_checkpoint(copy, "last")
    save_checkpoint(copy, "last", weights, {"epoch": 0, "step": 0})
    return copy


def test_a_checkpoint_from_before_the_first_epoch_is_refused(run, data, tmp_path, cache):
    copy = untrained_run(run, tmp_path)
    image = data / "test1" / "1.jpg"
    one_error_line(archc("predict", copy, image, cwd=tmp_path, cache=cache),
                   "before the first finished epoch", "--allow-untrained")
    one_error_line(archc("submit", copy, "--test", data / "test1", "-o", tmp_path / "s.csv",
                         cwd=tmp_path, cache=cache), "--allow-untrained")
    assert not (tmp_path / "s.csv").exists()
    allowed = ok(archc("predict", copy, image, "--allow-untrained", cwd=tmp_path, cache=cache))
    assert "(epoch 0 of 1, untrained)" in allowed.stderr


# --------------------------------------------------------------------------- 4: engines


def test_auto_says_which_engine_it_chose_and_why(run, data, tmp_path, cache):
    done = ok(archc("predict", run, data / "test1" / "1.jpg", cwd=tmp_path, cache=cache))
    lines = [line for line in done.stderr.splitlines() if line.startswith("engine: ")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("engine: eager (auto, for 1 image: eager about ")
    assert lines[0].endswith("too short a job for another engine's set-up to pay off)")


@pytest.mark.slow
def test_compiled_on_two_images_says_it_pays_setup_and_leaks_no_cuda_home(run, data, tmp_path,
                                                                          cache):
    """torch logs `No CUDA runtime is found, using CUDA_HOME=...` when inductor starts on a
    machine with a CUDA toolkit but no GPU; CUDA_HOME set to any folder provokes it."""
    images = [data / "test1" / f"{i}.jpg" for i in (1, 2)]
    done = ok(archc("predict", run, *images, "--engine", "compiled", cwd=tmp_path, cache=cache,
                    env={"CUDA_HOME": str(tmp_path)}))
    assert "CUDA_HOME" not in done.stdout + done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("engine: "))
    assert line.startswith("engine: compiled (as asked; it paid ")
    assert "of set-up before the first image, while eager needs about" in line
    assert "for all 2 images" in line


# --------------------------------------------------------------------------- 9: smaller things


def test_make_clean_removes_the_tool_caches(tmp_path):
    """A dry run (`make -n`): a real `make clean` would remove the .venv the tests run in."""
    done = subprocess.run(["make", "-n", "clean"], cwd=REPO, capture_output=True, text=True,
                          check=True)
    removed = done.stdout.split()
    for folder in (".hypothesis", ".ruff_cache", ".pytest_cache", "runs"):
        assert folder in removed, done.stdout


def test_bench_help_prints_help_instead_of_benchmarking(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bench") and "--quick" in done.stdout
    assert "== check" not in done.stdout


def _mode_open_gives() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def test_exported_safetensors_get_the_mode_of_every_other_file(run, tmp_path, cache):
    """safetensors' save_file creates 0600; archc's files follow the umask."""
    out = tmp_path / "model.py"
    ok(archc("export", run, "--to", "python", "-o", out, cwd=tmp_path, cache=cache))
    weights = out.with_suffix(".safetensors")
    assert weights.stat().st_mode & 0o777 == out.stat().st_mode & 0o777 == _mode_open_gives()
    assert (run / "best.safetensors").stat().st_mode & 0o777 == _mode_open_gives()


def test_export_exported_program_reloads_equal_at_any_batch(run, tmp_path, cache):
    import torch

    from runtime.after.inference import load_trained

    out = tmp_path / "tiny.pt2"
    done = ok(archc("export", run, "--to", "exported-program", "-o", out, cwd=tmp_path,
                    cache=cache))
    assert f"wrote {out}" in done.stdout and "normalised with mean" in done.stdout
    program = torch.export.load(str(out))
    model = load_trained(run).model
    for batch in (1, 5):
        x = torch.randn((batch, 3, 32, 32), generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-5)


def test_export_torchscript_says_it_is_deprecated(run, tmp_path, cache):
    done = ok(archc("export", run, "--to", "torchscript", "-o", tmp_path / "m.pt", cwd=tmp_path,
                    cache=cache))
    assert "deprecated" in done.stderr and "--to exported-program" in done.stderr
    assert (tmp_path / "m.pt").stat().st_size > 0


def test_every_eval_keeps_its_own_confusion_matrix(run, data, tmp_path, cache):
    copy = copy_of(run, tmp_path)
    first = ok(archc("eval", copy, cwd=tmp_path, cache=cache))
    second = ok(archc("eval", copy, "--data", data / "train", cwd=tmp_path, cache=cache))
    plots = sorted((copy / "eval").glob("*.png"))
    assert len(plots) == 2 and not (copy / "confusion.png").exists()
    assert plots[0].name.endswith("-train.png") or plots[1].name.endswith("-train.png")
    for done in (first, second):  # each eval says where its matrix went
        wrote = [line for line in done.stdout.splitlines() if line.startswith("wrote ")]
        assert len(wrote) == 1 and Path(wrote[0][len("wrote "):]) in plots


def test_the_image_cache_can_be_listed_and_cleared(data, tmp_path):
    from runtime.data.folders import STALE_BUILD_S, load_images

    cache = tmp_path / "cache"
    images = cache / "images"
    other = write_synthetic(tmp_path / "other", n=6, seed=1) / "train"
    for dataset in (data / "train", other):
        load_images(dataset, size=16, cache_dir=images, workers=0, progress=False)
    stale, young = images / ".old.npy.tmp-1", images / ".new.npy.tmp-2"
    for temp in (stale, young):
        temp.write_bytes(b"\0" * 10)
    an_hour_ago = os.path.getmtime(stale) - STALE_BUILD_S - 60
    os.utime(stale, (an_hour_ago, an_hour_ago))

    listed = ok(archc("data", "cache", "--list", cwd=tmp_path, cache=cache)).stdout
    assert "40 images of 16×16 (" in listed and str(data / "train") in listed
    assert "6 images of 16×16 (" in listed and str(other) in listed
    assert listed.count("unfinished build") == 2

    cleared = ok(archc("data", "cache", "--clear", other, cwd=tmp_path, cache=cache)).stdout
    assert "1 cached dataset(s)" in cleared
    listed = ok(archc("data", "cache", "--list", cwd=tmp_path, cache=cache)).stdout
    assert str(data / "train") in listed and str(other) not in listed

    ok(archc("data", "cache", "--clear", cwd=tmp_path, cache=cache))
    assert sorted(p.name for p in images.iterdir()) == [young.name]  # a build may still run
