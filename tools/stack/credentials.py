"""The stack's generated secrets, and the env file that tells later commands how to reach the stack.

Both files are written with mode 0600 under the stack's git-ignored directory; no secret goes on a command line
(``ps`` shows those to every user): the servers get theirs through their environment or a private file.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.stack.errors import StackError
from tools.stack.settings import HOST, StackSettings

# Generated secrets are URL- and SQL-safe: no quoting anywhere they are put.
SECRET_PATTERN = r"^[A-Za-z0-9_-]{16,}$"
PREDICTIONS = "predictions"  # the prediction logs' role; each dataset's log is its database predictions_<dataset>
MLFLOW = "mlflow"  # the tracking server's database and role
SUPERUSER = "postgres"
REGION = "us-east-1"  # SeaweedFS accepts any; clients need one


class Credentials(BaseModel):
    """Every password and key of the stack, generated at its first start."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    postgres_superuser_password: str = Field(pattern=SECRET_PATTERN)
    mlflow_db_password: str = Field(pattern=SECRET_PATTERN)
    predictions_db_password: str = Field(pattern=SECRET_PATTERN)
    s3_access_key: str = Field(pattern=r"^[A-Z0-9]{20}$")
    s3_secret_key: str = Field(pattern=SECRET_PATTERN)

    @classmethod
    def generate(cls) -> Self:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return cls(
            postgres_superuser_password=secrets.token_urlsafe(24),
            mlflow_db_password=secrets.token_urlsafe(24),
            predictions_db_password=secrets.token_urlsafe(24),
            s3_access_key="".join(secrets.choice(alphabet) for _ in range(20)),
            s3_secret_key=secrets.token_urlsafe(30),
        )

    @classmethod
    def load(cls, path: Path) -> Self | None:
        """The credentials at ``path``; None if there are none yet; a StackError if the file is not ours."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as e:
            raise StackError(
                f"{path}: not the stack's credentials ({e.error_count()} problems); restore it, or remove the "
                f"stack's directory {path.parent} to start over with new data"
            ) from None

    def save(self, path: Path) -> None:
        write_private(path, self.model_dump_json(indent=2) + "\n")


def write_private(path: Path, text: str) -> None:
    """``text`` at ``path``, readable by its owner only, written beside it and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging")
    staging.unlink(missing_ok=True)
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    staging.replace(path)


def postgres_url(settings: StackSettings, role: str, password: str, database: str | None) -> str:
    """A SQLAlchemy URL of a database of the stack's PostgreSQL (psycopg 3); of the server for ``None``."""
    server = f"postgresql+psycopg://{role}:{password}@{HOST}:{settings.postgres_port}"
    return server if database is None else f"{server}/{database}"


def log_database(dataset: str) -> str:
    """The database of a dataset's prediction log: one per dataset, as each dataset's SQLite log is its own file
    (request ids are only unique within a dataset)."""
    return f"{PREDICTIONS}_{dataset}"


def s3_endpoint(settings: StackSettings) -> str:
    return f"http://{HOST}:{settings.s3_port}"


def mlflow_url(settings: StackSettings) -> str:
    return f"http://{HOST}:{settings.mlflow_port}"


def connection_settings(settings: StackSettings, credentials: Credentials) -> dict[str, str]:
    """The variables that point the pipeline, DVC and the service at the stack."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_url(settings),
        "TABLOOP_TRACKING_URI": mlflow_url(settings),
        # The prediction log of dataset <name> is the database predictions_<name> on this server: `make ... STACK=1`
        # and `make stack-env` set TABLOOP_SERVE_PREDICTION_LOG_URL to it.
        "TABLOOP_STACK_LOG_SERVER": postgres_url(settings, PREDICTIONS, credentials.predictions_db_password, None),
        "TABLOOP_DVC_REMOTE_URL": f"s3://{settings.dvc_bucket}",
        "AWS_ENDPOINT_URL_S3": s3_endpoint(settings),
        "AWS_ACCESS_KEY_ID": credentials.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.s3_secret_key,
        "AWS_DEFAULT_REGION": REGION,
    }


def render_env(variables: dict[str, str]) -> str:
    """``variables`` as an env file that a shell (``set -a; . .stack/env``), python-dotenv and make's ``include``
    all read: nothing in it needs quoting (the stack writes no such value), and anything that would is refused."""
    for name, value in variables.items():
        if shlex.quote(value) != value or "$" in value:
            raise StackError(f"{name}: {value!r} would need quoting in the env file")
    lines = [
        "# Written by `make stack-up`: how to reach the local stack. It holds secrets: never commit or share it.",
        *(f"{name}={value}" for name, value in variables.items()),
    ]
    return "\n".join(lines) + "\n"
