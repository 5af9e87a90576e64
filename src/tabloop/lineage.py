"""Where a model came from: the git commit of the code and the DVC hashes of the data it saw (``dvc_repo`` reads
them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict, JsonValue

UNKNOWN = "unknown"


class GitState(BaseModel):
    """The commit of the code and whether the working tree had uncommitted changes (None: not a git checkout)."""

    model_config = ConfigDict(frozen=True)

    commit: str
    dirty: bool | None


class LineageMetrics(BaseModel):
    """The model's scores when it was registered: validation ROC AUC and its test metrics."""

    model_config = ConfigDict(frozen=True)

    valid_roc_auc: float
    test: dict[str, int | float]


class Lineage(BaseModel):
    """Where a registered model came from: ``lineage.json`` in its bundle, written by the register stage and read
    by the service (``/model``) and by monitoring (the reference of each version)."""

    model_config = ConfigDict(frozen=True)

    bundle_sha256: str
    git: GitState
    data: dict[str, str]  # the DVC hash of each data directory, by its role
    params: dict[str, JsonValue]  # the pipeline's parameters as DVC recorded them
    metrics: LineageMetrics
    dvc_experiment: str | None = None
    mlflow_run_id: str | None = None


def git_state(root: Path) -> GitState:
    """The commit checked out in ``root`` and whether the working tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return GitState(commit=UNKNOWN, dirty=None)
    return GitState(commit=commit, dirty=bool(status.strip()))
