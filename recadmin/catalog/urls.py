from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from recadmin.catalog import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("categories", apis.CategoryCollectionApi.as_view(), name="categories"),
    path("categories/<str:slug>", apis.CategoryDetailApi.as_view(), name="category-detail"),
    path("items", apis.ItemCollectionApi.as_view(), name="items"),
    path("items/<path:shop_id>", apis.ItemDetailApi.as_view(), name="item-detail"),
    path("customers", apis.CustomerCollectionApi.as_view(), name="customers"),
    path("customers/<path:shop_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
]
