"""The template's core is domain-free: everything about a dataset lives in its configuration and its adapter."""

from __future__ import annotations

import re

from helpers import REPO_ROOT

CORE = ("src", "serving", "monitoring", "pipelines")
ADAPTERS = REPO_ROOT / "src" / "tabloop" / "datasets"
# Words of the flights example that must not appear in code every dataset runs.
DOMAIN = re.compile(
    r"\b(flights?|airports?|carriers?|tailnum|arr_delay|nycflights13|weather|planes?|late|new_york)\b", re.IGNORECASE
)


def test_no_dataset_word_in_the_core() -> None:
    found = []
    for top in CORE:
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            if path.is_relative_to(ADAPTERS) and path != ADAPTERS / "__init__.py":
                continue  # an adapter (a module or a package of its own) is where a dataset's words belong
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if DOMAIN.search(line):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_dag_and_the_makefile_name_no_dataset() -> None:
    for name in ("dvc.yaml", "Makefile"):
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        assert not re.search(r"\b(flights|credit)\b", text), name
