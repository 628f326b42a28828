"""The scripted mutation check: apply named one-line mutants one at a time to a copy of the
working tree and run each one's tests, which must fail ("caught").

    .venv/bin/python -m tests.mutation.run              # every mutant
    .venv/bin/python -m tests.mutation.run -k split     # names containing "split"
    .venv/bin/python -m tests.mutation.run --list

Mutants live in tests/mutation/mutants_*.py, each module a list
`MUTANTS = [dict(name=..., file=..., old="exact text", new="mutated text", tests=[...]), ...]`
where `old` occurs exactly once in `file` (tests/mutation/test_mutants.py checks that in
`make test`, so mutants cannot rot). The working tree itself is never touched: the copy lives
in a temporary folder, and its own archc and runtime are the ones imported (PYTHONPATH), in
pytest and in every subprocess the tests start. Exit status 0 only when every mutant is caught.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
#: what the copy leaves out: the environment, history, caches and outputs
_SKIP = (".venv", ".git", "__pycache__", ".pytest_cache", "runs", "demo", "*.egg-info",
         ".ruff_cache")


@dataclass(frozen=True)
class Mutant:
    """One named one-line change and the tests that should notice it."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


def load_mutants(folder: Path = HERE) -> list[Mutant]:
    """Every mutant of every tests/mutation/mutants_*.py module, in file order."""
    found = []
    for path in sorted(folder.glob("mutants_*.py")):
        module = importlib.import_module(f"tests.mutation.{path.stem}")
        for entry in module.MUTANTS:
            found.append(Mutant(entry["name"], entry["file"], entry["old"], entry["new"],
                                tuple(entry["tests"])))
    return found


def problems(mutant: Mutant, root: Path = REPO) -> list[str]:
    """Why `mutant` cannot be applied to the tree at `root` (empty when it can)."""
    path = root / mutant.file
    if not path.is_file():
        return [f"{mutant.file} does not exist"]
    found = []
    count = path.read_text(encoding="utf-8").count(mutant.old)
    if count != 1:
        found.append(f"`old` occurs {count} times in {mutant.file}, not once")
    if mutant.old == mutant.new:
        found.append("`new` equals `old`")
    for test in mutant.tests:
        if not (root / test.split("::")[0]).exists():
            found.append(f"test file {test.split('::')[0]} does not exist")
    return found


def copy_tree(destination: Path) -> Path:
    """A copy of the working tree (without the venv, history and outputs) at `destination`."""
    shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(*_SKIP), symlinks=True)
    return destination


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    """Run `tests` in the tree at `root`: "passed", "failed", "timeout" or "error" (pytest
    could not run them), with the seconds taken."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(root), os.environ.get("PYTHONPATH")])), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start
    outcome = {0: "passed", 1: "failed"}.get(done.returncode, "error")
    return outcome, time.monotonic() - start


def check(mutant: Mutant, root: Path, timeout: float) -> tuple[str, float]:
    """Apply `mutant` in the copy at `root`, run its tests, restore the file.

    "caught" when the tests fail (or time out: a mutant that makes the code hang is found
    too), "survived" when they pass, "error" when pytest could not run them, "stale" when
    the mutant no longer applies."""
    if problems(mutant, root):
        return "stale", 0.0
    path = root / mutant.file
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        outcome, seconds = run_tests(root, mutant.tests, timeout)
    finally:
        path.write_text(original, encoding="utf-8")
    verdict = {"failed": "caught", "timeout": "caught", "passed": "survived"}.get(outcome, "error")
    return verdict, seconds


def main(argv: list[str] | None = None) -> int:
    """Run the mutants and print one line each, then the score."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="pattern", default="", help="only names containing this")
    parser.add_argument("--list", action="store_true", help="list the mutants and stop")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    parser.add_argument("--baseline", action="store_true",
                        help="first run each mutant's tests unmutated: they must pass, or a "
                             "'caught' would mean nothing")
    args = parser.parse_args(argv)
    mutants = [m for m in load_mutants() if args.pattern in m.name]
    if args.list:
        for m in mutants:
            print(f"{m.name:40} {m.file}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="archc-mutants-") as tmp:
        root = copy_tree(Path(tmp) / "tree")
        for mutant in mutants:
            if args.baseline:
                outcome, _ = run_tests(root, mutant.tests, args.timeout)
                if outcome != "passed":
                    results.append("unsound")
                    print(f"{'unsound':9} {mutant.name:40} its tests {outcome} unmutated")
                    continue
            verdict, seconds = check(mutant, root, args.timeout)
            results.append(verdict)
            print(f"{verdict:9} {mutant.name:40} {mutant.file} ({seconds:.0f} s)", flush=True)
    caught = results.count("caught")
    print(f"score: {caught}/{len(results)} mutants caught"
          + (f" ({100 * caught / len(results):.0f}%)" if results else ""))
    return 0 if results and caught == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
