"""Hostile paths and options on the real CLI (issue 11, items 15 and 20, compiler side), and
the internal-error handler: an expected failure is one clean line; a bug in archc is one
line saying so, then its traceback, exit 101."""

from __future__ import annotations

import json
import textwrap

import pytest

from .conftest import assert_one_line_error, run_archc, tree_state

SPEC = "network n:\n    input 3x32x32\n    conv3-8 relu maxpool\n    flatten FC-10\n"


@pytest.fixture
def workdir(tmp_path):
    """A folder with a good spec, binary garbage and a sub-folder; yields it and asserts at
    the end of the test that nothing in it changed."""
    (tmp_path / "ok.arch").write_text(SPEC)
    (tmp_path / "garbage.arch").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "folder.arch").mkdir()
    before = tree_state(tmp_path)
    yield tmp_path
    assert tree_state(tmp_path) == before


# ----------------------------------------------------------------------------- item 15


@pytest.mark.parametrize("verb", [["convert", "--to", "yaml"], ["check"], ["summary"],
                                  ["compile"], ["graph", "-o", "g.dot"]],
                         ids=lambda v: v[0])
def test_binary_garbage_says_not_utf8(workdir, verb):
    proc = run_archc(verb[0], "garbage.arch", *verb[1:], cwd=workdir)
    line = assert_one_line_error(proc)
    assert "`garbage.arch` is not UTF-8 text: byte 0x89 at line 1, column 1" in line


@pytest.mark.parametrize("verb", [["convert", "--to", "arch"], ["check"], ["summary"],
                                  ["graph", "-o", "g.dot"]],
                         ids=lambda v: v[0])
def test_a_folder_says_is_a_directory(workdir, verb):
    proc = run_archc(verb[0], "folder.arch", *verb[1:], cwd=workdir)
    assert "`folder.arch` is a directory, not a file" in assert_one_line_error(proc)


def test_convert_of_garbage_writes_no_output(workdir):
    proc = run_archc("convert", "garbage.arch", "--to", "yaml", "-o", "out.yaml", cwd=workdir)
    assert_one_line_error(proc, 2)  # the fixture asserts out.yaml was not created


def test_a_device_file_is_not_read_forever(workdir):
    proc = run_archc("check", "/dev/zero", cwd=workdir, mem_mb=600, cpu_s=20)
    assert "is not a regular file" in assert_one_line_error(proc, 1)


@pytest.mark.parametrize("name, text, headline", [
    # a NUL byte in a spec file is refused wherever it stands (issue 24: one text reader)
    ("nul.arch", 'import "lib\0x.arch"\n' + SPEC,
     "error[E002]: spec file `nul.arch` contains a NUL byte at line 1, column 12"),
    ("nul.yaml", '- import: "lib\\0x.arch"\n- network: n\n  input: [3, 8, 8]\n  body: [relu]\n',
     "error[E002]: spec path `lib\\0x.arch` contains a NUL byte"),
])
def test_an_import_path_with_a_nul_byte_is_a_located_error(tmp_path, name, text, headline):
    (tmp_path / name).write_text(text)
    proc = run_archc("check", name, cwd=tmp_path)
    line = assert_one_line_error(proc, 1)
    assert line == headline
    assert f"--> {name}:1:" in proc.stderr


def test_train_without_the_torch_extra_names_the_extra(workdir, tmp_path_factory):
    # A `torch` package that fails to import, first on the path: an install without the extra.
    fake = tmp_path_factory.mktemp("no_torch")
    (fake / "torch").mkdir()
    (fake / "torch" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    proc = run_archc("train", "ok.arch", "--epochs", "1", cwd=workdir,
                     env={"PYTHONPATH": str(fake)})
    line = assert_one_line_error(proc, 2)
    assert "`archc train` needs the `torch` extra" in line
    assert "pip install 'archc[torch]'" in proc.stderr


def test_the_torch_extra_list_matches_pyproject():
    import tomllib

    from archc.cli.common import TORCH_EXTRA

    from .conftest import REPO

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert sorted(TORCH_EXTRA) == sorted(project["optional-dependencies"]["torch"])


# ----------------------------------------------------------------------------- item 20


def test_graph_depth_below_zero_is_refused(workdir):
    proc = run_archc("graph", "ok.arch", "--depth", "-1", "-o", "g.dot", cwd=workdir)
    assert "--depth must be 0 or more, got -1" in assert_one_line_error(proc, 2)


def test_graph_depth_zero_is_accepted(tmp_path):
    (tmp_path / "ok.arch").write_text(SPEC)
    proc = run_archc("graph", "ok.arch", "--depth", "0", "-o", "g.dot", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "g.dot").read_text().startswith("digraph")


# ----------------------------------------------------------------------------- internal errors

# Makes the resolver crash, as a bug would, for specs whose name starts with `bug`: loaded
# through sitecustomize, so the real `archc` entry point runs unchanged.
_BUG = textwrap.dedent("""
    import archc.compiler.resolve

    _network = archc.compiler.resolve.Resolver.network

    def network(self, *args, **kwargs):
        if self.program.root.rpartition("/")[2].startswith("bug"):
            return {}["a bug in the resolver"]
        return _network(self, *args, **kwargs)

    archc.compiler.resolve.Resolver.network = network
""")


@pytest.fixture
def buggy(tmp_path_factory):
    """Environment that loads the crashing resolver above."""
    site = tmp_path_factory.mktemp("buggy_site")
    (site / "sitecustomize.py").write_text(_BUG)
    return {"PYTHONPATH": str(site)}


def test_an_internal_error_says_it_is_a_bug_and_keeps_the_traceback(tmp_path, buggy):
    (tmp_path / "bug.arch").write_text(SPEC)
    proc = run_archc("summary", "bug.arch", cwd=tmp_path, env=buggy)
    assert proc.returncode == 101
    first, *rest = proc.stderr.splitlines()
    assert first == ("error: internal error: archc crashed; this is a bug in archc, "
                     "not in your input")
    assert "please report it" in rest[0]
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("KeyError: 'a bug in the resolver'")


def test_a_bug_in_one_spec_still_reports_the_others(tmp_path, buggy):
    for name in ("a.arch", "bug.arch", "c.arch"):
        (tmp_path / name).write_text(SPEC)
    proc = run_archc("check", "a.arch", "bug.arch", "c.arch", "--json", cwd=tmp_path, env=buggy)
    assert proc.returncode == 101
    report = json.loads(proc.stdout)
    assert [(r["spec"], r["ok"]) for r in report] == [
        ("a.arch", True), ("bug.arch", False), ("c.arch", True)]
    assert "KeyError" in report[1]["internal_error"]
    assert "this is a bug in archc" in proc.stderr and "Traceback" in proc.stderr


def test_expected_failures_are_not_reported_as_bugs(tmp_path):
    proc = run_archc("check", "missing.arch", cwd=tmp_path)
    assert "bug" not in assert_one_line_error(proc, 2)


# ----------------------------------------------------------------------------- graph and convert


def test_a_drawing_too_large_for_graphviz_is_refused_before_dot_runs(tmp_path):
    # 100,000 boxes: a scan per child lookup made this n² (hours), and graphviz's layout
    # would not end either; the .dot source is still offered
    (tmp_path / "wide.arch").write_text("network n:\n    input 3x8x8\n    relu x100000\n")
    before = tree_state(tmp_path)
    proc = run_archc("graph", "wide.arch", "-o", "wide.svg", cwd=tmp_path, cpu_s=60)
    assert "100,003 boxes" in assert_one_line_error(proc, 2)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("verb", [["graph", "ok.arch"], ["convert", "ok.arch", "--to", "yaml"]],
                         ids=lambda v: v[0])
def test_an_output_path_under_a_file_is_one_line(workdir, verb):
    proc = run_archc(*verb, "-o", "ok.arch/out.svg", cwd=workdir)
    assert "cannot write `ok.arch/out.svg`" in assert_one_line_error(proc, 2)
