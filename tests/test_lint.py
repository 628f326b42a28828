"""The tree stays ruff-clean (the rules in pyproject.toml), like the Python archc generates,
and mypy-clean with the settings of [tool.mypy] (strict on the IR, graph, resolve, layers and
api; clean on the rest)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "archc", "runtime", "bench",
                           "tests"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow  # about 20 s of CPU from a cold cache
def test_mypy_is_clean():
    # the cache in .mypy_cache (what `make lint` uses, and `make clean` removes): a second
    # run rechecks only the files that changed, seconds instead of a minute and a half
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
