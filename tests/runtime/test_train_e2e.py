"""`archc train` end to end on data the project generates: real JPEGs, the real loader,
the real loop. The job the project exists for, at test size."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from runtime.data.synth import write_synthetic

ROOT = Path(__file__).resolve().parents[2]
LEARNER = ROOT / "tests" / "fixtures" / "learner.arch"


def archc(*args: str, cache: Path) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess, as a user would."""
    env = {**os.environ, "ARCHC_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "archc", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_small_spec_learns_synthetic_data_to_90_percent(tmp_path):
    data = write_synthetic(tmp_path / "data", n=600, seed=3)
    run = tmp_path / "run"
    done = archc("train", str(LEARNER), "--data", str(data / "train"), "--run", str(run),
                 "--deterministic", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 10
    best = max(r["val_acc"] for r in records)
    assert best >= 0.90, [round(r["val_acc"], 3) for r in records]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert (run / "curves.png").stat().st_size > 0 and (run / "best.safetensors").exists()


def _bad_files(folder: Path, good: Path) -> dict[str, str]:
    """Add every kind of bad and odd file next to real images; returns the bad names."""
    jpeg = good.read_bytes()
    (folder / "cat.9001.jpg").write_bytes(os.urandom(3000))             # corrupt
    (folder / "dog.9002.jpg").write_bytes(jpeg[: len(jpeg) // 2])         # truncated
    (folder / "cat.9003.jpg").write_bytes(b"")                           # empty
    (folder / "dog.9004.jpg").write_text("not an image at all\n")        # text
    img = Image.open(good).convert("RGB")
    img.convert("CMYK").save(folder / "cat.9005.jpg", "JPEG")            # CMYK: readable
    img.convert("L").save(folder / "dog.9006.jpg", "JPEG")               # greyscale: readable
    img.convert("RGBA").save(folder / "cat.9007.jpg", "PNG")             # a PNG named .jpg
    return {"cat.9001.jpg", "dog.9002.jpg", "cat.9003.jpg", "dog.9004.jpg"}


def test_bad_files_are_skipped_and_reported_exactly(tmp_path):
    data = write_synthetic(tmp_path / "data", n=40, seed=1)
    train = data / "train"
    bad = _bad_files(train, train / "cat.0.jpg")
    run = tmp_path / "run"
    done = archc("train", "tests/fixtures/tiny.arch", "--data", str(train), "--run", str(run),
                 "--epochs", "1", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "skipped 4 unreadable file(s)" in done.stdout
    listed = {Path(line.split("\t")[0]).name for line in
              (run / "skipped.txt").read_text().splitlines()}
    assert listed == bad
    record = json.loads((run / "record.json").read_text())
    assert record["counts"]["skipped"] == 4
    assert record["counts"]["train"] + record["counts"]["val"] == 40 + 3  # the odd ones load


def test_resume_refuses_a_changed_spec_and_shows_the_change(tmp_path):
    data = write_synthetic(tmp_path / "data", n=24, seed=2)
    spec = tmp_path / "tiny.arch"
    spec.write_text((ROOT / "tests/fixtures/tiny.arch").read_text())
    run = tmp_path / "run"
    first = archc("train", str(spec), "--data", str(data / "train"), "--run", str(run),
                  "--epochs", "1", cache=tmp_path / "cache")
    assert first.returncode == 0, first.stderr
    spec.write_text(spec.read_text().replace("conv3-16 bn relu\n", "conv3-32 bn relu\n"))
    again = archc("train", str(spec), "--resume", str(run), "--epochs", "2",
                  cache=tmp_path / "cache")
    assert again.returncode == 1
    assert "conv3-32" in again.stderr and "conv3-16" in again.stderr  # the diff is shown
    assert "Traceback" not in again.stderr


def test_augmentation_is_overridable_on_the_command_line(tmp_path):
    """The spec's train section sets the augmentation; the CLI overrides each knob."""
    data = write_synthetic(tmp_path / "data", n=30, seed=4)
    run = tmp_path / "run"
    done = archc("train", "tests/fixtures/tiny.arch", "--data", str(data / "train"), "--run",
                 str(run), "--epochs", "1", "--scale", "0.5,1", "--ratio", "0.9,1.1",
                 "--rotation", "10", "--hflip", "0", "--amp", "bf16", "--channels-last",
                 cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    saved = json.loads((run / "hparams.json").read_text())["train"]
    assert saved["amp"] == "bf16" and saved["channels_last"] is True
    assert saved["scale"] == [0.5, 1.0] and saved["ratio"] == [0.9, 1.1]
    assert saved["rotation"] == 10.0 and saved["hflip"] == 0.0
    bad = archc("train", "tests/fixtures/tiny.arch", "--data", str(data / "train"),
                "--scale", "0.5", cache=tmp_path / "cache")
    assert bad.returncode == 1 and "--scale expects MIN,MAX" in bad.stderr
    tiny = archc("train", "tests/fixtures/tiny.arch", "--data", str(data / "train"),
                 "--batch-size", "64", "--run", str(tmp_path / "r2"), cache=tmp_path / "cache")
    assert tiny.returncode == 1 and "make no full batch of 64" in tiny.stderr
    assert "Traceback" not in tiny.stderr


def test_user_errors_are_messages_not_tracebacks(tmp_path):
    data = write_synthetic(tmp_path / "data", n=20, seed=5)
    cases = {
        ("--data", str(data / "train"), "--optimizer", "foo"): "train.optimizer",
        ("--data", str(tmp_path / "nowhere")): "not found",
        ("--resume", str(tmp_path / "no-run")): "is not a run folder",
    }
    for args, expected in cases.items():
        done = archc("train", "tests/fixtures/tiny.arch", *args, "--run", str(tmp_path / "r"),
                     cache=tmp_path / "cache")
        assert done.returncode == 1, args
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr
