"""The pure core stays pure: no event loop, no HTTP, no threads in ``_core``.

And the catalogue cache of the runtime never reaches the HTTP library.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import wavespeed_async

PACKAGE = Path(wavespeed_async.__file__).parent
FORBIDDEN_IN_CORE = {"asyncio", "anyio", "aiohttp", "trio", "threading", "socket"}
#: The catalogue's modules import only the standard library, msgspec and the error tree.
CATALOGUE_MODULES = ["catalog", "codegen", "rules", "schema", "validators"]


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "_core").glob("*.py")), ids=lambda p: p.name)
def test_core_modules_import_no_event_loop_http_or_threads(path: Path) -> None:
    roots = {name.split(".")[0] for name in imported(path)}
    assert not roots & FORBIDDEN_IN_CORE


@pytest.mark.parametrize("name", CATALOGUE_MODULES)
def test_catalogue_core_imports_only_stdlib_msgspec_and_the_errors(name: str) -> None:
    for module in imported(PACKAGE / "_core" / f"{name}.py"):
        allowed = (
            module.split(".")[0] in sys.stdlib_module_names
            or module == "msgspec"
            or module == "wavespeed_async._core.errors"
            or module.startswith("wavespeed_async._core.")
        )
        assert allowed, module


def test_the_catalogue_cache_never_imports_the_http_library() -> None:
    roots = {n.split(".")[0] for n in imported(PACKAGE / "_runtime" / "catalog_cache.py")}
    assert "aiohttp" not in roots
    assert "anyio" in roots  # it does its waiting and file work through anyio
