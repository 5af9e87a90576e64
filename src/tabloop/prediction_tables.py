"""The prediction log's tables and the databases it runs on: written by the service, read by monitoring and retraining.

Domain-free on purpose: a prediction holds its features as JSON and its task's answer, an outcome what was observed.
Each task fills its own columns and leaves the others null:

- **binary**: ``probability`` (of the positive class) and ``label``; the outcome's ``actual`` and, where the dataset
  has one, the number it was derived from (``outcome``, e.g. a delay in minutes or an amount);
- **multiclass**: ``predicted_class``, its ``probability`` and each class's (``probabilities``, a JSON list in the
  contract's order); the outcome's ``actual_class``;
- **regression**: ``value``; the outcome's observed number (``outcome``).

A log written before multiclass and regression existed gets their columns when the service opens it
(``serving/log/store.py``).
"""

from __future__ import annotations

import sqlalchemy as sa

from tabloop.errors import ConfigError

LOG_DIALECTS = ("sqlite", "postgresql")
metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),  # when the service answered
    # When the prediction was wanted: the client's X-Event-Time (e.g. a replay's virtual clock), else created_at.
    # Monitoring windows are cut on this time.
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False, index=True),
    sa.Column("features", sa.Text, nullable=False),  # JSON
    sa.Column("probability", sa.Float, nullable=True),  # binary: the positive class's; multiclass: the predicted's
    sa.Column("label", sa.Boolean, nullable=True),  # binary: the predicted class
    sa.Column("value", sa.Float, nullable=True),  # regression: the predicted number
    sa.Column("predicted_class", sa.String(128), nullable=True),  # multiclass
    sa.Column("probabilities", sa.Text, nullable=True),  # multiclass: each class's, JSON
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(96), primary_key=True),
    sa.Column("actual", sa.Boolean, nullable=True),  # binary: the observed class
    sa.Column("outcome", sa.Float, nullable=True),  # regression: the observed number; binary: the one behind it
    sa.Column("actual_class", sa.String(128), nullable=True),  # multiclass: the observed class
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


def log_dialect(url: str) -> str:
    """The database a prediction log URL names; a ConfigError unless it is a URL of SQLite or PostgreSQL."""
    try:
        dialect = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as e:  # not quoted: the URL may hold a password
        raise ConfigError(
            "the prediction log's URL is not a database URL; e.g. sqlite:///logs/predictions.db or "
            "postgresql+psycopg://db-host/predictions"
        ) from e
    if dialect not in LOG_DIALECTS:
        raise ConfigError(f"the prediction log supports SQLite and PostgreSQL, not {dialect}")
    return dialect
