"""The import graph of ``service/`` and ``postprocess/``, read from the source (``ast``): no circles, and calls go
one way, api → use cases → adapters and ``postprocess/``, as the README's layout says. Lazy imports inside
functions count for the direction (an upward import is one wherever it stands), not for circles (Python resolves
those at call time); imports under ``if TYPE_CHECKING`` count for neither."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.helpers import ROOT

GENERATED = "service._proto"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {}
    for package in ("service", "postprocess"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).parts
            # Generated code, and Triton's backends, which run inside Triton's stub and import nothing of ours.
            if "_proto" in relative or path.name.endswith("_pb2.py") or "backends" in relative:
                continue
            found[_module_name(path)] = path
    return found


MODULES = _sources()
SCHEMAS = {_module_name(p) for p in (ROOT / "service").rglob("*_pb2.py") if "_proto" not in p.parts}
"""Generated code outside service/_proto (the Caffe schema): imported as modules, checked for nothing."""


def _resolve(name: str) -> str:
    """The longest module of ours that ``name`` (a module, or a module's attribute) names; else ``name``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES or candidate in SCHEMAS or _within(candidate, GENERATED):
            return candidate
    return name


def _imports(path: Path, *, top_level: bool) -> set[str]:
    """What a module imports (``from a import b`` gives ``a.b``, resolved to the module it names)."""
    found: set[str] = set()

    def visit(nodes: Iterable[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(_resolve(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.update(_resolve(f"{node.module}.{alias.name}") for alias in node.names)
            if top_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for block in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, block, None)
                if isinstance(inner, list):
                    visit(inner)

    visit(ast.parse(path.read_text()).body)
    return found


def _ours(names: Iterable[str]) -> set[str]:
    return {n for n in names if n.split(".")[0] in ("service", "postprocess")}


def _within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_there_are_modules_to_check() -> None:
    assert {"service.registry.specs", "service.triton.tensors", "postprocess.nms", "service.cli.client"} <= set(MODULES)


def test_no_module_level_import_circles() -> None:
    graph = {m: _ours(_imports(p, top_level=True)) & set(MODULES) - {m} for m, p in MODULES.items()}
    circles = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                circles.append(" → ".join([*path[path.index(target) :], target]))
            elif target not in state:
                walk(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert circles == []


USE_CASES = (
    "service.registry",
    "service.recognition",
    "service.streams",
    "service.tasks",
    "service.inference",
    "service.inference_tasks",
    "service.catalog",
    "service.auth",
)
ADAPTERS = ("service.triton", "service.store", "service.convert", "service.sources", "service.observability")
TOP = ("service.api", "service.server", "service.cli", "service.client", "service.health")

RULES: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("postprocess",), ("service",), "postprocess/ is numpy only"),
    (("service.domain",), (GENERATED, *TOP, *USE_CASES, *ADAPTERS), "the domain imports nothing above it"),
    (ADAPTERS, (GENERATED, *TOP, *USE_CASES, "service.domain"), "adapters import no use case, domain or api"),
    (USE_CASES, (GENERATED, *TOP), "use cases import no transport and no generated code"),
    (("service.client",), ("service",), "the client side imports only generated code and itself"),
    (("service.cli.client",), ("service",), "the client commands import only the client side"),
]


@pytest.mark.parametrize(("layer", "forbidden", "rule"), RULES, ids=[r[2] for r in RULES])
def test_imports_go_one_way(layer: tuple[str, ...], forbidden: tuple[str, ...], rule: str) -> None:
    allowed = {
        "service.client": (GENERATED, "service.client"),
        "service.cli.client": (GENERATED, "service.client", "service.cli"),
        "service.observability": (),
    }
    wrong = []
    for module, path in MODULES.items():
        if not _within(module, *layer):
            continue
        own = next((p for p in layer if _within(module, p)), "")
        exempt = allowed.get(own, ())
        for target in sorted(_ours(_imports(path, top_level=False))):
            if _within(target, *forbidden) and not _within(target, own, *exempt):
                wrong.append(f"{module} imports {target}")
    assert wrong == [], rule


def test_postprocess_imports_numpy_and_the_standard_library_only() -> None:
    outside = set()
    for module, path in MODULES.items():
        if _within(module, "postprocess"):
            for target in _imports(path, top_level=False):
                top = target.split(".")[0]
                if top not in ("postprocess", "numpy") and top not in sys.stdlib_module_names:
                    outside.add(f"{module} imports {target}")
    assert outside == set()


def test_the_observability_module_imports_nothing_of_ours() -> None:
    assert _ours(_imports(MODULES["service.observability"], top_level=False)) == set()
