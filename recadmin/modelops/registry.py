"""Hooks that higher apps fill in for the training pipeline, so modelops never imports them.

The ranker trains on impressions (served pages with their attributed clicks and purchases), which
the metrics app reads; it registers its export here in `MetricsConfig.ready`, by dotted path, so
registering imports nothing (the export pulls in torch, which the web process never loads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.module_loading import import_string

_impressions_export: str | None = None


def impressions_export_register(path: str) -> None:
    """`path`: dotted path of a callable(*, since, until) -> training.ranker.features.ImpressionTable."""
    global _impressions_export
    _impressions_export = path


def impressions_export_get() -> Callable[..., Any]:
    if _impressions_export is None:
        raise LookupError("no impressions export is registered (is recadmin.metrics in INSTALLED_APPS?)")
    return import_string(_impressions_export)
