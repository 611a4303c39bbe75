from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from recadmin.catalog.admin_tools import COUNT_CAP, CappedCountPaginator
from recadmin.events.models import Event
from tests.factories import EventFactory

pytestmark = pytest.mark.django_db


def test_event_pages_load_with_filters_and_date_drilldown(admin_client: Client) -> None:
    event = EventFactory(type="click", scene="home", recommendation_id="r-1", occurred_at=timezone.now())
    day = timezone.localtime(event.occurred_at)
    for url in [
        "/admin/events/event/",
        "/admin/events/event/?type=click",
        "/admin/events/event/?scene=home&from_recommendation=yes",
        f"/admin/events/event/?occurred_at__year={day.year}",
        f"/admin/events/event/?occurred_at__year={day.year}&occurred_at__month={day.month}",
        f"/admin/events/event/?occurred_at__year={day.year}&occurred_at__month={day.month}&occurred_at__day={day.day}",
        f"/admin/events/event/?q={event.event_id}",
        f"/admin/events/event/{event.pk}/change/",
    ]:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        if "change" not in url:
            assert f"/admin/events/event/{event.pk}/change/" in response.content.decode(), url


def test_events_are_read_only_in_the_admin(admin_client: Client) -> None:
    event = EventFactory()
    assert admin_client.get("/admin/events/event/add/").status_code == 403
    html = admin_client.get(f"/admin/events/event/{event.pk}/change/").content.decode()
    assert 'name="_save"' not in html
    assert admin_client.post(f"/admin/events/event/{event.pk}/delete/").status_code == 403


def test_event_changelist_never_counts_the_whole_table(admin_client: Client) -> None:
    EventFactory.create_batch(3)
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get("/admin/events/event/").status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts, "expected the capped count"
    assert all("LIMIT" in sql.upper() for sql in counts)
    # No SELECT DISTINCT over dates: the hierarchy comes from MIN/MAX.
    assert not any("DISTINCT" in q["sql"].upper() and "occurred_at" in q["sql"] for q in queries.captured_queries)


def test_capped_paginator_stops_counting_at_the_cap() -> None:
    EventFactory.create_batch(3)
    paginator = CappedCountPaginator(Event.objects.order_by("-id"), 2)
    assert paginator.count == 3 and paginator.num_pages == 2
    assert COUNT_CAP >= 1000


def test_date_hierarchy_spans_first_to_last_event(admin_client: Client) -> None:
    now = timezone.now()
    EventFactory(occurred_at=now - dt.timedelta(days=800))
    EventFactory(occurred_at=now)
    html = admin_client.get("/admin/events/event/").content.decode()
    first_year = timezone.localtime(now - dt.timedelta(days=800)).year
    assert f"occurred_at__year={first_year}" in html
    assert f"occurred_at__year={timezone.localtime(now).year}" in html


def test_event_search_finds_by_event_customer_item_or_recommendation_id(admin_client: Client) -> None:
    target = EventFactory(recommendation_id="rec-9")
    other = EventFactory()
    for term in [target.event_id, target.customer.shop_id, target.item.shop_id, "rec-9"]:
        html = admin_client.get("/admin/events/event/", {"q": term}).content.decode()
        assert f"/admin/events/event/{target.pk}/change/" in html, term
        assert f"/admin/events/event/{other.pk}/change/" not in html, term


def test_a_capped_count_says_more_than_the_cap_instead_of_the_cap(admin_client: Client) -> None:
    first = EventFactory(type="view")
    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            customer=first.customer,
            item=first.item,
            type="view",
            occurred_at=now - dt.timedelta(seconds=n),
            event_id=f"bulk-{n}",
        )
        for n in range(COUNT_CAP)
    )  # COUNT_CAP + 1 events in all

    for url in ["/admin/events/event/", "/admin/events/event/?type=view"]:
        html = admin_client.get(url).content.decode()
        assert f"more than {COUNT_CAP:,}" in html, url
        assert f"{COUNT_CAP} results" not in html and f"{COUNT_CAP} events" not in html, url
    assert f"more than {COUNT_CAP:,} results" in admin_client.get("/admin/events/event/?type=view").content.decode()


def test_a_count_below_the_cap_is_shown_exactly(admin_client: Client) -> None:
    EventFactory.create_batch(3)
    page = " ".join(admin_client.get("/admin/events/event/").content.decode().split())  # the theme breaks lines
    assert "3 events" in page
    paginator = CappedCountPaginator(Event.objects.order_by("-id"), 2)
    assert paginator.count == 3 and str(paginator.count) == "3"
