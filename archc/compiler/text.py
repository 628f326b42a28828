"""What every reader of spec text refuses alike: the parser, `archc fmt` and the file reader
(archc/compiler/sources.py) all ask `text_problem`, so none of them can read a text that
another reads differently."""

from __future__ import annotations


def text_problem(text: str) -> tuple[int, int, str, str] | None:
    """(line, column, what, hint) of the first NUL or lone carriage return in `text` (after
    `\\r\\n` became `\\n`), or None. The .arch parser refuses both, wherever they stand."""
    found = [i for i in (text.find("\0"), text.find("\r")) if i >= 0]
    if not found:
        return None
    at = min(found)
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    if text[at] == "\0":
        return line, column, "contains a NUL byte", "is this a binary file? specs are text"
    return (line, column, "contains a carriage return that does not end a line",
            "save the file with \\n (or \\r\\n) line ends")
