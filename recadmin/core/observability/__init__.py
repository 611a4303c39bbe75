"""Operations' view of a running recadmin: request ids, structured logs, Prometheus metrics, readiness.

What other apps call:
- `label_request(request, scene=..., source=..., fallback_reason=...)` from a view, so the request's
  latency histogram and the fallback counters carry the scene and where the list came from;
- the metric objects in `recadmin.core.observability.metrics` (`EVENTS_INGESTED.labels(...).inc()`);
- `scrape_gauge(...)` for a value computed when Prometheus scrapes (backlogs, lags, ages);
- `readiness_check(name, fn)` for a dependency `/readyz` should report.
"""

from __future__ import annotations

from recadmin.core.observability.context import label_request, request_id_get, request_id_set

__all__ = ["label_request", "request_id_get", "request_id_set"]
