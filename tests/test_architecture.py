"""The layers of docs/architecture.md, checked against the code's own imports.

Every import counts, also one inside a function: a lazy import still ties two modules together,
it only moves the cost to the first call.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "training", "monitoring", "service")

# Which product package may import which (docs/architecture.md, "Layers and arrows").
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "training": {"models"},
    "monitoring": {"models"},
    "service": {"models", "monitoring"},
}
# The one composition root that also mounts training's commands and feeds the demo cohort.
COMPOSITION_ROOTS = {"service.cli": {"training"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _product_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            modules[_module_name(path)] = path
    return modules


def _imports(path: Path, module: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target
            for alias in node.names:  # `from service.web import pages` names a module
                yield f"{target}.{alias.name}"


MODULES = _product_modules()


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = {
            name for name in _imports(path, module) if name in MODULES and name != module
        }
    return graph


def test_arrows_point_one_way() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = module.split(".")[0]
        allowed = ALLOWED[layer] | {layer} | COMPOSITION_ROOTS.get(module, set())
        wrong += [f"{module} -> {t}" for t in sorted(targets) if t.split(".")[0] not in allowed]
    assert wrong == [], "imports against the layer arrows:\n" + "\n".join(wrong)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _without_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    # A package's __init__ re-exporting its own modules is not a cycle between files.
    return {
        m: {t for t in ts if not m.startswith(t + ".") and not t.startswith(m + ".")}
        for m, ts in graph.items()
    }


def test_no_import_cycles() -> None:
    cycles = _cycles(_without_package_inits(_graph()))
    assert cycles == [], "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_a_cycle_and_a_wrong_arrow() -> None:
    """The checks above can fail: a planted cycle is found."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "service.cli" in MODULES and "models.features" in MODULES


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_architecture_document_names_real_modules(doc: str) -> None:
    """Every `package/…py` path the document names exists, so the map cannot drift silently."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:models|training|monitoring|service)/[\w/]+\.py)`", text))
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert named, "the document names no module"
    assert missing == [], f"{doc} names files that do not exist: {missing}"
