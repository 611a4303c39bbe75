"""Admin helpers for tables with millions of rows (events, customers). Used by catalog and events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.paginator import Paginator
from django.db import models
from django.utils import timezone
from django.utils.functional import cached_property

# Counting more rows than this is never worth it on a page the merchandiser reads 100 rows of.
COUNT_CAP = 10_000


class CappedCount(int):
    """A row count that stopped at the cap: it computes as the cap, and prints as what it is
    ("more than 10,000") wherever a template shows the count ("N results", "N events")."""

    def __str__(self) -> str:
        return f"more than {int(self):,}"

    __repr__ = __str__


class CappedCountPaginator(Paginator):
    """Counts at most COUNT_CAP rows (`SELECT COUNT(*) FROM (... LIMIT cap + 1)`), so a changelist
    over millions of rows costs an index scan of one page, not a full count. Past the cap, pages are
    still reachable from the URL; the total shown is "more than <cap>"."""

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        object_list: Any = self.object_list
        if isinstance(object_list, models.QuerySet):
            counted = object_list.values("pk")[: self.cap + 1].count()
            return CappedCount(self.cap) if counted > self.cap else counted
        return len(object_list)


def _buckets(first: dt.datetime, last: dt.datetime, kind: str) -> list[dt.datetime]:
    tz = first.tzinfo
    out: list[dt.datetime] = []
    if kind == "year":
        return [dt.datetime(y, 1, 1, tzinfo=tz) for y in range(first.year, last.year + 1)]
    if kind == "month":
        y, m = first.year, first.month
        while (y, m) <= (last.year, last.month):
            out.append(dt.datetime(y, m, 1, tzinfo=tz))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out
    day = first.date()
    while day <= last.date():
        out.append(dt.datetime(day.year, day.month, day.day, tzinfo=tz))
        day += dt.timedelta(days=1)
    return out


class CheapDatesQuerySet(models.QuerySet):
    """A date hierarchy without `SELECT DISTINCT date_trunc(...)` over the whole table: the buckets
    are every year/month/day between the first and the last row (MIN/MAX, which an index answers),
    so a bucket may occasionally be empty."""

    def datetimes(self, field_name: str, kind: Any, order: Any = "ASC", tzinfo: Any = None) -> Any:
        if kind not in {"year", "month", "day"}:
            return super().datetimes(field_name, kind, order, tzinfo)
        span = self.aggregate(first=models.Min(field_name), last=models.Max(field_name))
        if span["first"] is None:
            return []
        first, last = timezone.localtime(span["first"]), timezone.localtime(span["last"])
        buckets = _buckets(first, last, kind)
        return buckets if order == "ASC" else buckets[::-1]


def cheap_dates(qs: models.QuerySet) -> models.QuerySet:
    clone = qs.all()
    clone.__class__ = type("CheapDates" + type(qs).__name__, (CheapDatesQuerySet, type(qs)), {})
    return clone
