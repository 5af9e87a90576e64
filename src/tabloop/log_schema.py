"""The prediction log's tables: written by the service, read by monitoring and retraining.

Domain-free on purpose: a prediction holds its features as JSON, its probability and the predicted class; an outcome
holds the observed class (``actual``) and, where the dataset has one, the number it was derived from (``outcome``,
e.g. a delay in minutes or an amount).
"""

from __future__ import annotations

import sqlalchemy as sa

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
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("label", sa.Boolean, nullable=False),  # the predicted class
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(96), primary_key=True),
    sa.Column("actual", sa.Boolean, nullable=False),  # the observed class
    sa.Column("outcome", sa.Float, nullable=True),  # the observed number behind it, if any
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)
