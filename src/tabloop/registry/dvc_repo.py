"""DVC glue: the hashes ``dvc.lock`` records, files in DVC's cache, and pipeline runs as DVC experiments.

The only module that reads DVC's files or runs DVC (``make`` and ``dvc.yaml`` call it from outside Python).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from tabloop.errors import TabloopError
from tabloop.io import parse_yaml

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"


def lock_hashes(lock_file: Path, paths: list[str]) -> dict[str, str]:
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


def cached_file(root: Path, directory_hash: str, relpath: str) -> Path | None:
    """The file ``relpath`` of the directory DVC hashed as ``directory_hash``, in the repository's local cache; None
    if the directory's listing or the file is not there (``dvc pull`` fetches them)."""
    listing = _cache_path(root, directory_hash)
    if listing is None:
        return None
    entries = json.loads(listing.read_text(encoding="utf-8"))
    md5 = next((e["md5"] for e in entries if e["relpath"] == relpath), None)
    return _cache_path(root, md5) if md5 else None


def _cache_path(root: Path, oid: str) -> Path | None:
    from dvc.repo import Repo  # DVC is slow to import; only here

    with Repo(str(root)) as repo:
        path = Path(repo.cache.local.oid_to_path(oid))
    return path if path.is_file() else None


def run_experiment(root: Path, name: str, target: str, set_params: list[str]) -> int:
    """``dvc exp run target --name <name> -S ...`` in ``root``, its output shown as it comes; DVC's exit status.

    The name is made unique (``name-2``, ...) if an experiment has it already. The stages start through
    ``pipelines/run``, which takes the virtual environment named by ``VIRTUAL_ENV``: this interpreter's, when it
    runs in one (also when it was started as ``.venv/bin/python`` without activating anything).
    """
    dvc = Path(sys.executable).parent / "dvc"
    command = [str(dvc), "exp", "run", target, "--name", unused_name(root, name)]
    for parameter in set_params:
        command += ["-S", parameter]
    logger.info("running: dvc exp run %s", " ".join(command[3:]))
    environment = {**os.environ, "VIRTUAL_ENV": sys.prefix} if sys.prefix != sys.base_prefix else None
    return subprocess.run(command, cwd=root, env=environment, check=False).returncode


def unused_name(root: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... if an experiment of that name exists already."""
    refs = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname:lstrip=-1)", "refs/exps"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    candidate, n = name, 1
    while candidate in refs:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def check_out(root: Path, target: str) -> None:
    """``dvc checkout --force --with-deps target`` in ``root``: the outputs as ``dvc.lock`` records them, from the
    cache; a DvcError with DVC's message if it fails."""
    dvc = Path(sys.executable).parent / "dvc"
    done = subprocess.run(
        [str(dvc), "checkout", "--force", "--with-deps", target], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise DvcError(
            f"`dvc checkout {target}` failed ({done.stderr.strip() or done.stdout.strip()}); the outputs may not match "
            "dvc.lock: run `dvc checkout` before `make train`"
        )


def snapshot(*paths: Path) -> dict[Path, bytes]:
    """The bytes of every file at or under ``paths``."""
    files: dict[Path, bytes] = {}
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            files[file] = file.read_bytes()
    return files


def restore(files: dict[Path, bytes], directory: Path) -> None:
    """Put back the ``files`` of a :func:`snapshot` that a run rewrote, and remove the files it added under
    ``directory``."""
    for added in (p for p in directory.rglob("*") if p.is_file() and p not in files):
        added.unlink()
    for path, content in files.items():
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)


class DvcError(TabloopError):
    """DVC could not do what was asked."""
