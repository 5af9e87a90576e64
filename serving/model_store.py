"""Which model the service serves: resolved from a registry alias, cached on disk, swapped while running.

At start the store resolves ``@champion`` (by default) in the registry, downloads the bundle into a local cache and
builds the predictor from the bundle alone. Every load, from the registry or the cache, first checks the bundle's
files against the digest the registry version carries (recorded at registration), and refuses a bundle that does
not match; a cached copy that does not match is fetched again. If the registry cannot be reached, the store serves
the cached champion, checked against the digest saved with it, and says so. While running it polls the alias; a new
version is swapped in only after it loads and passes a smoke prediction, and only if its contract is the one the
service validates requests against. Requests hold on to the model they started with, so a swap never changes a
request half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from serving.schemas import example_row
from serving.settings import ServeSettings
from tabloop.config import RegistryConfig
from tabloop.errors import TabloopError, redact
from tabloop.io import read_json, staged, write_json
from tabloop.registry.mlflow import FILES_TAG, Registry
from tabloop.runtime.bundle import Bundle, Predictor, files_digest
from tabloop.runtime.contract import FeatureContract, TargetSpec
from tabloop.runtime.lineage import Lineage
from tabloop.settings import Settings

logger = logging.getLogger(__name__)
LOCK_FILE = ".lock"
VERSION = re.compile(r"[1-9][0-9]{0,9}")  # a registry version number: the only thing the cache's pointer may name


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ServedModel:
    """A loaded model version and where it came from."""

    name: str
    version: str
    alias: str
    source: Literal["registry", "cache"]
    predictor: Predictor
    loaded_at: str

    @property
    def contract(self) -> FeatureContract:
        """The feature contract the model expects."""
        return self.predictor.bundle.contract

    @property
    def lineage(self) -> Lineage | None:
        """Git commit, data hashes, parameters and metrics recorded at registration (None: never registered)."""
        return self.predictor.bundle.lineage


@dataclass
class StoreStatus:
    """What the store knows about the registry, for the readiness details."""

    registry: str = "not checked yet"
    last_check: str | None = None
    refused: dict[str, str] = field(default_factory=dict)


class ModelRefusedError(TabloopError):
    """A version that cannot be served: it failed to load, failed its smoke prediction, or changed the contract."""


def smoke_problem(target: TargetSpec, predicted: npt.NDArray[np.float64]) -> str | None:
    """What is wrong with a one-row prediction of ``target``'s task, or None: a probability (binary), a
    distribution over the classes (multiclass) or a finite number (regression)."""
    finite = bool(np.isfinite(predicted).all())
    if target.task == "binary" and (not finite or predicted.shape != (1,) or not 0.0 <= float(predicted[0]) <= 1.0):
        return "is not a probability"
    if not finite:
        return "is not finite"
    if target.classes is not None and (
        predicted.shape != (1, len(target.classes))
        or (predicted < 0).any()
        or not np.isclose(predicted.sum(), 1.0, atol=1e-6)
    ):
        return f"is not a distribution over {len(target.classes)} classes"
    if target.task == "regression" and predicted.shape != (1,):
        return "is not one value"
    return None


class ModelStore:
    """The model being served, and the means to replace it."""

    def __init__(self, settings: ServeSettings, process: Settings, registry_config: RegistryConfig) -> None:
        self.settings = settings
        self.name = registry_config.model_name
        self.alias = settings.alias
        self.registry = Registry(process, registry_config)
        self.cache = settings.cache_dir / self.name
        self.current: ServedModel | None = None
        self.expected_contract: FeatureContract | None = None
        self.status = StoreStatus()

    def load_initial(self) -> None:
        """Serve the alias's version from the registry, or else the cached one; neither is an error."""
        try:
            self.check()
        except Exception as e:  # the service starts without its registry: whatever failed is logged, the cache serves
            logger.warning("registry unavailable at start: %s", e)
        if self.current is None:
            self._load_cached()

    def check(self) -> bool:
        """Resolve the alias and swap to its version if it is new; whether the served model changed."""
        self.status.last_check = _now()
        try:
            self.registry.connect()
            version = self.registry.by_alias(self.alias)
        except Exception as e:  # any failure of the client (network, auth, MLflow's own) means "unreachable"
            self.status.registry = (
                f"unreachable: {redact(str(e).splitlines()[0][:300]) if str(e) else type(e).__name__}"
            )
            raise
        self.status.registry = "reachable"
        if version is None:
            return False
        number = Registry.number(version)
        if self.current is not None and self.current.version == number:
            if self.current.source == "cache":
                self.current = replace(self.current, source="registry")
            return False
        if number in self.status.refused:
            return False
        try:
            served = self._prepare(number, version.tags.get(FILES_TAG))
        except ModelRefusedError as e:
            self.status.refused[number] = str(e)
            logger.error("version %s of %s refused: %s", number, self.name, e)
            return False
        self._swap(served)
        return True

    async def watch(self) -> None:
        """Poll the alias every ``poll_interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await asyncio.to_thread(self.check)
            except Exception as e:  # the polling task must outlive any one failed check
                logger.warning("checking @%s failed: %s", self.alias, e)

    def _prepare(self, version: str, expected: str | None) -> ServedModel:
        if not VERSION.fullmatch(version):
            raise ModelRefusedError(f"{version!r} is not a version number")
        if expected is None:
            raise ModelRefusedError(
                f"it carries no {FILES_TAG} tag, so its bundle cannot be verified; register it with 'make train'"
            )
        with cache_lock(self.cache):  # workers share the cache: one at a time fetches, checks and points
            predictor = self._fetch_and_load(version, expected)
            pointer = {"version": version, "alias": self.alias, FILES_TAG: expected, "saved_at": _now()}
            write_json(pointer, self.cache / f"{self.alias}.json")
        return ServedModel(self.name, version, self.alias, "registry", predictor, _now())

    def _fetch_and_load(self, version: str, expected: str) -> Predictor:
        """The predictor of ``version`` from the cache, fetched into it first if missing or not matching."""
        bundle_dir = self.cache / version
        if bundle_dir.is_dir() and (found := _files_digest(bundle_dir)) != expected:
            logger.warning(
                "the cached copy of version %s does not match its digest (%s); fetching it again", version, found
            )
            shutil.rmtree(bundle_dir)
        if not bundle_dir.is_dir():
            with tempfile.TemporaryDirectory(prefix="download-") as tmp:
                downloaded = self.registry.fetch_bundle(version, Path(tmp))
                found = _files_digest(downloaded)
                if found != expected:
                    raise ModelRefusedError(
                        f"the registry's bundle does not match the digest recorded at registration "
                        f"({FILES_TAG} {expected[:12]}..., the files {found[:12]}...)"
                    )
                with staged(bundle_dir) as (staging,):
                    shutil.copytree(downloaded, staging)
        return self._load(bundle_dir, expected)

    def _load(self, bundle_dir: Path, expected: str) -> Predictor:
        """The predictor of a bundle whose files match ``expected``, after its smoke test."""
        found = _files_digest(bundle_dir)
        if found != expected:
            raise ModelRefusedError(f"its files do not match the digest recorded at registration ({found[:12]}...)")
        try:
            predictor = Predictor(Bundle.load(bundle_dir))
        except Exception as e:  # loading files from outside may raise anything (torch, safetensors): never served
            raise ModelRefusedError(f"it does not load: {e}") from e
        self._smoke_test(predictor)
        return predictor

    def _smoke_test(self, predictor: Predictor) -> None:
        contract = predictor.bundle.contract
        if self.expected_contract is not None and contract != self.expected_contract:
            raise ModelRefusedError(
                "its feature contract differs from the one this service validates requests against; "
                "restart the service to serve it"
            )
        example = example_row(predictor.bundle.preprocessor)
        try:
            predicted = predictor.outputs({name: [value] for name, value in example.items()})
        except Exception as e:  # whatever the candidate raises on a real row, it is refused
            raise ModelRefusedError(f"its smoke prediction failed: {e}") from e
        wrong = smoke_problem(contract.target, predicted)
        if wrong:
            raise ModelRefusedError(f"its smoke prediction {wrong}: {predicted!r}")

    def _swap(self, served: ServedModel) -> None:
        previous = self.current
        self.current = served  # one reference assignment: requests already running keep the model they took
        logger.info(
            "serving %s version %s (was %s)", served.name, served.version, previous.version if previous else "none"
        )

    def _load_cached(self) -> None:
        if not self.cache.is_dir():
            logger.warning("no cached @%s for %s: not ready until the registry has one", self.alias, self.name)
            return
        with cache_lock(self.cache):
            self._load_pointed()

    def _load_pointed(self) -> None:
        pointer = self.cache / f"{self.alias}.json"
        if not pointer.is_file():
            logger.warning("no cached @%s for %s: not ready until the registry has one", self.alias, self.name)
            return
        try:
            saved = read_json(pointer)
            version, expected = str(saved["version"]), str(saved[FILES_TAG])
        except Exception as e:  # a damaged pointer (JSON, keys, types) is the same as none
            logger.error("the cache's pointer %s cannot be read (%s); not ready until the registry answers", pointer, e)
            return
        if not VERSION.fullmatch(version):
            logger.error("the cache's pointer %s names %r, not a version; ignored", pointer, version[:40])
            return
        try:
            predictor = self._load(self.cache / version, expected)
        except ModelRefusedError as e:
            logger.error(
                "the cached version %s cannot be served: %s; it is fetched again when the registry answers", version, e
            )
            return
        self._swap(ServedModel(self.name, version, self.alias, "cache", predictor, _now()))


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """An exclusive lock on a model's cache, held while one process (of the workers sharing it) writes or reads it."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as e:  # a read-only cache (an image's): nothing writes it, there is nothing to serialise
        logger.debug("the cache %s cannot be locked (%s); reading it unlocked", cache, e)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _files_digest(directory: Path) -> str:
    try:
        return files_digest(directory)
    except Exception as e:  # files that cannot be read cannot be verified, whatever the reason
        raise ModelRefusedError(f"its files cannot be read: {e}") from e
