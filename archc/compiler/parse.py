"""The .arch front end: source text → `ir.SpecFile`.

Lark does the tokenising and parsing (grammar.lark, LALR with an indentation
post-lexer); this module turns lark's tree into IR nodes with spans, and expands the
papers' notation (`conv3-64`, `FC-{n}`, `soft-max`) with the layer registry.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import DedentError, Indenter

from archc.compiler import ir, limits, notation
from archc.compiler.diagnostics import Diagnostics
from archc.layers import MERGES, merge_kind

GRAMMAR = Path(__file__).with_name("grammar.lark")


class _ArchIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR", "LSQB"]
    CLOSE_PAREN_types = ["RPAR", "RSQB"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4


_OPTIONS = dict(parser="lalr", start=["start", "expr"], propagate_positions=True,
                maybe_placeholders=False)


@lru_cache(maxsize=None)
def lark_parser() -> Lark:
    """The .arch parser. One instance serves whole files (`start`) and the `{expression}`
    parts of words (`expr`): one grammar to load, one set of lexer scanners to compile.

    Compiling the grammar takes 65-85 ms, most of a cold `archc check`; reading it back
    from archc's grammar cache about 10 ms. The cache holds lark's own serialised tables as
    tagged JSON (data, never a pickle), under a key of the grammar's text, lark's version and
    the options, checked by `cache.load_entry` like a parsed spec."""
    import lark

    from archc.compiler import cache

    text = GRAMMAR.read_text()
    directory = cache.private_dir("grammar")
    key = cache.data_key(cache.FORMAT, lark.__version__, text, repr(sorted(_OPTIONS.items())))
    if directory is not None:
        tables = cache.load_entry(directory, key, cache.decode_data)
        if tables is not None:
            try:
                return Lark._load_from_dict(tables["data"], tables["memo"],
                                            postlex=_ArchIndenter())
            except Exception:  # noqa: BLE001 - tables of another lark: compile afresh
                directory.remove(key + cache.SUFFIX)
    parser = Lark(text, postlex=_ArchIndenter(), **_OPTIONS)
    if directory is not None:
        cache.store_entry(directory, key, cache.encode_data(_tables(parser)))
    return parser


def _tables(parser: Lark) -> dict:
    """The compiled parser as lark serialises it, without the post-lexer (an object: it is
    passed again on loading)."""
    from lark.grammar import Rule
    from lark.lexer import TerminalDef

    data, memo = parser.memo_serialize([TerminalDef, Rule])
    data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}
    return {"data": data, "memo": memo}


# --------------------------------------------------------------------------- entry points


def parse_text(text: str, path: str, diags: Diagnostics) -> ir.SpecFile | None:
    """Parse .arch source; syntax errors go to `diags` and give None."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not part of the spec
    text = text.replace("\r\n", "\n")  # as every file is read (sources.decode_text)
    if _report_stray_characters(text, path, diags):
        return None
    if not text.endswith("\n"):
        text += "\n"
    try:
        tree = lark_parser().parse(text, start="start")
    except UnexpectedInput as exc:
        diags.add(_syntax_diagnostic(exc, text, path))
        return None
    except DedentError:
        diags.add(_dedent_diagnostic(text, path))
        return None
    if report_too_deep(tree, path, diags):
        return None
    builder = SpecBuilder(path, diags)
    return builder.spec_file(tree)


def _report_stray_characters(text: str, path: str, diags: Diagnostics) -> bool:
    """E001 at the first NUL or lone carriage return: the lexer would take either as part
    of a comment, while an editor (or `archc fmt`) may break the line there."""
    from archc.compiler.text import text_problem

    problem = text_problem(text)
    if problem is None:
        return False
    line, column, message, hint = problem
    diags.error("E001", ir.Span.at(path, line, column, line, column + 1),
                f"syntax error: the spec {message}", hint)
    return True


def parse_expr(text: str, span: ir.Span, diags: Diagnostics) -> ir.Expr | None:
    """Parse one `{expression}` found inside a word; its span is `span`'s position."""
    try:
        tree = lark_parser().parse(text, start="expr")
    except UnexpectedInput:
        diags.error(
            "E109",
            span,
            f"invalid expression `{text}`",
            "expressions use numbers, names, + - * / // % ** and parentheses",
        )
        return None
    # an expression of n characters nests at most n deep: most need no walk
    if len(text) > limits.get("depth") and report_too_deep(tree, span.file, diags, origin=span):
        return None
    return SpecBuilder(span.file, diags, origin=span).expr(tree)


# Tree nodes that are one level of nesting as a user counts it: a bracket, an indented block,
# a call's parentheses, an operator of an expression (`1+1+1` nests two deep).
_NESTING = {
    "group", "block_line", "for_line", "if_line", "inline_for", "inline_if", "tap", "call",
    "func", "tuple", "ifelse", "or_", "and_",
    "not_", "compare", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg", "pos", "pow",
}


def report_too_deep(tree: Tree, path: str, diags: Diagnostics, origin=None) -> bool:
    """Report (E205) and return True when `tree` nests deeper than the `depth` limit. The
    walk is iterative: the builder and the resolver recurse once per level, so this check
    must come first for `[[[...]]]` 300 deep not to end in a RecursionError."""
    most = limits.get("depth")
    stack: list[tuple[Tree, int, int]] = [(tree, 0, 0)]
    while stack:
        node, levels, raw = stack.pop()
        levels += node.data in _NESTING
        # the raw depth bounds recursion through any rule, named above or added later
        if levels > most or raw > 6 * most:
            where = SpecBuilder(path, diags, origin=origin).span(node)
            diags.error(
                "E205", where, f"the spec nests more than {most} levels deep",
                limits.hint("depth"),
            )
            return True
        stack.extend((child, levels, raw + 1) for child in node.children
                     if isinstance(child, Tree))
    return False


def notation_kind(word: str) -> str | None:
    """The layer kind a word reads as in paper notation (`conv_1` → conv), or None."""
    callee, _ = SpecBuilder("<name>", Diagnostics()).word_text(word, ir.Span.model_construct())
    from archc.layers import REGISTRY

    return callee if callee in REGISTRY else None


# --------------------------------------------------------------------------- syntax errors

_TOKEN_NAMES = {
    "_NL": "a new line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "LABEL": "a `name:` label",
    "LABEL_END": "a `name:` label",
    "COMPARE": "a comparison",
    "WORD": "a layer or block",
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "STRING": "a string",
    "REPEAT": "a repeat like `x3`",
    "TABLE_REF": "a table column like `vgg[D]`",
    "SHAPE": "a shape like `3x224x224`",
    "REF": "a tensor reference like `@a`",
    "ARROW": "`->`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "LSQB": "`[`",
    "RSQB": "`]`",
    "COLON": "`:`",
    "COMMA": "`,`",
    "EQUAL": "`=`",
    "PLUS": "`+`",
    "MINUS": "`-`",
    "STAR": "`*`",
    "SLASH": "`/`",
    "PERCENT": "`%`",
    "DOUBLESLASH": "`//`",
    "DOUBLESTAR": "`**`",
    "$END": "the end of the file",
}


def _describe(names: set[str]) -> str:
    if "WORD" in names:  # after items, `:` only closes a merge with arguments
        names = names - {"COLON"}  # (`split(sizes=(...)):`): the hint keeps to the usual
    words = sorted({_TOKEN_NAMES.get(n) or _literal(n) for n in names})
    if len(words) > 6:
        words = words[:6] + ["..."]
    return ", ".join(words)


def _literal(name: str) -> str:
    """How to show a terminal the table does not name: its literal text (`//`, `block`)."""
    for term in lark_parser().terminals:
        if term.name == name and term.pattern.type == "str":
            return f"`{term.pattern.value}`"
    return f"`{name.lower()}`"


def _syntax_diagnostic(exc: UnexpectedInput, text: str, path: str):
    from archc.compiler.diagnostics import Diagnostic

    line, col = max(getattr(exc, "line", 1) or 1, 1), max(getattr(exc, "column", 1) or 1, 1)
    width = 1
    hint: str | None
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        found = (
            "end of block"
            if tok.type == "_DEDENT"
            else (
                "indentation"
                if tok.type == "_INDENT"
                else ("end of line" if tok.type == "_NL" else f"`{tok.value}`")
            )
        )
        message = f"unexpected {found}"
        hint = f"expected {_describe(set(exc.expected))}"
        opener = unclosed(text) if tok.type in ("_DEDENT", "$END") else None
        if opener is not None:
            line, col, char = opener
            message, hint = f"`{char}` is never closed", _CLOSE_HINTS[char]
        elif tok.type == "_INDENT":  # point at the over-indented line, not the one before
            line, col, width = _indented_line(text, tok)
            hint = _indent_hint(text, line)
        elif tok.type in ("_NL", "_DEDENT", "$END"):
            line, col = _end_of_previous_line(text, tok)
        else:
            width = max(len(str(tok.value)), 1)
    elif isinstance(exc, UnexpectedCharacters):
        assert exc.pos_in_stream is not None  # the lexer says where it stopped
        message = f"unexpected character `{text[exc.pos_in_stream]}`"
        hint = f"expected {_describe(set(exc.allowed or ()))}" if exc.allowed else None
    elif isinstance(exc, UnexpectedEOF):
        message = "unexpected end of file"
        hint = f"expected {_describe(set(exc.expected))}"
        line, col = _last_position(text)
        opener = unclosed(text)
        if opener is not None:
            line, col, char = opener
            message, hint = f"`{char}` is never closed", _CLOSE_HINTS[char]
    else:  # pragma: no cover - lark has no other kinds today
        message, hint = str(exc).splitlines()[0], None
    if "indent" in str(exc).lower() and "Unexpected" not in message:
        hint = _indent_hint(text, line)
    span = ir.Span.model_construct(
        file=path, line=line, column=col, end_line=line, end_column=col + width
    )
    return Diagnostic("E001", "error", span, f"syntax error: {message}", hint)


_CLOSE_HINTS = {
    "[": "close the group with `]`",
    "(": "close the parentheses with `)`",
    "{": "close the expression with `}`",
}


def unclosed(text: str) -> tuple[int, int, str] | None:
    """The first bracket still open at the end of the text (comments and strings skipped)."""
    stack: list[tuple[int, int, str]] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for number, line in enumerate(text.splitlines(), 1):
        quote = None
        for col, ch in enumerate(line, 1):
            if quote:
                quote = None if ch == quote else quote
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                break
            elif ch in "([{":
                stack.append((number, col, ch))
            elif ch in pairs and stack and stack[-1][2] == pairs[ch]:
                stack.pop()
    return stack[0] if stack else None


def _indented_line(text: str, tok: Token) -> tuple[int, int, int]:
    """Line, column and word width of the first non-blank character after `tok`'s newline."""
    pos = tok.start_pos if tok.start_pos is not None else 0
    rest = text[pos:]
    skipped = len(rest) - len(rest.lstrip())
    start = pos + skipped
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    word = text[start:].split(None, 1)[0] if text[start:].strip() else " "
    return line, col, len(word)


def _dedent_diagnostic(text: str, path: str):
    """The first line that unindents to a column no enclosing block starts at."""
    from archc.compiler.diagnostics import Diagnostic

    stack, depth = [0], 0
    line_no, column, width = 1, 1, 1
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" \t")
        if depth == 0 and stripped and not stripped.startswith("#"):
            indent = len(line.expandtabs(_ArchIndenter.tab_len)) - len(stripped)
            if indent > stack[-1]:
                stack.append(indent)
            else:
                while indent < stack[-1]:
                    stack.pop()
                if indent != stack[-1]:  # the span counts characters, as lark's do
                    line_no, column = number, len(line) - len(stripped) + 1
                    width = len(stripped.split()[0])
                    break
        depth = max(
            0, depth + sum(stripped.count(c) for c in "([") - sum(stripped.count(c) for c in ")]")
        )
    span = ir.Span.model_construct(
        file=path, line=line_no, column=column, end_line=line_no, end_column=column + width
    )
    return Diagnostic(
        "E001",
        "error",
        span,
        "syntax error: unindent does not match any outer indentation level",
        _indent_hint(text, line_no),
    )


def _indent_hint(text: str, line: int) -> str:
    """The hint for an indentation error on `line`: about tabs when they are involved."""
    lines = text.splitlines()
    here = lines[line - 1] if 1 <= line <= len(lines) else ""
    if "\t" in here[: len(here) - len(here.lstrip())]:
        return (f"this line is indented with a tab, which counts as {_ArchIndenter.tab_len} "
                "columns; indent with spaces only")
    if any(ln[: len(ln) - len(ln.lstrip())].count("\t") for ln in lines):
        return (f"the file indents some lines with tabs ({_ArchIndenter.tab_len} columns each) "
                "and others with spaces; indent with spaces only")
    return "indent the block with the same number of spaces on every line"


def _end_of_previous_line(text: str, tok: Token) -> tuple[int, int]:
    pos = tok.start_pos if tok.start_pos is not None else len(text)
    before = text[:pos].rstrip("\n \t")
    line = before.count("\n") + 1
    col = len(before) - (before.rfind("\n") + 1) + 1
    return line, col


def _last_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    line = stripped.count("\n") + 1
    return line, len(stripped) - (stripped.rfind("\n") + 1) + 1


# --------------------------------------------------------------------------- tree → IR

_BINOPS = {
    "add": "+",
    "sub": "-",
    "mul": "*",
    "floordiv": "//",
    "truediv": "/",
    "mod": "%",
    "pow": "**",
}
MISPLACED = "`after` and `input` belong at the top of a network or block body"
MERGE_MODES = tuple(MERGES)  # the merge keywords, from the merge table
_COMPARE_OPS = {"and_": "and", "or_": "or"}


class SpecBuilder:
    """Turns lark's tree into IR nodes; `origin` offsets spans of a re-parsed fragment."""

    def __init__(self, path: str, diags: Diagnostics, origin: ir.Span | None = None):
        self.path, self.diags, self.origin = path, diags, origin

    # spans ------------------------------------------------------------------

    def span(self, node: Tree | Token) -> ir.Span:
        if isinstance(node, Token):
            line, col, eline, ecol = node.line, node.column, node.end_line, node.end_column
            # the lexer gives every token its position (lark types them optional)
            assert line is not None and col is not None and eline is not None and ecol is not None
        else:
            m = node.meta
            if m.empty:
                return self.origin or ir.Span.model_construct(file=self.path)
            line, col, eline, ecol = m.line, m.column, m.end_line, m.end_column
        if self.origin is not None:  # a fragment inside a word: shift onto the word's line
            base = self.origin
            return ir.Span.at(self.path, base.line, base.column + col - 1, base.line,
                              base.column + ecol - 1)
        return ir.Span.at(self.path, line, col, eline, ecol)

    @staticmethod
    def sub(span: ir.Span, start: int, end: int) -> ir.Span:
        """The span of characters [start, end) of a one-line token."""
        return span.model_copy(
            update={
                "column": span.column + start,
                "end_column": span.column + end,
                "end_line": span.line,
            }
        )

    # statements -----------------------------------------------------------------

    def spec_file(self, tree: Tree) -> ir.SpecFile:
        stmts = []
        for index, child in enumerate(tree.children):
            tree.children[index] = None  # let go of the statement's subtree once it is built
            if isinstance(child, Tree):
                stmt = getattr(self, child.data)(child)
                if stmt is not None:
                    stmts.append(stmt)
        return ir.SpecFile.model_construct(path=self.path, statements=stmts)

    def import_stmt(self, t: Tree) -> ir.Import:
        return ir.Import.model_construct(path=str(t.children[0])[1:-1], span=self.span(t))

    def _definition(self, t: Tree) -> tuple[Token, list[ir.Param], Tree]:
        name, *rest = t.children
        body = rest[-1]
        assert isinstance(name, Token) and isinstance(body, Tree)  # as the grammar builds them
        sig = [c for c in rest if isinstance(c, Tree) and c.data.endswith("signature")]
        params = self.signature(sig[0]) if sig else []
        return name, params, body

    def block_def(self, t: Tree) -> ir.BlockDef:
        name, params, body = self._definition(t)
        outs = [c for c in t.children if isinstance(c, Tree) and c.data == "block_outputs"]
        outputs = [str(tok)[1:] for tok in outs[0].children
                   if isinstance(tok, Token) and tok.type == "REF"] if outs else []
        items, after, inputs = self.body(body)
        for decl in inputs:
            self.diags.error(
                "E001",
                decl.span,
                "a block cannot declare an input",
                "declare `input` in the network that uses the block",
            )
        declared: dict[str, Any] = {"outputs": outputs} if outputs else {}
        return ir.BlockDef.model_construct(
            name=str(name),
            params=params,
            **declared,
            after=after,
            body=items,
            span=self.span(t),
            name_span=self.span(name),
        )

    def network_def(self, t: Tree) -> ir.NetworkDef:
        name, params, body = self._definition(t)
        items, after, inputs = self.body(body)
        for extra in inputs[1:]:
            self.diags.error("E106", extra.span, "the network declares its input twice")
        return ir.NetworkDef.model_construct(
            name=str(name),
            params=params,
            input=inputs[0] if inputs else None,
            after=after,
            body=items,
            span=self.span(t),
            name_span=self.span(name),
        )

    def network_alias(self, t: Tree) -> ir.NetworkAlias:
        name, target, *rest = t.children
        args = self.arguments(rest[0]) if rest else []
        return ir.NetworkAlias.model_construct(
            name=str(name),
            target=str(target),
            args=args,
            span=self.span(t),
            name_span=self.span(name),
        )

    def table_def(self, t: Tree) -> ir.TableDef:
        name, *rows = t.children
        return ir.TableDef.model_construct(
            name=str(name),
            rows=[self.table_row(r) for r in rows],
            span=self.span(t),
            name_span=self.span(name),
        )

    def table_row(self, t: Tree) -> ir.TableRow:
        label, items = t.children
        return ir.TableRow.model_construct(
            variant=str(label)[:-1], items=self.items(items), span=self.span(t)
        )

    def train_def(self, t: Tree) -> ir.TrainDef | None:
        label, *assignments = t.children
        if str(label) != "train:":
            self.diags.error(
                "E001",
                self.span(label),
                f"unexpected section `{label}`",
                "top-level sections are `block`, `network`, `table`, `import` and `train:`",
            )
            return None
        settings = [
            ir.Setting.model_construct(
                name=str(a.children[0]), value=self.expr(a.children[1]), span=self.span(a)
            )
            for a in assignments
        ]
        return ir.TrainDef.model_construct(settings=settings, span=self.span(t))

    def signature(self, t: Tree) -> list[ir.Param]:
        params = []
        for p in t.children:
            if p.data == "tensor_param":  # `@lo`: a named tensor the caller passes
                params.append(ir.Param.model_construct(
                    name=str(p.children[0])[1:], tensor=True, span=self.span(p)))
                continue
            name, *default = p.children
            params.append(
                ir.Param.model_construct(
                    name=str(name),
                    default=self.expr(default[0]) if default else None,
                    span=self.span(p),
                )
            )
        return params

    # bodies -----------------------------------------------------------------------

    def body(self, t: Tree) -> tuple[list, list[ir.After], list[ir.InputDecl]]:
        """The items, `after` statements and input declarations of an indented body."""
        return self.body_lines(t.children)

    def body_lines(self, lines: list[Any]) -> tuple[list, list[ir.After], list[ir.InputDecl]]:
        """`body` of some of a body's lines. Each line is let go of once it is built (`lines`
        holds None after): lark's tree is as large as the IR, and need not be alive with all
        of it at once."""
        items, after, inputs = [], [], []
        for index, line in enumerate(lines):
            lines[index] = None
            kind = line.data
            if kind == "input_stmt":
                inputs.append(self.input_stmt(line))
            elif kind == "after_stmt":
                label, its = line.children
                after.append(
                    ir.After.model_construct(
                        kind=str(label)[:-1], items=self.items(its), span=self.span(line)
                    )
                )
            elif kind == "item_line":
                items.extend(self.items(line.children[0]))
            elif kind == "for_line":
                items.append(self.for_line(line))
            elif kind == "if_line":
                items.append(self.if_line(line))
            else:
                item = self.block_line(line)
                if item is not None:
                    items.append(item)
        return items, after, inputs

    def input_stmt(self, t: Tree) -> ir.InputDecl:
        tok = t.children[0]
        span = self.span(tok)
        dims = []
        for text, start, end in notation.dims(str(tok)):
            dims.append(self.atom_value(text, self.sub(span, start, end)))
        return ir.InputDecl.model_construct(dims=[d for d in dims if d is not None], span=span)

    def block_line(self, t: Tree):
        """`name:` or `concat:` / `add:` or `name: concat:` followed by an indented body.

        `conv3-64 relu concat:` (items, then a merge ending the line) is a sequence that ends
        in the merge, with no naming level of its own: one branch of an enclosing merge.
        """
        first = t.children[0]
        lead = first if isinstance(first, Tree) and first.data == "items" else None
        labels = [c for c in t.children if isinstance(c, Token)]
        body = t.children[-1]
        words = [str(lab)[:-1] for lab in labels]
        spans = [self.span(lab) for lab in labels]
        args: list[ir.Arg] = []
        if lead is not None and not labels:  # `split(sizes=(16, 24, 24)):`
            head = self.merge_head(lead)
            if head is None:
                return None
            lead, words, spans, args = head
        keyword = merge_kind(words[-1])  # `Concat:` is `concat:`
        mode = keyword.name if keyword else None
        name = words[0] if (mode is None or len(words) == 2) else None
        if len(words) == 2 and mode is None:
            self.diags.error(
                "E001",
                spans[1],
                f"`{words[1]}:` is not a merge",
                "a second label on a block line must be `concat:` or `add:`",
            )
            return None
        if lead is not None and mode is None:
            self.diags.error(
                "E001",
                spans[-1],
                f"`{words[-1]}` after items must be a merge such as `concat:` or `add:`",
                "a line may end in a merge whose branches are indented below it; "
                "put a labelled group on a line of its own",
            )
            return None
        # a merge's branches are built by `branch_lines` alone: building them here as well
        # doubled the work at every level, 2^n for n nested merges
        lines = body.children if mode is None else [
            line for line in body.children if line.data in ("after_stmt", "input_stmt")]
        items, after, inputs = self.body_lines(lines)
        misplaced: list[ir.After | ir.InputDecl] = [*after, *inputs]
        for bad in misplaced:
            self.diags.error("E001", bad.span, MISPLACED)
        span = self.span(t)
        if mode is None:
            return ir.Group.model_construct(items=items, label=name, span=span)
        merge = ir.Merge.model_construct(
            mode=mode,
            branches=self.branch_lines(body),
            args=args,
            label=name,
            span=spans[-1].to(span),
        )
        if lead is None:
            return merge.model_copy(update={"span": span})
        return ir.Group.model_construct(items=[*self.items(lead), merge], span=span)

    def merge_head(self, lead: Tree
                   ) -> tuple[Tree | None, list[str], list[ir.Span], list[ir.Arg]] | None:
        """`conv1-64 mix: split(sizes=(16, 24, 24)):`: the items before the merge (None
        when none), the label and merge words with their spans, and the merge's named
        arguments; None after an error (the last item is not a call of a merge)."""
        *rest, last = lead.children
        parts = last.children if isinstance(last, Tree) and last.data == "item" else []
        tokens = [c for c in parts if isinstance(c, Token)]  # its label and repeat
        atom = next((c for c in parts if isinstance(c, Tree)), None)
        if (
            atom is None
            or atom.data != "layer"
            or len(atom.children) != 2
            or merge_kind(str(atom.children[0])) is None
            or any(tok.type == "REPEAT" for tok in tokens)
        ):
            self.diags.error(
                "E001", self.span(last), "only a merge with arguments may end a line in `:`",
                "write `split(sizes=(16, 24, 24)):` with one branch per indented line, or "
                "`name:` for a labelled group",
            )
            return None
        word, call = atom.children
        label = [tok for tok in tokens if tok.type == "LABEL"]
        raw = call.children[0].children if call.children else []
        args = self.merge_args(str(word), raw)
        if args is None:
            return None
        return (
            Tree("items", rest) if rest else None,
            [*(str(tok)[:-1] for tok in label), str(word)],
            [*(self.span(tok) for tok in label), self.span(atom)],
            args,
        )

    def merge_args(self, mode: str, raw: list[Tree]) -> list[ir.Arg] | None:
        """A merge's named arguments (`sizes=(16, 24, 24)`); None after an error."""
        args = []
        for arg in raw:
            if arg.data != "argument" or len(arg.children) != 2:
                self.diags.error(
                    "E001", self.span(arg), f"`{mode}(...):` takes named arguments only",
                    f"write `{mode}(sizes=(16, 24, 24)):` and one branch per indented line",
                )
                return None
            args.extend(self.arguments(Tree("arguments", [arg])))
        return args

    def for_line(self, t: Tree) -> ir.For:
        """`for NAMES in ITERABLE:` with its items on the line or in an indented body."""
        targets, iterable, body = t.children
        names = self.targets(targets)
        if body.data == "items":
            items = self.items(body)
        else:
            items, after, inputs = self.body(body)
            misplaced: list[ir.After | ir.InputDecl] = [*after, *inputs]
            for bad in misplaced:
                self.diags.error("E001", bad.span, MISPLACED)
        return ir.For.model_construct(
            names=names, iterable=self.expr(iterable), items=items, span=self.span(t)
        )

    def if_line(self, t: Tree) -> ir.If:
        """`if TEST:` with its items on the line or in an indented body."""
        test, body = t.children
        if body.data == "items":
            items = self.items(body)
        else:
            items, after, inputs = self.body(body)
            misplaced: list[ir.After | ir.InputDecl] = [*after, *inputs]
            for bad in misplaced:
                self.diags.error("E001", bad.span, MISPLACED)
        return ir.If.model_construct(test=self.expr(test), items=items, span=self.span(t))

    @staticmethod
    def targets(t: Tree) -> list:
        """`i, (c, n)` → ["i", ["c", "n"]]: the names a loop or a comprehension binds."""
        return [
            str(c) if isinstance(c, Token) else [str(n) for n in c.children] for c in t.children
        ]

    def branch_lines(self, body: Tree) -> list:
        """Each line of a merge body is one branch; several items on a line form a sequence."""
        branches = []
        for line in body.children:
            if line.data == "item_line":
                items = self.items(line.children[0])
                if len(items) == 1:
                    branches.append(items[0])
                else:
                    branches.append(ir.Group.model_construct(items=items, span=self.span(line)))
            elif line.data == "block_line":
                item = self.block_line(line)
                if item is not None:
                    branches.append(item)
            elif line.data == "for_line":
                branches.append(self.for_line(line))
            elif line.data == "if_line":
                branches.append(self.if_line(line))
        return branches

    # items -----------------------------------------------------------------------

    def items(self, t: Tree) -> list:
        return [it for it in (self.item(c) for c in t.children) if it is not None]

    def item(self, t: Tree):
        if t.data == "bind":
            names = [n for n in t.children if isinstance(n, Token) and n.type == "NAME"]
            return ir.Bind.model_construct(names=[str(n) for n in names], span=self.span(t),
                                           names_span=[self.span(n) for n in names])
        label, repeat = None, None
        children = list(t.children)
        label_span = None
        if isinstance(children[0], Token) and children[0].type == "LABEL":
            tok = children.pop(0)
            label = str(tok)[:-1]
            label_span = self.span(tok).model_copy(
                update={"end_column": self.span(tok).end_column - 1}
            )
        last = children[-1]
        if isinstance(last, Token) and last.type == "REPEAT":
            children.pop()
            repeat = self.repeat(last)
        node = self.atom(children[0])
        if node is None:
            return None
        updates: dict[str, Any] = {}
        if label is not None:
            updates["label"] = label
            updates["label_span"] = label_span
        if repeat is not None:
            updates["repeat"] = repeat
        return node.model_copy(update=updates) if updates else node

    def repeat(self, tok: Token) -> ir.Expr | None:
        text = str(tok)[1:]
        return self.atom_value(text, self.sub(self.span(tok), 1, len(str(tok))))

    def atom(self, t: Tree | Token):
        if isinstance(t, Token):  # a TABLE_REF
            table, variant = str(t)[:-1].split("[", 1)
            return ir.TableRef.model_construct(
                table=table, variant=variant.strip(), span=self.span(t)
            )
        if t.data == "layer":
            return self.layer(t)
        if t.data == "group":
            return ir.Group.model_construct(items=self.group_items(t), span=self.span(t))
        if t.data == "ref":
            return ir.Ref.model_construct(name=str(t.children[0])[1:], span=self.span(t))
        if t.data == "tap":
            head = self.atom(t.children[0])
            return None if head is None else ir.Tap.model_construct(head=head, span=self.span(t))
        if t.data == "table_ref":
            return self.atom(t.children[0])
        raise AssertionError(t.data)  # pragma: no cover - the grammar has no other atoms

    def group_items(self, t: Tree) -> list:
        """A bracket's items; a trailing `for` or `if` takes the items up to the `]`."""
        items = []
        for part in t.children:
            if part.data == "items":
                items.extend(self.items(part))
            elif part.data == "inline_for":
                targets, iterable, body = part.children
                items.append(ir.For.model_construct(
                    names=self.targets(targets), iterable=self.expr(iterable),
                    items=self.items(body), span=self.span(part)))
            else:
                test, body = part.children
                items.append(ir.If.model_construct(
                    test=self.expr(test), items=self.items(body), span=self.span(part)))
        return items

    def layer(self, t: Tree) -> ir.Layer | ir.Merge | None:
        word = t.children[0]
        assert isinstance(word, Token)  # a call starts with its word
        raw = t.children[1].children[0].children if (
            len(t.children) > 1 and t.children[1].children) else []
        keyword = merge_kind(str(word))
        if keyword is not None and raw:
            return self.merge_call(keyword.name, raw, self.span(t))
        for bad in (a for a in raw if a.data == "group_arg"):
            self.diags.error(
                "E001", self.span(bad), f"`{word}` takes values, not a bracketed sequence",
                "only a merge takes bracketed branches: add([conv3-64 bn], [shortcut])",
            )
            return None
        explicit = self.arguments(t.children[1].children[0]) if raw else []
        callee, sugar = self.word(word)
        if callee is None:
            return None
        return ir.Layer.model_construct(
            callee=callee, args=[*sugar, *explicit], span=self.span(t), callee_span=self.span(word)
        )

    def merge_call(self, mode: str, raw: list[Tree], span: ir.Span) -> ir.Merge | None:
        """`concat(@a, @b)`, `add([conv3-64 bn], [shortcut])`: a merge on one line whose
        branches are named tensors or bracketed sequences (one item in brackets is that
        item, so `[shortcut]` is the shortcut branch)."""
        branches = []
        args: list[ir.Arg] = []
        for arg in raw:
            if arg.data == "argument" and len(arg.children) == 2:  # `sizes=(16, 24, 24)`
                args.extend(self.arguments(Tree("arguments", [arg])))
                continue
            if arg.data == "group_arg":
                group = arg.children[0]
                items = self.group_items(group)
                branches.append(items[0] if len(items) == 1 else ir.Group.model_construct(
                    items=items, span=self.span(group)))
                continue
            value = arg.children[-1]
            if len(arg.children) == 1 and isinstance(value, Tree) and value.data == "tensor_ref":
                branches.append(ir.Ref.model_construct(name=str(value.children[0])[1:],
                                                       span=self.span(arg)))
                continue
            self.diags.error(
                "E001", self.span(arg), f"`{mode}(...)` takes named tensors and bracketed "
                "branches", f"write `{mode}(@a, [conv1-64 bn])`, or `{mode}:` with one branch "
                "per indented line",
            )
            return None
        return ir.Merge.model_construct(mode=mode, branches=branches, args=args, span=span)

    def word(self, tok: Token) -> tuple[str | None, list[ir.Arg]]:
        """Split paper notation: `conv3-64` → ("conv", [kernel=3, out=64])."""
        return self.word_text(str(tok), self.span(tok))

    def word_text(self, text: str, span: ir.Span) -> tuple[str | None, list[ir.Arg]]:
        """`word` for text found elsewhere (YAML keys), located at `span`."""
        reading = notation.read_word(text)
        if reading is None:
            return text, []  # not notation we know: resolve reports the unknown name
        if isinstance(reading, notation.TooManyParts):
            kind, head = reading.kind, reading.head
            if head is not None:  # its own error first, as it comes first in the word
                self.atom_value(head.text, self.sub(span, head.start, head.end))
            self.diags.error(
                "E103",
                self.sub(span, reading.at - 1, len(text)),
                f"`{text}` has more parts than `{kind.name}` takes",
                notation.sugar_hint(kind),
            )
            return None, []
        args, failed = [], False
        for part in reading.parts:
            where = self.sub(span, part.start, part.end)
            value = self.atom_value(part.text, where)  # every part's error is reported
            if value is None:
                failed = True
            else:
                args.append(ir.Arg.model_construct(name=part.param, value=value, span=where))
        if failed:
            return None, []  # a part was reported as invalid; a half layer would mislead
        return reading.kind.name, args

    def atom_value(self, piece: str, span: ir.Span) -> ir.Expr | None:
        """A number, `{expression}` or bare name inside a word, shape or repeat."""
        if piece.startswith("{"):
            return parse_expr(
                piece[1:-1], span.model_copy(update={"column": span.column + 1}), self.diags
            )
        if re.fullmatch(r"\d+", piece):
            return ir.Num.model_construct(value=int(piece), span=span)
        if re.fullmatch(r"\d+x\d+", piece):  # `conv1x7-192`: a (height, width) pair
            sides = [ir.Num.model_construct(value=int(n), span=span) for n in piece.split("x")]
            return ir.Tuple.model_construct(items=sides, span=span)
        if re.fullmatch(r"\d*\.\d+|\d+\.\d*", piece):
            return ir.Num.model_construct(value=float(piece), span=span)
        if re.fullmatch(r"[A-Za-z_]\w*", piece):
            return ir.Name.model_construct(id=piece, span=span)
        self.diags.error(
            "E109",
            span,
            f"`{piece}` is not a number or `{{expression}}`",
            "write numbers, or expressions in braces such as {width*2}",
        )
        return None

    # arguments and expressions -----------------------------------------------------

    def arguments(self, t: Tree) -> list[ir.Arg]:
        args = []
        for a in t.children:
            if len(a.children) == 2:
                args.append(
                    ir.Arg.model_construct(
                        name=str(a.children[0]), value=self.expr(a.children[1]), span=self.span(a)
                    )
                )
            else:
                args.append(
                    ir.Arg.model_construct(value=self.expr(a.children[0]), span=self.span(a))
                )
        return args

    def expr(self, t: Tree | Token) -> ir.Expr:
        if isinstance(t, Token):  # only reachable for bare tokens
            return ir.Name.model_construct(id=str(t), span=self.span(t))
        span = self.span(t)
        kind = t.data
        if kind == "int":
            return ir.Num.model_construct(value=int(str(t.children[0])), span=span)
        if kind == "float":
            return ir.Num.model_construct(value=float(str(t.children[0])), span=span)
        if kind == "string":
            return ir.Str.model_construct(value=str(t.children[0])[1:-1], span=span)
        if kind == "name":
            return ir.Name.model_construct(id=str(t.children[0]), span=span)
        if kind == "tensor_ref":
            return ir.TensorRef.model_construct(id=str(t.children[0])[1:], span=span)
        if kind == "neg":
            return ir.Neg.model_construct(operand=self.expr(t.children[0]), span=span)
        if kind == "pos":
            return self.expr(t.children[0])
        if kind == "tuple":
            return ir.Tuple.model_construct(items=[self.expr(c) for c in t.children], span=span)
        if kind in ("index", "slice", "slice_to", "slice_from", "slice_all"):
            parts = [self.expr(c) for c in t.children]
            value = parts[0]
            bounds: list[ir.Expr | None] = [*parts[1:]]
            if kind == "slice_to":
                bounds = [None, *bounds]
            return ir.Index.model_construct(
                value=value,
                index=bounds[0] if bounds else None,
                upper=bounds[1] if len(bounds) > 1 else None,
                is_slice=kind != "index",
                span=span,
            )
        if kind == "comprehension":
            element, targets, iterable = t.children
            return ir.Comprehension.model_construct(
                element=self.expr(element),
                names=self.targets(targets),
                iterable=self.expr(iterable),
                span=span,
            )
        if kind == "not_":
            return ir.Not.model_construct(operand=self.expr(t.children[0]), span=span)
        if kind == "ifelse":
            then, test, other = t.children
            return ir.Cond.model_construct(
                test=self.expr(test), then=self.expr(then), other=self.expr(other), span=span
            )
        if kind == "func":
            name, *args = t.children
            return ir.Call.model_construct(
                func=str(name),
                args=[self.expr(a) for a in args if a is not None],
                span=span,
                func_span=self.span(name),
            )
        if kind == "compare":
            left, op, right = t.children
            return ir.BinOp.model_construct(
                op=str(op), left=self.expr(left), right=self.expr(right), span=span
            )
        if kind in _COMPARE_OPS:
            return ir.BinOp.model_construct(
                op=_COMPARE_OPS[kind],
                left=self.expr(t.children[0]),
                right=self.expr(t.children[1]),
                span=span,
            )
        return ir.BinOp.model_construct(
            op=_BINOPS[kind],
            left=self.expr(t.children[0]),
            right=self.expr(t.children[1]),
            span=span,
        )

