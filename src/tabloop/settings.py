"""Settings of the library's processes, read from the environment; what the pipeline does lives in ``configs/``.

One typed home per kind of process: :class:`Settings` for every command and stage, :class:`TorchrunSettings` for
a training process that torchrun started; the service's are ``serving/settings.py``, monitoring's client of the
service ``monitoring/settings.py``, the local stack's ``tools/stack/settings.py``. Besides reading through these,
the library only writes the environment: :func:`apply_process_defaults` sets the tools' defaults before they load.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar

from pydantic import AliasChoices, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tabloop.errors import ConfigError
from tabloop.layout import Layout

# Each tool's own switch; setting them before the tool is imported keeps an offline machine from waiting on it.
_TELEMETRY_OFF = {
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
}


class Settings(BaseSettings):
    """Settings of the running process (not of the pipeline: those live in ``configs/*.yaml``)."""

    model_config = SettingsConfigDict(env_prefix="TABLOOP_", extra="forbid", populate_by_name=True)

    dataset: str | None = Field(
        None, description="The dataset commands work on (configs/<name>/); default: configs/datasets.yaml's."
    )
    telemetry: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tracking_uri: str = Field(
        "sqlite:///mlruns/mlflow.db",
        validation_alias=AliasChoices("TABLOOP_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking and registry URI: a SQLite file by default, or e.g. http://mlflow:5000.",
    )
    artifact_root: str = Field(
        "mlruns/artifacts", description="Where new experiments store artifacts, for a local tracking store."
    )
    prediction_log_url: str | None = Field(
        None,
        validation_alias="TABLOOP_SERVE_PREDICTION_LOG_URL",
        description="The service's prediction log, which monitoring reads too; default: the dataset's SQLite file.",
    )
    registry_timeout_s: float = Field(5.0, gt=0, description="How long one call to the tracking server may take.")
    dvc_exp_name: str | None = Field(
        None, validation_alias="DVC_EXP_NAME", description="Set by DVC when a stage runs inside `dvc exp run`."
    )

    def layout(self, dataset: str | None = None) -> Layout:
        """The paths of ``dataset``, else of the configured one, else of the default one."""
        return Layout.of(dataset or self.dataset)


class TorchrunSettings(BaseSettings):
    """What ``torchrun`` tells each process it starts; without them the process is a world of one."""

    model_config = SettingsConfigDict(extra="ignore")

    rank: int = Field(0, ge=0, validation_alias="RANK")
    world_size: int | None = Field(None, ge=1, validation_alias="WORLD_SIZE")
    local_rank: int | None = Field(None, ge=0, validation_alias="LOCAL_RANK")

    @property
    def launched(self) -> bool:
        """Whether torchrun started this process."""
        return self.world_size is not None and self.local_rank is not None


def apply_process_defaults(settings: Settings) -> None:
    """Telemetry off unless the user opted in; MLflow calls fail fast. Values the user set are kept."""
    # MLflow retries an unreachable server for minutes by default; one quick retry, then a clear error.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # an integer number of seconds
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(round(settings.registry_timeout_s)))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if settings.telemetry:
        return
    for name, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


S = TypeVar("S", bound=BaseSettings)


def from_environment(cls: type[S]) -> S:
    """``cls`` read from the environment; a ConfigError naming each bad variable, never its value, otherwise."""
    try:
        return cls()
    except ValidationError as e:
        prefix = str(cls.model_config.get("env_prefix") or "")
        lines = ["invalid settings in the environment"]
        for problem in e.errors(include_input=False, include_url=False):
            field = str(problem["loc"][0]) if problem["loc"] else ""
            # a field read through an alias reports the variable's own name
            variable = field if field.isupper() else (prefix + field).upper() if field else "settings"
            lines.append(f"  {variable}: {problem['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
