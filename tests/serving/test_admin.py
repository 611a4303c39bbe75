"""The preview page, the served log admin and the links from the customer, scene and rule pages."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from recadmin.catalog.models import Customer
from recadmin.rules.models import BusinessRule
from recadmin.rules.services import rule_create
from recadmin.serving import fallbacks
from recadmin.serving.models import ServedRecommendation
from recadmin.serving.served_log import served_log_drain

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def admin_client_logged(db: None) -> Client:
    user = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.torchserve
def test_the_preview_shows_the_final_list_with_reasons_next_to_the_raw_ranking(
    admin_client_logged: Client, served_model: Any
) -> None:
    rule = rule_create(
        name="Boost acme",
        kind="boost",
        scenes=["home"],
        condition={"field": "brand", "op": "eq", "value": "acme"},
        weight=1000.0,
    )
    url = reverse("admin:serving_preview")

    response = admin_client_logged.get(url, {"scene": "home", "customer": "customer-000", "n": 10})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="final-list"' in html and 'id="raw-list"' in html
    assert "Source: model" in html
    assert f"boosted by rule #{rule.pk} Boost acme" in html
    final, raw = response.context["final"], response.context["raw"]
    assert len(final) == 10 and len(raw) == 10
    # The raw ranking is the model's own order: the boost changed the final list, not it.
    assert [r["item"] for r in final] != [r["item"] for r in raw]


def test_the_preview_takes_a_typed_history(admin_client_logged: Client, shop_with_events: Any) -> None:
    response = admin_client_logged.get(
        reverse("admin:serving_preview"), {"scene": "home", "history": "sku-001, sku-002 sku-003", "n": 5}
    )

    assert response.status_code == 200
    assert response.context["result"].history == ["sku-001", "sku-002", "sku-003"]
    # No model here: the page still shows the fallback list, and says so.
    assert "Source: fallback" in response.content.decode()


def test_the_preview_is_linked_from_customer_scene_and_rule_pages(
    admin_client_logged: Client, shop_with_events: Any
) -> None:
    customer = Customer.objects.get(shop_id="customer-000")
    rule = rule_create(name="Pin", kind="pin", scenes=["home"], position=1, pinned_items=["sku-001"])
    preview = reverse("admin:serving_preview")
    pages = {
        reverse("admin:catalog_customer_change", args=[customer.pk]): f"{preview}?customer=customer-000",
        reverse("admin:rules_scene_change", args=[shop_with_events["home"].pk]): f"{preview}?scene=home",
        reverse("admin:rules_businessrule_change", args=[rule.pk]): f"{preview}?rule={rule.pk}",
    }
    for page, link in pages.items():
        response = admin_client_logged.get(page)
        assert response.status_code == 200, page
        assert link in response.content.decode(), page

    prefilled = admin_client_logged.get(f"{preview}?rule={rule.pk}")
    assert prefilled.status_code == 200
    assert prefilled.context["form"].initial["scene"] == "home"


def test_the_served_log_admin_lists_rows_and_fallback_counters(
    admin_client_logged: Client, api_client: Any, shop_with_events: Any
) -> None:
    body = api_client.get("/api/v1/recommendations", {"customer": "x", "scene": "home", "n": 3}).json()
    served_log_drain()
    fallbacks.fallback_record(reason=fallbacks.REASON_TORCHSERVE_DOWN, detail="test")

    changelist = admin_client_logged.get(reverse("admin:serving_servedrecommendation_changelist"))
    searched = admin_client_logged.get(
        reverse("admin:serving_servedrecommendation_changelist"), {"q": body["recommendation_id"]}
    )

    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert 'id="fallback-counters"' in html and "torchserve_unavailable" in html
    assert body["recommendation_id"] in searched.content.decode()
    row_id = searched.context["cl"].result_list[0].pk
    detail = admin_client_logged.get(reverse("admin:serving_servedrecommendation_change", args=[row_id]))
    assert detail.status_code == 200
    assert body["items"][0]["item"] in detail.content.decode()


@pytest.mark.postgres
def test_the_served_log_admin_shows_the_pages_the_database_refused(admin_client_logged: Client) -> None:
    from recadmin.serving.served_log import served_log_push

    served_log_push(record={"recommendation_id": "too-long-scene", "scene": "x" * 65, "source": "model", "items": []})
    served_log_drain()

    html = admin_client_logged.get(reverse("admin:serving_servedrecommendation_changelist")).content.decode()

    assert 'id="served-log-rejected"' in html and "<strong>1</strong>" in html
    assert "StringDataRightTruncation" in html and "too-long-scene" in html


def test_the_admin_sends_set_aside_pages_back_to_the_log(admin_client_logged: Client) -> None:
    from recadmin.serving import served_log

    served_log._local_buffer.append("{not json")  # set aside again: it stays unreadable
    served_log_drain()
    served_log._set_aside(None, [served_log._aside_entry(b'{"recommendation_id": "back", "items": []}', ValueError())])

    response = admin_client_logged.post(reverse("admin:serving_retry_rejected"), follow=True)

    assert ServedRecommendation.objects.filter(recommendation_id="back").exists()
    assert served_log.served_log_rejected()[0] == 1
    assert "Sent 2 set-aside pages back to the log" in response.content.decode()
    assert "set aside now: 1" in response.content.decode()


def test_fallback_counters_can_be_reset_from_the_admin(admin_client_logged: Client) -> None:
    fallbacks.fallback_record(reason=fallbacks.REASON_TORCHSERVE_SLOW)

    admin_client_logged.post(reverse("admin:serving_fallback_reset"))

    assert fallbacks.fallback_counts()[fallbacks.REASON_TORCHSERVE_SLOW] == 0


def _rule_post(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Draft",
        "kind": "pin",
        "enabled": "on",
        "priority": "0",
        "condition": "{}",
        "filter_mode": "exclude",
        "weight_mode": "multiply",
        "weight": "",
        "position": "1",
        "pinned_items": "",
        "effect_scene": "home",
    }
    data.update(overrides)
    return data


def test_the_rule_form_shows_what_an_unsaved_pin_changes(admin_client_logged: Client, shop_with_events: Any) -> None:
    url = reverse("admin:serving_rule_effect")
    out_of_stock = '{"field": "in_stock", "op": "eq", "value": false}'
    without = admin_client_logged.post(url, _rule_post(kind="filter", condition=out_of_stock))
    before = [row["after"]["item"] for row in without.context["rows"] if row["after"]]
    assert before, "the home list of this shop is not empty"
    last = before[-1]

    response = admin_client_logged.post(url, _rule_post(pinned_items=last, position="1"))

    assert response.status_code == 200
    rows = response.context["rows"]
    assert rows[0]["after"]["item"] == last and rows[0]["before"]["item"] == before[0]
    assert rows[0]["change"] == f"moved from {len(before)}"
    assert any("pinned at 1 by rule" in text for text in rows[0]["touched"])
    assert response.context["changed"] is True
    assert not BusinessRule.objects.exists()  # nothing was saved


def test_the_rule_effect_names_what_to_fix_in_the_form(admin_client_logged: Client, shop_with_events: Any) -> None:
    response = admin_client_logged.post(reverse("admin:serving_rule_effect"), _rule_post(pinned_items="no-such-sku"))
    assert response.status_code == 200
    assert "no item has the shop id no-such-sku" in response.content.decode()
