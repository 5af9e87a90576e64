"""``tuned.yaml``: the best parameters of each study, in a file of the tuner's own that DVC tracks as parameters.

The user's ``train.yaml`` and ``evaluate.yaml`` are never rewritten. The file is replaced whole (written beside
it, then renamed), so an interrupted write leaves the previous one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tabloop.config.tune import Budget, nested
from tabloop.tuning.study import StudyResult

HEADER = """\
# Written by `make tune DATASET={dataset}`; edit train.yaml and tune.yaml instead, not this file. Each model's best
# trial on the validation split (the test split is never read), with the same budget for both: at most {trials}
# trials and {minutes} each. `make train` trains the network with `network` laid over train.yaml, and the
# evaluate stage reports LightGBM with `lightgbm` beside its defaults. Delete a key, or the file, to go back;
# `dvc params diff` shows what a tuning changed.
"""


def scalar(value: Any) -> str:
    """A YAML 1.2 flow value that reads back as ``value`` (JSON's spelling is YAML 1.2's)."""
    return json.dumps(value)


def _block(tree: Mapping[str, Any], indent: int) -> list[str]:
    lines = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            lines += [f"{' ' * indent}{key}:", *_block(value, indent + 2)]
        else:
            lines.append(f"{' ' * indent}{key}: {scalar(value)}")
    return lines


def render(dataset: str, budget: Budget, results: Mapping[str, StudyResult], primary: str) -> str:
    """The text of ``tuned.yaml`` for the studies' best trials."""
    minutes = f"{budget.minutes:g} minute{'' if budget.minutes == 1 else 's'}"
    lines = [HEADER.format(dataset=dataset, trials=budget.trials, minutes=minutes)]
    for model, result in results.items():
        counts = ", ".join(f"{n} {state}" for state, n in result.trials.items() if n)
        lines.append(f"# {model}: best valid {primary} {result.best_score:.6g} of {counts}")
        values = nested(result.best_values) if model == "network" else result.best_values
        lines += [f"{model}:", *_block(values, 2)] if values else [f"{model}: {{}}"]
    return "\n".join(lines) + "\n"


def write_tuned(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
