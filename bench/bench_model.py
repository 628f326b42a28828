"""Model benchmarks against torchvision, as ratios archc / torchvision measured in the same run:

(b) building a network: `archc.build(spec)` (parse, resolve, shape check, module construction
    and initialisation) against torchvision's builder, for ResNet-50, VGG-16, MobileNetV2,
    EfficientNet-B0, ViT-B/16 and Swin-T; judged with the parse read back from archc's
    on-disk cache (every build but the first after an edit, as torchvision's code comes from
    its .pyc), and shown unjudged with a parse every time;
(c) one training step (forward, backward, SGD step) of the compiled module against
    torchvision's module with the same weights, for ResNet-18, VGG-11, MobileNetV2 and
    EfficientNet-B0 at 64×64, batch 16, and for ViT-B/16 and Swin-T at 224×224 (ViT's position
    embedding fixes its input size), batch 2, on the CPU.

The zoo networks take their spec, network and parameters from specs/zoo.yaml, the index
`archc verify --zoo` proves exact.

    python -m bench model [--quick]

A and B alternate (A B, B A, A B, ...) so that machine load affects both alike. A target is
judged on the ratio of the fastest rounds (min/min, as `timeit` advises: both sides run the
same arithmetic, so slower rounds measure other load on the machine); the median per-round
ratio is reported beside it.
"""
from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torchvision

import archc
from archc import zoo_entries
from bench.report import Row

ROOT = Path(__file__).resolve().parents[1]


def _zoo(name: str) -> tuple[Path, dict, Callable[[], torch.nn.Module]]:
    """A torchvision builder's spec and `archc.build` keywords, as specs/zoo.yaml gives them."""
    entry = zoo_entries()[name]
    kwargs = {"network": entry.network, "variant": entry.variant, **entry.sets}
    return entry.spec, kwargs, getattr(torchvision.models, name)


# name: (spec, archc.build keywords, torchvision builder)
NETWORKS: dict[str, tuple[str | Path, dict, Callable[[], torch.nn.Module]]] = {
    "resnet18": ("specs/resnet18.arch", {}, torchvision.models.resnet18),
    "resnet50": ("specs/resnet50.arch", {}, torchvision.models.resnet50),
    "vgg11": ("specs/vgg.arch", {"variant": "A"}, torchvision.models.vgg11),
    "vgg16": ("specs/vgg.arch", {"variant": "D"}, torchvision.models.vgg16),
    **{name: _zoo(name) for name in ("mobilenet_v2", "efficientnet_b0", "vit_b_16", "swin_t")},
}
BUILD = ("resnet50", "vgg16", "mobilenet_v2", "efficientnet_b0", "vit_b_16", "swin_t")
TRAIN = ("resnet18", "vgg11", "mobilenet_v2", "efficientnet_b0", "vit_b_16", "swin_t")
# (batch, side) of a training step's input: small CNN images by default; the transformers at
# 224×224 (ViT's position embedding fixes it), a batch of 2 so a step takes about a second
# on two cores, and fewer rounds
TRAIN_INPUT: dict[str, tuple[int, int]] = {"vit_b_16": (2, 224), "swin_t": (2, 224)}
DEFAULT_INPUT = (16, 64)


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int,
                warmup: int = 1) -> dict:
    """Time a and b alternately; medians of each and the median per-round ratio a/b.

    The order flips every round (A B, B A, A B, ...) so that whatever the first of a pair
    leaves behind (a warm allocator, a cold cache) falls on both sides alike."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for i in range(rounds):
        if i % 2:
            tb.append(_timed(b))
            ta.append(_timed(a))
        else:
            ta.append(_timed(a))
            tb.append(_timed(b))
    return {"archc_s": statistics.median(ta), "torchvision_s": statistics.median(tb),
            "archc_min_s": min(ta), "torchvision_min_s": min(tb),
            "ratio": statistics.median(x / y for x, y in zip(ta, tb)),
            # the fastest rounds: the least disturbed by other load on a shared machine
            "ratio_of_minima": min(ta) / min(tb), "rounds": rounds}


def build_time(name: str, rounds: int, parse_cache: bool = True) -> dict:
    """(b) archc.build from the spec file (check included) vs torchvision's builder.

    With `parse_cache` (the default, as every build after a spec's first runs) the parsed
    spec comes back from archc's on-disk cache, as torchvision's builder comes from its
    .pyc; without it every round parses the text, as the first build after an edit does."""
    spec, kwargs, reference = NETWORKS[name]
    with _parse_cache(parse_cache):
        return interleaved(lambda: archc.build(ROOT / spec, **kwargs), reference, rounds)


@contextmanager
def _parse_cache(on: bool):
    """archc's parse cache on (as configured) or off (ARCHC_NO_CACHE) for a block."""
    saved = os.environ.get("ARCHC_NO_CACHE")
    if not on:
        os.environ["ARCHC_NO_CACHE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("ARCHC_NO_CACHE", None)
        else:
            os.environ["ARCHC_NO_CACHE"] = saved


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


def run(quick: bool = False, build: tuple[str, ...] = BUILD,
        train: tuple[str, ...] = TRAIN) -> dict:
    """Both benchmarks; every ratio is archc / torchvision (below 1: archc is faster).
    `build` and `train` choose the networks (all by default)."""
    build_rounds, train_rounds = (3, 3) if quick else (9, 15)
    return {
        "torch_threads": torch.get_num_threads(),
        "build": {name: build_time(name, build_rounds) for name in build},
        "build_parsing": {name: build_time(name, build_rounds, parse_cache=False)
                          for name in build},
        "train_step": {name: train_step_time(name, train_rounds // (3 if name in TRAIN_INPUT
                                                                     else 1) or 1,
                                             *TRAIN_INPUT.get(name, DEFAULT_INPUT))
                       for name in train},
    }


def _row(letter: str, what: str, v: dict, target: float) -> Row:
    """A row judged on the ratio of the fastest rounds: both sides run the same arithmetic, so
    the slower rounds measure other load on the machine, not the module."""
    ratio = v["ratio_of_minima"]
    return Row(letter, what, f"{v['archc_min_s']:.3f} s", f"{v['torchvision_min_s']:.3f} s",
               ratio, f"≤ {target}", ratio <= target,
               f"fastest of {v['rounds']} interleaved rounds; median per-round ratio "
               f"{v['ratio']:.3f}")


def rows(result: dict) -> list[Row]:
    """(b) and (c) as table rows, archc / torchvision."""
    out = [_row("b", f"`archc.build` (check included) vs torchvision's builder, {name}", v, 1.2)
           for name, v in result["build"].items()]
    out += [_unjudged("b", f"the same, parsing the spec every time (the first build after an "
                           f"edit; no parse cache), {name}", v)
            for name, v in result.get("build_parsing", {}).items()]
    out += [_row("c", f"train step (fwd + bwd + SGD), {name}, {v['input']}, batch {v['batch']}",
                 v, 1.03)
            for name, v in result["train_step"].items()]
    return out


def _unjudged(letter: str, what: str, v: dict) -> Row:
    """A figure shown beside a target without being judged against it."""
    return Row(letter, what, f"{v['archc_min_s']:.3f} s", f"{v['torchvision_min_s']:.3f} s",
               v["ratio_of_minima"], "", None,
               f"fastest of {v['rounds']} interleaved rounds; median per-round ratio "
               f"{v['ratio']:.3f}")
