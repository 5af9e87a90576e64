"""Settings of the prediction service, from the environment (``TABLOOP_SERVE_*``, and ``PORT``)."""

from __future__ import annotations

import math
import re
from collections import Counter
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, Field, ModelWrapValidatorHandler, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tabloop.errors import ConfigError
from tabloop.layout import Layout
from tabloop.prediction_tables import log_dialect

MIN_KEY_LENGTH = 32
MIN_KEY_BITS = 85
COMMON_WORDS = (
    "password", "passwd", "changeme", "change-me", "change_me", "secret", "qwerty", "letmein", "admin", "apikey",
    "api-key", "api_key", "token", "example", "default", "welcome", "12345", "abcde",
)  # fmt: skip
_COMMON = re.compile("|".join(map(re.escape, COMMON_WORDS)), re.IGNORECASE)
# The dataset layouts read while one ServeSettings is built: its path defaults share one read of datasets.yaml.
_LAYOUTS: ContextVar[dict[str | None, Layout] | None] = ContextVar("serve_settings_layouts", default=None)


class ServeSettings(BaseSettings):
    """How the service listens, what it serves, where it logs, and its limits."""

    model_config = SettingsConfigDict(env_prefix="TABLOOP_SERVE_", extra="forbid", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("TABLOOP_SERVE_PORT", "PORT"))
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Processes answering on the one port (uvicorn's workers), sharing the prediction log; 1: one "
        "process, as before.",
    )
    metrics_dir: Path | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="With workers: the directory of their metrics, made by python -m serving for each start.",
    )
    # Declared before the fields whose defaults are that dataset's paths (a default factory sees earlier fields).
    dataset: str | None = Field(
        None,
        validation_alias=AliasChoices("TABLOOP_DATASET", "dataset"),
        description="The dataset whose model is served; default: configs/datasets.yaml's.",
    )
    registry_config: Path = Field(
        default_factory=lambda data: _layout(data).registry_config, description="Names the registered model to serve."
    )
    contract_config: Path = Field(
        default_factory=lambda data: _layout(data).data_config,
        description="Contract for the request schema while no model has been loaded.",
    )
    alias: str = Field("champion", description="The registry alias to serve and watch.")
    cache_dir: Path = Field(
        default_factory=lambda data: _layout(data).cache,
        description="Downloaded bundles, served when the registry is down.",
    )
    prediction_log_url: str = Field(
        default_factory=lambda data: _layout(data).prediction_log_url,
        description="SQLAlchemy URL of the prediction log (e.g. postgresql://...).",
    )
    api_key: SecretStr | None = Field(None, description="If set, required on prediction, feedback and admin routes.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_header_bytes: int = Field(
        32_768, ge=1024, description="Larger request lines and headers get 431 (and the connection is closed)."
    )
    max_batch: int = Field(1000, ge=1, description="Most rows in one request.")
    request_timeout_s: float = Field(10.0, gt=0, description="Longest a prediction may take before 504.")
    poll_interval_s: float = Field(10.0, ge=0, description="How often to check the alias for a new model; 0: never.")
    inline_rows: int = Field(
        64, ge=1, description="Batches up to this size are predicted on the event loop; larger ones in a thread."
    )
    log_journal_dir: Path | None = Field(
        None,
        description="The prediction log's journal on local disk; default: beside a SQLite log, else logs/journal.",
    )
    log_fsync: Literal["never", "interval", "always"] = Field(
        "never",
        description="never: a line is durable once written (survives a killed process, not a power cut); interval: "
        "flushed to disk every log_flush_interval_s; always: before every answer (slowest).",
    )
    log_max_queue: int = Field(
        100_000, ge=1, description="Records the database may fall behind the journal before predictions get 503."
    )
    log_loader_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="Nice value of the thread that loads the journal into the database: above the event loop's 0, "
        "so it takes the CPU that answering leaves.",
    )
    log_batch_size: int = Field(500, ge=1)
    log_flush_interval_s: float = Field(0.2, gt=0)

    def journal_dir(self) -> Path | None:
        """Where the prediction log's journal goes (None: beside the SQLite file)."""
        if self.log_journal_dir is not None or self.prediction_log_url.startswith("sqlite:///"):
            return self.log_journal_dir
        return Layout.of(self.dataset).logs / "journal"

    @model_validator(mode="wrap")
    @classmethod
    def _one_layout_read(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        token = _LAYOUTS.set({})
        try:
            return handler(data)
        finally:
            _LAYOUTS.reset(token)

    @field_validator("prediction_log_url")
    @classmethod
    def _supported_log(cls, url: str) -> str:
        try:
            log_dialect(url)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return url

    @field_validator("api_key")
    @classmethod
    def _strong_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            weakness = key_weakness(key.get_secret_value())
            if weakness is not None:
                raise ValueError(
                    f"the API key is too weak ({weakness}); use a random one of at least {MIN_KEY_LENGTH} characters, "
                    "e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))', or unset it"
                )
        return key


def _layout(data: dict[str, Any]) -> Layout:
    """The layout of the dataset being configured, read once per ServeSettings however many defaults need it."""
    dataset = data.get("dataset")
    layouts = _LAYOUTS.get()
    if layouts is None:
        return Layout.of(dataset)
    if dataset not in layouts:
        layouts[dataset] = Layout.of(dataset)
    return layouts[dataset]


def key_weakness(key: str) -> str | None:
    """Why ``key`` is too weak to guard the service, or None; the reason never quotes the key.

    The rule: at least 32 characters, and at least 85 bits by the Shannon entropy of its characters, counted
    once on the whole key and once on what is left when the words that placeholder and default keys are made of
    are taken out (they add nothing an attacker has to guess). A random key of 32 hex digits has about 115 bits
    on average and under 90 in none of 200,000 draws, ``token_urlsafe(32)`` about 200; a key of six or fewer
    characters repeated has at most 83. A random key that happens to contain ``abcde`` keeps about 97 bits
    without it, so it is not refused for the coincidence. (96 bits refused about one random hex key in 8,000.)
    """
    if len(key) < MIN_KEY_LENGTH:
        return f"{len(key)} characters, fewer than {MIN_KEY_LENGTH}"
    if key.strip() != key or not key.isprintable():
        return "it has spaces at its ends or characters that cannot be printed"
    bits = _entropy_bits(key)
    if bits < MIN_KEY_BITS:
        return f"about {abs(bits):.0f} bits of entropy, fewer than {MIN_KEY_BITS}: too few different characters"
    rest = _COMMON.sub("", key)
    if rest != key and _entropy_bits(rest) < MIN_KEY_BITS:
        return "it is mostly common words or sequences"
    return None


def _entropy_bits(text: str) -> float:
    return len(text) * -sum(n / len(text) * math.log2(n / len(text)) for n in Counter(text).values())
