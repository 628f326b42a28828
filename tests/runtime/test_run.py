"""Run folder (create_run, check_resume), train configuration, and the metrics files."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from runtime.data.folders import split_hash
from runtime.training.config import ConfigError, TrainConfig, merge_config
from runtime.training.metrics import MetricsLogger, log_loss, plot, read_records
from runtime.training.run import ResumeError, check_resume, create_run, load_hparams, load_split

SPEC = "net Tiny {\n  conv 3x3 8\n  relu\n  pool max 2\n  fc 2\n}\n"
PARAMS = {"width": 8, "depth": [1, 2]}


def _create(run_dir, **overrides):
    args = {
        "spec_text": SPEC, "spec_path": "specs/tiny.arch", "params": PARAMS,
        "config": TrainConfig(epochs=3, seed=7),
        "split": (np.array([0, 2, 3]), np.array([1, 4])),
        "data_path": "/data/cats", "classes": ["cat", "dog"],
        "skipped": [("bad.jpg", "cannot identify image"), ("empty.png", "0 bytes")],
    }
    args.update(overrides)
    return create_run(run_dir, **args)


# --------------------------------------------------------------------------- run folder


def test_create_run_writes_every_file(tmp_path):
    run = _create(tmp_path / "run")
    assert (run / "spec.arch").read_text() == SPEC

    hparams = json.loads((run / "hparams.json").read_text())
    assert hparams["params"] == {"width": 8, "depth": [1, 2]}
    assert TrainConfig(**hparams["train"]) == TrainConfig(epochs=3, seed=7)

    split = json.loads((run / "split.json").read_text())
    assert split["train"] == [0, 2, 3] and split["val"] == [1, 4]
    assert split["hash"] == split_hash(np.array([0, 2, 3]), np.array([1, 4]))

    record = json.loads((run / "record.json").read_text())
    assert record["spec_sha256"] == hashlib.sha256(SPEC.encode()).hexdigest()
    assert record["split_hash"] == split["hash"] and record["seeds"]["seed"] == 7
    assert record["versions"]["torch"] == torch.__version__
    assert {"python", "numpy", "torchvision"} <= set(record["versions"])
    for key in ("device", "hostname", "started_at", "command"):
        assert record[key]
    assert record["classes"] == ["cat", "dog"]
    assert record["counts"] == {"train": 3, "val": 2, "skipped": 2}

    assert (run / "skipped.txt").read_text().splitlines() == [
        "bad.jpg\tcannot identify image", "empty.png\t0 bytes",
    ]
    config, params = load_hparams(run)
    assert config.seed == 7 and params == hparams["params"]
    train_idx, val_idx = load_split(run)
    assert train_idx.tolist() == [0, 2, 3] and val_idx.tolist() == [1, 4]


def test_create_run_refuses_to_clobber_an_existing_run(tmp_path):
    _create(tmp_path / "run")
    with pytest.raises(FileExistsError, match="already holds a run"):
        _create(tmp_path / "run")
    _create(tmp_path / "run", overwrite=True, classes=["a", "b"])
    assert json.loads((tmp_path / "run" / "record.json").read_text())["classes"] == ["a", "b"]


def test_tampered_split_is_detected(tmp_path):
    run = _create(tmp_path / "run")
    split = json.loads((run / "split.json").read_text())
    split["val"] = [1, 3]
    (run / "split.json").write_text(json.dumps(split))
    with pytest.raises(ResumeError, match="hash"):
        load_split(run)


def test_check_resume_accepts_unchanged_and_diffs_changes(tmp_path):
    run = _create(tmp_path / "run")
    check_resume(run, SPEC, {"depth": (1, 2), "width": 8})  # tuples == lists, key order free

    changed = SPEC.replace("conv 3x3 8", "conv 5x5 16")
    with pytest.raises(ResumeError) as info:
        check_resume(run, changed, PARAMS)
    message = str(info.value)
    assert "-  conv 3x3 8" in message and "+  conv 5x5 16" in message
    assert "spec.arch (run)" in message and "spec.arch (now)" in message
    assert "params" not in message.split("\n", 1)[1]  # only the spec changed

    with pytest.raises(ResumeError) as info:
        check_resume(run, SPEC, {**PARAMS, "width": 16})
    message = str(info.value)
    assert '-  "width": 8' in message and '+  "width": 16' in message

    with pytest.raises(ResumeError, match="not a run folder"):
        check_resume(tmp_path / "nowhere", SPEC, PARAMS)


# --------------------------------------------------------------------------- config


def test_config_defaults_and_per_optimizer_lr():
    config = TrainConfig()
    assert (config.epochs, config.batch_size) == (10, 64)
    assert (config.optimizer, config.schedule) == ("sgd", "cosine")
    assert config.resolved_lr() == 0.01
    assert TrainConfig(lr=None, optimizer="adamw").resolved_lr() == 1e-3
    aug = TrainConfig(scale=(0.5, 1.0), rotation=10, hflip=0.0).augment()
    assert (tuple(aug.scale), aug.rotation, aug.hflip) == ((0.5, 1.0), 10, 0.0)


def test_merge_precedence_cli_over_spec_over_defaults():
    config = merge_config({"epochs": 5, "lr": 0.1, "label-smoothing": 0.1},
                          {"epochs": 7, "lr": None, "seed": 3})
    assert config.epochs == 7  # CLI wins
    assert config.lr == 0.1  # an unset (None) CLI option does not clear the spec value
    assert config.label_smoothing == 0.1 and config.seed == 3
    assert config.batch_size == 64  # default
    assert merge_config(None, None) == TrainConfig()


@pytest.mark.parametrize("base, fragment", [
    ({"label_smothing": 0.1}, "did you mean 'label_smoothing'"),
    ({"epochs": 0}, "train.epochs"),
    ({"optimizer": "adam"}, "train.optimizer"),
    ({"amp": "fp16"}, "train.amp"),
    ({"scale": [0.9, 0.1]}, "scale must satisfy"),
    ({"label_smoothing": 1.0}, "train.label_smoothing"),
    ({"warmup_epochs": 20, "epochs": 10}, "warmup_epochs"),
    ({"device": "tpu"}, "train.device"),
])
def test_config_errors_are_clear(base, fragment):
    with pytest.raises(ConfigError) as info:
        merge_config(base, {})
    assert fragment in str(info.value)


def test_typo_in_train_config_is_rejected_directly():
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        TrainConfig(epoch=3)
    config = TrainConfig()
    with pytest.raises(ValidationError):
        config.batch_size = 0  # assignment is validated too


# --------------------------------------------------------------------------- metrics


def _record(epoch, **extra):
    base = {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5, "val_loss": 0.9,
            "val_acc": 0.6, "val_logloss": 0.7, "lr": 0.01, "epoch_time": 1.0,
            "images_per_s": 100.0}
    return {**base, **extra}


def test_metrics_logger_appends_and_truncates_consistently(tmp_path):
    logger = MetricsLogger(tmp_path)
    for epoch in (1, 2, 3):
        logger.log(_record(epoch, val_acc=torch.tensor(0.5 + epoch / 10)))
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == ("epoch,train_loss,train_acc,val_loss,val_acc,val_logloss,lr,"
                            "epoch_time,images_per_s")
    assert len(csv_lines) == 4
    assert [r["val_acc"] for r in read_records(tmp_path)] == pytest.approx([0.6, 0.7, 0.8])

    logger.truncate(2)
    assert [r["epoch"] for r in read_records(tmp_path)] == [1, 2]
    assert (tmp_path / "metrics.csv").read_text().splitlines() == csv_lines[:3]
    logger.log(_record(3, train_loss=float("nan")))  # NaN is not JSON: stored as null
    assert read_records(tmp_path)[-1]["train_loss"] is None
    logger.truncate(0)
    assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "metrics.csv").exists()


def test_plot_writes_a_png_atomically(tmp_path):
    assert plot(tmp_path) is None  # nothing logged yet
    logger = MetricsLogger(tmp_path)
    for epoch in (1, 2):
        logger.log(_record(epoch))
        path = plot(tmp_path)
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".*.tmp"))


def test_log_loss_matches_kaggle_definition_with_clipping():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.0, 100.0], [0.0, 100.0]])
    y = torch.tensor([1, 0, 1, 0])
    p = torch.softmax(logits.double(), 1)[:, 1].clamp(1e-15, 1 - 1e-15)
    expected = -(y * p.log() + (1 - y) * (1 - p).log()).mean().item()
    assert log_loss(logits, y) == pytest.approx(expected, rel=1e-12)
    # a confidently wrong answer costs about -log(1e-15) (float rounding of 1 - (1 - 1e-15)),
    # not infinity; a confidently right one costs about 1e-15, not 0
    assert log_loss(torch.tensor([[0.0, 100.0]]), torch.tensor([0])) == pytest.approx(
        -math.log(1e-15), rel=0.01)
    assert 0 < log_loss(torch.tensor([[0.0, 100.0]]), torch.tensor([1])) < 1e-14
    # more than two classes: -log of the clipped true-class probability
    three = torch.tensor([[0.0, 1.0, 2.0], [200.0, 0.0, 0.0]])
    p3 = torch.softmax(three.double(), 1)
    expected3 = -(p3[0, 2].log() + torch.tensor(1e-15, dtype=torch.float64).log()) / 2
    assert log_loss(three, torch.tensor([2, 1])) == pytest.approx(expected3.item(), rel=1e-12)
