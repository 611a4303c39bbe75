"""Merchandiser admin for the catalog: items (search, filters, CSV/XLSX import and export),
categories as a tree, customers with their latest events."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.utils.html import format_html
from import_export import fields, resources, widgets
from import_export.formats.base_formats import CSV, XLSX

from recadmin.catalog import services
from recadmin.catalog.admin_tools import CappedCountPaginator
from recadmin.catalog.item_import import BlankCellsKeepResourceMixin, ClearBlankImportAdminMixin
from recadmin.catalog.models import Category, Customer, Item
from recadmin.core.admin_base import ImportExportModelAdmin, ModelAdmin, thumbnail_html


@admin.register(Category)
class CategoryAdmin(ModelAdmin):
    list_display = ["tree_name", "slug", "path"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    raw_id_fields = ["parent"]
    readonly_fields = ["path", "depth"]
    ordering = ["path"]
    list_per_page = 200

    @admin.display(description="Category", ordering="path")
    def tree_name(self, obj: Category) -> str:
        # Ordered by materialised path, indenting by depth draws the tree.
        return format_html('<span style="padding-left:{}em">{}</span>', obj.depth * 1.5, obj.name)

    def save_model(self, request: HttpRequest, obj: Category, form: ModelForm, change: bool) -> None:
        # Through the services, so that the paths of the category and its subtree stay right.
        if not change:
            created = services.category_create(name=obj.name, slug=obj.slug, parent=obj.parent)
            obj.pk, obj.path, obj.depth = created.pk, created.path, created.depth
            return
        saved = Category.objects.get(pk=obj.pk)
        services.category_update(category=saved, name=obj.name, slug=obj.slug, parent=obj.parent)


# Where shops put an item's picture among its free-form attributes, in the order they are tried.
IMAGE_ATTRIBUTES = ("image_url", "image", "thumbnail_url", "thumbnail", "picture")


def item_image_url(item: Item) -> str | None:
    attributes = item.attributes if isinstance(item.attributes, dict) else {}
    for key in IMAGE_ATTRIBUTES:
        value = attributes.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


class ItemResource(BlankCellsKeepResourceMixin, resources.ModelResource):
    """CSV/XLSX columns: shop_id (the key: existing items are updated), title, category (slug),
    brand, price, currency, stock_quantity, in_stock, is_active, attributes (JSON). A blank cell
    leaves an existing item's value alone unless the import is told to clear blanks."""

    category = fields.Field(
        attribute="category", column_name="category", widget=widgets.ForeignKeyWidget(Category, field="slug")
    )
    attributes = fields.Field(attribute="attributes", column_name="attributes", widget=widgets.JSONWidget())

    class Meta:
        model = Item
        import_id_fields = ["shop_id"]
        fields = ["shop_id", *services.ITEM_FIELDS]
        export_order = fields
        clean_model_instances = True  # field validators (non-negative price and stock) become row errors
        skip_unchanged = True
        report_skipped = True

    def before_save_instance(self, instance: Item, row: Any, **kwargs: Any) -> None:
        if instance.attributes is None:
            instance.attributes = {}
        if instance.in_stock is None:
            instance.in_stock = (instance.stock_quantity or 0) > 0


@admin.register(Item)
class ItemAdmin(ClearBlankImportAdminMixin, ImportExportModelAdmin):
    resource_classes = [ItemResource]
    formats = [CSV, XLSX]
    list_display = [
        "thumbnail",
        "shop_id",
        "title",
        "category",
        "brand",
        "price",
        "currency",
        "stock_quantity",
        "in_stock",
        "is_active",
    ]
    list_filter = ["is_active", "in_stock", ("category", admin.RelatedOnlyFieldListFilter), "brand"]
    search_fields = ["=shop_id", "title", "brand"]
    list_select_related = ["category"]
    autocomplete_fields = ["category"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    actions = ["deactivate", "activate"]

    @admin.display(description="")
    def thumbnail(self, item: Item) -> str:
        return thumbnail_html(item_image_url(item))

    @admin.action(description="Deactivate (never recommend; events are kept)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        count = 0
        for item in queryset.filter(is_active=True):
            services.item_deactivate(item=item)
            count += 1
        self.message_user(request, f"{count} item(s) deactivated.", messages.SUCCESS)

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet[Item]) -> None:
        count = 0
        for item in queryset.filter(is_active=False):
            services.item_update(item=item, data={"is_active": True})
            count += 1
        self.message_user(request, f"{count} item(s) activated.", messages.SUCCESS)


@admin.register(Customer)
class CustomerAdmin(ModelAdmin):
    list_display = ["shop_id", "created_at", "updated_at"]
    search_fields = ["=shop_id"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    # The latest-events inline is registered by recadmin.events.admin (events sit above the catalog).
