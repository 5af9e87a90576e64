"""Settings of the prediction service, from the environment (``FLIGHTDELAY_SERVE_*``, and ``PORT``)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_KEYS = frozenset({"changeme", "change-me", "secret", "password", "api-key", "apikey", "token", "xxx"})


class ServeSettings(BaseSettings):
    """How the service listens, what it serves, where it logs, and its limits."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTDELAY_SERVE_", extra="forbid", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535, validation_alias=AliasChoices("FLIGHTDELAY_SERVE_PORT", "PORT"))
    registry_config: Path = Field(Path("configs/registry.yaml"), description="Names the registered model to serve.")
    contract_config: Path = Field(
        Path("configs/data.yaml"), description="Contract for the request schema while no model has been loaded."
    )
    alias: str = Field("champion", description="The registry alias to serve and watch.")
    cache_dir: Path = Field(Path("models/cache"), description="Downloaded bundles, served when the registry is down.")
    prediction_log_url: str = Field(
        "sqlite:///logs/predictions.db", description="SQLAlchemy URL of the prediction log (e.g. postgresql://...)."
    )
    api_key: SecretStr | None = Field(None, description="If set, required on prediction, feedback and admin routes.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Larger request bodies get 413.")
    max_batch: int = Field(1000, ge=1, description="Most flights in one request.")
    request_timeout_s: float = Field(10.0, gt=0, description="Longest a prediction may take before 504.")
    poll_interval_s: float = Field(10.0, ge=0, description="How often to check the alias for a new model; 0: never.")
    inline_rows: int = Field(
        64, ge=1, description="Batches up to this size are predicted on the event loop; larger ones in a thread."
    )
    log_batch_size: int = Field(500, ge=1)
    log_flush_interval_s: float = Field(0.2, gt=0)

    @model_validator(mode="after")
    def _no_placeholder_key(self) -> Self:
        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            if key.lower() in PLACEHOLDER_KEYS or len(key) < 16:
                raise ValueError(
                    "api_key looks like a placeholder; set FLIGHTDELAY_SERVE_API_KEY to a random value of at least "
                    "16 characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))') or unset it"
                )
        return self
