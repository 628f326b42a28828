"""Hostile run folders: resuming on other data, two trainers in one folder, and run folders,
working directories and caches that cannot be written.

Items 10, 11 and the run-folder parts of 15 of issue 11.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import _limits, archc_command, assert_one_line_error, tree_state
from .runtime_support import TINY, TRAIN_MEM_MB, archc_env, dataset, output, records, train
from .test_runtime_data import _unwritable_folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(scratch folder, data, a run folder with one epoch) shared by the resume tests; each
    test works on its own copy of the run."""
    root = tmp_path_factory.mktemp("runs")
    data = dataset(root / "data", n=12)
    run = root / "run"
    done = train(root, data, run)
    assert done.returncode == 0, output(done)
    return root, data, run


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


def _resume(root: Path, run: Path, *args: str | Path) -> subprocess.CompletedProcess:
    from .conftest import run_archc

    return run_archc("train", TINY, "--resume", run, "--epochs", "2", *args,
                     env=archc_env(root), mem_mb=TRAIN_MEM_MB, cpu_s=120)


# ------------------------------------------------------------------ 10: resume on other data


@pytest.mark.parametrize("n", [20, 6], ids=["larger", "smaller"])
def test_resume_with_other_data_is_refused(trained, tmp_path, n):
    root, _, original = trained
    run = _copy(original, tmp_path)
    other = dataset(tmp_path / "other", n=n, seed=5)
    before = tree_state(run)
    done = _resume(root, run, "--data", other)
    line = assert_one_line_error(done, code=1)
    assert f"cannot resume {run}: it trained on" in line and str(other) in line, line
    assert tree_state(run) == before


def test_resume_refuses_when_the_runs_own_images_changed(trained, tmp_path):
    root, _, original = trained
    data = dataset(tmp_path / "data", n=12)
    run = _copy(original, tmp_path)
    record = json.loads((run / "record.json").read_text())
    assert record["data"]["images"] == 12 and len(record["data"]["labels_sha256"]) == 64
    record["data_path"] = record["data"]["resolved_path"] = str(data)  # a copy we may change
    (run / "record.json").write_text(json.dumps(record))
    (data / "dog.99.jpg").write_bytes((data / "dog.0.jpg").read_bytes())
    before = tree_state(run)
    done = _resume(root, run)
    line = assert_one_line_error(done, code=1)
    assert "changed since the run began (12 files in classes cat, dog then, 13 in" in line, line
    assert tree_state(run) == before


# ------------------------------------------------------------------ 11: two trainers, one run


def _wait_for_lock(run: Path, pid: int, proc: subprocess.Popen) -> None:
    """Until the trainer `pid` holds the run folder's lock (it writes its pid there)."""
    deadline = time.monotonic() + 120
    lock = run / ".lock"
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(pid):
            return
        if proc.poll() is not None:
            pytest.fail(f"the first trainer ended early:\n{proc.communicate()}")
        time.sleep(0.02)
    pytest.fail("the first trainer never locked the run folder")


def test_a_second_trainer_on_a_busy_run_folder_is_refused(trained, tmp_path):
    root, _, original = trained
    run = _copy(original, tmp_path)
    first = subprocess.Popen(
        [*archc_command(), "train", TINY, "--resume", run, "--epochs", "3"],
        env={**os.environ, **archc_env(root)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=_limits(TRAIN_MEM_MB, 120),
    )
    try:
        _wait_for_lock(run, first.pid, first)
        first.send_signal(signal.SIGSTOP)  # holds the lock, mid-run, while the second starts
        try:
            before = tree_state(run)
            second = _resume(root, run, "--epochs", "3")
            after = tree_state(run)
        finally:
            first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    line = assert_one_line_error(second, code=1)
    assert f"is in use by another `archc train` (pid {first.pid})" in line, line
    assert after == before
    assert first.returncode == 0, out + err
    assert [r["epoch"] for r in records(run)] == [1, 2, 3]  # each epoch once
    assert _resume(root, run, "--epochs", "3").returncode == 0  # the lock went with its holder


# ------------------------------------------------------------------ 15: unwritable places


def test_run_folders_that_cannot_be_made_are_one_line(trained, tmp_path):
    root, data, _ = trained
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    blocked = _unwritable_folder(tmp_path)
    cases = [
        (a_file / "sub", "Not a directory"),
        (a_file, "a file of that name exists"),
        (blocked / "run", None),
    ]
    for run, reason in cases:
        done = train(root, data, run)
        line = assert_one_line_error(done, code=1)
        assert line.startswith(f"error: cannot create the run folder {run}: "), line
        assert reason is None or reason in line, line
    assert a_file.read_text() == "x"


def test_an_unwritable_working_folder_for_the_default_runs_is_one_line(trained):
    root, data, _ = trained
    done = train(root, data, None, cwd=_unwritable_folder(root))
    line = assert_one_line_error(done, code=1)
    assert line.startswith("error: cannot create the run folder runs/tiny-"), line


def test_an_unwritable_cache_under_train_is_one_line(trained, tmp_path):
    root, data, _ = trained
    cache = _unwritable_folder(tmp_path) / "cache"
    done = train(tmp_path, data, tmp_path / "run", env={"ARCHC_CACHE": str(cache)})
    line = assert_one_line_error(done, code=1)
    assert line.startswith(f"error: cannot write the image cache in {cache}"), line
    assert not (tmp_path / "run").exists()
