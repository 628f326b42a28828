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


def _matches(expected: list[str], actual: list[str], same=str.__eq__) -> bool:
    """Line-by-line equality (`same`), where an expected line `...` (any indent) skips
    lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(_matches(expected[1:], actual[i:], same) for i in range(len(actual) + 1))
    return (bool(actual) and same(expected[0], actual[0])
            and _matches(expected[1:], actual[1:], same))


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


# ----------------------------------------------------------------------------- the README

README = (ROOT / "README.md").read_text(encoding="utf-8")
PROSE = " ".join(README.split())  # the README with every line break and indent one space


def test_readme_says_how_to_run_archc_after_make():
    """`make` installs archc into .venv, not onto PATH: the setup section, before anything
    else, says to activate the venv or call .venv/bin/archc, and that pygmentize needs it."""
    setup = README[:README.index("**archc** is a compiler")]
    assert "make test" in setup and "make demo" in setup
    assert "\n    source .venv/bin/activate\n" in setup
    assert "`.venv/bin/archc check specs/resnet34.arch`" in setup
    assert "`.venv/bin/pygmentize -l arch" in setup
    assert "docs/tutorial.md" in setup


def _named_blocks() -> list[tuple[str, str, bool]]:
    """(path, code, excerpt) of each README code block whose caption, the line before it,
    names a spec file and ends in `:` (`(excerpt)` when the block is part of the file)."""
    out = []
    for m in FENCE.finditer(README):
        before = README[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        named = re.findall(r"`([\w./-]+\.(?:arch|yaml))`", before)
        if before.endswith(":") and named:
            out.append((named[-1], m.group(3), "(excerpt)" in before))
    return out


def test_readme_blocks_are_the_files_they_name():
    blocks = _named_blocks()
    assert {path for path, _, _ in blocks} >= {"specs/resnet34.arch", "specs/lib/resnet.arch",
                                               "tests/diagnostics/several_errors.arch"}
    for path, code, excerpt in blocks:
        text = (ROOT / path).read_text(encoding="utf-8")
        if excerpt:
            assert code in text, f"the README's excerpt of {path} is not in the file"
        else:
            assert code == text, f"the README's {path} is not the file"


def _readme_commands() -> list[str]:
    """The compiler commands of the README's command table, without their optional
    `[...]` parts, that run as written (no placeholder such as `|`, `...` or `NAME`; no data,
    training or download; not `fmt`, which rewrites files)."""
    quick = {"check", "compile", "summary", "graph", "convert", "diff", "schema"}
    out = []
    for cell in re.findall(r"^\| `(archc [^`]+)` \|", README, re.M):
        cell = re.sub(r" \[[^\]]*\]", "", cell)
        words = cell.split()
        if words[1] in quick and not re.search(r"[\[\]|.]{3}|\[|\||\bNAME\b|\bX\b", cell):
            out.append(cell)
    return out


@pytest.mark.slow
def test_readme_commands_work_as_written(tmp_path):
    """Each runs in a folder of its own beside specs/, as a newcomer's clone would."""
    commands = _readme_commands()
    assert len(commands) >= 6, commands
    (tmp_path / "specs").symlink_to(SPECS)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1"}
    for command in commands:
        proc = subprocess.run([sys.executable, "-m", "archc", *command.split()[1:]],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              encoding="utf-8", timeout=300)
        expected = 1 if command.startswith("archc diff") else 0  # the two networks differ
        assert proc.returncode == expected, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, command


def _number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.mark.slow
def test_readme_import_line_counts_are_what_archc_import_writes(tmp_path):
    """Every line count the PROSE gives for an import is recounted from the importer's
    output (every line of the file, as `archc import` reports it)."""
    from archc.importers.layout import spec_text
    from tests.importers import caffe_zoo
    from tests.importers.test_caffe import FIXTURES
    from tests.importers.test_caffe import imported as caffe_imported
    from tests.importers.test_torch_import import SPECS as HAND
    from tests.importers.test_torch_import import TORCHVISION, hand_lines
    from tests.importers.test_torch_import import imported as torch_imported

    def lines(spec) -> int:
        return len(spec_text(spec).splitlines())

    excerpt = FIXTURES / "googlenet_excerpt.prototxt"
    m = re.search(r"deploy\.prototxt` \((\d+) lines for the stem", PROSE)
    assert _number(m.group(1)) == len(excerpt.read_text(encoding="utf-8").splitlines())
    m = re.search(r"After \(`archc import deploy\.prototxt -o googlenet\.arch`, (\d+) lines\)",
                  PROSE)
    assert _number(m.group(1)) == lines(caffe_imported(excerpt)[0])
    for name, label in (("googlenet", "GoogLeNet"), ("vgg16", "VGG-16"),
                        ("resnet50", "ResNet-50")):
        m = re.search(rf"{label}'s ([\d,]+)(?: lines)? become (\d+)", PROSE)
        proto = tmp_path / f"{name}.prototxt"
        proto.write_text(getattr(caffe_zoo, name)(), encoding="utf-8")
        assert _number(m.group(1)) == len(proto.read_text(encoding="utf-8").splitlines()), name
        assert _number(m.group(2)) == lines(caffe_imported(proto)[0]), name
    claims = dict(re.findall(r"\b(alexnet|vgg16|googlenet|resnet50|densenet121|mobilenet_v2) "
                             r"(\d+)", PROSE.split("From PyTorch")[1][:400]))
    assert len(claims) == 6, claims
    low, high = (float(x) for x in re.search(r"that is ([\d.]+)–([\d.]+)× the\s+code lines",
                                             PROSE).groups())
    for name, claimed in claims.items():
        spec, diags = torch_imported(f"torchvision:{name}")
        assert int(claimed) == lines(spec), name
        code = sum(1 for line in spec_text(spec).splitlines() if line.strip())
        hand = hand_lines(HAND / TORCHVISION[name][0], TORCHVISION[name][1])
        assert low <= code / hand <= high, (name, code, hand)


def test_readme_zoo_table_is_recounted():
    """The family table: builders from specs/zoo.yaml, torchvision's code lines and the
    spec's code lines (not blank, not comment), and the totals."""
    pytest.importorskip("torchvision")
    import torchvision.models

    from tests.test_zoo import FAMILY_SOURCES, ZOO, python_code_lines

    models = Path(torchvision.models.__file__).parent
    rows = re.findall(r"^\| ([^|*]+?) \| (\d+) \| (\d+) \| (\d+) \|$", README, re.M)
    assert len(rows) == len(FAMILY_SOURCES)
    totals = [0, 0, 0]
    for (family, builders, python, arch), (spec, sources) in zip(rows, FAMILY_SOURCES.items()):
        text = (SPECS / spec).read_text(encoding="utf-8").splitlines()
        counted = (sum(e.spec.name == spec for e in ZOO.values()),
                   sum(python_code_lines(models / s) for s in sources),
                   sum(1 for ln in text if ln.strip() and not ln.strip().startswith("#")))
        assert (int(builders), int(python), int(arch)) == counted, (family, spec, counted)
        totals = [t + c for t, c in zip(totals, counted)]
    assert f"| **all** | **{totals[0]}** | **{totals[1]}** | **{totals[2]}** |" in README


# ----------------------------------------------------------------------------- the tutorial

TUTORIAL = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
# their numbers are times, accuracies and probabilities: compared with every number masked
VOLATILE = ("archc train", "archc eval", "archc predict", "archc submit", "head ")


def _tutorial_steps() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of each `$ ` line of the ```console blocks."""
    steps: list[tuple[str, list[str]]] = []
    for m in FENCE.finditer(TUTORIAL):
        if m.group(1) != "console":
            continue
        for line in m.group(3).splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
    return steps


def _masked(line: str) -> str:
    """A line with what training decides masked: numbers, and a predicted class (`│ cat  │`,
    a table cell holding only a class name), which a short run may get either way."""
    line = re.sub(r"\d+(?:\.\d+)?", "#", line)
    return re.sub(r"│ (cat|dog) +│", "│ CLASS │", line)


def test_the_tutorial_walks_every_step():
    verbs = [c.split()[1] for c, _ in _tutorial_steps() if c.startswith("archc ")]
    assert verbs == ["data", "data", "check", "graph", "train", "eval", "predict", "submit"]
    assert "source .venv/bin/activate" in TUTORIAL and "make setup" in TUTORIAL


@pytest.mark.slow
def test_tutorial_commands_give_the_output_shown(tmp_path):
    """Each command of docs/tutorial.md, run in order in a folder beside specs/ and
    examples/ as the repository root would be, exits 0 and prints what the page shows."""
    for name in ("specs", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    bin_dir = tmp_path / "bin"  # `archc` on PATH, as `source .venv/bin/activate` puts it
    bin_dir.mkdir()
    (bin_dir / "archc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m archc "$@"\n')
    (bin_dir / "archc").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "NO_COLOR": "1", "COLUMNS": "100", "PYTHONIOENCODING": "utf-8"}
    for command, expected in _tutorial_steps():
        proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              encoding="utf-8", timeout=900)
        actual = proc.stdout.splitlines()
        assert proc.returncode == 0, (command, proc.stdout)
        if command.startswith(VOLATILE):
            assert _matches(expected, actual, lambda e, a: _masked(e) == _masked(a)), (
                command, proc.stdout)
        else:
            assert _matches(expected, actual), (command, proc.stdout)
