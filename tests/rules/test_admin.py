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
                     pinned_items=item.shop_id)  # fmt: skip
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


# --- the builder, the pin picker and the rule list in words -----------------------------------------


def _builder_rows(match: str, *rows: tuple[str, str, str, str]) -> dict[str, object]:
    return {
        "condition_mode": "builder",
        "cb_match": match,
        "cb_field": [r[0] for r in rows],
        "cb_attr": [r[1] for r in rows],
        "cb_op": [r[2] for r in rows],
        "cb_value": [r[3] for r in rows],
    }


def test_the_builder_rows_are_saved_as_the_api_json_condition(admin_client: Client, home: Scene) -> None:
    form = _rule_form(
        name="Kano in skincare",
        scenes=[home.pk],
        condition="this box is ignored in builder mode",
        **_builder_rows(
            "all",
            ("brand", "", "eq", "Kano"),
            ("price", "", "between", "10-50"),
            ("attributes.", "vegan", "eq", "true"),
        ),
    )
    response = admin_client.post(reverse("admin:rules_businessrule_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = BusinessRule.objects.get(name="Kano in skincare")
    assert rule.condition == {
        "all": [
            {"field": "brand", "op": "eq", "value": "Kano"},
            {"field": "price", "op": "between", "value": [10, 50]},
            {"field": "attributes.vegan", "op": "eq", "value": True},
        ]
    }
    # Editing shows the same rows again.
    page = admin_client.get(reverse("admin:rules_businessrule_change", args=[rule.pk])).content.decode()
    assert 'value="10-50"' in page and 'value="vegan"' in page and 'name="cb_field"' in page


def test_a_bad_builder_row_is_shown_on_the_condition_naming_the_row(admin_client: Client, home: Scene) -> None:
    rows = _builder_rows("all", ("brand", "", "eq", "Kano"), ("price", "", "gt", "lots"))
    form = _rule_form(scenes=[home.pk], **rows)
    response = admin_client.post(reverse("admin:rules_businessrule_add"), form)
    assert response.status_code == 200
    assert "row 2: expected a number" in response.context["adminform"].form.errors["condition"][0]
    assert not BusinessRule.objects.exists()


def test_a_pin_takes_its_items_by_shop_id_and_shows_them_by_shop_id(admin_client: Client, home: Scene) -> None:
    first, second = ItemFactory(shop_id="demo-sku-01999"), ItemFactory(shop_id="demo-sku-00001")
    form = _rule_form(name="pin", kind="pin", condition="", weight="1.5", position="1", scenes=[home.pk],
                      pinned_items="demo-sku-01999, demo-sku-00001",
                      **_builder_rows("all", ("brand", "", "eq", "leftover")))  # fmt: skip
    response = admin_client.post(reverse("admin:rules_businessrule_add"), form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    rule = BusinessRule.objects.get(name="pin")
    # What the pin's kind does not use (a weight, rows left in the hidden builder) is not saved.
    assert rule.condition == {} and rule.weight is None
    assert set(rule.pinned_items.all()) == {first, second}
    page = admin_client.get(reverse("admin:rules_businessrule_change", args=[rule.pk])).content.decode()
    assert 'value="demo-sku-01999, demo-sku-00001"' in page or 'value="demo-sku-00001, demo-sku-01999"' in page
    listing = admin_client.get(reverse("admin:rules_businessrule_changelist")).content.decode()
    assert "Pin demo-sku-00001, demo-sku-01999 at position 1 on home" in listing


def test_an_unknown_shop_id_is_refused_by_name(admin_client: Client, home: Scene) -> None:
    form = _rule_form(name="pin", kind="pin", condition="", weight="", position="1", scenes=[home.pk],
                      pinned_items="demo-sku-missing")  # fmt: skip
    response = admin_client.post(reverse("admin:rules_businessrule_add"), form)
    assert response.status_code == 200
    assert "no item has the shop id demo-sku-missing" in response.context["adminform"].form.errors["pinned_items"][0]


def test_the_rule_list_says_what_each_rule_does(admin_client: Client, home: Scene) -> None:
    import datetime as dt

    BusinessRuleFactory(
        name="Kano",
        scenes=[home],
        condition={"field": "brand", "op": "eq", "value": "Kano"},
        weight=1.5,
        valid_until=dt.datetime(2099, 12, 31, tzinfo=dt.UTC),
    )
    page = admin_client.get(reverse("admin:rules_businessrule_changelist")).content.decode()
    assert "Boost brand Kano x1.5 on home, until 31 Dec 2099" in page


def test_the_match_count_endpoint_counts_active_items_for_rows_or_json(admin_client: Client, home: Scene) -> None:
    ItemFactory(shop_id="k-1", brand="Kano")
    ItemFactory(shop_id="k-2", brand="Kano")
    ItemFactory(shop_id="o-1", brand="Other")
    url = reverse("admin:rules_businessrule_match_count")
    by_rows = admin_client.post(url, _builder_rows("all", ("brand", "", "eq", "kano"))).json()
    assert by_rows["count"] == 2 and by_rows["total"] == 3 and by_rows["sample"] == ["k-1", "k-2"]
    assert by_rows["condition"] == {"field": "brand", "op": "eq", "value": "kano"}
    not_kano = '{"field": "brand", "op": "ne", "value": "Kano"}'
    by_json = admin_client.get(url, {"condition_mode": "json", "condition": not_kano})
    assert by_json.json()["count"] == 1
    bad = admin_client.post(url, _builder_rows("all", ("price", "", "between", "9-1")))
    assert bad.status_code == 400 and "row 1: price min 9 is above max 1" in bad.json()["error"]
    nope = '{"field": "category", "op": "eq", "value": "nope"}'
    unknown = admin_client.get(url, {"condition_mode": "json", "condition": nope})
    assert unknown.status_code == 400 and "unknown category slug(s): nope" in unknown.json()["error"]


def test_the_item_search_finds_items_by_shop_id_or_title(admin_client: Client, home: Scene) -> None:
    ItemFactory(shop_id="demo-sku-01999", title="Kano running shoe")
    ItemFactory(shop_id="other-1", title="Blue kettle")
    url = reverse("admin:rules_businessrule_item_search")
    assert [r["shop_id"] for r in admin_client.get(url, {"q": "demo-sku-019"}).json()["results"]] == ["demo-sku-01999"]
    assert [r["shop_id"] for r in admin_client.get(url, {"q": "kettle"}).json()["results"]] == ["other-1"]


def test_the_builder_endpoints_need_a_staff_login(client: Client, home: Scene) -> None:
    response = client.get(reverse("admin:rules_businessrule_item_search"), {"q": "x"})
    assert response.status_code == 302 and "/login/" in response["Location"]
