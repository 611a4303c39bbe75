from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.metrics import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("metrics", apis.MetricsApi.as_view(), name="metrics-list"),
    path("metrics/rules", apis.MetricsRulesApi.as_view(), name="metrics-rules"),
    path("metrics/positions", apis.MetricsPositionsApi.as_view(), name="metrics-positions"),
]
