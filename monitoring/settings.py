"""Monitoring's settings from the environment: the running service it talks to (``SERVICE_URL``, ``SERVICE_API_KEY``).

What ``monitor.yaml`` configures is :mod:`tabloop.config.monitor`.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceClient(BaseSettings):
    """The running service as monitoring reaches it (the replay; retraining's reload call): ``SERVICE_URL`` and
    ``SERVICE_API_KEY`` from the environment, each replaced by the command's option when one is given."""

    model_config = SettingsConfigDict(env_prefix="SERVICE_", extra="forbid")

    url: str = Field("http://127.0.0.1:8000", min_length=1)
    api_key: SecretStr | None = None

    def key(self) -> str | None:
        """The API key to send, if any."""
        return self.api_key.get_secret_value() if self.api_key else None
