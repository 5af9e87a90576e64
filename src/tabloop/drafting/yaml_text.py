"""YAML written by hand for the drafts: scalars, lists and mappings that read back as the same values (YAML 1.2)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from typing import Any

from tabloop.drafting.profile import fmt


def q(value: Any) -> str:
    """A YAML scalar that reads back as the same value under YAML 1.2 (strings always quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt(value) if math.isfinite(value) else json.dumps(str(value))
    return json.dumps(str(value))


def yaml_value(value: Any) -> str:
    """``value`` (a scalar, a list or a mapping) in YAML flow style, read back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return f"[{', '.join(yaml_value(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9_]*", value) and value not in ("null", "true", "false"):
        return value
    return q(value)
