"""The stack's settings (``TABLOOP_STACK_*``) and where its files live; the stack's only reader of ``os.environ``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HOST = "127.0.0.1"  # every part listens here only
SEAWEEDFS_COMPONENTS = ("s3", "master", "volume", "filer", "admin")  # ports s3_port, s3_port + 1, ...
GRPC_OFFSET = 10_000  # SeaweedFS's rule: each component's gRPC port is its HTTP port + 10000
# What the servers inherit from the caller's environment: enough to run, nothing that reconfigures them (a sourced
# .stack/env's AWS_* would make `weed mini` create a user of its own, PG* variables would redirect pg_ctl).
INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "MLFLOW_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "DVC_NO_ANALYTICS",
    "EVIDENTLY_DISABLE_TELEMETRY",
)
Port = int


class StackSettings(BaseSettings):
    """Where the stack keeps its data, the ports of its parts, and how long each may take to start or stop."""

    model_config = SettingsConfigDict(env_prefix="TABLOOP_STACK_", extra="forbid")

    dir: Path = Field(Path(".stack"), description="Data, logs, PID files, credentials and the env file (git-ignored).")
    postgres_port: Port = Field(15432, ge=1024, le=65535, description="PostgreSQL (not 5432: a system one may run).")
    s3_port: Port = Field(
        18333,
        ge=1024,
        le=65535 - GRPC_OFFSET - len(SEAWEEDFS_COMPONENTS) + 1,
        description="SeaweedFS's S3 endpoint; its master, volume, filer and admin servers take the next four "
        "ports, and each of the five also that port + 10000 (gRPC).",
    )
    mlflow_port: Port = Field(5055, ge=1024, le=65535, description="The MLflow tracking server.")
    postgres_bin: Path | None = Field(
        None, description="The directory of initdb and pg_ctl; default: PATH, else /usr/lib/postgresql/<newest>/bin."
    )
    postgres_user: str = Field(
        "postgres", description="The system user PostgreSQL runs as when the stack is started by root."
    )
    mlflow_workers: int = Field(1, ge=1, le=8, description="Worker processes of the tracking server.")
    dvc_bucket: str = Field("tabloop-dvc", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    mlflow_bucket: str = Field("tabloop-mlflow", pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    postgres_timeout_s: float = Field(60.0, gt=0, description="How long PostgreSQL may take to accept connections.")
    s3_timeout_s: float = Field(60.0, gt=0, description="How long SeaweedFS may take to answer S3 requests.")
    mlflow_timeout_s: float = Field(180.0, gt=0, description="How long MLflow may take to answer /health.")
    stop_timeout_s: float = Field(30.0, gt=0, description="How long a part may take to stop before it is killed.")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: dict[int, str] = {}
        for owner, port in self.ports():
            if port in seen:
                raise ValueError(f"port {port} is given to both {seen[port]} and {owner}")
            seen[port] = owner
        if self.dvc_bucket == self.mlflow_bucket:
            raise ValueError("dvc_bucket and mlflow_bucket must differ")
        return self

    def seaweedfs_ports(self) -> dict[str, tuple[Port, Port]]:
        """Each SeaweedFS component's HTTP and gRPC port."""
        return {name: (self.s3_port + i, self.s3_port + i + GRPC_OFFSET) for i, name in enumerate(SEAWEEDFS_COMPONENTS)}

    def ports(self) -> list[tuple[str, Port]]:
        """Every port the stack listens on, with what listens there."""
        weed = [
            (f"SeaweedFS {name}{suffix}", port)
            for name, pair in self.seaweedfs_ports().items()
            for suffix, port in zip(("", " gRPC"), pair, strict=True)
        ]
        return [("PostgreSQL", self.postgres_port), *weed, ("MLflow", self.mlflow_port)]

    def paths(self) -> StackPaths:
        return StackPaths(self.dir.absolute())


@dataclass(frozen=True)
class StackPaths:
    """The files of one stack under ``root``."""

    root: Path

    @property
    def lock(self) -> Path:
        return self.root / "lock"

    @property
    def credentials(self) -> Path:
        """Generated passwords and S3 keys (mode 0600; never committed)."""
        return self.root / "credentials.json"

    @property
    def env_file(self) -> Path:
        """The connection settings for the pipeline, DVC and the service (mode 0600: it holds the secrets)."""
        return self.root / "env"

    def part(self, key: str) -> Path:
        """A part's own directory: its data, its log, and what it writes while it runs."""
        return self.root / key

    def pid_file(self, key: str) -> Path:
        return self.root / "run" / f"{key}.pid"

    def log(self, key: str) -> Path:
        return self.part(key) / "server.log"


def inherited_environment(**extra: str) -> dict[str, str]:
    """The environment a server of the stack starts with: the :data:`INHERITED` variables that are set, and
    ``extra``."""
    return {name: os.environ[name] for name in INHERITED if name in os.environ} | extra
