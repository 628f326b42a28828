"""Model benchmarks against torchvision, as ratios archc / torchvision measured in the same run:

(b) building a network: `archc.build(spec)` (parse, resolve, shape check, module construction
    and initialisation) against torchvision's builder, for ResNet-50 and VGG-16;
(c) one training step (forward, backward, SGD step) of the compiled module against
    torchvision's module with the same weights, for ResNet-18 and VGG-11 at 64×64, batch 16,
    on the CPU.

    python -m bench.bench_model            # the full run
    python -m bench.bench_model --quick    # fewer repeats, for a smoke run

A and B alternate (A B A B ...) so that machine load affects both alike; every figure is a
median, and a ratio is the median of the per-round ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

import archc

ROOT = Path(__file__).resolve().parents[1]

# name: (spec, archc.build keywords, torchvision builder)
NETWORKS: dict[str, tuple[str, dict, Callable[[], torch.nn.Module]]] = {
    "resnet18": ("specs/resnet18.arch", {}, torchvision.models.resnet18),
    "resnet50": ("specs/resnet50.arch", {}, torchvision.models.resnet50),
    "vgg11": ("specs/vgg.arch", {"variant": "A"}, torchvision.models.vgg11),
    "vgg16": ("specs/vgg.arch", {"variant": "D"}, torchvision.models.vgg16),
}
BUILD = ("resnet50", "vgg16")
TRAIN = ("resnet18", "vgg11")


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int,
                warmup: int = 1) -> dict:
    """Time a and b alternately; medians of each and the median per-round ratio a/b."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_timed(a))
        tb.append(_timed(b))
    return {"archc_s": statistics.median(ta), "torchvision_s": statistics.median(tb),
            "ratio": statistics.median(x / y for x, y in zip(ta, tb)),
            # the fastest rounds: the least disturbed by other load on a shared machine
            "ratio_of_minima": min(ta) / min(tb), "rounds": rounds}


def build_time(name: str, rounds: int) -> dict:
    """(b) archc.build from the spec file (check included) vs torchvision's builder."""
    spec, kwargs, reference = NETWORKS[name]
    return interleaved(lambda: archc.build(ROOT / spec, **kwargs), reference, rounds)


def _trainer(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD training step of `model` on (x, y), as a closure."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    return step


def train_step_time(name: str, rounds: int, batch: int = 16, size: int = 64) -> dict:
    """(c) A training step of the compiled module vs torchvision's, with the same weights."""
    spec, kwargs, reference = NETWORKS[name]
    torch.manual_seed(0)
    theirs = reference()
    mine = archc.build(ROOT / spec, **kwargs)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=gen)
    y = torch.randint(0, 1000, (batch,), generator=gen)
    result = interleaved(_trainer(mine, x, y), _trainer(theirs, x, y), rounds, warmup=2)
    return {**result, "batch": batch, "input": f"3x{size}x{size}"}


def run(quick: bool = False) -> dict:
    """Both benchmarks; every ratio is archc / torchvision (below 1: archc is faster)."""
    build_rounds, train_rounds = (3, 3) if quick else (7, 9)
    return {
        "torch_threads": torch.get_num_threads(),
        "build": {name: build_time(name, build_rounds) for name in BUILD},
        "train_step": {name: train_step_time(name, train_rounds) for name in TRAIN},
    }


def table(r: dict) -> str:
    """The figures as a small text table."""
    rows = [(f"build {name}", v) for name, v in r["build"].items()]
    rows += [(f"train step {name} ({v['input']}, batch {v['batch']})", v)
             for name, v in r["train_step"].items()]
    width = max(len(label) for label, _ in rows)
    head = (f"{'':<{width}}  {'archc':>9}  {'torchvision':>11}  {'ratio':>6}  {'min/min':>7}"
            f"   (CPU, {r['torch_threads']} torch threads, medians)")
    lines = [head] + [f"{label:<{width}}  {v['archc_s']:8.3f}s  {v['torchvision_s']:10.3f}s  "
                      f"{v['ratio']:5.2f}x  {v['ratio_of_minima']:6.2f}x" for label, v in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, for a smoke run")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    r = run(quick=args.quick)
    print(table(r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
