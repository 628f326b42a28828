"""Norms folded forward (archc/passes/fold.py): a LayerNorm's scale and shift go into the
linear map after it, an eval-mode bn before a conv that pads nothing goes into that conv.

The oracle is the unfolded eval-mode module with every LayerNorm and bn randomised: each
test first shows that dropping the affines changes the logits by far more than the
tolerance, so a fold that lost them could not pass.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

import archc
from archc.backends.module import to_module
from archc.compiler.graph import layers
from archc.passes import fold_for_inference, inference_module
from tests.test_fold import TOLERANCE, randomise

REPO = Path(__file__).resolve().parents[1]


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _without_norm_affines(model: nn.Module) -> nn.Module:
    """`model` with every LayerNorm's scale 1 and shift 0: what a fold that lost them runs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.fill_(1.0)
                if m.bias is not None:  # `bias=false`: a scale only
                    m.bias.zero_()
    return model


def _check_folded(net, seed: int = 0) -> nn.Module:
    """The folded module of `net` agrees with the randomised eval module; the affines it
    folded matter (dropping them moves the logits far past the tolerance)."""
    torch.manual_seed(seed)
    model = randomise(to_module(net), seed)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        want = model(x)
        folded = inference_module(net, model)
        got = folded(x)
        lost = _without_norm_affines(to_module(net).eval())
        lost.load_state_dict(model.state_dict())
        lost = _without_norm_affines(lost)
        assert _relative(lost(x), want) > 1000 * TOLERANCE  # the oracle tells them apart
    assert _relative(got, want) <= TOLERANCE
    return folded


def _affine_norms(module: nn.Module) -> int:
    return sum(isinstance(m, nn.LayerNorm) and m.elementwise_affine for m in module.modules())


def test_vit_folds_every_layer_norm_into_attention_mlp_and_head():
    net = archc.load(REPO / "specs" / "vit.arch", network="vit_b_16", image_size=32, patch=8,
                     depth=2, heads=4, hidden=64, mlp_dim=128, num_classes=10)
    plan = fold_for_inference(net)
    targets = [(f.layer.rsplit(".", 1)[-1], f.weight[len(f.layer) + 1:])
               for f in plan.input_folds]
    assert targets == [("self_attention", "in_proj_weight"), ("mlp", "0.weight")] * 2 + [
        ("head", "weight")]  # the last: the encoder's ln, through the class token's pooling
    assert "the scale and shift of 5 layer norms into the linear maps after them" in \
        plan.describe()
    folded = _check_folded(net)
    assert _affine_norms(folded) == 0
    assert sum(isinstance(m, nn.LayerNorm) for m in folded.modules()) == 5  # they still normalise


def test_swin_t_folds_its_block_norms_the_final_norm_and_patch_merging():
    net = archc.load(REPO / "specs" / "swin.arch", network="swin_t", embed=16,
                     depths=(2, 2, 2, 2), heads=(2, 2, 4, 4), num_classes=10)
    plan = fold_for_inference(net)
    kinds = [f.layer.rsplit(".", 1)[-1] for f in plan.input_folds]
    assert kinds[:17] == ["attn", "mlp"] * 8 + ["head"]  # norm → permute → pool → flatten
    assert [(f.norm, f.weight) for f in plan.input_folds[17:]] == [
        (f"features.{i}.norm", f"features.{i}.reduction.weight") for i in (2, 4, 6)]
    folded = _check_folded(net, seed=1)
    assert _affine_norms(folded) == 1  # the stem's norm feeds the first block's residual
    merging = [m for m in folded.modules() if type(m).__name__ == "PatchMerging"]
    assert len(merging) == 3 and all(m.reduction.bias is not None for m in merging)


def test_swin_norms_before_padded_windows_stay():
    """At 128×128 no stage divides into 7×7 windows: window attention pads with zeros after
    the norm, and those zeros are keys and values too, so the norm before it stays (the
    MLP's and patch merging's still fold)."""
    net = archc.load(REPO / "specs" / "swin.arch", network="swin_t", embed=16,
                     depths=(2, 2, 2, 2), heads=(2, 2, 4, 4), num_classes=10,
                     input_shape=(3, 128, 128))
    plan = fold_for_inference(net)
    kinds = [f.layer.rsplit(".", 1)[-1] for f in plan.input_folds]
    assert kinds[:9] == ["mlp"] * 8 + ["head"] and len(kinds) == 9 + 3
    folded = _check_folded(net, seed=6)
    assert _affine_norms(folded) == 1 + 8  # the stem's and the attentions' norms


def test_swin_v2_norms_after_attention_stay():
    """V2 normalises after attention and the MLP, into the residual add: nothing to fold
    there, only the final norm into the head."""
    net = archc.load(REPO / "specs" / "swin.arch", network="swin_v2_t", embed=16,
                     depths=(2, 2, 2, 2), heads=(2, 2, 4, 4), num_classes=10)
    plan = fold_for_inference(net)
    assert [f.layer for f in plan.input_folds] == ["head"]
    _check_folded(net, seed=2)


def test_maxvit_t_folds_its_norms_and_the_mbconv_pre_norm_batch_norm():
    net = archc.load(REPO / "specs" / "maxvit.arch", network="maxvit_t", stem=16,
                     channels=(16, 32, 32, 32), depths=(1, 1, 1, 1), head_dim=16,
                     num_classes=10, input_shape=(3, 224, 224))
    plan = fold_for_inference(net)
    forward_bn = [f for f in plan.input_folds if f.norm_kind == "bn"]
    assert [f.norm.rsplit(".", 1)[-1] for f in forward_bn] == ["pre_norm"] * 4
    assert all(f.weight.endswith("conv_a.0.weight") for f in forward_bn)  # the 1×1 conv
    assert len(plan.input_folds) - len(forward_bn) == 4 * 4 + 1  # 2 attentions, 2 MLPs; head
    assert "4 batch norms into the convs and linears after them" in plan.describe()
    folded = _check_folded(net, seed=3)
    assert _affine_norms(folded) == 0
    kept = sum(layer.kind == "bn" for layer in layers(plan.network.root))
    assert kept == sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 0


EXACT_ONLY = """
network residual(num_classes=3):
    input 3x8x8
    conv3-8  permute((0, 2, 3, 1))
    stem_norm: layernorm
    add:
        inner_norm: layernorm  fc_in: channel-fc(8, last=true)
        shortcut
    permute((0, 3, 1, 2))
    pre: bn  padded: conv3-8
    relu  post: bn  pointwise: conv1-8
    gap: global-avgpool  flatten  last_norm: layernorm -> features
    head: FC-{num_classes}
"""


def test_a_norm_that_feeds_a_residual_or_a_padding_conv_is_not_folded():
    """`stem_norm` feeds the add's branch and its shortcut: folding it would scale the
    shortcut too. `pre` feeds a conv that pads zeros. `last_norm` is named: the name could
    be read again. The norms that feed only a map that pads nothing fold."""
    net = archc.check("<residual>", text=EXACT_ONLY).network
    plan = fold_for_inference(net)
    assert [(f.norm, f.layer) for f in plan.input_folds] == [
        ("inner_norm", "fc_in"), ("post", "pointwise")]
    folded = _check_folded(net, seed=4)
    assert folded.stem_norm.weight is not None and folded.last_norm.weight is not None
    assert folded.inner_norm.weight is None
    assert sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules()) == 1  # `pre` stays
    assert "1 batch norm into the convs and linears after them" in plan.describe()


def test_compile_for_inference_reports_the_layer_norm_folds():
    from typer.testing import CliRunner

    from archc.cli.app import app

    result = CliRunner().invoke(app, ["compile", str(REPO / "specs" / "vit.arch"), "--for",
                                      "inference", "--set", "depth=2", "--set", "hidden=64",
                                      "--set", "heads=4", "--set", "mlp_dim=128"])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith(
        "for inference: folded 0 batch norms into the convs and linears before them, the "
        "scale and shift of 5 layer norms into the linear maps after them; removed 3 dropouts")


def test_folded_weights_by_hand():
    """W' = W·diag(γ), b' = b + W·β for one LayerNorm and one Linear, computed here."""
    net = archc.check("<one>", text="network one:\n    input 6x1x1\n    flatten  n: layernorm"
                      "  f: FC-3\n").network
    model = randomise(to_module(net), seed=5)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folded = inference_module(net, model)
    w, b = state["f.weight"], state["f.bias"]
    assert torch.allclose(folded.f.weight, w * state["n.weight"][None, :])
    assert torch.allclose(folded.f.bias, b + w @ state["n.bias"])
    assert sorted(folded.state_dict()) == ["f.bias", "f.weight"]


def test_a_layer_norm_without_a_shift_folds_its_scale():
    """`layernorm2d(bias=false)` (timm's LayerNorm2dNoBias) has no `bias` key: its scale
    alone folds into the 1×1 conv after it."""
    net = archc.check("<nobias>", text="network nobias:\n    input 3x6x6\n    conv3-8"
                      "  n: layernorm2d(bias=false)  c: conv1-8  global-avgpool  flatten"
                      "  FC-3\n").network
    plan = fold_for_inference(net)
    assert [(f.norm, f.layer) for f in plan.input_folds] == [("n", "c")]
    folded = _check_folded(net, seed=8)
    assert folded.n.weight is None
