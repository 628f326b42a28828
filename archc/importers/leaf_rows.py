"""The leaf table's rows for the libraries networks come from: torchvision's helpers and
transformers (ViT, Swin), and timm's norm-act, classifier-head, pooling, Linear and
conv-norm-act helpers (see `leaves` for what a row is).

Classes are named, never imported: a row applies once the library is loaded by the model
being imported. Each row checks that the instance is one its items reproduce, and raises
`Unsupported` (or returns None, to read the module as usual) where it is not.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from archc.importers.leaves import OWN, Context, make_layer, register_leaf
from archc.importers.torch_draft import (
    REQUIRED,
    Arg,
    DCall,
    DGroup,
    DItem,
    DLayer,
    DMerge,
    DShortcut,
    shortcut_args,
)
from archc.importers.torch_layers import (
    MODULES,
    Unsupported,
    adaptive,
    batch_norm,
    kind_layer,
    layernorm,
)
from archc.layers.core import mix_split_sizes

TV = "torchvision.models"


# --------------------------------------------------------------------------- torchvision


def _permute(m: Any, context: Context) -> list[DItem]:
    return [_permuted(*m.dims)]


def _permuted(*dims: int) -> DLayer:
    """`permute(dims)`, the order written as a positional tuple."""
    return kind_layer("permute", [Arg("dims", tuple(dims), REQUIRED, "dims", positional=True)])


def _channel_slice(start: int, end: int) -> DLayer:
    """`channel-slice(start, end)`: channels [start, end) of a C×H×W image."""
    return kind_layer("channel-slice", [Arg("start", start, REQUIRED, "start", positional=True),
                                        Arg("end", end, REQUIRED, "end", positional=True)])


def _stochastic_depth(m: Any, context: Context) -> list[DItem]:
    return [kind_layer(
        "stochastic-depth",
        [Arg("p", m.p, REQUIRED, "p", positional=True), Arg("mode", m.mode, "row", "mode")],
    )]


def _attention(m: nn.MultiheadAttention, context: Context) -> list[DItem]:
    """nn.MultiheadAttention as self-attention (query, key and value one tensor)."""
    plain = (m._qkv_same_embed_dim and m.in_proj_bias is not None and m.bias_k is None
             and not m.add_zero_attn and m.out_proj.bias is not None)
    if not plain:
        raise Unsupported("multi-head attention with separate key/value sizes, extra key or "
                          "value biases, or no biases (archc's self-attention has none)")
    return [make_layer("self-attention", heads=m.num_heads, dropout=float(m.dropout))]


def _mlp(m: nn.Sequential, context: Context) -> list[DItem] | None:
    """torchvision's MLP of one hidden layer with GELU, as the transformers use it;
    another MLP is read as the sequence it is."""
    parts = list(m.children())
    kinds = [nn.Linear, nn.GELU, nn.Dropout, nn.Linear, nn.Dropout]
    if len(parts) != 5 or any(type(p) is not k for p, k in zip(parts, kinds)):
        return None
    first, gelu, drop, last, drop2 = parts
    assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)  # checked above
    assert isinstance(drop, nn.Dropout) and isinstance(drop2, nn.Dropout)
    assert isinstance(gelu, nn.GELU)
    if (gelu.approximate != "none" or drop.p != drop2.p or first.bias is None
            or last.bias is None):
        return None
    out = None if last.out_features == first.in_features else last.out_features
    return [make_layer("mlp", hidden=first.out_features, out=out, dropout=float(drop.p))]


def _encoder_block(m: Any, context: Context) -> list[DItem]:
    """ViT's EncoderBlock: x + dropout(attention(ln_1(x))), then y + mlp(ln_2(y))."""
    attend = DGroup(_present(context, "ln_1", "self_attention", "dropout"))
    think = DGroup(_present(context, "ln_2", "mlp"))
    return [DMerge("add", [attend, DShortcut(shortcut_args())]),
            DMerge("add", [think, DShortcut(shortcut_args())])]


def _encoder(m: Any, context: Context) -> list[DItem]:
    """ViT's Encoder: the position embedding added, dropout, the blocks, a LayerNorm."""
    return [context.layer("pos-embedding", label="pos_embedding"),
            *_present(context, "dropout", "layers", "ln")]


def _present(context: Context, *names: str) -> list[DItem]:
    return [i for i in (context.child(n) for n in names) if i is not None]


def _vision_transformer(m: Any, context: Context) -> list[DItem]:
    """torchvision's VisionTransformer: patches, the class token, the encoder, the class
    token's features classified."""
    conv = m.conv_proj
    patch = m.patch_size
    if not (type(conv) is nn.Conv2d and conv.kernel_size == (patch, patch)
            and conv.stride == (patch, patch) and conv.padding == (0, 0) and conv.bias is not None):
        raise Unsupported("a ViT whose stem is not one patch-sized conv (a conv stem)")
    return [
        context.layer("patch-embed", label="conv_proj", out=m.hidden_dim, patch=patch),
        context.layer("class-token", label="class_token"),
        *_present(context, "encoder"),
        context.layer("token-pool"),
        *_present(context, "heads"),
    ]


def _window_attention(version: int) -> Callable[[Any, Context], list[DItem]]:
    def items(m: Any, context: Context) -> list[DItem]:
        window, shift = list(m.window_size), list(m.shift_size)
        if len(set(window)) != 1 or len(set(shift)) != 1:
            raise Unsupported("window attention over non-square windows or shifts")
        if m.qkv.bias is None or m.proj.bias is None:
            raise Unsupported("window attention without biases")
        return [make_layer("window-attention", heads=m.num_heads, window=window[0],
                           shift=shift[0], version=version, dropout=float(m.dropout),
                           attention_dropout=float(m.attention_dropout))]
    return items


def _patch_merging(version: int) -> Callable[[Any, Context], list[DItem]]:
    def items(m: Any, context: Context) -> list[DItem]:
        if type(m.norm) is not nn.LayerNorm or m.norm.eps != 1e-5:
            raise Unsupported("patch merging with another norm than LayerNorm(eps=1e-5)")
        return [make_layer("patch-merging", version=version)]
    return items


register_leaf("torchvision.ops.stochastic_depth:StochasticDepth", _stochastic_depth)
register_leaf(f"{TV}.convnext:LayerNorm2d", lambda m, c: [layernorm("layernorm2d", m)])
register_leaf("torchvision.ops.misc:Permute", _permute)
register_leaf("torchvision.ops.misc:MLP", _mlp)
register_leaf(nn.MultiheadAttention, _attention)
register_leaf(f"{TV}.vision_transformer:EncoderBlock", _encoder_block, block=True)
register_leaf(f"{TV}.vision_transformer:Encoder", _encoder)
register_leaf(f"{TV}.vision_transformer:VisionTransformer", _vision_transformer, block=True)
for _version, _suffix in ((1, ""), (2, "V2")):
    register_leaf(f"{TV}.swin_transformer:ShiftedWindowAttention{_suffix}",
                  _window_attention(_version))
    register_leaf(f"{TV}.swin_transformer:PatchMerging{_suffix}", _patch_merging(_version))


# --------------------------------------------------------------------------- timm

TIMM = "timm.layers"


def _norm_act(norm: Callable[[Any], DLayer]) -> Callable[[Any, Context], list[DItem]]:
    """timm's norm-act modules: the norm (their own tensors), then `drop` and `act`."""
    def items(m: Any, context: Context) -> list[DItem]:
        first = norm(m)
        first.label = OWN
        return [first, *_present(context, "drop", "act")]
    return items


def _children_in_order(*names: str, named: bool = True
                       ) -> Callable[[Any, Context], list[DItem]]:
    """A helper whose forward calls these children one after another; with `named`
    false, children without weights (a pool and a flatten) are not labelled."""
    def items(m: Any, context: Context) -> list[DItem]:
        found = _present(context, *names)
        if not named:
            for item in found:
                item.label = None
        return found
    return items


def _fast_pool(kind: str) -> Callable[[Any, Context], list[DItem]]:
    """timm's FastAdaptive{Avg,Max}Pool: a global pool over H and W, flattened or not."""
    def items(m: Any, context: Context) -> list[DItem]:
        if tuple(m.dim) not in ((2, 3), (-2, -1)):
            raise Unsupported("fast global pooling of channel-last images")
        layers: list[DItem] = [adaptive(kind, 1)]
        return [*layers, kind_layer("flatten")] if m.flatten else layers
    return items


def _plain(kind: str, **args: Any) -> Callable[[Any, Context], list[DItem]]:
    return lambda m, context: [make_layer(kind, **args)]


def _blur_pool(m: Any, context: Context) -> list[DItem]:
    """timm's BlurPool2d: a binomial blur (a buffer outside the state_dict), subsampled."""
    return [make_layer("blur-pool", filter=m.filt_size, stride=m.stride, pad_mode=m.pad_mode)]


def _scaled_std_conv(m: Any, context: Context) -> list[DItem]:
    """timm's ScaledStdConv2d (NF-ResNet): `std-conv`, its gamma recovered from the scale
    timm keeps (gamma / √fan-in)."""
    if getattr(m, "same_pad", False) or isinstance(m.padding, str):
        raise Unsupported("a weight-standardised conv with dynamic `same` padding")
    fan_in = m.weight[0].numel()
    return [make_layer(
        "std-conv", out=m.out_channels, kernel=_side(m.kernel_size), stride=_side(m.stride),
        padding=_side(m.padding), dilation=_side(m.dilation), groups=m.groups,
        bias=m.bias is not None, gamma=m.scale * fan_in ** 0.5, eps=m.eps)]


def _side(value: Any) -> Any:
    """`3` for (3, 3), `(1, 7)` as it is."""
    return value[0] if len(set(value)) == 1 else tuple(value)


def _eca(m: Any, context: Context) -> list[DItem] | None:
    """timm's EcaModule with its sigmoid gate and no MLP: `eca(kernel)`."""
    conv = m.conv
    sigmoid = type(m.gate) is nn.Sigmoid or _timm_sigmoid(m.gate)
    plain = (sigmoid and m.conv2 is None and conv.bias is None and conv.in_channels == 1
             and conv.out_channels == 1 and conv.padding[0] == (conv.kernel_size[0] - 1) // 2)
    return [make_layer("eca", kernel=conv.kernel_size[0])] if plain else None


def _mixed_conv(m: Any, context: Context) -> list[DItem]:
    """timm's MixedConv2d (MixNet): the channels split C // n each (the first group taking
    the remainder), one conv per group, concatenated: archc's `mix-split:` merge, whose
    unlabelled branches are numbered as timm's children (`conv_dw.0`, `conv_dw.1`); one
    block, so that it is one numbered module also where it sits at a numbered place."""
    convs = list(m.values())
    if list(m.splits) != mix_split_sizes(sum(m.splits), len(convs)):
        raise Unsupported(f"a mixed conv split {list(m.splits)}, not as MixNet splits "
                          "(C // n each, the first group taking the remainder)")
    branches = context.children()
    if len(branches) != len(convs) or not all(isinstance(b, (DLayer, DCall)) for b in branches):
        raise Unsupported("a mixed conv whose groups are not one module each")
    for branch in branches:
        branch.label = None  # numbered in the merge, as the ModuleDict numbers them
    return [DMerge("mix-split", branches)]


def _selective_kernel(m: Any, context: Context) -> list[DItem]:
    """timm's SelectiveKernel (SKNet): its paths on halves of the input (`split:`) or on
    all of it (`concat:`), stacked, then the attention across them, which is archc's
    `split-attention` with SKNet's key names (fc_reduce, bn, fc_select)."""
    attn = m.attn
    if type(attn.bn) is not nn.BatchNorm2d or type(attn.act) is not nn.ReLU:
        raise Unsupported("a selective kernel whose attention is not conv, batch norm, ReLU")
    found = [context.child(f"paths.{i}") for i in range(len(m.paths))]
    paths: list[DItem] = [p for p in found if isinstance(p, (DLayer, DCall))]
    if len(paths) != len(found):
        raise Unsupported("a selective kernel whose paths are not one module each")
    merge = DMerge("split" if m.split_input else "concat", paths, "paths")
    return [merge, context.layer("split-attention", label="attn", radix=m.num_paths,
                                 hidden=attn.fc_reduce.out_channels, bias=False, names="sk")]


def _distilled_head(m: Any, context: Context) -> list[DItem]:
    """RepViT's classifier in eval: with distillation, the mean of its two heads
    (`(head(x) + head_dist(x)) / 2`: an `add:` then `constant-scale(0.5)`)."""
    items = _present(context, "head_drop")
    if not m.distillation:
        return [*items, *_present(context, "head")]
    heads = _present(context, "head", "head_dist")
    return [*items, DMerge("add", heads), make_layer("constant-scale", factor=0.5)]


def _timm_sigmoid(module: Any) -> bool:
    return type(module).__name__ == "Sigmoid" and type(module).__module__.startswith("timm")


register_leaf(f"{TIMM}.blur_pool:BlurPool2d", _blur_pool)
register_leaf(f"{TIMM}.selective_kernel:SelectiveKernel", _selective_kernel, block=True)
register_leaf(f"{TIMM}.mixed_conv2d:MixedConv2d", _mixed_conv, block=True)
register_leaf(f"{TIMM}.std_conv:ScaledStdConv2d", _scaled_std_conv)
register_leaf(f"{TIMM}.eca:EcaModule", _eca)
register_leaf(f"{TIMM}.space_to_depth:SpaceToDepth",
              lambda m, context: [make_layer("space-to-depth", block=m.bs)])
register_leaf(f"{TIMM}.norm_act:BatchNormAct2d", _norm_act(batch_norm))
register_leaf(f"{TIMM}.norm_act:GroupNormAct", _norm_act(MODULES[nn.GroupNorm]))
register_leaf(f"{TIMM}.norm_act:GroupNorm1Act", _norm_act(MODULES[nn.GroupNorm]))
register_leaf(f"{TIMM}.norm_act:LayerNormAct", _norm_act(lambda m: layernorm("layernorm", m)))
register_leaf(f"{TIMM}.norm_act:LayerNormAct2d",
              _norm_act(lambda m: layernorm("layernorm2d", m)))
register_leaf(f"{TIMM}.norm:LayerNorm", lambda m, c: [layernorm("layernorm", m)])
for _name in ("GroupNorm", "GroupNorm1"):  # nn.GroupNorm with a forward of their own
    register_leaf(f"{TIMM}.norm:{_name}", lambda m, c: [MODULES[nn.GroupNorm](m)])
register_leaf(f"{TIMM}.norm:LayerNorm2d", lambda m, c: [layernorm("layernorm2d", m)])
register_leaf(f"{TIMM}.linear:Linear", lambda m, c: [MODULES[nn.Linear](m)])
register_leaf(f"{TIMM}.classifier:ClassifierHead",
              _children_in_order("global_pool", "drop", "fc", "flatten"))
register_leaf(f"{TIMM}.classifier:NormMlpClassifierHead",
              _children_in_order("global_pool", "norm", "flatten", "pre_logits", "drop", "fc"))
register_leaf("timm.models.repvit:RepVitClassifier", _distilled_head)
register_leaf("timm.models.inception_next:MlpClassifierHead",  # (its `pre_logits` is False)
              _children_in_order("global_pool", "fc1", "act", "norm", "drop", "fc2"))
register_leaf(f"{TIMM}.adaptive_avgmax_pool:SelectAdaptivePool2d",
              _children_in_order("pool", "flatten", named=False))
register_leaf(f"{TIMM}.adaptive_avgmax_pool:FastAdaptiveAvgPool", _fast_pool("adaptiveavgpool"))
register_leaf(f"{TIMM}.adaptive_avgmax_pool:FastAdaptiveMaxPool", _fast_pool("adaptivemaxpool"))
register_leaf(f"{TIMM}.conv_bn_act:ConvNormAct", _children_in_order("conv", "bn", "aa"),
              block=True)
for _name, _kind, _args in (
    ("GELU", "gelu", {}), ("GELUTanh", "gelu", {"approximate": "tanh"}), ("Swish", "silu", {}),
    ("Sigmoid", "sigmoid", {}), ("Tanh", "tanh", {}), ("HardSwish", "hardswish", {}),
    ("HardSigmoid", "hardsigmoid", {}), ("Mish", "mish", {}),
):
    register_leaf(f"{TIMM}.activations:{_name}", _plain(_kind, **_args))


def _split_attn(m: Any, context: Context) -> list[DItem]:
    """timm's SplitAttn (ResNeSt's conv2) whole: `splat-conv`, whose children are timm's
    (conv, bn0, fc1, bn1, fc2), with conv's settings read as `conv` reads them."""
    norms_plain = all(type(bn) is nn.BatchNorm2d and all(a.value == a.default
                                                         for a in batch_norm(bn).args)
                      for bn in (m.bn0, m.bn1))
    if not (norms_plain and type(m.conv) is nn.Conv2d and type(m.drop) is nn.Identity
            and type(m.act0) is nn.ReLU and type(m.act1) is nn.ReLU):
        raise Unsupported("a split attention other than conv, BatchNorm2d and ReLU, no drop "
                          "block (archc's splat-conv)")
    conv = {a.name: a.value for a in MODULES[nn.Conv2d](m.conv).args}
    radix, groups = m.radix, m.fc1.groups
    if conv["groups"] != groups * radix or (m.rsoftmax.radix, m.rsoftmax.cardinality) != (
            radix, groups):
        raise Unsupported("a split attention whose conv is not in groups·radix groups")
    return [make_layer(
        "splat-conv", out=m.fc1.in_channels, kernel=conv["kernel"], stride=conv["stride"],
        padding=conv["pad"], dilation=conv["dilation"], groups=groups, bias=conv["bias"],
        radix=radix, hidden=m.fc1.out_channels)]


register_leaf(f"{TIMM}.split_attn:SplitAttn", _split_attn)
def _learnable_affine(m: Any, context: Context) -> list[DItem]:
    """HGNetV2's LearnableAffineBlock, `scale * x + bias` of two (1,) parameters: `affine`,
    whose keys are the module's own (`lab.scale`, `lab.bias`)."""
    if m.scale.shape != (1,) or m.bias.shape != (1,):
        raise Unsupported("a learnable affine of other than one scale and one shift")
    layer = make_layer("affine")
    layer.label = OWN
    return [layer]


register_leaf("timm.models.hgnet:LearnableAffineBlock", _learnable_affine)


def _star_relu(m: Any, context: Context) -> list[DItem]:
    """MetaFormer's StarReLU, `scale * relu(x) ** 2 + bias`: `squared-relu`, then the
    module's own (1,) `scale` and `bias` as `affine`."""
    return [make_layer("squared-relu"), *_learnable_affine(m, context)]


register_leaf("timm.models.metaformer:SquaredReLU", _plain("squared-relu"))
register_leaf("timm.models.metaformer:StarReLU", _star_relu)


def _gated_conv_block(m: Any, context: Context) -> list[DItem]:
    """MambaOut's GatedConvBlock on a channel-last (B, H, W, C) image: norm, fc1 to 2h
    channels, split along the last axis into g (h), i (h - k) and c (k); c through the
    depthwise conv; `fc2(act(g) * cat(i, conv(c)))`, layer-scaled, added to the input.
    archc slices channels of C×H×W images, so the body permutes to that layout around the
    gate: `mul:` of `channel-slice(0, h) act` and `concat:` of i and `conv` of c."""
    hidden, k = m.fc2.in_features, m.conv.in_channels
    if tuple(m.split_indices) != (hidden, hidden - k, k) or not 0 < k <= hidden:
        raise Unsupported(f"a gated conv block split {tuple(m.split_indices)}, not "
                          "(hidden, hidden - conv, conv) with a conv on 1 to hidden channels")
    conv = _present(context, "conv")
    rest: list[DItem] = [DGroup([_channel_slice(2 * hidden - k, 2 * hidden), *conv])]
    if k < hidden:  # `i`: the channels between the gate and the conv's
        rest.insert(0, _channel_slice(hidden, 2 * hidden - k))
    gate = DGroup([_channel_slice(0, hidden), *_present(context, "act")])
    values = rest[0] if len(rest) == 1 else DMerge("concat", rest)
    body = DGroup([
        *_present(context, "norm", "fc1"), _permuted(0, 3, 1, 2),  # (B, 2h, H, W)
        DMerge("mul", [gate, values]), _permuted(0, 2, 3, 1),  # (B, H, W, h)
        *_present(context, "fc2", "ls", "drop_path"),
    ])
    return [DMerge("add", [body, DShortcut(shortcut_args())])]


register_leaf("timm.models.mambaout:GatedConvBlock", _gated_conv_block, block=True)
def _tf_same(convert: Callable[[Any], DLayer]) -> Callable[[Any, Context], list[DItem]]:
    """timm's Conv2dSame, MaxPool2dSame and AvgPool2dSame: torch's layer without padding,
    the input padded in the forward by TensorFlow's `SAME` rule, which is archc's
    `padding="tf-same"` (an average pool counts those zeros, whatever its
    count_include_pad says, as timm's does)."""
    def items(m: Any, context: Context) -> list[DItem]:
        if getattr(m, "ceil_mode", False):
            raise Unsupported("a TensorFlow-`SAME` pool with ceil_mode=True (archc's "
                              "padding=\"tf-same\" takes no ceil)")
        layer = convert(m)
        layer.args = [Arg(a.name, "tf-same", a.default, a.key) if a.name == "pad" else a
                      for a in layer.args]
        return [layer]
    return items


register_leaf(f"{TIMM}.conv2d_same:Conv2dSame", _tf_same(MODULES[nn.Conv2d]))
register_leaf(f"{TIMM}.pool2d_same:MaxPool2dSame", _tf_same(MODULES[nn.MaxPool2d]))
register_leaf(f"{TIMM}.pool2d_same:AvgPool2dSame", _tf_same(MODULES[nn.AvgPool2d]))


def _conv_attention(m: Any, context: Context) -> list[DItem]:
    """CPUBone's ConvAttention: the image padded bottom and right to a multiple of the
    attention stride (2×2 kernels only), `conv_proj` and `pwise` making each head's query,
    key and value, `pixel-attention` among the pixels, `o_proj` and `upsampling`, and the
    result cropped back to the input's size (a negative `pad`). The pad and the crop are
    those of the size the model was traced at."""
    if context.shapes is None:
        raise Unsupported("a CPUBone ConvAttention that did not run (its padding and crop "
                          "follow the input size)")
    c, h, w = context.shapes[0]
    stride = m.att_stride
    pad_h, pad_w = ((-h) % stride, (-w) % stride) if m.small_kernels and stride > 1 else (0, 0)
    # the size the upsampling gives, which timm crops to h × w: conv_proj's window (after
    # its own ZeroPad2d, if any), grown by the stride (nearest, or the transposed conv
    # of kernel 2·stride and padding stride / 2)
    convs = [x for x in m.conv_proj.modules() if isinstance(x, nn.Conv2d)]
    pads = [x for x in m.conv_proj.modules() if isinstance(x, nn.ZeroPad2d)]
    if len(convs) != 1 or len(pads) > 1:
        raise Unsupported("a CPUBone ConvAttention whose conv_proj is not one conv")
    conv, extra = convs[0], (pads[0].padding if pads else (0, 0, 0, 0))
    grown = []
    for i, (n, more) in enumerate(((h, pad_h), (w, pad_w))):  # height, width
        before, after = extra[2:] if i == 0 else extra[:2]  # torch's (left, right, top, bottom)
        span = (n + more + before + after + 2 * conv.padding[i]
                - conv.dilation[i] * (conv.kernel_size[i] - 1) - 1)
        grown.append((span // conv.stride[i] + 1) * stride)
    if grown[0] < h or grown[1] < w:
        raise Unsupported("a CPUBone ConvAttention whose upsampling gives less than its input")
    items: list[DItem] = []
    if pad_h or pad_w:
        items.append(make_layer("pad", padding=(0, pad_h, 0, pad_w)))
    items += _present(context, "conv_proj", "pwise")
    items.append(make_layer("pixel-attention", heads=m.num_heads, head_dim=m.head_dim))
    items += _present(context, "o_proj", "upsampling")
    if (grown[0], grown[1]) != (h, w):
        items.append(make_layer("pad", padding=(0, h - grown[0], 0, w - grown[1])))
    return items


register_leaf("timm.models.cpubone:ConvAttention", _conv_attention)
