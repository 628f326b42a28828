"""Golden tests of `archc check` on broken specs (mypy test-data style).

Every `tests/diagnostics/*.arch` and `*.yaml` is checked with `python -m archc check NAME`
run in tests/diagnostics (so the paths in the output are short and stable); stdout and
stderr together, then `[exit N]`, must equal NAME's `.out` file. A first line
`# flags: ...` adds command-line options (e.g. `--variant C`). Files under
tests/diagnostics/lib/ are only imported by the cases.

    ARCHC_REGEN=1 pytest tests/test_diagnostics.py    # rewrite the .out files, then review

Cases in XFAIL show a compiler bug: their `.out` holds the output archc *should* give,
written by hand, and regeneration leaves it alone. When the bug is fixed the test passes,
strict xfail turns that into a failure, and the entry is removed from XFAIL.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "diagnostics"
REGEN = os.environ.get("ARCHC_REGEN", "") not in ("", "0")

try:  # the shared golden-file helper (tests/goldens.py), however tests/ is imported
    from goldens import assert_golden as _shared_assert_golden  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on pytest's import mode
    try:
        from tests.goldens import assert_golden as _shared_assert_golden
    except ImportError:
        _shared_assert_golden = None

XFAIL = {
}


def _cases() -> list[Path]:
    return sorted(p for p in CASES_DIR.iterdir() if p.suffix in (".arch", ".yaml"))


def _flags(path: Path) -> list[str]:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    prefix = "# flags:"
    return first[len(prefix):].split() if first.startswith(prefix) else []


def run_check(path: Path) -> tuple[str, int]:
    """`archc check` on one case, as a user would see it: output and exit status."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "NO_COLOR": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "archc", "check", path.name, *_flags(path)],
                          cwd=CASES_DIR, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, encoding="utf-8", timeout=120)
    return proc.stdout, proc.returncode


def transcript(path: Path) -> str:
    """The text a `.out` file holds: the output, then the exit status."""
    output, code = run_check(path)
    if output and not output.endswith("\n"):
        output += "\n"
    return f"{output}[exit {code}]\n"


def _assert_golden(golden: Path, actual: str, regen: bool) -> None:
    if regen:
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.exists(), f"{golden.name} is missing: run with ARCHC_REGEN=1 and review it"
    expected = golden.read_text(encoding="utf-8")
    assert actual == expected, (
        f"`archc check {golden.stem}` differs from {golden.name}; if the change is "
        "deliberate, rerun with ARCHC_REGEN=1 and review the diff")


def _params():
    for path in _cases():
        marks = []
        if path.name in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[path.name]))
        yield pytest.param(path, id=path.name, marks=marks)


@pytest.mark.parametrize("case", list(_params()))
def test_golden_diagnostics(case: Path):
    actual = transcript(case)
    golden = case.with_suffix(case.suffix + ".out")
    if case.name in XFAIL:  # the hand-written expectation is never regenerated
        _assert_golden(golden, actual, regen=False)
    elif _shared_assert_golden is not None:
        _shared_assert_golden(golden, actual)
    else:
        _assert_golden(golden, actual, regen=REGEN)


def test_every_case_has_a_golden_file():
    outs = {p.name for p in CASES_DIR.glob("*.out")}
    cases = {p.name + ".out" for p in _cases()}
    if not REGEN:
        assert cases <= outs, f"cases without a .out file: {sorted(cases - outs)}"
    assert outs <= cases, f"stale .out files: {sorted(outs - cases)}"


def test_xfail_entries_name_real_cases():
    assert set(XFAIL) <= {p.name for p in _cases()}


def test_golden_files_are_well_formed():
    """No traceback is ever blessed, and errors go with exit 1, warnings alone with 0."""
    for golden in sorted(CASES_DIR.glob("*.out")):
        text = golden.read_text(encoding="utf-8")
        assert "Traceback" not in text, golden.name
        assert text.endswith(("[exit 0]\n", "[exit 1]\n")), golden.name
        has_error = "\nerror[" in "\n" + text
        assert text.endswith("[exit 1]\n") == has_error, golden.name
        if not has_error:
            assert "\nOK " in "\n" + text, golden.name
