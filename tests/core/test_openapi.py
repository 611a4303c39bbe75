from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
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


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_load_only_our_own_static_files(client: Any, url: str) -> None:
    """Without internet, a page that pulls Swagger UI or Redoc from a CDN stays blank."""
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    references = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)
    references += re.findall(r'["\']((?:https?:)?//[^"\']+)["\']', html)
    assert references, html[:1000]
    external = [ref for ref in references if re.match(r"^(?:https?:)?//", ref)]
    assert not external, external
    static = [ref for ref in references if ref.startswith(settings.STATIC_URL) or ref.startswith("/static/")]
    assert any("drf_spectacular_sidecar" in ref for ref in static), references
    for ref in static:
        asset = client.get(ref)
        assert asset.status_code == 200, ref
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content]), ref


def test_the_sidecar_files_are_collected(tmp_path: Path, settings: Any) -> None:
    settings.STATIC_ROOT = tmp_path
    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}
    call_command("collectstatic", "--noinput", verbosity=0)
    dist = tmp_path / "drf_spectacular_sidecar"
    assert (dist / "swagger-ui-dist" / "swagger-ui-bundle.js").is_file()
    assert (dist / "redoc" / "bundles" / "redoc.standalone.js").is_file()


@pytest.mark.django_db
def test_the_schema_is_readable_in_a_browser_and_still_a_file_for_tools(client: Any) -> None:
    page = client.get("/api/schema/", HTTP_ACCEPT="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    assert "openapi: 3" in html and "/api/v1/training-runs:" in html
    assert 'href="/api/docs/"' in html and 'href="/api/redoc/"' in html

    tool = client.get("/api/schema/", HTTP_ACCEPT="*/*")
    assert tool["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(tool.content)["openapi"].startswith("3")
    assert client.get("/api/schema/?format=json").json()["info"]["title"] == "recadmin API"


def test_every_v1_operation_documents_its_error_answers_with_the_error_shape(schema: dict) -> None:  # type: ignore[type-arg]
    error = {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["message", "extra"]
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            statuses = set(operation["responses"])
            assert {"400", "401", "403", "404", "429", "503"} <= statuses, (method, path)
            if method in {"post", "put", "patch", "delete"}:
                assert {"409", "413"} <= statuses, (method, path)
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == error


def _request_schemas(schema: dict) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """Every (where, schema) reachable from a JSON request body, components followed once."""
    components = schema["components"]["schemas"]
    found: list[tuple[str, dict]] = []  # type: ignore[type-arg]
    seen: set[str] = set()
    stack: list[tuple[str, Any]] = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                stack.append((f"{method} {path}", body["schema"]))
    while stack:
        where, current = stack.pop()
        if not isinstance(current, dict):
            continue
        if "$ref" in current:
            name = current["$ref"].rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                stack.append((name, components[name]))
            continue
        found.append((where, current))
        for key in ("allOf", "anyOf", "oneOf"):
            stack.extend((f"{where}.{key}", branch) for branch in current.get(key, []))
        stack.extend((f"{where}.{name}", member) for name, member in current.get("properties", {}).items())
        for key in ("items", "additionalProperties"):
            stack.append((f"{where}.{key}", current.get(key)))
    return found


def test_request_bodies_allow_no_text_or_number_the_database_cannot_store(schema: dict) -> None:  # type: ignore[type-arg]
    """The parser refuses NUL in any string or key and integers past bigint, everywhere in a body: the
    schema says so, so that what it allows is accepted (the fuzzer's positive_data_acceptance)."""
    assert schema["openapi"].startswith("3.1")  # propertyNames is JSON Schema, not OpenAPI 3.0
    limit = 2**63 - 1
    checked = 0
    for where, current in _request_schemas(schema):
        types = current.get("type")
        types = {types} if isinstance(types, str) else set(types or ())
        if "string" in types and "enum" not in current and "format" not in current:
            assert re.search(current["pattern"], "text") and not re.search(current["pattern"], "te\x00xt"), where
            checked += 1
        if types & {"integer", "number"}:
            assert -limit <= current["minimum"] and current["maximum"] <= limit, where
        if ("object" in types or "properties" in current) and current.get("additionalProperties", True) is not False:
            pattern = current["propertyNames"]["pattern"]
            assert re.search(pattern, "key") and not re.search(pattern, "k\x00ey"), where
            assert current["additionalProperties"] is not True and current["additionalProperties"] != {}, where
        assert "nullable" not in current, where  # OpenAPI 3.0's; 3.1 has the null type
    assert checked > 20


def test_every_request_body_example_is_valid_for_its_schema(schema: dict) -> None:  # type: ignore[type-arg]
    """Shops copy the examples: one nested a list too deep (drf-spectacular wraps a many=True body's
    examples in a list itself) documented a body the API refuses."""
    from jsonschema import Draft202012Validator

    problems = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for media, body in operation.get("requestBody", {}).get("content", {}).items():
                # `#/components/...` references resolve in the validated document: carry the components.
                validator = Draft202012Validator({**body["schema"], "components": schema["components"]})
                for name, example in body.get("examples", {}).items():
                    for error in validator.iter_errors(example["value"]):
                        problems.append(f"{method} {path} {media} {name}: {error.message[:200]}")
    assert problems == [], "\n".join(problems)


def test_every_response_example_is_valid_for_its_schema(schema: dict) -> None:  # type: ignore[type-arg]
    """A list's example wrapped in a second page envelope, or a PATCH body shown as the answer (an
    example without request_only lands on the responses too), documents an answer the API never gives."""
    from jsonschema import Draft202012Validator

    problems = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation.get("responses", {}).items():
                for media, body in response.get("content", {}).items():
                    validator = Draft202012Validator({**body["schema"], "components": schema["components"]})
                    for name, example in body.get("examples", {}).items():
                        for error in validator.iter_errors(example["value"]):
                            problems.append(f"{method} {path} {code} {media} {name}: {error.message[:200]}")
    assert problems == [], "\n".join(problems)


def test_text_query_and_path_parameters_allow_no_nul(schema: dict) -> None:  # type: ignore[type-arg]
    """GuardMiddleware refuses NUL in any URL parameter (a 400): the schema says so, for the fuzzer."""
    allowing = [
        f"{method} {path} {parameter['name']}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["in"] in ("query", "path")
        and parameter["schema"].get("type") == "string"
        and not {"enum", "format"} & parameter["schema"].keys()  # a date-time, say, holds no NUL
        and not ("pattern" in parameter["schema"] and not re.search(parameter["schema"]["pattern"], "a\x00b"))
    ]
    assert allowing == []
