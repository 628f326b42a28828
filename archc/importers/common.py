"""What the Caffe and Darknet importers share: IR constructors, labels, the spec file."""

from __future__ import annotations

from pathlib import Path

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics

# Words of the .arch language that cannot be labels or network names.
RESERVED = {
    "input", "block", "network", "table", "import", "train", "after", "tap", "for", "in",
    "concat", "add", "mul", "max", "sub", "if", "else", "and", "or", "not", "true", "false",
    "same", "valid",
}


def num(value: int | float) -> ir.Num:
    """A number literal."""
    return ir.Num(value=value)


def layer(kind: str, span: ir.Span, label: str | None = None, **args) -> ir.Layer:
    """A layer call with keyword arguments in the given order (None values left out).

    The order matters for paper notation: `conv(kernel=3, out=64)` prints as `conv3-64`.
    Arguments equal to the kind's default are left out, except the notation's own.
    """
    kept = [(k, v) for k, v in args.items() if v is not None and not is_default(kind, k, v)]
    if len(kept) == 1 and is_default(kind, *kept[0], head=True):
        kept = []  # `maxpool`, not `maxpool2`: a lone default needs no notation
    return ir.Layer(
        callee=kind,
        args=[
            ir.Arg(name=None if i == 0 and _positional(kind, k, v) else k, value=_value(v),
                   span=span)
            for i, (k, v) in enumerate(kept)
        ],
        label=label,
        span=span,
        callee_span=span,
    )


def _positional(kind: str, name: str, value) -> bool:
    """A float the notation would write as `{0.1}`: give it positionally, `leakyrelu(0.1)`."""
    from archc.layers import REGISTRY

    entry = REGISTRY.get(kind)
    return (isinstance(value, float) and entry is not None and bool(entry.params)
            and entry.params[0].name == name)


def is_default(kind: str, name: str, value, head: bool = False) -> bool:
    from archc.layers import REGISTRY

    entry = REGISTRY.get(kind)
    if entry is None or (name == entry.sugar[0] and not head):
        return False
    param = entry.param(name)
    return param is not None and not param.required and param.default == value


def _value(v) -> ir.Expr:
    if isinstance(v, bool):
        return ir.Name(id="true" if v else "false")
    if isinstance(v, tuple):
        return ir.Tuple(items=[num(x) for x in v])
    if isinstance(v, str):
        return ir.Name(id=v)
    return num(v)


def identifier(name: str, taken: set[str] | None = None) -> str:
    """`inception_3a/1x1` → `inception_3a_1x1`: a valid, unused .arch name for a label."""
    text = "".join(c if c.isalnum() or c == "_" else "_" for c in name.strip()) or "layer"
    if text[0].isdigit():
        text = "l" + text
    if text.lower() in RESERVED:
        text += "_"
    if taken is not None:
        base, n = text, 2
        while text in taken:
            text, n = f"{base}_{n}", n + 1
        taken.add(text)
    return text


def network_name(name: str | None, path: str) -> str:
    """The network's name: the file's own `name`, else the file name, as an identifier."""
    from archc.compiler.parse import notation_kind

    text = identifier(name or Path(path).stem)
    return text + "_net" if notation_kind(text) else text


def read_text(path: str, diags: Diagnostics) -> str | None:
    """The file's text, or None with one located diagnostic when it is not a text file to
    import: missing, a folder, over the `file_bytes` limit (E205, checked before reading, so a
    50 MB file is refused at once), not UTF-8 (UTF-16 is named as such), or holding a NUL."""
    from archc.compiler.sources import SpecReadError, read_spec

    try:
        text = read_spec(path, what="imported file")
    except SpecReadError as exc:
        hint = exc.hint
        if _starts_utf16(path):
            hint = "this file is UTF-16 text (it starts with a byte-order mark); save it as UTF-8"
        where = (_point(path, exc.line, exc.column) if exc.line and exc.column
                 else ir.Span(file=path))
        diags.error(exc.code, where, str(exc), hint)
        return None
    nul = text.find("\0")
    if nul >= 0:  # text formats never hold one; a binary file that happens to decode does
        line = text.count("\n", 0, nul) + 1
        column = nul - (text.rfind("\n", 0, nul) + 1) + 1
        diags.error("E002", _point(path, line, column),
                    f"`{path}` holds a NUL byte at line {line}, column {column}: it is not a "
                    "text file", "is this the right file? prototxt and cfg files are text")
        return None
    return text


def _starts_utf16(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
    except OSError:
        return False


def _point(path: str, line: int, column: int) -> ir.Span:
    return ir.Span.model_construct(file=path, line=line, column=column, end_line=line,
                                   end_column=column + 1)


def spec_file(path: str, name: str, dims: tuple[int, int, int], body: list[ir.Item],
              span: ir.Span) -> ir.SpecFile:
    """A one-network spec file with the given input and body."""
    network = ir.NetworkDef(
        name=name,
        input=ir.InputDecl(dims=[num(d) for d in dims], span=span),
        body=body,
        span=span,
        name_span=span,
    )
    return ir.SpecFile(path=path, statements=[network])
