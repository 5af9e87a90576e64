"""The service's image for real: `make image` lints the Dockerfiles, builds a Debian base with debootstrap and the
image with podman from a wheelhouse made here, and the container serves the champion that the stack's MLflow
server holds, on 127.0.0.1 (the host's network), until it is stopped with SIGTERM.

podman's default limits for root (open files, processes) may exceed what this process may raise them to (a
container in a container): the container gets this process's own limits, capped at 4096, which it never needs more
of.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import REPO_ROOT, WHERE, free_port, register_inputs, slice_registry
from tabloop.config import EvaluateConfig, load_registry_config
from tabloop.settings import Settings
from tabloop.stages.register import run as register_candidate

pytestmark = pytest.mark.image
BUILD_TIMEOUT_S = 1800
LIMIT = 4096


def test_the_image_builds_here_and_serves_the_stacks_champion(
    started: dict[str, str],
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: EvaluateConfig,
    test_rows: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    tracking_uri = started["TABLOOP_TRACKING_URI"]
    # The name the image's configuration serves; the slices' gate, which the tests' small model passes (as in the
    # registry_store fixture).
    config = slice_registry("image-tests", load_registry_config(WHERE.registry_config).model_name)
    inputs = register_inputs(trained["bundle"], stage_outputs["features"], trained, evaluated, tmp_path / "r.json")
    outcome = register_candidate(Settings(tracking_uri=tracking_uri), config, evaluate_config, inputs)
    assert outcome.champion == outcome.version == "1"

    image = f"localhost/tabloop-serve-test:{uuid.uuid4().hex[:8]}"
    built = subprocess.run(
        ["make", "image", f"IMAGE={image}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    name = f"tabloop-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    try:
        run = subprocess.run(
            [
                *_podman_run(name),
                *("-e", f"TABLOOP_TRACKING_URI={tracking_uri}", "-e", "TABLOOP_SERVE_HOST=127.0.0.1"),
                *("-e", f"PORT={port}", image),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        url = f"http://127.0.0.1:{port}"
        ready = _ready(url, name)
        assert ready["model"] == {"name": config.model_name, "version": "1", "alias": "champion", "source": "registry"}
        answer = httpx.post(f"{url}/predict", json=test_rows[0], timeout=10)
        assert answer.status_code == 200, answer.text
        answered = answer.json()
        assert answered["model_version"] == "1"
        assert 0.0 <= answered["predictions"][0]["probability"] <= 1.0
        assert _user(name) == "10001"  # not root

        stopped = subprocess.run(["podman", "stop", "-t", "30", name], capture_output=True, text=True, check=False)
        assert stopped.returncode == 0, stopped.stderr
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
        assert "Application shutdown complete" in logs.stdout + logs.stderr  # uvicorn logs to stderr
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=False)
        subprocess.run(["podman", "rmi", "-f", image], capture_output=True, check=False)
        for made in ("wheels", "project"):
            shutil.rmtree(REPO_ROOT / "build" / made, ignore_errors=True)


def _podman_run(name: str) -> list[str]:
    """``podman run`` detached, on the host's network, with limits this process can grant."""
    files = min(LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    processes = min(LIMIT, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return [
        "podman",
        *runtime,
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--ulimit",
        f"nofile={files}:{files}",
        "--ulimit",
        f"nproc={processes}:{processes}",
    ]


def _ready(url: str, name: str, timeout_s: float = 180) -> dict[str, Any]:
    """/health/ready's answer once it is 200; the container's log if it never is."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(f"{url}/health/ready", timeout=5)
            if answer.status_code == 200:
                return dict(answer.json())
        time.sleep(1)
    logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
    raise AssertionError(f"the container was not ready within {timeout_s:g} s:\n{logs.stdout[-3000:]}{logs.stderr}")


def _user(name: str) -> str:
    command = ["podman", "inspect", "--format", "{{.Config.User}}", name]
    found = subprocess.run(command, capture_output=True, text=True, check=False)
    return found.stdout.strip().split(":")[0]
