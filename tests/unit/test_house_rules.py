"""Rules of the product code that no linter checks: short modules and functions, and one error family."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from helpers import REPO_ROOT
from tabloop.errors import TabloopError

PRODUCT = ("src/tabloop", "serving", "monitoring", "pipelines")
MAX_FUNCTION_LINES = 60  # from ``def`` to the last line, nested functions included
MAX_MODULE_LINES = 400  # a module past this does several jobs: split it by job


def product_files() -> list[Path]:
    return sorted(path for root in PRODUCT for path in (REPO_ROOT / root).rglob("*.py"))


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT / "src" if path.is_relative_to(REPO_ROOT / "src") else REPO_ROOT)
    return ".".join(relative.with_suffix("").parts)


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = [
        f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in product_files()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_no_module_is_longer_than_four_hundred_lines() -> None:
    long = [
        f"{path.relative_to(REPO_ROOT)} ({lines} lines)"
        for path in product_files()
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these by job:\n" + "\n".join(long)


@pytest.mark.parametrize(
    "path", [p for p in product_files() if p.name != "__main__.py"], ids=lambda p: str(p.relative_to(REPO_ROOT))
)
def test_every_error_the_product_raises_derives_from_the_project_base(path: Path) -> None:
    """Entry points turn a TabloopError into one line and an exit code; an error class outside the family would
    reach the user as a traceback."""
    module = importlib.import_module(module_name(path))
    outside = [
        name
        for name, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and issubclass(cls, BaseException) and not issubclass(cls, TabloopError)
    ]
    assert not outside, f"{path.relative_to(REPO_ROOT)}: {outside} should derive from tabloop.errors.TabloopError"
