"""The dashboard panels and their admin page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.test import Client
from django.utils.module_loading import import_string

from recadmin.metrics.dashboard import dashboard_panels
from recadmin.metrics.services import metrics_refresh

pytestmark = pytest.mark.django_db
M = dt.timedelta(minutes=1)


@pytest.fixture
def traffic(t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]) -> None:
    serve("r1", ["A", "B", "C"], at=t0)
    serve("r2", ["B", "A"], at=t0 + M, scene="cart", source="fallback", fallback_reason="timeout", model_label="")
    send("click", "A", at=t0 + M, rec="r1")
    send("purchase", "A", at=t0 + 2 * M, rec="r1", price=12)
    metrics_refresh(drain=False)


def test_the_panels_are_registered_for_the_admin_home_page() -> None:
    assert "recadmin.metrics.dashboard.dashboard_panels" in settings.RECADMIN_DASHBOARD_PANELS
    assert import_string("recadmin.metrics.dashboard.dashboard_panels") is dashboard_panels


def test_each_panel_has_the_agreed_shape_and_renders_alone(traffic: None, rf: Any) -> None:
    panels = dashboard_panels(rf.get("/admin/"))
    assert len(panels) >= 6
    for panel in panels:
        assert set(panel) == {"title", "template", "context", "width"}
        assert panel["width"] in ("full", "half")
        render_to_string(panel["template"], panel["context"])
    comparison = panels[0]["context"]
    assert comparison["periods"] == ["Last 24 h", "Last 7 days", "Last 30 days"]
    by_title = {row["title"]: row["cells"][0] for row in comparison["rows"]}
    assert by_title["Lists served"]["value"] == "2"
    assert by_title["CTR"]["value"] == "20.00 %"  # 1 click / 5 impressions
    assert by_title["Revenue from recommendations"]["value"] == "12.00"
    assert by_title["Fallback share"]["value"] == "50.00 %"


def test_the_dashboard_page_loads_with_data_and_svg_charts(traffic: None, admin_client: Client) -> None:
    response = admin_client.get("/admin/metrics/dashboard/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<svg") >= 5
    assert "CTR by position" in html and "cart" in html and "recommender v1" in html
    assert "2 directly (with a recommendation_id), 0 by the attribution window" in html
    panels = html.split("recadmin-panels", 1)[1]
    # No chart library: the charts carry no script (the admin theme's own scripts follow the panels).
    assert "<script" not in panels[: panels.rindex("</svg>")]


def test_the_dashboard_page_needs_a_staff_login(client: Client) -> None:
    response = client.get("/admin/metrics/dashboard/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_empty_dashboard_loads(admin_client: Client) -> None:
    response = admin_client.get("/admin/metrics/dashboard/")
    assert response.status_code == 200 and "No data yet" in response.content.decode()


def test_the_periods_summed_in_one_scan_equal_each_period_summed_alone(traffic: None, t0: dt.datetime) -> None:
    from recadmin.metrics.models import HourlyRollup
    from recadmin.metrics.selectors import periods_totals

    H = dt.timedelta(hours=1)
    ranges = [(t0 - H, t0 + 3 * H), (t0 - 5 * H, t0 - H), (t0 + H, t0 + 2 * H), (t0 - H, t0 + H)]
    together = periods_totals(periods=ranges)
    for (since, until), row in zip(ranges, together, strict=True):
        alone = HourlyRollup.objects.filter(hour__gte=since, hour__lt=until)
        assert row["lists"] == sum(alone.values_list("lists", flat=True))
        assert row["clicks"] == sum(alone.values_list("clicks", flat=True))
        assert row["revenue"] == float(sum(alone.values_list("revenue", flat=True)))
    assert together[0]["lists"] == 2 and together[1]["lists"] == 0 and together[0]["clicks"] == 1
