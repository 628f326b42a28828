"""`archc lsp` end to end: pytest-lsp starts the real server (`python -m archc lsp`) and
talks to it over stdio as an editor would: open, change, hover, definition, completion,
symbols, formatting, and a spec with errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


# one server for the module, as an editor keeps one: each test opens its own documents
@pytest_lsp.fixture(scope="module", config=ClientServerConfig(
    server_command=[sys.executable, "-m", "archc", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(lsp.InitializeParams(
        capabilities=lsp.ClientCapabilities(),
        root_uri=SPECS.as_uri()))
    yield
    await lsp_client.shutdown_session()


async def _open(client: LanguageClient, path: Path, text: str | None = None) -> str:
    """Open a document and wait for its diagnostics."""
    uri = path.resolve().as_uri()
    client.text_document_did_open(lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(
        uri=uri, language_id="arch", version=1,
        text=path.read_text() if text is None else text)))
    await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return uri


def _position(text: str, needle: str, offset: int = 0) -> lsp.Position:
    """The position of the first `needle` in `text` (plus `offset` characters)."""
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return lsp.Position(line, index - (text.rfind("\n", 0, index) + 1))


async def _definition(client: LanguageClient, uri: str, text: str, needle: str,
                      offset: int) -> lsp.Location:
    return await client.text_document_definition_async(lsp.DefinitionParams(
        lsp.TextDocumentIdentifier(uri), _position(text, needle, offset)))


@pytest.mark.asyncio(loop_scope="module")
async def test_hover_shows_shapes_parameters_macs_and_receptive_field(client):
    path = SPECS / "resnet18.arch"
    text = path.read_text()
    uri = await _open(client, path)
    assert not client.diagnostics[uri]
    hover = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _position(text, "conv7-64", 2)))
    value = hover.contents.value
    assert "**conv 7×7, 64, /2**  `conv1`" in value
    assert "3×224×224 → 64×112×112" in value
    assert "parameters 9,408 · 118M MACs · receptive field 7×7, stride 2×2" in value
    block = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _position(text, "basic(128, stride=2)", 1)))
    assert "`layer2.0`" in block.contents.value and "basic(c=128, stride=2)" in block.contents.value
    assert "64×56×56 → 128×28×28" in block.contents.value
    assert "parameters 230,144" in block.contents.value


@pytest.mark.asyncio(loop_scope="module")
async def test_hover_on_token_layers(client):
    """ViT's patch embedding and attention: token shapes, parameters, MACs, and attention's
    receptive field the whole input."""
    path = SPECS / "vit.arch"
    text = path.read_text()
    uri = await _open(client, path)
    assert not client.diagnostics[uri]
    embed = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _position(text, "patch-embed(hidden", 2)))
    assert "3×224×224 → 196×768" in embed.contents.value
    assert "parameters 590,592" in embed.contents.value
    attention = await client.text_document_hover_async(lsp.HoverParams(
        lsp.TextDocumentIdentifier(uri), _position(text, "self-attention(heads", 2)))
    value = attention.contents.value
    assert "197×768 → 197×768" in value and "parameters 2,362,368" in value
    assert "receptive field the whole input" in value


@pytest.mark.asyncio(loop_scope="module")
async def test_definition_of_a_block_in_an_imported_file_and_of_the_import(client):
    path = SPECS / "resnet18.arch"
    text = path.read_text()
    uri = await _open(client, path)
    found = await _definition(client, uri, text, "basic(64)", 2)
    lib = (SPECS / "lib" / "resnet.arch")
    assert found.uri == lib.resolve().as_uri()
    assert lib.read_text().splitlines()[found.range.start.line].startswith("block basic(")
    imported = await _definition(client, uri, text, '"lib/resnet.arch"', 3)
    assert imported.uri == lib.resolve().as_uri()


@pytest.mark.asyncio(loop_scope="module")
async def test_definition_of_a_table_reference_and_symbols(client):
    path = SPECS / "vgg.arch"
    text = path.read_text()
    uri = await _open(client, path)
    found = await _definition(client, uri, text, "vgg[variant]", 1)
    assert found.uri == uri
    assert found.range.start.line == text[:text.index("table vgg")].count("\n")
    symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(
        lsp.TextDocumentIdentifier(uri)))
    assert [(s.name, s.kind) for s in symbols] == [
        ("vgg", lsp.SymbolKind.Struct), ("vgg", lsp.SymbolKind.Class),
        ("vgg_bn", lsp.SymbolKind.Class)]
    assert [c.name for c in symbols[0].children] == ["A", "A-LRN", "B", "C", "D", "E"]


@pytest.mark.asyncio(loop_scope="module")
async def test_completion_of_kinds_blocks_parameters_and_variants(client, tmp_path):
    spec = tmp_path / "t.arch"
    text = ('import "' + (SPECS / "lib" / "resnet.arch").as_posix() + '"\n'
            "table t:\n    A: conv3-8\n    B: conv3-16\n"
            "network n:\n    input 3x32x32\n    conv3-8(stride=2, )  t[A]\n    basic(8)\n")
    spec.write_text(text)
    uri = await _open(client, spec)

    async def labels(position: lsp.Position) -> set[str]:
        result = await client.text_document_completion_async(lsp.CompletionParams(
            lsp.TextDocumentIdentifier(uri), position))
        return {item.label for item in result.items}

    anywhere = await labels(_position(text, "basic(8)"))
    assert {"conv", "maxpool", "global-avgpool", "bn", "basic", "bottleneck"} <= anywhere
    parameters = await labels(_position(text, "stride=2, ", 10))
    assert {"stride=", "padding=", "dilation=", "groups="} <= parameters
    assert "conv" not in parameters
    assert await labels(_position(text, "t[A]", 2)) == {"A", "B"}
    assert {"c=", "stride="} <= await labels(_position(text, "basic(8)", 6))
    row = await _definition(client, uri, text, "t[A]", 1)  # a literal variant: its row
    assert row.range.start == _position(text, "A: conv3-8")


@pytest.mark.asyncio(loop_scope="module")
async def test_diagnostics_follow_changes_with_codes_hints_and_severities(client, tmp_path):
    spec = tmp_path / "e.arch"
    good = "network n:\n    input 3x32x32\n    conv3-8 relu\n"
    spec.write_text(good)
    uri = await _open(client, spec)
    assert not client.diagnostics[uri]
    bad = "network n:\n    input 3x32x32\n    conv3-8(strde=2) relu  maxpol\n"
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
        [lsp.TextDocumentContentChangeWholeDocument(text=bad)]))
    await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    found = {d.code: d for d in client.diagnostics[uri]}
    assert set(found) == {"E102", "E101"}
    assert found["E102"].range == lsp.Range(lsp.Position(2, 12), lsp.Position(2, 19))
    assert "= hint: did you mean `stride`?" in found["E102"].message
    assert found["E101"].severity == lsp.DiagnosticSeverity.Error
    syntax = "network n(:\n    input 3x32x32\n"
    client.text_document_did_change(lsp.DidChangeTextDocumentParams(
        lsp.VersionedTextDocumentIdentifier(uri=uri, version=3),
        [lsp.TextDocumentContentChangeWholeDocument(text=syntax)]))
    await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert [d.code for d in client.diagnostics[uri]] == ["E001"]
    # the document's symbols are the last ones that parsed
    symbols = await client.text_document_document_symbol_async(lsp.DocumentSymbolParams(
        lsp.TextDocumentIdentifier(uri)))
    assert [s.name for s in symbols] == ["n"]


@pytest.mark.asyncio(loop_scope="module")
async def test_warnings_are_warnings(client):
    path = ROOT / "tests" / "diagnostics" / "warnings.arch"
    uri = await _open(client, path)
    severities = {d.severity for d in client.diagnostics[uri]}
    assert severities == {lsp.DiagnosticSeverity.Warning}
    expected = (ROOT / "tests" / "diagnostics" / "warnings.arch.out").read_text()
    assert all(f"warning[{d.code}]" in expected for d in client.diagnostics[uri])


@pytest.mark.asyncio(loop_scope="module")
async def test_formatting_is_archc_fmt(client, tmp_path):
    spec = tmp_path / "f.arch"
    messy = "network n:\n  input 3x8x8\n  conv( 8 )   relu\n"
    spec.write_text(messy)
    uri = await _open(client, spec)
    edits = await client.text_document_formatting_async(lsp.DocumentFormattingParams(
        lsp.TextDocumentIdentifier(uri), lsp.FormattingOptions(tab_size=4, insert_spaces=True)))
    assert [e.new_text for e in edits] == ["network n:\n    input 3x8x8\n    conv(8)  relu\n"]
    assert edits[0].range.start == lsp.Position(0, 0)


def test_the_server_does_not_import_torch():
    code = ("import sys; from archc.tools.lsp import analyse; "
            f"a = analyse({(SPECS / 'googlenet.arch').as_uri()!r}, "
            f"open({str(SPECS / 'googlenet.arch')!r}).read(), 1); "
            "from archc.tools.lsp import summary_rows; assert a.modules and summary_rows(a); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


@pytest.mark.asyncio(loop_scope="module")
async def test_definition_of_a_named_tensor(client, tmp_path):
    spec = tmp_path / "dag.arch"
    text = ("block mix(@lo) -> @y:\n    @lo relu -> y\n\n"
            "network n:\n    input 3x8x8\n    conv3-8 -> a\n    conv3-8 -> a2\n"
            "    mix(@a2) -> b\n    concat(@a, @b)\n")
    spec.write_text(text)
    uri = await _open(client, spec)
    lines = text.splitlines()
    found = await _definition(client, uri, text, "concat(@a", 8)
    assert (found.range.start.line, lines[found.range.start.line]) == (5, "    conv3-8 -> a")
    assert found.range.start.character == lines[5].index("a")
    found = await _definition(client, uri, text, "@lo relu", 1)  # a block's tensor parameter
    assert (found.range.start.line, found.range.start.character) == (0, lines[0].index("@lo"))
    found = await _definition(client, uri, text, "-> @y", 4)  # a declared output: the body's
    assert found.range.start.line == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_words_are_the_parsers_tokens(client, tmp_path):
    """The server finds words as the parser reads them (archc/compiler/notation.py): a word
    with a decimal part (`dropout-0.5`) still names its kind, and an import written with
    single quotes is an import."""
    lib = (SPECS / "lib" / "resnet.arch").resolve()
    spec = tmp_path / "q.arch"
    text = (f"import '{lib.as_posix()}'\n"
            "network n:\n    input 3x32x32\n    conv3-8\n    dropout-0.5()\n")
    spec.write_text(text)
    uri = await _open(client, spec)
    result = await client.text_document_completion_async(lsp.CompletionParams(
        lsp.TextDocumentIdentifier(uri), _position(text, "0.5(", 4)))
    labels = {item.label for item in result.items}
    assert "p=" in labels and "conv" not in labels
    imported = await _definition(client, uri, text, "'", 3)
    assert imported.uri == lib.as_uri()
