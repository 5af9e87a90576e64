"""Reading a YAML configuration file into its typed model, with errors that name each offending key."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml.error import YAMLError

from tabloop.config.data import SPLIT_KINDS
from tabloop.config.tune import PARAM_KINDS
from tabloop.errors import ConfigError
from tabloop.io import parse_yaml

M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> dict[str, object]:
    """The mapping at the top of a YAML file, or a ConfigError saying why there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: configuration file not found") from e
    try:
        data = parse_yaml(text)
    except YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def parse_config(model: type[M], data: Mapping[str, object], origin: str) -> M:
    """``data`` validated as ``model``; errors name each offending key as a dotted path."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, origin)) from e


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem, each naming the key path, for a human reading a config file."""
    lines = [f"{origin}: invalid configuration"]
    for problem in error.errors():
        loc = problem["loc"]
        key = ".".join(str(part) for i, part in enumerate(loc) if not _is_union_tag(part, loc[i - 1] if i else None))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (not part of the configuration schema; check its spelling)"
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def _is_union_tag(part: int | str, previous: int | str | None) -> bool:
    # pydantic inserts the chosen union member (e.g. "list[str]", or a split's kind) into error locations; users
    # never wrote those.
    if previous == "split" and part in SPLIT_KINDS:
        return True
    if part in PARAM_KINDS:  # a search parameter's kind (tune.yaml)
        return True
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})
