"""Fixtures of the end-to-end tests: the production-like stack, started by the tests that need it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from helpers import REPO_ROOT, free_port
from stack_helpers import Stack, free_block, read_env
from tools.stack.settings import StackSettings


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    setup = subprocess.run(["make", "stack-setup"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert setup.returncode == 0, f"make stack-setup failed:\n{setup.stdout}\n{setup.stderr}"
    root = Path(tempfile.mkdtemp(prefix="tabloop-stack-e2e-"))  # not under pytest's 0700 tmp: postgres enters it
    root.chmod(0o711)
    postgres_port, mlflow_port = free_port(), free_port()
    s3_port = free_block()
    variables = {
        "TABLOOP_STACK_DIR": str(root / ".stack"),
        "TABLOOP_STACK_POSTGRES_PORT": str(postgres_port),
        "TABLOOP_STACK_S3_PORT": str(s3_port),
        "TABLOOP_STACK_MLFLOW_PORT": str(mlflow_port),
    }
    settings = StackSettings(dir=root / ".stack", postgres_port=postgres_port, s3_port=s3_port, mlflow_port=mlflow_port)
    env = {**os.environ, **variables, "COLUMNS": "200"}  # a wide table: addresses are never cut
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    made = Stack(root, settings, env)
    try:
        yield made
    finally:
        made.stop()
        left = made.leftovers()
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.kill()
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"left running: {[p.info['cmdline'] for p in left]}"


@pytest.fixture
def stopped_after(stack: Stack) -> Iterator[Stack]:
    """The stack, stopped when the test ends whatever happened in it."""
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def started(stopped_after: Stack) -> dict[str, str]:
    """The stack started with `make stack-up` (and stopped when the test ends): its connection settings."""
    up = stopped_after.make("stack-up")
    assert up.returncode == 0, up.stdout + up.stderr
    return read_env(stopped_after.settings.paths().env_file)
