from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.events import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("events", apis.EventIngestApi.as_view(), name="events"),
]
