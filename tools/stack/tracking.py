"""The MLflow tracking server of the stack: runs and the registry in PostgreSQL, artifacts in the object store.

It serves the artifacts itself (``--serve-artifacts``): clients send and fetch them through the server and need no
S3 key. The database password and the S3 key reach the server through its environment, never its command line.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from tools.stack.credentials import MLFLOW, REGION, mlflow_url, postgres_url, s3_endpoint
from tools.stack.part import Launched, Part
from tools.stack.processes import spawn
from tools.stack.settings import HOST, inherited_environment


class TrackingServer(Part):
    key = "mlflow"
    name = "MLflow"
    port_setting = "TABLOOP_STACK_MLFLOW_PORT"

    @property
    def timeout_s(self) -> float:
        return self.settings.mlflow_timeout_s

    def ports(self) -> list[tuple[str, int]]:
        return [(self.name, self.settings.mlflow_port)]

    def address(self) -> str:
        return mlflow_url(self.settings)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--host", HOST,
            "--port", str(self.settings.mlflow_port),
            "--workers", str(self.settings.mlflow_workers),
            "--serve-artifacts",
            "--artifacts-destination", f"s3://{self.settings.mlflow_bucket}",
            "--default-artifact-root", "mlflow-artifacts:/",
        ]  # fmt: skip

    def launch(self) -> Launched:
        credentials = self.credentials
        environment = inherited_environment(
            MLFLOW_BACKEND_STORE_URI=postgres_url(self.settings, MLFLOW, credentials.mlflow_db_password, MLFLOW),
            MLFLOW_S3_ENDPOINT_URL=s3_endpoint(self.settings),
            AWS_ACCESS_KEY_ID=credentials.s3_access_key,
            AWS_SECRET_ACCESS_KEY=credentials.s3_secret_key,
            AWS_DEFAULT_REGION=REGION,
            # the job runner (GenAI evaluation jobs) is not used here and would start processes outside the group
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        )
        home = self.paths.part(self.key)
        home.mkdir(parents=True, exist_ok=True)
        return spawn(self.command(), env=environment, cwd=home, log=self.log)

    def bootstrap(self) -> None:
        """Nothing: the server creates its tables at start, and its artifacts bucket is the object store's."""

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.address()}/health", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
