"""Writing outputs so that a failed run leaves the previous good ones in place."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import polars as pl
from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml import YAML

from tabloop.errors import FeatureError, TabloopError


@contextmanager
def staged(*targets: Path) -> Iterator[list[Path]]:
    """Staging paths for ``targets``, swapped into place only if the block completes.

    Each staging path sits beside its target (same file system, so the final rename is atomic for files). If the
    block raises, the staging paths are removed and the targets are untouched.
    """
    staging = [target.parent / f".{target.name}.staging" for target in targets]
    for path in staging:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(path)
    try:
        yield staging
    except BaseException:  # an interrupt too: the staging paths go, the targets stay as they were; re-raised
        for path in staging:
            _remove(path)
        raise
    for path, target in zip(staging, targets, strict=True):
        _replace(path, target)


def _replace(source: Path, target: Path) -> None:
    if source.is_dir():
        previous = target.parent / f".{target.name}.previous"
        _remove(previous)
        if target.exists():
            target.rename(previous)
        source.rename(target)
        _remove(previous)
    elif source.exists():
        source.replace(target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """``frame`` as a Parquet file with fixed settings, so the same frame always gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=True)


def write_json(data: Any, path: Path) -> None:
    """``data`` as indented UTF-8 JSON with a trailing newline."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


class JsonRecord(BaseModel):
    """A JSON file written and read back through this same type; :meth:`origin` says what writes it."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def origin(cls) -> tuple[str, str, type[TabloopError]]:
        """What writes the record, the command that does, and the error to raise when it is missing or wrong."""
        return f"a {cls.__name__}", "what writes it", TabloopError

    @classmethod
    def read(cls, path: Path) -> Self:
        """The record at ``path``; the origin's error, saying what to run, if it is missing or not one."""
        writer, command, error = cls.origin()
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError as e:
            raise error(f"{path}: not found; run {writer} first ({command})") from e
        except ValidationError as e:
            problems = f"{e.error_count()} problems"
            raise error(f"{path}: not what {writer} writes ({problems}); run it again") from e

    def write(self, path: Path) -> None:
        """The record as indented JSON (:func:`write_json`)."""
        write_json(self.model_dump(mode="python"), path)


class StageRecord(JsonRecord):
    """A JSON record one pipeline stage writes and later ones read back."""

    stage: ClassVar[str]  # the stage that writes it, named in the error when it is missing or stale

    @classmethod
    def origin(cls) -> tuple[str, str, type[TabloopError]]:
        return f"the {cls.stage} stage", f"dvc repro {cls.stage}", FeatureError


def read_json(path: Path) -> Any:
    """The JSON document at ``path``."""
    return json.loads(path.read_text(encoding="utf-8"))


def parse_yaml(text: str) -> Any:
    """The document in ``text`` under YAML 1.2: ``yes``, ``no``, ``on`` and ``off`` stay strings, as DVC writes them.

    PyYAML's ``safe_load`` follows YAML 1.1 and turns those words into booleans, so a category ``"No"`` that
    ``dvc exp run -S`` wrote back unquoted would come back as ``False``. Duplicate keys are an error, not a silent
    overwrite. Raises ``ruamel.yaml.YAMLError``.
    """
    return YAML(typ="safe", pure=True).load(text)
