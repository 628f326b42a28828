"""The public token stream (archc/compiler/tokens.py) that fmt, convert and the highlighter
read: the parser's own tokens, its layout tokens and the IR of the same parse."""
from __future__ import annotations

import pytest

from archc.compiler import ir, tokens
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.parse import lark_parser, parse_text

TEXT = "network n:\r\n    input 3x32x32\n    conv3-64(stride=2)  relu  # a comment\n"


def test_the_stream_is_the_parsers_tokens_with_the_same_ir():
    stream = tokens.read_tokens(TEXT, "n.arch")
    assert stream.text == TEXT.replace("\r\n", "\n")
    assert [t.type for t in stream.code()] == [
        "NETWORK", "NAME", "COLON", "INPUT", "SHAPE", "WORD", "LPAR", "NAME", "EQUAL", "INT",
        "RPAR", "WORD"]
    assert {"_NL", "_INDENT", "_DEDENT"} <= {t.type for t in stream.tokens}
    expected = parse_text(TEXT, "n.arch", Diagnostics())
    assert ir.structure(stream.spec) == ir.structure(expected)


def test_a_spec_with_errors_is_refused_with_the_parsers_diagnostics():
    with pytest.raises(tokens.SpecRefused) as refused:
        tokens.read_tokens("network n:\n    conv3-64 )\n")
    assert [d.code for d in refused.value.diagnostics] == ["E001"]
    with pytest.raises(tokens.SpecRefused):
        tokens.read_tokens("network n:\n    relu\x00\n")


def test_the_operator_names_are_the_grammars_operators():
    """`//` and `**` have names lark makes up; the set must follow the grammar."""
    texts = {"+", "-", "*", "/", "//", "%", "**"}
    named = {t.name for t in lark_parser().terminals
             if t.pattern.type == "str" and t.pattern.value in texts}
    assert len(named) == len(texts)
    assert named | {"COMPARE"} <= tokens.OPERATORS


def test_the_keywords_are_the_grammars_words():
    assert {"block", "network", "for", "in", "if", "else", "tap", "input"} <= set(
        tokens.keywords())
    assert "conv" not in tokens.keywords()


def test_a_spec_nested_too_deep_is_refused_not_a_recursion_error():
    text = "network n:\n    input 3x8x8\n    " + "[" * 300 + "relu" + "]" * 300 + "\n"
    with pytest.raises(tokens.SpecRefused) as refused:
        tokens.read_tokens(text)
    assert [d.code for d in refused.value.diagnostics] == ["E205"]
