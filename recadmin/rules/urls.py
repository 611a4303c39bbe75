from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.rules import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("scenes", apis.SceneCollectionApi.as_view(), name="scenes"),
    path("scenes/<slug:slug>", apis.SceneDetailApi.as_view(), name="scene-detail"),
    path("rules", apis.RuleCollectionApi.as_view(), name="rules"),
    path("rules/<int:rule_id>", apis.RuleDetailApi.as_view(), name="rule-detail"),
]
