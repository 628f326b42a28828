"""Issue 24, classes 2 and 7 on the real CLI under memory and CPU limits: options parsed
strictly, nesting deeper than the default without a RecursionError, negative padding refused
by check, an ONNX example input that would not fit refused before allocation, and text
files (spec or fmt input) read by one reader that fmt and the lexer agree on."""

from __future__ import annotations

import pytest

from .conftest import assert_one_line_error, assert_spec_error, run_archc, tree_state

# torch's libraries map several GB of address space; the input below would need 100+ GB
TORCH_MEM_MB = 8000
SPEC = "network n:\n    input 3x32x32\n    conv3-8 relu maxpool\n    flatten FC-10\n"


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("setting", ["layers=1e400", "params=1e309", "params=inf", "depth=nan",
                                     "params=1e99999999999"])
def test_an_infinite_or_overflowing_limit_option_is_one_line(tmp_path, setting):
    (tmp_path / "n.arch").write_text(SPEC)
    proc = run_archc("--limit", setting, "check", "n.arch", cwd=tmp_path, cpu_s=20)
    line = assert_one_line_error(proc, 2)
    assert f"limit `{setting.partition('=')[0]}`" in line


@pytest.mark.parametrize("verb", [["check", "n.arch"], ["lsp"]], ids=["check", "lsp"])
def test_an_overflowing_limit_in_the_environment_is_one_line(tmp_path, verb):
    """The language server too: it is refused before it serves, not an internal error."""
    (tmp_path / "n.arch").write_text(SPEC)
    proc = run_archc(*verb, cwd=tmp_path, env={"ARCHC_LIMITS": "params=1e400"}, input="",
                     cpu_s=20)
    line = assert_one_line_error(proc, 2)
    assert "limit `params`" in line


@pytest.mark.parametrize("verb", ["check", "compile"])
def test_200_nested_brackets_under_a_raised_depth_limit_are_no_recursion_error(tmp_path, verb):
    nested = "[" * 200 + "conv3-8" + "]" * 200
    (tmp_path / "deep.arch").write_text(
        f"network n:\n    input 3x16x16\n    {nested}\n    flatten FC-2\n")
    out = ["-o", "deep.py"] if verb == "compile" else []
    proc = run_archc("--limit", "depth=1000", verb, "deep.arch", *out, cwd=tmp_path,
                     mem_mb=TORCH_MEM_MB)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RecursionError" not in proc.stderr


def test_a_depth_limit_past_what_archc_can_recurse_is_refused(tmp_path):
    (tmp_path / "n.arch").write_text(SPEC)
    proc = run_archc("--limit", "depth=1000000", "check", "n.arch", cwd=tmp_path)
    assert "limit `depth` is at most 2,000" in assert_one_line_error(proc, 2)


@pytest.mark.parametrize("layer, where", [("conv3-8(padding=-5)", 5),
                                          ("conv3-8 maxpool(pad=-1)", 13),
                                          ("conv3-8(padding=(1, -2))", 5)])
def test_negative_padding_is_an_error_in_check(tmp_path, layer, where):
    (tmp_path / "pad.arch").write_text(
        f"network n:\n    input 3x32x32\n    {layer}\n    flatten FC-2\n")
    proc = run_archc("check", "pad.arch", cwd=tmp_path)
    line = assert_spec_error(proc, "E204", f"pad.arch:3:{where}")
    assert "padding must not be negative" in line


def test_an_onnx_example_input_that_cannot_fit_is_refused_before_allocation(tmp_path):
    (tmp_path / "n.arch").write_text(
        "network n:\n    input 3x32x32\n    conv3-8 relu\n    global-avgpool flatten FC-2\n")
    before = tree_state(tmp_path)
    proc = run_archc("compile", "--emit", "onnx", "--input", "3x65536x65536", "n.arch",
                     "-o", "n.onnx", cwd=tmp_path, mem_mb=TORCH_MEM_MB, cpu_s=60)
    line = assert_one_line_error(proc)
    assert "ONNX export at input 3×65536×65536" in line and "smaller --input" in line
    assert tree_state(tmp_path) == before


# ----------------------------------------------------------------------------- text


def test_fmt_keeps_a_lone_cr_in_a_trailing_comment_from_becoming_code(tmp_path):
    """`# conv3-512\\r conv3-512 ...` hid layers in a comment as check reads it; fmt read the
    CR as a line break and wrote them out as code (82,154 parameters became 660,266)."""
    spec = tmp_path / "cr.arch"
    spec.write_bytes(b"network n:\n    input 3x32x32\n    conv3-8 relu  # off:\r    conv3-512"
                     b" conv3-512\n    flatten FC-10\n")
    before = tree_state(tmp_path)
    for verb in (["fmt", "cr.arch"], ["fmt", "--check", "cr.arch"], ["check", "cr.arch"]):
        proc = run_archc(*verb, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        assert "carriage return that does not end a line" in proc.stderr
        assert "cr.arch:3:25" in proc.stderr or "line 3, column 25" in proc.stderr  # located
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("name, data, expected", [
    ("latin1.arch", SPEC.replace("n:", "n:  # caf\xe9").encode("latin-1"),
     "is not UTF-8 text: byte 0xe9 at line 1, column 18"),
    ("utf16.arch", SPEC.encode("utf-16"), "is UTF-16 text, not UTF-8"),
    ("utf16be.arch", SPEC.encode("utf-16-be"), "it is UTF-16 or binary"),
    ("nul.arch", SPEC.replace("relu", "re\0lu").encode(), "contains a NUL byte at line 3"),
])
def test_fmt_refuses_text_it_cannot_read_in_one_line(tmp_path, name, data, expected):
    (tmp_path / name).write_bytes(data)
    before = tree_state(tmp_path)
    for verb in (["fmt"], ["fmt", "--check"]):
        proc = run_archc(*verb, name, cwd=tmp_path)
        assert expected in assert_one_line_error(proc, 1)
    assert tree_state(tmp_path) == before


def test_fmt_refuses_a_spec_over_checks_size_limit_at_once(tmp_path):
    """3 MB: check refuses it before reading; fmt --check took 26 s over it. The CPU limit
    is far below that."""
    body = "".join(f"    conv3-8 relu  # layer {i}\n" for i in range(110_000))
    (tmp_path / "big.arch").write_text("network n:\n    input 3x32x32\n" + body)
    for verb in (["check"], ["fmt", "--check"], ["fmt"]):
        proc = run_archc(*verb, "big.arch", cwd=tmp_path, cpu_s=10)
        assert "over the limit for one spec file" in assert_one_line_error(proc, 1)


def test_fmt_from_stdin_refuses_an_oversized_text_and_gives_it_back(tmp_path):
    text = "network n:\n    input 3x32x32\n" + "    relu\n" * 200_000
    proc = run_archc("fmt", "-", cwd=tmp_path, input=text, cpu_s=10)
    assert proc.returncode == 1
    assert "E205" in proc.stderr and proc.stdout == text
