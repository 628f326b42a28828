"""`archc lsp`: a language server for .arch files over stdio (pygls + lsprotocol).

- Diagnostics as you type: `archc check`'s own diagnostics (codes, spans, hints and
  notes), warnings as warnings. A spec is checked in a worker thread once typing pauses
  (`DEBOUNCE_S`), so requests never wait for a check.
- Hover on a layer or a block call: input and output shape, parameters, MACs and the
  receptive field (archc/backends/summary.py's figures). A layer inside a block shows its
  first use and how many there are.
- Go to definition: block calls, table references (and their variant's row), network
  aliases' targets and imports, across files.
- Completion: layer kinds and block names; a kind's parameter names inside its
  parentheses; a table's variants inside `table[`.
- Document symbols (networks, aliases, blocks, tables with their variants) and
  formatting (archc fmt).

Requests are answered from the last finished analysis. Nothing here imports torch.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from archc.api import CheckResult, check
from archc.compiler import ir, notation
from archc.compiler.diagnostics import Diagnostic
from archc.compiler.graph import LayerNode, Module, layers, walk

DEBOUNCE_S = 0.15  # seconds of quiet typing before a spec is checked again
COMPLETION_WINDOW = 400  # characters before the cursor that completion looks at
# what the cursor may stand on, spelled as the parser's tokens (archc/compiler/notation.py):
# a string, a `table[variant]`, a `label:` or a word (`conv3-64`, `FC-{n}`, a block's name)
WORD = re.compile(rf"{notation.STRING}|{notation.TABLE_REF}|{notation.LABEL}|{notation.WORD}")
TENSOR = re.compile(rf"@({notation.NAME})")  # `@skip`: a named tensor
OPEN_TABLE = re.compile(rf"({notation.NAME})\[[^\[\]]*$")  # `vgg[` before the cursor
CALLEE = re.compile(rf"({notation.WORD})\s*$")  # the word before a call's `(`


# --------------------------------------------------------------------------- analysis


@dataclass
class Analysis:
    """What the server knows about one document: its check and an index of its modules."""

    uri: str
    path: str
    text: str
    version: int | None
    result: CheckResult
    spec: ir.SpecFile | None  # the last version that parsed
    modules: list[tuple[ir.Span, Module]] = field(default_factory=list)
    rows: dict | None = None  # layer path → summary row, computed after the diagnostics

    @property
    def program(self):
        """The parsed program (this file and its imports)."""
        return self.result.program


def analyse(uri: str, text: str, version: int | None,
            previous: Analysis | None = None) -> Analysis:
    """Check a document's text and index the modules its lines produce."""
    path = to_fs_path(uri) or uri
    result = check(path, text=text)
    spec = result.program.root_file or (previous.spec if previous else None)
    analysis = Analysis(uri, path, text, version, result, spec)
    net = result.network if result.ok else None  # a network with errors is partial
    if net is not None:
        here = {path, str(Path(path))}
        analysis.modules = [(m.span, m) for m in walk(net.root)
                            if m.path and m.span.file in here]
    return analysis


def summary_rows(analysis: Analysis) -> dict:
    """The summary's row of every layer (receptive fields need the whole network traced)."""
    from archc.backends.summary import summarize

    net = analysis.result.network
    return {row.path: row for row in summarize(net)} if analysis.modules and net else {}


# --------------------------------------------------------------------------- diagnostics


def to_range(span: ir.Span) -> lsp.Range:
    """An archc span (1-based, end exclusive) as an LSP range (0-based)."""
    return lsp.Range(lsp.Position(max(span.line - 1, 0), max(span.column - 1, 0)),
                     lsp.Position(max(span.end_line - 1, 0), max(span.end_column - 1, 0)))


def lsp_diagnostics(analysis: Analysis) -> list[lsp.Diagnostic]:
    """The check's diagnostics for this document; those in imported files are shown at
    the import that brings them in."""
    out = []
    defines_library = analysis.spec is not None and any(
        isinstance(s, (ir.BlockDef, ir.TableDef)) for s in analysis.spec.statements)
    for diag in analysis.result.diagnostics:
        if diag.code == "E108" and defines_library:  # a library of blocks has no network
            continue
        out.append(_lsp_diagnostic(diag, analysis))
    return out


def _lsp_diagnostic(diag: Diagnostic, analysis: Analysis) -> lsp.Diagnostic:
    message = diag.message
    if diag.hint:
        message += f"\n= hint: {diag.hint}"
    message += "".join(f"\n= note: {n}" for n in diag.notes)
    span = diag.span
    if Path(span.file) != Path(analysis.path):
        message = f"{span.file}:{span.line}:{span.column}: {message}"
        span = _import_span(analysis) or ir.Span.model_construct(file=analysis.path)
    severity = (lsp.DiagnosticSeverity.Error if diag.is_error
                else lsp.DiagnosticSeverity.Warning)
    return lsp.Diagnostic(range=to_range(span), message=message, severity=severity,
                          code=diag.code, source="archc")


def _import_span(analysis: Analysis) -> ir.Span | None:
    imports = analysis.spec.of(ir.Import) if analysis.spec else []
    return imports[0].span if imports else None


# --------------------------------------------------------------------------- hover


def _contains(span: ir.Span, line: int, column: int) -> bool:
    if not span.line <= line <= span.end_line:
        return False
    if line == span.line and column < span.column:
        return False
    return not (line == span.end_line and column >= span.end_column)


def _size(span: ir.Span) -> tuple[int, int]:
    return span.end_line - span.line, span.end_column - span.column


def modules_at(analysis: Analysis, position: lsp.Position) -> list[Module]:
    """The modules made by the innermost item at a position (several for a block's body)."""
    line, column = position.line + 1, position.character + 1
    hits = [(span, m) for span, m in analysis.modules if _contains(span, line, column)]
    if not hits:
        return []
    smallest = min(_size(span) for span, _ in hits)
    return [m for span, m in hits if _size(span) == smallest]


def hover_text(analysis: Analysis, modules: list[Module]) -> str:
    """Markdown for one item: what it is, its shapes, parameters, MACs, receptive field."""
    from archc.backends.summary import compact, layer_text, scope_heading
    from archc.layers import fmt

    first = modules[0]
    inner = list(layers(first))
    params, macs = sum(m.n_params for m in inner), sum(m.macs for m in inner)
    title = layer_text(first) if isinstance(first, LayerNode) else scope_heading(first)
    lines = [f"**{title}**  `{first.path}`", "",
             f"{fmt(first.in_shape)} → {fmt(first.out_shape)}", "",
             f"parameters {params:,} · {compact(macs)} MACs" if macs else
             f"parameters {params:,} · no MACs"]
    row = (analysis.rows or {}).get(inner[-1].path) if inner else None
    if row is not None:
        field_text = "the whole input" if row.rf_global else _pair(row.rf)
        lines[-1] += f" · receptive field {field_text}, stride {_pair(row.jump)}"
    if len(modules) > 1:
        lines += ["", f"one of {len(modules)} uses; the others: "
                  + ", ".join(f"`{m.path}`" for m in modules[1:6])
                  + (", ..." if len(modules) > 6 else "")]
    return "\n".join(lines)


def _pair(value: tuple[int, int]) -> str:
    return f"{value[0]}×{value[1]}"


# --------------------------------------------------------------------------- definition


def word_at(text: str, position: lsp.Position) -> tuple[str, int] | None:
    """The word (or string, or `table[variant]`) under the cursor, and where it starts."""
    lines = text.split("\n")
    if position.line >= len(lines):
        return None
    line = lines[position.line]
    for m in WORD.finditer(line):
        if m.start() <= position.character <= m.end():
            return m.group(), m.start()
    return None


def definition(analysis: Analysis, text: str, position: lsp.Position) -> lsp.Location | None:
    """Where the block, table, variant, network or imported file under the cursor is."""
    tensor = tensor_at(text, position)
    if tensor is not None:
        span = tensor_definition(analysis.spec, tensor, position)
        return _location(span) if span is not None else None
    found = word_at(text, position)
    if found is None:
        return None
    word, _ = found
    program = analysis.program
    if word[0] in "\"'":  # an import's path
        target = (Path(analysis.path).parent / word[1:-1]).resolve()
        if target.is_file():
            return lsp.Location(from_fs_path(str(target)), lsp.Range(lsp.Position(0, 0),
                                                                     lsp.Position(0, 0)))
        return None
    if re.fullmatch(notation.TABLE_REF, word):
        name, variant = word[:-1].split("[", 1)
        if name in program.tables:
            table = program.tables[name]
            rows = [r for r in table.rows if r.variant == variant]
            return _location(rows[0].span if rows else table.name_span)
    name = word.rstrip(":")
    for definitions in (program.blocks, program.networks, program.tables):
        if name in definitions:
            return _location(definitions[name].name_span)
    return None


def tensor_at(text: str, position: lsp.Position) -> str | None:
    """The name of the `@name` reference under the cursor, or None."""
    lines = text.split("\n")
    if position.line >= len(lines):
        return None
    for m in TENSOR.finditer(lines[position.line]):
        if m.start() <= position.character <= m.end():
            return m.group(1)
    return None


def tensor_definition(spec: ir.SpecFile | None, name: str,
                      position: lsp.Position) -> ir.Span | None:
    """Where `-> name` (or a block's `@name` parameter) gives the tensor that an `@name` at
    `position` reads: the last one above it in the same block or network (or the last of
    the body, for a block's declared outputs and for a name given only later)."""
    here = (position.line + 1, position.character + 1)
    for stmt in (spec.statements if spec else []):
        if not isinstance(stmt, ir.BlockDef | ir.NetworkDef):
            continue
        if not stmt.span.line <= here[0] <= stmt.span.end_line:
            continue
        spans = [p.span for p in stmt.params if p.tensor and p.name == name]
        spans += _binds(stmt.body, name)
        above = [s for s in spans if (s.line, s.column) < here]
        found = above or spans
        return found[-1] if found else None
    return None


def _binds(items: list, name: str) -> list[ir.Span]:
    """The spans of every `-> name` in items, in source order."""
    found: list[ir.Span] = []
    for item in items:
        if isinstance(item, ir.Bind):
            found += [span for n, span in zip(item.names, item.names_span) if n == name]
        elif isinstance(item, ir.Tap):
            found += _binds([item.head], name)
        else:
            found += _binds(getattr(item, "items", None) or getattr(item, "branches", None)
                            or [], name)
    return sorted(found, key=lambda s: (s.line, s.column))


def _location(span: ir.Span) -> lsp.Location:
    return lsp.Location(from_fs_path(str(Path(span.file).resolve())), to_range(span))


# --------------------------------------------------------------------------- completion

KIND = lsp.CompletionItemKind


def completions(analysis: Analysis | None, text: str,
                position: lsp.Position) -> list[lsp.CompletionItem]:
    """What may be written at the cursor: a kind's parameters inside its parentheses, a
    table's variants inside its brackets, else layer kinds and block names."""
    lines = text.split("\n")
    line = lines[position.line] if position.line < len(lines) else ""
    # what the cursor stands in is decided by the text just before it: a bounded window
    # keeps a 20,000-character line from making each request quadratic
    before = line[max(0, position.character - COMPLETION_WINDOW):position.character]
    program = analysis.program if analysis else None
    table = OPEN_TABLE.search(before)
    if table and program and table.group(1) in program.tables:
        return [lsp.CompletionItem(r.variant, kind=KIND.EnumMember, detail=f"{table.group(1)} "
                                   "configuration") for r in program.tables[table.group(1)].rows]
    callee = _open_call(before)
    if callee is not None:
        return _parameter_items(callee, program)
    return _kind_items() + _block_items(program)


def _open_call(before: str) -> str | None:
    """The word whose parentheses the cursor is inside, if any."""
    depth = 0
    for i in range(len(before) - 1, -1, -1):
        char = before[i]
        if char == ")":
            depth += 1
        elif char == "(":
            if depth == 0:
                word = CALLEE.search(before[:i])
                return word.group(1) if word else None
            depth -= 1
    return None


def _parameter_items(word: str, program) -> list[lsp.CompletionItem]:
    from archc.compiler.parse import notation_kind
    from archc.layers import lookup

    kind = lookup(word) or lookup(notation_kind(word) or "")
    if kind is not None:
        return [lsp.CompletionItem(f"{name}=", kind=KIND.Property, insert_text=f"{name}=",
                                   detail=f"{kind.name}: {p.expects}", documentation=p.doc)
                for p in kind.params for name in (p.name, *p.aliases)]
    block = program.blocks.get(word) if program else None
    if block is not None:
        return [lsp.CompletionItem(f"{p.name}=", kind=KIND.Property, insert_text=f"{p.name}=",
                                   detail=f"parameter of block {block.name}")
                for p in block.params]
    return []


def _kind_items() -> list[lsp.CompletionItem]:
    from archc.layers import KINDS

    return [lsp.CompletionItem(name, kind=KIND.Function, detail=f"layer kind {kind.name}",
                               documentation=kind.doc)
            for kind in KINDS for name in (kind.name, *kind.aliases)]


def _block_items(program) -> list[lsp.CompletionItem]:
    if program is None:
        return []
    return [lsp.CompletionItem(name, kind=KIND.Module, detail="block " + name + "("
                               + ", ".join(p.name for p in block.params) + ")")
            for name, block in program.blocks.items()]


# --------------------------------------------------------------------------- symbols


def symbols(spec: ir.SpecFile | None) -> list[lsp.DocumentSymbol]:
    """Networks, aliases, blocks and tables (with their variants) of the document."""
    out = []
    for stmt in spec.statements if spec else []:
        if isinstance(stmt, ir.NetworkDef):
            out.append(_symbol(stmt.name, lsp.SymbolKind.Class, stmt.span, stmt.name_span,
                               "network"))
        elif isinstance(stmt, ir.NetworkAlias):
            out.append(_symbol(stmt.name, lsp.SymbolKind.Class, stmt.span, stmt.name_span,
                               f"= {stmt.target}(...)"))
        elif isinstance(stmt, ir.BlockDef):
            detail = "(" + ", ".join(p.name for p in stmt.params) + ")"
            out.append(_symbol(stmt.name, lsp.SymbolKind.Function, stmt.span, stmt.name_span,
                               detail))
        elif isinstance(stmt, ir.TableDef):
            rows = [_symbol(r.variant, lsp.SymbolKind.EnumMember, r.span, r.span, "")
                    for r in stmt.rows]
            out.append(_symbol(stmt.name, lsp.SymbolKind.Struct, stmt.span, stmt.name_span,
                               "table", rows))
    return out


def _symbol(name, kind, span, name_span, detail, children=None) -> lsp.DocumentSymbol:
    whole, selection = to_range(span), to_range(name_span)
    if not _inside(selection, whole):
        selection = whole
    return lsp.DocumentSymbol(name=name, kind=kind, range=whole, selection_range=selection,
                              detail=detail, children=children)


def _inside(inner: lsp.Range, outer: lsp.Range) -> bool:
    def key(p: lsp.Position) -> tuple[int, int]:
        return p.line, p.character

    return key(outer.start) <= key(inner.start) and key(inner.end) <= key(outer.end)


# --------------------------------------------------------------------------- the server


class ArchServer(LanguageServer):
    """The language server: documents, their analyses and the worker that checks them."""

    def __init__(self) -> None:
        from archc import __version__

        super().__init__("archc", __version__)
        self.analyses: dict[str, Analysis] = {}
        self.pending: dict[str, asyncio.Task] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="archc-check")

    def schedule(self, uri: str, delay: float) -> None:
        """Check a document once typing has paused for `delay` seconds."""
        old = self.pending.pop(uri, None)
        if old is not None:
            old.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._check(uri, delay))

    async def _check(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        document = self.workspace.get_text_document(uri)
        text, version = document.source, document.version
        previous = self.analyses.get(uri)
        try:
            analysis = await asyncio.get_running_loop().run_in_executor(
                self.worker, analyse, uri, text, version, previous)
        except Exception:  # a bug in archc: keep serving, and say so in the client's log
            logging.getLogger(__name__).exception("archc lsp: checking %s failed (a bug)", uri)
            raise
        if self.workspace.get_text_document(uri).version != version:
            return  # typed on meanwhile: the next check publishes
        self.analyses[uri] = analysis
        self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
            uri=uri, version=version, diagnostics=lsp_diagnostics(analysis)))
        # the diagnostics are out; the hover's figures follow
        analysis.rows = await asyncio.get_running_loop().run_in_executor(
            self.worker, summary_rows, analysis)

    async def analysis(self, uri: str, rows: bool = False) -> Analysis | None:
        """The latest analysis; the first one is waited for (and its summary rows, when
        `rows`, as a hover needs them)."""
        current = self.analyses.get(uri)
        waiting = current is None or (rows and current.rows is None)
        if waiting and uri in self.pending:
            try:
                await asyncio.shield(self.pending[uri])
            except asyncio.CancelledError:
                pass
        return self.analyses.get(uri)


server = ArchServer()


@server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
def _did_open(ls: ArchServer, params: lsp.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0)


@server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
def _did_change(ls: ArchServer, params: lsp.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, DEBOUNCE_S)


@server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
def _did_save(ls: ArchServer, params: lsp.DidSaveTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0)  # imported files may have changed on disk


@server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
def _did_close(ls: ArchServer, params: lsp.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    task = ls.pending.pop(uri, None)
    if task is not None:
        task.cancel()
    ls.analyses.pop(uri, None)
    ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(lsp.TEXT_DOCUMENT_HOVER)
async def _hover(ls: ArchServer, params: lsp.HoverParams) -> lsp.Hover | None:
    analysis = await ls.analysis(params.text_document.uri, rows=True)
    modules = modules_at(analysis, params.position) if analysis else []
    if not modules or analysis is None:
        return None
    return lsp.Hover(lsp.MarkupContent(lsp.MarkupKind.Markdown, hover_text(analysis, modules)))


@server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
async def _definition(ls: ArchServer, params: lsp.DefinitionParams) -> lsp.Location | None:
    analysis = await ls.analysis(params.text_document.uri)
    if analysis is None:
        return None
    text = ls.workspace.get_text_document(params.text_document.uri).source
    return definition(analysis, text, params.position)


@server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                lsp.CompletionOptions(trigger_characters=["(", ",", "[", " "]))
async def _completion(ls: ArchServer, params: lsp.CompletionParams) -> lsp.CompletionList:
    analysis = await ls.analysis(params.text_document.uri)
    text = ls.workspace.get_text_document(params.text_document.uri).source
    return lsp.CompletionList(is_incomplete=False,
                              items=completions(analysis, text, params.position))


@server.feature(lsp.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def _symbols(ls: ArchServer,
                   params: lsp.DocumentSymbolParams) -> list[lsp.DocumentSymbol]:
    analysis = await ls.analysis(params.text_document.uri)
    return symbols(analysis.spec if analysis else None)


@server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
def _formatting(ls: ArchServer, params: lsp.DocumentFormattingParams) -> list[lsp.TextEdit]:
    from archc.tools.fmt import FormatChangedMeaning, FormatRefused, format_text

    document = ls.workspace.get_text_document(params.text_document.uri)
    try:
        new = format_text(document.source, to_fs_path(document.uri) or document.uri)
    except FormatRefused:
        return []  # the diagnostics already show why
    except FormatChangedMeaning as exc:
        ls.window_show_message(lsp.ShowMessageParams(lsp.MessageType.Error, str(exc)))
        return []
    if new == document.source:
        return []
    end = lsp.Position(len(document.lines), 0)
    return [lsp.TextEdit(lsp.Range(lsp.Position(0, 0), end), new)]


def serve() -> None:
    """Serve over stdin/stdout until the client says exit. With the `depth` limit raised,
    the checking threads get the stack that depth needs (limits.run_deep)."""
    import threading

    from archc.compiler import limits

    stack = limits.deep_stack_bytes()
    if stack:
        threading.stack_size(stack)
    server.start_io()
