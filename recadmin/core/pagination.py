from __future__ import annotations

from typing import Any

from rest_framework.pagination import CursorPagination


class StableCursorPagination(CursorPagination):
    """Cursor pagination: stable under concurrent inserts and O(1) per page on huge tables."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 1000
    ordering = "-id"

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        # DRF's examples name another API ("/accounts/") and end in a stray quote; drf-spectacular
        # copies them into every list example's envelope.
        paged = super().get_paginated_response_schema(schema)
        paged["properties"]["next"]["example"] = (
            f"https://shop.example.com/api/v1/...?{self.cursor_query_param}=cD0yMDI2"
        )
        paged["properties"]["previous"]["example"] = None
        return paged
