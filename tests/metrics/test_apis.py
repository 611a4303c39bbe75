"""GET /api/v1/metrics, /metrics/rules and /metrics/positions: auth, scope, bad input, the rows."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from recadmin.metrics.services import hour_of, metrics_refresh

pytestmark = pytest.mark.django_db
M = dt.timedelta(minutes=1)


@pytest.fixture
def traffic(t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]) -> dt.datetime:
    serve("r1", ["A", "B", "C", "D"], at=t0, rules={"A": [3]})
    serve("r2", ["B", "A"], at=t0 + 2 * M, scene="cart", customer="c2", rules={"A": [3]})
    send("click", "A", at=t0 + M, rec="r1")
    send("click", "B", at=t0 + 3 * M, rec="r2", customer="c2")
    send("purchase", "B", at=t0 + 4 * M, rec="r2", customer="c2", price=2.5, value=4)
    metrics_refresh(drain=False)
    return t0


def _z(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("path", ["/api/v1/metrics", "/api/v1/metrics/rules", "/api/v1/metrics/positions"])
def test_it_needs_a_key_with_the_manage_scope(path: str, make_api_client: Callable[..., APIClient]) -> None:
    assert APIClient().get(path).status_code in (401, 403)
    assert make_api_client("recommend", "ingest").get(path).status_code == 403
    assert make_api_client("manage").get(path).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"group_by": "day,hour"}, "group_by"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}, "from"),
        ({"scene": "not a slug!"}, "scene"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    params: dict[str, str], field: str, make_api_client: Callable[..., APIClient]
) -> None:
    response = make_api_client("manage").get("/api/v1/metrics", params)
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body["extra"]["fields"], body


def test_rows_by_day_and_scene_carry_the_derived_metrics(
    traffic: dt.datetime, make_api_client: Callable[..., APIClient]
) -> None:
    response = make_api_client("manage").get("/api/v1/metrics", {"group_by": "day,scene"})
    assert response.status_code == 200, response.content
    rows = {r["scene"]: r for r in response.json()["rows"]}
    cart, home = rows["cart"], rows["home"]
    assert (cart["lists"], cart["impressions"], cart["clicks"], cart["purchases"]) == (1, 2, 1, 1)
    assert cart["ctr"] == pytest.approx(0.5) and cart["conversion_rate"] == pytest.approx(1.0)
    assert cart["revenue"] == pytest.approx(10.0) and cart["revenue_per_1000_impressions"] == pytest.approx(5000.0)
    assert cart["direct_attributions"] == 2 and cart["fallback_share"] == 0.0
    assert home["ctr"] == pytest.approx(0.25) and home["day"] == traffic.date().isoformat()
    # Four active items, all four served on home, two in the cart.
    assert home["coverage"] == pytest.approx(1.0) and cart["coverage"] == pytest.approx(0.5)


def test_rows_by_hour_filtered_by_scene(traffic: dt.datetime, make_api_client: Callable[..., APIClient]) -> None:
    response = make_api_client("manage").get(
        "/api/v1/metrics", {"group_by": "hour,model_version,variant", "scene": "home"}
    )
    rows = response.json()["rows"]
    assert len(rows) == 1
    assert rows[0]["hour"].startswith(hour_of(traffic).strftime("%Y-%m-%dT%H"))
    assert rows[0]["model_label"] == "recommender v1" and rows[0]["variant"] is None
    # After the hour the lists were served in (an explicit `to`: `now` may be minutes after it).
    later = {"from": _z(traffic + dt.timedelta(hours=1)), "to": _z(traffic + dt.timedelta(minutes=90))}
    assert make_api_client("manage").get("/api/v1/metrics", later).json()["rows"] == []


def test_rule_and_position_reports(traffic: dt.datetime, make_api_client: Callable[..., APIClient]) -> None:
    client = make_api_client("manage")
    rules = client.get("/api/v1/metrics/rules").json()["rows"]
    assert len(rules) == 1
    rule = rules[0]
    # A carried rule 3 in both lists (clicked in r1); the other items: 3 + 1 impressions, B clicked in r2.
    assert (rule["rule"], rule["lists"], rule["impressions"], rule["clicks"]) == (3, 2, 2, 1)
    assert (rule["other_impressions"], rule["other_clicks"]) == (4, 1)
    assert rule["ctr"] == pytest.approx(0.5) and rule["other_ctr"] == pytest.approx(0.25)
    positions = client.get("/api/v1/metrics/positions", {"scene": "home"}).json()["rows"]
    assert [(p["position"], p["impressions"], p["clicks"]) for p in positions] == [
        (0, 1, 1),
        (1, 1, 0),
        (2, 1, 0),
        (3, 1, 0),
    ]


def test_a_repeated_dimension_groups_as_once(traffic: dt.datetime, make_api_client: Callable[..., APIClient]) -> None:
    client = make_api_client("manage")
    once = client.get("/api/v1/metrics", {"group_by": "day,scene"})
    twice = client.get("/api/v1/metrics", {"group_by": "day,scene,scene"})
    assert twice.status_code == 200, twice.content
    assert twice.json() == once.json()


def test_the_endpoints_are_in_the_openapi_schema(client: Any) -> None:
    schema = client.get("/api/schema/", {"format": "json"}).json()
    for path in ("/api/v1/metrics", "/api/v1/metrics/rules", "/api/v1/metrics/positions"):
        assert path in schema["paths"], path
    parameters = {p["name"] for p in schema["paths"]["/api/v1/metrics"]["get"]["parameters"]}
    assert {"from", "to", "scene", "group_by"} <= parameters
    # What the input serializers accept: ISO date-times, a slug, and the group_by grammar.
    for path in ("/api/v1/metrics", "/api/v1/metrics/rules", "/api/v1/metrics/positions"):
        documented = {p["name"]: p["schema"] for p in schema["paths"][path]["get"]["parameters"]}
        assert documented["from"]["format"] == documented["to"]["format"] == "date-time"
        assert "pattern" in documented["scene"]
    group_by = re.compile(
        next(p for p in schema["paths"]["/api/v1/metrics"]["get"]["parameters"] if p["name"] == "group_by")["schema"][
            "pattern"
        ]
    )
    assert group_by.match("hour,model_version,variant") and not group_by.match("day,hour")
