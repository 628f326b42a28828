"""examples/lecture/*.arch against the lecture's own code: the same used parameters and outputs.

For each of the four practice networks the lecture's code (tests/lecture_oracle.py) runs a
forward and backward pass at 224×224; the parameters that receive a gradient are the ones its
forward pass uses. The spec must build exactly those parameters (names and shapes: the
state_dict keys line up), and with the lecture's weights loaded it must compute the same
outputs. For ResNet that proves the reproduction of the lecture's `is not` bug: every non-down
BottleNeck's `dim_equalizer` is used, and only the down blocks' are not.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import archc

try:  # tests/ may or may not be a package
    from . import lecture_oracle as oracle
except ImportError:
    import lecture_oracle as oracle

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "lecture"
NETWORKS = ("alexnet", "vgg", "googlenet", "resnet")
BATCH, NUM_CLASSES = 2, 2

# The lecture's ResNet builds a dim_equalizer in every BottleNeck, but its down blocks (the
# last of stages 2-4) never call it: the only parameters without a gradient.
UNUSED = {
    "resnet": {f"{stage}.{block}.dim_equalizer.{p}"
               for stage, block in (("layer_2", 2), ("layer_3", 3), ("layer_4", 5))
               for p in ("weight", "bias")},
}


@pytest.fixture(scope="module")
def seed_text() -> str:
    """The lecture's text; the oracle tests skip where it is absent (it lives outside the repo)."""
    if not oracle.available():
        pytest.skip(f"the seed lecture is absent: {oracle.SEED}")
    return oracle.SEED.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def lecture(seed_text, tmp_path_factory):
    """The lecture's code as an imported module."""
    return oracle.load_lecture(tmp_path_factory.mktemp("lecture"))


@pytest.fixture(scope="module")
def traced(lecture):
    """Per network: the lecture model, its input, its eval-mode output, and its used parameters.

    One pass serves both checks: in eval mode dropout is the identity, so the output is the
    reference for equality, and backward still reaches every parameter the forward uses.
    """
    cache = {}

    def get(name: str):
        if name not in cache:
            torch.manual_seed(0)
            model = oracle.build(lecture, name, NUM_CLASSES).eval()
            x = torch.randn(BATCH, 3, 224, 224)
            out = oracle.run(lecture, model, x)
            out.sum().backward()
            params = dict(model.named_parameters())
            used = {k: tuple(p.shape) for k, p in params.items() if p.grad is not None}
            model.zero_grad(set_to_none=True)
            cache[name] = Trace(model, x, out.detach(), used, set(params) - set(used))
        return cache[name]

    return get


@dataclass
class Trace:
    """What one forward and backward pass of a lecture network shows."""

    model: torch.nn.Module
    x: torch.Tensor
    out: torch.Tensor
    used: dict[str, tuple[int, ...]]  # parameters that received a gradient, with shapes
    unused: set[str]


@pytest.fixture(scope="module")
def compiled():
    """Per network: the checked spec and its module, built once."""
    cache = {}

    def get(name: str):
        if name not in cache:
            net = archc.load(EXAMPLES / f"{name}.arch")
            cache[name] = net, archc.build(net)
        return cache[name]

    return get


@pytest.mark.parametrize("name", NETWORKS)
def test_spec_builds_exactly_the_parameters_the_lecture_uses(name, traced, compiled):
    trace = traced(name)
    assert trace.unused == UNUSED.get(name, set())
    net, model = compiled(name)
    assert {k: tuple(p.shape) for k, p in model.named_parameters()} == trace.used
    assert net.n_params == sum(math.prod(s) for s in trace.used.values())
    assert net.output_shape == trace.out.shape[1:] == (NUM_CLASSES,)


@pytest.mark.parametrize("name", NETWORKS)
def test_spec_computes_the_lecture_outputs(name, traced, compiled):
    trace = traced(name)
    _, model = compiled(name)
    weights = {k: v for k, v in trace.model.state_dict().items() if k in trace.used}
    model.load_state_dict(weights, strict=True)
    with torch.no_grad():
        got = model.eval()(trace.x)
    assert got.shape == trace.out.shape == (BATCH, NUM_CLASSES)
    torch.testing.assert_close(got, trace.out, atol=1e-5, rtol=0)


def test_oracle_adds_only_imports_and_the_known_fixes(seed_text):
    blocks = oracle.code_blocks(seed_text)
    assert len(blocks) == 9  # AlexNet; VGG, make_layers; GoogLeNet x3; ResNet x3
    rest = oracle.module_source(seed_text)
    for block in blocks:  # every block verbatim, the known bugs included
        assert block in rest
        rest = rest.replace(block, "")
    added = [line for line in rest.splitlines() if line.strip() and not line.startswith("#")]
    assert added == ["import torch", "import torch.nn as nn", "Resnet = ResNet",
                     "batch_size = None"]


@pytest.mark.parametrize("name", NETWORKS)
def test_example_checks_without_diagnostics(name):
    """`archc check examples/lecture/NAME.arch` passes with no warning either."""
    result = archc.check(EXAMPLES / f"{name}.arch")
    assert result.ok
    assert [d.message for d in result.diagnostics] == []
