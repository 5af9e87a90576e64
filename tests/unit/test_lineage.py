"""What the lineage says about the code and the lock a model was registered with."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tabloop.runtime.lineage import UNKNOWN, git_state


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=root, check=True, capture_output=True
    )


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_a_clean_clone_is_clean_and_its_lock_is_the_commits(clone: Path) -> None:
    state = git_state(clone, clone / "dvc.lock")
    assert len(state.commit) == 40
    assert state.dirty is False
    assert state.lock_committed is True
    assert state.lock_sha256 == hashlib.sha256(b"schema: '2.0'\n").hexdigest()


def test_a_lock_the_pipeline_rewrote_is_not_dirt_but_is_recorded(clone: Path) -> None:
    (clone / "dvc.lock").write_text("schema: '2.0'\nstages: {}\n")
    state = git_state(clone, clone / "dvc.lock")
    assert state.dirty is False
    assert state.lock_committed is False
    assert state.lock_sha256 == hashlib.sha256(b"schema: '2.0'\nstages: {}\n").hexdigest()


def test_changed_code_is_dirty(clone: Path) -> None:
    (clone / "code.py").write_text("x = 2\n")
    assert git_state(clone, clone / "dvc.lock").dirty is True
    assert git_state(clone).dirty is True  # without a lock file, every tracked file counts


def test_outside_a_git_checkout_the_commit_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    state = git_state(tmp_path, tmp_path / "dvc.lock")
    assert (state.commit, state.dirty, state.lock_committed) == (UNKNOWN, None, None)
    assert state.lock_sha256 is not None
