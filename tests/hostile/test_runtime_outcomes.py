"""Hostile runs of `archc train`, `predict` and `submit`: no silent wrong answer.

Items 8 (a diverging lr), 9 (a network whose output does not fit the classes), 20 (one
`error` prefix), 23 (the loss plot), 24 (epoch lines in a log) and 25 (file modes) of issue 11.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from runtime.training.checkpoint import load_checkpoint, save_checkpoint

from .conftest import assert_one_line_error, run_archc, tree_state
from .runtime_support import TINY, TRAIN_MEM_MB, archc_env, dataset, output, records, train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """12 real JPEGs, shared read-only by the tests of this module."""
    return dataset(tmp_path_factory.mktemp("outcomes") / "data")


def _spec_ending(tmp_path: Path, new_tail: str) -> Path:
    """tiny.arch with its classifier lines (pool, flatten, fc) replaced by `new_tail`."""
    text = TINY.read_text()
    head, _, rest = text.partition("    pool: global-avgpool\n")
    train_section = rest[rest.index("\ntrain:"):]
    spec = tmp_path / "net.arch"
    spec.write_text(head + new_tail + train_section)
    return spec


def _finite(weights: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


# ------------------------------------------------------------------ 8: a diverging run


def test_diverging_lr_ends_with_an_error_and_keeps_the_last_good_checkpoint(tmp_path, data):
    run = tmp_path / "run"
    done = train(tmp_path, data, run, "--lr", "1e30")
    line = assert_one_line_error(done, code=1)
    assert "diverged" in line and "last good checkpoint (after epoch 0)" in line, line
    assert "Try a lower lr" in line  # the whole advice on the one line: never wrapped
    assert records(run) == []  # no NaN epoch is ever logged as a result
    weights, extra = load_checkpoint(run, "last")
    assert extra["epoch"] == 0 and _finite(weights)
    assert not (run / "best.json").exists()


def _diverged_run(tmp_path: Path, data: Path) -> Path:
    """A run folder whose best checkpoint holds NaN weights, as an archc without the
    divergence check wrote one: a real run, then its weights poisoned and saved properly."""
    run = tmp_path / "run"
    done = train(tmp_path, data, run)
    assert done.returncode == 0, output(done)
    weights, extra = load_checkpoint(run, "best")
    poisoned = {k: (t * math.nan if t.is_floating_point() else t) for k, t in weights.items()}
    save_checkpoint(run, "best", poisoned, extra)
    return run


def test_predict_and_submit_refuse_nan_weights(tmp_path, data):
    run = _diverged_run(tmp_path, data)
    test1 = tmp_path / "test1"
    test1.mkdir()
    (test1 / "1.jpg").write_bytes((data / "cat.0.jpg").read_bytes())
    before = tree_state(tmp_path / "run")

    predicted = run_archc("predict", run, data / "dog.0.jpg", env=archc_env(tmp_path),
                          mem_mb=TRAIN_MEM_MB)
    line = assert_one_line_error(predicted, code=1)
    assert "non-finite weights" in line and "nan" not in predicted.stdout.lower()

    csv = tmp_path / "submission.csv"
    submitted = run_archc("submit", run, "--test", test1, "-o", csv, env=archc_env(tmp_path),
                          mem_mb=TRAIN_MEM_MB)
    line = assert_one_line_error(submitted, code=1)
    assert "non-finite weights" in line and not csv.exists()
    assert tree_state(tmp_path / "run") == before


# ------------------------------------------------------------------ 9: outputs vs classes

@pytest.mark.parametrize("tail, says", [
    ("    pool: global-avgpool\n    flatten\n    fc: FC-10\n",
     "outputs 10 scores, but the data has 2 classes"),
    ("    pool: global-avgpool\n    flatten\n    fc: FC-1\n",
     "outputs 1 score, but the data has 2 classes"),
    ("", "ends in a 16x8x8 tensor, not one score per class"),
], ids=["fc10", "fc1", "no-classifier"])
def test_output_that_does_not_fit_the_classes_is_refused_before_training(
        tmp_path, data, tail, says):
    spec = _spec_ending(tmp_path, tail)
    run = tmp_path / "run"
    done = train(tmp_path, data, run, spec=spec)
    line = assert_one_line_error(done, code=1)
    assert line.startswith("error[E203]: ") and says in line, line
    assert f"--> {spec}:" in done.stderr  # located in the spec, with the line quoted
    assert "hint: " in done.stderr
    assert not run.exists()  # refused before a run folder, let alone a step


# ------------------------------------------------------------------ 20: one `error` prefix


def test_spec_errors_under_train_are_printed_as_check_prints_them(tmp_path, data):
    done = train(tmp_path, data, tmp_path / "run", "--set", "nosuch=1")
    line = assert_one_line_error(done, code=1)
    assert line.startswith("error[E102]: ") and "error: error" not in done.stderr, line


# ------------------------------------------------------------------ 23, 24, 25


def test_epoch_lines_do_not_wrap_in_an_80_column_log_and_files_follow_the_umask(
        tmp_path, data):
    run = tmp_path / "run"
    old = os.umask(0o027)
    try:
        done = train(tmp_path, data, run, env={"COLUMNS": "80"})
    finally:
        os.umask(old)
    assert done.returncode == 0, output(done)
    epoch_lines = [ln for ln in done.stdout.splitlines() if ln.startswith("epoch 1/1")]
    assert len(epoch_lines) == 1 and len(epoch_lines[0]) > 80, done.stdout
    assert epoch_lines[0].rstrip().endswith("s") and "img/s" in epoch_lines[0]
    # 0640 is what open() gives under umask 027; mkstemp alone would give 0600
    modes = {p.name: p.stat().st_mode & 0o777 for p in run.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes

    test1 = tmp_path / "test1"
    test1.mkdir()
    (test1 / "1.jpg").write_bytes((data / "dog.1.jpg").read_bytes())
    csv = tmp_path / "submission.csv"
    old = os.umask(0o022)
    try:
        submitted = run_archc("submit", run, "--test", test1, "-o", csv,
                              env=archc_env(tmp_path), mem_mb=TRAIN_MEM_MB)
    finally:
        os.umask(old)
    assert submitted.returncode == 0, output(submitted)
    assert csv.stat().st_mode & 0o777 == 0o644


def test_a_huge_first_loss_does_not_flatten_the_loss_plot():
    from runtime.training.metrics import figure

    losses = [19.0, 0.6, 0.45, 0.35, 0.3]
    fig = figure([{"epoch": i + 1, "train_loss": v, "val_loss": v, "train_acc": 0.5,
                   "val_acc": 0.5, "lr": 0.1} for i, v in enumerate(losses)])
    fig.canvas.draw()
    ax = fig.axes[0]
    # where the later epochs land, as a fraction of the panel's height
    _, low = ax.transAxes.inverted().transform(ax.transData.transform((2, 0.3)))
    _, high = ax.transAxes.inverted().transform(ax.transData.transform((2, 0.6)))
    assert high - low > 0.1, (low, high)  # on a linear axis they share 1.6% of it
