from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.core.management import call_command


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    out = Path(tmp_path_factory.mktemp("schema")) / "schema.yaml"
    # --fail-on-warn: a serializer drf-spectacular cannot describe (or two colliding component
    # names) fails here instead of silently producing a wrong schema for shops' client generators.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    return yaml.safe_load(out.read_text())


def test_the_schema_documents_every_v1_endpoint_with_bearer_auth(schema: dict) -> None:  # type: ignore[type-arg]
    paths = schema["paths"]
    expected = {
        "/api/v1/events",
        "/api/v1/items",
        "/api/v1/customers",
        "/api/v1/categories",
        "/api/v1/scenes",
        "/api/v1/rules",
        "/api/v1/models",
        "/api/v1/training-runs",
        "/api/v1/recommendations",
        "/api/v1/popular",
        "/api/v1/items/{shop_id}/similar",
        "/api/v1/experiments",
        "/api/v1/experiments/{experiment_id}",
        "/api/v1/experiments/{experiment_id}/start",
        "/api/v1/experiments/{experiment_id}/stop",
        "/api/v1/experiments/{experiment_id}/report",
    }
    assert expected <= set(paths)
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert {"ApiKey": []} in operation.get("security", []), f"{method.upper()} {path} lacks API-key auth"


def test_every_operation_documents_its_responses(schema: dict) -> None:  # type: ignore[type-arg]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("responses"), f"{method.upper()} {path} has no documented response"
