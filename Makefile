# Two entry points: `make demo` and `make test`. Both set everything up first and are
# idempotent: a second run reuses .venv and reinstalls nothing.
PY      := .venv/bin/python
STAMP   := .venv/.installed
DEMO    := demo

.PHONY: setup demo test test-fast bench lint clean golden bytecode

setup: $(STAMP) graphviz bytecode

# pip compiles installed packages to bytecode, but not an editable checkout; with
# PYTHONDONTWRITEBYTECODE set, every `archc` run would compile archc from source again.
# compileall only rewrites what changed, so this is cheap to repeat.
bytecode: $(STAMP)
	@$(PY) -m compileall -q archc runtime bench

# Debian's graphviz provides the real `dot` that `archc graph` renders with.
graphviz:
	@command -v dot >/dev/null 2>&1 || { \
	  echo "installing graphviz (dot)"; \
	  (apt-get install -y graphviz >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y graphviz >/dev/null 2>&1)) || \
	  (sudo apt-get update >/dev/null 2>&1 && sudo apt-get install -y graphviz >/dev/null 2>&1); \
	  command -v dot >/dev/null || { echo "could not install graphviz; install it with apt-get install graphviz"; exit 1; }; }

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
	    --config-settings editable_mode=compat -e .
	@touch $(STAMP)

demo: setup
	$(PY) -m runtime.demo --out $(DEMO)

# The suite runs in parallel (pytest-xdist, a worker per core; a module whose tests share a
# module-scoped fixture stays on one worker, see tests/conftest.py), then the few `serial`
# tests (DDP: two gloo processes that want every core) alone. `test-fast` is the unit tests
# only: no training, no torchvision models, no ONNX (the `slow` marker), in under 2 minutes.
PYTEST  := $(PY) -m pytest -p no:cacheprovider
XDIST   := -n auto --dist loadgroup

test: setup
	$(PYTEST) $(XDIST) -m "not serial"
	$(PYTEST) -m serial

test-fast: setup
	$(PYTEST) $(XDIST) -m "not slow and not serial"

bench: setup
	$(PY) -m bench

# The mutation check: named one-line mutants (tests/mutation/mutants_*.py), each run against
# its tests in a copy of the tree; prints caught/survived and the score.
.PHONY: mutants
mutants: setup
	nice -n 10 $(PY) -m tests.mutation.run

# ruff, then mypy over the files and with the strictness [tool.mypy] in pyproject.toml sets
# (strict on the IR, graph, resolve, layers and api; clean on the rest of archc, runtime, bench)
lint: setup
	$(PY) -m ruff check archc runtime tests bench
	$(PY) -m mypy

# Regenerate the golden files (generated Python, DOT, diagnostics) after a deliberate change.
golden: setup
	ARCHC_REGEN=1 $(PY) -m pytest -q -p no:cacheprovider tests -k golden

clean:
	rm -rf .venv $(DEMO) runs .pytest_cache .hypothesis .ruff_cache .mypy_cache
