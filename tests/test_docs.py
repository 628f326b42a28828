"""docs/language.md is tested: its examples parse and check, and it covers the registry.

- every ```arch block parses without a diagnostic; every one that defines a `network`
  also passes `archc.check` without one;
- a block marked ```arch expect=CODE (or ```yaml expect=CODE) must report CODE instead;
- every ```yaml block loads, and checks when it defines a network;
- examples are checked as if they sat in specs/, so `import "lib/resnet.arch"` resolves;
- every layer kind, alias, parameter and parameter alias of the registry, and every
  diagnostic code, appears in the page;
- the `$ archc check ...` transcripts match what archc prints (`...` skips lines); a spec
  outside specs/, such as `tiny.arch`, is the page's example that defines `network tiny`.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.compiler.diagnostics import CODES, Diagnostics
from archc.compiler.parse import parse_text
from archc.compiler.yamlspec import load_yaml
from archc.layers import KINDS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "language.md"
SPECS = ROOT / "specs"
TEXT = DOC.read_text(encoding="utf-8")

FENCE = re.compile(r"^```([\w-]+)([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


def _blocks(language: str) -> list[tuple[int, str, str | None]]:
    """(line number, code, expected diagnostic code) of each fenced block in `language`."""
    out = []
    for m in FENCE.finditer(TEXT):
        if m.group(1) != language:
            continue
        expect = re.search(r"expect=(\w+)", m.group(2))
        line = TEXT.count("\n", 0, m.start()) + 1
        out.append((line, m.group(3), expect.group(1) if expect else None))
    return out


ARCH = _blocks("arch")
YAML = _blocks("yaml")
HAS_NETWORK = re.compile(r"^(network\s|- network:)", re.M)


def _ids(blocks):
    return [f"line{line}" + (f"-{code}" if code else "") for line, _, code in blocks]


def _codes(diags) -> list[str]:
    return [d.code for d in diags]


def test_the_doc_has_examples():
    assert len(ARCH) >= 40 and len(YAML) >= 4


@pytest.mark.parametrize("line, code, expect", ARCH, ids=_ids(ARCH))
def test_arch_example(line, code, expect):
    diags = Diagnostics()
    spec = parse_text(code, f"docs/language.md:{line}", diags)
    if expect == "E001":
        assert "E001" in _codes(diags.items)
        return
    assert spec is not None and diags.items == [], [d.message for d in diags.items]
    if HAS_NETWORK.search(code) or expect:
        result = archc.check(SPECS / f"docs_example_{line}.arch", text=code)
        if expect:
            assert expect in _codes(result.diagnostics), [
                (d.code, d.message) for d in result.diagnostics]
            if expect.startswith("W"):
                assert result.ok
        else:
            assert result.ok and result.diagnostics == [], [
                (d.code, d.message) for d in result.diagnostics]


@pytest.mark.parametrize("line, code, expect", YAML, ids=_ids(YAML))
def test_yaml_example(line, code, expect):
    diags = Diagnostics()
    spec = load_yaml(code, f"docs/language.md:{line}.yaml", diags)
    if expect == "E004":
        assert "E004" in _codes(diags.items)
        return
    assert spec is not None and diags.items == [], [d.message for d in diags.items]
    if HAS_NETWORK.search(code) or expect:
        result = archc.check(SPECS / f"docs_example_{line}.yaml", text=code)
        if expect:
            assert expect in _codes(result.diagnostics)
        else:
            assert result.ok and result.diagnostics == [], [
                (d.code, d.message) for d in result.diagnostics]


def test_yaml_twin_of_the_first_example_is_the_same_network():
    first_arch = ARCH[0][1]
    first_yaml = next(code for _, code, expect in YAML if expect is None)
    a = archc.check(SPECS / "docs_a.arch", text=first_arch).network
    b = archc.check(SPECS / "docs_b.yaml", text=first_yaml).network
    assert a is not None and b is not None
    assert (a.n_params, a.output_shape) == (b.n_params, b.output_shape)


# ----------------------------------------------------------------------------- coverage


def _mentioned(word: str) -> bool:
    return f"`{word}`" in TEXT


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_every_kind_and_parameter_is_documented(kind):
    missing = [w for w in (kind.name, *kind.aliases) if not _mentioned(w)]
    for p in kind.params:
        missing += [w for w in (p.name, *p.aliases) if not _mentioned(w)]
    assert not missing, f"docs/language.md does not mention {missing}"
    assert re.search(rf"^\| `{re.escape(kind.name)}` \|", TEXT, re.M), \
        f"no row for `{kind.name}` in the layer reference"


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_diagnostic_code_is_documented(code):
    assert re.search(rf"^\| {code} \| {re.escape(CODES[code])} \|", TEXT, re.M), \
        f"no row for {code} in the codes table"
    examples = {expect for _, _, expect in ARCH + YAML if expect}
    if code != "E003":  # a cycle needs two files; the page shows them and the output
        assert code in examples, f"no example block marked expect={code}"


def test_cli_options_are_documented():
    for option in ("--network", "--variant", "--set", "--input", "--explain", "--json",
                   "--to"):
        assert f"`{option}" in TEXT or f"{option} " in TEXT, option


# ----------------------------------------------------------------------------- transcripts


def _transcripts() -> list[tuple[str, list[str]]]:
    """(`archc check ...` arguments, expected output lines) from ```text blocks."""
    out = []
    for m in FENCE.finditer(TEXT):
        if m.group(1) != "text":
            continue
        lines = m.group(3).splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ archc check "):
                continue
            body = []
            for following in lines[i + 1:]:
                if following.startswith("$ "):
                    break
                body.append(following)
            if body:
                out.append((line[2:], body))
    return out


TRANSCRIPTS = _transcripts()


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line equality, where an expected line `...` (any indent) skips lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(_matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and actual[0] == expected[0] and _matches(expected[1:], actual[1:])


def test_there_are_transcripts():
    assert len(TRANSCRIPTS) >= 2


@pytest.mark.parametrize("command, expected", TRANSCRIPTS, ids=[c for c, _ in TRANSCRIPTS])
def test_transcript(command, expected, tmp_path):
    args = command.split()[1:]
    cwd = ROOT
    spec = args[1]
    if not spec.startswith("specs/"):  # an example of the page, written out under its name
        name = Path(spec).stem
        code = next(code for _, code, _ in ARCH
                    if re.search(rf"^network {re.escape(name)}\b", code, re.M))
        (tmp_path / spec).write_text(code, encoding="utf-8")
        cwd = tmp_path
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "archc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, encoding="utf-8", timeout=120)
    actual = (proc.stdout + proc.stderr).splitlines()
    assert _matches(expected, actual), "\n".join(actual)


# ----------------------------------------------------------------------------- naming claims


def _example_network(name: str):
    code = next(code for _, code, _ in ARCH if re.search(rf"^network {name}\b", code, re.M))
    result = archc.check(SPECS / f"docs_{name}.arch", text=code)
    assert result.ok
    return result.network


@pytest.mark.parametrize("name, prose", [
    ("names", "Submodules: `conv1`, `bn1`, `2` (relu), `3` (maxpool), `4` (conv), `fc_in`, `6`\n"
              "(flatten), `fc`."),
    ("groups", "Submodules: `features` (with `features.0` to `features.5`), then `1`, `2`, "
               "`3` and `4`\n(the spliced repeat: conv, relu, conv, relu), then `classifier` "
               "(with `classifier.0`,\n`classifier.1` and `classifier.2`)."),
])
def test_naming_examples_say_what_archc_does(name, prose):
    """The page lists the submodule names of two examples; they must be the real ones."""
    from archc.compiler.graph import walk

    assert prose in TEXT
    top = [m.name for m in _example_network(name).root.children]
    listed = re.findall(r"`([\w.]+)`", prose.split(" (with")[0] if name == "names" else prose)
    if name == "names":
        assert top == listed
    else:
        assert top == ["features", "1", "2", "3", "4", "classifier"]
        paths = [m.path for m in walk(_example_network(name).root)]
        assert [p for p in paths if p.startswith("features.")] == [
            f"features.{i}" for i in range(6)]
        assert [p for p in paths if p.startswith("classifier.")] == [
            f"classifier.{i}" for i in range(3)]
