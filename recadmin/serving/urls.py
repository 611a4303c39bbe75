from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.serving.apis import PopularApi, RecommendationsApi, SimilarItemsApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("recommendations", RecommendationsApi.as_view(), name="recommendations"),
    path("items/<path:shop_id>/similar", SimilarItemsApi.as_view(), name="item-similar"),
    path("popular", PopularApi.as_view(), name="popular"),
]
