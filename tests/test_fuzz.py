"""Property tests: no input makes archc raise instead of reporting a diagnostic.

Every test feeds text to `archc.check(name, text=...)` (the name's suffix picks the .arch
or YAML front end; imports resolve relative to it, so mutated real specs still find
specs/lib/) and requires a `CheckResult` back. A Python exception anywhere in parsing,
resolving, shape checking, the input-size scan that `archc check` prints, or converting
the parsed file back to YAML or .arch (`archc convert`) is a bug.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, reject, settings
from hypothesis import strategies as st

import archc
from archc.api import CheckResult
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import parse_text
from archc.compiler.shapes import input_sizes
from archc.compiler.unparse import unparse
from archc.compiler.yamlspec import dump_yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
ARCH = {p.relative_to(SPECS).as_posix(): p.read_text() for p in sorted(SPECS.rglob("*.arch"))}


def _yaml_of(name: str, text: str) -> str:
    diags = Diagnostics()
    spec = parse_text(text, name, diags)
    assert spec is not None and not diags.has_errors, name
    return dump_yaml(spec)


# The YAML conversions live beside the .arch files (same directory), so imports resolve.
YAML = {name[:-len(".arch")] + ".yaml": _yaml_of(name, text) for name, text in ARCH.items()}
ALL = {**ARCH, **YAML}
NAMES = sorted(ALL)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Crashes already reported, each pinned by a strict xfail below; the property tests skip
# inputs that hit them so that they keep looking for new ones. Empty it once fixed.
KNOWN_CRASHES: tuple[type[BaseException], ...] = ()


def check_text(name: str, text: str, *, allow_known: bool = True) -> CheckResult:
    """What `archc check` does with `text`; any exception fails the calling test."""
    try:
        result = archc.check(SPECS / name, text=text)
    except KNOWN_CRASHES:
        if not allow_known:
            raise
        reject()
    assert isinstance(result, CheckResult)
    assert all(d.code and d.message for d in result.diagnostics)
    if result.ok:  # `archc check` also prints the valid input sizes
        input_sizes(result.network)
    parsed = result.program.root_file
    if parsed is not None:  # and whatever parses can be converted (`archc convert`)
        dump_yaml(parsed)
        if name.endswith(".arch"):  # YAML-only shapes have no .arch form (test_convert)
            unparse(parsed)
    return result


# ----------------------------------------------------------------------------- (a) random text


ARCH_ALPHABET = st.sampled_from(list("abcxyz_019 -:.,()[]{}=+*/%\"'#\n\t") +
                                ["    ", "\n    ", "network n:\n    input 3x8x8\n", "conv3-",
                                 "block b(c):\n", "add:\n", "concat:\n", "shortcut", "tap ",
                                 "x{", "import \"", "table t:\n", "after conv: ", "train:\n",
                                 "(1, 2)", "= (0.5, 1.0)\n"])


@FUZZ
@given(st.text(max_size=200))
def test_random_text_arch(text):
    check_text("fuzz.arch", text)


@FUZZ
@given(st.lists(ARCH_ALPHABET, max_size=60).map("".join))
def test_random_arch_tokens(text):
    check_text("fuzz.arch", text)


@FUZZ
@given(st.text(max_size=200))
def test_random_text_yaml(text):
    check_text("fuzz.yaml", text)


YAML_ALPHABET = st.sampled_from(list("abcxyz_019 -:.,[]{}\"'#\n&*!|>?") +
                                ["  ", "\n  ", "- network: n\n", "  input: [3, 8, 8]\n",
                                 "  body:\n", "    - ", "conv3-16", "{c*2}", "add:", "name: ",
                                 "repeat: ", "null", "true", "- block: b\n", "params: [c]"])


@FUZZ
@given(st.lists(YAML_ALPHABET, max_size=60).map("".join))
def test_random_yaml_tokens(text):
    check_text("fuzz.yaml", text)


# ----------------------------------------------------------------------------- (b) truncations


@FUZZ
@given(st.sampled_from(NAMES), st.data())
def test_truncated_specs(name, data):
    text = ALL[name]
    cut = data.draw(st.integers(0, len(text)), label="cut")
    check_text(name, text[:cut])


@pytest.mark.parametrize("name", NAMES)
def test_line_prefixes(name):
    """Deterministic companion: each spec cut after its lines (at most 25 cuts per file)."""
    lines = ALL[name].splitlines(keepends=True)
    step = max(1, len(lines) // 25)
    for i in range(0, len(lines) + 1, step):
        check_text(name, "".join(lines[:i]))


# ----------------------------------------------------------------------------- (c) mutations

TOKEN = re.compile(r"\{[^{}\n]*\}|[A-Za-z_][\w-]*|\d+(\.\d+)?|\s+|.", re.S)
NUMBER = re.compile(r"\d+")


def _tokens(text: str) -> list[str]:
    return [m.group() for m in TOKEN.finditer(text)]


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(NAMES), label="spec")
    text = ALL[name]
    for _ in range(draw(st.integers(1, 4), label="mutations")):
        text = draw(_mutation(text), label="mutated")
    return name, text


# Each edit is a function (text, argument) -> text. The hypothesis strategy below and the
# seeded mutation run at the end draw their arguments differently; the edits are shared.


def _span(text: str, ij: tuple[int, int]) -> tuple[int, int]:
    return min(ij), max(ij)


def delete_chars(text: str, ij) -> str:
    i, j = _span(text, ij)
    return text[:i] + text[j:]


def duplicate_chars(text: str, ij) -> str:
    i, j = _span(text, ij)
    return text[:j] + text[i:j] + text[j:]


def swap_chars(text: str, ij) -> str:
    i, j = _span(text, ij)
    if j >= len(text):
        return text
    return text[:i] + text[j] + text[i + 1:j] + text[i] + text[j + 1:]


def insert_char(text: str, args) -> str:
    i, ch = args
    return text[:i] + ch + text[i:]


def token_edit(text: str, args) -> str:
    kind, i, j = args
    toks = _tokens(text)
    if not toks:
        return text
    i, j = i % len(toks), j % len(toks)
    if kind == "delete":
        del toks[i]
    elif kind == "duplicate":
        toks.insert(i, toks[i])
    elif kind == "swap":
        toks[i], toks[j] = toks[j], toks[i]
    else:  # copy a token from elsewhere over this one
        toks[i] = toks[j]
    return "".join(toks)


def number(text: str, args) -> str:
    k, value = args
    numbers = [m.span() for m in NUMBER.finditer(text)]
    if not numbers:
        return text
    i, j = numbers[k % len(numbers)]
    return text[:i] + value + text[j:]


def indentation(text: str, args) -> str:
    k, delta = args
    lines = text.split("\n")
    code_lines = [i for i, line in enumerate(lines)
                  if line.strip() and not line.lstrip().startswith("#")]
    if not code_lines:
        return text
    k = code_lines[k % len(code_lines)]
    line = lines[k]
    stripped = line.lstrip(" ")
    width = max(len(line) - len(stripped) + delta, 0)
    return "\n".join(lines[:k] + [" " * width + stripped] + lines[k + 1:])


INSERTED = list(":[](){}-x=,\"\n\t#&*") + ["    ", "Concat:", "x1000000"]
TOKEN_EDITS = ["delete", "duplicate", "swap", "copy"]
NUMBERS = ["0", "-1", "1", "2", "3", "999999999999", "10" * 20, "1.5", "0.0", "10**12"]
INDENTS = [-8, -4, -2, -1, 1, 2, 4]


def _mutation(text: str):
    """A hypothesis strategy for `text` with one edit applied."""
    idx = st.integers(0, max(len(text), 1))
    t = max(len(_tokens(text)), 1)
    return st.one_of(
        st.tuples(idx, idx).map(lambda a: delete_chars(text, a)),
        st.tuples(idx, idx).map(lambda a: duplicate_chars(text, a)),
        st.tuples(idx, idx).map(lambda a: swap_chars(text, a)),
        st.tuples(idx, st.sampled_from(INSERTED)).map(lambda a: insert_char(text, a)),
        st.tuples(st.sampled_from(TOKEN_EDITS), st.integers(0, t), st.integers(0, t)).map(
            lambda a: token_edit(text, a)),
        st.tuples(st.integers(0, 10_000), st.sampled_from(NUMBERS)).map(
            lambda a: number(text, a)),
        st.tuples(st.integers(0, 10_000), st.sampled_from(INDENTS)).map(
            lambda a: indentation(text, a)),
    )


@FUZZ
@given(mutated())
@example(("vgg.arch", ARCH["vgg.arch"].replace("x2", "x0")))
@example(("resnet18.arch", ARCH["resnet18.arch"].replace("3x224x224", "3x1x1")))
@example(("alexnet.arch", ARCH["alexnet.arch"].replace("stride=4", "stride=0")))
def test_mutated_specs(case):
    name, text = case
    check_text(name, text)


@FUZZ
@given(mutated())
def test_mutated_specs_as_other_front_end(case):
    """A mutated .arch read as YAML and the other way round: garbage for the other parser."""
    name, text = case
    other = name[:-5] + ".arch" if name.endswith(".yaml") else name[:-5] + ".yaml"
    assume(other != name)
    check_text(other, text)


BAD_INPUTS = {
    "zero-input.arch": "network n:\n    input 0x0x0\n    conv3-8\n",
    "huge-repeat.arch": "network n:\n    input 3x8x8\n    conv3-8 x{10**100}\n",
    "huge-power.arch": "network n:\n    input 3x8x8\n    conv3-{2**2**2**2**2}\n",
    "div-zero.arch": "network n:\n    input 3x8x8\n    conv3-{1/0}\n",
    "empty-merge.arch": "network n:\n    input 3x8x8\n    add:\n    relu\n",
    "tap-in-block.arch": "block b:\n    tap relu\nnetwork n:\n    input 3x8x8\n    b\n",
    "self-alias.arch": "network a = b()\nnetwork b = a()\n",
    "nan.yaml": "- network: n\n  input: [3, 8, 8]\n  body: [{conv3-8: .nan}]\n",
    "empty-add.yaml": "- network: n\n  input: [3, 8, 8]\n  body: [{add: []}]\n",
    "bad-key.yaml": "- network: n\n  input: [3, 8, 8]\n  body: [{[a]: 1}]\n",
    "anchor.yaml": "- &a network: n\n  body: [*a]\n",
    "open-label.yaml": "- network: n\n  input: [3, 8, 8]\n  body:\n    - relu: null\n"
                       "      name: a{b\n",  # found by the seeded run (mutant 5153)
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_inputs_give_diagnostics(name):
    """Inputs that are easy to get wrong: each gives an error diagnostic, not an exception."""
    result = check_text(name, BAD_INPUTS[name], allow_known=False)
    assert any(d.is_error for d in result.diagnostics), name


def test_dedent_to_unknown_level():
    text = "network n:\n    input 3x8x8\n    conv3-8\n  relu\n"
    result = check_text("dedent.arch", text, allow_known=False)
    assert [d.code for d in result.diagnostics] == ["E001"]


# ----------------------------------------------------------------------------- (d) seeded run


def seeded_mutant(index: int) -> tuple[str, str]:
    """Mutant number `index`: a shipped spec (.arch or YAML) with 1 to 4 random edits. Each
    mutant has its own seed, so a failure names the one case to replay."""
    rng = random.Random(f"archc-fuzz-{index}")
    name = rng.choice(NAMES)
    text = ALL[name]
    for _ in range(rng.randint(1, 4)):
        text = _random_edit(rng, text)
    return name, text


def _random_edit(rng: random.Random, text: str) -> str:
    n, t = max(len(text), 1), max(len(_tokens(text)), 1)
    edit = rng.randrange(7)
    if edit < 3:
        return (delete_chars, duplicate_chars, swap_chars)[edit](
            text, (rng.randint(0, n), rng.randint(0, n)))
    if edit == 3:
        return insert_char(text, (rng.randint(0, n), rng.choice(INSERTED)))
    if edit == 4:
        return token_edit(text, (rng.choice(TOKEN_EDITS), rng.randint(0, t), rng.randint(0, t)))
    if edit == 5:
        return number(text, (rng.randint(0, 10_000), rng.choice(NUMBERS)))
    return indentation(text, (rng.randint(0, 10_000), rng.choice(INDENTS)))


def run_mutants(indices: range) -> int:
    """Check every mutant in `indices` (any exception fails, naming the mutant); returns
    how many of them had errors, so a caller can see the run was not all no-ops."""
    with_errors = 0
    for index in indices:
        name, text = seeded_mutant(index)
        try:
            result = check_text(name, text, allow_known=False)
        except Exception as exc:  # noqa: BLE001 - re-raised with the case to replay
            raise AssertionError(
                f"mutant {index} of {name} raised {exc!r}; replay it with "
                f"seeded_mutant({index})") from exc
        with_errors += not result.ok
    return with_errors


def test_seeded_mutants_small():
    """The quick run in `make test`: 200 mutants of every shipped spec, no exception."""
    assert run_mutants(range(200)) > 50


@pytest.mark.large
def test_seeded_mutants_large():
    """10,000 mutants (`pytest -m large tests/test_fuzz.py`; about ten minutes on 2 cores)."""
    assert run_mutants(range(200, 10_200)) > 2_500
