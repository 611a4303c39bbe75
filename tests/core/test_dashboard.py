"""The admin home is a dashboard of panels (RECADMIN_DASHBOARD_PANELS): the core panels show the
default model and the last run, running experiments with their verdict and the rules active now;
a panel that fails shows an error box instead of a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest
from django.test import Client
from django.urls import reverse

from recadmin.experiments.services import experiment_create
from recadmin.modelops.models import ModelVersion, TrainingRun
from tests.rules.factories import BusinessRuleFactory, SceneFactory

pytestmark = pytest.mark.django_db


def broken_panel(request: HttpRequest) -> list[dict[str, Any]]:
    raise RuntimeError("the rollups table is missing")


def panel_with_bad_template(request: HttpRequest) -> list[dict[str, Any]]:
    return [{"title": "Broken chart", "template": "admin/dashboard/no_such_template.html", "context": {}}]


def extra_panel(request: HttpRequest) -> list[dict[str, Any]]:
    return [
        {
            "title": "Extra KPIs",
            "template": "admin/dashboard/rules_active.html",
            "context": {"rules": [], "total": 0, "list_url": "/x", "add_url": "/y"},
            "width": "full",
        }
    ]


def test_the_home_shows_model_run_experiments_and_active_rules(admin_client: Client) -> None:
    home = SceneFactory(slug="home")
    BusinessRuleFactory(name="Kano first", scenes=[home], condition={"field": "brand", "op": "eq", "value": "Kano"})
    BusinessRuleFactory(name="Switched off", scenes=[home], enabled=False)
    ModelVersion.objects.create(
        name="recommender", version=3, kind="sasrec", status="default", valid_metrics={"NDCG@10": 0.1234}
    )
    run = TrainingRun.objects.create(kind="sasrec", status="running", progress=42.0, stage="training epoch 3/10")
    experiment_create(
        name="sasrec vs popular",
        scenes=["home"],
        variants=[{"name": "control", "weight": 50}, {"name": "popular", "weight": 50, "strategy": ["popular"]}],
        status="running",
    )

    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    page = response.content.decode()
    titles = [panel.title for panel in response.context["recadmin_panels"]]
    # The metrics panels come first (their own tests are in tests/metrics), then the core panels.
    assert titles[-3:] == ["Model", "Rules active now", "Running experiments"]
    assert titles[0] == "Recommendations: this period against the one before"
    assert "recommender v3" in page and "NDCG@10 0.1234" in page
    assert f"Run #{run.pk}" in page and "42 %" in page and "training epoch 3/10" in page
    assert "sasrec vs popular" in page and "No data yet" in page  # the report's verdict
    assert "Kano first" in page and "Boost brand Kano x1.5 on home" in page
    assert "Switched off" not in page


def test_an_empty_shop_gets_a_dashboard_that_says_what_to_do(admin_client: Client) -> None:
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert "No default version yet" in page and "No experiment is running" in page and "No rule is active now" in page


def test_a_failing_panel_shows_an_error_box_and_the_others_still_render(admin_client: Client, settings: Any) -> None:
    settings.RECADMIN_DASHBOARD_PANELS = [
        "tests.core.test_dashboard.broken_panel",
        "tests.core.test_dashboard.panel_with_bad_template",
        "tests.core.test_dashboard.no_such_function",
        "tests.core.test_dashboard.extra_panel",
        "recadmin.rules.dashboard.rules_panel",
    ]

    response = admin_client.get(reverse("admin:index"))

    assert response.status_code == 200
    panels = response.context["recadmin_panels"]
    assert [bool(panel.error) for panel in panels] == [True, True, True, False, False]
    assert "RuntimeError: the rollups table is missing" in panels[0].error
    assert "TemplateDoesNotExist" in panels[1].error
    page = response.content.decode()
    assert page.count("recadmin-panel-error") == 3
    assert "Extra KPIs" in page and "Rules active now" in page
    assert panels[3].width == "full"


def test_the_sidebar_groups_the_merchandisers_work_and_puts_system_last(admin_client: Client) -> None:
    response = admin_client.get(reverse("admin:index"))
    groups = [group["title"] for group in response.context["sidebar_navigation"]]
    assert groups == ["Dashboard", "Catalog", "Scenes and rules", "Experiments", "Models", "System"]
    system = response.context["sidebar_navigation"][-1]
    assert {item["title"] for item in system["items"]} >= {"Users", "API keys", "Periodic tasks", "Task results"}


def test_every_sidebar_link_and_third_party_admin_page_loads_under_the_theme(admin_client: Client) -> None:
    from django.contrib import admin
    from unfold.admin import ModelAdmin as UnfoldModelAdmin

    response = admin_client.get(reverse("admin:index"))
    for group in response.context["sidebar_navigation"]:
        for item in group["items"]:
            assert admin_client.get(str(item["link"])).status_code == 200, item["link"]
    # Every registered admin, ours and the libraries', is on the theme's base class.
    assert all(isinstance(model_admin, UnfoldModelAdmin) for model_admin in admin.site._registry.values())
