"""`archc convert`'s reading of a spec: its IR with the notes that the IR does not hold
(comments, and each layer kind as written: `FC-4096`, `LRN`, `adaptive-avgpool`).

A .arch file is read from the token stream `archc fmt` reads (archc/compiler/tokens.py), a
YAML file from PyYAML's; `unparse` and `dump_yaml` (archc/compiler) take the notes and write
them back.
"""

from __future__ import annotations

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.sources import is_yaml
from archc.compiler.unparse import Notes, comments_between, record_spellings, span_start


def read_with_notes(text: str, path: str) -> tuple[ir.SpecFile, Notes]:
    """The IR of a spec that parses without errors, and its notes, by the file's suffix
    (a spec with errors raises `tokens.SpecRefused`, or ValueError for YAML)."""
    if is_yaml(path):
        from archc.compiler.yamlspec import yaml_notes

        diags = Diagnostics()
        spec, notes = yaml_notes(text, path, diags)
        if spec is None or diags.has_errors:
            raise ValueError(f"{path} has errors")
        return spec, notes
    return arch_notes(text, path)


def arch_notes(text: str, path: str) -> tuple[ir.SpecFile, Notes]:
    """The IR of .arch source and its notes, read from the token stream `archc fmt` reads
    (a spec with errors raises `tokens.SpecRefused`)."""
    from archc.compiler.tokens import read_tokens

    stream = read_tokens(text, path)
    source, spec, code = stream.text, stream.spec, stream.code()
    words = {(t.line, t.column): str(t) for t in code if t.type == "WORD"}
    spans = [(t.start_pos, t.end_pos) for t in code  # (every lexed token has its place)
             if t.start_pos is not None and t.end_pos is not None]
    notes = Notes(comments=comments_between(source, spans))
    record_spellings(notes, spec, lambda layer: words.get(span_start(layer.callee_span)))
    return spec, notes
