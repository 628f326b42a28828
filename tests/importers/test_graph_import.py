"""Forwards that are graphs, not trees of branches: the importer writes them with named
tensors (`-> name`, `@name`, `concat(@a, @b)`). Small timm modules, each imported (the
importer checks itself) and checked again by the test's own oracle (norms randomised,
weights loaded strictly)."""

from __future__ import annotations

import torch
from torch import nn

from archc.importers.layout import spec_text
from tests.importers.test_torch_leaves import assert_exact, imported, messages

HERE = "tests.importers.test_graph_import"


def hgnet_net() -> nn.Module:
    """Two of HGNet's blocks: every layer's output is read by the next layer and by the
    final concat of them all (and, with the residual, the input by the add too)."""
    from timm.models.hgnet import HighPerfGpuBlock

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        HighPerfGpuBlock(8, 4, 8, layer_num=3, residual=True),
        HighPerfGpuBlock(8, 4, 12, layer_num=2, agg="se"),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 10))


def test_a_value_read_by_the_next_layer_and_a_later_concat_imports_as_named_tensors():
    spec, diags = imported(f"{HERE}:hgnet_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "-> layers_0" in text  # named inside the `layers:` group, read after it
    assert "concat(@x, @layers_0, @layers_1, @layers_2)" in text
    assert "@x)" in text  # the residual adds the block's input
    assert_exact(text, hgnet_net())
