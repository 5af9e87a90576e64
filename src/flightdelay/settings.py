"""Process-level settings read from the environment; the only module that touches ``os.environ``."""

from __future__ import annotations

import os
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

# Each tool's own switch; setting them before the tool is imported keeps an offline machine from waiting on it.
_TELEMETRY_OFF = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
}


class Settings(BaseSettings):
    """Settings of the running process (not of the pipeline: those live in ``configs/*.yaml``)."""

    model_config = SettingsConfigDict(env_prefix="FLIGHTDELAY_", extra="forbid")

    telemetry: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def apply_process_defaults(settings: Settings) -> None:
    """Switch third-party telemetry off unless the user opted in; values the user set are kept."""
    if settings.telemetry:
        return
    for name, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
