"""Real multi-process training: torchrun, 2 processes, gloo on the CPU.

A 2-process DDP run with global batch 16 (8 per rank) must train the same model as one
process with batch 16 and the same seed: BatchLoader gives rank r rows [8r, 8r + 8) of the
single-process batch, DDP averages the two ranks' gradients, and the mean of two 8-image mean
losses is the 16-image mean loss. The tiny spec's "plain" variant has no batch norm, whose
per-process statistics would (rightly) differ from one process's.

Tolerances, and why they are not zero: the two runs add the same numbers in a different
order. DDP sums the ranks' gradient buckets with an all-reduce and divides by the world size,
where the single process sums over 16 images inside each convolution's backward; the loss
metric is likewise reduced across ranks. float32 addition is not associative, so the results
agree to rounding, and SGD carries those differences through the run.

  * per-epoch losses (metrics.jsonl): relative 1e-5 (measured: 9e-8)
  * final weights (last.safetensors): absolute 1e-5 (measured: 3e-8)
  * accuracies: exactly equal (counts of correct predictions, far from any tie)

A DDP run resumed under DDP adds in the same order as the uninterrupted DDP run, so that
comparison is exact: bit-identical weights and metrics.

The constant learning-rate schedule makes "1 epoch, then --resume with --epochs 2" the same
training as "2 epochs" (a cosine schedule depends on the total number of epochs).

torchrun is started as `python -m torch.distributed.run ... -m -- archc train ...`: without
the `--`, torchrun's argparse rejects archc's `--run` as an ambiguous abbreviation of its own
`--run-path` (it classifies every argument, even those after the script name).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from runtime.data.synth import write_synthetic
from runtime.training.metrics import read_records

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "tests" / "fixtures" / "tiny.arch"
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5
COMMON = ["--batch-size", "16", "--deterministic", "--seed", "0", "--workers", "1",
          "--device", "cpu", "--schedule", "constant", "--lr", "0.1"]
PLAIN = ["--set", "variant=plain"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "--", "archc"]
ARCHC = [sys.executable, "-m", "archc"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: a private image cache, the repo importable."""
    cache = tmp_path_factory.mktemp("cache")
    values = dict(os.environ, ARCHC_CACHE=str(cache))
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARCHC_CACHE", str(cache))  # the in-process reference run shares the cache
        yield values


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_synthetic(root, n=64, seed=0)
    return root / "train"


def _run(command: list, env: dict, cwd: Path | None = None) -> str:
    """Run a command to completion; fail the test with its output unless it exits 0."""
    done = subprocess.run([str(c) for c in command], env=env, cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    return output


def _train_args(data: Path, *extra) -> list:
    return ["train", SPEC, "--data", data, *COMMON, *extra]


@pytest.fixture(scope="module")
def single(env, data, tmp_path_factory) -> Path:
    """The reference: one process, 2 epochs (in-process: no interpreter start-up to pay)."""
    from runtime.training.train import TrainRequest, train

    run_dir = tmp_path_factory.mktemp("single") / "run"
    settings = {"batch_size": 16, "deterministic": True, "seed": 0, "workers": 1,
                "device": "cpu", "schedule": "constant", "lr": 0.1, "epochs": 2}
    result = train(TrainRequest(spec=SPEC, data=data, params={"variant": "plain"},
                                settings=settings, run=run_dir, console=Console(quiet=True)))
    assert result.stopped_reason == "done"
    return run_dir


@pytest.fixture(scope="module")
def ddp(env, data, tmp_path_factory) -> tuple[Path, str]:
    """torchrun with 2 processes, 2 epochs, default run folder under a fresh working dir."""
    cwd = tmp_path_factory.mktemp("ddp")
    output = _run([*TORCHRUN, *_train_args(data, *PLAIN, "--epochs", "2")], env, cwd=cwd)
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1, f"expected one run folder, found {runs}"  # rank 1 made none
    return runs[0], output


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "last.safetensors"))


def _max_weight_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)


def _assert_same_trajectory(got: Path, want: Path) -> None:
    """Equal per-epoch metrics: losses within LOSS_RTOL, accuracies exactly."""
    mine, theirs = read_records(got), read_records(want)
    assert [r["epoch"] for r in mine] == [r["epoch"] for r in theirs] == [1, 2]
    for a, b in zip(mine, theirs):
        for key in ("train_loss", "val_loss", "val_logloss"):
            assert a[key] == pytest.approx(b[key], rel=LOSS_RTOL), (key, a["epoch"])
        for key in ("train_acc", "val_acc"):
            assert a[key] == b[key], (key, a["epoch"])
        assert a["lr"] == pytest.approx(b["lr"])


def test_ddp_matches_a_single_process(single, ddp):
    run_dir, _ = ddp
    assert json.loads((run_dir / "split.json").read_text()) == \
        json.loads((single / "split.json").read_text())
    _assert_same_trajectory(run_dir, single)
    difference = _max_weight_difference(run_dir, single)
    assert difference <= WEIGHT_ATOL, f"weights differ by up to {difference:.3g}"
    # the runs really trained: the weights moved away from the epoch-0 initialisation
    assert read_records(run_dir)[0]["train_loss"] != read_records(run_dir)[1]["train_loss"]


def test_only_rank_0_writes_and_logs(ddp):
    run_dir, output = ddp
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert output.count("epoch 1/2") == 1 and output.count("training finished") == 1
    assert not list(run_dir.glob(".*.tmp"))  # no half-written files from a second writer
    for name in ("spec.arch", "hparams.json", "split.json", "record.json", "last.json"):
        assert (run_dir / name).exists(), name
    params = json.loads((run_dir / "hparams.json").read_text())["params"]
    assert params == {"variant": "plain", "num_classes": 2}


def test_resume_under_ddp_through_nproc(env, data, tmp_path):
    """`archc train --nproc 2`: 1 epoch, then --resume to 2 epochs == the 2-epoch DDP run.

    The spec has dropout, which draws from torch's RNG in every process: a resume that did
    not restore the generators would draw other masks and train other weights."""
    dropout = ["--set", "variant=dropout"]
    uninterrupted_dir = tmp_path / "uninterrupted"
    _run([*ARCHC, *_train_args(data, *dropout, "--epochs", "2", "--run", uninterrupted_dir,
                               "--nproc", "2")], env)
    run_dir = tmp_path / "resumed"
    _run([*ARCHC, *_train_args(data, *dropout, "--epochs", "1", "--run", run_dir,
                               "--nproc", "2")], env)
    assert [r["epoch"] for r in read_records(run_dir)] == [1]
    output = _run([*ARCHC, "train", SPEC, "--resume", run_dir, "--epochs", "2", "--nproc", "2",
                   "--workers", "1", "--device", "cpu"], env)
    assert "resumed from last after epoch 1" in output
    _assert_same_trajectory(run_dir, uninterrupted_dir)
    resumed, uninterrupted = _weights(run_dir), _weights(uninterrupted_dir)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in uninterrupted)
    for mine, theirs in zip(read_records(run_dir), read_records(uninterrupted_dir)):
        assert mine["train_loss"] == theirs["train_loss"]


def test_sync_bn_runs(env, data, tmp_path):
    """--sync-bn with the batch-norm variant. PyTorch's SyncBatchNorm is CUDA-only, so on
    the CPU the run warns and keeps per-process statistics instead of crashing."""
    run_dir = tmp_path / "sync"
    output = _run([*TORCHRUN, *_train_args(data, "--epochs", "1", "--run", run_dir, "--sync-bn")],
                  env)
    assert "--sync-bn needs CUDA" in output and output.count("--sync-bn needs CUDA") == 1
    record = read_records(run_dir)
    assert [r["epoch"] for r in record] == [1]
    assert any(k.endswith("running_mean") for k in _weights(run_dir))  # it had batch norm
