"""Schemathesis over the whole OpenAPI schema, in process (WSGI): every operation, with an API key that
has every scope. No answer may be a server error, and every answer must conform to the schema (its
status documented — error answers are, on every operation, by recadmin.core.schema — its body to the
documented response, its content type too). Data the schema allows must be accepted
(`positive_data_acceptance`: not a 400) except by the operations in POSITIVE_DATA_NOT_CHECKED, each
with the reason. Few examples per operation, so the whole run stays well under a minute; CI runs it
with the rest of tests/core."""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from recadmin.core.services import api_key_create

# CI: a few per operation (the run stays under a minute); SCHEMA_FUZZ_EXAMPLES=50 for a deeper local run.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_FUZZ_EXAMPLES", "3"))

# Operations that refuse some data their schema allows, and why (found by positive_data_acceptance).
# References to other rows (a category slug, a scene, an item, a model version) are checked against the
# database: no schema says which ids exist, and the API answers 400 naming the field (README: bad input
# is a 400), where the check accepts only 404/409 for that. A gap in the schema (it allows what the API
# refuses) is closed in the schema or the API, not listed here.
POSITIVE_DATA_NOT_CHECKED = {
    "POST /api/v1/items": "`category` must name an existing category (the required `title` is documented)",
    "PUT /api/v1/items/{shop_id}": "`category` must exist; a new item needs a `title` (an update does not)",
    "POST /api/v1/experiments": "`scenes` and variants' `model_version` must exist",
    "GET /api/v1/recommendations": "`scene` must name an existing scene",
    "GET /api/v1/popular": "`category` must name an existing category (its subtree counts)",
    "GET /api/v1/items/{shop_id}/similar": "the item (and `scene`) must exist: a 400 naming it, as for the others",
    "POST /api/v1/rules": "`pinned_items` (and scenes, categories in conditions) must exist",
    "POST /api/v1/events": "rows name existing items",
}

# Operations whose query parameters relate in a way no OpenAPI schema can state: the positive-data check
# is skipped only for the cases that set them (the others' parameters stay checked), and why.
RANGE_PARAMETERS = ("from", "to")
POSITIVE_DATA_NOT_CHECKED_WITH_RANGE = {
    f"GET /api/v1/metrics{suffix}": "`from` must be before `to`, at most 366 days apart (400 naming `from`)"
    for suffix in ("", "/rules", "/positions")
}

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
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
    label = case.operation.label
    sets_a_range = any(name in (case.query or {}) for name in RANGE_PARAMETERS)
    if label not in POSITIVE_DATA_NOT_CHECKED and not (label in POSITIVE_DATA_NOT_CHECKED_WITH_RANGE and sets_a_range):
        checks.append(positive_data_acceptance)
    case.call_and_validate(headers=bearer, checks=checks)


def test_the_operations_left_out_of_positive_data_checks_exist() -> None:
    """A renamed or removed operation must not stay excused by a stale line."""
    labels = {operation.ok().label for operation in schema.get_all_operations()}
    assert set(POSITIVE_DATA_NOT_CHECKED) | set(POSITIVE_DATA_NOT_CHECKED_WITH_RANGE) <= labels
