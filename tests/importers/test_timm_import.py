"""timm's helper patterns that `archc import` reads (the fast lane of bench/timm_import.py):
small modules written the way timm writes them, each imported (the importer checks itself)
and checked again by the test's own oracle (norms randomised, weights loaded strictly)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

import archc
from archc.importers.layout import spec_text
from tests.importers.test_torch_leaves import assert_exact, imported, messages

HERE = "tests.importers.test_timm_import"


class ConvBn(nn.Module):
    """A conv and its bn, one module (timm's ConvNormAct)."""

    def __init__(self, c: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, k, padding=k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x))


class RepBranches(nn.Module):
    """MobileOne's block: a 1×1 branch plus a ModuleList of conv+bn branches, summed in a
    loop (`out += branch(x)`)."""

    def __init__(self, c: int = 8, n: int = 3):
        super().__init__()
        self.conv_scale = ConvBn(c, 1)
        self.conv_kxk = nn.ModuleList(ConvBn(c, 3) for _ in range(n))
        self.act = nn.ReLU()

    def forward(self, x):
        out = self.conv_scale(x)
        for branch in self.conv_kxk:
            out = out + branch(x)
        return self.act(out)


def rep_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), RepBranches(), RepBranches(n=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_a_modulelist_summed_in_a_loop_imports_as_a_numbered_merge():
    spec, diags = imported(f"{HERE}:rep_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "conv_kxk: add:" in text  # conv_kxk.0 ... conv_kxk.2: one numbered submodule
    assert "conv_kxk.0" not in text
    assert_exact(text, rep_net())


def convnext_net() -> nn.Module:
    """timm's ConvNeXt block: its layer scale `gamma` is kept as (C,) and reshaped to
    (1, C, 1, 1) where it multiplies; its MLP of 1×1 convs is timm's `ConvMlp` (snake-cased
    `conv_mlp`, a name that reads as the layer `conv`: the block must be named otherwise)."""
    from timm.models.convnext import ConvNeXtBlock

    torch.manual_seed(0)
    block = ConvNeXtBlock(8, ls_init_value=1.0, conv_mlp=True)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), block, nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        net[1].gamma.copy_(torch.randn(8))  # a scale that differs per channel
    return net


def test_timms_reshaped_layer_scale_imports_as_a_flat_scale():
    spec, diags = imported(f"{HERE}:convnext_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "gamma: scale(flat=true)" in text
    assert "block block_mlp" in text
    assert_exact(text, convnext_net())


class Passthrough(nn.Module):
    """A module that computes nothing when it runs (timm's DropPath at rate 0)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        return x * 2


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.drop_path = Passthrough()

    def forward(self, x):
        return x + self.drop_path(self.conv(x))


def passthrough_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), Stage(), Stage(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_a_module_that_computes_nothing_becomes_a_block_of_identity():
    spec, diags = imported(f"{HERE}:passthrough_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "block passthrough:\n    identity" in text
    assert_exact(text, passthrough_net())


def mixed_conv_net() -> nn.Module:
    """timm's MixedConv2d: 8 channels split 4, 2, 2 over kernels 3, 5 and 7 (depthwise)."""
    from timm.layers import MixedConv2d

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                         MixedConv2d(8, 8, kernel_size=[3, 5, 7], depthwise=True),
                         nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def test_timms_mixed_conv_imports_as_a_mix_split_merge():
    spec, diags = imported(f"{HERE}:mixed_conv_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "mix-split:" in text
    assert "conv5-2(groups=2" in text  # the second group: 2 channels, its own kernel
    assert_exact(text, mixed_conv_net())


def selective_kernel_net(split: bool = True) -> nn.Module:
    """timm's SelectiveKernel: a 3×3 and a dilated 3×3 path, then attention across them."""
    from timm.layers import SelectiveKernel

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                         SelectiveKernel(8, 8, split_input=split, rd_ratio=0.5, rd_divisor=4),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def selective_kernel_whole() -> nn.Module:
    return selective_kernel_net(split=False)


def test_timms_selective_kernel_imports_as_paths_and_split_attention():
    for factory, merge in (("selective_kernel_net", "paths: split:"),
                           ("selective_kernel_whole", "paths: concat:")):
        spec, diags = imported(f"{HERE}:{factory}")
        assert spec is not None, messages(diags)
        text = spec_text(spec)
        assert merge in text and 'attn: split-attention(' in text and 'names="sk"' in text
        assert_exact(text, globals()[factory]())


def norm_and_scale_net() -> nn.Module:
    """timm's GroupNorm1 and GroupNorm (nn.GroupNorm with forwards of their own) and
    metaformer's Scale (a (C,) parameter viewed as (C, 1, 1))."""
    from timm.layers import GroupNorm, GroupNorm1
    from timm.models.metaformer import Scale

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), GroupNorm1(8), GroupNorm(8, 4),
                        Scale(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    with torch.no_grad():
        net[3].scale.copy_(torch.randn(8))
    return net


def test_timms_group_norms_and_metaformer_scale_import():
    spec, diags = imported(f"{HERE}:norm_and_scale_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "groupnorm(1)  groupnorm(4)" in text
    assert "scale: scale(flat=true)" in text
    assert_exact(text, norm_and_scale_net())


class SizedSplit(nn.Module):
    """InceptionNeXt's token mixer, unequal: the channels split 5, 1, 2, the first piece
    passed on, the others through their own convs, concatenated."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 1, 3, padding=1)
        self.conv_b = nn.Conv2d(2, 2, (1, 5), padding=(0, 2), groups=2)

    def forward(self, x):
        keep, a, b = torch.split(x, [5, 1, 2], dim=1)
        return torch.cat((keep, self.conv_a(a), self.conv_b(b)), dim=1)


def sized_split_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), SizedSplit(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_a_split_by_unequal_sizes_imports_as_channel_slices():
    spec, diags = imported(f"{HERE}:sized_split_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "channel-slice(5, 6)" in text and "channel-slice(6, 8)" in text
    assert_exact(text, sized_split_net())


def distilled_head_net() -> nn.Module:
    """RepViT's classifier with distillation: in eval, the mean of its two heads."""
    from timm.models.repvit import RepVitClassifier

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         RepVitClassifier(8, 10, distillation=True))


def test_repvits_distilled_head_imports_as_the_mean_of_its_heads():
    spec, diags = imported(f"{HERE}:distilled_head_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "constant-scale-{0.5}" in text and "head_dist: norm_linear" in text
    assert_exact(text, distilled_head_net())


class PartialConv(nn.Module):
    """FasterNet's partial conv: the forward is chosen per instance, and convolves only the
    first quarter of the channels."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.part, self.rest = c // 4, c - c // 4
        self.conv = nn.Conv2d(self.part, self.part, 3, padding=1, bias=False)
        self.forward = self.forward_split_cat

    def forward_split_cat(self, x):
        a, b = torch.split(x, [self.part, self.rest], dim=1)
        return torch.cat((self.conv(a), b), 1)


def partial_conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), PartialConv(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_a_forward_chosen_per_instance_is_the_one_read():
    spec, diags = imported(f"{HERE}:partial_conv_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "channel-slice(0, 2)" in text and "conv3-2" in text
    assert_exact(text, partial_conv_net())


class KeywordHeadNet(nn.Module):
    """CSPNeXt's forward: timm's `self.head(x, pre_logits=pre_logits)`, traced at False."""

    def __init__(self):
        from timm.layers import ClassifierHead

        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.head = ClassifierHead(8, 10)

    def forward_head(self, x, pre_logits: bool = False):
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.stem(x))


def keyword_head_net() -> nn.Module:
    torch.manual_seed(0)
    return KeywordHeadNet()


def test_a_module_called_with_its_default_keywords_imports():
    spec, diags = imported(f"{HERE}:keyword_head_net")
    assert spec is not None, messages(diags)
    assert_exact(spec_text(spec), keyword_head_net())


class ChannelLastHead(nn.Module):
    """MambaOut's style: a channel-last Linear between permutes, and a head whose forward
    takes `pre_logits` (traced at its default, which fx guards with an assert)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x, pre_logits: bool = False):
        x = self.fc1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = x.mean((2, 3))
        if pre_logits:
            return x
        return self.fc(x)


def channel_last_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), ChannelLastHead())


def test_permutes_and_a_guarded_default_argument_import():
    spec, diags = imported(f"{HERE}:channel_last_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "permute((0, 2, 3, 1))" in text and "permute((0, 3, 1, 2))" in text
    assert_exact(text, channel_last_net())


class PoolMixer(nn.Module):
    """PoolFormer's token mixer: the pooled neighbourhood minus the token itself."""

    def __init__(self, method: bool = False):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.method = method

    def forward(self, x):
        pooled = self.pool(x)
        return pooled.sub(x) if self.method else pooled - x


def pool_mixer_net(method: bool = False) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), PoolMixer(method),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def pool_mixer_by_method() -> nn.Module:
    return pool_mixer_net(method=True)


def test_poolformers_pool_minus_input_imports_as_a_sub_merge():
    for factory, model in (("pool_mixer_net", pool_mixer_net()),
                           ("pool_mixer_by_method", pool_mixer_by_method())):
        spec, diags = imported(f"{HERE}:{factory}")
        assert spec is not None, messages(diags)
        text = spec_text(spec)
        assert "sub:" in text
        # the order holds: the pool first, the input (identity) second
        assert text.index("pool: avgpool") < text.index("identity", text.index("sub:"))
        assert_exact(text, model)


class ScaledDifference(nn.Module):
    def forward(self, x):
        return torch.sub(x, x.sigmoid(), alpha=2)


def scaled_difference_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ScaledDifference())


def test_a_scaled_subtraction_is_refused_where_it_is_written():
    spec, diags = imported(f"{HERE}:scaled_difference_net")
    assert spec is None
    (message,) = messages(diags)
    assert "archc's `sub:` subtracts one whole branch from another" in message
    assert "torch.sub(x, x.sigmoid(), alpha=2)" in message  # where it is written


def test_timms_fastvit_imports_exactly_with_the_sub_merge():
    """fastvit_t8's RepMixer (`x + scale * (mixer(x) - norm(x))`) needs `sub:`; archc's
    import checks itself against timm's module (strict load, same outputs, norms randomised)."""
    text, diags = archc.import_network("timm:create_model", {"model_name": "fastvit_t8"})
    assert text is not None, [d.message for d in diags]
    assert "sub([mixer: " in text  # the one-line merge: mixer(x) - norm(x)


def test_timms_poolformer_imports_exactly():
    """poolformer_s12: its `pool(x) - x` token mixer is a `sub:` merge, and its head's
    children, called one by one in forward_head, are one `head: [...]` group."""
    text, diags = archc.import_network("timm:create_model", {"model_name": "poolformer_s12"})
    assert text is not None, [d.message for d in diags]
    assert "sub:" in text and "head:" in text and "norm: layernorm2d" in text


class HeadCalledByParts(nn.Module):
    """MetaFormer's forward_head: a Sequential of named children called one by one."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Sequential(OrderedDict([
            ("global_pool", nn.AdaptiveAvgPool2d(1)), ("norm", nn.BatchNorm2d(8)),
            ("flatten", nn.Flatten(1)), ("drop", nn.Dropout(0.0)), ("fc", nn.Linear(8, 10))]))

    def forward(self, x):
        x = self.stem(x)
        x = self.head.global_pool(x)
        x = self.head.norm(x)
        x = self.head.flatten(x)
        x = self.head.drop(x)
        return self.head.fc(x)


def head_by_parts_net() -> nn.Module:
    torch.manual_seed(0)
    return HeadCalledByParts()


def test_named_children_called_one_by_one_import_as_one_labelled_group():
    spec, diags = imported(f"{HERE}:head_by_parts_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "head: [" in text and "norm: bn" in text and "fc: fc-10" in text
    assert_exact(text, head_by_parts_net())


class HeadCalledApart(HeadCalledByParts):
    """The head's children with another layer between them: not one group, so each keeps
    its dotted label (`head.flatten:`)."""

    def forward(self, x):
        x = self.head.norm(self.head.global_pool(self.stem(x)))
        x = self.head.flatten(torch.relu(x))
        return self.head.fc(x)


def head_apart_net() -> nn.Module:
    return HeadCalledApart()


def test_named_children_called_apart_keep_dotted_labels():
    spec, diags = imported(f"{HERE}:head_apart_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "head.norm: bn  relu  head.flatten: flatten" in text and "head: [" not in text
    assert_exact(text, head_apart_net())


def split_attn_net(norm: type[nn.Module] | None = nn.BatchNorm2d) -> nn.Module:
    """timm's SplitAttn (ResNeSt's conv2) with radix 2 and 2 groups, then radix 1 strided."""
    from timm.layers import SplitAttn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1),
                         SplitAttn(8, 8, groups=2, radix=2, rd_channels=4, norm_layer=norm),
                         SplitAttn(8, 16, stride=2, groups=2, radix=1, norm_layer=norm),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def split_attn_without_norms() -> nn.Module:
    return split_attn_net(norm=None)


def test_timms_split_attn_imports_as_one_splat_conv_with_its_keys():
    spec, diags = imported(f"{HERE}:split_attn_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "conv3-8  splat-conv(out=8, groups=2, hidden=8)\n" in text  # `1.conv.weight`, ...
    assert "splat-conv(out=16, stride=2, groups=2, radix=1, hidden=32)" in text
    assert_exact(text, split_attn_net())


def test_a_split_attn_without_its_norms_is_refused_by_name():
    spec, diags = imported(f"{HERE}:split_attn_without_norms")
    assert spec is None
    assert any("`1`" in m and "other than conv, BatchNorm2d and ReLU" in m
               for m in messages(diags)), messages(diags)


def no_bias_norms() -> nn.Module:
    """ConvFormer's norms: timm's LayerNorm2dNoBias on an image and LayerNormNoBias on a
    channel-last one, a scale (`weight`) and no shift."""
    from timm.models.metaformer import LayerNorm2dNoBias, LayerNormNoBias

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), LayerNorm2dNoBias(8),
                         nn.Conv2d(8, 8, 1), timm_permute(0, 2, 3, 1), LayerNormNoBias(8),
                         timm_permute(0, 3, 1, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 10))


def timm_permute(*dims: int) -> nn.Module:
    from torchvision.ops.misc import Permute

    return Permute(list(dims))


def test_layer_norms_without_a_shift_import_with_bias_false():
    spec, diags = imported(f"{HERE}:no_bias_norms")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "layernorm2d(eps=1e-06, bias=false)" in text.replace("1e-6", "1e-06"), text
    assert "layernorm(eps=1e-06, bias=false)" in text.replace("1e-6", "1e-06"), text
    assert_exact(text, no_bias_norms())


class ChannelLastMean(nn.Module):
    """MambaOut's head: the mean over H and W of a channel-last (B, H, W, C) image, then a
    norm and a Linear; `keep` averages with keepdim (B, 1, 1, C) and flattens after."""

    def __init__(self, keep: bool = False):
        super().__init__()
        self.keep = keep
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        x = x.mean((1, 2), keepdim=True).flatten(1) if self.keep else x.mean((1, 2))
        return self.fc(self.norm(x))


def channel_last_mean_kept() -> nn.Module:
    return ChannelLastMean(keep=True)


def test_a_mean_over_the_pixels_of_a_channel_last_image_is_a_global_pool():
    for source, make in (("ChannelLastMean", ChannelLastMean),
                         ("channel_last_mean_kept", channel_last_mean_kept)):
        spec, diags = imported(f"{HERE}:{source}")
        assert spec is not None, messages(diags)
        text = spec_text(spec)
        assert "permute((0, 3, 1, 2))" in text and "global" in text, text
        torch.manual_seed(0)
        assert_exact(text, make())


class AffineConv(nn.Module):
    """HGNetV2's ConvBNAct with its learnable affine after the activation (`use_lab`)."""

    def __init__(self):
        from timm.models.hgnet import LearnableAffineBlock

        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.lab = LearnableAffineBlock(scale_value=0.7, bias_value=-0.3)

    def forward(self, x):
        return self.lab(self.act(self.bn(self.conv(x))))


def affine_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(AffineConv(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_hgnetv2s_learnable_affine_imports_as_affine_with_timms_keys():
    spec, diags = imported(f"{HERE}:affine_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "lab: affine" in text, text
    assert_exact(text, affine_net())  # strict load: `0.lab.scale`, `0.lab.bias`


class StarMlp(nn.Module):
    """ConvFormer's activations: StarReLU (`s * relu(x) ** 2 + b`, its own `scale` and
    `bias`) between two convs, SquaredReLU in the head."""

    def __init__(self):
        from timm.models.metaformer import SquaredReLU, StarReLU

        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.act1 = StarReLU(scale_value=0.8, bias_value=-0.2)
        self.conv2 = nn.Conv2d(8, 8, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 8)
        self.act = SquaredReLU()
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.conv2(self.act1(self.conv1(x))))
        return self.head(self.act(self.fc(self.flat(x))))


def test_metaformers_star_and_squared_relu_import_exactly():
    spec, diags = imported(f"{HERE}:StarMlp")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "squared-relu  act1: affine" in text, text
    assert "act: squared-relu" in text, text
    torch.manual_seed(0)
    assert_exact(text, StarMlp())  # strict load: `act1.scale`, `act1.bias`


def gated_net(conv_ratio: float = 1.0) -> nn.Module:
    """MambaOut's GatedConvBlock between a channel-last stem and head: the gate, the
    untouched channels and the depthwise conv's split along the last axis."""
    from timm.models.mambaout import GatedConvBlock

    torch.manual_seed(0)
    block = GatedConvBlock(6, conv_ratio=conv_ratio)  # (mambaout_femto has no layer scale)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), timm_permute(0, 2, 3, 1), block,
                         timm_permute(0, 3, 1, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 10))


def gated_net_all_conv() -> nn.Module:
    return gated_net(conv_ratio=8 / 3)  # the conv takes all h channels: no `i`


def test_mambaouts_gated_conv_block_imports_exactly():
    for source, make, concat in (("gated_net", gated_net, True),
                                 ("gated_net_all_conv", gated_net_all_conv, False)):
        spec, diags = imported(f"{HERE}:{source}")
        assert spec is not None, messages(diags)
        text = spec_text(spec)
        assert "mul" in text and ("concat" in text) == concat, text
        assert "channel-slice(0, 16)" in text, text  # the gate: h = int(8 / 3 * 6) = 16
        assert_exact(text, make())


def hgnetv2_stem_net() -> nn.Module:
    """HGNetV2's stem (`F.pad(x, (0, 1, 0, 1))` before a 2×2 conv and a 2×2 pool, learnable
    affines after its activations), then an nn.ZeroPad2d of unequal sides."""
    from timm.models.hgnet import StemV2

    torch.manual_seed(0)
    stem = StemV2(3, 8, 16, use_lab=True)
    with torch.no_grad():
        for m in stem.modules():
            if type(m).__name__ == "LearnableAffineBlock":
                m.scale.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return nn.Sequential(stem, nn.ZeroPad2d((1, 0, 2, 0)), nn.Conv2d(16, 8, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_hgnetv2s_padded_stem_imports_with_pad():
    spec, diags = imported(f"{HERE}:hgnetv2_stem_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "pad((0, 1, 0, 1))" in text and "pad((2, 0, 1, 0))" in text, text
    assert_exact(text, hgnetv2_stem_net())


def tf_same_net() -> nn.Module:
    """timm's TensorFlow-`SAME` layers: convs of even and odd kernels at strides 1 and 2,
    a max and an average pool (the latter counting its padding whatever it is told)."""
    from timm.layers import Conv2dSame
    from timm.layers.pool2d_same import AvgPool2dSame, MaxPool2dSame

    torch.manual_seed(0)
    return nn.Sequential(Conv2dSame(3, 8, 3, stride=2), nn.BatchNorm2d(8),
                         Conv2dSame(8, 8, 4), MaxPool2dSame(3, stride=2),
                         Conv2dSame(8, 8, 5, stride=2, groups=8, bias=False),
                         AvgPool2dSame(3, stride=2, count_include_pad=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 33, 31)])
def test_timms_tf_same_layers_import_as_tf_same_padding(shape):
    spec, diags = imported(f"{HERE}:tf_same_net", shape)
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert text.count('"tf-same"') == 5
    assert_exact(text, tf_same_net(), shape)


def factorized_reduction_net() -> nn.Module:
    """PNASNet's FactorizedReduction: two stride-2 1×1 paths, the second on the image
    shifted one pixel by `ZeroPad2d((-1, 1, -1, 1))`, concatenated."""
    from timm.models.pnasnet import FactorizedReduction

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), FactorizedReduction(8, 16),
                         nn.ConstantPad2d((1, 0, 2, 1), 0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.mark.parametrize("shape", [(3, 16, 16), (3, 17, 15)])
def test_zero_pad_with_negative_sides_imports_as_a_pad(shape):
    spec, diags = imported(f"{HERE}:factorized_reduction_net", shape)
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "pad((-1, 1, -1, 1))" in text and "pad((2, 1, 1, 0), value=0.5)" in text
    assert_exact(text, factorized_reduction_net(), shape)


def conv_attention_net(stride: int = 2) -> nn.Module:
    """CPUBone's ConvAttention as cpubone_nano builds it (2×2 kernels, nearest upsampling,
    the output projection fused into it): 2 heads of 32 among the pixels."""
    from timm.models.cpubone import ConvAttention

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), nn.BatchNorm2d(128),
                         ConvAttention(128, head_dim_mul=0.5, att_stride=stride,
                                       fuse_out_proj=True, small_kernels=True,
                                       upsample_mode="nearest"),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


@pytest.mark.parametrize("stride, shape", [(2, (3, 7, 9)), (1, (3, 6, 5))])
def test_cpubones_conv_attention_imports_as_pixel_attention(stride, shape):
    # traced at `shape`: the pad to a multiple of the stride and the crop follow that size
    spec, diags = imported(f"{HERE}:conv_attention_net", shape, args={"stride": stride},
                           input_shape=shape)
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "pixel-attention(heads=2, head_dim=32)" in text
    if stride == 2:  # 7×9 padded to 8×10 for the 2×2 stride-2 conv, cropped back after
        assert "pad(padding=(0, 1, 0, 1))" in text and "pad(padding=(0, -1, 0, -1))" in text
    assert_exact(text, conv_attention_net(stride), shape)


class NestedStage(nn.Module):
    """A block whose labelled nn.Sequential holds numbered ones (CPUBone's `total.0`), used
    inside a numbered nn.Sequential too: the stages nest in their own class."""

    def __init__(self) -> None:
        super().__init__()
        self.total = nn.Sequential(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
                                   nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.total(x)


def nested_stage_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Sequential(NestedStage(), NestedStage()),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def test_numbered_sequentials_nested_in_their_own_class_import():
    spec, diags = imported(f"{HERE}:nested_stage_net")
    assert spec is not None, messages(diags)
    text = spec_text(spec)
    assert "block stage:" in text and "block stage_2:" in text  # the inner one first
    assert_exact(text, nested_stage_net())
