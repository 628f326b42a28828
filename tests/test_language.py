"""Focused semantic tests of the .arch language, each on a small inline spec.

Names are checked through the module paths of the resolved tree (`archc.compiler.graph.walk`):
a path such as `layer2.0.downsample.0` is the state_dict prefix the torch backend gives
that module. Nothing here imports torch.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import archc
from archc.compiler.graph import LayerNode, walk
from archc.compiler.shapes import input_sizes

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def write(tmp_path: Path, text: str, name: str = "spec.arch") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kw):
    return archc.load(write(tmp_path, text), **kw)


def check(tmp_path: Path, text: str, **kw) -> archc.CheckResult:
    return archc.check(write(tmp_path, text), **kw)


def paths(net, kind: str | None = None) -> list[str]:
    """Module paths in registration order (layers only, optionally of one kind)."""
    return [m.path for m in walk(net.root)
            if isinstance(m, LayerNode) and (kind is None or m.kind == kind)]


def tree(net) -> list[tuple[str, str]]:
    """(path, kind) of every module below the network."""
    return [(m.path, m.kind) for m in walk(net.root) if m.path]


def errors(result: archc.CheckResult) -> list[str]:
    return [d.code for d in result.diagnostics if d.is_error]


def layer(net, path: str) -> LayerNode:
    return next(m for m in walk(net.root) if m.path == path)


# ----------------------------------------------------------------------------- names


def test_label_binds_one_item_and_the_rest_are_numbered(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            stem: conv3-8 bn relu
            conv3-8
            head: relu
    """)
    assert tree(net) == [("stem", "conv"), ("1", "bn"), ("2", "relu"), ("3", "conv"),
                         ("head", "relu")]


def test_unnamed_repeat_is_spliced_named_repeat_is_a_submodule(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            conv3-8 x2
            r: conv3-8 x3
            relu
    """)
    assert tree(net) == [("0", "conv"), ("1", "conv"), ("r", "group"), ("r.0", "conv"),
                         ("r.1", "conv"), ("r.2", "conv"), ("3", "relu")]


def test_repeat_count_from_a_parameter(tmp_path):
    net = load(tmp_path, """
        network n(depth=4):
            input 3x8x8
            conv3-8 x{depth}
    """, depth=2)
    assert paths(net) == ["0", "1"]


def test_groups_brackets_and_indented_blocks(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            [conv3-8 relu]
            features: [conv3-8
                       relu
                       maxpool]
            head:
                flatten
                FC-10
    """)
    assert tree(net) == [("0", "conv"), ("1", "relu"), ("features", "group"),
                         ("features.0", "conv"), ("features.1", "relu"),
                         ("features.2", "maxpool"), ("head", "group"), ("head.0", "flatten"),
                         ("head.1", "fc")]
    assert net.output_shape == (10,)


def test_block_call_is_a_submodule_named_by_its_label(tmp_path):
    net = load(tmp_path, """
        block unit(c):
            conv: conv3-{c}
            bn
            relu
        network n:
            input 3x8x8
            unit(8)
            second: unit(16)
    """)
    assert tree(net) == [("0", "block"), ("0.conv", "conv"), ("0.1", "bn"), ("0.2", "relu"),
                         ("second", "block"), ("second.conv", "conv"), ("second.1", "bn"),
                         ("second.2", "relu")]
    assert net.output_shape == (16, 8, 8)


@pytest.mark.parametrize("spec, expected", [
    ("vgg.arch", ["features.0", "features.2", "features.5", "features.7", "features.10",
                  "features.12", "features.14", "features.17", "features.19", "features.21",
                  "features.24", "features.26", "features.28", "classifier.0", "classifier.3",
                  "classifier.6"]),
    ("alexnet.arch", ["features.0", "features.3", "features.6", "features.8", "features.10",
                      "classifier.1", "classifier.4", "classifier.6"]),
])
def test_numbering_matches_torchvision_state_dict(spec, expected):
    net = archc.load(SPECS / spec)
    assert [p for p in paths(net) if layer(net, p).kind in ("conv", "fc")] == expected


def test_resnet_names_match_torchvision():
    net = archc.load(SPECS / "resnet18.arch")
    names = set(paths(net))
    for key in ("conv1", "bn1", "layer1.0.conv1", "layer1.0.bn2", "layer2.0.downsample.0",
                "layer2.0.downsample.1", "layer4.1.conv2", "fc"):
        assert key in names, key
    assert "layer1.0.downsample" not in {m.path for m in walk(net.root)}  # identity: no module
    assert net.n_params == 11_689_512  # torchvision's resnet18


# ----------------------------------------------------------------------------- paper notation


def test_paper_notation_expands_to_parameters(tmp_path):
    net = load(tmp_path, """
        network n(c=4):
            input 3x64x64
            conv3-64 LRN maxpool maxpool3-2 conv1-{c*4}
            dropout-0.3 leaky-relu-0.1
            flatten FC-4096 soft-max
    """)
    got = [(m.kind, m.params) for m in walk(net.root) if isinstance(m, LayerNode)]
    assert got[0] == ("conv", {"out": 64, "kernel": 3, "stride": 1, "padding": "same",
                               "dilation": 1, "groups": 1, "bias": True})
    assert got[1][0] == "lrn"
    assert got[2] == ("maxpool", {"kernel": 2, "stride": None, "padding": 0, "ceil": False})
    assert got[3][1]["kernel"] == 3 and got[3][1]["stride"] == 2
    assert got[4][1]["kernel"] == 1 and got[4][1]["out"] == 16
    assert got[5] == ("dropout", {"p": 0.3})
    assert got[6] == ("leakyrelu", {"slope": 0.1})
    assert got[8] == ("fc", {"out": 4096, "bias": True})
    assert got[9][0] == "softmax"
    assert [m.out_shape for m in walk(net.root) if isinstance(m, LayerNode)][:4] == [
        (64, 64, 64), (64, 64, 64), (64, 32, 32), (64, 15, 15)]


def test_padding_same_and_valid(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x32x32
            conv5-8
            conv5-8(pad=valid)
            conv3-8(dilation=2)
            conv3-8(stride=2)
    """)
    assert [m.out_shape for m in walk(net.root) if isinstance(m, LayerNode)] == [
        (8, 32, 32), (8, 28, 28), (8, 28, 28), (8, 14, 14)]


def test_padding_same_needs_an_odd_kernel(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x32x32
            conv4-8
    """)
    assert errors(result) == ["E204"]
    assert "odd kernel" in result.diagnostics[0].message


# ----------------------------------------------------------------------------- after rules


def test_after_rule_applies_in_the_body_and_table_rows_not_in_blocks(tmp_path):
    net = load(tmp_path, """
        block unit(c):
            conv3-{c}
            bn
        table t:
            A: conv3-8 maxpool
        network n:
            input 3x8x8
            after conv: bn relu
            features: t[A]
            conv1-8
            unit(8)
    """)
    assert tree(net) == [
        ("features", "group"), ("features.0", "conv"), ("features.1", "bn"),
        ("features.2", "relu"), ("features.3", "maxpool"),
        ("1", "conv"), ("2", "bn"), ("3", "relu"),
        ("4", "block"), ("4.0", "conv"), ("4.1", "bn")]


def test_after_rule_in_a_block_applies_to_that_block(tmp_path):
    net = load(tmp_path, """
        block unit(c):
            after conv: relu
            conv3-{c} conv3-{c}
        network n:
            input 3x8x8
            conv3-8
            u: unit(8)
    """)
    assert tree(net) == [("0", "conv"), ("u", "block"), ("u.0", "conv"), ("u.1", "relu"),
                         ("u.2", "conv"), ("u.3", "relu")]


def test_after_rule_with_an_unknown_kind(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            after cnov: relu
            conv3-8
    """)
    assert errors(result) == ["E101"]
    assert "conv" in result.diagnostics[0].hint


# ----------------------------------------------------------------------------- tables, aliases


def test_vgg_variants_select_table_rows():
    convs = {v: len(paths(archc.load(SPECS / "vgg.arch", variant=v), "conv"))
             for v in ("A", "A-LRN", "B", "C", "D", "E")}
    assert convs == {"A": 8, "A-LRN": 8, "B": 10, "C": 13, "D": 13, "E": 16}
    lrn = archc.load(SPECS / "vgg.arch", variant="A-LRN")
    assert "lrn" in {m.kind for m in walk(lrn.root) if isinstance(m, LayerNode)}


def test_variant_literal_in_brackets(tmp_path):
    net = load(tmp_path, """
        table t:
            A: conv3-8
            B: conv3-8 conv3-8
        network n:
            input 3x8x8
            t[B]
    """)
    assert len(paths(net)) == 2


def test_unknown_variant(tmp_path):
    result = archc.check(SPECS / "vgg.arch", variant="F")
    assert errors(result) == ["E110"]
    assert "A, A-LRN, B, C, D, E" in result.diagnostics[0].hint


def test_network_alias_rebinds_defaults():
    net = archc.load(SPECS / "vgg_d.arch")
    assert net.params["variant"] == "D"
    assert len(paths(net, "conv")) == 13


def test_alias_parameters_can_still_be_overridden(tmp_path):
    write(tmp_path, """
        network base(width=8, depth=1):
            input 3x8x8
            conv3-{width} x{depth}
    """, "base.arch")
    path = write(tmp_path, """
        import "base.arch"
        network wide = base(width=32)
    """, "wide.arch")
    net = archc.load(path, depth=2)
    assert net.params == {"width": 32, "depth": 2}
    assert net.output_shape == (32, 8, 8)


def test_alias_keeps_its_own_name():
    assert archc.load(SPECS / "vgg_d.arch").name == "vgg_d"


def test_network_selection(tmp_path):
    path = write(tmp_path, """
        network small:
            input 3x8x8
            conv3-8
        network big:
            input 3x8x8
            conv3-64
    """)
    assert archc.load(path).name == "small"  # the first one by default
    assert archc.load(path, network="big").output_shape == (64, 8, 8)
    result = archc.check(path, network="bgi")
    assert errors(result) == ["E101"] and "big" in result.diagnostics[0].hint


# ----------------------------------------------------------------------------- parameters


def test_set_overrides_and_unknown_parameter(tmp_path):
    path = write(tmp_path, """
        network n(num_classes=1000):
            input 3x8x8
            flatten FC-{num_classes}
    """)
    assert archc.load(path, num_classes=2).output_shape == (2,)
    result = archc.check(path, {"num_class": 2})
    assert errors(result) == ["E102"]
    assert result.diagnostics[0].hint == "did you mean `num_classes`?"


def test_parameter_without_default_needs_a_value(tmp_path):
    path = write(tmp_path, """
        network n(width):
            input 3x8x8
            conv3-{width}
    """)
    assert errors(archc.check(path)) == ["E105"]
    assert archc.load(path, width=4).output_shape == (4, 8, 8)


def test_defaults_may_use_earlier_parameters(tmp_path):
    net = load(tmp_path, """
        block unit(c, mid=c // 4):
            conv1-{mid} conv1-{c}
        network n(base=8, wide=base*4):
            input 3x8x8
            unit(wide)
    """)
    assert [layer(net, p).params["out"] for p in paths(net, "conv")] == [8, 32]


def test_input_override(tmp_path):
    path = write(tmp_path, """
        network n:
            input 3x32x32
            conv3-8(stride=2)
    """)
    assert archc.load(path, input_shape=(1, 64, 64)).output_shape == (8, 32, 32)


def test_input_may_use_parameters(tmp_path):
    net = load(tmp_path, """
        network n(size=16):
            input 3x{size}x{size*2}
            conv3-8
    """)
    assert net.input_shape == (3, 16, 32)


def test_arithmetic(tmp_path):
    net = load(tmp_path, """
        network n(c=17):
            input 3x8x8
            conv1-{c // 5}
            conv1-{c % 5 + 1}
            conv1-{2 ** 3 * (1 + 1)}
            conv1-{-(-c)}
            dropout(1 / 4)
    """)
    assert [layer(net, p).params.get("out") for p in paths(net)] == [3, 3, 16, 17, None]
    assert layer(net, paths(net)[-1]).params["p"] == 0.25


@pytest.mark.parametrize("expr, code", [("c / 2", "E104"), ("c // 0", "E109"),
                                        ("c ** 100", "E109"), ('"a" * 2', "E109"),
                                        ("undefined", "E101")])
def test_arithmetic_errors(tmp_path, expr, code):
    result = check(tmp_path, f"""
        network n(c=16):
            input 3x8x8
            conv1-{{{expr}}}
    """)
    assert errors(result) == [code]


def test_train_section(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            relu
        train:
            epochs = 30
            lr = 0.1 / 4
    """)
    assert net.train == {"epochs": 30, "lr": 0.025}


# ----------------------------------------------------------------------------- imports


def test_imports_resolve_relative_to_the_importing_file(tmp_path, monkeypatch):
    write(tmp_path, """
        block unit(c):
            conv3-{c} relu
    """, "lib/shared/blocks.arch")
    write(tmp_path, """
        import "shared/blocks.arch"
        block pair(c):
            unit(c) unit(c)
    """, "lib/pairs.arch")
    main = write(tmp_path, """
        import "lib/pairs.arch"
        network n:
            input 3x8x8
            pair(8)
    """, "nets/../main.arch")
    monkeypatch.chdir(tmp_path / "lib")  # not the spec's directory
    net = archc.load(main)
    assert paths(net, "conv") == ["0.0.0", "0.1.0"]


def test_import_cycle_and_missing_import(tmp_path):
    write(tmp_path, 'import "b.arch"\nblock x:\n    relu\n', "a.arch")
    write(tmp_path, 'import "a.arch"\nblock y:\n    relu\n', "b.arch")
    main = write(tmp_path, 'import "a.arch"\nimport "gone.arch"\nnetwork n:\n'
                           '    input 3x8x8\n    x y\n', "main.arch")
    result = archc.check(main)
    assert sorted(errors(result)) == ["E002", "E003"]
    cycle = next(d for d in result.diagnostics if d.code == "E003")
    assert "a.arch → b.arch → a.arch" in cycle.message


def test_definitions_of_imported_file_are_not_reported_unused():
    result = archc.check(SPECS / "resnet18.arch")
    assert result.ok and result.diagnostics == []  # `bottleneck` is unused but imported


# ----------------------------------------------------------------------------- merges


def test_concat_sums_channels_and_add_keeps_shape(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            conv3-8
            concat:
                conv1-4
                conv1-2 relu conv3-6
                maxpool(3, stride=1, pad=1)
            add:
                conv3-18 relu
                identity
    """)
    assert net.output_shape == (18, 8, 8)
    kinds = [k for _, k in tree(net)]
    assert kinds == ["conv", "conv", "conv", "relu", "conv", "maxpool", "conv", "relu",
                     "identity"]


def test_shortcut_identity_and_inferred_projection(tmp_path):
    net = load(tmp_path, """
        block res(c, stride=1):
            add:
                conv3-{c}(stride=stride) bn
                down: shortcut
        network n:
            input 3x32x32
            conv3-16
            same: res(16)
            down: res(32, stride=2)
    """)
    names = {m.path for m in walk(net.root)}
    assert "same.down" not in names  # identity: no module
    conv, bn = layer(net, "down.down.0"), layer(net, "down.down.1")
    assert (conv.kind, bn.kind) == ("conv", "bn")
    assert conv.params["kernel"] == 1 and conv.params["stride"] == 2
    assert conv.params["out"] == 32 and conv.params["bias"] is False
    assert net.output_shape == (32, 16, 16)
    explained = [text for _, text in net.explain]
    assert any("same.down: identity" in t for t in explained)
    assert any("down.down: projection conv1×1/2 16→32 + bn" in t for t in explained)


def test_shortcut_options(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            conv3-8
            add:
                conv3-8
                a: shortcut(always=true)
            add:
                conv3-16
                b: shortcut(bn=false, bias=true)
    """)
    assert layer(net, "a.0").params["stride"] == 1 and layer(net, "a.1").kind == "bn"
    assert layer(net, "b").kind == "conv" and layer(net, "b").params["bias"] is True


def test_shortcut_errors(tmp_path):
    bad_option = check(tmp_path, """
        network n:
            input 3x8x8
            add:
                conv3-8
                shortcut(bn=1)
    """)
    assert errors(bad_option) == ["E104"]
    no_projection = check(tmp_path, """
        network n:
            input 3x8x8
            add:
                conv3-8(pad=2)
                shortcut
    """)
    assert errors(no_projection) == ["E203"]
    outside = check(tmp_path, """
        network n:
            input 3x8x8
            shortcut
    """)
    assert errors(outside) == ["E204"]


def test_shortcut_positional_argument_message(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            add:
                conv3-8
                shortcut(1)
    """)
    assert errors(result) == ["E103"]
    assert "None" not in result.diagnostics[0].message


# ----------------------------------------------------------------------------- taps


def test_tap_is_an_extra_training_output(tmp_path):
    net = load(tmp_path, """
        block head(n):
            global-avgpool flatten FC-{n}
        network net:
            input 3x16x16
            conv3-8
            aux: tap head(3)
            conv3-16(stride=2)
            aux2: tap [global-avgpool flatten FC-5]
            global-avgpool flatten FC-10
    """)
    assert net.output_shape == (10,)
    assert net.aux_outputs == {"aux": (3,), "aux2": (5,)}
    assert layer(net, "2").in_shape == (8, 16, 16)  # the main path goes on from the tap point
    assert [p for p in paths(net) if p.startswith("aux2")] == ["aux2.0", "aux2.1", "aux2.2"]


def test_googlenet_has_two_auxiliary_heads():
    net = archc.load(SPECS / "googlenet.arch")
    assert net.aux_outputs == {"aux1": (1000,), "aux2": (1000,)}


def test_tap_outside_the_network_body(tmp_path):
    result = check(tmp_path, """
        block b:
            tap relu
        network n:
            input 3x8x8
            b
    """)
    assert errors(result) == ["E204"]


# ----------------------------------------------------------------------------- diagnostics


def test_errors_are_collected_in_one_run(tmp_path):
    result = check(tmp_path, """
        block unit(c):
            conv3-{c} relu
        network n(num_classes=10):
            input 3x32x32
            add:
                conv3-32
                identity
            unit(16, 2)
            conv3-16(strid=2)
            conv3-{widht}
            maxpol
            flatten
            FC-{num_classes}
    """)
    # Shape checks stop where a layer has no shape (after the first bad layer), so the
    # mismatch comes first here; every other problem is still reported.
    assert errors(result) == ["E201", "E103", "E102", "E101", "E101"]
    lines = [d.span.line for d in result.diagnostics]
    assert lines == sorted(lines) == [5, 8, 9, 10, 11]


def test_syntax_error_is_one_located_diagnostic(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            conv3-8 ]
    """)
    assert [(d.code, d.span.line, d.span.column) for d in result.diagnostics] == [
        ("E001", 3, 13)]
    assert result.network is None


def test_warnings_do_not_fail_the_check(tmp_path):
    result = check(tmp_path, """
        block spare:
            relu
        network n(unused=1):
            input 3x9x9
            maxpool
    """)
    assert result.ok
    assert sorted(d.code for d in result.diagnostics) == ["W301", "W302", "W303"]


def test_a_parameter_read_only_on_a_skipped_side_is_used(tmp_path):
    """`g and (start + j) % 2` with g = 0 never evaluates `start`, and `a if t else b`
    evaluates one side; the parameters they name are still read by the spec (no W303). A
    comprehension's own names are not the parameter's."""
    result = check(tmp_path, """
        block unit(c, start, g, wide, narrow):
            for j in range(2): conv1-{g if g and (start + j) % 2 else c}
            conv1-{wide if c > 4 else narrow}
        network n(g=0):
            input 3x9x9
            unit(8, 3, g, 16, 4)
            unit(8, 3, 1, 16, 4)
    """)
    assert [d.code for d in result.diagnostics if d.code.startswith("W")] == [], \
        [d.message for d in result.diagnostics]
    result = check(tmp_path, """
        block unit(c, k, stride=1):
            add:
                conv1-{c}(stride=stride)
                if stride > 1:
                    conv(c, k, stride=stride)
            [if stride > 1: conv(c, k)]
        network n:
            input 3x9x9
            unit(3, 5)
            unit(8, 5, 2)
    """)
    assert [d.code for d in result.diagnostics] == []  # `k`: only the second call reads it
    result = check(tmp_path, """
        block unit(c, start):
            conv1-{c if true else (start for start in range(2))[0]}
        network n:
            input 3x9x9
            unit(8, 3)
    """)
    assert [d.code for d in result.diagnostics] == ["W303"]


def test_missing_input_has_its_own_warning_code(tmp_path):
    result = check(tmp_path, """
        network n:
            conv3-8
    """)
    assert result.ok and result.network.input_shape == (3, 224, 224)
    [warning] = result.diagnostics
    assert "declares no input" in warning.message
    assert warning.code != "W303"


def test_table_referring_to_itself(tmp_path):
    result = check(tmp_path, """
        table t:
            A: conv3-8 t[A]
        network n:
            input 3x8x8
            t[A]
    """)
    assert errors(result) == ["E107"]


def test_type_errors_use_spec_spelling(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            dropout(p=true)
    """)
    assert errors(result) == ["E104"]
    assert result.diagnostics[0].message.endswith("got true")


# ----------------------------------------------------------------------------- input sizes


def test_vgg_smallest_input_is_32():
    sizes = input_sizes(archc.load(SPECS / "vgg.arch"))
    assert (sizes.smallest, sizes.step, sizes.largest) == (32, 1, None)
    assert sizes.describe() == "any H×W ≥ 32×32"


EVEN_ONLY = """
    network even_only:
        input 3x32x32
        add:
            conv(kernel=2, stride=2, out=4, pad=valid)
            conv(kernel=1, stride=2, out=4, pad=valid)
        global-avgpool flatten FC-2
"""


@pytest.mark.parametrize("spec", ["googlenet.arch", "resnet18.arch", "alexnet2012.arch",
                                  "vgg.arch", "even_only"])
def test_the_input_size_scan_agrees_with_torch(spec, tmp_path):
    """The scan runs only the spatial rules, all sizes at once; the oracle is torch's forward
    of the built network (on the meta device: shapes only) at each size. `even_only` adds
    branches that agree on even sizes only."""
    import torch

    if spec == "even_only":
        (tmp_path / "even.arch").write_text(textwrap.dedent(EVEN_ONLY))
        net = archc.load(tmp_path / "even.arch")
        assert input_sizes(net).step == 2
    else:
        net = archc.load(SPECS / spec)
    sizes = input_sizes(net)
    with torch.device("meta"):
        model = archc.build(net).eval()

    def torch_accepts(h: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.empty(1, 3, h, h, device="meta"))
        except RuntimeError:
            return False
        return True

    def scan_accepts(h: int) -> bool:
        return (sizes.smallest is not None and h >= sizes.smallest
                and (h - sizes.smallest) % sizes.step == 0
                and (sizes.largest is None or h <= sizes.largest))

    for h in [*range(1, 300, 23), 15, 16, 31, 32, 33, 223, 224, 227, 228, 258, 259]:
        assert scan_accepts(h) == torch_accepts(h), (spec, h, sizes)


def test_flatten_fc_without_adaptive_pool_accepts_a_band(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x32x32
            conv3-8 maxpool
            flatten FC-10
    """)
    sizes = input_sizes(net)
    assert (sizes.smallest, sizes.largest) == (32, 33)  # 2x2 pooling floors 33 to 16 too
    alexnet = input_sizes(archc.load(SPECS / "alexnet2012.arch"))
    assert alexnet.smallest <= 227 <= alexnet.largest
    assert alexnet.largest is not None


def test_strided_network_without_flatten_accepts_any_size_above_a_minimum(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x32x32
            conv3-8(stride=2, pad=valid) conv3-8(stride=2, pad=valid)
    """)
    sizes = input_sizes(net)
    assert sizes.smallest == 7 and sizes.largest is None


def test_spatial_size_below_one_names_the_minimum(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x4x4
            conv5-8(pad=valid)
    """)
    assert errors(result) == ["E202"]
    assert "at least 5" in result.diagnostics[0].hint


def test_tuples_are_values_for_train_settings(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            relu
        train:
            scale = (0.35, 1.0)
            ratio = (3 / 4, 4 / 3)
    """)
    assert net.train["scale"] == (0.35, 1.0)
    assert net.train["ratio"] == (0.75, 4 / 3)
    result = check(tmp_path, """
        network n:
            input 3x8x8
            conv(out=(8, 8))
    """)
    assert errors(result) == ["E104"]


def test_arithmetic_on_a_tuple_names_the_tuple(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            conv3-{(1, 2) + 1}
    """)
    assert errors(result) == ["E109"]
    assert "tuple" in result.diagnostics[0].message


def test_a_tap_cannot_be_repeated(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            conv3-8
            t: tap relu x3
    """)
    assert errors(result) == ["E204"]
    assert "cannot be repeated" in result.diagnostics[0].message


# ----------------------------------------------------------------------------- zoo constructs
# Functions, comparisons, `for` loops over ranges and stage tables, generated labels, the
# input shape inside a block, the optional residual and a branch that ends in a merge.


@pytest.mark.parametrize("expr, value", [
    ("min(3, 5, 4)", 3), ("max((2, 9, 4))", 9), ("round(2.5)", 2), ("round(3.5)", 4),
    ("floor(2.7)", 2), ("ceil(2.1)", 3), ("int(-2.7)", -2), ("int(3 != 1)", 1),
    ("make_divisible(32 * 0.75, 8)", 24), ("make_divisible(10, 8)", 16),
    ("make_divisible(3, 8, 1)", 9), ("len(range(2, 9, 3))", 3),
    ("3 if 2 > 1 and not 0 else 4", 3), ("5 if 1 == 2 or 2 < 1 else 6", 6),
    ("round(log(8, 2))", 3), ("abs(-4)", 4),
])
def test_functions_and_conditions(tmp_path, expr, value):
    net = load(tmp_path, f"""
        network n(v={expr}):
            input 3x8x8
            conv1-{{max(v, 1)}}
    """)
    assert net.params["v"] == value and type(net.params["v"]) is type(value)


@pytest.mark.parametrize("expr, message", [
    ("mix(1, 2)", "unknown function `mix`"),
    ("round(1, 2, 3)", "`round` takes 1 to 2 arguments, got 3"),
    ("floor(\"a\")", "`floor` needs numbers, got a string"),
    ("range(10 ** 9)", "too long"),
    ("log(0)", "`log` needs a positive number"),
    ("1 < \"a\"", "`<` compares two numbers"),
    ("make_divisible(8, 0)", "`make_divisible` cannot take these values"),
])
def test_function_errors_are_located(tmp_path, expr, message):
    result = check(tmp_path, f"""
        network n(v={expr}):
            input 3x8x8
            conv1-8
    """)
    (diag,) = [d for d in result.diagnostics if d.is_error]
    assert message in diag.message and diag.span.line == 1 and diag.hint


def test_make_divisible_is_torchvisions():
    from archc.compiler.expressions import make_divisible

    torchvision_utils = pytest.importorskip("torchvision.models._utils")
    for v in [3.2, 8, 11.9, 16 * 0.35, 24 * 1.4, 96 * 0.5, 1280 * 1.3, 57.6, 0.5]:
        for divisor in (1, 8, 16):
            assert make_divisible(v, divisor) == torchvision_utils._make_divisible(v, divisor)


def test_block_reads_its_input_shape(tmp_path):
    net = load(tmp_path, """
        block widen(t=4, hidden=in_channels * t):
            conv1-{hidden}  conv3-{in_channels}(stride=in_height // 4)
        network n:
            input 3x32x16
            conv1-8
            a: widen
            b: widen(2)
    """)
    assert layer(net, "a.0").out_shape == (32, 32, 16)
    assert layer(net, "a.1").out_shape == (8, 4, 2)
    assert layer(net, "b.0").out_shape == (16, 4, 2)


def test_x0_leaves_the_item_out(tmp_path):
    net = load(tmp_path, """
        network n(n=1):
            input 3x8x8
            conv1-8 x{n - 1}
            stage: [conv1-4 x0]
            conv1-16
    """)
    assert tree(net) == [("stage", "group"), ("1", "conv")]
    assert errors(check(tmp_path, "network n:\n    input 3x8x8\n    conv1-8 x{-1}\n")) == ["E204"]


def test_for_over_a_stage_table_with_generated_labels(tmp_path):
    net = load(tmp_path, """
        block unit(c, stride=1):
            conv3-{c}(stride=stride)
        network n(setting=((16, 1, 1), (24, 2, 2), (32, 3, 2))):
            input 3x32x32
            features:
                for c, n, s in setting:
                    unit(c, s)  unit(c) x{n - 1}
            for i in range(1, 3):
                block{i}: [conv1-8  layer{i}-{i * 2}: conv1-4]
    """)
    assert [p for p, k in tree(net) if k == "block"] == [f"features.{i}" for i in range(6)]
    assert layer(net, "features.1.0").params["stride"] == 2
    assert layer(net, "features.2.0").params["stride"] == 1
    assert layer(net, "features.5.0").out_shape == (32, 8, 8)
    assert paths(net)[-4:] == ["block1.0", "block1.layer1-2", "block2.0", "block2.layer2-4"]


DOTTED = Path(__file__).parent / "fixtures" / "dotted_labels.arch"


def test_a_dotted_label_places_the_module_apart_from_where_it_runs(tmp_path):
    net = archc.load(DOTTED)
    assert paths(net)[:7] == ["body.convs.0", "body.bns.0", "body.2", "body.convs.1",
                              "body.bns.1", "body.5", "deep.a.b.0"]
    body = layer(net, "body")
    assert not body.is_sequential  # the torch backend gives it containers, not nn.Sequential
    assert layer(net, "body.bns.1").in_shape == (8, 8, 8)


@pytest.mark.parametrize("lines, message", [
    ("convs: conv3-8\n    convs.0: conv3-8", "`convs.0` runs through `convs`, a layer"),
    ("convs: [conv3-8]\n    convs.0.a: conv3-8", "runs through `convs`, a submodule"),
    ("convs.0: conv3-8\n    convs: relu", "`convs` is the container of a dotted label"),
    ("convs.0.a: conv3-8\n    convs.0: relu", "`convs.0` is the container"),
    ("convs.0: conv3-8\n    convs.0: relu", "`convs.0` names two submodules"),
])
def test_dotted_paths_that_clash_are_e111(tmp_path, lines, message):
    result = check(tmp_path, f"network n:\n    input 3x8x8\n    {lines}\n    flatten FC-10\n")
    assert errors(result) == ["E111"]
    assert message in result.diagnostics[0].message


def test_for_loop_errors(tmp_path):
    result = check(tmp_path, """
        network n(setting=((1, 2), (3,))):
            input 3x8x8
            for a, b in setting: conv1-{a}
            for x in 3: conv1-8
            for i in range(2): name{i / 2}: conv1-8
    """)
    messages = [d.message for d in result.diagnostics if d.is_error]
    assert any("unpacks 2 values, but a row is (3,)" in m for m in messages)
    assert any("`for` needs a tuple or a range" in m for m in messages)
    assert any("a label's `{...}` must give a whole number" in m for m in messages)


def test_optional_shortcut_is_a_residual_only_when_shapes_agree(tmp_path):
    net = load(tmp_path, """
        block inverted(out, stride=1):
            add:
                conv: [conv1-{in_channels * 6}  conv3-{in_channels * 6}(stride=stride)  conv1-{out}]
                shortcut(optional=true)
        network n:
            input 3x16x16
            conv1-8
            same: inverted(8)
            wider: inverted(16)
            strided: inverted(16, 2)
    """)
    from archc.compiler.graph import Parallel

    assert isinstance(layer(net, "same").plan.ops[0], Parallel)
    assert not isinstance(layer(net, "wider").plan.ops[0], Parallel)
    assert layer(net, "wider").is_sequential and layer(net, "strided").is_sequential
    assert [p for p in paths(net) if p.startswith("strided")] == [
        "strided.conv.0", "strided.conv.1", "strided.conv.2"]


def test_branch_ending_in_a_merge_adds_no_naming_level(tmp_path):
    net = load(tmp_path, """
        network n:
            input 3x8x8
            mixed: concat:
                branch1x1: conv1-8
                branch3x3_1: conv1-4  concat:
                    branch3x3_2a: conv3-4
                    branch3x3_2b: conv3-6
            relu concat:
                shortcut
                conv1-2
    """)
    assert paths(net) == ["mixed.branch1x1", "mixed.branch3x3_1", "mixed.branch3x3_2a",
                          "mixed.branch3x3_2b", "1", "2"]
    assert net.output_shape == (20, 8, 8)


def test_items_before_a_label_that_is_no_merge(tmp_path):
    result = check(tmp_path, """
        network n:
            input 3x8x8
            conv1-8 relu tail:
                conv1-8
    """)
    (diag,) = [d for d in result.diagnostics if d.is_error]
    assert diag.code == "E001" and "must be a merge" in diag.message


def test_indexing_slicing_comprehensions_and_nested_unpacking(tmp_path):
    """What a network-wide block index needs: EfficientNet's stochastic depth grows with
    `sum(depths[:i]) + j` over `depths = (ceil(n * depth) for ...)`."""
    net = load(tmp_path, """
        block unit(c, p):
            conv1-{c}  dropout(p)
        network n(setting=((16, 1), (24, 2), (32, 3)), depth=1.5,
                  depths=(ceil(n * depth) for _, n in setting), total=sum(depths)):
            input 3x8x8
            for i, (c, n) in enumerate(setting):
                for j in range(depths[i]): unit(c, 0.2 * (sum(depths[:i]) + j) / total)
            conv1-{depths[-1] + len(setting[1:]) + setting[0][0]}
    """)
    assert net.params["depths"] == (2, 3, 5) and net.params["total"] == 10
    probabilities = [m.params["p"] for m in walk(net.root)
                     if isinstance(m, LayerNode) and m.kind == "dropout"]
    assert probabilities == pytest.approx([0.02 * k for k in range(10)])
    assert net.output_shape == (23, 8, 8)


@pytest.mark.parametrize("expr, message", [
    ("(1, 2)[2]", "index 2 is out of range for 2 values"),
    ("3[0]", "only a tuple can be indexed"),
    ("(1, 2)[0.5]", "an index must be a whole number"),
    ("(x for x, y in (1, 2))", "does not fit a value"),
])
def test_index_errors_are_located(tmp_path, expr, message):
    result = check(tmp_path, f"""
        network n(v={expr}):
            input 3x8x8
            conv1-8
    """)
    (diag,) = [d for d in result.diagnostics if d.is_error]
    assert message in diag.message and diag.code == "E109" and diag.span.line == 1


def test_blocks_of_another_network_in_the_file_are_not_unused(tmp_path):
    """A family spec: checking one network does not call the others' blocks unused."""
    result = check(tmp_path, """
        block small(c):
            conv3-{c}
        block large(c):
            conv5-{c}
        block orphan(c):
            conv1-{c}
        network a:
            input 3x8x8
            small(8)
        network b:
            input 3x8x8
            large(8)
    """)
    assert [d.message for d in result.diagnostics] == ["block `orphan` is never used"]


SPLIT_BY_SIZES = """
network parts:
    input 8x4x4
    split(sizes=(2, 3, 3)):
        identity
        conv: conv1-3
        relu
"""


def test_split_by_sizes_gives_each_branch_its_slice(tmp_path):
    net = load(tmp_path, SPLIT_BY_SIZES)
    assert [m.in_shape for m in walk(net.root) if isinstance(m, LayerNode)] == [
        (2, 4, 4), (3, 4, 4), (3, 4, 4)]
    assert net.root.out_shape == (8, 4, 4)


def test_split_sizes_may_be_expressions_of_block_parameters(tmp_path):
    net = load(tmp_path, """
        block parts(c):
            conv1-{c} split(sizes=(c // 4, c - c // 4)):
                identity
                conv1-{c - c // 4}

        network n:
            input 3x8x8
            parts(16)
    """)
    assert [m.in_shape for m in walk(net.root) if isinstance(m, LayerNode)] == [
        (3, 8, 8), (4, 8, 8), (12, 8, 8)]


@pytest.mark.parametrize("head, code", [
    ("split(sizes=(2, 3, 4)):", "E201"),  # 9, not the 8 channels that reach it
    ("split(sizes=(4, 4)):", "E204"),  # two sizes, three branches
    ("split(sizes=(8, 0, 0)):", "E104"),  # an empty slice
    ("split(sizes=8):", "E104"),  # not a tuple
    ("concat(sizes=(2, 3, 3)):", "E102"),  # only split takes sizes
    ("split(2, 3, 3):", "E001"),  # sizes are named
    ("conv3(sizes=(2, 3, 3)):", "E001"),  # not a merge
])
def test_wrong_split_sizes_are_located_errors(tmp_path, head, code):
    result = check(tmp_path, SPLIT_BY_SIZES.replace("split(sizes=(2, 3, 3)):", head))
    assert errors(result) == [code]
    [diag] = [d for d in result.diagnostics if d.is_error]
    assert diag.span.line == 3 and diag.hint


def test_split_sizes_on_one_line_and_in_yaml(tmp_path):
    one_line = check(tmp_path, """
        network n:
            input 8x4x4
            split([identity], [conv1-6], sizes=(2, 6))
    """)
    assert one_line.ok and one_line.network.root.out_shape == (8, 4, 4)
    yaml_path = tmp_path / "n.yaml"
    yaml_path.write_text(textwrap.dedent("""
        - network: n
          input: [8, 4, 4]
          body:
          - split: [identity, conv1-6]
            sizes: [2, 6]
    """), encoding="utf-8")
    net = archc.load(yaml_path)
    assert [m.in_shape for m in walk(net.root) if isinstance(m, LayerNode)] == [
        (2, 4, 4), (6, 4, 4)]
    yaml_path.write_text(yaml_path.read_text().replace("split:", "concat:"), encoding="utf-8")
    assert not archc.check(yaml_path).ok  # sizes beside a merge that takes none
