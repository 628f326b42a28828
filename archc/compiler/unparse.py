"""IR → .arch text: the inverse of parse.py, used by `archc convert --to arch`.

The output re-parses to the same IR (`ir.structure` equal). It uses the papers'
notation where the arguments allow it (`conv3-64(stride=2)`), as a person would.

What a person wrote that the IR does not hold, the comments and the spelling of each
layer kind (`FC-4096`, `LRN`, `adaptive-avgpool` for the IR's `fc`, `lrn`,
`adaptiveavgpool`), travels beside it as `Notes`, read from the source's token stream
(the one `archc fmt` reads, see archc/tools/convert.py, or PyYAML's for YAML). `unparse`
and `dump_yaml` spell layers as written, and `place_comments` puts each comment back
beside the node it stood beside:
an own-line comment above the line of the node that followed it, a trailing comment at
the end of the line of the node it followed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from archc.compiler import document, ir
from archc.compiler.document import INDENT, fits, indent, indentation
from archc.compiler.expressions import names_text
from archc.compiler.notation import join_word, sugar_taken, written_kind
from archc.layers import REGISTRY


class UnparseError(ValueError):
    """The IR holds something the .arch syntax cannot express (possible from YAML)."""


# Binding strength of each operator, loosest first, as grammar.lark nests them.
_PRECEDENCE = {
    "if": 1,
    "or": 2,
    "and": 3,
    "not": 4,
    **dict.fromkeys(("==", "!=", "<", "<=", ">", ">="), 5),
    "+": 6,
    "-": 6,
    **dict.fromkeys(("*", "/", "//", "%"), 7),
    "neg": 8,
    "**": 9,
    "[]": 10,  # t[i], t[a:b]
}


def unparse(spec: ir.SpecFile, notes: Notes | None = None) -> str:
    """The whole file as .arch source; with `notes`, layers spelled and commented as in the
    source the notes were read from (the source of `spec`)."""
    with spelled_as(notes):
        chunks = [_statement(s) for s in spec.statements]
    text = document.sections(chunks, blank=1)
    if notes is None or not notes.comments:
        return text
    from archc.compiler.diagnostics import Diagnostics
    from archc.compiler.parse import parse_text

    diags = Diagnostics()
    written = parse_text(text, "<unparsed>", diags)
    if written is None or diags.has_errors:  # pragma: no cover - unparse output parses
        raise UnparseError("the .arch text written does not parse; this is a bug in archc")
    return place_comments(text, written, spec, notes)


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class Comment:
    """A `# ...` comment of a source: where it starts, its text, and whether it stands on a
    line of its own (else it trails code)."""

    line: int
    column: int
    text: str
    own_line: bool


@dataclass
class Notes:
    """What a source says beyond its IR, keyed by where each node starts in that source."""

    spellings: dict[tuple[int, int], str] = field(default_factory=dict)  # layer → kind as written
    comments: list[Comment] = field(default_factory=list)  # in source order


_NOTES: ContextVar[Notes | None] = ContextVar("archc_unparse_notes", default=None)


@contextmanager
def spelled_as(notes: Notes | None) -> Iterator[None]:
    """Within this block, `sugar` (so `unparse` and `dump_yaml`) spells layer kinds as
    `notes` says they were written."""
    token = _NOTES.set(notes)
    try:
        yield
    finally:
        _NOTES.reset(token)


def comments_between(text: str, tokens: list[tuple[int, int]]) -> list[Comment]:
    """The comments of `text` given where its tokens are (start, end offsets, in order): a
    comment can only stand in the gaps between them, so a `#` inside a string is none."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    out: list[Comment] = []
    edges = [0, *(x for pair in tokens for x in pair), len(text)]
    for begin, end in zip(edges[::2], edges[1::2]):
        at = begin
        while (at := text.find("#", at, end)) != -1:
            stop = text.find("\n", at, end)
            stop = end if stop == -1 else stop
            line = _line_of(starts, at)
            own = not text[starts[line - 1]:at].strip()
            out.append(Comment(line, at - starts[line - 1] + 1, text[at:stop].rstrip(), own))
            at = stop
    return out


def _line_of(starts: list[int], offset: int) -> int:
    from bisect import bisect_right

    return bisect_right(starts, offset)


def record_spellings(notes: Notes, spec: ir.SpecFile, word_of) -> None:
    """Note how each layer's kind is written where that differs from the IR's name: `word_of`
    gives the word a layer was written as (`FC-4096`), or None."""
    for node in anchors(spec):
        if isinstance(node, ir.Layer):
            written = written_kind(word_of(node), node.callee)
            if written is not None:
                notes.spellings[span_start(node.span)] = written


def _spelling(layer: ir.Layer) -> str:
    notes = _NOTES.get()
    if notes is None:
        return layer.callee
    return notes.spellings.get(span_start(layer.span), layer.callee)


def span_start(span: ir.Span) -> tuple[int, int]:
    """(line, column) where a node starts: the key of its notes."""
    return (span.line, span.column)


_ANCHORS = (ir.Layer, ir.Group, ir.Merge, ir.For, ir.Tap, ir.TableRef, ir.InputDecl, ir.After,
            ir.TableRow, ir.Setting, ir.Import, ir.NetworkAlias, ir.BlockDef, ir.NetworkDef,
            ir.TableDef, ir.TrainDef)


def anchors(node) -> Iterator:
    """The nodes a comment can stand beside (statements, items, rows, settings), in the
    order of the IR: two IRs with equal structure give their nodes in the same order."""
    if isinstance(node, list):
        for child in node:
            yield from anchors(child)
        return
    if not isinstance(node, ir.Node | ir.SpecFile):
        return
    if isinstance(node, _ANCHORS):
        yield node
    for name in type(node).model_fields:
        value = getattr(node, name, None)
        if isinstance(value, list | ir.Node):
            yield from anchors(value)


def place_comments(out: str, written: ir.SpecFile, source: ir.SpecFile, notes: Notes) -> str:
    """`out` (the text of `written`, whose IR equals `source`'s) with the comments of the
    source: each beside the node of `written` that matches the node it stood beside."""
    src = [n for n in anchors(source)]
    dst = [n for n in anchors(written)]
    if len(src) != len(dst):  # pragma: no cover - equal structures have equal anchors
        raise UnparseError("the converted spec does not match its source; this is a bug")
    placed = sorted((span_start(n.span), i) for i, n in enumerate(src) if n.span.line > 0)
    lines = out.splitlines()
    above: dict[int, list[str]] = {}
    trailing: dict[int, list[str]] = {}
    at_end: list[str] = []
    for comment in notes.comments:
        index = _anchor_for(comment, placed)
        if index is None:
            at_end.append(comment.text)
            continue
        line = max(1, min(dst[index].span.line, len(lines)))
        if comment.own_line or trailing.get(line):
            above.setdefault(line, []).append(comment.text)
        else:
            trailing.setdefault(line, []).append(comment.text)
    result: list[str] = []
    for number, text in enumerate(lines, start=1):
        pad = indentation(text)
        result += [pad + c for c in above.get(number, [])]
        result.append(text + "".join("  " + c for c in trailing.get(number, [])))
    return document.text(result + at_end)


def _anchor_for(comment: Comment, placed: list[tuple[tuple[int, int], int]]) -> int | None:
    """The node a comment belongs to: for one on its own line, the first node after it; for
    a trailing one, the last node that starts before it on its line (else the next one)."""
    where = (comment.line, comment.column)
    if not comment.own_line:
        on_line = [i for (line, column), i in placed if line == comment.line and
                   (line, column) < where]
        if on_line:
            return on_line[-1]
        before = [i for start, i in placed if start < where]
        if before:
            return before[-1]
    after = [i for start, i in placed if start > where]
    return after[0] if after else None


# --------------------------------------------------------------------------- expressions


def expr(e: ir.Expr, parent: int = 0, right: bool = False) -> str:
    """An expression in arch syntax, with only the parentheses it needs."""
    if isinstance(e, ir.Num):
        return repr(e.value)
    if isinstance(e, ir.Str):
        return f"'{e.value}'" if '"' in e.value else f'"{e.value}"'
    if isinstance(e, ir.Name):
        return e.id
    if isinstance(e, ir.TensorRef):
        return f"@{e.id}"
    if isinstance(e, ir.Tuple):
        return "(" + ", ".join(expr(i) for i in e.items) + ("," if len(e.items) == 1 else "") + ")"
    if isinstance(e, ir.Call):
        return f"{e.func}(" + ", ".join(expr(a) for a in e.args) + ")"
    if isinstance(e, ir.Index):
        inside = "" if e.index is None else expr(e.index)
        if e.is_slice:
            inside += ":" + ("" if e.upper is None else expr(e.upper))
        return f"{expr(e.value, _PRECEDENCE['[]'])}[{inside}]"
    if isinstance(e, ir.Comprehension):
        return (
            f"({expr(e.element)} for {names_text(e.names)} "
            f"in {expr(e.iterable, _PRECEDENCE['or'])})"
        )
    if isinstance(e, ir.Neg | ir.Not):
        prec = _PRECEDENCE["neg" if isinstance(e, ir.Neg) else "not"]
        text = ("-" if isinstance(e, ir.Neg) else "not ") + expr(e.operand, prec)
        return f"({text})" if parent > prec else text
    if isinstance(e, ir.Cond):
        prec = _PRECEDENCE["if"]
        text = f"{expr(e.then, prec + 1)} if {expr(e.test, prec + 1)} else {expr(e.other, prec)}"
        return f"({text})" if parent > prec else text
    prec = _PRECEDENCE[e.op]
    # `**` binds to the right; comparisons do not chain; the others bind to the left.
    if e.op == "**":
        left_tight, right_tight = prec + 1, prec
    elif prec == _PRECEDENCE["=="]:
        left_tight = right_tight = prec + 1
    else:
        left_tight, right_tight = prec, prec + 1
    text = f"{expr(e.left, left_tight)} {e.op} {expr(e.right, right_tight, True)}"
    return f"({text})" if prec < parent else text


def word_part(e: ir.Expr) -> str:
    """An argument as it appears inside paper notation: `64` or `{c*4}`."""
    if isinstance(e, ir.Num) and isinstance(e.value, int) and e.value >= 0:
        return str(e.value)
    if isinstance(e, ir.Tuple) and len(e.items) == 2:
        sides = [i.value for i in e.items
                 if isinstance(i, ir.Num) and isinstance(i.value, int) and i.value >= 0]
        if len(sides) == 2:
            return "x".join(str(v) for v in sides)  # a (height, width) pair: `1x7`
    return "{" + expr(e) + "}"


def args_text(args: list[ir.Arg]) -> str:
    """`64, stride=2`: arguments as written between parentheses."""
    return ", ".join((f"{a.name}=" if a.name else "") + expr(a.value) for a in args)


def sugar(layer: ir.Layer) -> tuple[str, list[ir.Arg]]:
    """Split a layer into its paper-notation word and the arguments left over.

    `conv(kernel=3, out=64, stride=2)` → ("conv3-64", [stride=2]). The sugar is used only
    when its arguments come first and in the notation's order, so re-parsing gives back
    exactly these arguments in this order.
    """
    kind = REGISTRY.get(layer.callee)
    if kind is None:
        return layer.callee, list(layer.args)
    taken = sugar_taken(kind, [a.name for a in layer.args])
    # spelled `FC` where the source wrote FC-4096
    word = join_word(_spelling(layer), kind, [word_part(a.value) for a in layer.args[:taken]])
    return word, list(layer.args[taken:])


def layer_text(layer: ir.Layer) -> str:
    """One layer call: sugar word plus any remaining arguments."""
    word, rest = sugar(layer)
    return word + (f"({args_text(rest)})" if rest else "")


# --------------------------------------------------------------------------- items


def item_text(item) -> str:
    """An item on one line: label, atom, repeat. A merge inside is written with named
    tensors (`concat(@a, @b)`)."""
    label = f"{item.label}: " if item.label else ""
    repeat = f" x{word_part(item.repeat)}" if item.repeat is not None else ""
    return label + _atom(item) + repeat


def _atom(item) -> str:
    if isinstance(item, ir.Layer):
        return layer_text(item)
    if isinstance(item, ir.Group):
        return "[" + _group_text(item.items) + "]"
    if isinstance(item, ir.TableRef):
        return f"{item.table}[{item.variant}]"
    if isinstance(item, ir.Tap):
        return "tap " + item_text(item.head)
    if isinstance(item, ir.Ref):
        return f"@{item.name}"
    if isinstance(item, ir.Bind):
        return "-> " + ", ".join(item.names)
    if isinstance(item, ir.For | ir.If):
        return "[" + _group_text([item]) + "]"
    return _merge_text(item)


def _group_text(items: list) -> str:
    """A bracket's items on one line; a `for` or `if` last takes the items up to the `]`,
    and elsewhere gets brackets of its own."""
    parts = []
    for index, item in enumerate(items):
        last = index == len(items) - 1
        if isinstance(item, ir.For | ir.If) and item.label is None and item.repeat is None:
            head = (f"for {names_text(item.names)} in {expr(item.iterable)}:"
                    if isinstance(item, ir.For) else f"if {expr(item.test)}:")
            text = head + " " + _group_text(item.items)
            parts.append(text if last else f"[{text}]")
        else:
            parts.append(item_text(item))
    return " ".join(parts)


def _one_line_merge(item) -> bool:
    """A merge of named tensors only: `concat(@a, @b)` on one line."""
    return (
        isinstance(item, ir.Merge)
        and item.label is None
        and item.repeat is None
        and len(item.branches) > 0
        and all(isinstance(b, ir.Ref) and b.label is None and b.repeat is None
                for b in item.branches)
    )


def _merge_text(merge: ir.Merge) -> str:
    """A merge on one line: `concat(@a, @b)`, `add([conv3-64 bn], [shortcut])`. A bracket
    holding one item is that item, so a one-item group is written in two brackets."""
    branches = []
    for branch in merge.branches:
        if isinstance(branch, ir.Ref) and branch.label is None and branch.repeat is None:
            branches.append(f"@{branch.name}")
        elif isinstance(branch, ir.Group) and branch.label is None and branch.repeat is None:
            inner = _group_text(branch.items)
            branches.append(f"[[{inner}]]" if len(branch.items) == 1 else f"[{inner}]")
        else:
            branches.append(f"[{item_text(branch)}]")
    return f"{merge.mode}(" + ", ".join([*branches, *_merge_args(merge)]) + ")"


def _merge_args(merge: ir.Merge) -> list[str]:
    """A merge's named arguments as written: `sizes=(16, 24, 24)`."""
    return [args_text([arg]) for arg in merge.args]


def _merge_word(merge: ir.Merge) -> str:
    """The merge keyword heading its branches: `split:`, `split(sizes=(16, 24, 24)):`."""
    if not merge.args:
        return f"{merge.mode}:"
    return f"{merge.mode}({args_text(merge.args)}):"


def _has_merge(item) -> bool:
    """True when the item needs lines of its own: it holds a merge (not of named tensors
    only), or a `for` or `if`."""
    if isinstance(item, ir.Merge):
        return not _one_line_merge(item)
    if isinstance(item, ir.For | ir.If):
        return True
    if isinstance(item, ir.Group):
        return any(_has_merge(i) for i in item.items)
    return isinstance(item, ir.Tap) and _has_merge(item.head)


def _ends_in_merge(item) -> bool:
    """An unlabelled sequence whose last item (only) is an unlabelled merge: one line
    `conv3-64 relu concat:` with the branches below."""
    return (
        isinstance(item, ir.Group)
        and item.label is None
        and item.repeat is None
        and len(item.items) > 1
        and isinstance(item.items[-1], ir.Merge)
        and item.items[-1].label is None
        and item.items[-1].repeat is None
        and not any(_has_merge(i) for i in item.items[:-1])
    )


def _merge_lines(merge: ir.Merge, head: str, depth: int) -> list[str]:
    lines = [indent(depth) + head]
    for branch in merge.branches:
        lines.extend(_branch_lines(branch, depth + 1))
    return lines


def _for_lines(item: ir.For | ir.If, depth: int) -> list[str]:
    """`for t, c in setting:` or `if test:` with its items on the line, or in an indented
    body."""
    if item.label is not None or item.repeat is not None:
        if item.items and not any(_has_merge(i) for i in item.items):  # in a group of its own
            return [indent(depth) + item_text(ir.Group.model_construct(
                items=[item.model_copy(update={"label": None, "repeat": None})],
                label=item.label, repeat=item.repeat))]
        raise UnparseError("a labelled or repeated `for` has no .arch form; put it in a group")
    head = (f"{indent(depth)}for {names_text(item.names)} in {expr(item.iterable)}:"
            if isinstance(item, ir.For) else f"{indent(depth)}if {expr(item.test)}:")
    if item.items and not any(_has_merge(i) for i in item.items):
        return [head + " " + "  ".join(item_text(i) for i in item.items)]
    return [head, *body_lines(item.items, depth + 1)]


def body_lines(items: list, depth: int) -> list[str]:
    """Items of a body, one per line; merges and labelled multi-line groups as blocks."""
    pad = indent(depth)
    lines: list[str] = []
    for item in items:
        if _one_line_merge(item):
            lines.append(pad + item_text(item))
        elif isinstance(item, ir.Merge):
            if item.repeat is not None:
                raise UnparseError("a repeated merge has no .arch form; repeat a block instead")
            head = (f"{item.label}: " if item.label else "") + _merge_word(item)
            lines.extend(_merge_lines(item, head, depth))
        elif isinstance(item, ir.For | ir.If):
            lines.extend(_for_lines(item, depth))
        elif _ends_in_merge(item):
            head = ("  ".join(item_text(i) for i in item.items[:-1]) + "  "
                    + _merge_word(item.items[-1]))
            lines.extend(_merge_lines(item.items[-1], head, depth))
        elif (
            isinstance(item, ir.Group)
            and item.label
            and item.repeat is None
            and (_has_merge(item) or not item.items or _too_long(item, depth))
        ):
            lines.append(f"{pad}{item.label}:")
            lines.extend(body_lines(item.items, depth + 1))
        elif isinstance(item, ir.Group) and item.items and _too_long(item, depth):
            lines.extend(_bracket_lines(item, depth))
        else:
            lines.append(pad + item_text(item))
    return lines


def _too_long(item, depth: int) -> bool:
    """True when the item, written on one line at this depth, passes the width limit."""
    return not _has_merge(item) and not fits(indent(depth) + item_text(item))


def _bracket_lines(group: ir.Group, depth: int) -> list[str]:
    """A long repeated or unlabelled group over lines: `stage: [`, its items, `] x3`.

    Line breaks are free inside brackets, so this is the one-line group's IR.
    """
    pad = indent(depth)
    label = f"{group.label}: " if group.label else ""
    repeat = f" x{word_part(group.repeat)}" if group.repeat is not None else ""
    return [f"{pad}{label}[", *body_lines(group.items, depth + 1), f"{pad}]{repeat}"]


def _branch_lines(branch, depth: int) -> list[str]:
    """One branch of a merge: a line of items (an unlabelled group) or a nested block."""
    pad = indent(depth)
    if (
        isinstance(branch, ir.Group)
        and branch.label is None
        and branch.repeat is None
        and len(branch.items) > 1
        and not any(_has_merge(i) for i in branch.items)
    ):
        return [pad + "  ".join(item_text(i) for i in branch.items)]
    if (
        isinstance(branch, ir.Merge | ir.For | ir.If)
        or _ends_in_merge(branch)
        or (isinstance(branch, ir.Group) and (_has_merge(branch) or _too_long(branch, depth)))
    ):
        return body_lines([branch], depth)
    return [pad + item_text(branch)]


# --------------------------------------------------------------------------- statements


def _params(params: list[ir.Param]) -> str:
    if not params:
        return ""
    return (
        "("
        + ", ".join(
            ("@" if p.tensor else "") + p.name
            + (f"={expr(p.default)}" if p.default is not None else "")
            for p in params
        )
        + ")"
    )


def _after(rules: list[ir.After]) -> list[str]:
    return [f"{INDENT}after {r.kind}: " + "  ".join(item_text(i) for i in r.items) for r in rules]


def _statement(stmt) -> str:
    if isinstance(stmt, ir.Import):
        return f'import "{stmt.path}"'
    if isinstance(stmt, ir.NetworkAlias):
        return f"network {stmt.name} = {stmt.target}({args_text(stmt.args)})"
    if isinstance(stmt, ir.TableDef):
        width = max(len(r.variant) for r in stmt.rows) + 1
        rows = [
            f"{INDENT}{(r.variant + ':').ljust(width)} " + " ".join(item_text(i) for i in r.items)
            for r in stmt.rows
        ]
        return "\n".join([f"table {stmt.name}:", *rows])
    if isinstance(stmt, ir.TrainDef):
        return "\n".join(
            ["train:", *(f"{INDENT}{s.name} = {expr(s.value)}" for s in stmt.settings)]
        )
    keyword = "block" if isinstance(stmt, ir.BlockDef) else "network"
    outputs = getattr(stmt, "outputs", None)
    arrow = " -> " + ", ".join(f"@{o}" for o in outputs) if outputs else ""
    lines = [f"{keyword} {stmt.name}{_params(stmt.params)}{arrow}:"]
    if isinstance(stmt, ir.NetworkDef) and stmt.input is not None:
        lines.append(f"{INDENT}input " + "x".join(word_part(d) for d in stmt.input.dims))
    lines += _after(stmt.after)
    lines += body_lines(stmt.body, 1)
    return "\n".join(lines)


def bundle_program(program) -> str:
    """One self-contained .arch text for a spec and everything it imports.

    The root file's statements come first (so its first network stays the default), then
    each imported file's, with the imports themselves dropped. A run folder keeps this
    text, so the network can be rebuilt from the folder alone.
    """
    statements = [
        s
        for spec in program.files.values()
        for s in spec.statements
        if not isinstance(s, ir.Import)
    ]
    return unparse(ir.SpecFile.model_construct(path=program.root, statements=statements))
