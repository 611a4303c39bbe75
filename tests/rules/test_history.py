"""Change history of scenes and rules: who changed what and when, on the object's page; restoring
an earlier version of a rule."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from recadmin.catalog.models import Item
from recadmin.rules import selectors, services
from recadmin.rules.models import BusinessRule, Scene
from tests.rules.factories import CategoryFactory, ItemFactory, SceneFactory
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


def _pin_form(rule: BusinessRule, **overrides: object) -> dict[str, object]:
    return _rule_form(name=rule.name, kind="pin", condition="{}", weight="", position=str(rule.position), **overrides)


def test_restoring_a_version_brings_back_its_scenes_and_pinned_items_and_what_is_served(
    admin_client: Client, admin_user: User, home: Scene
) -> None:
    pdp = SceneFactory(slug="product_detail")
    old_items = [ItemFactory(shop_id="sku-a"), ItemFactory(shop_id="sku-b")]
    ItemFactory(shop_id="sku-c")
    rule = services.rule_create(name="Launch", kind="pin", scenes=["home"], position=1, pinned_items=["sku-a", "sku-b"])
    earlier = rule.history.order_by("-history_id").first()
    change_url = reverse("admin:rules_businessrule_change", args=[rule.pk])
    admin_client.post(change_url, _pin_form(rule, scenes=[pdp.pk], pinned_items="sku-c"))
    rule.refresh_from_db()
    assert [s.slug for s in rule.scenes.all()] == ["product_detail"]
    assert [i.shop_id for i in rule.pinned_items.all()] == ["sku-c"]
    assert [r.pinned_items for r in selectors.ruleset_for_scene("product_detail").rules] == [("sku-c",)]
    assert selectors.ruleset_for_scene("home").rules == ()
    version_before = selectors.rules_cache_version()

    # The version's page is pre-filled with the scenes and items of that version, not today's.
    restore_url = reverse("admin:rules_businessrule_simple_history", args=[rule.pk, earlier.history_id])
    form_page = admin_client.get(restore_url)
    form = form_page.context["adminform"].form
    assert sorted(scene.slug for scene in form.initial["scenes"]) == ["home"]
    assert sorted(item.shop_id for item in form.initial["pinned_items"]) == ["sku-a", "sku-b"]
    html = form_page.content.decode()
    shown = re.search(r'name="pinned_items" value="([^"]*)"', html)
    assert shown and sorted(shown.group(1).split(", ")) == ["sku-a", "sku-b"]
    checked = re.findall(r'name="scenes" value="(\d+)"[^>]*id="id_scenes_\d+" checked>', html)
    assert checked == [str(home.pk)]

    # Confirming the form as shown restores them.
    response = admin_client.post(
        restore_url,
        _pin_form(
            rule,
            scenes=[scene.pk for scene in form.initial["scenes"]],
            pinned_items=", ".join(item.shop_id for item in form.initial["pinned_items"]),
        ),
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert [s.slug for s in rule.scenes.all()] == ["home"]
    assert sorted(i.shop_id for i in rule.pinned_items.all()) == [i.shop_id for i in old_items]
    assert selectors.rules_cache_version() != version_before
    assert [r.pinned_items for r in selectors.ruleset_for_scene("home").rules] == [("sku-a", "sku-b")]
    assert selectors.ruleset_for_scene("product_detail").rules == ()
    latest = rule.history.order_by("-history_id").first()
    assert latest.history_user == admin_user
    # The change page's box says which scenes and items changed, by slug and shop id.
    page = admin_client.get(change_url).content.decode()
    box = re.search(r'<table class="recadmin-history">.*?</table>', page, re.S)
    assert box
    restored = re.findall(r"<td>(.*?)</td>", box.group(0))[2]  # the newest save's "what changed"
    assert "scenes: product_detail → home" in restored
    new_item = Item.objects.get(shop_id="sku-c")
    assert f"pinned_items: {new_item} → {old_items[0]}, {old_items[1]}" in restored


def test_the_recent_changes_box_reads_many_to_many_history_in_a_few_queries(
    admin_client: Client, home: Scene, django_assert_max_num_queries: Any
) -> None:
    pdp = SceneFactory(slug="product_detail")
    rule = _boost()
    for n in range(12):  # each save records the fields and one version per scene added or removed
        services.rule_update(rule=rule, data={"weight": 2.0 + n, "scenes": ["home", "product_detail"][: 1 + n % 2]})
    url = reverse("admin:rules_businessrule_change", args=[rule.pk])
    # Measured on this page: 642 queries before the m2m rows were read in bulk, 72 after.
    with django_assert_max_num_queries(100):
        page = admin_client.get(url).content.decode()
    assert "weight: 12.0 → 13.0" in page and pdp.slug
