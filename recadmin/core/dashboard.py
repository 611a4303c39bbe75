"""The admin home as a dashboard of panels.

`settings.RECADMIN_DASHBOARD_PANELS` lists dotted paths of callables `(request) -> list[dict]`;
each dict is a panel: {"title": str, "template": str, "context": dict, "width": "full" | "half"}.
Panels render in the order of the setting. Each app writes its own panels (a panel reads its app's
selectors), so core imports none of them: it only resolves the paths.

A panel that raises, returns something malformed or whose template fails is shown as an error box
with the reason (and logged): one broken panel never takes the home page down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.module_loading import import_string
from django.utils.safestring import SafeString, mark_safe

logger = logging.getLogger(__name__)

WIDTHS = ("full", "half")


@dataclass(frozen=True)
class RenderedPanel:
    title: str
    html: SafeString
    width: str
    error: str = ""
    source: str = ""


def _error_panel(source: str, title: str, error: str) -> RenderedPanel:
    return RenderedPanel(title=title, html=mark_safe(""), width="half", error=error, source=source)


def _render_one(source: str, spec: Any, request: HttpRequest) -> RenderedPanel:
    if not isinstance(spec, dict) or not isinstance(spec.get("template"), str):
        return _error_panel(source, "Panel", f"{source} returned {type(spec).__name__}, not a panel dict")
    title = str(spec.get("title") or "")
    width = spec.get("width") or "half"
    if width not in WIDTHS:
        width = "half"
    context = spec.get("context") or {}
    try:
        html = render_to_string(spec["template"], {**context, "panel_title": title}, request=request)
    except Exception as exc:
        logger.exception("dashboard panel %s: template %s failed", source, spec["template"])
        return _error_panel(source, title or "Panel", f"{type(exc).__name__}: {exc}")
    return RenderedPanel(title=title, html=mark_safe(html), width=str(width), source=source)


def dashboard_panels(request: HttpRequest, paths: list[str] | None = None) -> list[RenderedPanel]:
    """Every configured panel rendered to HTML, in order; failures become error panels."""
    rendered: list[RenderedPanel] = []
    for source in paths if paths is not None else getattr(settings, "RECADMIN_DASHBOARD_PANELS", []):
        try:
            provider = import_string(source)
            specs = provider(request)
        except Exception as exc:
            logger.exception("dashboard panel %s failed", source)
            rendered.append(
                _error_panel(source, source.rsplit(".", 1)[-1].replace("_", " "), f"{type(exc).__name__}: {exc}")
            )
            continue
        if not isinstance(specs, list | tuple):
            rendered.append(_error_panel(source, "Panel", f"{source} returned {type(specs).__name__}, not a list"))
            continue
        rendered.extend(_render_one(source, spec, request) for spec in specs)
    return rendered


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """django-unfold's DASHBOARD_CALLBACK: adds the panels to the admin index's context."""
    context["recadmin_panels"] = dashboard_panels(request)
    return context
