"""Serving's scrape-time gauges: the served-log backlog, how old its oldest record is (drain lag) and the
records set aside."""

from __future__ import annotations

from recadmin.core.observability.metrics import (
    SERVED_LOG_BACKLOG,
    SERVED_LOG_OLDEST_SECONDS,
    SERVED_LOG_REJECTED,
    scrape_gauge,
)
from recadmin.serving.served_log import served_log_backlog, served_log_oldest_age, served_log_rejected


def register() -> None:
    scrape_gauge(SERVED_LOG_BACKLOG, "", served_log_backlog)
    scrape_gauge(SERVED_LOG_OLDEST_SECONDS, "", lambda: served_log_oldest_age() or 0.0)
    scrape_gauge(SERVED_LOG_REJECTED, "", lambda: served_log_rejected(limit=0)[0])
