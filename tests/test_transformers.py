"""The transformer families (specs/vit.arch) against torchvision, cheaply.

The full builders are too slow to run in the default suite on two cores (vit_b_32 is 88M
parameters), so each family's spec is run at small dimensions against torchvision's own
class built with the same small dimensions: strict state_dict loading, and outputs after
randomising every norm and redrawing every weight at unit gain (torchvision's small inits
leave the logits barely dependent on the input).
The full members are checked by parameter count, torchvision's built on the meta device.
`archc verify --zoo` runs the full members at their real size.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import archc
from archc.tools.verify import TOLERANCE, randomize_statistics, reference
from archc.zoo import load_zoo

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def assert_same_outputs(spec_net, tv_model, shape, seed=0):
    """Load torchvision's randomised weights into archc's module strictly; the eval outputs
    agree within the zoo's tolerance and are not trivially small."""
    torch.manual_seed(seed)
    randomize_statistics(tv_model, seed)
    with torch.no_grad():  # weights of unit gain: torchvision's std-0.02 inits (MaxViT's)
        for param in tv_model.parameters():  # leave the outputs barely input-dependent
            if param.dim() >= 2:
                param.normal_(std=(param.numel() // param.shape[0]) ** -0.5)
    model = archc.build(spec_net)
    model.load_state_dict(tv_model.state_dict(), strict=True)
    x = 8 * torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        got, want = model.eval()(x), tv_model.eval()(x)
    assert got.shape == want.shape
    assert float(want.abs().max()) > 0.1  # the oracle sees real logits
    assert float((want[0] - want[1]).abs().max()) > 0.01 * float(want.abs().max())  # of x
    assert float((got - want).abs().max()) <= TOLERANCE * float(want.abs().max())
    return model


SMALL_VIT = {"image_size": 32, "patch": 8, "depth": 2, "heads": 2, "hidden": 16,
             "mlp_dim": 24}


def small_vit(**extra):
    from torchvision.models.vision_transformer import VisionTransformer

    tv = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                           hidden_dim=16, mlp_dim=24, num_classes=10, **extra)
    return archc.load(SPECS / "vit.arch", num_classes=10, **SMALL_VIT), tv


def test_a_small_vit_is_torchvisions():
    net, tv = small_vit()
    assert net.n_params == sum(p.numel() for p in tv.parameters())
    model = assert_same_outputs(net, tv, (3, 32, 32))
    keys = set(model.state_dict())
    assert {"class_token", "encoder.pos_embedding", "conv_proj.weight",
            "encoder.layers.encoder_layer_1.self_attention.in_proj_weight",
            "encoder.layers.encoder_layer_1.mlp.3.bias", "heads.head.weight"} <= keys


def test_the_vit_oracle_tells_a_missing_residual_apart(tmp_path):
    """Same keys and counts, strict loading works: only the outputs can tell that the MLP's
    residual is gone."""
    text = (SPECS / "vit.arch").read_text(encoding="utf-8")
    residual = ("    add:\n        ln_2: layernorm(eps=1e-6)  mlp: mlp(mlp_dim, dropout=dropout)\n"
                "        shortcut\n")
    assert residual in text
    spec = tmp_path / "vit.arch"
    spec.write_text(text.replace(residual, "    ln_2: layernorm(eps=1e-6)  mlp: mlp(mlp_dim)\n"),
                    encoding="utf-8")
    net = archc.load(spec, num_classes=10, **SMALL_VIT)
    _, tv = small_vit()
    with pytest.raises(AssertionError):
        assert_same_outputs(net, tv, (3, 32, 32))


@pytest.mark.parametrize("name", [n for n, e in load_zoo().items()
                                  if e.spec.name in ("vit.arch", "swin.arch", "maxvit.arch")])
def test_full_members_count_torchvisions_parameters(name):
    entry = load_zoo()[name]
    for classes in (1000, 2):
        net = archc.load(entry.spec, network=entry.network, num_classes=classes)
        with torch.device("meta"):
            tv = reference(name, classes)
        assert net.n_params == sum(p.numel() for p in tv.parameters())


def test_a_position_embedding_fixes_the_input_size():
    """The embedding holds one vector per token: only inputs that give vit_b_16's 196
    patches work (224 to 239: the patch conv floors), where the same spec without it takes
    any size from one patch up."""
    from archc.compiler.shapes import input_sizes

    text = (SPECS / "vit.arch").read_text(encoding="utf-8")
    net = archc.check("vit.arch", text=text).network
    sizes = input_sizes(net)
    assert (sizes.smallest, sizes.largest) == (224, 239)
    free = archc.check("vit.arch", text=text.replace("pos_embedding: pos-embedding", "")).network
    assert input_sizes(free).describe() == "any H×W ≥ 16×16"


@pytest.mark.parametrize("line, code, hint", [
    ("patch-embed(8, 4)  FC-10", "E203", "token-pool"),
    ("patch-embed(8, 4)  maxpool", "E203", "untokens"),
    ("tokens  self-attention(3)", "E201", "divides the hidden size"),
    ("tokens  untokens(height=5)", "E201", "divisor of the token count"),
    ("conv3-8  self-attention(2)", "E203", "patch-embed"),
])
def test_token_diagnostics_point_at_the_conversion(line, code, hint):
    text = f"network t:\n    input 8x8x8\n    {line}\n"
    (diag,) = archc.check("t.arch", text=text).diagnostics
    assert diag.code == code and diag.span.line == 3
    assert hint in (diag.hint or ""), diag


SMALL_SWIN = {"embed": 16, "depths": (2, 2), "heads": (2, 4), "window": 4, "num_classes": 10}


def small_swin(version: int, spec: Path = SPECS / "swin.arch"):
    from functools import partial

    from torchvision.models import swin_transformer as tv_swin

    v2 = {"block": tv_swin.SwinTransformerBlockV2, "downsample_layer": tv_swin.PatchMergingV2}
    tv = tv_swin.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2],
                                 num_heads=[2, 4], window_size=[4, 4], num_classes=10,
                                 norm_layer=partial(torch.nn.LayerNorm, eps=1e-5),
                                 **(v2 if version == 2 else {}))
    return archc.load(spec, version=version, **SMALL_SWIN), tv


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("size", [32, 44])  # 44: stages of 11 and 6, padded to the windows
def test_a_small_swin_is_torchvisions(version, size):
    net, tv = small_swin(version)
    assert net.n_params == sum(p.numel() for p in tv.parameters())
    model = assert_same_outputs(net, tv, (3, size, size))
    buffers = dict(model.named_buffers())
    index = buffers["features.1.1.attn.relative_position_index"]
    assert torch.equal(index, tv.state_dict()["features.1.1.attn.relative_position_index"])
    assert ("features.1.1.attn.relative_coords_table" in buffers) == (version == 2)


def test_the_swin_oracle_tells_unshifted_windows_apart(tmp_path):
    """Without the shift (and its mask) every key and count still matches."""
    text = (SPECS / "swin.arch").read_text(encoding="utf-8")
    assert text.count("j % 2 * (window // 2)") == 2
    spec = tmp_path / "swin.arch"
    spec.write_text(text.replace("j % 2 * (window // 2)", "0"), encoding="utf-8")
    net, tv = small_swin(1, spec)
    with pytest.raises(AssertionError):
        assert_same_outputs(net, tv, (3, 32, 32))


SMALL_MAXVIT = {"stem": 8, "channels": (16, 32), "depths": (1, 2), "head_dim": 8, "size": 2,
                "num_classes": 10}


def small_maxvit(spec: Path = SPECS / "maxvit.arch"):
    from torchvision.models.maxvit import MaxVit

    tv = MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[16, 32],
                block_layers=[1, 2], head_dim=8, stochastic_depth_prob=0.2, num_classes=10)
    net = archc.load(spec, input_shape=(3, 32, 32), **SMALL_MAXVIT)
    return net, tv


def test_a_small_maxvit_is_torchvisions():
    net, tv = small_maxvit()
    assert net.n_params == sum(p.numel() for p in tv.parameters())
    model = assert_same_outputs(net, tv, (3, 32, 32))
    key = "blocks.1.layers.1.layers.grid_attention.attn_layer.1.relative_position_index"
    assert torch.equal(model.state_dict()[key], tv.state_dict()[key])
    from archc.tools.verify import training_differences

    assert training_differences(model, tv) == []  # stochastic depth grows as torchvision's


def test_the_maxvit_oracle_tells_window_from_grid_apart(tmp_path):
    """Grid attention done as window attention: same keys, same counts, other outputs."""
    text = (SPECS / "maxvit.arch").read_text(encoding="utf-8")
    assert 'partition_attention(size, "grid", head_dim, sd)' in text
    spec = tmp_path / "maxvit.arch"
    spec.write_text(text.replace('partition_attention(size, "grid", head_dim, sd)',
                                 'partition_attention(size, "window", head_dim, sd)'),
                    encoding="utf-8")
    net, tv = small_maxvit(spec)
    with pytest.raises(AssertionError):
        assert_same_outputs(net, tv, (3, 32, 32))


def test_maxvit_takes_inputs_its_partitions_divide():
    from archc.compiler.shapes import input_sizes

    net = archc.load(SPECS / "maxvit.arch")
    assert input_sizes(net).describe() == "from 221×221 to 224×224"
    bad = archc.check(SPECS / "maxvit.arch", input_shape=(3, 64, 64))
    assert [d.code for d in bad.diagnostics] == ["E202"]
    assert "partition size 7 must divide" in bad.diagnostics[0].message


def test_the_summary_and_diagram_read_tokens():
    """vit_b_16's summary: the patch embedding gives 196×768 tokens (588 KiB a sample),
    attention sees the whole image; the diagram's edges read 197×768."""
    from archc.backends.dot import to_dot
    from archc.backends.summary import summarize

    net = archc.load(SPECS / "vit.arch")
    rows = {row.path: row for row in summarize(net)}
    embed = rows["conv_proj"]
    assert embed.out_shape == (196, 768) and embed.act_bytes == 196 * 768 * 4
    assert embed.rf == (16, 16) and not embed.rf_global
    attention = rows["encoder.layers.encoder_layer_0.self_attention"]
    assert attention.rf_global and attention.macs == 4 * 197 * 768**2 + 2 * 197**2 * 768
    assert 'label="197×768"' in to_dot(net, depth=2)
