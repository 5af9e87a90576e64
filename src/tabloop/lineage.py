"""Where a model came from: the git commit of the code and the DVC hashes of the data it saw."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tabloop.io import parse_yaml

UNKNOWN = "unknown"


def git_state(root: Path) -> dict[str, Any]:
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
        return {"commit": UNKNOWN, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def dvc_hashes(lock_file: Path, paths: list[str]) -> dict[str, str]:
    """The hash DVC recorded in ``dvc.lock`` for each output path (``unknown`` where it has none yet)."""
    hashes = dict.fromkeys(paths, UNKNOWN)
    if not lock_file.is_file():
        return hashes
    lock = parse_yaml(lock_file.read_text(encoding="utf-8")) or {}
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") in hashes:
                hashes[out["path"]] = str(out.get("md5") or out.get("hash") or UNKNOWN)
    return hashes
