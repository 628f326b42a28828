"""`archc train` with no tuning flags, as a user runs it (real CLI subprocesses, real JPEGs):
the start header, progress lines in a pipe, the LR range test's record, `archc runs` over two
real runs, `archc lr-find`, and what a resume says or refuses."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.data.synth import write_synthetic

ROOT = Path(__file__).resolve().parents[2]
SPEC = """network tiny(num_classes=2, width=8):
    input 3x16x16
    features: [conv3-{width} bn relu maxpool  conv3-{width*2} bn relu]
    pool: global-avgpool
    flatten
    fc: FC-{num_classes}

train:
    batch_size = 8
    cache_size = 24
    workers = 0
    device = "cpu"
"""


def archc(*args: str, cache: Path, **env: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, its output piped (not a terminal)."""
    full = {**os.environ, "ARCHC_CACHE": str(cache), **env}
    return subprocess.run([sys.executable, "-m", "archc", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished one-epoch runs: the defaults, and the lecture recipe at a fixed rate."""
    root = tmp_path_factory.mktemp("defaults")
    data = write_synthetic(root / "data", n=48, seed=2) / "train"
    spec = root / "tiny.arch"
    spec.write_text(SPEC)
    cache = root / "cache"
    runs = root / "runs"
    first = archc("train", str(spec), "--data", str(data), "--epochs", "1",
                  "--run", str(runs / "a"), cache=cache, ARCHC_PROGRESS_EVERY="0")
    assert first.returncode == 0, first.stdout + first.stderr
    second = archc("train", str(spec), "--data", str(data), "--epochs", "1", "--recipe",
                   "lecture", "--lr", "0.05", "--run", str(runs / "b"), cache=cache)
    assert second.returncode == 0, second.stdout + second.stderr
    return root, spec, data, cache, runs, first, second


@pytest.mark.slow
def test_defaults_print_a_header_progress_and_record_the_range_test(two_runs):
    root, _, _, _, runs, first, second = two_runs
    out = first.stdout
    for line in ("device cpu", "38 training and 10 validation images at 16x16, 2 classes",
                 "recipe from-scratch: ", "(LR range test)", "run folder",
                 "LR range test chose", "label smoothing 0.1"):
        assert line in out, out
    assert "batch 1/4" in out and "ETA" in out  # the plain progress line of a pipe
    record = json.loads((runs / "a" / "record.json").read_text())
    hparams = json.loads((runs / "a" / "hparams.json").read_text())
    assert hparams["train"]["lr"] == record["lr_finder"]["lr"] and record["lr_finder"]["rule"]
    assert record["model"]["params"] > 0 and record["model"]["init"] == "random"
    assert (runs / "a" / "lr_finder.png").stat().st_size > 0
    assert "LR range test" not in second.stdout  # a fixed rate needs none
    assert "recipe lecture: sgd lr 0.05" in second.stdout


@pytest.mark.slow
def test_runs_table_over_two_real_runs(two_runs, tmp_path):
    root, _, _, cache, runs, _, _ = two_runs
    md, table_csv, png = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "acc.png"
    done = archc("runs", str(runs), "--md", str(md), "--csv", str(table_csv), "--plot",
                 str(png), cache=cache)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = list(csv.DictReader(table_csv.open()))
    assert sorted(r["run"] for r in rows) == ["a", "b"]
    for row in rows:
        metrics = [json.loads(x) for x in (runs / row["run"] / "metrics.jsonl").read_text()
                   .splitlines()]
        assert float(row["best_val_acc"]) == pytest.approx(max(m["val_acc"] for m in metrics))
        assert row["network"] == "tiny" and int(row["epochs"]) == 1 and int(row["params"]) > 0
    assert {r["recipe"] for r in rows} == {"from-scratch", "lecture"}
    text = md.read_text()
    assert text.startswith("| run | network | params | MACs | best val acc |")
    assert text.count("| tiny |") == 2 and png.stat().st_size > 0
    assert "from-scratch" in done.stdout and "lecture" in done.stdout


@pytest.mark.slow
def test_resume_of_a_finished_run_hints_epochs_and_a_changed_spec_is_refused_first(two_runs,
                                                                                    tmp_path):
    root, spec, data, _, runs, _, _ = two_runs
    fresh_cache = tmp_path / "cache"  # nothing cached: a decode would have to happen here
    done = archc("train", str(spec), "--resume", str(runs / "b"), cache=fresh_cache)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already finished its 1 epochs" in done.stdout and "--epochs 2" in done.stdout
    assert "decoding" not in done.stdout + done.stderr  # said before any image was read
    fresh_cache = tmp_path / "cache2"
    changed = tmp_path / "changed.arch"
    changed.write_text(SPEC.replace("width=8", "width=12"))
    refused = archc("train", str(changed), "--resume", str(runs / "a"), cache=fresh_cache)
    assert refused.returncode == 1
    assert "the model changed" in refused.stderr, refused.stderr
    assert "decoding" not in refused.stdout + refused.stderr
    assert not (fresh_cache / "images").exists() or not any((fresh_cache / "images").iterdir())


@pytest.mark.slow
def test_lr_find_prints_the_suggestion(two_runs, tmp_path):
    root, spec, data, cache, _, _, _ = two_runs
    done = archc("lr-find", str(spec), "--data", str(data), "--out", str(tmp_path), cache=cache)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "suggested: --optimizer " in done.stdout and " --lr " in done.stdout
    finding = json.loads((tmp_path / "lr_finder.json").read_text())
    assert f"--lr {finding['lr']:.3g}" in done.stdout
    assert (tmp_path / "lr_finder.png").exists()


def test_mlflow_without_the_package_is_one_clear_line(tmp_path):
    pytest.importorskip("torch")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("mlflow is installed here")
    spec = tmp_path / "tiny.arch"
    spec.write_text(SPEC)
    done = archc("train", str(spec), "--data", str(tmp_path), "--mlflow", "file:./mlruns",
                 cache=tmp_path / "cache")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: --mlflow needs the mlflow package, which is not installed (pip install "
        "mlflow), or leave --mlflow out"]
