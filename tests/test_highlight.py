"""Highlighting: the Pygments lexer on every shipped spec, its entry point, and the
TextMate grammar generated from the same rules (editors/arch.tmLanguage.json)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Error, Keyword, Name, Number, Operator, Punctuation

from archc.tools.highlight import ArchLexer, textmate_json
from tests.goldens import assert_golden
from tests.test_docs import ARCH as DOC_BLOCKS

ROOT = Path(__file__).resolve().parent.parent
TMLANGUAGE = ROOT / "editors" / "arch.tmLanguage.json"
SHIPPED = sorted(p for folder in ("specs", "examples", "tests/fixtures")
                 for p in (ROOT / folder).rglob("*.arch"))


def _tokens(text: str) -> list[tuple[object, str]]:
    return [(t, v) for t, v in ArchLexer().get_tokens(text) if v.strip()]


def _errors(text: str) -> list[str]:
    return [v for t, v in _tokens(text) if t in Error]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_error_tokens_in_shipped_specs(path):
    assert _errors(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("line, code, expect", DOC_BLOCKS,
                         ids=[f"language.md:{b[0]}" for b in DOC_BLOCKS])
def test_no_error_tokens_in_the_docs_examples(line, code, expect):
    assert _errors(code) == []


def test_a_stray_character_is_an_error_token():
    text = (ROOT / "tests/diagnostics/syntax_stray_character.arch").read_text()
    assert _errors(text) == ["$"]


def test_tokens_say_what_the_words_are():
    text = ("block basic(c, stride=1):\n"
            "    conv1: conv3-{c}(stride=stride)  Max-Pool  basic(c) x2\n"
            "network n:\n    input 3x32x32\n    soft-max  features: vgg[A]\n")
    tokens = dict((v, t) for t, v in reversed(_tokens(text)))  # the first of each word
    assert tokens["block"] in Keyword and tokens["basic"] in Name.Function
    assert tokens["conv1:"] in Name.Label and tokens["conv3-{c}"] in Name.Builtin
    assert tokens["Max-Pool"] in Name.Builtin and tokens["soft-max"] in Name.Builtin
    assert tokens["x2"] in Operator and tokens["3x32x32"] in Number
    assert tokens["stride"] in Name.Attribute and tokens["vgg[A]"] in Name.Variable
    call = [t for t, v in _tokens("network n:\n    basic(64)\n") if v == "basic"]
    assert call == [Name]  # a block call is not a layer kind


def test_pygments_finds_the_lexer_through_its_entry_point():
    assert isinstance(get_lexer_by_name("arch"), ArchLexer)
    assert isinstance(get_lexer_for_filename("resnet.arch"), ArchLexer)
    proc = subprocess.run([str(ROOT / ".venv/bin/pygmentize"), "-l", "arch", "-f", "html",
                           str(ROOT / "specs/resnet18.arch")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert '<span class="nb">conv7-64</span>' in proc.stdout


def test_the_textmate_grammar_is_generated():
    """The committed file equals the generator's output (ARCHC_REGEN=1 rewrites it)."""
    assert_golden(TMLANGUAGE, textmate_json())


def test_the_textmate_patterns_find_the_same_kinds():
    grammar = json.loads(TMLANGUAGE.read_text())
    layer = next(p["match"] for p in grammar["patterns"]
                 if p.get("name") == "support.function.layer.arch")
    assert re.fullmatch(layer, "conv3-64") and re.fullmatch(layer, "Global-AvgPool")
    assert re.fullmatch(layer, "FC-{num_classes}") and not re.fullmatch(layer, "basic")
    assert grammar["scopeName"] == "source.arch"


def _parsed_specs():
    from archc.compiler.tokens import SpecRefused, read_tokens

    for path in SHIPPED:
        try:
            yield path, read_tokens(path.read_text(encoding="utf-8"), str(path))
        except SpecRefused:  # a fixture with errors on purpose has no token stream
            continue


def test_the_regex_rules_never_split_a_token_of_the_stream():
    """Each token the parser reads as one (a word such as `conv3-{c}`, a label, a shape,
    a repeat...) is one token of the regex rules (the fallback and the TextMate grammar) or
    lies within one. The rules may be coarser than the parser (they read `depths[:i]` whole,
    like a table reference, and the `stages:` of `for c in stages:` as a label), never
    finer."""
    checked = 0
    for path, stream in _parsed_specs():
        cuts = sorted(start for start, _, _ in ArchLexer().regex_tokens(stream.text))
        for tok in stream.code():
            inside = [c for c in cuts if tok.start_pos < c < tok.end_pos]
            assert inside == [], (path, tok.line, str(tok))
            checked += 1
    assert checked > 5_000  # every shipped spec that parses


def _regex_tokens(text: str) -> list[tuple[int, object, str]]:
    return list(ArchLexer().regex_tokens(text))


def _stream_tokens(text: str) -> list[tuple[int, object, str]]:
    from archc.compiler.tokens import read_tokens

    return list(ArchLexer().stream_tokens(text, read_tokens(text)))


def test_the_lexer_reads_the_token_stream_where_the_spec_parses():
    """On every shipped spec that parses, the lexer's tokens are the stream's; they equal the
    regex rules' but where the rules are coarser than the parser (`depths[:i]` whole as a
    table reference, the `stages:` of `for c in stages:` as a label, a name read in an
    expression or bound by `-> x1` as a layer kind or a repeat)."""
    same = 0
    for path, stream in _parsed_specs():
        text = stream.text
        lexed = list(ArchLexer().get_tokens_unprocessed(text))
        assert lexed == _stream_tokens(text)
        names = {(o, v) for o, t, v in lexed if t is Name}
        ours = set(lexed)
        for offset, token, value in _regex_tokens(text):
            if (offset, token, value) in ours:
                same += 1
                continue
            coarse = ((token is Name.Label and value.endswith(":"))
                      or (token is Name.Variable and "[" in value)
                      or (token in (Name.Builtin, Operator.Word) and (offset, value) in names))
            assert coarse, (path, offset, token, value)
    assert same > 10_000


def test_the_stream_tells_apart_what_the_rules_read_whole():
    text = ("block b(depths, stages):\n"
            "    for c in stages:\n"
            "        conv3-{c}(groups=depths[:c]) -> x1\n"
            "network n:\n    input 3x8x8\n    b((1, 2), (8, 16))\n")
    lexed = [(t, v) for _, t, v in ArchLexer().get_tokens_unprocessed(text) if v.strip()]
    start = len(lexed) - 1 - lexed[::-1].index((Name, "depths"))  # in the slice
    assert lexed[start:start + 5] == [(Name, "depths"), (Punctuation, "["),
                                      (Punctuation, ":"), (Name, "c"), (Punctuation, "]")]
    assert ((Name, "stages"), (Punctuation, ":")) in zip(lexed, lexed[1:])
    assert (Name, "x1") in lexed and (Name.Label, "stages:") not in lexed
    regex = [(t, v) for _, t, v in _regex_tokens(text) if v.strip()]
    assert (Name.Variable, "depths[:c]") in regex and (Name.Label, "stages:") in regex


def test_a_spec_that_does_not_parse_is_highlighted_by_the_rules():
    text = ("network n:\n    input 3x8x8\n    conv3-8(stride=  # typing\n"
            "    relu  ]]\n")
    lexed = list(ArchLexer().get_tokens_unprocessed(text))
    assert lexed == _regex_tokens(text)
    assert "".join(v for _, _, v in lexed) == text
    assert (Name.Builtin, "conv3-8") in [(t, v) for _, t, v in lexed]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_tokens_cover_the_text(path):
    text = path.read_text(encoding="utf-8")
    for variant in (text, text.rstrip("\n"), text.replace("\n", "\r\n")):
        lexed = list(ArchLexer().get_tokens_unprocessed(variant))
        assert "".join(v for _, _, v in lexed) == variant
        offsets = [o for o, _, _ in lexed]
        assert offsets == sorted(offsets) and all(v for _, _, v in lexed)


def test_highlighting_does_not_import_torch():
    code = ("import sys\nfrom archc.tools.highlight import ArchLexer\n"
            f"list(ArchLexer().get_tokens(open({str(ROOT / 'specs/resnet18.arch')!r}).read()))\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_a_spec_nested_too_deep_is_highlighted_by_the_rules():
    text = "network n:\n    input 3x8x8\n    " + "[" * 300 + "relu" + "]" * 300 + "\n"
    lexed = list(ArchLexer().get_tokens_unprocessed(text))
    assert lexed == _regex_tokens(text)
