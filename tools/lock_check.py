"""``python -m tools.lock_check``: did the pipeline reproduce the committed ``dvc.lock``, on any x86-64 CPU?

The data stages (``ingest``, ``validate``, ``features``) are pure data work: their lock entries must be identical,
byte for byte. The trained stages (``train``, ``evaluate``, ``register``) are not bit-identical across CPU vendors
(MKL and oneDNN pick other kernels on an Intel AVX-512 machine than on an AMD one, and floating-point sums round
differently), so where their entries differ from the committed ones, their parameters must still be the committed
ones and their metrics must be within a tolerance of the committed metrics, which ``.ci/metrics.json`` holds (the
metric files themselves are DVC outputs, absent from a clean clone). Where the lock is identical, the metrics must
be exactly the recorded ones, so the recorded file cannot go stale. ``--write`` records the current metrics.

Exit status: 0 reproduced (exactly, or within tolerance), 1 not.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tabloop.io import parse_yaml

DATA_STAGES = ("ingest", "validate", "features")
TRAINED_STAGES = ("train", "evaluate", "register")
RECORD = Path(".ci") / "metrics.json"
# Within this of the committed value: 0.005 of ROC AUC or log loss (a CPU vendor's rounding moved the flights' test
# ROC AUC by 0.0002), 1% of an RMSE (in the target's units)
ABSOLUTE, RELATIVE = 0.005, 0.01

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def stage_entries(text: str) -> dict[str, dict[str, Any]]:
    """The stages of a ``dvc.lock`` text, by name."""
    return dict((parse_yaml(text) or {}).get("stages") or {})


def metrics_of(root: Path, dataset: str) -> dict[str, float]:
    """A dataset's recorded scores: the validation score of the epoch kept and each model's test primary metric."""
    reports = root / "reports" / dataset
    train = json.loads((reports / "train" / "metrics.json").read_text(encoding="utf-8"))
    evaluation = json.loads((reports / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    primary = evaluation["primary"]["name"]
    found = {f"valid_{primary}": float(train[f"valid_{primary}"])}
    found |= {f"test_{primary}.{model}": float(scores[primary]) for model, scores in evaluation["test"].items()}
    return found


def compare(committed: str, current: str, recorded: dict[str, dict[str, float]], root: Path) -> list[str]:
    """What keeps ``current`` from reproducing ``committed`` (the lock texts), with the ``recorded`` metrics of each
    dataset; empty when it reproduces."""
    before, after = stage_entries(committed), stage_entries(current)
    problems = [f"{name}: in one lock file only" for name in sorted(set(before) ^ set(after))]
    moved: set[str] = set()
    for name in sorted(set(before) & set(after)):
        stage, _, dataset = name.partition("@")
        if before[name] == after[name]:
            continue
        if stage in DATA_STAGES:
            problems.append(f"{name}: a data stage's lock entry differs (data work must reproduce byte for byte)")
        elif stage in TRAINED_STAGES:
            if (before[name].get("cmd"), before[name].get("params")) != (
                after[name].get("cmd"),
                after[name].get("params"),
            ):
                problems.append(f"{name}: its command or parameters differ from the committed ones")
            moved.add(dataset)
        else:
            problems.append(f"{name}: differs, and is no stage this check knows")
    datasets = {name.partition("@")[2] for name in after if name.startswith("train@")}
    for dataset in sorted(datasets):
        problems += _metric_problems(
            dataset, recorded.get(dataset), metrics_of(root, dataset), exact=dataset not in moved
        )
    return problems


def _metric_problems(
    dataset: str, recorded: dict[str, float] | None, measured: dict[str, float], *, exact: bool
) -> list[str]:
    if recorded is None:
        return [f"{dataset}: no metrics recorded in {RECORD} (python -m tools.lock_check --write)"]
    problems = []
    for key in sorted(set(recorded) | set(measured)):
        want, got = recorded.get(key, math.nan), measured.get(key, math.nan)
        margin = 0.0 if exact else RELATIVE * abs(want) if "rmse" in key else ABSOLUTE
        if not abs(got - want) <= margin:
            how = "recorded" if exact else f"committed (tolerance {margin:.4g})"
            problems.append(f"{dataset}: {key} {got:.6g} against the {how} {want:.6g}")
    return problems


@app.command()
def main(
    write: Annotated[bool, typer.Option(help=f"Record the current metrics of every dataset in {RECORD}.")] = False,
    root: Annotated[Path, typer.Option(help="The repository.")] = Path(),
) -> None:
    """Check that the workspace's dvc.lock reproduces the committed one (exactly, or within tolerance where the
    trained stages' bits differ)."""
    current = (root / "dvc.lock").read_text(encoding="utf-8")
    datasets = sorted({name.partition("@")[2] for name in stage_entries(current) if name.startswith("train@")})
    if write:
        recorded = {dataset: metrics_of(root, dataset) for dataset in datasets}
        (root / RECORD).write_text(json.dumps(recorded, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(f"recorded the metrics of {', '.join(datasets)} in {RECORD}")
        return
    committed = subprocess.run(
        ["git", "show", "HEAD:dvc.lock"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    recorded = json.loads((root / RECORD).read_text(encoding="utf-8"))
    problems = compare(committed, current, recorded, root)
    if current == committed and not problems:
        print("dvc.lock reproduced exactly; the recorded metrics match")
    elif not problems:
        print(
            "the data stages reproduced exactly; the trained stages' bits differ (another CPU?) with every metric "
            "within tolerance of the committed ones"
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    raise typer.Exit(code=1 if problems else 0)


if __name__ == "__main__":
    app()
