"""Paper notation (archc/compiler/notation.py): the one place the parser, the unparser and
the highlighter learn how a layer kind is written as one word."""
from __future__ import annotations

import re

import pytest

from archc.compiler import notation
from archc.compiler.parse import lark_parser
from archc.layers import KINDS, lookup


def _grammar_pattern(name: str) -> str:
    """A terminal of grammar.lark as a regex, its groups made non-capturing as notation's."""
    term = next(t for t in lark_parser().terminals if t.name == name)
    value = term.pattern.value.replace("\n", r"\n")  # lark reads `\n` as the character
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", value)


@pytest.mark.parametrize("terminal, pattern", [
    ("WORD", notation.WORD), ("LABEL", notation.LABEL), ("REPEAT", notation.REPEAT),
    ("TABLE_REF", notation.TABLE_REF), ("SHAPE", notation.shape()), ("NAME", notation.NAME),
    ("REF", notation.REF), ("FLOAT", notation.FLOAT), ("STRING", notation.STRING),
], ids=lambda v: v if v.isupper() else "")
def test_the_grammar_spells_its_terminals_as_notation_does(terminal, pattern):
    assert _grammar_pattern(terminal) == pattern.replace('\\"', '"')  # `\"` is `"`


def test_a_word_reads_as_a_kind_and_its_parts():
    reading = notation.read_word("max-pool3-2")
    assert isinstance(reading, notation.Reading)
    assert reading.kind.name == "maxpool"
    assert [(p.param, p.text, p.start, p.end) for p in reading.parts] == [
        ("kernel", "3", 8, 9), ("stride", "2", 10, 11)]
    conv = notation.read_word("conv1x7-{c*2}")
    assert isinstance(conv, notation.Reading)
    assert [(p.param, p.text) for p in conv.parts] == [("kernel", "1x7"), ("out", "{c*2}")]
    assert notation.read_word("conv_1x1") is None  # a block, not a conv
    assert notation.read_word("residual") is None


def test_a_word_with_too_many_parts_says_where_the_first_extra_one_starts():
    reading = notation.read_word("conv3-64-1-2")
    assert isinstance(reading, notation.TooManyParts)
    assert reading.kind.name == "conv" and reading.at == 9 and reading.head is not None
    assert "`convK-OUT`" in notation.sugar_hint(reading.kind)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.sugar != (None, ())],
                         ids=lambda k: k.name)
def test_every_kinds_word_reads_back_as_written(kind):
    head, dashes = kind.sugar
    params = ([head] if head else []) + list(dashes)
    texts = [str(3 + i) for i in range(len(params))]
    assert notation.sugar_taken(kind, [*params, "other"]) == len(params)
    word = notation.join_word(kind.name, kind, texts)
    reading = notation.read_word(word)
    assert isinstance(reading, notation.Reading) and reading.kind is kind
    assert [(p.param, p.text) for p in reading.parts] == list(zip(params, texts))
    assert re.fullmatch(notation.kind_pattern(), word)


def test_a_head_kind_writes_no_dash_parts_without_its_head():
    conv = lookup("conv")
    assert notation.sugar_taken(conv, ["out", "kernel"]) == 0
    assert notation.join_word("conv", conv, []) == "conv"


def test_the_kind_is_kept_as_the_source_spelled_it():
    assert notation.written_kind("FC-4096", "fc") == "FC"
    assert notation.written_kind("adaptive-avgpool", "adaptiveavgpool") == "adaptive-avgpool"
    assert notation.written_kind("conv3-64", "conv") is None
