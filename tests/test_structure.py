"""The package's shape: no import cycles between modules, and a light ``import cnnlab``."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "cnnlab"


def module_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (anywhere in the file,
    function-level imports included)."""
    names = {}
    for f in SRC.rglob("*.py"):
        parts = ("cnnlab",) + f.relative_to(SRC).with_suffix("").parts
        names[".".join(parts).removesuffix(".__init__")] = f
    graph = {}
    for name, f in names.items():
        found = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in names and m not in (name, "cnnlab")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None: depth-first search."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    graph = module_graph()
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("lower, higher", [
    ("cnnlab.run", "cnnlab.analysis"), ("cnnlab.run", "cnnlab.report"),
    ("cnnlab.training.trainer", "cnnlab.run"), ("cnnlab.models", "cnnlab.training"),
    ("cnnlab.data", "cnnlab.models"), ("cnnlab.analysis", "cnnlab.report"),
])
def test_a_lower_layer_never_imports_a_higher_one(lower, higher):
    graph = module_graph()
    seen, todo = set(), [m for m in graph if m == lower or m.startswith(lower + ".")]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    assert not [m for m in seen if m == higher or m.startswith(higher + ".")]


def test_import_cnnlab_is_light():
    code = ("import sys, cnnlab\nheavy = ['torch', 'matplotlib', 'scipy', 'sklearn', 'jinja2']\n"
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "[]"
