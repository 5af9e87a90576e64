"""Typed monitoring configuration: ``configs/monitor.yaml``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from flightdelay.config import load_yaml, parse_config
from flightdelay.contract import StrictModel


class ReplayConfig(StrictModel):
    """How ``make replay`` sends the production months to the service."""

    flights: Path = Path("data/features/test.parquet")
    speedup: float = Field(3600.0, gt=0, description="Virtual seconds per wall-clock second.")
    rate: float = Field(250.0, gt=0, description="Prediction requests per second at most.")
    concurrency: int = Field(8, ge=1, le=256)
    max_requests: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(1800.0, gt=0)
    feedback: bool = True
    retry_seconds: float = Field(30.0, ge=0)
    timeout_seconds: float = Field(10.0, gt=0)
    state: Path = Path("logs/replay/state.json")


class MonitorConfig(StrictModel):
    """Everything ``configs/monitor.yaml`` holds."""

    replay: ReplayConfig = ReplayConfig()


def load_monitor_config(path: Path) -> MonitorConfig:
    """The monitoring configuration at ``path``, validated."""
    return parse_config(MonitorConfig, load_yaml(path), str(path))
