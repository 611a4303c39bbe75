"""Admin pages for scenes and rules load, explain themselves and validate like the API."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import NoReverseMatch, reverse

from recadmin.rules.models import BusinessRule, Scene
from tests.rules.factories import BusinessRuleFactory, CategoryFactory, ItemFactory, SceneFactory

pytestmark = pytest.mark.django_db


def _rule_form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Skincare boost",
        "kind": "boost",
        "enabled": "on",
        "priority": "0",
        "scenes": [],
        "condition": json.dumps({"field": "category", "op": "in_subtree", "value": "skincare"}),
        "filter_mode": "exclude",
        "weight_mode": "multiply",
        "weight": "1.5",
        "position": "",
        "pinned_items": "",
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def home() -> Scene:
    CategoryFactory(slug="skincare")
    return SceneFactory(slug="home")


def test_the_list_add_and_change_pages_load(admin_client: Client, home: Scene) -> None:
    rule = BusinessRuleFactory(scenes=[home])
    pin = BusinessRuleFactory(pin=True, all_scenes=True, pinned_items=[ItemFactory()])
    urls = [
        reverse("admin:rules_scene_changelist"),
        reverse("admin:rules_scene_add"),
        reverse("admin:rules_scene_change", args=[home.pk]),
        reverse("admin:rules_businessrule_changelist"),
        reverse("admin:rules_businessrule_changelist") + "?scene=home&kind__exact=boost&active_now=yes",
        reverse("admin:rules_businessrule_changelist") + "?active_now=no&enabled__exact=0",
        reverse("admin:rules_businessrule_add"),
        reverse("admin:rules_businessrule_change", args=[rule.pk]),
        reverse("admin:rules_businessrule_change", args=[pin.pk]),
    ]
    for url in urls:
        response = admin_client.get(url)
        assert response.status_code == 200, url


def test_the_rule_form_explains_the_condition_with_examples(admin_client: Client, home: Scene) -> None:
    page = admin_client.get(reverse("admin:rules_businessrule_add")).content.decode()
    assert "in_subtree" in page and "between" in page and "Examples" in page
    assert "Higher runs first" in page  # the priority's help text


def test_an_invalid_condition_is_shown_on_the_condition_field(admin_client: Client, home: Scene) -> None:
    bad = json.dumps({"field": "price", "op": "between", "value": [50, 10]})
    response = admin_client.post(reverse("admin:rules_businessrule_add"), _rule_form(condition=bad, scenes=[home.pk]))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "price min 50 is above max 10" in errors["condition"][0]
    assert not BusinessRule.objects.exists()


def test_a_rule_without_scenes_or_a_pin_without_items_is_refused(admin_client: Client, home: Scene) -> None:
    response = admin_client.post(reverse("admin:rules_businessrule_add"), _rule_form())
    assert "at least one scene" in response.context["adminform"].form.errors["scenes"][0]
    pin = _rule_form(kind="pin", condition="{}", weight="", position="1", scenes=[home.pk])
    response = admin_client.post(reverse("admin:rules_businessrule_add"), pin)
    assert "at least one item" in response.context["adminform"].form.errors["pinned_items"][0]
    assert not BusinessRule.objects.exists()


def test_a_valid_rule_and_pin_are_saved(admin_client: Client, home: Scene) -> None:
    response = admin_client.post(reverse("admin:rules_businessrule_add"), _rule_form(scenes=[home.pk]))
    assert response.status_code == 302
    item = ItemFactory()
    pin = _rule_form(name="pin", kind="pin", condition="", weight="", position="2", scenes=[home.pk],
                     pinned_items=str(item.pk))  # fmt: skip
    response = admin_client.post(reverse("admin:rules_businessrule_add"), pin)
    assert response.status_code == 302
    saved = BusinessRule.objects.get(name="pin")
    assert saved.condition == {} and list(saved.pinned_items.all()) == [item]


def test_the_disable_action_goes_through_the_service(admin_client: Client, home: Scene) -> None:
    rules = [BusinessRuleFactory(scenes=[home]) for _ in range(2)]
    response = admin_client.post(
        reverse("admin:rules_businessrule_changelist"),
        {"action": "disable_rules", "_selected_action": [r.pk for r in rules]},
    )
    assert response.status_code == 302
    assert not BusinessRule.objects.filter(enabled=True).exists()


def test_scene_and_rule_pages_link_to_the_preview(admin_client: Client, home: Scene) -> None:
    rule = BusinessRuleFactory(scenes=[home])
    scene_page = admin_client.get(reverse("admin:rules_scene_change", args=[home.pk])).content.decode()
    rule_page = admin_client.get(reverse("admin:rules_businessrule_change", args=[rule.pk])).content.decode()
    try:
        preview = reverse("admin:serving_preview")
    except NoReverseMatch:
        pytest.skip("the serving app provides no preview page")
    assert f"{preview}?scene=home" in scene_page
    assert f"{preview}?rule={rule.pk}" in rule_page
