"""The suite follows the configured dataset: its fixtures come from the configuration of whichever dataset
``TABLOOP_DATASET`` names, never from state that tools write into the working copy, and the fast suite passes with
each dataset of the repository configured, whatever its task (binary, multiclass, regression)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO_ROOT, WHERE
from tabloop.config import load_data_config
from tabloop.layout import Layout, load_datasets
from tools.benchmarks.workspace import environment

OTHERS = [name for name in load_datasets(REPO_ROOT).datasets if name != WHERE.dataset]


@pytest.mark.parametrize("dataset", OTHERS)
def test_the_fast_suite_passes_with_another_dataset_configured(dataset: str, tmp_path: Path) -> None:
    fast = ["-m", "not e2e and not ui", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *fast],
        cwd=REPO_ROOT,
        env={**environment(), "TABLOOP_DATASET": dataset},
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output.splitlines()[-1]
    adapter = load_data_config(Layout(dataset, REPO_ROOT).data_config).adapter
    if adapter != "flights":  # listed as skipped
        assert f"flights adapter tests; the configured dataset is {dataset!r}" in output
