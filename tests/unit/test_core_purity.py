"""The pure core (parse, validate, route, filter) imports no framework.

Checked with ``ast`` on the source, following the core's own ``bridge.*`` imports,
so a framework pulled in through another bridge module is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge

PACKAGE_DIR = Path(bridge.__file__).parent
CORE_MODULES = ["events", "config", "routing", "filters", "personal_data"]
FRAMEWORKS = frozenset({"aiohttp", "aiokafka", "prometheus_client", "structlog"})


def imported_modules(source: str) -> set[str]:
    """Every absolute module name ``source`` imports (``import x.y``, ``from x.y import z``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: the package is flat, so "." is bridge
                module = "bridge" + (f".{node.module}" if node.module else "")
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def framework_imports(source: str) -> set[str]:
    """The frameworks (top-level names) ``source`` imports directly."""
    return {name.split(".")[0] for name in imported_modules(source)} & FRAMEWORKS


def _bridge_module_source(name: str) -> str | None:
    """Source of ``bridge`` or ``bridge.<name>``, or None if ``name`` is not a module file."""
    parts = name.split(".")[1:]
    path = PACKAGE_DIR.joinpath(*parts).with_suffix(".py") if parts else PACKAGE_DIR / "__init__.py"
    return path.read_text() if path.is_file() else None


def framework_imports_of_module(module: str) -> dict[str, set[str]]:
    """``bridge.<module>`` and every bridge module it reaches → the frameworks each imports."""
    found: dict[str, set[str]] = {}
    todo, seen = [f"bridge.{module}"], set()
    while todo:
        name = todo.pop()
        source = _bridge_module_source(name)
        if name in seen or source is None:
            continue
        seen.add(name)
        if frameworks := framework_imports(source):
            found[name] = frameworks
        todo.extend(n for n in imported_modules(source) if n.split(".")[0] == "bridge")
    return found


@pytest.mark.parametrize("module", CORE_MODULES, ids=str)
def test_core_module_imports_no_framework(module: str):
    assert (PACKAGE_DIR / f"{module}.py").is_file()
    assert framework_imports_of_module(module) == {}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import aiohttp\n", {"aiohttp"}),
        ("from aiohttp import web\n", {"aiohttp"}),
        ("from aiohttp.web import Request\n", {"aiohttp"}),
        ("import aiokafka.errors as errors\n", {"aiokafka"}),
        ("from prometheus_client import Counter\n", {"prometheus_client"}),
        ("def f():\n    import structlog\n", {"structlog"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from aiohttp import web\n",
            {"aiohttp"},
        ),
    ],
    ids=[
        "import",
        "from-import",
        "from-submodule",
        "import-as",
        "prometheus",
        "inside-function",
        "type-checking",
    ],
)
def test_checker_fails_on_framework_imports(source: str, expected: set[str]):
    assert framework_imports(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        "import json\nfrom dataclasses import dataclass\n",
        "import aiohttp_like\nfrom structlogger import x\n",
        "# import aiohttp\ntext = 'from aiokafka import AIOKafkaProducer'\n",
    ],
    ids=["stdlib", "similar-names", "comment-and-string"],
)
def test_checker_passes_clean_source(source: str):
    assert framework_imports(source) == set()


def test_checker_follows_bridge_imports():
    # logs.py imports structlog; a core module importing bridge.logs would be caught through it.
    assert framework_imports_of_module("logs") == {"bridge.logs": {"structlog"}}
    assert "bridge.logs" in imported_modules("from bridge.logs import get_logger\n")
    assert "bridge.logs" in imported_modules("from . import logs\n")
    assert "bridge.logs" in imported_modules("from .logs import get_logger\n")
