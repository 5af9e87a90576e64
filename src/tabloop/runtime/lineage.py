"""Where a model came from: the git commit of the code and the DVC hashes of the data it saw (``dvc_repo`` reads
them)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict, JsonValue, SerializerFunctionWrapHandler, model_serializer

UNKNOWN = "unknown"


class GitState(BaseModel):
    """The commit of the code, whether the working tree had uncommitted changes (None: not a git checkout), and the
    ``dvc.lock`` the model was registered with.

    ``dirty`` leaves ``dvc.lock`` out: the pipeline rewrites it as it runs, so a clean clone would otherwise be
    called dirty whenever a stage ran. Whether the run reproduced the committed lock is ``lock_committed``, and the
    lock itself is named by its digest, ``lock_sha256``. (Both None in bundles registered before they existed.)
    """

    model_config = ConfigDict(frozen=True)

    commit: str
    dirty: bool | None
    lock_sha256: str | None = None  # of dvc.lock as the register stage read it
    lock_committed: bool | None = None  # whether that lock is the commit's, byte for byte


class LineageMetrics(BaseModel):
    """The model's scores when it was registered: its validation score (ROC AUC for a binary model, else the task's
    primary metric, named) and its test metrics."""

    model_config = ConfigDict(frozen=True)

    valid_roc_auc: float | None = None
    test: dict[str, int | float]
    primary: str | None = None  # the metric of valid_score, for a multiclass or regression model
    valid_score: float | None = None

    @model_serializer(mode="wrap")
    def _another_tasks_left_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k == "test"}


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


def git_state(root: Path, lock_file: Path | None = None) -> GitState:
    """The commit checked out in ``root``, whether its working tree has uncommitted changes besides ``lock_file``,
    and that lock file's digest and whether it is the commit's."""
    lock = lock_file.read_bytes() if lock_file is not None and lock_file.is_file() else None
    digest = None if lock is None else hashlib.sha256(lock).hexdigest()
    try:
        commit = _git(root, "rev-parse", "HEAD").strip()
        exclude = [] if lock_file is None else [".", f":(exclude){lock_file.resolve().relative_to(root.resolve())}"]
        status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", *exclude)
        committed = None
        if lock_file is not None and lock is not None:
            committed = _committed(root, lock_file) == lock
    except (OSError, subprocess.CalledProcessError, ValueError):
        return GitState(commit=UNKNOWN, dirty=None, lock_sha256=digest)
    return GitState(commit=commit, dirty=bool(status.strip()), lock_sha256=digest, lock_committed=committed)


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def _committed(root: Path, lock_file: Path) -> bytes | None:
    """The lock file's content in the commit (None if the commit has none)."""
    path = lock_file.resolve().relative_to(root.resolve()).as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True, check=False)
    return shown.stdout if shown.returncode == 0 else None
