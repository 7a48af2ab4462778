"""Properties of the engine's structure that issue reviews asked for and that are easy to lose silently:
no import cycle inside optbench/, and the engine names no particular optimizer or metric in its code (only
settings.py holds the default speed reference; docstrings and comments may name anything)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "optbench"
PLUGIN_NAMES = re.compile(r"\b(adamw|sharpness|entropy_gap|hessian_trace)")  # prefixes too: entropy_gaps_...


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports() -> dict[str, set[str]]:
    names = {_module_name(p) for p in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in ENGINE.rglob("*.py"):
        deps: set[str] = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:  # imports inside functions are lazy
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optbench"):
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("optbench")}
        graph[_module_name(path)] = deps & names
    return graph


def test_no_import_cycle_inside_the_engine() -> None:
    graph = _top_level_imports()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_the_engine_names_no_optimizer_or_metric() -> None:
    found = []
    for path in sorted(ENGINE.rglob("*.py")):
        if path.name == "settings.py":
            continue  # the one default: the speed reference's name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            text = None
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            if text and PLUGIN_NAMES.search(text):
                found.append(f"{path.relative_to(ENGINE.parent)}:{node.lineno}: {text[:60]!r}")
    assert found == []
