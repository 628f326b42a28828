"""Named tensors: `-> name` names the tensor at a point, `@name` reads it back, so a merge
can take tensors from several fork points and a block can take and return several tensors.

The torch forward is compared with a hand-written nn.Module that computes the same DAG with
the same weights (batch-norm statistics randomised, so a wrong wiring cannot hide).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import archc
from archc.compiler.graph import Load, Save, Scope, walk

# HRNet-style exchange: a high and a low resolution trade information in a block that takes
# the low one as a tensor parameter and returns both.
HR = """
block exchange(c, @lo) -> @hi, @low:
    -> h
    add:
        @h
        @lo conv1-{c}(bias=false) bn upsample(2)
    -> hi
    add:
        @lo
        @h conv3-{c * 2}(stride=2, bias=false) bn
    -> low

network hr:
    input 3x32x32
    stem: conv3-16(bias=false) bn relu -> a
    down: conv3-32(stride=2, bias=false) bn relu -> lo
    @a
    ex: exchange(16, @lo) -> hi, lo
    fuse: [@lo upsample(2) -> up]
    concat(@hi, @up)
    head: conv1-8
"""

# DLA-style root: the outputs of three stages concatenated in a stated order.
DLA = """
network dla:
    input 3x32x32
    conv3-8 relu -> a
    conv3-8 relu -> b
    stage: [conv3-8 relu -> c  conv3-8 relu]
    -> d
    root: [concat(@c, @a, @d, @b) conv1-16]
    global-avgpool flatten FC-10
"""


def write(tmp_path: Path, text: str, name: str = "spec.arch") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics]


def test_tree_specs_have_no_named_tensors(tmp_path):
    net = archc.load(Path(__file__).resolve().parent.parent / "specs" / "resnet34.arch")
    assert all(not (s.inputs or s.outputs) for s in walk(net.root) if isinstance(s, Scope))


def test_shapes_follow_the_references(tmp_path):
    net = archc.load(write(tmp_path, HR))
    assert net.output_shape == (8, 32, 32)
    ex = next(m for m in walk(net.root) if m.path == "ex")
    assert (ex.inputs, ex.reads, ex.outputs, ex.writes) == (["lo"], ["lo"], ["low"], ["lo"])
    assert ex.output_shapes == [(32, 16, 16)]
    # the labelled group reads `lo` from outside and gives `up` back
    fuse = next(m for m in walk(net.root) if m.path == "fuse")
    assert (fuse.inputs, fuse.outputs) == (["lo"], ["up"])
    assert (fuse.out_shape, net.root.plan.ops[-2].branches) == (
        (32, 32, 32), (Load("hi"), Load("up")))


def test_merge_takes_tensors_in_the_stated_order(tmp_path):
    net = archc.load(write(tmp_path, DLA))
    root = next(m for m in walk(net.root) if m.path == "root")
    assert root.children[0].in_shape == (32, 32, 32)
    assert root.inputs == ["c", "a", "d", "b"]
    stage = next(m for m in walk(net.root) if m.path == "stage")
    assert stage.outputs == ["c"] and Save("c") in stage.plan.ops


@pytest.mark.parametrize("text, code", [
    ("conv3-8 -> a\n    conv3-8\n    add(@a, @b)", "E120"),
    ("conv3-8 -> a\n    conv3-8 -> b\n    add(@b)", "E121"),
    ("conv3-8 -> a\n    add:\n        @a\n        @b\n    -> b", "E122"),
    ("conv3-8 -> a\n    b(@a)", "E121"),
    ("conv3-8 -> a\n    c(a)", "E104"),
    ("conv3-8 -> a\n    c(@a) -> x, y, z\n    add(@x, @y, @z)", "E103"),
])
def test_reference_errors_are_located(tmp_path, text, code):
    spec = ("block b(@t):\n    relu\n\nblock c(@t) -> @x, @y:\n    @t relu -> x  relu -> y\n\n"
            "network n:\n    input 3x8x8\n    " + text + "\n")
    result = archc.check(write(tmp_path, spec))
    assert code in codes(result), result.diagnostics
    diag = next(d for d in result.diagnostics if d.code == code)
    assert diag.span.line >= 1 and diag.span.column >= 1 and diag.span.file.endswith("spec.arch")


def test_a_block_cannot_read_its_callers_names(tmp_path):
    spec = "block b:\n    @a relu\n\nnetwork n:\n    input 3x8x8\n    relu -> a\n    b\n"
    result = archc.check(write(tmp_path, spec))
    assert "E120" in codes(result)


def test_a_reference_only_under_a_false_condition_is_not_unused(tmp_path):
    spec = ("network n(deep=false):\n    input 3x8x8\n    conv3-8 -> a\n    conv3-8\n"
            "    if deep: add(@a)\n")
    result = archc.check(write(tmp_path, spec))
    assert not [d for d in result.diagnostics if d.is_error or d.code == "W303"]


def _randomise(model):
    import torch

    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)


def test_torch_forward_equals_a_hand_written_module(tmp_path):
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn import functional as F

    class Hand(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.bn1 = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.down = nn.Conv2d(16, 32, 3, 2, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(32)
            self.up, self.up_bn = nn.Conv2d(32, 16, 1, bias=False), nn.BatchNorm2d(16)
            self.dn, self.dn_bn = nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
            self.head = nn.Conv2d(48, 8, 1)

        def forward(self, x):
            a = F.relu(self.bn1(self.stem(x)))
            lo = F.relu(self.bn2(self.down(a)))
            hi = a + F.interpolate(self.up_bn(self.up(lo)), scale_factor=2.0)
            lo = lo + self.dn_bn(self.dn(a))
            up = F.interpolate(lo, scale_factor=2.0)
            return self.head(torch.cat([hi, up], 1))

    model = archc.build(write(tmp_path, HR))
    _randomise(model)
    hand = Hand()
    mine, theirs = model.state_dict(), hand.state_dict()
    assert [v.shape for v in mine.values()] == [v.shape for v in theirs.values()]
    hand.load_state_dict(dict(zip(theirs, mine.values())))
    model.eval(), hand.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), hand(x), atol=1e-5)
        # a wrong wiring (hi and up swapped) is told apart
        hi_up = model(x)
        assert not torch.allclose(hi_up[:, :4], hand.head(torch.zeros(2, 48, 32, 32))[:, :4])


def test_torch_forward_of_the_dla_root(tmp_path):
    torch = pytest.importorskip("torch")

    model = archc.build(write(tmp_path, DLA))
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    mods = dict(model.named_children())
    stage, root = mods["stage"]._modules, mods["root"]._modules
    with torch.no_grad():
        a = mods["1"](mods["0"](x))
        b = mods["3"](mods["2"](a))
        c = stage["1"](stage["0"](b))
        d = stage["3"](stage["2"](c))
        y = root["0"](torch.cat([c, a, d, b], 1))
        want = mods["8"](mods["7"](mods["6"](y)))
        got = model(x)
        wrong = mods["8"](mods["7"](mods["6"](root["0"](torch.cat([a, b, c, d], 1)))))
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, wrong, atol=1e-6)


# ----------------------------------------------------------------------------- text forms

ROUND_TRIP = [HR, DLA, """
block stem(c, deep=false):
    conv3-{c} bn relu
    if deep: conv3-{c} bn relu
    [for i in range(2): relu]
    [if deep: relu  relu]

network n(deep=true):
    input 3x16x16
    stem(8, deep=deep) -> a
    add:
        @a
        if deep:
            conv3-8
""", "network n:\n    input 3x8x8\n    conv3-8->a  relu\n    add( @a,@a )\n"]


def _ir(text: str):
    from archc.compiler import ir
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.parse import parse_text

    diags = Diagnostics()
    spec = parse_text(textwrap.dedent(text).lstrip("\n"), "spec.arch", diags)
    assert spec is not None and not diags.items, diags.items
    return spec, ir.structure(spec)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_unparse_and_yaml_give_back_the_same_ir(text):
    from archc.compiler import ir
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.unparse import unparse
    from archc.compiler.yamlspec import dump_yaml, load_yaml

    spec, structure = _ir(text)
    assert _ir(unparse(spec))[1] == structure
    diags = Diagnostics()
    assert ir.structure(load_yaml(dump_yaml(spec), "spec.yaml", diags)) == structure
    assert not diags.items


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_fmt_keeps_the_ir_and_is_idempotent(text):
    from archc.tools.fmt import format_text

    source = textwrap.dedent(text).lstrip("\n")
    once = format_text(source)
    assert format_text(once) == once
    assert _ir(once)[1] == _ir(source)[1]


def test_fmt_spaces_arrows_and_references():
    from archc.tools.fmt import format_text

    text = "network n:\n    input 3x8x8\n    conv3-8->a  relu\n    add( @a,@a )\n"
    assert format_text(text).splitlines()[2:] == ["    conv3-8 -> a  relu", "    add(@a, @a)"]


def test_a_merge_inside_a_one_line_group_is_written_on_one_line(tmp_path):
    """RepVGG's block as timm builds it: a branch that is a merge followed by a layer (the
    importer's IR crashed the unparser before)."""
    from archc.compiler import ir
    from archc.compiler.unparse import unparse

    conv = ir.Layer.model_construct(callee="conv", args=[
        ir.Arg.model_construct(name="kernel", value=ir.Num.model_construct(value=3)),
        ir.Arg.model_construct(name="out", value=ir.Num.model_construct(value=8))])
    inner = ir.Merge.model_construct(mode="add", branches=[
        conv.model_copy(update={"label": "a"}), conv.model_copy(update={"label": "b"})])
    branch = ir.Group.model_construct(items=[inner, ir.Layer.model_construct(callee="relu")])
    net = ir.NetworkDef.model_construct(
        name="n", input=ir.InputDecl.model_construct(dims=[ir.Num.model_construct(value=v)
                                                          for v in (8, 8, 8)]),
        body=[ir.Merge.model_construct(mode="add", branches=[
            branch, ir.Layer.model_construct(callee="shortcut")])])
    text = unparse(ir.SpecFile.model_construct(path="n.arch", statements=[net]))
    assert "        [add([a: conv3-8], [b: conv3-8]) relu]\n" in text
    written = archc.load(write(tmp_path, text))
    paths = [m.path for m in walk(written.root) if m.path]
    assert paths == ["a", "b", "2"] and written.output_shape == (8, 8, 8)
    assert _ir(text)[1] == _ir(unparse(_ir(text)[0]))[1]


def test_one_line_merges_with_bracketed_branches(tmp_path):
    """`add([...], [shortcut]) relu`: a residual unit on one line, usable as a branch or in a
    bracket, and the same modules as the indented form."""
    one = archc.load(write(tmp_path, "network n:\n    input 8x8x8\n    concat:\n"
                           "        [add([c1: conv3-8 bn], [shortcut]) relu]\n"
                           "        conv1-8\n", "one.arch"))
    indented = archc.load(write(tmp_path, "network n:\n    input 8x8x8\n    concat:\n"
                                "        add:\n            [c1: conv3-8 bn]\n"
                                "            shortcut\n        conv1-8\n", "two.arch"))
    assert one.output_shape == (16, 8, 8) and indented.output_shape == (8 + 8, 8, 8)
    assert [m.path for m in walk(one.root)][1:] == ["c1", "1", "2", "3"]
    result = archc.check(write(tmp_path, "network n:\n    input 8x8x8\n    conv3-8([relu])\n"))
    assert codes(result) == ["E001"]


# ----------------------------------------------------------------------------- backends


@pytest.mark.parametrize("text, stem", [(HR, "hr"), (DLA, "dla")])
def test_generated_python_matches_build(text, stem, tmp_path):
    pytest.importorskip("torch")
    from archc.backends.module import class_name
    from tests.test_pysource import assert_same_model, generate

    net = archc.load(write(tmp_path, text))
    module, source = generate(net, tmp_path, stem)
    assert_same_model(net, getattr(module, class_name(net.name)))
    if stem == "hr":
        assert "def forward(self, x: torch.Tensor, lo: torch.Tensor)" in source
        assert "return hi, low" in source


def test_onnx_export_of_a_dag(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.test_onnx import assert_matches, export_with_known_weights

    net = archc.load(write(tmp_path, HR))
    written, model = export_with_known_weights(net, tmp_path)
    assert_matches(written[0], model, net.input_shape)


def test_diff_reports_a_change_of_wiring(tmp_path):
    from archc.tools.diff import Side, diff

    a = archc.load(write(tmp_path, DLA, "a.arch"))
    b = archc.load(write(tmp_path, DLA.replace("concat(@c, @a", "concat(@a, @c"), "b.arch"))
    rows = diff(Side("a", a), Side("b", b)).rows
    assert [(r.change, r.path, r.what) for r in rows] == [("changed", "root", "wiring")]
    assert "@c @a @d @b → @a @c @d @b" in rows[0].notes[0]
    assert not diff(Side("a", a), Side("a", a)).rows


def test_dot_draws_an_edge_from_where_a_tensor_is_named(tmp_path):
    from archc.backends.dot import to_dot

    source = to_dot(archc.load(write(tmp_path, DLA)), depth=2)
    # the root's conv reads the concat of four tensors: c and d come out of the stage
    assert source.count('-> "root/concat"') == 4
    assert '"stage.1" -> "root/concat"' in source and '\t1 -> "root/concat"' in source


# ----------------------------------------------------------------------------- warts


def test_layers_as_block_arguments(tmp_path):
    spec = ("block cna(c, act=relu):\n    conv3-{c}(bias=false) bn act\n\n"
            "network n:\n    input 3x8x8\n    cna(8, act=hardswish)\n"
            "    cna(8, act=leakyrelu(0.2))\n    cna(8, act=none)\n    cna(8)\n")
    result = archc.check(write(tmp_path, spec))
    assert result.ok and not result.diagnostics, result.diagnostics
    kinds = [[m.kind for m in walk(block) if m is not block]
             for block in result.network.root.children]
    assert kinds == [["conv", "bn", "hardswish"], ["conv", "bn", "leakyrelu"], ["conv", "bn"],
                     ["conv", "bn", "relu"]]
    slope = [m for m in walk(result.network.root) if m.kind == "leakyrelu"][0].params
    assert 0.2 in slope.values()


def test_shortcut_names_its_parts(tmp_path):
    spec = ("block down(c):\n    add:\n        conv3-{c}(stride=2)\n"
            "        downsample: shortcut(names=(1, 2))\n\n"
            "network n:\n    input 8x8x8\n    b: down(16)\n")
    net = archc.load(write(tmp_path, spec))
    assert [m.path for m in walk(net.root)][-2:] == ["b.downsample.1", "b.downsample.2"]
    bad = archc.check(write(tmp_path, spec.replace("(1, 2)", "(1,)")))
    assert codes(bad) == ["E104"]


def test_a_merge_branch_repeated_zero_times_is_an_error(tmp_path):
    spec = ("network n(k=0):\n    input 8x8x8\n    add:\n        conv3-8\n"
            "        [conv1-8 bn] x{k}\n")
    result = archc.check(write(tmp_path, spec))
    assert codes(result) == ["E204"]
    assert result.diagnostics[0].span.line == 5
    # `if` leaves the branch out instead, and the parameter it reads is used
    ok = archc.check(write(tmp_path, spec.replace("        [conv1-8 bn] x{k}",
                                                  "        if k > 0: conv1-8 bn")))
    assert ok.ok and not ok.diagnostics and ok.network.output_shape == (8, 8, 8)
    assert len(list(walk(ok.network.root))) == 2  # the conv alone, no add


def test_for_and_if_inside_brackets(tmp_path):
    spec = ("network n(deep=false):\n    input 3x8x8\n"
            "    stage: [conv3-8 for i in range(3): relu conv1-8]\n"
            "    [if deep: conv3-8]\n")
    net = archc.load(write(tmp_path, spec))
    assert [m.kind for m in walk(net.root) if m.path][1:] == ["conv", *["relu", "conv"] * 3]




def rep_like():
    """timm's RepVGG block as its forward runs it: (conv1x1-bn + conv3x3-bn), then an
    identity-module drop path, added to a bn of the input, then relu."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.identity = nn.BatchNorm2d(c)
            self.conv_kxk = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False),
                                          nn.BatchNorm2d(c))
            self.conv_1x1 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
            self.drop_path = nn.Identity()
            self.act = nn.ReLU()

        def forward(self, x):
            y = self.drop_path(self.conv_1x1(x) + self.conv_kxk(x))
            return self.act(y + self.identity(x))

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Block(8), Block(8))


def test_the_importer_writes_a_merge_followed_by_a_layer_in_a_branch():
    """RepVGG via the PyTorch importer crashed the unparser (exit 101); now it is written with a
    one-line merge, and the written spec computes what the module does."""
    torch = pytest.importorskip("torch")
    from archc.importers.layout import spec_text
    from tests.importers.test_torch_import import assert_same_outputs, imported

    spec, diags = imported("tests.test_named_tensors:rep_like", check_shape=(3, 16, 16))
    assert spec is not None, [d.message for d in diags.items]
    assert "add([" in spec_text(spec)
    torch.manual_seed(0)
    assert_same_outputs(spec, rep_like(), shape=(3, 16, 16))
