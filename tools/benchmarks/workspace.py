"""A disposable copy of the repository, to run the pipeline without touching the user's outputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tabloop.layout import Layout

REPO_ROOT = Path(__file__).resolve().parents[2]  # tools/benchmarks/ is two below the root


def copy_repository(dest: Path, source: Path = REPO_ROOT) -> Path:
    """``dest`` holding the files git sees in ``source`` (tracked and not ignored), as a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=source,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        path = source / name
        if path.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def edit_config(repo: Path, name: str, dataset: str | None = None, **changes: Any) -> None:
    """Set keys of ``configs/<dataset>/<name>.yaml`` in ``repo`` (default: the default dataset's): a dict updates a
    section, anything else replaces a value."""
    path = Layout.of(dataset, repo).configs / f"{name}.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def environment() -> dict[str, str]:
    """The environment a stage runs in: this interpreter's tools first on PATH, telemetry off."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "true",
    }


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dvc <args>`` run in ``repo`` with this interpreter's environment."""
    executable = Path(sys.executable).parent / "dvc"
    return subprocess.run(
        [str(executable), *args], cwd=repo, env=environment(), capture_output=True, text=True, check=False
    )
