"""Schemathesis over the whole OpenAPI schema, in process (WSGI): every operation, with an API key that
has every scope. No answer may be a server error, and every answer must conform to the schema (its
body to the documented response, its content type too). Few examples per operation, so the whole run
stays well under a minute; CI runs it with the rest of tests/core."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from recadmin.core.services import api_key_create

# CI: a few per operation (the run stays under a minute); SCHEMA_FUZZ_EXAMPLES=50 for a deeper local run.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "3"))

# The schema view touches no database: loading it at collection time is fine.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Any:
    """Schemathesis calls the WSGI app directly: like Django's test client, keep request_started and
    request_finished from closing the test's database connection (and its transaction)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(db: None) -> dict[str, str]:
    created = api_key_create(name="fuzz", scopes=["ingest", "recommend", "manage"])
    return {"Authorization": f"Bearer {created.raw_key}"}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
@pytest.mark.django_db
def test_every_operation_answers_without_a_server_error_and_as_documented(case: Any, bearer: dict[str, str]) -> None:
    case.call_and_validate(
        headers=bearer,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
