"""Attribution by hand-computed cases: direct, by the click window, late and duplicated events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from recadmin.events.models import Event
from recadmin.metrics.models import Attribution, HourlyRollup
from recadmin.metrics.services import hour_of, metrics_refresh

pytestmark = pytest.mark.django_db

M = dt.timedelta(minutes=1)
H = dt.timedelta(hours=1)


def _rollup(hour: dt.datetime, **filters: Any) -> dict[str, Any]:
    rows = list(HourlyRollup.objects.filter(hour=hour_of(hour), **filters).values())
    assert len(rows) == 1, rows
    return rows[0]


def test_a_click_with_the_recommendation_id_counts_for_its_list_and_position(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    serve("r1", ["A", "B", "C"], at=t0, scene="home", strategy="model,popular")
    send("click", "B", at=t0 + M, rec="r1")
    send("view", "C", at=t0 + M, rec="r1")  # not an attributed type
    result = metrics_refresh(drain=False)
    assert (result.direct, result.window) == (1, 0)
    attribution = Attribution.objects.get()
    assert (attribution.method, attribution.position, attribution.scene, attribution.strategy) == (
        "direct",
        1,
        "home",
        "model,popular",
    )
    row = _rollup(t0)
    assert (row["lists"], row["impressions"], row["clicks"], row["purchases"], row["customers"], row["items"]) == (
        1,
        3,
        1,
        0,
        1,
        3,
    )
    assert (row["model_label"], row["source"], row["direct_attributions"]) == ("recommender v1", "model", 1)


def test_a_purchase_without_the_id_goes_to_the_last_click_on_the_item_within_the_window(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], settings: Any
) -> None:
    settings.ATTRIBUTION_WINDOW_HOURS = 24
    serve("r1", ["A", "B"], at=t0, scene="home")
    serve("r2", ["B", "C"], at=t0 + 10 * M, scene="product_detail")
    send("click", "B", at=t0 + 2 * M, rec="r1")
    send("click", "B", at=t0 + 11 * M, rec="r2")  # the last click: it wins
    send("purchase", "B", at=t0 + 30 * M, price=5, value=2)  # 2 x 5.00
    send("add_to_cart", "A", at=t0 + 31 * M)  # never clicked: not attributed
    send("purchase", "B", at=t0 + 30 * M, customer="c2", price=5)  # another customer's: not attributed
    metrics_refresh(drain=False)
    purchase = Attribution.objects.get(type="purchase")
    assert (purchase.method, purchase.recommendation_id, purchase.position, purchase.scene) == (
        "window",
        "r2",
        0,
        "product_detail",
    )
    assert purchase.revenue == Decimal("10.00") and purchase.quantity == 2
    assert Attribution.objects.count() == 3
    detail = _rollup(t0, scene="product_detail")
    assert (detail["clicks"], detail["purchases"], detail["revenue"], detail["window_attributions"]) == (
        1,
        1,
        Decimal("10.00"),
        1,
    )
    assert _rollup(t0, scene="home")["purchases"] == 0


def test_events_outside_the_window_are_not_counted(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], settings: Any
) -> None:
    settings.ATTRIBUTION_WINDOW_HOURS = 1
    serve("r1", ["A", "B"], at=t0)
    send("click", "A", at=t0 + 30 * M, rec="r1")
    send("click", "B", at=t0 + 61 * M, rec="r1")  # 61 min after the list was served
    send("purchase", "A", at=t0 + 95 * M)  # 65 min after the click
    send("purchase", "A", at=t0 + 85 * M, event_id="p-in")  # 55 min after the click
    metrics_refresh(drain=False)
    assert sorted(Attribution.objects.values_list("type", "method")) == [("click", "direct"), ("purchase", "window")]
    assert Attribution.objects.get(type="purchase").event_id == Event.objects.get(event_id="p-in").pk


def test_a_late_event_inside_the_window_recomputes_the_hour_of_its_list(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    serve("r1", ["A", "B"], at=t0)
    send("click", "A", at=t0 + M, rec="r1")
    metrics_refresh(drain=False)
    assert _rollup(t0)["clicks"] == 1
    # Sent two hours later, about the same list: the hour of the list changes.
    send("click", "B", at=t0 + 2 * H, rec="r1")
    send("purchase", "B", at=t0 + 2 * H + M, rec="r1")  # catalog price 4.50 recorded at ingestion
    result = metrics_refresh(drain=False)
    assert result.direct == 2 and result.hours == 1
    row = _rollup(t0)
    assert (row["clicks"], row["purchases"], row["revenue"]) == (2, 1, Decimal("4.50"))


def test_a_click_arriving_after_the_purchase_it_led_to_attributes_the_purchase(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    serve("r1", ["A", "B"], at=t0)
    send("purchase", "B", at=t0 + 20 * M)
    metrics_refresh(drain=False)
    assert not Attribution.objects.exists()
    send("click", "B", at=t0 + 5 * M, rec="r1")  # the shop's click event was delayed
    result = metrics_refresh(drain=False)
    assert (result.direct, result.window) == (1, 1)
    assert _rollup(t0)["purchases"] == 1


def test_duplicated_events_count_once(t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]) -> None:
    serve("r1", ["A", "B"], at=t0)
    serve("r1", ["C", "D"], at=t0, offset=2)  # the list's second page
    send("click", "A", at=t0 + M, rec="r1", event_id="same")
    send("click", "A", at=t0 + M, rec="r1", event_id="same")  # resent: not stored again
    send("click", "A", at=t0 + 2 * M, rec="r1")  # a double click on the same item of the same list
    send("click", "D", at=t0 + 2 * M, rec="r1")  # on the second page: position 3
    send("add_to_cart", "A", at=t0 + 3 * M, rec="r1")
    send("add_to_cart", "A", at=t0 + 4 * M)  # the same add-to-cart by the window: once
    send("purchase", "A", at=t0 + 5 * M, rec="r1")
    send("purchase", "A", at=t0 + 6 * M, rec="r1")  # a second purchase is a second purchase
    metrics_refresh(drain=False)
    metrics_refresh(drain=False)  # re-running adds nothing
    assert Event.objects.filter(type="click").count() == 3
    assert set(Attribution.objects.filter(type="click").values_list("position", flat=True)) == {0, 3}
    row = _rollup(t0)
    assert (row["lists"], row["impressions"], row["clicks"], row["add_to_carts"], row["purchases"]) == (1, 4, 2, 1, 2)
    assert row["revenue"] == Decimal("20.00")


def test_unknown_lists_and_items_not_in_the_list_are_not_attributed(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    serve("r1", ["A"], at=t0)
    send("click", "A", at=t0 + M, rec="nope")
    send("click", "B", at=t0 + M, rec="r1")
    metrics_refresh(drain=False)
    assert not Attribution.objects.exists()
    assert _rollup(t0)["clicks"] == 0


def test_each_run_reads_only_new_events_and_a_late_committed_one_is_attributed_once(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recadmin.metrics.models import AttributionEvent, RollupState
    from recadmin.metrics.services import attribution

    read: list[list[str]] = []
    original = attribution._attribute

    def spy(events: list[dict[str, Any]]) -> Any:
        read.append(sorted(Event.objects.get(pk=e["pk"]).event_id for e in events))
        return original(events)

    monkeypatch.setattr(attribution, "_attribute", spy)
    serve("r1", ["A", "B"], at=t0)
    send("click", "A", at=t0 + M, rec="r1", event_id="e-click")
    send("purchase", "B", at=t0 + 2 * M, event_id="e-no-click")  # by the window, but no click: not counted
    late = send("click", "B", at=t0 + 3 * M, rec="r1", event_id="e-late")
    send("click", "A", at=t0 + 4 * M, rec="r2", event_id="e-buffered")  # r2 is still in the served-log buffer
    assert late["stored"] == 1
    late_event = Event.objects.get(event_id="e-late")
    late_row = {f.attname: getattr(late_event, f.attname) for f in Event._meta.concrete_fields}
    late_event.delete()  # its ingestion transaction has not committed yet
    result = metrics_refresh(drain=False)
    assert (result.direct, result.window) == (1, 0)
    assert read[-1] == ["e-buffered", "e-click", "e-no-click"]
    state = RollupState.objects.get()
    assert state.events_read_id == Event.objects.get(event_id="e-buffered").pk
    assert set(AttributionEvent.objects.values_list("event_id", flat=True)) == set(
        Event.objects.filter(event_id__in=["e-click", "e-no-click"]).values_list("pk", flat=True)
    )

    # The late event commits below the highest id read; r2's page is written.
    Event.objects.create(**late_row)
    serve("r2", ["A"], at=t0 + 3 * M)
    result = metrics_refresh(drain=False)
    assert read[-1] == ["e-buffered", "e-late"]  # not the events read already
    assert (result.direct, result.window) == (2, 0)
    assert sorted(Attribution.objects.values_list("recommendation_id", "position")) == [
        ("r1", 0),
        ("r1", 1),
        ("r2", 0),
    ]

    # Re-running reads nothing and attributes nothing twice.
    result = metrics_refresh(drain=False)
    assert read[-1] == [] and (result.direct, result.window) == (0, 0)
    assert Attribution.objects.count() == 3
    assert _rollup(t0)["clicks"] == 3


def test_the_ledger_keeps_only_the_lookback_of_ids(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from recadmin.metrics.models import AttributionEvent, RollupState
    from recadmin.metrics.services import attribution

    monkeypatch.setattr(attribution, "EVENT_ID_LOOKBACK", 2)
    serve("r1", ["A", "B", "C", "D"], at=t0)
    for n, item in enumerate("ABCD"):
        send("click", item, at=t0 + n * M, rec="r1")
    metrics_refresh(drain=False)
    state = RollupState.objects.get()
    ids = sorted(Event.objects.values_list("pk", flat=True))
    assert (state.events_read_id, state.events_check_low) == (ids[-1], ids[-1] - 2)
    assert sorted(AttributionEvent.objects.values_list("event_id", flat=True)) == ids[-2:]
    assert Attribution.objects.count() == 4
    assert metrics_refresh(drain=False).direct == 0


def test_the_first_run_after_the_time_bookmark_reads_its_lookback_then_takes_ids(
    t0: dt.datetime, serve: Callable[..., Any], send: Callable[..., Any]
) -> None:
    from django.utils import timezone

    from recadmin.metrics.models import RollupState

    serve("r1", ["A", "B"], at=t0)
    send("click", "A", at=t0 + M, rec="r1")
    # A state written before the id bookmark existed: events read by time up to a minute ago.
    RollupState.objects.create(key="default", events_read_until=timezone.now() - M)
    assert metrics_refresh(drain=False).direct == 1  # within the 15-minute lookback of that bookmark
    state = RollupState.objects.get()
    assert state.events_read_id == Event.objects.get().pk
    send("click", "B", at=t0 + 2 * M, rec="r1")
    assert metrics_refresh(drain=False).direct == 1
    assert metrics_refresh(drain=False).direct == 0
    assert Attribution.objects.count() == 2
