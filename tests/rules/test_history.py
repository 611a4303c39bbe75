"""Change history of scenes and rules: who changed what and when, on the object's page; restoring
an earlier version of a rule."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from recadmin.rules import services
from recadmin.rules.models import BusinessRule, Scene
from tests.rules.factories import CategoryFactory, SceneFactory
from tests.rules.test_admin import _rule_form

pytestmark = pytest.mark.django_db


@pytest.fixture
def home() -> Scene:
    CategoryFactory(slug="skincare")
    return SceneFactory(slug="home")


def _boost(**fields: Any) -> BusinessRule:
    return services.rule_create(
        name="Skincare boost",
        kind="boost",
        scenes=["home"],
        condition={"field": "category", "op": "in_subtree", "value": "skincare"},
        weight=1.5,
        **fields,
    )


def test_an_admin_edit_is_recorded_with_its_user_and_shown_on_the_rule_page(
    admin_client: Client, admin_user: User, home: Scene
) -> None:
    rule = _boost()
    url = reverse("admin:rules_businessrule_change", args=[rule.pk])

    response = admin_client.post(url, _rule_form(weight="2.0", scenes=[home.pk]))

    assert response.status_code == 302
    latest = rule.history.order_by("-history_id").first()
    assert latest.history_user == admin_user and latest.weight == 2.0
    assert rule.history.count() >= 2
    page = admin_client.get(url).content.decode()
    assert "Recent changes" in page
    assert "weight: 1.5 → 2.0" in page and admin_user.get_username() in page
    assert reverse("admin:rules_businessrule_history", args=[rule.pk]) in page


def test_the_history_page_lists_who_changed_what(admin_client: Client, admin_user: User, home: Scene) -> None:
    rule = _boost()
    admin_client.post(
        reverse("admin:rules_businessrule_change", args=[rule.pk]), _rule_form(weight="3.0", scenes=[home.pk])
    )
    page = admin_client.get(reverse("admin:rules_businessrule_history", args=[rule.pk])).content.decode()
    assert admin_user.get_username() in page
    assert "Weight" in page or "weight" in page
    assert "3.0" in page


def test_an_earlier_version_of_a_rule_can_be_restored(admin_client: Client, admin_user: User, home: Scene) -> None:
    rule = _boost()
    first = rule.history.order_by("history_id").first()
    admin_client.post(
        reverse("admin:rules_businessrule_change", args=[rule.pk]),
        _rule_form(weight="4.0", priority="5", scenes=[home.pk]),
    )
    rule.refresh_from_db()
    assert (rule.weight, rule.priority) == (4.0, 5)

    restore_url = reverse("admin:rules_businessrule_simple_history", args=[rule.pk, first.history_id])
    form_page = admin_client.get(restore_url)
    assert form_page.status_code == 200
    initial = form_page.context["adminform"].form.initial
    assert (initial["weight"], initial["priority"]) == (1.5, 0)
    assert "Revert" in form_page.content.decode()

    # Confirming the pre-filled form restores it.
    response = admin_client.post(
        restore_url, _rule_form(weight=str(initial["weight"]), priority=str(initial["priority"]), scenes=[home.pk])
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.weight, rule.priority) == (1.5, 0)
    assert rule.history.order_by("-history_id").first().history_user == admin_user


def test_bulk_enable_and_disable_are_recorded_per_rule_with_the_user(
    admin_client: Client, admin_user: User, home: Scene
) -> None:
    rules = [_boost(), _boost()]
    admin_client.post(
        reverse("admin:rules_businessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [r.pk for r in rules]},
    )
    for rule in rules:
        latest = rule.history.order_by("-history_id").first()
        assert latest.enabled is False and latest.history_user == admin_user


def test_a_scene_change_is_recorded_and_a_change_without_a_person_says_so(
    admin_client: Client, admin_user: User, home: Scene
) -> None:
    services.scene_update(scene=home, data={"default_n": 7})  # no request: a service, the API, a task
    page = admin_client.get(reverse("admin:rules_scene_change", args=[home.pk])).content.decode()
    assert "default_n: 10 → 7" in page
    assert "a service or the API" in page
    latest = home.history.order_by("-history_id").first()
    assert latest.default_n == 7 and latest.history_user is None


def test_a_change_through_the_api_is_recorded_without_a_user(api_client: Any, home: Scene) -> None:
    response = api_client.patch("/api/v1/scenes/home", {"default_n": 12}, format="json")
    assert response.status_code == 200, response.content
    latest = home.history.order_by("-history_id").first()
    assert latest.default_n == 12 and latest.history_user is None
