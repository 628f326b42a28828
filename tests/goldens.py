"""Golden files: compare generated text with a checked-in copy, or rewrite it on request.

    assert_golden(GOLDEN / "dot" / "resnet18.dot", to_dot(net))

Set ARCHC_REGEN=1 (or run `make golden`) after a deliberate change to rewrite the files;
review them with `git diff` before committing.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

GOLDEN = Path(__file__).resolve().parent / "golden"
_SHOWN = 60  # diff lines in a failure message: enough to see what moved


def regenerating() -> bool:
    """True when the run should rewrite golden files instead of checking them."""
    return os.environ.get("ARCHC_REGEN", "") not in ("", "0")


def assert_golden(path: Path, text: str) -> None:
    """Fail with a unified diff unless `path` holds exactly `text` (rewrite it on ARCHC_REGEN)."""
    path = Path(path)
    if regenerating():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        raise AssertionError(f"golden file {path} is missing; create it with ARCHC_REGEN=1")
    expected = path.read_text(encoding="utf-8")
    if text == expected:
        return
    diff = list(difflib.unified_diff(expected.splitlines(), text.splitlines(),
                                     f"{path.name} (golden)", f"{path.name} (now)", lineterm=""))
    more = f"\n... {len(diff) - _SHOWN} more diff lines" if len(diff) > _SHOWN else ""
    raise AssertionError(f"{path} differs from the output (rewrite with ARCHC_REGEN=1 if the "
                         "change is deliberate):\n" + "\n".join(diff[:_SHOWN]) + more)
