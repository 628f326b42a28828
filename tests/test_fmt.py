"""`archc fmt`: canonical, idempotent, comments kept, the network never changed.

Every spec shipped in the repository (specs/, examples/, the tests' fixtures, the
diagnostics fixtures that parse and the examples of docs/language.md) is formatted and
re-parsed; golden files pin the layout on deliberately messy inputs
(tests/golden/fmt/*.arch.in → *.arch, rewritten with ARCHC_REGEN=1); hypothesis formats
the fuzzers' mutated specs and re-laid-out copies of real ones.
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import parse_text
from archc.tools.fmt import FormatRefused, format_text
from tests.goldens import GOLDEN, assert_golden
from tests.test_docs import ARCH as DOC_BLOCKS
from tests.test_fuzz import ARCH as SPEC_TEXTS
from tests.test_fuzz import FUZZ, mutated

QUICK = settings(FUZZ, max_examples=60)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(
    p for folder in ("specs", "examples", "tests/fixtures", "tests/diagnostics")
    for p in (ROOT / folder).rglob("*.arch")
)
FMT_GOLDEN = GOLDEN / "fmt"
MESSY = sorted(FMT_GOLDEN.glob("*.arch.in"))
COMMENT = re.compile(r"#[^\n]*")


def _parses(text: str, path: str = "<spec>") -> ir.SpecFile | None:
    diags = Diagnostics()
    spec = parse_text(text, path, diags)
    return None if diags.has_errors else spec


def _comments(text: str) -> list[str]:
    return [c.rstrip() for c in COMMENT.findall(text)]


def assert_formats_faithfully(text: str, path: str = "<spec>") -> str:
    """Format `text` and check the promises: same IR, same comments, idempotent."""
    out = format_text(text, path)
    assert ir.structure(_parses(out, path)) == ir.structure(_parses(text, path))
    assert _comments(out) == _comments(text)
    assert format_text(out, path) == out
    assert out.endswith("\n") and not out.endswith("\n\n")
    assert all(line == line.rstrip() for line in out.splitlines())
    return out


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", SHIPPED, ids=_rel)
def test_every_shipped_spec_keeps_its_network_and_comments(path):
    text = path.read_text(encoding="utf-8")
    if _parses(text, str(path)) is None:
        with pytest.raises(FormatRefused) as refused:
            format_text(text, str(path))
        assert refused.value.diagnostics and all(d.is_error for d in refused.value.diagnostics)
        return
    assert_formats_faithfully(text, str(path))


@pytest.mark.parametrize("line, code, expect", DOC_BLOCKS,
                         ids=[f"language.md:{b[0]}" for b in DOC_BLOCKS])
def test_every_docs_example_keeps_its_network(line, code, expect):
    if _parses(code) is None:
        pytest.skip("the example is a deliberate syntax error")
    assert_formats_faithfully(code)


def test_the_reference_specs_are_already_formatted():
    """specs/ is the style the formatter writes: nothing there would change."""
    changed = [_rel(p) for p in SHIPPED if _rel(p).startswith("specs/")
               and format_text(p.read_text(encoding="utf-8"), str(p)) != p.read_text()]
    assert changed == []


@pytest.mark.parametrize("source", MESSY, ids=lambda p: p.name)
def test_golden_layout(source):
    out = assert_formats_faithfully(source.read_text(encoding="utf-8"), str(source))
    assert_golden(source.with_suffix(""), out)


def test_layout_rules():
    text = ("network n(a = 2):\n"
            "  input 3x8x8\n"
            "  conv( 8 ,kernel = 3)    bn  relu   # c\n"
            "  conv(a*4) relu  # longer comment\n"
            "\n\n\n"
            "  [conv3-8\n"
            "   relu] x2\n"  # lined up after its bracket: stays so
            "  conv(8,\n"
            "         stride=2)\n")  # not lined up: indented 4
    assert format_text(text) == (
        "network n(a=2):\n"
        "    input 3x8x8\n"
        "    conv(8, kernel=3)  bn  relu  # c\n"
        "    conv(a * 4) relu             # longer comment\n"
        "\n"
        "    [conv3-8\n"
        "     relu] x2\n"
        "    conv(8,\n"
        "        stride=2)\n")


def test_a_bracket_after_a_tensor_name_is_a_group_not_a_subscript():
    # `-> x` ends a line; the `[` below it opens a group whose `if` keeps its space (DLA's
    # spec lost it: `[if stride > 1:downsample: ...]`), while `t[0]` stays a subscript
    text = ("block tree(t, stride=1):\n"
            "    -> x\n"
            "    [if stride > 1: downsample: maxpool(stride)]  -> pooled\n"
            "    @x  conv3-{t[0]}\n"
            "\n"
            "network n:\n"
            "    input 3x8x8\n"
            "    tree((4, 2), 2)\n")
    assert format_text(text) == text


def test_a_spec_with_errors_is_refused_with_its_diagnostics():
    with pytest.raises(FormatRefused) as refused:
        format_text("network n(:\n    conv3-8\n")
    assert [d.code for d in refused.value.diagnostics] == ["E001"]


# --------------------------------------------------------------------------- the command


def _archc(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archc", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=60)


MESSY_SPEC = "network n:\n  input 3x8x8\n  conv( 8 )   relu\n"
TIDY_SPEC = "network n:\n    input 3x8x8\n    conv(8)  relu\n"


def test_cli_check_lists_files_and_changes_nothing(tmp_path):
    (tmp_path / "messy.arch").write_text(MESSY_SPEC)
    (tmp_path / "tidy.arch").write_text(TIDY_SPEC)
    proc = _archc("fmt", "--check", "messy.arch", "tidy.arch", cwd=tmp_path)
    assert proc.returncode == 1
    assert "would reformat messy.arch" in proc.stderr and "tidy.arch" not in proc.stderr
    assert (tmp_path / "messy.arch").read_text() == MESSY_SPEC
    assert _archc("fmt", "--check", "tidy.arch", cwd=tmp_path).returncode == 0


def test_cli_rewrites_in_place_and_diff_only_shows(tmp_path):
    spec = tmp_path / "messy.arch"
    spec.write_text(MESSY_SPEC)
    proc = _archc("fmt", "--diff", "messy.arch", cwd=tmp_path)
    assert proc.returncode == 0 and "-  conv( 8 )   relu" in proc.stdout
    assert "+    conv(8)  relu" in proc.stdout and spec.read_text() == MESSY_SPEC
    assert _archc("fmt", "messy.arch", cwd=tmp_path).returncode == 0
    assert spec.read_text() == TIDY_SPEC
    assert _archc("fmt", "-", cwd=tmp_path, stdin=MESSY_SPEC).stdout == TIDY_SPEC


def test_cli_refuses_a_spec_with_errors_and_leaves_it(tmp_path):
    bad = "network n(:\n  input 3x8x8\n"
    (tmp_path / "bad.arch").write_text(bad)
    proc = _archc("fmt", "bad.arch", cwd=tmp_path)
    assert proc.returncode == 1 and "error[E001]" in proc.stderr and "bad.arch:1:" in proc.stderr
    assert (tmp_path / "bad.arch").read_text() == bad


def test_cli_missing_file_is_one_line(tmp_path):
    proc = _archc("fmt", "nope.arch", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: spec file `nope.arch` not found")


def test_fmt_does_not_import_torch():
    code = ("import sys; from archc.tools.fmt import format_text; "
            "format_text(open('specs/googlenet.arch').read()); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


# --------------------------------------------------------------------------- properties


# Most mutants are YAML or no longer parse and are filtered out; that is the point of the
# mutation, so the filter health check would only make the test flaky.
@settings(QUICK, suppress_health_check=[HealthCheck.filter_too_much])
@given(mutated())
def test_mutated_specs_format_faithfully(case):
    """Whatever of the fuzzers' mutants still parses formats without changing its network."""
    name, text = case
    assume(name.endswith(".arch") and _parses(text) is not None)
    assert_formats_faithfully(text)


def _relaid(text: str, seed: int) -> str:
    """The same spec laid out differently: indentation unit, spaces where there were none,
    trailing spaces and doubled blank lines. Lines inside or opening a multi-line bracket
    keep their layout, since how their continuations line up is the author's choice that
    fmt keeps; so do the item gaps."""
    rng = random.Random(seed)
    unit = rng.choice([1, 2, 3, 8])
    lines, depth, shift = [], 0, 0
    for line in text.split("\n"):
        code = COMMENT.sub("", line)
        opened = depth + code.count("(") + code.count("[") - code.count(")") - code.count("]")
        body = line.lstrip(" ")
        if depth == 0 and opened == 0:
            width = len(line) - len(body)
            # spaces after `(` `,` `=` and before `)` `,`, outside the verbatim `{...}`
            parts = re.split(r"(\{[^{}\n]*\})", body) if not body.startswith("#") else [body]
            body = "".join(p if i % 2 or body.startswith("#") else re.sub(
                r"(?<=[(,=])(?=\S)|(?=[),])", lambda _: " " * rng.randint(0, 2), p)
                for i, p in enumerate(parts))
            line = " " * (width // 4 * unit + width % 4) + body
        elif depth == 0:  # opens a bracket continued below: re-indented with what follows
            width = len(line) - len(body)
            shift = width // 4 * unit + width % 4 - width
            line = " " * (width + shift) + body
        elif body:
            line = " " * max(len(line) - len(body) + shift, 0) + body
        lines.append(line + " " * rng.randint(0, 2))
        if not body and rng.random() < 0.5:
            lines.append("")
        depth = opened
    return "\n".join(lines)


@QUICK
@given(st.sampled_from(sorted(SPEC_TEXTS)), st.integers(0, 2**32))
def test_a_relaid_spec_formats_to_the_same_text(name, seed):
    """One canonical layout: the spec and a re-laid-out copy format alike."""
    text = SPEC_TEXTS[name]
    relaid = _relaid(text, seed)
    assume(_parses(relaid) is not None)
    assume(ir.structure(_parses(relaid)) == ir.structure(_parses(text)))
    assert format_text(relaid) == format_text(text)


def test_split_sizes_keep_their_arguments():
    text = ("network n:\n    input 8x4x4\n    conv1-8  mix: split(sizes=(2, 8 - 2)):\n"
            "        identity\n        conv1-6\n    split([identity], [relu], sizes=(4, 4))\n")
    out = assert_formats_faithfully(text)
    assert "mix: split(sizes=(2, 8 - 2)):" in out and "sizes=(4, 4))" in out
