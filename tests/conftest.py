"""Suite-wide settings. Runs before any test module imports torch."""
import atexit
import os
import shutil
import tempfile

import pytest

# OpenMP's busy-waiting threads starve each other when the suite's subprocesses share the
# 2 CI cores; passive waiting keeps a training step at its normal speed (see archc/cli/main.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# archc's caches (parsed specs, the compiled grammar, decoded images) go to a folder of this
# run, not the user's ~/.cache/archc: the suite starts cold and leaves nothing behind.
_CACHE = tempfile.mkdtemp(prefix="archc-test-cache-")
os.environ.setdefault("ARCHC_CACHE", _CACHE)
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `large` (the 10,000-mutant fuzz) unless `-m` names them: `make test`
    stays minutes long, `pytest -m large` runs them."""
    if "large" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a large run: select it with `pytest -m large`")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)
