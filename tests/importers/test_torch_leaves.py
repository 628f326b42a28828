"""The PyTorch importer's table of leaf mappings (archc/importers/leaves.py), the reading of
modules fx cannot trace, and ViT and Swin imported from torchvision.

Each import is checked by the importer itself; the tests check it again with their own
oracle: the written text rebuilt by archc, the source's weights loaded strictly, and the
outputs compared after every norm (batch, layer, group) is given random parameters.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch
import torchvision
from timm.layers import BatchNormAct2d, ClassifierHead, ConvNormAct, SelectAdaptivePool2d
from torch import nn

import archc
from archc.compiler.diagnostics import Diagnostics
from archc.importers.layout import spec_text
from archc.importers.leaves import leaf_for, remove_leaf
from archc.importers.torch_module import load

HERE = "tests.importers.test_torch_leaves"
TINY = (3, 32, 32)


def imported(source: str, shape: tuple = TINY, **kwargs):
    """The importer's IR of `source`, checked at `shape`, and its diagnostics."""
    diags = Diagnostics()
    return load(source, diags, check_shape=shape, **kwargs), diags


def randomize(model: nn.Module) -> None:
    """The test's own randomisation of every norm's parameters and statistics."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():  # ViT's head and class token start at zero
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                if m.bias is not None:  # timm's LayerNorm2dNoBias has none
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def assert_exact(text: str, source: nn.Module, shape: tuple = TINY) -> None:
    """archc's module of `text` loads `source`'s weights strictly and computes the same."""
    result = archc.check("imported.arch", input_shape=shape, text=text)
    assert result.ok, [d.message for d in result.diagnostics]
    built = archc.build(result.network).eval()
    randomize(source)
    built.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = source.eval()(x), built(x)
    assert expected.abs().max() > 1e-3  # the comparison can fail
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def messages(diags: Diagnostics) -> list[str]:
    return [f"{d.message} {' '.join(d.notes)}" for d in diags.items]


# --------------------------------------------------------------------------- ViT and Swin


def small_vit() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=10)


def small_swin(version: int = 1) -> nn.Module:
    from torchvision.models import swin_transformer as swin

    torch.manual_seed(0)
    extra = {} if version == 1 else {"block": swin.SwinTransformerBlockV2,
                                      "downsample_layer": swin.PatchMergingV2}
    return swin.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                window_size=[4, 4], stochastic_depth_prob=0.1, num_classes=10,
                                **extra)


def small_swin_v2() -> nn.Module:
    return small_swin(2)


def test_a_small_vit_imports_exactly_with_the_token_kinds():
    spec, diags = imported(f"{HERE}:small_vit")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "conv_proj: patch-embed" in text and "class_token: class-token" in text
    assert "pos_embedding: pos-embedding" in text
    assert "self_attention: self-attention" in text and "mlp: mlp" in text
    assert "block encoder_block" in text  # EncoderBlock: one block, read from its row
    assert "token-pool" in text
    assert_exact(text, small_vit())


@pytest.mark.parametrize("factory", ["small_swin", "small_swin_v2"])
def test_a_small_swin_imports_exactly_with_window_attention(factory):
    spec, diags = imported(f"{HERE}:{factory}")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "window-attention" in text and "patch-merging" in text
    assert ("version=2" in text) == (factory == "small_swin_v2")
    assert_exact(text, globals()[factory]())


def _import_and_verify(tmp_path, name: str) -> None:
    """`archc import torchvision:NAME -o F` then `archc verify F --against torchvision:NAME`."""
    out = tmp_path / f"{name}.arch"
    run = [sys.executable, "-m", "archc"]
    made = subprocess.run([*run, "import", f"torchvision:{name}", "-o", str(out)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    checked = subprocess.run([*run, "verify", str(out), "--against", f"torchvision:{name}"],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "exact" in checked.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_torchvision_transformers_round_trip(tmp_path, name):
    _import_and_verify(tmp_path, name)


# --------------------------------------------------------------------------- timm's helpers


class TimmParts(nn.Module):
    """A net of timm's helpers: a conv-norm-act, a norm-act, a Linear, a classifier head."""

    def __init__(self):
        super().__init__()
        self.stem = ConvNormAct(3, 8, 3, stride=2)
        self.conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn = BatchNormAct2d(8, act_layer=nn.SiLU)
        self.head = ClassifierHead(8, 10, pool_type="avg", drop_rate=0.1)

    def forward(self, x):
        return self.head(self.bn(self.conv(self.stem(x))))


class TimmFastPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.pool = SelectAdaptivePool2d(pool_type="fast", flatten=True)
        self.fc = timm.layers.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)))


def test_timm_helpers_are_rows_of_the_table():
    for module in (BatchNormAct2d(4), ClassifierHead(4, 2), timm.layers.Linear(2, 2),
                   SelectAdaptivePool2d(), ConvNormAct(3, 4, 3)):
        assert leaf_for(module) is not None, type(module).__name__
    assert leaf_for(ConvNormAct(3, 4, 3)).block  # a block: one definition, many calls


def test_timm_helpers_import_exactly():
    spec, diags = imported(f"{HERE}:TimmParts")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "bn: bn  silu" in text  # the norm keyed as the module, its activation after it
    assert "block conv_norm_act" in text
    assert "head: [global-avgpool flatten drop: dropout(0.1) fc: fc-10]" in text
    assert_exact(text, TimmParts())


def test_timm_fast_pooling_and_linear_import_exactly():
    spec, diags = imported(f"{HERE}:TimmFastPool")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "global-avgpool" in text.replace("globalavgpool", "global-avgpool")
    assert_exact(text, TimmFastPool())


def test_a_timm_network_imports_exactly():
    spec, diags = imported("timm:create_model", args={"model_name": "regnetx_002"})
    assert spec is not None, messages(diags)


# --------------------------------------------------------------------------- matching


class OwnForwardConv(nn.Conv2d):
    """A Conv2d subclass whose forward is its own: not the Conv2d row's."""

    def forward(self, x):
        return super().forward(x) * 2


class PlainConv(nn.Conv2d):
    """A Conv2d subclass that keeps Conv2d's forward: the Conv2d row's."""


def test_a_row_matches_subclasses_that_keep_its_forward_only():
    conv_row = leaf_for(nn.Conv2d(1, 1, 1))
    assert leaf_for(PlainConv(1, 1, 1)) is conv_row
    assert leaf_for(OwnForwardConv(1, 1, 1)) is None


# --------------------------------------------------------------------------- user rows


class NormRelu(nn.BatchNorm2d):
    """A user's fused norm and activation whose forward fx cannot read."""

    def __init__(self, c: int):
        super().__init__(c)
        self.act = nn.ReLU()

    def forward(self, x):
        if x.dim() != 4:  # control flow on a traced value
            raise ValueError("an image please")
        return self.act(super().forward(x))


class UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = NormRelu(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.norm(self.conv(x)))))


def test_a_user_registers_a_row_for_their_helper():
    before, diags = imported(f"{HERE}:UserNet")
    assert before is None  # NormRelu holds tensors of its own: not read as its children
    assert any("NormRelu" in m for m in messages(diags))
    archc.register_leaf(NormRelu, lambda m, context: [
        context.layer("bn", own=True, eps=m.eps), context.child("act")])
    try:
        spec, diags = imported(f"{HERE}:UserNet")
    finally:
        remove_leaf(NormRelu)
    assert spec is not None, messages(diags)
    assert "norm: bn  relu" in spec_text(spec)
    assert_exact(spec_text(spec), UserNet())


# --------------------------------------------------------------------------- untraceable


class Checked(nn.Module):
    """A helper whose forward fx cannot trace (it branches on the input's rank) but that
    calls its children in order."""

    def __init__(self, reverse: bool = False):
        super().__init__()
        self.first = nn.Conv2d(4, 4, 3, padding=1)
        self.second = nn.Conv2d(4, 4, 1)
        self.act = nn.ReLU()
        self.reverse = reverse

    def forward(self, x):
        if x.dim() == 3:
            x = x[None]
        if self.reverse:  # registered first, called second: reading in order is wrong
            return self.act(self.first(self.second(x)))
        return self.act(self.second(self.first(x)))


class WithChecked(nn.Module):
    def __init__(self, reverse: bool = False):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = Checked(reverse)

    def forward(self, x):
        return self.body(self.stem(x))


def reversed_net() -> nn.Module:
    return WithChecked(reverse=True)


def test_an_untraceable_helper_is_read_as_its_children_and_checked():
    spec, diags = imported(f"{HERE}:WithChecked")
    assert spec is not None, messages(diags)
    assert_exact(spec_text(spec), WithChecked())


def test_a_wrong_reading_of_an_untraceable_helper_fails_the_check():
    spec, diags = imported(f"{HERE}:reversed_net")
    assert spec is None
    found = messages(diags)
    assert any("computes something else" in m and "read as its children in order" in m
               for m in found), found


def test_asserts_on_the_input_rank_are_left_out():
    class Asserting(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            torch._assert(x.ndim == 4, "an image")
            return self.conv(x)

    diags = Diagnostics()
    from archc.importers.torch_module import probe, to_spec

    model = Asserting()
    shapes, shape = probe(model, TINY)
    spec = to_spec(model, "asserting", shape, shapes, diags, "test")
    assert spec is not None, messages(diags)
    assert "conv3-4" in spec_text(spec)


class Summed(nn.Module):
    """Branches added with Python's `sum`, which starts from 0 (MobileOne's blocks)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return sum([self.a(x), self.b(x)])


def test_a_sum_of_branches_is_an_add_merge():
    spec, diags = imported(f"{HERE}:Summed")
    assert spec is not None, messages(diags)
    assert "add:" in spec_text(spec)
    assert_exact(spec_text(spec), Summed())


class TimmNormSiblings(nn.Module):
    """timm's group-norm and layer-norm acts, and the norm-MLP head (ConvNeXt's)."""

    def __init__(self):
        super().__init__()
        from timm.layers import GroupNormAct, LayerNormAct2d, NormMlpClassifierHead

        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.gn = GroupNormAct(8, 4, act_layer=nn.GELU)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.ln = LayerNormAct2d(8, act_layer=nn.ReLU)
        self.head = NormMlpClassifierHead(8, 6, hidden_size=12, pool_type="avg")

    def forward(self, x):
        return self.head(self.ln(self.conv2(self.gn(self.conv(x)))))


def test_timm_norm_act_siblings_and_the_norm_mlp_head_import_exactly():
    spec, diags = imported(f"{HERE}:TimmNormSiblings")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "gn: groupnorm-4  gelu" in text.replace("groupnorm(4)", "groupnorm-4")
    assert "ln: layernorm2d  relu" in text
    assert "pre_logits: [fc: fc-12 act: tanh]" in text
    assert_exact(text, TimmNormSiblings())


def numbered_norm_act() -> nn.Module:
    """timm's norm-act at a numbered place of a Sequential, a conv with weights after it."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4), nn.Conv2d(4, 4, 1),
                         nn.Flatten())


def test_a_helper_that_would_renumber_the_weights_after_it_is_reported():
    spec, diags = imported(f"{HERE}:numbered_norm_act")
    assert spec is None
    assert any("renumber the weights of `2`" in m for m in messages(diags)), messages(diags)


class TimmOps(nn.Module):
    """timm's space-to-depth, weight-standardised conv, ECA and blur pool, and a branch
    scaled by a constant (TResNet, NF-ResNet, ECA-ResNet, Inception-ResNet-v2)."""

    def __init__(self):
        super().__init__()
        from timm.layers import BlurPool2d, EcaModule, ScaledStdConv2d, SpaceToDepth

        self.s2d = SpaceToDepth(4)  # (3, 32, 32) → (48, 8, 8)
        self.conv = ScaledStdConv2d(48, 8, 3, gamma=1.7)
        self.eca = EcaModule(8, kernel_size=3)
        self.blur = BlurPool2d(8, filt_size=3, stride=2)
        self.branch = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        x = self.blur(self.eca(self.conv(self.s2d(x))))
        return x + self.branch(x) * 0.17


def test_timm_tensor_operations_import_exactly():
    spec, diags = imported(f"{HERE}:TimmOps")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    for word in ("space-to-depth", "std-conv", "eca", "blur-pool", "constant-scale"):
        assert word in text, (word, text)
    assert_exact(text, TimmOps())


class Ghost(nn.Module):
    """GhostNet's module: a conv, a cheap depthwise conv of it, both concatenated and the
    first `out` channels kept."""

    def __init__(self, out: int = 6):
        super().__init__()
        self.out = out
        self.primary = nn.Conv2d(3, 4, 1)
        self.cheap = nn.Conv2d(4, 4, 3, padding=1, groups=4)

    def forward(self, x):
        x1 = self.primary(x)
        return torch.cat([x1, self.cheap(x1)], dim=1)[:, :self.out]


class EveryOther(nn.Module):
    def forward(self, x):
        return x[:, ::2]


def test_a_slice_of_the_channels_is_a_channel_slice():
    spec, diags = imported(f"{HERE}:Ghost")
    assert spec is not None, messages(diags)
    assert "channel-slice(0, 6)" in spec_text(spec)
    assert_exact(spec_text(spec), Ghost())
    spec, diags = imported(f"{HERE}:EveryOther")
    assert spec is None and any("indexes a tensor" in m for m in messages(diags))


class PartialResidual(nn.Module):
    """ReXNet's residual into the first channels: cat([y[:, :c] + x, y[:, c:]])."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return torch.cat([y[:, 0:3] + x, y[:, 3:]], dim=1)


def test_a_residual_into_the_first_channels_is_an_add_into_merge():
    spec, diags = imported(f"{HERE}:PartialResidual")
    assert spec is not None, messages(diags)
    assert "add-into:" in spec_text(spec)
    assert_exact(spec_text(spec), PartialResidual())


class CrossStage(nn.Module):
    """CSPNet's stage: the channels split in two halves, one through blocks, rejoined."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(3, 8, 1)
        self.blocks = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        xs, xb = self.expand(x).split(4, dim=1)
        return torch.cat([xs, self.blocks(xb)], dim=1)


def test_a_split_into_equal_halves_is_a_split_merge():
    spec, diags = imported(f"{HERE}:CrossStage")
    assert spec is not None, messages(diags)
    assert "split:" in spec_text(spec)
    assert_exact(spec_text(spec), CrossStage())
