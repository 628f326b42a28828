"""archc's static analysis of every spec agrees with a real forward pass of the built module.

For every spec under specs/ and examples/lecture/, and the fixture with every layer kind
(default parameters): the static parameter total is the module's, the static MACs are half
the FLOPs torch's FlopCounterMode counts per sample in one forward pass at the declared input
(batch 1, or 2 in training mode), and every layer's static input and output shapes are the
shapes its module sees: forward hooks on every leaf module, found by the path that
`archc.compiler.graph.layers` gives each layer. The totals are checked layer by layer, so a mismatch
names its layer.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.compiler.graph import layers

ROOT = Path(__file__).resolve().parents[1]
# tests/fixtures/every_kind.arch holds every layer kind and merge of the registry.
SPECS = sorted([*ROOT.glob("specs/*.arch"), *ROOT.glob("examples/lecture/*.arch"),
                ROOT / "tests" / "fixtures" / "every_kind.arch"])


def leaves(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The modules of the spec's layers, by their dotted path: modules without children, and
    layers built of torch modules (`archc_layer`: self-attention's out_proj, the MLP's
    Linears), not the parts inside them."""
    out: dict[str, torch.nn.Module] = {}
    inside: tuple[str, ...] = ()
    for name, m in model.named_modules():
        if inside and name.startswith(inside):
            continue
        if getattr(m, "archc_layer", False):
            inside += (name + ".",)
            out[name] = m
        elif not any(m.children()):
            out[name] = m
    return out


def layer_modules(model: torch.nn.Module, net) -> dict[str, torch.nn.Module]:
    """The module of each layer, by its path: a leaf, or a layer with parts of its own
    (eca's conv, split-attention's fc1, bn1 and fc2)."""
    modules = dict(model.named_modules())
    return {layer.path: modules[layer.path] for layer in layers(net.root)}


def trace(model: torch.nn.Module, x: torch.Tensor, units: dict[str, torch.nn.Module]):
    """One forward pass: per layer module of `units`, the (input, output) shapes of each call;
    per module, FLOPs."""
    seen: dict[str, list[tuple[tuple, tuple]]] = {}

    def hook(name):
        def record(module, inputs, output):
            seen.setdefault(name, []).append((tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in units.items()]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    prefix = type(model).__name__  # FlopCounterMode names modules `RootClass.path`
    flops = {name[len(prefix) + 1:]: sum(ops.values())
             for name, ops in counter.get_flop_counts().items() if name.startswith(prefix + ".")}
    return seen, flops, counter.get_total_flops()


@pytest.fixture(scope="module", params=SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def traced(request):
    """A spec's checked network, its module, and one forward pass's trace."""
    net = archc.load(request.param)
    torch.manual_seed(0)
    model = archc.build(net)
    # Auxiliary heads (taps) run in training mode only; run them so every layer is seen.
    # Training-mode batch norm needs two samples where a head pools to 1×1 (Inception-v3's);
    # FLOPs are then per sample.
    model.train(bool(net.aux_outputs))
    batch = 2 if net.aux_outputs else 1
    seen, flops, total = trace(model, torch.randn(batch, *net.input_shape),
                               layer_modules(model, net))
    return net, model, seen, {k: v // batch for k, v in flops.items()}, total // batch


def test_every_layer_is_a_leaf_module_named_by_its_path(traced):
    net, model, seen, _, _ = traced
    paths = [layer.path for layer in layers(net.root)]
    assert len(paths) == len(set(paths))
    # every leaf module is a layer, or a part of one (a layer's parts are no layers)
    assert all(leaf in paths or leaf.rsplit(".", 1)[0] in paths for leaf in leaves(model))
    assert all(not any(p.startswith(q + ".") for q in paths) for p in paths)
    assert set(seen) == set(paths), "every layer runs in the forward pass"
    assert all(len(calls) == 1 for calls in seen.values()), "and runs once"


def test_static_shapes_are_the_forward_shapes(traced):
    net, _, seen, _, _ = traced
    static = {layer.path: (layer.in_shape, layer.out_shape) for layer in layers(net.root)}
    wrong = {path: (shapes, seen[path][0]) for path, shapes in static.items()
             if seen[path][0] != shapes}
    assert not wrong, f"static vs real (in, out) shapes differ: {wrong}"


def test_static_parameter_count_is_the_modules(traced):
    net, model, _, _, _ = traced
    modules = layer_modules(model, net)
    real = {path: sum(p.numel() for p in m.parameters()) for path, m in modules.items()}
    wrong = {layer.path: (layer.n_params, real[layer.path])
             for layer in layers(net.root) if layer.n_params != real[layer.path]}
    assert not wrong, f"static vs real parameters differ: {wrong}"
    assert net.n_params == sum(p.numel() for p in model.parameters())


def test_static_macs_are_half_the_counted_flops(traced):
    net, _, _, flops, total = traced
    wrong = {layer.path: (2 * layer.macs, flops.get(layer.path, 0))
             for layer in layers(net.root) if 2 * layer.macs != flops.get(layer.path, 0)}
    assert not wrong, f"static 2*MACs vs counted FLOPs differ: {wrong}"
    assert 2 * net.macs == total
