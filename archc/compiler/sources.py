"""Reading spec files: .arch or YAML, following imports relative to each file.

The result is a `Program`: every definition visible from the root file, and the text
of every file read (diagnostics quote it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.text import text_problem


@dataclass
class Program:
    """All files reachable from a root spec, and their definitions by name."""

    root: str
    files: dict[str, ir.SpecFile] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, ir.BlockDef] = field(default_factory=dict)
    tables: dict[str, ir.TableDef] = field(default_factory=dict)
    networks: dict[str, ir.NetworkDef | ir.NetworkAlias] = field(default_factory=dict)
    train: dict[str, ir.Setting] = field(default_factory=dict)
    # imports that did not load (unreadable, or syntax errors), with the path they named:
    # names used from them are reported once, as a note on the import's error
    failed_imports: list[tuple[ir.Import, str]] = field(default_factory=list)

    @property
    def root_file(self) -> ir.SpecFile | None:
        """The parsed root file, if it parsed."""
        return self.files.get(self.root)

    def digest(self) -> str:
        """sha256 over every source file read, in a stable order: the spec hash."""
        h = hashlib.sha256()
        for name in sorted(self.sources):
            h.update(Path(name).name.encode() + b"\0" + self.sources[name].encode() + b"\0")
        return h.hexdigest()


def is_yaml(path: str) -> bool:
    """True for .yaml and .yml files."""
    return path.endswith((".yaml", ".yml"))


class SpecReadError(Exception):
    """A spec file that cannot be read as text; `str()` says why in one line. `line` and
    `column` locate a bad byte when there is one."""

    def __init__(self, message: str, hint: str | None = None, code: str = "E002",
                 line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.hint, self.code, self.line, self.column = hint, code, line, column


def read_spec(path: str | Path, what: str = "spec") -> str:
    """The text of a spec file, or `SpecReadError` saying exactly why not: not found, a
    directory, not permitted, not a regular file, a NUL byte in the path, over the
    `file_bytes` limit (checked before reading), or not text (see `decode_text`).

    The one reader of archc's text inputs: specs, `archc fmt`'s files, and imported model
    files (`what` names the kind of file in messages: "spec", "prototxt", "cfg")."""
    from archc.compiler import limits

    shown = str(path).replace("\0", "\\0")
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):  # /dev/zero or a pipe would never end
            raise SpecReadError(
                f"{what} path `{shown}` is not a regular file", "give a .arch or .yaml file"
                if what == "spec" else f"give a {what} file"
            )
        most = limits.get("file_bytes")
        if info.st_size > most:
            raise _too_large(what, shown, info.st_size)
        with open(path, "rb") as handle:
            data = handle.read(most + 1)  # bounded even if the file grows meanwhile
        if len(data) > most:
            raise _too_large(what, shown, max(info.st_size, len(data)))
    except ValueError:  # os.stat's "embedded null byte"
        raise SpecReadError(
            f"{what} path `{shown}` contains a NUL byte", "give a plain file name"
        ) from None
    except FileNotFoundError:
        raise SpecReadError(f"{what} file `{shown}` not found") from None
    except IsADirectoryError:
        raise SpecReadError(
            f"{what} path `{shown}` is a directory, not a file", "give the path of a .arch or "
            ".yaml file inside it" if what == "spec" else f"give the path of a {what} file"
        ) from None
    except PermissionError:
        raise SpecReadError(
            f"{what} file `{shown}` cannot be read: permission denied",
            "check the file's permissions",
        ) from None
    except OSError as exc:
        raise SpecReadError(f"{what} file `{shown}` cannot be read: {exc.strerror}") from None
    return decode_text(data, f"{what} file `{shown}`")


def _too_large(what: str, shown: str, size: int) -> SpecReadError:
    from archc.compiler import limits

    return SpecReadError(
        f"{what} file `{shown}` is {size:,} bytes, over the limit for one {what} file",
        limits.hint("file_bytes"),
        code="E205",
    )


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def decode_text(data: bytes, shown: str) -> str:
    """`data` as archc reads every text file: UTF-8 (a byte-order mark dropped), with
    `\\r\\n` read as one new line; `SpecReadError`, located at the first offending byte,
    for UTF-16 or other non-UTF-8 bytes, a NUL byte, or a carriage return that does not end
    a line (the lexer would read it as part of a comment, an editor as a line break: the two
    would disagree about what is code). `shown` names the file in messages."""
    if data.startswith(_UTF16_BOMS):
        raise SpecReadError(f"{shown} is UTF-16 text, not UTF-8",
                            "save it as UTF-8 (every editor can)", line=1, column=1)
    if b"\0" in data[:2] and data.count(b"\0") * 3 > len(data):
        raise SpecReadError(f"{shown} is not UTF-8 text: it is UTF-16 or binary (NUL bytes "
                            "from line 1, column 1 on)", "save it as UTF-8 text",
                            line=1, column=1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        raise SpecReadError(
            f"{shown} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line "
            f"{line}, column {column}",
            "archc reads UTF-8 text files; is this the right file?", line=line, column=column,
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    problem = text_problem(text)
    if problem is not None:
        line, column, message, hint = problem
        raise SpecReadError(f"{shown} {message} at line {line}, column {column}", hint,
                            line=line, column=column)
    return text


def _position(data: bytes, offset: int) -> tuple[int, int]:
    """The line and column (1-based, in bytes) of `offset` in `data`."""
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def parse_source(text: str, path: str, diags: Diagnostics) -> ir.SpecFile | None:
    """Parse one file's text with the front end its extension names."""
    if is_yaml(path):
        from archc.compiler.yamlspec import load_yaml

        return load_yaml(text, path, diags)
    from archc.compiler.parse import parse_text

    return parse_text(text, path, diags)


def parse_source_cached(text: str, path: str, diags: Diagnostics) -> ir.SpecFile | None:
    """`parse_source`, read back from archc's on-disk cache when this exact text was parsed
    before without a diagnostic (see archc/compiler/cache.py: a .pyc for specs)."""
    from archc.compiler import cache

    directory = cache.private_dir("specs") if cache.enabled() else None
    if directory is None:
        return parse_source(text, path, diags)
    key = cache.spec_key(path, text)
    spec = cache.load(directory, key)
    if spec is not None:
        return spec
    before = len(diags.items)
    spec = parse_source(text, path, diags)
    if spec is not None and len(diags.items) == before:
        cache.store(directory, key, spec)
    return spec


def load_program(path: str | Path, diags: Diagnostics, text: str | None = None) -> Program:
    """Read the root spec and everything it imports; problems go to `diags`."""
    root = str(path)
    program = Program(root=root)
    _load(program, root, diags, stack=[], via=None, text=text)
    return program


def _load(
    program: Program,
    path: str,
    diags: Diagnostics,
    stack: list[str],
    via: ir.Import | None,
    text: str | None = None,
) -> None:
    from_disk = text is None  # an editor's unsaved buffer is not worth a cache entry
    if text is None:
        try:
            text = read_spec(path)
        except SpecReadError as exc:
            span = via.span if via else ir.Span(file=path)
            if exc.line is not None and via is None:  # the bad byte in the file itself
                span = ir.Span(file=path, line=exc.line, column=exc.column,
                               end_line=exc.line, end_column=exc.column + 1)
            hint = exc.hint or ("imports are resolved relative to the importing file" if via
                                else None)
            diags.error(exc.code, span, str(exc), hint)
            if via is not None:
                program.failed_imports.append((via, path))
            return
        key = str(Path(path).resolve())
    else:
        if not buffer_fits(text, path, diags):
            return
        key = path
    if key in stack:
        cycle = [Path(p).name for p in stack[stack.index(key) :]] + [Path(path).name]
        diags.error(
            "E003",
            via.span,
            "import cycle: " + " → ".join(cycle),
            "move the shared blocks into a file that both can import",
        )
        return
    if path in program.files or key in (str(Path(p).resolve()) for p in program.files):
        return
    program.sources[path] = text
    spec = parse_source_cached(text, path, diags) if from_disk else parse_source(text, path, diags)
    if spec is None:
        if via is not None:
            program.failed_imports.append((via, path))
        return
    program.files[path] = spec
    for stmt in spec.statements:
        if isinstance(stmt, ir.Import):
            target = str(Path(path).parent / stmt.path)
            _load(program, target, diags, stack + [key], stmt)
    for stmt in spec.statements:
        define_statement(program, stmt, diags)


def buffer_fits(text: str, path: str, diags: Diagnostics) -> bool:
    """False (E205 reported) when an editor's buffer or an API caller's text is over the
    `file_bytes` limit, as the same text in a file would be."""
    from archc.compiler import limits

    most = limits.get("file_bytes")
    # a character is at most 4 bytes: only a text near the limit needs encoding to tell
    if len(text) * 4 <= most or len(text.encode("utf-8", "surrogatepass")) <= most:
        return True
    diags.error("E205", ir.Span(file=path),
                f"spec `{path}` is over the limit of {most:,} bytes for one spec file",
                limits.hint("file_bytes"))
    return False


def define_statement(program: Program, stmt, diags: Diagnostics) -> None:
    if isinstance(stmt, ir.TrainDef):
        for s in stmt.settings:
            program.train[s.name] = s
        return
    table = {
        ir.BlockDef: program.blocks,
        ir.TableDef: program.tables,
        ir.NetworkDef: program.networks,
        ir.NetworkAlias: program.networks,
    }.get(type(stmt))
    if table is None:
        return
    # Tables live in their own namespace (`table vgg` beside `network vgg` reads well);
    # blocks and networks share one.
    names = [table] if table is program.tables else [program.blocks, program.networks]
    other = next((t[stmt.name] for t in names if stmt.name in t), None)
    if isinstance(stmt, ir.BlockDef):
        _check_block_name(stmt, diags)
    if other is not None:
        diags.error(
            "E106",
            stmt.name_span,
            f"`{stmt.name}` is defined twice",
            "rename one of them",
            notes=(f"first defined at {_where(other.name_span)}",),
        )
        return
    table[stmt.name] = stmt


def _where(span: ir.Span) -> str:
    return f"{span.file}:{span.line}:{span.column}"


def _check_block_name(block: ir.BlockDef, diags: Diagnostics) -> None:
    """A block called like a layer (`relu`, `conv_1`) could never be called: say so."""
    from archc.compiler.parse import notation_kind

    kind = notation_kind(block.name)
    if kind is not None:
        diags.error(
            "E106",
            block.name_span,
            f"block name `{block.name}` reads as the layer "
            f"`{kind}`, so calls to it would build a `{kind}`",
            f"rename the block, e.g. `{block.name}_block`",
        )
