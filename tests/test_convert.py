"""The two front ends describe one IR: .arch ↔ YAML conversion, in the API and the CLI."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.graph import walk
from archc.compiler.ir import structure
from archc.compiler.parse import parse_text
from archc.compiler.unparse import unparse
from archc.compiler.yamlspec import dump_yaml, load_yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ARCH_SPECS = sorted(SPECS.rglob("*.arch"))
IDS = [p.relative_to(SPECS).as_posix() for p in ARCH_SPECS]


def _parse_arch(text: str, name: str):
    diags = Diagnostics()
    spec = parse_text(text, name, diags)
    assert spec is not None and not diags.items, diags.items
    return spec


def _parse_yaml(text: str, name: str):
    diags = Diagnostics()
    spec = load_yaml(text, name, diags)
    assert spec is not None and not diags.items, diags.items
    return spec


@pytest.mark.parametrize("path", ARCH_SPECS, ids=IDS)
def test_arch_yaml_arch_round_trip(path):
    original = _parse_arch(path.read_text(encoding="utf-8"), str(path))
    yaml_text = dump_yaml(original)
    from_yaml = _parse_yaml(yaml_text, str(path.with_suffix(".yaml")))
    assert structure(from_yaml) == structure(original)
    arch_text = unparse(from_yaml)
    again = _parse_arch(arch_text, str(path))
    assert structure(again) == structure(original)
    # and the conversions are stable: a second trip gives the same text
    assert dump_yaml(again) == yaml_text
    assert unparse(again) == arch_text


@pytest.mark.parametrize("path", ARCH_SPECS, ids=IDS)
def test_unparse_is_a_fixed_point(path):
    original = _parse_arch(path.read_text(encoding="utf-8"), str(path))
    text = unparse(original)
    assert structure(_parse_arch(text, str(path))) == structure(original)


LONG = " ".join(["conv3-64(stride=1, dilation=1) relu"] * 4)  # one line: over 100 columns


def test_unparse_gives_a_long_group_lines_of_its_own():
    """A labelled group, a repeated one and an unlabelled one, each too long for one line,
    are written over lines (`label:` and a body, or `[` ... `] x2`) within 100 columns, and
    read back as the same IR: same groups, same numbering of their children."""
    source = (f"network n:\n    input 3x8x8\n    features: [{LONG}]\n"
              f"    stage: [{LONG}] x2\n    [{LONG}] x2\n    head: [conv1-8 relu]\n")
    original = _parse_arch(source, "long.arch")
    text = unparse(original)
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert "    features:\n        conv3-64" in text
    assert "    stage: [\n" in text and "\n    ] x2\n    [\n" in text
    assert "    head: [conv1-8 relu]\n" in text  # a short group stays on its line
    assert structure(_parse_arch(text, "again.arch")) == structure(original)


def test_structure_ignores_layout_and_comments():
    a = _parse_arch("network n:\n    input 3x8x8\n    conv3-8 relu\n", "a.arch")
    b = _parse_arch("# a comment\n\nnetwork n:\n  input 3x8x8\n  conv3-8\n  relu  # same\n",
                    "b.arch")
    assert structure(a) == structure(b)
    c = _parse_arch("network n:\n    input 3x8x8\n    conv(64, kernel=3) relu\n", "c.arch")
    assert structure(c) != structure(a)


def test_paper_notation_and_full_form_differ_only_in_spelling():
    """`conv3-64` is `conv(kernel=3, out=64)`: the same IR, argument for argument."""
    a = _parse_arch("network n:\n    input 3x8x8\n    conv3-64(stride=2)\n", "a.arch")
    b = _parse_arch("network n:\n    input 3x8x8\n    conv(kernel=3, out=64, stride=2)\n",
                    "b.arch")
    assert structure(a) == structure(b)


# ----------------------------------------------------------------------------- the CLI


def archc_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "archc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)


@pytest.fixture()
def spec_copy(tmp_path) -> Path:
    """A copy of specs/ (imports are relative, so the tree is copied whole)."""
    target = tmp_path / "specs"
    shutil.copytree(SPECS, target)
    return target


@pytest.mark.parametrize("name", ["vgg_d.arch", "resnet50.arch", "googlenet.arch",
                                  "alexnet2012.arch"])
def test_cli_convert_to_yaml_checks_to_the_same_network(spec_copy, name):
    arch = spec_copy / name
    yaml_path = arch.with_suffix(".yaml")
    proc = archc_cli("convert", str(arch), "--to", "yaml", "-o", str(yaml_path))
    assert proc.returncode == 0, proc.stderr
    code = [ln for ln in yaml_path.read_text(encoding="utf-8").splitlines()
            if not ln.lstrip().startswith("#")]  # the spec's comments come along
    assert code[0].startswith("- ")
    a, b = archc.load(arch), archc.load(yaml_path)
    assert (a.n_params, a.macs, a.output_shape) == (b.n_params, b.macs, b.output_shape)
    assert [m.path for m in walk(a.root)] == [m.path for m in walk(b.root)]
    assert a.aux_outputs == b.aux_outputs


def test_cli_convert_stdout_and_back(spec_copy):
    proc = archc_cli("convert", str(spec_copy / "resnet18.arch"), "--to", "yaml")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    yaml_path = spec_copy / "resnet18_copy.yaml"
    yaml_path.write_text(proc.stdout, encoding="utf-8")
    back = archc_cli("convert", str(yaml_path), "--to", "arch")
    assert back.returncode == 0, back.stderr
    original = _parse_arch((spec_copy / "resnet18.arch").read_text(encoding="utf-8"), "a.arch")
    assert structure(_parse_arch(back.stdout, "b.arch")) == structure(original)
    assert "conv7-64(stride=2, bias=false)" in back.stdout  # paper notation is kept


def test_cli_convert_reports_syntax_errors(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network n\n    input 3x8x8\n", encoding="utf-8")
    proc = archc_cli("convert", str(bad), "--to", "yaml")
    assert proc.returncode == 1
    assert "error[E001]" in proc.stderr and "bad.arch:1:" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_convert_bad_target_and_missing_file(tmp_path):
    proc = archc_cli("convert", str(SPECS / "vgg.arch"), "--to", "json")
    assert proc.returncode == 2 and "--to must be yaml or arch" in proc.stderr
    missing = archc_cli("convert", str(tmp_path / "nothing.arch"), "--to", "yaml")
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert "Traceback" not in proc.stderr + missing.stderr


def test_yaml_form_of_the_main_constructs(tmp_path):
    """A hand-written YAML spec and its .arch twin give the same IR."""
    arch = """
block unit(c, stride=1):
    add:
        conv1: conv3-{c}(stride=stride, bias=false)  bn1: bn  relu
        down: shortcut
    relu

table t:
    A: conv3-8 maxpool
    B: conv3-8 x2 maxpool

network n(variant="A", num_classes=10):
    input 3x32x32
    after conv: relu
    features: t[variant]
    stage: unit(16, stride=2) x2
    aux: tap [global-avgpool flatten FC-{num_classes}]
    concat:
        conv1-8
        [conv1-4 conv3-8]
    global-avgpool
    flatten
    FC-{num_classes}

train:
    epochs = 30
"""
    yaml_text = """
- block: unit
  params: [c, {stride: 1}]
  body:
    - add:
        - - {"conv3-{c}": {stride: "{stride}", bias: false}, name: conv1}
          - {bn: null, name: bn1}
          - relu
        - {shortcut: null, name: down}
    - relu
- table: t
  rows:
    A: [conv3-8, maxpool]
    B: [{conv3-8: null, repeat: 2}, maxpool]
- network: n
  params: [{variant: A}, {num_classes: 10}]
  input: [3, 32, 32]
  after: {conv: [relu]}
  body:
    - {table: t, variant: variant, name: features}
    - {unit: [16, {stride: 2}], name: stage, repeat: 2}
    - {tap: {group: [global-avgpool, flatten, "FC-{num_classes}"]}, name: aux}
    - concat:
        - conv1-8
        - [conv1-4, conv3-8]
    - global-avgpool
    - flatten
    - FC-{num_classes}
- train: {epochs: 30}
"""
    a = _parse_arch(arch, "a.arch")
    b = _parse_yaml(yaml_text, "b.yaml")
    assert structure(b) == structure(a)
    (tmp_path / "n.arch").write_text(arch, encoding="utf-8")
    (tmp_path / "n.yaml").write_text(yaml_text, encoding="utf-8")
    net_a, net_b = archc.load(tmp_path / "n.arch"), archc.load(tmp_path / "n.yaml")
    assert net_a.n_params == net_b.n_params and net_a.output_shape == net_b.output_shape == (10,)


def test_cli_convert_yaml_only_structure_gives_a_diagnostic(tmp_path):
    spec = tmp_path / "nested.yaml"
    spec.write_text("- network: n\n  input: [3, 8, 8]\n  body:\n"
                    "    - [relu, {add: [relu, identity]}]\n", encoding="utf-8")
    assert archc.check(spec).ok  # a valid spec
    proc = archc_cli("convert", str(spec), "--to", "arch")
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 1)


def test_yamlspec_docstring_example_loads():
    import textwrap

    import archc.compiler.yamlspec as yamlspec

    doc = yamlspec.__doc__
    start, end = doc.index("    - import:"), doc.index("    - network:")
    example = textwrap.dedent(doc[start:end]).replace("lib/resnet.arch", "x.arch")
    spec = _parse_yaml(example, "doc.yaml")
    assert [type(s).__name__ for s in spec.statements] == ["Import", "BlockDef"]


# --------------------------------------------------------------------------- what a person wrote


def _words_and_comments(text: str) -> tuple[list[str], list[str]]:
    """The layer names as written at the head of each word (`FC` of `FC-4096`, `LRN`,
    `adaptive-avgpool`) and the comments of .arch text, in order."""
    from archc.compiler.tokens import read_tokens
    from archc.compiler.unparse import comments_between

    stream = read_tokens(text)
    code = stream.code()
    comments = comments_between(stream.text, [(t.start_pos, t.end_pos) for t in code])
    heads = [_merge_word(t) or re.match(r"[A-Za-z_]+(?:-[A-Za-z_]+)*", str(t)).group(0)
             for t in code if t.type == "WORD" or _merge_word(t)]
    return heads, [c.text for c in comments]


def _merge_word(token) -> str | None:
    """The merge a token names, in either of its forms: `add(@sc, [identity])` on one line,
    or the `add:` head of a block (what the unparser writes when a branch is bracketed)."""
    from archc.layers import MERGES

    name = str(token).removesuffix(":") if token.type == "LABEL_END" else str(token)
    return name if token.type in ("WORD", "LABEL_END") and name in MERGES else None


@pytest.mark.parametrize("path", ARCH_SPECS, ids=IDS)
def test_convert_keeps_comments_and_paper_spellings(path):
    """arch → arch and arch → YAML → arch keep every comment, in order, and every layer
    word as written (`FC-4096`, `LRN`, `adaptive-avgpool`, not `fc-4096`, `lrn`,
    `adaptiveavgpool`); both give the same text, and converting that again changes nothing."""
    from archc.compiler.yamlspec import yaml_notes
    from archc.tools.convert import arch_notes

    text = path.read_text(encoding="utf-8")
    spec, notes = arch_notes(text, str(path))
    direct = unparse(spec, notes)
    yaml_text = dump_yaml(spec, notes)
    from_yaml, yaml_side = yaml_notes(yaml_text, "spec.yaml", Diagnostics())
    assert structure(from_yaml) == structure(spec)
    assert unparse(from_yaml, yaml_side) == direct
    words, comments = _words_and_comments(text)
    assert _words_and_comments(direct) == (words, comments)
    again, again_notes = arch_notes(direct, str(path))
    assert unparse(again, again_notes) == direct
    assert dump_yaml(again, again_notes) == yaml_text


COMMENTED = """\
# a header, above everything
network tiny(num_classes=10):  # the network
    input 3x32x32
    # the stem
    conv3-16  LRN  relu  # three on a line
    features: [
        # inside brackets
        conv3-32 maxpool
    ]
    avgpool: adaptive-avgpool(1)
    flatten
    Soft-Max
    FC-{num_classes}  # the classifier
# the end
"""


def test_comments_and_spellings_of_a_small_spec(tmp_path):
    spec = tmp_path / "tiny.arch"
    spec.write_text(COMMENTED, encoding="utf-8")
    yaml_file = tmp_path / "tiny.yaml"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run([sys.executable, "-m", "archc", "convert", str(spec), "--to", "yaml",
                          "-o", str(yaml_file)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    yaml_text = yaml_file.read_text(encoding="utf-8")
    for kept in ("# a header, above everything", "# the stem", "  # three on a line",
                 "- LRN", "- adaptive-avgpool:", "- Soft-Max", "- FC-{num_classes}  # the "
                 "classifier", "# inside brackets", "# the end"):
        assert kept in yaml_text, kept
    back = subprocess.run([sys.executable, "-m", "archc", "convert", str(yaml_file), "--to",
                           "arch"], capture_output=True, text=True, env=env)
    assert back.returncode == 0, back.stderr
    assert back.stdout == (
        "# a header, above everything\n"
        "network tiny(num_classes=10):  # the network\n"
        "    input 3x32x32\n"
        "    # the stem\n"
        "    conv3-16\n"
        "    LRN\n"
        "    relu  # three on a line\n"
        "    # inside brackets\n"
        "    features: [conv3-32 maxpool]\n"
        "    avgpool: adaptive-avgpool(1)\n"
        "    flatten\n"
        "    Soft-Max\n"
        "    FC-{num_classes}  # the classifier\n"
        "# the end\n")


SPLIT_SIZES = """\
block parts(c):
    conv1-{c}  split(sizes=(c // 4, c - c // 4)):
        identity
        conv1-{c - c // 4}

network n:
    input 8x4x4
    mix: split(sizes=(2, 6)):
        identity
        relu
    split([identity], [relu], sizes=(4, 4))
    parts(8)
"""


def test_split_sizes_round_trip_through_yaml_and_arch():
    original = _parse_arch(SPLIT_SIZES, "split.arch")
    yaml_text = dump_yaml(original)
    assert "sizes:" in yaml_text and "'{c // 4}'" in yaml_text
    from_yaml = _parse_yaml(yaml_text, "split.yaml")
    assert structure(from_yaml) == structure(original)
    arch_text = unparse(from_yaml)
    assert "mix: split(sizes=(2, 6)):" in arch_text
    assert structure(_parse_arch(arch_text, "again.arch")) == structure(original)
