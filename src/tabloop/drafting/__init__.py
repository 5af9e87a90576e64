"""``make init``: a dataset's configuration drafted from its data, for a person to review.

The draft infers what the data shows (dtypes, the bounds a number's observed range implies, open categories,
nullability, which columns identify rows or are too unique to be features, the task and, for a binary target, the
minority class as the positive one) and says so in comments: it is a starting point, never a contract to trust
unread. Problems that no review could fix (an empty file, a target with one class or missing values, an id with
duplicates, a time column that does not parse) stop it with a message that names the column.

:mod:`~tabloop.drafting.profile` reads the data and says what each column is; :mod:`~tabloop.drafting.render`
writes ``data.yaml`` from the profile and :mod:`~tabloop.drafting.templated` the others, from ``templates/`` filled
with the typed configuration's defaults (so that a draft and a key left out mean the same) and the task's rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tabloop.config import (
    RETRAINED_FILE,
    load_data_config,
    load_evaluate_config,
    load_registry_config,
    load_train_config,
    load_tune_config,
    retrained_yaml,
)
from tabloop.config.monitor import load_monitor_config
from tabloop.drafting.profile import draft_split, profile, read_data
from tabloop.drafting.render import data_yaml
from tabloop.drafting.request import DraftError, DraftRequest
from tabloop.drafting.target import whole_classes
from tabloop.drafting.templated import (
    evaluate_yaml,
    monitor_yaml,
    registry_yaml,
    train_yaml,
    tune_yaml,
    tuned_yaml,
)
from tabloop.errors import ConfigError
from tabloop.io import parse_yaml
from tabloop.layout import DATASETS_FILE, NAME_PATTERN, Layout, load_datasets

__all__ = ["Draft", "DraftError", "DraftRequest", "add_to_datasets", "draft_dataset"]


@dataclass(frozen=True)
class Draft:
    """The drafted dataset: where its files went and what a person should look at first."""

    directory: Path
    files: list[Path]
    warnings: list[str]


def draft_dataset(request: DraftRequest, root: Path = Path()) -> Draft:
    """Draft ``configs/<name>/`` from the data and add the dataset to ``configs/datasets.yaml``."""
    datasets = load_datasets(root)
    if re.fullmatch(NAME_PATTERN, request.name) is None:
        raise DraftError(f"NAME: {request.name!r} is not a dataset name (lower case letters, digits and _, 40 at most)")
    where = Layout(request.name, root)
    if where.configs.exists():
        raise DraftError(f"NAME: a dataset {request.name!r} exists already ({where.configs}); pick another name")
    if request.name in datasets.datasets:
        raise DraftError(
            f"NAME: {DATASETS_FILE} lists a dataset {request.name!r} already (its configs/ folder is gone); pick "
            "another name, or take it off that list"
        )
    source, table_name, frame = read_data(request.data, root)
    frame = whole_classes(frame, request.target, request.task)
    columns, target, warnings = profile(frame, request)
    for name, markers in (source.get("markers") or {}).items():
        shown = ", ".join(map(repr, markers))
        warnings.append(f"column {name!r}: {shown} read as a missing value (source.null_values), the rest as numbers")
    split = draft_split(frame, request)
    labelled = frame[request.target].drop_nulls()  # what is trained and evaluated on: the bounds' and sizes' data
    texts = {
        "data.yaml": data_yaml(
            request, source=source, table=table_name, frame=frame, columns=columns, target=target, split=split
        ),
        "train.yaml": train_yaml(target.task),
        "evaluate.yaml": evaluate_yaml(columns, target.task),
        "registry.yaml": registry_yaml(request.name, target, labelled),
        "monitor.yaml": monitor_yaml(
            request, target.task, target=labelled, positive=target.positive, columns=columns, split=split
        ),
        "tune.yaml": tune_yaml(),
        "tuned.yaml": tuned_yaml(),
        RETRAINED_FILE: retrained_yaml(),
    }
    where.configs.mkdir(parents=True)
    files = []
    for file_name, text in texts.items():
        path = where.configs / file_name
        path.write_text(text, encoding="utf-8")
        files.append(path)
    try:  # the draft must at least be a valid configuration, every file of it
        load_data_config(where.data_config)
        load_train_config(where.train_config)
        load_evaluate_config(where.evaluate_config)
        load_registry_config(where.registry_config)
        load_monitor_config(where.monitor_config, where)
        load_tune_config(where.tune_config)
    except ConfigError:
        for path in files:
            path.unlink()
        where.configs.rmdir()
        raise
    add_to_datasets(root / DATASETS_FILE, request.name)
    return Draft(where.configs, files, warnings)


def add_to_datasets(path: Path, name: str) -> None:
    """``name`` appended to the datasets list, the rest of the file (and its comments) as it was."""
    text = path.read_text(encoding="utf-8")
    listed = parse_yaml(text)["datasets"]
    lines = text.rstrip("\n").split("\n")
    last = max(i for i, line in enumerate(lines) if line.strip().startswith("- ") and line.strip()[2:] in listed)
    lines.insert(last + 1, f"  - {name}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
