"""/api/schema/ for people as well as tools: a browser (which asks for text/html) gets the YAML on
a page it shows, with links to Swagger UI, Redoc and the JSON; a client generator or curl
(`*/*`, `application/vnd.oai.openapi`, `?format=json`) gets the schema file as before."""

from __future__ import annotations

from typing import Any

from django.utils.html import format_html
from drf_spectacular.renderers import OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import BaseRenderer

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{} schema</title>
<style>body{{font:14px/1.4 system-ui,sans-serif;margin:1.5em}}
pre{{background:#f6f8fa;padding:1em;overflow:auto}}</style>
</head><body>
<h1>{} — OpenAPI schema</h1>
<p>Browse it in <a href="{}">Swagger UI</a> or <a href="{}">Redoc</a>; download it as
<a href="?format=yaml">YAML</a> or <a href="?format=json">JSON</a>.</p>
<pre>{}</pre>
</body></html>"""


class SchemaHtmlRenderer(BaseRenderer):
    media_type = "text/html"
    format = "html"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        text = OpenApiYamlRenderer().render(data, renderer_context=renderer_context).decode("utf-8")
        title = str((data or {}).get("info", {}).get("title", "API")) if isinstance(data, dict) else "API"
        return str(format_html(_PAGE, title, title, "/api/docs/", "/api/redoc/", text)).encode("utf-8")


class SchemaView(SpectacularAPIView):
    # The schema file renderers first: a client that accepts anything keeps getting YAML.
    renderer_classes = [*SpectacularAPIView.renderer_classes, SchemaHtmlRenderer]
