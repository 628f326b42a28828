"""The house stays as docs/architecture.md draws it: runtime and bench use archc's public
face only, no private name crosses modules, archc's modules import each other without
circles, and every import runs down the room order, never back up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARCHC = ROOT / "archc"

# The rooms from the bottom floor up; a module may import its own room or a lower one.
ROOMS = ["layers", "compiler", "backends", "passes", "importers", "zoo", "api", "__init__",
         "tools", "cli", "__main__"]


def _modules() -> dict[str, Path]:
    """archc's modules by dotted name (the links to specs/ and runtime/ are not archc)."""
    found = {}
    for path in sorted(ARCHC.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        if any(part in ("specs", "runtime") for part in rel.parts[1:]):
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import in a file, function-level ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


def _targets(module: str, names: list[str]) -> list[str]:
    """The archc modules an import statement loads (a name may itself be a module)."""
    found = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return found or ([module] if module in MODULES else [])


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _ in _imports(path):
            edges[module].update(t for t in _targets(target, names) if t != module)
    return edges


def _room(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    return ROOMS.index(part)


@pytest.mark.parametrize("folder", ["runtime", "bench"])
def test_runtime_and_bench_import_only_the_public_face(folder):
    bad = [f"{path.relative_to(ROOT)}:{line}: {module}"
           for path in sorted((ROOT / folder).rglob("*.py"))
           for module, _, line in _imports(path)
           if module.startswith("archc.")]
    assert bad == []


def test_archc_never_imports_runtime():
    bad = [f"{path.relative_to(ROOT)}:{line}" for path in MODULES.values()
           for module, _, line in _imports(path) if module.split(".")[0] == "runtime"]
    assert bad == []


def test_no_private_name_crosses_modules():
    bad = []
    for folder in ("archc", "runtime", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module, names, line in _imports(path):
                if module.split(".")[0] not in ("archc", "runtime", "bench"):
                    continue
                bad += [f"{path.relative_to(ROOT)}:{line}: {module}.{n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert bad == []


def test_archc_has_no_import_circles():
    edges, state, cycles = _edges(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node] if node not in stack else stack)
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_every_import_runs_down_the_rooms():
    upward = [f"{a} → {b}" for a, targets in _edges().items() for b in sorted(targets)
              if _room(b) > _room(a)]
    assert upward == []
