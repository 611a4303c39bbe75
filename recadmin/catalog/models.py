"""The shop's catalog as recadmin sees it: customers, a category tree and items.

Every row carries the shop's own identifier (`shop_id`); the API and the importers only ever
speak in those ids, the integer primary keys stay internal.
"""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

SHOP_ID_MAX_LENGTH = 128
PATH_SEPARATOR = "/"


class Customer(models.Model):
    shop_id = models.CharField(
        max_length=SHOP_ID_MAX_LENGTH, unique=True, help_text="The shop's own customer id (any string up to 128)."
    )
    attributes = models.JSONField(default=dict, blank=True, help_text="Free-form attributes (segment, age...).")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.shop_id


class Category(models.Model):
    """A node of the category tree.

    `path` is the materialised chain of slugs from the root ("/beauty/skin-care/"), so a
    category's whole subtree is one indexed prefix query (`path__startswith`) instead of a
    recursive walk; services keep it in step with `parent` and `slug`.
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True, help_text="Unique, URL-safe name.")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children", help_text="Empty for a root."
    )
    path = models.CharField(max_length=1000, db_index=True, editable=False, default="")
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["path"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def compute_path(self) -> str:
        prefix = self.parent.path if self.parent_id and self.parent is not None else PATH_SEPARATOR
        return f"{prefix}{self.slug}{PATH_SEPARATOR}"


class Item(models.Model):
    shop_id = models.CharField(max_length=SHOP_ID_MAX_LENGTH, unique=True, help_text="The shop's id or SKU.")
    title = models.CharField(max_length=500, blank=True, default="")
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    brand = models.CharField(max_length=200, blank=True, default="", db_index=True)
    # Unknown prices stay NULL rather than 0, so a "price below X" rule does not catch them.
    price = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    currency = models.CharField(max_length=3, blank=True, default="USD", help_text="ISO 4217 code.")
    stock_quantity = models.IntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Units in stock; empty if not tracked."
    )
    in_stock = models.BooleanField(default=True, db_index=True)
    is_active = models.BooleanField(default=True, db_index=True, help_text="Inactive items are never recommended.")
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__isnull=True) | Q(price__gte=0), name="item_price_non_negative"),
            models.CheckConstraint(
                condition=Q(stock_quantity__isnull=True) | Q(stock_quantity__gte=0), name="item_stock_non_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.shop_id} {self.title}".strip()
