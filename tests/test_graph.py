"""`archc graph`: the DOT backend, rendered with the real `dot` and read back as SVG."""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import archc
from archc.api import check
from archc.backends.dot import DotNotFound, render, table_dot, to_dot

try:  # tests/ is on sys.path when it is not a package (pytest's default)
    from goldens import GOLDEN, assert_golden
except ImportError:  # pragma: no cover - tests/ became a package
    from tests.goldens import GOLDEN, assert_golden

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="graphviz's dot is not installed")


@functools.cache
def load(name: str):
    """A checked reference network, loaded once per test session."""
    return archc.load(SPECS / f"{name}.arch")


class Drawing:
    """An SVG that `dot` drew, reduced to what the tests look at."""

    def __init__(self, path: Path):
        root = ET.parse(path).getroot()
        self.groups = {cls: [g for g in root.iter(f"{SVG}g") if g.get("class") == cls]
                       for cls in ("node", "cluster", "edge")}

    def titles(self, cls: str) -> list[str]:
        """The `<title>` of every group of a class: node ids, cluster names, `a->b`."""
        return [g.findtext(f"{SVG}title") for g in self.groups[cls]]

    def texts(self, cls: str) -> list[str]:
        """Every text drawn inside groups of a class (labels)."""
        return [t.text for g in self.groups[cls] for t in g.iter(f"{SVG}text") if t.text]

    def center_y(self, node_id: str) -> float:
        """The mean height of a node's text lines: equal for nodes on one rank."""
        group = next(g for g in self.groups["node"] if g.findtext(f"{SVG}title") == node_id)
        ys = [float(t.get("y")) for t in group.iter(f"{SVG}text")]
        return sum(ys) / len(ys)


def draw(source: str, tmp_path: Path, name: str = "graph") -> Drawing:
    """Render DOT source to SVG with the real `dot` and parse it."""
    return Drawing(render(source, tmp_path / f"{name}.svg"))


# --------------------------------------------------------------------------- structure


@needs_dot
def test_resnet34_default_depth_is_readable(tmp_path):
    svg = draw(to_dot(load("resnet34")), tmp_path)
    clusters = svg.titles("cluster")
    assert len(svg.groups["node"]) < 80  # 16 blocks, not 109 layers
    assert {f"cluster_layer{i}" for i in range(1, 5)} <= set(clusters)
    assert "cluster_legend" in clusters
    # each basic block is one node (3 + 4 + 6 + 3 of them) with its `+` kept visible, and
    # the three stages that change shape draw their projection on the side
    nodes = svg.titles("node")
    assert len([t for t in nodes if re.fullmatch(r"layer\d\.\d+", t)]) == 16
    assert len([t for t in nodes if t.endswith("/add")]) == 16
    assert len([t for t in nodes if t.endswith("/shortcut")]) == 3
    labels = svg.texts("edge")
    assert {"3×224×224", "64×112×112", "64×56×56", "128×28×28", "512×7×7", "1000"} <= set(labels)
    assert "output" in svg.titles("node")


@needs_dot
def test_larger_depth_shows_inside_the_blocks(tmp_path):
    shallow = draw(to_dot(load("resnet34"), depth=2), tmp_path, "d2")
    deep = draw(to_dot(load("resnet34"), depth=3), tmp_path, "d3")
    assert len(deep.groups["node"]) > len(shallow.groups["node"]) + 50
    assert "cluster_layer1.0" in deep.titles("cluster")
    assert "cluster_layer1.0" not in shallow.titles("cluster")
    assert "layer1.0.conv1" in deep.titles("node")


def test_residual_shortcuts_are_dashed_bypass_edges():
    source = to_dot(load("resnet18"))
    dashed = [line for line in source.splitlines() if "->" in line and "style=dashed" in line]
    # 5 identity shortcuts (one edge each) + 3 projections (into and out of the side node)
    assert len(dashed) == 5 + 3 * 2
    assert '"layer1.0/add"' in source and "layer2.0/shortcut" in source
    # the identity shortcut of layer1.0 leaves the stem's maxpool, straight for the `+`
    assert any(line.strip().startswith("maxpool -> \"layer1.0/add\"") for line in dashed)


@needs_dot
def test_googlenet_inceptions_side_by_side_and_aux_heads(tmp_path):
    svg = draw(to_dot(load("googlenet")), tmp_path)
    clusters = svg.titles("cluster")
    assert len([c for c in clusters if c.startswith("cluster_inception")]) == 9
    assert {"cluster_aux1", "cluster_aux2", "cluster_legend"} <= set(clusters)
    nodes = svg.titles("node")
    assert {"aux1/output", "aux2/output", "output"} <= set(nodes)
    assert "aux1 (training only)" in svg.texts("node")
    assert "inception3a/concat" in nodes
    # the four branch heads of an inception module share one rank
    heads = [svg.center_y(f"inception4a.branch{i}") for i in range(1, 5)]
    assert max(heads) - min(heads) < 1
    # the aux heads leave the main path by a dotted edge
    source = to_dot(load("googlenet"))
    taps = [line for line in source.splitlines() if "->" in line and "style=dotted" in line]
    assert len(taps) == 2


@needs_dot
def test_legend_lists_the_groups_drawn(tmp_path):
    svg = draw(to_dot(load("alexnet")), tmp_path)
    legend = next(g for g in svg.groups["cluster"] if g.findtext(f"{SVG}title") == "cluster_legend")
    assert legend is not None
    texts = set(svg.texts("node"))
    assert {"conv", "pool", "fc", "activation", "regularization", "reshape"} <= texts
    assert "norm" not in texts  # torchvision's AlexNet has no normalisation layer
    assert "block (collapsed)" not in texts


@needs_dot
@pytest.mark.parametrize("spec", sorted(p.stem for p in SPECS.glob("*.arch")))
def test_every_reference_spec_renders(spec, tmp_path):
    svg = draw(to_dot(load(spec)), tmp_path)
    assert len(svg.groups["edge"]) >= len(svg.groups["node"]) - 2  # connected, legend aside


def test_to_dot_is_deterministic():
    assert to_dot(load("googlenet")) == to_dot(archc.load(SPECS / "googlenet.arch"))


# --------------------------------------------------------------------------- repeated blocks


@needs_dot
def test_vit_draws_its_encoder_block_once_like_the_papers_figure(tmp_path):
    """ViT's figure 1: patch embedding, class token and position embedding, then the
    encoder block drawn once with its count (Norm → attention → + → Norm → MLP → +), the
    final norm and the head, in that order down the page."""
    svg = draw(to_dot(load("vit")), tmp_path)
    assert "cluster_encoder.layers" in svg.titles("cluster")
    assert "encoder.layers: encoder_block × 12 · 85.1M params" in svg.texts("cluster")
    nodes = svg.titles("node")
    block = "encoder.layers.encoder_layer_0"
    inside = [f"{block}.ln_1", f"{block}.self_attention", f"{block}/add", f"{block}.ln_2",
              f"{block}.mlp", f"{block}/add2"]
    order = ["conv_proj", "class_token", "encoder.pos_embedding", *inside, "encoder.ln",
             "heads.head", "output"]
    ys = [svg.center_y(node) for node in order]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)
    assert not [n for n in nodes if n.startswith("encoder.layers.encoder_layer_1")]
    assert len([n for n in nodes if n.endswith(".self_attention")]) == 1
    # the shortcuts bypass the norm and the attention, and the norm and the MLP
    source = to_dot(load("vit"))
    dashed = [line.split("[")[0].strip() for line in source.splitlines()
              if "->" in line and "style=dashed" in line]
    assert dashed == [f'"encoder.dropout" -> "{block}/add"', f'"{block}/add" -> "{block}/add2"']


def test_vit_at_a_larger_depth_draws_every_block():
    """--depth 3 opens the stack: twelve encoder blocks, each one box (depth 4: inside)."""
    deep = to_dot(load("vit"), depth=3)
    assert "encoder_block × 12" not in deep
    assert all(f'\t\t\t"encoder.layers.encoder_layer_{i}" [label=' in deep for i in range(12))
    deeper = to_dot(load("vit"), depth=4)
    assert all(f'"encoder.layers.encoder_layer_{i}.mlp"' in deeper for i in range(12))


def test_swin_stages_draw_one_block_each_and_say_what_varies():
    """A Swin stage's blocks alternate plain and shifted windows, and their stochastic depth
    grows: built alike, so drawn once, the label says which arguments differ."""
    source = to_dot(load("swin"))
    counts = re.findall(r'label="features\.\d: swin_block × (\d+) \(shift, sd vary\)', source)
    assert counts == ["2", "2", "6", "2"]
    assert source.count("window-attention") == 4  # one block drawn per stage
    assert "features.5.1." not in source
    convnext = to_dot(load("convnext"))  # the same for ConvNeXt's stages
    assert re.findall(r'label="features\.\d: cn_block × (\d+)', convnext) == ["3", "3", "9", "3"]


def test_blocks_built_differently_are_not_drawn_as_repeats():
    """At depth 1, ResNet-34's first stage (three equal blocks) is drawn as one block × 3;
    the others start with a downsampling block, so each stays one box."""
    source = to_dot(load("resnet34"), depth=1)
    assert re.findall(r'label="(layer\d: [^"]*)"', source) == [
        "layer1: basic × 3 · 222K params"]
    assert all(f"\tlayer{i} [label=<layer{i}<BR/>" in source for i in (2, 3, 4))
    assert '"layer1.0.conv1"' in source and '"layer1.1.conv1"' not in source


def test_cli_graph_draws_vit_collapsed_as_svg(tmp_path):
    out = tmp_path / "vit.svg"
    done = subprocess.run([sys.executable, "-m", "archc", "graph", str(SPECS / "vit.arch"),
                           "-o", str(out)], capture_output=True, text=True)
    if shutil.which("dot") is None:  # pragma: no cover - graphviz missing
        pytest.skip("graphviz's dot is not installed")
    assert done.returncode == 0, done.stderr
    assert "encoder_block × 12" in Drawing(out).texts("cluster")[1]


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("spec", ["resnet18", "googlenet", "vit", "swin"])
def test_golden_dot(spec):
    assert_golden(GOLDEN / "dot" / f"{spec}.dot", to_dot(load(spec)))


# --------------------------------------------------------------------------- the vgg table


@needs_dot
def test_table_dot_draws_vgg_table_1(tmp_path):
    svg = draw(table_dot(check(SPECS / "vgg.arch").program), tmp_path)
    texts = svg.texts("node")
    assert {"A", "A-LRN", "B", "C", "D", "E"} <= set(texts)
    # the paper's header row: conv + the 3 FC layers of the network that uses the table
    assert [t for t in texts if t.endswith("weight layers")] == [
        "11 weight layers", "11 weight layers", "13 weight layers", "16 weight layers",
        "16 weight layers", "19 weight layers"]
    assert texts.count("maxpool") == 5  # one row between stages, as in the paper
    assert {"conv3-64", "conv1-256", "LRN", "FC-4096", "FC-1000"} <= set(texts)


def test_table_dot_without_a_table_is_a_clear_error():
    with pytest.raises(ValueError, match="defines no `table`"):
        table_dot(check(SPECS / "resnet18.arch").program)


# --------------------------------------------------------------------------- without dot


def test_dot_output_needs_no_dot_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    source = to_dot(load("resnet18"))
    out = render(source, tmp_path / "net.dot")
    assert out.read_text(encoding="utf-8") == source
    with pytest.raises(DotNotFound, match="`dot` was not found"):
        render(source, tmp_path / "net.svg")


def test_unknown_suffix_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.pdf or \.dot"):
        render("digraph {}", tmp_path / "net.jpeg")


def _archc_without_dot(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the `archc` script with a PATH that has python's bin folder but no `dot`."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    return subprocess.run([str(Path(sys.executable).parent / "archc"), *args], cwd=tmp_path,
                          env=env, check=False, capture_output=True, text=True, timeout=60)


def test_cli_graph_without_dot_says_how_to_install_it(tmp_path):
    spec = str(SPECS / "resnet18.arch")
    failed = _archc_without_dot(tmp_path, "graph", spec, "-o", "net.svg")
    assert failed.returncode != 0
    assert "`dot` was not found" in failed.stderr
    assert "apt-get install graphviz" in failed.stderr
    assert not (tmp_path / "net.svg").exists()
    written = _archc_without_dot(tmp_path, "graph", spec, "-o", "net.dot")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "net.dot").read_text(encoding="utf-8") == to_dot(load("resnet18"))


def test_default_depth_keeps_resnet152_readable():
    """Without --depth, ResNet-152 falls back to stage boxes; ResNet-34 keeps its blocks."""
    from archc.backends.dot import READABLE_NODES, _node_count

    deep = archc.load(SPECS / "resnet152.arch")
    auto, two = to_dot(deep, depth=None), to_dot(deep, depth=2)
    assert _node_count(two) > READABLE_NODES >= _node_count(auto)
    assert "×35" in auto  # layer3: the first bottleneck, then [bottleneck] ×35
    shallow = archc.load(SPECS / "resnet34.arch")
    assert to_dot(shallow, depth=None) == to_dot(shallow, depth=2)


def test_a_split_by_sizes_is_labelled_with_its_sizes(tmp_path):
    spec = tmp_path / "parts.arch"
    spec.write_text("network parts:\n    input 8x4x4\n    split(sizes=(2, 6)):\n"
                    "        identity\n        relu\n", encoding="utf-8")
    dot = to_dot(archc.load(spec))
    assert 'label="split 2|6"' in dot
    assert '[label="2×4×4"]' in dot and '[label="6×4×4"]' in dot
