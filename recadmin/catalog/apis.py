"""Catalog API: categories, items and customers, addressed by the shop's own ids (slugs for categories).

Scopes: writing (create, upsert, update, delete) needs an `ingest` or `manage` key: catalog feeds
are data sync, like events. Reading items needs any valid key (the catalog is what a storefront
shows anyway); reading customers needs `ingest` or `manage`, because `recommend` keys may be
embedded in storefront pages.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from recadmin.catalog import selectors, services
from recadmin.catalog.models import SHOP_ID_MAX_LENGTH, Category, Customer, Item
from recadmin.core.auth import ApiClient
from recadmin.core.errors import AuthenticationFailed, Conflict, PermissionDenied, ValidationError
from recadmin.core.pagination import StableCursorPagination
from recadmin.core.parsers import json_value_problem
from recadmin.core.schema import SLUG_PATTERN

BULK_MAX_ROWS = 10_000
INT32_MAX = 2_147_483_647  # what the database's integer column holds
ANY_SCOPE = ("ingest", "recommend", "manage")
WRITE_SCOPES = ("ingest", "manage")


class ScopeForMethod(BasePermission):
    """Reads need one of the view's `read_scopes`, writes one of its `write_scopes`."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            raise AuthenticationFailed("An API key is required: send 'Authorization: Bearer <api key>'.")
        scopes = view.read_scopes if request.method in SAFE_METHODS else view.write_scopes
        if not any(client.has_scope(s) for s in scopes):
            raise PermissionDenied(
                f"This API key needs one of the scopes: {', '.join(scopes)}.", extra={"required_scopes": list(scopes)}
            )
        return True


def _errors_to_rows(index: int, errors: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, messages in errors.items():
        message = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(message, dict):  # nested (attributes): flatten to the first message
            message = next(iter(message.values()), "Invalid.")
        rows.append({"index": index, "field": name, "message": str(message)})
    return rows


def _validate_bulk(data: Any, serializer_class: type[serializers.Serializer], key: str) -> tuple[list, list]:
    """Validate a bulk body row by row: returns (valid rows with their index, per-row errors)."""
    rows = data.get(key) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValidationError(f"Send a JSON list of objects or {{{key!r}: [...]}}.", field=key)
    if len(rows) > BULK_MAX_ROWS:
        raise ValidationError(f"At most {BULK_MAX_ROWS} rows per request, got {len(rows)}.", field=key)
    valid, errors = [], []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.append({"index": index, "field": "non_field_errors", "message": "Each row must be an object."})
            continue
        problem = json_value_problem(row)
        if problem is not None:  # NUL, a lone surrogate, a huge number: this row only
            errors.append({"index": index, "field": problem[0].split(".")[0], "message": problem[1]})
            continue
        serializer = serializer_class(data=row)
        if serializer.is_valid():
            valid.append((index, serializer.validated_data))
        else:
            errors.extend(_errors_to_rows(index, serializer.errors))
    return valid, errors


def _bulk_response(valid: list, errors: list, result: Any) -> Response:
    """One answer for every bulk upsert: 200 when all rows were stored, 207 with per-row errors."""
    # The service's own row errors (an unknown category, say) index into `valid`: map them back.
    errors = [*errors, *({**e, "index": valid[e["index"]][0]} for e in result.errors)]
    errors.sort(key=lambda e: e["index"])
    body = {"created": result.created, "updated": result.updated, "errors": errors}
    return Response(body, status=status.HTTP_207_MULTI_STATUS if errors else status.HTTP_200_OK)


@extend_schema_field({"type": "object", "additionalProperties": True})
class _AttributesField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        problem = json_value_problem(value)
        if problem is not None:
            raise serializers.ValidationError(f"{problem[0]}: {problem[1]}")
        return value


# --- items -----------------------------------------------------------------------------------------


class ItemFields(serializers.Serializer):
    title = serializers.CharField(max_length=500, required=False, allow_blank=True)
    category = serializers.CharField(
        max_length=100, required=False, allow_blank=True, allow_null=True, help_text="The category's slug."
    )
    brand = serializers.CharField(max_length=200, required=False, allow_blank=True)
    price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False, allow_null=True)
    currency = serializers.CharField(max_length=3, required=False, allow_blank=True)
    stock_quantity = serializers.IntegerField(min_value=0, max_value=INT32_MAX, required=False, allow_null=True)
    in_stock = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(required=False)
    attributes = _AttributesField(required=False)


class ItemInput(ItemFields):
    shop_id = serializers.CharField(max_length=SHOP_ID_MAX_LENGTH)


class ItemCreateInput(ItemInput):
    title = serializers.CharField(max_length=500, help_text="Required: a new item needs a title.")


class CatalogItemOutput(serializers.ModelSerializer):
    category: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )

    class Meta:
        model = Item
        fields = [
            "shop_id", "title", "category", "brand", "price", "currency", "stock_quantity",
            "in_stock", "is_active", "attributes", "created_at", "updated_at",
        ]  # fmt: skip


class BulkResultOutput(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    errors = serializers.ListField(  # type: ignore[assignment]
        child=inline_serializer(
            "BulkRowError",
            fields={
                "index": serializers.IntegerField(),
                "field": serializers.CharField(),
                "message": serializers.CharField(),
            },
        )
    )


ITEM_EXAMPLE = {
    "shop_id": "SKU-1042",
    "title": "Argan hair oil 100 ml",
    "category": "hair-care",
    "brand": "acme",
    "price": "12.90",
    "currency": "EUR",
    "stock_quantity": 35,
    "in_stock": True,
    "is_active": True,
    "attributes": {"volume_ml": 100, "vegan": True},
}


class ItemFilters(serializers.Serializer):
    category = serializers.CharField(required=False, help_text="A category slug; its whole subtree matches.")
    brand = serializers.CharField(required=False)
    in_stock = serializers.BooleanField(required=False, allow_null=True, default=None)
    is_active = serializers.BooleanField(required=False, allow_null=True, default=None)
    updated_since = serializers.DateTimeField(required=False)


def _paginate(request: Request, view: APIView, qs: Any, output: type[serializers.Serializer]) -> Response:
    paginator = StableCursorPagination()
    page: Any = paginator.paginate_queryset(qs, request, view=view)
    return paginator.get_paginated_response(output(page, many=True).data)


class ItemCollectionApi(APIView):
    pagination_class = StableCursorPagination  # GET lists are paged (documented as such)
    permission_classes = [ScopeForMethod]
    # Bulk rows are checked one by one (_validate_bulk): a bad row is reported, the others stored.
    json_rows_checked_by_view = True
    json_max_rows = BULK_MAX_ROWS
    json_rows_field = "items"
    read_scopes = ANY_SCOPE
    write_scopes = WRITE_SCOPES

    @extend_schema(
        operation_id="items_list",
        summary="List items",
        description="Any valid key. Filters combine; cursor pagination (`cursor`, `limit` up to 1000), newest first.",
        parameters=[
            OpenApiParameter("category", str, description="Category slug, including its subtree."),
            OpenApiParameter("brand", str),
            OpenApiParameter("in_stock", bool),
            OpenApiParameter("is_active", bool),
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME, description="ISO 8601, e.g. 2026-01-31T00:00:00Z"),
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        responses={200: CatalogItemOutput(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = ItemFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginate(request, self, selectors.item_list(**filters.validated_data), CatalogItemOutput)

    @extend_schema(
        operation_id="items_create",
        summary="Create an item",
        description="Scope `ingest` or `manage`. 409 if the shop id exists (use PUT to upsert).",
        request=ItemCreateInput,
        responses={201: CatalogItemOutput},
        examples=[OpenApiExample("item", value=ITEM_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        serializer = ItemCreateInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        item = services.item_create(shop_id=data.pop("shop_id"), data=data)
        return Response(CatalogItemOutput(item).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="items_bulk_upsert",
        summary="Upsert many items",
        description=(
            f'Scope `ingest` or `manage`. A list of up to {BULK_MAX_ROWS} items (or `{{"items": [...]}}`). '
            "Existing shop ids are updated with the fields given, new ones created (a new item needs a "
            "`title`). Invalid rows are "
            "reported with their index and field and skipped; the valid ones are stored (200 if all "
            "rows were stored, 207 otherwise)."
        ),
        request=ItemInput(many=True),
        responses={200: BulkResultOutput, 207: BulkResultOutput},
        examples=[
            OpenApiExample("items", value=[ITEM_EXAMPLE, {"shop_id": "SKU-7", "price": "3.50"}], request_only=True),
            OpenApiExample("result", value={"created": 1, "updated": 1, "errors": []}, response_only=True),
        ],
    )
    def put(self, request: Request) -> Response:
        valid, errors = _validate_bulk(request.data, ItemInput, "items")
        result = services.items_bulk_upsert(rows=[row for _, row in valid])
        return _bulk_response(valid, errors, result)


class ItemDetailApi(APIView):
    permission_classes = [ScopeForMethod]
    read_scopes = ANY_SCOPE
    write_scopes = WRITE_SCOPES

    @extend_schema(operation_id="items_retrieve", summary="Get an item", responses={200: CatalogItemOutput})
    def get(self, request: Request, shop_id: str) -> Response:
        return Response(CatalogItemOutput(selectors.item_get(shop_id=shop_id)).data)

    @extend_schema(
        operation_id="items_upsert",
        summary="Create or update an item by its shop id",
        description="Scope `ingest` or `manage`. Fields not sent keep their values. 201 if created, 200 if updated.",
        request=ItemFields,
        responses={200: CatalogItemOutput, 201: CatalogItemOutput},
        examples=[
            OpenApiExample("item", value={k: v for k, v in ITEM_EXAMPLE.items() if k != "shop_id"}, request_only=True)
        ],
    )
    def put(self, request: Request, shop_id: str) -> Response:
        if len(shop_id) > SHOP_ID_MAX_LENGTH:
            raise ValidationError(f"At most {SHOP_ID_MAX_LENGTH} characters.", field="shop_id")
        serializer = ItemFields(data=request.data)
        serializer.is_valid(raise_exception=True)
        item, created = services.item_upsert(shop_id=shop_id, data=serializer.validated_data)
        return Response(CatalogItemOutput(item).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="items_partial_update",
        summary="Update some fields of an item",
        description="Scope `ingest` or `manage`.",
        request=ItemFields,
        responses={200: CatalogItemOutput},
        examples=[OpenApiExample("price and stock", value={"price": "9.99", "stock_quantity": 0}, request_only=True)],
    )
    def patch(self, request: Request, shop_id: str) -> Response:
        item = selectors.item_get(shop_id=shop_id)
        serializer = ItemFields(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        item = services.item_update(item=item, data=serializer.validated_data)
        return Response(CatalogItemOutput(item).data)

    @extend_schema(
        operation_id="items_destroy",
        summary="Deactivate an item",
        description="Scope `ingest` or `manage`. The item is deactivated (never recommended again), its events kept.",
        responses={200: CatalogItemOutput},
    )
    def delete(self, request: Request, shop_id: str) -> Response:
        item = services.item_deactivate(item=selectors.item_get(shop_id=shop_id))
        return Response(CatalogItemOutput(item).data)


# --- categories ------------------------------------------------------------------------------------


class CategoryFields(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    # (A field named `parent` shadows Field.parent only for mypy: DRF moves declared fields away.)
    parent = serializers.SlugField(  # type: ignore[assignment]
        max_length=100, required=False, allow_null=True, help_text="The parent's slug; null for a root."
    )


class CategoryInput(CategoryFields):
    slug = serializers.SlugField(max_length=100)


class CategoryUpdateInput(CategoryFields):
    slug = serializers.SlugField(max_length=100, required=False, help_text="A new slug (renames the category).")


class CategoryOutput(serializers.ModelSerializer):
    parent: serializers.SlugRelatedField = serializers.SlugRelatedField(  # type: ignore[assignment]
        slug_field="slug", read_only=True
    )

    class Meta:
        model = Category
        fields = ["slug", "name", "parent", "path", "depth", "created_at"]


class CategoryFilters(serializers.Serializer):
    parent = serializers.SlugField(  # type: ignore[assignment]
        required=False, help_text="Only the direct children of this category."
    )


CATEGORY_EXAMPLES = [
    {"slug": "hair-care", "name": "Hair care", "parent": "beauty"},
    {"slug": "beauty", "name": "Beauty", "parent": None},
]


class CategoryCollectionApi(APIView):
    pagination_class = StableCursorPagination  # GET lists are paged (documented as such)
    permission_classes = [ScopeForMethod]
    # Bulk rows are checked one by one (_validate_bulk): a bad row is reported, the others stored.
    json_rows_checked_by_view = True
    json_max_rows = BULK_MAX_ROWS
    json_rows_field = "categories"
    read_scopes = ANY_SCOPE
    write_scopes = WRITE_SCOPES

    @extend_schema(
        operation_id="categories_list",
        summary="List categories",
        description="Any valid key. Cursor pagination (`cursor`, `limit` up to 1000), newest first.",
        parameters=[
            OpenApiParameter(
                "parent",
                {"type": "string", "pattern": SLUG_PATTERN},
                description="A category slug: only its direct children.",
            ),
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        responses={200: CategoryOutput(many=True)},
        examples=[
            OpenApiExample(
                "categories",
                # One row: drf-spectacular puts it in the page envelope itself.
                value={
                    "slug": "hair-care",
                    "name": "Hair care",
                    "parent": "beauty",
                    "path": "/beauty/hair-care/",
                    "depth": 1,
                    "created_at": "2026-01-31T10:00:00Z",
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        filters = CategoryFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginate(request, self, selectors.category_list(**filters.validated_data), CategoryOutput)

    @extend_schema(
        operation_id="categories_bulk_upsert",
        summary="Upsert many categories",
        description=(
            f'Scope `ingest` or `manage`. A list of up to {BULK_MAX_ROWS} categories (or `{{"categories": [...]}}`), '
            "each `slug`, `name` and `parent` (a slug, or null for a root). Parents may come in the same "
            "batch, in any order. Existing slugs are updated with the fields given (a move carries the "
            "whole subtree), new ones created (they need a name). Invalid rows (an unknown parent, a "
            "parent that would make a cycle) are reported with their index and field and skipped; the "
            "valid ones are stored (200 if all rows were stored, 207 otherwise)."
        ),
        request=CategoryInput(many=True),
        responses={200: BulkResultOutput, 207: BulkResultOutput},
        examples=[
            OpenApiExample("categories", value=CATEGORY_EXAMPLES, request_only=True),
            OpenApiExample("result", value={"created": 2, "updated": 0, "errors": []}, response_only=True),
            OpenApiExample(
                "a row rejected",
                value={
                    "created": 1,
                    "updated": 0,
                    "errors": [{"index": 0, "field": "parent", "message": "Unknown parent category 'beuaty'."}],
                },
                response_only=True,
                status_codes=["207"],
            ),
        ],
    )
    def put(self, request: Request) -> Response:
        valid, errors = _validate_bulk(request.data, CategoryInput, "categories")
        result = services.categories_bulk_upsert(rows=[row for _, row in valid])
        return _bulk_response(valid, errors, result)


class CategoryDetailApi(APIView):
    permission_classes = [ScopeForMethod]
    read_scopes = ANY_SCOPE
    write_scopes = WRITE_SCOPES

    @extend_schema(operation_id="categories_retrieve", summary="Get a category", responses={200: CategoryOutput})
    def get(self, request: Request, slug: str) -> Response:
        return Response(CategoryOutput(selectors.category_get(slug=slug)).data)

    @extend_schema(
        operation_id="categories_partial_update",
        summary="Rename or move a category",
        description=(
            "Scope `ingest` or `manage`. `parent` moves the category with its whole subtree (null: to "
            "the root); a parent below the category itself is refused (400, field `parent`)."
        ),
        request=CategoryUpdateInput,
        responses={200: CategoryOutput},
        examples=[
            OpenApiExample("move", value={"parent": "beauty"}, request_only=True),
            OpenApiExample("rename", value={"name": "Hair & scalp"}, request_only=True),
        ],
    )
    def patch(self, request: Request, slug: str) -> Response:
        category = selectors.category_get(slug=slug)
        serializer = CategoryUpdateInput(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        new_slug = data.get("slug")
        if new_slug and new_slug != category.slug and Category.objects.filter(slug=new_slug).exists():
            raise Conflict(
                f"A category with slug {new_slug!r} exists.", extra={"fields": {"slug": ["Already exists."]}}
            )
        parent: Any = services.KEEP
        if "parent" in data:
            parent = None
            if data["parent"] is not None:
                parent = Category.objects.filter(slug=data["parent"]).first()
                if parent is None:
                    raise ValidationError(f"Unknown parent category {data['parent']!r}.", field="parent")
        category = services.category_update(category=category, name=data.get("name"), slug=new_slug, parent=parent)
        return Response(CategoryOutput(selectors.category_get(slug=category.slug)).data)

    @extend_schema(
        operation_id="categories_destroy",
        summary="Delete a category",
        description="Scope `ingest` or `manage`. 409 while items or child categories use it.",
        responses={204: None},
    )
    def delete(self, request: Request, slug: str) -> Response:
        services.category_delete(category=selectors.category_get(slug=slug))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- customers -------------------------------------------------------------------------------------


class CustomerFields(serializers.Serializer):
    attributes = _AttributesField(required=False)


class CustomerInput(CustomerFields):
    shop_id = serializers.CharField(max_length=SHOP_ID_MAX_LENGTH)


class CustomerOutput(serializers.ModelSerializer):
    class Meta:
        model = Customer
        fields = ["shop_id", "attributes", "created_at", "updated_at"]


class CustomerFilters(serializers.Serializer):
    updated_since = serializers.DateTimeField(required=False)


CUSTOMER_EXAMPLE = {"shop_id": "C-88121", "attributes": {"segment": "loyal", "country": "DE"}}


class CustomerCollectionApi(APIView):
    pagination_class = StableCursorPagination  # GET lists are paged (documented as such)
    permission_classes = [ScopeForMethod]
    json_max_rows = BULK_MAX_ROWS
    json_rows_field = "customers"
    read_scopes = WRITE_SCOPES
    write_scopes = WRITE_SCOPES

    @property
    def json_rows_checked_by_view(self) -> bool:
        # The bulk upsert checks rows one by one (_validate_bulk): a bad row is reported, the others
        # stored. One customer (POST) keeps the parser's 400 naming the attribute's path.
        return self.request.method == "PUT"

    @extend_schema(
        operation_id="customers_list",
        summary="List customers",
        description="Scope `ingest` or `manage`. Cursor pagination (`cursor`, `limit`), newest first.",
        parameters=[
            OpenApiParameter("updated_since", OpenApiTypes.DATETIME),
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int),
        ],
        responses={200: CustomerOutput(many=True)},
    )
    def get(self, request: Request) -> Response:
        filters = CustomerFilters(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginate(request, self, selectors.customer_list(**filters.validated_data), CustomerOutput)

    @extend_schema(
        operation_id="customers_create",
        summary="Create a customer",
        description="Scope `ingest` or `manage`. 409 if the shop id exists. (Events create unknown customers too.)",
        request=CustomerInput,
        responses={201: CustomerOutput},
        examples=[OpenApiExample("customer", value=CUSTOMER_EXAMPLE, request_only=True)],
    )
    def post(self, request: Request) -> Response:
        serializer = CustomerInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(
            shop_id=serializer.validated_data["shop_id"], attributes=serializer.validated_data.get("attributes")
        )
        return Response(CustomerOutput(customer).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="customers_bulk_upsert",
        summary="Upsert many customers",
        description=f"Scope `ingest` or `manage`. Up to {BULK_MAX_ROWS} rows; invalid rows reported and skipped (207).",
        request=CustomerInput(many=True),
        responses={200: BulkResultOutput, 207: BulkResultOutput},
        examples=[OpenApiExample("customers", value=[CUSTOMER_EXAMPLE], request_only=True)],
    )
    def put(self, request: Request) -> Response:
        valid, errors = _validate_bulk(request.data, CustomerInput, "customers")
        result = services.customers_bulk_upsert(rows=[row for _, row in valid])
        return _bulk_response(valid, errors, result)


class CustomerDetailApi(APIView):
    permission_classes = [ScopeForMethod]
    read_scopes = WRITE_SCOPES
    write_scopes = WRITE_SCOPES

    @extend_schema(operation_id="customers_retrieve", summary="Get a customer", responses={200: CustomerOutput})
    def get(self, request: Request, shop_id: str) -> Response:
        return Response(CustomerOutput(selectors.customer_get(shop_id=shop_id)).data)

    @extend_schema(
        operation_id="customers_upsert",
        summary="Create or replace a customer's attributes",
        description="Scope `ingest` or `manage`. 201 if created, 200 if updated.",
        request=CustomerFields,
        responses={200: CustomerOutput, 201: CustomerOutput},
        examples=[OpenApiExample("customer", value={"attributes": {"segment": "new"}}, request_only=True)],
    )
    def put(self, request: Request, shop_id: str) -> Response:
        if len(shop_id) > SHOP_ID_MAX_LENGTH:
            raise ValidationError(f"At most {SHOP_ID_MAX_LENGTH} characters.", field="shop_id")
        serializer = CustomerFields(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer, created = services.customer_upsert(
            shop_id=shop_id, attributes=serializer.validated_data.get("attributes")
        )
        return Response(
            CustomerOutput(customer).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )

    @extend_schema(
        operation_id="customers_partial_update",
        summary="Merge attributes into a customer",
        description="Scope `ingest` or `manage`. The keys sent are merged into the stored attributes.",
        request=CustomerFields,
        responses={200: CustomerOutput},
        examples=[OpenApiExample("attributes", value={"attributes": {"segment": "vip"}}, request_only=True)],
    )
    def patch(self, request: Request, shop_id: str) -> Response:
        customer = selectors.customer_get(shop_id=shop_id)
        serializer = CustomerFields(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_update(
            customer=customer, attributes=serializer.validated_data.get("attributes", {})
        )
        return Response(CustomerOutput(customer).data)

    @extend_schema(
        operation_id="customers_destroy",
        summary="Erase a customer",
        description="Scope `ingest` or `manage`. Deletes the customer and their events (a privacy request).",
        responses={204: None},
    )
    def delete(self, request: Request, shop_id: str) -> Response:
        services.customer_delete(customer=selectors.customer_get(shop_id=shop_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
