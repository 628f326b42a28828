"""The layout model the text writers share (archc/compiler/document.py): unparse, fmt,
the Python source and the importers' layout lay out their lines with it."""
from __future__ import annotations

from archc.compiler import document
from archc.compiler.document import Line


def test_trailing_comments_line_up_in_runs_of_consecutive_lines():
    text = document.render([
        Line("network n:"), Line("    conv3-64", "# stem"), Line("    relu", "# after"),
        Line(""), Line("    fc-10", "# head"), Line(""), Line("")])
    assert text == ("network n:\n"
                    "    conv3-64  # stem\n"
                    "    relu      # after\n"
                    "\n"
                    "    fc-10  # head\n")


def test_a_comment_on_its_own_line_is_kept_as_written():
    assert document.render([Line("", "# alone"), Line("x")]) == "# alone\nx\n"


def test_sections_are_separated_by_the_blank_lines_asked_for():
    assert document.sections(["a", ["b", "c"]], blank=1) == "a\n\nb\nc\n"
    assert document.sections([["a"], ["b"]], blank=2) == "a\n\n\nb\n"
    assert document.text(["a", "b"]) == "a\nb\n"


def test_pieces_join_greedily_within_the_width_with_a_continuation():
    lines = document.join_within(["aaaa", "bbbb", "cccc"], "  ", "      ", end=" \\", width=14)
    assert lines == ["  aaaa  bbbb \\", "      cccc"]
    assert all(len(line) <= 14 for line in lines)
    assert document.join_within(["a" * 20], "", "  ", width=10) == ["a" * 20]  # too long alone


def test_indentation_and_width():
    assert document.indent(2) == 2 * document.INDENT
    assert document.indentation("        x  y") == "        "
    assert document.fits("x" * document.WIDTH) and not document.fits("x" * (document.WIDTH + 1))
