"""manage.py rebuild_history [--customer SHOP_ID ...]: refill the recent-history cache from the database
(after a Redis flush or on a new cache)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from recadmin.catalog.models import Customer
from recadmin.events.history import history_rebuild


class Command(BaseCommand):
    help = "Rebuild each customer's recent-history cache from the event table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", action="append", default=None, help="A customer's shop id (repeatable).")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        ids = None
        if options["customer"]:
            ids = list(Customer.objects.filter(shop_id__in=options["customer"]).values_list("id", flat=True))
        count = history_rebuild(ids, progress=not options["no_progress"])
        self.stdout.write(f"history rebuilt for {count} customers")
