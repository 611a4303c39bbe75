from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from recadmin.events.services import RowError, derive_event_id, event_validate

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
TYPES = {"view": 1.0, "click": 2.0, "rating": 5.0}


def _validate(**overrides: Any) -> Any:
    row = {"customer": "c1", "item": "i1", "type": "click", "occurred_at": "2026-05-01T10:00:00Z", **overrides}
    row = {k: v for k, v in row.items() if v is not ...}
    return event_validate(row, index=0, now=NOW, types=TYPES)


def test_a_valid_event_is_parsed() -> None:
    row = _validate(value=4, scene="home", context={"device": "mobile"}, event_id="e1", recommendation_id="r1")
    assert row.occurred_at == dt.datetime(2026, 5, 1, 10, 0, tzinfo=dt.UTC)
    assert (row.value, row.scene, row.event_id, row.recommendation_id) == (4.0, "home", "e1", "r1")


def test_integer_ids_are_accepted_as_strings() -> None:
    row = _validate(customer=17, item=42, event_id=99)
    assert (row.customer, row.item, row.event_id) == ("17", "42", "99")


def test_naive_timestamps_are_utc_and_unix_seconds_work() -> None:
    assert _validate(occurred_at="2026-05-01T10:00:00").occurred_at.tzinfo is not None
    assert _validate(occurred_at=1_777_000_000).occurred_at == dt.datetime.fromtimestamp(1_777_000_000, tz=dt.UTC)


def test_missing_time_means_now() -> None:
    assert _validate(occurred_at=...).occurred_at == NOW


def test_missing_event_id_is_derived_from_the_content() -> None:
    first, second = _validate(event_id=...), _validate(event_id=...)
    assert first.event_id == second.event_id == derive_event_id("c1", "i1", "click", first.occurred_at, "")
    assert _validate(event_id=..., type="view").event_id != first.event_id


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "like"}, "type"),
        ({"type": None}, "type"),
        ({"customer": None}, "customer"),
        ({"customer": ["a"]}, "customer"),
        ({"customer": True}, "customer"),
        ({"item": "x" * 129}, "item"),
        ({"value": "five"}, "value"),
        ({"value": True}, "value"),
        ({"occurred_at": "2026-05-03T00:00:00Z"}, "occurred_at"),  # more than a day ahead
        ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at"),
        ({"occurred_at": "last tuesday"}, "occurred_at"),
        ({"occurred_at": [2026]}, "occurred_at"),
        ({"occurred_at": float("nan")}, "occurred_at"),
        ({"scene": "s" * 65}, "scene"),
        ({"scene": 3}, "scene"),
        ({"context": "mobile"}, "context"),
        ({"recommendation_id": "r" * 65}, "recommendation_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"event_id": {"id": 1}}, "event_id"),
        ({"ocurred_at": "2026-05-01T10:00:00Z"}, "ocurred_at"),  # a typo is not silently dropped
    ],
)
def test_invalid_rows_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(RowError) as excinfo:
        _validate(**overrides)
    assert excinfo.value.field == field


def test_a_timestamp_within_a_day_ahead_is_accepted() -> None:
    assert _validate(occurred_at="2026-05-02T11:00:00Z").occurred_at.day == 2


def test_a_non_object_row_is_rejected() -> None:
    with pytest.raises(RowError) as excinfo:
        event_validate(["c1", "i1"], index=0, now=NOW, types=TYPES)
    assert excinfo.value.field == "non_field_errors"
