# Two entry points: `make demo` and `make test`. Both set everything up first and are
# idempotent: a second run reuses .venv and reinstalls nothing.
PY      := .venv/bin/python
STAMP   := .venv/.installed
DEMO    := demo

.PHONY: setup demo test bench lint clean golden bytecode

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

test: setup
	$(PY) -m pytest -p no:cacheprovider

bench: setup
	$(PY) -m bench

# The mutation check: named one-line mutants (tests/mutation/mutants_*.py), each run against
# its tests in a copy of the tree; prints caught/survived and the score.
.PHONY: mutants
mutants: setup
	nice -n 10 $(PY) -m tests.mutation.run

lint: setup
	$(PY) -m ruff check archc runtime tests bench

# Regenerate the golden files (generated Python, DOT, diagnostics) after a deliberate change.
golden: setup
	ARCHC_REGEN=1 $(PY) -m pytest -q -p no:cacheprovider tests -k golden

clean:
	rm -rf .venv $(DEMO) runs .pytest_cache .hypothesis .ruff_cache
