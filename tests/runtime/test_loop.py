"""The training loop on a tiny CPU problem: learning, determinism, exact resume, signals, NaN,
auxiliary heads, schedules, metrics consistency and console output."""
from __future__ import annotations

import io
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from rich.console import Console
from torch import nn

from runtime.training.checkpoint import CheckpointError, latest, load_checkpoint, verify_checkpoint
from runtime.training.loop import LRSchedule, compute_loss, fit
from runtime.training.metrics import read_records


def _run(tiny, run_dir, quiet, factory=None, resume=False, stop_after=None, console=None, **cfg):
    """fit() on fresh loaders (as a new process would build them)."""
    config = tiny.small_config(**cfg)
    train, val = tiny.make_loaders(tiny.make_imageset(), config)
    factory = factory or (lambda: tiny.TinyNet())
    return fit(factory, train, val, config, run_dir, resume=resume, console=console or quiet,
               stop_after=stop_after)


def _weights(run_dir, name="last"):
    return load_checkpoint(run_dir, name)[0]


def test_learns_the_tiny_problem_and_writes_the_run_files(reference):
    tmp_path, result = reference(epochs=4)
    assert result.stopped_reason == "done" and result.last_epoch == 4
    assert result.best_val_acc >= 0.9
    assert 1 <= result.best_epoch <= 4 and math.isfinite(result.best_val_logloss)

    records = read_records(tmp_path)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    # it really learned (a lucky random init can separate brightness, but not get confident)
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]
    assert records[-1]["val_logloss"] < 0.45 < math.log(2) and records[-1]["train_acc"] >= 0.85
    for r in records:
        assert 0 <= r["val_acc"] <= 1 and r["val_logloss"] > 0 and r["images_per_s"] > 0
    best = records[result.best_epoch - 1]
    assert best["val_acc"] == result.best_val_acc == max(r["val_acc"] for r in records)
    # ties keep the earlier epoch
    assert result.best_epoch == min(r["epoch"] for r in records if r["val_acc"] == best["val_acc"])
    assert verify_checkpoint(tmp_path, "best")["epoch"] == result.best_epoch
    assert verify_checkpoint(tmp_path, "last")["epoch"] == 4
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,train_loss") and len(csv_lines) == 5


def test_deterministic_runs_are_bit_identical(tmp_path, tiny, quiet):
    before = torch.are_deterministic_algorithms_enabled()
    _run(tiny, tmp_path / "a", quiet, epochs=2)
    assert torch.are_deterministic_algorithms_enabled() == before  # global switch restored
    _run(tiny, tmp_path / "b", quiet, epochs=2)
    _run(tiny, tmp_path / "c", quiet, epochs=2, seed=1)
    a, b, c = (_weights(tmp_path / x) for x in "abc")
    assert tiny.state_equal(a, b)
    assert not tiny.state_equal(a, c)  # the comparison can fail: another seed differs


def test_resume_is_exact_and_metrics_stay_consistent(tmp_path, tiny, quiet, reference):
    full_dir, full = reference(epochs=4)

    part = tmp_path / "part"
    first = _run(tiny, part, quiet, epochs=4, stop_after=2)
    assert first.stopped_reason == "paused" and first.last_epoch == 2
    # simulate a crash after epoch 3 was logged but before its checkpoint, plus a torn line
    with open(part / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 3, "train_loss": 9.0}) + "\n" + '{"epoch": 4, "tra')
    with open(part / "metrics.csv", "a") as fh:
        fh.write("3,9.0,,,,,,,\n")

    second = _run(tiny, part, quiet, epochs=4, resume=True)
    assert second.stopped_reason == "done" and second.last_epoch == 4
    assert tiny.state_equal(_weights(full_dir), _weights(part))
    assert tiny.state_equal(_weights(full_dir, "best"), _weights(part, "best"))
    assert (second.best_epoch, second.best_val_acc) == (full.best_epoch, full.best_val_acc)
    steps = [load_checkpoint(d, "last")[1]["step"] for d in (part, full_dir)]
    assert steps[0] == steps[1]

    full_rows, part_rows = read_records(full_dir), read_records(part)
    assert [r["epoch"] for r in part_rows] == [1, 2, 3, 4]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc", "val_logloss", "lr")
    assert [[r[k] for k in keys] for r in part_rows] == [[r[k] for k in keys] for r in full_rows]
    csv_lines = (part / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and sum(line.startswith("epoch,") for line in csv_lines) == 1
    assert [line.split(",")[0] for line in csv_lines[1:]] == ["1", "2", "3", "4"]


def test_fresh_start_discards_an_older_runs_best_and_metrics(tmp_path, tiny, quiet):
    _run(tiny, tmp_path, quiet, epochs=1)
    assert latest(tmp_path, "best") == "best" and read_records(tmp_path)
    result = _run(tiny, tmp_path, quiet, epochs=1, stop_after=0)
    assert result.stopped_reason == "paused" and result.last_epoch == 0
    assert latest(tmp_path, "best") is None and read_records(tmp_path) == []
    assert load_checkpoint(tmp_path, "last")[1]["epoch"] == 0  # the epoch-0 checkpoint


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, tiny, quiet):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        _run(tiny, tmp_path, quiet, epochs=1, resume=True)


class _SignalAt:
    """Wraps a loader and sends SIGTERM to this process while batch `batch` of `epoch` is served."""

    def __init__(self, inner, epoch, batch):
        self.inner, self.at, self.epoch = inner, (epoch, batch), 0

    def __len__(self):
        return len(self.inner)

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def __iter__(self):
        for i, batch in enumerate(self.inner):
            if (self.epoch, i) == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch


def test_sigterm_finishes_the_batch_stops_cleanly_and_resumes_exactly(
    tmp_path, tiny, quiet, reference,
):
    config = tiny.small_config(epochs=3)
    train, val = tiny.make_loaders(tiny.make_imageset(), config)
    models = []

    def factory():
        models.append(tiny.TinyNet())
        return models[-1]

    before = signal.getsignal(signal.SIGTERM)
    result = fit(factory, _SignalAt(train, epoch=1, batch=1), val, config, tmp_path, console=quiet)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert result.stopped_reason == "interrupted" and result.last_epoch == 1
    assert models[0].calls == len(train) + 2  # epoch 1, then batches 0 and 1 of epoch 2 only
    assert latest(tmp_path) == "last" and load_checkpoint(tmp_path, "last")[1]["epoch"] == 1
    assert [r["epoch"] for r in read_records(tmp_path)] == [1]

    resumed = _run(tiny, tmp_path, quiet, epochs=3, resume=True)
    assert resumed.stopped_reason == "done" and resumed.last_epoch == 3
    assert tiny.state_equal(_weights(tmp_path), _weights(reference(epochs=3)[0]))


SIGTERM_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys
    from rich.console import Console
    spec = importlib.util.spec_from_file_location("tiny_support", sys.argv[1])
    sup = importlib.util.module_from_spec(spec); spec.loader.exec_module(sup)
    from runtime.training.loop import fit
    config = sup.small_config(epochs=3)
    train, val = sup.make_loaders(sup.make_imageset(), config)
    models = []
    def factory():
        models.append(sup.TinyNet(delay=0.1))
        return models[-1]
    result = fit(factory, train, val, config, sys.argv[2], console=Console(quiet=True))
    print(json.dumps({"reason": result.stopped_reason, "last_epoch": result.last_epoch,
                      "calls": models[0].calls, "batches": len(train)}))
""")


def test_sigterm_in_a_real_subprocess_then_resume(tmp_path, tiny, quiet, reference):
    script, run_dir = tmp_path / "train.py", tmp_path / "run"
    script.write_text(SIGTERM_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(tiny.repo)}
    proc = subprocess.Popen([sys.executable, str(script), str(tiny.conftest_path), str(run_dir)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until epoch 1's checkpoint is complete
            manifest = run_dir / "last.json"
            if manifest.exists() and json.loads(manifest.read_text()).get("epoch") == 1:
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        time.sleep(0.1)  # into epoch 2 (each batch sleeps 0.1 s)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["reason"] == "interrupted" and report["last_epoch"] == 1
    assert report["batches"] <= report["calls"] < 2 * report["batches"]  # epoch 2 never finished
    assert load_checkpoint(run_dir, latest(run_dir))[1]["epoch"] == 1

    resumed = _run(tiny, run_dir, quiet, epochs=3, resume=True)
    assert resumed.stopped_reason == "done" and resumed.last_epoch == 3
    assert [r["epoch"] for r in read_records(run_dir)] == [1, 2, 3]
    assert tiny.state_equal(_weights(run_dir), _weights(reference(epochs=3)[0]))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny):
    out = io.StringIO()
    console = Console(file=out, width=200)
    # 3 training batches per epoch: forward 5 is epoch 2, batch 2
    result = _run(tiny, tmp_path / "nan", None, factory=lambda: tiny.TinyNet(nan_after=4),
                  console=console, epochs=3)
    assert result.stopped_reason == "nan" and result.last_epoch == 1
    text = out.getvalue()
    assert "epoch 2, batch 2/3" in text and "nan" in text.lower()
    assert [r["epoch"] for r in read_records(tmp_path / "nan")] == [1]

    kept = _weights(tmp_path / "nan")
    assert load_checkpoint(tmp_path / "nan", "last")[1]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept.values() if v.is_floating_point())
    _run(tiny, tmp_path / "ref", Console(quiet=True), epochs=3, stop_after=1)
    assert tiny.state_equal(kept, _weights(tmp_path / "ref"))  # exactly the epoch-1 state


def test_aux_outputs_are_weighted_into_the_loss():
    torch.manual_seed(0)
    main, aux1, aux2 = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 1])
    ce = nn.CrossEntropyLoss()
    total, main_loss, logits = compute_loss((main, aux1, aux2), y, ce, aux_weight=0.3)
    assert torch.allclose(total, ce(main, y) + 0.3 * (ce(aux1, y) + ce(aux2, y)))
    assert torch.equal(main_loss, ce(main, y)) and logits is main
    total, main_loss, logits = compute_loss(main, y, ce, aux_weight=0.3)
    assert torch.equal(total, main_loss) and logits is main


def test_fit_with_aux_heads_and_gradient_accumulation(tmp_path, tiny, quiet):
    result = _run(tiny, tmp_path / "aux", quiet, factory=lambda: tiny.TinyNet(aux=2),
                  epochs=2, accumulate=2)
    assert result.stopped_reason == "done" and math.isfinite(result.best_val_logloss)
    # 3 batches per epoch in groups of 2 -> 2 optimizer steps per epoch
    assert load_checkpoint(tmp_path / "aux", "last")[1]["step"] == 4
    heads = _weights(tmp_path / "aux")
    assert "aux.0.weight" in heads and "aux.1.weight" in heads
    # aux_weight changes the training: the shared trunk ends up different
    _run(tiny, tmp_path / "noaux", quiet, factory=lambda: tiny.TinyNet(aux=2), epochs=2,
         accumulate=2, aux_weight=0.0)
    assert not torch.equal(heads["body.0.weight"], _weights(tmp_path / "noaux")["body.0.weight"])


def test_wrapped_model_saves_unwrapped_weights(tmp_path, tiny, quiet):
    config = tiny.small_config(epochs=1)
    train, val = tiny.make_loaders(tiny.make_imageset(), config)
    seen = []

    def wrap(module):
        seen.append(module)
        return nn.DataParallel(module)  # stands in for DDP: adds a `.module.` prefix

    fit(lambda: tiny.TinyNet(), train, val, config, tmp_path, console=quiet, wrap=wrap)
    assert len(seen) == 1
    assert set(_weights(tmp_path)) == set(tiny.TinyNet().state_dict())


def test_single_process_ddp_matches_plain_training(tmp_path, tiny, quiet):
    """Exercises the distributed paths (all-reduced stats and stop flags, no_sync, rank-0 writes)
    with a 1-process gloo group; the result must equal plain training bit for bit."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}",
                            rank=0, world_size=1)
    try:
        config = tiny.small_config(epochs=2, accumulate=2)
        train, val = tiny.make_loaders(tiny.make_imageset(), config)
        result = fit(lambda: tiny.TinyNet(), train, val, config, tmp_path / "ddp", console=quiet,
                     wrap=lambda m: nn.parallel.DistributedDataParallel(m))
    finally:
        dist.destroy_process_group()
    assert result.stopped_reason == "done"
    _run(tiny, tmp_path / "plain", quiet, epochs=2, accumulate=2)
    assert tiny.state_equal(_weights(tmp_path / "ddp"), _weights(tmp_path / "plain"))
    assert read_records(tmp_path / "ddp") == [
        {**r, "epoch_time": r2["epoch_time"], "images_per_s": r2["images_per_s"]}
        for r, r2 in zip(read_records(tmp_path / "plain"), read_records(tmp_path / "ddp"))
    ]


@pytest.mark.parametrize("kind", ["cosine", "onecycle", "constant"])
def test_lr_schedules_warm_up_linearly(kind):
    schedule = LRSchedule(kind, total_steps=100, warmup_steps=10)
    warm = [schedule(s) for s in range(10)]
    steps = [b - a for a, b in itertools.pairwise(warm)]
    assert all(abs(d - steps[0]) < 1e-12 for d in steps) and schedule(9) == pytest.approx(1.0)
    if kind == "constant":
        assert schedule(99) == 1.0
    else:
        assert schedule(10) == pytest.approx(1.0) and schedule(99) < 0.01
        assert all(schedule(s) >= schedule(s + 1) for s in range(10, 99))
    if kind == "onecycle":
        assert LRSchedule(kind, 100, 0)(0) == pytest.approx(1 / 25 + (24 / 25) / 30)


def test_lr_in_metrics_follows_the_schedule(tmp_path, tiny, quiet):
    _run(tiny, tmp_path, quiet, epochs=3, schedule="constant", warmup_epochs=0.0, lr=0.02)
    assert [r["lr"] for r in read_records(tmp_path)] == [0.02] * 3


@pytest.mark.parametrize("terminal", [False, True])
def test_console_output_with_and_without_a_terminal(tmp_path, tiny, terminal):
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=150)
    _run(tiny, tmp_path, None, console=console, epochs=2)
    text = out.getvalue()
    assert "epoch 2/2" in text and "best val accuracy" in text


def test_the_gpu_settings_run_on_the_cpu_bf16_and_channels_last(tmp_path, tiny, quiet):
    """amp=bf16 and channels_last are the CUDA defaults; forced on the CPU they must take effect
    (the conv computes in bf16 on a channels_last input), learn, and save float32 weights."""
    seen = []

    def factory():
        net = tiny.TinyNet()
        net.body[0].register_forward_hook(lambda m, args, out: seen.append(
            (args[0].is_contiguous(memory_format=torch.channels_last), out.dtype)))
        return net

    result = _run(tiny, tmp_path, quiet, factory=factory, epochs=4, amp="bf16",
                  channels_last=True)
    assert seen and set(seen) == {(True, torch.bfloat16)}
    assert result.stopped_reason == "done" and result.best_val_acc >= 0.9
    weights = _weights(tmp_path)
    assert set(weights) == set(tiny.TinyNet().state_dict())
    assert {w.dtype for w in weights.values()} <= {torch.float32, torch.int64}
    tiny.TinyNet().load_state_dict(weights)


def test_the_gpu_settings_run_on_the_cpu_torch_compile(tmp_path, tiny, quiet):
    """--compile (with bf16 and channels_last) through inductor on the CPU: the compiled model
    learns, checkpoints hold the plain module's weights, and a resumed run compiles again."""
    compiling = []

    def factory():
        net = tiny.TinyNet()
        net.fc.register_forward_hook(lambda *_: compiling.append(torch.compiler.is_compiling()))
        return net

    cfg = {"amp": "bf16", "channels_last": True, "compile": True, "deterministic": False}
    first = _run(tiny, tmp_path, quiet, factory=factory, epochs=4, stop_after=2, **cfg)
    assert first.stopped_reason == "paused"
    assert compiling and all(compiling)  # every forward ran through the compiled graph
    result = _run(tiny, tmp_path, quiet, factory=factory, epochs=4, resume=True, **cfg)
    assert result.stopped_reason == "done" and result.last_epoch == 4
    assert result.best_val_acc >= 0.9
    weights = _weights(tmp_path)
    assert set(weights) == set(tiny.TinyNet().state_dict())  # no `_orig_mod.` prefix
    tiny.TinyNet().load_state_dict(weights)
