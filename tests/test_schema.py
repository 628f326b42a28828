"""`archc schema`: the generated JSON Schema accepts every YAML spec the repository has
(the YAML forms of every .arch spec and fixture that parses, the docs' YAML examples)
and rejects the YAML forms of the diagnostics fixtures whose problem a schema can see:
a field or key that does not belong, and a layer parameter the registry does not know."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import parse_text
from archc.compiler.yamlspec import dump_yaml
from archc.layers import KINDS
from archc.tools.schema import generate, write
from tests.goldens import assert_golden
from tests.test_docs import YAML as DOC_YAML

ROOT = Path(__file__).resolve().parent.parent
DIAGNOSTICS = ROOT / "tests" / "diagnostics"
ARCH = sorted(p for folder in ("specs", "examples", "tests/fixtures", "tests/diagnostics")
              for p in (ROOT / folder).rglob("*.arch"))
# the diagnostics a schema can tell from the YAML alone (without the blocks a file defines)
SCHEMA_CAN_TELL = {"yaml_extra_key.yaml", "yaml_unexpected_field.yaml",
                   "yaml_unknown_names.yaml", "unknown_parameter.arch", "several_errors.arch"}

VALIDATOR = Draft202012Validator(generate())


def _yaml_form(path: Path):
    """The YAML of an .arch file as `archc convert --to yaml` writes it (None if no parse)."""
    diags = Diagnostics()
    spec = parse_text(path.read_text(encoding="utf-8"), str(path), diags)
    if spec is None or diags.has_errors:
        return None
    return yaml.safe_load(dump_yaml(spec))


def _problems(document) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_the_schema_is_a_valid_2020_12_schema():
    Draft202012Validator.check_schema(generate())


@pytest.mark.parametrize("path", ARCH, ids=_rel)
def test_yaml_forms_of_every_spec(path):
    document = _yaml_form(path)
    if document is None:
        pytest.skip("a deliberate syntax error: it has no YAML form")
    if path.name in SCHEMA_CAN_TELL:
        assert any("was unexpected" in p for p in _problems(document)), _problems(document)
    else:
        assert _problems(document) == []


@pytest.mark.parametrize("path", sorted(DIAGNOSTICS.glob("*.yaml")), ids=_rel)
def test_yaml_diagnostics_fixtures(path):
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        pytest.skip("not YAML at all: the YAML parser, not a schema, reports it")
    assert bool(_problems(document)) == (path.name in SCHEMA_CAN_TELL), _problems(document)


@pytest.mark.parametrize("line, code, expect", DOC_YAML, ids=[f"line{b[0]}" for b in DOC_YAML])
def test_docs_yaml_examples(line, code, expect):
    problems = _problems(yaml.safe_load(code))
    assert problems == [] or expect, problems


def test_every_kind_and_its_parameters_are_in_the_schema():
    defs = generate()["$defs"]
    for kind in KINDS:
        named = defs[f"kind-{kind.name}"]["then"]["properties"]
        assert set(named) == {n for p in kind.params for n in (p.name, *p.aliases)}


@pytest.mark.parametrize("item, ok", [
    ({"conv3-64": {"stride": 2}, "name": "conv1"}, True),
    ({"Max-Pool": [3, {"stride": 2}]}, True),
    ({"conv": {"kernel": "{k}"}}, True),
    ({"conv": {"kernel": True}}, False),  # a kernel is an integer (or an expression)
    ({"bn": {"eps": 0.001, "momentumm": 0.1}}, False),
    ({"basic": {"anything": 1}}, True),  # a block: the schema cannot know its parameters
    ({"relu": None, "repeat": 2, "name": "r", "extra": 1}, False),
    ({"concat": ["relu", ["conv3-8", "bn"]]}, True),
    ({"table": "vgg"}, False),  # needs its variant
    ({"table": "vgg", "variant": "D"}, True),
])
def test_items(item, ok):
    document = [{"network": "n", "input": [3, 8, 8], "body": [item]}]
    assert (_problems(document) == []) == ok, _problems(document)


def test_the_committed_schema_is_the_generated_one():
    """editors/archc.schema.json, the file the docs' modeline points at (ARCHC_REGEN=1)."""
    assert_golden(ROOT / "editors" / "archc.schema.json", write(None))


def test_cli_writes_the_schema(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "archc", "schema", "-o", "s.json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s.json").read_text() == write(None)
