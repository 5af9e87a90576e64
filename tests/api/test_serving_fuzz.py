"""Property-based fuzzing of the whole OpenAPI schema: whatever a client sends, the service never answers 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from serving.app import create_app
from serving.settings import ServeSettings
from tabloop.settings import Settings

EXAMPLES_PER_OPERATION = 25


def test_no_input_makes_the_service_fail(serve_settings: ServeSettings, registry_store: tuple[Settings, Path]) -> None:
    # schemathesis' pytest integration (from_fixture) does not run on pytest 9, so each operation's strategy is
    # driven here with hypothesis directly.
    app = create_app(serve_settings, registry_store[0])
    with TestClient(app):  # runs the lifespan: the prediction log's writer is running, as in production
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 14  # every route of the service
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def never_5xx(case: Any) -> None:
                response = case.call()
                assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:500])

            never_5xx()
