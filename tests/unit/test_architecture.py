"""The shape of service/, read from its source with `ast`: which part may import which.

A part is a direct child of the package: a subpackage (`service.http`, `service.notify` ...)
or a top-level module (`service.bookings`, `service.config` ...). Every import counts,
including those made inside functions or only for type checking.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2] / "service"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
WEB_ALLOWED = ("service.http", "service.app", "service.__main__", "service.keys", "service.sandbox")


@attrs.frozen
class Module:
    name: str  # dotted, e.g. service.http.handlers
    is_package: bool
    tree: ast.Module
    lines: int

    @property
    def part(self) -> str:
        return ".".join(self.name.split(".")[:2])


def load(root: Path = ROOT) -> dict[str, Module]:
    modules = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        source = path.read_text()
        name = ".".join(parts)
        modules[name] = Module(name, is_package, ast.parse(source), len(source.splitlines()))
    return modules


def imports(module: Module, known: Iterable[str]) -> set[str]:
    """Every module `module` imports: gateway modules by name, others by their full name."""
    known = set(known)
    found: set[str] = set()
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from service import keys` imports the module service.keys.
            found.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known)
    return found


def part_graph(modules: Mapping[str, Module]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module in modules.values():
        if module.name == "service":
            continue
        edges = graph.setdefault(module.part, set())
        for target in imports(module, modules):
            if target.startswith("service.") and target in modules:
                other = modules[target].part
                if other != module.part:
                    edges.add(other)
    return graph


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of parts (Tarjan), each as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _inside(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def impure_domain(modules: Mapping[str, Module]) -> list[str]:
    bad = []
    for module in modules.values():
        if not _inside(module.name, ["service.domain"]):
            continue
        for target in imports(module, modules):
            top = target.split(".")[0]
            if _inside(target, ["service.domain"]) or top == "attrs" or top == "__future__":
                continue
            if top not in sys.stdlib_module_names:
                bad.append(f"{module.name} imports {target}")
    return bad


def web_outside_the_edge(modules: Mapping[str, Module]) -> list[str]:
    bad = []
    for module in modules.values():
        if _inside(module.name, WEB_ALLOWED):
            continue
        for node in ast.walk(module.tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            if any(
                n == "aiohttp.web" or n.startswith(("aiohttp.web.", "aiohttp.web_")) for n in names
            ):
                bad.append(f"{module.name} imports aiohttp.web")
    return bad


def forbidden_imports(
    modules: Mapping[str, Module], source: str, allowed: Iterable[str], forbidden: Iterable[str]
) -> list[str]:
    """Gateway imports of modules under `source` that fall in `forbidden` and not `allowed`."""
    bad = []
    for module in modules.values():
        if not _inside(module.name, [source]):
            continue
        for target in sorted(imports(module, modules)):
            if _inside(target, forbidden) and not _inside(target, allowed):
                bad.append(f"{module.name} imports {target}")
    return bad


def oversized(modules: Mapping[str, Module]) -> list[str]:
    bad = []
    for module in modules.values():
        if _inside(module.name, ["service.sandbox"]):
            continue
        if module.lines > MAX_MODULE_LINES:
            bad.append(f"{module.name} has {module.lines} lines")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{module.name}.{node.name} has {length} lines")
    return bad


# -- the rules, on service/ ------------------------------------------------------------------
@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    found = load()
    assert "service.http.handlers" in found and "service.domain.booking" in found
    return found


def test_no_import_cycle_between_parts(modules: dict[str, Module]) -> None:
    graph = part_graph(modules)
    assert "service.notify" in graph["service.http"]  # the graph sees real edges
    assert cycles(graph) == []


def test_the_domain_imports_only_the_standard_library_and_attrs(
    modules: dict[str, Module],
) -> None:
    assert impure_domain(modules) == []


def test_aiohttp_web_is_only_used_at_the_edge(modules: dict[str, Module]) -> None:
    assert web_outside_the_edge(modules) == []


def test_the_http_layer_never_talks_to_vyte(modules: dict[str, Module]) -> None:
    assert forbidden_imports(modules, "service.http", (), ["service.vyte"]) == []


def test_the_sandbox_imports_nothing_of_the_gateway(modules: dict[str, Module]) -> None:
    assert forbidden_imports(modules, "service.sandbox", ["service.sandbox"], ["service"]) == []


def test_modules_and_functions_stay_small(modules: dict[str, Module]) -> None:
    assert oversized(modules) == []


# -- each rule catches what it is there for --------------------------------------------------
def _fake(tmp_path: Path, files: Mapping[str, str]) -> dict[str, Module]:
    root = tmp_path / "service"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load(root)


def test_the_rules_catch_violations(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    big = "\n" * MAX_MODULE_LINES + f"def long() -> None:\n{body}\n"
    fake = _fake(
        tmp_path,
        {
            "bookings.py": "from service.notify.outbox import Outbox\n",
            "notify/__init__.py": "",
            "notify/outbox.py": "def f() -> None:\n    from service import bookings\n",
            "domain/__init__.py": "",
            "domain/pure.py": "import attrs\nimport datetime\nimport aiohttp\n",
            "vyte/__init__.py": "",
            "vyte/client.py": "from aiohttp import web\n",
            "http/__init__.py": "",
            "http/handlers.py": "from service.vyte import client\n",
            "sandbox/__init__.py": "",
            "sandbox/app.py": "from . import state\nfrom service.errors import X\n",
            "sandbox/state.py": "",
            "errors.py": "X = 1\n",
            "big.py": big,
        },
    )
    assert cycles(part_graph(fake)) == [["service.bookings", "service.notify"]]
    assert impure_domain(fake) == ["service.domain.pure imports aiohttp"]
    assert web_outside_the_edge(fake) == ["service.vyte.client imports aiohttp.web"]
    assert forbidden_imports(fake, "service.http", (), ["service.vyte"]) == [
        "service.http.handlers imports service.vyte",
        "service.http.handlers imports service.vyte.client",
    ]
    sandbox = forbidden_imports(fake, "service.sandbox", ["service.sandbox"], ["service"])
    assert sandbox == ["service.sandbox.app imports service.errors"]
    assert sorted(oversized(fake)) == [
        f"service.big has {len(big.splitlines())} lines",
        f"service.big.long has {MAX_FUNCTION_LINES + 1} lines",
    ]
