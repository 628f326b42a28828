"""Checkpoints: round trip, atomicity under crashes (simulated and real kill -9), corruption,
weights_only safety, RNG capture/restore."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from runtime.training import checkpoint as ckpt
from runtime.training.checkpoint import (
    CheckpointError,
    capture_rng,
    latest,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)


def _model_and_optimizer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    model(torch.randn(6, 4)).sum().backward()
    opt.step()
    return model, opt


def _save_epoch(directory, epoch: int, name: str = "last"):
    """A checkpoint whose every weight equals `epoch`, so mixed-up files are detectable."""
    weights = {"w": torch.full((64, 64), float(epoch)), "b": torch.full((3,), float(epoch))}
    save_checkpoint(directory, name, weights, {"epoch": epoch, "step": 10 * epoch,
                                               "metrics": {"val_acc": epoch / 10}})


def _assert_epoch(directory, name: str, epoch: int):
    weights, extra = load_checkpoint(directory, name)
    assert extra["epoch"] == epoch
    assert torch.all(weights["w"] == epoch) and torch.all(weights["b"] == epoch)


def test_round_trip_model_optimizer_rng_and_numpy(tmp_path):
    model, opt = _model_and_optimizer()
    extra = {"epoch": 3, "step": 42, "optimizer": opt.state_dict(), "rng": capture_rng(),
             "loader": {"perm": np.arange(5), "epoch": np.int64(3)}, "metrics": {"val_acc": 0.5}}
    save_checkpoint(tmp_path, "last", model.state_dict(), extra)

    weights, loaded = load_checkpoint(tmp_path, "last")
    assert weights.keys() == model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert loaded["epoch"] == 3 and loaded["step"] == 42
    # numpy values come back as weights_only-safe equivalents
    assert torch.equal(loaded["loader"]["perm"], torch.arange(5)) and loaded["loader"]["epoch"] == 3
    fresh = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fresh.load_state_dict(loaded["optimizer"])  # loads into a real optimizer
    buf = next(iter(fresh.state.values()))["momentum_buffer"]
    assert torch.equal(buf, next(iter(opt.state.values()))["momentum_buffer"])

    manifest = json.loads((tmp_path / "last.json").read_text())
    assert manifest["epoch"] == 3 and manifest["metrics"] == {"val_acc": 0.5}
    for part in ("safetensors", "state.pt"):
        data = (tmp_path / f"last.{part}").read_bytes()
        assert manifest["files"][part]["sha256"] == ckpt._sha256(data)
    assert latest(tmp_path) == "last" and latest(tmp_path, "best") is None


def test_tied_and_channels_last_weights_save(tmp_path):
    conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    shared = torch.randn(5, 5)
    state = {"conv": conv.weight.data, "a": shared, "b": shared, "view": shared[:, 1]}
    save_checkpoint(tmp_path, "last", state, {"epoch": 0})
    weights, _ = load_checkpoint(tmp_path, "last")
    assert all(torch.equal(weights[k], v) for k, v in state.items())


def test_weights_file_is_plain_safetensors(tmp_path):
    from safetensors.torch import load_file

    model, _ = _model_and_optimizer()
    save_checkpoint(tmp_path, "best", model.state_dict(), {"epoch": 1})
    direct = load_file(tmp_path / "best.safetensors")
    assert all(torch.equal(direct[k], v) for k, v in model.state_dict().items())
    assert latest(tmp_path, "best") == "best" and latest(tmp_path, "last") is None


@pytest.mark.parametrize("fail_on_write", [1, 2, 3])
def test_crash_mid_write_keeps_previous_checkpoint(tmp_path, monkeypatch, fail_on_write):
    """A write that dies after partial bytes: the previous checkpoint stays loadable."""
    _save_epoch(tmp_path, 1)
    real_write, calls, partial = ckpt._write_chunks, [], []

    def crashing_write(fh, data):
        calls.append(1)
        if len(calls) < fail_on_write:
            return real_write(fh, data)
        fh.write(data[: len(data) // 2])  # really put half the bytes into the temp file
        fh.flush()
        partial.append((os.fstat(fh.fileno()).st_size, len(data)))
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt, "_write_chunks", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        _save_epoch(tmp_path, 2)
    size, full = partial[0]
    assert 0 < size < full  # the temp file really was partially written
    assert not list(tmp_path.glob(".*.tmp"))  # and cleaned up

    name = latest(tmp_path)
    assert name is not None
    _assert_epoch(tmp_path, name, 1)
    if fail_on_write == 1:
        assert name == "last"  # nothing was replaced yet
    else:
        # weights (and maybe state) were replaced, the manifest was not: "last" is out of step
        with pytest.raises(CheckpointError, match="sha256"):
            load_checkpoint(tmp_path, "last")
        assert name == "last.prev"

    monkeypatch.setattr(ckpt, "_write_chunks", real_write)
    _save_epoch(tmp_path, 3)  # the next good save heals everything and drops the backup
    assert latest(tmp_path) == "last"
    _assert_epoch(tmp_path, "last", 3)
    assert not list(tmp_path.glob("last.prev.*"))


def test_save_after_crash_does_not_destroy_the_only_good_copy(tmp_path, monkeypatch):
    _save_epoch(tmp_path, 1)

    def fail(fh, data):
        raise OSError("simulated")

    real = ckpt._write_chunks
    calls = []

    def fail_second(fh, data):
        calls.append(1)
        return real(fh, data) if len(calls) == 1 else fail(fh, data)

    monkeypatch.setattr(ckpt, "_write_chunks", fail_second)
    with pytest.raises(OSError):
        _save_epoch(tmp_path, 2)  # leaves "last" inconsistent, "last.prev" = epoch 1
    monkeypatch.setattr(ckpt, "_write_chunks", fail)
    with pytest.raises(OSError):
        _save_epoch(tmp_path, 3)  # must not back up the broken "last" over the good prev
    assert latest(tmp_path) == "last.prev"
    _assert_epoch(tmp_path, "last.prev", 1)


KILL_SCRIPT = textwrap.dedent("""
    import sys, torch
    from runtime.training.checkpoint import latest, load_checkpoint, save_checkpoint
    d = sys.argv[1]
    name = latest(d)
    start = 0 if name is None else load_checkpoint(d, name)[1]["epoch"] + 1
    for i in range(start, start + 100000):
        weights = {"w": torch.full((512, 1024), float(i)), "b": torch.full((3,), float(i))}
        save_checkpoint(d, "last", weights, {"epoch": i, "blob": torch.full((256, 1024), float(i))})
        print(i, flush=True)
""")


def test_real_kill_9_while_writing_checkpoints(tmp_path, tiny):
    """SIGKILL a process that saves in a loop (twice, the second time after recovering)."""
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    run_dir = tmp_path / "ckpts"
    env = {**os.environ, "PYTHONPATH": str(tiny.repo)}
    rng = random.Random(1234)
    for round_ in range(2):
        proc = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        confirmed = []
        try:
            while len(confirmed) < 4:
                line = proc.stdout.readline()
                assert line, f"writer died: {proc.stderr.read()}"
                confirmed.append(int(line))
            time.sleep(rng.uniform(0.0, 0.05))  # land somewhere inside a save
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        name = latest(run_dir)
        assert name is not None, f"round {round_}: no complete checkpoint after kill -9"
        weights, extra = load_checkpoint(run_dir, name)  # verifies both hashes
        epoch = extra["epoch"]
        assert epoch >= confirmed[-1]  # a save reported as finished is never lost
        assert torch.all(weights["w"] == epoch) and torch.all(extra["blob"] == epoch)


def test_corrupted_or_missing_files_raise_checkpoint_error(tmp_path):
    _save_epoch(tmp_path, 1)
    weights_path, state_path = tmp_path / "last.safetensors", tmp_path / "last.state.pt"

    data = bytearray(weights_path.read_bytes())
    data[-5] ^= 0xFF
    weights_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt.*sha256"):
        load_checkpoint(tmp_path, "last")
    assert latest(tmp_path) is None

    _save_epoch(tmp_path, 2)
    state_path.write_bytes(state_path.read_bytes()[:20])  # truncated
    with pytest.raises(CheckpointError, match="last.state.pt"):
        load_checkpoint(tmp_path, "last")

    _save_epoch(tmp_path, 3)
    weights_path.unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(tmp_path, "last")

    (tmp_path / "last.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest.*corrupt"):
        load_checkpoint(tmp_path, "last")

    (tmp_path / "last.json").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path, "last")


class _Evil:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_state_with_arbitrary_pickled_object_is_refused(tmp_path):
    _save_epoch(tmp_path, 1)
    marker = tmp_path / "pwned"
    state_path = tmp_path / "last.state.pt"
    torch.save({"epoch": 1, "payload": _Evil(str(marker))}, state_path)
    # make the manifest agree, so only the weights_only check stands in the way
    manifest = json.loads((tmp_path / "last.json").read_text())
    manifest["files"]["state.pt"]["sha256"] = ckpt._sha256(state_path.read_bytes())
    (tmp_path / "last.json").write_text(json.dumps(manifest))

    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path, "last")
    assert not marker.exists()


def test_saving_an_unsafe_object_fails_before_writing(tmp_path):
    _save_epoch(tmp_path, 1)
    with pytest.raises(CheckpointError, match="weights_only"):
        save_checkpoint(tmp_path, "last", {"w": torch.zeros(2)}, {"epoch": 2, "bad": _Evil("x")})
    _assert_epoch(tmp_path, "last", 1)  # untouched
    with pytest.raises(CheckpointError, match="not a tensor"):
        save_checkpoint(tmp_path, "last", {"w": [1, 2]}, {"epoch": 2})


def test_rng_capture_restore_through_a_checkpoint(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_checkpoint(tmp_path, "last", {"w": torch.zeros(1)}, {"epoch": 0, "rng": capture_rng()})
    expected = (random.random(), np.random.rand(3), np.random.randn(), torch.rand(3))

    random.seed(99), np.random.seed(99), torch.manual_seed(99)  # scramble everything
    _, extra = load_checkpoint(tmp_path, "last")
    restore_rng(extra["rng"])
    got = (random.random(), np.random.rand(3), np.random.randn(), torch.rand(3))
    assert got[0] == expected[0]
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]
    assert torch.equal(got[3], expected[3])
