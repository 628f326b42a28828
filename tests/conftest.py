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


# The modules `make test-fast` leaves out: they train networks, build and run torchvision's
# models or whole zoo families, export ONNX, or run the CLI's training verbs in subprocesses.
# Each is marked `slow` here, in one list, rather than in 20 files; a single heavy test of an
# otherwise quick module carries `@pytest.mark.slow` itself.
SLOW_MODULES = {
    "tests/runtime/",  # training, data pipelines, checkpoints, engines, DDP
    "tests/hostile/test_runtime_data.py",
    "tests/hostile/test_runtime_outcomes.py",
    "tests/hostile/test_runtime_runs.py",
    "tests/mutation/test_mutants.py",  # each mutant reruns tests in a copy of the tree
    "tests/importers/test_torch_import.py",  # imports and rebuilds torchvision networks
    "tests/test_torchvision.py",  # torchvision's models against archc's, weights loaded
    "tests/test_transformers.py",  # ViT, Swin and MaxViT against torchvision's classes
    "tests/test_zoo.py",
    "tests/test_fuzz_zoo.py",
    "tests/test_lecture.py",
    "tests/test_onnx.py",
    "tests/test_fold.py",
    "tests/test_init.py",
    "tests/test_weights.py",
    "tests/test_pysource.py",
    "tests/test_infer_bench.py",
    "tests/test_bench.py",
}


# Run alone, after the parallel pass (`make test`'s second command): DDP's two gloo
# processes each want every core, and beside another worker their collectives crawl.
SERIAL_MODULES = {"tests/runtime/test_ddp.py"}


def _module_path(item) -> str:
    return item.nodeid.split("::", 1)[0]


def _shares_module_fixtures(item) -> bool:
    """True when the test uses a module- or class-scoped fixture (a trained run, an imported
    network): under pytest-xdist its module's tests then stay on one worker, which builds
    the fixture once, instead of every worker building it again."""
    defs = getattr(item, "_fixtureinfo", None)
    if defs is None:
        return False
    return any(fixturedefs and fixturedefs[-1].scope in ("module", "class")
               for fixturedefs in defs.name2fixturedefs.values())


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker, and before xdist reads groups
def pytest_collection_modifyitems(config, items):
    """Mark the heavy modules `slow` (`make test-fast` runs `-m "not slow"`); keep a module
    whose tests share a module-scoped fixture on one xdist worker (`--dist loadgroup`); skip
    tests marked `large` (the 10,000-mutant fuzz) unless `-m` names them: `make test` stays
    minutes long, `pytest -m large` runs them."""
    for item in items:
        path = _module_path(item)
        if any(path == m or (m.endswith("/") and path.startswith(m)) for m in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)
        if path in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
        if _shares_module_fixtures(item):
            item.add_marker(pytest.mark.xdist_group(path))
    if "large" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a large run: select it with `pytest -m large`")
    for item in items:
        if "large" in item.keywords:
            item.add_marker(skip)
