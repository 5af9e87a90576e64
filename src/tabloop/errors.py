"""The project's error types: one base class, one subclass per kind of user-facing failure."""

from __future__ import annotations

import re

# The user-info part of a URL (``scheme://user:password@host``): credentials that must not reach a log or a client.
_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


class TabloopError(Exception):
    """A failure caused by the user's data, configuration or environment, reported without a traceback."""


class ConfigError(TabloopError):
    """A configuration file is missing, malformed, or holds an unknown key or an impossible value."""


class SourceError(TabloopError):
    """A source table is missing or cannot be read with the declared columns and types."""


class ContractError(TabloopError):
    """Data breaks the contract in a way that cannot be fixed by dropping rows (missing column, wrong type)."""


class RejectionLimitError(TabloopError):
    """More rows broke the contract than the configured share allows."""


class FeatureError(TabloopError):
    """Features cannot be built from the validated tables (empty split, broken join, contract mismatch)."""
